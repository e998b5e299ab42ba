//! Every example run as the program a user runs: `--help` compared with its
//! snapshot (`tests/cli/<example>.help`; `SNAPSHOTS=overwrite cargo test
//! --test examples` rewrites them), unknown flags refused, the README's
//! example commands accepted, and each example run for a moment with its
//! output checked (a received count, an echo, a table, a metrics scrape).
//!
//! `cargo test` builds the examples before it runs the tests; the binaries
//! are found next to this test's own (`target/<profile>/examples/`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Every example, in `examples/`.
const EXAMPLES: [&str; 10] = [
    "controller_echo",
    "controller_tour",
    "demo",
    "multi_types",
    "soak",
    "tcp_chat",
    "udp_echo_client",
    "udp_echo_server",
    "whip_fanout",
    "whip_whep",
];

/// The longest any one run here may take.
const PATIENCE: Duration = Duration::from_secs(60);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The built example `name`: built (or found up to date) by cargo once per
/// run of this file, so that `cargo test --test examples` alone never runs
/// stale programs.
fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    BUILT.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(root())
            .args(["build", "--quiet", "--examples"]);
        if profile.file_name().is_some_and(|dir| dir == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("cargo runs");
        assert!(status.success(), "cargo build --examples failed: {status}");
    });
    let path = profile.join("examples").join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

