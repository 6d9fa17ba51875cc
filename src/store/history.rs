//! The fields' history of streams with snapshots on (SPEC §5 "Snapshots"): one point
//! per applied change of a field, its time the write's accepted time and its value the
//! field's new value, written by the applier in the same transaction as the item (so a
//! replay after a crash writes the same keys again, never a second point).
//!
//! Key: `stream \0`, the item id and the field name each as a big-endian `u32` length
//! and its bytes (ids and names may hold any byte, `\0` too), then the time as 8 bytes
//! that sort like the time. A field's points are thus one range, oldest first. Value:
//! the field's value, as [`encode`] writes it.
//!
//! Bounded two ways, both by the background sweep ([`Store::sweep_history`]), which
//! walks the tree from its end in bounded steps: points older than their stream's
//! retention go, and so do those of a field beyond its newest [`POINTS_PER_FIELD`].

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;

use super::{decode, Store, StoreError, StreamStats};
use crate::model::Snapshots;

/// Most points one field keeps: its newest ten thousand, a few days of a value changing
/// once a minute, a sparkline's worth many times over. One hot field (changing many
/// times a second) can thus not grow the store without bound; between two sweeps it may
/// hold what one sweep interval adds on top.
pub const POINTS_PER_FIELD: usize = 10_000;

/// Bytes of a point key's time.
const TIME_BYTES: usize = 8;

/// One point of a field's history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    /// When the write that set it was accepted.
    pub at: Timestamp,
    /// The field's value from then on.
    pub value: Value,
}

/// A page of a field's history, oldest first.
#[derive(Debug, Default, PartialEq)]
pub struct HistoryPage {
    /// The points.
    pub points: Vec<Point>,
    /// Whether more points follow in the range asked for.
    pub more: bool,
}

/// Where the history sweep has got to. It walks the tree downwards from its last key,
/// so it meets each field's newest points first and can count them.
#[derive(Debug, Default)]
pub struct HistorySweep {
    /// The next step looks at this key and those below it; `None`: the next step
    /// starts a new pass from the end of the tree.
    from: Option<Vec<u8>>,
    /// The field (its key up to the time) the walk is in.
    field: Vec<u8>,
    /// How many of that field's points the walk has kept so far.
    kept: usize,
}

impl HistorySweep {
    /// Whether a pass has more to do.
    pub fn under_way(&self) -> bool {
        self.from.is_some()
    }
}

/// The key of a field's points up to their time.
fn field_prefix(stream: &str, item: &str, field: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + item.len() + field.len() + 9 + TIME_BYTES);
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    for part in [item, field] {
        // An item id is at most 256 bytes and a field name lies within a request body,
        // both far below 4 GiB.
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        key.extend_from_slice(&len.to_be_bytes());
        key.extend_from_slice(part.as_bytes());
    }
    key
}

/// The key of the point of `field` of item `item` of `stream` at `at`.
pub(super) fn point_key(stream: &str, item: &str, field: &str, at: Timestamp) -> Vec<u8> {
    let mut key = field_prefix(stream, item, field);
    key.extend_from_slice(&time_bytes(at));
    key
}

/// Nanoseconds since the epoch with the sign bit flipped, big-endian: bytes that sort
/// like the times (from 1678 to 2262; times beyond sort at those ends).
fn time_bytes(at: Timestamp) -> [u8; TIME_BYTES] {
    let nanos = i64::try_from(at.as_nanosecond()).unwrap_or(if at < Timestamp::UNIX_EPOCH {
        i64::MIN
    } else {
        i64::MAX
    });
    (nanos.cast_unsigned() ^ (1 << 63)).to_be_bytes()
}

/// The time of a point key (its last [`TIME_BYTES`]), as [`time_bytes`] wrote it.
fn time_of(key: &[u8]) -> Result<Timestamp, StoreError> {
    let corrupt = || StoreError::Corrupt("a history key is too short".into());
    let start = key.len().checked_sub(TIME_BYTES).ok_or_else(corrupt)?;
    let bytes = <[u8; TIME_BYTES]>::try_from(&key[start..]).map_err(|_| corrupt())?;
    let nanos = (u64::from_be_bytes(bytes) ^ (1 << 63)).cast_signed();
    Ok(Timestamp::UNIX_EPOCH
        .checked_add(SignedDuration::from_nanos(nanos))
        .unwrap_or(Timestamp::MAX))
}

