//! Use cases: which events go to which stream, under which queue.
//!
//! [`Ingest`] is the one door into the spool for every source: it routes a
//! batch of events through the use cases and commits the resulting entries
//! (and the source's cursor) in one transaction. An event whose queue template
//! names a missing field is committed straight to dead letters, with the reason.

pub mod format;
pub mod script;
pub mod ticket;

use std::sync::Arc;

use deskbus_event::{Event, Template};
use deskbus_spool::{AppendBatch, NewDeadLetter, NewEntry, Spool, SpoolError};
use indexmap::IndexMap;
use serde_json::Value;

use crate::config::{Config, UseCaseConfig};
use crate::internal_events::{
    EventsAccepted, EventsRejected, OrderKeyFallback, RoutedToDeadLetters,
};

/// What to do with an event that no enabled use case takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Refuse it (a webhook answers 422): a typo in an event name is loud.
    Reject,
    /// Drop it, counted in `deskbus_source_rejected_events_total{reason="unmatched"}`.
    Drop,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(
        "no enabled use case takes event `{name}` (routing key `{routing_key}`) from source `{source_id}`"
    )]
    Unmatched {
        name: String,
        routing_key: String,
        source_id: String,
    },
    #[error("cannot encode event {id}")]
    Encode {
        id: uuid::Uuid,
        #[source]
        source: serde_json::Error,
    },
    #[error("the spool did not commit the events")]
    Spool(#[from] SpoolError),
}

/// Input a source received but could not turn into an event (a malformed
/// body, an unknown envelope). It is kept as a source dead letter: listed by
/// `deskbus dlq list`, never replayed (there is no event to replay).
#[derive(Debug, Clone)]
pub struct RejectedInput {
    /// Where the input came from upstream, for the operator: an AMQP message
    /// id or delivery tag, a Beanstalk job id...
    pub input_id: String,
    pub raw: Vec<u8>,
    /// Why it was refused, in words an operator can act on.
    pub reason: String,
}

struct Route {
    name: String,
    config: UseCaseConfig,
}

/// Routes events into the spool. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    spool: Spool,
    routes: Arc<Vec<Route>>,
}

impl Ingest {
    pub fn new(spool: Spool, use_cases: &IndexMap<String, UseCaseConfig>) -> Ingest {
        let routes = use_cases
            .iter()
            .filter(|(_, u)| u.enabled)
            .map(|(name, u)| Route {
                name: name.clone(),
                config: u.clone(),
            })
            .collect();
        Ingest {
            spool,
            routes: Arc::new(routes),
        }
    }

    pub fn from_config(spool: Spool, config: &Config) -> Ingest {
        Ingest::new(spool, &config.use_cases)
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    fn routes_for<'a>(&'a self, event: &'a Event) -> impl Iterator<Item = &'a Route> + 'a {
        self.routes.iter().filter(move |r| {
            r.config.inputs.contains(&event.source)
                && (r.config.events.contains(&event.name)
                    || r.config
                        .routing_keys
                        .iter()
                        .any(|p| p.matches(&event.routing_key)))
        })
    }

    /// True when some enabled use case takes `event`.
    pub fn is_routed(&self, event: &Event) -> bool {
        self.routes_for(event).next().is_some()
    }

    /// Commits `events` (and `cursor`) durably. With [`Unmatched::Reject`],
    /// one unmatched event refuses the whole batch before anything is written.
    pub async fn submit(
        &self,
        source: &str,
        events: &[Event],
        cursor: Option<(String, String)>,
        unmatched: Unmatched,
    ) -> Result<(), IngestError> {
        self.submit_with_rejects(source, events, Vec::new(), cursor, unmatched)
            .await
    }

