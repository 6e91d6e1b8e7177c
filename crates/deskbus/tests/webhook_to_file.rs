//! The spine end to end: HTTP in, spool, file out, with the real binary.

mod util;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use util::*;

fn client() -> reqwest::Client {
    http_client_builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// 10,000 events over HTTP (single events, JSON arrays and NDJSON batches,
/// from 16 concurrent clients): every one appears in the file exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_arrive_exactly_once() {
    let (dir, bus) = start_webhook_to_file("", "", "");
    let url = bus.url();
    // 1,000 single posts, 40 JSON arrays of 100, 50 NDJSON bodies of 100 = 10,000.
    let mut bodies: Vec<(String, &'static str, Vec<String>)> = Vec::new();
    let mut ticket = 0;
    let mut next = |n: usize| -> Vec<(String, Value)> {
        (0..n)
            .map(|_| {
                ticket += 1;
                let id = uuid7();
                (id.clone(), event(&id, ticket % 300))
            })
            .collect()
    };
    for _ in 0..1000 {
        let (id, e) = next(1).remove(0);
        bodies.push((e.to_string(), "application/json", vec![id]));
    }
    for _ in 0..40 {
        let events = next(100);
        let ids = events.iter().map(|(id, _)| id.clone()).collect();
        let array = Value::Array(events.into_iter().map(|(_, e)| e).collect());
        bodies.push((array.to_string(), "application/json", ids));
    }
    for _ in 0..50 {
        let events = next(100);
        let ids = events.iter().map(|(id, _)| id.clone()).collect();
        let text: String = events.iter().map(|(_, e)| format!("{e}\n")).collect();
        bodies.push((text, "application/x-ndjson", ids));
    }
    let sent: HashSet<String> = bodies.iter().flat_map(|(_, _, ids)| ids.clone()).collect();
    assert_eq!(sent.len(), 10_000);

    let client = client();
    let chunks: Vec<Vec<_>> = bodies
        .chunks(bodies.len().div_ceil(16))
        .map(|c| c.to_vec())
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for (body, content_type, ids) in chunk {
                let response = client
                    .post(&url)
                    .header("content-type", content_type)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 202);
                let reply: Value =
                    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
                let got: Vec<String> = reply["accepted"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect();
                assert_eq!(got, ids, "the answer lists the accepted ids in order");
                accepted.extend(got);
            }
            accepted
        }));
    }
    let mut accepted = HashSet::new();
    for t in tasks {
        accepted.extend(t.await.unwrap());
    }
    assert_eq!(accepted, sent);

    let out = dir.path().join("out/tickets.ndjson");
    wait_for(Duration::from_secs(60), "10,000 delivered lines", || {
        delivered_ids(&out).len() >= 10_000
    });
    let delivered = delivered_ids(&out);
    let counts = counts(&delivered);
    assert_eq!(delivered.len(), 10_000, "no line twice");
    assert!(counts.values().all(|&n| n == 1));
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), sent);
    assert_eq!(
        bus.metric("deskbus_source_accepted_events_total", "source=\"web\""),
        10_000.0
    );
    assert_eq!(
        bus.metric("deskbus_stream_delivered_events_total", "stream=\"out\""),
        10_000.0
    );
}

/// Events of one ticket are written in the order they were accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ticket_keeps_its_order() {
    let (dir, bus) = start_webhook_to_file("", "batch_size = 7", "");
    let client = client();
    let mut sent = Vec::new();
    for round in 0..30 {
        // Ten tickets interleaved per request; ticket 3 is the one we follow.
        let events: Vec<Value> = (0..10)
            .map(|t| {
                let id = uuid7();
                if t == 3 {
                    sent.push(id.clone());
                }
                json!({"id": id, "name": "ticket.message", "data": {"ticket_id": t, "n": round}})
            })
            .collect();
        let r = client.post(bus.url()).json(&events).send().await.unwrap();
        assert_eq!(r.status(), 202);
    }
    let out = dir.path().join("out/tickets.ndjson");
    wait_for(Duration::from_secs(30), "300 lines", || {
        delivered_ids(&out).len() >= 300
    });
    let ids: Vec<String> = delivered_ids(&out)
        .into_iter()
        .filter(|id| sent.contains(id))
        .collect();
    assert_eq!(ids, sent);
}

