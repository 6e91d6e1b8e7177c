//! A small async client for the [beanstalkd] text protocol.
//!
//! [`Codec`] owns the boundary between bytes and [`Reply`]s (and encodes
//! [`Command`]s); [`Connection`] pairs each command with its reply over one
//! TCP connection. Replies come back in request order, so commands can be
//! pipelined: [`Connection::put_many`] writes many `put`s before reading
//! their replies.
//!
//! ```no_run
//! # async fn demo() -> Result<(), deskbus_beanstalk::Error> {
//! use deskbus_beanstalk::{Connection, Job};
//!
//! let mut producer = Connection::connect("127.0.0.1:11300").await?;
//! producer.use_tube("tickets").await?;
//! let job = Job { priority: 1024, delay: 0, ttr: 60, body: b"{\"id\":1}" };
//! for result in producer.put_many(&[job, job]).await {
//!     println!("stored as job {}", result?.id());
//! }
//!
//! // `reserve` blocks: a consumer uses a connection of its own.
//! let mut consumer = Connection::connect("127.0.0.1:11300").await?;
//! consumer.watch("tickets").await?;
//! consumer.ignore("default").await?;
//! if let Some(job) = consumer.reserve_with_timeout(1).await? {
//!     consumer.delete(job.id).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! The tube in `use` and the watch list belong to a connection: after a
//! reconnect, issue `use`/`watch` again. Connections do not reconnect by
//! themselves; [`Error::breaks_connection`] says when to replace one.
//!
//! [beanstalkd]: https://beanstalkd.github.io/

mod codec;
mod connection;
mod error;

pub use codec::{Codec, Command, MAX_BODY, MAX_LINE, Reply, is_valid_tube};
pub use connection::{Connection, Job, Put, Released, ReservedJob, Stats};
pub use error::Error;
