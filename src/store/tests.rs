use serde_json::json;

use super::*;
use crate::auth::{Credential, KeyKind};
use crate::model::{ConnectorSpec, EventCode};

fn connector(name: &str) -> Connector {
    let spec = ConnectorSpec::from_json(json!({"name": name, "type": "webhook", "stream": "sales",
        "signing": {"scheme": "inspire", "secret": "very-secret-signing-key"}}))
    .expect("valid");
    Connector::new(spec, None, jiff::Timestamp::now())
}

fn with_key(mut c: Connector) -> (Connector, KeyRecord) {
    let key = Credential::generate(KeyKind::Ingest).record(&c.id, jiff::Timestamp::now());
    c.key_id = Some(key.key_id.clone());
    (c, key)
}

#[test]
fn connectors_round_trip_and_names_stay_unique_without_case() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let (sales, key) = with_key(connector("Sales"));
    store.create_connector(&sales, Some(&key)).expect("create");
    assert_eq!(
        store.connector(&sales.id).expect("get"),
        Some(sales.clone())
    );
    assert_eq!(store.key(&key.key_id).expect("key"), Some(key));
    assert!(matches!(
        store.create_connector(&connector("sales"), None),
        Err(StoreError::NameTaken("connector", _))
    ));

    let renamed = sales.changed(jiff::Timestamp::now(), |s| s.name = "Revenue".into());
    store.update_connector(&renamed, None).expect("rename");
    store
        .create_connector(&connector("SALES"), None)
        .expect("the old name is free again");
    assert_eq!(store.connectors().expect("list").len(), 2);
}

#[test]
fn a_stale_revision_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let c = connector("A");
    store.create_connector(&c, None).expect("create");
    let first = c.changed(jiff::Timestamp::now(), |s| s.enabled = false);
    let second = c.changed(jiff::Timestamp::now(), |s| s.name = "B".into());
    store.update_connector(&first, None).expect("first update");
    assert!(matches!(
        store.update_connector(&second, None),
        Err(StoreError::Changed)
    ));
    assert_eq!(store.connector(&c.id).expect("get"), Some(first));
}

#[test]
fn rotating_and_deleting_remove_the_old_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let (c, old) = with_key(connector("A"));
    store.create_connector(&c, Some(&old)).expect("create");
    let (rotated, new) = with_key(c.changed(jiff::Timestamp::now(), |_| {}));
    store
        .update_connector(&rotated, Some(&new))
        .expect("rotate");
    assert_eq!(store.key(&old.key_id).expect("lookup"), None);
    assert_eq!(store.key(&new.key_id).expect("lookup"), Some(new.clone()));
    store.delete_connector(&c.id).expect("delete");
    assert_eq!(store.key(&new.key_id).expect("lookup"), None);
    assert_eq!(store.connector(&c.id).expect("get"), None);
    assert!(matches!(
        store.delete_connector(&c.id),
        Err(StoreError::NotFound)
    ));
}

#[test]
fn a_second_open_of_the_same_dir_fails_fast() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _first = Store::open(dir.path()).expect("open");
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::Locked { .. })
    ));
}

#[test]
fn a_newer_schema_is_refused_and_the_data_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = Store::open(dir.path()).expect("open");
        store
            .inner
            .meta
            .insert(SCHEMA_VERSION_KEY, &(SCHEMA_VERSION + 1).to_be_bytes())
            .expect("write");
        store.inner.db.flush().expect("flush");
    }
    let err = Store::open(dir.path()).err().expect("refused");
    assert!(
        matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
}

#[test]
fn the_admin_key_is_replaced_atomically() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    assert_eq!(store.admin_key_id().expect("meta"), None);
    let first = Credential::generate(KeyKind::Admin).record("admin", jiff::Timestamp::now());
    store.set_admin_key(&first).expect("set");
    let second = Credential::generate(KeyKind::Admin).record("admin", jiff::Timestamp::now());
    store.set_admin_key(&second).expect("replace");
    assert_eq!(
        store.admin_key_id().expect("meta"),
        Some(second.key_id.clone())
    );
    assert_eq!(store.key(&first.key_id).expect("lookup"), None);
}

