//! The registry of formats and the [`Stack`] it builds.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::component::{Encoder, Record, RecordContext, Serializer};
use crate::csv::CsvSerializer;
use crate::encoder::{Base16Encoder, Base64Encoder, Utf8Encoder};
use crate::error::{ComponentKind, FormatError, Warning};
use crate::json::{JsonSerializer, NdjsonSerializer};
use crate::record::{
    CloudEventsRecord, EnvelopeRecord, FirehoseRecord, KinesisRecord, RawRecord, clean_json,
};
use crate::spec::{
    Base16Spec, Base64Spec, CloudEventsSpec, CsvSpec, EnvelopeSpec, FirehoseSpec, FormatSpec,
    JsonSpec, KinesisSpec, NdjsonSpec, RawSpec, RecordSpec, SerializerSpec, Utf8Spec,
};
use crate::value::Value;

/// Builds a serializer from its spec.
pub type SerializerFactory = Arc<
    dyn Fn(&FormatSpec, &FormatRegistry) -> Result<Box<dyn Serializer>, FormatError> + Send + Sync,
>;
/// Builds an encoder from its spec.
pub type EncoderFactory = Arc<
    dyn Fn(&FormatSpec, &FormatRegistry) -> Result<Box<dyn Encoder>, FormatError> + Send + Sync,
>;
/// Builds a record from its spec. The registry is passed so a record can
/// build its own encoder and serializer.
pub type RecordFactory =
    Arc<dyn Fn(&FormatSpec, &FormatRegistry) -> Result<Box<dyn Record>, FormatError> + Send + Sync>;

/// Named factories for serializers, encoders and records.
///
/// The built-ins are registered through the same three methods as any
/// extension (see [`FormatRegistry::with_builtins`]); registering a name
/// again replaces the previous factory.
#[derive(Clone, Default)]
pub struct FormatRegistry {
    serializers: BTreeMap<String, SerializerFactory>,
    encoders: BTreeMap<String, EncoderFactory>,
    records: BTreeMap<String, RecordFactory>,
}

