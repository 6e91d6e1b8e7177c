//! Streams: where events go. A stream takes a batch of formatted payloads and
//! says, per entry, whether it was delivered, should be retried, or can never
//! be delivered. The dispatcher (in `runtime`) turns that into spool outcomes:
//! an entry leaves the spool only when its stream confirmed it.

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "beanstalk")]
pub mod beanstalk;
#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "http")]
pub mod http;
#[cfg(any(feature = "http", feature = "osticket"))]
mod http_client;
#[cfg(feature = "kinesis")]
pub mod kinesis;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "osticket")]
pub mod osticket;
pub mod stdout;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use deskbus_spool::Spool;

use crate::config::walker::Table;
use crate::config::{component_type, unknown_type};

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stream's validated options; see each stream's `config.rs`.
#[derive(Debug, Clone)]
pub enum StreamConfig {
    #[cfg(feature = "amqp")]
    Amqp(amqp::AmqpConfig),
    #[cfg(feature = "beanstalk")]
    Beanstalk(beanstalk::BeanstalkConfig),
    #[cfg(feature = "file")]
    File(file::FileConfig),
    #[cfg(feature = "http")]
    Http(http::HttpConfig),
    #[cfg(feature = "kinesis")]
    KinesisFirehose(kinesis::KinesisConfig),
    #[cfg(feature = "kinesis")]
    KinesisStreams(kinesis::KinesisConfig),
    #[cfg(feature = "nats")]
    Nats(nats::NatsConfig),
    #[cfg(feature = "osticket")]
    Osticket(osticket::OsticketStreamConfig),
    Stdout(stdout::StdoutConfig),
}

/// Stream types compiled into this binary.
pub const STREAM_TYPES: &[&str] = &[
    #[cfg(feature = "amqp")]
    "amqp",
    #[cfg(feature = "beanstalk")]
    "beanstalk",
    #[cfg(feature = "file")]
    "file",
    #[cfg(feature = "http")]
    "http",
    #[cfg(feature = "kinesis")]
    "kinesis_firehose",
    #[cfg(feature = "kinesis")]
    "kinesis_streams",
    #[cfg(feature = "nats")]
    "nats",
    #[cfg(feature = "osticket")]
    "osticket",
    "stdout",
];

impl StreamConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            #[cfg(feature = "amqp")]
            StreamConfig::Amqp(_) => "amqp",
            #[cfg(feature = "beanstalk")]
            StreamConfig::Beanstalk(_) => "beanstalk",
            #[cfg(feature = "file")]
            StreamConfig::File(_) => "file",
            #[cfg(feature = "http")]
            StreamConfig::Http(_) => "http",
            #[cfg(feature = "kinesis")]
            StreamConfig::KinesisFirehose(_) => "kinesis_firehose",
            #[cfg(feature = "kinesis")]
            StreamConfig::KinesisStreams(_) => "kinesis_streams",
            #[cfg(feature = "nats")]
            StreamConfig::Nats(_) => "nats",
            #[cfg(feature = "osticket")]
            StreamConfig::Osticket(_) => "osticket",
            StreamConfig::Stdout(_) => "stdout",
        }
    }

    /// Checks a queue against the stream's naming rules. Config checking
    /// calls it for constant queues; templated ones are checked per event.
    pub(crate) fn check_queue(&self, queue: &str) -> Result<(), String> {
        match self {
            #[cfg(feature = "beanstalk")]
            StreamConfig::Beanstalk(_) => deskbus_event::names::check_beanstalk_tube(queue),
            #[cfg(feature = "kinesis")]
            StreamConfig::KinesisFirehose(_) => deskbus_event::names::check_firehose_stream(queue),
            #[cfg(feature = "kinesis")]
            StreamConfig::KinesisStreams(_) => deskbus_event::names::check_kinesis_stream(queue),
            #[cfg(feature = "nats")]
            StreamConfig::Nats(config) => nats::check_queue(config, queue),
            #[cfg(feature = "file")]
            StreamConfig::File(_) => file::check_queue(queue),
            _ => Ok(()),
        }
    }

    #[cfg_attr(not(feature = "osticket"), allow(unused_variables))]
    pub(crate) fn build(&self, ctx: &StreamContext) -> Result<Box<dyn Stream>, String> {
        Ok(match self {
            #[cfg(feature = "amqp")]
            StreamConfig::Amqp(config) => Box::new(amqp::AmqpStream::new(config.clone())?),
            #[cfg(feature = "beanstalk")]
            StreamConfig::Beanstalk(config) => {
                Box::new(beanstalk::BeanstalkStream::new(config.clone()))
            }
            #[cfg(feature = "file")]
            StreamConfig::File(config) => Box::new(file::FileStream::new(config.clone())),
            #[cfg(feature = "http")]
            StreamConfig::Http(config) => Box::new(http::HttpStream::new(config.clone())?),
            #[cfg(feature = "kinesis")]
            StreamConfig::KinesisFirehose(config) => Box::new(kinesis::KinesisStream::new(
                kinesis::Service::Firehose,
                config.clone(),
            )?),
            #[cfg(feature = "kinesis")]
            StreamConfig::KinesisStreams(config) => Box::new(kinesis::KinesisStream::new(
                kinesis::Service::DataStreams,
                config.clone(),
            )?),
            #[cfg(feature = "nats")]
            StreamConfig::Nats(config) => Box::new(nats::NatsStream::new(config.clone())?),
            #[cfg(feature = "osticket")]
            StreamConfig::Osticket(config) => {
                Box::new(osticket::OsticketStream::new(config.clone(), ctx)?)
            }
            StreamConfig::Stdout(config) => Box::new(stdout::StdoutStream::new(config.clone())),
        })
    }
}