#[test]
fn connector_logs_page_newest_first_and_old_entries_are_swept() {
    use crate::model::{LogEntry, LogLevel};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let at = |s: i64| jiff::Timestamp::from_second(1_700_000_000 + s).expect("valid time");
    let entry = |s: i64| LogEntry {
        at: at(s),
        level: LogLevel::Info,
        event: "push".into(),
        message: format!("at {s}"),
        items: None,
        count: None,
        duration_ms: None,
    };
    let entries: Vec<(String, LogEntry)> = (0..5).map(|s| ("c_1".to_owned(), entry(s))).collect();
    store.append_logs(&entries).expect("append");
    store
        .append_logs(&[("c_2".to_owned(), entry(0))])
        .expect("append");

    let (first, next) = store.logs("c_1", None, 2).expect("page");
    assert_eq!(
        first.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["at 4", "at 3"]
    );
    let (second, next) = store.logs("c_1", next.as_deref(), 2).expect("page");
    assert_eq!(
        second
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>(),
        ["at 2", "at 1"]
    );
    let (last, next) = store.logs("c_1", next.as_deref(), 2).expect("page");
    assert_eq!((last.len(), next), (1, None));

    assert_eq!(
        store.sweep_logs(at(2), &[], usize::MAX).expect("sweep"),
        SweepStep {
            removed: 3,
            next: None
        },
        "c_1 at 0 and 1, c_2 at 0"
    );
    let (kept, _) = store.logs("c_1", None, 10).expect("page");
    assert_eq!(
        kept.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["at 4", "at 3", "at 2"]
    );
    assert!(store.logs("c_2", None, 10).expect("page").0.is_empty());
}

/// A journal record of `connector` upserting `ids` into `stream`, each with the fields
/// `{"by": connector, "pad": <pad bytes>}`.
fn upserting(stream: &str, connector: &str, ids: &[&str], pad: usize) -> Accepted {
    let fields = json!({"by": connector, "pad": "p".repeat(pad)})
        .as_object()
        .cloned()
        .unwrap_or_default();
    let upserts = ids
        .iter()
        .map(|id| crate::model::Upsert {
            id: (*id).into(),
            fields: fields.clone(),
        })
        .collect();
    Accepted::for_test(stream, connector, upserts, Vec::new())
}

