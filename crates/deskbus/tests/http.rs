//! The `http` stream against a real HTTP server on loopback (an axum app in
//! the test), with the binary in between: retries on 503/429 and through a
//! server restart, poison 4xx to dead letters, batch modes.

mod util;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use util::*;

#[derive(Default)]
struct Receiver {
    /// Event ids received, per queue (path segment), in arrival order.
    received: Mutex<HashMap<String, Vec<String>>>,
    /// Idempotency-Key headers seen.
    keys: Mutex<Vec<String>>,
    /// Answer 503 to this many requests first.
    fail_first: AtomicUsize,
    /// Then answer 429 (Retry-After: 1) to this many.
    throttle: AtomicUsize,
    requests: AtomicUsize,
    /// Bytes of body in a success answer (none: 204).
    answer_bytes: AtomicUsize,
    /// The client ports requests came from: one per connection.
    peers: Mutex<std::collections::HashSet<u16>>,
}

async fn hook(
    State(r): State<Arc<Receiver>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    r.requests.fetch_add(1, Ordering::SeqCst);
    r.peers.lock().unwrap().insert(peer.port());
    if r.fail_first.load(Ordering::SeqCst) > 0 {
        r.fail_first.fetch_sub(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            HeaderMap::new(),
            "warming up",
        )
            .into_response();
    }
    if r.throttle.load(Ordering::SeqCst) > 0 {
        r.throttle.fetch_sub(1, Ordering::SeqCst);
        let mut h = HeaderMap::new();
        h.insert("retry-after", "1".parse().unwrap());
        return (StatusCode::TOO_MANY_REQUESTS, h, "slow down").into_response();
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let events: Vec<Value> = if content_type.starts_with("application/x-ndjson") {
        body.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    } else {
        match serde_json::from_slice(&body).unwrap() {
            Value::Array(items) => items,
            one => vec![one],
        }
    };
    if events.iter().any(|e| e["data"]["poison"] == true) {
        return (
            StatusCode::BAD_REQUEST,
            HeaderMap::new(),
            "poison is not allowed here",
        )
            .into_response();
    }
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        r.keys.lock().unwrap().push(key.to_owned());
    }
    let mut received = r.received.lock().unwrap();
    for e in events {
        received
            .entry(queue.clone())
            .or_default()
            .push(e["id"].as_str().unwrap().to_owned());
    }
    match r.answer_bytes.load(Ordering::SeqCst) {
        0 => (StatusCode::NO_CONTENT, HeaderMap::new(), "").into_response(),
        n => (StatusCode::OK, HeaderMap::new(), "x".repeat(n)).into_response(),
    }
}

/// The receiver's server, until [`Server::stop`] or drop.
struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Stops it as a restarted receiver would be: no more connections, and
    /// the open ones (deskbus's keep-alive ones too) closed once their
    /// request in flight, if any, is answered.
    async fn stop(mut self) {
        self.stop.take();
        let _ = (&mut self.task).await;
    }
}

/// Serves the receiver on `addr`.
async fn serve(addr: SocketAddr, receiver: Arc<Receiver>) -> Server {
    let app = axum::Router::new()
        .route("/hook/{queue}", axum::routing::post(hook))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server {
        stop: Some(stop),
        task,
    }
}

fn config(
    dir: &std::path::Path,
    admin: SocketAddr,
    web: SocketAddr,
    sink: SocketAddr,
    mode: &str,
) -> String {
    webhook_to_file_config(dir, admin, web, "", "", "")
        .replace(
            "type = \"file\"",
            &format!("type = \"http\"\nurl = \"http://{sink}/hook/{{queue}}\"\nmode = \"{mode}\"\nheaders = {{ \"X-Team\" = \"support\" }}"),
        )
        .replace(&format!("path = \"{}/{{queue}}.ndjson\"", dir.join("out").display()), "")
        + "\n[streams.out.retry]\ninitial_backoff = \"50ms\"\nmax_backoff = \"300ms\"\n"
}

async fn post_events(bus: &Deskbus, n: usize, extra: Value) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in 0..n.div_ceil(100) {
        let events: Vec<Value> = (0..100.min(n - chunk * 100))
            .map(|i| {
                let id = uuid7();
                ids.push(id.clone());
                let mut e = event(&id, (chunk * 100 + i) as u64);
                e["data"]["extra"] = extra.clone();
                e
            })
            .collect();
        post(bus, &events).await;
    }
    ids
}

/// deskbus posting what its webhook `web` takes to `sink`, in `mode`.
fn start(
    dir: &std::path::Path,
    admin: SocketAddr,
    web: SocketAddr,
    sink: SocketAddr,
    mode: &str,
) -> Deskbus {
    Deskbus::start(dir, &config(dir, admin, web, sink, mode), admin, web)
}

/// A free port on 127.0.0.1.
fn loopback() -> SocketAddr {
    ([127, 0, 0, 1], free_port()).into()
}

