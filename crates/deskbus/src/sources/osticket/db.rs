//! The osTicket database client: one read-only MySQL session, the schema
//! it found, and the handful of queries the source needs. Rows come back as
//! plain structs; turning them into events is `events.rs`'s job.
//!
//! Every integer is read through [`int_at`], which accepts signed and unsigned
//! columns alike (osTicket's ids are `int unsigned`, some flags `tinyint`),
//! and every string through [`string_at`], which accepts any string or blob
//! column and replaces invalid UTF-8 instead of failing the poll.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, MySql, Row};

use super::config::{OsticketSourceConfig, TimeZoneSetting};

#[derive(Debug, thiserror::Error)]
pub(crate) enum DbError {
    #[error("cannot connect to the osTicket database")]
    Connect(#[source] sqlx::Error),
    #[error("osTicket query failed ({what})")]
    Query {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{0}")]
    Schema(String),
}

/// How `thread_event` names its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventNames {
    /// 1.11+: `thread_event.event_id` → `event.name`.
    Table,
    /// 1.10: the ENUM column `thread_event.state`.
    StateColumn,
}

/// What the connected database holds, found from `information_schema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Schema {
    pub event_names: EventNames,
    pub has_cdata: bool,
    pub has_user_email: bool,
    pub has_attachments: bool,
    pub has_priority: bool,
    pub has_team: bool,
    /// `thread_event.thread_type` (1.14+): `T` ticket, `A` task.
    pub has_thread_type: bool,
}

impl Schema {
    pub fn label(&self) -> &'static str {
        match self.event_names {
            EventNames::Table => "1.11+ (event table)",
            EventNames::StateColumn => "1.10 (thread_event.state)",
        }
    }
}

/// A DATETIME as osTicket stored it: its text, and the server's conversion
/// to Unix seconds in the session's zone. Zero dates and NULL are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct DbTime {
    pub text: Option<String>,
    pub unix: Option<i64>,
}

impl DbTime {
    fn read(row: &MySqlRow, text_col: usize, unix_col: usize) -> Result<DbTime, sqlx::Error> {
        let text = string_at(row, text_col)?.filter(|t| !is_zero_date(t));
        let unix = match text {
            Some(_) => int_at(row, unix_col)?.filter(|u| *u > 0),
            None => None,
        };
        Ok(DbTime { text, unix })
    }

    /// Converts to UTC: the server's conversion, or `zone` applied to the text.
    pub fn to_utc(&self, zone: &TimeZoneSetting) -> Option<jiff::Timestamp> {
        match zone {
            TimeZoneSetting::Server => self.unix.and_then(|u| jiff::Timestamp::from_second(u).ok()),
            TimeZoneSetting::Fixed { zone, .. } => {
                let civil = parse_civil(self.text.as_deref()?)?;
                // A wall time a DST change skips or repeats: the earlier
                // instant (`compatible`), as MariaDB's own conversion does.
                zone.to_ambiguous_timestamp(civil).compatible().ok()
            }
        }
    }
}

