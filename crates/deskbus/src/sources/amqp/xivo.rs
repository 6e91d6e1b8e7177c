//! The events of the XiVO bus (seed 001, the XiVO "Message Bus" page): each
//! one's name, routing key and `data` fields, as a table the source checks
//! events against when `validate = true`. docs/xivo-events.md is rendered
//! from this table, and a test keeps the two in step.

use deskbus_event::Event;
use serde_json::Value;

/// The type of a `data` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Integer,
    String,
    /// A string holding a UUID.
    Uuid,
    Object,
    /// An array of strings.
    Strings,
    /// `[xivo UUID, user id]`: a chatter.
    UserRef,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Integer => "integer",
            Kind::String => "string",
            Kind::Uuid => "string (UUID)",
            Kind::Object => "object",
            Kind::Strings => "array of strings",
            Kind::UserRef => "[string (UUID), integer]",
        }
    }

    fn accepts(self, value: &Value) -> bool {
        match self {
            Kind::Integer => value.is_i64() || value.is_u64(),
            Kind::String => value.is_string(),
            Kind::Uuid => value
                .as_str()
                .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()),
            Kind::Object => value.is_object(),
            Kind::Strings => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            Kind::UserRef => match value.as_array().map(Vec::as_slice) {
                Some([xivo, user]) => Kind::Uuid.accepts(xivo) && Kind::Integer.accepts(user),
                _ => false,
            },
        }
    }
}

/// One `data` field of an event.
#[derive(Debug)]
pub(super) struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub about: &'static str,
}

/// One event of the bus.
#[derive(Debug)]
pub(super) struct XivoEvent {
    /// The `name`; [`AMI_NAME`] for the AMI events, which keep Asterisk's.
    pub name: &'static str,
    /// The routing key: words, where `<...>` stands for one word (the AMI
    /// event's name in `ami.<AMI event name>`).
    pub routing_key: &'static str,
    #[cfg_attr(not(test), expect(dead_code, reason = "docs/xivo-events.md only"))]
    pub about: &'static str,
    /// Required fields; events may carry more.
    pub fields: &'static [Field],
}

/// The `name` of the AMI row: any AMI event name.
pub(super) const AMI_NAME: &str = "<AMI event name>";

const fn field(name: &'static str, kind: Kind, about: &'static str) -> Field {
    Field { name, kind, about }
}

/// Every event of the XiVO bus, in the page's order.
pub(super) const EVENTS: &[XivoEvent] = &[
    XivoEvent {
        name: AMI_NAME,
        routing_key: "ami.<AMI event name>",
        about: "Every Asterisk Manager Interface event, e.g. `QueueMemberStatus`; `data` holds the AMI event's own fields, all strings (`\"Status\": \"1\"`).",
        fields: &[],
    },
    XivoEvent {
        name: "call_form_result",
        routing_key: "call_form_result",
        about: "A CTI client saved a custom call form.",
        fields: &[
            field("user_id", Kind::Integer, "the CTI user who saved the form"),
            field("variables", Kind::Object, "the form's content"),
        ],
    },
    XivoEvent {
        name: "agent_status_update",
        routing_key: "status.agent",
        about: "An agent logged in or out.",
        fields: &[
            field("agent_id", Kind::Integer, "the agent"),
            field("xivo_id", Kind::Uuid, "the XiVO"),
            field("status", Kind::String, "e.g. `logged_in`"),
        ],
    },
    XivoEvent {
        name: "chat_message_event",
        routing_key: "chat.message.<xivo-uuid>.<user_id>",
        about: "A chat message to a user. (The page's example is not valid JSON and its field list says `alice` for `alias`.)",
        fields: &[
            field("alias", Kind::String, "the chatter's nickname"),
            field(
                "to",
                Kind::UserRef,
                "the destination's XiVO UUID and user id",
            ),
            field("from", Kind::UserRef, "the chatter's XiVO UUID and user id"),
            field("msg", Kind::String, "the message"),
        ],
    },
    XivoEvent {
        name: "endpoint_status_update",
        routing_key: "status.endpoint",
        about: "An endpoint's status changed (Asterisk hints).",
        fields: &[
            field("xivo_id", Kind::Uuid, "the XiVO"),
            field("endpoint_id", Kind::Integer, "the endpoint"),
            field("status", Kind::Integer, "the Asterisk device state"),
        ],
    },
    XivoEvent {
        name: "user_status_update",
        routing_key: "status.user",
        about: "A user changed their CTI presence.",
        fields: &[
            field("xivo_id", Kind::Uuid, "the XiVO"),
            field("user_id", Kind::Integer, "the user"),
            field("status", Kind::String, "e.g. `busy`"),
        ],
    },
    XivoEvent {
        name: "service_registered_event",
        routing_key: "service.registered.<service_name>",
        about: "A service started.",
        fields: &[
            field("service_name", Kind::String, "the service"),
            field("service_id", Kind::String, "its Consul id"),
            field("address", Kind::String, "its advertised address"),
            field("port", Kind::Integer, "its advertised port"),
            field(
                "tags",
                Kind::Strings,
                "its Consul tags (may hold non-ASCII, e.g. `Québec`)",
            ),
        ],
    },
    XivoEvent {
        name: "service_deregistered_event",
        routing_key: "service.deregistered.<service_name>",
        about: "A service stopped.",
        fields: &[
            field("service_name", Kind::String, "the service"),
            field("service_id", Kind::String, "its Consul id"),
            field("tags", Kind::Strings, "its Consul tags"),
        ],
    },
];

