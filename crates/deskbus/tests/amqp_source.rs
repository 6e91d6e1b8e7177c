//! The real RabbitMQ on 127.0.0.1:5672 → the amqp source → a file stream.
//! Messages are published with plain lapin the way the XiVO bus publishes
//! them (a durable topic exchange, a JSON envelope `{name, origin_uuid,
//! data}`), but persistent and with publisher confirms, so that the test
//! knows what the broker holds. Each test has an exchange and a queue of
//! its own, deleted at its end.
//!
//! Needs the shared broker (`scripts/services rabbitmq`); fails, never
//! skips, without it. The restart test stops and starts the broker's app
//! with `rabbitmqctl` and holds the broker alone meanwhile; a guard starts
//! the app again even when the test fails.

#![cfg(feature = "amqp")]

mod util;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ExchangeKind};
use serde_json::{Value, json};
use util::rabbitmq::{AppGuard, URL, connect, delete, rabbitmqctl, ready_messages};
use util::*;

const XIVO: &str = "ca7f87e9-c2c8-5fad-ba1b-c3140ebb9be3";

/// The broker is shared: the restart test takes it alone, the others share it.
static BROKER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A test's exchange and queue names, a publisher on a confirm-mode
/// channel, and the deskbus consuming them into `<dir>/out/events.ndjson`.
struct Bus {
    exchange: String,
    queue: String,
    connection: Connection,
    channel: Channel,
}

impl Bus {
    async fn new() -> Bus {
        let name = format!("deskbus.test.src.{}", uuid7());
        let connection = connect().await;
        let channel = connection.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        Bus {
            queue: format!("{name}.q"),
            exchange: name,
            connection,
            channel,
        }
    }

    /// Publishes one persistent message and waits for the broker's confirm.
    async fn publish(&self, routing_key: &str, body: &[u8], properties: BasicProperties) {
        self.publish_many(&[(routing_key.to_owned(), body.to_vec(), properties)])
            .await;
    }

    /// Publishes persistent messages, then waits for every confirm.
    async fn publish_many(&self, messages: &[(String, Vec<u8>, BasicProperties)]) {
        let mut confirms = Vec::with_capacity(messages.len());
        for (key, body, properties) in messages {
            let properties = properties
                .clone()
                .with_delivery_mode(2)
                .with_content_type("application/json".into());
            confirms.push(
                self.channel
                    .basic_publish(
                        self.exchange.as_str().into(),
                        key.as_str().into(),
                        BasicPublishOptions::default(),
                        body,
                        properties,
                    )
                    .await
                    .unwrap(),
            );
        }
        for confirm in confirms {
            assert_eq!(confirm.await.unwrap(), Confirmation::Ack(None));
        }
    }

    /// Publishes an envelope as the XiVO bus does.
    async fn publish_event(&self, routing_key: &str, name: &str, data: Value) {
        let body = json!({"name": name, "origin_uuid": XIVO, "data": data});
        self.publish(
            routing_key,
            body.to_string().as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }

    /// Messages ready in the test's queue (not counting unacknowledged ones).
    async fn ready_messages(&self) -> u32 {
        ready_messages(&self.connection, &self.queue).await
    }

    /// Deletes the queue and the exchange (the broker is shared).
    async fn cleanup(self) {
        delete(self.connection, &self.exchange, &self.queue).await;
    }
}

/// deskbus with the amqp source `bus` on `exchange` (`source` adds keys to
/// it), and every event it takes into `<dir>/out/events.ndjson`;
/// `use_case` replaces the use case's selection keys.
fn start(dir: &Path, exchange: &str, source: &str, use_case: &str) -> Deskbus {
    let source = format!("type = \"amqp\"\nurl = \"{URL}\"\nexchange = \"{exchange}\"\n{source}");
    start_source_to_file(dir, "bus", &source, use_case, "")
}

/// `deskbus check --connect` on the amqp source `bus` with `url`.
fn check_connect_with(dir: &Path, url: &str, exchange: &str, source: &str) -> (i32, String) {
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let source = format!("type = \"amqp\"\nurl = \"{url}\"\nexchange = \"{exchange}\"\n{source}");
    let path = dir.join("check.toml");
    std::fs::write(
        &path,
        source_to_file_config(dir, admin, "bus", &source, "", ""),
    )
    .unwrap();
    let (code, stdout, stderr) = check_connect(&path);
    (code, format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reaches_the_broker_and_keeps_the_password_out() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new().await;
    let queue = format!("queue = \"{}\"", bus.queue);
    let (code, out) = check_connect_with(dir.path(), URL, &bus.exchange, &queue);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("source bus (amqp): ok (connected to amqp://guest:"),
        "{out}"
    );
    let wrong = URL.replace("guest:guest", "guest:not-the-pw");
    let (code, out) = check_connect_with(dir.path(), &wrong, &bus.exchange, &queue);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("source bus (amqp): FAILED: cannot connect"),
        "{out}"
    );
    assert!(!out.contains("not-the-pw"), "{out}");
    bus.cleanup().await;
}

