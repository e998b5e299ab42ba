//! In-process WebRTC peers for the tests and the fan-out benchmark: a
//! publisher that sends synthetic VP8 video and Opus audio over WHIP, and
//! viewers that play over WHEP and count what they receive. Each is a
//! `str0m::Rtc` on its own thread with its own UDP socket on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// An HTTP response, as a test reads it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Sends one request (`Connection: close`) and reads the response (30 s at
/// most: a server saturated by the fan-out benchmark answers late).
///
/// # Errors
///
/// The connection failed, or the response is not HTTP.
pub fn request(
    server: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, String> {
    let mut stream = TcpStream::connect(server).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    parse_reply(&response)
}

/// Parses a whole response.
///
/// # Errors
///
/// What is wrong with it.
pub fn parse_reply(response: &[u8]) -> Result<Reply, String> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of head")?;
    let head = std::str::from_utf8(&response[..end]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or("no status")?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: response[end + 4..].to_vec(),
    })
}

/// What a peer counted.
#[derive(Debug, Default)]
pub struct Counts {
    /// Video frames received (viewer) or sent (publisher).
    pub video: AtomicU64,
    /// Audio packets received or sent.
    pub audio: AtomicU64,
    /// Distinct video payloads received: the picture changes.
    pub distinct_video: AtomicU64,
    /// The connection is up.
    pub connected: AtomicBool,
    /// The connection has ended.
    pub ended: AtomicBool,
    /// RTP and RTCP datagrams received (every viewer counts them; a light
    /// viewer only counts them).
    pub packets: AtomicU64,
    /// Keyframe requests (PLI/FIR) the server sent a publisher.
    pub keyframe_requests: AtomicU64,
    /// Of `video`, H.264 frames.
    pub h264: AtomicU64,
}

/// How a peer takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends video frames of this many bytes, 30 a second, and audio.
    Publisher {
        /// Bytes per video frame (a 2.5 Mbit/s stream is about 10,400).
        frame: usize,
        /// The video codec: `Codec::Vp8` or `Codec::H264`.
        codec: Codec,
    },
    /// Receives, decrypts and depacketizes everything (counts frames).
    Viewer,
    /// Receives and counts RTP/RTCP datagrams without decrypting them: a
    /// cheap stand-in for many viewers in the fan-out benchmark (ICE
    /// consent and DTLS still run through str0m).
    Counter,
}

/// A peer running on its thread.
#[derive(Debug)]
pub struct TestPeer {
    /// Its session URL on the server.
    pub session: String,
    /// What it counted so far.
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestPeer {
    /// A publisher of `stream` through the server's signalling at `http`.
    ///
    /// # Errors
    ///
    /// Signalling failed (with the server's status and message).
    pub fn publish(http: SocketAddr, stream: &str) -> Result<TestPeer, String> {
        TestPeer::join(
            http,
            stream,
            Role::Publisher {
                frame: 1200,
                codec: Codec::Vp8,
            },
        )
    }

    /// A viewer of `stream`.
    ///
    /// # Errors
    ///
    /// Signalling failed (with the server's status and message).
    pub fn play(http: SocketAddr, stream: &str) -> Result<TestPeer, String> {
        TestPeer::join(http, stream, Role::Viewer)
    }

    /// A peer of `stream` in `role`.
    ///
    /// # Errors
    ///
    /// Signalling failed (with the server's status and message).
    pub fn join(http: SocketAddr, stream: &str, role: Role) -> Result<TestPeer, String> {
        let (path, direction) = match role {
            Role::Publisher { .. } => (format!("/whip/{stream}"), Direction::SendOnly),
            Role::Viewer | Role::Counter => (format!("/whep/{stream}"), Direction::RecvOnly),
        };
        let path = path.as_str();
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        let mut rtc = Rtc::builder().build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate);
        let mut change = rtc.sdp_api();
        let video = change.add_media(MediaKind::Video, direction, None, None, None);
        let audio = change.add_media(MediaKind::Audio, direction, None, None, None);
        let (offer, pending) = change.apply().ok_or("no offer")?;
        let reply = request(
            http,
            "POST",
            path,
            &[("Content-Type", "application/sdp")],
            offer.to_sdp_string().as_bytes(),
        )?;
        if reply.status != 201 {
            return Err(format!(
                "{} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ));
        }
        let session = reply.header("location").ok_or("no Location")?.to_owned();
        let answer = std::str::from_utf8(&reply.body)
            .ok()
            .and_then(|sdp| SdpAnswer::from_sdp_string(sdp).ok())
            .ok_or("the answer is not SDP")?;
        accept(&mut rtc, pending, answer)?;
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (counts, stop) = (Arc::clone(&counts), Arc::clone(&stop));
            thread::spawn(move || {
                let media = Media { video, audio, role };
                run(rtc, socket, local, &media, &counts, &stop);
                counts.ended.store(true, Ordering::SeqCst);
            })
        };
        Ok(TestPeer {
            session,
            counts,
            stop,
            thread: Some(thread),
        })
    }

    /// Whether the connection has ended (by the server, or by `stop`).
    pub fn ended(&self) -> bool {
        self.counts.ended.load(Ordering::SeqCst)
    }

    /// Stops the peer (without telling the server) and waits for its thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestPeer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept(rtc: &mut Rtc, pending: SdpPendingOffer, answer: SdpAnswer) -> Result<(), String> {
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| format!("the answer was refused: {e}"))
}

