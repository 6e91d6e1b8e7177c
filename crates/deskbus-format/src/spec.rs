//! Config types: what the app deserializes from a use case's `serializer`
//! and `record` tables.
//!
//! A [`FormatSpec`] is the raw table: its `type` and the other keys, kept
//! as data. The registry's factory for that type then deserializes the keys
//! into the type's own options struct (`JsonSpec`, `CsvSpec`...), which
//! denies unknown fields, and validates them. Raw first, validated second:
//! this keeps the set of types open to plugins while every built-in option
//! is still checked strictly.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::csv::{CsvMode, CsvOptions, DEFAULT_MEMORY, LineEnding};
use crate::encoder::InvalidPolicy;
use crate::error::{ComponentKind, FormatError};
use crate::json::{DEFAULT_DEPTH, JsonFlag, JsonFlags, Terminator};

/// A serializer, encoder or record table: `{ type = "...", ...options }`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct FormatSpec {
    /// The registered name (`json`, `csv`, `base64`, `kinesis`...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Every other key of the table.
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// A `serializer = {...}` table.
pub type SerializerSpec = FormatSpec;
/// An `encoder = {...}` table.
pub type EncoderSpec = FormatSpec;
/// A `record = {...}` table.
pub type RecordSpec = FormatSpec;

impl FormatSpec {
    /// A spec of this type with no options (every option at its default).
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            options: serde_json::Map::new(),
        }
    }

    /// Builder-style: sets one option.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// Deserializes the options into `T` (a `*Spec` struct), naming the
    /// component in the error.
    pub fn options<T: DeserializeOwned>(&self, kind: ComponentKind) -> Result<T, FormatError> {
        serde_json::from_value(serde_json::Value::Object(self.options.clone())).map_err(|source| {
            FormatError::Options {
                kind,
                name: self.kind.clone(),
                source,
            }
        })
    }
}

/// The stack of one use case.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StackSpec {
    /// The data serializer.
    pub serializer: SerializerSpec,
    /// The record; `raw` when absent.
    #[serde(default = "raw_record")]
    pub record: RecordSpec,
}

fn raw_record() -> RecordSpec {
    FormatSpec::new("raw")
}

fn default_depth() -> u32 {
    DEFAULT_DEPTH
}

fn plugin_flags() -> Vec<JsonFlag> {
    vec![
        JsonFlag::ForceObject,
        JsonFlag::NumericCheck,
        JsonFlag::UnescapedUnicode,
        JsonFlag::PreserveZeroFraction,
    ]
}

/// `type = "json"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSpec {
    /// Maximum array nesting, > 0. Default 16.
    #[serde(default = "default_depth")]
    pub depth: u32,
    /// Flags. Default: the plugin's `force_object`, `numeric_check`,
    /// `unescaped_unicode`, `preserve_zero_fraction`; `[]` means none.
    #[serde(default = "plugin_flags")]
    pub flags: Vec<JsonFlag>,
}

impl Default for JsonSpec {
    fn default() -> Self {
        Self {
            depth: DEFAULT_DEPTH,
            flags: plugin_flags(),
        }
    }
}

impl JsonSpec {
    /// The flags as a set.
    pub fn json_flags(&self) -> JsonFlags {
        self.flags.iter().copied().collect()
    }
}

/// `type = "ndjson"`: the json options plus the terminator.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NdjsonSpec {
    /// As [`JsonSpec::depth`].
    #[serde(default = "default_depth")]
    pub depth: u32,
    /// As [`JsonSpec::flags`].
    #[serde(default = "plugin_flags")]
    pub flags: Vec<JsonFlag>,
    /// `nul`, `lf` (default), `nel`, `ls`, `ps` or `crlf`.
    #[serde(default)]
    pub terminator: Terminator,
}

impl Default for NdjsonSpec {
    fn default() -> Self {
        Self {
            depth: DEFAULT_DEPTH,
            flags: plugin_flags(),
            terminator: Terminator::Lf,
        }
    }
}

