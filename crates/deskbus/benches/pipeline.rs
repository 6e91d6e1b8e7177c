//! webhook → spool → file, end to end, against the real release binary.
//!
//! Prints a table: events/s at batch sizes 1 and 100 (fsync'd spool commits
//! and fsync'd file batches), p50/p99 ingest-to-delivery latency at 1,000
//! events/s, and deskbus's peak RSS. The baseline, measured in the same run
//! with the same client, is a bare HTTP server that parses the same JSON and
//! answers 202 without storing anything: the ceiling of HTTP on this machine.
//!
//! `cargo bench -p deskbus --bench pipeline`

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Deskbus, Process, Table, blast, event, free_port, quantile, wait_count};
use serde_json::{Value, json};

const CONNECTIONS: usize = 32;

/// Counts lines appended to a file, reading only what is new.
struct LineCounter {
    offset: u64,
    lines: usize,
}

impl LineCounter {
    fn update(&mut self, path: &Path) -> usize {
        if let Ok(mut file) = std::fs::File::open(path) {
            let _ = file.seek(SeekFrom::Start(self.offset));
            let mut chunk = Vec::new();
            let _ = file.read_to_end(&mut chunk);
            self.offset += chunk.len() as u64;
            self.lines += chunk.iter().filter(|&&c| c == b'\n').count();
        }
        self.lines
    }
}

/// deskbus writing to `dir/out/tickets.ndjson`, fsync'd batches of 500.
fn start(dir: &Path) -> Deskbus {
    let stream = format!(
        "type = \"file\"\npath = \"{}/out/{{queue}}.ndjson\"",
        dir.display()
    );
    Deskbus::start(dir, &stream, 500)
}

/// Throughput: from the first request to the last line on disk.
async fn deskbus_throughput(batch: usize, total: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let bus = start(dir.path());
    let out = dir.path().join("out/tickets.ndjson");
    let started = Instant::now();
    blast(&bus.events_url(), total, CONNECTIONS, batch).await;
    let mut counter = LineCounter {
        offset: 0,
        lines: 0,
    };
    wait_count("lines", total, Duration::from_millis(5), async || {
        counter.update(&out)
    })
    .await;
    (
        total as f64 / started.elapsed().as_secs_f64(),
        bus.peak_rss_mib(),
    )
}

async fn baseline_throughput(batch: usize, total: usize) -> f64 {
    let port = free_port();
    let server = Process::listening(
        Command::new(std::env::current_exe().unwrap())
            .arg("--baseline-server")
            .arg(port.to_string()),
        port,
        "cannot run the baseline server",
    );
    let took = blast(
        &format!("http://127.0.0.1:{port}/events"),
        total,
        CONNECTIONS,
        batch,
    )
    .await;
    drop(server);
    total as f64 / took.as_secs_f64()
}

/// p50 and p99 from sending an event to seeing its line in the file, at a
/// steady `rate` events/s (open loop: one request per event, on schedule).
async fn latency(rate: usize, seconds: usize) -> (Duration, Duration, f64) {
    let dir = tempfile::tempdir().unwrap();
    let bus = start(dir.path());
    let total = rate * seconds;
    let sent: Arc<Vec<std::sync::OnceLock<Instant>>> =
        Arc::new((0..total).map(|_| std::sync::OnceLock::new()).collect());
    let out = dir.path().join("out/tickets.ndjson");
    let tail = {
        let sent = sent.clone();
        tokio::task::spawn_blocking(move || {
            let mut latencies = Vec::with_capacity(total);
            let mut offset = 0u64;
            let mut pending = String::new();
            while latencies.len() < total {
                if let Ok(mut file) = std::fs::File::open(&out) {
                    file.seek(SeekFrom::Start(offset)).unwrap();
                    let mut chunk = String::new();
                    offset += file.read_to_string(&mut chunk).unwrap() as u64;
                    let now = Instant::now();
                    pending.push_str(&chunk);
                    while let Some(end) = pending.find('\n') {
                        let line: String = pending.drain(..=end).collect();
                        let v: Value = serde_json::from_str(&line).unwrap();
                        let i = v["data"]["seq"].as_u64().unwrap() as usize;
                        if let Some(at) = sent[i].get() {
                            latencies.push(now - *at);
                        }
                    }
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            latencies
        })
    };
    common::steady_with(&bus.events_url(), rate, seconds, move |i| {
        let mut body = event(i);
        body["data"]["seq"] = json!(i);
        let _ = sent[i].set(Instant::now());
        body
    })
    .await;
    let mut latencies = tail.await.unwrap();
    (
        quantile(&mut latencies, 0.50),
        quantile(&mut latencies, 0.99),
        bus.peak_rss_mib(),
    )
}

fn baseline_server(port: u16) {
    use axum::routing::post;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let app = axum::Router::new().route(
            "/events",
            post(|body: axum::body::Bytes| async move {
                let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let n = parsed.as_array().map_or(1, Vec::len);
                (
                    axum::http::StatusCode::ACCEPTED,
                    format!("{{\"accepted\":{n}}}"),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--baseline-server") {
        return baseline_server(args[i + 1].parse().unwrap());
    }
    common::run(async {
        println!(
            "webhook → spool → file ({} connections, spool synchronous=FULL, file fsync per batch)",
            CONNECTIONS
        );
        let table = Table::new(14, "baseline");
        let mut peak_rss: f64 = 0.0;
        for (batch, total) in [(1usize, 40_000usize), (100, 200_000)] {
            let base = baseline_throughput(batch, total).await;
            let (ours, rss) = deskbus_throughput(batch, total).await;
            peak_rss = peak_rss.max(rss);
            table.rate(&format!("events/s, batch {batch}"), ours, base);
        }
        let (p50, p99, rss) = latency(1000, 10).await;
        peak_rss = peak_rss.max(rss);
        table.value(
            "p50 ingest→file at 1,000/s (ms)",
            p50.as_secs_f64() * 1000.0,
        );
        table.value(
            "p99 ingest→file at 1,000/s (ms)",
            p99.as_secs_f64() * 1000.0,
        );
        table.value("peak RSS of deskbus (MiB)", peak_rss);
    });
}
