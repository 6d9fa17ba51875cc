use serde_json::json;

use super::*;
use crate::model::ActivitySummary;

fn now() -> Timestamp {
    Timestamp::now()
}

fn parse(doc: Value) -> Result<ConnectorSpec, ValidationError> {
    ConnectorSpec::from_json(doc)
}

fn error_of(doc: Value) -> String {
    parse(doc).expect_err("the document should be refused").0
}

/// The §1.1 example for every type, in full.
fn full_documents() -> Vec<Value> {
    vec![
        json!({"name": "Sales", "type": "webhook", "stream": "sales", "itemKey": "region",
               "fieldMapping": {"amt": "sales"}, "upsertMode": "merge", "enabled": true,
               "signing": {"scheme": "inspire", "secret": "s3cret"},
               "auth": {"basic": false, "keyInUrl": false, "secretHeader": null},
               "successStatus": 202, "dedup": {"header": "webhook-id"},
               "sourceHeader": "X-Source", "rateLimit": {"perSecond": 100, "burst": 200},
               "idempotencyWindowSeconds": 86400, "idleAfterSeconds": 900}),
        json!({"name": "Agents", "type": "api", "stream": "agents",
               "signing": {"scheme": "hmac", "secret": "k", "header": "X-Signature", "algorithm": "sha1",
                           "encoding": "hex", "prefix": "sha1=", "signed": "timestamp.body",
                           "timestampHeader": "X-Timestamp", "toleranceSeconds": 600},
               "auth": {"basic": true, "keyInUrl": true, "secretHeader": {"name": "X-Api-Secret", "value": "v"}},
               "successStatus": 200, "dedup": {"jsonPointer": "/messageId"}}),
        json!({"name": "Orders", "type": "sql", "stream": "orders", "upsertMode": "replace",
               "settings": {"connectionString": "postgres://app:pw@127.0.0.1:5432/test", "query": "select 1",
                            "pollIntervalSeconds": 60, "timeoutSeconds": 30, "maxRows": 10000, "mirror": true,
                            "timeZone": "Europe/London"}}),
        json!({"name": "Prices", "type": "file", "stream": "prices",
               "settings": {"format": "csv", "source": {"kind": "url", "url": "https://files.example/p.csv",
                            "auth": {"type": "basic", "username": "u", "password": "pw"}, "headers": {"Accept": "text/csv"}},
                            "pollIntervalSeconds": 300, "delimiter": ";", "encoding": "windows-1252", "mirror": true}}),
        json!({"name": "Drops", "type": "file", "stream": "drops",
               "settings": {"format": "xml", "xmlPath": "/rows/row",
                            "source": {"kind": "folder", "path": "/srv/drop", "pattern": "*.xml"}}}),
        json!({"name": "Sheet", "type": "file", "stream": "sheet",
               "settings": {"format": "xlsx", "sheet": "Q1", "source": {"kind": "upload"}}}),
    ]
}

#[test]
fn the_full_document_of_every_type_is_accepted_and_round_trips() {
    for doc in full_documents() {
        let spec = parse(doc.clone()).unwrap_or_else(|e| panic!("{e} in {doc}"));
        let again = parse(serde_json::to_value(&spec).expect("serializes")).expect("reparses");
        assert_eq!(spec, again);
    }
}

