//! The WHIP/WHEP server proven in a real browser: headless Chromium
//! publishes its fake camera and microphone over WHIP (`/whip.html`), two
//! pages play the stream over WHEP (`/whep.html`) — one of them served from
//! another origin, posting to the server cross-origin — and each player
//! decodes video, receives audio and sees the picture change; deleting the
//! publisher's session ends the players' streams. Chromium is driven over
//! the DevTools protocol; the server and the browser stop by themselves.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sansio::Backend;
use sansio_suite::whip::server::{self, Config};
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Headless Chromium, killed when dropped.
struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: TempDir,
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long one browser step may take.
const STEP: Duration = Duration::from_secs(30);

impl Browser {
    fn launch() -> Browser {
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
        let profile = std::env::temp_dir().join(format!(
            "sansio-chromium-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--allow-loopback-in-peer-connection",
                "--autoplay-policy=no-user-gesture-required",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "{binary} could not start ({error}): install Chromium \
                     (`apt-get install chromium`; .ci/run does) or set CHROMIUM"
                )
            });
        // Chromium says where its DevTools endpoint is on stderr.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(STEP)
            .expect("Chromium did not print its DevTools endpoint");
        let (mut socket, _) = tungstenite::connect(url.as_str()).expect("the DevTools endpoint");
        #[allow(irrefutable_let_patterns)] // Without TLS features, Plain is all there is.
        if let MaybeTlsStream::Plain(stream) = socket.get_mut() {
            stream.set_read_timeout(Some(STEP)).unwrap();
        }
        Browser {
            child,
            socket,
            next_id: 1,
            _profile: TempDir(profile),
        }
    }

    /// Sends a command (to a page's session, if given) and returns its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .expect("send to DevTools");
        loop {
            let message = self.socket.read().expect("read from DevTools");
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).expect("DevTools speaks JSON");
            if reply["id"] == json!(id) {
                assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page; returns the page's session.
    fn open(&mut self, url: &str) -> String {
        let target = self.call(None, "Target.createTarget", json!({ "url": url }));
        let id = target["targetId"].as_str().unwrap().to_owned();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": id, "flatten": true }),
        );
        attached["sessionId"].as_str().unwrap().to_owned()
    }

    /// Evaluates `expression` (awaiting a promise) in the page; its value.
    fn eval(&mut self, page: &str, expression: &str) -> Value {
        let result = self.call(
            Some(page),
            "Runtime.evaluate",
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression} threw: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until `done` holds for its value, for at most
    /// [`STEP`]; returns that value.
    fn wait_for(
        &mut self,
        page: &str,
        what: &str,
        expression: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let give_up = Instant::now() + STEP;
        loop {
            let value = self.eval(page, expression);
            if done(&value) {
                return value;
            }
            assert!(
                Instant::now() < give_up,
                "gave up waiting for {what}; last: {value}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A player's state and counters, from `RTCPeerConnection.getStats()`.
const PLAYER_STATS: &str = r#"(async () => {
  const whep = window.whep;
  if (!whep || !whep.pc) return { state: whep ? whep.state : "loading", frames: 0, audio: 0, error: whep && whep.error };
  let frames = 0, audio = 0;
  (await whep.pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") frames = r.framesDecoded || 0;
    if (r.type === "inbound-rtp" && r.kind === "audio") audio = r.packetsReceived || 0;
  });
  return { state: whep.pc.connectionState, frames, audio, error: whep.error };
})()"#;

/// A hash of the player's current picture (64 × 48), or null before one.
const PICTURE: &str = r#"(() => {
  const video = document.getElementById("video");
  if (!video.videoWidth) return null;
  const canvas = document.createElement("canvas");
  canvas.width = 64; canvas.height = 48;
  const context = canvas.getContext("2d");
  context.drawImage(video, 0, 0, 64, 48);
  const pixels = context.getImageData(0, 0, 64, 48).data;
  let hash = 0;
  for (let i = 0; i < pixels.length; i += 4) hash = (hash * 31 + pixels[i] + 7 * pixels[i + 1] + 13 * pixels[i + 2]) >>> 0;
  return hash;
})()"#;

/// Serves the player page on another origin (another port) until the test
/// ends: a site embedding a player.
fn other_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.read(&mut request);
            let page = sansio_suite::whip::pages::WHEP;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                page.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(page.as_bytes());
        }
    });
    addr
}

fn tasks(runtime: &sansio::Runtime<server::Whip>) -> usize {
    runtime
        .stats()
        .workers
        .iter()
        .flat_map(|w| w.tasks.iter().map(|(_, n)| *n))
        .sum()
}

#[test]
fn chromium_publishes_over_whip_and_two_players_play_over_whep() {
    let config = Config {
        http: "127.0.0.1:0".parse().unwrap(),
        udp: "127.0.0.1:0".parse().unwrap(),
        token: None,
        idle: Duration::from_secs(10),
        workers: 2,
    };
    let server = server::start(config, Backend::Mio).unwrap();
    let origin = format!("http://{}", server.http);
    let elsewhere = other_origin();
    let mut browser = Browser::launch();

    let publisher = browser.open(&format!("{origin}/whip.html?stream=cam"));
    browser.wait_for(
        &publisher,
        "the publisher to connect",
        "window.whip ? window.whip.state + (window.whip.error || '') : 'loading'",
        |state| state == "connected",
    );
    let players = [
        browser.open(&format!("{origin}/whep.html?stream=cam")),
        browser.open(&format!(
            "http://{elsewhere}/whep.html?stream=cam&server={origin}"
        )),
    ];
    for player in &players {
        let stats = browser.wait_for(
            player,
            "30 decoded frames and audio",
            PLAYER_STATS,
            |stats| {
                stats["frames"].as_u64().unwrap_or(0) > 30
                    && stats["audio"].as_u64().unwrap_or(0) > 0
            },
        );
        eprintln!("player: {stats}");
        assert_eq!(stats["state"], "connected", "{stats}");
        let first = browser.wait_for(player, "a picture", PICTURE, |hash| !hash.is_null());
        std::thread::sleep(Duration::from_secs(1));
        let second = browser.eval(player, PICTURE);
        eprintln!("picture: {first} then {second}");
        assert_ne!(first, second, "the picture did not change in a second");
    }
    // Signalling, a router per worker, the publisher and two players.
    assert_eq!(tasks(&server.runtime), 6);

    // The publisher stops (DELETE of its session): the players' streams end.
    browser.eval(&publisher, "document.getElementById('stop').click(); true");
    util::eventually("every session ends on the server", || {
        tasks(&server.runtime) == 3
    });
    for player in &players {
        let stats = browser.wait_for(
            player,
            "the player to see the stream end",
            PLAYER_STATS,
            |stats| {
                matches!(
                    stats["state"].as_str(),
                    Some("disconnected" | "failed" | "closed")
                )
            },
        );
        eprintln!("player after the publisher left: {stats}");
    }
    server.runtime.shutdown(Duration::from_secs(5)).unwrap();
}
