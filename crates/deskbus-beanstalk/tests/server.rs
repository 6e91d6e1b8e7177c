//! Against a real beanstalkd: the shared one on 127.0.0.1:11300 (started by
//! `scripts/services beanstalkd`), or one of a test's own when it needs
//! server flags (`-z`) or to stop the server.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deskbus_beanstalk::{Connection, Error, Job, Put, Released};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SHARED: &str = "127.0.0.1:11300";

async fn shared() -> Connection {
    Connection::connect(SHARED).await.unwrap_or_else(|e| {
        panic!("beanstalkd is not reachable on {SHARED} ({e}); run `scripts/services beanstalkd`")
    })
}

/// A tube no other test (or earlier run) uses.
fn tube(name: &str) -> String {
    format!(
        "test.{name}.{}.{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn job(body: &[u8]) -> Job<'_> {
    Job {
        priority: 1024,
        delay: 0,
        ttr: 60,
        body,
    }
}

/// A beanstalkd of this test's own on a free port, killed on drop.
struct OwnServer {
    child: Child,
    address: String,
}

impl OwnServer {
    fn start(args: &[&str]) -> OwnServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("beanstalkd")
            .args(["-l", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start beanstalkd ({e}); run `scripts/services beanstalkd` to install it"
                )
            });
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "own beanstalkd never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnServer { child, address }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn put_reserve_inspect_and_finish_jobs() {
    let t = tube("lifecycle");
    let mut producer = shared().await;
    producer.use_tube(&t).await.unwrap();
    let first = producer
        .put(Job {
            priority: 7,
            delay: 0,
            ttr: 33,
            body: b"first\r\nwith crlf",
        })
        .await
        .unwrap();
    let delayed = producer
        .put(Job {
            priority: 5,
            delay: 100,
            ttr: 60,
            body: b"later",
        })
        .await
        .unwrap();
    assert!(matches!(first, Put::Inserted(_)));

    let stats = producer.stats_job(first.id()).await.unwrap().unwrap();
    assert_eq!(stats.number("pri"), Some(7));
    assert_eq!(stats.number("ttr"), Some(33));
    assert_eq!(stats.get("tube"), Some(t.as_str()));
    assert_eq!(stats.get("state"), Some("ready"));
    let stats = producer.stats_job(delayed.id()).await.unwrap().unwrap();
    assert_eq!(stats.get("state"), Some("delayed"));
    assert_eq!(stats.number("delay"), Some(100));
    let ready = producer.peek_ready().await.unwrap().unwrap();
    assert_eq!(ready.id, first.id());
    assert_eq!(&ready.body[..], b"first\r\nwith crlf");
    assert_eq!(
        producer.peek_delayed().await.unwrap().unwrap().id,
        delayed.id()
    );
    let tube_stats = producer.stats_tube(&t).await.unwrap().unwrap();
    assert_eq!(tube_stats.number("current-jobs-ready"), Some(1));
    assert_eq!(tube_stats.number("current-jobs-delayed"), Some(1));
    assert!(producer.list_tubes().await.unwrap().contains(&t));

    let mut worker = shared().await;
    assert_eq!(worker.watch(&t).await.unwrap(), 2);
    assert_eq!(worker.ignore("default").await.unwrap(), 1);
    assert!(matches!(worker.ignore(&t).await, Err(Error::NotIgnored)));
    let job = worker.reserve_with_timeout(1).await.unwrap().unwrap();
    assert_eq!(job.id, first.id());
    worker.touch(job.id).await.unwrap();
    assert_eq!(
        worker.release(job.id, 9, 0).await.unwrap(),
        Released::Released
    );
    let job = worker.reserve().await.unwrap();
    assert_eq!(
        worker
            .stats_job(job.id)
            .await
            .unwrap()
            .unwrap()
            .number("pri"),
        Some(9)
    );
    worker.bury(job.id, 9).await.unwrap();
    assert_eq!(producer.peek_buried().await.unwrap().unwrap().id, job.id);
    assert!(worker.kick_job(job.id).await.unwrap());
    let job = worker.reserve_with_timeout(1).await.unwrap().unwrap();
    worker.delete(job.id).await.unwrap();
    assert!(matches!(worker.delete(job.id).await, Err(Error::NotFound)));
    assert!(matches!(worker.touch(job.id).await, Err(Error::NotFound)));
    assert_eq!(worker.peek(job.id).await.unwrap(), None);
    // Only the delayed job is left, and it is not ready.
    assert_eq!(worker.reserve_with_timeout(0).await.unwrap(), None);
    producer.delete(delayed.id()).await.unwrap();
    let tube_stats = producer.stats_tube(&t).await.unwrap().unwrap();
    assert_eq!(tube_stats.number("total-jobs"), Some(2));
    assert_eq!(tube_stats.number("current-jobs-ready"), Some(0));
    assert_eq!(tube_stats.number("current-jobs-delayed"), Some(0));
    assert_eq!(
        producer.stats_tube("no.such.tube.ever").await.unwrap(),
        None
    );
    worker.quit().await.unwrap();
}

