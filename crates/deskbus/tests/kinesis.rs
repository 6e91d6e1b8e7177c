//! webhook → kinesis_firehose / kinesis_streams → moto, read back through
//! moto's S3 (Firehose's destination) and GetRecords (Data Streams); and a
//! fake Firehose on 127.0.0.1 for what moto cannot do: refuse some records
//! of a call.
//!
//! Uses the shared moto on 127.0.0.1:4566 (`scripts/services moto`) with
//! streams of its own, or, to restart it, a moto of its own on a free port.
//! Fails, never skips, without one.
#![cfg(feature = "kinesis")]

mod conformance;
mod util;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use conformance::{StreamKind, collect_until, events, ids, post, start_deskbus};
use serde_json::{Value, json};
use util::*;

const SHARED: &str = "http://127.0.0.1:4566";
const REGION: &str = "us-east-1";
/// One shard: records of different partition keys keep their order only
/// within a shard, and the sequential scenario checks posting order.
const SHARDS: [&str; 1] = ["shardId-000000000000"];

/// A signed request to an AWS(-like) endpoint; (status, body).
async fn aws_call(
    endpoint: &str,
    service: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let url = format!("{endpoint}{path_and_query}");
    let identity = Credentials::new("testing", "testing", None, None, "test").into();
    let mut settings = SigningSettings::default();
    if service == "s3" {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let request = SignableRequest::new(
        method,
        &url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let mut request = http_client().request(method.parse().unwrap(), &url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    for (name, value) in instructions.headers() {
        request = request.header(name, value);
    }
    let response = request
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, bytes.to_vec()))
}

/// Deletes the delivery streams and streams earlier runs of these tests left
/// on the shared moto (their names start with `deskbus-` or `conformance.`).
async fn sweep_shared_moto() {
    let ours = |name: &&str| name.starts_with("deskbus-") || name.starts_with("conformance.");
    let hoses = json_call(
        SHARED,
        "firehose",
        "Firehose_20150804.ListDeliveryStreams",
        json!({"Limit": 10000}),
    )
    .await;
    for name in hoses["DeliveryStreamNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(ours)
    {
        json_call(
            SHARED,
            "firehose",
            "Firehose_20150804.DeleteDeliveryStream",
            json!({"DeliveryStreamName": name}),
        )
        .await;
    }
    let streams = json_call(SHARED, "kinesis", "Kinesis_20131202.ListStreams", json!({})).await;
    for name in streams["StreamNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(ours)
    {
        json_call(
            SHARED,
            "kinesis",
            "Kinesis_20131202.DeleteStream",
            json!({"StreamName": name}),
        )
        .await;
    }
}

/// A JSON 1.1 read of the test's own, tried again when moto answers 500:
/// under load, its GetRecords can fail while puts to the same shard are
/// under way (moto is the test's window on what arrived, not the system
/// under test). Panics after five failures.
async fn json_read(endpoint: &str, service: &str, target: &str, body: Value) -> Value {
    for _ in 0..4 {
        let (status, answer) = json_request(endpoint, service, target, &body).await;
        if status == 200 {
            return serde_json::from_slice(&answer).unwrap_or(Value::Null);
        }
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, 500, "{target}: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    json_call(endpoint, service, target, body).await
}

/// A JSON 1.1 call; panics unless it succeeds.
async fn json_call(endpoint: &str, service: &str, target: &str, body: Value) -> Value {
    let (status, answer) = json_request(endpoint, service, target, &body).await;
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(status, 200, "{target}: {text}");
    serde_json::from_slice(&answer).unwrap_or(Value::Null)
}

/// A JSON 1.1 call: its status and body.
async fn json_request(endpoint: &str, service: &str, target: &str, body: &Value) -> (u16, Vec<u8>) {
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target),
    ];
    aws_call(
        endpoint,
        service,
        "POST",
        "/",
        &headers,
        body.to_string().as_bytes(),
    )
    .await
    .unwrap()
}

/// The text of every `<name>…</name>` in `xml`.
fn xml_values(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(v, _)| v.to_owned()))
        .collect()
}

