//! `deskbus check`: every error class, with file:line:column, and every
//! shipped example.

mod util;

use std::process::Command;

use util::BIN;

fn check(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .arg(&path)
        .env_remove("DESKBUS_MISSING")
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "c.toml");
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

const VALID: &str = r#"[general]
data_dir = "./d"
helpdesk_code = "ACME"

[sources.web]
type = "webhook"
address = "127.0.0.1:9681"

[streams.out]
type = "file"
path = "./o/{queue}.ndjson"

[use_cases.t]
inputs = ["web"]
events = ["ticket.created"]
stream = "out"
queue = "tickets"
"#;

#[test]
fn a_valid_config_passes() {
    let (code, stdout, stderr) = check(VALID);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok (1 sources, 1 streams, 1 use cases)"));
}

/// Each case: a change to the valid config and the exact diagnostic line.
#[test]
fn each_error_class_is_reported_with_its_place() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "type = \"webhook\"",
            "type = \"webhook\"\nadress = \"x\"",
            "c.toml:7:1: unknown key `adress` in [sources.web]; did you mean `address`?",
        ),
        (
            "type = \"file\"",
            "type = \"file\"\nbatch_size = \"ten\"",
            "c.toml:11:14: `streams.out.batch_size` must be an integer, found string",
        ),
        (
            "stream = \"out\"",
            "stream = \"outt\"",
            "c.toml:16:10: no stream named `outt`; did you mean `out`?",
        ),
        (
            "inputs = [\"web\"]",
            "inputs = [\"web\", \"mail\"]",
            "c.toml:14:18: no source named `mail`; defined: `web`",
        ),
        (
            "path = \"./o/{queue}.ndjson\"",
            "path = \"${DESKBUS_MISSING}/{queue}.ndjson\"",
            "c.toml:11:8: environment variable `DESKBUS_MISSING` is not set (write `${DESKBUS_MISSING:-default}` for a default)",
        ),
        (
            "helpdesk_code = \"ACME\"",
            "helpdesk_code = \"1ACME\"",
            "c.toml:3:17: `general.helpdesk_code`: helpdesk code \"1ACME\" must start with a letter",
        ),
        (
            "helpdesk_code = \"ACME\"",
            "helpdesk_code = \"ACMEACMEA\"",
            "c.toml:3:17: `general.helpdesk_code`: helpdesk code \"ACMEACMEA\" is longer than 8 characters",
        ),
        (
            "type = \"file\"",
            "type = \"fiel\"",
            "c.toml:10:8: unknown stream type `fiel`; did you mean `file`?",
        ),
        (
            "queue = \"tickets\"",
            "queue = \"t.{dept\"",
            "c.toml:17:9: `use_cases.t.queue`: unclosed `{` at byte 2",
        ),
        (
            "events = [\"ticket.created\"]",
            "routing_keys = [\"ticket.#x\"]",
            "c.toml:15:17: routing pattern \"ticket.#x\": `*` and `#` must stand alone as a word",
        ),
        (
            "[general]",
            "[general]\nshutdown_timeout = \"soon\"",
            "c.toml:2:20: `general.shutdown_timeout`: \"soon\" is not a duration (try \"500ms\", \"60s\", \"5m\")",
        ),
        (
            "address = \"127.0.0.1:9681\"",
            "address = \"127.0.0.1:9681\"\naddress = \"x\"",
            "c.toml:8:1: duplicate key",
        ),
    ];
    for (from, to, want) in cases {
        let text = VALID.replacen(from, to, 1);
        assert_ne!(text, VALID, "case {want} changed nothing");
        let (code, _, stderr) = check(&text);
        assert_eq!(code, 2, "{want}\n{stderr}");
        assert!(
            stderr.lines().any(|l| l.starts_with(want)),
            "want {want:?}\ngot:\n{stderr}"
        );
    }
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let text = VALID
        .replace("helpdesk_code = \"ACME\"", "helpdesk_code = \"9\"")
        .replace("stream = \"out\"", "stream = \"nope\"")
        .replace("type = \"webhook\"", "type = \"webhook\"\nport = 1");
    let (code, _, stderr) = check(&text);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("c.toml:3:17:")
            && stderr.contains("c.toml:7:1:")
            && stderr.contains("c.toml:17:10:"),
        "{stderr}"
    );
    assert!(stderr.trim_end().ends_with("c.toml: 3 errors"), "{stderr}");
}

#[test]
fn a_use_case_must_name_its_parts() {
    let text = "[sources.web]\ntype = \"webhook\"\n\n[use_cases.x]\nenabled = true\n";
    let (code, _, stderr) = check(text);
    assert_eq!(code, 2);
    for need in [
        "needs `inputs`",
        "needs `events` (names) or `routing_keys`",
        "needs `stream`",
        "needs `queue`",
    ] {
        assert!(stderr.contains(need), "{need}: {stderr}");
    }
}

