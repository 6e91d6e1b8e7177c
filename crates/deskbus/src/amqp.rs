//! What the AMQP source and the AMQP stream share: the URL (checked and
//! redacted without ever echoing its password), the exchange options and
//! their parsing, and the two broker calls both make on every new
//! connection: connect, declare the exchange.
//!
//! Neither side uses lapin's automatic recovery (young, lapin#450): each
//! rebuilds its connection itself and calls these again.

use lapin::options::ExchangeDeclareOptions;
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::config::Secret;
use crate::config::walker::Table;
use crate::url::redact_url;

/// RabbitMQ's out-of-the-box broker; `guest` may only log in from loopback.
pub(crate) const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeType {
    Direct,
    Fanout,
    Headers,
    Topic,
}

impl ExchangeType {
    pub(crate) fn parse(s: &str) -> Result<ExchangeType, String> {
        match s {
            "direct" => Ok(ExchangeType::Direct),
            "fanout" => Ok(ExchangeType::Fanout),
            "headers" => Ok(ExchangeType::Headers),
            "topic" => Ok(ExchangeType::Topic),
            other => Err(format!(
                "{other:?} is not \"topic\", \"direct\", \"fanout\" or \"headers\""
            )),
        }
    }

    pub(crate) fn kind(self) -> ExchangeKind {
        match self {
            ExchangeType::Direct => ExchangeKind::Direct,
            ExchangeType::Fanout => ExchangeKind::Fanout,
            ExchangeType::Headers => ExchangeKind::Headers,
            ExchangeType::Topic => ExchangeKind::Topic,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declare {
    /// Declare a durable exchange (idempotent when it exists alike).
    Declare,
    /// Check that the exchange exists.
    Passive,
}

impl Declare {
    pub(crate) fn parse(s: &str) -> Result<Declare, String> {
        match s {
            "declare" => Ok(Declare::Declare),
            "passive" => Ok(Declare::Passive),
            other => Err(format!("{other:?} is not \"declare\" or \"passive\"")),
        }
    }

    /// What declaring does, for messages: "declare" or "find".
    pub(crate) fn verb(self) -> &'static str {
        match self {
            Declare::Declare => "declare",
            Declare::Passive => "find",
        }
    }
}

/// The `url` key: checked, kept secret; [`DEFAULT_URL`] when absent.
pub(crate) fn url_key(t: &Table<'_, '_, '_>) -> Option<Secret> {
    if !t.has("url") {
        return Some(Secret::new(DEFAULT_URL.into()));
    }
    t.parsed("url", |url| {
        parse_url(url).map(|()| Secret::new(url.to_owned()))
    })
}

/// The `exchange`, `exchange_type` and `declare` keys.
pub(crate) fn exchange_keys(
    t: &Table<'_, '_, '_>,
    default_exchange: &str,
) -> (String, ExchangeType, Declare) {
    let exchange = t
        .parsed("exchange", parse_exchange)
        .unwrap_or_else(|| default_exchange.to_owned());
    let exchange_type = t
        .parsed("exchange_type", ExchangeType::parse)
        .unwrap_or(ExchangeType::Topic);
    let declare = t
        .parsed("declare", Declare::parse)
        .unwrap_or(Declare::Declare);
    // RabbitMQ refuses (403) to declare an `amq.` exchange: every attempt
    // would fail the same way. Such exchanges exist already.
    if exchange.starts_with("amq.") && declare == Declare::Declare {
        t.ctx.error(
            t.key_span("exchange"),
            format!(
                "`{}`: {exchange:?} is reserved by the broker and cannot be declared; set `declare = \"passive\"`",
                t.path("exchange")
            ),
        );
    }
    (exchange, exchange_type, declare)
}

/// Checks an AMQP URL without ever echoing its password.
pub(crate) fn parse_url(url: &str) -> Result<(), String> {
    match url.parse::<AMQPUri>() {
        Ok(_) => Ok(()),
        Err(message) => {
            let redacted = redact_url(url);
            Err(format!(
                "{redacted:?} is not an amqp:// or amqps:// URL ({})",
                message.replace(url, &redacted)
            ))
        }
    }
}

/// The parsed URL and its redacted form, for a connector that starts.
pub(crate) fn uri(url: &Secret) -> Result<(AMQPUri, String), String> {
    let redacted = redact_url(url.expose());
    let uri: AMQPUri = url.expose().parse().map_err(|e: String| {
        format!(
            "{redacted:?} is not an AMQP URL ({})",
            e.replace(url.expose(), &redacted)
        )
    })?;
    Ok((uri, redacted))
}

pub(crate) fn parse_exchange(name: &str) -> Result<String, String> {
    // The broker's own rule (a short string of these characters); `amq.` names
    // are reserved for the broker's exchanges, which can still be used passively.
    if name.len() > 255 {
        return Err(format!("{} bytes is longer than 255", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(format!(
            "{name:?} has {c:?}; an exchange name has letters, digits, `-`, `_`, `.` and `:`"
        ));
    }
    Ok(name.to_owned())
}

/// A new connection, named `deskbus` (plus `role`) in the broker's
/// management UI. Unbounded: callers put their own timeout around it.
pub(crate) async fn connect(uri: &AMQPUri, role: &str) -> Result<Connection, lapin::Error> {
    let name = match role.is_empty() {
        true => "deskbus".to_owned(),
        false => format!("deskbus {role}"),
    };
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect_uri(uri.clone(), properties).await
}

/// Declares `exchange` as a durable exchange of `kind`, or only checks that
/// it exists (`passive`); the default exchange `""` always exists.
///
/// Durable, because the XiVO bus (kombu) declares `xivo` durable and the
/// broker refuses (406 PRECONDITION_FAILED) a declaration whose arguments
/// differ from the exchange's.
pub(crate) async fn declare_exchange(
    channel: &Channel,
    exchange: &str,
    kind: ExchangeType,
    declare: Declare,
) -> Result<(), lapin::Error> {
    if exchange.is_empty() {
        return Ok(());
    }
    let options = ExchangeDeclareOptions {
        passive: declare == Declare::Passive,
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(exchange.into(), kind.kind(), options, FieldTable::default())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_reported_without_their_password() {
        assert_eq!(parse_url(DEFAULT_URL), Ok(()));
        assert_eq!(parse_url("amqps://u:p@rabbit.internal:5671/xivo"), Ok(()));
        for bad in [
            "http://u:hunter2@host/",
            "u:hunter2@host",
            "amqp://u:hunter2@host:port/",
        ] {
            let message = parse_url(bad).unwrap_err();
            assert!(!message.contains("hunter2"), "{message}");
            assert!(message.contains("[redacted]"), "{message}");
            let message = uri(&Secret::new(bad.into())).unwrap_err();
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn exchange_names() {
        assert_eq!(parse_exchange("xivo"), Ok("xivo".into()));
        assert_eq!(parse_exchange(""), Ok(String::new()));
        assert!(parse_exchange("amq.topic").is_ok());
        assert!(parse_exchange("a b").is_err());
        assert!(parse_exchange(&"x".repeat(256)).is_err());
    }
}
