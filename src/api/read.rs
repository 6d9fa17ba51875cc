//! The read API for displays and dashboards (SPEC §5): streams, items with cursor
//! paging, one item, deleting one (admin), a field's history, and Server-Sent Events
//! of changes.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::Stream;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{presented_token, AppState, QueryKey};
use crate::auth::KeyKind;
use crate::http::{ApiError, ClientAddr};
use crate::ingest::StreamChanges;
use crate::model::{Change, ChangeKind, Item, ReadKey, Snapshots, StreamName, UpsertMode, Write};
use crate::store::{Accepted, Store};
use crate::ui::SessionUse;

/// Items per page unless `limit` says otherwise (SPEC §5).
const DEFAULT_PAGE: usize = 100;
/// Largest page; larger `limit`s are clamped (SPEC §5).
const MAX_PAGE: usize = 1000;
/// Changes of its stream an SSE client reads from the log at once.
const SSE_BATCH: usize = 256;
/// Who wrote a change made through the read API (deleting an item).
const ADMIN_WRITER: &str = "admin";

/// Who is reading: the admin token (or a web UI session) reads everything, a read key
/// its streams.
pub enum Reader {
    /// The admin token.
    Admin,
    /// A read key.
    Key(ReadKey),
}

impl Reader {
    fn check(&self, stream: &str) -> Result<(), ApiError> {
        match self {
            Reader::Key(key) if !key.allows(stream) => Err(ApiError::forbidden(format!(
                "this read key may not read stream {stream:?}"
            ))),
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    /// A bearer token; a key in the query string is refused.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Reader::identify(parts, state, QueryKey::Refused)
    }
}

/// The reader of `GET /api/streams/{stream}/events`: a bearer token, or a read key as
/// `?key=` for browsers' EventSource, which cannot set headers, or the web UI's session
/// cookie from the UI's own pages.
pub struct EventsReader(Reader);

impl FromRequestParts<AppState> for EventsReader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Reader::identify(parts, state, QueryKey::ReadKey).map(EventsReader)
    }
}

impl Reader {
    fn identify(parts: &Parts, state: &AppState, query: QueryKey) -> Result<Self, ApiError> {
        let client = parts.extensions.get::<ClientAddr>().map(|c| c.0);
        let token = presented_token(&parts.uri, &parts.headers, query)?;
        let session_use = match query {
            QueryKey::Refused => SessionUse::Api,
            QueryKey::ReadKey => SessionUse::Events,
        };
        if token.is_none()
            && state
                .sessions
                .admits(&parts.method, &parts.uri, &parts.headers, session_use)?
        {
            return Ok(Reader::Admin);
        }
        let record = state.identify(client, token.as_deref())?;
        match record.kind {
            KeyKind::Admin => Ok(Reader::Admin),
            KeyKind::Read => state
                .store
                .read_key(&record.owner)?
                .map(Reader::Key)
                .ok_or_else(|| ApiError::unauthorized("this read key was revoked")),
            KeyKind::Ingest => Err(ApiError::forbidden(
                "an ingest key cannot read; use a read key",
            )),
        }
    }
}

/// `GET /api/streams` → `{"streams":[{"name","itemCount","updatedAt"}]}`.
pub async fn streams(
    State(state): State<AppState>,
    reader: Reader,
) -> Result<Json<Value>, ApiError> {
    let streams: Vec<Value> = state
        .store
        .streams()?
        .into_iter()
        .filter(|(name, _)| reader.check(name.as_str()).is_ok())
        .map(|(name, stats)| json!({"name": name, "itemCount": stats.item_count, "updatedAt": stats.updated_at}))
        .collect();
    Ok(Json(json!({"streams": streams})))
}