/// An outcome the spool refuses (a damaged row, here a trigger) holds back
/// only its own entry: the others are recorded around it, it is not
/// delivered again while it waits, and it is recorded once the spool
/// takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_the_spool_refuses_holds_back_only_its_entry() {
    let (dir, bus) = start_webhook_to_file("", "", "");
    let spool = spool_sqlite(dir.path());
    let bad = uuid7();
    let condition = format!("old.event_id = '{bad}'");
    refuse_in_spool_when(&spool, "poison", "DELETE", &condition, "poisoned");
    let pending = || -> i64 {
        spool
            .query_row("SELECT COUNT(*) FROM entries", [], |row| row.get(0))
            .unwrap()
    };
    let mut events: Vec<Value> = (0..20).map(|t| event(&uuid7(), t)).collect();
    events.insert(10, event(&bad, 99));
    post(&bus, &events).await;
    let out = dir.path().join("out/tickets.ndjson");
    wait_for(Duration::from_secs(20), "21 lines", || {
        delivered_ids(&out).len() >= 21
    });
    wait_for(Duration::from_secs(10), "every other outcome", || {
        pending() == 1
    });
    // In flight while its outcome waits: not delivered a second time, and
    // waited for quietly: the retry is timed, nothing polls meanwhile (a
    // dispatcher polling the spool every millisecond burnt about 240 ms of
    // CPU here; waiting quietly, none).
    let pid = bus.child.as_ref().unwrap().id().to_string();
    let cpu_before = util::proc::cpu_time(&pid);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let busy = util::proc::cpu_time(&pid) - cpu_before;
    assert!(
        busy < Duration::from_millis(100),
        "{busy:?} of CPU in 1.5 s"
    );
    let times = |id: &str| delivered_ids(&out).iter().filter(|d| *d == id).count();
    assert_eq!(times(&bad), 1);
    assert_eq!(pending(), 1);
    spool.execute_batch("DROP TRIGGER poison").unwrap();
    wait_for(Duration::from_secs(15), "the refused outcome", || {
        pending() == 0
    });
    assert_eq!(times(&bad), 1);
    assert_eq!(delivered_ids(&out).len(), 21);
    assert!(bus.log().contains("poisoned"), "{}", bus.log());
}

/// At shutdown, an outcome the spool still refuses gets one last try: fixed
/// meanwhile, it is recorded before deskbus exits, instead of its entry
/// being delivered again at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_outcome_gets_a_last_try_at_shutdown() {
    let (dir, mut bus) = start_webhook_to_file("", "", "");
    let spool = spool_sqlite(dir.path());
    refuse_in_spool(&spool, "poison", "DELETE", "poisoned");
    let id = uuid7();
    post(&bus, &[event(&id, 1)]).await;
    // One refusal a try: the first commit, then retries 0.1, 0.2, 0.4 and
    // 0.8 s apart. After the fifth the next is 1.6 s away, far more than
    // the shutdown below takes: only the last try can record it.
    wait_for(Duration::from_secs(20), "five refused tries", || {
        bus.log().matches("poisoned").count() >= 5
    });
    spool.execute_batch("DROP TRIGGER poison").unwrap();
    assert!(bus.terminate().success(), "{}", bus.log());
    let pending: i64 = spool
        .query_row("SELECT COUNT(*) FROM entries", [], |row| row.get(0))
        .unwrap();
    assert_eq!(pending, 0, "{}", bus.log());
    // Recorded by the last try, not by a retry that came before it.
    assert!(
        bus.log().contains("get a last try before shutdown"),
        "{}",
        bus.log()
    );
    assert!(
        !bus.log().contains("will be delivered again"),
        "{}",
        bus.log()
    );
    let out = dir.path().join("out/tickets.ndjson");
    assert_eq!(delivered_ids(&out), vec![id]);
}

