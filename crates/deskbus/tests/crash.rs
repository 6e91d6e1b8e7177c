//! kill -9 under load, restart, nothing lost.

mod util;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use util::*;

type Batch = Vec<(String, Value)>;

/// While 8 clients post 20,000 events in batches of 10, deskbus is killed
/// with SIGKILL and restarted. Requests that got no answer are sent again,
/// as any at-least-once producer would. Then:
/// - every event that got a 202 is delivered (so no 202 was sent before commit);
/// - every event sent is delivered at least once, and nothing else is;
/// - a duplicate carries the same id and bytes, and duplicates of answered
///   events are bounded by what can be delivered and not yet recorded at
///   the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, web) = (
        ([127, 0, 0, 1], free_port()).into(),
        ([127, 0, 0, 1], free_port()).into(),
    );
    let config = webhook_to_file_config(dir.path(), admin, web, "", "", "");
    let bus = Arc::new(Mutex::new(Deskbus::start(dir.path(), &config, admin, web)));
    let url = bus.lock().unwrap().url();

    let mut ticket = 0u64;
    let batches: VecDeque<Batch> = (0..2000)
        .map(|_| {
            (0..10)
                .map(|_| {
                    ticket += 1;
                    let id = uuid7();
                    (id.clone(), event(&id, ticket % 500))
                })
                .collect()
        })
        .collect();
    let all: HashSet<String> = batches.iter().flatten().map(|(id, _)| id.clone()).collect();
    let queue = Arc::new(Mutex::new(batches));
    let accepted = Arc::new(Mutex::new(HashSet::<String>::new()));
    let unanswered = Arc::new(Mutex::new(Vec::<Batch>::new()));
    let client = http_client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let killer = {
        let (bus, accepted) = (bus.clone(), accepted.clone());
        tokio::task::spawn_blocking(move || {
            wait_for(Duration::from_secs(60), "6,000 accepted events", || {
                accepted.lock().unwrap().len() >= 6_000
            });
            bus.lock().unwrap().kill();
        })
    };
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (queue, accepted, unanswered, client, url) = (
            queue.clone(),
            accepted.clone(),
            unanswered.clone(),
            client.clone(),
            url.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let Some(batch) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                let body = Value::Array(batch.iter().map(|(_, e)| e.clone()).collect());
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status() == 202 => {
                        accepted
                            .lock()
                            .unwrap()
                            .extend(batch.iter().map(|(id, _)| id.clone()));
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => unanswered.lock().unwrap().push(batch),
                }
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    killer.await.unwrap();
    let accepted_before_restart = accepted.lock().unwrap().clone();
    let unanswered = std::mem::take(&mut *unanswered.lock().unwrap());
    assert!(
        !unanswered.is_empty(),
        "the kill happened while clients were still posting"
    );
    assert!(accepted_before_restart.len() >= 6_000);

    bus.lock().unwrap().spawn();
    for batch in &unanswered {
        let body = Value::Array(batch.iter().map(|(_, e)| e.clone()).collect());
        let r = client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 202);
    }
    let out = dir.path().join("out/tickets.ndjson");
    wait_for(Duration::from_secs(90), "every event delivered", || {
        delivered_ids(&out)
            .into_iter()
            .collect::<HashSet<_>>()
            .len()
            >= all.len()
    });
    let delivered = delivered_ids(&out);
    let counts = counts(&delivered);
    let delivered_set: HashSet<String> = counts.keys().cloned().collect();
    assert!(
        accepted_before_restart.is_subset(&delivered_set),
        "an event answered 202 was lost"
    );
    assert_eq!(
        delivered_set, all,
        "every event sent is delivered, and nothing else"
    );
    let resent: HashSet<&String> = unanswered.iter().flatten().map(|(id, _)| id).collect();
    let duplicated_answered = counts
        .iter()
        .filter(|(id, n)| **n > 1 && !resent.contains(id))
        .count();
    // What can be delivered and not yet recorded at the kill, with the
    // stream's defaults (4 batches of 100): no batch starts while 800
    // outcomes wait for the recorder, so waiting plus in flight stays
    // within 800 + 400 = 1,200; one commit under way holds at most as many.
    // Quiet runs see 0-170; 450 was seen once under load.
    assert!(
        duplicated_answered <= 1_200 + 1_200,
        "{duplicated_answered} answered events delivered twice"
    );
    // A duplicate is the same event: same id, same bytes. (An event the
    // client sent twice without a `time` has its receipt time re-stamped;
    // everything else is equal.)
    let lines_read = event_lines(&out);
    let without_time = |line: &str| {
        let mut v: Value = serde_json::from_str(line).unwrap();
        v.as_object_mut().unwrap().remove("time");
        v
    };
    let mut lines: HashMap<String, &str> = HashMap::new();
    for line in &lines_read {
        let id = serde_json::from_str::<Value>(line).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        if let Some(previous) = lines.insert(id.clone(), line.as_str()) {
            if resent.contains(&id) {
                assert_eq!(
                    without_time(previous),
                    without_time(line),
                    "a duplicate differs from the original"
                );
            } else {
                assert_eq!(previous, line, "a duplicate differs from the original");
            }
        }
    }
    eprintln!(
        "crash test: {} accepted before kill, {} batches unanswered, {} lines, {} ids duplicated",
        accepted_before_restart.len(),
        unanswered.len(),
        delivered.len(),
        counts.values().filter(|n| **n > 1).count()
    );
}

/// The rule the crash tests read the file stream's output by: a line torn
/// by a kill is skipped only because the same event was written again,
/// whole, further on.
#[test]
fn a_line_torn_by_a_kill_is_skipped_only_when_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    std::fs::write(
        &out,
        "{\"id\":\"a\"}\n{\"id\":\"b\",\"da\n{\"id\":\"c\"}\n{\"id\":\"b\",\"data\":1}\n{\"id\":\"d\"",
    )
    .unwrap();
    assert_eq!(
        event_lines(&out),
        [r#"{"id":"a"}"#, r#"{"id":"c"}"#, r#"{"id":"b","data":1}"#],
        "the torn line and the unfinished last one are left out"
    );
    std::fs::write(&out, "{\"id\":\"a\"}\n{\"id\":\"b\",\"da\n{\"id\":\"c\"}\n").unwrap();
    let read = std::panic::catch_unwind(|| event_lines(&out));
    assert!(read.is_err(), "a bad line never written again is an error");
}