/// [`POINTS_PER_FIELD`], or in tests what the `history::points_per_field` fail point
/// says, so that a test can fill a field past its cap quickly.
fn points_per_field() -> usize {
    fail::fail_point!("history::points_per_field", |n: Option<String>| n
        .and_then(|n| n.parse().ok())
        .unwrap_or(POINTS_PER_FIELD));
    POINTS_PER_FIELD
}

impl Store {
    /// Up to `limit` points of `field` of item `item` of `stream` from `from` through
    /// `to` (`None`: the newest), after the point at `after` (a page's cursor), oldest
    /// first.
    pub fn history(
        &self,
        (stream, item, field): (&str, &str, &str),
        (from, to): (Timestamp, Option<Timestamp>),
        after: Option<Timestamp>,
        limit: usize,
    ) -> Result<HistoryPage, StoreError> {
        let prefix = field_prefix(stream, item, field);
        let from = match after.and_then(|a| a.checked_add(SignedDuration::from_nanos(1)).ok()) {
            Some(next) => next.max(from),
            None => from,
        };
        let start = [prefix.as_slice(), &time_bytes(from)].concat();
        let end = [
            prefix.as_slice(),
            &to.map_or([u8::MAX; TIME_BYTES], time_bytes),
        ]
        .concat();
        let mut page = HistoryPage::default();
        if start > end {
            return Ok(page);
        }
        for entry in self.inner.history.range(start..=end) {
            if page.points.len() == limit {
                page.more = true;
                break;
            }
            let (key, value) = entry?;
            page.points.push(Point {
                at: time_of(&key)?,
                value: decode(&value)?,
            });
        }
        Ok(page)
    }

    /// Whether `field` of item `item` of `stream` has any point: a deleted item's
    /// history stays readable until it ages out.
    pub fn has_history(&self, stream: &str, item: &str, field: &str) -> Result<bool, StoreError> {
        let prefix = field_prefix(stream, item, field);
        Ok(self
            .inner
            .history
            .scan_prefix(prefix)
            .next()
            .transpose()?
            .is_some())
    }

    /// One step of the history sweep as of `now`: looks at up to `limit` points from
    /// where `sweep` stopped, downwards, and removes those older than their stream's
    /// retention and those of a field beyond its newest [`POINTS_PER_FIELD`]. Returns
    /// how many it removed.
    pub fn sweep_history(
        &self,
        now: Timestamp,
        sweep: &mut HistorySweep,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let cap = points_per_field();
        let _writing = self.writing();
        let tree = &self.inner.history;
        let entries = match sweep.from.take() {
            Some(from) => tree.range(..=from),
            None => tree.iter(),
        };
        let mut cutoffs: HashMap<Vec<u8>, Timestamp> = HashMap::new();
        let mut expired = sled::Batch::default();
        let mut removed = 0;
        for (looked, entry) in entries.rev().enumerate() {
            let (key, _) = entry?;
            if looked == limit {
                sweep.from = Some(key.to_vec());
                break;
            }
            let field = &key[..key.len().saturating_sub(TIME_BYTES)];
            if field != sweep.field.as_slice() {
                sweep.field = field.to_vec();
                sweep.kept = 0;
            }
            let stream = key.split(|b| *b == 0).next().unwrap_or_default();
            let cutoff = match cutoffs.get(stream) {
                Some(cutoff) => *cutoff,
                None => {
                    let cutoff = self.snapshots(stream)?.kept_since(now);
                    cutoffs.insert(stream.to_vec(), cutoff);
                    cutoff
                }
            };
            if sweep.kept >= cap || time_of(&key)? < cutoff {
                expired.remove(key);
                removed += 1;
            } else {
                sweep.kept += 1;
            }
        }
        if sweep.from.is_none() {
            *sweep = HistorySweep::default();
        }
        tree.apply_batch(expired)?;
        Ok(removed)
    }