#[test]
fn the_change_log_reads_back_from_any_point_whatever_its_grouping() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let ids: Vec<String> = (0..300).map(|n| format!("i{n}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    // 300 changes of ~500 bytes: several entries of the change log, one of them a
    // change far bigger than an entry; another stream's changes in between.
    store
        .apply(&[
            (1, upserting("sales", "c_a", &ids[..150], 500)),
            (2, upserting("stock", "c_s", &ids[..10], 10)),
            (3, upserting("sales", "c_a", &ids[150..299], 500)),
        ])
        .expect("apply");
    store
        .apply(&[(4, upserting("sales", "c_b", &ids[299..], 64 * 1024))])
        .expect("apply");
    assert!(
        store.inner.stream_changes.len() > 4,
        "the changes are grouped"
    );
    assert_eq!(store.last_change_seq().expect("seq"), 310);
    let sales: Vec<u64> = (1..=150).chain(161..=310).collect();
    for after in [0, 1, 31, 32, 33, 150, 155, 160, 298, 299, 309, 310] {
        let seqs: Vec<u64> = store
            .stream_changes_after("sales", after, 1000)
            .expect("read")
            .iter()
            .map(|c| c.seq)
            .collect();
        let expected: Vec<u64> = sales.iter().copied().filter(|s| *s > after).collect();
        assert_eq!(seqs, expected, "after {after}");
        let page = store.stream_changes_after("sales", after, 7).expect("read");
        assert_eq!(page.len(), 7.min(expected.len()), "after {after}");
    }
    let stock = store.stream_changes_after("stock", 0, 1000).expect("read");
    assert_eq!(
        stock.iter().map(|c| c.seq).collect::<Vec<_>>(),
        (151..=160).collect::<Vec<_>>()
    );
    assert!(store
        .stream_changes_after("sale", 0, 10)
        .expect("read")
        .is_empty());
    assert_eq!(store.connector_item_count("c_a").expect("count"), 299);
    assert_eq!(store.connector_item_count("c_b").expect("count"), 1);

    let sweep = |cutoff, limit| store.sweep_changes(cutoff, &[], limit).expect("sweep");
    assert_eq!(sweep(jiff::Timestamp::MIN, usize::MAX).removed, 0);
    assert_eq!(store.changes_kept_after().expect("kept"), 0);
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    let first = sweep(later, 1);
    assert!(
        first.next.is_some(),
        "a step looks at no more entries than asked"
    );
    let kept_after = store.changes_kept_after().expect("kept");
    assert!(
        kept_after > 0 && kept_after < 310,
        "raised to what the step removed: {kept_after}"
    );
    assert_eq!(first.removed + sweep(later, usize::MAX).removed, 310);
    assert_eq!(store.changes_kept_after().expect("kept"), 310);
    assert!(store
        .stream_changes_after("sales", 0, 10)
        .expect("read")
        .is_empty());
}

/// The tree data dirs kept every stream's changes in before the per-stream log.
const OLD_CHANGES_TREE: &[u8] = b"changes";

#[test]
fn opening_a_data_dir_with_the_global_change_log_retires_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = Store::open(dir.path()).expect("open");
        store
            .apply(&[(1, upserting("sales", "c_a", &["a", "b"], 10))])
            .expect("apply");
        store
            .inner
            .db
            .open_tree(OLD_CHANGES_TREE)
            .expect("the old tree")
            .insert(1u64.to_be_bytes(), b"x".as_slice())
            .expect("insert");
        assert_eq!(store.changes_kept_after().expect("kept"), 0);
    }
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.changes_kept_after().expect("kept"), 2);
    assert!(!store
        .inner
        .db
        .tree_names()
        .iter()
        .any(|name| name.as_ref() == OLD_CHANGES_TREE));
}

#[test]
fn connector_item_ids_are_the_items_a_connector_wrote_last_and_mirror_deletes_only_those() {
    use crate::model::UpsertMode;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let write = |stream: &str, connector: &str, ids: &[&str]| upserting(stream, connector, ids, 0);
    let records = [
        (1, write("sales", "c_a", &["n", "s", "e"])),
        (2, write("sales", "c_b", &["w", "e"])),
        (3, write("sales-eu", "c_a", &["x"])),
    ];
    store.apply(&records).expect("apply");
    assert_eq!(
        store.connector_item_ids("sales", "c_a").expect("ids"),
        ["n", "s"]
    );
    assert_eq!(
        store.connector_item_ids("sales", "c_b").expect("ids"),
        ["e", "w"]
    );
    assert!(store
        .connector_item_ids("sale", "c_a")
        .expect("ids")
        .is_empty());

    // A mirroring delete skips an item another connector has taken over meanwhile.
    let mut mirror = write("sales", "c_a", &[]);
    mirror.write.deletes = vec!["n".into(), "e".into()];
    mirror.write.deletes_own_only = true;
    store.apply(&[(4, mirror)]).expect("apply");
    assert!(store.item("sales", "n").expect("read").is_none());
    let kept = store.item("sales", "e").expect("read").expect("e is kept");
    assert_eq!(kept.connector_id, "c_b");

    // Only upserts that would change their item are left for a poll to journal.
    let again = write("sales", "c_a", &["s", "new"]).write.upserts;
    let changing = store
        .changing("sales", UpsertMode::Merge, again)
        .expect("read");
    let ids: Vec<&str> = changing.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(ids, ["new"]);
}

