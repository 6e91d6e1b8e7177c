//! webhook → spool → nats (JetStream), end to end, against the real release
//! binary and a nats-server of the bench's own (JetStream store in a
//! temporary directory, on a free port).
//!
//! Prints a table: events/s and p99 spool-to-ack latency with the stream's
//! `batch_size` at 1 and 100. The baseline, measured in the same run against
//! the same server, is async-nats alone: the same payloads, with a
//! `Nats-Msg-Id` each, published in pipelines of the same size (send them
//! all, then await every PubAck) by as many tasks as the stream's default
//! `concurrency` (4), on one connection, with nothing stored first: the
//! ceiling of JetStream on this machine.
//!
//! The CPU row is CPU time per event: deskbus's process while it drains
//! (its start included) against the bench's own process while it runs the
//! baseline (the client alone; the server is a process apart). deskbus
//! spends more by design: it also reads and deletes every event in its
//! spool. The figure moves less with the machine's noise than events/s.
//!
//! deskbus's latency is the `deskbus_stream_delivery_latency_seconds`
//! histogram (spool commit to PubAck, interpolated within its buckets) while
//! the whole run is pushed at once, so mostly time spent waiting in the
//! spool backlog; the baseline's is the time from the first publish of a
//! pipeline to its last PubAck.
//!
//! `cargo bench -p deskbus --features nats --bench nats` (needs
//! `nats-server` on PATH: `scripts/services nats` installs it).

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Context};
use common::{
    Chunks, Deskbus, POSTERS, Process, REQUEST, Table, blast, envelopes, free_port, quantile,
    wait_count,
};

/// Batches in flight at once: the stream's default `concurrency`.
const CONCURRENCY: usize = 4;

struct NatsServer {
    _process: Process,
    url: String,
    _store: tempfile::TempDir,
}

impl NatsServer {
    fn start() -> NatsServer {
        let port = free_port();
        let store = tempfile::tempdir().unwrap();
        let process = Process::listening(
            Command::new("nats-server")
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(store.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            port,
            "nats-server is not installed; run `scripts/services nats`",
        );
        NatsServer {
            _process: process,
            url: format!("nats://127.0.0.1:{port}"),
            _store: store,
        }
    }

    async fn context(&self) -> Context {
        jetstream::new(async_nats::connect(self.url.as_str()).await.unwrap())
    }
}

/// Waits until `stream` holds `total` messages.
async fn wait_messages(context: &Context, stream: &str, total: usize) {
    wait_count(
        "messages",
        total,
        Duration::from_millis(5),
        async || match context.get_stream(stream).await {
            Ok(s) => s.cached_info().state.messages as usize,
            Err(_) => 0,
        },
    )
    .await;
}

/// deskbus publishing to `server` on `d{batch}.*`, `batch` messages at a
/// time, into a JetStream stream `DESKBUS{batch}` it creates.
fn start(dir: &Path, server: &NatsServer, batch: usize) -> Deskbus {
    let stream = format!(
        "type = \"nats\"\nurl = \"{}\"\nsubject_prefix = \"d{batch}.\"\n\
         create_stream = {{ name = \"DESKBUS{batch}\" }}",
        server.url
    );
    Deskbus::start(dir, &stream, batch)
}

/// deskbus: events/s from the first request to the last message stored,
/// and the p99 spool-to-ack latency of the run.
async fn deskbus(server: &NatsServer, batch: usize, total: usize) -> (f64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let bus = start(dir.path(), server, batch);
    let context = server.context().await;
    let started = Instant::now();
    blast(&bus.events_url(), total, POSTERS, REQUEST).await;
    wait_messages(&context, &format!("DESKBUS{batch}"), total).await;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    (rate, bus.p99_latency().await)
}

/// deskbus draining `total` events spooled before it starts: events/s
/// from its start to the last message stored (the stream alone).
/// Also the CPU time deskbus used, its start included.
async fn deskbus_drain(server: &NatsServer, batch: usize, total: usize) -> (f64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    common::fill_spool(dir.path(), total, "tickets").await;
    let context = server.context().await;
    let started = Instant::now();
    let bus = start(dir.path(), server, batch);
    wait_messages(&context, &format!("DESKBUS{batch}"), total).await;
    (
        total as f64 / started.elapsed().as_secs_f64(),
        bus.cpu_time(),
    )
}

/// async-nats alone: `CONCURRENCY` tasks, each publishing pipelines of
/// `batch` messages and awaiting every PubAck, the same bodies as deskbus.
async fn baseline(server: &NatsServer, batch: usize, total: usize) -> (f64, Duration) {
    let context = server.context().await;
    let stream = format!("BASELINE{batch}");
    context
        .create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("b{batch}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    let bodies = envelopes();
    let chunks = Chunks::new(total, batch);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (context, chunks, bodies) = (context.clone(), chunks.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let subject = format!("b{batch}.tickets");
            let mut latencies = Vec::new();
            while let Some(range) = chunks.next_range() {
                let sent = Instant::now();
                let mut acks = Vec::with_capacity(batch);
                for i in range {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", format!("baseline-{batch}-{i}").as_str());
                    headers.insert("Content-Type", "application/json");
                    let publish = jetstream::message::PublishMessage::build()
                        .payload(bodies[i % bodies.len()].clone().into())
                        .headers(headers);
                    acks.push(
                        context
                            .send_publish(subject.clone(), publish)
                            .await
                            .unwrap(),
                    );
                }
                for ack in acks {
                    ack.await.unwrap();
                }
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = common::join(tasks).await.concat();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    (rate, quantile(&mut latencies, 0.99))
}

fn main() {
    common::run(async {
        println!(
            "webhook → spool → nats JetStream ({POSTERS} posters × {REQUEST} events per request, \
             {CONCURRENCY} batches in flight, file storage, spool synchronous=FULL)"
        );
        let table = Table::new(12, "async-nats");
        for (batch, total) in [(1usize, 20_000usize), (100, 100_000)] {
            // A fresh server per measurement: each starts as empty as the
            // baseline's did, with nothing left over from another run.
            let base_server = NatsServer::start();
            let ((base_rate, base_p99), base_cpu) =
                common::with_own_cpu(baseline(&base_server, batch, total)).await;
            drop(base_server);
            let (rate, p99) = deskbus(&NatsServer::start(), batch, total).await;
            let (drain_rate, drain_cpu) = deskbus_drain(&NatsServer::start(), batch, total).await;
            table.rate(&format!("events/s, batch {batch}"), rate, base_rate);
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
            table.latency(
                &format!("p99 spool→ack, full load, b{batch} (ms)"),
                p99,
                base_p99,
            );
        }
    });
}
