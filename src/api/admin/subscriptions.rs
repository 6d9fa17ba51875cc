//! `/api/admin/subscriptions`: create, list, read, patch, activate/deactivate,
//! rotate the signing secret, delete; the delivery log and re-sends (SPEC §6, §1.2).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{LogPage, Page};
use crate::api::{json_body, AppState};
use crate::http::ApiError;
use crate::model::{
    delivery_seq, generate_secret, read_document, Delivery, DeliveryEntry, DeliveryState,
    EventCode, Secret, Subscription, SubscriptionSpec, SubscriptionView, ValidationError,
};
use crate::store::StoreError;

/// Attempts at a read-modify-write before answering 409: another admin request
/// changing the same subscription at the same moment makes one attempt fail.
const MODIFY_ATTEMPTS: usize = 3;
/// The `secret` value that asks for a generated one.
const GENERATE: &str = "generate";

/// `POST /api/admin/subscriptions` → 201 `{"subscription", "secret"?}`; a generated
/// secret is shown here and never again.
#[utoipa::path(post, path = "/api/admin/subscriptions", tag = "admin", operation_id = "createSubscription",
    request_body(content = SubscriptionSpec, content_type = "application/json",
        description = "The subscription document; `\"secret\": \"generate\"` asks for a generated `whsec_…` secret"),
    responses((status = 201, description = "Created; a generated secret is shown only here", body = SubscriptionBody)))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<SubscriptionBody>), ApiError> {
    let mut document = json_body(&headers, &body)?;
    let generated =
        (document.get("secret").and_then(Value::as_str) == Some(GENERATE)).then(generate_secret);
    if let Some(secret) = &generated {
        document["secret"] = json!(secret.expose());
    }
    let spec = SubscriptionSpec::from_json(document)?;
    check_target(&state, &spec)?;
    let subscription = Subscription::new(spec, Timestamp::now());
    let stored = subscription.clone();
    state
        .store
        .blocking(move |store| store.create_subscription(&stored))
        .await?;
    state.outbound.changed();
    tracing::info!(subscription_id = %subscription.id, "subscription created");
    let answer = SubscriptionBody {
        subscription: SubscriptionView(subscription.view()),
        secret: generated.map(|secret| secret.expose().to_owned()),
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `GET /api/admin/subscriptions` → `{"subscriptions": […]}`.
#[utoipa::path(get, path = "/api/admin/subscriptions", tag = "admin", operation_id = "listSubscriptions",
    responses((status = 200, description = "Every subscription", body = SubscriptionList)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<SubscriptionList>, ApiError> {
    let subscriptions = state
        .store
        .subscriptions()?
        .iter()
        .map(|subscription| SubscriptionView(subscription.view()))
        .collect();
    Ok(Json(SubscriptionList { subscriptions }))
}

/// `GET /api/admin/subscriptions/{id}` → `{"subscription"}`.
#[utoipa::path(get, path = "/api/admin/subscriptions/{id}", tag = "admin", operation_id = "getSubscription",
    responses((status = 200, description = "The subscription", body = SubscriptionBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionBody>, ApiError> {
    Ok(view(&load(&state, &id)?))
}

/// `PATCH /api/admin/subscriptions/{id}` with a JSON Merge Patch → `{"subscription"}`.
#[utoipa::path(patch, path = "/api/admin/subscriptions/{id}", tag = "admin", operation_id = "updateSubscription",
    request_body(content = serde_json::Value, content_type = "application/merge-patch+json",
        description = "A JSON Merge Patch (RFC 7396) of the subscription document; `null` removes a member. What a read shows may be sent back: derived members, `passwordSet` and `***` header values are ignored"),
    responses((status = 200, description = "The changed subscription", body = SubscriptionBody)))]
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SubscriptionBody>, ApiError> {
    let patch = json_body(&headers, &body)?;
    let subscription = modify(&state, &id, |current| {
        let next = current.patched(&patch, Timestamp::now())?;
        check_target(&state, &next.spec)?;
        Ok(next)
    })
    .await?;
    tracing::info!(subscription_id = %id, "subscription updated");
    Ok(view(&subscription))
}

/// `POST /api/admin/subscriptions/{id}/activate` → `{"subscription"}`; it gets events
/// from now on.
#[utoipa::path(post, path = "/api/admin/subscriptions/{id}/activate", tag = "admin", operation_id = "activateSubscription",
    responses((status = 200, description = "The active subscription", body = SubscriptionBody)))]
pub async fn activate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionBody>, ApiError> {
    set_active(&state, &id, true).await
}

/// `POST /api/admin/subscriptions/{id}/deactivate` → `{"subscription"}`; it gets
/// nothing more, and its pending deliveries are listed as exhausted.
#[utoipa::path(post, path = "/api/admin/subscriptions/{id}/deactivate", tag = "admin", operation_id = "deactivateSubscription",
    responses((status = 200, description = "The inactive subscription", body = SubscriptionBody)))]
