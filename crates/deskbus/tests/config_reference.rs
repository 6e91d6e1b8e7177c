//! docs/configuration.md is generated from the doc comments of the config
//! structs, so the reference cannot drift from the code. Run with
//! `UPDATE_DOCS=1` to rewrite it after changing a doc comment.

use std::fmt::Write;

/// The files holding config structs, in the order the reference shows them.
const SOURCES: &[&str] = &[
    "src/config/mod.rs",
    "src/use_cases/format.rs",
    "src/use_cases/ticket.rs",
    "src/sources/webhook/config.rs",
    "src/sources/demo/config.rs",
    "src/sources/osticket/config.rs",
    "src/sources/amqp/config.rs",
    "src/sources/beanstalk/config.rs",
    "src/streams/amqp/config.rs",
    "src/streams/beanstalk/config.rs",
    "src/streams/file/config.rs",
    "src/streams/http/config.rs",
    "src/streams/kinesis/config.rs",
    "src/streams/nats/config.rs",
    "src/streams/osticket/config.rs",
    "src/streams/stdout/config.rs",
    "../deskbus-format/src/spec.rs",
];

/// Extracts `/// docs` + `pub struct|enum Name` blocks and their documented fields.
fn render() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the doc comments of the config structs by \
         `crates/deskbus/tests/config_reference.rs`; edit those, then run \
         `UPDATE_DOCS=1 cargo test -p deskbus --test config_reference`.\n\n\
         Strings may use `${VAR}` and `${VAR:-default}` (environment variables); `$$` is a literal `$`. \
         Durations are written `\"500ms\"`, `\"60s\"`, `\"5m\"`. `deskbus check CONFIG` validates a file.\n",
    );
    for file in SOURCES {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + file)
                .unwrap();
        let mut docs: Vec<String> = Vec::new();
        let mut in_item = false;
        let mut rows: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if let Some(doc) = trimmed.strip_prefix("///") {
                docs.push(doc.strip_prefix(' ').unwrap_or(doc).to_owned());
                continue;
            }
            if trimmed.starts_with("#[") {
                continue;
            }
            let top_level = !line.starts_with(' ');
            if top_level
                && (trimmed.starts_with("pub struct ") || trimmed.starts_with("pub enum "))
                // Config items: their doc title names their TOML place (`[...]`, `type = ...`).
                && docs.first().is_some_and(|title| title.starts_with('`'))
            {
                flush(&mut out, &mut rows);
                let title = docs[0].clone();
                writeln!(out, "\n## {title}\n").unwrap();
                if docs.len() > 1 {
                    writeln!(out, "{}\n", docs[1..].join("\n").trim()).unwrap();
                }
                in_item = trimmed.ends_with('{');
            } else if in_item && trimmed.starts_with("pub ") && !docs.is_empty() {
                let name = trimmed
                    .trim_start_matches("pub ")
                    .split(':')
                    .next()
                    .unwrap()
                    .trim()
                    .to_owned();
                rows.push((name, docs.join(" ")));
            } else if in_item
                && !docs.is_empty()
                && trimmed.chars().next().is_some_and(char::is_uppercase)
            {
                // An enum variant: `Bearer(Secret)`, `Hmac {`.
                let name = trimmed
                    .split(['(', ' ', ',', '{'])
                    .next()
                    .unwrap()
                    .to_owned();
                rows.push((name, docs.join(" ")));
            }
            if top_level && trimmed == "}" {
                in_item = false;
                flush(&mut out, &mut rows);
            }
            docs.clear();
        }
        flush(&mut out, &mut rows);
    }
    out
}

fn flush(out: &mut String, rows: &mut Vec<(String, String)>) {
    if rows.is_empty() {
        return;
    }
    out.push_str("| key | meaning |\n|---|---|\n");
    for (name, doc) in rows.drain(..) {
        writeln!(out, "| `{name}` | {} |", doc.replace('|', "\\|")).unwrap();
    }
}

#[test]
fn config_reference_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let want = render();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs")).unwrap();
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "docs/configuration.md is stale; run `UPDATE_DOCS=1 cargo test -p deskbus --test config_reference`"
    );
}
