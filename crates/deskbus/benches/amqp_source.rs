//! RabbitMQ → the amqp source → spool, against the real release binary and
//! the shared RabbitMQ on 127.0.0.1:5672 (`scripts/services rabbitmq`).
//!
//! Each run pre-publishes the same persistent XiVO envelopes
//! (`call_form_result`, about 150 bytes) into a durable queue of its own,
//! then measures how long the queue takes to drain: for deskbus, from the
//! process start until every message is committed to the spool
//! (`deskbus_source_accepted_events_total`; the spool fsyncs every commit,
//! `synchronous=FULL`); a file stream delivers them meanwhile, as it would
//! in production. The baseline, measured in the same run against the same
//! broker, is a plain lapin consumer with the same `prefetch`, taking what
//! it holds (up to half of `prefetch`) and acknowledging it with one
//! cumulative ack, as deskbus does, with nothing stored: the ceiling of the
//! broker on this machine.
//!
//! `cargo bench -p deskbus --bench amqp_source`

#[path = "common/mod.rs"]
mod common;
#[path = "common/rabbitmq.rs"]
mod rabbitmq;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Process, Table, free_port, wait_count};
use lapin::BasicProperties;
use lapin::Confirmation;
use lapin::message::DeliveryResult;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use rabbitmq::{Topology, URL, connect};

const TOTAL: usize = 50_000;

/// Publishes `total` persistent envelopes into `topology`, every confirm awaited.
async fn fill(topology: &Topology, total: usize) {
    let c = topology.connection.create_channel().await.unwrap();
    c.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for start in (0..total).step_by(1000) {
        let mut confirms = Vec::with_capacity(1000);
        for i in start..(start + 1000).min(total) {
            let body = serde_json::json!({"name": "call_form_result",
                "origin_uuid": "ca7f87e9-c2c8-5fad-ba1b-c3140ebb9be3",
                "data": {"user_id": i % 100, "variables": {"firstname": "John", "lastname": "Doe", "n": i}}});
            confirms.push(
                c.basic_publish(
                    topology.exchange.as_str().into(),
                    "call_form_result".into(),
                    BasicPublishOptions::default(),
                    body.to_string().as_bytes(),
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_content_type("application/json".into()),
                )
                .await
                .unwrap(),
            );
        }
        for confirm in confirms {
            assert_eq!(confirm.await.unwrap(), Confirmation::Ack(None));
        }
    }
    let _ = c.close(200, "ok".into()).await;
}

/// deskbus draining the filled queue: messages per second from its start
/// until every one is committed.
async fn deskbus(dir: &Path, topology: &Topology, prefetch: u16) -> f64 {
    let admin = free_port();
    let config = format!(
        "[general]\ndata_dir = \"{d}/data\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n[log]\nlevel = \"warn\"\n\
     [sources.bus]\ntype = \"amqp\"\nurl = \"{URL}\"\nexchange = \"{e}\"\nqueue = \"{q}\"\nprefetch = {prefetch}\n\
     [streams.out]\ntype = \"file\"\npath = \"{d}/out/{{queue}}.ndjson\"\n\
     [use_cases.forms]\ninputs = [\"bus\"]\nevents = [\"call_form_result\"]\nstream = \"out\"\nqueue = \"forms\"\n",
        d = dir.display(),
        e = topology.exchange,
        q = topology.queue,
    );
    let path = dir.join("deskbus.toml");
    std::fs::write(&path, config).unwrap();
    let started = Instant::now();
    let process = Process::listening(
        Command::new(env!("CARGO_BIN_EXE_deskbus"))
            .arg("run")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
        admin,
        "cannot run the deskbus binary",
    );
    let client = common::client();
    let metrics = format!("http://127.0.0.1:{admin}/metrics");
    wait_count(
        "spooled messages",
        TOTAL,
        Duration::from_millis(10),
        async || {
            let text = client
                .get(&metrics)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .find(|l| l.starts_with("deskbus_source_accepted_events_total{"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0) as usize
        },
    )
    .await;
    let rate = TOTAL as f64 / started.elapsed().as_secs_f64();
    drop(process);
    rate
}

/// lapin alone draining the filled queue: consume, and acknowledge what is
/// held (up to half of `prefetch`) with one cumulative ack.
async fn baseline(topology: &Topology, prefetch: u16) -> f64 {
    let started = Instant::now();
    let connection = connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let consumer = channel
        .basic_consume(
            topology.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    consumer.set_delegate(move |delivery: DeliveryResult| {
        if let Ok(Some(delivery)) = delivery {
            let _ = tx.send(delivery);
        }
        async {}
    });
    let most = usize::from(prefetch).div_ceil(2);
    let mut taken = 0;
    while taken < TOTAL {
        let first = rx.recv().await.unwrap();
        let mut last = first.delivery_tag;
        let mut n = 1;
        while n < most {
            match rx.try_recv() {
                Ok(d) => {
                    last = d.delivery_tag;
                    n += 1;
                }
                Err(_) => break,
            }
        }
        channel
            .basic_ack(last, BasicAckOptions { multiple: true })
            .await
            .unwrap();
        taken += n;
    }
    let rate = TOTAL as f64 / started.elapsed().as_secs_f64();
    let _ = connection.close(200, "ok".into()).await;
    rate
}

fn main() {
    common::run(async {
        println!(
            "RabbitMQ → amqp source → spool ({TOTAL} persistent XiVO envelopes pre-published, \
             drained; spool synchronous=FULL)"
        );
        let table = Table::new(12, "raw lapin");
        for prefetch in [10u16, 100, 1000] {
            let topology = Topology::new(&format!("base{prefetch}")).await;
            fill(&topology, TOTAL).await;
            let base = baseline(&topology, prefetch).await;
            topology.delete().await;

            let topology = Topology::new(&format!("deskbus{prefetch}")).await;
            fill(&topology, TOTAL).await;
            let dir = tempfile::tempdir().unwrap();
            let ours = deskbus(dir.path(), &topology, prefetch).await;
            topology.delete().await;
            table.rate(&format!("messages/s, prefetch {prefetch}"), ours, base);
        }
    });
}
