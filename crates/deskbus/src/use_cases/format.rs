//! A use case's shaping of an event into bytes: the tuple (fields kept,
//! renamed, set, changed by a script), then the format stack.
//!
//! Runs at delivery time, on the event as it was spooled, so a dead letter
//! keeps the original event and can be replayed after a config fix.

use std::sync::Arc;

use deskbus_event::{Event, Template};
use deskbus_format::{RecordContext, Stack, Value as Tuple};
use serde_json::{Map, Value};

use super::script::Script;
use super::ticket::TicketMapping;

/// `[use_cases.NAME]` shaping keys
///
/// How one use case turns an event into the bytes its stream sends. Without
/// `serializer`, the event envelope goes out as JSON, its `data` shaped by
/// the other keys. A use case named after a preset (`tickets_creation`,
/// `tickets_message`, `tickets_response`, `tickets_internal_note`,
/// `tickets_assigned`, `tickets_transferred`, `tickets_edited`,
/// `tickets_closed`, `tickets_reopened`, `tickets_deleted`) takes its event
/// by default, and its default `fields` when it has a `serializer`.
#[derive(Debug, Clone, Default)]
pub struct UseCaseFormat {
    /// Data fields to keep, in this order: the tuple's columns (CSV follows
    /// it). A missing field is `null`; `helpdesk_code` falls back to
    /// `general.helpdesk_code`. Default: all fields, in the event's order.
    pub fields: Option<Vec<String>>,
    /// `{ old = "new" }`: renames fields, keeping their column. Applied after `fields`.
    pub rename: Vec<(String, String)>,
    /// `{ field = "constant or {template}" }`: sets fields, after `rename`.
    pub set: Vec<(String, Template)>,
    /// `script` (inline) or `script_file`: Rhai run last, seeing `data` (a map
    /// it may change) and `name`, `routing_key`, `id`, `source`,
    /// `origin_uuid`. An error, or more than 200,000 operations, sends the
    /// event to dead letters with the message.
    pub script: Option<Arc<Script>>,
    /// `serializer` and `record`: the format stack (the `type = "json"` to
    /// `type = "cloudevents"` sections). `record` defaults to `raw`.
    pub stack: Option<Arc<Stack>>,
    /// The osTicket ticket built from the event, which is then the
    /// payload (JSON); see `[use_cases.NAME]` `ticket`. Required with an
    /// `osticket` stream; it takes no `serializer`.
    pub ticket: Option<Arc<TicketMapping>>,
    /// A template for the record's partition key (Kinesis), e.g.
    /// `"{ticket_id}"` to spread a multi-shard stream. Default: the plugin's
    /// constant `\KinesisRecord`.
    pub partition_key: Option<Template>,
    // The general `helpdesk_code`, for a `helpdesk_code` field the data lacks.
    pub helpdesk_code: Option<String>,
    // The use case's queue template, to render the queue of an entry that
    // was dead-lettered at routing (it has none) when it is replayed.
    pub queue: Option<Template>,
}

impl UseCaseFormat {
    /// True when the spooled bytes (the event's JSON) go out unchanged.
    pub fn is_passthrough(&self) -> bool {
        self.fields.is_none()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.script.is_none()
            && self.stack.is_none()
            && self.ticket.is_none()
    }

    /// True when the event's data is changed before it is encoded.
    fn shapes_data(&self) -> bool {
        self.fields.is_some()
            || !self.rename.is_empty()
            || !self.set.is_empty()
            || self.script.is_some()
    }

    /// The use case's view of the event's data, in column order.
    pub fn tuple(&self, event: &Event) -> Result<Map<String, Value>, String> {
        let mut data = match &event.data {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            other => Map::from_iter([("data".to_owned(), other.clone())]),
        };
        if let Some(fields) = &self.fields {
            data = fields
                .iter()
                .map(|f| {
                    let value = event.field(f).cloned().or_else(|| {
                        match (f.as_str(), &self.helpdesk_code) {
                            ("helpdesk_code", Some(code)) => Some(Value::from(code.as_str())),
                            _ => None,
                        }
                    });
                    (f.clone(), value.unwrap_or(Value::Null))
                })
                .collect();
        }
        for (old, new) in &self.rename {
            if data.contains_key(old.as_str()) {
                // Keep the column where it was; only its name changes.
                data = std::mem::take(&mut data)
                    .into_iter()
                    .map(|(k, v)| if k == *old { (new.clone(), v) } else { (k, v) })
                    .collect();
            }
        }
        for (field, template) in &self.set {
            let value = template
                .render(event)
                .map_err(|e| format!("`set.{field}`: {e}"))?;
            data.insert(field.clone(), Value::String(value));
        }
        if let Some(script) = &self.script {
            data = script.run(event, data)?;
        }
        Ok(data)
    }

    /// The bytes to send for `event`. An error is permanent: the event can
    /// never be shaped by this config, so it goes to dead letters.
    pub fn encode(&self, event: &Event) -> Result<Vec<u8>, String> {
        if let Some(ticket) = &self.ticket {
            if !self.shapes_data() {
                return ticket.render(event);
            }
            let mut shaped = event.clone();
            shaped.data = Value::Object(self.tuple(event)?);
            return ticket.render(&shaped);
        }
        let data = self.tuple(event)?;
        let Some(stack) = &self.stack else {
            let mut shaped = event.clone();
            shaped.data = Value::Object(data);
            return serde_json::to_vec(&shaped).map_err(|e| format!("cannot encode event: {e}"));
        };
        let partition_key = match &self.partition_key {
            Some(t) => Some(t.render(event).map_err(|e| format!("partition key: {e}"))?),
            None => None,
        };
        let (id, time) = (event.id.to_string(), event.time.to_string());
        let ctx = RecordContext {
            partition_key: partition_key.as_deref(),
            event_id: Some(&id),
            event_name: Some(&event.name),
            origin_uuid: Some(&event.origin_uuid),
            time: Some(&time),
            source: Some(&event.source),
            event_type: Some(&event.name),
            ..RecordContext::default()
        };
        let tuple = Tuple::from(Value::Object(data));
        stack
            .encode(&tuple, &ctx)
            .map_err(|e| format!("format stack: {e}"))
    }

