//! webhook → spool → http, end to end, against the real release binary and
//! a sink of the bench's own: an axum server, in a process of its own (this
//! binary run again with `DESKBUS_BENCH_SINK_PORT`), that reads each body,
//! counts the payloads in it (one per request in `single` mode, one per
//! line in `ndjson` mode), answers 200, and tells its count on `GET /count`.
//!
//! Prints a table: events/s and p99 spool-to-ack latency with the stream's
//! `batch_size` at 1 (`mode = "single"`) and 100 (`mode = "ndjson"`). The
//! baseline, measured in the same run against the same sink, is reqwest
//! alone: the same payloads POSTed the same way (one per request, or 100 per
//! NDJSON request) by as many tasks as the stream's default `concurrency`
//! (4), with nothing stored first: the ceiling of HTTP on this machine.
//!
//! The sink runs apart from the baseline's client, as it does from deskbus,
//! so that both pay the same cross-process round trip, as with the brokers
//! of the other benches. (Sharing a runtime with its sink, the baseline did
//! 64k requests/s at batch 1; from a process of its own, 55k.)
//!
//! The CPU row is CPU time per event: deskbus's process while it drains
//! (its start included) against the bench's own process while it runs the
//! baseline (the client alone; the server is a process apart). deskbus
//! spends more by design: it also reads and deletes every event in its
//! spool. The figure moves less with the machine's noise than events/s.
//!
//! deskbus's latency is the `deskbus_stream_delivery_latency_seconds`
//! histogram (spool commit to 2xx) while the whole run is pushed at once,
//! so mostly time spent waiting in the spool backlog; the baseline's is the
//! time from sending a request to its answer.
//!
//! `cargo bench -p deskbus --features http --bench http`.

#[path = "common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use common::{
    Chunks, Deskbus, POSTERS, Process, REQUEST, Table, blast, envelopes, free_port, quantile,
    wait_count,
};

/// Requests in flight at once: the stream's default `concurrency`.
const CONCURRENCY: usize = 4;

/// The sink, in a process of its own: counts the payloads it was sent.
struct Sink {
    url: String,
    count_url: String,
    client: reqwest::Client,
    _process: Process,
}

impl Sink {
    async fn start() -> Sink {
        let port = free_port();
        let process = Process::listening(
            Command::new(std::env::current_exe().unwrap())
                .env(SINK_PORT, port.to_string())
                .stdout(Stdio::null()),
            port,
            "cannot run the bench binary as the sink",
        );
        Sink {
            url: format!("http://127.0.0.1:{port}/hook/{{queue}}"),
            count_url: format!("http://127.0.0.1:{port}/count"),
            client: common::client(),
            _process: process,
        }
    }

    async fn count(&self) -> usize {
        let answer = self.client.get(&self.count_url).send().await.unwrap();
        answer.text().await.unwrap().parse().unwrap()
    }
}

/// Set when this binary runs as the sink: the port it listens on.
const SINK_PORT: &str = "DESKBUS_BENCH_SINK_PORT";

/// The sink's process: serves until killed.
async fn serve_sink(port: u16) {
    let received = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/hook/{queue}", post(take))
        .route("/count", get(count))
        .with_state(received);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    axum::serve(listener, app).await.unwrap();
}

async fn count(State(received): State<Arc<AtomicUsize>>) -> String {
    received.load(Ordering::Relaxed).to_string()
}

/// One payload per request, or one per NDJSON line.
async fn take(State(received): State<Arc<AtomicUsize>>, body: Bytes) -> &'static str {
    let payloads = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    received.fetch_add(payloads, Ordering::Relaxed);
    "ok"
}

fn mode(batch: usize) -> &'static str {
    if batch == 1 { "single" } else { "ndjson" }
}

