//! webhook → spool → kinesis_firehose or kinesis_streams → moto, end to
//! end, against the real release binary and a moto of the bench's own (on
//! a free port, fresh for each measurement: see `main`).
//!
//! Prints a table per service: events/s with the stream's `batch_size` at
//! 1 and 100. The baseline, measured in the same run against the same
//! moto, is a raw loop of signed `PutRecordBatch` (Firehose) or
//! `PutRecords` (Data Streams) calls of the same size and the same
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
/// The delivery stream and the data stream, both named so in moto.
const STREAM: &str = "bench";
/// The data stream's shards.
const SHARDS: usize = 4;

/// Which of the two services a run puts to.
#[derive(Clone, Copy)]
enum Service {
    Firehose,
    DataStreams,
}

impl Service {
    /// The deskbus stream `type`.
    fn stream_type(self) -> &'static str {
        match self {
            Service::Firehose => "kinesis_firehose",
            Service::DataStreams => "kinesis_streams",
        }
    }

    /// The SigV4 signing name.
    fn signing_name(self) -> &'static str {
        match self {
            Service::Firehose => "firehose",
            Service::DataStreams => "kinesis",
        }
    }

    /// A signed batch put of `records` (the raw payloads of events
    /// `first..`): the call's target and body, as deskbus would send it
    /// (a Firehose record ends with a newline; a data stream's record is
    /// keyed by the event's order key, `ticket:<i>`).
    fn put(self, first: usize, records: &[&[u8]]) -> (&'static str, Value) {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        match self {
            Service::Firehose => {
                let records: Vec<Value> = records
                    .iter()
                    .map(|r| json!({"Data": engine.encode([r, &b"\n"[..]].concat())}))
                    .collect();
                (
                    "Firehose_20150804.PutRecordBatch",
                    json!({"DeliveryStreamName": STREAM, "Records": records}),
                )
            }
            Service::DataStreams => {
                let records: Vec<Value> = records
                    .iter()
                    .enumerate()
                    .map(|(n, r)| {
                        json!({"Data": engine.encode(r), "PartitionKey": format!("ticket:{}", first + n)})
                    })
                    .collect();
                (
                    "Kinesis_20131202.PutRecords",
                    json!({"StreamName": STREAM, "Records": records}),
                )
            }
        }
    }

    /// Whether a put's answer says every record was taken.
    fn all_taken(self, answer: &str) -> bool {
        let field = match self {
            Service::Firehose => "FailedPutCount",
            Service::DataStreams => "FailedRecordCount",
        };
        let answer: Value = serde_json::from_str(answer).unwrap_or_default();
        answer[field] == 0
    }
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
        // The S3 bucket the delivery stream writes to, the delivery stream,
        // and the data stream.
        let bucket = format!("{}/bench", moto.endpoint);
        moto.set_up(&client, &bucket, "s3", "CreateBucket", Vec::new())
            .await;
        let create = json!({"DeliveryStreamName": STREAM, "DeliveryStreamType": "DirectPut",
            "ExtendedS3DestinationConfiguration": {"BucketARN": "arn:aws:s3:::bench",
            "RoleARN": "arn:aws:iam::123456789012:role/firehose"}});
        let target = "Firehose_20150804.CreateDeliveryStream";
        moto.set_up(
            &client,
            &moto.endpoint,
            "firehose",
            target,
            create.to_string().into(),
        )
        .await;
        let create = json!({"StreamName": STREAM, "ShardCount": SHARDS});
        let target = "Kinesis_20131202.CreateStream";
        moto.set_up(
            &client,
            &moto.endpoint,
            "kinesis",
            target,
            create.to_string().into(),
        )
        .await;
        moto
    }

    /// One signed set-up call of `target` that must succeed.
    async fn set_up(
        &self,
        client: &reqwest::Client,
        endpoint: &str,
        service: &str,
        target: &str,
        body: Vec<u8>,
    ) {
        let (status, answer) = call(client, endpoint, service, target, body).await;
        assert_eq!(status, 200, "{target}: {answer}");
    }
}

/// deskbus putting to `moto`'s `STREAM` of `service`, `batch` records at
/// a time.
fn start(dir: &Path, moto: &Moto, service: Service, batch: usize) -> Deskbus {
    let stream = format!(
        "type = \"{}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\n\
         access_key_id = \"testing\"\nsecret_access_key = \"testing\"",
        service.stream_type(),
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
async fn deskbus(moto: &Moto, service: Service, batch: usize, total: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let bus = start(dir.path(), moto, service, batch);
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
async fn deskbus_drain(moto: &Moto, service: Service, batch: usize, total: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    common::fill_spool(dir.path(), total, STREAM).await;
    let started = Instant::now();
    let bus = start(dir.path(), moto, service, batch);
    wait_count("events", total, Duration::from_millis(5), async || {
        delivered(&bus).await
    })
    .await;
    total as f64 / started.elapsed().as_secs_f64()
}

/// Raw signed batch puts of `batch` records, `CONCURRENCY` at a time.
async fn baseline(moto: &Moto, service: Service, batch: usize, total: usize) -> f64 {
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..1000).map(envelope).collect());
    let client = client();
    let chunks = Chunks::new(total, batch);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, endpoint, chunks, bodies) = (
            client.clone(),
            moto.endpoint.clone(),
            chunks.clone(),
            bodies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while let Some(range) = chunks.next_range() {
                let first = range.start;
                let records: Vec<&[u8]> = range.map(|i| &bodies[i % bodies.len()][..]).collect();
                let (target, body) = service.put(first, &records);
                let (status, answer) = call(
                    &client,
                    &endpoint,
                    service.signing_name(),
                    target,
                    body.to_string().into_bytes(),
                )
                .await;
                assert_eq!(status, 200, "{answer}");
                assert!(service.all_taken(&answer), "{answer}");
            }
        }));
    }
    common::join(tasks).await;
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    common::run(async {
        println!(
            "webhook → spool → kinesis → moto ({POSTERS} posters × {REQUEST} events \
             per request, {CONCURRENCY} calls in flight, {SHARDS} shards, spool synchronous=FULL)"
        );
        let table = Table::new(12, "raw signed");
        for (batch, total) in [(1usize, 2_000usize), (100, 20_000)] {
            for service in [Service::Firehose, Service::DataStreams] {
                // A fresh moto per measurement: it keeps every record in
                // memory and slows down as a stream fills (raw PutRecords
                // at b100 fell from 5.0k to 0.5k/s once 60k records were
                // in), which would favour whichever runs first.
                let base_rate = baseline(&Moto::start().await, service, batch, total).await;
                let rate = deskbus(&Moto::start().await, service, batch, total).await;
                let drain_rate = deskbus_drain(&Moto::start().await, service, batch, total).await;
                let name = service.stream_type();
                table.rate(&format!("{name} events/s, b{batch}"), rate, base_rate);
                table.rate(&format!("{name} drain, b{batch}"), drain_rate, base_rate);
            }
        }
    });
}
