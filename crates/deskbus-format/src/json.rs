//! `json` and `ndjson` serializers: PHP's `json_encode`, byte for byte.
//!
//! The escaping runs over a 256-entry class table built once per serializer
//! from its flags, so the common case (ASCII that needs no escape) is copied
//! in runs instead of byte by byte.

use crate::component::Serializer;
use crate::error::{ComponentKind, FormatError, JsonErrorKind, Warning};
use crate::php::{self, Numeric};
use crate::value::{Key, Value, ValueRef};

/// A set of `json_encode` flags, with PHP's bit values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct JsonFlags(u32);

impl JsonFlags {
    /// No flag: PHP's `json_encode` default.
    pub const NONE: Self = Self(0);
    /// `JSON_HEX_TAG`: `<` `>` as `\u003C` `\u003E`.
    pub const HEX_TAG: Self = Self(1);
    /// `JSON_HEX_AMP`: `&` as `\u0026`.
    pub const HEX_AMP: Self = Self(2);
    /// `JSON_HEX_APOS`: `'` as `\u0027`.
    pub const HEX_APOS: Self = Self(4);
    /// `JSON_HEX_QUOT`: `"` as `\u0022`.
    pub const HEX_QUOT: Self = Self(8);
    /// `JSON_FORCE_OBJECT`: every array, lists included, is an object.
    pub const FORCE_OBJECT: Self = Self(16);
    /// `JSON_NUMERIC_CHECK`: numeric strings become numbers.
    pub const NUMERIC_CHECK: Self = Self(32);
    /// `JSON_UNESCAPED_SLASHES`: `/` stays `/`.
    pub const UNESCAPED_SLASHES: Self = Self(64);
    /// `JSON_PRETTY_PRINT`: 4-space indentation.
    pub const PRETTY_PRINT: Self = Self(128);
    /// `JSON_UNESCAPED_UNICODE`: non-ASCII stays raw UTF-8 (but U+2028/9).
    pub const UNESCAPED_UNICODE: Self = Self(256);
    /// `JSON_PARTIAL_OUTPUT_ON_ERROR`: produce output despite errors.
    pub const PARTIAL_OUTPUT_ON_ERROR: Self = Self(512);
    /// `JSON_PRESERVE_ZERO_FRACTION`: `1.0` stays `1.0`.
    pub const PRESERVE_ZERO_FRACTION: Self = Self(1024);
    /// `JSON_UNESCAPED_LINE_TERMINATORS`: with `UNESCAPED_UNICODE`, U+2028/9 raw.
    pub const UNESCAPED_LINE_TERMINATORS: Self = Self(2048);
    /// `JSON_INVALID_UTF8_IGNORE`: drop malformed UTF-8.
    pub const INVALID_UTF8_IGNORE: Self = Self(1_048_576);
    /// `JSON_INVALID_UTF8_SUBSTITUTE`: malformed UTF-8 becomes U+FFFD.
    pub const INVALID_UTF8_SUBSTITUTE: Self = Self(2_097_152);
    /// The plugin's default: `FORCE_OBJECT | NUMERIC_CHECK |
    /// UNESCAPED_UNICODE | PRESERVE_ZERO_FRACTION` (1328).
    pub const PLUGIN_DEFAULT: Self = Self(16 | 32 | 256 | 1024);

    /// PHP's integer value.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Keeps only the bits of known flags.
    pub const fn from_bits_truncate(bits: u32) -> Self {
        Self(bits & 0x0030_0FFF)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for JsonFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for JsonFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl std::ops::Sub for JsonFlags {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 & !rhs.0)
    }
}

/// One flag as written in the config (`flags = ["force_object", ...]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum JsonFlag {
    HexTag,
    HexAmp,
    HexApos,
    HexQuot,
    ForceObject,
    NumericCheck,
    UnescapedSlashes,
    PrettyPrint,
    UnescapedUnicode,
    PartialOutputOnError,
    PreserveZeroFraction,
    UnescapedLineTerminators,
    InvalidUtf8Ignore,
    InvalidUtf8Substitute,
}