/// Every file in examples/ is a valid config.
#[test]
fn every_example_checks() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = Command::new(BIN)
            .arg("check")
            .arg(&path)
            // Secrets the examples read from the environment.
            .env("DESKBUS_TOKEN", "example-token")
            .env("OST_DB_PASSWORD", "example")
            .env("OST_API_KEY", "example")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 1, "no example found in {examples}");
}

/// A constant queue is checked against its stream's naming rules.
#[test]
fn constant_queues_follow_the_stream_naming_rules() {
    let text = VALID
        .replace(
            "type = \"file\"\npath = \"./o/{queue}.ndjson\"",
            "type = \"beanstalk\"",
        )
        .replace("queue = \"tickets\"", "queue = \"-tickets\"");
    let (code, _, stderr) = check(&text);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "c.toml:16:1: `use_cases.t.queue`: tube name \"-tickets\" must not start with '-'"
        ),
        "{stderr}"
    );
    // A templated queue is checked per event instead.
    let (code, _, stderr) = check(&text.replace("queue = \"-tickets\"", "queue = \"t.{x}\""));
    assert_eq!(code, 0, "{stderr}");
}

/// A file stream's constant queue must name a file: an empty one would make
/// the path a directory, or move the file up a level.
#[test]
fn a_file_stream_refuses_an_empty_constant_queue() {
    let (code, _, stderr) = check(&VALID.replace("queue = \"tickets\"", "queue = \"\""));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`use_cases.t.queue`: the queue is empty and cannot be a file name"),
        "{stderr}"
    );
}

/// A URL refused by `check` is quoted without its password.
#[test]
fn a_refused_url_is_quoted_without_its_password() {
    let text = VALID.replace(
        "type = \"file\"\npath = \"./o/{queue}.ndjson\"",
        "type = \"http\"\nurl = \"ftp://bot:hunter2@h/hook\"",
    );
    let (code, _, stderr) = check(&text);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("is not an http:// or https:// URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(stderr.contains("ftp://bot:[redacted]@h/hook"), "{stderr}");
}

/// A webhook body limit a spool value could not hold is refused by `check`.
#[test]
fn a_webhook_body_limit_over_256_mib_is_refused() {
    let text = VALID.replace(
        "address = \"127.0.0.1:9681\"",
        "address = \"127.0.0.1:9681\"\nmax_body_bytes = 268435457",
    );
    let (code, _, stderr) = check(&text);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("max_body_bytes"), "{stderr}");
    let fits = text.replace("268435457", "268435456");
    let (code, _, stderr) = check(&fits);
    assert_eq!(code, 0, "{stderr}");
}

/// README's first command: the quickstart runs with no external service and
/// its demo tickets reach the file stream.
#[test]
fn the_quickstart_runs_and_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let quickstart = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/quickstart.toml"
    ))
    .unwrap();
    // Free ports, so the test never meets a quickstart someone is running.
    let (admin, web) = (util::free_port(), util::free_port());
    let config = quickstart
        .replace("127.0.0.1:9680", &format!("127.0.0.1:{admin}"))
        .replace("127.0.0.1:9681", &format!("127.0.0.1:{web}"));
    assert_ne!(
        config, quickstart,
        "the quickstart's ports moved; update this test"
    );
    std::fs::write(dir.path().join("quickstart.toml"), config).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "quickstart.toml"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = dir.path().join("deskbus-out/tickets.ndjson");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let found = loop {
        let lines = std::fs::read_to_string(&out).unwrap_or_default();
        if lines.contains("\"name\":\"ticket.created\"") {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(found, "no demo ticket in {}", out.display());
    assert!(status.success(), "{status}");
    assert!(dir.path().join("deskbus-data/spool.db").exists());
}

/// An `amq.` exchange belongs to the broker: only passive use is valid.
#[test]
fn reserved_amqp_exchanges_must_be_passive() {
    let text = VALID.replace(
        "type = \"file\"\npath = \"./o/{queue}.ndjson\"",
        "type = \"amqp\"\nexchange = \"amq.topic\"",
    );
    let (code, _, stderr) = check(&text);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("\"amq.topic\" is reserved by the broker"),
        "{stderr}"
    );
    let (code, _, stderr) = check(&text.replace(
        "exchange = \"amq.topic\"",
        "exchange = \"amq.topic\"\ndeclare = \"passive\"",
    ));
    assert_eq!(code, 0, "{stderr}");
}

/// An amqp source without a `queue` works, but loses what is published
/// while deskbus is away: `check` passes and says so.
#[test]
fn an_amqp_source_without_a_queue_is_warned_about() {
    let text = VALID.replace(
        "type = \"webhook\"\naddress = \"127.0.0.1:9681\"",
        "type = \"amqp\"\nexchange = \"xivo\"",
    );
    let (code, _, stderr) = check(&text);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: `sources.web` has no `queue`") && stderr.contains("c.toml:6:1"),
        "{stderr}"
    );
    let (code, _, stderr) = check(&text.replace(
        "exchange = \"xivo\"",
        "exchange = \"xivo\"\nqueue = \"deskbus.web\"",
    ));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}