impl Receiver {
    /// Events received for `queue`.
    fn count(&self, queue: &str) -> usize {
        self.received.lock().unwrap().get(queue).map_or(0, Vec::len)
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A success answer's body is read to its end, so its connection serves
/// the next request: 300 single posts, each answered with 256 KiB, travel
/// over a few connections per concurrent sender (`concurrency` is 4; a
/// sender may open a spare while its last connection is being handed back
/// to the pool), not one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_with_a_body_leave_their_connection_reusable() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, web, sink) = (loopback(), loopback(), loopback());
    let receiver = Arc::new(Receiver::default());
    receiver.answer_bytes.store(256 * 1024, Ordering::SeqCst);
    let _server = serve(sink, receiver.clone()).await;
    let bus = start(dir.path(), admin, web, sink, "single");
    let ids = post_events(&bus, 300, json!(null)).await;
    wait_for(Duration::from_secs(30), "300 events", || {
        receiver.count("tickets") >= 300
    });
    assert_eq!(receiver.count("tickets"), ids.len());
    let connections = receiver.peers.lock().unwrap().len();
    assert!(
        connections <= 12,
        "{connections} connections for 300 requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_mode_retries_5xx_and_429_and_sends_idempotency_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, web, sink) = (loopback(), loopback(), loopback());
    let receiver = Arc::new(Receiver::default());
    receiver.fail_first.store(5, Ordering::SeqCst);
    receiver.throttle.store(1, Ordering::SeqCst);
    let _server = serve(sink, receiver.clone()).await;
    let bus = start(dir.path(), admin, web, sink, "single");
    let (code, out, _) = check_connect(&bus.config);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("stream out (http): ok"), "{out}");
    let ids = post_events(&bus, 500, json!(null)).await;
    wait_for(Duration::from_secs(30), "500 events", || {
        receiver.count("tickets") >= 500
    });
    let got = receiver.received.lock().unwrap()["tickets"].clone();
    assert_eq!(sorted(got), sorted(ids.clone()), "each event exactly once");
    // One key per entry: the event id and the use case (`tickets`).
    let keys: Vec<String> = ids.iter().map(|id| format!("{id}/tickets")).collect();
    assert_eq!(sorted(receiver.keys.lock().unwrap().clone()), sorted(keys));
    assert!(bus.metric("deskbus_stream_retried_events_total", "stream=\"out\"") >= 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_dead_letters_and_a_server_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, web, sink) = (loopback(), loopback(), loopback());
    let receiver = Arc::new(Receiver::default());
    let server = serve(sink, receiver.clone()).await;
    let bus = start(dir.path(), admin, web, sink, "ndjson");
    let mut ids = post_events(&bus, 2_000, json!(null)).await;
    // The receiver goes away in the middle of the run, then comes back.
    server.stop().await;
    ids.extend(post_events(&bus, 2_000, json!(null)).await);
    let client = http_client();
    let poison_id = uuid7();
    let poison = json!({"id": poison_id, "name": "ticket.created", "data": {"ticket_id": 999_999, "poison": true}});
    assert_eq!(
        client
            .post(bus.url())
            .json(&poison)
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    wait_for(
        Duration::from_secs(10),
        "retries while the server is down",
        || bus.metric("deskbus_stream_retried_events_total", "stream=\"out\"") > 0.0,
    );
    let _server = serve(sink, receiver.clone()).await;
    ids.extend(post_events(&bus, 1_000, json!(null)).await);
    wait_for(
        Duration::from_secs(60),
        "every event after the restart",
        || {
            let received = receiver.received.lock().unwrap();
            let got: std::collections::HashSet<&String> =
                received.get("tickets").into_iter().flatten().collect();
            ids.iter().all(|id| got.contains(id))
        },
    );
    wait_for(
        Duration::from_secs(20),
        "the poison event in dead letters",
        || {
            let (_, list, _) = bus.cli(&["dlq", "list"]);
            list.contains(&poison_id)
                && list.contains("http 400 Bad Request: poison is not allowed here")
        },
    );
    // Duplicates only by id: nothing arrived that was not sent.
    let received = receiver.received.lock().unwrap();
    let sent: std::collections::HashSet<&String> = ids.iter().collect();
    assert!(received["tickets"].iter().all(|id| sent.contains(id)));
    assert!(!received["tickets"].contains(&poison_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_array_mode_batches_by_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, web, sink) = (loopback(), loopback(), loopback());
    let receiver = Arc::new(Receiver::default());
    let _server = serve(sink, receiver.clone()).await;
    let text = config(dir.path(), admin, web, sink, "json_array")
        .replace("queue = \"tickets\"", "queue = \"dept {department:-none}\"");
    let bus = Deskbus::start(dir.path(), &text, admin, web);
    let events: Vec<Value> = (0..300)
        .map(|i| json!({"id": uuid7(), "name": "ticket.created", "data": {"ticket_id": i, "department": if i % 2 == 0 { "sales" } else { "support/2" }}}))
        .collect();
    post(&bus, &events).await;
    wait_for(Duration::from_secs(20), "300 events", || {
        receiver
            .received
            .lock()
            .unwrap()
            .values()
            .map(Vec::len)
            .sum::<usize>()
            >= 300
    });
    let received = receiver.received.lock().unwrap();
    assert_eq!(
        received["dept sales"].len(),
        150,
        "{:?}",
        received.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        received["dept support/2"].len(),
        150,
        "the queue is percent-encoded into one path segment"
    );
    assert!(
        receiver.requests.load(Ordering::SeqCst) < 300,
        "batched, not one request per event"
    );
}
