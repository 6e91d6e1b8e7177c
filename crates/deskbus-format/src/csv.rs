//! `csv` serializer: PHP's `fputcsv` (mode `php`) or strict RFC 4180 (mode
//! `rfc4180`), plus a [`CsvWriter`] that streams many rows into any
//! [`std::io::Write`].

use crate::component::Serializer;
use crate::error::{ComponentKind, FormatError, Warning};
use crate::php;
use crate::value::{Key, Value, ValueRef};

/// How fields are quoted and values turned into text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CsvMode {
    /// Byte-equal to PHP 8.2's `fputcsv`: a field is enclosed when it holds
    /// the separator, the enclosure, the escape character, `\n`, `\r`, `\t`
    /// or a space; an enclosure right after the escape character is not
    /// doubled (so the output is not RFC 4180 when an escape is set); floats
    /// have 14 significant digits; a nested array is the text `Array` (with a
    /// [`Warning::ArrayToString`]).
    #[default]
    Php,
    /// RFC 4180: enclosed when the field holds the separator, the enclosure,
    /// `\r` or `\n`; enclosures doubled, no escape character; floats keep
    /// all their digits; nested arrays are written as JSON in the cell.
    Rfc4180,
}

/// The row terminator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineEnding {
    /// `\n` (what the plugin writes).
    #[default]
    Lf,
    /// `\r\n` (RFC 4180's).
    Crlf,
}

/// The plugin's default `memory` (2 MiB).
pub const DEFAULT_MEMORY: usize = 2 * 1024 * 1024;

/// Options of the CSV serializer, already validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field separator (one byte).
    pub separator: u8,
    /// Field enclosure (one byte).
    pub enclosure: u8,
    /// Escape byte; `None` disables escaping (always `None` in rfc4180 mode).
    pub escape: Option<u8>,
    /// Bytes [`CsvWriter`] keeps before handing them to its writer. In the
    /// plugin it is where `php://temp` spills to a file; it never changes
    /// the output.
    pub memory: usize,
    /// Write the tuple's keys as a header row first.
    pub header: bool,
    /// Row terminator.
    pub line_ending: LineEnding,
    /// Quoting and conversion rules.
    pub mode: CsvMode,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            separator: b',',
            enclosure: b'"',
            escape: Some(b'\\'),
            memory: DEFAULT_MEMORY,
            header: false,
            line_ending: LineEnding::Lf,
            mode: CsvMode::Php,
        }
    }
}

/// Serializes a tuple as one CSV row (preceded by a header row if asked).
#[derive(Clone, Debug)]
pub struct CsvSerializer {
    opts: CsvOptions,
    // Bytes that force a field to be enclosed.
    needs_enclosure: [bool; 256],
    json: crate::json::JsonSerializer,
}

impl CsvSerializer {
    /// A serializer with these options.
    pub fn new(opts: CsvOptions) -> Result<Self, FormatError> {
        let bad = |reason: &str| Err(FormatError::spec(ComponentKind::Serializer, "csv", reason));
        if opts.mode == CsvMode::Rfc4180 && opts.escape.is_some() {
            return bad("rfc4180 mode has no escape character; leave `escape` empty");
        }
        if opts.separator == opts.enclosure {
            return bad("separator and enclosure must differ");
        }
        if matches!(opts.separator, b'\n' | b'\r') || matches!(opts.enclosure, b'\n' | b'\r') {
            return bad("separator and enclosure cannot be a line break");
        }
        if opts.memory == 0 {
            return bad("memory must be greater than zero");
        }
        let mut needs_enclosure = [false; 256];
        let mut forced = vec![opts.separator, opts.enclosure, b'\n', b'\r'];
        if opts.mode == CsvMode::Php {
            forced.extend([b'\t', b' ']);
            forced.extend(opts.escape);
        }
        for b in forced {
            needs_enclosure[usize::from(b)] = true;
        }
        // Nested values in rfc4180 mode: compact, readable JSON.
        let json = crate::json::JsonSerializer::new(
            crate::json::JsonFlags::UNESCAPED_UNICODE
                | crate::json::JsonFlags::UNESCAPED_SLASHES
                | crate::json::JsonFlags::PRESERVE_ZERO_FRACTION,
            512,
        )?;
        Ok(Self {
            opts,
            needs_enclosure,
            json,
        })
    }

