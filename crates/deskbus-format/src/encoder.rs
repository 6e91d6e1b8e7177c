//! Encoders: `utf8` (charset conversion), `base16`, `base64`.

use base64::Engine as _;
use base64::engine::Config as _;
use encoding_rs::{DecoderResult, Encoding};

use crate::component::Encoder;
use crate::error::{ComponentKind, FormatError, Warning};

/// What the utf8 encoder does with bytes that are not valid in the source
/// charset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidPolicy {
    /// Write `?` per malformed sequence, as `mb_convert_encoding` does.
    #[default]
    Replace,
    /// Fail with [`FormatError::InvalidInput`].
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Utf8,
    // PHP's ISO-8859-1 maps every byte to U+00XX. WHATWG (and so
    // encoding_rs) treats the label as windows-1252, which would turn 0x80
    // into € instead of U+0080; golden `encoder/utf8_from_ISO-8859-1/*`.
    Latin1,
    Other(&'static Encoding),
}

/// `mb_convert_encoding($s, 'UTF-8', $source_charset)`.
#[derive(Clone, Debug)]
pub struct Utf8Encoder {
    source: Source,
    name: &'static str,
    invalid: InvalidPolicy,
}

const LATIN1_LABELS: &[&str] = &[
    "iso-8859-1",
    "iso8859-1",
    "iso_8859-1",
    "iso88591",
    "latin1",
    "l1",
    "iso-ir-100",
    "iso_8859-1:1987",
    "cp819",
    "ibm819",
    "csisolatin1",
];

impl Utf8Encoder {
    /// An encoder from `source_charset` (any WHATWG label, e.g. `UTF-8`,
    /// `ISO-8859-1`, `Windows-1252`, `Shift_JIS`; case-insensitive).
    pub fn new(source_charset: &str, invalid: InvalidPolicy) -> Result<Self, FormatError> {
        let label = source_charset.trim();
        let source = if LATIN1_LABELS.iter().any(|l| l.eq_ignore_ascii_case(label)) {
            Source::Latin1
        } else {
            match Encoding::for_label(label.as_bytes()) {
                Some(e) if e == encoding_rs::UTF_8 => Source::Utf8,
                // The replacement and UTF-16 "encodings" cannot describe a
                // byte string read from a database column.
                Some(e)
                    if e == encoding_rs::REPLACEMENT
                        || e == encoding_rs::UTF_16BE
                        || e == encoding_rs::UTF_16LE =>
                {
                    return Err(unsupported(label));
                }
                Some(e) => Source::Other(e),
                None => return Err(unsupported(label)),
            }
        };
        let name = match source {
            Source::Utf8 => "UTF-8",
            Source::Latin1 => "ISO-8859-1",
            Source::Other(e) => e.name(),
        };
        Ok(Self {
            source,
            name,
            invalid,
        })
    }

    /// The plugin's default: UTF-8 to UTF-8, replacing malformed bytes.
    pub fn plugin_default() -> Self {
        Self {
            source: Source::Utf8,
            name: "UTF-8",
            invalid: InvalidPolicy::Replace,
        }
    }

    /// The canonical name of the source charset.
    pub fn source_charset(&self) -> &'static str {
        self.name
    }

    fn convert_utf8(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        // Fast path: valid input is copied as is.
        if std::str::from_utf8(input).is_ok() {
            out.extend_from_slice(input);
            return Ok(());
        }
        let start = out.len();
        let mut replaced = 0;
        // `Utf8Chunks` splits at Unicode's "maximal subparts", which is what
        // mbstring replaces with one `?` each (`F0 9F 94` → one, `ED A0 80`
        // → three).
        for chunk in input.utf8_chunks() {
            out.extend_from_slice(chunk.valid().as_bytes());
            if !chunk.invalid().is_empty() {
                if self.invalid == InvalidPolicy::Error {
                    let offset = out.len() - start;
                    out.truncate(start);
                    return Err(FormatError::InvalidInput {
                        charset: self.name,
                        offset,
                    });
                }
                out.push(b'?');
                replaced += 1;
            }
        }
        warnings.push(Warning::InvalidInputReplaced { count: replaced });
        Ok(())
    }

    fn convert_other(
        &self,
        enc: &'static Encoding,
        input: &[u8],
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        let start = out.len();
        let mut decoder = enc.new_decoder_without_bom_handling();
        let mut replaced = 0;
        let mut read_total = 0;
        loop {
            let needed = decoder
                .max_utf8_buffer_length_without_replacement(input.len() - read_total)
                .unwrap_or(input.len() * 3 + 16);
            let len = out.len();
            out.resize(len + needed.max(4), 0);
            let (result, read, written) = decoder.decode_to_utf8_without_replacement(
                &input[read_total..],
                &mut out[len..],
                true,
            );
            out.truncate(len + written);
            read_total += read;
            match result {
                DecoderResult::InputEmpty => break,
                DecoderResult::OutputFull => continue,
                DecoderResult::Malformed(bad, extra) => {
                    if self.invalid == InvalidPolicy::Error {
                        out.truncate(start);
                        return Err(FormatError::InvalidInput {
                            charset: self.name,
                            offset: read_total
                                .saturating_sub(usize::from(bad) + usize::from(extra)),
                        });
                    }
                    out.push(b'?');
                    replaced += 1;
                }
            }
        }
        if replaced > 0 {
            warnings.push(Warning::InvalidInputReplaced { count: replaced });
        }
        Ok(())
    }
}

fn unsupported(label: &str) -> FormatError {
    FormatError::spec(
        ComponentKind::Encoder,
        "utf8",
        format!("unknown or unsupported source charset `{label}`"),
    )
}