/// Checks `event` against [`EVENTS`]; the reason it does not fit otherwise.
pub(super) fn validate(event: &Event) -> Result<(), String> {
    let known = EVENTS.iter().find(|e| e.name == event.name);
    let Some(known) = known else {
        // AMI events keep Asterisk's names: known by their routing key.
        if event.routing_key.strip_prefix("ami.") == Some(event.name.as_str()) {
            return validate_ami(event);
        }
        return Err(format!(
            "unknown XiVO event `{}` (routing key `{}`); known: {}, and AMI events as `ami.<name>`",
            event.name,
            event.routing_key,
            EVENTS
                .iter()
                .filter(|e| e.name != AMI_NAME)
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    if !fits(known.routing_key, &event.routing_key) {
        return Err(format!(
            "XiVO event `{}` comes with routing key `{}`, not `{}`",
            event.name, event.routing_key, known.routing_key
        ));
    }
    let Some(data) = event.data.as_object() else {
        return Err(format!(
            "XiVO event `{}`: `data` must be an object, found {}",
            event.name,
            json_type(&event.data)
        ));
    };
    for f in known.fields {
        match data.get(f.name) {
            None => {
                return Err(format!(
                    "XiVO event `{}`: `data.{}` is missing ({}: {})",
                    event.name,
                    f.name,
                    f.kind.describe(),
                    f.about
                ));
            }
            Some(value) if !f.kind.accepts(value) => {
                let found = match (f.kind, value) {
                    (Kind::Uuid, Value::String(s)) => format!("{s:?}"),
                    _ => json_type(value).to_owned(),
                };
                return Err(format!(
                    "XiVO event `{}`: `data.{}` must be {}, found {found}",
                    event.name,
                    f.name,
                    with_article(f.kind.describe()),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn validate_ami(event: &Event) -> Result<(), String> {
    let Some(data) = event.data.as_object() else {
        return Err(format!(
            "AMI event `{}`: `data` must be an object of strings, found {}",
            event.name,
            json_type(&event.data)
        ));
    };
    match data.iter().find(|(_, v)| !v.is_string()) {
        Some((key, value)) => Err(format!(
            "AMI event `{}`: `data.{key}` must be a string, found {}",
            event.name,
            json_type(value)
        )),
        None => Ok(()),
    }
}

/// Whether `key` fits `pattern`, word for word, `<...>` standing for any one word.
fn fits(pattern: &str, key: &str) -> bool {
    let (pattern, key): (Vec<&str>, Vec<&str>) =
        (pattern.split('.').collect(), key.split('.').collect());
    pattern.len() == key.len()
        && pattern
            .iter()
            .zip(&key)
            .all(|(p, k)| (p.starts_with('<') && !k.is_empty()) || p == k)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn with_article(kind: &str) -> String {
    match kind.chars().next() {
        Some('a' | 'i' | 'o') => format!("an {kind}"),
        Some('[') => kind.to_owned(),
        _ => format!("a {kind}"),
    }
}

/// docs/xivo-events.md, rendered from [`EVENTS`].
#[cfg(test)]
pub(super) fn render_markdown() -> String {
    use std::fmt::Write;
    let mut out = String::from(
        "# XiVO bus events\n\n\
         Generated from `crates/deskbus/src/sources/amqp/xivo.rs` by its test \
         `docs_match_the_catalog`; edit the table there, then run \
         `UPDATE_DOCS=1 cargo test -p deskbus --features amqp --lib xivo`.\n\n\
         Every event of the XiVO bus (exchange `xivo`, type `topic`) is a JSON object \
         `{\"name\", \"origin_uuid\", \"data\"}`, published with the routing key below. \
         An `amqp` source with `validate = true` sends an event to dead letters when its \
         name is not here (an AMI event is known by its routing key `ami.<its name>`), when \
         its routing key does not fit its row (`<...>` is one word), or when a listed `data` \
         field is missing or of another type; events may carry more fields than listed.\n\n\
         | event (`name`) | routing key | `data` fields |\n|---|---|---|\n",
    );
    for e in EVENTS {
        let fields = match e.fields {
            [] => "an object of strings".to_owned(),
            fields => fields
                .iter()
                .map(|f| format!("`{}` ({})", f.name, f.kind.describe()))
                .collect::<Vec<_>>()
                .join(", "),
        };
        let _ = writeln!(out, "| `{}` | `{}` | {fields} |", e.name, e.routing_key);
    }
    for e in EVENTS {
        let _ = writeln!(out, "\n## `{}`\n\n{}\n", e.name, e.about);
        let _ = writeln!(out, "Routing key: `{}`.", e.routing_key);
        if !e.fields.is_empty() {
            let _ = writeln!(out, "\n| field | type | meaning |\n|---|---|---|");
            for f in e.fields {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} |",
                    f.name,
                    f.kind.describe(),
                    f.about
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(name: &str, routing_key: &str, data: Value) -> Event {
        let mut e = Event::new("bus", name, "ca7f87e9-c2c8-5fad-ba1b-c3140ebb9be3", data);
        e.routing_key = routing_key.to_owned();
        e
    }

    const XIVO: &str = "ca7f87e9-c2c8-5fad-ba1b-c3140ebb9be3";

    #[test]
    fn the_pages_examples_are_valid() {
        let examples = [
            event(
                "QueueMemberStatus",
                "ami.QueueMemberStatus",
                json!({"Status": "1", "MemberName": "sip/m3ylhs", "Queue": "petak"}),
            ),
            event(
                "call_form_result",
                "call_form_result",
                json!({"user_id": 40, "variables": {"firstname": "John", "lastname": "Doe"}}),
            ),
            event(
                "agent_status_update",
                "status.agent",
                json!({"agent_id": 42, "xivo_id": XIVO, "status": "logged_in"}),
            ),
            event(
                "chat_message_event",
                &format!("chat.message.{XIVO}.42"),
                json!({"alias": "Alice", "to": [XIVO, 42], "from": [XIVO, 22], "msg": "Hi!"}),
            ),
            event(
                "endpoint_status_update",
                "status.endpoint",
                json!({"endpoint_id": 67, "xivo_id": XIVO, "status": 0}),
            ),
            event(
                "user_status_update",
                "status.user",
                json!({"user_id": 42, "xivo_id": XIVO, "status": "busy"}),
            ),
            event(
                "service_registered_event",
                "service.registered.xivo-ctid",
                json!({"service_name": "xivo-ctid", "service_id": "8e58d2a7-cfed-4c2e-ac72-14e0b5c26dc2",
                       "address": "192.168.1.42", "port": 9495, "tags": ["xivo-ctid", XIVO, "Québec"]}),
            ),
            event(
                "service_deregistered_event",
                "service.deregistered.xivo-ctid",
                json!({"service_name": "xivo-ctid", "service_id": "8e58d2a7-cfed-4c2e-ac72-14e0b5c26dc2",
                       "tags": ["xivo-ctid", XIVO, "Québec"]}),
            ),
        ];
        for e in &examples {
            assert_eq!(validate(e), Ok(()), "{}", e.name);
        }
    }

    #[test]
    fn refuses_what_does_not_fit_with_a_reason() {
        let cases = [
            (
                event("ticket.created", "ticket.created", json!({})),
                "unknown XiVO event `ticket.created`",
            ),
            (
                event(
                    "call_form_result",
                    "call_form_result",
                    json!({"variables": {}}),
                ),
                "`data.user_id` is missing (integer: the CTI user who saved the form)",
            ),
            (
                event(
                    "call_form_result",
                    "call_form_result",
                    json!({"user_id": "40", "variables": {}}),
                ),
                "`data.user_id` must be an integer, found a string",
            ),
            (
                event(
                    "agent_status_update",
                    "status.agent",
                    json!({"agent_id": 1, "xivo_id": "nope", "status": "x"}),
                ),
                "`data.xivo_id` must be a string (UUID), found \"nope\"",
            ),
            (
                event(
                    "agent_status_update",
                    "status.user",
                    json!({"agent_id": 1, "xivo_id": XIVO, "status": "x"}),
                ),
                "comes with routing key `status.user`, not `status.agent`",
            ),
            (
                event(
                    "chat_message_event",
                    "chat.message.x.1",
                    json!({"alias": "A", "to": [XIVO], "from": [XIVO, 1], "msg": "m"}),
                ),
                "`data.to` must be [string (UUID), integer], found an array",
            ),
            (
                event("user_status_update", "status.user", json!(null)),
                "`data` must be an object, found null",
            ),
            (
                event("Hangup", "ami.Hangup", json!({"Cause": 16})),
                "AMI event `Hangup`: `data.Cause` must be a string, found an integer",
            ),
            (
                event("Hangup", "ami.Other", json!({})),
                "unknown XiVO event `Hangup` (routing key `ami.Other`)",
            ),
        ];
        for (e, want) in cases {
            let reason = validate(&e).unwrap_err();
            assert!(reason.contains(want), "{reason} ∌ {want}");
        }
    }

    #[test]
    fn docs_match_the_catalog() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/xivo-events.md");
        let rendered = render_markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, &rendered).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "docs/xivo-events.md is out of date; run `UPDATE_DOCS=1 cargo test -p deskbus --features amqp --lib xivo`"
        );
    }
}
