//! `type = "beanstalk"`: reserves jobs from the watched tubes, commits each
//! batch to the spool, then deletes its jobs.
//!
//! One connection of its own (a `reserve` blocks it), owned by one task.
//! A batch is the first job a one-second `reserve-with-timeout` hands out
//! (one second, so that shutdown is prompt), plus whatever else is ready
//! at once (pipelined `reserve-with-timeout 0`). Its jobs' `stats-job`
//! says how often each was reserved and its priority and time to run; the
//! commit is then watched by a timer that touches the jobs every half time
//! to run, so a slow commit does not let beanstalkd hand them to another
//! worker.

mod config;

use std::time::Duration;

use deskbus_beanstalk::{Command, Connection, Error as ClientError, Reply, Stats};
use deskbus_event::{EnvelopeInput, Event};
use serde_json::{Value, json};

pub use config::{BeanstalkSourceConfig, Body};

use super::reconnect::{Sessions, run_sessions};
use super::redelivery::{Window, fingerprint};
use super::{SourceContext, SourceError, json_type};
use crate::internal_events::{ErrorChain, EventsReceived, JobBuried, RedeliveriesSkipped};
use crate::runtime::{Ready, Shutdown};
use crate::use_cases::{Ingest, IngestError, RejectedInput, Unmatched};

/// A server that does not accept within this long is as good as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the replies of one pipelined group; beanstalkd answers
/// in microseconds, this only bounds a server that hangs.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Seconds one `reserve-with-timeout` waits: how late shutdown may be seen.
const POLL_SECONDS: u32 = 1;
/// The most a refused batch's jobs are delayed before they are ready again.
const MAX_RELEASE_DELAY: u64 = 60;

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("beanstalkd unreachable")]
    Connect(#[source] ClientError),
    #[error("cannot {step} on {address}")]
    Client {
        step: &'static str,
        address: String,
        #[source]
        source: ClientError,
    },
    #[error("no answer from {address} within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("events not committed; the jobs were released")]
    Ingest(#[source] IngestError),
}

/// A reserved job and what `stats-job` said of it.
struct Held {
    id: u64,
    body: Vec<u8>,
    priority: u32,
    ttr: u32,
    reserves: u64,
    /// In the server's binlog (`file` > 0): its id is then never reused,
    /// even across server restarts (which forget `reserves`).
    persisted: bool,
}

struct BeanstalkSource {
    config: BeanstalkSourceConfig,
    id: String,
    origin_uuid: String,
    ingest: Ingest,
    window: Window,
    /// Jobs committed in the current session (resets the backoff).
    committed: usize,
}

pub(crate) async fn run(
    config: BeanstalkSourceConfig,
    ctx: SourceContext,
) -> Result<(), SourceError> {
    let window = Window::load(&ctx, config.batch_size)?;
    let mut source = BeanstalkSource {
        id: ctx.id,
        origin_uuid: ctx.origin_uuid,
        ingest: ctx.ingest,
        window,
        committed: 0,
        config,
    };
    run_sessions(&mut source, ctx.ready, ctx.shutdown).await
}

/// `deskbus check --connect`: beanstalkd answers `stats` and takes work
/// (not draining), and how many jobs wait in the watched tubes.
pub(crate) async fn healthcheck(config: &BeanstalkSourceConfig) -> Result<String, String> {
    let connect = tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(config.address.as_str()),
    );
    let mut conn = match connect.await {
        Ok(conn) => conn.map_err(|e| ErrorChain(&e).to_string())?,
        Err(_) => {
            return Err(format!(
                "{} did not answer within {CONNECT_TIMEOUT:?}",
                config.address
            ));
        }
    };
    let stats = conn.stats().await.map_err(|e| ErrorChain(&e).to_string())?;
    if stats.get("draining") == Some("true") {
        return Err(format!("beanstalkd at {} is draining", config.address));
    }
    let mut ready = 0;
    for tube in &config.tubes {
        let tube_stats = conn
            .stats_tube(tube)
            .await
            .map_err(|e| ErrorChain(&e).to_string())?;
        ready += tube_stats
            .and_then(|s| s.number("current-jobs-ready"))
            .unwrap_or(0);
    }
    let _ = conn.quit().await;
    Ok(format!(
        "beanstalkd {} at {}, {ready} jobs ready in {}",
        stats.get("version").unwrap_or("?"),
        config.address,
        config.tubes.join(", ")
    ))
}

