//! `/metrics` through the real binary (SPEC §7): after pushes, refusals and an unknown
//! path, the scrape is valid OpenMetrics for the reference parser
//! (`python3 tests/openmetrics.py`, the `prometheus_client` of tests/requirements.txt)
//! and counts what happened, by route template (never the raw path), status, stream
//! and connector; `metrics_token_file` guards `/metrics` but not the probes; delivery
//! attempts to subscribers are counted by outcome and a waiting one is aged.
//!
//! Without the parser the tests are skipped with a printed reason, except under
//! `CI=true`, where they fail.

mod common;

use common::receiver::{Receiver, Reply};
use common::{
    create_connector, eventually, push, push_ok, send, wait_for_item, webhook, Options, TestServer,
    EVENTUALLY,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Whether python3 can import the reference parser (else skipped, or failed under
/// `CI=true`).
fn parser_ready() -> bool {
    common::tool_ready(
        "python3",
        &["-c", "import prometheus_client.openmetrics.parser"],
        "python3 with prometheus_client is needed to parse /metrics",
        common::PYTHON_REQUIREMENTS,
    )
}

/// One sample of a parsed scrape.
struct Sample {
    name: String,
    labels: Value,
    value: f64,
}

/// A scrape as the reference parser read it.
struct Scrape(Vec<Sample>);

impl Scrape {
    /// The value of sample `name` whose labels include `labels`, if there is one.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .iter()
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels[*k] == *v))
            .map(|s| s.value)
    }

    /// Like [`Scrape::value`], for a sample that must be there.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }

    /// Every value of label `label` in samples of `name`.
    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels[label].as_str().map(str::to_owned))
            .collect()
    }
}

