//! One subscription's delivery worker: takes its pending deliveries from the outbox
//! as they fall due, sends each (one at a time, holding one of the global in-flight
//! slots), and records the attempt with the delivery's next state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use super::{sign, Context};
use crate::model::{Delivery, DeliveryEntry, DeliveryState, RetryPolicy, Subscription};
use crate::store::{Recorded, StoreError};

/// Pause after the store failed to read or record, before looking again.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Longest wait a receiver's `Retry-After` can ask for: past a day, the delivery would
/// outlive what the operator expects of a retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);
/// Most characters of an error kept in the delivery log.
const MAX_ERROR_CHARS: usize = 300;
/// How long a subscription may fail every attempt before it is deactivated (SPEC §6).
/// Counted by its worker from the first failure since its last success or since the
/// worker started, so a restart starts the count anew.
const MAX_FAILING: SignedDuration = SignedDuration::from_hours(5 * 24);
/// Sent as `User-Agent`, so receivers can tell datapool's deliveries apart.
const AGENT: &str = concat!("datapool/", env!("CARGO_PKG_VERSION"));

/// What one attempt came to.
#[derive(Debug)]
struct Attempt {
    started: Timestamp,
    status: Option<u16>,
    latency: Duration,
    error: Option<String>,
    /// What a 429 or 503 answer's `Retry-After` asked for.
    retry_after: Option<Duration>,
}