    /// The options.
    pub fn options(&self) -> &CsvOptions {
        &self.opts
    }

    fn eol(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.opts.line_ending {
            LineEnding::Lf => b"\n",
            LineEnding::Crlf => b"\r\n",
        });
    }

    /// Appends the header row: the tuple's keys (integers in decimal).
    pub fn write_header(&self, tuple: ValueRef<'_>, out: &mut Vec<u8>) {
        let mut first = true;
        let mut cell = |out: &mut Vec<u8>, bytes: &[u8]| {
            if !first {
                out.push(self.opts.separator);
            }
            first = false;
            self.field(bytes, out);
        };
        match tuple {
            ValueRef::Value(Value::Array(a)) => {
                for (k, _) in a.iter() {
                    match k {
                        Key::Int(i) => cell(out, itoa::Buffer::new().format(*i).as_bytes()),
                        Key::Str(s) => cell(out, s),
                    }
                }
            }
            ValueRef::Fields(fields) => {
                for (k, _) in fields {
                    cell(out, k.as_bytes());
                }
            }
            _ => cell(out, b"0"),
        }
        self.row_end(out);
    }

    /// Appends one data row.
    pub fn write_row(
        &self,
        tuple: ValueRef<'_>,
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        let start = out.len();
        let mut scratch = Vec::new();
        let mut count = 0;
        let mut res = Ok(());
        let mut each = |out: &mut Vec<u8>, v: ValueRef<'_>, res: &mut Result<(), FormatError>| {
            if count > 0 {
                out.push(self.opts.separator);
            }
            count += 1;
            if res.is_ok() {
                *res = self.cell(v, out, &mut scratch, warnings);
            }
        };
        match tuple {
            ValueRef::Value(Value::Array(a)) => {
                for (_, v) in a.iter() {
                    each(out, ValueRef::Value(v), &mut res);
                }
            }
            ValueRef::Fields(fields) => {
                for (_, v) in fields {
                    each(out, *v, &mut res);
                }
            }
            // fputcsv needs an array; a scalar is treated as a one-field row.
            other => each(out, other, &mut res),
        }
        if let Err(e) = res {
            out.truncate(start);
            return Err(e);
        }
        self.row_end(out);
        Ok(())
    }

    fn row_end(&self, out: &mut Vec<u8>) {
        self.eol(out);
    }

    fn cell(
        &self,
        v: ValueRef<'_>,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        let php = self.opts.mode == CsvMode::Php;
        let text: &[u8] = match v {
            ValueRef::Bytes(b) => b,
            ValueRef::Value(Value::String(b)) => b,
            ValueRef::Value(Value::Null | Value::Bool(false)) => b"",
            ValueRef::Value(Value::Bool(true)) => b"1",
            ValueRef::Value(Value::Int(i)) => {
                // Digits and '-' never need enclosing.
                out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes());
                return Ok(());
            }
            ValueRef::Value(Value::Float(f)) => {
                scratch.clear();
                if php {
                    php::write_string_double(scratch, *f);
                } else {
                    php::write_shortest_double(scratch, *f);
                }
                out.extend_from_slice(scratch);
                return Ok(());
            }
            ValueRef::Value(Value::Array(_)) | ValueRef::Fields(_) => {
                if php {
                    warnings.push(Warning::ArrayToString);
                    b"Array"
                } else {
                    scratch.clear();
                    self.json.write(v, scratch, warnings)?;
                    let json = std::mem::take(scratch);
                    self.field(&json, out);
                    *scratch = json;
                    return Ok(());
                }
            }
        };
        self.field(text, out);
        Ok(())
    }

    /// Appends one field, enclosed if needed.
    fn field(&self, text: &[u8], out: &mut Vec<u8>) {
        if !text.iter().any(|&b| self.needs_enclosure[usize::from(b)]) {
            out.extend_from_slice(text);
            return;
        }
        let enc = self.opts.enclosure;
        out.reserve(text.len() + 2);
        out.push(enc);
        match self.opts.escape {
            None => {
                let mut run = 0;
                for (i, &b) in text.iter().enumerate() {
                    if b == enc {
                        out.extend_from_slice(&text[run..=i]);
                        out.push(enc);
                        run = i + 1;
                    }
                }
                out.extend_from_slice(&text[run..]);
            }
            Some(esc) => {
                // fputcsv: after an escape byte the next enclosure is copied
                // once; any other byte ends that state.
                let mut escaped = false;
                for &b in text {
                    if b == esc {
                        escaped = true;
                    } else if !escaped && b == enc {
                        out.push(enc);
                    } else {
                        escaped = false;
                    }
                    out.push(b);
                }
            }
        }
        out.push(enc);
    }
}

