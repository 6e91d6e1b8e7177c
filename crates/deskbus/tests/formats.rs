//! The format stack inside deskbus: `deskbus format`, the seed's stack end
//! to end, scripts, and the checks on stack config.

mod util;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use util::*;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/seed-stack-to-file.toml"
);

fn preview(config: &str, use_case: &str, input: &str, raw: bool) -> (i32, Vec<u8>, String) {
    let mut command = Command::new(BIN);
    command.args(["format", config, "--use-case", use_case]);
    if raw {
        command.arg("--raw");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A child that exits before reading (a config it refuses) closes its
    // stdin: the write then fails, and its exit code and stderr say why.
    let written = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    if let Err(error) = written {
        assert_ne!(
            out.status.code(),
            Some(0),
            "input not written ({error}), yet deskbus format succeeded; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (
        out.status.code().unwrap(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const TICKET: &str = r#"{"name":"ticket.created","data":{"datetime_complete":"2024-05-01 10:00:00","department_id":3,"department_name":"Sales","helptopic_id":11,"helptopic_label":"Report a Problem / Access Issue","ticket_id":9}}"#;

/// The seed's record, as its consumers read it: CSV of the six fields
/// (fputcsv quoting), base64, inside the Kinesis record JSON.
fn seed_record() -> String {
    let csv = "ACME,\"2024-05-01 10:00:00\",3,Sales,11,\"Report a Problem / Access Issue\"\n";
    let data = base64::engine::general_purpose::STANDARD.encode(csv);
    format!(r#"{{"Data":"{data}","StreamName":"helpdesk","PartitionKey":"\\KinesisRecord"}}"#)
}

#[test]
fn format_shows_exactly_the_bytes_sent() {
    let (code, raw, stderr) = preview(EXAMPLE, "tickets_creation", TICKET, true);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(String::from_utf8(raw).unwrap(), seed_record());
    assert!(
        stderr.contains("queue \"tickets\"") && stderr.contains("application/json"),
        "{stderr}"
    );

    // Escaped view: a control character and the NDJSON terminator are visible.
    let input = r#"{"name":"ticket.response","data":{"ticket_id":4,"department_name":"Sales\u0007","agent_name":"Priya Nair"}}"#;
    let (code, shown, stderr) = preview(EXAMPLE, "tickets_response", input, false);
    assert_eq!(code, 0, "{stderr}");
    let shown = String::from_utf8(shown).unwrap();
    assert!(shown.contains(r#""department":"Sales\u0007""#), "{shown}");
    assert!(
        shown.trim_end().ends_with(r#""vip_agent":true}\n"#),
        "{shown}"
    );

    let (code, _, stderr) = preview(EXAMPLE, "nope", TICKET, false);
    assert_eq!(code, 1);
    assert!(stderr.contains("no use case named `nope`"), "{stderr}");
}

#[test]
fn check_warns_about_numeric_check_and_locates_stack_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = r#"[sources.web]
type = "webhook"
[streams.out]
type = "file"
path = "o/{queue}"
[use_cases.tickets_creation]
inputs = ["web"]
stream = "out"
queue = "t"
serializer = { type = "csv" }
record = { type = "kinesis", encoder = { type = "base64" } }
"#;
    let path = dir.path().join("c.toml");
    std::fs::write(&path, base).unwrap();
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(":11:10: warning: [use_cases.tickets_creation]: the kinesis record serializer has numeric_check"), "{stderr}");

    std::fs::write(
        &path,
        base.replace("type = \"csv\"", "type = \"csv\", separator = \";;\""),
    )
    .unwrap();
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(":10:14: [use_cases.tickets_creation] format stack:")
            && stderr.contains("separator"),
        "{stderr}"
    );

    std::fs::write(
        &path,
        base.replace(
            "serializer = { type = \"csv\" }",
            "serializer = { type = \"csv\" }\nscript = \"let x = ;\"",
        ),
    )
    .unwrap();
    let out = Command::new(BIN).arg("check").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(":11:10: script does not compile"),
        "{stderr}"
    );
}

/// Through the real pipeline: the seed's stack lands byte for byte in the
/// file, and an event whose script throws goes to dead letters with the
/// script's message while the others flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_stack_end_to_end_and_script_errors_to_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, web) = (
        ([127, 0, 0, 1], free_port()).into(),
        ([127, 0, 0, 1], free_port()).into(),
    );
    let extra = r#"
[use_cases.tickets_creation]
inputs = ["web"]
stream = "out"
queue = "seed"
serializer = { type = "csv" }
record = { type = "kinesis", stream_name = "helpdesk", encoder = { type = "base64" }, serializer = { type = "json", flags = ["force_object", "unescaped_unicode"] } }

[use_cases.scripted]
inputs = ["web"]
events = ["ticket.note"]
stream = "out"
queue = "notes"
script = '''
if data.body == "poison" { throw "notes may not say poison"; }
data.length = data.body.len();
'''
"#;
    let mut config = webhook_to_file_config(dir.path(), admin, web, "", "", extra);
    config = config.replace("[general]", "[general]\nhelpdesk_code = \"ACME\"");
    // The generic use case of the harness would also take ticket.* events.
    config = config.replace("routing_keys = [\"ticket.#\"]", "events = [\"other\"]");
    let bus = Deskbus::start(dir.path(), &config, admin, web);
    let client = http_client();
    let ticket: Value = serde_json::from_str(TICKET).unwrap();
    let notes = json!([
        {"name": "ticket.note", "data": {"ticket_id": 1, "body": "fine"}},
        {"name": "ticket.note", "data": {"ticket_id": 2, "body": "poison"}},
    ]);
    for body in [ticket, notes] {
        assert_eq!(
            client
                .post(bus.url())
                .json(&body)
                .send()
                .await
                .unwrap()
                .status(),
            202
        );
    }
    let seed = dir.path().join("out/seed.ndjson");
    wait_for(Duration::from_secs(20), "the seed record", || {
        std::fs::read_to_string(&seed)
            .is_ok_and(|text| text.ends_with('\n') && text.lines().count() == 1)
    });
    assert_eq!(
        std::fs::read_to_string(&seed).unwrap(),
        seed_record() + "\n"
    );
    let notes = dir.path().join("out/notes.ndjson");
    // A line is whole once its newline is written.
    wait_for(Duration::from_secs(20), "the fine note", || {
        std::fs::read_to_string(&notes).is_ok_and(|text| text.ends_with('\n'))
    });
    let line: Value =
        serde_json::from_str(std::fs::read_to_string(&notes).unwrap().trim()).unwrap();
    assert_eq!(
        line["data"],
        json!({"ticket_id": 1, "body": "fine", "length": 4})
    );
    wait_for(
        Duration::from_secs(20),
        "the poison note in dead letters",
        || {
            bus.cli(&["dlq", "list"])
                .1
                .contains("notes may not say poison")
        },
    );
}