impl JsonFlag {
    /// The flag's bit.
    pub fn flags(self) -> JsonFlags {
        match self {
            Self::HexTag => JsonFlags::HEX_TAG,
            Self::HexAmp => JsonFlags::HEX_AMP,
            Self::HexApos => JsonFlags::HEX_APOS,
            Self::HexQuot => JsonFlags::HEX_QUOT,
            Self::ForceObject => JsonFlags::FORCE_OBJECT,
            Self::NumericCheck => JsonFlags::NUMERIC_CHECK,
            Self::UnescapedSlashes => JsonFlags::UNESCAPED_SLASHES,
            Self::PrettyPrint => JsonFlags::PRETTY_PRINT,
            Self::UnescapedUnicode => JsonFlags::UNESCAPED_UNICODE,
            Self::PartialOutputOnError => JsonFlags::PARTIAL_OUTPUT_ON_ERROR,
            Self::PreserveZeroFraction => JsonFlags::PRESERVE_ZERO_FRACTION,
            Self::UnescapedLineTerminators => JsonFlags::UNESCAPED_LINE_TERMINATORS,
            Self::InvalidUtf8Ignore => JsonFlags::INVALID_UTF8_IGNORE,
            Self::InvalidUtf8Substitute => JsonFlags::INVALID_UTF8_SUBSTITUTE,
        }
    }
}

impl FromIterator<JsonFlag> for JsonFlags {
    fn from_iter<T: IntoIterator<Item = JsonFlag>>(iter: T) -> Self {
        iter.into_iter()
            .fold(JsonFlags::NONE, |acc, f| acc | f.flags())
    }
}

/// The plugin's default depth.
pub const DEFAULT_DEPTH: u32 = 16;

// Byte classes of the escape table.
const COPY: u8 = 0;
const ASCII_SPECIAL: u8 = 1;
const NON_ASCII: u8 = 2;

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";

/// `json_encode($value, $flags, $depth)`.
#[derive(Clone, Debug)]
pub struct JsonSerializer {
    flags: JsonFlags,
    depth: u32,
    table: [u8; 256],
    // A code point escaped whatever the flags say: NDJSON's terminator.
    force_escape: Option<u32>,
}

impl JsonSerializer {
    /// A serializer with these flags and depth (which must be > 0: PHP would
    /// accept 0 and then fail on every array).
    pub fn new(flags: JsonFlags, depth: u32) -> Result<Self, FormatError> {
        if depth == 0 {
            return Err(FormatError::spec(
                ComponentKind::Serializer,
                "json",
                "depth must be greater than zero",
            ));
        }
        Ok(Self::build(flags, depth, None))
    }

    /// The plugin's defaults: [`JsonFlags::PLUGIN_DEFAULT`], depth 16.
    pub fn plugin_default() -> Self {
        Self::build(JsonFlags::PLUGIN_DEFAULT, DEFAULT_DEPTH, None)
    }

    fn build(flags: JsonFlags, depth: u32, force_escape: Option<u32>) -> Self {
        let mut table = [COPY; 256];
        for (b, class) in table.iter_mut().enumerate() {
            *class = match b as u8 {
                0x80..=0xFF => NON_ASCII,
                0x00..=0x1F | b'"' | b'\\' => ASCII_SPECIAL,
                b'/' if !flags.contains(JsonFlags::UNESCAPED_SLASHES) => ASCII_SPECIAL,
                b'<' | b'>' if flags.contains(JsonFlags::HEX_TAG) => ASCII_SPECIAL,
                b'&' if flags.contains(JsonFlags::HEX_AMP) => ASCII_SPECIAL,
                b'\'' if flags.contains(JsonFlags::HEX_APOS) => ASCII_SPECIAL,
                _ => COPY,
            };
        }
        Self {
            flags,
            depth,
            table,
            force_escape,
        }
    }

    /// The flags.
    pub fn flags(&self) -> JsonFlags {
        self.flags
    }

    /// The depth limit.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Appends the JSON text of `value` to `out`.
    ///
    /// On an error without `partial_output_on_error`, `out` is left as it
    /// was and the error is returned (PHP returns `false`). With it, the
    /// output is kept and a [`Warning::JsonPartialOutput`] is pushed.
    pub fn write(
        &self,
        value: ValueRef<'_>,
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        let start = out.len();
        let mut enc = Enc {
            s: self,
            out,
            depth: 0,
            error: None,
        };
        let res = enc.node(value);
        let error = enc.error;
        match (res, error) {
            (Ok(()), None) => Ok(()),
            (_, Some(kind)) | (Err(kind), None) => {
                if self.flags.contains(JsonFlags::PARTIAL_OUTPUT_ON_ERROR) {
                    warnings.push(Warning::JsonPartialOutput(kind));
                    Ok(())
                } else {
                    out.truncate(start);
                    Err(FormatError::Json(kind))
                }
            }
        }
    }