struct Media {
    video: Mid,
    audio: Mid,
    role: Role,
}

/// A synthetic frame of `len` bytes in `codec`: a keyframe every 30th,
/// different bytes each time.
fn frame(codec: Codec, n: u64, len: usize) -> Vec<u8> {
    match codec {
        Codec::H264 => h264_frame(n, len),
        Codec::Av1 => av1_frame(n, len),
        _ => vp8_frame(n, len),
    }
}

/// A synthetic AV1 temporal unit of OBUs, each with its size: a temporal
/// delimiter, a sequence header every 30th frame, and a frame OBU.
fn av1_frame(n: u64, len: usize) -> Vec<u8> {
    fn obu(unit: &mut Vec<u8>, kind: u8, payload: &[u8]) {
        unit.push(kind << 3 | 0x02);
        let mut size = payload.len();
        loop {
            let byte = (size & 0x7F) as u8;
            size >>= 7;
            if size == 0 {
                unit.push(byte);
                break;
            }
            unit.push(byte | 0x80);
        }
        unit.extend_from_slice(payload);
    }
    let mut unit = Vec::with_capacity(len + 16);
    obu(&mut unit, 2, &[]);
    if n.is_multiple_of(30) {
        obu(&mut unit, 1, &[0, 0, 0, 0x40, 0x0A, 0x0B]);
    }
    let body: Vec<u8> = (0..len.max(1))
        .map(|i| (n as usize * 31 + i) as u8)
        .collect();
    obu(&mut unit, 6, &body);
    unit
}

/// A synthetic H.264 access unit in Annex B: SPS, PPS and an IDR slice
/// every 30th frame, a non-IDR slice otherwise; no byte pattern that would
/// need emulation prevention.
fn h264_frame(n: u64, len: usize) -> Vec<u8> {
    let mut unit = Vec::with_capacity(len + 32);
    let mut nal = |header: u8, body: usize| {
        unit.extend_from_slice(&[0, 0, 0, 1, header]);
        unit.extend((0..body).map(|i| ((n as usize * 31 + i) % 250 + 1) as u8));
    };
    if n.is_multiple_of(30) {
        nal(0x67, 8); // SPS
        nal(0x68, 4); // PPS
        nal(0x65, len.saturating_sub(30).max(1)); // IDR slice
    } else {
        nal(0x41, len.saturating_sub(5).max(1)); // non-IDR slice
    }
    unit
}

/// A synthetic VP8 frame of `len` bytes: a keyframe every 30th (the first
/// bit clear), different bytes each time.
fn vp8_frame(n: u64, len: usize) -> Vec<u8> {
    let mut frame = vec![0u8; len.max(1)];
    frame[0] = if n.is_multiple_of(30) { 0x10 } else { 0x11 };
    for (i, byte) in frame.iter_mut().enumerate().skip(1) {
        *byte = (n as usize * 31 + i) as u8;
    }
    frame
}