    pub fn content_type(&self) -> &str {
        self.stack
            .as_ref()
            .map_or("application/json", |s| s.content_type())
    }
}

/// Fields every ticket-event preset starts with (the seed's identity fields
/// and the ticket's).
const TICKET_FIELDS: &[&str] = &[
    "helpdesk_code",
    "datetime_complete",
    "ticket_id",
    "ticket_number",
    "department_id",
    "department_name",
];

/// The seed's use cases and one per other ticket event: the event each takes
/// and its fields after [`TICKET_FIELDS`], used when the config gives none.
/// `tickets_creation` is the seed's own, with exactly the seed's six fields.
pub const PRESETS: &[(&str, &str, &[&str])] = &[
    (
        "tickets_message",
        "ticket.message",
        &["user_name", "user_email"],
    ),
    ("tickets_response", "ticket.response", &["agent_name"]),
    ("tickets_internal_note", "ticket.note", &["agent_name"]),
    ("tickets_assigned", "ticket.assigned", &["agent_name"]),
    (
        "tickets_transferred",
        "ticket.transferred",
        &["previous_department_id", "previous_department_name"],
    ),
    (
        "tickets_edited",
        "ticket.edited",
        &["helptopic_id", "helptopic_label", "changed_fields"],
    ),
    ("tickets_closed", "ticket.closed", &["status_name"]),
    ("tickets_reopened", "ticket.reopened", &["status_name"]),
    ("tickets_deleted", "ticket.deleted", &[]),
];

/// The seed's tickets-creation fields, in the seed's order.
const TICKETS_CREATION: &[&str] = &[
    "helpdesk_code",
    "datetime_complete",
    "department_id",
    "department_name",
    "helptopic_id",
    "helptopic_label",
];

/// The event a preset use case takes, and its default fields.
pub fn preset(name: &str) -> Option<(&'static str, Vec<&'static str>)> {
    if name == "tickets_creation" {
        return Some(("ticket.created", TICKETS_CREATION.to_vec()));
    }
    let (_, event, extra) = PRESETS.iter().find(|(n, _, _)| *n == name)?;
    Some((
        event,
        TICKET_FIELDS.iter().chain(extra.iter()).copied().collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskbus_format::{FormatRegistry, FormatSpec};
    use serde_json::json;

    fn ticket() -> Event {
        Event::new(
            "osticket",
            "ticket.created",
            "o",
            json!({
                "ticket_id": 7, "department_name": "Sales", "department_id": 3, "datetime_complete": "2024-01-02 03:04:05",
                "helptopic_id": 11, "helptopic_label": "Report a Problem / Access Issue", "extra": true
            }),
        )
    }

    #[test]
    fn the_seed_stack_from_presets() {
        let (_, fields) = preset("tickets_creation").unwrap();
        let stack = FormatRegistry::with_builtins()
            .build_stack(
                &FormatSpec::new("csv"),
                &FormatSpec::new("kinesis")
                    .with("stream_name", "helpdesk")
                    .with("encoder", json!({"type": "base64"})),
            )
            .unwrap();
        let format = UseCaseFormat {
            fields: Some(fields.iter().map(|f| f.to_string()).collect()),
            stack: Some(Arc::new(stack)),
            helpdesk_code: Some("ACME".into()),
            ..UseCaseFormat::default()
        };
        let bytes = format.encode(&ticket()).unwrap();
        let record: Value = serde_json::from_slice(&bytes).unwrap();
        use base64::Engine as _;
        let csv = base64::engine::general_purpose::STANDARD
            .decode(record["Data"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "ACME,\"2024-01-02 03:04:05\",3,Sales,11,\"Report a Problem / Access Issue\"\n"
        );
        assert_eq!(record["PartitionKey"], "\\KinesisRecord");
    }

    #[test]
    fn fields_rename_and_set_keep_column_order() {
        let format = UseCaseFormat {
            fields: Some(vec![
                "department_name".into(),
                "ticket_id".into(),
                "missing".into(),
            ]),
            rename: vec![("department_name".into(), "dept".into())],
            set: vec![(
                "origin".into(),
                Template::parse("{@source}/{ticket_id}").unwrap(),
            )],
            ..UseCaseFormat::default()
        };
        let tuple = format.tuple(&ticket()).unwrap();
        assert_eq!(
            Value::Object(tuple),
            json!({"dept": "Sales", "ticket_id": 7, "missing": null, "origin": "osticket/7"})
        );
        let keys: Vec<String> = format.tuple(&ticket()).unwrap().keys().cloned().collect();
        assert_eq!(keys, ["dept", "ticket_id", "missing", "origin"]);
    }

    #[test]
    fn without_a_stack_the_envelope_goes_out_with_shaped_data() {
        let format = UseCaseFormat {
            fields: Some(vec!["ticket_id".into()]),
            ..UseCaseFormat::default()
        };
        let out: Value = serde_json::from_slice(&format.encode(&ticket()).unwrap()).unwrap();
        assert_eq!(out["data"], json!({"ticket_id": 7}));
        assert_eq!(out["name"], "ticket.created");
        assert!(UseCaseFormat::default().is_passthrough());
    }
}
