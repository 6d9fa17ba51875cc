//! What the server counts, and `/metrics` in OpenMetrics text (SPEC §7) for Prometheus.
//!
//! Counting happens where the work is (every request in `Routes::respond`, every
//! write's stages in the handlers, the committer and the applier) and costs atomics:
//! no lock, no allocation on a request's path. What the store knows (items per
//! stream, bytes on disk) is read at scrape time, never kept up to date per write.

mod histogram;
mod requests;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::model::{ConnectorType, DeliveryState};
pub use histogram::Histogram;
pub use requests::{Requests, RouteId, ROUTES, WEB_UI_ROUTES};

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where a write spends its time on its way from the request to the read API, one
/// histogram each (`datapool_ingest_stage_seconds{stage=…}`): the stage whose tail is
/// longer than one `fdatasync` is the one holding requests up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Receiving the request body (per push).
    ReadBody,
    /// Verifying, parsing and flattening the body into items (per push).
    Parse,
    /// Queued for the group committer, its pacing included (per write).
    CommitQueue,
    /// Appending a group to the journal and `fdatasync`ing it (per group commit).
    JournalSync,
    /// From the group's sync to the handler running again to answer (per write).
    CommitReply,
    /// A committed group waiting for the applier: its pacing, a checkpoint, the pass
    /// before (per group).
    ApplyQueue,
    /// Applying a pass to the pool in store transactions (per pass).
    Apply,
    /// Telling readers and SSE clients what a pass changed (per pass).
    Announce,
    /// Flushing the pool between passes, about once a second (per checkpoint).
    Checkpoint,
}

impl Stage {
    /// Every stage, in the order a write goes through them.
    const ALL: [Stage; 9] = [
        Stage::ReadBody,
        Stage::Parse,
        Stage::CommitQueue,
        Stage::JournalSync,
        Stage::CommitReply,
        Stage::ApplyQueue,
        Stage::Apply,
        Stage::Announce,
        Stage::Checkpoint,
    ];

    /// The `stage` label.
    fn as_str(self) -> &'static str {
        match self {
            Stage::ReadBody => "read_body",
            Stage::Parse => "parse",
            Stage::CommitQueue => "commit_queue",
            Stage::JournalSync => "journal_sync",
            Stage::CommitReply => "commit_reply",
            Stage::ApplyQueue => "apply_queue",
            Stage::Apply => "apply",
            Stage::Announce => "announce",
            Stage::Checkpoint => "checkpoint",
        }
    }
}

/// Connector types that poll their source, each with a poll duration histogram.
const POLLED: [ConnectorType; 2] = [ConnectorType::Sql, ConnectorType::File];

/// Counts by a label value the server's configuration bounds (a stream, a connector
/// id). A lock, but taken once per applier pass or per connector error, never per
/// successful request.
#[derive(Debug, Default)]
struct Tally(Mutex<HashMap<String, u64>>);

impl Tally {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add<'a>(&self, counts: impl IntoIterator<Item = (&'a str, u64)>) {
        let mut tally = self.lock();
        for (key, n) in counts {
            match tally.get_mut(key) {
                Some(total) => *total += n,
                None => {
                    tally.insert(key.to_owned(), n);
                }
            }
        }
    }

    /// The counts, in label order.
    fn snapshot(&self) -> Vec<(String, u64)> {
        let mut counts: Vec<_> = self.lock().iter().map(|(k, n)| (k.clone(), *n)).collect();
        counts.sort_unstable();
        counts
    }
}

/// Everything the server counts; one per server, shared by handlers and the ingest
/// pipeline's threads.
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP requests by route and status.
    pub requests: Requests,
    /// Successful pushes, from authentication to the answer.
    ingest_duration: Histogram,
    /// One histogram per [`Stage`], in [`Stage::ALL`]'s order.
    stages: [Histogram; Stage::ALL.len()],
    /// Poll durations per [`POLLED`] type, in its order.
    polls: [Histogram; POLLED.len()],
    /// Items applied to the pool, by stream.
    ingested: Tally,
    /// Connector errors (failed polls, refused pushes that the connector's log records
    /// as errors), by connector id.
    connector_errors: Tally,
    /// Delivery attempts to subscribed URLs, by the outcome the delivery log records.
    outbound_attempts: Tally,
    /// The journal's last committed sequence.
    committed_seq: AtomicU64,
    /// The journal's last sequence applied to the pool.
    applied_seq: AtomicU64,
}