/// Delivers subscription `id`'s outbox until `stop` fires, the subscription is gone or
/// inactive, or it is deactivated for a 410 Gone or for failing [`MAX_FAILING`].
pub(super) async fn run(context: Arc<Context>, id: String, stop: CancellationToken) {
    let mut woken = context.store.outbox().woken();
    let mut failing_since = None;
    loop {
        // Seen before looking: a wake-up between the look and the wait is not lost.
        woken.borrow_and_update();
        let wait = match context.store.next_delivery(&id) {
            Err(error) => {
                tracing::warn!(subscription_id = %id, %error, "reading the outbox failed");
                STORE_RETRY
            }
            Ok(None) => Duration::MAX,
            Ok(Some(delivery)) => {
                let due_in = Timestamp::now().duration_until(delivery.due);
                if due_in.is_positive() {
                    due_in.unsigned_abs()
                } else {
                    match deliver(&context, &id, delivery, &mut failing_since, &stop).await {
                        Ok(true) => continue,
                        Ok(false) => return,
                        Err(error) => {
                            tracing::warn!(subscription_id = %id, %error, "recording a delivery failed");
                            STORE_RETRY
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait.min(Duration::from_secs(86_400))) => {}
            changed = woken.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
    }
}

/// Sends `delivery` and records the attempt; whether the worker carries on.
/// `failing_since` is when the subscription's current run of failures began.
async fn deliver(
    context: &Context,
    id: &str,
    mut delivery: Delivery,
    failing_since: &mut Option<Timestamp>,
    stop: &CancellationToken,
) -> Result<bool, StoreError> {
    let Some(subscription) = context.store.subscription(id)?.filter(|s| s.spec.active) else {
        return Ok(false);
    };
    let attempt = tokio::select! {
        attempt = async {
            // The semaphore is never closed; a slot is held for the attempt.
            let _slot = context.slots.acquire().await;
            send(context, &subscription, &delivery).await
        } => attempt,
        () = stop.cancelled() => return Ok(false),
    };
    let was_due = delivery.due;
    let gone = attempt.status == Some(StatusCode::GONE.as_u16());
    let next_attempt_at = advance(
        &mut delivery,
        &subscription.spec.retry_policy(),
        &attempt,
        gone,
    );
    let entry = DeliveryEntry {
        id: delivery.id(),
        message_id: delivery.message_id.clone(),
        event_code: delivery.event,
        at: attempt.started,
        attempt: delivery.attempts,
        status: attempt.status,
        latency_ms: u64::try_from(attempt.latency.as_millis()).unwrap_or(u64::MAX),
        error: attempt.error,
        outcome: delivery.state,
        next_attempt_at,
    };
    let recorded = context
        .store
        .record_attempt(id, was_due, &delivery, &entry)?;
    context.metrics.outbound_attempt(delivery.state);
    tracing::debug!(subscription_id = %id, delivery_id = %entry.id, attempt = entry.attempt, status = ?entry.status, outcome = ?entry.outcome, "delivery attempt");
    if delivery.state == DeliveryState::Exhausted && recorded == Recorded::Saved && !gone {
        tracing::info!(subscription_id = %id, delivery_id = %entry.id, attempts = delivery.attempts, "delivery exhausted its retries");
    }
    if delivery.state == DeliveryState::Delivered {
        *failing_since = None;
    } else {
        failing_since.get_or_insert(attempt.started);
    }
    let reason = if gone {
        "the receiver answered 410 Gone"
    } else if failing_too_long(*failing_since, attempt.started) {
        "every delivery failed for 5 days"
    } else {
        return Ok(true);
    };
    deactivate(context, &subscription, reason).await?;
    Ok(false)
}

/// Whether failures since `since` have lasted [`MAX_FAILING`] by `now`.
fn failing_too_long(since: Option<Timestamp>, now: Timestamp) -> bool {
    since.is_some_and(|since| since.duration_until(now) >= MAX_FAILING)
}

/// Moves `delivery` past an attempt: delivered on 2xx; exhausted on 410 or when its
/// policy allows no more retries; else pending again, due after the receiver's
/// `Retry-After` or the policy's delay. The next attempt's time, if any.
fn advance(
    delivery: &mut Delivery,
    policy: &RetryPolicy,
    attempt: &Attempt,
    gone: bool,
) -> Option<Timestamp> {
    delivery.attempts += 1;
    let finished = attempt.started + SignedDuration::try_from(attempt.latency).unwrap_or_default();
    delivery.due = finished;
    if attempt.status.is_some_and(|s| (200..300).contains(&s)) {
        delivery.state = DeliveryState::Delivered;
        return None;
    }
    if gone || delivery.retries >= policy.max_retries() {
        delivery.state = DeliveryState::Exhausted;
        return None;
    }
    delivery.retries += 1;
    let wait = attempt
        .retry_after
        .unwrap_or_else(|| policy.delay(delivery.retries));
    let next = finished
        .checked_add(SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    delivery.state = DeliveryState::Pending;
    delivery.due = next;
    Some(next)
}

/// Deactivates a subscription the receiver asked to stop (410 Gone) or that fails
/// for too long, logging `reason`.
async fn deactivate(
    context: &Context,
    subscription: &Subscription,
    reason: &str,
) -> Result<(), StoreError> {
    let id = subscription.id.clone();
    let mut attempt = 0;
    loop {
        let current = match context.store.subscription(&id)? {
            Some(current) if current.spec.active => current,
            _ => return Ok(()),
        };
        let next = current.changed(Timestamp::now(), |spec| spec.active = false);
        match context
            .store
            .blocking(move |store| store.update_subscription(&next))
            .await
        {
            Err(StoreError::Changed) if attempt < 3 => attempt += 1,
            Err(StoreError::NotFound) => return Ok(()),
            result => {
                result?;
                tracing::warn!(subscription_id = %id, reason, "subscription deactivated");
                context.changed();
                return Ok(());
            }
        }
    }
}

/// POSTs the delivery's body with its headers, within the subscription's timeout.
async fn send(context: &Context, subscription: &Subscription, delivery: &Delivery) -> Attempt {
    let started = Timestamp::now();
    let clock = Instant::now();
    let failed = |error: String| Attempt {
        started,
        status: None,
        latency: clock.elapsed(),
        error: Some(shorten(error)),
        retry_after: None,
    };
    let spec = &subscription.spec;
    let url = match spec.target() {
        Ok(url) => url,
        Err(error) => return failed(error.to_string()),
    };
    if let Err(error) = context.guard.check_url(&url) {
        return failed(error.to_string());
    }
    let mut request = context
        .client
        .post(url)
        .timeout(spec.timeout())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(USER_AGENT, HeaderValue::from_static(AGENT))
        .header("webhook-id", delivery.message_id.as_str());
    let keys = subscription.signing_keys(started);
    if !keys.is_empty() {
        let timestamp = started.as_second();
        request = request
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign::standard_signature(&keys, &delivery.message_id, timestamp, &delivery.body),
            );
    }
    if let (Some(header), Some(secret)) = (&spec.legacy_sha1_header, &spec.secret) {
        request = request.header(
            header.as_str(),
            sign::legacy_sha1(secret.expose(), &delivery.body),
        );
    }
    if let Some(auth) = &spec.basic_auth {
        request = request.basic_auth(&auth.username, Some(auth.password.expose()));
    }
    for (name, value) in spec.headers.iter().flatten() {
        request = request.header(name.as_str(), value.expose());
    }
    match request.body(delivery.body.clone()).send().await {
        Ok(response) => {
            let status = response.status();
            let retry_after = matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            )
            .then(|| response.headers().get(RETRY_AFTER))
            .flatten()
            .and_then(|value| retry_after(value, started));
            Attempt {
                started,
                status: Some(status.as_u16()),
                latency: clock.elapsed(),
                error: (!status.is_success()).then(|| format!("the receiver answered {status}")),
                retry_after,
            }
        }
        Err(error) if error.is_timeout() => {
            failed(format!("no answer within {} s", spec.timeout().as_secs()))
        }
        Err(error) => failed(error_chain(&error)),
    }
}

/// A `Retry-After` value, seconds or an HTTP date, as a wait from `now`; at most
/// [`MAX_RETRY_AFTER`].
fn retry_after(value: &HeaderValue, now: Timestamp) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = jiff::fmt::rfc2822::parse(text).ok()?.timestamp();
            now.duration_until(at).unsigned_abs()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// An error with its causes, which is where reqwest says what went wrong.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn shorten(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
        text.truncate(at);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventCode, RetryKind};

    fn pending() -> Delivery {
        Delivery {
            seq: 1,
            message_id: "wh-1".into(),
            event: EventCode::ItemCreated,
            body: "{}".into(),
            created_at: Timestamp::UNIX_EPOCH,
            attempts: 0,
            retries: 0,
            state: DeliveryState::Pending,
            due: Timestamp::UNIX_EPOCH,
        }
    }

    fn answered(status: Option<u16>, retry_after: Option<Duration>) -> Attempt {
        Attempt {
            started: Timestamp::UNIX_EPOCH,
            status,
            latency: Duration::ZERO,
            error: None,
            retry_after,
        }
    }

    #[test]
    fn a_fixed_policy_retries_n_times_then_exhausts_and_retry_after_wins() {
        let policy = RetryPolicy {
            policy: RetryKind::Fixed,
            max_retries: Some(2),
            interval_seconds: Some(1),
        };
        let mut delivery = pending();
        let next = advance(&mut delivery, &policy, &answered(Some(500), None), false);
        assert_eq!(next, Some(Timestamp::from_second(1).expect("ts")));
        let wait = Some(Duration::from_secs(7));
        let next = advance(&mut delivery, &policy, &answered(Some(503), wait), false);
        assert_eq!(next, Some(Timestamp::from_second(7).expect("ts")));
        assert_eq!(delivery.state, DeliveryState::Pending);
        assert_eq!(
            advance(&mut delivery, &policy, &answered(None, None), false),
            None
        );
        assert_eq!(delivery.state, DeliveryState::Exhausted);
        assert_eq!(delivery.attempts, 3);
        let mut ok = pending();
        advance(&mut ok, &policy, &answered(Some(204), None), false);
        assert_eq!(ok.state, DeliveryState::Delivered);
        let mut gone = pending();
        advance(&mut gone, &policy, &answered(Some(410), None), true);
        assert_eq!(gone.state, DeliveryState::Exhausted);
    }

    #[test]
    fn five_days_of_failures_deactivate() {
        let since = Timestamp::UNIX_EPOCH;
        let almost = since + SignedDuration::from_hours(5 * 24 - 1);
        assert!(!failing_too_long(Some(since), almost));
        assert!(failing_too_long(Some(since), since + MAX_FAILING));
        assert!(!failing_too_long(None, since + MAX_FAILING));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_capped() {
        let now = Timestamp::from_second(1_000_000_000).expect("ts");
        let seconds = HeaderValue::from_static("120");
        assert_eq!(retry_after(&seconds, now), Some(Duration::from_secs(120)));
        let date = HeaderValue::from_static("Sun, 09 Sep 2001 01:48:20 GMT");
        assert_eq!(retry_after(&date, now), Some(Duration::from_secs(100)));
        let far = HeaderValue::from_static("99999999");
        assert_eq!(retry_after(&far, now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&HeaderValue::from_static("soon"), now), None);
    }
}
