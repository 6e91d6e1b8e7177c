use std::time::Duration;

use deskbus_event::RoutingPattern;

use crate::amqp::{self, Declare, ExchangeType};
use crate::config::Secret;
use crate::config::walker::Table;

/// `[sources.X]` `type = "amqp"`
///
/// Consumes events from an AMQP 0-9-1 broker (RabbitMQ; the XiVO / Wazo
/// bus is one): a queue bound to `exchange` with `binding_keys`. Each
/// message body is an envelope, the XiVO bus's `{"name", "origin_uuid",
/// "data"}` or deskbus's own (which adds `id`, `time`, `routing_key`);
/// other top-level keys (Wazo adds `required_acl`, `required_access`,
/// `timestamp`, `tenant_uuid`) are ignored. The message's routing key
/// becomes the event's routing key. A message is
/// acknowledged only once its event is committed to the spool. A body that
/// is not such an envelope (not JSON, no `name`, a field of the wrong
/// type) goes to dead letters with the reason (`deskbus dlq list`) and is
/// acknowledged, so it is not handed out again and again. An event no
/// enabled use case takes is acknowledged and counted in
/// `deskbus_source_rejected_events_total{reason="unmatched"}`.
///
/// The event id is the envelope's `id`, else the message's `message_id`
/// (as is when it is a UUID, else a UUID derived from it), else a new
/// UUIDv7; the event time is the envelope's `time`, else the message's
/// `timestamp`, else now. After a crash or a lost connection the broker
/// hands out again what was not acknowledged (`redelivered`); deskbus
/// remembers the `message_id`s of the last `prefetch` messages it
/// committed (in the spool, with them) and acknowledges those without
/// committing them twice. A message without a `message_id` (XiVO sets
/// none) cannot be told from an identical one, so a redelivered one is
/// committed again: at least once, never lost, and at most `prefetch`
/// repeats per crash or lost connection, each under a new event id.
///
/// When the broker goes away (a restart, `rabbitmqctl stop_app`, a channel
/// error), deskbus connects again with a growing delay (up to 5 s),
/// declares the exchange, queue and bindings again, and goes on; what was
/// not acknowledged is handed out again by the broker.
///
/// Durability: messages wait for deskbus in a durable named `queue`
/// across deskbus restarts; across broker restarts only if they were
/// published persistent (`delivery_mode` 2). XiVO publishes transient
/// messages, which a broker restart loses whatever the consumer does.
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpSourceConfig {
    /// The broker, as `amqp://user:password@host:port/vhost` (`%2f` is the
    /// vhost `/`) or `amqps://…` for TLS; query parameters such as
    /// `?heartbeat=30` are passed to the client. The password is never
    /// logged. Default `"amqp://guest:guest@127.0.0.1:5672/%2f"` (RabbitMQ
    /// lets `guest` in from loopback only, like XiVO's own broker).
    pub url: Secret,
    /// The exchange the queue is bound to. `""` is the broker's default
    /// exchange, which routes by queue name and takes no bindings: `queue`
    /// is then required and `binding_keys` not allowed. Default `"xivo"`,
    /// the XiVO bus's.
    pub exchange: String,
    /// `"topic"`, `"direct"`, `"fanout"` or `"headers"`, used when the
    /// exchange is declared. Default `"topic"`.
    pub exchange_type: ExchangeType,
    /// `"declare"`: declare the exchange as a durable exchange of
    /// `exchange_type` on every connection (XiVO declares `xivo` so; a
    /// broker that has it with other arguments refuses, 406
    /// PRECONDITION_FAILED, and deskbus retries until that is fixed).
    /// `"passive"`: only check that it exists. Default `"declare"`.
    pub declare: Declare,
    /// The binding keys of the queue to the exchange: on a topic exchange,
    /// words separated by `.`, where `*` matches one word and `#` zero or
    /// more (`"call_form_result"`, `"status.#"`, `"ami.*"`). Default
    /// `["#"]` (everything).
    pub binding_keys: Vec<String>,
    /// A durable queue of this name (declared durable, not exclusive, not
    /// auto-deleted): messages published while deskbus is stopped wait for
    /// it, and several deskbus may share it. Without `queue`, an
    /// exclusive queue named by the broker, which lives only while deskbus
    /// is connected, as XiVO's own consumers do: what is published while
    /// deskbus is stopped or reconnecting is lost. 1 to 255 bytes, not
    /// starting with `amq.`. Default none.
    pub queue: Option<String>,
    /// How many unacknowledged messages the broker may hand to deskbus at
    /// once (`basic.qos`): the most deskbus holds in memory, and commits
    /// in batches of up to half of it while the other half arrives. Also
    /// how many committed messages are remembered to recognise
    /// redeliveries. 1 to 65535. Default 100.
    pub prefetch: u16,
    /// Check each event against the catalog of known XiVO events
    /// (docs/xivo-events.md): an unknown name, a routing key that does not
    /// fit its event, or a missing or wrongly typed `data` field sends the
    /// message to dead letters with the reason. AMI events (`ami.<name>`)
    /// need an object of string values. Default `false`.
    pub validate: bool,
    /// How long connecting and declaring the exchange, queue and bindings
    /// may take before the attempt is given up and retried. Default `"10s"`.
    pub connect_timeout: Duration,
}

