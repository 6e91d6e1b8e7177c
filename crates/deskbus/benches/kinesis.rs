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

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use common::{
    Chunks, Deskbus, POSTERS, Process, REQUEST, Table, blast, client, envelope, free_port,
    wait_count,
};
use serde_json::{Value, json};

/// The stream's default concurrency, and the baseline's calls in flight.
const CONCURRENCY: usize = 4;
const STREAM: &str = "bench";

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

struct Moto {
    _process: Process,
    endpoint: String,
}

impl Moto {
    async fn start() -> Moto {
        let port = free_port();
        let process = Process::listening(
            Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            port,
            "moto_server is not installed; run `scripts/services moto`",
        );
        let moto = Moto {
            _process: process,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = client();
        let (status, body) = call(
            &client,
            &format!("{}/bench", moto.endpoint),
            "s3",
            "",
            vec![],
        )
        .await;
        assert_eq!(status, 200, "CreateBucket: {body}");
        let create = json!({"DeliveryStreamName": STREAM, "DeliveryStreamType": "DirectPut",
            "ExtendedS3DestinationConfiguration": {"BucketARN": "arn:aws:s3:::bench",
            "RoleARN": "arn:aws:iam::123456789012:role/firehose"}});
        let (status, body) = call(
            &client,
            &moto.endpoint,
            "firehose",
            "Firehose_20150804.CreateDeliveryStream",
            create.to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, 200, "CreateDeliveryStream: {body}");
        moto
    }
}

/// deskbus putting to `moto`'s delivery stream `STREAM`, `batch` records
/// at a time.
fn start(dir: &Path, moto: &Moto, batch: usize) -> Deskbus {
    let stream = format!(
        "type = \"kinesis_firehose\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\n\
         access_key_id = \"testing\"\nsecret_access_key = \"testing\"",
        moto.endpoint
    );
    Deskbus::start_with_queue(dir, &stream, batch, STREAM)
}

/// deskbus's `deskbus_stream_delivered_events_total`.
async fn delivered(bus: &Deskbus) -> usize {
    bus.metrics()
        .await
        .lines()
        .find(|l| l.starts_with("deskbus_stream_delivered_events_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0) as usize
}

/// deskbus: events/s from the first request to the last acknowledged record.
async fn deskbus(moto: &Moto, batch: usize, total: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let bus = start(dir.path(), moto, batch);
    let started = Instant::now();
    blast(&bus.events_url(), total, POSTERS, REQUEST).await;
    wait_count("events", total, Duration::from_millis(5), async || {
        delivered(&bus).await
    })
    .await;
    total as f64 / started.elapsed().as_secs_f64()
}

/// deskbus draining `total` events spooled before it starts: events/s
/// from its start to the last acknowledged record (the stream alone).
async fn deskbus_drain(moto: &Moto, batch: usize, total: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    common::fill_spool(dir.path(), total, STREAM).await;
    let started = Instant::now();
    let bus = start(dir.path(), moto, batch);
    wait_count("events", total, Duration::from_millis(5), async || {
        delivered(&bus).await
    })
    .await;
    total as f64 / started.elapsed().as_secs_f64()
}

/// Raw signed `PutRecordBatch` calls of `batch` records, `CONCURRENCY` at a time.
async fn baseline(moto: &Moto, batch: usize, total: usize) -> f64 {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let records: Arc<Vec<String>> = Arc::new(
        (0..1000)
            .map(|i| {
                let mut body = envelope(i);
                body.push(b'\n');
                engine.encode(body)
            })
            .collect(),
    );
    let client = client();
    let chunks = Chunks::new(total, batch);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, endpoint, chunks, records) = (
            client.clone(),
            moto.endpoint.clone(),
            chunks.clone(),
            records.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while let Some(range) = chunks.next_range() {
                let data: Vec<Value> = range
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
    common::join(tasks).await;
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    common::run(async {
        println!(
            "webhook → spool → kinesis_firehose → moto ({POSTERS} posters × {REQUEST} events \
             per request, {CONCURRENCY} calls in flight, spool synchronous=FULL)"
        );
        let table = Table::new(12, "raw signed");
        for (batch, total) in [(1usize, 2_000usize), (100, 20_000)] {
            // A fresh moto per batch size: it keeps every S3 object in memory.
            let moto = Moto::start().await;
            let base_rate = baseline(&moto, batch, total).await;
            let rate = deskbus(&moto, batch, total).await;
            let drain_rate = deskbus_drain(&moto, batch, total).await;
            table.rate(&format!("events/s, batch {batch}"), rate, base_rate);
            table.rate(
                &format!("drain events/s, batch {batch}"),
                drain_rate,
                base_rate,
            );
        }
    });
}