impl Sessions for BeanstalkSource {
    type Error = SessionError;

    fn source_id(&self) -> &str {
        &self.id
    }

    /// One connection, from connecting to losing it (an error) or to
    /// shutdown (`Ok`).
    async fn session(
        &mut self,
        ready: &mut Option<Ready>,
        shutdown: &mut Shutdown,
    ) -> Result<(), SessionError> {
        let address = self.config.address.clone();
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(address.as_str()));
        let mut conn = tokio::select! {
            conn = connect => match conn {
                Ok(conn) => conn.map_err(SessionError::Connect)?,
                Err(_) => return Err(SessionError::Timeout { address, timeout: CONNECT_TIMEOUT }),
            },
            _ = shutdown.wait() => return Ok(()),
        };
        // The watch list belongs to the connection: set it on every new one.
        let mut commands: Vec<Command<'_>> = self
            .config
            .tubes
            .iter()
            .map(|t| Command::Watch(t.as_str()))
            .collect();
        if !self.config.tubes.iter().any(|t| t == "default") {
            commands.push(Command::Ignore("default"));
        }
        for reply in self
            .pipeline(&mut conn, "watch the tubes", &commands)
            .await?
        {
            if !matches!(reply, Reply::Watching(_)) {
                return Err(self.client_error("watch the tubes")(
                    ClientError::Unexpected {
                        command: "watch",
                        reply: reply.summary(),
                    },
                ));
            }
        }
        if let Some(ready) = ready.take() {
            ready.mark_ready();
        }
        tracing::info!(source = %self.id, address = %self.config.address, tubes = ?self.config.tubes, "watching beanstalkd tubes");
        self.window.begin_session();
        loop {
            // Dropping a reserve on shutdown leaves the connection unusable,
            // which is fine: it is closed, and a job reserved in that very
            // instant is released by the server.
            let first = tokio::select! {
                first = conn.reserve_with_timeout(POLL_SECONDS) => first,
                _ = shutdown.wait() => return Ok(()),
            };
            let first = match first {
                Ok(Some(job)) => job,
                Ok(None) => continue,
                // A job held from an earlier batch is about to time out;
                // it was touched or deleted by now, so this is a blip.
                Err(ClientError::DeadlineSoon) => continue,
                Err(error) => return Err(self.client_error("reserve")(error)),
            };
            let mut jobs = vec![(first.id, first.body.to_vec())];
            let more = vec![Command::ReserveWithTimeout(0); self.config.batch_size - 1];
            for reply in self.pipeline(&mut conn, "reserve", &more).await? {
                if let Reply::Reserved { id, body } = reply {
                    jobs.push((id, body.to_vec()));
                }
            }
            self.take(&mut conn, jobs).await?;
        }
    }

    fn made_progress(&mut self) -> bool {
        std::mem::take(&mut self.committed) > 0
    }
}

impl BeanstalkSource {
    fn client_error(&self, step: &'static str) -> impl FnOnce(ClientError) -> SessionError {
        let address = self.config.address.clone();
        move |source| SessionError::Client {
            step,
            address,
            source,
        }
    }

    /// `commands` pipelined on `conn`, within [`REPLY_TIMEOUT`].
    async fn pipeline(
        &self,
        conn: &mut Connection,
        step: &'static str,
        commands: &[Command<'_>],
    ) -> Result<Vec<Reply>, SessionError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        match tokio::time::timeout(REPLY_TIMEOUT, conn.pipeline(commands)).await {
            Ok(replies) => replies.map_err(self.client_error(step)),
            Err(_) => Err(SessionError::Timeout {
                address: self.config.address.clone(),
                timeout: REPLY_TIMEOUT,
            }),
        }
    }

