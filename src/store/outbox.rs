//! Subscriptions and the durable outbox of their deliveries.
//!
//! Trees:
//! - `subscriptions`: subscription id → sealed [`Subscription`] (it holds secrets);
//! - `deliveries`: subscription id \0 change sequence → [`Delivery`], pending or
//!   finished (finished ones 30 days after their last attempt, for re-sending);
//! - `outbox`: subscription id \0 due time \0 change sequence → nothing: the pending
//!   deliveries of each subscription in the order they fall due;
//! - `delivery_log`: subscription id \0 time \0 counter → [`DeliveryEntry`], 30 days.
//!
//! Connector events (`connector.error`, `connector.recovered`) are enqueued as they
//! happen ([`Store::enqueue_connector_event`]), numbered by a counter of their own with
//! [`CONNECTOR_EVENT_BIT`] set, so their sequences never meet a change's.
//!
//! [`Store::apply`] enqueues the deliveries of the changes it makes in its own
//! transaction ([`enqueue`]), so a change and its notifications are durable together:
//! a crash before the store is flushed replays the journal and enqueues them again,
//! with the same message ids. Which subscriptions want a change is decided from
//! [`Outbox`]'s in-memory copy of the active ones, so with none, applying costs one
//! lock read per pass.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use jiff::Timestamp;
use sled::transaction::{ConflictableTransactionError, Transactional, TransactionalTree};
use tokio::sync::watch;

use super::activity::{log_key, newest_first, owner_prefix, sweep_log};
use super::codec::Sealer;
use super::pool::tx_seq;
use super::{abort, decode, encode, name_key, transact, Store, StoreError};
use crate::model::{
    message_id, Change, Connector, Delivery, DeliveryEntry, DeliveryState, EventCode, Filter,
    Subscription,
};

/// `meta` key of the data dir's random instance id, part of every message id.
const INSTANCE_KEY: &[u8] = b"outbox_instance";
/// `meta` key of the last connector event's number.
const CONNECTOR_EVENT_KEY: &[u8] = b"connector_event_seq";
/// Set in a connector event's sequence: the change sequence never reaches it, so a
/// connector event and a change never share a delivery id or message id.
const CONNECTOR_EVENT_BIT: u64 = 1 << 63;

/// The in-memory side of the outbox: which subscriptions are active (for the
/// applier), how many deliveries are pending, and the signal that wakes the workers.
pub struct Outbox {
    /// Active subscriptions' ids and filters; replaced whole on every subscription
    /// change, read once per apply pass.
    routes: RwLock<Arc<Vec<(String, Filter)>>>,
    /// Deliveries in the outbox.
    pending: AtomicU64,
    /// Bumped whenever deliveries are enqueued or re-sent.
    wake: watch::Sender<u64>,
    /// Random, drawn when the data dir was created; keeps message ids of different
    /// datapool boxes apart.
    instance: [u8; 8],
    /// Held while a subscription is created or changed, so that two writers cannot
    /// both take one name.
    naming: Mutex<()>,
}

impl Outbox {
    /// Deliveries waiting in the outbox (pending, including those waiting to be
    /// retried): the `datapool_outbound_pending` gauge. One atomic read.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// A receiver that changes whenever deliveries are enqueued or re-sent.
    pub fn woken(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    fn notify(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn routes(&self) -> Arc<Vec<(String, Filter)>> {
        // A poisoned lock still holds a whole Arc: a writer only swaps it.
        self.routes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_routes(&self, routes: Vec<(String, Filter)>) {
        *self
            .routes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(routes);
    }

    fn add_pending(&self, n: u64) {
        self.pending.fetch_add(n, Ordering::Relaxed);
    }

    fn remove_pending(&self, n: u64) {
        // Saturating: the count is a gauge and must not wrap if it ever drifts.
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(n))
            });
    }
}

/// Opens the outbox's in-memory side: the instance id (drawn on first use), the
/// active subscriptions and the pending count. Blocking: part of opening the store.
pub(super) fn open(
    meta: &sled::Tree,
    subscriptions: &sled::Tree,
    outbox: &sled::Tree,
    sealer: &Sealer,
) -> Result<Outbox, StoreError> {
    let instance = match meta.get(INSTANCE_KEY)? {
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
            .map_err(|_| StoreError::Corrupt("the outbox instance id is not 8 bytes".into()))?,
        None => {
            let drawn = crate::ids::random_bytes::<8>();
            meta.insert(INSTANCE_KEY, &drawn)?;
            drawn
        }
    };
    let outbox_state = Outbox {
        routes: RwLock::default(),
        pending: AtomicU64::new(outbox.len() as u64),
        wake: watch::channel(0).0,
        instance,
        naming: Mutex::default(),
    };
    outbox_state.set_routes(active_routes(subscriptions, sealer)?);
    Ok(outbox_state)
}