/// What a stream may need besides its config, given when it is built.
#[derive(Clone)]
#[cfg_attr(not(feature = "osticket"), allow(dead_code))]
pub(crate) struct StreamContext {
    /// The stream's id (`[streams.ID]`).
    pub id: String,
    /// The spool, for a stream that records what it learns about deliveries
    /// (the osTicket stream's ticket numbers); `None` when the stream is only
    /// checked (`deskbus check --connect`).
    pub spool: Option<Spool>,
}

pub(crate) fn parse_config(t: &Table<'_, '_, '_>) -> Option<StreamConfig> {
    let kind = component_type(t, "stream")?;
    match kind.value.as_str() {
        #[cfg(feature = "amqp")]
        "amqp" => amqp::AmqpConfig::from_table(t).map(StreamConfig::Amqp),
        #[cfg(feature = "beanstalk")]
        "beanstalk" => beanstalk::BeanstalkConfig::from_table(t).map(StreamConfig::Beanstalk),
        #[cfg(feature = "file")]
        "file" => file::FileConfig::from_table(t).map(StreamConfig::File),
        #[cfg(feature = "http")]
        "http" => http::HttpConfig::from_table(t).map(StreamConfig::Http),
        #[cfg(feature = "kinesis")]
        "kinesis_firehose" => kinesis::KinesisConfig::from_table(t, kinesis::Service::Firehose)
            .map(StreamConfig::KinesisFirehose),
        #[cfg(feature = "kinesis")]
        "kinesis_streams" => kinesis::KinesisConfig::from_table(t, kinesis::Service::DataStreams)
            .map(StreamConfig::KinesisStreams),
        #[cfg(feature = "nats")]
        "nats" => nats::NatsConfig::from_table(t).map(StreamConfig::Nats),
        #[cfg(feature = "osticket")]
        "osticket" => osticket::OsticketStreamConfig::from_table(t).map(StreamConfig::Osticket),
        "stdout" => stdout::StdoutConfig::from_table(t).map(StreamConfig::Stdout),
        other => {
            t.ctx
                .error(kind.span, unknown_type("stream", other, STREAM_TYPES));
            None
        }
    }
}

/// One entry handed to a stream. It borrows from the spooled entry: a
/// batch is handed over and dropped per delivery attempt, and copying each
/// field of every event again cost the dispatcher an allocation apiece.
#[derive(Debug, Clone)]
pub(crate) struct Delivery<'a> {
    /// The idempotency key; broker streams send it as `message_id` / `Nats-Msg-Id`.
    #[allow(dead_code)]
    pub event_id: &'a str,
    /// The destination inside the stream, already rendered from the use
    /// case's template (owned only when rendered here, for a replayed entry).
    pub queue: Cow<'a, str>,
    /// The bytes to send, already formatted (borrowed when the use case
    /// passes the spooled event through unchanged).
    pub payload: Cow<'a, [u8]>,
    /// What the payload is, from the use case's format (`application/json`...).
    pub content_type: &'a str,
    /// The use case that produced this entry: one event taken by two use
    /// cases is two entries, which a de-duplicating server must tell apart.
    pub use_case: &'a str,
    /// Entries with the same key are delivered in order (a ticket's events);
    /// a partitioned stream keeps them in one partition.
    pub order_key: &'a str,
}

#[cfg(test)]
impl<'a> Delivery<'a> {
    /// For the streams' unit tests: a ticket event of use case `tickets`,
    /// key `ticket:1`, JSON, with an id of a real one's length.
    pub(crate) fn for_test(queue: &'a str, payload: &'a [u8]) -> Delivery<'a> {
        Delivery {
            use_case: "tickets",
            order_key: "ticket:1",
            event_id: "0197a3c0-0000-7000-8000-000000000000",
            queue: queue.into(),
            content_type: "application/json",
            payload: payload.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeliveryError {
    /// Worth trying again later (I/O error, broker down, 5xx, throttling).
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Will never succeed as it is (too big, rejected as invalid): dead letters at once.
    Permanent { reason: String },
}

impl DeliveryError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        DeliveryError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        DeliveryError::Permanent {
            reason: reason.into(),
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            DeliveryError::Retryable { reason, .. } | DeliveryError::Permanent { reason } => reason,
        }
    }
}

/// The one interface every stream implements.
///
/// A stream connects on its first delivery, not when it is built: its
/// dispatcher runs it on a thread of its own (`stream-<id>`), and a client
/// made there keeps its connection tasks and sockets on that thread.
pub(crate) trait Stream: Send + Sync {
    /// Delivers `batch`; the result has one entry per delivery, in order.
    fn deliver<'a>(
        &'a self,
        batch: &'a [Delivery<'a>],
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>>;

    /// Checks that the stream can be reached (`deskbus check --connect`).
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// `(err)` for every entry of a batch that failed as a whole.
pub(crate) fn all_failed(len: usize, error: DeliveryError) -> Vec<Result<(), DeliveryError>> {
    vec![Err(error); len]
}