/// An upgrade keeps what the old deskbus had not delivered: a version-1
/// spool (the spool's own migration fixture) is migrated when deskbus
/// starts, its pending events of stream `out` are delivered, and new events
/// flow as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_spool_is_upgraded_and_its_pending_events_delivered() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    rusqlite::Connection::open(dir.path().join("data/spool.db"))
        .unwrap()
        .execute_batch(include_str!(
            "../../deskbus-spool/tests/fixtures/spool-v1.sql"
        ))
        .unwrap();
    // The fixture's use case for stream `out`, still in the config.
    let legacy = "[use_cases.uc]\ninputs = [\"web\"]\nevents = [\"legacy.event\"]\nstream = \"out\"\nqueue = \"q\"\n";
    let (dir, mut bus) = start_webhook_to_file_in(dir, "", "", legacy);
    // e1, e3 and e4 of the fixture, queue `q`, payload `{}`.
    let migrated = dir.path().join("out/q.ndjson");
    wait_for(Duration::from_secs(20), "the 3 pending events", || {
        complete_lines(&migrated).len() >= 3
    });
    let id = uuid7();
    post(&bus, &[event(&id, 1)]).await;
    let out = dir.path().join("out/tickets.ndjson");
    wait_for(Duration::from_secs(20), "a new event", || {
        delivered_ids(&out) == [id.clone()]
    });
    assert!(bus.terminate().success(), "{}", bus.log());
    assert_eq!(complete_lines(&migrated), ["{}", "{}", "{}"]);
    let spool = spool_sqlite(dir.path());
    let version: String = spool
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(version, "2");
    // Stream `two` is not in this config: its entry waits, kept.
    let pending: i64 = spool
        .query_row("SELECT COUNT(*) FROM entries", [], |row| row.get(0))
        .unwrap();
    assert_eq!(pending, 1);
}