impl Metrics {
    /// Counts a successful push that took `took` from authentication to its answer.
    pub fn ingest_took(&self, took: Duration) {
        self.ingest_duration.observe(took);
    }

    /// Counts `took` spent in `stage`.
    pub fn stage_took(&self, stage: Stage, took: Duration) {
        self.stages[stage as usize].observe(took);
    }

    /// Counts a poll of a `kind` connector, successful or not, that took `took`.
    pub fn poll_took(&self, kind: ConnectorType, took: Duration) {
        if let Some(at) = POLLED.iter().position(|polled| *polled == kind) {
            self.polls[at].observe(took);
        }
    }

    /// Counts items applied to the pool: `(stream, items)` pairs, a pass at a time.
    pub fn ingested<'a>(&self, counts: impl IntoIterator<Item = (&'a str, u64)>) {
        self.ingested.add(counts);
    }

    /// Counts an error of connector `connector_id`.
    pub fn connector_error(&self, connector_id: &str) {
        self.connector_errors.add([(connector_id, 1)]);
    }

    /// Counts a delivery attempt that left its delivery `outcome`.
    pub fn outbound_attempt(&self, outcome: DeliveryState) {
        self.outbound_attempts.add([(outcome.as_str(), 1)]);
    }

    /// Notes the journal's last committed sequence.
    pub fn committed(&self, seq: u64) {
        self.committed_seq.store(seq, Ordering::Relaxed);
    }

    /// Notes the journal's last sequence applied to the pool.
    pub fn applied(&self, seq: u64) {
        self.applied_seq.store(seq, Ordering::Relaxed);
    }

    /// Journal records committed but not yet applied to the pool.
    fn journal_lag(&self) -> u64 {
        let applied = self.applied_seq.load(Ordering::Relaxed);
        self.committed_seq
            .load(Ordering::Relaxed)
            .saturating_sub(applied)
    }

    /// The OpenMetrics text of these counts and of `store`, ending in `# EOF`.
    pub fn scrape(self: &Arc<Self>, store: StoreFigures) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape {
            metrics: self.clone(),
            store,
        }));
        let mut text = String::new();
        // Writing to a String cannot fail, and every name and label is valid.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

