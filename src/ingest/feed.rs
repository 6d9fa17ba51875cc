//! Change announcements per stream: after each pass the applier tells the last change
//! of every stream it changed, and an SSE client waits on its own stream only, so a
//! busy stream wakes none of the clients of the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::model::Change;

/// The last change sequence of each stream a pass changed.
#[derive(Debug, Default)]
pub(super) struct Changed(HashMap<String, u64>);

impl Changed {
    /// Notes `changes`, made in sequence order.
    pub(super) fn note(&mut self, changes: &[Change]) {
        for change in changes {
            match self.0.get_mut(change.stream.as_str()) {
                Some(last) => *last = change.seq,
                None => {
                    self.0.insert(change.stream.as_str().to_owned(), change.seq);
                }
            }
        }
    }
}

/// Who waits for which stream's changes; shared by the applier and the SSE clients.
/// A stream has an entry only while a client follows it.
#[derive(Default)]
pub struct ChangeFeed(Mutex<HashMap<String, watch::Sender<u64>>>);

impl ChangeFeed {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the clients of the streams in `changed`.
    pub(super) fn announce(&self, changed: &Changed) {
        let streams = self.lock();
        for (stream, seq) in &changed.0 {
            if let Some(sender) = streams.get(stream) {
                sender.send_replace(*seq);
            }
        }
    }

    /// Starts following `stream`'s announcements.
    pub fn follow(self: &Arc<Self>, stream: &str) -> StreamChanges {
        let changes = self
            .lock()
            .entry(stream.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        StreamChanges {
            feed: self.clone(),
            stream: stream.to_owned(),
            changes,
        }
    }
}

/// One client's view of its stream's announcements; the stream's entry goes with its
/// last client.
pub struct StreamChanges {
    feed: Arc<ChangeFeed>,
    stream: String,
    /// The stream's last change sequence announced (0 until the first one).
    changes: watch::Receiver<u64>,
}

impl StreamChanges {
    /// Takes every announcement so far as seen: call it before reading the change log,
    /// and [`StreamChanges::changed`] then wakes only for changes the read may have
    /// missed.
    pub fn mark_seen(&mut self) {
        self.changes.borrow_and_update();
    }

    /// Waits for a change of the stream announced since the last [`Self::mark_seen`].
    pub async fn changed(&mut self) {
        // The feed holds the sender for as long as this receiver lives, so this only
        // returns once something was announced.
        let _ = self.changes.changed().await;
    }
}

impl Drop for StreamChanges {
    fn drop(&mut self) {
        let mut streams = self.feed.lock();
        // This receiver is still counted: it is the last one when the count is 1.
        if streams
            .get(&self.stream)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            streams.remove(&self.stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_followed_only_while_a_client_follows_it() {
        let feed = Arc::new(ChangeFeed::default());
        let first = feed.follow("sales");
        let second = feed.follow("sales");
        drop(first);
        assert!(feed.lock().contains_key("sales"), "one client is left");
        drop(second);
        assert!(
            feed.lock().is_empty(),
            "the last client took the entry along"
        );
    }
}
