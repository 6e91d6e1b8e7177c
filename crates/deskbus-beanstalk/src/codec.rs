//! The bytes-to-replies boundary: commands in, replies out.
//!
//! Every reply is a CRLF-terminated line; three of them (`RESERVED`, `FOUND`,
//! `OK`) announce a body of `<bytes>` bytes followed by CRLF. The line alone
//! says whether a body follows, so decoding needs no knowledge of which
//! command was sent: replies come back in request order, and the caller
//! pairs them up.

use std::fmt::Write as _;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::Error;

/// Longest reply line we accept, CRLF excluded. The longest real one is
/// `USING <200-byte tube>`; anything much longer is not beanstalkd.
pub const MAX_LINE: usize = 256;

/// The largest body the server can be configured to hold (`-z` maximum,
/// 1 GiB). A reply announcing more is garbage, not a job.
pub const MAX_BODY: usize = 1 << 30;

/// A reply from the server, decoded but not yet matched to its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Inserted(u64),
    /// `BURIED <id>` after `put`, `BURIED` after `bury` or `release`.
    Buried(Option<u64>),
    Using(String),
    Watching(u64),
    Reserved {
        id: u64,
        body: Bytes,
    },
    Found {
        id: u64,
        body: Bytes,
    },
    /// `OK <bytes>` with its YAML body (stats and lists).
    Ok(Bytes),
    Deleted,
    Released,
    Touched,
    /// `KICKED <count>` after `kick`, `KICKED` after `kick-job`.
    Kicked(Option<u64>),
    Paused,
    NotFound,
    TimedOut,
    DeadlineSoon,
    NotIgnored,
    OutOfMemory,
    InternalError,
    BadFormat,
    UnknownCommand,
    ExpectedCrlf,
    JobTooBig,
    Draining,
}

impl Reply {
    /// The error a refusing reply stands for, when it is one that means the
    /// same whatever the command (`NOT_FOUND` and the like are left to the
    /// caller, for whom they are often a normal answer).
    pub fn server_error(&self) -> Option<Error> {
        Some(match self {
            Reply::OutOfMemory => Error::OutOfMemory,
            Reply::InternalError => Error::InternalError,
            Reply::BadFormat => Error::BadFormat,
            Reply::UnknownCommand => Error::UnknownCommand,
            Reply::ExpectedCrlf => Error::ExpectedCrlf,
            Reply::JobTooBig => Error::JobTooBig,
            Reply::Draining => Error::Draining,
            _ => return None,
        })
    }

    /// A short description for error messages; never the body.
    pub fn summary(&self) -> String {
        match self {
            Reply::Reserved { id, body } => format!("RESERVED {id} ({} bytes)", body.len()),
            Reply::Found { id, body } => format!("FOUND {id} ({} bytes)", body.len()),
            Reply::Ok(body) => format!("OK ({} bytes)", body.len()),
            other => format!("{other:?}"),
        }
    }
}

/// One command, borrowed from the caller so a `put` body is copied once,
/// straight into the write buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    Use(&'a str),
    Put {
        priority: u32,
        delay: u32,
        ttr: u32,
        body: &'a [u8],
    },
    Watch(&'a str),
    Ignore(&'a str),
    Reserve,
    ReserveWithTimeout(u32),
    Delete(u64),
    Touch(u64),
    Bury {
        id: u64,
        priority: u32,
    },
    Release {
        id: u64,
        priority: u32,
        delay: u32,
    },
    Peek(u64),
    PeekReady,
    PeekDelayed,
    PeekBuried,
    KickJob(u64),
    StatsJob(u64),
    StatsTube(&'a str),
    Stats,
    ListTubes,
    Quit,
}

impl Command<'_> {
    /// The command's name, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Use(_) => "use",
            Command::Put { .. } => "put",
            Command::Watch(_) => "watch",
            Command::Ignore(_) => "ignore",
            Command::Reserve => "reserve",
            Command::ReserveWithTimeout(_) => "reserve-with-timeout",
            Command::Delete(_) => "delete",
            Command::Touch(_) => "touch",
            Command::Bury { .. } => "bury",
            Command::Release { .. } => "release",
            Command::Peek(_) => "peek",
            Command::PeekReady => "peek-ready",
            Command::PeekDelayed => "peek-delayed",
            Command::PeekBuried => "peek-buried",
            Command::KickJob(_) => "kick-job",
            Command::StatsJob(_) => "stats-job",
            Command::StatsTube(_) => "stats-tube",
            Command::Stats => "stats",
            Command::ListTubes => "list-tubes",
            Command::Quit => "quit",
        }
    }
}