#[test]
fn reads_hide_every_secret_behind_a_flag() {
    for doc in full_documents() {
        let spec = parse(doc).expect("valid");
        let view = Connector::new(spec, None, now()).view(ConnectorState::Idle);
        let text = view.to_string();
        for secret in ["s3cret", "\"k\"", "\"v\"", ":pw@", "\"pw\""] {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
    }
    let view = Connector::new(
        parse(full_documents().remove(1)).expect("valid"),
        None,
        now(),
    )
    .view(ConnectorState::Idle);
    assert_eq!(view["signing"]["secretSet"], json!(true));
    assert_eq!(
        view["auth"]["secretHeader"],
        json!({"name": "X-Api-Secret", "valueSet": true})
    );
    let view = Connector::new(
        parse(full_documents().remove(2)).expect("valid"),
        None,
        now(),
    )
    .view(ConnectorState::Idle);
    assert_eq!(
        view["settings"]["connectionString"],
        json!("postgres://app:***@127.0.0.1:5432/test")
    );
    let view = Connector::new(
        parse(full_documents().remove(3)).expect("valid"),
        None,
        now(),
    )
    .view(ConnectorState::Idle);
    assert_eq!(
        view["settings"]["source"]["auth"],
        json!({"type": "basic", "username": "u", "passwordSet": true})
    );
}

#[test]
fn invalid_documents_name_the_field_and_the_rule() {
    let cases = [
        (
            json!({"name": "A", "type": "webhook", "stream": "Bad Name"}),
            "invalid stream name",
        ),
        (json!({"name": "A", "type": "ftp", "stream": "s"}), "type"),
        (
            json!({"name": "", "type": "webhook", "stream": "s"}),
            "name",
        ),
        (
            json!({"name": "A", "type": "webhook", "stream": "s", "colour": "red"}),
            "unknown field `colour`",
        ),
        (
            json!({"type": "webhook", "stream": "s"}),
            "missing field `name`",
        ),
        (
            json!({"name": "A", "type": "webhook", "stream": "s", "successStatus": 204}),
            "successStatus",
        ),
        (
            json!({"name": "A", "type": "webhook", "stream": "s", "signing": {"scheme": "hmac", "secret": "k"}}),
            "signing.header",
        ),
        (
            json!({"name": "A", "type": "webhook", "stream": "s", "signing": {"scheme": "github", "secret": "k", "prefix": "x"}}),
            "signing.prefix",
        ),
        (
            json!({"name": "A", "type": "webhook", "stream": "s", "signing": {"scheme": "github", "secret": "k", "toleranceSeconds": 5}}),
            "signing.toleranceSeconds",
        ),
        (
            json!({"name": "A", "type": "webhook", "stream": "s", "signing": {"scheme": "standard-webhooks", "secret": "whsec_!!"}}),
            "whsec_",
        ),
        (
            json!({"name": "A", "type": "webhook", "stream": "s", "signing": {"scheme": "inspire"}}),
            "signing: missing field `secret`",
        ),
        (
            json!({"name": "A", "type": "webhook", "stream": "s", "dedup": {"jsonPointer": "messageId"}}),
            "dedup.jsonPointer",
        ),
        (
            json!({"name": "A", "type": "webhook", "stream": "s", "rateLimit": {"perSecond": 0, "burst": 1}}),
            "rateLimit.perSecond",
        ),
        (
            json!({"name": "A", "type": "webhook", "stream": "s", "sourceHeader": "bad header"}),
            "sourceHeader",
        ),
        (
            json!({"name": "A", "type": "webhook", "stream": "s", "settings": {"format": "csv", "source": {"kind": "upload"}}}),
            "settings",
        ),
        (
            json!({"name": "A", "type": "sql", "stream": "s"}),
            "settings",
        ),
        (
            json!({"name": "A", "type": "sql", "stream": "s", "signing": {"scheme": "inspire", "secret": "k"},
                "settings": {"connectionString": "postgres://h/db", "query": "select 1"}}),
            "signing: applies only",
        ),
        (
            json!({"name": "A", "type": "sql", "stream": "s", "settings": {"format": "csv", "source": {"kind": "upload"}}}),
            "SQL settings",
        ),
        (
            json!({"name": "A", "type": "sql", "stream": "s", "settings": {"connectionString": "oracle://h/db", "query": "select 1"}}),
            "settings.connectionString",
        ),
        (
            json!({"name": "A", "type": "sql", "stream": "s", "settings": {"connectionString": "postgres://h/db", "query": " "}}),
            "settings.query",
        ),
        (
            json!({"name": "A", "type": "sql", "stream": "s", "settings": {"connectionString": "postgres://h/db", "query": "q", "pollIntervalSeconds": 0}}),
            "settings.pollIntervalSeconds",
        ),
        (
            json!({"name": "A", "type": "sql", "stream": "s", "settings": {"connectionString": "postgres://h/db", "query": "q", "timeZone": "Mars/Base"}}),
            "settings.timeZone",
        ),
        (
            json!({"name": "A", "type": "file", "stream": "s", "settings": {"format": "xml", "source": {"kind": "upload"}}}),
            "settings.xmlPath",
        ),
        (
            json!({"name": "A", "type": "file", "stream": "s", "settings": {"format": "csv", "sheet": "x", "source": {"kind": "upload"}}}),
            "settings.sheet",
        ),
        (
            json!({"name": "A", "type": "file", "stream": "s", "settings": {"format": "csv", "delimiter": ";;", "source": {"kind": "upload"}}}),
            "settings.delimiter",
        ),
        (
            json!({"name": "A", "type": "file", "stream": "s", "settings": {"format": "csv", "source": {"kind": "url", "url": "ftp://x/y"}}}),
            "settings.source.url",
        ),
        (
            json!({"name": "A", "type": "file", "stream": "s", "settings": {"format": "csv", "source": {"kind": "folder", "path": "relative"}}}),
            "settings.source.path",
        ),
        (
            json!({"name": "A", "type": "file", "stream": "s", "settings": {"format": "csv", "pollIntervalSeconds": 5, "source": {"kind": "upload"}}}),
            "not polled",
        ),
        (json!(["not", "an", "object"]), "JSON object"),
    ];
    for (doc, expected) in cases {
        let message = error_of(doc.clone());
        assert!(
            message.contains(expected),
            "{doc}: {message:?} should mention {expected:?}"
        );
    }
}

#[test]
fn a_patch_merges_removes_and_keeps_secrets_it_does_not_touch() {
    let connector = Connector::new(
        parse(full_documents().remove(0)).expect("valid"),
        Some("k1".into()),
        now(),
    );
    let patched = connector
        .patched(
            &json!({"name": "Renamed", "rateLimit": {"burst": 10}, "dedup": null}),
            now(),
        )
        .expect("valid patch");
    assert_eq!(patched.spec.name, "Renamed");
    assert_eq!(
        patched.spec.rate_limit,
        Some(RateLimit {
            per_second: 100.0,
            burst: 10
        })
    );
    assert_eq!(patched.spec.dedup, None);
    assert_eq!(
        patched.spec.signing, connector.spec.signing,
        "the secret survives"
    );
    assert_eq!(patched.revision, connector.revision + 1);
    assert_eq!(
        (patched.id.as_str(), patched.key_id.as_deref()),
        (connector.id.as_str(), Some("k1"))
    );

    let off = connector
        .patched(&json!({"signing": null}), now())
        .expect("valid patch");
    assert_eq!(off.spec.signing, None);
}

#[test]
fn a_read_view_can_be_sent_back_as_a_patch() {
    for doc in full_documents() {
        let connector = Connector::new(parse(doc).expect("valid"), Some("k1".into()), now());
        let patched = connector
            .patched(&connector.view(ConnectorState::Idle), now())
            .expect("a read round-trips");
        assert_eq!(patched.spec, connector.spec);
    }
}

#[test]
fn a_patch_cannot_change_fixed_fields_or_break_validation() {
    let connector = Connector::new(
        parse(full_documents().remove(2)).expect("valid"),
        None,
        now(),
    );
    for (patch, expected) in [
        (json!({"type": "webhook"}), "type"),
        (json!({"id": "c_other"}), "id"),
        (json!({"stream": "UPPER"}), "stream"),
        (json!({"settings": {"query": ""}}), "settings.query"),
        (json!("text"), "JSON object"),
    ] {
        let message = connector.patched(&patch, now()).expect_err("refused").0;
        assert!(message.contains(expected), "{patch}: {message}");
    }
    let changed = connector
        .patched(
            &json!({"settings": {"connectionString": "postgres://app:new@127.0.0.1/test"}}),
            now(),
        )
        .expect("valid");
    let Some(Settings::Sql(sql)) = &changed.spec.settings else {
        panic!("sql settings")
    };
    assert_eq!(
        sql.connection_string.expose(),
        "postgres://app:new@127.0.0.1/test"
    );
}

#[test]
fn state_follows_enabled_failures_and_the_idle_window() {
    let mut connector = Connector::new(
        parse(full_documents().remove(1)).expect("valid"),
        None,
        now(),
    );
    let at = |s: i64| Timestamp::from_second(1_700_000_000 + s).expect("valid time");
    let mut activity = ActivitySummary::default();
    assert_eq!(activity.state(&connector, at(0)), ConnectorState::Idle);
    activity.last_success_at = Some(at(0));
    assert_eq!(activity.state(&connector, at(900)), ConnectorState::Active);
    assert_eq!(
        activity.state(&connector, at(901)),
        ConnectorState::Idle,
        "900 s by default"
    );
    activity.failing_since = Some(at(10));
    assert_eq!(activity.state(&connector, at(11)), ConnectorState::Error);
    connector.spec.enabled = false;
    assert_eq!(activity.state(&connector, at(11)), ConnectorState::Disabled);
    assert_eq!(
        connector.view(ConnectorState::Disabled)["state"],
        json!("disabled")
    );
    assert_eq!(ConnectorState::Error.colour(), "red");
}

#[test]
fn a_patch_moving_a_sql_connector_keeps_its_masked_password() {
    let doc = json!({"name": "Orders", "type": "sql", "stream": "orders",
        "settings": {"connectionString": "server=tcp:old,1433;user id=sa;Password={pa;ss}}word}",
                     "query": "select 1"}});
    let connector = Connector::new(parse(doc).expect("valid"), None, now());
    let view = connector.view(ConnectorState::Idle);
    let shown = view["settings"]["connectionString"]
        .as_str()
        .expect("a string");
    assert_eq!(shown, "server=tcp:old,1433;user id=sa;Password=***");
    let moved = shown.replace("tcp:old", "tcp:new");
    let changed = connector
        .patched(&json!({"settings": {"connectionString": moved}}), now())
        .expect("valid");
    let Some(Settings::Sql(sql)) = &changed.spec.settings else {
        panic!("sql settings")
    };
    assert_eq!(
        sql.connection_string.expose(),
        "server=tcp:new,1433;user id=sa;Password={pa;ss}}word}"
    );
}