impl std::fmt::Debug for FormatRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormatRegistry")
            .field("serializers", &self.serializers.keys().collect::<Vec<_>>())
            .field("encoders", &self.encoders.keys().collect::<Vec<_>>())
            .field("records", &self.records.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FormatRegistry {
    /// A registry with nothing in it.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A registry with every built-in format: serializers `json`, `ndjson`,
    /// `csv`; encoders `utf8`, `base16`, `base64`; records `raw`,
    /// `kinesis`, `firehose`, `envelope`, `cloudevents`.
    pub fn with_builtins() -> Self {
        let mut r = Self::empty();
        register_builtins(&mut r);
        r
    }

    /// Registers a serializer factory under `name`.
    pub fn register_serializer(
        &mut self,
        name: impl Into<String>,
        factory: impl Fn(&FormatSpec, &FormatRegistry) -> Result<Box<dyn Serializer>, FormatError>
        + Send
        + Sync
        + 'static,
    ) {
        self.serializers.insert(name.into(), Arc::new(factory));
    }

    /// Registers an encoder factory under `name`.
    pub fn register_encoder(
        &mut self,
        name: impl Into<String>,
        factory: impl Fn(&FormatSpec, &FormatRegistry) -> Result<Box<dyn Encoder>, FormatError>
        + Send
        + Sync
        + 'static,
    ) {
        self.encoders.insert(name.into(), Arc::new(factory));
    }

    /// Registers a record factory under `name`.
    pub fn register_record(
        &mut self,
        name: impl Into<String>,
        factory: impl Fn(&FormatSpec, &FormatRegistry) -> Result<Box<dyn Record>, FormatError>
        + Send
        + Sync
        + 'static,
    ) {
        self.records.insert(name.into(), Arc::new(factory));
    }

    /// Registered serializer names.
    pub fn serializer_names(&self) -> impl Iterator<Item = &str> {
        self.serializers.keys().map(String::as_str)
    }

    /// Registered encoder names.
    pub fn encoder_names(&self) -> impl Iterator<Item = &str> {
        self.encoders.keys().map(String::as_str)
    }

    /// Registered record names.
    pub fn record_names(&self) -> impl Iterator<Item = &str> {
        self.records.keys().map(String::as_str)
    }

    /// Builds a serializer.
    pub fn build_serializer(
        &self,
        spec: &SerializerSpec,
    ) -> Result<Box<dyn Serializer>, FormatError> {
        let f = self
            .serializers
            .get(&spec.kind)
            .ok_or_else(|| unknown(ComponentKind::Serializer, spec))?;
        f(spec, self)
    }

    /// Builds an encoder.
    pub fn build_encoder(&self, spec: &FormatSpec) -> Result<Box<dyn Encoder>, FormatError> {
        let f = self
            .encoders
            .get(&spec.kind)
            .ok_or_else(|| unknown(ComponentKind::Encoder, spec))?;
        f(spec, self)
    }

    /// Builds a record.
    pub fn build_record(&self, spec: &RecordSpec) -> Result<Box<dyn Record>, FormatError> {
        let f = self
            .records
            .get(&spec.kind)
            .ok_or_else(|| unknown(ComponentKind::Record, spec))?;
        f(spec, self)
    }

    /// Builds a use case's stack, validating both specs.
    pub fn build_stack(
        &self,
        serializer: &SerializerSpec,
        record: &RecordSpec,
    ) -> Result<Stack, FormatError> {
        Ok(Stack::new(
            self.build_serializer(serializer)?,
            self.build_record(record)?,
        ))
    }

    fn optional_encoder(
        &self,
        spec: Option<&FormatSpec>,
    ) -> Result<Option<Box<dyn Encoder>>, FormatError> {
        spec.map(|s| self.build_encoder(s)).transpose()
    }
}

fn unknown(kind: ComponentKind, spec: &FormatSpec) -> FormatError {
    FormatError::UnknownType {
        kind,
        name: spec.kind.clone(),
    }
}

/// Registers the built-in formats, through the public registration API.
pub fn register_builtins(r: &mut FormatRegistry) {
    use ComponentKind::{Encoder as E, Record as R, Serializer as S};

    r.register_serializer("json", |spec, _| {
        let o: JsonSpec = spec.options(S)?;
        Ok(Box::new(JsonSerializer::new(o.json_flags(), o.depth)?))
    });
    r.register_serializer("ndjson", |spec, _| {
        let o: NdjsonSpec = spec.options(S)?;
        let flags = o.flags.iter().copied().collect();
        Ok(Box::new(NdjsonSerializer::new(
            flags,
            o.depth,
            o.terminator,
        )?))
    });
    r.register_serializer("csv", |spec, _| {
        let o: CsvSpec = spec.options(S)?;
        Ok(Box::new(CsvSerializer::new(o.to_options()?)?))
    });

    r.register_encoder("utf8", |spec, _| {
        let o: Utf8Spec = spec.options(E)?;
        Ok(Box::new(Utf8Encoder::new(&o.source_charset, o.invalid)?))
    });
    r.register_encoder("base16", |spec, _| {
        let o: Base16Spec = spec.options(E)?;
        Ok(Box::new(Base16Encoder::new(o.uppercase)))
    });
    r.register_encoder("base64", |spec, _| {
        let o: Base64Spec = spec.options(E)?;
        Ok(Box::new(Base64Encoder::new(o.url_safe, o.no_pad)))
    });

    r.register_record("raw", |spec, reg| {
        let o: RawSpec = spec.options(R)?;
        Ok(Box::new(RawRecord::new(
            reg.optional_encoder(o.encoder.as_ref())?,
        )))
    });
    r.register_record("kinesis", |spec, reg| {
        let o: KinesisSpec = spec.options(R)?;
        let encoder = match &o.encoder {
            Some(e) => reg.build_encoder(e)?,
            None => Box::new(Utf8Encoder::plugin_default()),
        };
        let serializer = match &o.serializer {
            Some(s) => reg.build_serializer(s)?,
            None => Box::new(JsonSerializer::plugin_default()),
        };
        if let Some(name) = &o.stream_name
            && !valid_stream_name(name)
        {
            return Err(FormatError::spec(
                R,
                "kinesis",
                format!(
                    "stream_name `{name}` must be 1 to 128 characters of a-z, 0-9, `-`, `_` or `.`"
                ),
            ));
        }
        Ok(Box::new(KinesisRecord::new(
            o.stream_name,
            o.partition_key,
            encoder,
            serializer,
        )))
    });
    r.register_record("firehose", |spec, reg| {
        let o: FirehoseSpec = spec.options(R)?;
        Ok(Box::new(FirehoseRecord::new(
            reg.optional_encoder(o.encoder.as_ref())?,
        )))
    });
    r.register_record("envelope", |spec, reg| {
        let o: EnvelopeSpec = spec.options(R)?;
        let serializer = match &o.serializer {
            Some(s) => reg.build_serializer(s)?,
            None => Box::new(clean_json()),
        };
        Ok(Box::new(EnvelopeRecord::new(
            o.name,
            o.origin_uuid,
            serializer,
        )))
    });
    r.register_record("cloudevents", |spec, reg| {
        let o: CloudEventsSpec = spec.options(R)?;
        Ok(Box::new(CloudEventsRecord::new(
            o.source,
            o.event_type,
            reg.optional_encoder(o.encoder.as_ref())?,
        )))
    });
}

/// The plugin's check (`KinesisStreamValidator.php`):
/// `^[-a-z0-9_.]{1,128}$`, case-insensitive.
fn valid_stream_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A use case's whole format pipeline: data serializer, then record (which
/// owns its encoder and record serializer).
#[derive(Debug)]
pub struct Stack {
    serializer: Box<dyn Serializer>,
    record: Box<dyn Record>,
}

impl Stack {
    /// A stack from already-built parts.
    pub fn new(serializer: Box<dyn Serializer>, record: Box<dyn Record>) -> Self {
        Self { serializer, record }
    }

    /// Encodes one tuple into a new buffer. Warnings are dropped; use
    /// [`Stack::encode_into`] to see them.
    pub fn encode(&self, tuple: &Value, ctx: &RecordContext<'_>) -> Result<Vec<u8>, FormatError> {
        let mut out = Vec::new();
        self.encode_into(tuple, ctx, &mut out)?;
        Ok(out)
    }

    /// Appends the encoding of one tuple to `out` and returns the warnings
    /// (an empty `Vec`, which does not allocate, in the normal case). On
    /// error `out` is left as it was. Reusing `out` across calls keeps the
    /// hot path free of allocations.
    pub fn encode_into(
        &self,
        tuple: &Value,
        ctx: &RecordContext<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Vec<Warning>, FormatError> {
        let start = out.len();
        let mut warnings = Vec::new();
        match self
            .record
            .encode_into(tuple, &*self.serializer, ctx, out, &mut warnings)
        {
            Ok(()) => Ok(warnings),
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// The MIME type of what [`Stack::encode`] returns.
    pub fn content_type(&self) -> &str {
        self.record.content_type(self.serializer.content_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::StackSpec;

    fn stack(toml_text: &str) -> Result<Stack, FormatError> {
        let spec: StackSpec = toml::from_str(toml_text).expect("valid toml");
        FormatRegistry::with_builtins().build_stack(&spec.serializer, &spec.record)
    }

    #[test]
    fn the_issue_toml_shape_builds() {
        let s = stack(
            r#"
            serializer = { type = "csv", separator = ",", enclosure = "\"", escape = "\\" }
            record = { type = "kinesis", stream_name = "helpdesk", encoder = { type = "base64" }, serializer = { type = "json", flags = ["force_object", "unescaped_unicode"], depth = 16 } }
            "#,
        )
        .expect("builds");
        assert_eq!(s.content_type(), "application/json");
        let t: Value = [("a", 1i64)].into_iter().collect();
        let out = s.encode(&t, &RecordContext::default()).expect("encodes");
        assert_eq!(
            out,
            br#"{"Data":"MQo=","StreamName":"helpdesk","PartitionKey":"\\KinesisRecord"}"#
        );
    }

    #[test]
    fn raw_without_encoder_passes_bytes_through() {
        let s = stack("serializer = { type = \"ndjson\", terminator = \"crlf\" }").expect("builds");
        assert_eq!(s.content_type(), "application/x-ndjson");
        let t: Value = [("a", "x")].into_iter().collect();
        assert_eq!(
            s.encode(&t, &RecordContext::default()).expect("encodes"),
            b"{\"a\":\"x\"}\r\n"
        );
    }

    #[test]
    fn invalid_specs_have_clear_messages() {
        let msg = |t: &str| {
            let e = stack(t).expect_err("must fail");
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        };
        assert_eq!(
            msg("serializer = { type = \"csv\", separator = \";;\" }"),
            "invalid serializer `csv`: separator must be exactly one byte, got 2"
        );
        assert_eq!(
            msg("serializer = { type = \"json\", depth = 0 }"),
            "invalid serializer `json`: depth must be greater than zero"
        );
        assert!(
            msg("serializer = { type = \"json\", flags = [\"shiny\"] }")
                .starts_with("invalid options for serializer `json`: unknown variant `shiny`")
        );
        assert!(
            msg("serializer = { type = \"json\", colour = 1 }").contains("unknown field `colour`")
        );
        assert_eq!(
            msg(
                "serializer = { type = \"json\" }\nrecord = { type = \"raw\", encoder = { type = \"utf8\", source_charset = \"klingon\" } }"
            ),
            "invalid encoder `utf8`: unknown or unsupported source charset `klingon`"
        );
        assert_eq!(
            msg("serializer = { type = \"xml\" }"),
            "unknown serializer type `xml`"
        );
        assert!(msg("serializer = { type = \"json\" }\nrecord = { type = \"kinesis\", stream_name = \"a b\" }")
            .contains("stream_name `a b`"));
    }

    #[test]
    fn lint_flags_numeric_check_on_record_serializers() {
        use crate::spec::{ConfigWarning, lint_stack};
        let spec: StackSpec = toml::from_str(
            "serializer = { type = \"csv\" }\nrecord = { type = \"kinesis\", stream_name = \"s\" }",
        )
        .expect("toml");
        assert!(matches!(
            lint_stack(&spec.serializer, &spec.record).as_slice(),
            [ConfigWarning::RecordSerializerNumericCheck { .. }]
        ));
        let spec: StackSpec = toml::from_str(
            "serializer = { type = \"ndjson\", terminator = \"nel\" }\nrecord = { type = \"kinesis\", serializer = { type = \"json\", flags = [] } }",
        )
        .expect("toml");
        assert!(matches!(
            lint_stack(&spec.serializer, &spec.record).as_slice(),
            [ConfigWarning::NdjsonTerminatorEscaped { .. }]
        ));
    }
}
