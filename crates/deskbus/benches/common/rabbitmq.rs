//! The RabbitMQ side of the amqp benches: the shared broker on
//! 127.0.0.1:5672 (`scripts/services rabbitmq`) and a topology of a run's
//! own. Included with `#[path = "common/rabbitmq.rs"] mod rabbitmq;` by the
//! benches built with the `amqp` feature.

#![allow(
    dead_code,
    reason = "each bench compiles this module on its own and uses only part of it"
)]

use std::time::Duration;

use lapin::Connection;

use super::common::wait_count;

// The tests' helpers for the same broker.
#[path = "../../tests/util/rabbitmq.rs"]
mod shared;
pub use shared::{URL, connect};

/// A durable topic exchange and a durable queue bound with `#`, as deskbus
/// declares them ([`shared::declare`]); deleted on [`Topology::delete`].
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
        let channel = connection.create_channel().await.unwrap();
        shared::declare(&channel, &exchange, &queue, "#")
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
        shared::ready_messages(&self.connection, &self.queue).await as usize
    }

    /// Waits until the queue holds `total` messages.
    pub async fn wait(&self, total: usize) {
        wait_count("messages", total, Duration::from_millis(10), async || {
            self.messages().await
        })
        .await;
    }

    pub async fn delete(self) {
        shared::delete(self.connection, &self.exchange, &self.queue).await;
    }
}
