//! `type = "demo"`: a small simulated help desk.

mod config;

use std::time::Duration;

pub use config::DemoConfig;
use deskbus_event::Event;
use serde_json::{Value, json};

use super::SourceContext;
use crate::internal_events::{ComponentFailed, EventsReceived};
use crate::use_cases::Unmatched;

const DEPARTMENTS: &[(u64, &str)] = &[
    (1, "Support"),
    (2, "Sales"),
    (3, "Billing"),
    (4, "Maintenance"),
];
const TOPICS: &[(u64, &str)] = &[
    (1, "Feedback"),
    (2, "General Inquiry"),
    (10, "Report a Problem"),
    (11, "Report a Problem / Access Issue"),
    (12, "Billing / Refund"),
];
const AGENTS: &[&str] = &["Alex Moreau", "Priya Nair", "Jonas Berg", "Mei Tanaka"];
const USERS: &[(&str, &str)] = &[
    ("Ada Lovelace", "ada@example.com"),
    ("Grace Hopper", "grace@example.com"),
    ("Linus Pauling", "linus@example.org"),
    ("Katherine Johnson", "kj@example.net"),
];
const SUBJECTS: &[&str] = &[
    "Cannot log in",
    "Invoice is wrong",
    "Printer on fire",
    "Feature request",
    "VPN drops every hour",
];

/// A ticket the simulation keeps alive between events.
struct Ticket {
    id: u64,
    number: String,
    department: (u64, &'static str),
}

pub(crate) struct Generator {
    rng: fastrand::Rng,
    next_id: u64,
    open: Vec<Ticket>,
    helpdesk_code: Option<String>,
}

impl Generator {
    pub(crate) fn new(seed: u64, helpdesk_code: Option<String>) -> Generator {
        Generator {
            rng: fastrand::Rng::with_seed(seed),
            next_id: 1,
            open: Vec::new(),
            helpdesk_code,
        }
    }

    /// The next event: a new ticket about half the time (always when none is
    /// open), otherwise something happening to an open one.
    pub(crate) fn next(&mut self, source: &str, origin: &str) -> Event {
        if self.open.is_empty() || self.open.len() < 50 && self.rng.bool() {
            return self.created(source, origin);
        }
        let i = self.rng.usize(..self.open.len());
        let (name, extra) = match self.rng.u8(..10) {
            0..=2 => {
                // The fields the osticket source gives a customer's message.
                let (user_name, user_email) = *self.rng.choice(USERS).unwrap_or(&USERS[0]);
                (
                    "ticket.message",
                    json!({ "body": "Any news on this?", "poster": user_name,
                            "user_name": user_name, "user_email": user_email }),
                )
            }
            3..=5 => (
                "ticket.response",
                json!({ "body": "We are looking into it.", "agent_name": self.rng.choice(AGENTS) }),
            ),
            6 => (
                "ticket.note",
                json!({ "body": "Escalating to level 2.", "agent_name": self.rng.choice(AGENTS) }),
            ),
            7 | 8 => (
                "ticket.assigned",
                json!({ "agent_name": self.rng.choice(AGENTS) }),
            ),
            _ => (
                "ticket.closed",
                json!({ "status_name": "Closed", "status_state": "closed" }),
            ),
        };
        let ticket = &self.open[i];
        let mut data = json!({
            "helpdesk_code": self.helpdesk_code,
            "datetime_complete": now_text(),
            "ticket_id": ticket.id,
            "ticket_number": ticket.number,
            "department_id": ticket.department.0,
            "department_name": ticket.department.1,
        });
        merge(&mut data, extra);
        if name == "ticket.closed" {
            self.open.swap_remove(i);
        }
        Event::new(source, name, origin, data)
    }

