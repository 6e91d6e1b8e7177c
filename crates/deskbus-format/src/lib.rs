//! The deskbus format stack: how a use case's tuple becomes the bytes that
//! go on the wire.
//!
//! It is the osTicket streamer plugin's pipeline, reproduced byte for byte
//! where consumers depend on it and made safe where the plugin is not:
//!
//! ```text
//! tuple ──serializer──▶ payload ──encoder──▶ printable ──record──▶ bytes
//!        json/ndjson/csv          utf8/base16/base64     raw/kinesis/firehose/
//!                                                        envelope/cloudevents
//! ```
//!
//! * A **tuple** is a [`Value`], PHP's data model (byte strings, INF/NAN,
//!   ordered arrays with int or string keys); `serde_json::Value` converts
//!   into it cheaply.
//! * A **serializer** ([`Serializer`]) turns it into bytes: [`JsonSerializer`]
//!   (`json_encode`), [`NdjsonSerializer`] (the same plus a terminator, which
//!   it always escapes inside records — the one deliberate difference from
//!   the plugin), [`CsvSerializer`] (`fputcsv`, or strict RFC 4180).
//! * An **encoder** ([`Encoder`]) makes the payload printable:
//!   [`Utf8Encoder`] (`mb_convert_encoding`), [`Base16Encoder`],
//!   [`Base64Encoder`].
//! * A **record** ([`Record`]) wraps it: [`RawRecord`], [`KinesisRecord`]
//!   (the plugin's), [`FirehoseRecord`], [`EnvelopeRecord`] (XiVO),
//!   [`CloudEventsRecord`].
//! * A [`Stack`] is a serializer plus a record, built from config specs
//!   ([`FormatSpec`]) through a [`FormatRegistry`].
//!
//! The crate does no I/O and knows nothing of sources or streams. Byte
//! compatibility is checked against 840 PHP 8.2 golden vectors
//! (`tests/golden.rs`).
//!
//! # Example
//!
//! The plugin's typical stack: the ticket tuple as CSV, base64-encoded,
//! inside a Kinesis record serialized as JSON.
//!
//! ```
//! use deskbus_format::{FormatRegistry, RecordContext, StackSpec, Value};
//!
//! let spec: StackSpec = serde_json::from_str(r#"{
//!     "serializer": {"type": "csv"},
//!     "record": {"type": "kinesis", "stream_name": "helpdesk",
//!                "encoder": {"type": "base64"}}
//! }"#)?;
//! let stack = FormatRegistry::with_builtins().build_stack(&spec.serializer, &spec.record)?;
//!
//! let tuple: Value = serde_json::json!({"helpdesk_code": "BFX-1", "department_id": 3}).into();
//! let bytes = stack.encode(&tuple, &RecordContext::default())?;
//! assert_eq!(
//!     bytes,
//!     br#"{"Data":"QkZYLTEsMwo=","StreamName":"helpdesk","PartitionKey":"\\KinesisRecord"}"#
//! );
//! assert_eq!(stack.content_type(), "application/json");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Adding a format
//!
//! Implement [`Serializer`], [`Encoder`] or [`Record`], give it an options
//! struct that deserializes from the spec's keys, and register a factory
//! under a name. The built-ins go through exactly the same calls (see
//! [`register_builtins`]). Here a `rot13` encoder:
//!
//! ```
//! use deskbus_format::{
//!     ComponentKind, Encoder, FormatError, FormatRegistry, FormatSpec, RecordContext, Value,
//!     Warning,
//! };
//!
//! #[derive(Debug)]
//! struct Rot13 {
//!     upper: bool,
//! }
//!
//! impl Encoder for Rot13 {
//!     fn encode_into(&self, input: &[u8], out: &mut Vec<u8>, _: &mut Vec<Warning>)
//!         -> Result<(), FormatError>
//!     {
//!         out.extend(input.iter().map(|&b| {
//!             let b = match b {
//!                 b'a'..=b'z' => (b - b'a' + 13) % 26 + b'a',
//!                 b'A'..=b'Z' => (b - b'A' + 13) % 26 + b'A',
//!                 _ => b,
//!             };
//!             if self.upper { b.to_ascii_uppercase() } else { b }
//!         }));
//!         Ok(())
//!     }
//!     fn content_type<'a>(&'a self, input: &'a str) -> &'a str {
//!         input
//!     }
//! }
//!
//! // The options, strict like the built-ins'.
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Rot13Spec {
//!     #[serde(default)]
//!     upper: bool,
//! }
//!
//! let mut registry = FormatRegistry::with_builtins();
//! registry.register_encoder("rot13", |spec, _registry| {
//!     let o: Rot13Spec = spec.options(ComponentKind::Encoder)?;
//!     Ok(Box::new(Rot13 { upper: o.upper }))
//! });
//!
//! let serializer = FormatSpec::new("csv");
//! let record = FormatSpec::new("raw")
//!     .with("encoder", serde_json::json!({"type": "rot13", "upper": true}));
//! let stack = registry.build_stack(&serializer, &record)?;
//! let tuple: Value = [("greeting", "hello")].into_iter().collect();
//! assert_eq!(stack.encode(&tuple, &RecordContext::default())?, b"URYYB\n");
//!
//! // Unknown options are refused when the stack is built.
//! let bad = FormatSpec::new("raw").with("encoder", serde_json::json!({"type": "rot13", "lower": 1}));
//! assert!(registry.build_stack(&serializer, &bad).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod component;
mod csv;
mod encoder;
mod error;
mod json;
mod php;
mod record;
mod spec;
mod stack;
mod value;

pub use component::{Encoder, Record, RecordContext, Serializer};
pub use csv::{CsvMode, CsvOptions, CsvSerializer, CsvWriter, DEFAULT_MEMORY, LineEnding};
pub use encoder::{Base16Encoder, Base64Encoder, InvalidPolicy, Utf8Encoder};
pub use error::{ComponentKind, FormatError, JsonErrorKind, Warning};
pub use json::{DEFAULT_DEPTH, JsonFlag, JsonFlags, JsonSerializer, NdjsonSerializer, Terminator};
pub use record::{
    CloudEventsRecord, EnvelopeRecord, FirehoseRecord, KinesisRecord, PLUGIN_PARTITION_KEY,
    RawRecord,
};
pub use spec::{
    Base16Spec, Base64Spec, CloudEventsSpec, ConfigWarning, CsvSpec, EncoderSpec, EnvelopeSpec,
    FirehoseSpec, FormatSpec, JsonSpec, KinesisSpec, NdjsonSpec, RawSpec, RecordSpec,
    SerializerSpec, StackSpec, Utf8Spec, lint_stack, record_serializer_numeric_check,
};
pub use stack::{
    EncoderFactory, FormatRegistry, RecordFactory, SerializerFactory, Stack, register_builtins,
};
pub use value::{Key, PhpArray, Value, ValueRef};
