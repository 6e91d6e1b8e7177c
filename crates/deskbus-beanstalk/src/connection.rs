//! One TCP connection to beanstalkd: send commands, read replies in order.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::codec::{Decoder, Encoder};

use crate::Error;
use crate::codec::{Codec, Command, MAX_BODY, Reply};

/// How many pipelined commands are written before their replies are read.
/// Bounded so that the replies we have not read yet always fit in the
/// socket buffers: otherwise the server blocks writing them, stops reading,
/// and both ends wait on each other.
const PIPELINE_WINDOW: usize = 256;

/// Most body bytes in one window of puts (a larger job goes alone):
/// a window is encoded into one buffer before it is written, so without
/// this bound 256 large jobs would be copied into memory at once.
const WINDOW_BYTES: usize = 1 << 20;

/// A write buffer grown past this by a large window is let go after it,
/// rather than kept for the life of the connection.
const WRITE_BUFFER_KEPT: usize = 2 * WINDOW_BYTES;

/// `jobs` in pipeline windows: at most [`PIPELINE_WINDOW`] jobs and at
/// most [`WINDOW_BYTES`] of bodies each, or one larger job alone.
fn windows<'j, 'b>(jobs: &'j [Job<'b>]) -> impl Iterator<Item = &'j [Job<'b>]> {
    let mut rest = jobs;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (mut end, mut bytes) = (1, rest[0].body.len());
        while end < rest.len()
            && end < PIPELINE_WINDOW
            && bytes + rest[end].body.len() <= WINDOW_BYTES
        {
            bytes += rest[end].body.len();
            end += 1;
        }
        let (window, tail) = rest.split_at(end);
        rest = tail;
        Some(window)
    })
}

/// A job to `put`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job<'a> {
    /// 0 is most urgent; beanstalkd and most clients default to 1024.
    pub priority: u32,
    /// Seconds the job stays delayed before it becomes ready.
    pub delay: u32,
    /// Seconds a worker may hold the job before it is released again
    /// (time to run); the server raises 0 to 1.
    pub ttr: u32,
    pub body: &'a [u8],
}

/// Where a `put` job went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Inserted(u64),
    /// Stored but buried: the server could not grow its priority queue.
    /// The job exists; putting it again would duplicate it.
    Buried(u64),
}

impl Put {
    pub fn id(self) -> u64 {
        match self {
            Put::Inserted(id) | Put::Buried(id) => id,
        }
    }
}

/// A job handed out by `reserve` or `peek`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedJob {
    pub id: u64,
    pub body: Bytes,
}

/// What `release` did with the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    Released,
    /// Buried instead, for lack of memory on the server.
    Buried,
}

/// The `key: value` map of a `stats*` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats(pub BTreeMap<String, String>);

impl Stats {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn number(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }

    /// Parses the server's YAML subset: `key: value` lines after `---`.
    /// beanstalkd 1.12 leaves strings bare, newer versions quote them.
    /// Public for pipelined `stats-job` replies ([`Connection::pipeline`]).
    pub fn parse(body: &[u8]) -> Stats {
        let text = String::from_utf8_lossy(body);
        Stats(
            text.lines()
                .filter_map(|line| line.split_once(": "))
                .map(|(k, v)| (k.trim().to_owned(), unquote(v.trim()).to_owned()))
                .collect(),
        )
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// A connection to beanstalkd.
///
/// Not `Clone`: the tube in `use` and the watch list belong to the
/// connection, and a reconnect starts again at `default` — callers that
/// reconnect must `use`/`watch` again.
///
/// Every method is a request and its reply. Dropping a method's future
/// before it completes (a timeout) leaves replies unread; the connection
/// then refuses further requests with [`Error::Broken`].
pub struct Connection {
    stream: TcpStream,
    codec: Codec,
    read: BytesMut,
    write: BytesMut,
    broken: bool,
}

impl Connection {
    pub async fn connect(
        address: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Connection, Error> {
        let stream = TcpStream::connect(&address)
            .await
            .map_err(|source| Error::Connect {
                address: address.to_string(),
                source,
            })?;
        // Small commands and their replies: waiting to coalesce only adds latency.
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            codec: Codec::new(),
            read: BytesMut::with_capacity(8 * 1024),
            write: BytesMut::with_capacity(8 * 1024),
            broken: false,
        })
    }

    /// Whether an earlier failure left this connection unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sends `commands` in one write, then reads one reply per command.
    /// Server refusals come back as replies; `Err` means the connection
    /// failed, and it is then broken.
    pub async fn pipeline(&mut self, commands: &[Command<'_>]) -> Result<Vec<Reply>, Error> {
        if self.broken {
            return Err(Error::Broken);
        }
        // Marked broken until every reply is read, so a cancelled future
        // (timeout) cannot leave stale replies for the next caller.
        self.broken = true;
        self.write.clear();
        for command in commands {
            if let Err(error) = self.codec.encode(*command, &mut self.write) {
                // Nothing was sent yet: the connection is still in step.
                self.broken = false;
                return Err(error);
            }
        }
        self.stream.write_all(&self.write).await?;
        if self.write.capacity() > WRITE_BUFFER_KEPT {
            self.write = BytesMut::with_capacity(8 * 1024);
        }
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(self.read_reply().await?);
        }
        self.broken = false;
        Ok(replies)
    }

    async fn read_reply(&mut self) -> Result<Reply, Error> {
        loop {
            if let Some(reply) = self.codec.decode(&mut self.read)? {
                return Ok(reply);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(Error::Closed);
            }
        }
    }

    async fn request(&mut self, command: Command<'_>) -> Result<Reply, Error> {
        let reply = self
            .pipeline(&[command])
            .await?
            .pop()
            .ok_or(Error::Broken)?;
        if let Some(error) = reply.server_error() {
            if error.breaks_connection() {
                self.broken = true;
            }
            return Err(error);
        }
        Ok(reply)
    }

    fn unexpected(&mut self, command: &Command<'_>, reply: Reply) -> Error {
        // A reply that does not fit the command means we lost track of the
        // pairing; nothing after it can be trusted.
        self.broken = true;
        Error::Unexpected {
            command: command.name(),
            reply: reply.summary(),
        }
    }

    async fn expect(
        &mut self,
        command: Command<'_>,
        check: impl FnOnce(Reply) -> Result<Result<(), Error>, Reply>,
    ) -> Result<(), Error> {
        let reply = self.request(command).await?;
        match check(reply) {
            Ok(result) => result,
            Err(reply) => Err(self.unexpected(&command, reply)),
        }
    }

    /// `use <tube>`: later `put`s on this connection go to `tube`.
    pub async fn use_tube(&mut self, tube: &str) -> Result<(), Error> {
        let command = Command::Use(tube);
        match self.request(command).await? {
            Reply::Using(t) if t == tube => Ok(()),
            other => Err(self.unexpected(&command, other)),
        }
    }

    /// `put`: one job into the tube in use.
    pub async fn put(&mut self, job: Job<'_>) -> Result<Put, Error> {
        self.put_many(&[job])
            .await
            .pop()
            .unwrap_or(Err(Error::Aborted))
    }

    /// Pipelined `put`s: writes a window of jobs, then reads their replies,
    /// in order. One result per job; after a connection failure the jobs
    /// not answered get [`Error::Aborted`] (each may or may not be stored).
    pub async fn put_many(&mut self, jobs: &[Job<'_>]) -> Vec<Result<Put, Error>> {
        let mut results = Vec::with_capacity(jobs.len());
        self.put_many_into(jobs, &mut results).await;
        results
    }

    /// [`Connection::put_many`], pushing each window's results into
    /// `results` as soon as they are read: a caller that gives up on the
    /// future (a timeout) keeps the results of the windows answered before,
    /// and need not put those jobs again.
    ///
    /// A body larger than any beanstalkd takes ([`MAX_BODY`]) is refused
    /// here with [`Error::JobTooBig`], unsent: the server might not even
    /// parse its length, and would then read the body as commands.
    pub async fn put_many_into(&mut self, jobs: &[Job<'_>], results: &mut Vec<Result<Put, Error>>) {
        let mut rest = jobs;
        loop {
            let too_big = rest.iter().position(|job| job.body.len() > MAX_BODY);
            self.put_run(&rest[..too_big.unwrap_or(rest.len())], results)
                .await;
            let Some(too_big) = too_big else { return };
            results.push(Err(Error::JobTooBig));
            rest = &rest[too_big + 1..];
        }
    }

    /// [`Connection::put_many_into`] for jobs whose bodies all fit.
    async fn put_run(&mut self, jobs: &[Job<'_>], results: &mut Vec<Result<Put, Error>>) {
        let first = results.len();
        for window in windows(jobs) {
            if self.broken {
                break;
            }
            let commands: Vec<Command<'_>> = window
                .iter()
                .map(|job| Command::Put {
                    priority: job.priority,
                    delay: job.delay,
                    ttr: job.ttr,
                    body: job.body,
                })
                .collect();
            match self.pipeline(&commands).await {
                Ok(replies) => {
                    for reply in replies {
                        let result = match reply {
                            Reply::Inserted(id) => Ok(Put::Inserted(id)),
                            Reply::Buried(Some(id)) => Ok(Put::Buried(id)),
                            other => Err(match other.server_error() {
                                Some(error) => error,
                                None => self.unexpected(&commands[0], other),
                            }),
                        };
                        if let Err(error) = &result
                            && error.breaks_connection()
                        {
                            // The replies after this one may belong to a body
                            // the server read as commands: do not trust them.
                            self.broken = true;
                            results.push(result);
                            break;
                        }
                        results.push(result);
                    }
                }
                Err(error) => {
                    results.push(Err(error));
                    break;
                }
            }
        }
        while results.len() - first < jobs.len() {
            results.push(Err(Error::Aborted));
        }
    }

    /// `watch <tube>`; returns how many tubes are watched now.
    pub async fn watch(&mut self, tube: &str) -> Result<u64, Error> {
        let command = Command::Watch(tube);
        match self.request(command).await? {
            Reply::Watching(n) => Ok(n),
            other => Err(self.unexpected(&command, other)),
        }
    }

    /// `ignore <tube>`; returns how many tubes are watched now.
    pub async fn ignore(&mut self, tube: &str) -> Result<u64, Error> {
        let command = Command::Ignore(tube);
        match self.request(command).await? {
            Reply::Watching(n) => Ok(n),
            Reply::NotIgnored => Err(Error::NotIgnored),
            other => Err(self.unexpected(&command, other)),
        }
    }

    /// `reserve`: waits for a job from a watched tube, however long.
    pub async fn reserve(&mut self) -> Result<ReservedJob, Error> {
        let command = Command::Reserve;
        match self.request(command).await? {
            Reply::Reserved { id, body } => Ok(ReservedJob { id, body }),
            Reply::DeadlineSoon => Err(Error::DeadlineSoon),
            other => Err(self.unexpected(&command, other)),
        }
    }

    /// `reserve-with-timeout`: `None` when no job came within `seconds`
    /// (0 polls).
    pub async fn reserve_with_timeout(
        &mut self,
        seconds: u32,
    ) -> Result<Option<ReservedJob>, Error> {
        let command = Command::ReserveWithTimeout(seconds);
        match self.request(command).await? {
            Reply::Reserved { id, body } => Ok(Some(ReservedJob { id, body })),
            Reply::TimedOut => Ok(None),
            Reply::DeadlineSoon => Err(Error::DeadlineSoon),
            other => Err(self.unexpected(&command, other)),
        }
    }

    pub async fn delete(&mut self, id: u64) -> Result<(), Error> {
        self.expect(Command::Delete(id), |r| match r {
            Reply::Deleted => Ok(Ok(())),
            Reply::NotFound => Ok(Err(Error::NotFound)),
            other => Err(other),
        })
        .await
    }

    pub async fn touch(&mut self, id: u64) -> Result<(), Error> {
        self.expect(Command::Touch(id), |r| match r {
            Reply::Touched => Ok(Ok(())),
            Reply::NotFound => Ok(Err(Error::NotFound)),
            other => Err(other),
        })
        .await
    }

    pub async fn bury(&mut self, id: u64, priority: u32) -> Result<(), Error> {
        self.expect(Command::Bury { id, priority }, |r| match r {
            Reply::Buried(None) => Ok(Ok(())),
            Reply::NotFound => Ok(Err(Error::NotFound)),
            other => Err(other),
        })
        .await
    }

    pub async fn release(&mut self, id: u64, priority: u32, delay: u32) -> Result<Released, Error> {
        let command = Command::Release {
            id,
            priority,
            delay,
        };
        match self.request(command).await? {
            Reply::Released => Ok(Released::Released),
            Reply::Buried(None) => Ok(Released::Buried),
            Reply::NotFound => Err(Error::NotFound),
            other => Err(self.unexpected(&command, other)),
        }
    }

    /// `kick-job`: makes a buried or delayed job ready; `false` if not found.
    pub async fn kick_job(&mut self, id: u64) -> Result<bool, Error> {
        let command = Command::KickJob(id);
        match self.request(command).await? {
            Reply::Kicked(None) => Ok(true),
            Reply::NotFound => Ok(false),
            other => Err(self.unexpected(&command, other)),
        }
    }

    async fn peek_command(&mut self, command: Command<'_>) -> Result<Option<ReservedJob>, Error> {
        match self.request(command).await? {
            Reply::Found { id, body } => Ok(Some(ReservedJob { id, body })),
            Reply::NotFound => Ok(None),
            other => Err(self.unexpected(&command, other)),
        }
    }

    /// `peek <id>`: the job, whatever its tube and state.
    pub async fn peek(&mut self, id: u64) -> Result<Option<ReservedJob>, Error> {
        self.peek_command(Command::Peek(id)).await
    }

    /// `peek-ready`: the next ready job of the tube in *use*.
    pub async fn peek_ready(&mut self) -> Result<Option<ReservedJob>, Error> {
        self.peek_command(Command::PeekReady).await
    }

    /// `peek-delayed`: the delayed job of the tube in *use* that is ready soonest.
    pub async fn peek_delayed(&mut self) -> Result<Option<ReservedJob>, Error> {
        self.peek_command(Command::PeekDelayed).await
    }

    /// `peek-buried`: the oldest buried job of the tube in *use*.
    pub async fn peek_buried(&mut self) -> Result<Option<ReservedJob>, Error> {
        self.peek_command(Command::PeekBuried).await
    }

    async fn stats_command(&mut self, command: Command<'_>) -> Result<Option<Stats>, Error> {
        match self.request(command).await? {
            Reply::Ok(body) => Ok(Some(Stats::parse(&body))),
            Reply::NotFound => Ok(None),
            other => Err(self.unexpected(&command, other)),
        }
    }

    /// `stats-job`: `pri`, `ttr`, `state`, `tube`, ...; `None` if not found.
    pub async fn stats_job(&mut self, id: u64) -> Result<Option<Stats>, Error> {
        self.stats_command(Command::StatsJob(id)).await
    }

    /// `stats-tube`: job counts of a tube; `None` if it does not exist.
    pub async fn stats_tube(&mut self, tube: &str) -> Result<Option<Stats>, Error> {
        self.stats_command(Command::StatsTube(tube)).await
    }

    /// `stats`: server-wide counters, `version`, `max-job-size`, `draining`.
    pub async fn stats(&mut self) -> Result<Stats, Error> {
        let command = Command::Stats;
        match self.stats_command(command).await? {
            Some(stats) => Ok(stats),
            None => Err(self.unexpected(&command, Reply::NotFound)),
        }
    }

    /// `list-tubes`: every tube that exists now.
    pub async fn list_tubes(&mut self) -> Result<Vec<String>, Error> {
        let command = Command::ListTubes;
        match self.request(command).await? {
            Reply::Ok(body) => Ok(String::from_utf8_lossy(&body)
                .lines()
                .filter_map(|l| l.strip_prefix("- "))
                .map(|t| unquote(t.trim()).to_owned())
                .collect()),
            other => Err(self.unexpected(&command, other)),
        }
    }

    /// `quit`, then close. The server sends no reply.
    pub async fn quit(mut self) -> Result<(), Error> {
        self.write.clear();
        self.codec.encode(Command::Quit, &mut self.write)?;
        self.stream.write_all(&self.write).await?;
        self.stream.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_hold_at_most_256_jobs_and_1_mib_of_bodies_or_one_larger_job() {
        let job = |body: &'static [u8]| Job {
            priority: 0,
            delay: 0,
            ttr: 1,
            body,
        };
        let sizes = |jobs: &[Job<'_>]| windows(jobs).map(<[_]>::len).collect::<Vec<_>>();
        let small = vec![job(b"x"); 600];
        assert_eq!(sizes(&small), [256, 256, 88]);
        static HALF: [u8; WINDOW_BYTES / 2] = [0; WINDOW_BYTES / 2];
        static BIG: [u8; WINDOW_BYTES + 1] = [0; WINDOW_BYTES + 1];
        let mixed = [job(&HALF), job(&HALF), job(&HALF), job(&BIG), job(b"x")];
        // Two halves fill a window; a body over the limit goes alone.
        assert_eq!(sizes(&mixed), [2, 1, 1, 1]);
        assert_eq!(sizes(&[]), Vec::<usize>::new());
    }

    #[test]
    fn stats_parse_bare_and_quoted_values() {
        let s = Stats::parse(b"---\nid: 5\ntube: default\nstate: \"ready\"\npri: 1024\n");
        assert_eq!(s.number("id"), Some(5));
        assert_eq!(s.get("tube"), Some("default"));
        assert_eq!(s.get("state"), Some("ready"));
        assert_eq!(s.number("pri"), Some(1024));
        assert_eq!(s.get("missing"), None);
    }
}