/// Event ids in a record or an object: NDJSON envelopes.
fn ids_in(data: &[u8]) -> Vec<String> {
    serde_json::Deserializer::from_slice(data)
        .into_iter::<Value>()
        .map(|v| {
            let v = v.unwrap_or_else(|e| panic!("not JSON: {e}"));
            v["id"].as_str().expect("an event id").to_owned()
        })
        .collect()
}

fn moto_missing(endpoint: &str) -> ! {
    panic!("moto is not reachable on {endpoint}; run `scripts/services moto`")
}

/// A moto started by the test on a free port, behind a TCP proxy on
/// another port that deskbus is given. moto keeps its state in memory, so
/// a restart closes the proxy, drains what moto stored, stops moto, starts
/// a fresh one, re-creates the streams, and opens the proxy again.
struct OwnMoto {
    process: conformance::ServerProcess,
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
    proxy_port: u16,
    env: Vec<(String, String)>,
}

impl OwnMoto {
    async fn start(env: &[(&str, &str)]) -> OwnMoto {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_port = listener.local_addr().unwrap().port();
        let (up, up_rx) = tokio::sync::watch::channel(false);
        let mut moto = OwnMoto {
            process: conformance::ServerProcess::new("moto_server"),
            port: free_port(),
            up,
            proxy_port,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        tokio::spawn(proxy(listener, moto.port, up_rx));
        moto.spawn().await;
        moto
    }

    fn internal(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn public(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy_port)
    }

    async fn spawn(&mut self) {
        let mut command = Command::new("moto_server");
        command
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.process
            .spawn(command, "moto", self.port, Duration::from_secs(20));
    }

    fn kill(&mut self) {
        self.process.kill();
    }
}

/// Forwards connections to `port` while `up`; drops them (and those open)
/// while down, like a server that went away.
async fn proxy(
    listener: tokio::net::TcpListener,
    port: u16,
    up: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        if !*up.borrow() {
            continue; // dropped: connection reset
        }
        let mut up = up.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = up.wait_for(|up| !*up) => {}
            }
        });
    }
}

/// Which service, where, and what was read back so far.
struct Kinesis {
    service: Service,
    endpoint: String,
    own: Option<OwnMoto>,
    bucket: String,
    /// Firehose: S3 objects already read.
    seen_objects: HashSet<String>,
    /// Data Streams: the next shard iterator per (stream, shard).
    iterators: HashMap<(String, String), String>,
    /// Ids read before a restart, handed out by the next collect.
    drained: HashMap<String, Vec<String>>,
    /// Streams created, to re-create after a restart.
    created: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Firehose,
    DataStreams,
}

impl Kinesis {
    async fn shared(service: Service) -> Kinesis {
        if std::net::TcpStream::connect("127.0.0.1:4566").is_err() {
            moto_missing(SHARED);
        }
        // moto keeps everything in memory and allows 50 delivery streams:
        // streams left by earlier runs of this suite are removed once per
        // run, before any test of this run creates its own.
        static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        SWEPT.get_or_init(sweep_shared_moto).await;
        Kinesis::new(service, SHARED.to_owned(), None).await
    }

    async fn own(service: Service) -> Kinesis {
        let moto = OwnMoto::start(&[]).await;
        let _ = moto.up.send(true);
        Kinesis::new(service, moto.public(), Some(moto)).await
    }

    async fn new(service: Service, endpoint: String, own: Option<OwnMoto>) -> Kinesis {
        let kind = Kinesis {
            service,
            endpoint,
            own,
            bucket: format!("deskbus-{}", uuid7().to_lowercase()),
            seen_objects: HashSet::new(),
            iterators: HashMap::new(),
            drained: HashMap::new(),
            created: Vec::new(),
        };
        if service == Service::Firehose {
            kind.create_bucket(&kind.endpoint).await;
        }
        kind
    }

    /// Where the test itself talks to moto (not through the proxy).
    fn direct(&self) -> String {
        match &self.own {
            Some(moto) => moto.internal(),
            None => self.endpoint.clone(),
        }
    }