/// Whether beanstalkd accepts `name` as a tube: 1 to 200 bytes of
/// `A-Z a-z 0-9 - + / ; . $ _ ( )`, not starting with `-`. Checked before
/// sending because a space or CRLF in a name would inject a command.
pub fn is_valid_tube(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-+/;.$_()".contains(&b))
}

/// Encodes [`Command`]s and decodes [`Reply`]s.
#[derive(Debug, Clone, Default)]
pub struct Codec {
    _private: (),
}

impl Codec {
    pub fn new() -> Codec {
        Codec::default()
    }
}

impl Encoder<Command<'_>> for Codec {
    type Error = Error;

    fn encode(&mut self, command: Command<'_>, dst: &mut BytesMut) -> Result<(), Error> {
        if let Command::Use(tube)
        | Command::Watch(tube)
        | Command::Ignore(tube)
        | Command::StatsTube(tube) = command
            && !is_valid_tube(tube)
        {
            return Err(Error::InvalidTube(tube.to_owned()));
        }
        // Writing into a BytesMut cannot fail.
        let _ = match command {
            Command::Use(tube) => write!(dst, "use {tube}\r\n"),
            Command::Put {
                priority,
                delay,
                ttr,
                body,
            } => {
                dst.reserve(body.len() + 48);
                let _ = write!(dst, "put {priority} {delay} {ttr} {}\r\n", body.len());
                dst.extend_from_slice(body);
                dst.extend_from_slice(b"\r\n");
                Ok(())
            }
            Command::Watch(tube) => write!(dst, "watch {tube}\r\n"),
            Command::Ignore(tube) => write!(dst, "ignore {tube}\r\n"),
            Command::Reserve => write!(dst, "reserve\r\n"),
            Command::ReserveWithTimeout(secs) => write!(dst, "reserve-with-timeout {secs}\r\n"),
            Command::Delete(id) => write!(dst, "delete {id}\r\n"),
            Command::Touch(id) => write!(dst, "touch {id}\r\n"),
            Command::Bury { id, priority } => write!(dst, "bury {id} {priority}\r\n"),
            Command::Release {
                id,
                priority,
                delay,
            } => write!(dst, "release {id} {priority} {delay}\r\n"),
            Command::Peek(id) => write!(dst, "peek {id}\r\n"),
            Command::PeekReady => write!(dst, "peek-ready\r\n"),
            Command::PeekDelayed => write!(dst, "peek-delayed\r\n"),
            Command::PeekBuried => write!(dst, "peek-buried\r\n"),
            Command::KickJob(id) => write!(dst, "kick-job {id}\r\n"),
            Command::StatsJob(id) => write!(dst, "stats-job {id}\r\n"),
            Command::StatsTube(tube) => write!(dst, "stats-tube {tube}\r\n"),
            Command::Stats => write!(dst, "stats\r\n"),
            Command::ListTubes => write!(dst, "list-tubes\r\n"),
            Command::Quit => write!(dst, "quit\r\n"),
        };
        Ok(())
    }
}

/// What a reply line says: a complete reply, or one whose body follows.
enum Head {
    Done(Reply),
    Body(BodyKind, usize),
}

enum BodyKind {
    Reserved(u64),
    Found(u64),
    Ok,
}

impl Decoder for Codec {
    type Item = Reply;
    type Error = Error;

    /// Returns `Ok(None)` until a whole reply (line and body) is buffered,
    /// consuming nothing; then consumes exactly that reply.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, Error> {
        let window = &src[..src.len().min(MAX_LINE + 2)];
        let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
            if window.len() >= MAX_LINE + 2 {
                return Err(Error::Protocol(format!(
                    "reply line longer than {MAX_LINE} bytes: {}",
                    escape(&window[..32])
                )));
            }
            return Ok(None);
        };
        let line_len = end + 2;
        match parse_line(&src[..end])? {
            Head::Done(reply) => {
                src.advance(line_len);
                Ok(Some(reply))
            }
            Head::Body(kind, bytes) => {
                let total = line_len + bytes + 2;
                if src.len() < total {
                    // Grow towards the body, but never trust a huge length
                    // announced by a peer enough to allocate it up front.
                    src.reserve((total - src.len()).min(1 << 20));
                    return Ok(None);
                }
                if &src[total - 2..total] != b"\r\n" {
                    return Err(Error::Protocol(format!(
                        "{bytes}-byte body not followed by CRLF"
                    )));
                }
                src.advance(line_len);
                let body = src.split_to(bytes).freeze();
                src.advance(2);
                Ok(Some(match kind {
                    BodyKind::Reserved(id) => Reply::Reserved { id, body },
                    BodyKind::Found(id) => Reply::Found { id, body },
                    BodyKind::Ok => Reply::Ok(body),
                }))
            }
        }
    }
}