    /// The snapshot settings of `stream` (the defaults for a stream never written).
    fn snapshots(&self, stream: &[u8]) -> Result<Snapshots, StoreError> {
        Ok(match self.inner.streams.get(stream)? {
            Some(value) => decode::<StreamStats>(&value)?.snapshots,
            None => Snapshots::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::Upsert;
    use crate::store::Accepted;

    /// Applies, as journal record `seq`, an upsert of item `a` of stream `s` at `at`.
    fn push(store: &Store, seq: u64, at: Timestamp, fields: Value) {
        let Value::Object(fields) = fields else {
            panic!("an object")
        };
        let upsert = Upsert {
            id: "a".into(),
            fields,
        };
        let mut accepted = Accepted::for_test("s", "c_1", vec![upsert], Vec::new());
        accepted.write.accepted_at = at;
        store.apply(&[(seq, accepted)]).expect("apply");
    }

    fn values(store: &Store, field: &str) -> Vec<Value> {
        let range = (Timestamp::MIN, None);
        let page = store
            .history(("s", "a", field), range, None, 1000)
            .expect("history");
        page.points.into_iter().map(|p| p.value).collect()
    }

    #[test]
    fn changes_are_recorded_while_on_and_swept_by_cap_and_age_in_bounded_steps() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let now = Timestamp::now();
        let long_ago = now - SignedDuration::from_hours(24 * 40);
        push(&store, 1, long_ago, json!({"v": 0, "k": "x"}));
        assert!(values(&store, "v").is_empty(), "off by default");
        let on = Snapshots {
            enabled: true,
            retention_days: 30,
        };
        store.set_snapshots("s", on).expect("on");
        push(
            &store,
            2,
            long_ago + SignedDuration::from_secs(1),
            json!({"v": 1, "k": "x"}),
        );
        for n in 2..=30 {
            let at = now - SignedDuration::from_secs(100 - n);
            push(&store, 1 + n.cast_unsigned(), at, json!({"v": n, "k": "x"}));
        }
        assert_eq!(values(&store, "v").len(), 30);
        assert!(
            values(&store, "k").is_empty(),
            "an unchanged field records nothing"
        );

        let mut sweep = HistorySweep::default();
        let mut removed = 0;
        let mut steps = 0;
        loop {
            removed += store.sweep_history(now, &mut sweep, 7).expect("sweep");
            steps += 1;
            if !sweep.under_way() {
                break;
            }
        }
        assert_eq!((removed, steps), (1, 5), "the old point, in steps of 7");
        assert_eq!(values(&store, "v").first(), Some(&json!(2)));

        fail::cfg("history::points_per_field", "return(10)").expect("fail point");
        let mut sweep = HistorySweep::default();
        let removed = store.sweep_history(now, &mut sweep, 100).expect("sweep");
        fail::remove("history::points_per_field");
        assert_eq!(removed, 19);
        let kept = values(&store, "v");
        assert_eq!(kept.first(), Some(&json!(21)), "the newest ten are kept");
        assert_eq!(kept.len(), 10);

        let page = store
            .history(("s", "a", "v"), (Timestamp::MIN, None), None, 4)
            .expect("page");
        assert!(page.more);
        let after = page.points.last().map(|p| p.at);
        let next = store
            .history(("s", "a", "v"), (Timestamp::MIN, None), after, 100)
            .expect("next page");
        assert_eq!((next.points.len(), next.more), (6, false));
        assert_eq!(next.points[0].value, json!(25));
        let last = next.points.last().map(|p| p.at);
        let past_the_end = store
            .history(("s", "a", "v"), (Timestamp::MIN, last), last, 100)
            .expect("an empty range");
        assert_eq!(past_the_end, HistoryPage::default());
    }

    #[test]
    fn point_keys_sort_by_time_within_a_field_and_read_back() {
        let early = Timestamp::from_second(-5).expect("time");
        let late: Timestamp = "2026-12-05T06:00:00.123456789Z".parse().expect("time");
        assert!(point_key("s", "a", "f", early) < point_key("s", "a", "f", late));
        assert_eq!(
            time_of(&point_key("s", "a", "f", late)).expect("time"),
            late
        );
        assert_eq!(
            time_of(&point_key("s", "a", "f", early)).expect("time"),
            early
        );
        // Ids and names holding \0 do not run into each other.
        assert_ne!(
            field_prefix("s", "a\0b", "c"),
            field_prefix("s", "a", "b\0c")
        );
        assert!(!point_key("s", "ab", "c", late).starts_with(&field_prefix("s", "a", "bc")));
    }
}
