//! Reads a spanned TOML tree into typed values while collecting every error.
//!
//! Each getter marks its key as known; [`Table::finish`] then reports the keys
//! nobody asked for, with the nearest known key as a suggestion. So the list
//! of valid keys is exactly the set of keys the code reads: it cannot drift.

use std::cell::RefCell;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostics::Diagnostics;
use super::interpolate::interpolate;
use super::secret::Secret;

pub(crate) struct Ctx<'e> {
    pub diags: RefCell<Diagnostics>,
    pub env: &'e dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) {
        self.diags.borrow_mut().error(span, message);
    }

    pub fn warning(&self, span: Range<usize>, message: impl Into<String>) {
        self.diags.borrow_mut().warning(span, message);
    }
}

/// A string value with where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Located<T> {
    pub value: T,
    pub span: Range<usize>,
}

pub(crate) struct Table<'c, 'e, 'i> {
    pub ctx: &'c Ctx<'e>,
    table: &'c DeTable<'i>,
    pub span: Range<usize>,
    /// Dotted name for messages, e.g. `sources.web`.
    pub name: String,
    known: RefCell<Vec<&'static str>>,
}

impl<'c, 'e, 'i> Table<'c, 'e, 'i> {
    pub fn new(ctx: &'c Ctx<'e>, table: &'c DeTable<'i>, span: Range<usize>, name: String) -> Self {
        Table {
            ctx,
            table,
            span,
            name,
            known: RefCell::new(Vec::new()),
        }
    }