#[tokio::test]
async fn pipelined_puts_come_back_in_order() {
    let t = tube("pipeline");
    let mut producer = shared().await;
    producer.use_tube(&t).await.unwrap();
    let bodies: Vec<String> = (0..1000).map(|i| format!("job {i}")).collect();
    let jobs: Vec<Job<'_>> = bodies.iter().map(|b| job(b.as_bytes())).collect();
    let results = producer.put_many(&jobs).await;
    let ids: Vec<u64> = results.into_iter().map(|r| r.unwrap().id()).collect();
    assert_eq!(ids.len(), 1000);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids follow the order sent"
    );

    let mut worker = shared().await;
    worker.watch(&t).await.unwrap();
    worker.ignore("default").await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let job = worker.reserve_with_timeout(1).await.unwrap().unwrap();
        assert_eq!((job.id, &job.body[..]), (*id, bodies[i].as_bytes()));
        worker.delete(job.id).await.unwrap();
    }
}

#[tokio::test]
async fn job_too_big_refuses_one_job_and_keeps_the_connection() {
    let server = OwnServer::start(&["-z", "1024"]);
    let mut c = Connection::connect(&server.address).await.unwrap();
    c.use_tube("big").await.unwrap();
    let big = vec![b'x'; 1025];
    let fits = vec![b'y'; 1024];
    let results = c.put_many(&[job(b"a"), job(&big), job(&fits)]).await;
    assert!(matches!(results[0], Ok(Put::Inserted(_))), "{results:?}");
    assert!(matches!(results[1], Err(Error::JobTooBig)), "{results:?}");
    assert!(!results[1].as_ref().unwrap_err().is_transient());
    assert!(matches!(results[2], Ok(Put::Inserted(_))), "{results:?}");
    assert!(!c.is_broken());
    assert_eq!(c.stats().await.unwrap().number("max-job-size"), Some(1024));
}

/// A body larger than any beanstalkd takes never goes out: the jobs around
/// it are put, in order, and the connection stays in step. (The vector is
/// never written to, so its gigabyte is never touched.)
#[tokio::test]
async fn a_body_no_server_takes_is_refused_unsent() {
    let mut c = shared().await;
    c.use_tube(&tube("huge")).await.unwrap();
    let huge = vec![0u8; deskbus_beanstalk::MAX_BODY + 1];
    let results = c
        .put_many(&[job(b"1"), job(&huge), job(b"2"), job(b"3")])
        .await;
    assert!(matches!(results[0], Ok(Put::Inserted(_))), "{results:?}");
    assert!(matches!(results[1], Err(Error::JobTooBig)), "{results:?}");
    assert!(matches!(results[2], Ok(Put::Inserted(_))), "{results:?}");
    assert!(matches!(results[3], Ok(Put::Inserted(_))), "{results:?}");
    assert_eq!(results.len(), 4);
    assert!(!c.is_broken());
}

