use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// One help-desk event, normalised.
///
/// `data` keeps the order of its keys (the workspace enables serde_json's
/// `preserve_order`), because CSV columns follow that order downstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// UUIDv7, assigned once when the event enters deskbus (or taken from the
    /// sender) and never changed: retries and redeliveries carry the same id.
    pub id: Uuid,
    /// When the event happened, or when deskbus first saw it; always UTC.
    pub time: Timestamp,
    /// The id of the source component that produced the event.
    pub source: String,
    /// Dot-separated words, as on an AMQP topic exchange. Defaults to `name`.
    pub routing_key: String,
    pub name: String,
    pub origin_uuid: String,
    #[serde(default)]
    pub data: Value,
}

/// What a producer may send: the XiVO envelope, with deskbus's own fields optional.
///
/// Unknown top-level keys are refused so that a typo (`"nmae"`) is a clear
/// 400 rather than an event without a name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeInput {
    pub name: String,
    #[serde(default)]
    pub origin_uuid: Option<String>,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub routing_key: Option<String>,
    /// Accepted (and ignored) so that an event read back from a deskbus
    /// stream can be posted again unchanged; the receiving source wins.
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("`name` must not be empty")]
    EmptyName,
    #[error("`name` is longer than {max} bytes")]
    NameTooLong { max: usize },
    #[error("`id` is not a UUID: {0}")]
    BadId(String),
    #[error("`time` is not an RFC 3339 timestamp: {0}")]
    BadTime(String),
    #[error("`routing_key` {0:?} is not dot-separated words (no empty word, no `*` or `#`)")]
    BadRoutingKey(String),
}

/// Longest event name accepted; AMQP short strings (routing keys) are 255 bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Checks a name as [`EnvelopeInput::into_event`] checks an envelope's
/// `name` without a `routing_key` (the name is then the routing key too):
/// for a source that gives the events it makes a fixed name.
pub fn check_event_name(name: &str) -> Result<(), EnvelopeError> {
    check_name_length(name)?;
    match is_valid_routing_key(name) {
        true => Ok(()),
        false => Err(EnvelopeError::BadRoutingKey(name.to_owned())),
    }
}

