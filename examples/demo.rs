//! The main demo: a sansio UDP echo server on the default (mio) backend and a
//! load generator against it, in one bounded command; prints what the load
//! generator measured and what the workers saw.
//!
//! ```text
//! cargo run --release --example demo
//! cargo run --release --example demo -- --metrics 127.0.0.1:9000   # and scrape http://127.0.0.1:9000/metrics
//! ```
//!
//! Two loads, `--seconds` each (2 by default): 64-byte datagrams with 8 in
//! flight (latency), then 1,200-byte datagrams with 4 sockets × 64 in flight
//! (throughput). With `--metrics ADDR` the runtime's statistics are published
//! every 250 ms and served in Prometheus' text format at
//! `http://ADDR/metrics` while the demo runs. `RUST_LOG=sansio=info` shows
//! the runtime's log lines.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sansio::{Backend, Runtime};
use sansio_suite::cli;
use sansio_suite::echo::{self, EchoWorker};
use sansio_suite::loadgen::{self, Load};

/// The sansio demo.
#[derive(Debug, Parser)]
#[command(about = "A sansio UDP echo server measured by a load generator, in one bounded command")]
struct Args {
    /// How long each of the two loads runs.
    #[arg(long, default_value = "2", value_parser = cli::seconds)]
    seconds: Duration,
    /// The backend the worker sleeps in: mio, polling, busy-poll or io-uring.
    #[arg(long, default_value_t = Backend::Mio)]
    backend: Backend,
    /// Serve the runtime's metrics in Prometheus' format at http://ADDR/metrics
    /// (without it, none are published).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

/// How often the runtime publishes its statistics with `--metrics`.
const METRICS_EVERY: Duration = Duration::from_millis(250);

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    let mut builder = Runtime::<EchoWorker>::builder()
        .workers(1)
        .backend(args.backend);
    if let Some(addr) = args.metrics {
        let exporter = metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install();
        if let Err(error) = exporter {
            eprintln!("demo: serving metrics on {addr}: {error}");
            return ExitCode::FAILURE;
        }
        builder = builder.publish_metrics(METRICS_EVERY);
    }
    let addr = "127.0.0.1:0".parse().expect("valid");
    let (runtime, server) = match echo::start_built(builder, 1, addr, echo::options()) {
        Ok(started) => started,
        Err(message) => {
            eprintln!("demo: {message}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "sansio demo: UDP echo on {server} (1 worker, {} backend)",
        args.backend
    );
    if let Some(addr) = args.metrics {
        println!("metrics: http://{addr}/metrics");
    }
    runtime.stats();
    let loads = [
        ("64 B, 8 in flight", 1, 8, 64),
        ("1200 B, 4 × 64 in flight", 4, 64, 1200),
    ];
    for (name, sockets, window, size) in loads {
        let load = Load {
            server,
            sockets,
            window,
            size,
            duration: args.seconds,
            gso: false,
        };
        match loadgen::run(load) {
            Ok(report) => println!("  {name:>24}: {report}"),
            Err(error) => {
                eprintln!("demo: load generator: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{}", runtime.stats());
    match runtime.shutdown(Duration::from_secs(2)) {
        Ok(report) => {
            println!(
                "stopped: {} task(s) finished, workers joined",
                report.finished
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("demo: {error}");
            ExitCode::FAILURE
        }
    }
}