#[tokio::test]
async fn a_draining_server_refuses_puts_as_transient() {
    let server = OwnServer::start(&[]);
    let mut c = Connection::connect(&server.address).await.unwrap();
    Command::new("kill")
        .args(["-USR1", &server.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.stats().await.unwrap().get("draining") != Some("true") {
        assert!(Instant::now() < deadline, "server never started draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let error = c.put(job(b"x")).await.unwrap_err();
    assert!(matches!(error, Error::Draining), "{error:?}");
    assert!(error.is_transient() && !error.breaks_connection());
    assert!(c.stats().await.is_ok(), "still usable");
}

#[tokio::test]
async fn invalid_tubes_are_refused_before_sending() {
    let mut c = shared().await;
    for bad in ["with space", "x\r\nput 0 0 1 1", "-dash", ""] {
        assert!(matches!(c.use_tube(bad).await, Err(Error::InvalidTube(_))));
    }
    assert!(!c.is_broken());
    assert!(c.stats().await.is_ok());
}

#[tokio::test]
async fn a_stopped_server_breaks_the_connection() {
    let mut server = OwnServer::start(&[]);
    let mut c = Connection::connect(&server.address).await.unwrap();
    c.use_tube("gone").await.unwrap();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let results = c.put_many(&[job(b"1"), job(b"2")]).await;
    let first = results[0].as_ref().unwrap_err();
    assert!(
        first.is_transient() && first.breaks_connection(),
        "{first:?}"
    );
    assert!(matches!(results[1], Err(Error::Aborted)), "{results:?}");
    assert!(c.is_broken());
    assert!(matches!(c.stats().await, Err(Error::Broken)));
    let refused = Connection::connect(&server.address).await;
    assert!(matches!(refused, Err(Error::Connect { .. })));
}

#[tokio::test]
async fn a_cancelled_request_leaves_the_connection_broken() {
    let t = tube("cancel");
    let mut c = shared().await;
    c.watch(&t).await.unwrap();
    c.ignore("default").await.unwrap();
    // `reserve` waits for a job that never comes; the timeout drops it.
    let waited = tokio::time::timeout(Duration::from_millis(100), c.reserve()).await;
    assert!(waited.is_err());
    assert!(c.is_broken());
    assert!(matches!(c.list_tubes().await, Err(Error::Broken)));
}

/// A connection to `server` through a proxy of the test's own: it passes on
/// every byte the client sends, but only the server's first `lines` reply
/// lines back. Then it stalls, as a server that stops answering would: it
/// passes nothing more on, yet holds both sides open, so the client sees
/// neither an EOF nor an error.
async fn connect_stalling_after(server: &str, lines: usize) -> Connection {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(Connection::connect(proxy), listener.accept());
    let (mut from_client, mut to_client) = accepted.unwrap().0.into_split();
    let (mut from_server, mut to_server) = tokio::net::TcpStream::connect(server)
        .await
        .unwrap()
        .into_split();
    // Client to server: everything, as it comes.
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
    });
    // Server to client: up to and including the `lines`-th b'\n'.
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8 * 1024];
        let mut left = lines;
        while left > 0 {
            let n = match from_server.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut end = 0;
            while end < n && left > 0 {
                if buf[end] == b'\n' {
                    left -= 1;
                }
                end += 1;
            }
            if to_client.write_all(&buf[..end]).await.is_err() {
                return;
            }
        }
        // Stalled: read and drop the rest, so the server never blocks
        // writing, while `to_client` stays open until the server closes.
        while from_server.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        drop(to_client);
    });
    client.unwrap()
}

/// The results of the windows answered before a caller gives up on
/// `put_many_into` (a timeout) stay in `results`: those jobs are stored, and
/// a caller that puts again only the jobs without a result must not put the
/// confirmed ones twice. 600 jobs go out in windows of 256, 256 and 88; the
/// proxy passes on the replies to the first window only, so the timeout
/// drops the future while it waits for the second window's replies.
#[tokio::test]
async fn replies_read_before_a_timeout_are_kept() {
    let server = OwnServer::start(&[]);
    // No `use`: the jobs go to `default`, so every reply is one
    // `INSERTED <id>` line.
    let mut c = connect_stalling_after(&server.address, 256).await;
    let bodies: Vec<String> = (0..600).map(|i| format!("job {i}")).collect();
    let jobs: Vec<Job<'_>> = bodies.iter().map(|b| job(b.as_bytes())).collect();
    let mut results = Vec::new();
    let waited =
        tokio::time::timeout(Duration::from_secs(5), c.put_many_into(&jobs, &mut results)).await;
    assert!(waited.is_err(), "the stalled batch finished: {results:?}");
    assert!(c.is_broken());
    assert!(matches!(c.stats().await, Err(Error::Broken)));

    assert_eq!(results.len(), 256);
    let ids: Vec<u64> = results
        .iter()
        .map(|result| match result {
            Ok(Put::Inserted(id)) => *id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        256,
        "ids are distinct: {ids:?}"
    );
    let mut direct = Connection::connect(&server.address).await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let stored = direct
            .peek(*id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("job {id} is not on the server"));
        assert_eq!(&stored.body[..], bodies[i].as_bytes());
    }
    // The second window went out too, but its replies never came back:
    // those jobs are stored without a result to say so.
    let ready = direct
        .stats()
        .await
        .unwrap()
        .number("current-jobs-ready")
        .unwrap();
    assert!(ready > 256, "only {ready} jobs reached the server");
}
