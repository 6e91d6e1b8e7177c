//! The shared RabbitMQ on 127.0.0.1:5672 (`scripts/services rabbitmq`), as
//! the amqp tests and benches use it: connecting, counting what waits in a
//! queue, declaring and removing a run's exchange and queue, and the broker's CLI for
//! restarts and inspection. Only lapin and std: the benches include this
//! file too (`#[path]`).
#![allow(dead_code)]

use std::process::Command;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

pub const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub async fn connect() -> Connection {
    Connection::connect(URL, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ is not reachable on 127.0.0.1:5672 ({e}); run `scripts/services rabbitmq`"
            )
        })
}

/// Messages ready in `queue` (not counting unacknowledged ones).
pub async fn ready_messages(connection: &Connection, queue: &str) -> u32 {
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = channel.close(200, "ok".into()).await;
    declared.message_count()
}

/// Deletes `queue` and `exchange`, whatever is left of them (the broker is
/// shared), then closes `connection`.
pub async fn delete(connection: Connection, exchange: &str, queue: &str) {
    if let Ok(channel) = connection.create_channel().await {
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
        let _ = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "clean up".into()).await;
}

/// Declares the exchange as deskbus does (durable topic) and a durable
/// queue that the broker deletes after 10 minutes unused, should a failed
/// run leave it behind. An error, not a panic: a consumer that reconnects
/// while the broker restarts tries again.
pub async fn declare(
    channel: &Channel,
    exchange: &str,
    queue: &str,
    binding: &str,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongUInt(600_000));
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            binding.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Runs `rabbitmqctl -q <args>`; its standard output.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run rabbitmqctl ({e}); `scripts/services rabbitmq` installs it")
        });
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed (`scripts/services rabbitmq` recovers the broker): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts the broker's app when dropped: whatever happens to a test that
/// stops it, the shared broker is left running.
pub struct AppGuard;

impl Drop for AppGuard {
    fn drop(&mut self) {
        // No panic here: this may run while a failed test unwinds.
        match Command::new("rabbitmqctl")
            .args(["-q", "start_app"])
            .output()
        {
            Ok(out) if out.status.success() => {}
            other => eprintln!(
                "rabbitmqctl start_app failed ({other:?}); run `scripts/services rabbitmq`"
            ),
        }
    }
}