    fn raw(&self, key: &'static str) -> Option<&'c Spanned<DeValue<'i>>> {
        self.known.borrow_mut().push(key);
        self.table.get(key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    pub fn key_span(&self, key: &str) -> Range<usize> {
        self.table
            .get_key_value(key)
            .map(|(k, _)| k.span())
            .unwrap_or_else(|| self.span.clone())
    }

    /// Iterates the table's entries (for maps such as `[sources]`).
    pub fn entries(
        &self,
    ) -> impl Iterator<
        Item = (
            &'c Spanned<std::borrow::Cow<'i, str>>,
            &'c Spanned<DeValue<'i>>,
        ),
    > {
        self.table.iter()
    }

    /// The dotted name of `key` in this table, for messages.
    pub fn path(&self, key: &str) -> String {
        match self.name.is_empty() {
            true => key.to_owned(),
            false => format!("{}.{key}", self.name),
        }
    }

    fn type_error(&self, key: &str, value: &Spanned<DeValue<'_>>, want: &str) {
        self.ctx.error(
            value.span(),
            format!(
                "`{}` must be {want}, found {}",
                self.path(key),
                value.get_ref().type_str()
            ),
        );
    }

    pub fn string(&self, key: &'static str) -> Option<Located<String>> {
        let value = self.raw(key)?;
        let DeValue::String(text) = value.get_ref() else {
            self.type_error(key, value, "a string");
            return None;
        };
        match interpolate(text, self.ctx.env) {
            Ok(text) => Some(Located {
                value: text,
                span: value.span(),
            }),
            Err(message) => {
                self.ctx.error(value.span(), message);
                None
            }
        }
    }

    /// A string, or an integer taken as its decimal text (ids such as
    /// `topic_id = 1`, which may also be templates such as `"{topic}"`).
    pub fn string_or_integer(&self, key: &'static str) -> Option<Located<String>> {
        match self.table.get(key).map(|v| v.get_ref()) {
            Some(DeValue::Integer(_)) => self.integer(key, i64::MIN..=i64::MAX).map(|n| Located {
                value: n.to_string(),
                span: self.table.get(key).map_or(self.span.clone(), |v| v.span()),
            }),
            _ => self.string(key),
        }
    }

    /// A string that must be an `http://` or `https://` URL.
    pub fn http_url(&self, key: &'static str) -> Option<Located<String>> {
        let url = self.string(key)?;
        if url.value.starts_with("http://") || url.value.starts_with("https://") {
            return Some(url);
        }
        self.ctx.error(
            url.span,
            format!(
                "`{}`: {:?} is not an http:// or https:// URL",
                self.path(key),
                // The error quotes the value: without its password.
                crate::url::redact_url(&url.value)
            ),
        );
        None
    }

    pub fn string_or(&self, key: &'static str, default: &str) -> String {
        self.string(key)
            .map_or_else(|| default.to_owned(), |s| s.value)
    }

    /// A string parsed by `parse`; a parse failure is reported at the value.
    pub fn parsed<T>(
        &self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.string(key)?;
        match parse(&text.value) {
            Ok(value) => Some(value),
            Err(message) => {
                self.ctx
                    .error(text.span, format!("`{}`: {message}", self.path(key)));
                None
            }
        }
    }

    pub fn bool_or(&self, key: &'static str, default: bool) -> bool {
        match self.raw(key) {
            None => default,
            Some(value) => match value.get_ref() {
                DeValue::Boolean(b) => *b,
                _ => {
                    self.type_error(key, value, "true or false");
                    default
                }
            },
        }
    }

    pub fn integer(&self, key: &'static str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        let value = self.raw(key)?;
        let DeValue::Integer(int) = value.get_ref() else {
            self.type_error(key, value, "an integer");
            return None;
        };
        match i64::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) if range.contains(&n) => Some(n),
            _ => {
                self.ctx.error(
                    value.span(),
                    format!(
                        "`{}` must be between {} and {}",
                        self.path(key),
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }

    pub fn number(&self, key: &'static str) -> Option<f64> {
        let value = self.raw(key)?;
        match value.get_ref() {
            DeValue::Integer(int) => i64::from_str_radix(int.as_str(), int.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(float) => float.as_str().replace('_', "").parse().ok(),
            _ => {
                self.type_error(key, value, "a number");
                None
            }
        }
    }

    /// A duration written as `"500ms"`, `"60s"`, `"1m 30s"`, `"2h"`, or an ISO 8601 `"PT5S"`.
    pub fn duration(&self, key: &'static str) -> Option<Duration> {
        self.parsed(key, parse_duration)
    }

    pub fn duration_or(&self, key: &'static str, default: Duration) -> Duration {
        self.duration(key).unwrap_or(default)
    }

    pub fn string_list(&self, key: &'static str) -> Option<Vec<Located<String>>> {
        let value = self.raw(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.type_error(key, value, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(text) => match interpolate(text, self.ctx.env) {
                    Ok(text) => out.push(Located {
                        value: text,
                        span: item.span(),
                    }),
                    Err(message) => self.ctx.error(item.span(), message),
                },
                other => self.ctx.error(
                    item.span(),
                    format!(
                        "`{}` must hold strings, found {}",
                        self.path(key),
                        other.type_str()
                    ),
                ),
            }
        }
        Some(out)
    }

    pub fn table(&self, key: &'static str) -> Option<Table<'c, 'e, 'i>> {
        let value = self.raw(key)?;
        match value.get_ref() {
            DeValue::Table(table) => {
                Some(Table::new(self.ctx, table, value.span(), self.path(key)))
            }
            _ => {
                self.type_error(key, value, "a table");
                None
            }
        }
    }

    /// An array of tables (`[[x.key]]`, or `key = [{ ... }, { ... }]`).
    pub fn tables(&self, key: &'static str) -> Option<Vec<Table<'c, 'e, 'i>>> {
        let value = self.raw(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.type_error(key, value, "an array of tables");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (n, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::Table(table) => out.push(Table::new(
                    self.ctx,
                    table,
                    item.span(),
                    format!("{}[{n}]", self.path(key)),
                )),
                other => self.ctx.error(
                    item.span(),
                    format!(
                        "`{}` must hold tables, found {}",
                        self.path(key),
                        other.type_str()
                    ),
                ),
            }
        }
        Some(out)
    }

    /// The value of `key` as JSON (strings interpolated), for handing a
    /// sub-tree to a library's serde types. Returns the value's span too.
    pub fn json(&self, key: &'static str) -> Option<(serde_json::Value, Range<usize>)> {
        let value = self.raw(key)?;
        Some((self.to_json(value), value.span()))
    }

    fn to_json(&self, value: &Spanned<DeValue<'_>>) -> serde_json::Value {
        use serde_json::Value as J;
        match value.get_ref() {
            DeValue::String(text) => match interpolate(text, self.ctx.env) {
                Ok(text) => J::String(text),
                Err(message) => {
                    self.ctx.error(value.span(), message);
                    J::Null
                }
            },
            DeValue::Integer(int) => {
                i64::from_str_radix(int.as_str(), int.radix()).map_or(J::Null, J::from)
            }
            DeValue::Float(float) => float
                .as_str()
                .replace('_', "")
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(J::Null, J::Number),
            DeValue::Boolean(b) => J::Bool(*b),
            DeValue::Datetime(dt) => J::String(dt.to_string()),
            DeValue::Array(items) => {
                J::Array(items.iter().map(|item| self.to_json(item)).collect())
            }
            DeValue::Table(table) => J::Object(
                table
                    .iter()
                    .map(|(k, v)| (k.get_ref().to_string(), self.to_json(v)))
                    .collect(),
            ),
        }
    }

    /// String values of a table, e.g. `rename = { old = "new" }`.
    pub fn string_map(&self, key: &'static str) -> Option<Vec<(String, Located<String>)>> {
        let table = self.table(key)?;
        let mut out = Vec::new();
        for (k, v) in table.entries() {
            match v.get_ref() {
                DeValue::String(text) => match interpolate(text, self.ctx.env) {
                    Ok(text) => out.push((
                        k.get_ref().to_string(),
                        Located {
                            value: text,
                            span: v.span(),
                        },
                    )),
                    Err(message) => self.ctx.error(v.span(), message),
                },
                other => self.ctx.error(
                    v.span(),
                    format!(
                        "`{}.{}` must be a string, found {}",
                        table.name,
                        k.get_ref(),
                        other.type_str()
                    ),
                ),
            }
        }
        Some(out)
    }

    /// A secret given inline (`key`, interpolated) or read from a file (`key_file`).
    pub fn secret(&self, key: &'static str, file_key: &'static str) -> Option<Secret> {
        let inline = self.string(key);
        let file = self.string(file_key);
        match (inline, file) {
            (Some(_), Some(file)) => {
                self.ctx.error(
                    file.span,
                    format!("`{}`: give `{key}` or `{file_key}`, not both", self.name),
                );
                None
            }
            // An empty secret (an unset-but-defined variable, an empty file)
            // would make an HMAC anyone can compute: refuse it.
            (Some(inline), None) if inline.value.is_empty() => {
                self.ctx
                    .error(inline.span, format!("`{}` is empty", self.path(key)));
                None
            }
            (Some(inline), None) => Some(Secret::new(inline.value)),
            (None, Some(file)) => match std::fs::read_to_string(&file.value) {
                // A trailing newline is almost always an editor's, not part of the secret.
                Ok(text) if text.trim_end_matches(['\n', '\r']).is_empty() => {
                    self.ctx
                        .error(file.span, format!("secret file {:?} is empty", file.value));
                    None
                }
                Ok(text) => Some(Secret::new(text.trim_end_matches(['\n', '\r']).to_owned())),
                Err(e) => {
                    self.ctx.error(
                        file.span,
                        format!("cannot read secret file {:?}: {e}", file.value),
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }

    pub fn path_or(&self, key: &'static str, default: &str) -> PathBuf {
        PathBuf::from(self.string_or(key, default))
    }

    /// Reports unknown keys, suggesting the nearest known one.
    pub fn finish(&self) {
        let known = self.known.borrow();
        for (key, _) in self.table.iter() {
            if known.contains(&key.get_ref().as_ref()) {
                continue;
            }
            let suggestion = known
                .iter()
                .map(|k| (strsim::jaro_winkler(k, key.get_ref()), *k))
                .filter(|(score, _)| *score > 0.7)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| format!("; did you mean `{k}`?"))
                .unwrap_or_else(|| {
                    let mut names: Vec<&str> = known.to_vec();
                    names.sort_unstable();
                    names.dedup();
                    format!("; known keys: {}", names.join(", "))
                });
            let place = match self.name.is_empty() {
                true => "at the top level".to_owned(),
                false => format!("in [{}]", self.name),
            };
            self.ctx.error(
                key.span(),
                format!("unknown key `{}` {place}{suggestion}", key.get_ref()),
            );
        }
    }
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try \"500ms\", \"60s\", \"5m\")"))?;
    Duration::try_from(signed).map_err(|_| format!("{text:?} must not be negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
    }
}