    /// Appends `s` as a JSON string (never numeric-checked). Used by records
    /// that write their own envelope.
    pub(crate) fn write_str(&self, s: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
        let mut enc = Enc {
            s: self,
            out,
            depth: 0,
            error: None,
        };
        match enc.string(s, false) {
            Ok(false) => Ok(()),
            Ok(true) | Err(_) => Err(FormatError::Json(JsonErrorKind::Utf8)),
        }
    }
}

impl Serializer for JsonSerializer {
    fn serialize_into(
        &self,
        value: ValueRef<'_>,
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        self.write(value, out, warnings)
    }

    fn content_type(&self) -> &str {
        "application/json"
    }
}

#[derive(Clone, Copy)]
enum KeyRef<'a> {
    Int(i64),
    Str(&'a [u8]),
}

struct Enc<'a> {
    s: &'a JsonSerializer,
    out: &'a mut Vec<u8>,
    depth: u32,
    // Last error seen, as PHP's encoder->error_code (later errors win).
    error: Option<JsonErrorKind>,
}

impl Enc<'_> {
    fn has(&self, f: JsonFlags) -> bool {
        self.s.flags.contains(f)
    }

    /// Records an error that aborts the encoding unless partial output is on.
    fn fail(&mut self, kind: JsonErrorKind) -> Result<(), JsonErrorKind> {
        self.error = Some(kind);
        if self.has(JsonFlags::PARTIAL_OUTPUT_ON_ERROR) {
            Ok(())
        } else {
            Err(kind)
        }
    }

    fn node(&mut self, node: ValueRef<'_>) -> Result<(), JsonErrorKind> {
        match node {
            ValueRef::Value(v) => self.value(v),
            ValueRef::Bytes(b) => self.string(b, true).map(drop),
            ValueRef::Fields(fields) => self.container(
                fields.is_empty(),
                fields.iter().map(|(k, v)| (KeyRef::Str(k.as_bytes()), *v)),
            ),
        }
    }

    fn value(&mut self, v: &Value) -> Result<(), JsonErrorKind> {
        match v {
            Value::Null => self.out.extend_from_slice(b"null"),
            Value::Bool(true) => self.out.extend_from_slice(b"true"),
            Value::Bool(false) => self.out.extend_from_slice(b"false"),
            Value::Int(i) => self.int(*i),
            Value::Float(f) => self.double(*f),
            Value::String(s) => {
                self.string(s, true)?;
            }
            Value::Array(a) => {
                return self.container(
                    a.is_list(),
                    a.iter().map(|(k, v)| {
                        let k = match k {
                            Key::Int(i) => KeyRef::Int(*i),
                            Key::Str(s) => KeyRef::Str(s),
                        };
                        (k, ValueRef::Value(v))
                    }),
                );
            }
        }
        Ok(())
    }

    fn int(&mut self, i: i64) {
        let mut b = itoa::Buffer::new();
        self.out.extend_from_slice(b.format(i).as_bytes());
    }

    fn double(&mut self, f: f64) {
        if f.is_finite() {
            php::write_json_double(self.out, f, self.has(JsonFlags::PRESERVE_ZERO_FRACTION));
        } else {
            // PHP writes `0`, remembers the error and carries on; json_encode
            // then returns false unless partial output is on.
            self.error = Some(JsonErrorKind::InfOrNan);
            self.out.push(b'0');
        }
    }

    fn newline_indent(&mut self) {
        if self.has(JsonFlags::PRETTY_PRINT) {
            self.out.push(b'\n');
            for _ in 0..self.depth {
                self.out.extend_from_slice(b"    ");
            }
        }
    }

    fn container<'b>(
        &mut self,
        is_list: bool,
        items: impl Iterator<Item = (KeyRef<'b>, ValueRef<'b>)>,
    ) -> Result<(), JsonErrorKind> {
        let object = !is_list || self.has(JsonFlags::FORCE_OBJECT);
        self.out.push(if object { b'{' } else { b'[' });
        self.depth += 1;
        let mut need_comma = false;
        for (key, value) in items {
            if need_comma {
                self.out.push(b',');
            } else {
                need_comma = true;
            }
            self.newline_indent();
            if object {
                match key {
                    KeyRef::Int(i) => {
                        self.out.push(b'"');
                        self.int(i);
                        self.out.push(b'"');
                    }
                    KeyRef::Str(k) => match self.string(k, false) {
                        Ok(false) => {}
                        // PHP swaps the `null` of a bad key for `""`.
                        Ok(true) => {
                            let len = self.out.len().saturating_sub(4);
                            self.out.truncate(len);
                            self.out.extend_from_slice(b"\"\"");
                        }
                        // A bad key does not stop PHP's loop; the error is
                        // remembered and reported at the end.
                        Err(_) => {}
                    },
                }
                self.out.push(b':');
                if self.has(JsonFlags::PRETTY_PRINT) {
                    self.out.push(b' ');
                }
            }
            self.node(value)?;
        }
        // PHP checks the depth after the children, so a child's error is
        // the one reported when both happen.
        if self.depth > self.s.depth {
            self.fail(JsonErrorKind::Depth)?;
        }
        self.depth -= 1;
        if need_comma {
            self.newline_indent();
        }
        self.out.push(if object { b'}' } else { b']' });
        Ok(())
    }

    fn unicode_escape(&mut self, unit: u32) {
        self.out.extend_from_slice(b"\\u");
        for shift in [12, 8, 4, 0] {
            self.out.push(HEX_LOWER[((unit >> shift) & 0xF) as usize]);
        }
    }

    /// Writes a string; `Ok(true)` when it was replaced by `null` (partial
    /// output on malformed UTF-8).
    fn string(&mut self, s: &[u8], numeric: bool) -> Result<bool, JsonErrorKind> {
        if s.is_empty() {
            self.out.extend_from_slice(b"\"\"");
            return Ok(false);
        }
        if numeric && self.has(JsonFlags::NUMERIC_CHECK) {
            match php::numeric_string(s) {
                Some(Numeric::Int(i)) => {
                    self.int(i);
                    return Ok(false);
                }
                // An overflowing float ("1e400") stays a string, no error.
                Some(Numeric::Float(f)) if f.is_finite() => {
                    self.double(f);
                    return Ok(false);
                }
                _ => {}
            }
        }
        let checkpoint = self.out.len();
        self.out.reserve(s.len() + 2);
        self.out.push(b'"');
        let table = &self.s.table;
        let mut run = 0;
        let mut i = 0;
        while i < s.len() {
            let class = table[s[i] as usize];
            if class == COPY {
                i += 1;
                continue;
            }
            self.out.extend_from_slice(&s[run..i]);
            if class == ASCII_SPECIAL {
                self.ascii_escape(s[i]);
                i += 1;
            } else {
                match php::next_utf8(&s[i..]) {
                    Ok((cp, len)) => {
                        let raw = self.s.force_escape != Some(cp)
                            && self.has(JsonFlags::UNESCAPED_UNICODE)
                            && (self.has(JsonFlags::UNESCAPED_LINE_TERMINATORS)
                                || !(0x2028..=0x2029).contains(&cp));
                        if raw {
                            self.out.extend_from_slice(&s[i..i + len]);
                        } else if cp >= 0x10000 {
                            let v = cp - 0x10000;
                            self.unicode_escape(0xD800 | (v >> 10));
                            self.unicode_escape(0xDC00 | (v & 0x3FF));
                        } else {
                            self.unicode_escape(cp);
                        }
                        i += len;
                    }
                    Err(skip) => {
                        if self.has(JsonFlags::INVALID_UTF8_IGNORE) {
                            // dropped
                        } else if self.has(JsonFlags::INVALID_UTF8_SUBSTITUTE) {
                            if self.has(JsonFlags::UNESCAPED_UNICODE) {
                                self.out.extend_from_slice("\u{FFFD}".as_bytes());
                            } else {
                                self.out.extend_from_slice(b"\\ufffd");
                            }
                        } else {
                            self.out.truncate(checkpoint);
                            self.error = Some(JsonErrorKind::Utf8);
                            if self.has(JsonFlags::PARTIAL_OUTPUT_ON_ERROR) {
                                self.out.extend_from_slice(b"null");
                                return Ok(true);
                            }
                            return Err(JsonErrorKind::Utf8);
                        }
                        i += skip.max(1);
                    }
                }
            }
            run = i;
        }
        self.out.extend_from_slice(&s[run..]);
        self.out.push(b'"');
        Ok(false)
    }

    fn ascii_escape(&mut self, b: u8) {
        let f = self.s.flags;
        let text: &[u8] = match b {
            b'"' if f.contains(JsonFlags::HEX_QUOT) => b"\\u0022",
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'/' => b"\\/",
            0x08 => b"\\b",
            0x0C => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            b'<' => b"\\u003C",
            b'>' => b"\\u003E",
            b'&' => b"\\u0026",
            b'\'' => b"\\u0027",
            _ => {
                self.out.extend_from_slice(b"\\u00");
                self.out.push(HEX_LOWER[usize::from(b >> 4)]);
                self.out.push(HEX_LOWER[usize::from(b & 0xF)]);
                return;
            }
        };
        self.out.extend_from_slice(text);
    }
}