#[test]
fn a_data_dir_keeps_the_segment_size_it_was_created_with() {
    let dir = tempfile::tempdir().expect("temp dir");
    let older = 8 * 1024 * 1024;
    drop(
        sled::Config::new()
            .path(dir.path().join("db"))
            .segment_size(older)
            .open()
            .expect("a data dir written with another segment size"),
    );
    let store = Store::open(dir.path()).expect("it opens");
    let key = Credential::generate(KeyKind::Admin).record("admin", jiff::Timestamp::now());
    store.set_admin_key(&key).expect("and takes writes");
    drop(store);
    assert_eq!(segment_size(&dir.path().join("db")).expect("conf"), older);

    let fresh = tempfile::tempdir().expect("temp dir");
    drop(Store::open(fresh.path()).expect("open"));
    assert_eq!(
        segment_size(&fresh.path().join("db")).expect("conf"),
        SEGMENT_SIZE_BYTES
    );
}

#[test]
fn a_pass_that_changes_nothing_only_moves_the_applied_mark() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let first = store
        .apply(&[(1, upserting("sales", "c_a", &["n"], 3))])
        .expect("apply");
    assert_eq!(first.len(), 1);
    let again = store
        .apply(&[(2, upserting("sales", "c_a", &["n"], 3))])
        .expect("apply");
    assert!(again.is_empty(), "an equal upsert is no change");
    assert_eq!(store.applied_seq().expect("mark"), 2);
    assert_eq!(store.last_change_seq().expect("seq"), 1);
    assert_eq!(
        store.item("sales", "n").expect("read").map(|i| i.version),
        Some(1)
    );

    // Different data is a change again.
    let other = store
        .apply(&[(3, upserting("sales", "c_b", &["n"], 4))])
        .expect("apply");
    assert_eq!(other.len(), 1);
    assert_eq!(store.applied_seq().expect("mark"), 3);

    // One pass, one item upserted many times: unchanged until its last upsert.
    let same = || upserting("sales", "c_b", &["n"], 4);
    let nothing = store.apply(&[(4, same()), (5, same())]).expect("apply");
    assert!(nothing.is_empty());
    let last = store
        .apply(&[
            (6, same()),
            (7, same()),
            (8, upserting("sales", "c_b", &["n"], 5)),
        ])
        .expect("apply");
    assert_eq!(last.len(), 1);
    assert_eq!(
        store.item("sales", "n").expect("read").map(|i| i.version),
        Some(3)
    );
}

/// `record` with the idempotency key `key` and a first answer naming `answer`.
fn keyed(mut record: Accepted, key: &str, answer: &str) -> Accepted {
    let remembered = IdempotencyRecord {
        body: json!({"requestId": answer}),
        body_sha256: "0".repeat(64),
        expires_at: jiff::Timestamp::MAX,
    };
    record.idempotency = Some((key.as_bytes().to_vec(), remembered));
    record
}

#[test]
fn idempotency_keys_are_kept_by_passes_that_change_nothing_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let now = jiff::Timestamp::now();
    {
        let store = Store::open(dir.path()).expect("open");
        let first = keyed(upserting("sales", "c_a", &["n"], 3), "c_a\0one", "req_1");
        assert_eq!(store.apply(&[(1, first)]).expect("apply").len(), 1);
        // The same data again under new keys: no change, but both keys are kept.
        let again = [
            (
                2,
                keyed(upserting("sales", "c_a", &["n"], 3), "c_a\0two", "req_2"),
            ),
            (
                3,
                keyed(upserting("sales", "c_a", &["n"], 3), "c_a\0three", "req_3"),
            ),
        ];
        assert!(store.apply(&again).expect("apply").is_empty());
        assert_eq!(store.applied_seq().expect("mark"), 3);
        store.checkpoint().expect("checkpoint");
    }
    let store = Store::open(dir.path()).expect("reopen");
    for (key, answer) in [("one", "req_1"), ("two", "req_2"), ("three", "req_3")] {
        let record = store
            .idempotency(format!("c_a\0{key}").as_bytes(), now)
            .expect("read")
            .unwrap_or_else(|| panic!("key {key} forgotten"));
        assert_eq!(record.body["requestId"], answer);
    }
    assert!(store
        .idempotency(b"c_a\0four", now)
        .expect("read")
        .is_none());
}