pub async fn deactivate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionBody>, ApiError> {
    set_active(&state, &id, false).await
}

async fn set_active(
    state: &AppState,
    id: &str,
    active: bool,
) -> Result<Json<SubscriptionBody>, ApiError> {
    let subscription = modify(state, id, |current| {
        Ok(current.changed(Timestamp::now(), |spec| spec.active = active))
    })
    .await?;
    tracing::info!(subscription_id = %id, active, "subscription active changed");
    Ok(view(&subscription))
}

/// `POST /api/admin/subscriptions/{id}/rotate-secret`, optional body
/// `{"secret": "whsec_…"}` → 200 `{"subscription", "secret"}`; the old secret keeps
/// signing beside the new one for 24 hours.
#[utoipa::path(post, path = "/api/admin/subscriptions/{id}/rotate-secret", tag = "admin", operation_id = "rotateSubscriptionSecret",
    request_body(content = Option<NewSecret>, content_type = "application/json",
        description = "Optional: the new secret; without one (or with `generate`) one is generated"),
    responses((status = 200, description = "The new secret, shown only here", body = SubscriptionBody)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SubscriptionBody>, ApiError> {
    let secret = if body.is_empty() {
        generate_secret()
    } else {
        let asked = match json_body(&headers, &body)? {
            Value::Null => None,
            document => read_document::<NewSecret>(document, "a new secret")?.secret,
        };
        match asked {
            None => generate_secret(),
            Some(given) if given == GENERATE => generate_secret(),
            Some(given) => {
                let given = Secret::new(given);
                crate::model::signing_key(&given)?;
                given
            }
        }
    };
    let subscription = modify(&state, &id, |current| {
        Ok(current.rotated(secret.clone(), Timestamp::now()))
    })
    .await?;
    tracing::info!(subscription_id = %id, "subscription signing secret rotated");
    Ok(Json(SubscriptionBody {
        subscription: SubscriptionView(subscription.view()),
        secret: Some(secret.expose().to_owned()),
    }))
}

/// `DELETE /api/admin/subscriptions/{id}` → 204; its pending deliveries and its log
/// go with it, the pool is untouched.
#[utoipa::path(delete, path = "/api/admin/subscriptions/{id}", tag = "admin", operation_id = "deleteSubscription",
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let target = id.clone();
    state
        .store
        .blocking(move |store| store.delete_subscription(&target))
        .await
        .map_err(|e| not_found_as(e, &id))?;
    state.outbound.changed();
    tracing::info!(subscription_id = %id, "subscription deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/admin/subscriptions/{id}/deliveries?limit=&cursor=` →
/// `{"entries","nextCursor"}`: one entry per attempt, newest first, 30 days.
#[utoipa::path(get, path = "/api/admin/subscriptions/{id}/deliveries", tag = "admin", operation_id = "listSubscriptionDeliveries",
    params(LogPage),
    responses((status = 200, description = "One page of the delivery log, newest first", body = Page<DeliveryEntry>)))]
pub async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<LogPage>,
) -> Result<Json<Page<DeliveryEntry>>, ApiError> {
    load(&state, &id)?;
    let (before, limit) = page.parse()?;
    let (entries, next) = state.store.delivery_log(&id, before.as_deref(), limit)?;
    Ok(Json(Page {
        entries,
        next_cursor: next.map(hex::encode),
    }))
}