/// Query of the items listing.
#[derive(Debug, Deserialize)]
pub struct Page {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/streams/{stream}/items?limit=&cursor=` → `{"items","nextCursor"}`, in id
/// order; `nextCursor` is null on the last page.
pub async fn items(
    State(state): State<AppState>,
    reader: Reader,
    Path(stream): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    reader.check(&stream)?;
    known_stream(&state.store, &stream)?;
    let limit = page.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let after = page.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut items = state.store.items(&stream, after.as_deref(), limit + 1)?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items
            .last()
            .map(|item| URL_SAFE_NO_PAD.encode(item.id.as_bytes()))
    } else {
        None
    };
    let views: Vec<_> = items.iter().map(Item::view).collect();
    Ok(Json(json!({"items": views, "nextCursor": next})))
}

/// `GET /api/streams/{stream}/items/{id}` → the item.
pub async fn item(
    State(state): State<AppState>,
    reader: Reader,
    Path((stream, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    reader.check(&stream)?;
    let item = state
        .store
        .item(&stream, &id)?
        .ok_or_else(|| unknown_item(&stream, &id))?;
    Ok(Json(json!(item.view())))
}

/// Query of a field's history.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    field: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/streams/{stream}/items/{id}/history?field=&from=&to=&limit=&cursor=` →
/// `{"stream","itemId","field","points":[{"at","value"}],"nextCursor"}`: the field's
/// recorded values, oldest first, from `from` (default: as far back as the stream's
/// retention) through `to` (default: the newest). A stream with snapshots off answers
/// with what was recorded while they were on. A deleted item's history stays readable
/// until it ages out.
pub async fn history(
    State(state): State<AppState>,
    reader: Reader,
    Path((stream, id)): Path<(String, String)>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    reader.check(&stream)?;
    let field = (query.field.clone())
        .ok_or_else(|| ApiError::invalid_payload("field is required: ?field=<field name>"))?;
    let stats = state
        .store
        .stream(&stream)?
        .ok_or_else(|| unknown_stream(&stream))?;
    let Selection {
        range,
        after,
        limit,
    } = query.selection(&stats.snapshots)?;
    let store = state.store.clone();
    let (stream_name, item_id, field_name) = (stream.clone(), id.clone(), field.clone());
    let (known, page) = store
        .blocking(move |store| {
            let names = (stream_name.as_str(), item_id.as_str(), field_name.as_str());
            let known = store.item(names.0, names.1)?.is_some()
                || store.has_history(names.0, names.1, names.2)?;
            let page = store.history(names, range, after, limit)?;
            Ok((known, page))
        })
        .await?;
    if !known {
        return Err(unknown_item(&stream, &id));
    }
    let next = (page.points.last())
        .filter(|_| page.more)
        .map(|point| URL_SAFE_NO_PAD.encode(point.at.to_string()));
    Ok(Json(json!({
        "stream": stream,
        "itemId": id,
        "field": field,
        "points": page.points,
        "nextCursor": next,
    })))
}

/// The points a history request selects, its query checked.
struct Selection {
    /// From `from` (default: the start of the stream's retention) through `to` (`None`:
    /// the newest).
    range: (Timestamp, Option<Timestamp>),
    /// After the last point of the page before (the cursor).
    after: Option<Timestamp>,
    /// At most this many.
    limit: usize,
}

impl HistoryQuery {
    /// What this query selects of a stream with `snapshots`.
    fn selection(&self, snapshots: &Snapshots) -> Result<Selection, ApiError> {
        let time =
            |name, value: &Option<String>| value.as_deref().map(|t| timestamp(name, t)).transpose();
        let (from, to) = (time("from", &self.from)?, time("to", &self.to)?);
        if from.zip(to).is_some_and(|(from, to)| to < from) {
            return Err(ApiError::invalid_payload("from is later than to"));
        }
        let from = from.unwrap_or_else(|| snapshots.kept_since(Timestamp::now()));
        let after = self
            .cursor
            .as_deref()
            .map(|c| decode_cursor(c).and_then(|t| timestamp("cursor", &t)))
            .transpose()?;
        Ok(Selection {
            range: (from, to),
            after,
            limit: self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE),
        })
    }
}

/// A query parameter's RFC 3339 time, or a 400 naming it.
fn timestamp(name: &str, value: &str) -> Result<Timestamp, ApiError> {
    value.parse().map_err(|_| {
        ApiError::invalid_payload(format!(
            "{name} is not an RFC 3339 time (e.g. 2026-12-05T08:00:00Z)"
        ))
    })
}

