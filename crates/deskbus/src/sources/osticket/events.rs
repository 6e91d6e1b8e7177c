//! Turns osTicket rows into deskbus events. Pure: every lookup it needs is
//! handed in, so the shapes are unit-tested without a database.
//!
//! Field conventions, the same in every event:
//! - `helpdesk_code`, `datetime_complete` (osTicket's own DATETIME text, in
//!   the database server's zone, as the PHP plugin sent it), `ticket_id`,
//!   `ticket_number`, `department_id`, `department_name` (full name,
//!   `Parent / Child`) come first (the presets' `TICKET_FIELDS`); then the
//!   event's own fields; then the ticket's context: `helptopic_id` (0 when
//!   none), `helptopic_label` (`Parent / Child`, null when none), `subject`,
//!   `status_id`, `status_name`, `status_state`, `user_id`, `user_name`,
//!   `user_email`, `staff_id`, `agent_name`, `assignee_id`,
//!   `assignee_name`, `team_id`, `priority`, `thread_id`.
//! - `user_*` is the ticket's end user, except in `ticket.message`, where
//!   it is the message's author (a collaborator may write).
//! - `staff_id`/`agent_name` is the agent the event is about: the author of
//!   a response or note, the new assignee of `ticket.assigned`, otherwise
//!   the ticket's assignee. `assignee_*` is always the ticket's assignee.
//! - Events from `thread_event` carry the department, help topic and
//!   assignee recorded *with the event*, so a backfill shows them as they
//!   were; everything else is the ticket as it is when read.
//! - `entry_id` or `thread_event_id` names the osTicket row; the event id
//!   is derived from it (and the origin and source), so the same row
//!   always yields the same event id.

use std::collections::HashMap;

use deskbus_event::Event;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::config::TimeZoneSetting;
use super::db::{AttachmentRow, DbTime, EntryRow, EventRow, Lookups, TicketRow, UserRow};

/// `thread_entry.flags` bits (include/class.thread.php).
const FLAG_ORIGINAL_MESSAGE: u64 = 0x1;
const FLAG_SYSTEM: u64 = 0x80;

/// What an event is built from, besides its row.
pub(super) struct Context<'a> {
    pub source: &'a str,
    pub origin: &'a str,
    pub helpdesk_code: Option<&'a str>,
    pub zone: &'a TimeZoneSetting,
    pub lookups: &'a Lookups,
    /// thread id → its ticket, as it is now.
    pub tickets: &'a HashMap<u64, TicketRow>,
    /// user id → name and e-mail (authors of messages).
    pub users: &'a HashMap<u64, UserRow>,
    /// entry id → its attachments.
    pub attachments: &'a HashMap<u64, Vec<AttachmentRow>>,
    /// thread_event id of a `transferred` → the department before it.
    pub previous_depts: &'a HashMap<u64, u64>,
    /// thread id → (ticket id, number), kept by the source for deletes.
    pub threads: &'a HashMap<u64, (u64, String)>,
}

/// The deskbus event an osTicket `thread_event` name becomes.
pub(super) fn event_name(osticket: &str) -> Option<&'static str> {
    Some(match osticket.to_ascii_lowercase().as_str() {
        "created" => "ticket.created",
        "closed" => "ticket.closed",
        "reopened" => "ticket.reopened",
        "assigned" => "ticket.assigned",
        "transferred" => "ticket.transferred",
        "edited" => "ticket.edited",
        "deleted" => "ticket.deleted",
        _ => return None,
    })
}

/// A name with its ancestors, root first: `Parent / Child`. Loops (a bad
/// `pid`) are cut; an unknown id is `None`.
pub(super) fn full_name(map: &HashMap<u64, (u64, String)>, id: u64) -> Option<String> {
    let mut parts = Vec::new();
    let mut seen = Vec::new();
    let mut next = id;
    while next != 0 && !seen.contains(&next) && parts.len() < 32 {
        seen.push(next);
        let Some((parent, name)) = map.get(&next) else {
            break;
        };
        parts.push(name.as_str());
        next = *parent;
    }
    if parts.is_empty() {
        return None;
    }
    parts.reverse();
    Some(parts.join(" / "))
}