fn check_name_length(name: &str) -> Result<(), EnvelopeError> {
    if name.trim().is_empty() {
        return Err(EnvelopeError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(EnvelopeError::NameTooLong { max: MAX_NAME_LEN });
    }
    Ok(())
}

impl EnvelopeInput {
    /// The top-level keys of an envelope.
    pub const KEYS: [&'static str; 7] = [
        "name",
        "origin_uuid",
        "data",
        "id",
        "time",
        "routing_key",
        "source",
    ];

    /// Reads a message from a bus whose producers add keys of their own
    /// (Wazo adds `required_acl`, `required_access`, `timestamp`,
    /// `tenant_uuid` and `user_uuid:<uuid>` flags): the envelope's keys are
    /// read as by the strict parse, the others are set aside and their
    /// names returned (sorted), so the caller can say what it ignored.
    pub fn from_bus_message(
        body: &[u8],
    ) -> Result<(EnvelopeInput, Vec<String>), serde_json::Error> {
        let mut object: serde_json::Map<String, Value> = serde_json::from_slice(body)?;
        let ignored: Vec<String> = object
            .keys()
            .filter(|k| !Self::KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in &ignored {
            object.remove(key);
        }
        let mut ignored = ignored;
        ignored.sort();
        Ok((serde_json::from_value(Value::Object(object))?, ignored))
    }

    /// Validates the input and completes it into an [`Event`].
    ///
    /// `default_origin` is used when the producer sent no `origin_uuid`.
    pub fn into_event(self, source: &str, default_origin: &str) -> Result<Event, EnvelopeError> {
        check_name_length(&self.name)?;
        let id = match self.id {
            Some(text) => Uuid::parse_str(&text).map_err(|_| EnvelopeError::BadId(text))?,
            None => Uuid::now_v7(),
        };
        let time = match self.time {
            Some(text) => text
                .parse::<Timestamp>()
                .map_err(|_| EnvelopeError::BadTime(text))?,
            None => Timestamp::now(),
        };
        let routing_key = self.routing_key.unwrap_or_else(|| self.name.clone());
        if !is_valid_routing_key(&routing_key) {
            return Err(EnvelopeError::BadRoutingKey(routing_key));
        }
        Ok(Event {
            id,
            time,
            source: source.to_owned(),
            routing_key,
            name: self.name,
            origin_uuid: self
                .origin_uuid
                .unwrap_or_else(|| default_origin.to_owned()),
            data: self.data,
        })
    }
}

impl Event {
    /// A new event with a fresh UUIDv7 and the current time.
    pub fn new(source: &str, name: &str, origin_uuid: &str, data: Value) -> Event {
        Event {
            id: Uuid::now_v7(),
            time: Timestamp::now(),
            source: source.to_owned(),
            routing_key: name.to_owned(),
            name: name.to_owned(),
            origin_uuid: origin_uuid.to_owned(),
            data,
        }
    }

    /// Looks up a dotted path (`department.name`, `tags.0`) in `data`.
    pub fn field(&self, path: &str) -> Option<&Value> {
        lookup(&self.data, path)
    }
}

pub(crate) fn lookup<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(root, |value, word| match value {
        Value::Object(map) => map.get(word),
        Value::Array(items) => word.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

fn is_valid_routing_key(key: &str) -> bool {
    key.len() <= MAX_NAME_LEN
        && key
            .split('.')
            .all(|word| !word.is_empty() && !word.contains(['*', '#']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> EnvelopeInput {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_fixed_event_name_is_checked_as_an_envelope_name() {
        assert_eq!(check_event_name("beanstalk.job"), Ok(()));
        assert_eq!(check_event_name(" "), Err(EnvelopeError::EmptyName));
        assert_eq!(
            check_event_name(&"a".repeat(MAX_NAME_LEN + 1)),
            Err(EnvelopeError::NameTooLong { max: MAX_NAME_LEN })
        );
        for bad in ["a..b", "a.*", "#"] {
            assert_eq!(
                check_event_name(bad),
                Err(EnvelopeError::BadRoutingKey(bad.into()))
            );
            // The same verdict as for an envelope that names no routing key.
            let envelope = input(&format!(r#"{{"name": "{bad}"}}"#));
            assert!(envelope.into_event("s", "o").is_err());
        }
    }

    #[test]
    fn keys_are_the_fields() {
        // A new field breaks this literal, and the list below with it.
        let all = EnvelopeInput {
            name: "n".into(),
            origin_uuid: Some("o".into()),
            data: Value::Null,
            id: Some("i".into()),
            time: Some("t".into()),
            routing_key: Some("r".into()),
            source: Some("s".into()),
        };
        let value = serde_json::to_value(&all).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = EnvelopeInput::KEYS.to_vec();
        keys.sort();
        expected.sort();
        assert_eq!(keys, expected);
    }

    #[test]
    fn a_bus_message_keeps_the_envelope_and_names_the_rest() {
        let body = br#"{"name": "favorite_deleted", "required_acl": "events.directory.x",
            "required_access": "event.favorite_deleted", "user_uuid:3b47": true,
            "origin_uuid": "1cc60e03", "timestamp": "2024-04-09T10:50:25.054168",
            "data": {"xivo_uuid": "1cc60e03"}}"#;
        let (input, ignored) = EnvelopeInput::from_bus_message(body).unwrap();
        assert_eq!(input.name, "favorite_deleted");
        assert_eq!(input.origin_uuid.as_deref(), Some("1cc60e03"));
        assert_eq!(input.data["xivo_uuid"], "1cc60e03");
        assert_eq!(
            ignored,
            [
                "required_access",
                "required_acl",
                "timestamp",
                "user_uuid:3b47"
            ]
        );
        assert!(
            EnvelopeInput::from_bus_message(br#"{"data": {}}"#).is_err(),
            "name is required"
        );
        assert!(EnvelopeInput::from_bus_message(b"[1]").is_err());
        // The strict parse (webhooks) still refuses unknown keys.
        assert!(serde_json::from_slice::<EnvelopeInput>(body).is_err());
    }

    #[test]
    fn completes_missing_fields() {
        let event = input(r#"{"name":"ticket.created","data":{"b":1,"a":2}}"#)
            .into_event("web", "origin")
            .unwrap();
        assert_eq!(event.routing_key, "ticket.created");
        assert_eq!(event.origin_uuid, "origin");
        assert_eq!(event.source, "web");
        assert_eq!(event.id.get_version_num(), 7);
        let keys: Vec<_> = event.data.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["b", "a"], "data keeps its key order");
    }

    #[test]
    fn keeps_sender_id_and_time() {
        let event = input(
            r#"{"name":"x","id":"0191d0a4-7a8e-7cc3-8a4b-6b1d1a2c3d4e","time":"2024-05-01T10:00:00+02:00"}"#,
        )
        .into_event("web", "o")
        .unwrap();
        assert_eq!(event.id.to_string(), "0191d0a4-7a8e-7cc3-8a4b-6b1d1a2c3d4e");
        assert_eq!(event.time.to_string(), "2024-05-01T08:00:00Z");
    }

    #[test]
    fn rejects_bad_envelopes() {
        let cases = [
            (r#"{"name":""}"#, EnvelopeError::EmptyName),
            (
                r#"{"name":"x","id":"nope"}"#,
                EnvelopeError::BadId("nope".into()),
            ),
            (
                r#"{"name":"x","time":"yesterday"}"#,
                EnvelopeError::BadTime("yesterday".into()),
            ),
            (
                r#"{"name":"x","routing_key":"a..b"}"#,
                EnvelopeError::BadRoutingKey("a..b".into()),
            ),
            (
                r#"{"name":"x","routing_key":"a.#"}"#,
                EnvelopeError::BadRoutingKey("a.#".into()),
            ),
        ];
        for (json, want) in cases {
            assert_eq!(
                input(json).into_event("s", "o").unwrap_err(),
                want,
                "{json}"
            );
        }
        assert!(serde_json::from_str::<EnvelopeInput>(r#"{"nmae":"x"}"#).is_err());
        assert!(serde_json::from_str::<EnvelopeInput>(r#"{"name":5}"#).is_err());
    }

    #[test]
    fn event_round_trips_through_json() {
        let event = Event::new(
            "demo",
            "ticket.closed",
            "o",
            serde_json::json!({"z":1,"a":[1,2]}),
        );
        let text = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn looks_up_nested_fields() {
        let event = Event::new("s", "n", "o", serde_json::json!({"a":{"b":[10,{"c":"x"}]}}));
        assert_eq!(event.field("a.b.1.c"), Some(&Value::from("x")));
        assert_eq!(event.field("a.b.0"), Some(&Value::from(10)));
        assert_eq!(event.field("a.x"), None);
        assert_eq!(event.field("a.b.9"), None);
    }
}