/// `0000-00-00 00:00:00` (osTicket runs with `sql_mode=''`), or any date
/// with a zero month or day, which no calendar holds.
pub(super) fn is_zero_date(text: &str) -> bool {
    text.starts_with("0000-00-00") || text.get(5..7) == Some("00") || text.get(8..10) == Some("00")
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` as a civil date-time.
pub(super) fn parse_civil(text: &str) -> Option<jiff::civil::DateTime> {
    jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", text.get(..19)?).ok()
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct EntryRow {
    pub id: u64,
    pub thread_id: u64,
    pub pid: u64,
    pub staff_id: u64,
    pub user_id: u64,
    /// `M` message, `R` response, `N` note.
    pub kind: String,
    pub flags: u64,
    pub poster: Option<String>,
    pub source: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub format: Option<String>,
    pub created: DbTime,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct EventRow {
    pub id: u64,
    pub thread_id: u64,
    /// `event.name` (1.11+) or `state` (1.10); `None` when unknown.
    pub name: Option<String>,
    pub staff_id: u64,
    pub team_id: u64,
    pub dept_id: u64,
    pub topic_id: u64,
    pub data: Option<String>,
    pub username: Option<String>,
    pub uid: Option<u64>,
    pub uid_type: Option<String>,
    pub annulled: bool,
    pub timestamp: DbTime,
    /// `T` ticket, `A` task (1.14+; `None` before).
    pub thread_type: Option<String>,
}

/// A ticket as it is now, found through its thread.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct TicketRow {
    pub thread_id: u64,
    pub ticket_id: u64,
    pub number: Option<String>,
    pub dept_id: u64,
    pub topic_id: u64,
    pub status_id: u64,
    pub staff_id: u64,
    pub team_id: u64,
    pub user_id: u64,
    pub source: Option<String>,
    pub created: DbTime,
    pub subject: Option<String>,
    pub priority: Option<String>,
    pub user_name: Option<String>,
    pub user_email: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct UserRow {
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct AttachmentRow {
    pub entry_id: u64,
    pub id: u64,
    pub file_id: u64,
    pub name: Option<String>,
    pub mime: Option<String>,
    pub size: Option<u64>,
    pub inline: bool,
}

/// The small, rarely changing tables, read whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Lookups {
    /// id → (parent id, name)
    pub departments: HashMap<u64, (u64, String)>,
    /// id → (parent id, name)
    pub topics: HashMap<u64, (u64, String)>,
    /// id → (name, state)
    pub statuses: HashMap<u64, (String, String)>,
    /// id → (username, display name)
    pub staff: HashMap<u64, (String, String)>,
    /// id → (key, label), e.g. (`normal`, `Normal`)
    pub priorities: HashMap<u64, (String, String)>,
    pub teams: HashMap<u64, String>,
    /// `event.id` → `event.name` (1.11+)
    pub events: HashMap<u64, String>,
}

/// Table names with the configured prefix, backquoted for SQL.
struct Tables {
    prefix: String,
}

impl Tables {
    fn t(&self, name: &str) -> String {
        // The prefix is validated to [A-Za-z0-9_] by the config: it cannot
        // break out of the quotes.
        format!("`{}{name}`", self.prefix)
    }
}

pub(super) struct Db {
    conn: MySqlConnection,
    tables: Tables,
    pub schema: Schema,
}

/// The connect options: the URL's, with the session left as osTicket's own
/// connections have it (see ../shared/dependencies.md): no forced
/// `time_zone` (unless the URL sets one), no `PIPES_AS_CONCAT`.
pub(super) fn connect_options(url: &str) -> Result<MySqlConnectOptions, DbError> {
    let options = MySqlConnectOptions::from_str(url).map_err(DbError::Connect)?;
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let sets_zone = query
        .split('&')
        .any(|p| p.starts_with("timezone=") || p.starts_with("time-zone="));
    let options = if sets_zone {
        options
    } else {
        options.timezone(None)
    };
    Ok(options
        .pipes_as_concat(false)
        .no_engine_substitution(false)
        .disable_statement_logging())
}

/// Which ids a read of an append-only table wants.
#[derive(Clone, Copy)]
enum IdFilter<'a> {
    /// Above this id.
    After(u64),
    /// Inside these ranges, both ends included.
    In(&'a [(u64, u64)]),
}

fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> DbError {
    move |source| DbError::Query { what, source }
}

fn sql(text: String) -> Query<'static, MySql, MySqlArguments> {
    sqlx::query(AssertSqlSafe(text))
}

/// `?, ?, ?` for `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl Db {
    pub async fn connect(config: &OsticketSourceConfig) -> Result<Db, DbError> {
        let options = connect_options(config.url.expose())?;
        let conn = options.connect().await.map_err(DbError::Connect)?;
        let mut db = Db {
            conn,
            tables: Tables {
                prefix: config.table_prefix.clone(),
            },
            schema: Schema {
                event_names: EventNames::Table,
                has_cdata: false,
                has_user_email: false,
                has_attachments: false,
                has_priority: false,
                has_team: false,
                has_thread_type: false,
            },
        };
        db.schema = db.detect_schema().await?;
        Ok(db)
    }

    /// Says goodbye to the server, within a second: after a query was
    /// abandoned mid-way (shutdown), the connection may not answer.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.conn.close()).await;
    }

    /// Finds the osTicket version family from the tables and columns present.
    async fn detect_schema(&mut self) -> Result<Schema, DbError> {
        let prefix = &self.tables.prefix;
        let rows = sqlx::query(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE ?",
        )
        .bind(format!("{}%", prefix.replace('_', "\\_")))
        .fetch_all(&mut self.conn)
        .await
        .map_err(q("schema"))?;
        let mut columns: HashMap<String, HashSet<String>> = HashMap::new();
        for row in &rows {
            let (Some(table), Some(column)) = (
                string_at(row, 0).ok().flatten(),
                string_at(row, 1).ok().flatten(),
            ) else {
                continue;
            };
            if let Some(name) = table.strip_prefix(prefix.as_str()) {
                columns
                    .entry(name.to_owned())
                    .or_default()
                    .insert(column.to_ascii_lowercase());
            }
        }
        let has =
            |table: &str, column: &str| columns.get(table).is_some_and(|c| c.contains(column));
        let database: Option<String> = sqlx::query("SELECT DATABASE()")
            .fetch_one(&mut self.conn)
            .await
            .ok()
            .and_then(|r| string_at(&r, 0).ok().flatten());
        let database = database.unwrap_or_else(|| "(none)".into());
        for (table, column) in [
            ("thread_entry", "id"),
            ("thread_event", "id"),
            ("thread", "object_id"),
            ("ticket", "ticket_id"),
            ("department", "name"),
            ("help_topic", "topic"),
            ("ticket_status", "state"),
            ("staff", "username"),
            ("user", "name"),
        ] {
            if !has(table, column) {
                return Err(DbError::Schema(format!(
                    "database `{database}` has no osTicket table `{prefix}{table}` with column `{column}`: \
                     check `url` and `table_prefix`, and that the user may read it"
                )));
            }
        }
        let event_names = if has("thread_event", "event_id") && has("event", "name") {
            EventNames::Table
        } else if has("thread_event", "state") {
            EventNames::StateColumn
        } else {
            return Err(DbError::Schema(format!(
                "`{prefix}thread_event` has neither `event_id` (osTicket 1.11+) nor `state` (1.10)"
            )));
        };
        Ok(Schema {
            event_names,
            has_cdata: has("ticket__cdata", "subject"),
            has_user_email: has("user_email", "address") && has("user", "default_email_id"),
            has_attachments: has("attachment", "object_id") && has("file", "size"),
            has_priority: has("ticket_priority", "priority") && has("ticket__cdata", "priority"),
            has_team: has("team", "name"),
            has_thread_type: has("thread_event", "thread_type"),
        })
    }

    /// The session's zone, the server's system zone and its offset now, for the log.
    pub async fn zone_info(&mut self) -> Result<(String, String, i64), DbError> {
        let row = sqlx::query(
            "SELECT @@session.time_zone, @@system_time_zone, \
             CAST(TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), NOW()) AS SIGNED)",
        )
        .fetch_one(&mut self.conn)
        .await
        .map_err(q("time zone"))?;
        Ok((
            string_at(&row, 0)
                .map_err(q("time zone"))?
                .unwrap_or_default(),
            string_at(&row, 1)
                .map_err(q("time zone"))?
                .unwrap_or_default(),
            int_at(&row, 2).map_err(q("time zone"))?.unwrap_or(0),
        ))
    }

    /// `NOW()` as osTicket would write it, and in Unix seconds.
    pub async fn now_time(&mut self) -> Result<DbTime, DbError> {
        let row = sqlx::query("SELECT CAST(NOW() AS CHAR), CAST(UNIX_TIMESTAMP() AS SIGNED)")
            .fetch_one(&mut self.conn)
            .await
            .map_err(q("clock"))?;
        DbTime::read(&row, 0, 1).map_err(q("clock"))
    }

    /// The highest id of `thread_entry` and of `thread_event`.
    pub async fn max_ids(&mut self) -> Result<(u64, u64), DbError> {
        let sql_text = format!(
            "SELECT (SELECT CAST(COALESCE(MAX(id), 0) AS SIGNED) FROM {}), \
                    (SELECT CAST(COALESCE(MAX(id), 0) AS SIGNED) FROM {})",
            self.tables.t("thread_entry"),
            self.tables.t("thread_event")
        );
        let row = sql(sql_text)
            .fetch_one(&mut self.conn)
            .await
            .map_err(q("max ids"))?;
        Ok((
            int_at(&row, 0).map_err(q("max ids"))?.unwrap_or(0) as u64,
            int_at(&row, 1).map_err(q("max ids"))?.unwrap_or(0) as u64,
        ))
    }

    /// The last ids written before `at`, per table: the position to start
    /// from to capture what happened from `at` on.
    pub async fn ids_before(
        &mut self,
        at: jiff::Timestamp,
        zone: &TimeZoneSetting,
    ) -> Result<(u64, u64), DbError> {
        // Compare in the column's own terms, so an index on it could serve.
        let (bound, arg) = match zone {
            TimeZoneSetting::Server => ("FROM_UNIXTIME(?)", at.as_second().to_string()),
            TimeZoneSetting::Fixed { zone, .. } => (
                "?",
                zone.to_datetime(at)
                    .strftime("%Y-%m-%d %H:%M:%S")
                    .to_string(),
            ),
        };
        let mut out = [0u64; 2];
        for (i, (table, column)) in [
            ("thread_entry", "`created`"),
            ("thread_event", "`timestamp`"),
        ]
        .into_iter()
        .enumerate()
        {
            let text = format!(
                "SELECT CAST(COALESCE(MAX(id), 0) AS SIGNED) FROM {} WHERE {column} < {bound}",
                self.tables.t(table)
            );
            let mut query = sql(text);
            query = match zone {
                TimeZoneSetting::Server => query.bind(at.as_second()),
                TimeZoneSetting::Fixed { .. } => query.bind(arg.clone()),
            };
            let row = query
                .fetch_one(&mut self.conn)
                .await
                .map_err(q("start position"))?;
            out[i] = int_at(&row, 0).map_err(q("start position"))?.unwrap_or(0) as u64;
        }
        Ok((out[0], out[1]))
    }

    fn entry_select(&self) -> String {
        format!(
            "SELECT e.id, e.thread_id, e.pid, e.staff_id, e.user_id, e.`type`, e.flags, e.poster, \
                    e.`source`, e.title, e.body, e.`format`, \
                    CAST(e.created AS CHAR), CAST(UNIX_TIMESTAMP(e.created) AS SIGNED) \
             FROM {} e",
            self.tables.t("thread_entry")
        )
    }

    /// Entries with ids above `after`, oldest first.
    pub async fn entries_after(
        &mut self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<EntryRow>, DbError> {
        let select = self.entry_select();
        self.rows_by_id(
            select,
            "e.id",
            IdFilter::After(after),
            limit,
            "thread entries",
            read_entry,
        )
        .await
    }

    /// Entries inside the id ranges (inclusive) the cursor waits on.
    pub async fn entries_in(
        &mut self,
        ranges: &[(u64, u64)],
        limit: u32,
    ) -> Result<Vec<EntryRow>, DbError> {
        let select = self.entry_select();
        self.rows_by_id(
            select,
            "e.id",
            IdFilter::In(ranges),
            limit,
            "thread entries",
            read_entry,
        )
        .await
    }

    /// The rows of `select` whose `id_column` passes `filter`, in id order,
    /// at most `limit`, each read by `read`; `what` names them in errors.
    async fn rows_by_id<T>(
        &mut self,
        select: String,
        id_column: &str,
        filter: IdFilter<'_>,
        limit: u32,
        what: &'static str,
        read: fn(&MySqlRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, DbError> {
        let condition = match filter {
            IdFilter::After(_) => format!("{id_column} > ?"),
            IdFilter::In([]) => return Ok(Vec::new()),
            IdFilter::In(ranges) => ranges_clause(id_column, ranges.len()),
        };
        let mut query = sql(format!(
            "{select} WHERE {condition} ORDER BY {id_column} LIMIT ?"
        ));
        match filter {
            IdFilter::After(after) => query = query.bind(after),
            IdFilter::In(ranges) => {
                for (a, b) in ranges {
                    query = query.bind(*a).bind(*b);
                }
            }
        }
        let rows = query
            .bind(limit)
            .fetch_all(&mut self.conn)
            .await
            .map_err(q(what))?;
        rows.iter()
            .map(read)
            .collect::<Result<_, _>>()
            .map_err(q(what))
    }

    fn event_select(&self) -> String {
        let name = match self.schema.event_names {
            EventNames::Table => "ev.name",
            EventNames::StateColumn => "CAST(te.state AS CHAR)",
        };
        let join = match self.schema.event_names {
            EventNames::Table => format!(
                "LEFT JOIN {} ev ON ev.id = te.event_id",
                self.tables.t("event")
            ),
            EventNames::StateColumn => String::new(),
        };
        let thread_type = match self.schema.has_thread_type {
            true => "te.thread_type",
            false => "NULL",
        };
        format!(
            "SELECT te.id, te.thread_id, {name}, te.staff_id, te.team_id, te.dept_id, te.topic_id, \
                    te.data, te.username, te.uid, te.uid_type, te.annulled, \
                    CAST(te.`timestamp` AS CHAR), CAST(UNIX_TIMESTAMP(te.`timestamp`) AS SIGNED), \
                    {thread_type} \
             FROM {} te {join}",
            self.tables.t("thread_event")
        )
    }

    /// Thread events with ids above `after`, oldest first.
    pub async fn events_after(&mut self, after: u64, limit: u32) -> Result<Vec<EventRow>, DbError> {
        let select = self.event_select();
        self.rows_by_id(
            select,
            "te.id",
            IdFilter::After(after),
            limit,
            "thread events",
            read_event,
        )
        .await
    }

    /// Thread events inside the id ranges (inclusive) the cursor waits on.
    pub async fn events_in(
        &mut self,
        ranges: &[(u64, u64)],
        limit: u32,
    ) -> Result<Vec<EventRow>, DbError> {
        let select = self.event_select();
        self.rows_by_id(
            select,
            "te.id",
            IdFilter::In(ranges),
            limit,
            "thread events",
            read_event,
        )
        .await
    }

    /// The tickets behind `threads` (ticket threads only), as they are now.
    pub async fn tickets(&mut self, threads: &[u64]) -> Result<HashMap<u64, TicketRow>, DbError> {
        if threads.is_empty() {
            return Ok(HashMap::new());
        }
        let t = &self.tables;
        let (cdata_cols, cdata_join) = match self.schema.has_cdata {
            true => (
                "c.subject, c.priority".to_owned(),
                format!(
                    "LEFT JOIN {} c ON c.ticket_id = t.ticket_id",
                    t.t("ticket__cdata")
                ),
            ),
            false => ("NULL, NULL".to_owned(), String::new()),
        };
        let (email_col, email_join) = match self.schema.has_user_email {
            true => (
                "ue.address",
                format!(
                    "LEFT JOIN {} ue ON ue.id = u.default_email_id",
                    t.t("user_email")
                ),
            ),
            false => ("NULL", String::new()),
        };
        let text = format!(
            "SELECT th.id, t.ticket_id, t.number, t.dept_id, t.topic_id, t.status_id, t.staff_id, \
                    t.team_id, t.user_id, CAST(t.`source` AS CHAR), \
                    CAST(t.created AS CHAR), CAST(UNIX_TIMESTAMP(t.created) AS SIGNED), \
                    {cdata_cols}, u.name, {email_col} \
             FROM {thread} th \
             JOIN {ticket} t ON t.ticket_id = th.object_id \
             {cdata_join} \
             LEFT JOIN {user} u ON u.id = t.user_id \
             {email_join} \
             WHERE th.object_type = 'T' AND th.id IN ({ids})",
            thread = t.t("thread"),
            ticket = t.t("ticket"),
            user = t.t("user"),
            ids = placeholders(threads.len()),
        );
        let mut query = sql(text);
        for id in threads {
            query = query.bind(*id);
        }
        let rows = query
            .fetch_all(&mut self.conn)
            .await
            .map_err(q("tickets"))?;
        let mut out = HashMap::new();
        for row in &rows {
            let ticket = read_ticket(row).map_err(q("tickets"))?;
            out.insert(ticket.thread_id, ticket);
        }
        Ok(out)
    }

    /// End users by id (the authors of messages).
    pub async fn users(&mut self, ids: &[u64]) -> Result<HashMap<u64, UserRow>, DbError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let (email_col, email_join) = match self.schema.has_user_email {
            true => (
                "ue.address",
                format!(
                    "LEFT JOIN {} ue ON ue.id = u.default_email_id",
                    self.tables.t("user_email")
                ),
            ),
            false => ("NULL", String::new()),
        };
        let text = format!(
            "SELECT u.id, u.name, {email_col} FROM {} u {email_join} WHERE u.id IN ({})",
            self.tables.t("user"),
            placeholders(ids.len())
        );
        let mut query = sql(text);
        for id in ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&mut self.conn).await.map_err(q("users"))?;
        let mut out = HashMap::new();
        for row in &rows {
            let id = int_at(row, 0).map_err(q("users"))?.unwrap_or(0) as u64;
            out.insert(
                id,
                UserRow {
                    name: string_at(row, 1).map_err(q("users"))?,
                    email: string_at(row, 2).map_err(q("users"))?,
                },
            );
        }
        Ok(out)
    }

    /// Attachment metadata of thread entries (no content), per entry.
    pub async fn attachments(
        &mut self,
        entries: &[u64],
    ) -> Result<HashMap<u64, Vec<AttachmentRow>>, DbError> {
        if entries.is_empty() || !self.schema.has_attachments {
            return Ok(HashMap::new());
        }
        let text = format!(
            "SELECT a.object_id, a.id, a.file_id, COALESCE(NULLIF(a.name, ''), f.name), f.`type`, \
                    f.size, a.inline \
             FROM {} a LEFT JOIN {} f ON f.id = a.file_id \
             WHERE a.`type` = 'H' AND a.object_id IN ({}) ORDER BY a.id",
            self.tables.t("attachment"),
            self.tables.t("file"),
            placeholders(entries.len())
        );
        let mut query = sql(text);
        for id in entries {
            query = query.bind(*id);
        }
        let rows = query
            .fetch_all(&mut self.conn)
            .await
            .map_err(q("attachments"))?;
        let mut out: HashMap<u64, Vec<AttachmentRow>> = HashMap::new();
        for row in &rows {
            let read = || -> Result<AttachmentRow, sqlx::Error> {
                Ok(AttachmentRow {
                    entry_id: int_at(row, 0)?.unwrap_or(0) as u64,
                    id: int_at(row, 1)?.unwrap_or(0) as u64,
                    file_id: int_at(row, 2)?.unwrap_or(0) as u64,
                    name: string_at(row, 3)?,
                    mime: string_at(row, 4)?,
                    size: int_at(row, 5)?.map(|s| s.max(0) as u64),
                    inline: int_at(row, 6)?.unwrap_or(0) != 0,
                })
            };
            let attachment = read().map_err(q("attachments"))?;
            out.entry(attachment.entry_id).or_default().push(attachment);
        }
        Ok(out)
    }

    /// The department a thread had at its event before `before`: where a
    /// transfer came from (each event records the ticket's department then).
    pub async fn previous_dept(
        &mut self,
        thread_id: u64,
        before: u64,
    ) -> Result<Option<u64>, DbError> {
        let text = format!(
            "SELECT dept_id FROM {} WHERE thread_id = ? AND id < ? ORDER BY id DESC LIMIT 1",
            self.tables.t("thread_event")
        );
        let row = sql(text)
            .bind(thread_id)
            .bind(before)
            .fetch_optional(&mut self.conn)
            .await
            .map_err(q("previous department"))?;
        match row {
            Some(row) => Ok(int_at(&row, 0)
                .map_err(q("previous department"))?
                .map(|d| d as u64)),
            None => Ok(None),
        }
    }

    /// Ticket threads with ids above `after`, in id order, at most `limit`:
    /// (thread id, ticket id, number), what a later delete can no longer be
    /// traced to once osTicket has removed the rows.
    pub async fn thread_page(
        &mut self,
        after: u64,
        limit: u64,
    ) -> Result<Vec<(u64, u64, String)>, DbError> {
        let text = format!(
            "SELECT th.id, t.ticket_id, t.number FROM {} th JOIN {} t ON t.ticket_id = th.object_id \
             WHERE th.object_type = 'T' AND th.id > ? ORDER BY th.id LIMIT ?",
            self.tables.t("thread"),
            self.tables.t("ticket")
        );
        let rows = sql(text)
            .bind(after)
            .bind(limit)
            .fetch_all(&mut self.conn)
            .await
            .map_err(q("ticket threads"))?;
        rows.iter()
            .map(|row| {
                Ok((
                    int_at(row, 0)?.unwrap_or(0) as u64,
                    int_at(row, 1)?.unwrap_or(0) as u64,
                    string_at(row, 2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(q("ticket threads"))
    }

    /// Which of `ids` still exist in `ticket`.
    pub async fn existing_tickets(&mut self, ids: &[u64]) -> Result<HashSet<u64>, DbError> {
        let mut out = HashSet::new();
        for chunk in ids.chunks(1000) {
            let text = format!(
                "SELECT ticket_id FROM {} WHERE ticket_id IN ({})",
                self.tables.t("ticket"),
                placeholders(chunk.len())
            );
            let mut query = sql(text);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query
                .fetch_all(&mut self.conn)
                .await
                .map_err(q("ticket sweep"))?
            {
                if let Some(id) = int_at(&row, 0).map_err(q("ticket sweep"))? {
                    out.insert(id as u64);
                }
            }
        }
        Ok(out)
    }

    /// Reads the small tables whole.
    pub async fn lookups(&mut self) -> Result<Lookups, DbError> {
        let mut l = Lookups::default();
        let t = &self.tables;
        let mut queries: Vec<(&'static str, String)> = vec![
            (
                "departments",
                format!("SELECT id, pid, name FROM {}", t.t("department")),
            ),
            (
                "help topics",
                format!(
                    "SELECT topic_id, topic_pid, topic FROM {}",
                    t.t("help_topic")
                ),
            ),
            (
                "statuses",
                format!("SELECT id, name, state FROM {}", t.t("ticket_status")),
            ),
            (
                "staff",
                format!(
                    "SELECT staff_id, username, firstname, lastname FROM {}",
                    t.t("staff")
                ),
            ),
        ];
        if self.schema.has_priority {
            queries.push((
                "priorities",
                format!(
                    "SELECT priority_id, priority, priority_desc FROM {}",
                    t.t("ticket_priority")
                ),
            ));
        }
        if self.schema.has_team {
            queries.push((
                "teams",
                format!("SELECT team_id, name FROM {}", t.t("team")),
            ));
        }
        if self.schema.event_names == EventNames::Table {
            queries.push(("events", format!("SELECT id, name FROM {}", t.t("event"))));
        }
        for (what, text) in queries {
            let rows = sql(text).fetch_all(&mut self.conn).await.map_err(q(what))?;
            for row in &rows {
                let id = int_at(row, 0).map_err(q(what))?.unwrap_or(0) as u64;
                match what {
                    "departments" | "help topics" => {
                        let parent = int_at(row, 1).map_err(q(what))?.unwrap_or(0) as u64;
                        let name = string_at(row, 2).map_err(q(what))?.unwrap_or_default();
                        let map = if what == "departments" {
                            &mut l.departments
                        } else {
                            &mut l.topics
                        };
                        map.insert(id, (parent, name));
                    }
                    "statuses" | "priorities" => {
                        let a = string_at(row, 1).map_err(q(what))?.unwrap_or_default();
                        let b = string_at(row, 2).map_err(q(what))?.unwrap_or_default();
                        let map = if what == "statuses" {
                            &mut l.statuses
                        } else {
                            &mut l.priorities
                        };
                        map.insert(id, (a, b));
                    }
                    "staff" => {
                        let username = string_at(row, 1).map_err(q(what))?.unwrap_or_default();
                        let first = string_at(row, 2).map_err(q(what))?.unwrap_or_default();
                        let last = string_at(row, 3).map_err(q(what))?.unwrap_or_default();
                        let name = format!("{} {}", first.trim(), last.trim())
                            .trim()
                            .to_owned();
                        l.staff.insert(id, (username, name));
                    }
                    "teams" => {
                        l.teams
                            .insert(id, string_at(row, 1).map_err(q(what))?.unwrap_or_default());
                    }
                    _ => {
                        l.events
                            .insert(id, string_at(row, 1).map_err(q(what))?.unwrap_or_default());
                    }
                }
            }
        }
        Ok(l)
    }
}

/// `(col BETWEEN ? AND ?) OR …` for `n` ranges.
fn ranges_clause(column: &str, n: usize) -> String {
    let one = format!("({column} BETWEEN ? AND ?)");
    format!("({})", vec![one; n].join(" OR "))
}

fn read_entry(row: &MySqlRow) -> Result<EntryRow, sqlx::Error> {
    Ok(EntryRow {
        id: uint(row, 0)?,
        thread_id: uint(row, 1)?,
        pid: uint(row, 2)?,
        staff_id: uint(row, 3)?,
        user_id: uint(row, 4)?,
        kind: string_at(row, 5)?.unwrap_or_default(),
        flags: uint(row, 6)?,
        poster: string_at(row, 7)?,
        source: string_at(row, 8)?,
        title: string_at(row, 9)?,
        body: string_at(row, 10)?,
        format: string_at(row, 11)?,
        created: DbTime::read(row, 12, 13)?,
    })
}

fn read_event(row: &MySqlRow) -> Result<EventRow, sqlx::Error> {
    Ok(EventRow {
        id: uint(row, 0)?,
        thread_id: uint(row, 1)?,
        name: string_at(row, 2)?.filter(|n| !n.is_empty()),
        staff_id: uint(row, 3)?,
        team_id: uint(row, 4)?,
        dept_id: uint(row, 5)?,
        topic_id: uint(row, 6)?,
        data: string_at(row, 7)?,
        username: string_at(row, 8)?,
        uid: int_at(row, 9)?.map(|u| u.max(0) as u64),
        uid_type: string_at(row, 10)?,
        annulled: int_at(row, 11)?.unwrap_or(0) != 0,
        timestamp: DbTime::read(row, 12, 13)?,
        thread_type: string_at(row, 14)?.filter(|t| !t.is_empty()),
    })
}

fn read_ticket(row: &MySqlRow) -> Result<TicketRow, sqlx::Error> {
    Ok(TicketRow {
        thread_id: uint(row, 0)?,
        ticket_id: uint(row, 1)?,
        number: string_at(row, 2)?,
        dept_id: uint(row, 3)?,
        topic_id: uint(row, 4)?,
        status_id: uint(row, 5)?,
        staff_id: uint(row, 6)?,
        team_id: uint(row, 7)?,
        user_id: uint(row, 8)?,
        source: string_at(row, 9)?,
        created: DbTime::read(row, 10, 11)?,
        subject: string_at(row, 12)?,
        priority: string_at(row, 13)?,
        user_name: string_at(row, 14)?,
        user_email: string_at(row, 15)?,
    })
}

/// An integer column of any width and signedness; NULL is `None`.
pub(super) fn int_at(row: &MySqlRow, i: usize) -> Result<Option<i64>, sqlx::Error> {
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return Ok(v);
    }
    if let Ok(v) = row.try_get::<Option<u64>, _>(i) {
        return Ok(v.map(|v| i64::try_from(v).unwrap_or(i64::MAX)));
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
        return Ok(v.map(i64::from));
    }
    if let Ok(v) = row.try_get::<Option<u32>, _>(i) {
        return Ok(v.map(i64::from));
    }
    if let Ok(v) = row.try_get::<Option<i16>, _>(i) {
        return Ok(v.map(i64::from));
    }
    if let Ok(v) = row.try_get::<Option<u16>, _>(i) {
        return Ok(v.map(i64::from));
    }
    if let Ok(v) = row.try_get::<Option<i8>, _>(i) {
        return Ok(v.map(i64::from));
    }
    if let Ok(v) = row.try_get::<Option<u8>, _>(i) {
        return Ok(v.map(i64::from));
    }
    // A number sent as text (a DECIMAL, or an id typed as a string).
    match string_at(row, i)? {
        Some(t) => Ok(t.trim().parse::<f64>().ok().map(|f| f as i64)),
        None => Ok(None),
    }
}

/// An id or flag column: NULL and negatives read as 0.
fn uint(row: &MySqlRow, i: usize) -> Result<u64, sqlx::Error> {
    Ok(int_at(row, i)?.unwrap_or(0).max(0) as u64)
}

/// Any string or blob column, invalid UTF-8 replaced; NULL is `None`.
pub(super) fn string_at(row: &MySqlRow, i: usize) -> Result<Option<String>, sqlx::Error> {
    let bytes: Option<Vec<u8>> = row.try_get(i)?;
    Ok(bytes.map(|b| match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_dates_are_none() {
        assert!(is_zero_date("0000-00-00 00:00:00"));
        assert!(is_zero_date("2024-00-10 00:00:00"));
        assert!(!is_zero_date("2024-01-10 00:00:00"));
    }

    #[test]
    fn fixed_zones_follow_daylight_saving() {
        let zone = super::super::config::parse_timezone("America/New_York").unwrap();
        let at = |text: &str| {
            DbTime {
                text: Some(text.into()),
                unix: None,
            }
            .to_utc(&zone)
            .unwrap()
            .to_string()
        };
        assert_eq!(at("2024-01-15 09:25:56"), "2024-01-15T14:25:56Z"); // EST
        assert_eq!(at("2024-07-15 10:25:56"), "2024-07-15T14:25:56Z"); // EDT
        // 02:30 on 2024-03-10 never happened in New York: the later offset applies.
        assert_eq!(at("2024-03-10 02:30:00"), "2024-03-10T07:30:00Z");
        // 01:30 on 2024-11-03 happened twice: the first one.
        assert_eq!(at("2024-11-03 01:30:00"), "2024-11-03T05:30:00Z");
        let zero = DbTime::default();
        assert_eq!(zero.to_utc(&zone), None);
        assert_eq!(zero.to_utc(&TimeZoneSetting::Server), None);
    }

    #[test]
    fn connect_options_leave_the_session_zone_alone_unless_asked() {
        // Only checks that both forms parse; the session itself is tested
        // against MariaDB in tests/osticket_source.rs.
        assert!(connect_options("mysql://u:p@127.0.0.1:3306/ost").is_ok());
        assert!(connect_options("mysql://u:p@127.0.0.1:3306/ost?timezone=%2B05:00").is_ok());
        assert_eq!(
            ranges_clause("id", 2),
            "((id BETWEEN ? AND ?) OR (id BETWEEN ? AND ?))"
        );
    }
}
