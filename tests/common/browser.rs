//! A real browser for the web UI tests: Debian's Chromium, headless, driven through
//! chromedriver (WebDriver) on a free port, with its console and network logs kept so
//! a test can assert that no script failed and no request left the server's origin.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::{json, Value};
use thirtyfour::common::command::FormatRequestData;
use thirtyfour::components::SelectElement;
use thirtyfour::prelude::*;
use thirtyfour::{ChromeCapabilities, ChromiumLikeCapabilities, RequestData, SessionId};

/// How long a page may take to show what a test waits for: a debug build of the
/// server on a busy machine, plus the UI's own refresh intervals (3 s).
pub const PATIENCE: Duration = Duration::from_secs(20);
/// How long chromedriver may take to start answering.
const DRIVER_START: Duration = Duration::from_secs(20);

/// Chromium and chromedriver, started for one test; both stop on drop.
pub struct Browser {
    /// The WebDriver session.
    pub driver: WebDriver,
    chromedriver: Child,
    _profile: tempfile::TempDir,
}

/// The first of `names` found on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A free local port (bound and released; chromedriver takes it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// chromedriver's legacy log endpoint, which Chromium's console and performance logs
/// are read through (`goog:loggingPrefs`); W3C WebDriver has none.
#[derive(Debug)]
struct ReadLog(&'static str);

impl FormatRequestData for ReadLog {
    fn format_request(&self, session_id: &SessionId) -> RequestData {
        RequestData::new(Method::POST, format!("/session/{session_id}/se/log"))
            .add_body(json!({ "type": self.0 }))
    }
}

impl Browser {
    /// A headless Chromium at 1280 × 900 that accepts the test server's self-signed
    /// certificate, or `None` (with the reason printed) when Chromium or chromedriver
    /// is not installed; under CI=true their absence fails the test instead.
    pub async fn start() -> Option<Browser> {
        let chromium = on_path(&["chromium", "chromium-browser"]);
        let chromedriver = on_path(&["chromedriver"]);
        let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
            let why =
                "chromium and chromedriver are needed (apt-get install chromium chromium-driver)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
            eprintln!("skipping the browser test: {why}");
            return None;
        };
        let port = free_port();
        let driver_process = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        wait_for_port(port);
        let profile = tempfile::tempdir().expect("profile dir");
        let driver = WebDriver::new(
            format!("http://127.0.0.1:{port}"),
            capabilities(&chromium, profile.path()),
        )
        .await
        .expect("a WebDriver session with Chromium");
        let browser = Browser {
            driver,
            chromedriver: driver_process,
            _profile: profile,
        };
        // Chromium opens on its own new-tab page; leave it and forget what it loaded,
        // so the logs hold only what the test's pages do.
        browser
            .driver
            .goto("about:blank")
            .await
            .expect("a blank page");
        browser.log("performance").await;
        browser.log("browser").await;
        Some(browser)
    }

    /// The entries of a Chromium log (`browser` for the console, `performance` for
    /// DevTools events) since the last read.
    pub async fn log(&self, kind: &'static str) -> Vec<Value> {
        let answer = self
            .driver
            .handle
            .cmd(ReadLog(kind))
            .await
            .expect("read the browser log");
        answer.value::<Vec<Value>>().expect("log entries")
    }

    /// The first element matching `by`, waiting for it up to [`PATIENCE`].
    pub async fn find(&self, by: By) -> WebElement {
        self.find_text(by, "").await
    }

    /// The first element matching `by` whose text contains `text`, waiting for it up
    /// to [`PATIENCE`]. Pages re-render as data arrives, so an element that goes stale
    /// while being read is looked for again.
    pub async fn find_text(&self, by: By, text: &str) -> WebElement {
        let deadline = Instant::now() + PATIENCE;
        loop {
            for element in self.driver.find_all(by.clone()).await.unwrap_or_default() {
                if element.text().await.is_ok_and(|t| t.contains(text)) {
                    return element;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "{by:?} with text {text:?} did not appear{}",
                    self.situation().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the page shows and what its console said, for a failure message.
    async fn situation(&self) -> String {
        let script = "return location.hash + '\\n' + document.body.innerText;";
        let text = match self.driver.execute(script, vec![]).await {
            Ok(ret) => ret.convert::<String>().unwrap_or_default(),
            Err(error) => format!("(no page text: {error})"),
        };
        format!("\npage:\n{text}\nconsole: {:#?}", self.log("browser").await)
    }

    /// Clicks the button whose text is exactly `name`.
    pub async fn click_button(&self, name: &str) {
        let xpath = format!("//button[normalize-space()='{name}']");
        self.find(By::XPath(&xpath))
            .await
            .click()
            .await
            .expect("click");
    }

    /// Types `text` into the input labelled `label`.
    pub async fn fill(&self, label: &str, text: &str) {
        let input = self.control(label).await;
        input.clear().await.expect("clear");
        input.send_keys(text).await.expect("type");
    }

    /// Chooses the option shown as `option` in the select labelled `label`.
    pub async fn choose(&self, label: &str, option: &str) {
        let select = SelectElement::new(&self.control(label).await)
            .await
            .expect("a select");
        select
            .select_by_visible_text(option)
            .await
            .expect("the option");
    }

    /// The control the label reading `label` names.
    pub async fn control(&self, label: &str) -> WebElement {
        let xpath = format!("//label[normalize-space()='{label}']");
        let label = self.find(By::XPath(&xpath)).await;
        let id = label
            .attr("for")
            .await
            .expect("label attribute")
            .expect("label names its control");
        self.find(By::Id(&id)).await
    }

    /// Waits until `check` holds, polling every 100 ms; fails with `what` after
    /// [`PATIENCE`].
    pub async fn until(&self, what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the session and chromedriver.
    pub async fn quit(mut self) {
        let _ = self.driver.clone().quit().await;
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.chromedriver.kill();
    }
}

fn capabilities(chromium: &Path, profile: &Path) -> ChromeCapabilities {
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary(&chromium.to_string_lossy())
        .expect("binary");
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        // The test server's certificate is self-signed; the browser visits nothing else
        // (the test asserts that from the network log).
        "--ignore-certificate-errors",
        "--window-size=1280,900",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    ] {
        caps.add_arg(arg).expect("argument");
    }
    caps.add_arg(&format!("--user-data-dir={}", profile.display()))
        .expect("argument");
    caps.insert_base_capability(
        "goog:loggingPrefs".into(),
        json!({"browser": "ALL", "performance": "ALL"}),
    );
    caps
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + DRIVER_START;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}
