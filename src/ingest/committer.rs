//! The group committer: one task, taking every request that queued while the previous
//! commit was on disk and committing them together (one transaction, one flush, one
//! fdatasync). This is what makes a durable 202 fast: never a flush per request.

use tokio::sync::{mpsc, watch};

use super::{IngestError, Pending};
use crate::store::{Accepted, Store};

/// Most requests in one group commit, bounding one transaction's size.
const MAX_GROUP: usize = 512;

/// Runs until every [`super::Ingest`] handle is gone, then returns once the queue is empty.
pub(super) async fn run(
    store: Store,
    mut queue: mpsc::Receiver<Pending>,
    committed: watch::Sender<u64>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (accepted, replies): (Vec<Accepted>, Vec<_>) =
            group.drain(..).map(|p| (p.accepted, p.done)).unzip();
        let store = store.clone();
        let result = tokio::task::spawn_blocking(move || store.commit(&accepted)).await;
        match result {
            Ok(Ok(seqs)) => {
                if let Some(last) = seqs.last() {
                    committed.send_replace(*last);
                }
                for (reply, seq) in replies.into_iter().zip(seqs) {
                    let _ = reply.send(Ok(seq));
                }
            }
            Ok(Err(error)) => {
                tracing::error!(%error, requests = replies.len(), "group commit failed; the requests get 503");
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
