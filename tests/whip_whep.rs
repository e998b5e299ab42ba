//! The WHIP/WHEP server (`sansio_suite::whip`) with in-process str0m peers:
//! a publisher's video and audio reach every viewer, on either worker, and
//! deleting the publisher's session ends the viewers' streams and leaves no
//! task behind; bad signalling gets its 4xx and the server keeps serving.

mod util;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use sansio::Backend;
use sansio_suite::whip::client::{TestPeer, request};
use sansio_suite::whip::server::{self, Config, Server};

fn start(workers: usize, token: Option<&str>) -> Server {
    let config = Config {
        http: "127.0.0.1:0".parse().unwrap(),
        udp: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_owned),
        idle: Duration::from_secs(2),
        workers,
    };
    server::start(config, Backend::Mio).unwrap()
}

fn tasks(server: &Server) -> usize {
    server
        .runtime
        .stats()
        .workers
        .iter()
        .flat_map(|w| w.tasks.iter().map(|(_, n)| *n))
        .sum()
}

fn path_of(url: &str) -> &str {
    url.find("/session/").map_or(url, |at| &url[at..])
}

#[test]
fn a_published_stream_reaches_every_viewer_and_ends_with_its_publisher() {
    let server = start(2, None);
    let http: SocketAddr = server.http;
    let publisher = TestPeer::publish(http, "cam").unwrap();
    let viewers: Vec<TestPeer> = (0..2)
        .map(|_| TestPeer::play(http, "cam").unwrap())
        .collect();
    util::eventually("every viewer decodes video and audio", || {
        viewers.iter().all(|viewer| {
            let counts = &viewer.counts;
            counts.video.load(Relaxed) > 30 && counts.audio.load(Relaxed) > 0
        })
    });
    for viewer in &viewers {
        let distinct = viewer.counts.distinct_video.load(Relaxed);
        assert!(
            distinct > 10,
            "the picture did not change: {distinct} distinct frames"
        );
    }
    // Each viewer joining asked the publisher for a keyframe.
    assert!(
        publisher.counts.keyframe_requests.load(Relaxed) > 0,
        "no keyframe was requested"
    );
    // Signalling, a router per worker, a publisher and two viewers.
    assert_eq!(tasks(&server), 6);
    // A third viewer comes and goes: its session and task go with it.
    let third = TestPeer::play(http, "cam").unwrap();
    util::eventually("the third viewer plays", || {
        third.counts.video.load(Relaxed) > 5
    });
    assert_eq!(tasks(&server), 7);
    let reply = request(http, "DELETE", path_of(&third.session), &[], b"").unwrap();
    assert_eq!(reply.status, 200);
    util::eventually("the third viewer's task ends", || tasks(&server) == 6);
    // The others play on.
    let before: Vec<u64> = viewers
        .iter()
        .map(|v| v.counts.video.load(Relaxed))
        .collect();
    util::eventually("the others play on", || {
        viewers
            .iter()
            .zip(&before)
            .all(|(v, b)| v.counts.video.load(Relaxed) > b + 5)
    });
    let reply = request(http, "DELETE", path_of(&publisher.session), &[], b"").unwrap();
    assert_eq!(reply.status, 200);
    // The publisher's and the viewers' peer connections end on the server.
    util::eventually("only signalling and the routers are left", || {
        tasks(&server) == 3
    });
    // Nothing reaches the viewers any more (the browser's ICE then sees
    // the server go quiet and disconnects; str0m's takes longer).
    std::thread::sleep(Duration::from_millis(300));
    let before: Vec<u64> = viewers
        .iter()
        .map(|v| v.counts.video.load(Relaxed))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let after: Vec<u64> = viewers
        .iter()
        .map(|v| v.counts.video.load(Relaxed))
        .collect();
    assert_eq!(before, after, "video still arrives after the stream ended");
    // The stream is gone: a new viewer is refused, a new publisher welcome.
    assert!(TestPeer::play(http, "cam").unwrap_err().starts_with("404"));
    let _again = TestPeer::publish(http, "cam").unwrap();
}

/// A raw exchange: writes `bytes`, reads until the server closes (or 10 s).
fn raw(http: SocketAddr, bytes: &[u8]) -> sansio_suite::whip::client::Reply {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(http).unwrap();
    stream.set_read_timeout(Some(util::PATIENCE)).unwrap();
    stream.write_all(bytes).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    sansio_suite::whip::client::parse_reply(&response).unwrap()
}

