//! The file stream's directory becomes unwritable for a while: events wait
//! in the spool, nothing is lost, delivery resumes by itself.

mod util;

use std::time::Duration;

use util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_out_a_stream_outage() {
    let retry = "[streams.out.retry]\ninitial_backoff = \"100ms\"\nmax_backoff = \"500ms\"";
    let (dir, bus) = start_webhook_to_file("", "", retry);
    let client = http_client();
    let post = |n: usize, from: u64| {
        let events: Vec<serde_json::Value> =
            (0..n).map(|i| event(&uuid7(), from + i as u64)).collect();
        let (client, url) = (client.clone(), bus.url());
        async move {
            let r = client.post(url).json(&events).send().await.unwrap();
            assert_eq!(r.status(), 202);
            events
                .into_iter()
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let out_dir = dir.path().join("out");
    let out = out_dir.join("tickets.ndjson");
    let mut sent = post(100, 0).await;
    wait_for(Duration::from_secs(20), "the first 100", || {
        delivered_ids(&out).len() == 100
    });

    // The directory is replaced by a plain file: unwritable even for root.
    let moved = dir.path().join("out.moved");
    std::fs::rename(&out_dir, &moved).unwrap();
    std::fs::write(&out_dir, b"not a directory").unwrap();
    for round in 0..5 {
        sent.extend(post(100, 1000 + round * 100).await);
    }
    wait_for(Duration::from_secs(20), "retries during the outage", || {
        bus.metric("deskbus_stream_retried_events_total", "stream=\"out\"") > 0.0
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, stats, _) = bus.cli(&["spool", "stats"]);
    let depth: u64 = stats
        .lines()
        .find(|l| l.starts_with("out "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no depth in {stats}"));
    assert_eq!(depth, 500, "the events wait in the spool:\n{stats}");
    assert_eq!(
        delivered_ids(&moved.join("tickets.ndjson")).len(),
        100,
        "nothing was written meanwhile"
    );

    std::fs::remove_file(&out_dir).unwrap();
    std::fs::rename(&moved, &out_dir).unwrap();
    wait_for(Duration::from_secs(30), "delivery to resume", || {
        delivered_ids(&out).len() >= 600
    });
    let delivered = delivered_ids(&out);
    assert_eq!(delivered.len(), 600, "each event exactly once");
    let mut sorted_sent = sent.clone();
    sorted_sent.sort();
    let mut sorted_delivered = delivered.clone();
    sorted_delivered.sort();
    assert_eq!(sorted_delivered, sorted_sent);
    assert_eq!(
        bus.metric("deskbus_stream_dead_lettered_events_total", ""),
        0.0
    );
}
