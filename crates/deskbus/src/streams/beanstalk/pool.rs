//! The beanstalk stream's I/O: a few connections, each remembering the tube
//! it `use`s, replaced whenever one breaks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deskbus_beanstalk::{Connection, Error, Job, Put};
use tokio::sync::{Mutex, MutexGuard, Semaphore, SemaphorePermit};

/// A server that does not accept within this long is as good as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the replies of one tube's puts. beanstalkd answers a
/// put in microseconds; this only bounds a server that hangs. The replies
/// read before it passes are kept.
pub(super) const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct Pool {
    address: String,
    slots: Vec<Mutex<Option<Slot>>>,
    /// One permit per slot: whoever holds one finds a slot free, so a
    /// batch waits for the first connection to come free, not for one it
    /// picked (which may be waiting out a hung server's timeout).
    free: Semaphore,
    next: AtomicUsize,
}

pub(super) struct Slot {
    conn: Connection,
    /// The tube this connection `use`s; `default` on a new connection.
    using: String,
}

/// A slot in use. Its guard is released before its permit (field order),
/// so the next permit holder finds the slot free.
pub(super) struct Checkout<'a> {
    slot: MutexGuard<'a, Option<Slot>>,
    _turn: Option<SemaphorePermit<'a>>,
}

impl std::ops::Deref for Checkout<'_> {
    type Target = Option<Slot>;

    fn deref(&self) -> &Option<Slot> {
        &self.slot
    }
}

impl std::ops::DerefMut for Checkout<'_> {
    fn deref_mut(&mut self) -> &mut Option<Slot> {
        &mut self.slot
    }
}

impl Pool {
    pub(super) fn new(address: String, size: usize) -> Pool {
        let size = size.max(1);
        Pool {
            address,
            slots: (0..size).map(|_| Mutex::new(None)).collect(),
            free: Semaphore::new(size),
            next: AtomicUsize::new(0),
        }
    }

    /// A free connection slot, or the first one to come free. Holding it
    /// gives exclusive use: replies on a connection must be read by
    /// whoever sent the commands.
    pub(super) async fn checkout(&self) -> Checkout<'_> {
        // The semaphore is never closed: `ok()` is always a permit.
        let turn = self.free.acquire().await.ok();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        for i in 0..self.slots.len() {
            if let Ok(slot) = self.slots[(start + i) % self.slots.len()].try_lock() {
                return Checkout { slot, _turn: turn };
            }
        }
        // Not reached while permits and slots match; waiting is still right.
        Checkout {
            slot: self.slots[start].lock().await,
            _turn: turn,
        }
    }

    /// A new connection, for a health check that must not wait on deliveries.
    pub(super) async fn connect(&self) -> Result<Connection, Error> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(self.address.as_str()))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(Error::Connect {
                address: self.address.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {CONNECT_TIMEOUT:?}"),
                ),
            }),
        }
    }

    /// Puts `jobs` into `tube` as one pipeline on the checked-out
    /// connection, connecting (and `use`-ing the tube) as needed. One result
    /// per job, in order.
    ///
    /// A pooled connection may have died since it was last used (a server
    /// restart); if it fails before answering anything, the group is sent
    /// once more on a new connection rather than waiting for a retry.
    pub(super) async fn put(
        &self,
        slot: &mut Checkout<'_>,
        tube: &str,
        jobs: &[Job<'_>],
    ) -> Vec<Result<Put, Error>> {
        let reused = slot.is_some();
        let results = self.put_once(slot, tube, jobs).await;
        // Only a dead socket counts: a server that answered (even with a
        // refusal) was alive and would answer the same again, and one that
        // hung has had its time already.
        let nothing_answered = match results.first() {
            Some(Err(Error::Io(e))) => e.kind() != std::io::ErrorKind::TimedOut,
            Some(Err(Error::Closed | Error::Broken)) => true,
            _ => false,
        };
        if reused && nothing_answered {
            tracing::debug!(address = %self.address, "pooled connection failed; reconnecting");
            return self.put_once(slot, tube, jobs).await;
        }
        results
    }

    async fn put_once(
        &self,
        slot: &mut Checkout<'_>,
        tube: &str,
        jobs: &[Job<'_>],
    ) -> Vec<Result<Put, Error>> {
        let all = |error: Error| {
            let mut results = vec![Err(error)];
            results.resize_with(jobs.len(), || Err(Error::Aborted));
            results
        };
        if slot.as_ref().is_none_or(|s| s.conn.is_broken()) {
            match self.connect().await {
                Ok(conn) => {
                    **slot = Some(Slot {
                        conn,
                        using: "default".into(),
                    })
                }
                Err(error) => {
                    **slot = None;
                    return all(error);
                }
            }
        }
        let Some(s) = slot.as_mut() else {
            return all(Error::Broken);
        };
        let mut results = Vec::with_capacity(jobs.len());
        let outcome = tokio::time::timeout(REPLY_TIMEOUT, async {
            // The tube in use is per connection, and a new connection starts
            // at `default`: `use` again whenever it is not ours.
            if s.using != tube {
                s.conn.use_tube(tube).await?;
                s.using = tube.to_owned();
            }
            s.conn.put_many_into(jobs, &mut results).await;
            Ok::<_, Error>(())
        })
        .await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => results = all(error),
            // The windows answered before stay answered: putting those jobs
            // again would store them twice. The rest may or may not be stored.
            Err(_) => {
                results.push(Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no reply from beanstalkd within {REPLY_TIMEOUT:?}"),
                ))));
                results.truncate(jobs.len());
                results.resize_with(jobs.len(), || Err(Error::Aborted));
            }
        }
        // A timeout dropped the pipeline mid-request, which the client
        // records as broken too.
        if slot.as_ref().is_none_or(|s| s.conn.is_broken()) {
            **slot = None;
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every connection busy, a batch takes the first one to come
    /// free, not one it picked: a connection waiting out a hung server's
    /// timeout holds back only its own batch.
    #[tokio::test]
    async fn a_batch_waits_for_the_first_free_connection() {
        let pool = Pool::new("127.0.0.1:1".into(), 2);
        let hung = pool.checkout().await;
        let other = pool.checkout().await;
        let waiting = pool.checkout();
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut waiting)
                .await
                .is_err(),
            "both are busy"
        );
        drop(other);
        let taken = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the connection that came free is taken");
        drop((hung, taken));
    }
}