/// The event id for an osTicket row: a UUIDv7 whose time is the row's and
/// whose other bits are a hash of where the row comes from. A row read
/// twice (a reset position, a second deskbus on the same spool) gives the
/// same id, which streams use to de-duplicate.
pub(super) fn stable_id(
    origin: &str,
    source: &str,
    table: &str,
    row: u64,
    time: jiff::Timestamp,
) -> uuid::Uuid {
    let mut hash = Sha256::new();
    for part in [origin, source, table] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.update(row.to_be_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&digest[..10]);
    let millis = u64::try_from(time.as_millisecond()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}

fn nonzero(id: u64) -> Value {
    if id == 0 { Value::Null } else { id.into() }
}

impl Context<'_> {
    fn event(
        &self,
        name: &str,
        table: &str,
        row: u64,
        time: &DbTime,
        data: Map<String, Value>,
    ) -> Event {
        let at = time.to_utc(self.zone);
        let mut event = Event::new(self.source, name, self.origin, Value::Object(data));
        // A zero date has no time. The id must still be the same each time
        // the row is read, so it takes the epoch; the event is stamped with
        // the time it was read.
        let id_time = at.unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        event.id = stable_id(self.origin, self.source, table, row, id_time);
        event.time = at.unwrap_or_else(jiff::Timestamp::now);
        event
    }

    fn dept_name(&self, id: u64) -> Value {
        opt(full_name(&self.lookups.departments, id))
    }

    fn topic_label(&self, id: u64) -> Value {
        opt(full_name(&self.lookups.topics, id))
    }

    fn staff_name(&self, id: u64) -> Value {
        opt(self.lookups.staff.get(&id).map(|(_, name)| name.clone()))
    }

    fn priority(&self, ticket: &TicketRow) -> Value {
        let raw = ticket
            .priority
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty());
        match raw.and_then(|p| p.parse::<u64>().ok()) {
            Some(id) => opt(self
                .lookups
                .priorities
                .get(&id)
                .map(|(key, _)| key.clone())
                .or_else(|| raw.map(str::to_owned))),
            None => opt(raw),
        }
    }

    /// The identity fields every preset starts with.
    fn head(
        &self,
        datetime: &DbTime,
        ticket_id: Value,
        number: Value,
        dept_id: u64,
    ) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("helpdesk_code".into(), opt(self.helpdesk_code));
        m.insert("datetime_complete".into(), opt(datetime.text.clone()));
        m.insert("ticket_id".into(), ticket_id);
        m.insert("ticket_number".into(), number);
        m.insert("department_id".into(), dept_id.into());
        m.insert("department_name".into(), self.dept_name(dept_id));
        m
    }

    /// The ticket's context, after the event's own fields. Keys already
    /// set by the event are kept.
    fn context(
        &self,
        m: &mut Map<String, Value>,
        ticket: &TicketRow,
        topic_id: u64,
        assignee: u64,
    ) {
        let status = self.lookups.statuses.get(&ticket.status_id);
        let fields = [
            ("helptopic_id", topic_id.into()),
            ("helptopic_label", self.topic_label(topic_id)),
            ("subject", opt(ticket.subject.clone())),
            ("status_id", nonzero(ticket.status_id)),
            ("status_name", opt(status.map(|s| s.0.clone()))),
            ("status_state", opt(status.map(|s| s.1.clone()))),
            ("user_id", nonzero(ticket.user_id)),
            ("user_name", opt(ticket.user_name.clone())),
            ("user_email", opt(ticket.user_email.clone())),
            ("staff_id", nonzero(assignee)),
            ("agent_name", self.staff_name(assignee)),
            ("assignee_id", nonzero(assignee)),
            ("assignee_name", self.staff_name(assignee)),
            ("team_id", nonzero(ticket.team_id)),
            ("priority", self.priority(ticket)),
            ("thread_id", ticket.thread_id.into()),
        ];
        for (key, value) in fields {
            m.entry(key).or_insert(value);
        }
    }

    /// `ticket.message`, `ticket.response` or `ticket.note` for an entry;
    /// `None` for what is not one (a task's entry, the ticket's first
    /// message — `ticket.created` announces it — or a ticket already gone).
    pub fn for_entry(&self, row: &EntryRow) -> Option<Event> {
        let name = match row.kind.as_str() {
            "M" if row.flags & FLAG_ORIGINAL_MESSAGE == 0 => "ticket.message",
            "R" => "ticket.response",
            "N" => "ticket.note",
            _ => return None,
        };
        let ticket = self.tickets.get(&row.thread_id)?;
        let mut m = self.head(
            &row.created,
            ticket.ticket_id.into(),
            opt(ticket.number.clone()),
            ticket.dept_id,
        );
        m.insert("entry_id".into(), row.id.into());
        m.insert("reply_to_entry_id".into(), nonzero(row.pid));
        match name {
            "ticket.message" => {
                // The author, who may be a collaborator rather than the owner.
                let author = self.users.get(&row.user_id);
                let (user_name, user_email) = match author {
                    Some(u) => (u.name.clone(), u.email.clone()),
                    None => (ticket.user_name.clone(), ticket.user_email.clone()),
                };
                m.insert("user_id".into(), nonzero(row.user_id));
                m.insert("user_name".into(), opt(user_name));
                m.insert("user_email".into(), opt(user_email));
                m.insert(
                    "from_collaborator".into(),
                    (row.user_id != 0 && row.user_id != ticket.user_id).into(),
                );
            }
            _ => {
                m.insert("staff_id".into(), nonzero(row.staff_id));
                m.insert("agent_name".into(), self.staff_name(row.staff_id));
                m.insert(
                    "agent_username".into(),
                    opt(self.lookups.staff.get(&row.staff_id).map(|s| s.0.clone())),
                );
                if name == "ticket.note" {
                    m.insert(
                        "system_note".into(),
                        (row.staff_id == 0 || row.flags & FLAG_SYSTEM != 0).into(),
                    );
                }
            }
        }
        m.insert("poster".into(), opt(row.poster.clone()));
        m.insert("title".into(), opt(row.title.clone()));
        m.insert("body".into(), opt(row.body.clone()));
        m.insert("format".into(), opt(row.format.clone()));
        m.insert(
            "channel".into(),
            opt(row.source.clone().filter(|s| !s.is_empty())),
        );
        let attachments: Vec<Value> = self
            .attachments
            .get(&row.id)
            .map(|list| {
                list.iter()
                    .map(|a| {
                        json!({
                            "id": a.id, "file_id": a.file_id, "name": a.name,
                            "mime_type": a.mime, "size": a.size, "inline": a.inline,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        m.insert("attachments".into(), Value::Array(attachments));
        self.context(&mut m, ticket, ticket.topic_id, ticket.staff_id);
        Some(self.event(name, "thread_entry", row.id, &row.created, m))
    }

    /// The event for a `thread_event` row; `None` for names deskbus does
    /// not emit, tasks' events, and events whose ticket is unknown.
    pub fn for_event(&self, row: &EventRow) -> Option<Event> {
        let name = event_name(row.name.as_deref()?)?;
        if row.thread_type.as_deref().is_some_and(|t| t != "T") {
            return None; // a task's
        }
        let data: Value = row
            .data
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(Value::Null);
        if name == "ticket.deleted" {
            return Some(self.deleted(row, data));
        }
        let ticket = self.tickets.get(&row.thread_id)?;
        // The department, topic and assignee recorded with the event; 0
        // (not recorded) falls back to the ticket's.
        let dept_id = if row.dept_id != 0 {
            row.dept_id
        } else {
            ticket.dept_id
        };
        let topic_id = if row.topic_id != 0 || name == "ticket.created" {
            row.topic_id
        } else {
            ticket.topic_id
        };
        let (time, datetime) = match name {
            // The seed's `datetime_complete` is the ticket's creation time.
            "ticket.created" if ticket.created.text.is_some() => (&row.timestamp, &ticket.created),
            _ => (&row.timestamp, &row.timestamp),
        };
        let mut m = self.head(
            datetime,
            ticket.ticket_id.into(),
            opt(ticket.number.clone()),
            dept_id,
        );
        if name == "ticket.created" {
            // The seed's six fields first, in its order (CSV columns follow).
            let mut first = Map::new();
            for key in [
                "helpdesk_code",
                "datetime_complete",
                "department_id",
                "department_name",
            ] {
                if let Some(v) = m.remove(key) {
                    first.insert(key.into(), v);
                }
            }
            first.insert("helptopic_id".into(), topic_id.into());
            first.insert("helptopic_label".into(), self.topic_label(topic_id));
            first.append(&mut m);
            m = first;
            m.insert("channel".into(), opt(ticket.source.clone()));
        }
        m.insert("thread_event_id".into(), row.id.into());
        let mut assignee = if row.staff_id != 0 {
            row.staff_id
        } else {
            ticket.staff_id
        };
        match name {
            "ticket.closed" | "ticket.reopened" => {
                // `{"status":[3,"Closed"]}`: the status set by this event.
                let status_id = data["status"][0].as_u64().unwrap_or(ticket.status_id);
                let known = self.lookups.statuses.get(&status_id);
                let status_name = known
                    .map(|s| s.0.clone())
                    .or_else(|| data["status"][1].as_str().map(str::to_owned));
                m.insert("status_id".into(), nonzero(status_id));
                m.insert("status_name".into(), opt(status_name));
                m.insert("status_state".into(), opt(known.map(|s| s.1.clone())));
            }
            "ticket.assigned" => {
                // `{"staff":[2,"Bob Agent"]}` or `{"team":…}`.
                if let Some(id) = data["staff"][0].as_u64().or(data["staff"].as_u64()) {
                    assignee = id;
                }
                m.insert("staff_id".into(), nonzero(assignee));
                let name = self
                    .lookups
                    .staff
                    .get(&assignee)
                    .map(|s| s.1.clone())
                    .or_else(|| data["staff"][1].as_str().map(str::to_owned));
                m.insert("agent_name".into(), opt(name));
                let team = data["team"][0]
                    .as_u64()
                    .or(data["team"].as_u64())
                    .unwrap_or(row.team_id);
                m.insert("team_id".into(), nonzero(team));
                m.insert(
                    "team_name".into(),
                    opt(self.lookups.teams.get(&team).cloned().filter(|_| team != 0)),
                );
            }
            "ticket.transferred" => {
                let previous = self
                    .previous_depts
                    .get(&row.id)
                    .copied()
                    .filter(|&d| d != dept_id);
                m.insert("previous_department_id".into(), opt(previous));
                m.insert(
                    "previous_department_name".into(),
                    previous.map_or(Value::Null, |d| self.dept_name(d)),
                );
            }
            "ticket.edited" => {
                // `{"topic_id":[old,new]}`, or other fields' changes.
                let (old_topic, new_topic) = match &data["topic_id"] {
                    Value::Array(pair) if pair.len() == 2 => (pair[0].as_u64(), pair[1].as_u64()),
                    _ => (None, None),
                };
                let topic = new_topic.unwrap_or(topic_id);
                m.insert("helptopic_id".into(), topic.into());
                m.insert("helptopic_label".into(), self.topic_label(topic));
                let changed: Vec<Value> = data
                    .as_object()
                    .map(|o| o.keys().map(|k| Value::from(k.as_str())).collect())
                    .unwrap_or_default();
                m.insert("changed_fields".into(), Value::Array(changed));
                m.insert("previous_helptopic_id".into(), opt(old_topic));
                m.insert(
                    "previous_helptopic_label".into(),
                    old_topic.map_or(Value::Null, |t| self.topic_label(t)),
                );
                m.insert("changes".into(), data.clone());
            }
            _ => {}
        }
        self.actor(&mut m, row);
        self.context(&mut m, ticket, topic_id, assignee);
        Some(self.event(name, "thread_event", row.id, time, m))
    }

    fn actor(&self, m: &mut Map<String, Value>, row: &EventRow) {
        let kind = match (row.uid_type.as_deref(), row.username.as_deref()) {
            (_, Some("SYSTEM")) => "system",
            (Some("U"), _) => "user",
            (Some("S"), _) => "staff",
            _ => "system",
        };
        m.insert("actor_type".into(), kind.into());
        m.insert("actor_id".into(), opt(row.uid.filter(|&u| u != 0)));
        m.insert("actor_username".into(), opt(row.username.clone()));
    }

    /// `ticket.deleted`: osTicket has removed the ticket, its thread and
    /// entries; what identifies it is what the source remembered of the
    /// thread (null when the ticket was deleted before deskbus knew it).
    fn deleted(&self, row: &EventRow, _data: Value) -> Event {
        let known = self.threads.get(&row.thread_id);
        let mut m = self.head(
            &row.timestamp,
            opt(known.map(|k| k.0)),
            opt(known.map(|k| k.1.clone())),
            row.dept_id,
        );
        m.insert("thread_event_id".into(), row.id.into());
        self.actor(&mut m, row);
        m.insert("helptopic_id".into(), row.topic_id.into());
        m.insert("helptopic_label".into(), self.topic_label(row.topic_id));
        m.insert("staff_id".into(), nonzero(row.staff_id));
        m.insert("agent_name".into(), self.staff_name(row.staff_id));
        m.insert("thread_id".into(), row.thread_id.into());
        self.event("ticket.deleted", "thread_event", row.id, &row.timestamp, m)
    }

    /// `ticket.deleted` found by the sweep (osTicket 1.10 logs no event).
    pub fn swept(&self, thread_id: u64, ticket_id: u64, number: &str, now: &DbTime) -> Event {
        let mut m = self.head(now, ticket_id.into(), number.into(), 0);
        m.insert("department_id".into(), Value::Null);
        m.insert("thread_id".into(), thread_id.into());
        m.insert("detected_by".into(), "sweep".into());
        self.event("ticket.deleted", "ticket_sweep", ticket_id, now, m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookups() -> Lookups {
        let mut l = Lookups::default();
        l.departments.insert(1, (0, "Support".into()));
        l.departments.insert(2, (0, "Sales".into()));
        l.departments.insert(4, (1, "Level 2".into()));
        l.topics.insert(10, (0, "Report a Problem".into()));
        l.topics.insert(11, (10, "Access Issue".into()));
        l.statuses.insert(1, ("Open".into(), "open".into()));
        l.statuses.insert(3, ("Closed".into(), "closed".into()));
        l.staff.insert(2, ("bob".into(), "Bob Agent".into()));
        l.priorities.insert(2, ("normal".into(), "Normal".into()));
        l
    }

    fn ticket() -> TicketRow {
        TicketRow {
            thread_id: 70,
            ticket_id: 7,
            number: Some("719217".into()),
            dept_id: 4,
            topic_id: 11,
            status_id: 1,
            staff_id: 0,
            user_id: 5,
            source: Some("API".into()),
            created: time("2024-01-02 03:04:05", 1_704_164_645),
            subject: Some("Printer on fire".into()),
            priority: Some("2".into()),
            user_name: Some("Ada".into()),
            user_email: Some("ada@example.com".into()),
            ..TicketRow::default()
        }
    }

    fn time(text: &str, unix: i64) -> DbTime {
        DbTime {
            text: Some(text.into()),
            unix: Some(unix),
        }
    }

    struct Fixture {
        lookups: Lookups,
        tickets: HashMap<u64, TicketRow>,
        users: HashMap<u64, UserRow>,
        attachments: HashMap<u64, Vec<AttachmentRow>>,
        previous: HashMap<u64, u64>,
        threads: HashMap<u64, (u64, String)>,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                lookups: lookups(),
                tickets: HashMap::from([(70, ticket())]),
                users: HashMap::new(),
                attachments: HashMap::new(),
                previous: HashMap::new(),
                threads: HashMap::from([(70, (7, "719217".into()))]),
            }
        }

        fn ctx(&self) -> Context<'_> {
            Context {
                source: "ost",
                origin: "o",
                helpdesk_code: Some("ACME"),
                zone: &TimeZoneSetting::Server,
                lookups: &self.lookups,
                tickets: &self.tickets,
                users: &self.users,
                attachments: &self.attachments,
                previous_depts: &self.previous,
                threads: &self.threads,
            }
        }
    }

    fn event_row(id: u64, name: &str, data: Option<&str>) -> EventRow {
        EventRow {
            id,
            thread_id: 70,
            name: Some(name.into()),
            staff_id: 0,
            team_id: 0,
            dept_id: 4,
            topic_id: 11,
            data: data.map(str::to_owned),
            username: Some("SYSTEM".into()),
            uid: None,
            uid_type: Some("S".into()),
            annulled: false,
            timestamp: time("2024-01-02 03:04:06", 1_704_164_646),
            thread_type: Some("T".into()),
        }
    }

    #[test]
    fn names_walk_their_parents() {
        let l = lookups();
        assert_eq!(
            full_name(&l.topics, 11).as_deref(),
            Some("Report a Problem / Access Issue")
        );
        assert_eq!(
            full_name(&l.departments, 4).as_deref(),
            Some("Support / Level 2")
        );
        assert_eq!(full_name(&l.topics, 0), None);
        let mut looped = HashMap::new();
        looped.insert(1, (2, "A".to_owned()));
        looped.insert(2, (1, "B".to_owned()));
        assert_eq!(full_name(&looped, 1).as_deref(), Some("B / A"));
    }

    #[test]
    fn a_zero_date_row_keeps_its_id_from_read_to_read() {
        let f = Fixture::new();
        let mut row = event_row(9, "created", None);
        row.timestamp = DbTime {
            text: None,
            unix: None,
        };
        let first = f.ctx().for_event(&row).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let again = f.ctx().for_event(&row).unwrap();
        assert_eq!(first.id, again.id);
        let dated = f.ctx().for_event(&event_row(9, "created", None)).unwrap();
        assert_ne!(first.id, dated.id, "the time is part of the id");
    }

    #[test]
    fn created_starts_with_the_seed_fields() {
        let f = Fixture::new();
        let e = f.ctx().for_event(&event_row(9, "created", None)).unwrap();
        assert_eq!(e.name, "ticket.created");
        assert_eq!(e.routing_key, "ticket.created");
        let keys: Vec<&str> = e
            .data
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys[..8],
            [
                "helpdesk_code",
                "datetime_complete",
                "department_id",
                "department_name",
                "helptopic_id",
                "helptopic_label",
                "ticket_id",
                "ticket_number"
            ]
        );
        assert_eq!(e.data["datetime_complete"], "2024-01-02 03:04:05");
        assert_eq!(e.data["department_name"], "Support / Level 2");
        assert_eq!(e.data["helptopic_label"], "Report a Problem / Access Issue");
        assert_eq!(e.data["status_state"], "open");
        assert_eq!(e.data["priority"], "normal");
        assert_eq!(e.data["user_email"], "ada@example.com");
        assert_eq!(e.data["actor_type"], "system");
        assert_eq!(e.time.to_string(), "2024-01-02T03:04:06Z");
        // Same row, same id.
        let again = f.ctx().for_event(&event_row(9, "created", None)).unwrap();
        assert_eq!(again.id, e.id);
        assert_ne!(
            f.ctx()
                .for_event(&event_row(10, "created", None))
                .unwrap()
                .id,
            e.id
        );
        assert_eq!(e.id.get_version_num(), 7);
    }

    #[test]
    fn no_topic_is_zero_and_null() {
        let mut f = Fixture::new();
        f.tickets.get_mut(&70).unwrap().topic_id = 0;
        let mut row = event_row(9, "created", None);
        row.topic_id = 0;
        let e = f.ctx().for_event(&row).unwrap();
        assert_eq!(e.data["helptopic_id"], 0);
        assert_eq!(e.data["helptopic_label"], Value::Null);
    }

    #[test]
    fn lifecycle_events_carry_their_details() {
        let mut f = Fixture::new();
        let closed = f
            .ctx()
            .for_event(&event_row(11, "closed", Some(r#"{"status":[3,"Closed"]}"#)))
            .unwrap();
        assert_eq!(
            (
                closed.data["status_name"].as_str(),
                closed.data["status_state"].as_str()
            ),
            (Some("Closed"), Some("closed"))
        );
        let assigned = f
            .ctx()
            .for_event(&event_row(
                12,
                "assigned",
                Some(r#"{"staff":[2,"Bob Agent"]}"#),
            ))
            .unwrap();
        assert_eq!(assigned.data["agent_name"], "Bob Agent");
        assert_eq!(assigned.data["staff_id"], 2);
        f.previous.insert(13, 1);
        let mut row = event_row(13, "transferred", Some(r#"{"dept":"Sales"}"#));
        row.dept_id = 2;
        let moved = f.ctx().for_event(&row).unwrap();
        assert_eq!(moved.data["department_name"], "Sales");
        assert_eq!(moved.data["previous_department_name"], "Support");
        let mut row = event_row(14, "edited", Some(r#"{"topic_id":[11,10]}"#));
        row.topic_id = 10;
        let edited = f.ctx().for_event(&row).unwrap();
        assert_eq!(edited.data["helptopic_label"], "Report a Problem");
        assert_eq!(
            edited.data["previous_helptopic_label"],
            "Report a Problem / Access Issue"
        );
        assert_eq!(edited.data["changed_fields"], json!(["topic_id"]));
        assert!(f.ctx().for_event(&event_row(15, "viewed", None)).is_none());
        let mut task = event_row(15, "deleted", None);
        task.thread_type = Some("A".into());
        assert!(f.ctx().for_event(&task).is_none(), "a task's delete");
        let deleted = f.ctx().for_event(&event_row(16, "deleted", None)).unwrap();
        assert_eq!(
            (
                deleted.data["ticket_id"].as_u64(),
                deleted.data["ticket_number"].as_str()
            ),
            (Some(7), Some("719217"))
        );
        f.threads.clear();
        let unknown = f.ctx().for_event(&event_row(16, "deleted", None)).unwrap();
        assert_eq!(unknown.data["ticket_id"], Value::Null);
    }

    #[test]
    fn entries_by_type_with_attachments() {
        let mut f = Fixture::new();
        f.users.insert(
            6,
            UserRow {
                name: Some("Grace".into()),
                email: Some("grace@example.com".into()),
            },
        );
        f.attachments.insert(
            31,
            vec![AttachmentRow {
                entry_id: 31,
                id: 1,
                file_id: 9,
                name: Some("log.txt".into()),
                mime: Some("text/plain".into()),
                size: Some(12),
                inline: false,
            }],
        );
        let entry = |id, kind: &str, flags, staff_id, user_id| EntryRow {
            id,
            thread_id: 70,
            pid: 0,
            staff_id,
            user_id,
            kind: kind.into(),
            flags,
            poster: None,
            source: Some(String::new()),
            title: None,
            body: Some("hello".into()),
            format: Some("text".into()),
            created: time("2024-01-02 03:05:00", 1_704_164_700),
        };
        assert!(
            f.ctx().for_entry(&entry(30, "M", 1, 0, 5)).is_none(),
            "first message"
        );
        let message = f.ctx().for_entry(&entry(31, "M", 512, 0, 6)).unwrap();
        assert_eq!(message.name, "ticket.message");
        assert_eq!(message.data["user_name"], "Grace");
        assert_eq!(message.data["from_collaborator"], true);
        assert_eq!(message.data["attachments"][0]["name"], "log.txt");
        assert_eq!(message.data["channel"], Value::Null);
        let response = f.ctx().for_entry(&entry(32, "R", 64, 2, 0)).unwrap();
        assert_eq!(response.data["agent_name"], "Bob Agent");
        assert_eq!(response.data["assignee_id"], Value::Null);
        let note = f.ctx().for_entry(&entry(33, "N", 0, 0, 0)).unwrap();
        assert_eq!(note.data["system_note"], true);
        let mut task = entry(34, "N", 0, 2, 0);
        task.thread_id = 99;
        assert!(f.ctx().for_entry(&task).is_none());
    }
}