/// deskbus: events/s from the first request to the last payload at the
/// sink, and the p99 spool-to-ack latency of the run.
async fn deskbus(sink: &Sink, batch: usize, total: usize) -> (f64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let stream = format!(
        "type = \"http\"\nurl = \"{}\"\nmode = \"{}\"",
        sink.url,
        mode(batch)
    );
    let bus = Deskbus::start(dir.path(), &stream, batch);
    let before = sink.count().await;
    let started = Instant::now();
    blast(&bus.events_url(), total, POSTERS, REQUEST).await;
    wait_count("payloads", total, Duration::from_millis(5), async || {
        sink.count().await - before
    })
    .await;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    (rate, bus.p99_latency().await)
}

/// deskbus draining `total` events spooled before it starts: events/s
/// from its start to the last payload at the sink (the stream alone).
/// Also the CPU time deskbus used, its start included.
async fn deskbus_drain(sink: &Sink, batch: usize, total: usize) -> (f64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    common::fill_spool(dir.path(), total, "tickets").await;
    let stream = format!(
        "type = \"http\"\nurl = \"{}\"\nmode = \"{}\"",
        sink.url,
        mode(batch)
    );
    let before = sink.count().await;
    let started = Instant::now();
    let bus = Deskbus::start(dir.path(), &stream, batch);
    wait_count("payloads", total, Duration::from_millis(5), async || {
        sink.count().await - before
    })
    .await;
    (
        total as f64 / started.elapsed().as_secs_f64(),
        bus.cpu_time(),
    )
}

/// reqwest alone: `CONCURRENCY` tasks POSTing the same bodies the same way.
async fn baseline(sink: &Sink, batch: usize, total: usize) -> (f64, Duration) {
    let url = sink.url.replace("{queue}", "tickets");
    let client = common::client_builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let bodies = envelopes();
    let chunks = Chunks::new(total, batch);
    let before = sink.count().await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, chunks, bodies) =
            (client.clone(), url.clone(), chunks.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while let Some(range) = chunks.next_range() {
                let (body, content_type) = if batch == 1 {
                    (
                        bodies[range.start % bodies.len()].clone(),
                        "application/json",
                    )
                } else {
                    let mut body = Vec::new();
                    for i in range {
                        body.extend_from_slice(&bodies[i % bodies.len()]);
                        body.push(b'\n');
                    }
                    (body, "application/x-ndjson")
                };
                let sent = Instant::now();
                let answer = client
                    .post(&url)
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert!(answer.status().is_success());
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = common::join(tasks).await.concat();
    assert_eq!(sink.count().await - before, total);
    let rate = total as f64 / started.elapsed().as_secs_f64();
    (rate, quantile(&mut latencies, 0.99))
}

fn main() {
    if let Ok(port) = std::env::var(SINK_PORT) {
        return common::run(serve_sink(port.parse().unwrap()));
    }
    common::run(async {
        println!(
            "webhook → spool → http ({POSTERS} posters × {REQUEST} events per request, \
             stream concurrency {CONCURRENCY}, spool synchronous=FULL)"
        );
        let table = Table::new(12, "raw client");
        for (batch, total) in [(1usize, 20_000usize), (100, 100_000)] {
            let sink = Sink::start().await;
            let ((base_rate, base_p99), base_cpu) =
                common::with_own_cpu(baseline(&sink, batch, total)).await;
            let (rate, p99) = deskbus(&sink, batch, total).await;
            let (drain_rate, drain_cpu) = deskbus_drain(&sink, batch, total).await;
            table.rate(
                &format!("events/s, batch {batch} ({})", mode(batch)),
                rate,
                base_rate,
            );
            table.rate(
                &format!("drain events/s, batch {batch}"),
                drain_rate,
                base_rate,
            );
            table.cpu_per_event(
                &format!("CPU µs/event, drain b{batch}"),
                drain_cpu,
                base_cpu,
                total,
            );
            table.latency(&format!("p99 spool→ack, b{batch} (ms)"), p99, base_p99);
        }
    });
}
