//! The operator console in a real browser: headless Chromium driven through WebDriver
//! (`fantoccini` talking to Debian's `chromedriver`), against the real server on port 0.
//!
//! Each test opens its own [`Console`]: a server ([`spawn_app`], or one the test started), a
//! `chromedriver` of its own on a free port (its process group killed when dropped, so no
//! Chromium outlives a failed test) and one browser session whose `Accept-Language` the test
//! chooses. [`Console::screenshot`] saves the page at the two sizes the console is designed for
//! (1280×800 and a 390 px-wide phone) under `target/console-screenshots/` (not committed).
//!
//! Chromium and chromedriver come from Debian (`apt-get install chromium chromium-driver`;
//! `.ci/run` installs them). Without them the tests pass with a note, unless `CI` is set, where
//! a missing browser fails the run (as the PostgreSQL and nats-server tests do).
//!
//! A test reads:
//!
//! ```ignore
//! let Some(console) = Console::start("en").await else { return };
//! console.sign_in(ADMIN_TOKEN).await;
//! assert_eq!(console.text("h1").await, "Overview");
//! console.screenshot("overview").await;
//! console.finish().await;
//! ```

mod flows;
mod session;

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromedriver (package `chromium-driver`), of the same version.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The desktop size every page opens at and is shot at.
pub const DESKTOP: (u32, u32) = (1280, 800);
/// The phone size pages are also shot at (a 390 px-wide phone).
pub const PHONE: (u32, u32) = (390, 844);

/// How long to wait for the driver to answer, a page to change, or an element to appear.
const PATIENCE: Duration = Duration::from_secs(30);

/// The session cookie's name.
pub const SESSION_COOKIE: &str = ticketd::console::SESSION_COOKIE;

/// A `chromedriver` of the test's own. Dropping it kills its whole process group (the driver
/// and every Chromium it started, even when the test panicked before closing its session),
/// then removes the directory that held everything they wrote: the browser's profile and
/// their temporary files (their `TMPDIR`).
#[derive(Debug)]
struct Driver {
    child: Child,
    port: u16,
    /// Removed after the processes are killed (fields drop after `Drop::drop`).
    scratch: tempfile::TempDir,
}

impl Driver {
    /// Starts `chromedriver` on a free port and waits until it reports itself ready.
    async fn start() -> Self {
        let mut scratch = tempfile::Builder::new()
            .prefix("ticketd-chromium-")
            .tempdir()
            .expect("a temporary directory for the browser");
        let mut last = String::new();
        // The port is free when chosen; another process may take it before the driver binds,
        // so a driver that does not come up is tried again on another.
        for _ in 0..3 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .env("TMPDIR", scratch.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group, so that Drop can end the browsers with it.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));
            let mut driver = Self {
                child,
                port,
                scratch,
            };
            match driver.wait_ready().await {
                Ok(()) => return driver,
                Err(e) => last = e,
            }
            // Dropping it kills it; its directory goes too, so the next try has a new one.
            scratch = tempfile::Builder::new()
                .prefix("ticketd-chromium-")
                .tempdir()
                .expect("a temporary directory for the browser");
        }
        panic!("chromedriver did not become ready: {last}");
    }

    /// Polls `GET /status` until it says `ready`, the driver exits, or [`PATIENCE`] runs out.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let http = reqwest::Client::new();
        let status = format!("{}/status", self.url());
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(exit)) = self.child.try_wait() {
                return Err(format!("chromedriver exited: {exit}"));
            }
            if let Ok(r) = http.get(&status).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == json!(true) {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no ready answer at {status} within {PATIENCE:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The browser's profile directory (`--user-data-dir`), inside the driver's scratch
    /// directory.
    fn profile(&self) -> PathBuf {
        self.scratch.path().join("profile")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is the driver's pid (`process_group(0)`). The shell's builtin `kill`
        // reaches a group without a crate for signals (the workspace forbids `unsafe`); `-9
        // -PGID` is the form both dash and bash take.
        let group = self.child.id();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -9 -{group} 2>/dev/null"))
            .stdin(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this machine has the browser; `false` means skip (outside CI only: under `CI` a
/// missing browser panics). Says once, on the real stderr, how to install it.
pub fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "the console's browser tests need {} (Debian: apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set, so a missing browser fails the run: {message}"
    );
    static SAID: OnceLock<()> = OnceLock::new();
    SAID.get_or_init(|| {
        let _ = writeln!(std::io::stderr(), "note: skipping: {message}");
    });
    false
}

/// The WebDriver capabilities of a headless Chromium whose languages are `lang` (`en`,
/// `zh-CN`, …: both the UI language and the `Accept-Language` it sends), with its profile in
/// `profile`.
pub fn capabilities(lang: &str, profile: &Path) -> serde_json::Map<String, Value> {
    let (width, height) = DESKTOP;
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                // CI runs as root, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                // Docker's /dev/shm is small.
                "--disable-dev-shm-usage",
                format!("--window-size={width},{height}"),
                format!("--lang={lang}"),
                format!("--user-data-dir={}", profile.display()),
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
            ],
            // `--lang` sets the UI language; Accept-Language is this preference.
            "prefs": { "intl.accept_languages": lang },
        },
    });
    match caps {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object"),
    }
}

