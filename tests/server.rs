//! The server process: TLS, listeners, probes, request ids and error bodies, the admin
//! token, the data dir lock, schema versions and graceful shutdown.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{answer, client_trusting, run, Options, TestServer};
use reqwest::{Method, StatusCode, Version};
use serde_json::json;

/// The admin API answers the admin token.
async fn assert_admin_answers(server: &TestServer) {
    let answer = server
        .admin(Method::GET, "/api/admin/connectors", None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

/// Runs a server on `data_dir` that is expected to refuse to start.
fn serve_once(data_dir: &std::path::Path) -> std::process::Output {
    let dir = data_dir.to_str().expect("utf-8");
    run(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", dir],
        &[],
    )
}

#[tokio::test]
async fn a_self_signed_certificate_is_generated_once_and_served_over_http2() {
    let mut server = TestServer::start().await;
    let cert =
        std::fs::read_to_string(server.data_dir().join("tls/cert.pem")).expect("generated cert");
    let key_mode = std::fs::metadata(server.data_dir().join("tls/key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    let response = server
        .client()
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("pinned TLS works");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2, "ALPN picks HTTP/2");
    let http1 = reqwest::Client::builder()
        .use_rustls_tls()
        .http1_only()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).expect("pem"))
        .build()
        .expect("client");
    let response = http1
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("HTTP/1.1 works");
    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(answer(response).await.body, json!({"status": "ready"}));

    server.restart().await;
    let again = std::fs::read_to_string(server.data_dir().join("tls/cert.pem")).expect("cert");
    assert_eq!(cert, again, "the certificate is reused across restarts");
}

#[tokio::test]
async fn the_operators_certificate_is_served_instead() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    let (cert, key) = (
        dir.path().join("op-cert.pem"),
        dir.path().join("op-key.pem"),
    );
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let args = [
        "--tls-cert",
        cert.to_str().expect("utf-8"),
        "--tls-key",
        key.to_str().expect("utf-8"),
    ];
    let server = TestServer::start_with(Options {
        args: args.map(String::from).to_vec(),
        ..Default::default()
    })
    .await;

    let response = client_trusting(&cert)
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("operator cert");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        !server.data_dir().join("tls/cert.pem").exists(),
        "nothing is generated"
    );
}

#[tokio::test]
async fn a_plain_http_listener_serves_the_same_api_for_a_proxy() {
    let args = vec!["--http-listen".to_owned(), "127.0.0.1:0".to_owned()];
    let server = TestServer::start_with(Options {
        args,
        ..Default::default()
    })
    .await;
    let http = server.http.expect("plain listener");
    let response = reqwest::Client::new()
        .get(format!("http://{http}/api/admin/connectors"))
        .bearer_auth(server.token())
        .send()
        .await
        .expect("plain HTTP");
    assert_eq!(answer(response).await.body, json!({"connectors": []}));
}