/// `GET /metrics` with `token` as bearer (none when `None`): the answer's status and,
/// for a 200, the scrape as the reference parser read it.
async fn scrape(server: &TestServer, token: Option<&str>) -> (StatusCode, Option<Scrape>) {
    let mut request = server.client().get(server.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("scrape sent");
    let status = response.status();
    if status != StatusCode::OK {
        return (status, None);
    }
    let content_type = response.headers()["content-type"].to_str().expect("text");
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    (status, Some(parse(&text)))
}

/// Runs the reference parser over `text`, which must be valid OpenMetrics.
fn parse(text: &str) -> Scrape {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openmetrics.py");
    let output = common::python(
        &[script],
        text.as_bytes(),
        &format!(
            "the reference parser, given this scrape:
{text}
"
        ),
    );
    let samples: Vec<Value> = serde_json::from_slice(&output).expect("samples as JSON");
    Scrape(
        samples
            .into_iter()
            .map(|s| Sample {
                name: s["name"].as_str().expect("name").to_owned(),
                labels: s["labels"].clone(),
                value: s["value"].as_f64().expect("value"),
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_scrape_counts_requests_by_route_items_by_stream_and_every_stage() {
    if !parser_ready() {
        return;
    }
    let server = TestServer::start().await;
    let doc = json!({"name": "Sales", "type": "webhook", "stream": "sales", "itemKey": "id"});
    let (connector, key) = create_connector(&server, &doc).await;
    push_ok(&server, "sales", &key, &json!({"id": "a"})).await;
    push_ok(&server, "sales", &key, &json!([{"id": "b"}, {"id": "c"}])).await;
    push_ok(
        &server,
        "sales",
        &key,
        &json!([{"id": "d"}, {"id": "a", "v": 2}]),
    )
    .await;
    let wrong_key = push(
        &server,
        "sales",
        "ik_000000000000_wrong",
        &json!({"id": "x"}),
    )
    .await;
    assert_eq!(wrong_key.status, StatusCode::UNAUTHORIZED);
    let bad_json = send(webhook(&server, "sales", &key).body("{not json")).await;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    let unknown = server
        .call(Method::GET, "/no/such/path-123", None, None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let listed = server
        .admin(Method::GET, "/api/admin/connectors", None)
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    wait_for_item(&server, "sales", "a", |item| item["fields"]["v"] == 2).await;
    wait_for_item(&server, "sales", "d", |_| true).await;

    let metrics = eventually(EVENTUALLY, "every write applied", async || {
        let (_, scrape) = scrape(&server, None).await;
        let scrape = scrape.expect("an open /metrics");
        (scrape.get("datapool_journal_lag_records", &[]) == 0.0).then_some(scrape)
    })
    .await;

    let requests = "datapool_http_requests_total";
    let webhook_route = [("route", "/api/webhook/{stream}")];
    let count = |route: &[(&str, &str)], status: &str| {
        let labels: Vec<_> = route.iter().copied().chain([("status", status)]).collect();
        metrics.get(requests, &labels)
    };
    assert_eq!(count(&webhook_route, "202"), 3.0);
    assert_eq!(count(&webhook_route, "401"), 1.0);
    assert_eq!(count(&webhook_route, "400"), 1.0);
    assert_eq!(count(&[("route", "other")], "404"), 1.0);
    assert_eq!(count(&[("route", "/api/admin/connectors")], "200"), 1.0);
    assert_eq!(
        count(&[("route", "/api/admin/connectors")], "201"),
        1.0,
        "the connector's creation"
    );
    assert!(count(&[("route", "/readyz")], "200") >= 1.0);
    let routes = metrics.label_values(requests, "route");
    assert!(
        routes.iter().all(|r| r == "other" || r.starts_with('/'))
            && !routes
                .iter()
                .any(|r| r.contains("path-123") || r.contains("/sales")),
        "labels are route templates, never raw paths: {routes:?}"
    );

    let stream = [("stream", "sales")];
    assert_eq!(metrics.get("datapool_ingest_items_total", &stream), 5.0);
    assert_eq!(metrics.get("datapool_stream_items", &stream), 4.0);
    assert_eq!(
        metrics.get("datapool_ingest_duration_seconds_count", &[]),
        3.0
    );
    assert!(metrics.get("datapool_ingest_duration_seconds_sum", &[]) > 0.0);
    assert_eq!(
        metrics.get(
            "datapool_connector_errors_total",
            &[("connector", &connector)]
        ),
        1.0,
        "the invalid body; an unknown key names no connector"
    );
    let stage = |name: &str| metrics.get("datapool_ingest_stage_seconds_count", &[("stage", name)]);
    assert_eq!(stage("read_body"), 4.0, "the invalid body was read too");
    for per_write in ["parse", "commit_queue", "commit_reply"] {
        assert_eq!(stage(per_write), 3.0, "{per_write}");
    }
    for per_group in ["journal_sync", "apply_queue", "apply", "announce"] {
        let groups = stage(per_group);
        assert!((1.0..=3.0).contains(&groups), "{per_group}: {groups}");
    }
    let inf = [("stage", "journal_sync"), ("le", "+Inf")];
    assert_eq!(
        metrics.get("datapool_ingest_stage_seconds_bucket", &inf),
        stage("journal_sync")
    );
    assert_eq!(
        metrics.get("datapool_poll_duration_seconds_count", &[("type", "sql")]),
        0.0
    );
    assert_eq!(metrics.get("datapool_outbound_pending", &[]), 0.0);
    for part in ["db", "journal"] {
        let bytes = metrics.get("datapool_store_size_bytes", &[("part", part)]);
        assert!(bytes > 0.0, "{part}: {bytes}");
    }
}

#[tokio::test]
async fn a_configured_token_guards_metrics_but_not_the_probes() {
    if !parser_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("metrics-token");
    let token = "scrape-0123456789abcdef";
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    let server = TestServer::start_with(Options {
        args: vec![
            "--metrics-token-file".into(),
            token_file.display().to_string(),
        ],
        ..Options::default()
    })
    .await;
    assert_eq!(scrape(&server, None).await.0, StatusCode::UNAUTHORIZED);
    let wrong = scrape(&server, Some("scrape-0123456789abcdeX")).await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    let admin = scrape(&server, Some(&server.token())).await;
    assert_eq!(admin.0, StatusCode::UNAUTHORIZED, "only the metrics token");
    let (status, metrics) = scrape(&server, Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    let refused = [("route", "/metrics"), ("status", "401")];
    let metrics = metrics.expect("a scrape");
    assert_eq!(metrics.get("datapool_http_requests_total", &refused), 3.0);
    for probe in ["/healthz", "/readyz"] {
        let answer = server.call(Method::GET, probe, None, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{probe}");
    }
}

#[tokio::test]
async fn outbound_attempts_are_counted_by_outcome_and_the_oldest_pending_is_aged() {
    if !parser_ready() {
        return;
    }
    let server = TestServer::start().await;
    let doc = json!({"name": "Sales", "type": "webhook", "stream": "sales", "itemKey": "id"});
    let (_, key) = create_connector(&server, &doc).await;
    let healthy = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.always(Reply::Status(500));
    for (name, receiver) in [("healthy", &healthy), ("failing", &failing)] {
        let doc = json!({"name": name, "url": receiver.url("/hook"), "events": ["item.created"],
                         "retry": {"policy": "fixed", "maxRetries": 3, "intervalSeconds": 3600}});
        let created = server
            .admin(Method::POST, "/api/admin/subscriptions", Some(&doc))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    push_ok(&server, "sales", &key, &json!({"id": "a"})).await;
    healthy.wait_for(1, EVENTUALLY).await;
    failing.wait_for(1, EVENTUALLY).await;

    let metrics = eventually(
        EVENTUALLY,
        "both attempts counted, the retry aged",
        async || {
            let (_, scrape) = scrape(&server, None).await;
            let scrape = scrape.expect("an open /metrics");
            let attempts = |outcome| {
                scrape
                    .value("datapool_outbound_attempts_total", &[("outcome", outcome)])
                    .unwrap_or(0.0)
            };
            let counted = attempts("delivered") == 1.0 && attempts("pending") == 1.0;
            let aged = scrape.get("datapool_outbound_oldest_pending_seconds", &[]) >= 1.0;
            (counted && aged).then_some(scrape)
        },
    )
    .await;
    assert_eq!(
        metrics.value(
            "datapool_outbound_attempts_total",
            &[("outcome", "exhausted")]
        ),
        None,
        "no delivery ran out of retries"
    );
    assert_eq!(
        metrics.get("datapool_outbound_pending", &[]),
        1.0,
        "the failed delivery waits for its retry in an hour"
    );
}
