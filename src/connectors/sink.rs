//! Writing what a poll or a file import read: only the items that change, through the
//! same journal → pool path as pushes, in records of bounded size, and with mirroring
//! the deletes of this connector's items the source no longer holds (other
//! connectors' items in the stream are never touched).

use std::collections::VecDeque;

use jiff::Timestamp;

use super::{PollContext, PollError};
use crate::ingest::IngestError;
use crate::model::{Connector, Upsert, Write};
use crate::store::{Accepted, Store, StoreError, MAX_WRITE_BYTES};

/// Items per journal record: a large result becomes several records, so no single
/// record or apply transaction grows with the result.
pub const ITEMS_PER_WRITE: usize = 1000;
/// Records of one poll or import that may wait to be applied at once: a few thousand
/// items in memory however large the file, while the journal keeps busy.
const UNAPPLIED_RECORDS: usize = 8;

/// Ids this connector wrote last in its stream that `kept` says the new result no
/// longer holds: what a mirroring poll or import deletes.
pub async fn gone(
    context: &PollContext,
    connector: &Connector,
    kept: impl Fn(&str) -> bool,
) -> Result<Vec<String>, PollError> {
    let stored = off_runtime(context, connector, |store, stream, id| {
        store.connector_item_ids(stream, id)
    })
    .await?;
    Ok(stored.into_iter().filter(|id| !kept(id)).collect())
}

/// Runs `read` on the store with the connector's stream and id, off the async runtime:
/// reading a whole stream is blocking work for sled.
async fn off_runtime<T: Send + 'static>(
    context: &PollContext,
    connector: &Connector,
    read: impl FnOnce(&Store, &str, &str) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, PollError> {
    let store = context.store.clone();
    let (stream, id) = (connector.spec.stream.to_string(), connector.id.clone());
    let result = tokio::task::spawn_blocking(move || read(&store, &stream, &id))
        .await
        .map_err(|_| IngestError::Stopped)?;
    Ok(result?)
}

/// Writes one poll's or import's items through the journal: only the upserts that
/// change their item, in records of bounded size submitted one after the other, the
/// deletes last, and returns once everything is applied, so the next poll compares
/// with what this one wrote. One record at a time on purpose: submitted together, a
/// large poll becomes one commit group and few large apply transactions, which
/// measured slower and took twice the memory. At most [`UNAPPLIED_RECORDS`] wait to be
/// applied, so a large file holds a bounded part of itself in memory.
pub struct Sink<'a> {
    context: &'a PollContext,
    connector: &'a Connector,
    /// Journal sequences submitted and not yet known to be applied, oldest first.
    pending: VecDeque<u64>,
    /// Upserts that changed their item, so far.
    changed: usize,
}

/// What a sink wrote.
#[derive(Clone, Copy, Debug, Default)]
pub struct Written {
    /// Upserts that changed (or created) their item.
    pub changed: usize,
    /// Items deleted.
    pub deleted: usize,
}

impl<'a> Sink<'a> {
    /// A sink writing as `connector` to its stream.
    pub fn new(context: &'a PollContext, connector: &'a Connector) -> Self {
        Sink {
            context,
            connector,
            pending: VecDeque::new(),
            changed: 0,
        }
    }

    /// Writes those of `upserts` that change their item.
    pub async fn upsert(&mut self, upserts: Vec<Upsert>) -> Result<(), PollError> {
        let mode = self.connector.spec.upsert_mode;
        let changing = off_runtime(self.context, self.connector, move |store, stream, _| {
            store.changing(stream, mode, upserts)
        })
        .await?;
        self.changed += changing.len();
        self.submit(records(self.connector, changing, Vec::new()))
            .await
    }

    /// Deletes `deletes` and waits until everything written is applied.
    pub async fn finish(mut self, deletes: Vec<String>) -> Result<Written, PollError> {
        let deleted = deletes.len();
        self.submit(records(self.connector, Vec::new(), deletes))
            .await?;
        if let Some(&last) = self.pending.back() {
            self.context.ingest.applied(last).await?;
        }
        Ok(Written {
            changed: self.changed,
            deleted,
        })
    }

    async fn submit(&mut self, records: Vec<Accepted>) -> Result<(), PollError> {
        for accepted in records {
            if self.pending.len() == UNAPPLIED_RECORDS {
                if let Some(oldest) = self.pending.pop_front() {
                    self.context.ingest.applied(oldest).await?;
                }
            }
            let seq = self.context.ingest.submit(accepted).await?;
            self.pending.push_back(seq);
        }
        Ok(())
    }
}