    /// Like [`Ingest::submit`], and commits `rejected` input (what the source
    /// could not turn into events) to dead letters in the same transaction, so
    /// the source can acknowledge all of it upstream without a redelivery loop.
    pub async fn submit_with_rejects(
        &self,
        source: &str,
        events: &[Event],
        rejected: Vec<RejectedInput>,
        cursor: Option<(String, String)>,
        unmatched: Unmatched,
    ) -> Result<(), IngestError> {
        let mut batch = AppendBatch {
            cursor,
            ..AppendBatch::default()
        };
        for input in rejected {
            EventsRejected {
                source,
                count: 1,
                reason: "malformed",
            }
            .emit();
            tracing::warn!(source, input_id = %input.input_id, reason = %input.reason, "input sent to dead letters");
            batch.dead_letters.push(NewDeadLetter {
                entry: NewEntry {
                    stream: String::new(),
                    use_case: source.to_owned(),
                    queue: String::new(),
                    order_key: String::new(),
                    event_id: input.input_id,
                    payload: input.raw,
                },
                reason: input.reason,
            });
        }
        let mut dropped = 0;
        for event in events {
            let mut routed = false;
            let mut payload: Option<Vec<u8>> = None;
            for route in self.routes_for(event) {
                routed = true;
                let payload = match &payload {
                    Some(p) => p.clone(),
                    None => {
                        let p =
                            serde_json::to_vec(event).map_err(|source| IngestError::Encode {
                                id: event.id,
                                source,
                            })?;
                        payload.insert(p).clone()
                    }
                };
                let (order_key, not_rendered) = order_key(route.config.order_key.as_ref(), event);
                if let Some(reason) = not_rendered {
                    OrderKeyFallback {
                        use_case: &route.name,
                        event_id: &event.id.to_string(),
                        reason: &reason,
                        fallback: &order_key,
                    }
                    .emit();
                }
                let entry = |queue: &str| NewEntry {
                    stream: route.config.stream.clone(),
                    use_case: route.name.clone(),
                    queue: queue.to_owned(),
                    order_key: order_key.clone(),
                    event_id: event.id.to_string(),
                    payload: payload.clone(),
                };
                match route.config.queue.render(event) {
                    Ok(queue) => batch.entries.push(entry(&queue)),
                    Err(error) => {
                        RoutedToDeadLetters {
                            use_case: &route.name,
                            event_id: &event.id.to_string(),
                            reason: &error.to_string(),
                        }
                        .emit();
                        batch.dead_letters.push(NewDeadLetter {
                            // No queue: a replay renders it again with the
                            // config in force then (see the dispatcher).
                            entry: entry(""),
                            reason: format!(
                                "queue template {:?}: {error}",
                                route.config.queue.as_str()
                            ),
                        });
                    }
                }
            }
            if !routed {
                match unmatched {
                    Unmatched::Reject => {
                        EventsRejected {
                            source,
                            count: events.len(),
                            reason: "unmatched",
                        }
                        .emit();
                        return Err(IngestError::Unmatched {
                            name: event.name.clone(),
                            routing_key: event.routing_key.clone(),
                            source_id: source.to_owned(),
                        });
                    }
                    Unmatched::Drop => dropped += 1,
                }
            }
        }
        if dropped > 0 {
            EventsRejected {
                source,
                count: dropped,
                reason: "unmatched",
            }
            .emit();
        }
        self.spool.append(batch).await?;
        EventsAccepted {
            source,
            count: events.len() - dropped,
        }
        .emit();
        Ok(())
    }
}

/// `event`'s order key in a use case with `template`: what the template
/// renders, else the default; and why the template could not be rendered,
/// if it could not.
fn order_key(template: Option<&Template>, event: &Event) -> (String, Option<String>) {
    match template.map(|t| t.render(event)) {
        Some(Ok(key)) => (key, None),
        Some(Err(error)) => (default_order_key(event), Some(error.to_string())),
        None => (default_order_key(event), None),
    }
}

/// The order key without a template: events of one ticket are delivered
/// in order; others are independent.
fn default_order_key(event: &Event) -> String {
    match event.field("ticket_id") {
        Some(Value::String(id)) => format!("ticket:{id}"),
        Some(Value::Number(id)) => format!("ticket:{id}"),
        _ => format!("event:{}", event.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn order_key_prefers_template_then_ticket_id() {
        let e = Event::new("s", "n", "o", json!({"ticket_id": 7, "dept": "x"}));
        let dept = Template::parse("{dept}").unwrap();
        assert_eq!(order_key(None, &e), ("ticket:7".to_owned(), None));
        assert_eq!(order_key(Some(&dept), &e), ("x".to_owned(), None));
        let e = Event::new("s", "n", "o", json!({"ticket_id": 8}));
        let (key, not_rendered) = order_key(Some(&dept), &e);
        assert_eq!(key, "ticket:8", "the default, when the template fails");
        assert!(not_rendered.is_some_and(|why| why.contains("dept")));
        let e = Event::new("s", "n", "o", json!({}));
        assert_eq!(order_key(None, &e), (format!("event:{}", e.id), None));
    }
}