/// The events delivered so far.
fn delivered(dir: &Path) -> Vec<Value> {
    delivered_events(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xivo_events_arrive_with_their_routing_keys_and_fields() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new().await;
    let queue = format!("queue = \"{}\"", bus.queue);
    let deskbus = start(dir.path(), &bus.exchange, &queue, "");

    bus.publish_event(
        "call_form_result",
        "call_form_result",
        json!({"user_id": 40, "variables": {"firstname": "John", "lastname": "Doe"}}),
    )
    .await;
    bus.publish_event(
        "status.agent",
        "agent_status_update",
        json!({"agent_id": 42, "xivo_id": XIVO, "status": "logged_in"}),
    )
    .await;
    bus.publish_event(
        "ami.QueueMemberStatus",
        "QueueMemberStatus",
        json!({"Status": "1", "MemberName": "sip/m3ylhs", "Queue": "petak"}),
    )
    .await;
    let chat_key = format!("chat.message.{XIVO}.42");
    bus.publish_event(
        &chat_key,
        "chat_message_event",
        json!({"alias": "Alice", "to": [XIVO, 42], "from": [XIVO, 22], "msg": "Salut, Québec !"}),
    )
    .await;
    // A deskbus envelope (another deskbus's amqp stream): its id and time
    // are kept; the broker's routing key wins over the body's.
    let id = uuid7();
    bus.publish(
        "ticket.created.3",
        json!({"id": id, "time": "2026-01-02T03:04:05Z", "name": "ticket.created",
               "routing_key": "ignored", "data": {"ticket_id": 7}})
        .to_string()
        .as_bytes(),
        BasicProperties::default().with_message_id(id.as_str().into()),
    )
    .await;
    // No id in the body: the message id and timestamp give the event's.
    let message_id = uuid7();
    bus.publish(
        "status.user",
        json!({"name": "user_status_update", "origin_uuid": XIVO,
               "data": {"user_id": 42, "xivo_id": XIVO, "status": "busy"}})
        .to_string()
        .as_bytes(),
        BasicProperties::default()
            .with_message_id(message_id.as_str().into())
            .with_timestamp(1_700_000_000),
    )
    .await;

    let events = wait_delivered(dir.path(), 6, Duration::from_secs(20));
    let by_name: HashMap<&str, &Value> = events
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e))
        .collect();
    let form = by_name["call_form_result"];
    assert_eq!(form["routing_key"], "call_form_result");
    assert_eq!(form["origin_uuid"], XIVO);
    assert_eq!(form["source"], "bus");
    assert_eq!(form["data"]["user_id"], 40);
    assert_eq!(form["data"]["variables"]["lastname"], "Doe");
    let keys: Vec<&String> = form["data"]["variables"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, ["firstname", "lastname"], "data keeps its order");
    assert_eq!(
        uuid::Uuid::parse_str(form["id"].as_str().unwrap())
            .unwrap()
            .get_version_num(),
        7
    );
    assert_eq!(
        by_name["agent_status_update"]["routing_key"],
        "status.agent"
    );
    assert_eq!(
        by_name["agent_status_update"]["data"]["status"],
        "logged_in"
    );
    let ami = by_name["QueueMemberStatus"];
    assert_eq!(ami["routing_key"], "ami.QueueMemberStatus");
    assert_eq!(ami["data"]["MemberName"], "sip/m3ylhs");
    let chat = by_name["chat_message_event"];
    assert_eq!(chat["routing_key"], chat_key.as_str());
    assert_eq!(chat["data"]["msg"], "Salut, Québec !");
    assert_eq!(chat["data"]["to"], json!([XIVO, 42]));
    let ticket = by_name["ticket.created"];
    assert_eq!(ticket["id"], id.as_str());
    assert_eq!(ticket["time"], "2026-01-02T03:04:05Z");
    assert_eq!(ticket["routing_key"], "ticket.created.3");
    let user = by_name["user_status_update"];
    assert_eq!(user["id"], message_id.as_str());
    assert_eq!(user["time"], "2023-11-14T22:13:20Z");

    drop(deskbus);
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_keys_choose_what_arrives() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new().await;
    let source = format!(
        "queue = \"{}\"\nbinding_keys = [\"call_form_result\", \"status.#\"]",
        bus.queue
    );
    let deskbus = start(dir.path(), &bus.exchange, &source, "");
    let keys = [
        ("call_form_result", true),
        ("status.agent", true),
        ("status.user", true),
        ("status", true), // `#` matches zero words
        ("status.agent.extra", true),
        ("ami.Hangup", false),
        ("call_form_results", false),
        ("chat.message.x.1", false),
        ("service.registered.status", false),
    ];
    for (key, _) in keys {
        bus.publish_event(key, "probe", json!({"key": key})).await;
    }
    let want: Vec<&str> = keys.iter().filter(|k| k.1).map(|k| k.0).collect();
    let events = wait_delivered(dir.path(), want.len(), Duration::from_secs(20));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got: Vec<String> = delivered(dir.path())
        .iter()
        .map(|e| {
            assert_eq!(e["routing_key"], e["data"]["key"]);
            e["routing_key"].as_str().unwrap().to_owned()
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = want.into_iter().map(String::from).collect();
    want.sort();
    assert_eq!(got, want, "{events:?}");
    drop(deskbus);
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_go_to_dead_letters_and_are_acknowledged() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new().await;
    let queue = format!("queue = \"{}\"", bus.queue);
    let mut deskbus = start(dir.path(), &bus.exchange, &queue, "");

    let bad: [(&str, &[u8], &str); 6] = [
        ("bad.json", b"{\"name\": ", "not a JSON event envelope"),
        ("bad.text", b"hello", "expected value at line 1 column 1"),
        (
            "bad.noname",
            br#"{"origin_uuid": "x", "data": {}}"#,
            "missing field `name`",
        ),
        (
            "bad.type",
            br#"{"name": 5, "data": {}}"#,
            "invalid type: integer `5`, expected a string",
        ),
        (
            "bad.array",
            b"[1, 2]",
            "invalid type: sequence, expected a map",
        ),
        (
            "bad.id",
            br#"{"name": "x", "id": "nope", "data": {}}"#,
            "invalid event envelope: `id` is not a UUID",
        ),
    ];
    for (key, body, _) in &bad {
        bus.publish(key, body, BasicProperties::default()).await;
    }
    // As Wazo publishes it: keys beside the envelope's are set aside.
    let wazo = json!({"name": "call_form_result", "origin_uuid": XIVO,
        "required_acl": "events.call_form_result", "required_access": "event.call_form_result",
        "timestamp": "2024-04-09T10:50:25.054168", "tenant_uuid": XIVO,
        "data": {"user_id": 1, "variables": {}}});
    bus.publish(
        "good",
        wazo.to_string().as_bytes(),
        BasicProperties::default(),
    )
    .await;

    let events = wait_delivered(dir.path(), 1, Duration::from_secs(20));
    assert_eq!(events[0]["name"], "call_form_result");
    assert_eq!(events[0]["data"]["user_id"], 1);
    let list = wait_dead_letters(&deskbus, bad.len());
    for (key, _, reason) in &bad {
        let line = list
            .lines()
            .find(|l| l.contains(&format!("{key}#")))
            .unwrap_or_else(|| panic!("no dead letter for {key}:\n{list}"));
        assert!(
            line.contains("(source)") && line.contains("bus (input)"),
            "{line}"
        );
        assert!(line.contains(reason), "{reason} not in {line}");
    }
    // `dlq show` keeps the body as it came.
    let id = list
        .lines()
        .find(|l| l.contains("bad.text#"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let (code, show, stderr) = deskbus.cli(&["dlq", "show", &id]);
    assert_eq!(code, 0, "{stderr}");
    assert!(show.contains("hello"), "{show}");

    // Acknowledged: nothing comes back once deskbus has let go of the queue.
    assert!(deskbus.terminate().success());
    assert_eq!(bus.ready_messages().await, 0);
    assert_eq!(delivered(dir.path()).len(), 1);
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_events_are_acknowledged_and_counted() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new().await;
    let queue = format!("queue = \"{}\"", bus.queue);
    let mut deskbus = start(
        dir.path(),
        &bus.exchange,
        &queue,
        "events = [\"call_form_result\"]",
    );
    for i in 0..3 {
        bus.publish_event("status.user", "user_status_update", json!({"user_id": i}))
            .await;
    }
    bus.publish_event(
        "call_form_result",
        "call_form_result",
        json!({"user_id": 1}),
    )
    .await;
    wait_delivered(dir.path(), 1, Duration::from_secs(20));
    wait_for(Duration::from_secs(5), "unmatched events counted", || {
        deskbus.metric(
            "deskbus_source_rejected_events_total",
            "reason=\"unmatched\"",
        ) == 3.0
    });
    assert!(deskbus.terminate().success());
    assert_eq!(
        bus.ready_messages().await,
        0,
        "unmatched events are acknowledged"
    );
    assert_eq!(delivered(dir.path()).len(), 1);
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_queue_keeps_what_is_published_while_deskbus_is_down() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new().await;
    let queue = format!("queue = \"{}\"", bus.queue);
    let mut deskbus = start(dir.path(), &bus.exchange, &queue, "");
    // With message ids, so that what the kill leaves unacknowledged is
    // recognised when it comes back (without, it may be committed twice).
    let round = |first: usize, n: usize| {
        (first..first + n)
            .map(|i| {
                let body = json!({"name": "call_form_result", "origin_uuid": XIVO,
                                  "data": {"user_id": i, "variables": {}}});
                (
                    "call_form_result".to_owned(),
                    body.to_string().into_bytes(),
                    BasicProperties::default().with_message_id(format!("form-{i}").into()),
                )
            })
            .collect::<Vec<_>>()
    };
    bus.publish_many(&round(0, 10)).await;
    wait_delivered(dir.path(), 10, Duration::from_secs(20));

    // Stopped cleanly, then killed: either way the queue holds what comes meanwhile.
    assert!(deskbus.terminate().success());
    bus.publish_many(&round(10, 20)).await;
    deskbus.spawn();
    wait_delivered(dir.path(), 30, Duration::from_secs(20));
    deskbus.kill();
    bus.publish_many(&round(30, 20)).await;
    deskbus.spawn();
    let events = wait_delivered(dir.path(), 50, Duration::from_secs(20));

    tokio::time::sleep(Duration::from_millis(500)).await;
    // Each message one event (a second delivery by the file stream after
    // the kill would repeat its id, which at least once allows).
    let mut users = BTreeMap::<u64, std::collections::BTreeSet<String>>::new();
    for e in delivered(dir.path()) {
        users
            .entry(e["data"]["user_id"].as_u64().unwrap())
            .or_default()
            .insert(e["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(users.len(), 50, "{events:?}");
    assert!(users.values().all(|ids| ids.len() == 1), "{users:?}");
    drop(deskbus);
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_checks_events_against_the_xivo_catalog() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new().await;
    let source = format!("queue = \"{}\"\nvalidate = true", bus.queue);
    let deskbus = start(dir.path(), &bus.exchange, &source, "");

    bus.publish_event(
        "call_form_result",
        "call_form_result",
        json!({"user_id": 40, "variables": {"firstname": "John"}}),
    )
    .await;
    bus.publish_event(
        "ami.Hangup",
        "Hangup",
        json!({"Channel": "SIP/abc-0001", "Cause": "16"}),
    )
    .await;
    let refused = [
        (
            "ticket.created",
            "ticket.created",
            json!({}),
            "unknown XiVO event `ticket.created`",
        ),
        (
            "call_form_result",
            "call_form_result",
            json!({"variables": {}}),
            "`data.user_id` is missing",
        ),
        (
            "status.agent",
            "agent_status_update",
            json!({"agent_id": 1, "xivo_id": "nope", "status": "logged_in"}),
            "`data.xivo_id` must be a string (UUID), found \"nope\"",
        ),
        (
            "ami.Newchannel",
            "Newchannel",
            json!({"Uniqueid": 1700000000.1}),
            "`data.Uniqueid` must be a string",
        ),
    ];
    for (key, name, data, _) in &refused {
        bus.publish_event(key, name, data.clone()).await;
    }
    let events = wait_delivered(dir.path(), 2, Duration::from_secs(20));
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["call_form_result", "Hangup"]);
    let list = wait_dead_letters(&deskbus, refused.len());
    for (_, _, _, reason) in &refused {
        assert!(list.contains(reason), "{reason} not in\n{list}");
    }
    assert_eq!(delivered(dir.path()).len(), 2);
    drop(deskbus);
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_server_named_queue_when_queue_is_omitted() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new().await;
    let deskbus = start(dir.path(), &bus.exchange, "prefetch = 1", "");
    for i in 0..5 {
        bus.publish_event("status.user", "user_status_update", json!({"user_id": i}))
            .await;
    }
    let events = wait_delivered(dir.path(), 5, Duration::from_secs(20));
    let mut users: Vec<u64> = events
        .iter()
        .map(|e| e["data"]["user_id"].as_u64().unwrap())
        .collect();
    users.sort();
    assert_eq!(users, [0, 1, 2, 3, 4]);

    // The queue bound to the exchange is the broker's, exclusive to
    // deskbus's connection and not durable: it goes when deskbus does.
    let bindings = tokio::task::block_in_place(|| {
        rabbitmqctl(&["list_bindings", "source_name", "destination_name"])
    });
    let queues: Vec<&str> = bindings
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(source, _)| *source == bus.exchange)
        .map(|(_, queue)| queue)
        .collect();
    let [queue] = queues[..] else {
        panic!("one queue should be bound to {}: {bindings}", bus.exchange)
    };
    assert!(queue.starts_with("amq.gen-"), "{queue}");
    let queue_row = |queue: &str| {
        rabbitmqctl(&["list_queues", "name", "durable", "exclusive"])
            .lines()
            .find(|l| l.split('\t').next() == Some(queue))
            .map(str::to_owned)
    };
    assert_eq!(
        tokio::task::block_in_place(|| queue_row(queue)),
        Some(format!("{queue}\tfalse\ttrue"))
    );
    let queue = queue.to_owned();
    tokio::task::block_in_place(|| {
        drop(deskbus);
        wait_for(
            Duration::from_secs(10),
            "the queue to go with deskbus",
            || queue_row(&queue).is_none(),
        );
    });
    bus.cleanup().await;
}

/// `exchange = ""` is the broker's default exchange, which routes by queue
/// name: deskbus declares its durable queue, binds nothing, and consumes
/// what is published to the queue's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_exchange_delivers_by_queue_name() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus {
        exchange: String::new(),
        ..Bus::new().await
    };
    let deskbus = start(dir.path(), "", &format!("queue = \"{}\"", bus.queue), "");
    let queue = bus.queue.clone();
    bus.publish_event(&queue, "user_status_update", json!({"user_id": 3}))
        .await;
    let events = wait_delivered(dir.path(), 1, Duration::from_secs(20));
    assert_eq!(events[0]["data"]["user_id"], 3);
    let (bindings, queues) = tokio::task::block_in_place(|| {
        (
            rabbitmqctl(&["list_bindings", "source_name", "destination_name"]),
            rabbitmqctl(&["list_queues", "name", "durable", "exclusive"]),
        )
    });
    let bound: Vec<&str> = bindings
        .lines()
        .filter(|l| l.ends_with(&format!("\t{queue}")))
        .collect();
    // Only the implicit binding every queue has to the default exchange.
    assert_eq!(bound, [format!("\t{queue}")], "{bindings}");
    assert!(
        queues.lines().any(|l| l == format!("{queue}\ttrue\tfalse")),
        "the named queue is durable and shared: {queues}"
    );
    drop(deskbus);
    bus.cleanup().await;
}

/// An exchange the broker already has with another type is refused (406
/// PRECONDITION_FAILED, which closes the channel): deskbus reports it and
/// tries again, and consumes once an operator has removed the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_exchange_declare_is_retried_until_it_is_fixed() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new().await;
    bus.channel
        .exchange_declare(
            bus.exchange.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (path, exchange, queue) = (
        dir.path().to_owned(),
        bus.exchange.clone(),
        bus.queue.clone(),
    );
    // Not ready until it consumes: started aside while the test watches.
    let starting = tokio::task::spawn_blocking(move || {
        start(&path, &exchange, &format!("queue = \"{queue}\""), "")
    });
    let log = dir.path().join("deskbus.log");
    let refusals = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("inequivalent arg 'type'")
            .count()
    };
    tokio::task::block_in_place(|| {
        wait_for(Duration::from_secs(20), "two refused declares", || {
            refusals() >= 2
        })
    });
    bus.channel
        .exchange_delete(
            bus.exchange.as_str().into(),
            ExchangeDeleteOptions::default(),
        )
        .await
        .unwrap();
    let deskbus = starting.await.unwrap();
    bus.publish_event("status.user", "user_status_update", json!({"user_id": 7}))
        .await;
    let events = wait_delivered(dir.path(), 1, Duration::from_secs(20));
    assert_eq!(events[0]["data"]["user_id"], 7);
    drop(deskbus);
    bus.cleanup().await;
}

/// Makes every message of `queue` redelivered: a consumer takes them all
/// without acknowledging, then closes its channel.
async fn take_without_ack(queue: &str, n: usize) {
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();
    let consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    consumer.set_delegate(move |delivery: lapin::message::DeliveryResult| {
        if let Ok(Some(delivery)) = delivery {
            let _ = tx.send(delivery.delivery_tag);
        }
        async {}
    });
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a message to take")
            .unwrap();
    }
    let _ = channel.close(200, "requeue".into()).await;
    let _ = connection.close(200, "requeue".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_messages_already_committed_are_not_committed_twice() {
    let _broker = BROKER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new().await;
    // Batches of one message: each redelivery is matched in a batch of its own.
    let source = format!("queue = \"{}\"\nprefetch = 2", bus.queue);
    let mut deskbus = start(dir.path(), &bus.exchange, &source, "");
    let form = |user: u64| {
        json!({"name": "call_form_result", "origin_uuid": XIVO,
               "data": {"user_id": user, "variables": {}}})
        .to_string()
    };
    let with_id = |id: &str| BasicProperties::default().with_message_id(id.into());
    let send = |user: u64, properties: BasicProperties| {
        (
            "call_form_result".to_owned(),
            form(user).into_bytes(),
            properties,
        )
    };
    // Committed and acknowledged: user 1 with a message id, user 9 without.
    bus.publish_many(&[
        send(1, with_id("form-1")),
        send(9, BasicProperties::default()),
    ])
    .await;
    let first = wait_delivered(dir.path(), 2, Duration::from_secs(20));
    assert!(deskbus.terminate().success());

    // What a lost ack looks like to deskbus: the message with id form-1
    // handed out again, marked redelivered. With it, redelivered too: an
    // identical twin of user 9's message (no id: deskbus cannot tell it
    // from the one it committed, so it must keep it), and a new message.
    bus.publish_many(&[
        send(1, with_id("form-1")),
        send(9, BasicProperties::default()),
        send(2, with_id("form-2")),
    ])
    .await;
    take_without_ack(&bus.queue, 3).await;
    deskbus.spawn();
    let events = wait_delivered(dir.path(), 4, Duration::from_secs(20));
    let mut users: Vec<u64> = events[2..]
        .iter()
        .map(|e| e["data"]["user_id"].as_u64().unwrap())
        .collect();
    users.sort();
    assert_eq!(users, [2, 9], "form-1 skipped, the twin of 9 kept");
    let nine: Vec<&Value> = events
        .iter()
        .filter(|e| e["data"]["user_id"] == 9)
        .collect();
    assert_ne!(nine[0]["id"], nine[1]["id"], "two inputs, two events");
    wait_for(Duration::from_secs(5), "the redelivery skipped", || {
        deskbus.metric("deskbus_source_skipped_redeliveries_total", "") == 1.0
    });

    // Not redelivered: a message under a known id is new input, and is
    // kept (under the event id the message id gives).
    bus.publish_many(&[send(1, with_id("form-1"))]).await;
    let events = wait_delivered(dir.path(), 5, Duration::from_secs(20));
    assert_eq!(events[4]["data"]["user_id"], 1);
    let form_1 = first.iter().find(|e| e["data"]["user_id"] == 1).unwrap();
    assert_eq!(events[4]["id"], form_1["id"]);
    assert!(deskbus.terminate().success());
    assert_eq!(bus.ready_messages().await, 0);
    assert_eq!(delivered(dir.path()).len(), 5);
    bus.cleanup().await;
}

/// Markers (`data.n`) and, for each, the event ids it was delivered with.
fn ids_by_marker(dir: &Path) -> BTreeMap<u64, Vec<String>> {
    let mut by = BTreeMap::<u64, Vec<String>>::new();
    for e in delivered(dir) {
        by.entry(e["data"]["n"].as_u64().unwrap())
            .or_default()
            .push(e["id"].as_str().unwrap().to_owned());
    }
    by
}

/// Repeated deliveries of one run of [`numbered`] messages.
#[derive(Debug)]
struct Repeats {
    /// A second delivery by the stream after a crash, under the same
    /// event id.
    same_id: usize,
    /// Messages without a `message_id` committed again when redelivered
    /// (the source cannot tell them from an identical twin), under a new id.
    new_id: usize,
}

/// Every marker below `total` arrived; a message with a `message_id` (even
/// markers) under one event id only.
fn assert_none_lost(dir: &Path, total: u64) -> Repeats {
    let by = ids_by_marker(dir);
    let missing: Vec<u64> = (0..total).filter(|n| !by.contains_key(n)).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    let mut repeats = Repeats {
        same_id: 0,
        new_id: 0,
    };
    for (n, ids) in &by {
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert!(
            n % 2 == 1 || distinct.len() == 1,
            "message {n} (with a message_id) became several events: {ids:?}"
        );
        repeats.new_id += distinct.len() - 1;
        repeats.same_id += ids.len() - distinct.len();
    }
    repeats
}

/// Messages `first..first + n`, marked `data.n`; the even ones carry a
/// `message_id`, as deskbus's stream and most publishers set, the odd ones
/// none, as XiVO publishes.
fn numbered(first: u64, n: u64) -> Vec<(String, Vec<u8>, BasicProperties)> {
    (first..first + n)
        .map(|i| {
            let body = json!({"name": "call_form_result", "origin_uuid": XIVO,
                              "data": {"n": i, "user_id": i % 7, "variables": {"ticket": i}}});
            let properties = if i % 2 == 0 {
                BasicProperties::default().with_message_id(format!("form-{i}").into())
            } else {
                BasicProperties::default()
            };
            (
                "call_form_result".to_owned(),
                body.to_string().into_bytes(),
                properties,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_and_repeats_only_what_was_in_flight() {
    const TOTAL: u64 = 5_000;
    let _broker = BROKER.read().await;
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new().await;
    let queue = format!("queue = \"{}\"", bus.queue);
    // Declares the queue and its binding, then lets go.
    let mut deskbus = start(dir.path(), &bus.exchange, &queue, "");
    assert!(deskbus.terminate().success());
    bus.publish_many(&numbered(0, TOTAL)).await;

    // Two kills mid-consumption, each after a share of the run was taken.
    for share in [TOTAL / 5, TOTAL / 2] {
        deskbus.spawn();
        wait_for(Duration::from_secs(60), "consumption under way", || {
            ids_by_marker(dir.path()).len() as u64 >= share
        });
        deskbus.kill();
    }
    deskbus.spawn();
    wait_for(Duration::from_secs(60), "every message", || {
        ids_by_marker(dir.path()).len() as u64 >= TOTAL
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let repeats = assert_none_lost(dir.path(), TOTAL);
    // What two kills can leave committed but unacknowledged: at most
    // `prefetch` (100) messages each.
    assert!(repeats.new_id <= 200, "{repeats:?}");
    let skipped = deskbus
        .log()
        .matches("acknowledged without committing it twice")
        .count();
    eprintln!(
        "{TOTAL} messages, 2 kills: {repeats:?}, \
         {skipped} batches of redeliveries recognised, in {:?}",
        started.elapsed()
    );
    assert!(deskbus.terminate().success());
    assert_eq!(bus.ready_messages().await, 0);
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_through_a_broker_restart() {
    const BEFORE: u64 = 3_000;
    const AFTER: u64 = 500;
    let _broker = BROKER.write().await;
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new().await;
    // One message per commit, so that taking the run lasts a few seconds
    // and the stop (rabbitmqctl boots a VM first) lands in the middle.
    let source = format!("queue = \"{}\"\nprefetch = 2", bus.queue);
    let mut deskbus = start(dir.path(), &bus.exchange, &source, "");
    assert!(deskbus.terminate().success());
    bus.publish_many(&numbered(0, BEFORE)).await;
    let exchange = bus.exchange.clone();
    let queue_name = bus.queue.clone();
    drop(bus);
    deskbus.spawn();

    // Stopped while deskbus is still taking the first run.
    let guard = AppGuard;
    tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"]))
        .await
        .unwrap();
    let during = ids_by_marker(dir.path()).len() as u64;
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::spawn_blocking(move || drop(guard)) // start_app
        .await
        .unwrap();

    let bus = Bus {
        exchange,
        queue: queue_name,
        ..Bus::new().await
    };
    bus.publish_many(&numbered(BEFORE, AFTER)).await;
    wait_for(Duration::from_secs(60), "every message", || {
        ids_by_marker(dir.path()).len() as u64 >= BEFORE + AFTER
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let repeats = assert_none_lost(dir.path(), BEFORE + AFTER);
    // One restart, `prefetch = 2`: at most two messages were in flight.
    assert!(repeats.new_id <= 2, "{repeats:?}");
    assert!(
        deskbus.metric("deskbus_source_reconnects_total", "source=\"bus\"") >= 1.0,
        "the restart was not felt"
    );
    eprintln!(
        "{during} of {BEFORE} taken when the broker stopped; repeated: {repeats:?}; {:?}",
        started.elapsed()
    );
    assert!(
        during < BEFORE,
        "the broker stopped after the whole run was taken"
    );
    drop(deskbus);
    bus.cleanup().await;
}
