//! `{field}` templates, used by queues, routing keys, partition keys and field
//! mappings.
//!
//! Grammar: literal text, `{{` and `}}` for literal braces, and placeholders
//! `{path}` or `{path:-default}` where `path` is a dotted path into `data`
//! (`department.name`, `tags.0`) or one of the envelope's own fields
//! `@name`, `@routing_key`, `@id`, `@source`, `@origin_uuid`, `@time`.
//! A `null` field counts as missing, so `{x:-none}` renders `none` for `"x": null`.

use serde_json::Value;

use crate::envelope::{Event, lookup};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field {
        path: Field,
        default: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Data(String),
    Name,
    RoutingKey,
    Id,
    Source,
    OriginUuid,
    Time,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unclosed `{{` at byte {0}")]
    Unclosed(usize),
    #[error("unmatched `}}` at byte {0}; write `}}}}` for a literal brace")]
    Unmatched(usize),
    #[error("empty placeholder at byte {0}")]
    Empty(usize),
    #[error(
        "unknown envelope field `@{0}`; known: @name, @routing_key, @id, @source, @origin_uuid, @time"
    )]
    UnknownEnvelopeField(String),
    #[error("field `{0}` is missing from the event and has no default")]
    Missing(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, ch)) = chars.next() {
            match ch {
                '{' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, c)| c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::Unmatched(at)),
                '{' => {
                    let close = text[at..].find('}').ok_or(TemplateError::Unclosed(at))? + at;
                    // Skip the placeholder's characters.
                    while chars.peek().is_some_and(|&(i, _)| i <= close) {
                        chars.next();
                    }
                    let body = &text[at + 1..close];
                    let (path, default) = match body.split_once(":-") {
                        Some((path, default)) => (path.trim(), Some(default.to_owned())),
                        None => (body.trim(), None),
                    };
                    if path.is_empty() || path.split('.').any(str::is_empty) {
                        return Err(TemplateError::Empty(at));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field {
                        path: Field::parse(path)?,
                        default,
                    });
                }
                _ => literal.push(ch),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            parts,
            source: text.to_owned(),
        })
    }

    /// The text the template was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the template has no placeholder, so it renders the same for every event.
    pub fn is_constant(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Data paths the template reads (for documentation and checks).
    pub fn data_fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field {
                path: Field::Data(path),
                ..
            } => Some(path.as_str()),
            _ => None,
        })
    }

    pub fn render(&self, event: &Event) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field { path, default } => match (path.resolve(event), default) {
                    (Some(text), _) => out.push_str(&text),
                    (None, Some(default)) => out.push_str(default),
                    (None, None) => return Err(TemplateError::Missing(path.to_string())),
                },
            }
        }
        Ok(out)
    }
}

impl Field {
    fn parse(path: &str) -> Result<Field, TemplateError> {
        let Some(name) = path.strip_prefix('@') else {
            return Ok(Field::Data(path.to_owned()));
        };
        Ok(match name {
            "name" => Field::Name,
            "routing_key" => Field::RoutingKey,
            "id" => Field::Id,
            "source" => Field::Source,
            "origin_uuid" => Field::OriginUuid,
            "time" => Field::Time,
            other => return Err(TemplateError::UnknownEnvelopeField(other.to_owned())),
        })
    }

    fn resolve(&self, event: &Event) -> Option<String> {
        Some(match self {
            Field::Data(path) => match lookup(&event.data, path)? {
                Value::Null => return None,
                Value::String(text) => text.clone(),
                other => other.to_string(),
            },
            Field::Name => event.name.clone(),
            Field::RoutingKey => event.routing_key.clone(),
            Field::Id => event.id.to_string(),
            Field::Source => event.source.clone(),
            Field::OriginUuid => event.origin_uuid.clone(),
            Field::Time => event.time.to_string(),
        })
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Data(path) => f.write_str(path),
            Field::Name => f.write_str("@name"),
            Field::RoutingKey => f.write_str("@routing_key"),
            Field::Id => f.write_str("@id"),
            Field::Source => f.write_str("@source"),
            Field::OriginUuid => f.write_str("@origin_uuid"),
            Field::Time => f.write_str("@time"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn event() -> Event {
        let mut e = Event::new(
            "web",
            "ticket.created",
            "o-1",
            json!({
                "ticket_id": 42, "dept": {"name": "Sales"}, "gone": null, "tags": ["a", "b"], "ok": true
            }),
        );
        e.routing_key = "ticket.created.sales".into();
        e
    }

    #[test]
    fn renders_fields_defaults_and_envelope() {
        let cases = [
            ("tickets", "tickets"),
            ("t.{ticket_id}", "t.42"),
            ("{dept.name}-{tags.1}-{ok}", "Sales-b-true"),
            ("{gone:-none}", "none"),
            ("{missing:-}", ""),
            (
                "{@name}|{@routing_key}|{@source}|{@origin_uuid}",
                "ticket.created|ticket.created.sales|web|o-1",
            ),
            ("{{literal}} {ticket_id}", "{literal} 42"),
            ("{dept}", r#"{"name":"Sales"}"#),
            ("{x:-a:-b}", "a:-b"),
        ];
        for (text, want) in cases {
            assert_eq!(
                Template::parse(text).unwrap().render(&event()).unwrap(),
                want,
                "{text}"
            );
        }
        let id = Template::parse("{@id}").unwrap().render(&event()).unwrap();
        assert_eq!(id.len(), 36);
    }

    #[test]
    fn missing_field_without_default_is_an_error() {
        let t = Template::parse("q.{dept.code}").unwrap();
        assert_eq!(
            t.render(&event()),
            Err(TemplateError::Missing("dept.code".into()))
        );
        let t = Template::parse("{gone}").unwrap();
        assert_eq!(
            t.render(&event()),
            Err(TemplateError::Missing("gone".into()))
        );
    }

    #[test]
    fn rejects_malformed_templates() {
        assert_eq!(Template::parse("a{b"), Err(TemplateError::Unclosed(1)));
        assert_eq!(Template::parse("a}b"), Err(TemplateError::Unmatched(1)));
        assert_eq!(Template::parse("{}"), Err(TemplateError::Empty(0)));
        assert_eq!(Template::parse("{a..b}"), Err(TemplateError::Empty(0)));
        assert_eq!(
            Template::parse("{@nope}"),
            Err(TemplateError::UnknownEnvelopeField("nope".into()))
        );
    }

    #[test]
    fn constant_detection() {
        assert!(Template::parse("tickets").unwrap().is_constant());
        assert!(!Template::parse("t.{a}").unwrap().is_constant());
        let t = Template::parse("{a.b}{@id}{c:-1}").unwrap();
        assert_eq!(t.data_fields().collect::<Vec<_>>(), ["a.b", "c"]);
    }

    proptest! {
        /// Text without braces renders unchanged; parsing never panics.
        #[test]
        fn literal_text_is_identity(text in "[^{}]{0,64}") {
            let t = Template::parse(&text).unwrap();
            prop_assert_eq!(t.render(&event()).unwrap(), text);
        }

        #[test]
        fn parse_never_panics(text in ".{0,64}") {
            let _ = Template::parse(&text).map(|t| t.render(&event()));
        }
    }
}
