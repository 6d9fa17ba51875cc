//! Web UI sessions: signing in with the admin token gives the browser an HttpOnly,
//! Secure, SameSite=Strict cookie naming a session held here in memory, so the token
//! itself never sits in the page. The cookie alone proves nothing: a request must also
//! come from the UI's own origin and, except for the event stream EventSource opens,
//! carry the session's CSRF token in [`CSRF_HEADER`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::ApiError;
use crate::ids::random_hex;

/// The session cookie. The `__Host-` prefix makes browsers keep it only when it is
/// Secure, for `Path=/` and without a `Domain`: no sibling host can set or shadow it.
pub const COOKIE: &str = "__Host-datapool-session";
/// The header a UI request carries its session's CSRF token in; a cross-site page can
/// neither read the token nor set a custom header on a cross-origin request.
pub const CSRF_HEADER: &str = "x-datapool-csrf";
/// How long a session lasts from sign-in: one working day, after which the operator
/// signs in again. Not extended by use, so a stolen cookie expires on schedule.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions held at once; past it the oldest is dropped, so repeated sign-ins cannot
/// grow memory without bound. Far more than the operators of one box.
const MAX_SESSIONS: usize = 1024;

/// What a session gives the page after sign-in: its CSRF token and when it ends.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// The value the page sends in [`CSRF_HEADER`].
    pub csrf_token: String,
    /// When the session ends (RFC 3339 UTC).
    pub expires_at: Timestamp,
}

/// A signed-in browser.
#[derive(Clone, Debug)]
struct Session {
    /// The CSRF token the session's requests must carry.
    csrf: String,
    /// When it was created.
    created: Instant,
    /// The same moment as wall-clock time, for [`SessionInfo::expires_at`].
    expires_at: Timestamp,
}

/// How a request uses its session, which decides the CSRF defence it must show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionUse {
    /// A `fetch` from the UI: the CSRF header, plus same-origin checks on changes.
    Api,
    /// EventSource on `GET …/events`, which cannot set headers: the browser's own
    /// `Sec-Fetch-Site: same-origin` must be there instead.
    Events,
}

/// The sessions of this process, keyed by the SHA-256 of their ids: the map holds no
/// usable id, and finding one by its hash does not leak, through timing, how much of a
/// guessed id was right. A restart signs everyone out.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// Starts a session; its id (for the cookie) and what the page may know of it.
    pub fn create(&self) -> (String, SessionInfo) {
        let id = random_hex::<32>();
        let session = Session {
            csrf: random_hex::<32>(),
            created: Instant::now(),
            expires_at: Timestamp::now()
                .saturating_add(SESSION_LIFETIME)
                .unwrap_or(Timestamp::MAX),
        };
        let info = session.info();
        let mut sessions = self.lock();
        sessions.retain(|_, s| !s.expired());
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(digest(&id), session);
        (id, info)
    }

    /// The live session a request's cookie names, if any.
    pub fn of(&self, headers: &HeaderMap) -> Option<SessionInfo> {
        self.find(headers).map(|s| s.info())
    }

    /// Ends the session a request's cookie names.
    pub fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.lock().remove(&digest(id));
        }
    }

    /// Whether a request without a bearer token is admitted by its session cookie:
    /// `Ok(false)` when it has none (the caller asks for a token instead), 401 for an
    /// unknown or expired session, 403 when the request fails the CSRF defence of `used`.
    pub fn admits(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        used: SessionUse,
    ) -> Result<bool, ApiError> {
        if cookie(headers).is_none() {
            return Ok(false);
        }
        let session = self
            .find(headers)
            .ok_or_else(|| ApiError::unauthorized("the session has ended; sign in again"))?;
        check_same_origin(method, uri, headers)?;
        match used {
            SessionUse::Api => check_csrf_token(headers, &session.csrf)?,
            SessionUse::Events => {
                if fetch_site(headers) != Some("same-origin") {
                    return Err(ApiError::forbidden(
                        "a session may follow events only from the UI's own pages",
                    ));
                }
            }
        }
        Ok(true)
    }

    fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers)?;
        let sessions = self.lock();
        sessions.get(&digest(id)).filter(|s| !s.expired()).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Session {
    fn expired(&self) -> bool {
        self.created.elapsed() >= SESSION_LIFETIME
    }

    fn info(&self) -> SessionInfo {
        SessionInfo {
            csrf_token: self.csrf.clone(),
            expires_at: self.expires_at,
        }
    }
}