/// `POST /api/admin/subscriptions/{id}/deliveries/{delivery}/resend` → 202
/// `{"delivery"}`: the delivery is sent again now, with its message id and a fresh
/// allowance of retries.
#[utoipa::path(post, path = "/api/admin/subscriptions/{id}/deliveries/{delivery}/resend", tag = "admin", operation_id = "resendSubscriptionDelivery",
    responses((status = 202, description = "Queued to be sent now", body = ResentBody)))]
pub async fn resend(
    State(state): State<AppState>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<ResentBody>), ApiError> {
    let subscription = load(&state, &id)?;
    if !subscription.spec.active {
        return Err(ApiError::conflict(format!(
            "subscription {id} is inactive; activate it first"
        )));
    }
    let unknown =
        || ApiError::not_found(format!("subscription {id} has no delivery {delivery_id:?}"));
    let seq = delivery_seq(&delivery_id).ok_or_else(unknown)?;
    let target = id.clone();
    let delivery = state
        .store
        .blocking(move |store| store.resend_delivery(&target, seq))
        .await
        .map_err(|e| match e {
            StoreError::NotFound => unknown(),
            other => other.into(),
        })?;
    tracing::info!(subscription_id = %id, delivery_id = %delivery_id, "delivery re-sent");
    Ok((
        StatusCode::ACCEPTED,
        Json(ResentBody {
            delivery: Resent::of(delivery),
        }),
    ))
}

/// A subscription answer: `{"subscription", "secret"?}` (SPEC §1.2).
#[derive(Serialize, ToSchema)]
pub struct SubscriptionBody {
    /// The subscription as stored, secrets shown as flags.
    pub subscription: SubscriptionView,
    /// The signing secret `whsec_…`, shown once: when generated at create, and on rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The body of `GET /api/admin/subscriptions`.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionList {
    /// Every subscription.
    pub subscriptions: Vec<SubscriptionView>,
}

/// The optional body of `POST …/rotate-secret`.
#[derive(Deserialize, ToSchema)]
pub struct NewSecret {
    /// A `whsec_…` secret (base64 after the prefix), or `generate`.
    pub secret: Option<String>,
}

/// The body of a re-send's answer.
#[derive(Serialize, ToSchema)]
pub struct ResentBody {
    /// The delivery, queued again.
    pub delivery: Resent,
}

/// A delivery queued again.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resent {
    /// The delivery's id.
    pub id: String,
    /// Its message id, the same as on every earlier attempt.
    pub message_id: String,
    /// What it tells.
    pub event_code: EventCode,
    /// Where it is now.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the change it tells happened.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl Resent {
    fn of(delivery: Delivery) -> Self {
        Resent {
            id: delivery.id(),
            message_id: delivery.message_id,
            event_code: delivery.event,
            state: delivery.state,
            attempts: delivery.attempts,
            created_at: delivery.created_at,
        }
    }
}

/// 400 for a URL the target guard refuses.
fn check_target(state: &AppState, spec: &SubscriptionSpec) -> Result<(), ApiError> {
    state
        .outbound
        .guard()
        .check_url(&spec.target()?)
        .map_err(|e| ValidationError::field("url", e).into())
}

fn load(state: &AppState, id: &str) -> Result<Subscription, ApiError> {
    state.store.subscription(id)?.ok_or_else(|| unknown(id))
}

/// Reads the subscription, applies `change`, and stores the result, retrying when
/// another request changed it meanwhile.
async fn modify(
    state: &AppState,
    id: &str,
    mut change: impl FnMut(&Subscription) -> Result<Subscription, ApiError>,
) -> Result<Subscription, ApiError> {
    let mut attempt = 1;
    loop {
        let next = change(&load(state, id)?)?;
        let stored = next.clone();
        match state
            .store
            .blocking(move |store| store.update_subscription(&stored))
            .await
        {
            Err(StoreError::Changed) if attempt < MODIFY_ATTEMPTS => attempt += 1,
            result => {
                state.outbound.changed();
                return result.map(|()| next).map_err(|e| not_found_as(e, id));
            }
        }
    }
}

fn view(subscription: &Subscription) -> Json<SubscriptionBody> {
    Json(SubscriptionBody {
        subscription: SubscriptionView(subscription.view()),
        secret: None,
    })
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!("no subscription with id {id:?}"))
}

fn not_found_as(error: StoreError, id: &str) -> ApiError {
    match error {
        StoreError::NotFound => unknown(id),
        other => other.into(),
    }
}
