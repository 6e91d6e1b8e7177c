//! Config errors and warnings, reported as `file:line:column: message`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Byte range in the config text.
    pub span: Range<usize>,
    pub message: String,
}

/// Everything `deskbus check` found in one file.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub file: PathBuf,
    text: String,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new(file: &Path, text: &str) -> Diagnostics {
        Diagnostics {
            file: file.to_owned(),
            text: text.to_owned(),
            items: Vec::new(),
        }
    }

    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.items.push(Diagnostic {
            severity: Severity::Error,
            span,
            message: message.into(),
        });
    }

    pub fn warning(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.items.push(Diagnostic {
            severity: Severity::Warning,
            span,
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn sorted(&self) -> Vec<&Diagnostic> {
        let mut items: Vec<&Diagnostic> = self.items.iter().collect();
        items.sort_by_key(|d| (d.span.start, d.severity == Severity::Warning));
        items
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.sorted() {
            let (line, column) = self.line_column(d.span.start);
            let tag = match d.severity {
                Severity::Error => "",
                Severity::Warning => "warning: ",
            };
            writeln!(
                f,
                "{}:{line}:{column}: {tag}{}",
                self.file.display(),
                d.message
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_characters() {
        let d = Diagnostics::new(Path::new("x.toml"), "a = 1\nbé = 2\n");
        assert_eq!(d.line_column(0), (1, 1));
        assert_eq!(d.line_column(6), (2, 1));
        assert_eq!(d.line_column(9), (2, 3));
        assert_eq!(d.line_column(999), (3, 1));
    }

    #[test]
    fn renders_sorted_with_severity() {
        let mut d = Diagnostics::new(Path::new("c.toml"), "a = 1\nb = 2\n");
        d.error(6..7, "second");
        d.warning(0..1, "first");
        assert_eq!(
            d.to_string(),
            "c.toml:1:1: warning: first\nc.toml:2:1: second\n"
        );
        assert!(d.has_errors());
    }
}