/// The record terminator of the `ndjson` serializer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Terminator {
    /// `\0`.
    Nul,
    /// `\n` (the plugin's default, `PHP_EOL`).
    #[default]
    Lf,
    /// U+0085 NEXT LINE (`C2 85`).
    Nel,
    /// U+2028 LINE SEPARATOR (`E2 80 A8`).
    Ls,
    /// U+2029 PARAGRAPH SEPARATOR (`E2 80 A9`).
    Ps,
    /// `\r\n`.
    Crlf,
}

impl Terminator {
    /// The bytes appended after each record.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::Nul => b"\0",
            Self::Lf => b"\n",
            Self::Nel => "\u{85}".as_bytes(),
            Self::Ls => "\u{2028}".as_bytes(),
            Self::Ps => "\u{2029}".as_bytes(),
            Self::Crlf => b"\r\n",
        }
    }

    /// The code point the JSON writer must always escape so the terminator
    /// never occurs inside a record. NUL, LF and CR are always escaped by
    /// JSON itself.
    fn forced_escape(self) -> Option<u32> {
        match self {
            Self::Nel => Some(0x85),
            Self::Ls => Some(0x2028),
            Self::Ps => Some(0x2029),
            Self::Nul | Self::Lf | Self::Crlf => None,
        }
    }
}