    /// Commits a batch of reserved jobs and deletes them; buries the ones
    /// tried too often; deletes without a second commit the ones committed
    /// already.
    async fn take(
        &mut self,
        conn: &mut Connection,
        jobs: Vec<(u64, Vec<u8>)>,
    ) -> Result<(), SessionError> {
        let stats: Vec<Command<'_>> = jobs.iter().map(|(id, _)| Command::StatsJob(*id)).collect();
        let replies = self.pipeline(conn, "read job stats", &stats).await?;
        let mut held = Vec::with_capacity(jobs.len());
        for ((id, body), reply) in jobs.into_iter().zip(replies) {
            match reply {
                Reply::Ok(yaml) => {
                    let stats = Stats::parse(&yaml);
                    held.push(Held {
                        id,
                        body,
                        priority: stats.number("pri").map_or(1024, |p| p as u32),
                        ttr: stats.number("ttr").map_or(1, |t| t as u32).max(1),
                        reserves: stats.number("reserves").unwrap_or(1),
                        persisted: stats.number("file").is_some_and(|f| f > 0),
                    });
                }
                // Gone already (deleted by an operator): nothing to do.
                Reply::NotFound => {}
                other => {
                    return Err(self.client_error("read job stats")(
                        ClientError::Unexpected {
                            command: "stats-job",
                            reply: other.summary(),
                        },
                    ));
                }
            }
        }

        let mut settle: Vec<Command<'_>> = Vec::new();
        let mut taken: Vec<&Held> = Vec::with_capacity(held.len());
        let (mut events, mut rejected) = (Vec::new(), Vec::new());
        let mut committing = Vec::with_capacity(held.len());
        let mut skipped = 0;
        for job in &held {
            // Seen before: reserved before (by a deskbus that crashed), or
            // back from a restarted server's binlog, where ids are unique.
            // A job of a server without a binlog, on its first reservation,
            // is never matched: such a server reuses ids after a restart.
            // Looked at before `max_attempts`: a job already committed is
            // deleted, however often its delete was lost, never buried.
            let fp = fingerprint(&[b"job", &job.id.to_le_bytes(), &job.body]);
            let seen_before = job.reserves > 1 || job.persisted;
            if seen_before && self.window.take(fp) {
                skipped += 1;
                settle.push(Command::Delete(job.id));
                continue;
            }
            let max = u64::from(self.config.max_attempts);
            if max > 0 && job.reserves > max {
                JobBuried {
                    source: &self.id,
                    job_id: job.id,
                    reserves: job.reserves,
                }
                .emit();
                settle.push(Command::Bury {
                    id: job.id,
                    priority: job.priority,
                });
                continue;
            }
            committing.push(fp);
            taken.push(job);
            match self.decode(&job.body) {
                Ok(event) => events.push(event),
                Err(reason) => rejected.push(RejectedInput {
                    input_id: format!("job {}", job.id),
                    raw: job.body.to_vec(),
                    reason,
                }),
            }
        }
        if skipped > 0 {
            RedeliveriesSkipped {
                source: &self.id,
                count: skipped,
            }
            .emit();
        }
        self.settle(conn, "bury or delete jobs", &settle).await?;
        if taken.is_empty() {
            return Ok(());
        }
        EventsReceived {
            source: &self.id,
            count: taken.len(),
        }
        .emit();

        // The window as it will be once this batch is committed; cloned
        // after the matching above, so that its matches carry over.
        let mut next = self.window.clone();
        for fp in committing {
            next.push(fp);
        }
        let ttr = taken.iter().map(|j| j.ttr).min().unwrap_or(1);
        let touches: Vec<Command<'_>> = taken.iter().map(|j| Command::Touch(j.id)).collect();
        let submit = self.ingest.submit_with_rejects(
            &self.id,
            &events,
            rejected,
            Some((self.id.clone(), next.to_cursor())),
            Unmatched::Drop,
        );
        let (committed, touch_error) = commit_touching(conn, submit, ttr, &touches, &self.id).await;
        if let Err(error) = committed {
            // Ready again later, a little later at each attempt; buried
            // once `max_attempts` is reached.
            let release: Vec<Command<'_>> = taken
                .iter()
                .map(|j| Command::Release {
                    id: j.id,
                    priority: j.priority,
                    delay: j.reserves.min(MAX_RELEASE_DELAY) as u32,
                })
                .collect();
            if touch_error.is_none() {
                let _ = self.settle(conn, "release jobs", &release).await;
            }
            return Err(SessionError::Ingest(error));
        }
        self.window = next;
        self.committed += taken.len();
        if let Some(error) = touch_error {
            // The jobs are committed; the server releases them when this
            // connection closes, and they are recognised when they come back.
            return Err(self.client_error("touch jobs")(error));
        }
        let deletes: Vec<Command<'_>> = taken.iter().map(|j| Command::Delete(j.id)).collect();
        self.settle(conn, "delete jobs", &deletes).await
    }

