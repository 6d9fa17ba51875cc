//! The web UI in a real browser (Chromium headless through chromedriver): an operator
//! signs in, creates a webhook connector through the wizard, pushes data with the key
//! the page showed, watches it arrive live in the Explorer, disables the connector,
//! and manages a subscription, while no request leaves the server's origin and no
//! script fails.

mod common;

use std::path::Path;

use common::browser::{Browser, PATIENCE};
use common::receiver::Receiver;
use common::{push_ok, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use thirtyfour::prelude::*;

/// The session cookie the UI's sign-in sets.
const SESSION_COOKIE: &str = "__Host-datapool-session";

/// The server and a browser, or `None` when the browser is missing outside CI.
async fn start() -> Option<(TestServer, Browser)> {
    let browser = Browser::start().await?;
    Some((TestServer::start().await, browser))
}

/// Opens the UI and signs in with `token`.
async fn sign_in(server: &TestServer, browser: &Browser, token: &str) {
    browser
        .driver
        .goto(server.url("/"))
        .await
        .expect("open the UI");
    browser.fill("Admin token", token).await;
    browser.click_button("Sign in").await;
}

/// Follows the navigation link named `name`.
async fn navigate(browser: &Browser, name: &str) {
    let xpath = format!("//nav[@id='nav']//a[normalize-space()='{name}']");
    browser
        .find(By::XPath(&xpath))
        .await
        .click()
        .await
        .expect("click the link");
}

/// Opens stream `name` in the Explorer's tree.
async fn open_stream(browser: &Browser, name: &str) {
    let xpath = format!("//li[@data-stream='{name}']/button[contains(@class,'tree-label')]");
    browser
        .find(By::XPath(&xpath))
        .await
        .click()
        .await
        .expect("open the stream");
}

/// Opens item `item` from the Explorer's items table, then its field `field`.
async fn open_field(browser: &Browser, item: &str, field: &str) {
    for xpath in [
        format!("//tr[@data-item='{item}']//button"),
        format!("//tr[@data-field='{field}']//button"),
    ] {
        browser
            .find(By::XPath(&xpath))
            .await
            .click()
            .await
            .expect("open");
    }
}

/// Follows the link reading `text` among the elements `css` matches.
async fn open_link(browser: &Browser, css: &str, text: &str) {
    browser
        .find_text(By::Css(css), text)
        .await
        .click()
        .await
        .expect("follow the link");
}

/// The texts of every element `css` matches, in page order.
async fn texts(browser: &Browser, css: &str) -> Vec<String> {
    let mut texts = Vec::new();
    for element in browser
        .driver
        .find_all(By::Css(css))
        .await
        .unwrap_or_default()
    {
        texts.push(element.text().await.unwrap_or_default());
    }
    texts
}

/// The text of the Data Sources row of connector `id`, once it contains `text`.
async fn source_row_with(browser: &Browser, id: &str, text: &str) -> WebElement {
    let xpath = format!("//tr[@data-connector='{id}'][contains(., '{text}')]");
    browser.find(By::XPath(&xpath)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_runs_the_box_from_the_browser() {
    let Some((server, browser)) = start().await else {
        return;
    };
    let origin = server.url("");

    // A wrong token is refused with the server's message, not its JSON.
    sign_in(
        &server,
        &browser,
        "at_000000000000_wrongwrongwrongwrongwrongwrongwrongwrong",
    )
    .await;
    let refusal = browser
        .find(By::Css("form .error"))
        .await
        .text()
        .await
        .expect("text");
    assert!(
        refusal.contains("not the admin token") && !refusal.contains('{'),
        "{refusal}"
    );
    browser.log("browser").await; // the refused sign-in's 401 is logged as a failed load

    // From the keyboard: the token, then Enter.
    let token = browser.control("Admin token").await;
    token.clear().await.expect("clear");
    token
        .send_keys(server.token() + Key::Enter)
        .await
        .expect("type");
    browser.find_text(By::Css("h1"), "Data Sources").await;
    browser
        .find_text(By::Css(".empty"), "No data sources yet")
        .await;
    let cookie = browser
        .driver
        .get_named_cookie(SESSION_COOKIE)
        .await
        .expect("the session cookie");
    assert_eq!(cookie.secure, Some(true));
    assert!(matches!(cookie.same_site, Some(SameSite::Strict)));
    assert!(cookie.expiry.is_some(), "the session cookie expires");
    let visible = browser
        .driver
        .execute("return document.cookie;", vec![])
        .await
        .expect("script");
    let visible = visible.convert::<String>().expect("a string");
    assert!(
        !visible.contains(SESSION_COOKIE),
        "the page's scripts cannot read the session: HttpOnly"
    );

    // The wizard: type → configure → map → test → save & activate.
    open_link(&browser, "a.button", "New connector").await;
    browser
        .find(By::Css("input[name='type'][value='webhook']:checked"))
        .await;
    browser.click_button("Next").await;
    browser.fill("Name", "Sales feed").await;
    browser.click_button("Next").await;
    browser.fill("Stream", "sales").await;
    browser.fill("Item key (optional)", "region").await;
    browser.click_button("Next").await;
    browser.click_button("Run test").await;
    browser.find_text(By::Css("#test-result td"), "north").await;
    browser.click_button("Next").await;
    browser.click_button("Save & activate").await;
    let key_box = browser.find(By::Id("ingest-key")).await;
    let key = key_box
        .prop("value")
        .await
        .expect("value")
        .expect("the ingest key");
    assert!(key.starts_with("ik_"), "{key}");
    let curl = browser
        .find(By::Id("curl"))
        .await
        .text()
        .await
        .expect("text");
    assert!(
        curl.contains(&key) && curl.contains(&format!("{origin}/api/webhook/sales")),
        "{curl}"
    );

    // The Explorer follows the stream live: a new item appears, a changed value flashes.
    navigate(&browser, "Explorer").await;
    open_stream(&browser, "sales").await;
    browser
        .find_text(By::Css("#items .empty"), "No items in this stream yet")
        .await;
    browser
        .find_text(By::Id("live"), "Live: following sales")
        .await;
    push_ok(
        &server,
        "sales",
        &key,
        &json!([{"region": "north", "sales": 1200}]),
    )
    .await;
    browser
        .find_text(By::Css("#items-table tr[data-item='north'] td"), "1200")
        .await;
    push_ok(
        &server,
        "sales",
        &key,
        &json!({"region": "north", "sales": 1300}),
    )
    .await;
    browser
        .find_text(By::Css("#items-table td.changed"), "1300")
        .await;
    // Paging (25 a page, in id order) and finding an item by its id.
    let many: Vec<Value> = (0..30)
        .map(|i| json!({"region": format!("r{i:02}"), "sales": i}))
        .collect();
    push_ok(&server, "sales", &key, &json!(many)).await;
    browser
        .until("a full first page", async || {
            let rows = browser
                .driver
                .find_all(By::Css("#items-table tbody tr"))
                .await;
            rows.is_ok_and(|rows| rows.len() == 25)
        })
        .await;
    browser.click_button("Next page").await;
    browser.find_text(By::Id("page-number"), "Page 2").await;
    browser
        .find_text(By::Css("#items-table tr[data-item='r29'] td"), "29")
        .await;
    browser.fill("Find item by id", "north").await;
    browser.click_button("Find item").await;
    browser
        .find_text(By::Css("#item-panel tr[data-field='sales']"), "1300")
        .await;

    // Data Sources shows it active, then grey once disabled on its page.
    navigate(&browser, "Data Sources").await;
    let connectors = server
        .admin(Method::GET, "/api/admin/connectors", None)
        .await;
    let id = connectors.body["connectors"][0]["id"]
        .as_str()
        .expect("connector id")
        .to_owned();
    source_row_with(&browser, &id, "Active").await;
    open_link(&browser, "#sources a", "Sales feed").await;
    browser.click_button("Rotate key").await;
    browser.find(By::Css("dialog[open]")).await;
    browser
        .find(By::Id("confirm-ok"))
        .await
        .click()
        .await
        .expect("confirm");
    let rotated = browser.find(By::Id("ingest-key")).await;
    let rotated = rotated
        .prop("value")
        .await
        .expect("value")
        .expect("the new key");
    assert!(rotated.starts_with("ik_") && rotated != key, "{rotated}");
    let old = common::push(&server, "sales", &key, &json!({"region": "south"})).await;
    assert_eq!(
        old.status,
        StatusCode::UNAUTHORIZED,
        "the old key stops working"
    );
    push_ok(
        &server,
        "sales",
        &rotated,
        &json!({"region": "south", "sales": 10}),
    )
    .await;
    browser.click_button("I have copied the key").await;
    browser.click_button("Disable").await;
    browser
        .find_text(By::Id("connector-state"), "disabled")
        .await;
    navigate(&browser, "Data Sources").await;
    let row = source_row_with(&browser, &id, "Disabled").await;
    row.find(By::Css(".status-grey .dot"))
        .await
        .expect("a grey dot");

    // Webhooks: create, deactivate, delete (confirmed in the dialog).
    navigate(&browser, "Webhooks").await;
    browser
        .find_text(By::Css(".empty"), "No subscriptions yet")
        .await;
    open_link(&browser, "a.button", "New subscription").await;
    browser.fill("Name", "Reports").await;
    browser.fill("URL", "http://127.0.0.1:9/hook").await;
    browser.click_button("Create subscription").await;
    browser
        .find_text(By::Css("p.warning"), "shown only this once")
        .await;
    open_link(&browser, "a.button", "Done").await;
    browser
        .find(By::XPath(
            "//tr[contains(., 'Reports')][contains(., 'Active')]",
        ))
        .await;
    browser.click_button("Deactivate").await;
    browser
        .find(By::XPath(
            "//tr[contains(., 'Reports')][contains(., 'Inactive')]",
        ))
        .await;
    let stored = server
        .admin(Method::GET, "/api/admin/subscriptions", None)
        .await;
    assert_eq!(stored.body["subscriptions"][0]["active"], json!(false));
    browser.click_button("Delete").await;
    browser.find(By::Css("dialog[open]")).await;
    browser.click_button("Delete subscription").await;
    browser
        .find_text(By::Css(".empty"), "No subscriptions yet")
        .await;
    let stored = server
        .admin(Method::GET, "/api/admin/subscriptions", None)
        .await;
    assert_eq!(stored.body["subscriptions"], json!([]));

    // At a phone's width every page still fits: nothing scrolls sideways.
    browser
        .driver
        .set_window_rect(0, 0, 390, 844)
        .await
        .expect("phone width");
    for page in ["Data Sources", "Explorer", "Webhooks"] {
        navigate(&browser, page).await;
        browser.find_text(By::Css("h1"), page).await;
        let overflow = browser
            .driver
            .execute(
                "return document.documentElement.scrollWidth - window.innerWidth;",
                vec![],
            )
            .await
            .expect("script");
        assert!(
            overflow.convert::<i64>().expect("a number") <= 0,
            "{page} scrolls sideways"
        );
    }

    // Signing out ends the session on the server too.
    browser.click_button("Sign out").await;
    browser.find_text(By::Css("h1"), "Sign in").await;

    assert_only_same_origin(&browser, &origin).await;
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wizard_tests_a_file_connector_on_the_server_before_activating_it() {
    let Some((server, browser)) = start().await else {
        return;
    };
    let folder = tempfile::tempdir().expect("watched folder");
    std::fs::write(folder.path().join("stock.csv"), "sku,qty\nA-1,5\nB-2,7\n").expect("csv");
    sign_in(&server, &browser, &server.token()).await;
    open_link(&browser, "a.button", "New connector").await;
    browser
        .find(By::Css("input[name='type'][value='file']"))
        .await
        .click()
        .await
        .expect("file");
    browser.click_button("Next").await;
    browser.fill("Name", "Stock file").await;
    browser.choose("Source", "Watch a folder").await;
    browser
        .fill("Folder path", &folder.path().to_string_lossy())
        .await;
    browser.fill("Poll every (seconds)", "1").await;
    browser.click_button("Next").await;
    browser.fill("Stream", "stock").await;
    browser.fill("Item key (optional)", "sku").await;
    browser.click_button("Next").await;
    browser.click_button("Run test").await;
    browser
        .find_text(By::Css("#test-result p"), "2 records")
        .await;
    browser.find_text(By::Css("#test-result td"), "B-2").await;
    let paused = server
        .admin(Method::GET, "/api/admin/connectors", None)
        .await;
    assert_eq!(
        paused.body["connectors"][0]["enabled"],
        json!(false),
        "saved paused for the test"
    );
    let stored = server.admin(Method::GET, "/api/streams", None).await;
    assert_eq!(stored.body["streams"], json!([]), "a test stores nothing");
    browser.click_button("Next").await;
    browser.click_button("Save & activate").await;
    browser.find_text(By::Css("h1"), "Stock file").await;
    browser
        .until("the import in the connector's log", async || {
            browser.click_button("Refresh log").await;
            let log = browser
                .find(By::Css("section[aria-labelledby='logs-title']"))
                .await;
            log.text()
                .await
                .is_ok_and(|t| t.contains("imported stock.csv: 2 items"))
        })
        .await;
    let item = common::get_item(&server, "stock", "A-1")
        .await
        .expect("the file's items");
    assert_eq!(item["fields"]["qty"], json!(5));
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriptions_page_shows_its_deliveries_re_sends_one_and_edits_it() {
    let Some((server, browser)) = start().await else {
        return;
    };
    let receiver = Receiver::start().await;
    let (_, key) = common::create_connector(
        &server,
        &json!({"name": "Sales", "type": "webhook", "stream": "sales", "itemKey": "region"}),
    )
    .await;
    let created = server
        .admin(
            Method::POST,
            "/api/admin/subscriptions",
            Some(&json!({"name": "Reports", "url": receiver.url("/hook"), "events": ["item.created"]})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    push_ok(
        &server,
        "sales",
        &key,
        &json!({"region": "north", "sales": 1}),
    )
    .await;
    receiver.wait_for(1, PATIENCE).await;

    sign_in(&server, &browser, &server.token()).await;
    navigate(&browser, "Webhooks").await;
    open_link(&browser, "#subscriptions a", "Reports").await;
    let delivered =
        "//section[@aria-labelledby='deliveries-title']//tr[contains(., 'item.created')]";
    browser
        .until("the delivery in the log", async || {
            browser.click_button("Refresh delivery log").await;
            let row = browser.driver.find(By::XPath(delivered)).await;
            matches!(row, Ok(row) if row.text().await.is_ok_and(|t| t.contains("200")))
        })
        .await;
    browser.click_button("Re-send").await;
    let resent = receiver.wait_for(2, PATIENCE).await;
    assert_eq!(
        resent[0].json()["messageId"],
        resent[1].json()["messageId"],
        "the same message again"
    );
    browser
        .until("the re-sent delivery in the log", async || {
            browser.click_button("Refresh delivery log").await;
            let rows = browser.driver.find_all(By::XPath(delivered)).await;
            rows.is_ok_and(|rows| rows.len() == 2)
        })
        .await;

    open_link(&browser, "a.button", "Edit").await;
    browser.fill("Name", "Daily reports").await;
    browser.click_button("Save subscription").await;
    browser.find_text(By::Css("h1"), "Daily reports").await;
    let stored = server
        .admin(Method::GET, "/api/admin/subscriptions", None)
        .await;
    assert_eq!(
        stored.body["subscriptions"][0]["name"],
        json!("Daily reports")
    );
    assert_eq!(
        stored.body["subscriptions"][0]["url"],
        json!(receiver.url("/hook"))
    );
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_connectors_page_tests_a_file_then_imports_it() {
    let Some((server, browser)) = start().await else {
        return;
    };
    let (id, _) = common::create_connector(
        &server,
        &json!({"name": "Prices", "type": "file", "stream": "prices", "itemKey": "sku",
                "settings": {"format": "csv", "source": {"kind": "upload"}}}),
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("prices.csv");
    std::fs::write(&file, "sku,price\nA-1,9.5\nB-2,12\n").expect("csv");
    sign_in(&server, &browser, &server.token()).await;
    source_row_with(&browser, &id, "Prices").await;
    open_link(&browser, "#sources a", "Prices").await;
    let chooser = browser.control("File").await;
    chooser
        .send_keys(file.to_string_lossy())
        .await
        .expect("choose the file");
    browser.click_button("Run test").await;
    browser
        .find_text(By::Css("#test-result p"), "2 records")
        .await;
    browser.find_text(By::Css("#test-result td"), "B-2").await;
    assert!(
        common::get_item(&server, "prices", "A-1").await.is_none(),
        "a test stores nothing"
    );
    browser.click_button("Upload file").await;
    browser
        .find_text(By::Css("#test-result p"), "Imported prices.csv: 2 items")
        .await;
    let item = common::get_item(&server, "prices", "B-2")
        .await
        .expect("imported");
    assert_eq!(item["fields"]["price"], json!(12));
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_switched_on_in_the_explorer_show_a_fields_history() {
    let Some((server, browser)) = start().await else {
        return;
    };
    let (_, key) = common::create_connector(
        &server,
        &json!({"name": "Meters", "type": "webhook", "stream": "meters", "itemKey": "meter"}),
    )
    .await;
    push_ok(&server, "meters", &key, &json!({"meter": "m1", "kwh": 10})).await;
    common::wait_for_item(&server, "meters", "m1", |_| true).await;
    sign_in(&server, &browser, &server.token()).await;
    navigate(&browser, "Explorer").await;
    open_stream(&browser, "meters").await;
    browser
        .find_text(By::Id("snapshots-status"), "Snapshots are off")
        .await;

    // A retention the server would refuse is caught with a message, and nothing changes.
    browser
        .control("Record field history")
        .await
        .click()
        .await
        .expect("switch snapshots on");
    browser.fill("Keep history (days)", "0").await;
    browser.click_button("Save snapshots").await;
    browser
        .find_text(By::Css("#snapshots-status .error"), "from 1 to 3650")
        .await;
    let settings = "/api/admin/streams/meters";
    let stored = server.admin(Method::GET, settings, None).await;
    assert_eq!(stored.body["stream"]["snapshots"]["enabled"], json!(false));

    browser.fill("Keep history (days)", "7").await;
    browser.click_button("Save snapshots").await;
    browser
        .find_text(
            By::Css("#snapshots-status .saved"),
            "Saved. Snapshots are on: field history is kept 7 days.",
        )
        .await;
    let stored = server.admin(Method::GET, settings, None).await;
    assert_eq!(
        stored.body["stream"]["snapshots"],
        json!({"enabled": true, "retentionDays": 7})
    );

    for kwh in [12, 15] {
        push_ok(&server, "meters", &key, &json!({"meter": "m1", "kwh": kwh})).await;
        common::wait_for_item(&server, "meters", "m1", |item| {
            item["fields"]["kwh"] == json!(kwh)
        })
        .await;
    }
    open_field(&browser, "m1", "kwh").await;
    browser
        .until("both changes in the timeline", async || {
            texts(&browser, "#field-panel ol.timeline li code").await == ["15", "12"]
        })
        .await;
    let line = browser
        .find(By::Css("#field-panel svg.sparkline polyline"))
        .await;
    let points = line
        .attr("points")
        .await
        .expect("attribute")
        .expect("the line's points");
    assert_eq!(points.split(' ').count(), 2, "{points}");
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connectors_log_filters_narrow_its_entries() {
    let Some((server, browser)) = start().await else {
        return;
    };
    let (id, key) = common::create_connector(
        &server,
        &json!({"name": "Sales", "type": "webhook", "stream": "sales", "itemKey": "region"}),
    )
    .await;
    push_ok(
        &server,
        "sales",
        &key,
        &json!({"region": "north", "sales": 1}),
    )
    .await;
    let refused = common::push(&server, "sales", &key, &json!("not an object")).await;
    assert!(refused.status.is_client_error(), "{}", refused.body);
    sign_in(&server, &browser, &server.token()).await;
    source_row_with(&browser, &id, "Sales").await;
    open_link(&browser, "#sources a", "Sales").await;
    let events = "section[aria-labelledby='logs-title'] td[data-label='Event']";
    browser
        .until("both kinds of entry in the log", async || {
            let shown = texts(&browser, events).await;
            shown.contains(&"push".to_owned()) && shown.contains(&"rejected".to_owned())
        })
        .await;
    browser.choose("Level", "error").await;
    assert_eq!(texts(&browser, events).await, ["rejected"]);
    browser.choose("Level", "All levels").await;
    browser.fill("Event", "push").await;
    assert_eq!(texts(&browser, events).await, ["push"]);
    browser.choose("Level", "error").await;
    browser
        .find_text(
            By::Css("section[aria-labelledby='logs-title'] .empty"),
            "No entries match the filters.",
        )
        .await;
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn activate_makes_a_deactivated_subscription_active_again() {
    let Some((server, browser)) = start().await else {
        return;
    };
    let created = server
        .admin(
            Method::POST,
            "/api/admin/subscriptions",
            Some(&json!({"name": "Reports", "url": "http://127.0.0.1:9/hook", "events": ["item.created"]})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["subscription"]["id"]
        .as_str()
        .expect("subscription id");
    let deactivated = server
        .admin(
            Method::POST,
            &format!("/api/admin/subscriptions/{id}/deactivate"),
            None,
        )
        .await;
    assert_eq!(deactivated.status, StatusCode::OK, "{}", deactivated.body);
    sign_in(&server, &browser, &server.token()).await;
    navigate(&browser, "Webhooks").await;
    let row = |status: &str, action: &str| {
        format!(
            "//tr[@data-subscription='{id}'][contains(., '{status}')][.//button[normalize-space()='{action}']]"
        )
    };
    browser.find(By::XPath(row("Inactive", "Activate"))).await;
    browser.click_button("Activate").await;
    let active = browser.find(By::XPath(row("Active", "Deactivate"))).await;
    let shown = active.text().await.expect("text");
    assert!(!shown.contains("Inactive"), "{shown}");
    let stored = server
        .admin(Method::GET, "/api/admin/subscriptions", None)
        .await;
    assert_eq!(stored.body["subscriptions"][0]["active"], json!(true));
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

/// Nothing the page did since the log was last read was an error: no uncaught
/// exception, no failed load, no refused Content-Security-Policy.
async fn assert_no_console_errors(browser: &Browser) {
    let errors: Vec<Value> = browser
        .log("browser")
        .await
        .into_iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// Every request the browser made (DevTools' network events, and the page's own
/// resource timings) went to `origin`.
async fn assert_only_same_origin(browser: &Browser, origin: &str) {
    let mut urls = Vec::new();
    for entry in browser.log("performance").await {
        let Some(message) = entry["message"].as_str() else {
            continue;
        };
        let event: Value = serde_json::from_str(message).expect("a DevTools event");
        if event["message"]["method"] == "Network.requestWillBeSent" {
            if let Some(url) = event["message"]["params"]["request"]["url"].as_str() {
                urls.push(url.to_owned());
            }
        }
    }
    assert!(
        !urls.is_empty(),
        "the network log recorded the page's requests"
    );
    let timed = browser
        .driver
        .execute(
            "return performance.getEntries().map(e => e.name).filter(n => n.includes('://'));",
            vec![],
        )
        .await
        .expect("resource timings");
    urls.extend(timed.convert::<Vec<String>>().expect("names"));
    let elsewhere: Vec<_> = urls
        .iter()
        .filter(|url| !url.starts_with(&format!("{origin}/")) && !url.starts_with("data:"))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "requests left the origin: {elsewhere:?}"
    );
}

/// The session cookie is refused without the CSRF header, and from another origin.
#[tokio::test]
async fn a_session_needs_its_csrf_token_and_its_origin() {
    let server = TestServer::start().await;
    let client = server.client();
    let signed_in = client
        .post(server.url("/api/ui/session"))
        .json(&json!({"token": server.token()}))
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed_in.status(), StatusCode::CREATED);
    let set_cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
    let csrf = signed_in.json::<Value>().await.expect("json")["csrfToken"]
        .as_str()
        .expect("csrf token")
        .to_owned();
    let list = |headers: &[(&str, &str)]| {
        let mut request = client
            .post(server.url("/api/admin/read-keys"))
            .header("cookie", &cookie)
            .json(&json!({"name": "wall"}));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    assert_eq!(
        list(&[]).await.expect("sent").status(),
        StatusCode::FORBIDDEN
    );
    let origin = server.url("");
    let cross = list(&[
        ("x-datapool-csrf", &csrf),
        ("origin", "https://elsewhere.example"),
    ]);
    assert_eq!(cross.await.expect("sent").status(), StatusCode::FORBIDDEN);
    let good = list(&[
        ("x-datapool-csrf", &csrf),
        ("origin", &origin),
        ("sec-fetch-site", "same-origin"),
    ]);
    assert_eq!(good.await.expect("sent").status(), StatusCode::CREATED);
    // The event stream, which EventSource opens without custom headers, takes the
    // cookie only where the browser marks the request as from the same origin.
    let events = |site: Option<&str>| {
        let mut request = client
            .get(server.url("/api/streams/sales/events"))
            .header("cookie", &cookie);
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        request.send()
    };
    let unmarked = events(None).await.expect("sent").status();
    assert_eq!(unmarked, StatusCode::FORBIDDEN);
    let cross = events(Some("cross-site")).await.expect("sent").status();
    assert_eq!(cross, StatusCode::FORBIDDEN);
    let same = events(Some("same-origin")).await.expect("sent");
    assert_eq!(same.status(), StatusCode::OK);
    drop(same);
    // A key in the query string stays refused for anything but a read key on events.
    let query = client
        .get(server.url(&format!("/api/admin/connectors?key={}", server.token())))
        .send()
        .await
        .expect("sent");
    assert_eq!(query.status(), StatusCode::UNAUTHORIZED);
    let out = client
        .delete(server.url("/api/ui/session"))
        .header("cookie", &cookie)
        .header("x-datapool-csrf", &csrf)
        .send()
        .await
        .expect("sign out");
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let after = list(&[("x-datapool-csrf", &csrf)]).await.expect("sent");
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    let page = client.get(server.url("/")).send().await.expect("page");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        policy.starts_with("default-src 'self'") && !policy.contains("unsafe-inline"),
        "{policy}"
    );
}

/// Failed sign-ins count toward the failed-credential limit like any bad token.
#[tokio::test]
async fn failed_sign_ins_are_limited() {
    let server = TestServer::start().await;
    let client = server.client();
    let mut statuses = Vec::new();
    for _ in 0..21 {
        let answer = client
            .post(server.url("/api/ui/session"))
            .json(&json!({"token": "at_000000000000_wrongwrongwrongwrongwrongwrongwrongwrong"}))
            .send()
            .await
            .expect("sent");
        statuses.push(answer.status());
    }
    assert!(
        statuses[..20]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(statuses[20], StatusCode::TOO_MANY_REQUESTS);
    let right = client
        .post(server.url("/api/ui/session"))
        .json(&json!({"token": server.token()}))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        right.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right token waits"
    );
}

/// Screenshots of each page at 1280 px for the README, written to docs/screenshots/.
/// Run on purpose: `cargo nextest run --locked --test ui --run-ignored only`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "writes docs/screenshots; run when the pages change"]
async fn screenshots_of_every_page() {
    let Some((server, browser)) = start().await else {
        return;
    };
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&out).expect("screenshots dir");
    let shot = async |name: &str| {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        browser
            .driver
            .screenshot(&out.join(format!("{name}.png")))
            .await
            .expect("screenshot");
    };
    let (_, key) = common::create_connector(
        &server,
        &json!({"name": "Sales feed", "type": "webhook", "stream": "sales", "itemKey": "region"}),
    )
    .await;
    common::create_connector(
        &server,
        &json!({"name": "Warehouse stock", "type": "sql", "stream": "stock", "enabled": false,
                "settings": {"connectionString": "postgres://reader:secret@db.internal:5432/erp", "query": "select sku, qty from stock"}}),
    )
    .await;
    let receiver = Receiver::start().await;
    let created = server
        .admin(
            Method::POST,
            "/api/admin/subscriptions",
            Some(&json!({"name": "Reports", "url": receiver.url("/hook"),
                         "events": ["item.created", "item.updated"], "secret": "generate"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    for (region, sales) in [
        ("north", 1200),
        ("south", 870),
        ("east", 1430),
        ("west", 990),
    ] {
        push_ok(
            &server,
            "sales",
            &key,
            &json!({"region": region, "sales": sales, "manager": {"name": "Ann"}}),
        )
        .await;
    }
    receiver.wait_for(4, PATIENCE).await;
    let snapshots = json!({"snapshots": {"enabled": true, "retentionDays": 90}});
    let on = server
        .admin(Method::PATCH, "/api/admin/streams/sales", Some(&snapshots))
        .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    for sales in [1250, 1180, 1320, 1290, 1410] {
        push_ok(
            &server,
            "sales",
            &key,
            &json!({"region": "north", "sales": sales}),
        )
        .await;
    }
    common::wait_for_item(&server, "sales", "north", |item| {
        item["fields"]["sales"] == json!(1410)
    })
    .await;

    browser.driver.goto(server.url("/")).await.expect("open");
    browser.find_text(By::Css("h1"), "Sign in").await;
    shot("sign-in").await;
    sign_in(&server, &browser, &server.token()).await;
    browser.find(By::Css("#sources")).await;
    shot("data-sources").await;
    open_link(&browser, "a.button", "New connector").await;
    browser.click_button("Next").await;
    browser.fill("Name", "Orders").await;
    browser.click_button("Next").await;
    browser.fill("Stream", "orders").await;
    browser.fill("Item key (optional)", "region").await;
    browser.click_button("Next").await;
    browser.click_button("Run test").await;
    browser.find(By::Css("#test-result td")).await;
    shot("wizard-test").await;
    browser.click_button("Next").await;
    browser.click_button("Save & activate").await;
    browser.find(By::Id("ingest-key")).await;
    shot("wizard-key-once").await;
    open_link(&browser, "a.button", "Done").await;
    browser.find_text(By::Css("h2"), "Log").await;
    shot("connector-detail").await;
    navigate(&browser, "Explorer").await;
    browser
        .find(By::XPath(
            "//li[@data-stream='sales']/button[contains(@class,'tree-toggle')]",
        ))
        .await
        .click()
        .await
        .expect("expand");
    open_stream(&browser, "sales").await;
    open_field(&browser, "north", "sales").await;
    browser
        .find(By::Css("#field-panel svg.sparkline polyline"))
        .await;
    // Tall enough for the stream's snapshots, its items and the field's history at once.
    browser
        .driver
        .set_window_rect(0, 0, 1280, 1400)
        .await
        .expect("a taller window");
    browser
        .driver
        .execute("window.scrollTo(0, 0);", vec![])
        .await
        .expect("scroll to the top");
    shot("explorer").await;
    browser
        .driver
        .set_window_rect(0, 0, 1280, 900)
        .await
        .expect("the usual window");
    navigate(&browser, "Webhooks").await;
    browser.find(By::Css("#subscriptions")).await;
    shot("webhooks").await;
    open_link(&browser, "#subscriptions a", "Reports").await;
    browser.find_text(By::Css("h2"), "Delivery log").await;
    shot("webhook-detail").await;
    browser
        .driver
        .set_window_rect(0, 0, 390, 844)
        .await
        .expect("phone width");
    navigate(&browser, "Data Sources").await;
    browser.find(By::Css("#sources")).await;
    shot("data-sources-phone").await;
    browser.quit().await;
}