/// `json_encode` followed by a terminator, with one deliberate difference
/// from the plugin: the terminator character is always escaped inside
/// strings (`\u0085`, `\u2028`, `\u2029`), even when `unescaped_unicode`
/// (and `unescaped_line_terminators`) would leave it raw. PHP would write it
/// raw and a reader splitting on the terminator would cut the record in two.
/// Everywhere else the bytes are PHP's.
#[derive(Clone, Debug)]
pub struct NdjsonSerializer {
    json: JsonSerializer,
    terminator: Terminator,
}

impl NdjsonSerializer {
    /// A serializer with these JSON options and terminator. `pretty_print`
    /// is refused with `lf` and `crlf`: it puts line feeds inside records.
    pub fn new(flags: JsonFlags, depth: u32, terminator: Terminator) -> Result<Self, FormatError> {
        if depth == 0 {
            return Err(FormatError::spec(
                ComponentKind::Serializer,
                "ndjson",
                "depth must be greater than zero",
            ));
        }
        if flags.contains(JsonFlags::PRETTY_PRINT)
            && matches!(terminator, Terminator::Lf | Terminator::Crlf)
        {
            return Err(FormatError::spec(
                ComponentKind::Serializer,
                "ndjson",
                "pretty_print writes line feeds inside a record, so it cannot be used with the lf or crlf terminator",
            ));
        }
        Ok(Self {
            json: JsonSerializer::build(flags, depth, terminator.forced_escape()),
            terminator,
        })
    }

    /// The terminator.
    pub fn terminator(&self) -> Terminator {
        self.terminator
    }

    /// Whether PHP's output for these flags could contain the terminator
    /// inside a record, i.e. where deskbus's bytes differ from the plugin's.
    pub fn differs_from_php(flags: JsonFlags, terminator: Terminator) -> bool {
        let uu = flags.contains(JsonFlags::UNESCAPED_UNICODE);
        match terminator {
            Terminator::Nel => uu,
            Terminator::Ls | Terminator::Ps => {
                uu && flags.contains(JsonFlags::UNESCAPED_LINE_TERMINATORS)
            }
            Terminator::Nul | Terminator::Lf | Terminator::Crlf => false,
        }
    }
}

