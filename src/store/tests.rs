use serde_json::json;

use super::*;
use crate::auth::{Credential, KeyKind};
use crate::model::ConnectorSpec;

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
        Err(StoreError::NameTaken(_))
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
        store.sweep_logs(at(2)).expect("sweep"),
        3,
        "c_1 at 0 and 1, c_2 at 0"
    );
    let (kept, _) = store.logs("c_1", None, 10).expect("page");
    assert_eq!(
        kept.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["at 4", "at 3", "at 2"]
    );
    assert!(store.logs("c_2", None, 10).expect("page").0.is_empty());
}
