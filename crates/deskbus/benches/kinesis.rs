//! webhook → spool → kinesis_firehose → moto, end to end, against the real
//! release binary and a moto of the bench's own (on a free port, fresh per
//! batch size).
//!
//! Prints a table: events/s with the stream's `batch_size` at 1 and 100.
//! The baseline, measured in the same run against the same moto, is a raw
//! loop of signed `PutRecordBatch` calls of the same size and the same
//! payloads, over as many concurrent calls as the stream's default
//! `concurrency` (4), with nothing stored first: the ceiling of moto (a
//! Python server, far slower than AWS) on this machine. deskbus counts as
//! done when its `deskbus_stream_delivered_events_total` reaches the total,
//! i.e. when moto acknowledged every record.
//!
//! `cargo bench -p deskbus --features kinesis --bench kinesis` (needs
//! `moto_server` on PATH: `scripts/services moto` installs it).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde_json::{Value, json};

/// Concurrent webhook requests, each of `REQUEST` events.
const POSTERS: usize = 8;
const REQUEST: usize = 100;
/// The stream's default concurrency, and the baseline's calls in flight.
const CONCURRENCY: usize = 4;
const STREAM: &str = "bench";

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

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

/// A signed JSON 1.1 call; the status and body.
async fn call(
    client: &reqwest::Client,
    endpoint: &str,
    service: &str,
    target: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let identity = Credentials::new("testing", "testing", None, None, "bench").into();
    let mut settings = SigningSettings::default();
    if service == "s3" {
        settings.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let (method, headers): (&str, Vec<(&str, &str)>) = match service {
        "s3" => ("PUT", vec![]),
        _ => (
            "POST",
            vec![
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", target),
            ],
        ),
    };
    let request = SignableRequest::new(
        method,
        endpoint,
        headers.iter().copied(),
        SignableBody::Bytes(&body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut request = client.request(method.parse().unwrap(), endpoint);
    for (name, value) in headers.iter().copied().chain(instructions.headers()) {
        request = request.header(name, value);
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

struct Moto(Child, String);

impl Moto {
    async fn start() -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server is not installed; run `scripts/services moto`");
        wait_port(([127, 0, 0, 1], port).into());
        let moto = Moto(child, format!("http://127.0.0.1:{port}"));
        let client = client();
        let (status, body) = call(&client, &format!("{}/bench", moto.1), "s3", "", vec![]).await;
        assert_eq!(status, 200, "CreateBucket: {body}");
        let create = json!({"DeliveryStreamName": STREAM, "DeliveryStreamType": "DirectPut",
            "ExtendedS3DestinationConfiguration": {"BucketARN": "arn:aws:s3:::bench",
            "RoleARN": "arn:aws:iam::123456789012:role/firehose"}});
        let (status, body) = call(
            &client,
            &moto.1,
            "firehose",
            "Firehose_20150804.CreateDeliveryStream",
            create.to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, 200, "CreateDeliveryStream: {body}");
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Deskbus {
    child: Child,
    web: SocketAddr,
    admin: SocketAddr,
}

impl Deskbus {
    fn start(dir: &Path, endpoint: &str, batch: usize) -> Deskbus {
        let (admin, web) = (free_port(), free_port());
        let config = format!(
            "[general]\ndata_dir = \"{d}/data\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n[log]\nlevel = \"warn\"\n\
             [sources.web]\ntype = \"webhook\"\naddress = \"127.0.0.1:{web}\"\n\
             [streams.out]\ntype = \"kinesis_firehose\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\n\
             access_key_id = \"testing\"\nsecret_access_key = \"testing\"\nbatch_size = {batch}\n\
             [use_cases.t]\ninputs = [\"web\"]\nevents = [\"ticket.created\"]\nstream = \"out\"\nqueue = \"{STREAM}\"\n",
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

    async fn delivered(&self, client: &reqwest::Client) -> usize {
        let text = client
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with("deskbus_stream_delivered_events_total"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0) as usize
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
    let client = client();
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

/// deskbus: events/s from the first request to the last acknowledged record.
async fn deskbus(moto: &Moto, batch: usize, total: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let bus = Deskbus::start(dir.path(), &moto.1, batch);
    let client = client();
    let started = Instant::now();
    blast(&format!("http://{}/events", bus.web), total).await;
    let mut last = (0, Instant::now());
    loop {
        let delivered = bus.delivered(&client).await;
        if delivered >= total {
            break;
        }
        if delivered != last.0 {
            last = (delivered, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(30),
            "stuck at {delivered} of {total} events"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Raw signed `PutRecordBatch` calls of `batch` records, `CONCURRENCY` at a time.
async fn baseline(moto: &Moto, batch: usize, total: usize) -> f64 {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let records: Arc<Vec<String>> = Arc::new(
        (0..1000)
            .map(|i| {
                let mut body = json!({"id": "0197a3c0-0000-7000-8000-000000000000",
                    "name": "ticket.created", "data": event(i)["data"]})
                .to_string()
                .into_bytes();
                body.push(b'\n');
                engine.encode(body)
            })
            .collect(),
    );
    let client = client();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, endpoint, next, records) = (
            client.clone(),
            moto.1.clone(),
            next.clone(),
            records.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    return;
                }
                let data: Vec<Value> = (first..(first + batch).min(total))
                    .map(|i| json!({"Data": records[i % records.len()]}))
                    .collect();
                let body = json!({"DeliveryStreamName": STREAM, "Records": data});
                let (status, answer) = call(
                    &client,
                    &endpoint,
                    "firehose",
                    "Firehose_20150804.PutRecordBatch",
                    body.to_string().into_bytes(),
                )
                .await;
                assert_eq!(status, 200, "{answer}");
                assert!(
                    answer.contains("\"FailedPutCount\": 0")
                        || answer.contains("\"FailedPutCount\":0"),
                    "{answer}"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
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
            "webhook → spool → kinesis_firehose → moto ({POSTERS} posters × {REQUEST} events \
             per request, {CONCURRENCY} calls in flight, spool synchronous=FULL)"
        );
        println!(
            "{:<34} {:>12} {:>12} {:>8}",
            "measure", "deskbus", "raw signed", "ratio"
        );
        for (batch, total) in [(1usize, 2_000usize), (100, 20_000)] {
            // A fresh moto per batch size: it keeps every S3 object in memory.
            let moto = Moto::start().await;
            let base_rate = baseline(&moto, batch, total).await;
            let rate = deskbus(&moto, batch, total).await;
            println!(
                "{:<34} {:>12.0} {:>12.0} {:>8.2}",
                format!("events/s, batch {batch}"),
                rate,
                base_rate,
                rate / base_rate
            );
        }
    });
}
