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
/// Query parameters whose names say they hold a secret (`token`, `api_key`,
/// `sig`, ...; see [`is_secret_name`]) keep their name and lose their value.
pub(crate) fn redact_url(url: &str) -> String {
    let (masked, query_from) = match userinfo_range(url) {
        Some(range) => {
            let user = match url[range.clone()].split_once(':') {
                Some((user, _)) => format!("{user}:"),
                None => String::new(),
            };
            let masked = format!(
                "{}{user}[redacted]{}",
                &url[..range.start],
                &url[range.end..]
            );
            // From the userinfo's start: what was kept of it as a user name
            // may be a path and a query (`h/x?token=a&cb=http://u@h2`); a
            // real user name holds no `?`.
            (masked, range.start)
        }
        None => (url.to_owned(), 0),
    };
    redact_query(&masked, query_from)
}

/// `url` with the values of its secret query parameters masked; the query
/// is looked for from byte `from` on (past any userinfo, which may hold a
/// `?`) and ends at `#`.
fn redact_query(url: &str, from: usize) -> String {
    let Some(start) = url[from..].find('?').map(|i| from + i + 1) else {
        return url.to_owned();
    };
    let end = url[start..].find('#').map_or(url.len(), |i| start + i);
    let pairs: Vec<String> = url[start..end]
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() && is_secret_name(name) => {
                format!("{name}=[redacted]")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{}{}{}", &url[..start], pairs.join("&"), &url[end..])
}

/// Whether a query parameter's name says it holds a credential: one of
/// its words (split at `_`, `-` and `.`) is `token`, `key`, `apikey`,
/// `secret`, `password`, `sig`, `signature`, ... (`access_token`,
/// `X-Amz-Signature`, `api_key`), or the whole name is `auth`, `pass`
/// or `code`. Whole words, so that `auth_mechanism` or `keyfile` stay.
fn is_secret_name(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "token",
        "key",
        "apikey",
        "secret",
        "password",
        "passwd",
        "pwd",
        "sig",
        "signature",
        "credential",
        "credentials",
    ];
    const NAMES: &[&str] = &["auth", "authorization", "pass", "code"];
    let name = String::from_utf8_lossy(&percent_decode(name.as_bytes())).to_ascii_lowercase();
    NAMES.contains(&name.as_str())
        || name
            .split(['_', '-', '.'])
            .any(|word| WORDS.contains(&word))
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
    fn secret_query_values_are_masked_and_the_rest_kept() {
        assert_eq!(
            redact_url("https://hooks.example/in?token=abc&team=support#top"),
            "https://hooks.example/in?token=[redacted]&team=support#top"
        );
        assert_eq!(
            redact_url("http://u:p@h/x?API_KEY=1&heartbeat=5&X-Amz-Signature=ff&sig="),
            "http://u:[redacted]@h/x?API_KEY=[redacted]&heartbeat=5&X-Amz-Signature=[redacted]&sig="
        );
        // A `?` in the password is not the query's start.
        assert_eq!(
            redact_url("amqp://u:pa?token=x@host/v?access%5Ftoken=y"),
            "amqp://u:[redacted]@host/v?access%5Ftoken=[redacted]"
        );
        assert_eq!(redact_url("http://h/x?a=1&b"), "http://h/x?a=1&b");
        // An `@` later in the query ends no userinfo that hides the query.
        for (url, redacted) in [
            (
                "https://h/x?token=abc&cb=http://u@h2",
                "https://h/x?token=[redacted]&cb=http:[redacted]@h2",
            ),
            (
                "https://h/x?token=abc&t=10:00&mail=a@b",
                "https://h/x?token=[redacted]&t=10:[redacted]@b",
            ),
        ] {
            assert_eq!(redact_url(url), redacted);
        }
        // Whole words only.
        let kept = "amqp://h/v?auth_mechanism=plain&keyfile=/k&monkey=1";
        assert_eq!(redact_url(kept), kept);
    }

    #[test]
    fn percent_decoding_keeps_a_stray_percent() {
        assert_eq!(percent_decode(b"p%40ss%2Fw"), b"p@ss/w");
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4");
    }
}