impl Serializer for NdjsonSerializer {
    fn serialize_into(
        &self,
        value: ValueRef<'_>,
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        // Nothing is appended on error, as in the plugin.
        self.json.write(value, out, warnings)?;
        out.extend_from_slice(self.terminator.as_bytes());
        Ok(())
    }

    fn content_type(&self) -> &str {
        "application/x-ndjson"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::PhpArray;

    fn enc(flags: JsonFlags, v: &Value) -> Result<String, FormatError> {
        let mut out = Vec::new();
        let mut w = Vec::new();
        JsonSerializer::new(flags, 512)?.write(ValueRef::Value(v), &mut out, &mut w)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn escapes_like_php_by_default() {
        let v = Value::from("a/\"\\\u{1b}\u{7f}é🔥\u{2028}<&'>");
        assert_eq!(
            enc(JsonFlags::NONE, &v).expect("valid"),
            r#""a\/\"\\\u001b\u007f\u00e9\ud83d\udd25\u2028<&'>""#.replace("\\u007f", "\u{7f}")
        );
    }

    #[test]
    fn hex_flags_use_upper_case_for_tags() {
        let v = Value::from("<&'\">");
        let flags =
            JsonFlags::HEX_TAG | JsonFlags::HEX_AMP | JsonFlags::HEX_APOS | JsonFlags::HEX_QUOT;
        assert_eq!(
            enc(flags, &v).expect("valid"),
            r#""\u003C\u0026\u0027\u0022\u003E""#
        );
    }

    #[test]
    fn depth_error_discards_output_unless_partial() {
        let mut inner = PhpArray::new();
        inner.push(1i64);
        let mut outer = PhpArray::new();
        outer.push(Value::Array(inner));
        let v = Value::Array(outer);
        let s = JsonSerializer::new(JsonFlags::NONE, 1).expect("depth > 0");
        let mut out = b"keep".to_vec();
        let err = s.write(ValueRef::Value(&v), &mut out, &mut Vec::new());
        assert!(matches!(err, Err(FormatError::Json(JsonErrorKind::Depth))));
        assert_eq!(out, b"keep");

        let s = JsonSerializer::new(JsonFlags::PARTIAL_OUTPUT_ON_ERROR, 1).expect("depth > 0");
        let mut out = Vec::new();
        let mut w = Vec::new();
        s.write(ValueRef::Value(&v), &mut out, &mut w)
            .expect("partial");
        assert_eq!(out, b"[[1]]");
        assert_eq!(w, vec![Warning::JsonPartialOutput(JsonErrorKind::Depth)]);
    }

    #[test]
    fn zero_depth_is_refused() {
        assert!(JsonSerializer::new(JsonFlags::NONE, 0).is_err());
    }

    #[test]
    fn pretty_print_layout() {
        let v: Value = [("a", Value::Int(1)), ("b", Value::Array(PhpArray::new()))]
            .into_iter()
            .collect();
        assert_eq!(
            enc(JsonFlags::PRETTY_PRINT, &v).expect("valid"),
            "{\n    \"a\": 1,\n    \"b\": []\n}"
        );
    }

    #[test]
    fn ndjson_escapes_its_terminator_only() {
        let v: Value = [("s", "a\u{85}b\u{2028}c")].into_iter().collect();
        let flags = JsonFlags::UNESCAPED_UNICODE | JsonFlags::UNESCAPED_LINE_TERMINATORS;
        let s = NdjsonSerializer::new(flags, 16, Terminator::Nel).expect("valid");
        let mut out = Vec::new();
        s.serialize_into(ValueRef::Value(&v), &mut out, &mut Vec::new())
            .expect("valid");
        assert_eq!(out, "{\"s\":\"a\\u0085b\u{2028}c\"}\u{85}".as_bytes());
    }

    #[test]
    fn ndjson_refuses_pretty_print_with_line_feeds() {
        assert!(NdjsonSerializer::new(JsonFlags::PRETTY_PRINT, 16, Terminator::Lf).is_err());
        assert!(NdjsonSerializer::new(JsonFlags::PRETTY_PRINT, 16, Terminator::Nul).is_ok());
    }
}