#[tokio::test]
async fn every_response_has_a_request_id_and_every_error_the_same_body() {
    let server = TestServer::start().await;
    let token = server.token();
    let client = server.client();
    let bad_json = client
        .post(server.url("/api/admin/connectors"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{oops");
    let xml = client
        .post(server.url("/api/admin/connectors"))
        .bearer_auth(&token)
        .header("content-type", "application/xml")
        .body("<a/>");
    let cases = [
        (
            client.get(server.url("/no/such/route")),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            client.get(server.url("/api/admin/connectors")),
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
        ),
        (
            client
                .put(server.url("/api/admin/connectors"))
                .bearer_auth(&token),
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
        ),
        (bad_json, StatusCode::BAD_REQUEST, "INVALID_PAYLOAD"),
        (
            xml,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
    ];
    for (request, status, code) in cases {
        let answer = answer(request.send().await.expect("sent")).await;
        assert_eq!(answer.status, status, "{}", answer.body);
        let header = answer.headers["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(header.starts_with("req_"), "{header}");
        let error = &answer.body["error"];
        assert_eq!(error["code"], code, "{}", answer.body);
        assert_eq!(error["requestId"], header.as_str());
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let ok = server.call(Method::GET, "/healthz", None, None).await;
    assert!(ok.headers["x-request-id"]
        .to_str()
        .expect("ascii")
        .starts_with("req_"));
    let unauthorized = server
        .call(Method::GET, "/api/admin/connectors", None, None)
        .await;
    assert_eq!(unauthorized.headers["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn the_admin_token_is_private_survives_restarts_and_is_never_logged() {
    let mut server = TestServer::start().await;
    let token = server.token();
    let parts: Vec<&str> = token.split('_').collect();
    assert_eq!(
        (parts[0], parts[1].len(), parts[2].len()),
        ("at", 12, 40),
        "{token}"
    );
    let mode = std::fs::metadata(server.data_dir().join("admin-token"))
        .expect("file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key_mode = std::fs::metadata(server.data_dir().join("secret.key"))
        .expect("file")
        .permissions()
        .mode();
    assert_eq!(
        key_mode & 0o777,
        0o600,
        "the secrets key file is private too"
    );

    assert_admin_answers(&server).await;
    server.restart().await;
    assert_eq!(server.token(), token, "not reissued on restart");
    assert_admin_answers(&server).await;

    let logs = server.logs();
    assert!(
        logs.contains("admin-token"),
        "the log names the file:\n{logs}"
    );
    assert!(logs.contains(parts[1]), "the log names the key id");
    assert!(
        !logs.contains(parts[2]),
        "the token's secret is never logged"
    );
}

#[tokio::test]
async fn repeated_failed_authentications_from_one_address_get_429() {
    let server = TestServer::start().await;
    let wrong = "at_000000000000_0000000000000000000000000000000000000000";
    for _ in 0..20 {
        let answer = server
            .call(Method::GET, "/api/admin/connectors", Some(wrong), None)
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let blocked = server
        .admin(Method::GET, "/api/admin/connectors", None)
        .await;
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even a good token, for the rest of the minute"
    );
    assert_eq!(blocked.body["error"]["code"], "RATE_LIMITED");
    let retry: u64 = blocked.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
}

#[tokio::test]
async fn sigterm_drains_flushes_and_exits_zero() {
    let mut server = TestServer::start().await;
    let doc = json!({"name": "Kept", "type": "webhook", "stream": "kept"});
    let created = server
        .admin(Method::POST, "/api/admin/connectors", Some(&doc))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["connector"]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let status = server.stop("TERM").await;
    assert_eq!(status.code(), Some(0), "{}", server.logs());
    assert!(server.logs().contains("the store is flushed"));

    let server = TestServer::start_with(Options {
        data_dir: Some(server.data_dir().to_owned()),
        ..Default::default()
    })
    .await;
    let shown = server
        .admin(Method::GET, &format!("/api/admin/connectors/{id}"), None)
        .await;
    assert_eq!(shown.body["connector"]["name"], "Kept");
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_fails_at_once() {
    let server = TestServer::start().await;
    let output = serve_once(server.data_dir());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use by another datapool process"),
        "{stderr}"
    );
    assert_admin_answers(&server).await;
}

#[tokio::test]
async fn a_data_dir_from_a_newer_datapool_is_refused() {
    let mut server = TestServer::start().await;
    assert!(server.stop("TERM").await.success());
    {
        let db = sled::Config::new()
            .path(server.data_dir().join("db"))
            .segment_size(1024 * 1024) // as the store creates it
            .open()
            .expect("open the store directly");
        db.open_tree("meta")
            .expect("meta")
            .insert("schema_version", &99u32.to_be_bytes())
            .expect("write");
        db.flush().expect("flush");
    }
    let output = serve_once(server.data_dir());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("schema version 99"), "{stderr}");
}

#[tokio::test]
async fn a_request_in_flight_at_sigterm_is_finished_before_exit() {
    let mut server = TestServer::start().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<&'static [u8], std::io::Error>>(2);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let request = server
        .client()
        .post(server.url("/api/admin/connectors"))
        .bearer_auth(server.token())
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let in_flight = tokio::spawn(request);
    tx.send(Ok(br#"{"name": "Late", "type": "webhook","#))
        .await
        .expect("first half");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    server.signal("TERM");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.send(Ok(br#" "stream": "late"}"#))
        .await
        .expect("second half");
    drop(tx);

    let response = in_flight
        .await
        .expect("task")
        .expect("the request in flight is answered");
    assert_eq!(response.status(), StatusCode::CREATED);
    let status = server.stop("TERM").await;
    assert_eq!(status.code(), Some(0), "{}", server.logs());
}