fn active_routes(
    subscriptions: &sled::Tree,
    sealer: &Sealer,
) -> Result<Vec<(String, Filter)>, StoreError> {
    let mut routes = Vec::new();
    for entry in subscriptions.iter() {
        let (id, value) = entry?;
        let subscription: Subscription = sealer.open(&id, &value)?;
        if subscription.spec.active {
            routes.push((subscription.id.clone(), subscription.spec.filter()));
        }
    }
    Ok(routes)
}

/// `subscription id \0 sequence`.
fn delivery_key(subscription: &str, seq: u64) -> Vec<u8> {
    let mut key = owner_prefix(subscription);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `subscription id \0 due (microseconds) sequence`: pending deliveries in due order.
fn queue_key(subscription: &str, due: Timestamp, seq: u64) -> Vec<u8> {
    let micros = u64::try_from(due.as_microsecond()).unwrap_or(0);
    let mut key = owner_prefix(subscription);
    key.extend_from_slice(&micros.to_be_bytes());
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence at the end of a queue or delivery key.
fn key_seq(key: &[u8]) -> Result<u64, StoreError> {
    key.len()
        .checked_sub(8)
        .and_then(|at| key.get(at..))
        .and_then(|tail| <[u8; 8]>::try_from(tail).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt("an outbox key is too short".into()))
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// The trees an apply pass enqueues into.
pub(super) struct Queue<'t> {
    pub(super) subscriptions: &'t TransactionalTree,
    pub(super) deliveries: &'t TransactionalTree,
    pub(super) outbox: &'t TransactionalTree,
}

/// Enqueues a delivery of each change in `made` for every active subscription that
/// wants it; how many. Part of the apply transaction, which also reads each
/// subscription it enqueues for: one deleted since `routes` was read gets nothing.
pub(super) fn enqueue(
    routes: &[(String, Filter)],
    instance: [u8; 8],
    made: &[Change],
    queue: &Queue<'_>,
) -> TxResult<u64> {
    if routes.is_empty() {
        return Ok(0);
    }
    let mut exists = std::collections::HashMap::new();
    for (id, _) in routes {
        exists.insert(
            id.as_str(),
            queue.subscriptions.get(id.as_bytes())?.is_some(),
        );
    }
    let Queue {
        deliveries, outbox, ..
    } = queue;
    let mut queued = 0;
    for change in made {
        let event = EventCode::from(change.kind);
        let mut wanted = routes
            .iter()
            .filter(|(id, filter)| {
                exists.get(id.as_str()).copied().unwrap_or(false)
                    && filter.matches(event, change.stream.as_str())
            })
            .peekable();
        if wanted.peek().is_none() {
            continue;
        }
        let delivery = Delivery::of_change(change, message_id(instance, change.seq));
        let value = encode(&delivery).map_err(ConflictableTransactionError::Abort)?;
        for (id, _) in wanted {
            put(deliveries, outbox, id, &delivery, &value)?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// Puts `delivery`, encoded as `value`, for subscription `id` into the deliveries and
/// the outbox.
fn put(
    deliveries: &TransactionalTree,
    outbox: &TransactionalTree,
    id: &str,
    delivery: &Delivery,
    value: &[u8],
) -> TxResult<()> {
    deliveries.insert(delivery_key(id, delivery.seq), value)?;
    outbox.insert(queue_key(id, delivery.due, delivery.seq), &[])?;
    Ok(())
}

/// What [`Store::record_attempt`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    /// The attempt and the delivery's new state are stored.
    Saved,
    /// The delivery had left the outbox meanwhile (its subscription was deactivated or
    /// deleted): only the attempt was logged.
    Withdrawn,
}

impl Store {
    /// The outbox's in-memory side: pending count and wake-ups.
    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox_state
    }

    /// The routes and instance id an apply pass enqueues with.
    pub(super) fn outbox_routes(&self) -> (Arc<Vec<(String, Filter)>>, [u8; 8]) {
        (
            self.inner.outbox_state.routes(),
            self.inner.outbox_state.instance,
        )
    }

    /// Counts deliveries an apply pass enqueued and wakes the workers.
    pub(super) fn enqueued(&self, queued: u64) {
        if queued > 0 {
            self.inner.outbox_state.add_pending(queued);
            self.inner.outbox_state.notify();
        }
    }

    /// Enqueues `event` (`connector.error` or `connector.recovered`) of `connector`,
    /// with `message` saying what happened, for every active subscription that wants
    /// it (its stream filter is matched against the connector's stream), durably; how
    /// many deliveries. Blocking.
    pub fn enqueue_connector_event(
        &self,
        event: EventCode,
        connector: &Connector,
        message: &str,
    ) -> Result<u64, StoreError> {
        let routes = self.inner.outbox_state.routes();
        let wanted: Vec<&str> = routes
            .iter()
            .filter(|(_, filter)| filter.matches(event, connector.spec.stream.as_str()))
            .map(|(id, _)| id.as_str())
            .collect();
        if wanted.is_empty() {
            return Ok(0);
        }
        let inner = &self.inner;
        let instance = inner.outbox_state.instance;
        let at = Timestamp::now();
        let queued = self.durably(|| {
            transact(
                (
                    &inner.meta,
                    &inner.subscriptions,
                    &inner.deliveries,
                    &inner.outbox,
                )
                    .transaction(|(meta, subscriptions, deliveries, outbox)| {
                        let number = tx_seq(meta, CONNECTOR_EVENT_KEY)? + 1;
                        meta.insert(CONNECTOR_EVENT_KEY, &number.to_be_bytes())?;
                        let seq = CONNECTOR_EVENT_BIT | number;
                        let delivery = Delivery::of_connector(
                            seq,
                            message_id(instance, seq),
                            event,
                            connector,
                            message,
                            at,
                        );
                        let value =
                            encode(&delivery).map_err(ConflictableTransactionError::Abort)?;
                        let mut queued = 0;
                        for id in &wanted {
                            if subscriptions.get(id.as_bytes())?.is_some() {
                                put(deliveries, outbox, id, &delivery, &value)?;
                                queued += 1;
                            }
                        }
                        Ok(queued)
                    }),
            )
        })?;
        self.enqueued(queued);
        Ok(queued)
    }

    /// All subscriptions, in id order.
    pub fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.inner
            .subscriptions
            .iter()
            .map(|entry| {
                let (id, value) = entry?;
                self.inner.sealer.open(&id, &value)
            })
            .collect()
    }

    /// One subscription by id.
    pub fn subscription(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        self.inner
            .subscriptions
            .get(id)?
            .map(|value| self.inner.sealer.open(id.as_bytes(), &value))
            .transpose()
    }

    /// Stores a new subscription, durably; its name must be free. Blocking.
    pub fn create_subscription(&self, subscription: &Subscription) -> Result<(), StoreError> {
        let id = subscription.id.as_bytes();
        let value = self.inner.sealer.seal(id, subscription)?;
        let _naming = self.name_free(subscription)?;
        self.durably(|| {
            if self
                .inner
                .subscriptions
                .compare_and_swap(id, None as Option<&[u8]>, Some(value))?
                .is_err()
            {
                return Err(StoreError::Changed);
            }
            self.refresh_routes()
        })
    }

    /// Replaces a subscription read at `subscription.revision - 1`, durably; a new name
    /// must be free. One that is now inactive leaves its pending deliveries as exhausted
    /// (listed, re-sendable): an inactive subscription gets nothing. Blocking.
    pub fn update_subscription(&self, subscription: &Subscription) -> Result<(), StoreError> {
        let inner = &self.inner;
        let id = subscription.id.as_str();
        let expected = subscription
            .revision
            .checked_sub(1)
            .ok_or(StoreError::Changed)?;
        let value = inner.sealer.seal(id.as_bytes(), subscription)?;
        let _naming = self.name_free(subscription)?;
        self.durably(|| {
            transact(inner.subscriptions.transaction(|subscriptions| {
                let Some(current) = subscriptions.get(id)? else {
                    return abort(StoreError::NotFound);
                };
                let current: Subscription = inner
                    .sealer
                    .open(id.as_bytes(), &current)
                    .map_err(ConflictableTransactionError::Abort)?;
                if current.revision != expected {
                    return abort(StoreError::Changed);
                }
                subscriptions.insert(id.as_bytes(), value.as_slice())?;
                Ok(())
            }))?;
            if !subscription.spec.active {
                self.exhaust_pending(id)?;
            }
            self.refresh_routes()
        })
    }

    /// Deletes a subscription with its deliveries, pending ones included, and its
    /// log, durably. The pool is untouched. Blocking.
    pub fn delete_subscription(&self, id: &str) -> Result<(), StoreError> {
        let inner = &self.inner;
        self.durably(|| {
            if inner.subscriptions.remove(id)?.is_none() {
                return Err(StoreError::NotFound);
            }
            self.refresh_routes()?;
            let prefix = owner_prefix(id);
            let mut dropped = 0;
            for key in inner.outbox.scan_prefix(&prefix).keys() {
                if inner.outbox.remove(key?)?.is_some() {
                    dropped += 1;
                }
            }
            inner.outbox_state.remove_pending(dropped);
            for tree in [&inner.deliveries, &inner.delivery_log] {
                for key in tree.scan_prefix(&prefix).keys() {
                    tree.remove(key?)?;
                }
            }
            Ok(())
        })
    }

    /// Takes a subscription's pending deliveries out of the outbox, marking them
    /// exhausted.
    fn exhaust_pending(&self, id: &str) -> Result<(), StoreError> {
        let inner = &self.inner;
        for key in inner.outbox.scan_prefix(owner_prefix(id)).keys() {
            let key = key?;
            let seq = key_seq(&key)?;
            let taken = transact((&inner.outbox, &inner.deliveries).transaction(
                |(outbox, deliveries)| {
                    if outbox.remove(key.as_ref())?.is_none() {
                        return Ok(false);
                    }
                    let dkey = delivery_key(id, seq);
                    if let Some(value) = deliveries.get(&dkey)? {
                        let mut delivery: Delivery =
                            decode(&value).map_err(ConflictableTransactionError::Abort)?;
                        delivery.state = DeliveryState::Exhausted;
                        let value =
                            encode(&delivery).map_err(ConflictableTransactionError::Abort)?;
                        deliveries.insert(dkey, value)?;
                    }
                    Ok(true)
                },
            ))?;
            if taken {
                inner.outbox_state.remove_pending(1);
            }
        }
        Ok(())
    }

    /// Refuses `subscription`'s name when another subscription has it (compared without
    /// case, as connectors' are); else the guard under which it may be written.
    fn name_free(&self, subscription: &Subscription) -> Result<MutexGuard<'_, ()>, StoreError> {
        let naming = self
            .inner
            .outbox_state
            .naming
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let wanted = name_key(&subscription.spec.name);
        for other in self.subscriptions()? {
            if other.id != subscription.id && name_key(&other.spec.name) == wanted {
                return Err(StoreError::NameTaken(
                    "subscription",
                    subscription.spec.name.clone(),
                ));
            }
        }
        Ok(naming)
    }

    fn refresh_routes(&self) -> Result<(), StoreError> {
        let routes = active_routes(&self.inner.subscriptions, &self.inner.sealer)?;
        self.inner.outbox_state.set_routes(routes);
        Ok(())
    }

    /// The subscription's pending delivery that falls due first.
    pub fn next_delivery(&self, subscription: &str) -> Result<Option<Delivery>, StoreError> {
        for key in self
            .inner
            .outbox
            .scan_prefix(owner_prefix(subscription))
            .keys()
        {
            let seq = key_seq(&key?)?;
            if let Some(delivery) = self.delivery(subscription, seq)? {
                return Ok(Some(delivery));
            }
        }
        Ok(None)
    }

    /// When the oldest delivery still in the outbox was enqueued, for `/metrics`.
    /// Reads the outbox's keys and, per subscription, the first delivery of each kind
    /// (changes, connector events): within a kind, sequences grow with time.
    pub fn oldest_pending(&self) -> Result<Option<Timestamp>, StoreError> {
        let mut firsts: std::collections::HashMap<(Vec<u8>, bool), u64> = Default::default();
        for key in self.inner.outbox.iter().keys() {
            let key = key?;
            let seq = key_seq(&key)?;
            let owner = key.split(|b| *b == 0).next().unwrap_or_default().to_vec();
            let first = firsts
                .entry((owner, seq & CONNECTOR_EVENT_BIT != 0))
                .or_insert(seq);
            *first = (*first).min(seq);
        }
        let mut oldest: Option<Timestamp> = None;
        for ((owner, _), seq) in firsts {
            let owner = String::from_utf8_lossy(&owner);
            if let Some(delivery) = self.delivery(&owner, seq)? {
                oldest = Some(oldest.map_or(delivery.created_at, |o| o.min(delivery.created_at)));
            }
        }
        Ok(oldest)
    }

    /// One delivery of a subscription, by its change sequence.
    pub fn delivery(&self, subscription: &str, seq: u64) -> Result<Option<Delivery>, StoreError> {
        self.inner
            .deliveries
            .get(delivery_key(subscription, seq))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Stores an attempt: its log entry, and the delivery's new state (`delivery`,
    /// whose outbox place was at `was_due`): re-queued at its new due time while
    /// pending, out of the outbox once delivered or exhausted. Not synced: a crash may
    /// lose it, and the delivery is then sent again (at least once).
    pub fn record_attempt(
        &self,
        subscription: &str,
        was_due: Timestamp,
        delivery: &Delivery,
        entry: &DeliveryEntry,
    ) -> Result<Recorded, StoreError> {
        let inner = &self.inner;
        inner
            .delivery_log
            .insert(log_key(subscription, entry.at), encode(entry)?)?;
        let value = encode(delivery)?;
        let old = queue_key(subscription, was_due, delivery.seq);
        let pending = delivery.state == DeliveryState::Pending;
        let recorded = transact((&inner.outbox, &inner.deliveries).transaction(
            |(outbox, deliveries)| {
                if outbox.remove(old.as_slice())?.is_none() {
                    return Ok(Recorded::Withdrawn);
                }
                deliveries.insert(delivery_key(subscription, delivery.seq), value.as_slice())?;
                if pending {
                    outbox.insert(queue_key(subscription, delivery.due, delivery.seq), &[])?;
                }
                Ok(Recorded::Saved)
            },
        ))?;
        if recorded == Recorded::Saved && !pending {
            inner.outbox_state.remove_pending(1);
        }
        Ok(recorded)
    }

    /// Puts a delivery back in the outbox, due now, with a fresh retry allowance and
    /// its message id, durably; `NotFound` when the subscription has no such delivery.
    /// A pending one is just made due now. Blocking.
    pub fn resend_delivery(&self, subscription: &str, seq: u64) -> Result<Delivery, StoreError> {
        let inner = &self.inner;
        let now = Timestamp::now();
        let (delivery, added) = self.durably(|| {
            transact(
                (&inner.outbox, &inner.deliveries).transaction(|(outbox, deliveries)| {
                    let dkey = delivery_key(subscription, seq);
                    let Some(value) = deliveries.get(&dkey)? else {
                        return abort(StoreError::NotFound);
                    };
                    let mut delivery: Delivery =
                        decode(&value).map_err(ConflictableTransactionError::Abort)?;
                    let was_pending = outbox
                        .remove(queue_key(subscription, delivery.due, seq))?
                        .is_some();
                    delivery.state = DeliveryState::Pending;
                    delivery.retries = 0;
                    delivery.due = now;
                    let value = encode(&delivery).map_err(ConflictableTransactionError::Abort)?;
                    deliveries.insert(dkey, value)?;
                    outbox.insert(queue_key(subscription, now, seq), &[])?;
                    Ok((delivery, !was_pending))
                }),
            )
        })?;
        if added {
            inner.outbox_state.add_pending(1);
        }
        inner.outbox_state.notify();
        Ok(delivery)
    }

    /// Up to `limit` entries of a subscription's delivery log, newest first, older
    /// than the opaque `before` cursor; with the cursor of the next page, if any.
    pub fn delivery_log(
        &self,
        subscription: &str,
        before: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<DeliveryEntry>, Option<Vec<u8>>), StoreError> {
        newest_first(&self.inner.delivery_log, subscription, before, limit)
    }

    /// Drops delivery log entries older than `cutoff`, and finished deliveries last
    /// tried before it; returns how many of both. Pending deliveries stay. Each
    /// subscription's deliveries are read in the order they were made, up to the first
    /// made after `cutoff` (none made later can have been tried before it).
    pub fn sweep_deliveries(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let mut removed = sweep_log(&self.inner.delivery_log, cutoff)?;
        for id in self.inner.subscriptions.iter().keys() {
            let id = id?;
            let prefix = [id.as_ref(), &[0]].concat();
            for entry in self.inner.deliveries.scan_prefix(prefix) {
                let (key, value) = entry?;
                let delivery: Delivery = decode(&value)?;
                if delivery.created_at >= cutoff {
                    break;
                }
                if delivery.state == DeliveryState::Pending || delivery.due >= cutoff {
                    continue;
                }
                // Compare-and-swap: a re-send in between keeps it.
                if self
                    .inner
                    .deliveries
                    .compare_and_swap(&key, Some(value), None as Option<&[u8]>)?
                    .is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