fn default_separator() -> String {
    ",".into()
}
fn default_enclosure() -> String {
    "\"".into()
}
fn default_memory() -> u64 {
    DEFAULT_MEMORY as u64
}

/// `type = "csv"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSpec {
    /// One byte; default `,`.
    #[serde(default = "default_separator")]
    pub separator: String,
    /// One byte; default `"`.
    #[serde(default = "default_enclosure")]
    pub enclosure: String,
    /// At most one byte; `""` disables escaping. Default `\` in php mode,
    /// none in rfc4180 mode.
    #[serde(default)]
    pub escape: Option<String>,
    /// Bytes kept in memory before a streamed batch is handed to the
    /// writer (the plugin's temp-file threshold); never changes the output.
    /// Default 2097152.
    #[serde(default = "default_memory")]
    pub memory: u64,
    /// Write the tuple's keys as a header row.
    #[serde(default)]
    pub header: bool,
    /// `lf` (default) or `crlf`.
    #[serde(default)]
    pub line_ending: LineEnding,
    /// `php` (default) or `rfc4180`.
    #[serde(default)]
    pub mode: CsvMode,
}

impl Default for CsvSpec {
    fn default() -> Self {
        Self {
            separator: default_separator(),
            enclosure: default_enclosure(),
            escape: None,
            memory: default_memory(),
            header: false,
            line_ending: LineEnding::Lf,
            mode: CsvMode::Php,
        }
    }
}

impl CsvSpec {
    /// Checks the byte options and returns the serializer options.
    pub fn to_options(&self) -> Result<CsvOptions, FormatError> {
        let one = |name: &str, s: &str| -> Result<u8, FormatError> {
            match s.as_bytes() {
                [b] => Ok(*b),
                bytes => Err(FormatError::spec(
                    ComponentKind::Serializer,
                    "csv",
                    format!("{name} must be exactly one byte, got {}", bytes.len()),
                )),
            }
        };
        let escape = match (&self.escape, self.mode) {
            (None, CsvMode::Php) => Some(b'\\'),
            (None, CsvMode::Rfc4180) => None,
            (Some(s), _) => match s.as_bytes() {
                [] => None,
                [b] => Some(*b),
                bytes => {
                    return Err(FormatError::spec(
                        ComponentKind::Serializer,
                        "csv",
                        format!("escape must be empty or one byte, got {}", bytes.len()),
                    ));
                }
            },
        };
        Ok(CsvOptions {
            separator: one("separator", &self.separator)?,
            enclosure: one("enclosure", &self.enclosure)?,
            escape,
            memory: usize::try_from(self.memory).unwrap_or(usize::MAX),
            header: self.header,
            line_ending: self.line_ending,
            mode: self.mode,
        })
    }
}

fn default_charset() -> String {
    "UTF-8".into()
}

/// `type = "utf8"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Utf8Spec {
    /// Any WHATWG label; default `UTF-8`.
    #[serde(default = "default_charset")]
    pub source_charset: String,
    /// `replace` (default, `?` like mbstring) or `error`.
    #[serde(default)]
    pub invalid: InvalidPolicy,
}

/// `type = "base16"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Base16Spec {
    /// Upper-case digits (PHP's `bin2hex` is lower case).
    #[serde(default)]
    pub uppercase: bool,
}

/// `type = "base64"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Base64Spec {
    /// `-` and `_` instead of `+` and `/`.
    #[serde(default)]
    pub url_safe: bool,
    /// No `=` padding.
    #[serde(default)]
    pub no_pad: bool,
}

/// `type = "raw"`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    /// Optional encoder; without it the serializer's bytes go out unchanged.
    #[serde(default)]
    pub encoder: Option<EncoderSpec>,
}

/// `type = "kinesis"`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisSpec {
    /// `StreamName`; the record context may give it instead.
    #[serde(default)]
    pub stream_name: Option<String>,
    /// `PartitionKey`; default the plugin's constant `\KinesisRecord`. A
    /// key rendered per event by the app (record context) wins.
    #[serde(default)]
    pub partition_key: Option<String>,
    /// Default `utf8` from UTF-8 (the plugin's).
    #[serde(default)]
    pub encoder: Option<EncoderSpec>,
    /// The record serializer; default `json` with the plugin's flags.
    #[serde(default)]
    pub serializer: Option<SerializerSpec>,
}

