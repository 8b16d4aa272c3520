//! The browser harness the web app's tests share: ChromeDriver on an ephemeral port,
//! headless Chromium driven through WebDriver (fantoccini), and waiting on the page.
//!
//! Needs `chromium` and `chromedriver` (`bash .ci/deps` installs them): without them a test
//! fails ([`require_browser`]), it is never skipped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long one condition in the page may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The browser and its driver, as installed by the Debian packages.
pub const CHROMIUM: &str = "/usr/bin/chromium";

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// ChromeDriver, started by this test. When dropped it ends the browser session if the test
/// stopped before closing it (ChromeDriver then quits the browser it started), and kills the
/// driver by its own process id (never a process group).
pub struct Driver {
    child: Child,
    /// The port ChromeDriver listens on.
    pub port: u16,
    /// The WebDriver session still open, if any.
    pub session: Arc<Mutex<Option<String>>>,
}

impl Driver {
    /// Starts ChromeDriver on an ephemeral port and reads back the port it chose.
    pub fn start() -> Driver {
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER} ({e}): run bash .ci/deps"));
        let stdout = child.stdout.take().expect("chromedriver's stdout");
        // "ChromeDriver was started successfully on port 37279."
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let mut sent = false;
            // Keep reading to the end so the driver never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(rest) = line.split("started successfully on port ").nth(1) {
                        let _ = tx.send(rest.trim_end_matches('.').trim().parse::<u16>().ok());
                        sent = true;
                    }
                }
            }
        });
        let mut driver = Driver {
            child,
            port: 0,
            session: Arc::new(Mutex::new(None)),
        };
        match rx.recv_timeout(DEADLINE) {
            Ok(Some(port)) => driver.port = port,
            other => panic!("chromedriver did not report its port ({other:?})"),
        }
        driver
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let open = self.session.lock().ok().and_then(|mut s| s.take());
        if let Some(id) = open {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(20)))
                .build()
                .into();
            let _ = agent.delete(&format!("{}/session/{id}", self.url())).call();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails (never skips) when Chromium or ChromeDriver is missing.
pub fn require_browser() {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(bin).is_file(),
            "{bin} is missing: the browser test needs Chromium and ChromeDriver; run bash .ci/deps"
        );
    }
}

/// The runtime a test drives the browser from.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The workspace's target directory (this test binary lives in target/<profile>/deps).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
        .or_else(|| exe.parent()?.parent()?.parent().map(Path::to_path_buf))
        .expect("a target directory")
}