    async fn create_bucket(&self, endpoint: &str) {
        let (status, body) = aws_call(
            endpoint,
            "s3",
            "PUT",
            &format!("/{}", self.bucket),
            &[],
            b"",
        )
        .await
        .unwrap_or_else(|_| moto_missing(endpoint));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    async fn create_at(&self, endpoint: &str, name: &str) {
        match self.service {
            Service::Firehose => {
                json_call(
                    endpoint,
                    "firehose",
                    "Firehose_20150804.CreateDeliveryStream",
                    json!({
                        "DeliveryStreamName": name,
                        "DeliveryStreamType": "DirectPut",
                        "ExtendedS3DestinationConfiguration": {
                            "BucketARN": format!("arn:aws:s3:::{}", self.bucket),
                            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                            "Prefix": format!("{name}/"),
                        }
                    }),
                )
                .await;
            }
            Service::DataStreams => {
                json_call(
                    endpoint,
                    "kinesis",
                    "Kinesis_20131202.CreateStream",
                    json!({"StreamName": name, "ShardCount": SHARDS.len()}),
                )
                .await;
            }
        }
    }

    /// Creates the delivery stream or stream `name`.
    async fn create(&mut self, name: &str) {
        self.create_at(&self.direct(), name).await;
        self.created.push(name.to_owned());
    }

    async fn read(&mut self, queue: &str) -> Result<Vec<String>, String> {
        let endpoint = self.direct();
        match self.service {
            Service::Firehose => {
                let (status, body) = aws_call(
                    &endpoint,
                    "s3",
                    "GET",
                    &format!(
                        "/{}?list-type=2&prefix={queue}/&max-keys=100000",
                        self.bucket
                    ),
                    &[],
                    b"",
                )
                .await?;
                let xml = String::from_utf8_lossy(&body).into_owned();
                if status != 200 {
                    return Err(format!("ListObjectsV2: {status}: {xml}"));
                }
                let mut ids = Vec::new();
                for key in xml_values(&xml, "Key") {
                    if self.seen_objects.contains(&key) {
                        continue;
                    }
                    let (status, object) = aws_call(
                        &endpoint,
                        "s3",
                        "GET",
                        &format!("/{}/{key}", self.bucket),
                        &[],
                        b"",
                    )
                    .await?;
                    assert_eq!(status, 200, "GetObject {key}");
                    ids.extend(ids_in(&object));
                    self.seen_objects.insert(key);
                }
                Ok(ids)
            }
            Service::DataStreams => {
                let mut ids = Vec::new();
                for shard in SHARDS {
                    let slot = (queue.to_owned(), shard.to_owned());
                    let iterator = match self.iterators.get(&slot) {
                        Some(it) => it.clone(),
                        None => {
                            let answer = json_call(
                                &endpoint,
                                "kinesis",
                                "Kinesis_20131202.GetShardIterator",
                                json!({"StreamName": queue, "ShardId": shard,
                                       "ShardIteratorType": "TRIM_HORIZON"}),
                            )
                            .await;
                            answer["ShardIterator"].as_str().unwrap().to_owned()
                        }
                    };
                    let answer = json_read(
                        &endpoint,
                        "kinesis",
                        "Kinesis_20131202.GetRecords",
                        json!({"ShardIterator": iterator, "Limit": 10000}),
                    )
                    .await;
                    for record in answer["Records"].as_array().unwrap() {
                        let data = base64::engine::general_purpose::STANDARD
                            .decode(record["Data"].as_str().unwrap())
                            .unwrap();
                        let key = record["PartitionKey"].as_str().unwrap().to_owned();
                        let event: Value = serde_json::Deserializer::from_slice(&data)
                            .into_iter()
                            .next()
                            .and_then(Result::ok)
                            .expect("a record holds one event");
                        // The order key: one ticket's events share a shard.
                        let want = match &event["data"]["ticket_id"] {
                            Value::Number(n) => format!("ticket:{n}"),
                            Value::String(s) => format!("ticket:{s}"),
                            _ => format!("event:{}", event["id"].as_str().unwrap()),
                        };
                        assert_eq!(key, want, "the partition key is the order key");
                        let in_record = ids_in(&data);
                        ids.extend(in_record);
                    }
                    if let Some(next) = answer["NextShardIterator"].as_str() {
                        self.iterators.insert(slot, next.to_owned());
                    }
                }
                Ok(ids)
            }
        }
    }
}

impl StreamKind for Kinesis {
    fn type_name(&self) -> &'static str {
        match self.service {
            Service::Firehose => "kinesis_firehose",
            Service::DataStreams => "kinesis_streams",
        }
    }

