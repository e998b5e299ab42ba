//! A small HTTP/1.1 server side, sans I/O: [`RequestReader`] takes bytes as
//! they arrive and yields whole requests (or the 4xx/5xx status that bad
//! input gets), [`Response`] writes a response with the CORS headers every
//! WHIP/WHEP answer carries.

use std::fmt::Write as _;

/// Bytes of a request line and headers at most: more is `431`.
pub const MAX_HEAD: usize = 16 << 10;
/// Bytes of a body at most (an SDP offer is a few KiB): more is `413`.
pub const MAX_BODY: usize = 64 << 10;
/// Headers at most: more is `431`.
const MAX_HEADERS: usize = 48;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The headers, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Whether the client asked to close the connection after this request.
    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }
}

/// Why the bytes read are not a request: the response they get, after
/// which the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct BadRequest {
    /// `400`, `413`, `431`, `501`.
    pub status: u16,
    /// For the response body.
    pub reason: String,
}

fn bad(status: u16, reason: impl Into<String>) -> BadRequest {
    BadRequest {
        status,
        reason: reason.into(),
    }
}

/// Takes a connection's bytes as they arrive; yields each request once it
/// is whole. Requests may be pipelined.
#[derive(Debug, Default)]
pub struct RequestReader {
    buffer: Vec<u8>,
}

impl RequestReader {
    /// Adds what arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes held that are not yet a whole request.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// The next whole request, `None` until one is, or what is wrong with
    /// the bytes (the connection should then answer and close).
    pub fn next_request(&mut self) -> Result<Option<Request>, BadRequest> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let head_len = match parsed.parse(&self.buffer) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if self.buffer.len() > MAX_HEAD => {
                return Err(bad(431, "the request's head is too large"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(bad(431, "too many header fields"));
            }
            Err(error) => return Err(bad(400, format!("malformed request: {error}"))),
        };
        if head_len > MAX_HEAD {
            return Err(bad(431, "the request's head is too large"));
        }
        let (Some(method), Some(target), Some(1)) = (parsed.method, parsed.path, parsed.version)
        else {
            return Err(bad(400, "only HTTP/1.1 is served"));
        };
        let mut request_headers = Vec::with_capacity(parsed.headers.len());
        for header in parsed.headers.iter() {
            let Ok(value) = std::str::from_utf8(header.value) else {
                return Err(bad(400, format!("header {} is not UTF-8", header.name)));
            };
            request_headers.push((header.name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let request = Request {
            method: method.to_owned(),
            path: target.split('?').next().unwrap_or_default().to_owned(),
            headers: request_headers,
            body: Vec::new(),
        };
        if request.header("transfer-encoding").is_some() {
            return Err(bad(
                501,
                "chunked bodies are not supported: send Content-Length",
            ));
        }
        let body_len = match request.header("content-length") {
            None => 0,
            Some(value) => value
                .parse::<usize>()
                .map_err(|_| bad(400, "Content-Length is not a number"))?,
        };
        if body_len > MAX_BODY {
            return Err(bad(
                413,
                format!("the body is {body_len} bytes; at most {MAX_BODY}"),
            ));
        }
        if self.buffer.len() < head_len + body_len {
            return Ok(None);
        }
        let mut request = request;
        request.body = self.buffer[head_len..head_len + body_len].to_vec();
        self.buffer.drain(..head_len + body_len);
        Ok(Some(request))
    }
}

/// The reason phrase of the statuses used here.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A response; [`Response::to_bytes`] adds the length and the CORS headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers other than `Content-Length` and the CORS ones.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Close the connection after it.
    pub close: bool,
}

impl Response {
    /// An empty response with `status`.
    pub fn status(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
        }
    }

    /// A short plain-text message: what every error gets.
    pub fn text(status: u16, message: impl Into<String>) -> Self {
        let mut body = message.into().into_bytes();
        body.push(b'\n');
        Response::status(status).with_body("text/plain; charset=utf-8", body)
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the body and its type.
    #[must_use]
    pub fn with_body(self, content_type: &str, body: Vec<u8>) -> Self {
        let mut response = self.header("Content-Type", content_type);
        response.body = body;
        response
    }

    /// Closes the connection after this response.
    #[must_use]
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// The response as sent: status line, headers (the CORS ones on every
    /// response, errors included, so that pages of other origins can read
    /// them), body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = String::with_capacity(512);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\n\
             Access-Control-Allow-Origin: *\r\n\
             Access-Control-Allow-Methods: GET, POST, PATCH, DELETE, OPTIONS\r\n\
             Access-Control-Allow-Headers: Authorization, Content-Type, If-Match\r\n\
             Access-Control-Expose-Headers: Location, ETag, Link, Accept-Patch, Accept-Post\r\n",
            self.status,
            reason(self.status)
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        let _ = write!(head, "Content-Length: {}\r\n", self.body.len());
        if self.close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Option<Request>, BadRequest> {
        let mut reader = RequestReader::default();
        reader.push(bytes);
        reader.next_request()
    }

    #[test]
    fn a_request_in_pieces_comes_out_whole_and_pipelined_ones_in_order() {
        let wire = b"POST /whip/cam?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/sdp\r\n\
                     Content-Length: 5\r\n\r\nv=0\r\nDELETE /session/3 HTTP/1.1\r\n\r\n";
        let mut reader = RequestReader::default();
        for byte in wire.iter() {
            reader.push(std::slice::from_ref(byte));
        }
        let first = reader.next_request().unwrap().unwrap();
        assert_eq!(
            (first.method.as_str(), first.path.as_str()),
            ("POST", "/whip/cam")
        );
        assert_eq!(first.header("content-type"), Some("application/sdp"));
        assert_eq!(first.body, b"v=0\r\n");
        let second = reader.next_request().unwrap().unwrap();
        assert_eq!(
            (second.method.as_str(), second.path.as_str()),
            ("DELETE", "/session/3")
        );
        assert_eq!(reader.next_request(), Ok(None));
        assert_eq!(reader.pending(), 0);
    }

    #[test]
    fn a_partial_request_waits() {
        assert_eq!(
            read(b"POST /whip/a HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"),
            Ok(None)
        );
        assert_eq!(read(b"GET / HTTP/1.1\r\nHost"), Ok(None));
    }

    #[test]
    fn bad_input_gets_its_status() {
        let status = |bytes: &[u8]| read(bytes).unwrap_err().status;
        assert_eq!(status(b"BLAH\x01 / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\n\r\n"), 400);
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), 400);
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(status(big.as_bytes()), 413);
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD + 1));
        assert_eq!(status(long.as_bytes()), 431);
        let many: String = (0..MAX_HEADERS + 1)
            .map(|n| format!("X{n}: y\r\n"))
            .collect();
        assert_eq!(
            status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            431
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
    }

    #[test]
    fn every_response_carries_cors_headers_and_its_length() {
        let bytes = Response::text(404, "no such stream").closing().to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(text.contains("Access-Control-Expose-Headers: Location, ETag"));
        assert!(text.contains("Content-Length: 15\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nno such stream\n"));
    }
}
