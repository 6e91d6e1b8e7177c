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

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};

/// Concurrent webhook requests, each of `REQUEST` events.
const POSTERS: usize = 8;
const REQUEST: usize = 100;
/// Batches in flight: the stream's default `concurrency`, and the baseline's channels.
const CHANNELS: usize = 4;
const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn event(i: usize) -> Value {
    json!({"name": "ticket.created", "data": {
        "helpdesk_code": "ACME", "datetime_complete": "2026-11-23 10:00:00",
        "department_id": i % 7, "department_name": "Support", "helptopic_id": 10,
        "helptopic_label": "Report a Problem / Access Issue", "ticket_id": i}})
}

async fn connect() -> Connection {
    Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ is not reachable on 127.0.0.1:5672 ({e}); run `scripts/services rabbitmq`"
            )
        })
}

/// A durable topic exchange and a durable queue bound with `#`, as deskbus
/// declares them; deleted on [`Topology::delete`].
struct Topology {
    connection: Connection,
    exchange: String,
    queue: String,
}

impl Topology {
    async fn new(name: &str) -> Topology {
        let connection = connect().await;
        let exchange = format!("deskbus.bench.{name}.{}", std::process::id());
        let queue = format!("{exchange}.q");
        let c = connection.create_channel().await.unwrap();
        c.exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        c.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        c.queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        Topology {
            connection,
            exchange,
            queue,
        }
    }

    async fn messages(&self) -> usize {
        let c = self.connection.create_channel().await.unwrap();
        let q = c
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = c.close(200, "ok".into()).await;
        q.message_count() as usize
    }

    /// Waits until the queue holds `total` messages.
    async fn wait(&self, total: usize) {
        let mut last = (0, Instant::now());
        loop {
            let n = self.messages().await;
            if n >= total {
                return;
            }
            if n != last.0 {
                last = (n, Instant::now());
            }
            assert!(
                last.1.elapsed() < Duration::from_secs(30),
                "stuck at {n} of {total} messages"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn delete(self) {
        let c = self.connection.create_channel().await.unwrap();
        let _ = c
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = c
            .exchange_delete(
                self.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = self.connection.close(200, "ok".into()).await;
    }
}

struct Deskbus {
    child: Child,
    web: SocketAddr,
    admin: SocketAddr,
}

impl Deskbus {
    fn start(dir: &Path, exchange: &str, batch: usize) -> Deskbus {
        let (admin, web) = (free_port(), free_port());
        let config = format!(
            "[general]\ndata_dir = \"{d}/data\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n[log]\nlevel = \"warn\"\n\
             [sources.web]\ntype = \"webhook\"\naddress = \"127.0.0.1:{web}\"\n\
             [streams.out]\ntype = \"amqp\"\nurl = \"{URL}\"\nexchange = \"{exchange}\"\nbatch_size = {batch}\n\
             [use_cases.t]\ninputs = [\"web\"]\nevents = [\"ticket.created\"]\nstream = \"out\"\nqueue = \"tickets\"\n",
            d = dir.display()
        );
        let path = dir.join("deskbus.toml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_deskbus"))
            .arg("run")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let web: SocketAddr = ([127, 0, 0, 1], web).into();
        wait_port(web);
        Deskbus {
            child,
            web,
            admin: ([127, 0, 0, 1], admin).into(),
        }
    }

    /// p99 of the delivery-latency histogram, interpolated within a bucket
    /// the way Prometheus's `histogram_quantile` does.
    async fn p99_latency(&self) -> Duration {
        let text = reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let buckets: Vec<(f64, f64)> = text
            .lines()
            .filter(|l| l.starts_with("deskbus_stream_delivery_latency_seconds_bucket"))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, l.rsplit(' ').next()?.parse().ok()?))
            })
            .collect();
        let total = buckets.last().map_or(0.0, |b| b.1);
        let rank = total * 0.99;
        let mut previous = (0.0, 0.0);
        for &(le, count) in &buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Duration::from_secs_f64(previous.0);
                }
                let share = (rank - previous.1) / (count - previous.1).max(1.0);
                return Duration::from_secs_f64(previous.0 + (le - previous.0) * share);
            }
            previous = (le, count);
        }
        Duration::ZERO
    }
}