    fn config_snippet(&self) -> String {
        // moto's Kinesis shard says of its put_record "this function is not
        // safe for concurrency": concurrent puts into one stream lose
        // records there (not in AWS), so Data Streams tests keep one call
        // in flight.
        let concurrency = match self.service {
            Service::DataStreams => "\nconcurrency = 1",
            Service::Firehose => "",
        };
        format!(
            "type = \"{}\"\nregion = \"{REGION}\"\nendpoint = \"{}\"\n\
             access_key_id = \"testing\"\nsecret_access_key = \"testing\"\ntimeout = \"5s\"{concurrency}",
            self.type_name(),
            self.endpoint,
        )
    }

    async fn collect_delivered_ids(&mut self, queue: &str) -> Vec<String> {
        let mut ids = self.drained.remove(queue).unwrap_or_default();
        match self.read(queue).await {
            Ok(read) => ids.extend(read),
            Err(e) => panic!("cannot read back {queue}: {e}"),
        }
        ids
    }

    async fn restart_server(&mut self, down: Duration) {
        let moto = self
            .own
            .as_ref()
            .expect("tests restart only a moto of their own, never the shared one");
        let _ = moto.up.send(false);
        // Requests moto already received finish before it is read and stopped.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for name in self.created.clone() {
            let read = self.read(&name).await.unwrap();
            self.drained.entry(name).or_default().extend(read);
        }
        self.iterators.clear();
        self.seen_objects.clear();
        let moto = self.own.as_mut().unwrap();
        moto.kill();
        tokio::time::sleep(down).await;
        moto.spawn().await;
        let internal = moto.internal();
        if self.service == Service::Firehose {
            self.create_bucket(&internal).await;
        }
        for name in self.created.clone() {
            self.create_at(&internal, &name).await;
        }
        let _ = self.own.as_ref().unwrap().up.send(true);
    }
}

fn addresses() -> (SocketAddr, SocketAddr) {
    (
        ([127, 0, 0, 1], free_port()).into(),
        ([127, 0, 0, 1], free_port()).into(),
    )
}

fn name(prefix: &str) -> String {
    format!("deskbus-{prefix}-{}", &uuid7()[24..])
}