impl Encoder for Utf8Encoder {
    fn encode_into(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        match self.source {
            Source::Utf8 => self.convert_utf8(input, out, warnings),
            Source::Latin1 => {
                let len = out.len();
                out.resize(len + input.len() * 2, 0);
                let written = encoding_rs::mem::convert_latin1_to_utf8(input, &mut out[len..]);
                out.truncate(len + written);
                Ok(())
            }
            Source::Other(enc) => self.convert_other(enc, input, out, warnings),
        }
    }

    fn content_type<'a>(&'a self, input: &'a str) -> &'a str {
        input
    }
}

/// `bin2hex`: two hex digits per byte, high nibble first.
#[derive(Clone, Copy, Debug, Default)]
pub struct Base16Encoder {
    uppercase: bool,
}

impl Base16Encoder {
    /// Lower case (PHP's) unless `uppercase`.
    pub fn new(uppercase: bool) -> Self {
        Self { uppercase }
    }
}

impl Encoder for Base16Encoder {
    fn encode_into(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        _: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        let digits: &[u8; 16] = if self.uppercase {
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        out.reserve(input.len() * 2);
        for &b in input {
            out.push(digits[usize::from(b >> 4)]);
            out.push(digits[usize::from(b & 0xF)]);
        }
        Ok(())
    }

    fn content_type<'a>(&'a self, _: &'a str) -> &'a str {
        "text/plain"
    }
}

/// `base64_encode`: RFC 4648 standard alphabet with padding by default.
#[derive(Clone, Copy, Debug)]
pub struct Base64Encoder {
    engine: &'static base64::engine::GeneralPurpose,
}

impl Default for Base64Encoder {
    fn default() -> Self {
        Self::new(false, false)
    }
}

impl Base64Encoder {
    /// Standard alphabet unless `url_safe` (`-` `_`), `=` padding unless
    /// `no_pad`.
    pub fn new(url_safe: bool, no_pad: bool) -> Self {
        use base64::engine::general_purpose as gp;
        let engine = match (url_safe, no_pad) {
            (false, false) => &gp::STANDARD,
            (false, true) => &gp::STANDARD_NO_PAD,
            (true, false) => &gp::URL_SAFE,
            (true, true) => &gp::URL_SAFE_NO_PAD,
        };
        Self { engine }
    }

    /// Appends the encoding of `input` to `out` without going through the
    /// trait (no warnings possible).
    pub fn append(&self, input: &[u8], out: &mut Vec<u8>) {
        let len = out.len();
        let Some(n) = base64::encoded_len(input.len(), self.engine.config().encode_padding())
        else {
            // Only reachable for inputs near usize::MAX, which cannot exist.
            return;
        };
        out.resize(len + n, 0);
        let written = self
            .engine
            .encode_slice(input, &mut out[len..])
            .unwrap_or(0);
        out.truncate(len + written);
    }
}

impl Encoder for Base64Encoder {
    fn encode_into(
        &self,
        input: &[u8],
        out: &mut Vec<u8>,
        _: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        self.append(input, out);
        Ok(())
    }

    fn content_type<'a>(&'a self, _: &'a str) -> &'a str {
        "text/plain"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(e: &dyn Encoder, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        e.encode_into(input, &mut out, &mut Vec::new())
            .expect("encodes");
        out
    }

    #[test]
    fn utf8_replacement_counts_like_mbstring() {
        let e = Utf8Encoder::plugin_default();
        assert_eq!(run(&e, b"\xE9t\xE9"), b"?t?");
        assert_eq!(run(&e, b"\xF0\x9F\x94"), b"?");
        assert_eq!(run(&e, b"\xED\xA0\x80"), b"???");
    }

    #[test]
    fn utf8_error_policy_reports_offset() {
        let e = Utf8Encoder::new("utf-8", InvalidPolicy::Error).expect("label");
        let mut out = b"x".to_vec();
        let err = e.encode_into(b"ok\xC3(", &mut out, &mut Vec::new());
        assert!(matches!(
            err,
            Err(FormatError::InvalidInput { offset: 2, .. })
        ));
        assert_eq!(out, b"x");
    }

    #[test]
    fn latin1_is_not_windows_1252() {
        let l1 = Utf8Encoder::new("ISO-8859-1", InvalidPolicy::Replace).expect("label");
        let w = Utf8Encoder::new("Windows-1252", InvalidPolicy::Replace).expect("label");
        assert_eq!(run(&l1, b"\x80"), "\u{80}".as_bytes());
        assert_eq!(run(&w, b"\x80"), "€".as_bytes());
        assert_eq!(run(&w, b"\x81"), "\u{81}".as_bytes());
    }

    #[test]
    fn shift_jis_and_unknown_labels() {
        let sj = Utf8Encoder::new("Shift_JIS", InvalidPolicy::Replace).expect("label");
        assert_eq!(run(&sj, b"\x82\xa0"), "あ".as_bytes());
        assert_eq!(run(&sj, b"a\x82"), b"a?");
        assert!(Utf8Encoder::new("klingon", InvalidPolicy::Replace).is_err());
    }

    #[test]
    fn base16_and_base64_options() {
        assert_eq!(run(&Base16Encoder::new(false), b"\xff\x00"), b"ff00");
        assert_eq!(run(&Base16Encoder::new(true), b"\xff\x00"), b"FF00");
        assert_eq!(run(&Base64Encoder::default(), b"a"), b"YQ==");
        assert_eq!(run(&Base64Encoder::new(true, true), b"\xfb\xff"), b"-_8");
        assert_eq!(run(&Base64Encoder::new(false, true), b"\xfb\xff"), b"+/8");
    }
}