fn subscription(name: &str, streams: serde_json::Value) -> crate::model::Subscription {
    let spec = crate::model::SubscriptionSpec::from_json(json!({"name": name,
        "url": "http://127.0.0.1:9/hook", "events": ["item.created"], "streams": streams}))
    .expect("valid");
    crate::model::Subscription::new(spec, jiff::Timestamp::now())
}

#[test]
fn applying_enqueues_for_matching_active_subscriptions_and_survives_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    store
        .apply(&[(1, upserting("sales", "c_1", &["before"], 1))])
        .expect("apply with no subscription");
    assert_eq!(store.outbox().pending(), 0);
    let sales = subscription("sales", json!(["sales"]));
    let stock = subscription("stock", json!(["stock"]));
    store.create_subscription(&sales).expect("create");
    store.create_subscription(&stock).expect("create");
    store
        .apply(&[(2, upserting("sales", "c_1", &["a", "b"], 1))])
        .expect("apply");
    assert_eq!(store.outbox().pending(), 2);
    assert!(store.next_delivery(&stock.id).expect("read").is_none());
    let first = store
        .next_delivery(&sales.id)
        .expect("read")
        .expect("pending");
    let body: serde_json::Value = serde_json::from_str(&first.body).expect("json");
    assert_eq!(body["payload"]["resourceId"], "a");
    drop(store);

    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.outbox().pending(), 2);
    let again = store
        .next_delivery(&sales.id)
        .expect("read")
        .expect("pending");
    assert_eq!(again.message_id, first.message_id);
    store.delete_subscription(&sales.id).expect("delete");
    assert_eq!(store.outbox().pending(), 0);
    assert!(store
        .delivery(&sales.id, first.seq)
        .expect("read")
        .is_none());
}

#[test]
fn connector_events_are_numbered_apart_from_changes_and_the_oldest_pending_is_found() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    let source = connector("Source");
    assert_eq!(
        store
            .enqueue_connector_event(EventCode::ConnectorError, &source, "down")
            .expect("nobody wants it"),
        0
    );
    assert_eq!(store.oldest_pending().expect("read"), None);
    let spec = crate::model::SubscriptionSpec::from_json(json!({"name": "ops",
        "url": "http://127.0.0.1:9/hook", "events": ["item.created", "connector.error"]}))
    .expect("valid");
    let ops = crate::model::Subscription::new(spec, jiff::Timestamp::now());
    store.create_subscription(&ops).expect("create");
    let taken = store.create_subscription(&subscription("OPS", json!(["sales"])));
    assert!(
        matches!(taken, Err(StoreError::NameTaken("subscription", _))),
        "{taken:?}"
    );

    let before = jiff::Timestamp::now();
    let queued = store
        .enqueue_connector_event(EventCode::ConnectorError, &source, "down")
        .expect("enqueue");
    assert_eq!(queued, 1);
    store
        .apply(&[(1, upserting("sales", "c_1", &["a"], 1))])
        .expect("apply");
    assert_eq!(store.outbox().pending(), 2);
    let event = store
        .next_delivery(&ops.id)
        .expect("read")
        .expect("the connector event falls due first");
    assert_ne!(event.seq & (1 << 63), 0, "{:x}", event.seq);
    assert_eq!(event.event, EventCode::ConnectorError);
    let oldest = store.oldest_pending().expect("read").expect("pending");
    assert_eq!(oldest, event.created_at);
    assert!(oldest >= before);
}