/// The journal records of one poll: at most [`ITEMS_PER_WRITE`] upserts and
/// [`MAX_WRITE_BYTES`] of items each, the deletes last; none when there is nothing to write.
fn records(connector: &Connector, upserts: Vec<Upsert>, deletes: Vec<String>) -> Vec<Accepted> {
    let mut records = Vec::new();
    let mut chunk = Chunk::default();
    for upsert in upserts {
        let bytes = json_len(&upsert);
        if chunk.upserts.len() == ITEMS_PER_WRITE || chunk.is_full_for(bytes) {
            records.push(chunk.take(connector));
        }
        chunk.bytes += bytes;
        chunk.upserts.push(upsert);
    }
    for id in deletes {
        let bytes = json_len(&id);
        if chunk.is_full_for(bytes) {
            records.push(chunk.take(connector));
        }
        chunk.bytes += bytes;
        chunk.deletes.push(id);
    }
    if !chunk.is_empty() {
        records.push(chunk.take(connector));
    }
    records
}

/// The items of the journal record being filled, and their size as JSON.
#[derive(Default)]
struct Chunk {
    upserts: Vec<Upsert>,
    deletes: Vec<String>,
    bytes: usize,
}

impl Chunk {
    fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }

    /// Whether `bytes` more would take a record that holds something over [`MAX_WRITE_BYTES`].
    fn is_full_for(&self, bytes: usize) -> bool {
        !self.is_empty() && self.bytes + bytes > MAX_WRITE_BYTES
    }

    /// The record of what is gathered, leaving the chunk empty.
    fn take(&mut self, connector: &Connector) -> Accepted {
        let chunk = std::mem::take(self);
        let write = Write {
            stream: connector.spec.stream.clone(),
            connector_id: connector.id.clone(),
            mode: connector.spec.upsert_mode,
            upserts: chunk.upserts,
            deletes: chunk.deletes,
            deletes_own_only: true,
            accepted_at: Timestamp::now(),
        };
        Accepted {
            write,
            idempotency: None,
        }
    }
}

/// The length of `value` as JSON, as the journal will write it.
fn json_len(value: &impl serde::Serialize) -> usize {
    let mut counter = ByteCount(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => 0,
    }
}

/// A writer that only counts what is written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_becomes_records_of_a_thousand_items_with_the_deletes_last() {
        let spec = crate::model::ConnectorSpec::from_json(serde_json::json!({
            "name": "s", "type": "sql", "stream": "s",
            "settings": {"connectionString": "sqlite:///tmp/s.db", "query": "select 1"}}))
        .expect("valid");
        let connector = Connector::new(spec, None, Timestamp::now());
        let upserts = |n: usize| -> Vec<Upsert> {
            (0..n)
                .map(|i| Upsert {
                    id: i.to_string(),
                    fields: Default::default(),
                })
                .collect()
        };
        let shape = |records: Vec<Accepted>| -> Vec<(usize, usize)> {
            records
                .iter()
                .map(|r| (r.write.upserts.len(), r.write.deletes.len()))
                .collect()
        };
        let gone = || vec!["x".to_owned(), "y".to_owned()];
        assert_eq!(
            shape(records(&connector, upserts(2500), gone())),
            [(1000, 0), (1000, 0), (500, 2)]
        );
        assert_eq!(
            shape(records(&connector, upserts(1000), vec![])),
            [(1000, 0)]
        );
        assert_eq!(shape(records(&connector, upserts(0), gone())), [(0, 2)]);
        assert!(records(&connector, upserts(0), vec![]).is_empty());
    }

    #[test]
    fn a_poll_of_large_rows_becomes_records_within_the_journal_limit() {
        let spec = crate::model::ConnectorSpec::from_json(serde_json::json!({
            "name": "s", "type": "sql", "stream": "s",
            "settings": {"connectionString": "sqlite:///tmp/s.db", "query": "select 1"}}))
        .expect("valid");
        let connector = Connector::new(spec, None, Timestamp::now());
        let row = "x".repeat(MAX_WRITE_BYTES / 3);
        let upserts: Vec<Upsert> = (0..10)
            .map(|i| Upsert {
                id: i.to_string(),
                fields: serde_json::Map::from_iter([("text".to_owned(), row.clone().into())]),
            })
            .collect();
        let deletes: Vec<String> = (0..MAX_WRITE_BYTES / 100)
            .map(|i| format!("{i:0>96}"))
            .collect();
        let records = records(&connector, upserts, deletes);
        let items: usize = records
            .iter()
            .map(|r| r.write.upserts.len() + r.write.deletes.len())
            .sum();
        assert_eq!(
            items,
            10 + MAX_WRITE_BYTES / 100,
            "every item is in a record"
        );
        assert!(records.len() > 4, "{} records", records.len());
        for record in &records {
            let bytes = serde_json::to_vec(record).expect("encodes").len();
            assert!(
                bytes <= crate::store::MAX_RECORD_BYTES / 4,
                "a record of {bytes} bytes"
            );
        }
    }
}
