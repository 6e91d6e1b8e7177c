//! Records: what wraps the serialized tuple before it goes on the wire.

use std::cell::RefCell;

use crate::component::{Encoder, Record, RecordContext, Serializer};
use crate::encoder::Base64Encoder;
use crate::error::{FormatError, Warning};
use crate::json::{JsonFlags, JsonSerializer};
use crate::value::{Value, ValueRef};

/// The plugin's Kinesis partition key: its class name with the namespace
/// cut off, which leaves the leading backslash (`\KinesisRecord`).
pub const PLUGIN_PARTITION_KEY: &str = "\\KinesisRecord";

thread_local! {
    // Intermediate buffers (serialized tuple, encoded payload) reused across
    // records so the steady state allocates nothing.
    static SCRATCH: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

// A buffer that grew past this (one huge record) is dropped rather than kept
// for the thread's lifetime.
const SCRATCH_KEEP: usize = 1024 * 1024;

fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH
        .try_with(|p| p.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default();
    buf.clear();
    let r = f(&mut buf);
    if buf.capacity() <= SCRATCH_KEEP {
        let _ = SCRATCH.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < 8 {
                p.push(buf);
            }
        });
    }
    r
}

/// Serializes the tuple, then encodes it if there is an encoder; calls `f`
/// with the payload.
fn payload<R>(
    tuple: &Value,
    data: &dyn Serializer,
    encoder: Option<&dyn Encoder>,
    warnings: &mut Vec<Warning>,
    f: impl FnOnce(&[u8], &mut Vec<Warning>) -> Result<R, FormatError>,
) -> Result<R, FormatError> {
    with_scratch(|ser| {
        data.serialize_into(ValueRef::Value(tuple), ser, warnings)?;
        match encoder {
            None => f(ser, warnings),
            Some(enc) => with_scratch(|encoded| {
                enc.encode_into(ser, encoded, warnings)?;
                f(encoded, warnings)
            }),
        }
    })
}

/// The JSON used by records that are not PHP-compatible by nature
/// (envelope, CloudEvents): compact, raw UTF-8, slashes unescaped.
pub(crate) fn clean_json() -> JsonSerializer {
    JsonSerializer::new(
        JsonFlags::UNESCAPED_UNICODE
            | JsonFlags::UNESCAPED_SLASHES
            | JsonFlags::PRESERVE_ZERO_FRACTION,
        512,
    )
    .unwrap_or_else(|_| JsonSerializer::plugin_default())
}

/// `raw`: the (optionally encoded) payload itself.
#[derive(Debug, Default)]
pub struct RawRecord {
    encoder: Option<Box<dyn Encoder>>,
}

impl RawRecord {
    /// A raw record; without an encoder the serializer's bytes go out
    /// unchanged.
    pub fn new(encoder: Option<Box<dyn Encoder>>) -> Self {
        Self { encoder }
    }
}

impl Record for RawRecord {
    fn encode_into(
        &self,
        tuple: &Value,
        data: &dyn Serializer,
        _: &RecordContext<'_>,
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        match &self.encoder {
            // No copy at all: the serializer writes into the output.
            None => data.serialize_into(ValueRef::Value(tuple), out, warnings),
            Some(enc) => with_scratch(|ser| {
                data.serialize_into(ValueRef::Value(tuple), ser, warnings)?;
                enc.encode_into(ser, out, warnings)
            }),
        }
    }

    fn content_type<'a>(&'a self, data: &'a str) -> &'a str {
        match &self.encoder {
            None => data,
            Some(e) => e.content_type(data),
        }
    }
}

/// `kinesis`: the plugin's record, `{"Data": …, "StreamName": …,
/// "PartitionKey": …}` (keys in that order) serialized by its own
/// serializer.
#[derive(Debug)]
pub struct KinesisRecord {
    stream_name: Option<String>,
    partition_key: Option<String>,
    encoder: Box<dyn Encoder>,
    serializer: Box<dyn Serializer>,
}

impl KinesisRecord {
    /// A Kinesis record. `stream_name` may come from the context instead;
    /// `partition_key` defaults to [`PLUGIN_PARTITION_KEY`].
    pub fn new(
        stream_name: Option<String>,
        partition_key: Option<String>,
        encoder: Box<dyn Encoder>,
        serializer: Box<dyn Serializer>,
    ) -> Self {
        Self {
            stream_name,
            partition_key,
            encoder,
            serializer,
        }
    }
}

impl Record for KinesisRecord {
    fn encode_into(
        &self,
        tuple: &Value,
        data: &dyn Serializer,
        ctx: &RecordContext<'_>,
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        let stream =
            ctx.stream_name
                .or(self.stream_name.as_deref())
                .ok_or(FormatError::MissingContext {
                    record: "kinesis",
                    field: "stream_name",
                })?;
        let key = ctx
            .partition_key
            .or(self.partition_key.as_deref())
            .unwrap_or(PLUGIN_PARTITION_KEY);
        payload(
            tuple,
            data,
            Some(&*self.encoder),
            warnings,
            |bytes, warnings| {
                let fields = [
                    ("Data", ValueRef::Bytes(bytes)),
                    ("StreamName", ValueRef::Bytes(stream.as_bytes())),
                    ("PartitionKey", ValueRef::Bytes(key.as_bytes())),
                ];
                self.serializer
                    .serialize_into(ValueRef::Fields(&fields), out, warnings)
            },
        )
    }

