//! Name rules from the osTicket streamer seed and the services it feeds.
//! Each function returns a lowercase reason when the name is refused.

/// The helpdesk code: a letter, then letters, `-` or `_`, at most 8 characters.
pub fn check_helpdesk_code(code: &str) -> Result<(), String> {
    let mut chars = code.chars();
    match chars.next() {
        None => return Err("helpdesk code must not be empty".into()),
        Some(c) if !c.is_ascii_alphabetic() => {
            return Err(format!("helpdesk code {code:?} must start with a letter"));
        }
        Some(_) => {}
    }
    if code.chars().count() > 8 {
        return Err(format!(
            "helpdesk code {code:?} is longer than 8 characters"
        ));
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphabetic() || *c == '-' || *c == '_')) {
        return Err(format!(
            "helpdesk code {code:?} may hold only letters, '-' or '_' (found {bad:?})"
        ));
    }
    Ok(())
}

/// Beanstalk tube names: letters, digits and `-+/;.$_()`, not starting with
/// `-`, at most 200 bytes.
pub fn check_beanstalk_tube(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 {
        return Err(format!("tube name {name:?} must be 1 to 200 bytes"));
    }
    if name.starts_with('-') {
        return Err(format!("tube name {name:?} must not start with '-'"));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-+/;.$_()".contains(*c)))
    {
        Some(bad) => Err(format!(
            "tube name {name:?} holds {bad:?}; allowed: letters, digits and -+/;.$_()"
        )),
        None => Ok(()),
    }
}

/// Kinesis Data Streams stream names: `[a-zA-Z0-9_.-]`, 1 to 128 characters.
pub fn check_kinesis_stream(name: &str) -> Result<(), String> {
    check_aws_name(name, "kinesis stream name", 128)
}

/// Firehose delivery stream names: `[a-zA-Z0-9_.-]`, 1 to 64 characters.
pub fn check_firehose_stream(name: &str) -> Result<(), String> {
    check_aws_name(name, "firehose delivery stream name", 64)
}

fn check_aws_name(name: &str, what: &str, max: usize) -> Result<(), String> {
    if name.is_empty() || name.len() > max {
        return Err(format!("{what} {name:?} must be 1 to {max} characters"));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(*c)))
    {
        Some(bad) => Err(format!(
            "{what} {name:?} holds {bad:?}; allowed: [a-zA-Z0-9_.-]"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpdesk_codes() {
        for ok in ["ACME", "a", "Ab-_cdEf", "x_y"] {
            assert!(check_helpdesk_code(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1ACME", "-A", "ACMEACMEA", "AC ME", "ACM3", "ÉCOLE"] {
            assert!(check_helpdesk_code(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tube_names() {
        assert!(check_beanstalk_tube("tickets").is_ok());
        assert!(check_beanstalk_tube("a-+/;.$_()9").is_ok());
        assert!(check_beanstalk_tube(&"t".repeat(200)).is_ok());
        assert!(check_beanstalk_tube(&"t".repeat(201)).is_err());
        assert!(check_beanstalk_tube("-x").is_err());
        assert!(check_beanstalk_tube("a b").is_err());
        assert!(check_beanstalk_tube("").is_err());
    }

    #[test]
    fn aws_names() {
        assert!(check_kinesis_stream("deskbus-events_1.x").is_ok());
        assert!(check_kinesis_stream(&"k".repeat(128)).is_ok());
        assert!(check_kinesis_stream(&"k".repeat(129)).is_err());
        assert!(check_firehose_stream(&"k".repeat(64)).is_ok());
        assert!(check_firehose_stream(&"k".repeat(65)).is_err());
        assert!(check_firehose_stream("a/b").is_err());
        assert!(check_firehose_stream("").is_err());
    }
}
