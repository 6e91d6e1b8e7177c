//! A secret string that never prints itself.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The secret itself; call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the credentials of `url` are: the byte range of its userinfo
/// (`user:password` between `scheme://` and the last `@`), if it has one.
/// A password may hold `/`, `?`, `#` or `@`, so the userinfo ends at the
/// last `@`; text before it counts as userinfo when it has a `:` or no `/`
/// (`http://host/a@b` has none). When in doubt this over-redacts, never under.
pub(crate) fn userinfo_range(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let at = start + url[start..].rfind('@')?;
    let userinfo = &url[start..at];
    (userinfo.contains(':') || !userinfo.contains('/')).then_some(start..at)
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_prints_the_value() {
        let s = super::Secret::new("hunter2".into());
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
