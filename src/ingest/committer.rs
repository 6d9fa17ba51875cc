//! The group committer: one task, taking every request that queued while the previous
//! commit was on disk and committing them together: one journal append, one
//! `fdatasync`. This is what makes a durable 202 fast: never a sync per request.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::{Committed, IngestError, Pending, UnappliedKeys};
use crate::store::{Accepted, StoreError, Wal};

/// Most requests in one group commit, bounding one append's size.
const MAX_GROUP: usize = 512;

/// Runs until every [`super::Ingest`] handle is gone, then returns once the queue is
/// empty (dropping `to_applier`, which lets the applier finish).
pub(super) async fn run(
    journal: Wal,
    mut requests: mpsc::Receiver<Pending>,
    to_applier: mpsc::Sender<Committed>,
    durable: watch::Receiver<u64>,
    unapplied: Arc<UnappliedKeys>,
) {
    let journal = Arc::new(Mutex::new(journal));
    let mut group = Vec::with_capacity(MAX_GROUP);
    while requests.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (accepted, replies): (Vec<Accepted>, Vec<_>) =
            group.drain(..).map(|p| (p.accepted, p.done)).unzip();
        let started = Instant::now();
        let release_up_to = *durable.borrow();
        let journal = journal.clone();
        let committed = tokio::task::spawn_blocking(move || {
            let mut journal = journal.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(error) = journal.release(release_up_to) {
                // Old files stay until a later release manages; new writes go on.
                tracing::warn!(%error, "cannot delete applied journal files");
            }
            let seqs = journal.append(&accepted)?;
            Ok::<_, StoreError>(seqs.into_iter().zip(accepted).collect::<Committed>())
        })
        .await;
        let count = replies.len();
        match committed {
            Ok(Ok(records)) => {
                tracing::debug!(
                    requests = count,
                    micros = started.elapsed().as_micros() as u64,
                    "group committed"
                );
                unapplied.add(&records);
                for (reply, (seq, _)) in replies.into_iter().zip(&records) {
                    let _ = reply.send(Ok(*seq));
                }
                if to_applier.send(records).await.is_err() {
                    tracing::error!(
                        "the applier has stopped; committed writes are applied on the next start"
                    );
                }
            }
            Ok(Err(error)) => {
                tracing::error!(%error, requests = count, "group commit failed; the requests get 500");
                for reply in replies {
                    let _ = reply.send(Err(IngestError::Store(error.to_string())));
                }
            }
            Err(join) => {
                tracing::error!(error = %join, "group commit task failed");
                for reply in replies {
                    let _ = reply.send(Err(IngestError::Stopped));
                }
            }
        }
    }
    tracing::debug!("committer stopped: no more writers");
}
