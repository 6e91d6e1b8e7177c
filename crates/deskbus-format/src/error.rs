//! Errors and warnings.

/// Why `json_encode` failed, with PHP's error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// `JSON_ERROR_DEPTH` (1): arrays nest deeper than `depth`.
    Depth,
    /// `JSON_ERROR_UTF8` (5): a string is not valid UTF-8.
    Utf8,
    /// `JSON_ERROR_INF_OR_NAN` (7): a float is INF or NAN.
    InfOrNan,
}

impl JsonErrorKind {
    /// PHP's `json_last_error()` code.
    pub fn code(self) -> u32 {
        match self {
            Self::Depth => 1,
            Self::Utf8 => 5,
            Self::InfOrNan => 7,
        }
    }

    /// PHP's constant name.
    pub fn constant(self) -> &'static str {
        match self {
            Self::Depth => "JSON_ERROR_DEPTH",
            Self::Utf8 => "JSON_ERROR_UTF8",
            Self::InfOrNan => "JSON_ERROR_INF_OR_NAN",
        }
    }

    /// PHP's `json_last_error_msg()` text.
    pub fn php_message(self) -> &'static str {
        match self {
            Self::Depth => "Maximum stack depth exceeded",
            Self::Utf8 => "Malformed UTF-8 characters, possibly incorrectly encoded",
            Self::InfOrNan => "Inf and NaN cannot be JSON encoded",
        }
    }
}

impl std::fmt::Display for JsonErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Depth => "maximum stack depth exceeded",
            Self::Utf8 => "malformed utf-8 characters, possibly incorrectly encoded",
            Self::InfOrNan => "inf and nan cannot be json encoded",
        })
    }
}

/// Which kind of component a spec or error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentKind {
    /// A data or record serializer.
    Serializer,
    /// An encoder.
    Encoder,
    /// A record.
    Record,
}

impl std::fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Serializer => "serializer",
            Self::Encoder => "encoder",
            Self::Record => "record",
        })
    }
}

/// Everything that can go wrong while building or running a format stack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// `json_encode` would have returned `false`.
    #[error("json encoding failed: {0}")]
    Json(JsonErrorKind),
    /// The utf8 encoder met bytes that are not valid in the source charset
    /// and `invalid = "error"` was set.
    #[error("input is not valid {charset} at byte {offset}")]
    InvalidInput {
        /// The source charset.
        charset: &'static str,
        /// Offset of the first bad byte.
        offset: usize,
    },
    /// A spec names a type nobody registered.
    #[error("unknown {kind} type `{name}`")]
    UnknownType {
        /// serializer, encoder or record.
        kind: ComponentKind,
        /// The `type` value.
        name: String,
    },
    /// A spec's options do not deserialize (unknown field, wrong type...).
    #[error("invalid options for {kind} `{name}`")]
    Options {
        /// serializer, encoder or record.
        kind: ComponentKind,
        /// The `type` value.
        name: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A spec's options deserialize but make no sense.
    #[error("invalid {kind} `{name}`: {reason}")]
    InvalidSpec {
        /// serializer, encoder or record.
        kind: ComponentKind,
        /// The `type` value.
        name: &'static str,
        /// What is wrong, lowercase.
        reason: String,
    },
    /// The record needs a value from the [`RecordContext`](crate::RecordContext)
    /// that neither the context nor the spec gave.
    #[error("{record} record needs `{field}` but neither its spec nor the record context sets it")]
    MissingContext {
        /// The record type.
        record: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// The caller's writer failed (streaming CSV API only).
    #[error("writing csv output failed")]
    Write(#[source] std::io::Error),
}

impl FormatError {
    pub(crate) fn spec(kind: ComponentKind, name: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidSpec {
            kind,
            name,
            reason: reason.into(),
        }
    }
}

/// Something worth logging that did not stop the output.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// `partial_output_on_error` was set and `json_encode` reported this
    /// error: the output was produced with the faulty parts replaced (`null`
    /// for a malformed string, `0` for INF/NAN) or, for depth, complete.
    JsonPartialOutput(JsonErrorKind),
    /// A php-mode CSV cell held an array and was written as `Array`, as
    /// PHP's "Array to string conversion" warning.
    ArrayToString,
    /// The utf8 encoder replaced this many malformed sequences with `?`.
    InvalidInputReplaced {
        /// Number of `?` written.
        count: usize,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::JsonPartialOutput(k) => write!(f, "partial json output: {k}"),
            Self::ArrayToString => f.write_str("array to string conversion"),
            Self::InvalidInputReplaced { count } => {
                write!(f, "replaced {count} malformed input sequence(s) with `?`")
            }
        }
    }
}
