//! `/api/admin/subscriptions`: create, list, read, patch, activate/deactivate,
//! rotate the signing secret, delete; the delivery log and re-sends (SPEC §6, §1.2).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use jiff::Timestamp;
use serde_json::{json, Value};

use super::LogPage;
use crate::api::{json_body, AppState};
use crate::http::ApiError;
use crate::model::{
    delivery_seq, generate_secret, Delivery, Secret, Subscription, SubscriptionSpec,
    ValidationError,
};
use crate::store::StoreError;

/// Attempts at a read-modify-write before answering 409: another admin request
/// changing the same subscription at the same moment makes one attempt fail.
const MODIFY_ATTEMPTS: usize = 3;
/// The `secret` value that asks for a generated one.
const GENERATE: &str = "generate";

/// `POST /api/admin/subscriptions` → 201 `{"subscription", "secret"?}`; a generated
/// secret is shown here and never again.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
    let mut answer = json!({"subscription": subscription.view()});
    if let Some(secret) = generated {
        answer["secret"] = json!(secret.expose());
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `GET /api/admin/subscriptions` → `{"subscriptions": […]}`.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let subscriptions: Vec<Value> = state
        .store
        .subscriptions()?
        .iter()
        .map(Subscription::view)
        .collect();
    Ok(Json(json!({"subscriptions": subscriptions})))
}

/// `GET /api/admin/subscriptions/{id}` → `{"subscription"}`.
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(view(&load(&state, &id)?))
}

/// `PATCH /api/admin/subscriptions/{id}` with a JSON Merge Patch → `{"subscription"}`.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
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
pub async fn activate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_active(&state, &id, true).await
}

/// `POST /api/admin/subscriptions/{id}/deactivate` → `{"subscription"}`; it gets
/// nothing more, and its pending deliveries are listed as exhausted.
pub async fn deactivate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_active(&state, &id, false).await
}

async fn set_active(state: &AppState, id: &str, active: bool) -> Result<Json<Value>, ApiError> {
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
pub async fn rotate_secret(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let secret = if body.is_empty() {
        generate_secret()
    } else {
        let document = json_body(&headers, &body)?;
        match document.get("secret") {
            None | Some(Value::Null) => generate_secret(),
            Some(Value::String(given)) if given == GENERATE => generate_secret(),
            Some(Value::String(given)) => {
                let given = Secret::new(given.clone());
                crate::model::signing_key(&given)?;
                given
            }
            Some(_) => {
                return Err(ValidationError::field("secret", "must be a string").into());
            }
        }
    };
    let subscription = modify(&state, &id, |current| {
        Ok(current.rotated(secret.clone(), Timestamp::now()))
    })
    .await?;
    tracing::info!(subscription_id = %id, "subscription signing secret rotated");
    Ok(Json(
        json!({"subscription": subscription.view(), "secret": secret.expose()}),
    ))
}

/// `DELETE /api/admin/subscriptions/{id}` → 204; its pending deliveries and its log
/// go with it, the pool is untouched.
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
pub async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(page): Query<LogPage>,
) -> Result<Json<Value>, ApiError> {
    load(&state, &id)?;
    let (before, limit) = page.parse()?;
    let (entries, next) = state.store.delivery_log(&id, before.as_deref(), limit)?;
    Ok(Json(
        json!({"entries": entries, "nextCursor": next.map(hex::encode)}),
    ))
}

/// `POST /api/admin/subscriptions/{id}/deliveries/{delivery}/resend` → 202
/// `{"delivery"}`: the delivery is sent again now, with its message id and a fresh
/// allowance of retries.
pub async fn resend(
    State(state): State<AppState>,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
        Json(json!({"delivery": delivery_view(&delivery)})),
    ))
}

fn delivery_view(delivery: &Delivery) -> Value {
    json!({
        "id": delivery.id(),
        "messageId": delivery.message_id,
        "eventCode": delivery.event.as_str(),
        "state": delivery.state,
        "attempts": delivery.attempts,
        "createdAt": delivery.created_at,
    })
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

fn view(subscription: &Subscription) -> Json<Value> {
    Json(json!({"subscription": subscription.view()}))
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
