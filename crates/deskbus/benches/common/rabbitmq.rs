//! The RabbitMQ side of the amqp benches: the shared broker on
//! 127.0.0.1:5672 (`scripts/services rabbitmq`) and a topology of a run's
//! own. Included with `#[path = "common/rabbitmq.rs"] mod rabbitmq;` by the
//! benches built with the `amqp` feature.

#![allow(
    dead_code,
    reason = "each bench compiles this module on its own and uses only part of it"
)]

use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};

use super::common::wait_count;

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

/// A durable topic exchange and a durable queue bound with `#`, as deskbus
/// declares them; deleted on [`Topology::delete`].
pub struct Topology {
    pub connection: Connection,
    pub exchange: String,
    pub queue: String,
}

impl Topology {
    /// Declares `deskbus.bench.<name>.<pid>` and its queue `….q`.
    pub async fn new(name: &str) -> Topology {
        let connection = connect().await;
        let exchange = format!("deskbus.bench.{name}.{}", std::process::id());
        let queue = format!("{exchange}.q");
        let c = connection.create_channel().await.unwrap();
        c.exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        c.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        c.queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        Topology {
            connection,
            exchange,
            queue,
        }
    }

    /// Messages ready in the queue.
    pub async fn messages(&self) -> usize {
        let c = self.connection.create_channel().await.unwrap();
        let q = c
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = c.close(200, "ok".into()).await;
        q.message_count() as usize
    }

    /// Waits until the queue holds `total` messages.
    pub async fn wait(&self, total: usize) {
        wait_count("messages", total, Duration::from_millis(10), async || {
            self.messages().await
        })
        .await;
    }

    pub async fn delete(self) {
        let c = self.connection.create_channel().await.unwrap();
        let _ = c
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        let _ = c
            .exchange_delete(
                self.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = self.connection.close(200, "ok".into()).await;
    }
}
