//! The three component traits every format implements.

use crate::error::{FormatError, Warning};
use crate::value::{Value, ValueRef};

/// Turns a value into bytes (a data serializer or a record serializer).
pub trait Serializer: Send + Sync + std::fmt::Debug {
    /// Appends the serialized `value` to `out`. On error `out` must be left
    /// as it was. Non-fatal problems go to `warnings`.
    fn serialize_into(
        &self,
        value: ValueRef<'_>,
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError>;

    /// The MIME type of the output.
    fn content_type(&self) -> &str;
}

/// Makes bytes printable (or re-encodes text).
pub trait Encoder: Send + Sync + std::fmt::Debug {
    /// Appends the encoding of `input` to `out`. On error `out` must be left
    /// as it was.
    fn encode_into(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError>;

    /// The MIME type of the output given the input's: a charset conversion
    /// keeps it, a binary-to-text encoding makes it `text/plain`.
    fn content_type<'a>(&'a self, input: &'a str) -> &'a str;
}

/// Facts about the event that records may need. Everything is optional; a
/// record that needs a missing field fails with
/// [`FormatError::MissingContext`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordContext<'a> {
    /// Kinesis `StreamName` (overrides the spec's `stream_name`).
    pub stream_name: Option<&'a str>,
    /// A rendered partition key (overrides the spec's `partition_key` and
    /// the plugin's constant `\KinesisRecord`).
    pub partition_key: Option<&'a str>,
    /// Event id (CloudEvents `id`).
    pub event_id: Option<&'a str>,
    /// Event name (envelope `name`).
    pub event_name: Option<&'a str>,
    /// Producer id (envelope `origin_uuid`).
    pub origin_uuid: Option<&'a str>,
    /// RFC 3339 time (CloudEvents `time`).
    pub time: Option<&'a str>,
    /// Event source URI reference (CloudEvents `source`).
    pub source: Option<&'a str>,
    /// Event type (CloudEvents `type`).
    pub event_type: Option<&'a str>,
}

/// Wraps the serialized tuple into what goes on the wire.
pub trait Record: Send + Sync + std::fmt::Debug {
    /// Appends the record for `tuple` to `out`, serializing the tuple with
    /// `data` (the use case's serializer). On error `out` must be left as it
    /// was.
    fn encode_into(
        &self,
        tuple: &Value,
        data: &dyn Serializer,
        ctx: &RecordContext<'_>,
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError>;

    /// The MIME type of the record given the data serializer's.
    fn content_type<'a>(&'a self, data: &'a str) -> &'a str;
}
