//! Snapshots and field history through the real binary (SPEC §5): the per-stream switch
//! and its retention over the admin API and the CLI, points recorded for each change
//! of a field while it is on and read back in order with from/to and paging, when each
//! field last changed on every item, the background sweep bounding the points by age
//! and per field, and history surviving a restart, a kill -9 replay and a backup.

mod common;

use std::time::Duration;

use common::{
    assert_error, create_connector, eventually, get_item, issue_read_key, item_path, push_ok, run,
    wait_for_item, webhook, Options, TestServer, EVENTUALLY,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const STREAM: &str = "sensors";

/// A webhook connector of [`STREAM`] keyed by `id`; its ingest key.
async fn connector(server: &TestServer) -> String {
    let doc = json!({"name": "Sensors", "type": "webhook", "stream": STREAM, "itemKey": "id"});
    create_connector(server, &doc).await.1
}

/// Pushes `body` and waits until item `id` shows `field` = `value`.
async fn push_applied(server: &TestServer, key: &str, body: Value, field: &str) {
    push_ok(server, STREAM, key, &body).await;
    let (id, value) = (body["id"].as_str().expect("id"), body[field].clone());
    wait_for_item(server, STREAM, id, |item| item["fields"][field] == value).await;
}

/// `PATCH /api/admin/streams/{stream}` with `{"snapshots": snapshots}`.
async fn set_snapshots(server: &TestServer, stream: &str, snapshots: Value) -> (StatusCode, Value) {
    let answer = server
        .admin(
            Method::PATCH,
            &format!("/api/admin/streams/{stream}"),
            Some(&json!({ "snapshots": snapshots })),
        )
        .await;
    (answer.status, answer.body)
}

/// `GET` of item `id`'s history with `query` (after `?`), asserting 200.
async fn history(server: &TestServer, id: &str, query: &str) -> Value {
    let path = format!("{}/history?{query}", item_path(STREAM, id));
    let answer = server.admin(Method::GET, &path, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    answer.body
}

/// The values of the points of `field` of item `id`, oldest first, all pages.
async fn values(server: &TestServer, id: &str, field: &str) -> Vec<Value> {
    points(server, id, &format!("field={field}"))
        .await
        .into_iter()
        .map(|point| point["value"].clone())
        .collect()
}

/// Every point of the history `query` selects, following `nextCursor` a page of 2 at a
/// time so that paging is exercised too.
async fn points(server: &TestServer, id: &str, query: &str) -> Vec<Value> {
    let mut found = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = history(server, id, &format!("{query}&limit=2{cursor}")).await;
        found.extend(page["points"].as_array().expect("points").iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return found,
        }
    }
}

#[tokio::test]
async fn the_switch_records_each_change_of_a_field_and_the_history_reads_back_in_order() {
    let server = TestServer::start().await;
    let key = connector(&server).await;
    let missing = server
        .admin(Method::GET, "/api/admin/streams/nothing", None)
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "NOT_FOUND");
    push_applied(
        &server,
        &key,
        json!({"id": "t1", "temp": 20, "room": "lab"}),
        "temp",
    )
    .await;

    let shown = server
        .admin(Method::GET, &format!("/api/admin/streams/{STREAM}"), None)
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert_eq!(shown.body["stream"]["name"], STREAM);
    assert_eq!(shown.body["stream"]["itemCount"], 1);
    assert!(shown.body["stream"]["updatedAt"].is_string());
    assert_eq!(
        shown.body["stream"]["snapshots"],
        json!({"enabled": false, "retentionDays": 30}),
        "off by default"
    );
    for bad in [
        json!({"retentionDays": 0}),
        json!({"retentionDays": 3651}),
        json!({"enabled": "yes"}),
        json!({"surprise": true}),
    ] {
        let (status, body) = set_snapshots(&server, STREAM, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "INVALID_PAYLOAD");
    }
    let (status, _) = set_snapshots(&server, "nothing", json!({"enabled": true})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        values(&server, "t1", "temp").await.is_empty(),
        "nothing recorded while off"
    );

    let (status, body) = set_snapshots(
        &server,
        STREAM,
        json!({"enabled": true, "retentionDays": 7}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["stream"]["snapshots"],
        json!({"enabled": true, "retentionDays": 7})
    );
    assert_eq!(body["stream"]["itemCount"], 1);
    for temp in [21, 22, 23] {
        push_applied(
            &server,
            &key,
            json!({"id": "t1", "temp": temp, "room": "lab"}),
            "temp",
        )
        .await;
    }
    assert_eq!(
        values(&server, "t1", "temp").await,
        [json!(21), json!(22), json!(23)]
    );
    assert!(
        values(&server, "t1", "room").await.is_empty(),
        "a field that did not change records nothing"
    );

    let page = history(&server, "t1", "field=temp").await;
    assert_eq!(page["stream"], STREAM);
    assert_eq!(page["itemId"], "t1");
    assert_eq!(page["field"], "temp");
    assert_eq!(page["nextCursor"], Value::Null);
    let times: Vec<&str> = page["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["at"].as_str().expect("at"))
        .collect();
    assert!(
        times.iter().all(|t| common::is_utc_timestamp(t)),
        "{times:?}"
    );
    let item = get_item(&server, STREAM, "t1").await.expect("item");
    assert_eq!(item["updatedAt"], times[2], "a point's time is its write's");

    // from/to select by time, both ends included.
    let from_second = format!("field=temp&from={}", times[1]);
    assert_eq!(points(&server, "t1", &from_second).await.len(), 2);
    let through_second = format!("field=temp&from={}&to={}", times[0], times[1]);
    let selected = points(&server, "t1", &through_second).await;
    assert_eq!(selected, page["points"].as_array().expect("points")[..2]);

    let path = format!("{}/history", item_path(STREAM, "t1"));
    let no_field = server.admin(Method::GET, &path, None).await;
    assert_error(&no_field, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
    let bad_time = server
        .admin(
            Method::GET,
            &format!("{path}?field=temp&from=yesterday"),
            None,
        )
        .await;
    assert_error(&bad_time, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
    let backwards = format!("{path}?field=temp&from={}&to={}", times[1], times[0]);
    let backwards = server.admin(Method::GET, &backwards, None).await;
    assert_error(&backwards, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD");
    let long_ago = history(&server, "t1", "field=temp&to=2000-01-01T00:00:00Z").await;
    assert_eq!(
        long_ago["points"],
        json!([]),
        "before the retention: nothing"
    );
    let unknown_item = format!("{}/history?field=temp", item_path(STREAM, "t9"));
    let unknown = server.admin(Method::GET, &unknown_item, None).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "NOT_FOUND");
    let unknown_stream = server
        .admin(
            Method::GET,
            "/api/streams/nothing/items/t1/history?field=temp",
            None,
        )
        .await;
    assert_error(&unknown_stream, StatusCode::NOT_FOUND, "NOT_FOUND");

    // Off again: nothing more is recorded, and what was stays readable.
    let (status, _) = set_snapshots(&server, STREAM, json!({"enabled": false})).await;
    assert_eq!(status, StatusCode::OK);
    push_applied(
        &server,
        &key,
        json!({"id": "t1", "temp": 24, "room": "lab"}),
        "temp",
    )
    .await;
    assert_eq!(
        values(&server, "t1", "temp").await,
        [json!(21), json!(22), json!(23)]
    );
    let shown = server
        .admin(Method::GET, &format!("/api/admin/streams/{STREAM}"), None)
        .await;
    assert_eq!(
        shown.body["stream"]["snapshots"],
        json!({"enabled": false, "retentionDays": 7}),
        "a patch changes only what it names"
    );
}

#[tokio::test]
async fn fields_changed_at_moves_only_for_the_fields_that_changed() {
    let server = TestServer::start().await;
    let key = connector(&server).await;
    push_applied(&server, &key, json!({"id": "m", "a": 1, "b": 1}), "a").await;
    let first = get_item(&server, STREAM, "m").await.expect("item");
    let created = first["updatedAt"].clone();
    assert_eq!(
        first["fieldsChangedAt"],
        json!({"a": created, "b": created, "id": created})
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    push_applied(
        &server,
        &key,
        json!({"id": "m", "a": 1, "b": 2, "c": 3}),
        "b",
    )
    .await;
    let second = get_item(&server, STREAM, "m").await.expect("item");
    let changed = second["updatedAt"].clone();
    assert_ne!(changed, created);
    assert_eq!(
        second["fieldsChangedAt"],
        json!({"a": created, "b": changed, "c": changed, "id": created})
    );
    let listed = server
        .admin(Method::GET, &format!("/api/streams/{STREAM}/items"), None)
        .await;
    assert_eq!(
        listed.body["items"][0], second,
        "the list shows the same item"
    );
}

#[tokio::test]
async fn the_cli_shows_and_sets_the_switch() {
    let server = TestServer::start().await;
    let key = connector(&server).await;
    push_applied(&server, &key, json!({"id": "c", "v": 1}), "v").await;
    let shown = server.cli(&["stream", "snapshots", STREAM], None);
    assert!(shown.status.success(), "{shown:?}");
    assert_eq!(
        String::from_utf8_lossy(&shown.stdout).trim(),
        format!("stream {STREAM}: snapshots off, kept 30 days")
    );
    let set = server.cli(
        &[
            "--json",
            "stream",
            "snapshots",
            STREAM,
            "--on",
            "--retention-days",
            "90",
        ],
        None,
    );
    assert!(set.status.success(), "{set:?}");
    let answer: Value = serde_json::from_slice(&set.stdout).expect("json");
    assert_eq!(
        answer["stream"]["snapshots"],
        json!({"enabled": true, "retentionDays": 90})
    );
    push_applied(&server, &key, json!({"id": "c", "v": 2}), "v").await;
    assert_eq!(values(&server, "c", "v").await, [json!(2)]);

    let missing = server.cli(&["stream", "snapshots", "nothing", "--off"], None);
    assert_eq!(missing.status.code(), Some(3), "{missing:?}");
    let bad = server.cli(
        &["stream", "snapshots", STREAM, "--retention-days", "0"],
        None,
    );
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    let both = server.cli(&["stream", "snapshots", STREAM, "--on", "--off"], None);
    assert_eq!(both.status.code(), Some(2), "{both:?}");
}

#[tokio::test]
async fn the_sweep_bounds_points_per_field_and_by_age_and_history_survives_restarts() {
    let mut server = TestServer::start().await;
    let key = connector(&server).await;
    push_applied(&server, &key, json!({"id": "h", "v": 0}), "v").await;
    let (status, _) = set_snapshots(&server, STREAM, json!({"enabled": true})).await;
    assert_eq!(status, StatusCode::OK);
    let batch: Vec<Value> = (1..=12).map(|v| json!({"id": "h", "v": v})).collect();
    for one in batch {
        push_applied(&server, &key, one, "v").await;
    }
    assert_eq!(values(&server, "h", "v").await.len(), 12);

    // A restart keeps the history; with the cap at 5 its sweep, which starts at once,
    // keeps the newest 5.
    server
        .restart_with(&[("FAILPOINTS", "history::points_per_field=return(5)")])
        .await;
    let kept = eventually(EVENTUALLY, "the cap to be applied", async || {
        let kept = values(&server, "h", "v").await;
        (kept.len() == 5).then_some(kept)
    })
    .await;
    assert_eq!(kept, (8..=12).map(|v| json!(v)).collect::<Vec<_>>());

    // 31 days on, every point is past the 30 days' retention.
    server
        .restart_with(&[("FAILPOINTS", "retention::days_ahead=return(31)")])
        .await;
    eventually(EVENTUALLY, "old points to be swept", async || {
        values(&server, "h", "v").await.is_empty().then_some(())
    })
    .await;
    let item = get_item(&server, STREAM, "h")
        .await
        .expect("the item stays");
    assert_eq!(item["fields"]["v"], 12);
}

#[tokio::test]
async fn a_replay_after_kill_9_records_each_change_once_and_a_backup_carries_history() {
    // The applier's first three passes apply (an item, then two changes); the fourth
    // waits 300 ms while more changes are acknowledged, then the process ends.
    let mut server = TestServer::start_with(Options {
        env: vec![(
            "FAILPOINTS".into(),
            "applier::before_apply=3*off->return(300)".into(),
        )],
        ..Options::default()
    })
    .await;
    let key = connector(&server).await;
    push_applied(&server, &key, json!({"id": "r", "v": 0}), "v").await;
    let (status, _) = set_snapshots(&server, STREAM, json!({"enabled": true})).await;
    assert_eq!(status, StatusCode::OK);
    push_applied(&server, &key, json!({"id": "r", "v": 1}), "v").await;
    push_applied(&server, &key, json!({"id": "r", "v": 2}), "v").await;
    let mut acknowledged = 2;
    for v in 3..200 {
        let body = json!({"id": "r", "v": v});
        let sent = webhook(&server, STREAM, &key).json(&body).send().await;
        if !sent.is_ok_and(|answer| answer.status() == StatusCode::ACCEPTED) {
            break;
        }
        acknowledged = v;
    }
    assert!(
        acknowledged > 2,
        "changes were acknowledged before the crash"
    );
    let status = server.exited().await;
    assert!(!status.success(), "the fail point ended it: {status}");
    server.relaunch_without(&["FAILPOINTS"]).await;
    let recorded = eventually(EVENTUALLY, "the replay", async || {
        let item = get_item(&server, STREAM, "r").await?;
        let last = item["fields"]["v"]
            .as_i64()
            .filter(|v| *v >= acknowledged)?;
        Some((last, values(&server, "r", "v").await))
    })
    .await;
    let (last, recorded) = recorded;
    assert_eq!(
        recorded,
        (1..=last).map(|v| json!(v)).collect::<Vec<_>>(),
        "each change once, in order"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("backup.dpbak");
    let backup = server.cli(&["backup", "--out", file.to_str().expect("utf-8")], None);
    assert!(backup.status.success(), "{backup:?}");
    let restored_dir = dir.path().join("restored");
    let restored = run(
        &[
            "restore",
            file.to_str().expect("utf-8"),
            "--data-dir",
            restored_dir.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(restored.status.success(), "{restored:?}");
    let copy = TestServer::start_with(Options {
        data_dir: Some(restored_dir),
        ..Options::default()
    })
    .await;
    assert_eq!(values(&copy, "r", "v").await, recorded);
    let shown = copy
        .admin(Method::GET, &format!("/api/admin/streams/{STREAM}"), None)
        .await;
    assert_eq!(shown.body["stream"]["snapshots"]["enabled"], true);
}

#[tokio::test]
async fn a_read_key_reads_the_history_of_its_streams_only() {
    let server = TestServer::start().await;
    let key = connector(&server).await;
    push_applied(&server, &key, json!({"id": "k", "v": 1}), "v").await;
    let (_, mine) = issue_read_key(&server, &json!({"name": "wall", "streams": [STREAM]})).await;
    let (_, other) = issue_read_key(&server, &json!({"name": "other", "streams": ["else"]})).await;
    let path = format!("{}/history?field=v", item_path(STREAM, "k"));
    let allowed = server.call(Method::GET, &path, Some(&mine), None).await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.body);
    let refused = server.call(Method::GET, &path, Some(&other), None).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "FORBIDDEN");
    let admin_route = server
        .call(
            Method::GET,
            &format!("/api/admin/streams/{STREAM}"),
            Some(&mine),
            None,
        )
        .await;
    assert_eq!(admin_route.status, StatusCode::FORBIDDEN);
}
