//! Slots for ingest requests in flight: a global cap, so overload answers 503 rather
//! than queueing without bound (SPEC §3.1), and a share of it per connector, so one
//! connector's slow senders cannot take every slot and starve the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Semaphore, SemaphorePermit};

/// A connector may hold at most 1/`CONNECTOR_SHARE_DIVISOR` of the slots: half leaves
/// the other connectors at least half the server whatever one of them does, and still
/// lets a lone busy connector use most of it.
const CONNECTOR_SHARE_DIVISOR: usize = 2;

/// The ingest routes' slots.
pub struct InFlight {
    global: Semaphore,
    share: usize,
    /// Slots held per connector id. An entry stays once made (one per connector that
    /// ever pushed), so taking a slot allocates nothing.
    held: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

impl InFlight {
    /// `slots` slots in all, each connector holding at most its share (at least one).
    pub fn new(slots: usize) -> Self {
        InFlight {
            global: Semaphore::new(slots),
            share: (slots / CONNECTOR_SHARE_DIVISOR).max(1),
            held: Mutex::default(),
        }
    }

    /// One of the global slots, or `None` when all are taken.
    pub fn admit(&self) -> Option<SemaphorePermit<'_>> {
        self.global.try_acquire().ok()
    }

    /// One of `connector`'s slots, or `None` when it already holds its share.
    pub fn admit_connector(&self, connector: &str) -> Option<ConnectorSlot> {
        let held = self.held_by(connector);
        if held.fetch_add(1, Ordering::AcqRel) >= self.share {
            held.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ConnectorSlot(held))
    }

    /// The count of slots `connector` holds.
    fn held_by(&self, connector: &str) -> Arc<AtomicUsize> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get(connector) {
            return count.clone();
        }
        held.entry(connector.to_owned()).or_default().clone()
    }
}

/// A slot a connector holds until this is dropped.
pub struct ConnectorSlot(Arc<AtomicUsize>);

impl Drop for ConnectorSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