impl Drop for Deskbus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts `total` events in requests of `REQUEST` over `POSTERS` connections.
async fn blast(url: &str, total: usize) {
    let client = client_builder().build().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..POSTERS {
        let (client, url, next) = (client.clone(), url.to_owned(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(REQUEST, Ordering::Relaxed);
                if first >= total {
                    return;
                }
                let body = Value::Array((first..(first + REQUEST).min(total)).map(event).collect());
                let r = client.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 202);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// deskbus: events/s from the first request to the last message in the
/// queue, and the p99 spool-to-confirm latency of the run.
async fn deskbus(batch: usize, total: usize) -> (f64, Duration) {
    let topology = Topology::new(&format!("deskbus{batch}")).await;
    let dir = tempfile::tempdir().unwrap();
    let bus = Deskbus::start(dir.path(), &topology.exchange, batch);
    let started = Instant::now();
    blast(&format!("http://{}/events", bus.web), total).await;
    topology.wait(total).await;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    // Let the last confirms be recorded before reading the histogram.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p99 = bus.p99_latency().await;
    drop(bus);
    topology.delete().await;
    (rate, p99)
}

/// deskbus at a steady `rate` of single-event requests (open loop, below
/// capacity): the p99 spool-to-confirm latency without a backlog.
async fn deskbus_steady(batch: usize, rate: usize, seconds: usize) -> Duration {
    let topology = Topology::new(&format!("steady{batch}")).await;
    let dir = tempfile::tempdir().unwrap();
    let bus = Deskbus::start(dir.path(), &topology.exchange, batch);
    let url = format!("http://{}/events", bus.web);
    let client = client_builder().build().unwrap();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut requests = Vec::new();
    for i in 0..rate * seconds {
        ticker.tick().await;
        let (client, url) = (client.clone(), url.clone());
        requests.push(tokio::spawn(async move {
            let r = client.post(&url).json(&event(i)).send().await.unwrap();
            assert_eq!(r.status(), 202);
        }));
    }
    for r in requests {
        r.await.unwrap();
    }
    topology.wait(rate * seconds).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p99 = bus.p99_latency().await;
    drop(bus);
    topology.delete().await;
    p99
}

/// lapin alone: batches of `batch` publishes, each batch's confirms all
/// awaited, on `CHANNELS` confirm-mode channels, the same bodies and
/// properties as deskbus sends.
async fn baseline(batch: usize, total: usize) -> (f64, Duration) {
    let topology = Topology::new(&format!("baseline{batch}")).await;
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..1000)
            .map(|i| {
                json!({"id": "0197a3c0-0000-7000-8000-000000000000", "name": "ticket.created",
                "data": event(i)["data"]})
                .to_string()
                .into_bytes()
            })
            .collect(),
    );
    let connection = Arc::new(connect().await);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CHANNELS {
        let (connection, exchange, next, bodies) = (
            connection.clone(),
            topology.exchange.clone(),
            next.clone(),
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
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    return latencies;
                }
                let sent = Instant::now();
                let mut confirms = Vec::with_capacity(batch);
                for i in first..(first + batch).min(total) {
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
                    assert_eq!(confirm.await.unwrap(), Confirmation::Ack(None));
                }
                latencies.push(sent.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    let p99 = latencies[((latencies.len() as f64 * 0.99) as usize).min(latencies.len() - 1)];
    let _ = connection.close(200, "ok".into()).await;
    topology.delete().await;
    (rate, p99)
}

fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes harness-less benches
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "webhook → spool → amqp ({POSTERS} posters × {REQUEST} events per request, \
             {CHANNELS} batches in flight, persistent + mandatory + confirms, spool synchronous=FULL)"
        );
        println!(
            "{:<34} {:>12} {:>12} {:>8}",
            "measure", "deskbus", "raw lapin", "ratio"
        );
        for (batch, total) in [(1usize, 20_000usize), (100, 100_000)] {
            let (base_rate, base_p99) = baseline(batch, total).await;
            let (rate, p99) = deskbus(batch, total).await;
            let steady_p99 = deskbus_steady(batch, 500, 5).await;
            println!(
                "{:<34} {:>12.0} {:>12.0} {:>8.2}",
                format!("events/s, batch {batch}"),
                rate,
                base_rate,
                rate / base_rate
            );
            println!(
                "{:<34} {:>12.2} {:>12.2} {:>8.1}",
                format!("p99 spool→ack, full load, b{batch} (ms)"),
                p99.as_secs_f64() * 1000.0,
                base_p99.as_secs_f64() * 1000.0,
                p99.as_secs_f64() / base_p99.as_secs_f64()
            );
            println!(
                "{:<34} {:>12.2} {:>12.2} {:>8.1}",
                format!("p99 spool→ack, 500/s, b{batch} (ms)"),
                steady_p99.as_secs_f64() * 1000.0,
                base_p99.as_secs_f64() * 1000.0,
                steady_p99.as_secs_f64() / base_p99.as_secs_f64()
            );
        }
    });
}
