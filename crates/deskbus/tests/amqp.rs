//! webhook → amqp stream → the real RabbitMQ on 127.0.0.1:5672, read back
//! with lapin the way a bus client would: a durable queue of the test's own,
//! bound to an exchange of the test's own, consumed with acks.
//!
//! Needs the shared broker (`scripts/services rabbitmq`); fails, never skips,
//! without it. The restart test stops and starts the broker's app with
//! `rabbitmqctl`; a guard starts it again even when the test fails.

#![cfg(feature = "amqp")]

mod conformance;
mod util;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conformance::{StreamKind, collect_until, events, ids, post, start_deskbus};
use lapin::message::DeliveryResult;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;
use util::rabbitmq::{AppGuard, URL, connect, declare, delete, rabbitmqctl};
use util::*;

/// A message as the test consumer received it.
#[derive(Debug, Clone)]
struct Received {
    routing_key: String,
    properties: BasicProperties,
    body: serde_json::Value,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// The broker is shared: the restart test takes it alone, the others share it.
static BROKER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The amqp stream kind: an exchange and a queue of the test's own, and a
/// consumer task that reconnects by itself (the broker may restart) and
/// stores every message it receives.
struct Amqp {
    exchange: String,
    queue: String,
    extra: String,
    inbox: Inbox,
    consumer: tokio::task::JoinHandle<()>,
}

impl Amqp {
    /// Binds the test queue to a new topic exchange with `binding`.
    async fn new(binding: &str) -> Amqp {
        let name = format!("deskbus.test.{}", uuid7());
        let (exchange, queue) = (name.clone(), format!("{name}.q"));
        let setup = connect().await;
        let channel = setup.create_channel().await.unwrap();
        declare(&channel, &exchange, &queue, binding).await.unwrap();
        let _ = setup.close(200, "set up".into()).await;
        let inbox = Inbox::default();
        let consumer = tokio::spawn(consume(
            exchange.clone(),
            queue.clone(),
            binding.to_owned(),
            inbox.clone(),
        ));
        Amqp {
            exchange,
            queue,
            extra: String::new(),
            inbox,
            consumer,
        }
    }

    /// Takes what arrived for `routing_key`.
    fn take(&self, routing_key: &str) -> Vec<Received> {
        let mut inbox = self.inbox.lock().unwrap();
        let (mine, rest): (Vec<Received>, Vec<Received>) =
            inbox.drain(..).partition(|m| m.routing_key == routing_key);
        *inbox = rest;
        mine
    }