/// What the store says at scrape time.
#[derive(Debug, Default)]
pub struct StoreFigures {
    /// Items per stream, by stream name.
    pub stream_items: Vec<(String, u64)>,
    /// Bytes on disk of the pool (`db`) and of the journal (`journal`).
    pub disk_bytes: Vec<(&'static str, u64)>,
    /// Deliveries to subscribed URLs waiting to be made (or retried).
    pub outbound_pending: u64,
    /// Seconds since the oldest of them was enqueued; 0 with none.
    pub outbound_oldest_pending_seconds: u64,
}

/// One scrape: the counters and the store's figures, encoded by prometheus-client.
#[derive(Debug)]
struct Scrape {
    metrics: Arc<Metrics>,
    store: StoreFigures,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let metrics = &self.metrics;
        metrics.requests.encode(&mut encoder)?;
        labelled(
            &mut encoder,
            Family::new(
                "datapool_ingest_items",
                "Items written into each stream since the server started (pushes, polls, and writes replayed from the journal at start-up)",
                MetricType::Counter,
                "stream",
            ),
            &metrics.ingested.snapshot(),
        )?;
        metrics.ingest_duration.encode(encoder.encode_descriptor(
            "datapool_ingest_duration",
            "Successful pushes (webhook, bulk, ingest API), from authentication to the answer, which is sent once the write is on disk",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?)?;
        let mut stages = encoder.encode_descriptor(
            "datapool_ingest_stage",
            "Where writes wait, stage by stage: read_body, parse, commit_queue, commit_reply (per write), journal_sync (per group commit), apply_queue (per committed group), apply, announce (per applier pass), checkpoint (per pool flush)",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (stage, histogram) in Stage::ALL.iter().zip(&metrics.stages) {
            histogram.encode(stages.encode_family(&[("stage", stage.as_str())])?)?;
        }
        let mut polls = encoder.encode_descriptor(
            "datapool_poll_duration",
            "Polls of a source by connector type, successful or not",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (kind, histogram) in POLLED.iter().zip(&metrics.polls) {
            histogram.encode(polls.encode_family(&[("type", kind.as_str())])?)?;
        }
        labelled(
            &mut encoder,
            Family::new(
                "datapool_stream_items",
                "Items each stream holds now",
                MetricType::Gauge,
                "stream",
            ),
            &self.store.stream_items,
        )?;
        labelled(
            &mut encoder,
            Family::new(
                "datapool_connector_errors",
                "Errors of each connector since the server started: failed polls, and pushes refused for a bad key, signature or payload, or a server failure",
                MetricType::Counter,
                "connector",
            ),
            &metrics.connector_errors.snapshot(),
        )?;
        gauge(
            &mut encoder,
            "datapool_outbound_pending",
            "Change notifications waiting to be delivered to subscribed URLs (first attempts and retries)",
            self.store.outbound_pending,
        )?;
        gauge(
            &mut encoder,
            "datapool_outbound_oldest_pending_seconds",
            "Seconds since the oldest change notification still waiting to be delivered was enqueued (0 when none waits): a receiver that is down shows here first",
            self.store.outbound_oldest_pending_seconds,
        )?;
        labelled(
            &mut encoder,
            Family::new(
                "datapool_outbound_attempts",
                "Delivery attempts to subscribed URLs since the server started, by the outcome the delivery log records: delivered, pending (failed; another attempt follows), exhausted (failed; no retry is left)",
                MetricType::Counter,
                "outcome",
            ),
            &metrics.outbound_attempts.snapshot(),
        )?;
        gauge(
            &mut encoder,
            "datapool_journal_lag_records",
            "Writes accepted (on disk in the journal) but not yet applied to the pool, so not yet visible to readers",
            metrics.journal_lag(),
        )?;
        let mut disk = encoder.encode_descriptor(
            "datapool_store_size",
            "Bytes the store takes on disk: the pool (part=db) and the write-ahead journal (part=journal)",
            Some(&Unit::Bytes),
            MetricType::Gauge,
        )?;
        for (part, bytes) in &self.store.disk_bytes {
            disk.encode_family(&[("part", *part)])?
                .encode_gauge(bytes)?;
        }
        Ok(())
    }
}

/// A metric family with one label.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    label: &'static str,
}

impl Family {
    fn new(name: &'static str, help: &'static str, kind: MetricType, label: &'static str) -> Self {
        Family {
            name,
            help,
            kind,
            label,
        }
    }
}

/// Writes `family` with one series per `(label value, value)`.
fn labelled(
    encoder: &mut DescriptorEncoder<'_>,
    family: Family,
    values: &[(String, u64)],
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
    for (label, value) in values {
        let labels = [(family.label, label.as_str())];
        let mut series = metric.encode_family(&labels)?;
        match family.kind {
            MetricType::Counter => series.encode_counter::<NoLabelSet, _, u64>(value, None)?,
            _ => series.encode_gauge(value)?,
        }
    }
    Ok(())
}

/// Writes a gauge without labels.
fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &'static str,
    help: &'static str,
    value: u64,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stage_indexes_its_own_histogram() {
        for (at, stage) in Stage::ALL.iter().enumerate() {
            assert_eq!(*stage as usize, at, "{stage:?}");
        }
    }

    #[test]
    fn a_scrape_shows_the_counts_and_ends_with_eof() {
        let metrics = Arc::new(Metrics::default());
        metrics.ingested([("sales", 2), ("stock", 1), ("sales", 3)]);
        metrics.connector_error("c_1");
        metrics.committed(7);
        metrics.applied(5);
        metrics.stage_took(Stage::JournalSync, Duration::from_micros(300));
        metrics.outbound_attempt(DeliveryState::Exhausted);
        let text = metrics.scrape(StoreFigures {
            stream_items: vec![("sales".into(), 4)],
            disk_bytes: vec![("db", 4096)],
            outbound_pending: 3,
            outbound_oldest_pending_seconds: 42,
        });
        for line in [
            "datapool_ingest_items_total{stream=\"sales\"} 5",
            "datapool_ingest_items_total{stream=\"stock\"} 1",
            "datapool_connector_errors_total{connector=\"c_1\"} 1",
            "datapool_journal_lag_records 2",
            "datapool_stream_items{stream=\"sales\"} 4",
            "datapool_store_size_bytes{part=\"db\"} 4096",
            "datapool_ingest_stage_seconds_bucket{le=\"0.0005\",stage=\"journal_sync\"} 1",
            "datapool_ingest_stage_seconds_bucket{le=\"0.00025\",stage=\"journal_sync\"} 0",
            "datapool_outbound_pending 3",
            "datapool_outbound_oldest_pending_seconds 42",
            "datapool_outbound_attempts_total{outcome=\"exhausted\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