    fn content_type<'a>(&'a self, _: &'a str) -> &'a str {
        self.serializer.content_type()
    }
}

/// `firehose`: one PutRecordBatch entry, `{"Data":"<standard base64>"}`.
#[derive(Debug, Default)]
pub struct FirehoseRecord {
    encoder: Option<Box<dyn Encoder>>,
}

impl FirehoseRecord {
    /// A Firehose entry; the optional encoder runs before base64.
    pub fn new(encoder: Option<Box<dyn Encoder>>) -> Self {
        Self { encoder }
    }
}

impl Record for FirehoseRecord {
    fn encode_into(
        &self,
        tuple: &Value,
        data: &dyn Serializer,
        _: &RecordContext<'_>,
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        payload(
            tuple,
            data,
            self.encoder.as_deref(),
            warnings,
            |bytes, _| {
                // Base64 never needs JSON escaping, so the entry is written
                // directly.
                out.extend_from_slice(b"{\"Data\":\"");
                Base64Encoder::default().append(bytes, out);
                out.extend_from_slice(b"\"}");
                Ok(())
            },
        )
    }

    fn content_type<'a>(&'a self, _: &'a str) -> &'a str {
        "application/json"
    }
}

/// `envelope`: XiVO's bus message `{"name", "origin_uuid", "data"}` where
/// `data` is the tuple itself (the use case's serializer is not used).
#[derive(Debug)]
pub struct EnvelopeRecord {
    name: Option<String>,
    origin_uuid: Option<String>,
    serializer: Box<dyn Serializer>,
}

impl EnvelopeRecord {
    /// An envelope; `name` and `origin_uuid` may come from the context.
    pub fn new(
        name: Option<String>,
        origin_uuid: Option<String>,
        serializer: Box<dyn Serializer>,
    ) -> Self {
        Self {
            name,
            origin_uuid,
            serializer,
        }
    }
}

impl Record for EnvelopeRecord {
    fn encode_into(
        &self,
        tuple: &Value,
        _: &dyn Serializer,
        ctx: &RecordContext<'_>,
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        let missing = |field| FormatError::MissingContext {
            record: "envelope",
            field,
        };
        let name = ctx
            .event_name
            .or(self.name.as_deref())
            .ok_or_else(|| missing("name"))?;
        let origin = ctx
            .origin_uuid
            .or(self.origin_uuid.as_deref())
            .ok_or_else(|| missing("origin_uuid"))?;
        let fields = [
            ("name", ValueRef::Bytes(name.as_bytes())),
            ("origin_uuid", ValueRef::Bytes(origin.as_bytes())),
            ("data", ValueRef::Value(tuple)),
        ];
        self.serializer
            .serialize_into(ValueRef::Fields(&fields), out, warnings)
    }

    fn content_type<'a>(&'a self, _: &'a str) -> &'a str {
        self.serializer.content_type()
    }
}

/// `cloudevents`: CloudEvents 1.0 in structured JSON mode.
///
/// `data` holds the payload as JSON when the data serializer produces JSON
/// (and no encoder runs), as a string when the payload is UTF-8 text
/// (CSV, NDJSON, base64...), and `data_base64` otherwise.
#[derive(Debug)]
pub struct CloudEventsRecord {
    source: Option<String>,
    event_type: Option<String>,
    encoder: Option<Box<dyn Encoder>>,
    json: JsonSerializer,
}

impl CloudEventsRecord {
    /// A CloudEvents record; `source` and `event_type` may come from the
    /// context, `id` and `time` must.
    pub fn new(
        source: Option<String>,
        event_type: Option<String>,
        encoder: Option<Box<dyn Encoder>>,
    ) -> Self {
        Self {
            source,
            event_type,
            encoder,
            json: clean_json(),
        }
    }

    fn attr(&self, out: &mut Vec<u8>, name: &str, value: &str) -> Result<(), FormatError> {
        out.push(b',');
        self.json.write_str(name.as_bytes(), out)?;
        out.push(b':');
        self.json.write_str(value.as_bytes(), out)
    }
}