    /// Waits for `n` messages on `routing_key`.
    async fn wait(&self, routing_key: &str, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while got.len() < n {
            got.extend(self.take(routing_key));
            assert!(
                Instant::now() < deadline,
                "only {} of {n} messages for {routing_key}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        got
    }

    /// Deletes the queue and the exchange (the broker is shared).
    async fn cleanup(self) {
        self.consumer.abort();
        delete(connect().await, &self.exchange, &self.queue).await;
    }
}

/// Consumes `queue` forever, reconnecting after a broker restart.
async fn consume(exchange: String, queue: String, binding: String, inbox: Inbox) {
    loop {
        let Ok(c) = Connection::connect(URL, ConnectionProperties::default()).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let session = async {
            let channel = c.create_channel().await?;
            declare(&channel, &exchange, &queue, &binding).await?;
            channel.basic_qos(500, BasicQosOptions::default()).await?;
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let inbox = inbox.clone();
            // lapin spawns each call's future as a task of its own, so the
            // message is stored in the call itself, in the broker's order.
            consumer.set_delegate(move |delivery: DeliveryResult| {
                let delivery = match delivery {
                    Ok(Some(delivery)) => {
                        let body = serde_json::from_slice(&delivery.data)
                            .unwrap_or_else(|e| panic!("a message that is not JSON: {e}"));
                        // Stored before the ack: an ack lost in a restart
                        // means a redelivery, seen twice, as a real consumer would.
                        inbox.lock().unwrap().push(Received {
                            routing_key: delivery.routing_key.to_string(),
                            properties: delivery.properties.clone(),
                            body,
                        });
                        Some(delivery)
                    }
                    _ => None,
                };
                async move {
                    if let Some(delivery) = delivery {
                        let _ = delivery.ack(BasicAckOptions::default()).await;
                    }
                }
            });
            Ok::<_, lapin::Error>(channel)
        };
        if let Ok(channel) = session.await {
            while c.status().connected() && channel.status().connected() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl StreamKind for Amqp {
    fn type_name(&self) -> &'static str {
        "amqp"
    }

    fn config_snippet(&self) -> String {
        format!(
            "type = \"amqp\"\nurl = \"{URL}\"\nexchange = \"{}\"\n{}",
            self.exchange, self.extra
        )
    }

    async fn collect_delivered_ids(&mut self, queue: &str) -> Vec<String> {
        self.take(queue)
            .into_iter()
            .map(|m| {
                let id = m.body["id"].as_str().expect("an event id").to_owned();
                // A duplicate is only ever the same event: message_id is its id.
                assert_eq!(
                    m.properties.message_id().as_ref().map(|s| s.as_str()),
                    Some(id.as_str())
                );
                id
            })
            .collect()
    }

    /// `rabbitmqctl` boots an Erlang VM before it stops anything (over a
    /// second here): 25 rounds 200 ms apart make a run of about 5 s, so the
    /// stop, asked for a quarter in, lands in its middle.
    fn restart_post_pause(&self) -> Duration {
        Duration::from_millis(200)
    }

    async fn restart_server(&mut self, down: Duration) {
        let guard = AppGuard;
        tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"]))
            .await
            .unwrap();
        tokio::time::sleep(down).await;
        tokio::task::spawn_blocking(move || drop(guard)) // start_app
            .await
            .unwrap();
    }
}

fn addresses() -> (SocketAddr, SocketAddr) {
    (
        ([127, 0, 0, 1], free_port()).into(),
        ([127, 0, 0, 1], free_port()).into(),
    )
}

fn check_connect(dir: &std::path::Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join("deskbus.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--connect"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reaches_the_broker_or_says_why_not() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let mut kind = Amqp::new("#").await;
    let (admin, web) = addresses();
    let config = conformance::config(dir.path(), admin, web, &kind, "t", "", "");
    let (code, out) = check_connect(dir.path(), &config);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("stream out (amqp): ok"), "{out}");

    // Nothing listens there; the password never shows.
    let port = free_port();
    let unreachable = config.replace(URL, &format!("amqp://guest:hunter2@127.0.0.1:{port}/%2f"));
    let (code, out) = check_connect(dir.path(), &unreachable);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "stream out (amqp): FAILED: cannot connect to amqp://guest:[redacted]@127.0.0.1:{port}/%2f"
        )),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");

    // `passive` needs the exchange to exist.
    kind.extra = "declare = \"passive\"".into();
    let missing = conformance::config(dir.path(), admin, web, &kind, "t", "", "")
        .replace(&kind.exchange, "deskbus.test.missing");
    let (code, out) = check_connect(dir.path(), &missing);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("cannot find exchange \"deskbus.test.missing\"") && out.contains("NOT_FOUND"),
        "{out}"
    );
    kind.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_sequential_and_parallel_posts_exactly() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let mut kind = Amqp::new("#").await;
    conformance::sequential_and_parallel_delivery(&mut kind, dir.path()).await;
    kind.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_carry_the_id_type_persistence_and_headers() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let kind = Amqp::new("ticket.#").await;
    // `out` keeps the defaults; `light` sends transient messages.
    let light = format!(
        "[streams.light]\ntype = \"amqp\"\nurl = \"{URL}\"\nexchange = \"{}\"\npersistent = false\n\
         [use_cases.light]\ninputs = [\"web\"]\nrouting_keys = [\"ticket.created\"]\n\
         stream = \"light\"\nqueue = \"ticket.light\"\n",
        kind.exchange
    );
    let bus = start_deskbus(
        dir.path(),
        &kind,
        "ticket.created.{department_id}",
        "headers = { \"x-origin\" = \"deskbus\", \"x-site\" = \"lyon\" }",
        &light,
    );
    let id = uuid7();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    post(
        &bus,
        &[json!({"id": id, "name": "ticket.created",
                 "data": {"ticket_id": 7, "department_id": 3, "subject": "Québec"}})],
    )
    .await;

    let got = kind.wait("ticket.created.3", 1).await.remove(0);
    assert_eq!(got.body["id"], json!(id));
    assert_eq!(got.body["data"]["subject"], json!("Québec"));
    let p = &got.properties;
    assert_eq!(
        p.message_id().as_ref().map(|s| s.as_str()),
        Some(id.as_str())
    );
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(*p.delivery_mode(), Some(2), "persistent by default");
    let timestamp = (*p.timestamp()).expect("a timestamp");
    assert!(
        timestamp >= before && timestamp <= before + 60,
        "{timestamp}"
    );
    let headers = p.headers().as_ref().expect("headers").inner();
    let header = |name: &str| match headers.get(name) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("header {name}: {other:?}"),
    };
    assert_eq!(header("x-origin"), "deskbus");
    assert_eq!(header("x-site"), "lyon");

    let light = kind.wait("ticket.light", 1).await.remove(0);
    assert_eq!(light.body["id"], json!(id));
    assert_ne!(*light.properties.delivery_mode(), Some(2), "transient");
    assert!(
        light.properties.headers().is_none(),
        "no headers configured"
    );
    drop(bus);
    kind.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_events_go_to_dead_letters_and_the_rest_flows() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    // Only `tickets.none` has a queue.
    let mut kind = Amqp::new("tickets.none").await;
    let bus = start_deskbus(dir.path(), &kind, "tickets.{dept:-none}", "", "");

    let mut good = events(10, 1);
    post(&bus, &good).await;
    let unroutable = json!({"id": uuid7(), "name": "ticket.created",
        "data": {"ticket_id": 100, "dept": "sales"}});
    let too_long = json!({"id": uuid7(), "name": "ticket.created",
        "data": {"ticket_id": 101, "dept": "x".repeat(300)}});
    // In one request between good events, so that they share a batch.
    let around = events(5, 200);
    let mut mixed = around.clone();
    mixed.insert(2, unroutable.clone());
    mixed.push(too_long.clone());
    post(&bus, &mixed).await;
    good.extend(around);
    let more = events(10, 300);
    post(&bus, &more).await;
    good.extend(more);

    let delivered = collect_until(
        &mut kind,
        "tickets.none",
        good.len(),
        Duration::from_secs(20),
    )
    .await;
    conformance::assert_delivered(&delivered, &ids(&good), true);

    let list = wait_dead_letters(&bus, 2);
    let line = conformance::dead_letter_line(&list, &unroutable["id"]);
    assert!(
        line.contains("unroutable") && line.contains("312 NO_ROUTE"),
        "{line}"
    );
    let line = conformance::dead_letter_line(&list, &too_long["id"]);
    assert!(line.contains("longer than AMQP's 255"), "{line}");
    drop(bus);
    kind.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_through_a_broker_restart() {
    let _broker = BROKER.write().await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut kind = Amqp::new("#").await;
    // Starts the broker's app again even if the scenario fails mid-restart.
    let guard = AppGuard;
    conformance::at_least_once_through_a_server_restart(&mut kind, dir.path()).await;
    drop(guard);
    kind.cleanup().await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
