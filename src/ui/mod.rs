//! The embedded web UI (SPEC §7): its pages, scripts and styles are compiled into the
//! binary and served at `/` by the same listeners, so it works air-gapped; sign-in
//! with the admin token opens a [`session`] the admin and read APIs accept from the
//! UI's own pages.

pub mod assets;
pub mod session;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::api::{json_body, AppState};
use crate::auth::KeyKind;
use crate::http::{read_limited, ApiError, ClientAddr};
pub use session::{SessionUse, Sessions};

/// Largest sign-in body: one admin token in a small JSON object.
const SIGN_IN_BODY_LIMIT_BYTES: usize = 4096;

/// `GET /`: the UI's one page; its scripts route by the URL's `#` part.
pub async fn index(headers: HeaderMap) -> Response {
    assets::serve("index.html", &headers)
}

/// `GET /assets/{file}`: a script, style sheet or icon of the UI.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    assets::serve(&file, &headers)
}

/// The body of a sign-in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// The admin token (`at_…`).
    token: String,
}

/// `POST /api/ui/session` `{"token":"at_…"}` → 201 `{"csrfToken","expiresAt"}` and the
/// session cookie. A wrong token counts against the client's failed-credential limit
/// like any other; a valid key that is not the admin token gets 403.
pub async fn sign_in(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let client = request.extensions().get::<ClientAddr>().map(|c| c.0);
    let (parts, body) = request.into_parts();
    session::check_same_origin(&parts.method, &parts.uri, &parts.headers)?;
    state.check_not_refused(client)?;
    let body = read_limited(&parts.headers, body, SIGN_IN_BODY_LIMIT_BYTES).await?;
    let sign_in: SignIn =
        serde_json::from_value(json_body(&parts.headers, &body)?).map_err(|e| {
            ApiError::invalid_payload(format!("a sign-in is {{\"token\": \"at_…\"}}: {e}"))
        })?;
    let record = state
        .authenticate(sign_in.token.trim())?
        .ok_or_else(|| state.failed_authentication(client, "that is not the admin token"))?;
    if record.kind != KeyKind::Admin {
        return Err(ApiError::forbidden(
            "only the admin token signs in to the UI",
        ));
    }
    let (id, info) = state.sessions.create();
    let cookie = session::set_cookie(&id)
        .ok_or_else(|| ApiError::internal("a session id is not a header value"))?;
    tracing::info!(key_id = %record.key_id, "signed in to the web UI");
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, cookie)],
        Json(info),
    )
        .into_response())
}

/// `GET /api/ui/session` → 200 `{"signedIn":true,"csrfToken","expiresAt"}` for a live
/// session (a page reload finds its CSRF token again), else `{"signedIn":false}`: not
/// being signed in is the normal first state of the page, not an error.
pub async fn current(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    session::check_same_origin(request.method(), request.uri(), request.headers())?;
    let answer = match state.sessions.of(request.headers()) {
        Some(info) => {
            json!({"signedIn": true, "csrfToken": info.csrf_token, "expiresAt": info.expires_at})
        }
        None => json!({"signedIn": false}),
    };
    Ok(Json(answer).into_response())
}

/// `DELETE /api/ui/session` → 204: ends the session (it must pass the CSRF checks) and
/// clears the cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let (method, uri, headers) = (request.method(), request.uri(), request.headers());
    if !state
        .sessions
        .admits(method, uri, headers, SessionUse::Api)?
    {
        return Err(ApiError::unauthorized("not signed in"));
    }
    state.sessions.remove(headers);
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, session::clear_cookie())],
    )
        .into_response())
}