impl Record for CloudEventsRecord {
    fn encode_into(
        &self,
        tuple: &Value,
        data: &dyn Serializer,
        ctx: &RecordContext<'_>,
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        let missing = |field| FormatError::MissingContext {
            record: "cloudevents",
            field,
        };
        let id = ctx.event_id.ok_or_else(|| missing("id"))?;
        let time = ctx.time.ok_or_else(|| missing("time"))?;
        let source = ctx
            .source
            .or(self.source.as_deref())
            .ok_or_else(|| missing("source"))?;
        let kind = ctx
            .event_type
            .or(self.event_type.as_deref())
            .ok_or_else(|| missing("type"))?;
        let content_type = self.content_type_of(data.content_type());
        let start = out.len();
        let res = payload(
            tuple,
            data,
            self.encoder.as_deref(),
            warnings,
            |bytes, _| {
                out.extend_from_slice(b"{\"specversion\":\"1.0\"");
                self.attr(out, "id", id)?;
                self.attr(out, "source", source)?;
                self.attr(out, "type", kind)?;
                self.attr(out, "time", time)?;
                self.attr(out, "datacontenttype", content_type)?;
                if self.encoder.is_none() && content_type == "application/json" {
                    out.extend_from_slice(b",\"data\":");
                    out.extend_from_slice(bytes);
                } else if let Ok(text) = std::str::from_utf8(bytes) {
                    out.extend_from_slice(b",\"data\":");
                    self.json.write_str(text.as_bytes(), out)?;
                } else {
                    out.extend_from_slice(b",\"data_base64\":\"");
                    Base64Encoder::default().append(bytes, out);
                    out.push(b'"');
                }
                out.push(b'}');
                Ok(())
            },
        );
        if res.is_err() {
            out.truncate(start);
        }
        res
    }

    fn content_type<'a>(&'a self, _: &'a str) -> &'a str {
        "application/cloudevents+json"
    }
}

impl CloudEventsRecord {
    fn content_type_of<'a>(&'a self, data: &'a str) -> &'a str {
        match &self.encoder {
            None => data,
            Some(e) => e.content_type(data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csv::{CsvOptions, CsvSerializer};
    use crate::encoder::Utf8Encoder;

    fn tuple() -> Value {
        [("id", Value::Int(42)), ("name", Value::from("a/b"))]
            .into_iter()
            .collect()
    }

    fn run(
        r: &dyn Record,
        data: &dyn Serializer,
        ctx: &RecordContext<'_>,
    ) -> Result<String, FormatError> {
        let mut out = Vec::new();
        r.encode_into(&tuple(), data, ctx, &mut out, &mut Vec::new())?;
        Ok(String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn kinesis_needs_a_stream_name_and_defaults_the_key() {
        let r = KinesisRecord::new(
            None,
            None,
            Box::new(Utf8Encoder::plugin_default()),
            Box::new(JsonSerializer::plugin_default()),
        );
        let csv = CsvSerializer::new(CsvOptions::default()).expect("valid");
        assert!(matches!(
            run(&r, &csv, &RecordContext::default()),
            Err(FormatError::MissingContext {
                field: "stream_name",
                ..
            })
        ));
        let ctx = RecordContext {
            stream_name: Some("s"),
            ..RecordContext::default()
        };
        assert_eq!(
            run(&r, &csv, &ctx).expect("encodes"),
            r#"{"Data":"42,a\/b\n","StreamName":"s","PartitionKey":"\\KinesisRecord"}"#
        );
        let ctx = RecordContext {
            partition_key: Some("ticket-7"),
            ..ctx
        };
        assert!(
            run(&r, &csv, &ctx)
                .expect("encodes")
                .ends_with(r#""PartitionKey":"ticket-7"}"#)
        );
    }

    #[test]
    fn firehose_entry_is_base64() {
        let r = FirehoseRecord::new(None);
        let json = JsonSerializer::new(JsonFlags::NONE, 16).expect("valid");
        assert_eq!(
            run(&r, &json, &RecordContext::default()).expect("encodes"),
            r#"{"Data":"eyJpZCI6NDIsIm5hbWUiOiJhXC9iIn0="}"#
        );
    }

    #[test]
    fn envelope_embeds_the_tuple() {
        let r = EnvelopeRecord::new(Some("ticket_created".into()), None, Box::new(clean_json()));
        let ctx = RecordContext {
            origin_uuid: Some("0199-uuid"),
            ..RecordContext::default()
        };
        let json = clean_json();
        assert_eq!(
            run(&r, &json, &ctx).expect("encodes"),
            r#"{"name":"ticket_created","origin_uuid":"0199-uuid","data":{"id":42,"name":"a/b"}}"#
        );
    }

    #[test]
    fn cloudevents_structured_mode() {
        let r = CloudEventsRecord::new(
            Some("/osticket".into()),
            Some("ticket.created".into()),
            None,
        );
        let ctx = RecordContext {
            event_id: Some("e1"),
            time: Some("2026-11-23T14:40:14Z"),
            ..RecordContext::default()
        };
        let out = run(&r, &clean_json(), &ctx).expect("encodes");
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid json");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "ticket.created");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["data"]["id"], 42);
        let csv = CsvSerializer::new(CsvOptions::default()).expect("valid");
        let out = run(&r, &csv, &ctx).expect("encodes");
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid json");
        assert_eq!(v["data"], "42,a/b\n");
        assert!(run(&r, &csv, &RecordContext::default()).is_err());
    }
}