    /// Sends delete, bury or release commands; a job that is not found any
    /// more (its time to run ran out, it was released) comes back later and
    /// is recognised then, so only the connection failing is an error.
    async fn settle(
        &self,
        conn: &mut Connection,
        step: &'static str,
        commands: &[Command<'_>],
    ) -> Result<(), SessionError> {
        let replies = self.pipeline(conn, step, commands).await?;
        for (command, reply) in commands.iter().zip(replies) {
            match reply {
                Reply::Deleted | Reply::Buried(None) | Reply::Released => {}
                Reply::NotFound => tracing::warn!(
                    source = %self.id,
                    command = command.name(),
                    "job no longer reserved by deskbus (its time to run ran out?); it comes back later"
                ),
                other => tracing::warn!(
                    source = %self.id,
                    command = command.name(),
                    reply = %other.summary(),
                    "unexpected reply"
                ),
            }
        }
        Ok(())
    }

    /// The event a job body carries, or why it carries none.
    fn decode(&self, body: &[u8]) -> Result<Event, String> {
        match self.config.body {
            Body::Envelope => {
                let input: EnvelopeInput = serde_json::from_slice(body).map_err(|e| {
                    format!("not a JSON event envelope ({{\"name\", \"data\", ...}}): {e}")
                })?;
                input
                    .into_event(&self.id, &self.origin_uuid)
                    .map_err(|e| format!("invalid event envelope: {e}"))
            }
            Body::Json => match serde_json::from_slice::<Value>(body) {
                Ok(data @ Value::Object(_)) => Ok(self.event(data)),
                Ok(other) => Err(format!(
                    "not a JSON object (`body = \"json\"`): found {}",
                    json_type(&other)
                )),
                Err(e) => Err(format!("not JSON (`body = \"json\"`): {e}")),
            },
            Body::Raw => match std::str::from_utf8(body) {
                Ok(text) => Ok(self.event(json!({ "body": text }))),
                Err(e) => Err(format!("not UTF-8 text (`body = \"raw\"`): {e}")),
            },
        }
    }

    fn event(&self, data: Value) -> Event {
        Event::new(&self.id, &self.config.event_name, &self.origin_uuid, data)
    }
}

/// Awaits `submit`, touching the jobs every half of the shortest time to
/// run meanwhile. Returns the commit's outcome and the first touch failure
/// that broke the connection (after which touching stops).
async fn commit_touching<F>(
    conn: &mut Connection,
    submit: F,
    ttr_seconds: u32,
    touches: &[Command<'_>],
    source: &str,
) -> (Result<(), IngestError>, Option<ClientError>)
where
    F: Future<Output = Result<(), IngestError>>,
{
    let every = Duration::from_millis(u64::from(ttr_seconds) * 500).max(Duration::from_millis(200));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(submit);
    let mut broken = None;
    loop {
        tokio::select! {
            committed = &mut submit => return (committed, broken),
            _ = ticker.tick(), if broken.is_none() => {
                let touched = tokio::time::timeout(REPLY_TIMEOUT, conn.pipeline(touches)).await;
                match touched {
                    Ok(Ok(replies)) => {
                        let lost = replies.iter().filter(|r| **r == Reply::NotFound).count();
                        if lost > 0 {
                            tracing::warn!(source, lost, "jobs no longer reserved while their commit was slow");
                        } else {
                            tracing::debug!(source, jobs = touches.len(), "spool commit is slow; jobs touched");
                        }
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(source, error = %ErrorChain(&error), "cannot touch jobs while the commit is slow");
                        broken = Some(error);
                    }
                    Err(_) => broken = Some(ClientError::Broken),
                }
            }
        }
    }
}
