use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::SyncMode;

/// Bumped when the layout changes; `open` refuses a newer file rather than
/// guessing at it.
pub(crate) const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    stream          TEXT    NOT NULL,
    use_case        TEXT    NOT NULL,
    queue           TEXT    NOT NULL,
    order_key       TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    enqueued_at     INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS entries_by_key ON entries (stream, order_key, seq);
-- Lets a fetch walk one stream in seq order and stop at LIMIT, instead of
-- sorting the whole backlog.
CREATE INDEX IF NOT EXISTS entries_by_stream ON entries (stream, seq);
CREATE UNIQUE INDEX IF NOT EXISTS entries_by_event ON entries (use_case, event_id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    stream      TEXT    NOT NULL,
    use_case    TEXT    NOT NULL,
    queue       TEXT    NOT NULL,
    order_key   TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    enqueued_at INTEGER NOT NULL,
    failed_at   INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    reason      TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_stream ON dead_letters (stream, id);
CREATE TABLE IF NOT EXISTS cursors (
    source     TEXT PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
-- What a stream learnt about an entry it delivered, for later use: the
-- osTicket stream keeps the ticket number osTicket gave an event. Added
-- without a schema bump: older binaries never read it.
CREATE TABLE IF NOT EXISTS links (
    namespace  TEXT,
    local_id   TEXT,
    remote_id  TEXT,
    updated_at INTEGER,
    PRIMARY KEY(namespace, local_id)
);
";

pub(crate) fn set_sync(conn: &Connection, sync: SyncMode) -> rusqlite::Result<()> {
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        },
    )
}

pub(crate) fn open(path: &Path, sync: SyncMode) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // Another process (the `deskbus dlq` CLI) may hold the write lock briefly.
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    set_sync(&conn, sync)?;
    conn.execute_batch(SCHEMA)?;
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .ok();
    match version.and_then(|v| v.parse::<i64>().ok()) {
        None => {
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )?;
        }
        Some(v) if v > SCHEMA_VERSION => {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "spool schema version {v} is newer than this deskbus understands ({SCHEMA_VERSION})"
            )));
        }
        Some(_) => {}
    }
    Ok(conn)
}