/// `type = "firehose"`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FirehoseSpec {
    /// Optional encoder applied before the entry's base64.
    #[serde(default)]
    pub encoder: Option<EncoderSpec>,
}

/// `type = "envelope"`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSpec {
    /// Event name, if not given per event.
    #[serde(default)]
    pub name: Option<String>,
    /// Producer UUID, if not given per event.
    #[serde(default)]
    pub origin_uuid: Option<String>,
    /// Default: compact JSON, raw UTF-8, unescaped slashes.
    #[serde(default)]
    pub serializer: Option<SerializerSpec>,
}

/// `type = "cloudevents"`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CloudEventsSpec {
    /// `source`, if not given per event.
    #[serde(default)]
    pub source: Option<String>,
    /// `type`, if not given per event.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Optional encoder for the payload.
    #[serde(default)]
    pub encoder: Option<EncoderSpec>,
}

/// A configuration that works but deserves a warning at startup.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigWarning {
    /// The record serializer has `numeric_check` (the plugin's default):
    /// a numeric-looking payload becomes a JSON number and loses bytes
    /// (a one-field CSV `"42\n"` becomes `42`).
    RecordSerializerNumericCheck {
        /// The record type.
        record: String,
    },
    /// With these flags the plugin would write the NDJSON terminator raw
    /// inside records; deskbus escapes it, so its bytes differ from the
    /// plugin's there.
    NdjsonTerminatorEscaped {
        /// The terminator.
        terminator: Terminator,
    },
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RecordSerializerNumericCheck { record } => write!(
                f,
                "the {record} record serializer has numeric_check: a numeric-looking payload \
                 becomes a json number and loses bytes (e.g. \"42\\n\" becomes 42)"
            ),
            Self::NdjsonTerminatorEscaped { terminator } => write!(
                f,
                "with these flags php would write the {terminator:?} terminator raw inside records; \
                 deskbus escapes it there, so its output differs from the plugin's"
            ),
        }
    }
}

fn json_flags_of(spec: &FormatSpec) -> Option<JsonFlags> {
    match spec.kind.as_str() {
        "json" => spec
            .options::<JsonSpec>(ComponentKind::Serializer)
            .ok()
            .map(|s| s.json_flags()),
        "ndjson" => spec
            .options::<NdjsonSpec>(ComponentKind::Serializer)
            .ok()
            .map(|s| s.flags.iter().copied().collect()),
        _ => None,
    }
}

/// Whether the record's own serializer has `numeric_check`. A Kinesis
/// record without a `serializer` uses the plugin's flags, which have it.
pub fn record_serializer_numeric_check(record: &RecordSpec) -> bool {
    match record.options.get("serializer") {
        Some(s) => serde_json::from_value::<FormatSpec>(s.clone())
            .ok()
            .and_then(|s| json_flags_of(&s))
            .is_some_and(|f| f.contains(JsonFlags::NUMERIC_CHECK)),
        None => record.kind == "kinesis",
    }
}

/// Every [`ConfigWarning`] for a use case's stack.
pub fn lint_stack(serializer: &SerializerSpec, record: &RecordSpec) -> Vec<ConfigWarning> {
    let mut out = Vec::new();
    if record_serializer_numeric_check(record) {
        out.push(ConfigWarning::RecordSerializerNumericCheck {
            record: record.kind.clone(),
        });
    }
    if serializer.kind == "ndjson"
        && let Ok(s) = serializer.options::<NdjsonSpec>(ComponentKind::Serializer)
        && crate::json::NdjsonSerializer::differs_from_php(
            s.flags.iter().copied().collect(),
            s.terminator,
        )
    {
        out.push(ConfigWarning::NdjsonTerminatorEscaped {
            terminator: s.terminator,
        });
    }
    out
}
