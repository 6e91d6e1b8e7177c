//! A use case's osTicket ticket: templates that turn one event into the JSON
//! body of osTicket's `POST /api/tickets.json`.
//!
//! Rendering runs at delivery, like the rest of a use case's shaping, so an
//! event that cannot be rendered (a field missing without a default, bad
//! attachment data) goes to dead letters with the reason, and can be replayed
//! after a config fix. The stream only posts the bytes.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use deskbus_event::{Event, Template};
use serde_json::{Map, Value};

use crate::config::located_template;
use crate::config::walker::Table;
use crate::url::percent_decode;

/// `[use_cases.NAME]` `ticket`
///
/// The osTicket ticket a use case creates for each event, when its stream is
/// an `osticket` stream (required there, refused anywhere else). Every value
/// is a template (`{variables.firstname}`, `{user_id}`, `{notes:-none}`,
/// `{@id}`...) that sees the event's data after `fields`, `rename`, `set` and
/// `script`. A field missing without a default sends the event to dead
/// letters with the reason; so does a required key that renders empty. An
/// optional key that renders empty is left out of the request. The JSON
/// sent is what `deskbus format CONFIG --use-case NAME` prints.
#[derive(Debug, Clone)]
pub struct TicketMapping {
    /// The submitter's name (`name`). Required.
    pub name: Template,
    /// The submitter's address (`email`); osTicket creates or reuses that
    /// user. Required.
    pub email: Template,
    /// The ticket's subject. Required.
    pub subject: Template,
    /// The first message, as text. deskbus sends it as the data URL osTicket
    /// expects, `data:text/plain;charset=utf-8,<text>`, verbatim. Required.
    pub message: Template,
    /// `"text/plain"` (default) or `"text/html"`: how osTicket shows `message`.
    pub message_type: MessageType,
    /// Help topic id (`topicId`, selects department, priority and forms): an
    /// integer, or a template rendering one. Optional.
    pub topic_id: Option<Template>,
    /// Priority id (`priority`): an integer, or a template rendering one. Optional.
    pub priority: Option<Template>,
    /// The submitter's phone number (`phone`). Optional.
    pub phone: Option<Template>,
    /// The ticket's source (`source`): `"Phone"`, `"Email"`, `"Web"`,
    /// `"API"` or `"Other"`. Default (osTicket's): `"API"`.
    pub source: Option<Template>,
    /// The submitter's IP address (`ip`); must render an IP address.
    /// Default (osTicket's): the address deskbus connects from.
    pub ip: Option<Template>,
    /// `false`: no alert to staff (`alert`). Default (osTicket's): `true`.
    pub alert: Option<bool>,
    /// `false`: no auto-reply to the submitter (`autorespond`). Default
    /// (osTicket's): `true`.
    pub autorespond: Option<bool>,
    /// Custom form fields, by their name in osTicket's form designer, e.g.
    /// `fields = { customer_id = "{customer}" }`: each becomes a top-level
    /// key of the request. A name used by a key above is refused. Optional.
    pub fields: Vec<(String, Template)>,
    /// Files to attach, `attachments = [{ name = "…", data = "…", type = "…" }]`;
    /// see `[use_cases.NAME]` `ticket.attachments`. Optional.
    pub attachments: Vec<AttachmentMapping>,
}

/// How osTicket reads the message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Text,
    Html,
}

/// `[use_cases.NAME]` `ticket.attachments`
///
/// One file attached to the ticket, each of its keys a template:
/// `name` (required) is the file name osTicket shows; `data` (required) is
/// the content, either a data URL (`data:audio/wav;base64,…`, or a
/// percent-encoded `data:text/plain,…`) or bare base64; `type` is the MIME
/// type (default: the data URL's own, else `application/octet-stream`).
/// deskbus decodes the content and sends it as osTicket expects,
/// `{"<name>": "data:<type>;base64,<base64>"}`. An attachment whose `data`
/// renders empty (e.g. `data = "{recording:-}"`) is left out; data that is
/// neither a data URL nor base64 sends the event to dead letters (osTicket
/// itself would drop the file and create the ticket without it).
#[derive(Debug, Clone)]
pub struct AttachmentMapping {
    // `name`: the file name.
    name: Template,
    // `data`: a data URL or base64.
    data: Template,
    // `type`: overrides the MIME type.
    content_type: Option<Template>,
}

/// Keys of osTicket's API that a custom field must not take.
const RESERVED: &[&str] = &[
    "name",
    "email",
    "subject",
    "message",
    "topicId",
    "priority",
    "priorityId",
    "phone",
    "source",
    "ip",
    "alert",
    "autorespond",
    "attachments",
];

