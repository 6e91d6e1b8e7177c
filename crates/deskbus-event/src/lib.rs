//! The deskbus event envelope and the small, pure languages that address it.
//!
//! Every source turns what it captures into an [`Event`]: the XiVO bus shape
//! `{name, origin_uuid, data}` plus an `id` (UUIDv7, the idempotency key every
//! stream uses), a `time` (RFC 3339, UTC), the `source` component id and a
//! dot-separated `routing_key`.
//!
//! ```
//! use deskbus_event::{EnvelopeInput, Template, RoutingPattern};
//!
//! let input: EnvelopeInput = serde_json::from_str(
//!     r#"{"name":"ticket.created","data":{"ticket_id":7,"department":{"name":"Sales"}}}"#,
//! ).unwrap();
//! let event = input.into_event("web", "2b1c1f3e-2a39-4f0e-9a43-8d1f4c9d1e77").unwrap();
//! assert_eq!(event.routing_key, "ticket.created");
//!
//! let queue = Template::parse("tickets.{department.name}.{priority:-normal}").unwrap();
//! assert_eq!(queue.render(&event).unwrap(), "tickets.Sales.normal");
//!
//! assert!(RoutingPattern::parse("ticket.#").unwrap().matches(&event.routing_key));
//! ```
//!
//! Invariant: this crate does no I/O and knows nothing of sources, streams or
//! the config file. It must stay cheap to compile and safe to fuzz.

mod envelope;
pub mod names;
mod routing;
mod template;

pub use envelope::{EnvelopeError, EnvelopeInput, Event, check_event_name};
pub use routing::{RoutingPattern, RoutingPatternError};
pub use template::{Template, TemplateError};