/// The server still answers, and nothing has panicked.
fn still_serving(server: &Server) {
    let reply = request(server.http, "OPTIONS", "/whip/cam", &[], b"").unwrap();
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("accept-post"), Some("application/sdp"));
    let panics: u64 = server
        .runtime
        .stats()
        .workers
        .iter()
        .map(|w| w.panics)
        .sum();
    assert_eq!(panics, 0);
}

/// A publisher's offer, made by str0m.
fn offer() -> String {
    let mut rtc = str0m::Rtc::new(std::time::Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(
        str0m::media::MediaKind::Video,
        str0m::media::Direction::SendOnly,
        None,
        None,
        None,
    );
    change.apply().unwrap().0.to_sdp_string()
}

const SDP: (&str, &str) = ("Content-Type", "application/sdp");

#[test]
fn a_malformed_offer_is_400() {
    let server = start(1, None);
    let reply = request(server.http, "POST", "/whip/cam", &[SDP], b"this is not SDP").unwrap();
    assert_eq!(reply.status, 400);
    assert!(String::from_utf8_lossy(&reply.body).contains("malformed SDP"));
    still_serving(&server);
}

#[test]
fn an_offer_without_media_is_400() {
    let server = start(1, None);
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let reply = request(server.http, "POST", "/whip/cam", &[SDP], sdp.as_bytes()).unwrap();
    assert_eq!(
        reply.status,
        400,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    still_serving(&server);
}

#[test]
fn playing_a_stream_nobody_publishes_is_404() {
    let server = start(1, None);
    let reply = request(
        server.http,
        "POST",
        "/whep/nobody",
        &[SDP],
        offer().as_bytes(),
    )
    .unwrap();
    assert_eq!(reply.status, 404);
    still_serving(&server);
}

#[test]
fn a_second_publisher_on_a_live_stream_is_409() {
    let server = start(1, None);
    let first = request(server.http, "POST", "/whip/cam", &[SDP], offer().as_bytes()).unwrap();
    assert_eq!(first.status, 201);
    assert!(
        first
            .header("location")
            .is_some_and(|l| l.starts_with("/session/"))
    );
    assert!(first.header("etag").is_some());
    assert_eq!(first.header("content-type"), Some("application/sdp"));
    let second = request(server.http, "POST", "/whip/cam", &[SDP], offer().as_bytes()).unwrap();
    assert_eq!(second.status, 409);
    // Session URLs cannot be guessed from one another.
    let other = request(
        server.http,
        "POST",
        "/whip/cam2",
        &[SDP],
        offer().as_bytes(),
    )
    .unwrap();
    let id = |reply: &sansio_suite::whip::client::Reply| -> u64 {
        reply.header("location").unwrap()["/session/".len()..]
            .parse()
            .unwrap()
    };
    assert!(
        id(&other).abs_diff(id(&first)) > 1_000,
        "sessions {} and {}",
        id(&first),
        id(&other)
    );
    still_serving(&server);
}

#[test]
fn a_wrong_method_is_405_and_a_wrong_content_type_415() {
    let server = start(1, None);
    let reply = request(server.http, "GET", "/whip/cam", &[], b"").unwrap();
    assert_eq!(reply.status, 405);
    assert!(reply.header("allow").is_some());
    let json = [("Content-Type", "application/json")];
    let reply = request(server.http, "POST", "/whip/cam", &json, b"{}").unwrap();
    assert_eq!(reply.status, 415);
    still_serving(&server);
}

#[test]
fn an_oversized_body_is_413_and_oversized_headers_431() {
    let server = start(1, None);
    let body = vec![b'a'; 100 << 10];
    let reply = request(server.http, "POST", "/whip/cam", &[SDP], &body).unwrap();
    assert_eq!(reply.status, 413);
    let long = "x".repeat(20 << 10);
    let reply = raw(
        server.http,
        format!("GET /whip.html HTTP/1.1\r\nX-Long: {long}\r\n\r\n").as_bytes(),
    );
    assert_eq!(reply.status, 431);
    still_serving(&server);
}

#[test]
fn a_malformed_request_line_is_400() {
    let server = start(1, None);
    let reply = raw(server.http, b"HELLO THERE\r\n\r\n");
    assert_eq!(reply.status, 400);
    still_serving(&server);
}

#[test]
fn half_a_request_then_silence_is_closed_after_the_idle_time() {
    let server = start(1, None);
    let started = std::time::Instant::now();
    let reply = raw(server.http, b"POST /whip/cam HTTP/1.1\r\nContent-Len");
    assert_eq!(reply.status, 408);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "closed too early"
    );
    still_serving(&server);
}

#[test]
fn an_unknown_session_is_404() {
    let server = start(1, None);
    assert_eq!(
        request(server.http, "DELETE", "/session/42", &[], b"")
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        request(server.http, "DELETE", "/session/x", &[], b"")
            .unwrap()
            .status,
        404
    );
    let patch = [("Content-Type", "application/trickle-ice-sdpfrag")];
    assert_eq!(
        request(server.http, "PATCH", "/session/42", &patch, b"")
            .unwrap()
            .status,
        404
    );
    still_serving(&server);
}

#[test]
fn a_token_is_required_when_configured_but_not_for_preflights() {
    let server = start(1, Some("s3cret"));
    let reply = request(server.http, "POST", "/whip/cam", &[SDP], offer().as_bytes()).unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    let wrong = [SDP, ("Authorization", "Bearer nope")];
    assert_eq!(
        request(server.http, "POST", "/whip/cam", &wrong, offer().as_bytes())
            .unwrap()
            .status,
        401
    );
    let right = [SDP, ("Authorization", "Bearer s3cret")];
    assert_eq!(
        request(server.http, "POST", "/whip/cam", &right, offer().as_bytes())
            .unwrap()
            .status,
        201
    );
    // Browsers preflight without credentials; every response carries CORS.
    let reply = request(server.http, "OPTIONS", "/session/1", &[], b"").unwrap();
    assert_eq!(reply.status, 204);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    assert!(
        reply
            .header("access-control-expose-headers")
            .is_some_and(|h| h.contains("Location"))
    );
    assert_eq!(
        reply.header("accept-patch"),
        Some("application/trickle-ice-sdpfrag")
    );
    still_serving(&server);
}

#[test]
fn a_thousand_idle_connections_do_not_keep_others_waiting() {
    let server = start(2, None);
    let idle: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| std::net::TcpStream::connect(server.http).unwrap())
        .collect();
    let started = std::time::Instant::now();
    let reply = request(server.http, "GET", "/whep.html", &[], b"").unwrap();
    assert_eq!(reply.status, 200);
    assert!(String::from_utf8_lossy(&reply.body).contains("RTCPeerConnection"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    still_serving(&server);
    drop(idle);
}

/// Requests a fuzzer would start from, whole and cut short, with bytes
/// flipped, in pieces of every size: signalling answers each with whole
/// HTTP responses (`drive_signalling` checks) and never panics.
#[test]
fn signalling_takes_any_bytes_in_any_pieces() {
    let sdp = offer();
    let post = format!(
        "POST /whip/cam HTTP/1.1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let play = post.replace("/whip/", "/whep/");
    let requests: Vec<Vec<u8>> = vec![
        post.clone().into_bytes(),
        format!("{post}{play}DELETE /session/1 HTTP/1.1\r\n\r\n").into_bytes(),
        b"OPTIONS /session/1 HTTP/1.1\r\n\r\nGET /whip.html HTTP/1.1\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(),
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut answered = 0;
    for request in &requests {
        for cut in [0u8, 1, 7, 255] {
            let sent = sansio_suite::whip::server::drive_signalling(request, &[cut]);
            answered += usize::from(!sent.is_empty());
        }
        for _ in 0..50 {
            let mut bytes = request.clone();
            let len = bytes.len();
            bytes.truncate(1 + random() as usize % len);
            for _ in 0..3 {
                let at = random() as usize % bytes.len();
                bytes[at] ^= random() as u8;
            }
            let cuts = random().to_le_bytes();
            let _ = sansio_suite::whip::server::drive_signalling(&bytes, &cuts);
        }
    }
    assert!(
        answered >= 12,
        "only {answered} of the whole requests were answered"
    );
    let first = sansio_suite::whip::server::drive_signalling(&requests[0], &[3]);
    let reply = sansio_suite::whip::client::parse_reply(&first).unwrap();
    assert_eq!(
        reply.status,
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

#[test]
fn trickled_candidates_are_taken_and_bad_patches_refused() {
    let server = start(1, None);
    let sdp = offer();
    let created = request(server.http, "POST", "/whip/cam", &[SDP], sdp.as_bytes()).unwrap();
    assert_eq!(created.status, 201);
    let session = created.header("location").unwrap().to_owned();
    let etag = created.header("etag").unwrap().to_owned();
    let ufrag = sdp
        .lines()
        .find_map(|line| line.strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .to_owned();
    let frag = ("Content-Type", "application/trickle-ice-sdpfrag");
    let candidate = format!(
        "a=ice-ufrag:{ufrag}\r\na=mid:0\r\na=candidate:1 1 udp 2113929471 127.0.0.1 40000 typ host\r\n"
    );
    let reply = request(
        server.http,
        "PATCH",
        &session,
        &[frag, ("If-Match", &etag)],
        candidate.as_bytes(),
    )
    .unwrap();
    assert_eq!(
        reply.status,
        204,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let stale = request(
        server.http,
        "PATCH",
        &session,
        &[frag, ("If-Match", "\"0-9\"")],
        candidate.as_bytes(),
    )
    .unwrap();
    assert_eq!(stale.status, 412);
    let malformed = request(
        server.http,
        "PATCH",
        &session,
        &[frag],
        b"a=candidate:this is no candidate\r\n",
    )
    .unwrap();
    assert_eq!(malformed.status, 422);
    let garbage = request(server.http, "PATCH", &session, &[frag], b"\x01\x02 not sdp").unwrap();
    assert_eq!(garbage.status, 422);
    let wrong_type = request(server.http, "PATCH", &session, &[SDP], candidate.as_bytes()).unwrap();
    assert_eq!(wrong_type.status, 415);
    let restart = "a=ice-ufrag:newufrag\r\na=ice-pwd:newpasswordnewpasswordnew\r\n";
    let reply = request(server.http, "PATCH", &session, &[frag], restart.as_bytes()).unwrap();
    assert_eq!(
        reply.status, 405,
        "ICE restarts are answered 405 (RFC 9725 allows it)"
    );
    still_serving(&server);
}

#[test]
fn an_h264_stream_is_forwarded_too() {
    use sansio_suite::whip::client::Role;
    let server = start(2, None);
    let publisher = Role::Publisher {
        frame: 4000,
        codec: str0m::format::Codec::H264,
    };
    let _publisher = TestPeer::join(server.http, "h264", publisher).unwrap();
    let viewer = TestPeer::play(server.http, "h264").unwrap();
    util::eventually("the viewer gets H.264 video and audio", || {
        viewer.counts.h264.load(Relaxed) > 30 && viewer.counts.audio.load(Relaxed) > 0
    });
    assert_eq!(
        viewer.counts.h264.load(Relaxed),
        viewer.counts.video.load(Relaxed)
    );
}

#[test]
fn a_publisher_that_vanishes_ends_its_stream_after_the_ice_timeout() {
    let server = start(2, None);
    let mut publisher = TestPeer::publish(server.http, "gone").unwrap();
    let viewer = TestPeer::play(server.http, "gone").unwrap();
    util::eventually("the viewer plays", || viewer.counts.video.load(Relaxed) > 5);
    // The browser closes without a DELETE: the server hears nothing more.
    let started = std::time::Instant::now();
    publisher.stop();
    let give_up = started + Duration::from_secs(60);
    while tasks(&server) != 3 {
        assert!(
            std::time::Instant::now() < give_up,
            "the sessions did not end within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("ended after {:?}", started.elapsed());
}

#[test]
fn vp9_and_av1_streams_are_forwarded_too() {
    use sansio_suite::whip::client::Role;
    let server = start(2, None);
    for (stream, codec) in [
        ("vp9", str0m::format::Codec::Vp9),
        ("av1", str0m::format::Codec::Av1),
    ] {
        let publisher = Role::Publisher { frame: 3000, codec };
        let _publisher = TestPeer::join(server.http, stream, publisher).unwrap();
        let viewer = TestPeer::play(server.http, stream).unwrap();
        util::eventually(&format!("the viewer gets {codec:?} video"), || {
            viewer.counts.video.load(Relaxed) > 30 && viewer.counts.audio.load(Relaxed) > 0
        });
    }
}