impl TicketMapping {
    pub(crate) fn from_table(t: &Table<'_, '_, '_>) -> Option<TicketMapping> {
        let required = |key: &'static str| {
            let template = optional(t, key, false);
            if template.is_none() && !t.has(key) {
                t.ctx
                    .error(t.span.clone(), format!("[{}] needs `{key}`", t.name));
            }
            template
        };
        let (name, email, subject, message) = (
            required("name"),
            required("email"),
            required("subject"),
            required("message"),
        );
        let message_type = t
            .parsed("message_type", |s| match s {
                "text/plain" => Ok(MessageType::Text),
                "text/html" => Ok(MessageType::Html),
                other => Err(format!("{other:?} is not \"text/plain\" or \"text/html\"")),
            })
            .unwrap_or(MessageType::Text);
        let topic_id = optional(t, "topic_id", true);
        let priority = optional(t, "priority", true);
        let phone = optional(t, "phone", false);
        let source = optional(t, "source", false);
        let ip = optional(t, "ip", false);
        let alert = t.has("alert").then(|| t.bool_or("alert", true));
        let autorespond = t.has("autorespond").then(|| t.bool_or("autorespond", true));
        let mut fields = Vec::new();
        if let Some(map) = t.string_map("fields") {
            for (field, text) in map {
                if RESERVED.contains(&field.as_str()) {
                    t.ctx.error(
                        text.span.clone(),
                        format!(
                            "`{}.fields.{field}`: `{field}` is a key of osTicket's API; set it with its own key",
                            t.name
                        ),
                    );
                    continue;
                }
                let key = format!("fields.{field}");
                if let Some(template) = located_template(t, &key, text) {
                    fields.push((field, template));
                }
            }
        }
        let attachments = t
            .tables("attachments")
            .unwrap_or_default()
            .iter()
            .filter_map(|a| {
                let name = optional(a, "name", false);
                let data = optional(a, "data", false);
                let content_type = optional(a, "type", false);
                for key in ["name", "data"] {
                    if !a.has(key) {
                        a.ctx
                            .error(a.span.clone(), format!("[{}] needs `{key}`", a.name));
                    }
                }
                a.finish();
                Some(AttachmentMapping {
                    name: name?,
                    data: data?,
                    content_type,
                })
            })
            .collect();
        t.finish();
        Some(TicketMapping {
            name: name?,
            email: email?,
            subject: subject?,
            message: message?,
            message_type,
            topic_id,
            priority,
            phone,
            source,
            ip,
            alert,
            autorespond,
            fields,
            attachments,
        })
    }

    /// The request body for `event`: osTicket's JSON ticket. An error names
    /// the key that failed and why; it is permanent for this event.
    pub fn render(&self, event: &Event) -> Result<Vec<u8>, String> {
        let mut ticket = Map::new();
        let text = |key: &str, template: &Template| {
            template
                .render(event)
                .map_err(|e| format!("ticket.{key}: {e}"))
        };
        let required = |key: &str, template: &Template| {
            let value = text(key, template)?;
            match value.trim().is_empty() {
                true => Err(format!(
                    "ticket.{key}: {:?} rendered empty; osTicket requires it",
                    template.as_str()
                )),
                false => Ok(value),
            }
        };
        let id = |key: &str, template: &Template| -> Result<Option<Value>, String> {
            let value = text(key, template)?;
            let value = value.trim();
            if value.is_empty() {
                return Ok(None);
            }
            value
                .parse::<u64>()
                .map(|n| Some(Value::from(n)))
                .map_err(|_| {
                    format!("ticket.{key}: rendered {value:?}, which is not an id (a whole number)")
                })
        };
        ticket.insert("name".into(), required("name", &self.name)?.into());
        ticket.insert(
            "email".into(),
            required("email", &self.email)?.trim().into(),
        );
        ticket.insert("subject".into(), required("subject", &self.subject)?.into());
        let mime = match self.message_type {
            MessageType::Text => "text/plain",
            MessageType::Html => "text/html",
        };
        // osTicket reads everything after the first comma verbatim (it does
        // not percent-decode) and assumes ISO-8859-1 unless told otherwise.
        let body = required("message", &self.message)?;
        ticket.insert(
            "message".into(),
            format!("data:{mime};charset=utf-8,{body}").into(),
        );
        let optional_text = |key: &str, template: &Option<Template>| match template {
            Some(template) => text(key, template).map(|v| Some(v).filter(|v| !v.is_empty())),
            None => Ok(None),
        };
        if let Some(topic) = &self.topic_id
            && let Some(topic) = id("topic_id", topic)?
        {
            ticket.insert("topicId".into(), topic);
        }
        if let Some(priority) = &self.priority
            && let Some(priority) = id("priority", priority)?
        {
            ticket.insert("priority".into(), priority);
        }
        if let Some(phone) = optional_text("phone", &self.phone)? {
            ticket.insert("phone".into(), phone.into());
        }
        if let Some(source) = optional_text("source", &self.source)? {
            ticket.insert("source".into(), source.into());
        }
        if let Some(ip) = optional_text("ip", &self.ip)? {
            let ip = ip.trim();
            ip.parse::<IpAddr>()
                .map_err(|_| format!("ticket.ip: rendered {ip:?}, which is not an IP address"))?;
            ticket.insert("ip".into(), ip.into());
        }
        if let Some(alert) = self.alert {
            ticket.insert("alert".into(), alert.into());
        }
        if let Some(autorespond) = self.autorespond {
            ticket.insert("autorespond".into(), autorespond.into());
        }
        for (field, template) in &self.fields {
            let value = text(&format!("fields.{field}"), template)?;
            if !value.is_empty() {
                ticket.insert(field.clone(), value.into());
            }
        }
        let mut attachments = Vec::new();
        for (n, attachment) in self.attachments.iter().enumerate() {
            if let Some(file) = attachment
                .render(event)
                .map_err(|e| format!("ticket.attachments[{n}]: {e}"))?
            {
                attachments.push(file);
            }
        }
        if !attachments.is_empty() {
            ticket.insert("attachments".into(), Value::Array(attachments));
        }
        serde_json::to_vec(&Value::Object(ticket)).map_err(|e| format!("cannot encode ticket: {e}"))
    }
}

