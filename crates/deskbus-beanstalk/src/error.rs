use std::io;

/// Everything that can go wrong talking to beanstalkd.
///
/// Server replies that refuse a command have a variant each, so callers can
/// tell a poison job (`JobTooBig`) from a busy server (`Draining`,
/// `OutOfMemory`) from a broken connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot connect to {address}")]
    Connect {
        address: String,
        #[source]
        source: io::Error,
    },
    #[error("i/o error")]
    Io(#[from] io::Error),
    #[error("connection closed by the server")]
    Closed,
    /// The connection was left mid-request (an error, or a cancelled
    /// future): its replies can no longer be matched to commands.
    #[error("connection unusable after an earlier failure; reconnect")]
    Broken,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("invalid tube name {0:?}: 1 to 200 of A-Z a-z 0-9 -+/;.$_(), not starting with '-'")]
    InvalidTube(String),
    #[error("job body is larger than the server's max job size (JOB_TOO_BIG)")]
    JobTooBig,
    #[error("server is draining and takes no new jobs (DRAINING)")]
    Draining,
    #[error("server is out of memory (OUT_OF_MEMORY)")]
    OutOfMemory,
    #[error("server internal error (INTERNAL_ERROR)")]
    InternalError,
    #[error("server refused a malformed command (BAD_FORMAT)")]
    BadFormat,
    #[error("job body was not followed by CRLF (EXPECTED_CRLF)")]
    ExpectedCrlf,
    #[error("server does not know the command (UNKNOWN_COMMAND)")]
    UnknownCommand,
    #[error("job not found, or not reserved by this connection (NOT_FOUND)")]
    NotFound,
    #[error("a job reserved by this connection is about to time out (DEADLINE_SOON)")]
    DeadlineSoon,
    #[error("cannot ignore the only watched tube (NOT_IGNORED)")]
    NotIgnored,
    #[error("unexpected reply {reply} to `{command}`")]
    Unexpected {
        command: &'static str,
        reply: String,
    },
    /// A pipelined command whose reply never came because the connection
    /// failed on an earlier one. The command may or may not have run.
    #[error("not answered: the connection failed earlier in the pipeline")]
    Aborted,
}

impl Error {
    /// Worth trying again later, possibly on a new connection: the server
    /// was busy or unreachable, not refusing this job for what it is.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Io(_)
                | Error::Closed
                | Error::Broken
                | Error::Draining
                | Error::OutOfMemory
                | Error::InternalError
                | Error::Aborted
        )
    }

    /// The connection can no longer be trusted and must be replaced.
    ///
    /// `BAD_FORMAT` and `EXPECTED_CRLF` on a `put` mean the server did not
    /// skip the body the way we expected, so it may be reading our job as
    /// commands: the byte streams are out of step. `UNKNOWN_COMMAND` to a
    /// command this client frames correctly says the same (or that the
    /// peer is not beanstalkd).
    pub fn breaks_connection(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::Io(_)
                | Error::Closed
                | Error::Broken
                | Error::Protocol(_)
                | Error::InternalError
                | Error::BadFormat
                | Error::ExpectedCrlf
                | Error::UnknownCommand
                | Error::Unexpected { .. }
                | Error::Aborted
        )
    }
}