/// A browser on the console of a real server.
#[derive(Debug)]
pub struct Console {
    /// The server under test.
    pub app: TestApp,
    /// The WebDriver session, for what the helpers below do not cover.
    pub client: Client,
    driver: Driver,
}

// Not every test uses every helper; they are the harness for more pages' tests.
#[allow(dead_code)]
impl Console {
    /// A fresh server ([`spawn_app`]) and a browser speaking `lang`. `None`: no browser on this
    /// machine (outside CI), skip the test.
    pub async fn start(lang: &str) -> Option<Self> {
        if !browser_available() {
            return None;
        }
        Some(Self::open(spawn_app().await, lang).await)
    }

    /// A browser speaking `lang` on a server the test started (other settings or clock).
    /// `None`: no browser on this machine (outside CI), skip the test.
    pub async fn start_on(app: TestApp, lang: &str) -> Option<Self> {
        if !browser_available() {
            return None;
        }
        Some(Self::open(app, lang).await)
    }

    async fn open(app: TestApp, lang: &str) -> Self {
        let driver = Driver::start().await;
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities(lang, &driver.profile()))
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| panic!("a Chromium session through chromedriver: {e}"));
        let console = Self {
            app,
            client,
            driver,
        };
        console.resize(DESKTOP).await;
        console
    }

    /// Ends the browser session (Chromium quits and removes its profile), then stops the
    /// driver and the server. Call it at the end of a test; on a panic, Drop kills the
    /// browser instead.
    pub async fn finish(self) {
        let Self {
            app,
            client,
            driver,
        } = self;
        let _ = client.close().await;
        drop(driver);
        app.stop().await;
    }

    /// The server's URL of `path`.
    pub fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    /// Opens `path` (`/console/…`) and waits for it to load.
    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&self.url(path))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// The path of the page shown (without the query).
    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await
            .unwrap_or_else(|e| panic!("the current URL: {e}"))
            .path()
            .to_owned()
    }

    /// Waits until the page shown is `path` (after a click or a submitted form); panics with
    /// the path it stayed on.
    pub async fn wait_for_path(&self, path: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = self.path().await;
            if now == path {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected to land on {path}, still on {now}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the text of the first `css` element is `text` (a page that is still
    /// loading, or one a script navigated to); panics with the text it had.
    pub async fn wait_for_text(&self, css: &str, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = self.try_text(css).await;
            if now.as_deref() == Some(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected {css} to read {text:?}, it reads {now:?} on {}",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first element matching `css`; panics when there is none.
    pub async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("no {css} on {}: {e}", self.path().await),
        }
    }

    /// Every element matching `css`.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
    }

    /// Whether the page has an element matching `css`.
    pub async fn exists(&self, css: &str) -> bool {
        !self.find_all(css).await.is_empty()
    }

    /// The rendered text of the first element matching `css`; panics when there is none.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        element
            .text()
            .await
            .unwrap_or_else(|e| panic!("the text of {css}: {e}"))
    }

    /// The rendered text of the first element matching `css`, if there is one.
    pub async fn try_text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// The rendered texts of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for element in self.find_all(css).await {
            out.push(
                element
                    .text()
                    .await
                    .unwrap_or_else(|e| panic!("the text of {css}: {e}")),
            );
        }
        out
    }

    /// An attribute of the first element matching `css`.
    pub async fn attr(&self, css: &str, attribute: &str) -> Option<String> {
        self.find(css)
            .await
            .attr(attribute)
            .await
            .unwrap_or_else(|e| panic!("{css}'s {attribute}: {e}"))
    }

    /// Types `value` into the field named `name` (cleared first), as a user does.
    pub async fn fill(&self, name: &str, value: &str) {
        let field = self.find(&format!("[name=\"{name}\"]")).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {name}: {e}"));
        field
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("type into {name}: {e}"));
    }

    /// Types `value` into the field matching `css` (cleared first), as a user does: for a page
    /// with several fields of one name (the order page's refund and reversal `quantity`).
    pub async fn fill_in(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        field
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Chooses the option whose value is `value` in the `select` matching `css`.
    pub async fn choose(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choose {value:?} in {css}: {e}"));
    }

    /// The HTML of the page shown, as the browser holds it now (for "the page does not
    /// contain" checks: hidden fields and attributes included).
    pub async fn html(&self) -> String {
        match self
            .execute("return document.documentElement.outerHTML;")
            .await
        {
            Value::String(html) => html,
            other => panic!("the page's HTML: {other}"),
        }
    }

    /// Presses Enter in the field named `name`, as a keyboard user submits its form, and
    /// waits for the page that answers.
    pub async fn press_enter(&self, name: &str) {
        let field = self.find(&format!("[name=\"{name}\"]")).await;
        self.mark_page().await;
        field
            .send_keys(&char::from(Key::Enter).to_string())
            .await
            .unwrap_or_else(|e| panic!("Enter in {name}: {e}"));
        self.wait_for_new_page().await;
    }

    /// Submits the form matching `form_css` with its submit button, and waits for the page
    /// that answers.
    pub async fn submit(&self, form_css: &str) {
        let button = self
            .find(&format!(
                "{form_css} button[type=submit], {form_css} input[type=submit]"
            ))
            .await;
        self.mark_page().await;
        button
            .click()
            .await
            .unwrap_or_else(|e| panic!("submit {form_css}: {e}"));
        self.wait_for_new_page().await;
    }

    /// Clicks the first element matching `css` (without waiting for anything: for a link or a
    /// button, [`Console::click_link`] and [`Console::submit`] wait for the next page).
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Follows the link whose text is exactly `text`, and waits for the page it opens.
    pub async fn click_link(&self, text: &str) {
        let link = match self.client.find(Locator::LinkText(text)).await {
            Ok(link) => link,
            Err(e) => panic!("no link {text:?} on {}: {e}", self.path().await),
        };
        self.mark_page().await;
        link.click()
            .await
            .unwrap_or_else(|e| panic!("click {text:?}: {e}"));
        self.wait_for_new_page().await;
    }

    /// Marks the document shown, so that [`Console::wait_for_new_page`] can tell when another
    /// replaced it.
    pub async fn mark_page(&self) {
        self.execute("window.__ticketdSeen = true;").await;
    }

    /// Waits until the document marked by [`Console::mark_page`] was replaced by another that
    /// finished loading (after a link, a form, or a script that navigates).
    pub async fn wait_for_new_page(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // Mid-navigation, a script may fail (its document went away): not there yet.
            let fresh = self
                .client
                .execute(
                    "return window.__ticketdSeen === undefined \
                     && document.readyState === 'complete';",
                    Vec::new(),
                )
                .await;
            if matches!(fresh, Ok(Value::Bool(true))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no new page within {PATIENCE:?}; still on {}",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Signs in on `/console/login`: types `token` into the field `token` and presses Enter,
    /// then waits for the answer. Does not check it (a wrong token is a case tests check too).
    pub async fn sign_in(&self, token: &str) {
        self.goto("/console/login").await;
        self.fill("token", token).await;
        self.press_enter("token").await;
    }

    /// Signs out with the header's sign-out button and waits for the sign-in page.
    pub async fn sign_out(&self) {
        self.submit("form.signout").await;
        self.wait_for_path("/console/login").await;
    }

    /// The value of the browser's cookie `name` (HttpOnly ones too), if it has one.
    pub async fn cookie(&self, name: &str) -> Option<String> {
        let cookies = self
            .client
            .get_all_cookies()
            .await
            .unwrap_or_else(|e| panic!("the cookies: {e}"));
        cookies
            .iter()
            .find(|c| c.name() == name)
            .map(|c| c.value().to_owned())
    }

    /// Gives the browser the cookie `name=value` for `/console` (as a kept or stolen cookie
    /// would be sent back). Set by a script, so not `HttpOnly`, which the server cannot see;
    /// the page shown must be on the server. (WebDriver's Add Cookie refuses a cookie for an
    /// IP address host such as the test server's.)
    pub async fn set_cookie(&self, name: &str, value: &str) {
        let cookie =
            serde_json::to_string(&format!("{name}={value}; Path=/console; SameSite=Strict"))
                .unwrap();
        self.execute(&format!("document.cookie = {cookie};")).await;
        assert_eq!(
            self.cookie(name).await.as_deref(),
            Some(value),
            "cookie {name} set"
        );
    }

    /// Runs `script` in the page (WebDriver's execute: its CSP does not apply) and answers
    /// what it returned.
    pub async fn execute(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs `script` with a callback as its last argument (`arguments[0]` when none are
    /// given) and answers what it passed the callback.
    pub async fn execute_async(&self, script: &str) -> Value {
        self.client
            .execute_async(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Sets the viewport to `(width, height)` CSS pixels (the window's frame, if any, is
    /// added), and checks it took.
    pub async fn resize(&self, (width, height): (u32, u32)) {
        let mut outer = (width, height);
        for _ in 0..3 {
            self.client
                .set_window_size(outer.0, outer.1)
                .await
                .unwrap_or_else(|e| panic!("resize to {outer:?}: {e}"));
            let inner = self.viewport().await;
            if inner == (width, height) {
                return;
            }
            outer = (
                (outer.0 + width).saturating_sub(inner.0),
                (outer.1 + height).saturating_sub(inner.1),
            );
        }
        panic!(
            "the viewport stays {:?}, not {width}×{height}",
            self.viewport().await
        );
    }

    /// The viewport's size in CSS pixels.
    async fn viewport(&self) -> (u32, u32) {
        let v = self
            .execute("return [window.innerWidth, window.innerHeight];")
            .await;
        let n = |i: usize| v[i].as_u64().and_then(|n| u32::try_from(n).ok()).unwrap();
        (n(0), n(1))
    }

    /// Saves the page shown as `<name>-desktop.png` (1280×800) and `<name>-phone.png`
    /// (390×844) in [`screenshot_dir`], then puts the window back at the desktop size.
    /// Answers the two files.
    pub async fn screenshot(&self, name: &str) -> [PathBuf; 2] {
        self.shoot(name, None).await
    }

    /// As [`Console::screenshot`], with the page scrolled at each size so that the first
    /// element matching `css` is at the top of the viewport (a part of a long page that the
    /// top of it does not show, such as an order's timeline on a phone).
    pub async fn screenshot_at(&self, name: &str, css: &str) -> [PathBuf; 2] {
        self.shoot(name, Some(css)).await
    }

    async fn shoot(&self, name: &str, at: Option<&str>) -> [PathBuf; 2] {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut saved = Vec::new();
        for (suffix, size) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.resize(size).await;
            if let Some(css) = at {
                let css_json = serde_json::to_string(css).unwrap();
                let found = self
                    .execute(&format!(
                        "const e = document.querySelector({css_json}); \
                         if (e) {{ e.scrollIntoView({{block: 'start'}}); }} return !!e;"
                    ))
                    .await;
                assert_eq!(found, json!(true), "{name}-{suffix}: no {css} to scroll to");
            }
            let png = self
                .client
                .screenshot()
                .await
                .unwrap_or_else(|e| panic!("screenshot {name}-{suffix}: {e}"));
            assert_eq!(
                png_size(&png),
                Some(size),
                "{name}-{suffix}: a PNG of the viewport"
            );
            let path = dir.join(format!("{name}-{suffix}.png"));
            write_whole(&dir, &path, &png);
            saved.push(path);
        }
        self.resize(DESKTOP).await;
        let [desktop, phone]: [PathBuf; 2] = saved.try_into().unwrap();
        [desktop, phone]
    }
}

/// Writes `bytes` to `path` whole: into a new file of `dir` first, then renamed over `path`,
/// so that tests running at once never leave a file half one PNG and half another.
fn write_whole(dir: &Path, path: &Path, bytes: &[u8]) {
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .unwrap_or_else(|e| panic!("a temporary file in {}: {e}", dir.display()));
    file.write_all(bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    file.persist(path)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A PNG's (width, height), from its IHDR chunk.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.get(..8)? != b"\x89PNG\r\n\x1a\n" || png.get(12..16)? != b"IHDR" {
        return None;
    }
    let word = |at: usize| Some(u32::from_be_bytes(png.get(at..at + 4)?.try_into().ok()?));
    Some((word(16)?, word(20)?))
}

/// `target/console-screenshots` of the workspace: under `CARGO_TARGET_DIR` when set, else the
/// `target/` beside the workspace's Cargo.lock.
pub fn screenshot_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap_or(manifest);
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("console-screenshots")
}