impl AttachmentMapping {
    /// `{"<name>": "data:<type>;base64,<content>"}`, or `None` when `data`
    /// rendered empty.
    fn render(&self, event: &Event) -> Result<Option<Value>, String> {
        let data = self.data.render(event).map_err(|e| format!("data: {e}"))?;
        let data = data.trim();
        if data.is_empty() {
            return Ok(None);
        }
        let name = self.name.render(event).map_err(|e| format!("name: {e}"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("name: {:?} rendered empty", self.name.as_str()));
        }
        let (url_type, bytes) = decode_content(data).map_err(|e| format!("{name}: {e}"))?;
        let content_type = match &self.content_type {
            Some(t) => t.render(event).map_err(|e| format!("type: {e}"))?,
            None => String::new(),
        };
        // osTicket reads only one parameter of the data URL: a `;charset=`
        // would hide the `;base64` and store the text undecoded.
        let mime = [content_type.as_str(), url_type.as_str()]
            .into_iter()
            .map(|t| t.split([';', ',']).next().unwrap_or("").trim())
            .find(|t| !t.is_empty())
            .unwrap_or("application/octet-stream");
        let url = format!(
            "data:{mime};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        Ok(Some(Value::Object(Map::from_iter([(
            name.to_owned(),
            Value::String(url),
        )]))))
    }
}

/// The MIME type a data URL declares (empty for bare base64) and the bytes.
fn decode_content(data: &str) -> Result<(String, Vec<u8>), String> {
    let Some(url) = data.strip_prefix("data:") else {
        return Ok((String::new(), decode_base64(data)?));
    };
    let (meta, payload) = url
        .split_once(',')
        .ok_or("a data URL needs a ',' before its content")?;
    let mut params = meta.split(';');
    let mime = params.next().unwrap_or("").trim().to_owned();
    let bytes = match params.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
        true => decode_base64(percent_decode(payload.as_bytes()))?,
        false => percent_decode(payload.as_bytes()),
    };
    Ok((mime, bytes))
}

/// Standard or URL-safe base64, padded or not, whitespace ignored.
fn decode_base64(text: impl AsRef<[u8]>) -> Result<Vec<u8>, String> {
    const LENIENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let compact: Vec<u8> = text
        .as_ref()
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT)
        .decode(&compact)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT).decode(&compact))
        .map_err(|e| format!("content is neither a data URL nor base64 ({e})"))
}