    fn created(&mut self, source: &str, origin: &str) -> Event {
        let id = self.next_id;
        self.next_id += 1;
        let department = *self.rng.choice(DEPARTMENTS).unwrap_or(&DEPARTMENTS[0]);
        let topic = *self.rng.choice(TOPICS).unwrap_or(&TOPICS[0]);
        let user = *self.rng.choice(USERS).unwrap_or(&USERS[0]);
        let number = format!("{:06}", 100_000 + id);
        // The seed's tickets-creation fields first, in the seed's order: CSV
        // columns follow this order.
        let data = json!({
            "helpdesk_code": self.helpdesk_code,
            "datetime_complete": now_text(),
            "department_id": department.0,
            "department_name": department.1,
            "helptopic_id": topic.0,
            "helptopic_label": topic.1,
            "ticket_id": id,
            "ticket_number": number,
            "subject": self.rng.choice(SUBJECTS),
            "user_name": user.0,
            "user_email": user.1,
            "priority": self.rng.choice(["low", "normal", "high"]),
        });
        self.open.push(Ticket {
            id,
            number,
            department,
        });
        Event::new(source, "ticket.created", origin, data)
    }
}

/// osTicket's DATETIME text, in UTC.
fn now_text() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(into), Value::Object(extra)) = (into, extra) {
        into.extend(extra);
    }
}

pub(crate) async fn run(config: DemoConfig, ctx: SourceContext) {
    let mut generator = Generator::new(fastrand::u64(..), ctx.helpdesk_code.clone());
    let mut shutdown = ctx.shutdown.clone();
    ctx.ready.mark_ready();
    // Emit in ticks of at most 100 ms so a high rate commits in batches.
    let tick = Duration::from_millis(100).min(
        Duration::try_from_secs_f64(1.0 / config.rate)
            .unwrap_or(Duration::MAX)
            .max(Duration::from_millis(1)),
    );
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_tick = config.rate * tick.as_secs_f64();
    let mut owed = 0.0;
    let mut produced = 0u64;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.wait() => return,
        }
        owed += per_tick;
        let mut n = owed.floor() as u64;
        owed -= n as f64;
        if config.count > 0 {
            n = n.min(config.count - produced);
        }
        if n == 0 {
            continue;
        }
        let events: Vec<Event> = (0..n)
            .map(|_| generator.next(&ctx.id, &ctx.origin_uuid))
            .collect();
        EventsReceived {
            source: &ctx.id,
            count: events.len(),
        }
        .emit();
        // Demo events no use case wants are dropped (and counted), not refused:
        // there is nobody to refuse them to.
        // Events the spool refused do not count: `count` is what was queued.
        match ctx
            .ingest
            .submit(&ctx.id, &events, None, Unmatched::Drop)
            .await
        {
            Ok(()) => produced += n,
            Err(error) => ComponentFailed {
                component: &ctx.id,
                error: &error,
            }
            .emit(),
        }
        if config.count > 0 && produced >= config.count {
            tracing::info!(source = %ctx.id, produced, "demo source finished its count");
            shutdown.wait().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_plausible_help_desk() {
        let mut g = Generator::new(7, Some("ACME".into()));
        let events: Vec<Event> = (0..500).map(|_| g.next("demo", "o")).collect();
        let names: std::collections::BTreeSet<&str> =
            events.iter().map(|e| e.name.as_str()).collect();
        for name in [
            "ticket.created",
            "ticket.message",
            "ticket.response",
            "ticket.note",
            "ticket.assigned",
            "ticket.closed",
        ] {
            assert!(names.contains(name), "{name} never generated");
        }
        let created = events.iter().find(|e| e.name == "ticket.created").unwrap();
        let keys: Vec<&String> = created.data.as_object().unwrap().keys().take(6).collect();
        assert_eq!(
            keys,
            [
                "helpdesk_code",
                "datetime_complete",
                "department_id",
                "department_name",
                "helptopic_id",
                "helptopic_label"
            ]
        );
        assert_eq!(created.data["helpdesk_code"], "ACME");
        let message = events.iter().find(|e| e.name == "ticket.message").unwrap();
        assert!(message.data["user_email"].as_str().unwrap().contains('@'));
        assert!(message.data["user_name"].is_string());
        // Every event about a ticket refers to one that was created before it.
        let mut seen = std::collections::HashSet::new();
        for e in &events {
            let id = e.data["ticket_id"].as_u64().unwrap();
            if e.name == "ticket.created" {
                assert!(seen.insert(id));
            } else {
                assert!(seen.contains(&id), "{} for unknown ticket {id}", e.name);
            }
        }
    }
}