fn command(name: &str, args: &[&str]) -> Command {
    let mut command = Command::new(binary(name));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A running example, killed if still running when dropped.
struct Running(Child);

impl Running {
    /// Waits for the example to end by itself, at most [`PATIENCE`].
    fn status(mut self, what: &str) -> ExitStatus {
        let give_up = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < give_up, "{what} did not stop by itself");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads all of `pipe` on a thread of its own (so that a chatty child never
/// blocks on a full pipe while it is waited for).
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Waits for `child` at most [`PATIENCE`] (killing it after); its output.
fn finish(mut child: Child, what: &str) -> Output {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let running = Running(child);
    let status = running.status(what);
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs example `name` with `args` to its end.
fn run(name: &str, args: &[&str]) -> Output {
    let child = command(name, args).spawn().unwrap();
    finish(child, &format!("{name} {args:?}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the run ended with `code`, showing its output if not.
fn assert_exit(output: &Output, code: i32, what: &str) -> String {
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        text(&output.stderr)
    );
    stdout
}

#[test]
fn the_list_holds_every_example() {
    let mut found: Vec<String> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|file| file.strip_suffix(".rs").map(str::to_owned))
        .collect();
    found.sort();
    assert_eq!(
        found, EXAMPLES,
        "add the new example to EXAMPLES and test it here"
    );
}

#[test]
fn help_lists_every_flag_with_its_default_as_the_snapshot_says() {
    let overwrite = std::env::var("SNAPSHOTS").is_ok_and(|value| value == "overwrite");
    let mut stale = Vec::new();
    for name in EXAMPLES {
        let output = run(name, &["--help"]);
        let help = assert_exit(&output, 0, &format!("{name} --help"));
        let snapshot = root().join("tests/cli").join(format!("{name}.help"));
        if overwrite {
            std::fs::create_dir_all(snapshot.parent().unwrap()).unwrap();
            std::fs::write(&snapshot, &help).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
        if help != expected {
            stale.push(format!(
                "{name}:\n--- {}\n{expected}\n--- now\n{help}",
                snapshot.display()
            ));
        }
        // Every option taking a value gives its default, or says what
        // happens without it.
        for line in help.lines().filter(|line| line.contains(" <")) {
            let lower = line.to_lowercase();
            assert!(
                lower.contains("default") || lower.contains("without it"),
                "{name}: an option without its default: {line}"
            );
        }
    }
    assert!(
        stale.is_empty(),
        "--help changed (SNAPSHOTS=overwrite cargo test --test examples rewrites the snapshots):\n{}",
        stale.join("\n")
    );
}

#[test]
fn unknown_flags_and_bad_values_are_refused() {
    for name in EXAMPLES {
        let output = run(name, &["--no-such-flag"]);
        assert_exit(&output, 2, &format!("{name} --no-such-flag"));
        assert!(
            text(&output.stderr).contains("unexpected argument '--no-such-flag'"),
            "{name}: {}",
            text(&output.stderr)
        );
    }
    for (name, args, says) in [
        (
            "udp_echo_server",
            &["--workers", "0"][..],
            "must be at least 1",
        ),
        (
            "udp_echo_server",
            &["--seconds", "soon"],
            "not a number of seconds",
        ),
        ("udp_echo_server", &["--backend", "epoll"], "epoll"),
        ("udp_echo_client", &["--size", "8"], "16..=65507"),
        ("demo", &["--metrics", "nowhere"], "invalid socket address"),
        (
            "controller_echo",
            &["--inflight", "many"],
            "not a whole number",
        ),
    ] {
        let output = run(name, args);
        assert_exit(&output, 2, &format!("{name} {args:?}"));
        let stderr = text(&output.stderr);
        assert!(stderr.contains(says), "{name} {args:?}: {stderr}");
    }
}

/// The example commands of the README: `cargo run … --example NAME -- ARGS`.
fn readme_commands() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut commands = Vec::new();
    for line in readme.lines() {
        let Some(at) = line.find("--example ") else {
            continue;
        };
        let rest = &line[at + "--example ".len()..];
        // Up to a comment, a pipe or the end of an inline code span.
        let rest = rest.split(['#', '|', '`', '&']).next().unwrap_or("");
        let mut words = rest.split_whitespace();
        let Some(name) = words.next() else { continue };
        let args: Vec<String> = match words.next() {
            Some("--") => words.map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        commands.push((name.to_owned(), args));
    }
    commands
}

#[test]
fn the_readme_example_commands_name_real_examples_and_flags() {
    let commands = readme_commands();
    assert!(commands.len() >= 8, "{commands:?}");
    for (name, args) in commands {
        assert!(
            EXAMPLES.contains(&name.as_str()),
            "README runs a missing example: {name}"
        );
        // The flags are parsed (and their values checked) before `--help`
        // is reached: a flag the example does not have fails.
        let mut with_help: Vec<&str> = args.iter().map(String::as_str).collect();
        with_help.push("--help");
        let output = run(&name, &with_help);
        assert_exit(&output, 0, &format!("README: {name} {args:?}"));
    }
}

/// The lines a running example prints, read on a thread of their own so
/// that waiting for one is bounded.
struct Lines(mpsc::Receiver<String>);

impl Lines {
    /// Lines of `child`'s stdout (taken from it).
    fn of(child: &mut Child) -> Lines {
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take();
        // stderr is read too, so that a child logging there never blocks.
        drain(stderr);
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines(rx)
    }

    /// The next line that contains `part` (within [`PATIENCE`]).
    fn with(&mut self, part: &str, what: &str) -> String {
        self.matching(
            |line| line.contains(part),
            &format!("{what}: a line with {part:?}"),
        )
    }

    /// The next line `wanted` accepts (within [`PATIENCE`]).
    fn matching(&mut self, wanted: impl Fn(&str) -> bool, what: &str) -> String {
        let give_up = Instant::now() + PATIENCE;
        loop {
            match self
                .0
                .recv_timeout(give_up.saturating_duration_since(Instant::now()))
            {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{what}: not printed within {PATIENCE:?}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{what}: the program ended first")
                }
            }
        }
    }
}

/// A port nothing listens on now (taken and released).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET path` with curl, a real client; the body.
fn curl(url: &str) -> String {
    let output = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            "10",
            url,
        ])
        .output()
        .expect("curl runs (apt-get install curl)");
    assert!(
        output.status.success(),
        "curl {url}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// The value of the counter `name` (summed over its label sets) in a
/// Prometheus text exposition.
fn counter(exposition: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = exposition
        .lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[test]
fn the_demo_measures_the_echo_and_serves_metrics_that_move() {
    let metrics = free_port();
    let mut child = command(
        "demo",
        &["--seconds", "1", "--metrics", &metrics.to_string()],
    )
    .spawn()
    .unwrap();
    let mut lines = Lines::of(&mut child);
    let child = Running(child);
    lines.with("sansio demo: UDP echo on 127.0.0.1:", "demo");
    lines.with(&format!("metrics: http://{metrics}/metrics"), "demo");
    // During the first load: the echo's datagram counter as published.
    let url = format!("http://{metrics}/metrics");
    let give_up = Instant::now() + PATIENCE;
    let first = loop {
        let scraped = curl(&url);
        if let Some(received) = counter(&scraped, "sansio_worker_udp_received_total") {
            assert!(
                scraped.contains("# TYPE sansio_worker_udp_received_total counter"),
                "{scraped}"
            );
            assert!(
                scraped.contains("sansio_worker_utilization_ratio{"),
                "{scraped}"
            );
            assert!(scraped.contains("task=\"UdpEcho\""), "{scraped}");
            break received;
        }
        assert!(Instant::now() < give_up, "no sansio metrics in:\n{scraped}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let latency = lines.with("64 B, 8 in flight:", "demo");
    assert!(
        latency.contains("packets/s") && latency.contains("p50"),
        "{latency}"
    );
    // The second load is running: the counter has moved on.
    std::thread::sleep(Duration::from_millis(600));
    let second = counter(&curl(&url), "sansio_worker_udp_received_total").unwrap();
    assert!(
        second > first,
        "the counter did not move: {first} then {second}"
    );
    let throughput = lines.with("1200 B, 4 × 64 in flight:", "demo");
    let packets: f64 = throughput
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0.0);
    assert!(packets > 0.0, "{throughput}");
    lines.with("stopped: 1 task(s) finished", "demo");
    let status = child.status("demo");
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_udp_echo_server_and_client_measure_each_other_and_say_when_nothing_came_back() {
    let mut server = command(
        "udp_echo_server",
        &["--addr", "127.0.0.1:0", "--seconds", "20"],
    )
    .spawn()
    .unwrap();
    let mut lines = Lines::of(&mut server);
    let server = Running(server);
    let started = lines.with("udp_echo_server: echoing on ", "udp_echo_server");
    let addr = started
        .split_whitespace()
        .nth(3)
        .expect("the address after 'echoing on'")
        .to_owned();
    let output = run(
        "udp_echo_client",
        &["--server", &addr, "--seconds", "0.5", "--window", "4"],
    );
    let report = assert_exit(&output, 0, "udp_echo_client");
    let packets: f64 = report
        .lines()
        .last()
        .and_then(|line| line.split(' ').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0.0);
    assert!(packets > 0.0, "{report}");
    // A stats line (once a second) shows the echoes.
    lines.matching(
        |line| line.contains("udp sockets 1 rx ") && !line.contains(" rx 0 "),
        "udp_echo_server: stats with the echoes",
    );
    drop(server);

    // Nothing listening: the client says so and fails.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let nobody = silent.local_addr().unwrap().to_string();
    let output = run(
        "udp_echo_client",
        &["--server", &nobody, "--seconds", "0.3"],
    );
    assert_exit(&output, 1, "udp_echo_client with no server");
    assert!(
        text(&output.stderr).contains("no echo came back"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn the_udp_echo_server_shares_a_port_only_when_told_to() {
    // A leftover server holds the port with SO_REUSEPORT.
    let leftover = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    leftover.set_reuse_port(true).unwrap();
    leftover
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let port = leftover
        .local_addr()
        .unwrap()
        .as_socket()
        .unwrap()
        .to_string();
    let output = run("udp_echo_server", &["--addr", &port, "--seconds", "1"]);
    assert_exit(&output, 1, "a second server on a used port");
    assert!(
        text(&output.stderr).contains("in use"),
        "{}",
        text(&output.stderr)
    );
    // Two workers need the flag, and say so.
    let output = run(
        "udp_echo_server",
        &["--addr", "127.0.0.1:0", "--workers", "2"],
    );
    assert_exit(&output, 2, "two workers without --reuse-port");
    assert!(
        text(&output.stderr).contains("--reuse-port"),
        "{}",
        text(&output.stderr)
    );
    let output = run(
        "udp_echo_server",
        &[
            "--addr",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--reuse-port",
            "--seconds",
            "0.3",
        ],
    );
    let out = assert_exit(&output, 0, "two workers with --reuse-port");
    assert!(out.contains("stopped: 2 echo task(s) finished"), "{out}");
}

#[test]
fn the_controller_examples_run_and_report() {
    let output = run(
        "controller_echo",
        &["--seconds", "0.3", "--inflight", "8", "--quiet"],
    );
    let out = assert_exit(&output, 0, "controller_echo");
    assert!(
        out.contains("messages/s (") && out.contains("round trip p50"),
        "{out}"
    );
    assert!(
        out.contains("shut down: 1 tasks finished, 0 forced"),
        "{out}"
    );
    let output = run("controller_echo", &["--seconds", "0.3", "--bare"]);
    let out = assert_exit(&output, 0, "controller_echo --bare");
    assert!(
        out.contains("over a bare crossbeam channel") && out.contains("messages/s"),
        "{out}"
    );

    let output = run("controller_tour", &[]);
    let out = assert_exit(&output, 0, "controller_tour");
    assert!(out.contains("Pong") || out.contains("pong"), "{out}");
    assert!(out.contains("done: 2 tasks finished, 0 forced"), "{out}");

    let output = run("multi_types", &["--workers", "1"]);
    let out = assert_exit(&output, 0, "multi_types");
    assert!(out.contains("Clock#") && out.contains("finished"), "{out}");
    assert!(out.contains("Closed { members: 1, messages: 1 }"), "{out}");
}

#[test]
fn the_chat_server_greets_answers_and_stops_by_itself() {
    let mut chat = command("tcp_chat", &["--addr", "127.0.0.1:0", "--seconds", "3"])
        .spawn()
        .unwrap();
    let mut lines = Lines::of(&mut chat);
    let chat = Running(chat);
    let started = lines.with("tcp_chat: listening on ", "tcp_chat");
    let addr = started.split_whitespace().nth(3).unwrap().to_owned();
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"NICK ann\nSTATS\nQUIT\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("welcome "), "{reply}");
    assert!(reply.contains("ok nick ann\nstats sessions=1"), "{reply}");
    assert!(reply.ends_with("bye\n"), "{reply}");
    lines.with("stopped:", "tcp_chat");
    let status = chat.status("tcp_chat");
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_soak_passes_a_short_run() {
    let output = run("soak", &["--seconds", "3", "--workers", "2"]);
    let out = assert_exit(&output, 0, "soak --seconds 3");
    assert!(out.contains("soak: 3s on 2 workers"), "{out}");
    assert!(out.contains("soak: passed after "), "{out}");
}

#[test]
fn the_media_server_serves_its_pages_and_the_fanout_prints_its_table() {
    let http = free_port();
    let mut server = command(
        "whip_whep",
        &[
            "--http",
            &http.to_string(),
            "--udp",
            "127.0.0.1:0",
            "--seconds",
            "20",
        ],
    )
    .spawn()
    .unwrap();
    let mut lines = Lines::of(&mut server);
    let server = Running(server);
    lines.with(
        &format!("publish: http://{http}/whip.html?stream=demo"),
        "whip_whep",
    );
    let page = curl(&format!("http://{http}/whip.html?stream=demo"));
    assert!(
        page.contains("<html") || page.contains("<!doctype"),
        "{page}"
    );
    drop(server);

    let output = run(
        "whip_fanout",
        &["--viewers", "1", "--workers", "1", "--seconds", "1"],
    );
    let out = assert_exit(&output, 0, "whip_fanout");
    let row = out
        .lines()
        .find(|line| line.starts_with("| 1 | 1 | "))
        .unwrap_or_else(|| panic!("no row for 1 worker, 1 viewer:\n{out}"));
    let forwarded: f64 = row.split('|').nth(3).unwrap().trim().parse().unwrap();
    assert!(forwarded > 0.0, "{row}");
}