impl Serializer for CsvSerializer {
    fn serialize_into(
        &self,
        value: ValueRef<'_>,
        out: &mut Vec<u8>,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), FormatError> {
        let start = out.len();
        if self.opts.header {
            self.write_header(value, out);
        }
        let row_start = out.len();
        if let Err(e) = self.write_row(value, out, warnings) {
            out.truncate(start);
            return Err(e);
        }
        if self.opts.mode == CsvMode::Rfc4180 && out.len() - row_start == self.eol_len() {
            // A row that printed nothing (one empty field, or no field) would
            // read back as an empty line, which RFC 4180 readers skip: write
            // an explicit empty quoted field instead.
            out.truncate(row_start);
            out.extend_from_slice(&[self.opts.enclosure, self.opts.enclosure]);
            self.eol(out);
        }
        Ok(())
    }

    fn content_type(&self) -> &str {
        "text/csv"
    }
}

impl CsvSerializer {
    fn eol_len(&self) -> usize {
        match self.opts.line_ending {
            LineEnding::Lf => 1,
            LineEnding::Crlf => 2,
        }
    }
}

/// Streams rows into a writer, keeping up to `memory` bytes before handing
/// them over (the plugin's `php://temp/maxmemory` buffer, minus the temp
/// file: where the bytes go is the caller's business). The header row, if
/// asked, is written once, from the first tuple's keys.
#[derive(Debug)]
pub struct CsvWriter<W: std::io::Write> {
    ser: CsvSerializer,
    buf: Vec<u8>,
    inner: W,
    header_done: bool,
}

impl<W: std::io::Write> CsvWriter<W> {
    /// A writer using `ser`'s options.
    pub fn new(ser: CsvSerializer, inner: W) -> Self {
        Self {
            buf: Vec::with_capacity(ser.opts.memory.min(64 * 1024)),
            ser,
            inner,
            header_done: false,
        }
    }

    /// Appends one row; returns the warnings it produced.
    pub fn write_tuple(&mut self, tuple: &Value) -> Result<Vec<Warning>, FormatError> {
        let mut warnings = Vec::new();
        if self.ser.opts.header && !self.header_done {
            self.ser.write_header(ValueRef::Value(tuple), &mut self.buf);
            self.header_done = true;
        }
        let row_start = self.buf.len();
        self.ser
            .write_row(ValueRef::Value(tuple), &mut self.buf, &mut warnings)?;
        if self.ser.opts.mode == CsvMode::Rfc4180
            && self.buf.len() - row_start == self.ser.eol_len()
        {
            self.buf.truncate(row_start);
            self.buf
                .extend_from_slice(&[self.ser.opts.enclosure, self.ser.opts.enclosure]);
            self.ser.eol(&mut self.buf);
        }
        if self.buf.len() >= self.ser.opts.memory {
            self.spill()?;
        }
        Ok(warnings)
    }