/// Bad input gets a clear status and reason; nothing of a bad batch is kept;
/// the pipeline keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_reasons() {
    let web_extra = "max_body_bytes = 2048\nauth = { hmac_sha256_secret = \"${DESKBUS_TEST_SECRET:-k3y}\", header = \"X-Signature\" }";
    let (dir, bus) = start_webhook_to_file(web_extra, "", "");
    let client = client();
    let signed = |body: &str| deskbus::sources::webhook::sign(b"k3y", None, body.as_bytes());
    let post = |body: String, signature: Option<String>| {
        let mut request = client
            .post(bus.url())
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = signature {
            request = request.header("X-Signature", s);
        }
        request.send()
    };
    let good_id = uuid7();
    let good = event(&good_id, 1).to_string();
    let bad_batch_id = uuid7();
    let cases: Vec<(String, Option<String>, u16, &str)> = vec![
        (
            "{\"name\":".into(),
            Some(signed("{\"name\":")),
            400,
            "malformed JSON",
        ),
        (
            r#"{"name":5}"#.into(),
            Some(signed(r#"{"name":5}"#)),
            400,
            "invalid type",
        ),
        (
            r#"{"nmae":"x"}"#.into(),
            Some(signed(r#"{"nmae":"x"}"#)),
            400,
            "unknown field `nmae`",
        ),
        (
            r#"{"name":"ticket.created","id":"not-a-uuid"}"#.into(),
            Some(signed(r#"{"name":"ticket.created","id":"not-a-uuid"}"#)),
            400,
            "not a UUID",
        ),
        (good.clone(), None, 401, "missing signature"),
        (
            good.clone(),
            Some(signed("something else")),
            403,
            "does not match",
        ),
        (
            "x".repeat(4096),
            Some(signed(&"x".repeat(4096))),
            413,
            "larger than 2048 bytes",
        ),
        (
            r#"{"name":"ticket_created"}"#.into(),
            Some(signed(r#"{"name":"ticket_created"}"#)),
            422,
            "no enabled use case takes event `ticket_created`",
        ),
    ];
    for (body, signature, status, reason) in cases {
        let response = post(body.clone(), signature).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{body:.60}");
        let text = response.text().await.unwrap();
        let reply: Value = serde_json::from_str(&text).unwrap();
        assert!(
            reply["error"].as_str().unwrap().contains(reason),
            "{status}: {text} lacks {reason:?}"
        );
    }
    // Credentials are refused before the body is read: a client announcing
    // a megabyte and sending none of it gets its 401 at once, not a wait.
    let (status, reply) = raw_post_head(
        bus.web,
        "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
    );
    assert_eq!(status, 401, "{reply}");
    assert!(reply.contains("missing signature"), "{reply}");
    // One bad event refuses the whole batch: the good one in it is not kept.
    let batch = json!([event(&bad_batch_id, 2), {"name": ""}]).to_string();
    let response = post(batch.clone(), Some(signed(&batch))).await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("event 1: `name` must not be empty")
    );
    // The pipeline still runs.
    let response = post(good.clone(), Some(signed(&good))).await.unwrap();
    assert_eq!(response.status(), 202);
    let out = dir.path().join("out/tickets.ndjson");
    wait_for(Duration::from_secs(20), "the good event", || {
        delivered_ids(&out).contains(&good_id)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        delivered_ids(&out),
        vec![good_id],
        "nothing from refused requests was delivered"
    );
    assert!(
        bus.metric(
            "deskbus_source_rejected_events_total",
            "reason=\"forbidden\""
        ) >= 1.0
    );
    assert!(
        !bus.log().contains("k3y"),
        "the secret must never be logged"
    );
}

/// A client that starts a body and stops gets 408 once the body read times
/// out (30 s), and the source goes on taking requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_gets_408() {
    let (dir, bus) = start_webhook_to_file("", "", "");
    let web = bus.web;
    let started = std::time::Instant::now();
    let stalled = tokio::task::spawn_blocking(move || {
        raw_post_head(
            web,
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\"",
        )
    });
    // Meanwhile the webhook serves others.
    let id = uuid7();
    let response = client()
        .post(bus.url())
        .json(&event(&id, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let (status, reply) = stalled.await.unwrap();
    assert_eq!(status, 408, "{reply}");
    assert!(reply.contains("did not arrive within 30s"), "{reply}");
    assert!(started.elapsed() >= Duration::from_secs(29));
    wait_for(Duration::from_secs(20), "the other event", || {
        delivered_ids(&dir.path().join("out/tickets.ndjson")).contains(&id)
    });
    assert!(bus.metric("deskbus_source_rejected_events_total", "reason=\"timeout\"") >= 1.0);
}

/// Bodies held at once are bounded by `max_buffered_bytes`, counted as
/// they arrive: while one request has sent 1,500 of its 2,000 bytes and
/// stalls, another of 1,000 bytes waits a second for room, then gets 503
/// with `Retry-After`; a small one still fits beside it; once the stalled
/// one is gone, the large one is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_buffer_budget_wait_then_get_503() {
    use std::io::Write;
    let extra = "max_body_bytes = 2048\nmax_buffered_bytes = 2048";
    let (dir, bus) = start_webhook_to_file(extra, "", "");
    let mut stalled = std::net::TcpStream::connect(bus.web).unwrap();
    write!(
        stalled,
        "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 2000\r\n\r\n{}",
        " ".repeat(1500)
    )
    .unwrap();
    // 1,000 bytes: the event, padded with spaces in its JSON.
    let big = |id: &str| {
        let mut body = event(id, 1).to_string();
        body.push_str(&" ".repeat(1000 - body.len()));
        body
    };
    let post = |body: String| {
        client()
            .post(bus.url())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // The stalled body's bytes are held once the server has read them:
    // until then a large request may still fit, and is taken.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let response = post(big(&uuid7())).await.unwrap();
        if response.status() == 503 {
            break response;
        }
        assert_eq!(response.status(), 202);
        assert!(std::time::Instant::now() < deadline, "never refused");
    };
    assert_eq!(refused.headers()["retry-after"], "1");
    let text = refused.text().await.unwrap();
    assert!(text.contains("max_buffered_bytes (2048)"), "{text}");
    let small = uuid7();
    let response = post(event(&small, 2).to_string()).await.unwrap();
    assert_eq!(
        response.status(),
        202,
        "a small body fits beside the stalled one"
    );
    drop(stalled);
    let id = uuid7();
    let mut status = 503;
    for _ in 0..50 {
        status = post(big(&id)).await.unwrap().status().as_u16();
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 202, "room never came back");
    wait_for(Duration::from_secs(20), "the events", || {
        let delivered = delivered_ids(&dir.path().join("out/tickets.ndjson"));
        delivered.contains(&id) && delivered.contains(&small)
    });
    assert!(bus.metric("deskbus_source_rejected_events_total", "reason=\"busy\"") >= 1.0);
}

/// Sends a POST's request line, then `rest` (its headers, the blank line,
/// perhaps part of a body), on a raw connection, and holds it open sending
/// nothing more: the reply's status and text.
fn raw_post_head(web: std::net::SocketAddr, rest: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(web).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(stream, "POST /events HTTP/1.1\r\nHost: x\r\n{rest}").unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the reply's body is complete (the server may keep the
    // connection open afterwards).
    loop {
        let n = stream.read(&mut buf).unwrap();
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        if n == 0 || text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
            break;
        }
    }
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A poison event (queue template names a missing field, or a queue that
/// cannot be a file name) goes to dead letters with its reason while the rest
/// keeps flowing; the DLQ commands list, show, retry and drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_events_go_to_dead_letters() {
    // `mut`: the test fixes the config and restarts deskbus halfway.
    let extra = r#"
[use_cases.by_department]
inputs = ["web"]
events = ["dept.event"]
stream = "out"
queue = "dept-{department}"
"#;
    let (dir, mut bus) = start_webhook_to_file("", "", extra);
    let client = client();
    let (missing, escaping, fine) = (uuid7(), uuid7(), uuid7());
    let batch = json!([
        {"id": missing, "name": "dept.event", "data": {"other": 1}},
        {"id": escaping, "name": "dept.event", "data": {"department": "../../etc"}},
        {"id": fine, "name": "dept.event", "data": {"department": "sales"}},
    ]);
    assert_eq!(
        client
            .post(bus.url())
            .json(&batch)
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    let out = dir.path().join("out/dept-sales.ndjson");
    wait_for(Duration::from_secs(20), "the fine event", || {
        delivered_ids(&out) == vec![fine.clone()]
    });
    wait_for(Duration::from_secs(20), "two dead letters", || {
        bus.cli(&["dlq", "list"]).1.contains("2 dead letters")
    });
    let (code, list, _) = bus.cli(&["dlq", "list"]);
    assert_eq!(code, 0);
    assert!(
        list.contains(&missing) && list.contains("field `department` is missing"),
        "{list}"
    );
    assert!(
        list.contains(&escaping) && list.contains("cannot be a file name"),
        "{list}"
    );
    let id_of = |event: &str| -> String {
        list.lines()
            .find(|l| l.contains(event))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let (code, shown, _) = bus.cli(&["dlq", "show", &id_of(&missing)]);
    assert_eq!(code, 0);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["event"]["id"], missing.as_str());
    assert_eq!(shown["attempts"], 0, "refused at routing, never attempted");
    let escaping_dl = id_of(&escaping);
    let (_, shown, _) = bus.cli(&["dlq", "show", &escaping_dl]);
    assert_eq!(
        serde_json::from_str::<Value>(&shown).unwrap()["attempts"],
        1
    );
    // Retrying the escaping one puts it back (same id); it fails again, permanently.
    let (code, said, _) = bus.cli(&["dlq", "retry", &escaping_dl]);
    assert_eq!(
        (code, said.trim()),
        (0, "1 dead letter moved back to the spool")
    );
    wait_for(
        Duration::from_secs(20),
        "the retried entry back in dead letters",
        || {
            let (_, list, _) = bus.cli(&["dlq", "list"]);
            list.contains("2 dead letters") && list.contains(&escaping)
        },
    );
    assert!(
        bus.metric(
            "deskbus_stream_dead_lettered_events_total",
            "stream=\"out\""
        ) >= 2.0
    );
    // The operator fixes the template and replays: the event refused at
    // routing gets its queue from the config in force now.
    assert_eq!(bus.terminate().code(), Some(0));
    let fixed = std::fs::read_to_string(&bus.config)
        .unwrap()
        .replace("dept-{department}", "dept-{department:-none}");
    std::fs::write(&bus.config, fixed).unwrap();
    bus.spawn();
    let missing_dl = id_of(&missing);
    let (code, said, _) = bus.cli(&["dlq", "retry", &missing_dl]);
    assert_eq!(
        (code, said.trim()),
        (0, "1 dead letter moved back to the spool")
    );
    let replayed = dir.path().join("out/dept-none.ndjson");
    wait_for(Duration::from_secs(20), "the replayed event", || {
        delivered_ids(&replayed) == vec![missing.clone()]
    });
    let (code, _, stderr) = bus.cli(&["dlq", "retry", &missing_dl]);
    assert_eq!(code, 1, "an unknown id is an error");
    assert!(
        stderr.contains(&format!("no dead letter with id {missing_dl}")),
        "{stderr}"
    );
    // A dead letter of a stream the config no longer has is not retried
    // into a queue nobody serves: `retry` says so and moves nothing.
    let spool = deskbus_spool::Spool::open(deskbus_spool::SpoolOptions::new(
        dir.path().join("data/spool.db"),
    ))
    .unwrap();
    let planted = deskbus_spool::NewDeadLetter {
        entry: deskbus_spool::NewEntry::new("gone", "t", "q", "k", &uuid7(), b"{}".to_vec()),
        reason: "planted".into(),
    };
    spool
        .append(deskbus_spool::AppendBatch {
            dead_letters: vec![planted],
            ..Default::default()
        })
        .await
        .unwrap();
    spool.close();
    let (code, _, stderr) = bus.cli(&["dlq", "retry", "--all"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("`gone`"), "{stderr}");
    let (code, said, _) = bus.cli(&["dlq", "drop", "--all"]);
    assert_eq!((code, said.trim()), (0, "2 dead letters dropped"));
    let (_, stats, _) = bus.cli(&["spool", "stats"]);
    assert!(stats.contains("out"), "{stats}");
    // The DLQ commands never create a spool: run with a `data_dir` that
    // has none, they say where they looked and fail.
    let elsewhere = dir.path().join("elsewhere.toml");
    let text = std::fs::read_to_string(&bus.config).unwrap();
    std::fs::write(&elsewhere, text.replace("/data\"", "/nowhere\"")).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["dlq", "list", "--config"])
        .arg(&elsewhere)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no spool at") && stderr.contains("nowhere"),
        "{stderr}"
    );
    assert!(!dir.path().join("nowhere").exists(), "nothing created");
}

/// SIGTERM stops deskbus cleanly and quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let (dir, mut bus) = start_webhook_to_file("", "", "");
    let id = uuid7();
    assert_eq!(
        client()
            .post(bus.url())
            .json(&event(&id, 1))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    let started = std::time::Instant::now();
    let status = bus.terminate();
    assert!(status.success(), "{status}: {}", bus.log());
    assert!(started.elapsed() < Duration::from_secs(5));
    // The accepted event was delivered before or during the drain, or stays
    // spooled for the next start; either way it is not lost.
    let out = dir.path().join("out/tickets.ndjson");
    if !delivered_ids(&out).contains(&id) {
        let (_, stats, _) = bus.cli(&["spool", "stats"]);
        assert!(stats.contains("out") && stats.contains(" 1 "), "{stats}");
    }
}
