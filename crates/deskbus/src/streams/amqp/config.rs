use std::time::Duration;

use crate::amqp::{self, DEFAULT_URL};
pub use crate::amqp::{Declare, ExchangeType};
use crate::config::Secret;
use crate::config::walker::Table;

/// `[streams.X]` `type = "amqp"`
///
/// Publishes one AMQP 0-9-1 message per event to an exchange of a RabbitMQ
/// broker (the XiVO / Wazo bus is one), with the use case's queue as the
/// routing key, e.g. `queue = "ticket.created.{department_id}"`. Publisher
/// confirms are always on: an event is delivered only once the broker acks
/// it; a nack, a lost connection or a missing confirm is retried. With
/// `mandatory`, a message no queue is bound for (the broker returns it, 312
/// NO_ROUTE) goes to dead letters with the broker's reason. A routing key
/// longer than 255 bytes also goes to dead letters. After a broker restart
/// or a channel error the next delivery rebuilds the connection and
/// channel and declares the exchange again; unconfirmed messages are
/// published again, so a consumer may see an event twice, always with the
/// same `message_id` (the event id). With `mandatory`, a batch in which a
/// confirm did not come in time (or the broker returned a message of no
/// delivery) has its acked messages published again too: a return that
/// went missing with it cannot be told apart from a routed message.
///
/// Each message carries `message_id` (the event id), `content_type` (from
/// the use case's format), `timestamp` (seconds), `delivery_mode` 2 when
/// `persistent`, and the configured `headers`.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// The broker, as `amqp://user:password@host:port/vhost` (`%2f` is the
    /// vhost `/`) or `amqps://…` for TLS; query parameters such as
    /// `?heartbeat=30&connection_timeout=5000` are passed to the client.
    /// The password is never logged. Default
    /// `"amqp://guest:guest@127.0.0.1:5672/%2f"` (RabbitMQ lets `guest` in
    /// from loopback only).
    pub url: Secret,
    /// The exchange messages are published to; `""` is the broker's default
    /// exchange, which routes to the queue named by the routing key and is
    /// never declared. Default `"deskbus"` (XiVO's bus uses `"xivo"`).
    pub exchange: String,
    /// `"topic"`, `"direct"`, `"fanout"` or `"headers"`, used when the
    /// exchange is declared. Default `"topic"`.
    pub exchange_type: ExchangeType,
    /// `"declare"`: declare the exchange as a durable exchange of
    /// `exchange_type` on every new connection and channel; a broker that has it
    /// with other arguments refuses (406 PRECONDITION_FAILED), and events are
    /// retried until that is fixed. `"passive"`: only check that it exists
    /// (retried while it does not). Default `"declare"`.
    pub declare: Declare,
    /// Publish with the `mandatory` flag, so that a message no queue is bound
    /// for is returned by the broker and sent to dead letters instead of
    /// being dropped silently. Default `true`.
    pub mandatory: bool,
    /// Persistent messages (`delivery_mode` 2): they survive a broker restart
    /// in a durable queue, and the broker confirms them once written to
    /// disk. Default `true`.
    pub persistent: bool,
    /// Extra message headers (string values), e.g. `{ "x-origin" = "deskbus" }`.
    /// Default none.
    pub headers: Vec<(String, String)>,
    /// How long the broker may take to confirm a batch (and to accept a
    /// connection); what is unconfirmed then is retried on a new connection.
    /// Default `"10s"`.
    pub confirm_timeout: Duration,
    /// The largest message body the broker takes, in bytes: RabbitMQ's
    /// `max_message_size` (134217728 in 3.8 to 3.13, 16777216 from 4.0).
    /// A larger payload goes to dead letters at once, instead of having the
    /// broker close the channel on every attempt. Default 16777216 (16 MiB).
    pub max_message_size: usize,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            url: Secret::new(DEFAULT_URL.into()),
            exchange: "deskbus".into(),
            exchange_type: ExchangeType::Topic,
            declare: Declare::Declare,
            mandatory: true,
            persistent: true,
            headers: Vec::new(),
            confirm_timeout: Duration::from_secs(10),
            max_message_size: 16 << 20,
        }
    }
}

impl AmqpConfig {
    pub(crate) fn from_table(t: &Table<'_, '_, '_>) -> Option<AmqpConfig> {
        let d = AmqpConfig::default();
        let url = amqp::url_key(t);
        let (exchange, exchange_type, declare) = amqp::exchange_keys(t, &d.exchange);
        let mandatory = t.bool_or("mandatory", d.mandatory);
        let persistent = t.bool_or("persistent", d.persistent);
        let mut headers = Vec::new();
        for (name, value) in t.string_map("headers").unwrap_or_default() {
            if name.is_empty() || name.len() > 255 {
                t.ctx.error(
                    value.span,
                    format!(
                        "`{}`: a header name must be 1 to 255 bytes",
                        t.path("headers")
                    ),
                );
                continue;
            }
            headers.push((name, value.value));
        }
        let confirm_timeout = t.duration_or("confirm_timeout", d.confirm_timeout);
        if confirm_timeout.is_zero() {
            t.ctx.error(
                t.key_span("confirm_timeout"),
                format!("`{}` must be more than 0s", t.path("confirm_timeout")),
            );
        }
        // RabbitMQ's own ceiling for `max_message_size` is 512 MiB.
        let max_message_size = t
            .integer("max_message_size", 1..=512 << 20)
            .map_or(d.max_message_size, |n| n as usize);
        Some(AmqpConfig {
            url: url?,
            exchange,
            exchange_type,
            declare,
            mandatory,
            persistent,
            headers,
            confirm_timeout,
            max_message_size,
        })
    }
}
