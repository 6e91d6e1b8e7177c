//! NATS subject rules: `.`-separated tokens; `*` and `>` are wildcards,
//! which a publish subject must not hold.

/// Longest subject we publish to. The server refuses a protocol line longer
/// than its `max_control_line` (4 KiB by default) by closing the connection,
/// which would fail every other message on it: refuse far below that.
pub(super) const MAX_SUBJECT: usize = 1024;

/// A subject a message can be published to.
pub(super) fn check_publish_subject(subject: &str) -> Result<(), String> {
    check(subject, false)
}

/// A subject a stream may capture (wildcards allowed).
pub(super) fn check_stream_subject(subject: &str) -> Result<(), String> {
    check(subject, true)
}

/// `subject_prefix`: empty, or tokens ending with `.`.
pub(super) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Ok(());
    }
    let Some(tokens) = prefix.strip_suffix('.') else {
        return Err(format!("{prefix:?} must end with `.` (or be empty)"));
    };
    check_publish_subject(tokens)
}

fn check(subject: &str, wildcards: bool) -> Result<(), String> {
    let bad = |why: &str| Err(format!("subject {subject:?} is not valid: {why}"));
    if subject.is_empty() {
        return bad("it is empty");
    }
    if subject.len() > MAX_SUBJECT {
        return bad(&format!("longer than {MAX_SUBJECT} bytes"));
    }
    if subject.starts_with('$') {
        return bad("`$` subjects belong to the server ($JS, $SYS, $KV)");
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it holds whitespace or a control character");
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|t| t.is_empty()) {
        return bad("it has an empty token (a leading, trailing or double `.`)");
    }
    if !wildcards {
        if subject.contains(['*', '>']) {
            return bad("the wildcards `*` and `>` cannot be published to");
        }
        return Ok(());
    }
    for (i, token) in tokens.iter().enumerate() {
        let last = i == tokens.len() - 1;
        match *token {
            "*" => {}
            ">" if last => {}
            ">" => return bad("`>` must be the last token"),
            t if t.contains(['*', '>']) => {
                return bad("a wildcard must be a whole token");
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_subjects() {
        for good in [
            "deskbus.tickets",
            "a",
            "deskbus.tickets.ventes-é",
            "a.b_c.d-1",
        ] {
            assert_eq!(check_publish_subject(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "deskbus.",
            ".a",
            "a..b",
            "a b",
            "a\tb",
            "a\r\nPUB x",
            "a.*",
            "a.>",
            "a.b*",
            "$JS.API.STREAM.DELETE.X",
        ] {
            assert!(check_publish_subject(bad).is_err(), "{bad:?}");
        }
        assert!(check_publish_subject(&"a".repeat(MAX_SUBJECT + 1)).is_err());
        assert!(check_publish_subject(&"a".repeat(MAX_SUBJECT)).is_ok());
    }

    #[test]
    fn stream_subjects() {
        for good in ["deskbus.>", "deskbus.*.x", "a", ">"] {
            assert_eq!(check_stream_subject(good), Ok(()), "{good}");
        }
        for bad in ["deskbus.>.x", "a.b*", "a..b", "", "a b"] {
            assert!(check_stream_subject(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefixes() {
        assert!(check_prefix("").is_ok());
        assert!(check_prefix("deskbus.").is_ok());
        assert!(check_prefix("acme.deskbus.").is_ok());
        for bad in ["deskbus", ".", "a..", "a.*.", "$SYS."] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
