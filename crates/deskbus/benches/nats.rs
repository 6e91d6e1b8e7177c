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
//! deskbus's latency is the `deskbus_stream_delivery_latency_seconds`
//! histogram (spool commit to PubAck, interpolated within its buckets) while
//! the whole run is pushed at once, so mostly time spent waiting in the
//! spool backlog; the baseline's is the time from the first publish of a
//! pipeline to its last PubAck.
//!
//! `cargo bench -p deskbus --features nats --bench nats` (needs
//! `nats-server` on PATH: `scripts/services nats` installs it).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, Context};
use serde_json::{Value, json};

/// Concurrent webhook requests, each of `REQUEST` events.
const POSTERS: usize = 8;
const REQUEST: usize = 100;
/// Batches in flight at once: the stream's default `concurrency`.
const CONCURRENCY: usize = 4;

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

struct NatsServer(Child, String, #[allow(dead_code)] tempfile::TempDir);

impl NatsServer {
    fn start() -> NatsServer {
        let port = free_port();
        let store = tempfile::tempdir().unwrap();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is not installed; run `scripts/services nats`");
        wait_port(([127, 0, 0, 1], port).into());
        NatsServer(child, format!("nats://127.0.0.1:{port}"), store)
    }

    async fn context(&self) -> Context {
        jetstream::new(async_nats::connect(self.1.as_str()).await.unwrap())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `stream` holds `total` messages.
async fn wait_messages(context: &Context, stream: &str, total: usize) {
    let mut last = (0, Instant::now());
    loop {
        let messages = match context.get_stream(stream).await {
            Ok(s) => s.cached_info().state.messages as usize,
            Err(_) => 0,
        };
        if messages >= total {
            return;
        }
        if messages != last.0 {
            last = (messages, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(30),
            "stuck at {messages} of {total} messages"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Deskbus {
    child: Child,
    web: SocketAddr,
    admin: SocketAddr,
}

impl Deskbus {
    fn start(dir: &Path, url: &str, batch: usize) -> Deskbus {
        let (admin, web) = (free_port(), free_port());
        let config = format!(
            "[general]\ndata_dir = \"{d}/data\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n[log]\nlevel = \"warn\"\n\
             [sources.web]\ntype = \"webhook\"\naddress = \"127.0.0.1:{web}\"\n\
             [streams.out]\ntype = \"nats\"\nurl = \"{url}\"\nsubject_prefix = \"d{batch}.\"\nbatch_size = {batch}\n\
             create_stream = {{ name = \"DESKBUS{batch}\" }}\n\
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

/// deskbus: events/s from the first request to the last message stored,
/// and the p99 spool-to-ack latency of the run.
async fn deskbus(server: &NatsServer, batch: usize, total: usize) -> (f64, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let bus = Deskbus::start(dir.path(), &server.1, batch);
    let context = server.context().await;
    let started = Instant::now();
    blast(&format!("http://{}/events", bus.web), total).await;
    wait_messages(&context, &format!("DESKBUS{batch}"), total).await;
    let rate = total as f64 / started.elapsed().as_secs_f64();
    // Let the last acks be recorded before reading the histogram.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (rate, bus.p99_latency().await)
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
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (context, next, bodies) = (context.clone(), next.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let subject = format!("b{batch}.tickets");
            let mut latencies = Vec::new();
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    return latencies;
                }
                let sent = Instant::now();
                let mut acks = Vec::with_capacity(batch);
                for i in first..(first + batch).min(total) {
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
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    let p99 = latencies[((latencies.len() as f64 * 0.99) as usize).min(latencies.len() - 1)];
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
            "webhook → spool → nats JetStream ({POSTERS} posters × {REQUEST} events per request, \
             {CONCURRENCY} batches in flight, file storage, spool synchronous=FULL)"
        );
        println!(
            "{:<34} {:>12} {:>12} {:>8}",
            "measure", "deskbus", "async-nats", "ratio"
        );
        for (batch, total) in [(1usize, 20_000usize), (100, 100_000)] {
            // A fresh server per batch size: nothing left over between runs.
            let server = NatsServer::start();
            let (base_rate, base_p99) = baseline(&server, batch, total).await;
            let (rate, p99) = deskbus(&server, batch, total).await;
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
        }
    });
}
