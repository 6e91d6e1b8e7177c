//! URL text that connectors share: where a URL's credentials are, the URL
//! with them masked for messages, and percent-decoding.

/// Where the credentials of `url` are: the byte range of its userinfo
/// (`user:password` between `scheme://` and the last `@`), if it has one.
/// A password may hold `/`, `?`, `#` or `@`, so the userinfo ends at the
/// last `@`; text before it counts as userinfo when it has a `:` or no `/`
/// (`http://host/a@b` has none). When in doubt this over-redacts, never under.
pub(crate) fn userinfo_range(url: &str) -> Option<std::ops::Range<usize>> {
    // A `://` counts only after a scheme: in `u:a://b@host` it is part of
    // the password.
    let start = match url.find("://") {
        Some(i) if is_scheme(&url[..i]) => i + 3,
        _ => 0,
    };
    let at = start + url[start..].rfind('@')?;
    let userinfo = &url[start..at];
    (userinfo.contains(':') || !userinfo.contains('/')).then_some(start..at)
}

/// RFC 3986: a letter, then letters, digits, `+`, `-` and `.`.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `url` with its credentials masked, for messages (they reach logs, dead
/// letters and `check` output): `user:password@` becomes
/// `user:[redacted]@` (the user name helps whoever fixes a login), and a
/// userinfo without a password, which may be a token, becomes `[redacted]@`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(range) = userinfo_range(url) else {
        return url.to_owned();
    };
    let user = match url[range.clone()].split_once(':') {
        Some((user, _)) => format!("{user}:"),
        None => String::new(),
    };
    format!(
        "{}{user}[redacted]{}",
        &url[..range.start],
        &url[range.end..]
    )
}

/// RFC 3986 percent-decoding; a `%` not followed by two hex digits is kept.
pub(crate) fn percent_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            text[i],
            text.get(i + 1).and_then(|&b| hex(b)),
            text.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_user_and_lose_their_password() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:[redacted]@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("amqps://bus:s3cr@t:x@rabbit.internal/xivo?heartbeat=5"),
            "amqps://bus:[redacted]@rabbit.internal/xivo?heartbeat=5"
        );
        assert_eq!(
            redact_url("nats://tok3n@a:4222"),
            "nats://[redacted]@a:4222"
        );
        assert_eq!(redact_url("u:hunter2@host"), "u:[redacted]@host");
        assert_eq!(redact_url("u:a://b@host"), "u:[redacted]@host");
        for unchanged in [
            "amqp://127.0.0.1:5672/%2f",
            "http://host/a@b",
            "http://host/x",
        ] {
            assert_eq!(redact_url(unchanged), unchanged);
        }
        for url in [
            "amqp://u:pa/ss@host/v",
            "amqp://u:pa?ss@host/v",
            "amqp://u:pa#ss@host/v",
            "amqp://u:p@ss@host/v",
        ] {
            assert_eq!(redact_url(url), "amqp://u:[redacted]@host/v", "{url}");
        }
    }

    #[test]
    fn percent_decoding_keeps_a_stray_percent() {
        assert_eq!(percent_decode(b"p%40ss%2Fw"), b"p@ss/w");
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4");
    }
}