/// Drives `rtc` until it ends or `stop`: sends 30 frames/s of video and
/// 50 packets/s of audio once connected (a publisher), counts what
/// arrives (a viewer).
fn run(
    mut rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    media: &Media,
    counts: &Counts,
    stop: &AtomicBool,
) {
    let started = Instant::now();
    let mut buf = vec![0u8; 2000];
    let (mut next_video, mut next_audio) = (started, started);
    let (mut video_sent, mut audio_sent) = (0u64, 0u64);
    let mut last_video: Option<Arc<[u8]>> = None;
    while !stop.load(Ordering::SeqCst) && rtc.is_alive() {
        // Drain to the next timeout.
        let deadline = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(deadline)) => break deadline,
                Ok(Output::Transmit(transmit)) => {
                    let _ = socket.send_to(&transmit.contents, transmit.destination);
                }
                Ok(Output::Event(event)) => match event {
                    Event::Connected => counts.connected.store(true, Ordering::SeqCst),
                    Event::KeyframeRequest(_) => {
                        counts.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        rtc.disconnect();
                    }
                    Event::MediaData(data) if media.role == Role::Viewer => {
                        let codec = data.params.spec().codec;
                        if codec == Codec::Opus {
                            counts.audio.fetch_add(1, Ordering::Relaxed);
                        } else {
                            if codec == Codec::H264 {
                                counts.h264.fetch_add(1, Ordering::Relaxed);
                            }
                            counts.video.fetch_add(1, Ordering::Relaxed);
                            if last_video.as_deref() != Some(&data.data[..]) {
                                counts.distinct_video.fetch_add(1, Ordering::Relaxed);
                            }
                            last_video = Some(Arc::clone(&data.data));
                        }
                    }
                    _ => {}
                },
                Err(_) => return,
            }
        };
        if !rtc.is_alive() {
            return;
        }
        let now = Instant::now();
        let sending = match media.role {
            Role::Publisher { frame, codec } => Some((frame, codec)),
            Role::Viewer | Role::Counter => None,
        };
        if let Some((size, codec)) = sending
            && counts.connected.load(Ordering::SeqCst)
        {
            if now >= next_video {
                next_video += Duration::from_millis(33);
                if let Some(writer) = rtc.writer(media.video) {
                    let pt = writer
                        .payload_params()
                        .find(|p| p.spec().codec == codec)
                        .map(|p| p.pt());
                    let Some(pt) = pt else { return };
                    let time = MediaTime::from_90khz(video_sent * 3000);
                    if writer
                        .write(pt, now, time, frame(codec, video_sent, size))
                        .is_ok()
                    {
                        video_sent += 1;
                        counts.video.fetch_add(1, Ordering::Relaxed);
                    }
                }
                continue;
            }
            if now >= next_audio {
                next_audio += Duration::from_millis(20);
                if let Some(writer) = rtc.writer(media.audio) {
                    let pt = writer
                        .payload_params()
                        .find(|p| p.spec().codec == Codec::Opus)
                        .map(|p| p.pt());
                    let Some(pt) = pt else { return };
                    let time = MediaTime::new(audio_sent * 960, Frequency::FORTY_EIGHT_KHZ);
                    if writer.write(pt, now, time, vec![0xF8, 0xFF, 0xFE]).is_ok() {
                        audio_sent += 1;
                        counts.audio.fetch_add(1, Ordering::Relaxed);
                    }
                }
                continue;
            }
        }
        // Wait for a packet until the earliest of the Rtc's deadline and
        // the next frame to send, at most 20 ms (to see `stop`).
        let mut wake = deadline.min(now + Duration::from_millis(20));
        if sending.is_some() && counts.connected.load(Ordering::SeqCst) {
            wake = wake.min(next_video).min(next_audio);
        }
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        let _ = socket.set_read_timeout(Some(wait));
        let input = match socket.recv_from(&mut buf) {
            Ok((len, _))
                if len > 0 && (128..192).contains(&buf[0]) && media.role == Role::Counter =>
            {
                // RTP or RTCP (RFC 7983): counted, not decrypted. The Rtc
                // still gets its timeouts (ICE consent, DTLS).
                counts.packets.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                if now < deadline {
                    continue;
                }
                Input::Timeout(now)
            }
            Ok((len, source)) => match Receive::new(Protocol::Udp, source, local, &buf[..len]) {
                Ok(receive) => Input::Receive(Instant::now(), receive),
                Err(_) => continue,
            },
            Err(_) => Input::Timeout(Instant::now()),
        };
        if rtc.handle_input(input).is_err() {
            return;
        }
    }
}
