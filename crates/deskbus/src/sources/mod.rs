//! Sources: where events come from. Each one validates what it receives,
//! turns it into [`Event`]s and hands them to [`Ingest`], which commits them
//! to the spool before the source acknowledges anything upstream.

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "beanstalk")]
pub mod beanstalk;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "osticket")]
pub mod osticket;
#[cfg(any(feature = "amqp", feature = "beanstalk", feature = "osticket"))]
mod reconnect;
#[cfg(any(feature = "amqp", feature = "beanstalk"))]
mod redelivery;
#[cfg(feature = "webhook")]
pub mod webhook;

use crate::config::walker::Table;
use crate::config::{component_type, unknown_type};
use crate::runtime::{Ready, Shutdown};
use crate::use_cases::Ingest;

/// A source's validated options; see each source's `config.rs`.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    #[cfg(feature = "webhook")]
    Webhook(webhook::WebhookConfig),
    #[cfg(feature = "demo")]
    Demo(demo::DemoConfig),
    #[cfg(feature = "amqp")]
    Amqp(amqp::AmqpSourceConfig),
    #[cfg(feature = "beanstalk")]
    Beanstalk(beanstalk::BeanstalkSourceConfig),
    #[cfg(feature = "osticket")]
    Osticket(osticket::OsticketSourceConfig),
}

/// Source types compiled into this binary.
pub const SOURCE_TYPES: &[&str] = &[
    #[cfg(feature = "webhook")]
    "webhook",
    #[cfg(feature = "demo")]
    "demo",
    #[cfg(feature = "amqp")]
    "amqp",
    #[cfg(feature = "beanstalk")]
    "beanstalk",
    #[cfg(feature = "osticket")]
    "osticket",
];

impl SourceConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            #[cfg(feature = "webhook")]
            SourceConfig::Webhook(_) => "webhook",
            #[cfg(feature = "demo")]
            SourceConfig::Demo(_) => "demo",
            #[cfg(feature = "amqp")]
            SourceConfig::Amqp(_) => "amqp",
            #[cfg(feature = "beanstalk")]
            SourceConfig::Beanstalk(_) => "beanstalk",
            #[cfg(feature = "osticket")]
            SourceConfig::Osticket(_) => "osticket",
        }
    }
}

pub(crate) fn parse_config(t: &Table<'_, '_, '_>) -> Option<SourceConfig> {
    let kind = component_type(t, "source")?;
    match kind.value.as_str() {
        #[cfg(feature = "webhook")]
        "webhook" => webhook::WebhookConfig::from_table(t).map(SourceConfig::Webhook),
        #[cfg(feature = "demo")]
        "demo" => demo::DemoConfig::from_table(t).map(SourceConfig::Demo),
        #[cfg(feature = "amqp")]
        "amqp" => amqp::AmqpSourceConfig::from_table(t).map(SourceConfig::Amqp),
        #[cfg(feature = "beanstalk")]
        "beanstalk" => beanstalk::BeanstalkSourceConfig::from_table(t).map(SourceConfig::Beanstalk),
        #[cfg(feature = "osticket")]
        "osticket" => osticket::OsticketSourceConfig::from_table(t).map(SourceConfig::Osticket),
        other => {
            t.ctx
                .error(kind.span, unknown_type("source", other, SOURCE_TYPES));
            None
        }
    }
}

/// What a running source gets.
pub(crate) struct SourceContext {
    pub id: String,
    /// The `origin_uuid` for events whose producer sent none.
    pub origin_uuid: String,
    pub helpdesk_code: Option<String>,
    pub ingest: Ingest,
    pub shutdown: Shutdown,
    pub ready: Ready,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot listen on {address}")]
    Bind {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("source i/o failed")]
    Io(#[from] std::io::Error),
    #[error("invalid source settings: {0}")]
    Settings(String),
    #[error("cannot read the spool state of source `{source_id}`")]
    Spool {
        source_id: String,
        #[source]
        source: Box<deskbus_spool::SpoolError>,
    },
    #[cfg(feature = "osticket")]
    #[error("the stored position of source `{source_id}` cannot be used")]
    Position {
        source_id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Reaches a source's upstream, for `deskbus check --connect`: what it
/// found, or why it failed. `None` for a source with nothing to reach.
pub(crate) async fn healthcheck(config: &SourceConfig) -> Option<Result<String, String>> {
    match config {
        #[cfg(feature = "osticket")]
        SourceConfig::Osticket(config) => Some(osticket::healthcheck(config).await),
        #[cfg(feature = "amqp")]
        SourceConfig::Amqp(config) => Some(amqp::healthcheck(config).await),
        #[cfg(feature = "beanstalk")]
        SourceConfig::Beanstalk(config) => Some(beanstalk::healthcheck(config).await),
        #[allow(unreachable_patterns, reason = "only some sources reach an upstream")]
        _ => None,
    }
}

/// Runs a source until shutdown.
pub(crate) async fn run(config: SourceConfig, ctx: SourceContext) -> Result<(), SourceError> {
    match config {
        #[cfg(feature = "webhook")]
        SourceConfig::Webhook(config) => webhook::run(config, ctx).await,
        #[cfg(feature = "demo")]
        SourceConfig::Demo(config) => {
            demo::run(config, ctx).await;
            Ok(())
        }
        #[cfg(feature = "amqp")]
        SourceConfig::Amqp(config) => amqp::run(config, ctx).await,
        #[cfg(feature = "beanstalk")]
        SourceConfig::Beanstalk(config) => beanstalk::run(config, ctx).await,
        #[cfg(feature = "osticket")]
        SourceConfig::Osticket(config) => osticket::run(config, ctx).await,
    }
}

/// How a message names the JSON type it found where another was wanted.
#[cfg(any(feature = "webhook", feature = "beanstalk"))]
pub(crate) fn json_type(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
