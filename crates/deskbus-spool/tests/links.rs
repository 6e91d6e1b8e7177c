//! Links: what a remote system called an entry (a ticket number for an
//! event), kept across restarts and replaced on a second write.

use deskbus_spool::{Spool, SpoolOptions};

fn open(dir: &tempfile::TempDir) -> Spool {
    Spool::open(SpoolOptions::new(dir.path().join("spool.db"))).unwrap()
}

#[tokio::test]
async fn links_are_kept_per_namespace_replaced_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    assert_eq!(spool.link("osticket:helpdesk", "e1/calls").unwrap(), None);
    spool
        .put_link("osticket:helpdesk", "e1/calls", "719217")
        .await
        .unwrap();
    spool
        .put_link("osticket:other", "e1/calls", "100001")
        .await
        .unwrap();
    assert_eq!(
        spool
            .link("osticket:helpdesk", "e1/calls")
            .unwrap()
            .as_deref(),
        Some("719217")
    );
    assert_eq!(
        spool.link("osticket:other", "e1/calls").unwrap().as_deref(),
        Some("100001")
    );
    // A second write for the same local id replaces the first.
    spool
        .put_link("osticket:helpdesk", "e1/calls", "719218")
        .await
        .unwrap();
    spool.close();
    drop(spool);

    let spool = open(&dir);
    assert_eq!(
        spool
            .link("osticket:helpdesk", "e1/calls")
            .unwrap()
            .as_deref(),
        Some("719218")
    );
    assert_eq!(spool.link("osticket:helpdesk", "e2/calls").unwrap(), None);
}

/// Links go through the writer's group commit, beside appends.
#[tokio::test]
async fn links_and_appends_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    for i in 0..20 {
        let batch = deskbus_spool::AppendBatch {
            entries: vec![deskbus_spool::NewEntry::new(
                "out",
                "uc",
                "q",
                &format!("k{i}"),
                &format!("e{i}"),
                b"{}".to_vec(),
            )],
            ..Default::default()
        };
        let (local, remote) = (format!("e{i}"), i.to_string());
        let (appended, linked) =
            tokio::join!(spool.append(batch), spool.put_link("ns", &local, &remote));
        appended.unwrap();
        linked.unwrap();
    }
    assert_eq!(spool.stats().unwrap().streams["out"].depth, 20);
    assert_eq!(spool.link("ns", "e19").unwrap().as_deref(), Some("19"));
}
