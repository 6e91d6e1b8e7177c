//! webhook → spool → amqp, end to end, against the real release binary and
//! the shared RabbitMQ on 127.0.0.1:5672 (`scripts/services rabbitmq`),
//! each run on an exchange and a durable queue of its own, deleted after.
//!
//! Prints a table: events/s and p99 spool-to-confirm latency with the
//! stream's `batch_size` at 1 and 100. The baseline, measured in the same
//! run against the same broker, is lapin alone: the same persistent,
//! mandatory messages published on confirm-mode channels, `batch` at a time,
//! every confirm awaited before the next batch, on as many channels as the
//! stream has batches in flight (4, the default `concurrency`), with
//! nothing stored first: the ceiling of the broker on this machine.
//!
//! deskbus's latency is the `deskbus_stream_delivery_latency_seconds`
//! histogram (spool commit to confirm, interpolated within its buckets),
//! once while the whole run is pushed at once (mostly time spent waiting in
//! the spool backlog) and once at a steady 500 events/s; the baseline's is
//! the time from the first publish of a batch to its last confirm.
//!
//! `cargo bench -p deskbus --features amqp --bench amqp`

#[path = "common/mod.rs"]
mod common;
#[path = "common/rabbitmq.rs"]
mod rabbitmq;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Chunks, Deskbus, POSTERS, REQUEST, Table, blast, envelopes, quantile};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation};
use rabbitmq::{Topology, URL, connect};

/// Batches in flight: the stream's default `concurrency`, and the baseline's channels.
const CHANNELS: usize = 4;

/// deskbus publishing to `exchange`, `batch` messages at a time.
fn start(dir: &Path, exchange: &str, batch: usize) -> Deskbus {
    let stream = format!("type = \"amqp\"\nurl = \"{URL}\"\nexchange = \"{exchange}\"");
    Deskbus::start(dir, &stream, batch)
}

/// deskbus: events/s from the first request to the last message in the
/// queue, and the p99 spool-to-confirm latency of the run.
async fn deskbus(batch: usize, total: usize) -> (f64, Duration) {
    let topology = Topology::new(&format!("deskbus{batch}")).await;
    let dir = tempfile::tempdir().unwrap();
    let bus = start(dir.path(), &topology.exchange, batch);
    let started = Instant::now();
    blast(&bus.events_url(), total, POSTERS, REQUEST).await;
    topology.wait(total).await;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let p99 = bus.p99_latency().await;
    drop(bus);
    topology.delete().await;
    (rate, p99)
}

/// deskbus draining `total` events spooled before it starts: events/s
/// from its start to the last message in the queue (the stream alone).
async fn deskbus_drain(batch: usize, total: usize) -> f64 {
    let topology = Topology::new(&format!("drain{batch}")).await;
    let dir = tempfile::tempdir().unwrap();
    common::fill_spool(dir.path(), total, "tickets").await;
    let started = Instant::now();
    let bus = start(dir.path(), &topology.exchange, batch);
    topology.wait(total).await;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    drop(bus);
    topology.delete().await;
    rate
}

/// deskbus at a steady `rate` of single-event requests (open loop, below
/// capacity): the p99 spool-to-confirm latency without a backlog.
async fn deskbus_steady(batch: usize, rate: usize, seconds: usize) -> Duration {
    let topology = Topology::new(&format!("steady{batch}")).await;
    let dir = tempfile::tempdir().unwrap();
    let bus = start(dir.path(), &topology.exchange, batch);
    common::steady(&bus.events_url(), rate, seconds).await;
    topology.wait(rate * seconds).await;
    let p99 = bus.p99_latency().await;
    drop(bus);
    topology.delete().await;
    p99
}

/// Longest wait for one publisher confirm of the baseline.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);

/// lapin alone: batches of `batch` publishes, each batch's confirms all
/// awaited, on `CHANNELS` confirm-mode channels, the same bodies and
/// properties as deskbus sends.
async fn baseline(batch: usize, total: usize) -> (f64, Duration) {
    let topology = Topology::new(&format!("baseline{batch}")).await;
    let bodies = envelopes();
    let connection = Arc::new(connect().await);
    let chunks = Chunks::new(total, batch);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CHANNELS {
        let (connection, exchange, chunks, bodies) = (
            connection.clone(),
            topology.exchange.clone(),
            chunks.clone(),
            bodies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let channel = connection.create_channel().await.unwrap();
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .unwrap();
            let options = BasicPublishOptions {
                mandatory: true,
                immediate: false,
            };
            let mut latencies = Vec::new();
            while let Some(range) = chunks.next_range() {
                let sent = Instant::now();
                let mut confirms = Vec::with_capacity(batch);
                for i in range {
                    let properties = BasicProperties::default()
                        .with_message_id("0197a3c0-0000-7000-8000-000000000000".into())
                        .with_content_type("application/json".into())
                        .with_delivery_mode(2)
                        .with_timestamp(1_700_000_000);
                    confirms.push(
                        channel
                            .basic_publish(
                                exchange.as_str().into(),
                                "ticket.created".into(),
                                options,
                                &bodies[i % bodies.len()],
                                properties,
                            )
                            .await
                            .unwrap(),
                    );
                }
                for confirm in confirms {
                    // A lost connection has left confirms unresolved: fail
                    // loudly rather than hang the bench.
                    let confirmed = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
                        .await
                        .expect("no confirm from RabbitMQ within CONFIRM_TIMEOUT");
                    assert_eq!(confirmed.unwrap(), Confirmation::Ack(None));
                }
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = common::join(tasks).await.concat();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let p99 = quantile(&mut latencies, 0.99);
    let _ = connection.close(200, "ok".into()).await;
    topology.delete().await;
    (rate, p99)
}

fn main() {
    common::run(async {
        println!(
            "webhook → spool → amqp ({POSTERS} posters × {REQUEST} events per request, \
             {CHANNELS} batches in flight, persistent + mandatory + confirms, spool synchronous=FULL)"
        );
        let table = Table::new(12, "raw lapin");
        for (batch, total) in [(1usize, 20_000usize), (100, 100_000)] {
            let (base_rate, base_p99) = baseline(batch, total).await;
            let (rate, p99) = deskbus(batch, total).await;
            let steady_p99 = deskbus_steady(batch, 500, 5).await;
            let drain_rate = deskbus_drain(batch, total).await;
            table.rate(&format!("events/s, batch {batch}"), rate, base_rate);
            table.rate(
                &format!("drain events/s, batch {batch}"),
                drain_rate,
                base_rate,
            );
            table.latency(
                &format!("p99 spool→ack, full load, b{batch} (ms)"),
                p99,
                base_p99,
            );
            table.latency(
                &format!("p99 spool→ack, 500/s, b{batch} (ms)"),
                steady_p99,
                base_p99,
            );
        }
    });
}