/// The visible text of the first element matching `css` ("" if there is none).
pub async fn text_of(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until the element matching `css` shows `needle`; returns its text.
pub async fn wait_text(c: &Client, css: &str, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let text = text_of(c, css).await;
        if text.contains(needle) {
            return text;
        }
        if start.elapsed() > DEADLINE {
            let error = text_of(c, "#error").await;
            let status = text_of(c, "#status").await;
            panic!(
                "timed out after {DEADLINE:?} waiting for `{css}` to show {needle:?}.\n\
                 It shows: {text:?}\nError box: {error:?}\nStatus: {status:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until an element matching `css` exists (and returns it).
pub async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(DEADLINE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` in the page within {DEADLINE:?}: {e}"))
}

pub async fn click(c: &Client, css: &str) {
    wait_for(c, css)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}"));
}

pub async fn type_into(c: &Client, css: &str, text: &str) {
    let e = wait_for(c, css).await;
    e.clear().await.expect("clear a field");
    e.send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("cannot type into `{css}`: {e}"));
}

/// Starts a browser session (its profile in `profile`) through `driver`.
pub async fn browser(driver: &Driver, profile: &Path) -> Client {
    browser_with(driver, profile, None).await
}

/// [`browser`], saving downloads into `downloads` when given.
pub async fn browser_with(driver: &Driver, profile: &Path, downloads: Option<&Path>) -> Client {
    let mut caps = serde_json::Map::new();
    let mut options = json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,1200",
                format!("--user-data-dir={}", profile.display()),
            ],
    });
    if let Some(dir) = downloads {
        options["prefs"] = json!({
            "download.default_directory": dir.display().to_string(),
            "download.prompt_for_download": false,
        });
    }
    caps.insert("goog:chromeOptions".into(), options);
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url())
        .await
        .unwrap_or_else(|e| panic!("cannot start a Chromium session through chromedriver: {e}"));
    *driver.session.lock().expect("the session slot") =
        client.session_id().await.expect("the session id");
    client
}

/// The options of a `<select>`, by value.
pub async fn options(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for o in c
        .find_all(Locator::Css(&format!("{css} option")))
        .await
        .unwrap_or_default()
    {
        out.push(o.attr("value").await.ok().flatten().unwrap_or_default());
    }
    out
}

/// Signs in to the web app at `base` with `token`.
pub async fn sign_in(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{}/", base.trim_end_matches('/')))
        .await
        .expect("open the app");
    type_into(c, "#token", token).await;
    click(c, "#sign-in-form button[type=submit]").await;
}

/// The value of a form field (an input or a textarea), waiting until it is not empty.
pub async fn wait_value(c: &Client, css: &str) -> String {
    let start = Instant::now();
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            let v = e.prop("value").await.ok().flatten().unwrap_or_default();
            if !v.is_empty() {
                return v;
            }
        }
        if start.elapsed() > DEADLINE {
            panic!(
                "`{css}` has no value within {DEADLINE:?}; error box: {:?}",
                text_of(c, "#error").await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn screenshot(png: &[u8], name: &str) {
    let dir = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("the artifacts directory");
    let shot = dir.join(name);
    std::fs::write(&shot, png).expect("write the screenshot");
    println!("screenshot: {}", shot.display());
}

/// A script's answer as a number (0 when it is not one).
pub async fn js_number(c: &Client, script: &str, args: Vec<Value>) -> u64 {
    c.execute(script, args)
        .await
        .unwrap_or_else(|e| panic!("the page cannot run {script:?}: {e}"))
        .as_u64()
        .unwrap_or(0)
}

/// A script's answer as text ("" when it is not text).
pub async fn js_text(c: &Client, script: &str, args: Vec<Value>) -> String {
    c.execute(script, args)
        .await
        .unwrap_or_else(|e| panic!("the page cannot run {script:?}: {e}"))
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The marks of series `series` in the chart of `measure` (its `data-measure`).
pub async fn chart_points(c: &Client, measure: &str, series: u32) -> u64 {
    js_number(
        c,
        "const f = [...document.querySelectorAll('figure.trend')]\
           .find((x) => x.dataset.measure === arguments[0]); \
         return f ? f.querySelectorAll(`svg .series-${arguments[1]} .point`).length : 0;",
        vec![json!(measure), json!(series)],
    )
    .await
}

/// Opens the table behind the chart of `measure` and returns its body's rows' texts.
pub async fn chart_table(c: &Client, measure: &str) -> Vec<String> {
    let rows = c
        .execute(
            "const f = [...document.querySelectorAll('figure.trend')]\
               .find((x) => x.dataset.measure === arguments[0]); \
             const b = f.querySelector('button.trend-toggle'); \
             if (b.getAttribute('aria-expanded') !== 'true') b.click(); \
             const box = document.getElementById(b.getAttribute('aria-controls')); \
             if (box.hidden) return null; \
             return [...box.querySelectorAll('table tbody tr')].map((r) => r.textContent);",
            vec![json!(measure)],
        )
        .await
        .unwrap_or_else(|e| panic!("cannot open the table of {measure}: {e}"));
    rows.as_array()
        .unwrap_or_else(|| panic!("the table of {measure} is not shown: {rows}"))
        .iter()
        .map(|r| r.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The aria-label of the chart of `measure` ("" when it has no chart).
pub async fn chart_label(c: &Client, measure: &str) -> String {
    js_text(
        c,
        "const f = [...document.querySelectorAll('figure.trend')]\
           .find((x) => x.dataset.measure === arguments[0]); \
         const s = f && f.querySelector('svg[role=img]'); \
         return s ? s.getAttribute('aria-label') : '';",
        vec![json!(measure)],
    )
    .await
}

/// Waits until the chart of `measure` is in the page.
pub async fn wait_chart(c: &Client, measure: &str) {
    let start = Instant::now();
    loop {
        let n = js_number(
            c,
            "return [...document.querySelectorAll('figure.trend')]\
               .filter((x) => x.dataset.measure === arguments[0]).length;",
            vec![json!(measure)],
        )
        .await;
        if n == 1 {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no chart of {measure} within {DEADLINE:?}; panel: {:?}; error: {:?}",
            text_of(c, "#panel").await,
            text_of(c, "#error").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The API token in `p`'s home (`api-token`), for signing in to the web app.
pub fn api_token(p: &crate::cli_support::Person) -> String {
    std::fs::read_to_string(p.dir().join("api-token"))
        .expect("the home's api-token")
        .trim()
        .to_owned()
}

/// Opens the web app's "Add an entry" tab with `category` chosen.
pub async fn add_form_for(c: &Client, category: &str) {
    click(c, "#tab-add").await;
    wait_for(c, "#add-category")
        .await
        .select_by_value(category)
        .await
        .unwrap_or_else(|e| panic!("{category} is offered in the add form: {e}"));
}