async fn thousand_events_arrive_once(service: Service, stream_extra: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut kind = Kinesis::shared(service).await;
    let queue = name("thousand");
    kind.create(&queue).await;
    let bus = start_deskbus(dir.path(), &kind, &queue, stream_extra, "");
    let batches: Vec<Vec<Value>> = (0..10).map(|r| events(100, r * 100)).collect();
    let requests = batches
        .iter()
        .map(|b| conformance::post_to(bus.url(), b.clone()))
        .collect();
    conformance::futures_join_all(requests).await;
    let posted: Vec<String> = batches.iter().flat_map(|b| ids(b)).collect();
    let delivered = collect_until(&mut kind, &queue, 1000, Duration::from_secs(40)).await;
    conformance::assert_delivered(&delivered, &posted, true);
    assert_eq!(
        bus.metric("deskbus_stream_dead_lettered_events_total", ""),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_delivers_a_thousand_events_once() {
    thousand_events_arrive_once(Service::Firehose, "batch_size = 100").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_packed_delivers_a_thousand_events_once() {
    thousand_events_arrive_once(Service::Firehose, "batch_size = 100\npack = true").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_streams_deliver_a_thousand_events_once() {
    thousand_events_arrive_once(Service::DataStreams, "batch_size = 100").await;
}

// Not for Firehose: moto writes one S3 object per call, named with a uuid
// within the second, so the order of calls cannot be read back; the
// thousand-event tests check Firehose's exactly-once delivery instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_streams_deliver_sequential_and_parallel_posts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut kind = Kinesis::own(Service::DataStreams).await;
    kind.create(&format!("conformance.{}", std::process::id()))
        .await;
    conformance::sequential_and_parallel_delivery(&mut kind, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_at_least_once_through_a_moto_restart() {
    at_least_once_through_a_moto_restart(Service::Firehose).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_streams_at_least_once_through_a_moto_restart() {
    at_least_once_through_a_moto_restart(Service::DataStreams).await;
}

async fn at_least_once_through_a_moto_restart(service: Service) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut kind = Kinesis::own(service).await;
    kind.create("restart").await;
    conformance::at_least_once_through_a_server_restart(&mut kind, dir.path()).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_go_to_dead_letters_and_the_rest_flows() {
    for service in [Service::Firehose, Service::DataStreams] {
        let dir = tempfile::tempdir().unwrap();
        let mut kind = Kinesis::shared(service).await;
        let good_queue = name("poison");
        kind.create(&good_queue).await;
        let missing = name("missing");
        // `{dept}` picks the stream: none, a missing one, or an invalid name.
        let bus = start_deskbus(
            dir.path(),
            &kind,
            &format!("{{dept:-{good_queue}}}"),
            "",
            "",
        );
        let mut good = events(10, 1);
        post(&bus, &good).await;
        let too_big = json!({"id": uuid7(), "name": "ticket.created",
            "data": {"ticket_id": 100, "subject": "x".repeat(1_100_000)}});
        let bad_name = json!({"id": uuid7(), "name": "ticket.created",
            "data": {"ticket_id": 101, "dept": "sales and support"}});
        let no_stream = json!({"id": uuid7(), "name": "ticket.created",
            "data": {"ticket_id": 102, "dept": missing}});
        post(
            &bus,
            &[too_big.clone(), bad_name.clone(), no_stream.clone()],
        )
        .await;
        let more = events(10, 200);
        post(&bus, &more).await;
        good.extend(more);

        let delivered = collect_until(&mut kind, &good_queue, 20, Duration::from_secs(20)).await;
        conformance::assert_delivered(&delivered, &ids(&good), true);

        let deadline = Instant::now() + Duration::from_secs(10);
        let list = loop {
            let (code, list, stderr) = bus.cli(&["dlq", "list"]);
            assert_eq!(code, 0, "{stderr}");
            if list.contains("3 dead letters") || Instant::now() > deadline {
                break list;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let line = conformance::dead_letter_line(&list, &too_big["id"]);
        assert!(line.contains("bytes is larger than a"), "{line}");
        let line = conformance::dead_letter_line(&list, &bad_name["id"]);
        assert!(line.contains("\"sales and support\""), "{line}");
        let line = conformance::dead_letter_line(&list, &no_stream["id"]);
        assert!(line.contains("ResourceNotFoundException"), "{line}");
        assert!(list.contains("3 dead letters"), "{list}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reaches_the_service_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, web) = addresses();
    let path = dir.path().join("deskbus.toml");
    let kind = Kinesis::shared(Service::DataStreams).await;
    std::fs::write(
        &path,
        conformance::config(dir.path(), admin, web, &kind, "t", "", ""),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--connect"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stream out (kinesis_streams): ok"),
        "{stdout}"
    );

    // A moto that checks signatures knows no access key: its XML error
    // (not AWS's JSON) is read and named.
    let moto = OwnMoto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]).await;
    let strict = Kinesis {
        endpoint: moto.internal(),
        ..Kinesis::new(Service::Firehose, SHARED.to_owned(), None).await
    };
    std::fs::write(
        &path,
        conformance::config(dir.path(), admin, web, &strict, "t", "", ""),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--connect"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("stream out (kinesis_firehose): FAILED: Firehose_20150804.ListDeliveryStreams answered http 403: InvalidClientTokenId: The security token included in the request is invalid"),
        "{stdout}"
    );
}

/// What the fake Firehose saw: per event id, how many times it stored it.
#[derive(Default)]
struct FakeLog {
    stored: HashMap<String, usize>,
    attempts: HashMap<String, usize>,
    calls: usize,
}

/// A Firehose that refuses records: every event's first attempt whose
/// ticket is even gets `ServiceUnavailableException` (retryable), and a
/// subject "poison" gets `InvalidArgumentException`, always.
async fn fake_firehose() -> (String, Arc<Mutex<FakeLog>>) {
    use axum::http::{HeaderMap, StatusCode};
    let log = Arc::new(Mutex::new(FakeLog::default()));
    let state = log.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let log = state.clone();
            async move {
                let target = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                if !headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("/us-east-1/firehose/aws4_request"))
                {
                    return (
                        StatusCode::FORBIDDEN,
                        "{\"__type\":\"MissingAuthenticationTokenException\"}".to_owned(),
                    );
                }
                if target == "Firehose_20150804.ListDeliveryStreams" {
                    return (
                        StatusCode::OK,
                        "{\"DeliveryStreamNames\":[],\"HasMoreDeliveryStreams\":false}".to_owned(),
                    );
                }
                let request: Value = serde_json::from_slice(&body).unwrap();
                let mut log = log.lock().unwrap();
                log.calls += 1;
                let mut failed = 0;
                let mut responses = Vec::new();
                for record in request["Records"].as_array().unwrap() {
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(record["Data"].as_str().unwrap())
                        .unwrap();
                    let event: Value = serde_json::from_slice(&data).unwrap();
                    let id = event["id"].as_str().unwrap().to_owned();
                    let attempt = {
                        let n = log.attempts.entry(id.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    let ticket = event["data"]["ticket_id"].as_u64().unwrap();
                    if event["data"]["subject"] == "poison" {
                        failed += 1;
                        responses.push(json!({"ErrorCode": "InvalidArgumentException",
                            "ErrorMessage": "this record is not welcome"}));
                    } else if attempt == 1 && ticket.is_multiple_of(2) {
                        failed += 1;
                        responses.push(json!({"ErrorCode": "ServiceUnavailableException",
                            "ErrorMessage": "Slow down."}));
                    } else {
                        *log.stored.entry(id).or_default() += 1;
                        responses.push(json!({"RecordId": uuid7()}));
                    }
                }
                let answer = json!({"FailedPutCount": failed, "Encrypted": false,
                    "RequestResponses": responses});
                (StatusCode::OK, answer.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_refused_records_are_put_again() {
    let (endpoint, log) = fake_firehose().await;
    let dir = tempfile::tempdir().unwrap();
    let kind = Kinesis {
        service: Service::Firehose,
        endpoint,
        own: None,
        bucket: String::new(),
        seen_objects: HashSet::new(),
        iterators: HashMap::new(),
        drained: HashMap::new(),
        created: Vec::new(),
    };
    let bus = start_deskbus(dir.path(), &kind, "fake", "batch_size = 50", "");
    let good = events(200, 0);
    post(&bus, &good).await;
    let poison = json!({"id": uuid7(), "name": "ticket.created",
        "data": {"ticket_id": 7001, "subject": "poison"}});
    post(&bus, std::slice::from_ref(&poison)).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored = log.lock().unwrap().stored.len();
        if stored >= good.len() {
            break;
        }
        assert!(Instant::now() < deadline, "only {stored} of 200 stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Late re-sends would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = log.lock().unwrap();
    for (i, id) in ids(&good).iter().enumerate() {
        assert_eq!(log.stored.get(id), Some(&1), "event {i} stored once");
        // Odd tickets went once; even ones were refused once, then accepted.
        let want = if i % 2 == 0 { 2 } else { 1 };
        assert_eq!(log.attempts.get(id), Some(&want), "event {i}: attempts");
    }
    let poison_id = poison["id"].as_str().unwrap();
    assert_eq!(
        log.attempts.get(poison_id),
        Some(&1),
        "a refused record is not put again"
    );
    assert!(log.calls > 4, "{} calls", log.calls);
    drop(log);

    let list = wait_dead_letters(&bus, 1);
    let line = list
        .lines()
        .find(|l| l.contains(poison_id))
        .unwrap_or_else(|| panic!("the poison event is not a dead letter:\n{list}"));
    assert!(line.contains("InvalidArgumentException"), "{line}");
    assert!(
        bus.metric("deskbus_stream_retried_events_total", "stream=\"out\"") >= 100.0,
        "the refused records were retried"
    );
}