impl Default for AmqpSourceConfig {
    fn default() -> Self {
        AmqpSourceConfig {
            url: Secret::new(amqp::DEFAULT_URL.into()),
            exchange: "xivo".into(),
            exchange_type: ExchangeType::Topic,
            declare: Declare::Declare,
            binding_keys: vec!["#".into()],
            queue: None,
            prefetch: 100,
            validate: false,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl AmqpSourceConfig {
    pub(crate) fn from_table(t: &Table<'_, '_, '_>) -> Option<AmqpSourceConfig> {
        let d = AmqpSourceConfig::default();
        let url = amqp::url_key(t);
        let (exchange, exchange_type, declare) = amqp::exchange_keys(t, &d.exchange);
        let queue = t.parsed("queue", parse_queue);
        let binding_keys = match t.string_list("binding_keys") {
            Some(keys) => {
                if keys.is_empty() {
                    t.ctx.error(
                        t.key_span("binding_keys"),
                        format!(
                            "`{}` needs at least one key (`[\"#\"]` takes everything)",
                            t.path("binding_keys")
                        ),
                    );
                }
                for key in &keys {
                    if let Err(message) = check_binding_key(&key.value, exchange_type) {
                        t.ctx.error(
                            key.span.clone(),
                            format!("`{}`: {message}", t.path("binding_keys")),
                        );
                    }
                }
                if exchange.is_empty() {
                    t.ctx.error(
                        t.key_span("binding_keys"),
                        format!(
                            "`{}`: the default exchange `\"\"` takes no bindings; it routes by queue name",
                            t.path("binding_keys")
                        ),
                    );
                }
                keys.into_iter().map(|k| k.value).collect()
            }
            None if exchange.is_empty() => Vec::new(),
            None => d.binding_keys,
        };
        if exchange.is_empty() && queue.is_none() && !t.has("queue") {
            t.ctx.error(
                t.key_span("exchange"),
                format!(
                    "`{}` is the default exchange `\"\"`: name the `queue` to consume",
                    t.path("exchange")
                ),
            );
        }
        if queue.is_none() && !t.has("queue") && !exchange.is_empty() {
            t.ctx.warning(
                t.key_span("type"),
                format!(
                    "`{}` has no `queue`: deskbus consumes an exclusive server-named queue, \
                     and what is published while it is not connected is lost; name a durable `queue`",
                    t.path("")
                        .trim_end_matches('.')
                ),
            );
        }
        let prefetch = t
            .integer("prefetch", 1..=i64::from(u16::MAX))
            .map_or(d.prefetch, |n| n as u16);
        let validate = t.bool_or("validate", d.validate);
        let connect_timeout = t.duration_or("connect_timeout", d.connect_timeout);
        if connect_timeout.is_zero() {
            t.ctx.error(
                t.key_span("connect_timeout"),
                format!("`{}` must be more than 0s", t.path("connect_timeout")),
            );
        }
        Some(AmqpSourceConfig {
            url: url?,
            exchange,
            exchange_type,
            declare,
            binding_keys,
            queue,
            prefetch,
            validate,
            connect_timeout,
        })
    }
}

fn parse_queue(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "a queue name is 1 to 255 bytes (omit `queue` for a server-named one), found {}",
            name.len()
        ));
    }
    // RabbitMQ refuses (403 ACCESS_REFUSED) to declare such a queue.
    if name.starts_with("amq.") {
        return Err(format!("{name:?}: `amq.` names are reserved by the broker"));
    }
    Ok(name.to_owned())
}

/// A binding key the broker takes, and on a topic exchange one whose
/// matching is defined (no empty word, wildcards alone in their word).
fn check_binding_key(key: &str, exchange_type: ExchangeType) -> Result<(), String> {
    if key.len() > 255 {
        return Err(format!("{} bytes is longer than AMQP's 255", key.len()));
    }
    if exchange_type == ExchangeType::Topic {
        RoutingPattern::parse(key).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names() {
        assert_eq!(parse_queue("deskbus.xivo"), Ok("deskbus.xivo".into()));
        assert!(parse_queue("").is_err());
        assert!(parse_queue("amq.gen-x").is_err());
        assert!(parse_queue(&"q".repeat(256)).is_err());
    }

    #[test]
    fn binding_keys_on_topic_exchanges_are_patterns() {
        for ok in ["#", "status.#", "ami.*", "call_form_result", "*.created"] {
            assert!(check_binding_key(ok, ExchangeType::Topic).is_ok(), "{ok}");
        }
        for bad in ["", "a..b", "status.#x", ".a"] {
            assert!(
                check_binding_key(bad, ExchangeType::Topic).is_err(),
                "{bad}"
            );
        }
        assert!(check_binding_key("a..b", ExchangeType::Direct).is_ok());
        assert!(check_binding_key(&"k".repeat(256), ExchangeType::Direct).is_err());
    }
}