/// A template key that may be absent; `allow_integer` takes `topic_id = 1`.
fn optional(t: &Table<'_, '_, '_>, key: &'static str, allow_integer: bool) -> Option<Template> {
    let text = match allow_integer {
        true => t.string_or_integer(key),
        false => t.string(key),
    }?;
    located_template(t, key, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(text: &str) -> Template {
        Template::parse(text).unwrap()
    }

    fn call_form() -> Event {
        Event::new(
            "bus",
            "call_form_result",
            "ca7f87e9-c2c8-5fad-ba1b-c3140ebb9be3",
            json!({"user_id": 40, "variables": {"firstname": "John", "lastname": "Doe", "email": "john@example.com"}}),
        )
    }

    fn mapping() -> TicketMapping {
        TicketMapping {
            name: t("{variables.firstname} {variables.lastname}"),
            email: t("{variables.email}"),
            subject: t("Call form from user {user_id}"),
            message: t("{variables.notes:-(no notes)}"),
            message_type: MessageType::Text,
            topic_id: Some(t("1")),
            priority: None,
            phone: Some(t("{variables.phone:-}")),
            source: Some(t("Phone")),
            ip: None,
            alert: Some(false),
            autorespond: None,
            fields: vec![("agent".into(), t("{user_id}"))],
            attachments: Vec::new(),
        }
    }

    fn render(mapping: &TicketMapping, event: &Event) -> Value {
        serde_json::from_slice(&mapping.render(event).unwrap()).unwrap()
    }

    #[test]
    fn a_call_form_becomes_a_ticket() {
        assert_eq!(
            render(&mapping(), &call_form()),
            json!({
                "name": "John Doe",
                "email": "john@example.com",
                "subject": "Call form from user 40",
                "message": "data:text/plain;charset=utf-8,(no notes)",
                "topicId": 1,
                "source": "Phone",
                "alert": false,
                "agent": "40",
            })
        );
    }

    #[test]
    fn missing_fields_and_bad_ids_are_reasons() {
        let mut event = call_form();
        event.data["variables"]
            .as_object_mut()
            .unwrap()
            .remove("email");
        assert_eq!(
            mapping().render(&event).unwrap_err(),
            "ticket.email: field `variables.email` is missing from the event and has no default"
        );
        let mut m = mapping();
        m.email = t("{variables.email:-}");
        assert!(
            m.render(&event)
                .unwrap_err()
                .contains("ticket.email: \"{variables.email:-}\" rendered empty")
        );
        let mut m = mapping();
        m.topic_id = Some(t("{variables.firstname}"));
        assert_eq!(
            m.render(&call_form()).unwrap_err(),
            "ticket.topic_id: rendered \"John\", which is not an id (a whole number)"
        );
        let mut m = mapping();
        m.ip = Some(t("{variables.lastname}"));
        assert!(
            m.render(&call_form())
                .unwrap_err()
                .starts_with("ticket.ip:")
        );
    }

    #[test]
    fn attachments_from_data_urls_and_base64() {
        let mut event = call_form();
        event.data["png"] = json!("data:image/png;base64,iVBO\nRw0K");
        event.data["note"] = json!("data:,a%20b%2Cc");
        event.data["raw"] = json!("aGVsbG8");
        let mut m = mapping();
        let attachment = |name: &str, data: &str, content_type: Option<&str>| AttachmentMapping {
            name: t(name),
            data: t(data),
            content_type: content_type.map(t),
        };
        m.attachments = vec![
            attachment("shot.png", "{png}", None),
            attachment("note.txt", "{note}", Some("text/plain; charset=utf-8")),
            attachment("{variables.lastname}.bin", "{raw}", None),
            attachment("gone.wav", "{recording:-}", None),
        ];
        assert_eq!(
            render(&m, &event)["attachments"],
            json!([
                {"shot.png": "data:image/png;base64,iVBORw0K"},
                {"note.txt": "data:text/plain;base64,YSBiLGM="},
                {"Doe.bin": "data:application/octet-stream;base64,aGVsbG8="},
            ])
        );
        event.data["raw"] = json!("not base64!");
        let error = m.render(&event).unwrap_err();
        assert!(
            error.starts_with(
                "ticket.attachments[2]: Doe.bin: content is neither a data URL nor base64"
            ),
            "{error}"
        );
    }

    #[test]
    fn html_messages_and_priorities() {
        let mut m = mapping();
        m.message_type = MessageType::Html;
        m.message = t("<p>{variables.firstname}, 50% off</p>");
        m.priority = Some(t("2"));
        let ticket = render(&m, &call_form());
        assert_eq!(
            ticket["message"],
            "data:text/html;charset=utf-8,<p>John, 50% off</p>"
        );
        assert_eq!(ticket["priority"], 2);
    }
}