/// The `Set-Cookie` value that gives the browser session `id`.
pub fn set_cookie(id: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    ))
    .ok()
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-datapool-session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0",
    )
}

/// Refuses a state-changing request that a browser says comes from another site or
/// origin: `Sec-Fetch-Site` must be `same-origin` and `Origin` must name this host,
/// where the browser sends them.
pub fn check_same_origin(method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    let site = fetch_site(headers);
    if site.is_some_and(|site| site != "same-origin" && site != "none") {
        return Err(ApiError::forbidden(
            "this request comes from another site; use the UI's own pages",
        ));
    }
    if method.is_safe() {
        return Ok(());
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, host)| host);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    match (origin_host, host) {
        (Some(origin), Some(host)) if origin.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(ApiError::forbidden(
            "this request's Origin is not this server; use the UI's own pages",
        )),
    }
}

fn check_csrf_token(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let presented = headers
        .get(CSRF_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if bool::from(presented.ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "a session request must carry its CSRF token (X-Datapool-CSRF)",
        ))
    }
}

fn fetch_site(headers: &HeaderMap) -> Option<&str> {
    headers.get("sec-fetch-site")?.to_str().ok()
}

/// The session id in a request's `Cookie` headers.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, id)| id)
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cookie: Option<&str>, extra: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("box:8443"));
        if let Some(id) = cookie {
            let value = format!("other=1; {COOKIE}={id}");
            headers.insert(
                header::COOKIE,
                HeaderValue::from_str(&value).expect("ascii"),
            );
        }
        for (name, value) in extra {
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("ascii"),
            );
        }
        headers
    }

    #[test]
    fn a_session_admits_only_requests_with_its_csrf_token_from_its_origin() {
        let sessions = Sessions::default();
        let (id, info) = sessions.create();
        let uri = Uri::from_static("/api/admin/connectors");
        let post = Method::POST;
        let good = request(
            Some(&id),
            &[
                (CSRF_HEADER, &info.csrf_token),
                ("origin", "https://box:8443"),
                ("sec-fetch-site", "same-origin"),
            ],
        );
        assert!(sessions
            .admits(&post, &uri, &good, SessionUse::Api)
            .expect("admitted"));
        let no_token = request(Some(&id), &[("origin", "https://box:8443")]);
        assert!(sessions
            .admits(&post, &uri, &no_token, SessionUse::Api)
            .is_err());
        let other_origin = request(
            Some(&id),
            &[
                (CSRF_HEADER, &info.csrf_token),
                ("origin", "https://evil:8443"),
            ],
        );
        assert!(sessions
            .admits(&post, &uri, &other_origin, SessionUse::Api)
            .is_err());
        let cross_site = request(
            Some(&id),
            &[
                (CSRF_HEADER, &info.csrf_token),
                ("sec-fetch-site", "cross-site"),
            ],
        );
        assert!(sessions
            .admits(&Method::GET, &uri, &cross_site, SessionUse::Api)
            .is_err());
        let no_cookie = request(None, &[]);
        assert!(!sessions
            .admits(&post, &uri, &no_cookie, SessionUse::Api)
            .expect("no session"));
        let unknown = request(Some("feed"), &[(CSRF_HEADER, &info.csrf_token)]);
        assert!(sessions
            .admits(&post, &uri, &unknown, SessionUse::Api)
            .is_err());
    }

    #[test]
    fn events_need_the_browsers_same_origin_mark_and_signing_out_ends_the_session() {
        let sessions = Sessions::default();
        let (id, _) = sessions.create();
        let uri = Uri::from_static("/api/streams/s/events");
        let get = Method::GET;
        let same = request(Some(&id), &[("sec-fetch-site", "same-origin")]);
        assert!(sessions
            .admits(&get, &uri, &same, SessionUse::Events)
            .expect("admitted"));
        let unmarked = request(Some(&id), &[]);
        assert!(sessions
            .admits(&get, &uri, &unmarked, SessionUse::Events)
            .is_err());
        sessions.remove(&same);
        assert!(sessions.of(&same).is_none());
        assert!(sessions
            .admits(&get, &uri, &same, SessionUse::Events)
            .is_err());
    }

    #[test]
    fn sessions_stay_bounded() {
        let sessions = Sessions::default();
        for _ in 0..MAX_SESSIONS + 10 {
            sessions.create();
        }
        assert_eq!(sessions.lock().len(), MAX_SESSIONS);
    }
}