fn parse_line(line: &[u8]) -> Result<Head, Error> {
    let bad = || Error::Protocol(format!("unexpected reply line {}", escape(line)));
    let mut words = line.split(|&b| b == b' ');
    let word = words.next().ok_or_else(bad)?;
    let args: Vec<&[u8]> = words.collect();
    let number = |i: usize| -> Result<u64, Error> {
        let arg = args.get(i).ok_or_else(bad)?;
        // Digits only: `str::parse` would also take a leading `+`.
        if arg.is_empty() || arg.len() > 20 || !arg.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        std::str::from_utf8(arg)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    };
    let arity = |n: usize| if args.len() == n { Ok(()) } else { Err(bad()) };
    let body_len = |i: usize| -> Result<usize, Error> {
        let n = number(i)?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= MAX_BODY)
            .ok_or_else(|| Error::Protocol(format!("announced body of {n} bytes is too large")))
    };
    let done = |reply: Reply| Ok(Head::Done(reply));
    match word {
        b"INSERTED" => {
            arity(1)?;
            done(Reply::Inserted(number(0)?))
        }
        b"BURIED" => match args.len() {
            0 => done(Reply::Buried(None)),
            1 => done(Reply::Buried(Some(number(0)?))),
            _ => Err(bad()),
        },
        b"USING" => {
            arity(1)?;
            match std::str::from_utf8(args[0]) {
                Ok(tube) if is_valid_tube(tube) => done(Reply::Using(tube.to_owned())),
                _ => Err(bad()),
            }
        }
        b"WATCHING" => {
            arity(1)?;
            done(Reply::Watching(number(0)?))
        }
        b"RESERVED" => {
            arity(2)?;
            Ok(Head::Body(BodyKind::Reserved(number(0)?), body_len(1)?))
        }
        b"FOUND" => {
            arity(2)?;
            Ok(Head::Body(BodyKind::Found(number(0)?), body_len(1)?))
        }
        b"OK" => {
            arity(1)?;
            Ok(Head::Body(BodyKind::Ok, body_len(0)?))
        }
        b"KICKED" => match args.len() {
            0 => done(Reply::Kicked(None)),
            1 => done(Reply::Kicked(Some(number(0)?))),
            _ => Err(bad()),
        },
        other => {
            arity(0)?;
            done(match other {
                b"DELETED" => Reply::Deleted,
                b"RELEASED" => Reply::Released,
                b"TOUCHED" => Reply::Touched,
                b"PAUSED" => Reply::Paused,
                b"NOT_FOUND" => Reply::NotFound,
                b"TIMED_OUT" => Reply::TimedOut,
                b"DEADLINE_SOON" => Reply::DeadlineSoon,
                b"NOT_IGNORED" => Reply::NotIgnored,
                b"OUT_OF_MEMORY" => Reply::OutOfMemory,
                b"INTERNAL_ERROR" => Reply::InternalError,
                b"BAD_FORMAT" => Reply::BadFormat,
                b"UNKNOWN_COMMAND" => Reply::UnknownCommand,
                b"EXPECTED_CRLF" => Reply::ExpectedCrlf,
                b"JOB_TOO_BIG" => Reply::JobTooBig,
                b"DRAINING" => Reply::Draining,
                _ => return Err(bad()),
            })
        }
    }
}