/// `DELETE /api/streams/{stream}/items/{id}` (admin token) → 204 once the deletion is
/// applied, in order with the stream's other writes.
pub async fn delete_item(
    State(state): State<AppState>,
    reader: Reader,
    Path((stream, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !matches!(reader, Reader::Admin) {
        return Err(ApiError::forbidden("deleting items needs the admin token"));
    }
    if state.store.item(&stream, &id)?.is_none() {
        return Err(unknown_item(&stream, &id));
    }
    let stream_name = StreamName::try_from(stream.clone())?;
    let write = Write {
        stream: stream_name,
        connector_id: ADMIN_WRITER.to_owned(),
        mode: UpsertMode::Merge,
        upserts: Vec::new(),
        deletes: vec![id],
        deletes_own_only: false,
        accepted_at: Timestamp::now(),
    };
    let seq = state
        .ingest
        .submit(Accepted {
            write,
            idempotency: None,
        })
        .await?;
    state.ingest.applied(seq).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/streams/{stream}/events`: Server-Sent Events of the stream's changes.
/// `Last-Event-ID` resumes without gaps while the change log still holds that id;
/// otherwise the stream opens with `event: reset` and the client reloads.
pub async fn events(
    State(state): State<AppState>,
    EventsReader(reader): EventsReader,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    reader.check(&stream)?;
    let (start, reset) = resume_point(&state.store, LastEventId::of(&headers))?;
    let follower = Follower {
        store: state.store.clone(),
        changes: state.ingest.changes(&stream),
        shutdown: state.shutdown.clone(),
        stream,
        last_seq: start,
        queued: VecDeque::new(),
        reset,
    };
    let events = futures_util::stream::unfold(follower, |mut follower| async move {
        follower.next().await.map(|event| (Ok(event), follower))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// What an SSE client's `Last-Event-ID` header asks for.
enum LastEventId {
    /// No header (or an empty one): a new client, from now on.
    Absent,
    /// Resume after this change.
    Seq(u64),
    /// Not an id this server gives out: the client's view cannot be resumed.
    Unknown,
}

impl LastEventId {
    fn of(headers: &HeaderMap) -> LastEventId {
        match headers
            .get("last-event-id")
            .map(|v| v.to_str().map(str::trim))
        {
            None | Some(Ok("")) => LastEventId::Absent,
            Some(Ok(id)) => id.parse().map_or(LastEventId::Unknown, LastEventId::Seq),
            Some(Err(_)) => LastEventId::Unknown,
        }
    }
}

/// Where an SSE client starts in the change log, and whether it must reload first:
/// after `Last-Event-ID` while the log still holds every change since, else (no id, an
/// id the log no longer covers, or one this server never gave) after the last change.
fn resume_point(store: &Store, last_event_id: LastEventId) -> Result<(u64, bool), ApiError> {
    let current = store.last_change_seq()?;
    Ok(match last_event_id {
        LastEventId::Absent => (current, false),
        LastEventId::Seq(id) if id <= current && id >= store.changes_kept_after()? => (id, false),
        LastEventId::Seq(_) | LastEventId::Unknown => (current, true),
    })
}

/// One SSE client's position in its stream's change log.
struct Follower {
    store: Store,
    changes: StreamChanges,
    shutdown: CancellationToken,
    stream: String,
    last_seq: u64,
    queued: VecDeque<Change>,
    reset: bool,
}

impl Follower {
    /// The next event for this client; `None` ends the stream (shutdown, or the store
    /// failing).
    async fn next(&mut self) -> Option<Event> {
        if std::mem::take(&mut self.reset) {
            return Some(Event::default().event("reset").data("{}"));
        }
        loop {
            if let Some(change) = self.queued.pop_front() {
                return Some(event_of(&change));
            }
            self.changes.mark_seen();
            let store = self.store.clone();
            let stream = self.stream.clone();
            let after = self.last_seq;
            let read = tokio::task::spawn_blocking(move || {
                store.stream_changes_after(&stream, after, SSE_BATCH)
            })
            .await;
            let batch = match read {
                Ok(Ok(batch)) => batch,
                Ok(Err(error)) => {
                    tracing::error!(%error, "reading the change log for SSE failed");
                    return None;
                }
                Err(_) => return None,
            };
            if let Some(last) = batch.last() {
                self.last_seq = last.seq;
                self.queued.extend(batch);
                continue;
            }
            tokio::select! {
                () = self.changes.changed() => {}
                () = self.shutdown.cancelled() => return None,
            };
        }
    }
}

fn event_of(change: &Change) -> Event {
    let mut data =
        json!({"stream": change.stream, "itemId": change.item_id, "version": change.version});
    if change.kind != ChangeKind::Deleted {
        data["fields"] = json!(change.fields);
    }
    Event::default()
        .id(change.seq.to_string())
        .event(change.kind.as_str())
        .data(data.to_string())
}

fn known_stream(store: &Store, stream: &str) -> Result<(), ApiError> {
    match store.stream(stream)? {
        Some(_) => Ok(()),
        None => Err(unknown_stream(stream)),
    }
}

/// The 404 of a stream that never had items.
pub fn unknown_stream(stream: &str) -> ApiError {
    ApiError::not_found(format!("no stream {stream:?}"))
}

fn unknown_item(stream: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("no item {id:?} in stream {stream:?}"))
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| ApiError::invalid_payload("cursor is not one this server gave out"))
}
