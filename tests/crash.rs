//! Crash consistency through the real binary: fail points abort datapool at the
//! journal's critical points (before a commit's sync, after it but before the pool
//! has the write, between the pool's sync and the journal's release, during the
//! start-up release), or lose what was not synced as a power cut would; after a
//! restart every acknowledged write is there exactly once.

mod common;

use std::time::Duration;

use common::crash::{serve_expecting_exit, updated_at, Workload, FILE_PER_COMMIT};
use common::TestServer;

/// Most requests a crash test sends; the fail points fire well before.
const MAX_REQUESTS: u64 = 200;
/// No pause between requests: each commit follows the last.
const BACK_TO_BACK: Duration = Duration::ZERO;

/// Runs the workload against a server with `failpoints` until it crashes, restarts it
/// without them and checks every acknowledged write.
async fn crash_and_check(failpoints: &str, pause: Duration) {
    let mut server = TestServer::start_failing(failpoints).await;
    let mut workload = Workload::new(&server).await;
    let acknowledged = workload
        .send_until_crash(&server, MAX_REQUESTS, pause)
        .await;
    assert!(
        acknowledged > 0,
        "nothing was acknowledged:\n{}",
        server.logs()
    );
    let status = server.exited().await;
    assert!(!status.success(), "the fail point crashed it: {status}");
    server.relaunch_without(&["FAILPOINTS"]).await;
    workload.check_exactly_once(&server).await;
}

#[tokio::test]
async fn acknowledged_writes_survive_a_crash_before_a_commit_is_synced() {
    crash_and_check(
        &format!("wal::before_sync=5*off->return;{FILE_PER_COMMIT}"),
        BACK_TO_BACK,
    )
    .await;
}

#[tokio::test]
async fn acknowledged_writes_survive_losing_what_the_journal_had_not_synced() {
    // The sixth commit finds the journal file cut back to what the last `fdatasync`
    // covered, as a power cut leaves it, and the process ends there.
    crash_and_check("wal::power_loss=5*off->return", BACK_TO_BACK).await;
}

#[tokio::test]
async fn acknowledged_writes_not_yet_applied_are_replayed_once() {
    // The fourth pass of the applier waits 300 ms, while requests go on being
    // acknowledged, then the process ends before it applies anything.
    crash_and_check("applier::before_apply=3*off->return(300)", BACK_TO_BACK).await;
}

#[tokio::test]
async fn a_crash_between_the_pool_sync_and_the_journal_release_replays_nothing_twice() {
    // The start's release passes; the first checkpoint (about a second after the
    // first write) syncs the pool and ends the process before it deletes journal
    // files: their records, all applied, are read again on start.
    crash_and_check(
        &format!("store::before_release=1*off->return;{FILE_PER_COMMIT}"),
        Duration::from_millis(50),
    )
    .await;
}

#[tokio::test]
async fn a_crash_during_the_start_up_release_loses_nothing() {
    let mut server = TestServer::start_failing(FILE_PER_COMMIT).await;
    let mut workload = Workload::new(&server).await;
    assert_eq!(
        workload.send_until_crash(&server, 20, BACK_TO_BACK).await,
        20
    );
    server.stop("KILL").await;
    let (status, said) = serve_expecting_exit(
        server.data_dir(),
        &format!("store::after_startup_release=return;{FILE_PER_COMMIT}"),
    );
    assert!(!status.success(), "the fail point ended the start:\n{said}");
    server.relaunch_without(&["FAILPOINTS"]).await;
    workload.check_exactly_once(&server).await;
}

#[tokio::test]
async fn a_replayed_write_keeps_the_time_it_was_accepted() {
    // The applier's first pass waits a second, then the process ends: the write is
    // applied only by the replay after the restart.
    let mut server = TestServer::start_failing("applier::before_apply=return(1000)").await;
    let mut workload = Workload::new(&server).await;
    let before = jiff::Timestamp::now();
    assert!(workload.send(&server, 1).await, "{}", server.logs());
    let answered = jiff::Timestamp::now();
    server.exited().await;
    server.relaunch_without(&["FAILPOINTS"]).await;
    let updated = updated_at(&server, 1).await;
    let updated: jiff::Timestamp = updated
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("updatedAt {updated}"));
    let second = jiff::SignedDuration::from_secs(1);
    assert!(
        updated <= answered && updated >= before - second,
        "accepted between {before} and {answered}, updatedAt {updated}"
    );
}

#[tokio::test]
async fn a_journal_corrupt_before_its_end_stops_the_start_until_cut_at_the_named_offset() {
    let mut server = TestServer::start().await;
    let mut workload = Workload::new(&server).await;
    for n in 1..=3 {
        assert!(workload.send(&server, n).await);
    }
    server.stop("KILL").await;
    let journal = server.data_dir().join("journal");
    let files: Vec<_> = std::fs::read_dir(&journal)
        .expect("journal dir")
        .map(|entry| entry.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    // A flipped byte in the first record's payload, with the others intact after it.
    let mut bytes = std::fs::read(file).expect("read");
    bytes[20] ^= 0x20;
    std::fs::write(file, &bytes).expect("write");

    let (status, said) = serve_expecting_exit(server.data_dir(), "");
    assert!(!status.success(), "a corrupt journal was accepted:\n{said}");
    assert!(said.contains(&file.display().to_string()), "{said}");
    assert!(said.contains("corrupt at byte 0"), "{said}");

    // The way out the README gives: at offset 0, move the file out of the journal.
    std::fs::rename(file, server.data_dir().join("moved-aside.wal")).expect("move");
    server.relaunch_without(&["FAILPOINTS"]).await;
    assert!(workload.send(&server, 4).await, "{}", server.logs());
    updated_at(&server, 4).await;
}
