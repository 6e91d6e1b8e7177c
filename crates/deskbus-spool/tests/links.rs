//! Links: what a remote system called an entry (a ticket number for an
//! event), kept across restarts and replaced on a second write.

use deskbus_spool::{Spool, SpoolOptions};

fn open(dir: &tempfile::TempDir) -> Spool {
    Spool::open(SpoolOptions::new(dir.path().join("spool.db"))).unwrap()
}

#[test]
fn links_are_kept_per_namespace_replaced_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    assert_eq!(spool.link("osticket:helpdesk", "e1/calls").unwrap(), None);
    spool
        .put_link("osticket:helpdesk", "e1/calls", "719217")
        .unwrap();
    spool
        .put_link("osticket:other", "e1/calls", "100001")
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

/// Links are written outside the writer thread; they must not disturb it.
#[test]
fn links_and_appends_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(&dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for i in 0..20 {
        rt.block_on(spool.append(deskbus_spool::AppendBatch {
            entries: vec![deskbus_spool::NewEntry::new(
                "out",
                "uc",
                "q",
                &format!("k{i}"),
                &format!("e{i}"),
                b"{}".to_vec(),
            )],
            ..Default::default()
        }))
        .unwrap();
        spool
            .put_link("ns", &format!("e{i}"), &i.to_string())
            .unwrap();
    }
    assert_eq!(spool.stats().unwrap().streams["out"].depth, 20);
    assert_eq!(spool.link("ns", "e19").unwrap().as_deref(), Some("19"));
}