/// A peer's bytes made safe to print in a message (at most 64 of them).
fn escape(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(64)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    match bytes.len() > 64 {
        true => format!("\"{shown}…\""),
        false => format!("\"{shown}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Reply>, Error> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(reply) = Codec::new().decode(&mut buf)? {
            out.push(reply);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(out)
    }

    #[test]
    fn decodes_every_reply_shape() {
        let replies = decode_all(
            b"INSERTED 7\r\nBURIED 8\r\nBURIED\r\nUSING a.b-c\r\nWATCHING 2\r\n\
              RESERVED 9 5\r\nhello\r\nFOUND 10 0\r\n\r\nOK 4\r\n---\n\r\n\
              DELETED\r\nKICKED 3\r\nKICKED\r\nNOT_FOUND\r\nTIMED_OUT\r\nJOB_TOO_BIG\r\n\
              DRAINING\r\nOUT_OF_MEMORY\r\nBAD_FORMAT\r\nEXPECTED_CRLF\r\n",
        )
        .unwrap();
        assert_eq!(
            replies,
            vec![
                Reply::Inserted(7),
                Reply::Buried(Some(8)),
                Reply::Buried(None),
                Reply::Using("a.b-c".into()),
                Reply::Watching(2),
                Reply::Reserved {
                    id: 9,
                    body: Bytes::from_static(b"hello")
                },
                Reply::Found {
                    id: 10,
                    body: Bytes::new()
                },
                Reply::Ok(Bytes::from_static(b"---\n")),
                Reply::Deleted,
                Reply::Kicked(Some(3)),
                Reply::Kicked(None),
                Reply::NotFound,
                Reply::TimedOut,
                Reply::JobTooBig,
                Reply::Draining,
                Reply::OutOfMemory,
                Reply::BadFormat,
                Reply::ExpectedCrlf,
            ]
        );
        assert!(matches!(
            Reply::JobTooBig.server_error(),
            Some(Error::JobTooBig)
        ));
        assert!(Reply::NotFound.server_error().is_none());
    }

    #[test]
    fn a_body_may_hold_crlf_and_reply_words() {
        let replies = decode_all(b"RESERVED 1 11\r\nDELETED\r\n\r\n\r\nINSERTED 2\r\n").unwrap();
        assert_eq!(
            replies,
            vec![
                Reply::Reserved {
                    id: 1,
                    body: Bytes::from_static(b"DELETED\r\n\r\n")
                },
                Reply::Inserted(2)
            ]
        );
    }

    #[test]
    fn partial_reads_consume_nothing_until_complete() {
        let whole = b"RESERVED 42 11\r\nhello world\r\nINSERTED 5\r\n";
        // Fed one byte at a time, the same replies come out, each exactly
        // when its last byte arrives.
        let mut codec = Codec::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for (i, &b) in whole.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            let before = buf.len();
            match codec.decode(&mut buf).unwrap() {
                Some(reply) => got.push((i, reply)),
                None => assert_eq!(buf.len(), before, "consumed a partial reply"),
            }
        }
        assert_eq!(
            got,
            vec![
                (
                    28,
                    Reply::Reserved {
                        id: 42,
                        body: Bytes::from_static(b"hello world")
                    }
                ),
                (whole.len() - 1, Reply::Inserted(5)),
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn garbage_is_a_protocol_error_not_a_panic() {
        for garbage in [
            &b"HELLO\r\n"[..],
            b"INSERTED\r\n",
            b"INSERTED x\r\n",
            b"INSERTED +1\r\n",
            b"INSERTED 1 2\r\n",
            b"INSERTED 99999999999999999999999\r\n",
            b"DELETED now\r\n",
            b"USING bad tube\r\n",
            b"USING -x\r\n",
            b"\r\n",
            b" \r\n",
            b"RESERVED 1 3\r\nabcXY",
            b"OK 2000000000\r\n",
            b"OK -1\r\n",
            b"\xff\xfe\r\n",
        ] {
            let mut buf = BytesMut::from(garbage);
            assert!(
                matches!(Codec::new().decode(&mut buf), Err(Error::Protocol(_))),
                "{garbage:?}"
            );
        }
        // No CRLF within the longest line: refused rather than buffered forever.
        let mut buf = BytesMut::from(&[b'A'; MAX_LINE + 2][..]);
        assert!(matches!(
            Codec::new().decode(&mut buf),
            Err(Error::Protocol(_))
        ));
        // A lone LF is not a line end; short, it just waits.
        let mut buf = BytesMut::from(&b"INSERTED 1\n"[..]);
        assert!(Codec::new().decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn encodes_commands_and_refuses_injected_tubes() {
        let mut buf = BytesMut::new();
        let mut codec = Codec::new();
        codec.encode(Command::Use("t.1"), &mut buf).unwrap();
        codec
            .encode(
                Command::Put {
                    priority: 1024,
                    delay: 0,
                    ttr: 60,
                    body: b"a\r\nb",
                },
                &mut buf,
            )
            .unwrap();
        codec
            .encode(Command::ReserveWithTimeout(0), &mut buf)
            .unwrap();
        assert_eq!(
            &buf[..],
            b"use t.1\r\nput 1024 0 60 4\r\na\r\nb\r\nreserve-with-timeout 0\r\n"
        );
        for bad in ["", "a b", "x\r\nput 0 0 0 1", "-x", &"t".repeat(201)] {
            let mut buf = BytesMut::new();
            assert!(matches!(
                codec.encode(Command::Watch(bad), &mut buf),
                Err(Error::InvalidTube(_))
            ));
            assert!(buf.is_empty());
        }
        assert!(is_valid_tube(&"t".repeat(200)));
        assert!(is_valid_tube("a-+/;.$_()9"));
    }
}