    fn spill(&mut self) -> Result<(), FormatError> {
        self.inner
            .write_all(&self.buf)
            .map_err(FormatError::Write)?;
        self.buf.clear();
        Ok(())
    }

    /// Hands every buffered byte to the writer and flushes it.
    pub fn flush(&mut self) -> Result<(), FormatError> {
        self.spill()?;
        self.inner.flush().map_err(FormatError::Write)
    }

    /// Flushes and returns the writer.
    pub fn into_inner(mut self) -> Result<W, FormatError> {
        self.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(opts: CsvOptions, v: &Value) -> (String, Vec<Warning>) {
        let s = CsvSerializer::new(opts).expect("valid options");
        let mut out = Vec::new();
        let mut w = Vec::new();
        s.serialize_into(ValueRef::Value(v), &mut out, &mut w)
            .expect("serializes");
        (String::from_utf8_lossy(&out).into_owned(), w)
    }

    fn list(items: &[&str]) -> Value {
        let mut a = crate::PhpArray::new();
        for i in items {
            a.push(*i);
        }
        Value::Array(a)
    }

    #[test]
    fn php_escape_rules() {
        let v = list(&["a\\\"b", "tail\\", "\"\\\"", "plain"]);
        assert_eq!(
            row(CsvOptions::default(), &v).0,
            "\"a\\\"b\",\"tail\\\",\"\"\"\\\"\",plain\n"
        );
        let no_escape = CsvOptions {
            escape: None,
            ..CsvOptions::default()
        };
        assert_eq!(row(no_escape, &list(&["a\\\"b"])).0, "\"a\\\"\"b\"\n");
    }

    #[test]
    fn nested_arrays_depend_on_mode() {
        let mut a = crate::PhpArray::new();
        a.push(list(&["x", "y"]));
        let v = Value::Array(a);
        let (out, w) = row(CsvOptions::default(), &v);
        assert_eq!(out, "Array\n");
        assert_eq!(w, vec![Warning::ArrayToString]);
        let rfc = CsvOptions {
            escape: None,
            mode: CsvMode::Rfc4180,
            ..CsvOptions::default()
        };
        assert_eq!(row(rfc, &v).0, "\"[\"\"x\"\",\"\"y\"\"]\"\n");
    }

    #[test]
    fn header_and_crlf() {
        let v: Value = [("id", Value::Int(1)), ("name", Value::from("a b"))]
            .into_iter()
            .collect();
        let opts = CsvOptions {
            header: true,
            line_ending: LineEnding::Crlf,
            ..CsvOptions::default()
        };
        assert_eq!(row(opts, &v).0, "id,name\r\n1,\"a b\"\r\n");
    }

    #[test]
    fn rejects_nonsense() {
        let same = CsvOptions {
            enclosure: b',',
            ..CsvOptions::default()
        };
        assert!(CsvSerializer::new(same).is_err());
        let rfc_escape = CsvOptions {
            mode: CsvMode::Rfc4180,
            ..CsvOptions::default()
        };
        assert!(CsvSerializer::new(rfc_escape).is_err());
    }

    #[test]
    fn writer_spills_past_memory_and_output_is_unchanged() {
        let opts = CsvOptions {
            memory: 8,
            header: true,
            ..CsvOptions::default()
        };
        let ser = CsvSerializer::new(opts).expect("valid");
        let mut w = CsvWriter::new(ser.clone(), Vec::new());
        let t: Value = [("a", "hello world")].into_iter().collect();
        for _ in 0..3 {
            w.write_tuple(&t).expect("row");
        }
        let out = w.into_inner().expect("flush");
        assert_eq!(
            out,
            b"a\n\"hello world\"\n\"hello world\"\n\"hello world\"\n"
        );
    }
}
