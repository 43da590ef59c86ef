//! The seed's steps 1–3 in a real browser: headless Chromium driven through
//! chromedriver, clicking and typing as a person would, with the dashboard's
//! JavaScript active. The outcome is then checked in the database.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium`
//! and `chromium-driver`). Without them the test says loudly that it skipped;
//! with `CI=true` it fails instead.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Backend, TestApp};
use diesel::prelude::*;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use flagpole::db::schema::{environments, flags, organizations, rules, targets};
use serde_json::json;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const WAIT: Duration = Duration::from_secs(20);
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// A chromedriver process on a free port; killed when dropped, even when the test panics.
struct Chromedriver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // chromedriver runs in a process group of its own, so the browser it
        // started goes too, even when the session was never closed.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts chromedriver and a headless Chromium session, or returns `None`
/// (after saying so, or failing under CI) when they are not installed.
async fn start_browser() -> Option<(Chromedriver, Client)> {
    for binary in [CHROMEDRIVER, CHROMIUM] {
        if !Path::new(binary).exists() {
            crate::common::skip(
                "Chromium",
                &format!(
                    "{binary} is missing; install Debian's chromium and chromium-driver packages"
                ),
            );
            return None;
        }
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let mut driver = Chromedriver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: tempfile::tempdir().expect("a profile directory"),
    };

    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(resp) = http.get(format!("{}/status", driver.url)).send().await {
            if resp.status().is_success() {
                break;
            }
        }
        if let Ok(Some(status)) = driver.child.try_wait() {
            panic!("chromedriver exited at start with {status}");
        }
        assert!(
            started.elapsed() < WAIT,
            "chromedriver did not answer on port {port} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let profile = driver._profile.path().display().to_string();
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
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
                format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                format!("--user-data-dir={profile}"),
            ],
        }),
    );
    let client = ClientBuilder::native()
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("a Chromium session through chromedriver: {e}"));
    Some((driver, client))
}

/// A browser page under test: the WebDriver client plus where the app and screenshots are.
struct Browser {
    c: Client,
    base: String,
    shots: PathBuf,
    prefix: &'static str,
}

/// An XPath string literal for any text (XPath 1.0 has no escapes).
fn xpath_literal(text: &str) -> String {
    if !text.contains('\'') {
        format!("'{text}'")
    } else if !text.contains('"') {
        format!("\"{text}\"")
    } else {
        let parts: Vec<String> = text.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

impl Browser {
    async fn open(&self, path: &str) {
        self.c
            .goto(&format!("{}{}", self.base, path))
            .await
            .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    }

    async fn path(&self) -> String {
        let url = self.c.current_url().await.expect("the current URL");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Waits for an element, failing with the page's address and text when it never shows.
    async fn wait_xpath(&self, xpath: &str, what: &str) -> Element {
        match self
            .c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::XPath(xpath))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let path = self.path().await;
                let text = match self.c.find(Locator::Css("body")).await {
                    Ok(body) => body.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!("{what} did not appear on {path} ({e}); the page says:\n{text}");
            }
        }
    }

    /// The form control whose `<label>` reads `label`, as a person finds it.
    async fn field(&self, label: &str) -> Element {
        let xpath = format!("//label[normalize-space()={}]", xpath_literal(label));
        let label_el = self
            .wait_xpath(&xpath, &format!("the label {label:?}"))
            .await;
        let id = label_el
            .attr("for")
            .await
            .expect("the label's for attribute")
            .unwrap_or_else(|| panic!("the label {label:?} names its control"));
        self.c
            .find(Locator::Id(&id))
            .await
            .unwrap_or_else(|e| panic!("the control labelled {label:?}: {e}"))
    }

    /// Types into the field labelled `label`, replacing what it held.
    async fn fill(&self, label: &str, text: &str) {
        let input = self.field(label).await;
        input.clear().await.expect("clearing a field");
        input
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {label:?}: {e}"));
    }

    /// A visible button or link whose accessible name (text or aria-label) is `name`.
    async fn control(&self, name: &str) -> Element {
        let lit = xpath_literal(name);
        let xpath = format!(
            "(//button[(normalize-space()={lit} or @aria-label={lit}) and not(@aria-hidden='true')] \
             | //a[normalize-space()={lit} or @aria-label={lit}])[1]"
        );
        self.wait_xpath(&xpath, &format!("the control {name:?}"))
            .await
    }

    async fn click(&self, name: &str) {
        self.control(name)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {name:?}: {e}"));
    }

    /// Waits until a heading reads `text` (the sign that a page has loaded).
    async fn heading(&self, text: &str) {
        let xpath = format!("//h1[normalize-space()={}]", xpath_literal(text));
        self.wait_xpath(&xpath, &format!("the heading {text:?}"))
            .await;
    }

    /// Waits until some element's own text contains `text`.
    async fn sees(&self, text: &str) {
        let xpath = format!("//*[contains(normalize-space(), {})]", xpath_literal(text));
        self.wait_xpath(&xpath, &format!("the text {text:?}")).await;
    }

    async fn script(&self, js: &str) -> serde_json::Value {
        self.c
            .execute(js, vec![])
            .await
            .unwrap_or_else(|e| panic!("running {js:?}: {e}"))
    }

    async fn resize(&self, (w, h): (u32, u32)) {
        self.c.set_window_size(w, h).await.expect("resizing");
    }

    /// Saves a PNG of the whole page (the window is stretched to the page's height).
    async fn screenshot(&self, name: &str) {
        let (w, h) = self.c.get_window_size().await.expect("the window size");
        let inner = self.script("return window.innerHeight").await;
        let full = self
            .script("return document.documentElement.scrollHeight")
            .await;
        let chrome = h.saturating_sub(inner.as_u64().unwrap_or(h));
        let full = full
            .as_u64()
            .unwrap_or(h)
            .clamp(h.saturating_sub(chrome), 4000);
        self.c
            .set_window_size(w as u32, (full + chrome) as u32)
            .await
            .expect("stretching the window");
        let png = self.c.screenshot().await.expect("a screenshot");
        self.c
            .set_window_size(w as u32, h as u32)
            .await
            .expect("restoring the window");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = self.shots.join(format!("{}-{name}.png", self.prefix));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("screenshot: {}", path.display());
    }

    /// Fails when the page is wider than the window (sideways scrolling).
    async fn assert_no_sideways_scroll(&self, page: &str) {
        let widths = self
            .script("return [document.documentElement.scrollWidth, window.innerWidth]")
            .await;
        let (scroll, inner) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
        assert!(
            scroll <= inner,
            "{page} is {scroll}px wide in a {inner}px window"
        );
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("target/screenshots");
    dir
}

async fn first_admin_to_enabled_flag_in_production(app: TestApp) {
    let Some((_driver, client)) = start_browser().await else {
        return;
    };
    let b = Browser {
        c: client,
        base: app.base.clone(),
        shots: screenshots_dir(),
        prefix: match app.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        },
    };
    // Run the scenario as its own task so that the browser is closed even when it fails.
    let client = b.c.clone();
    let outcome = actix_web::rt::spawn(async move { scenario(&app, &b).await }).await;
    let _ = client.close().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the browser scenario did not finish: {e}"),
        }
    }
}

async fn scenario(app: &TestApp, b: &Browser) {
    let email = "ada@example.com";
    let password = "a long enough password";

    // First start: the one-time setup link creates the first admin.
    let setup_url = app
        .setup_url
        .clone()
        .expect("a fresh install prints a setup link");
    b.c.goto(&setup_url).await.expect("opening the setup link");
    b.heading("Create the first admin").await;
    b.fill("Email", email).await;
    b.fill("Password", password).await;
    b.fill("Repeat the password", password).await;
    b.click("Create admin").await;
    b.heading("Feature flags").await;
    b.sees("No feature flags yet").await;

    // Sign out, and back in.
    b.click("Sign out").await;
    b.heading("Sign in").await;
    b.fill("Email", email).await;
    b.fill("Password", password).await;
    b.click("Sign in").await;
    b.heading("Feature flags").await;
    assert_eq!(b.path().await, "/flags");

    // An organization to target.
    b.click("Organizations").await;
    b.heading("Organizations").await;
    b.click("New organization").await;
    b.heading("New organization").await;
    b.fill("Name", "Acme Inc").await;
    b.click("Create organization").await;
    b.heading("Acme Inc").await;

    // Step 1: create a feature flag.
    b.click("Feature flags").await;
    b.heading("Feature flags").await;
    b.click("Create feature flag").await;
    b.heading("Create feature flag").await;
    b.field("Name")
        .await
        .send_keys("Advanced reports")
        .await
        .expect("typing the name");
    let suggested = b.field("Slug").await.prop("value").await.unwrap();
    assert_eq!(
        suggested.as_deref(),
        Some("advanced-reports"),
        "the slug is suggested from the name"
    );
    b.fill("Slug", "advanced-reports").await;
    b.fill(
        "Description",
        "Pivot tables and scheduled exports for larger customers.",
    )
    .await;
    b.click("Create feature flag").await;
    b.heading("Advanced reports").await;
    assert_eq!(b.path().await, "/flags/advanced-reports");

    // Step 2: "Edit in Production" makes Production active and opens its rule editor.
    b.click("Edit in Production").await;
    b.wait_xpath(
        "//h1[contains(normalize-space(), 'Edit rule in') and contains(normalize-space(), 'Production')]",
        "the Production rule editor",
    )
    .await;
    assert_eq!(
        b.path().await,
        "/flags/advanced-reports/environments/production"
    );
    let switcher = b.field("Environment").await;
    let active = switcher
        .find(Locator::Css("option:checked"))
        .await
        .expect("the switcher's chosen option")
        .text()
        .await
        .unwrap();
    assert_eq!(active.trim(), "Production", "the header shows Production");

    // Some, then find and add Acme Inc.
    b.click_label("Some").await;
    assert!(b.field("Some").await.is_selected().await.unwrap());
    let search = b.field("Find users and organizations").await;
    assert_eq!(
        search.attr("type").await.unwrap().as_deref(),
        Some("search")
    );
    search.send_keys("Acme").await.expect("typing the search");
    b.click("Search").await;
    let add = b
        .wait_xpath(
            "//ul[@aria-label='Search results']/li[.//*[normalize-space()='Acme Inc']]//button[normalize-space()='Add']",
            "Acme Inc in the search results",
        )
        .await;
    b.screenshot("editor-search").await;
    add.click().await.expect("clicking Add");
    b.wait_xpath(
        "//ul[@aria-label='To add']/li[.//*[normalize-space()='Acme Inc']]",
        "Acme Inc among the targets to add",
    )
    .await;
    assert!(
        b.field("Some").await.is_selected().await.unwrap(),
        "the rule stays on Some"
    );
    b.click("Save").await;
    // Production asks before saving.
    let confirm = b.control("Confirm and save in Production").await;
    b.screenshot("editor-confirm").await;
    confirm.click().await.expect("confirming the save");
    b.heading("Advanced reports").await;
    b.sees("Saved the rule of Advanced reports in Production")
        .await;

    // Step 3: turn it on in Production, which asks for confirmation.
    let switch = b.control("Enabled in Production").await;
    assert_eq!(
        switch.attr("role").await.unwrap().as_deref(),
        Some("switch")
    );
    assert_eq!(
        switch.attr("aria-checked").await.unwrap().as_deref(),
        Some("false")
    );
    switch.click().await.expect("clicking the switch");
    b.heading("Turn Advanced reports on in Production?").await;
    b.screenshot("confirm").await;
    b.click("Turn on in Production").await;
    b.heading("Advanced reports").await;
    b.sees("Advanced reports is now on in Production").await;
    let switch = b.control("Enabled in Production").await;
    assert_eq!(
        switch.attr("aria-checked").await.unwrap().as_deref(),
        Some("true")
    );
    let staging_switch = b.control("Enabled in Staging").await;
    assert_eq!(
        staging_switch
            .attr("aria-checked")
            .await
            .unwrap()
            .as_deref(),
        Some("false")
    );
    // The page as it stays, without the one-time message.
    b.open("/flags/advanced-reports").await;
    b.heading("Advanced reports").await;
    b.screenshot("flag").await;

    // The list shows Production's state; the phone layout does not scroll sideways.
    b.click("Feature flags").await;
    b.heading("Feature flags").await;
    b.sees("1 target").await;
    b.screenshot("flags").await;
    b.resize(PHONE).await;
    b.open("/flags").await;
    b.heading("Feature flags").await;
    b.assert_no_sideways_scroll("/flags").await;
    b.screenshot("flags-phone").await;
    b.open("/flags/advanced-reports").await;
    b.heading("Advanced reports").await;
    b.assert_no_sideways_scroll("/flags/advanced-reports").await;
    b.screenshot("flag-phone").await;
    b.open("/flags/advanced-reports/environments/production")
        .await;
    b.sees("Who gets this flag in Production?").await;
    b.assert_no_sideways_scroll("the rule editor").await;
    b.screenshot("editor-phone").await;
    b.resize(DESKTOP).await;

    // An API key for Staging, shown once on the Environments page.
    b.click("Environments").await;
    b.heading("Environments").await;
    b.fill("Name of a new Staging key", "web backend").await;
    b.click("Create API key").await;
    b.sees("Copy the Staging key").await;
    b.screenshot("environments").await;
    b.open("/audit").await;
    b.heading("Audit log").await;
    b.screenshot("audit").await;

    // A webhook endpoint for Production hears of a flag created in the dashboard.
    webhook_step(b).await;

    // The header's switcher submits itself when another environment is chosen.
    b.open("/flags").await;
    b.heading("Feature flags").await;
    b.field("Environment")
        .await
        .select_by_label("Staging")
        .await
        .expect("choosing Staging");
    b.wait_xpath(
        "//div[@class='env-banner']/strong[normalize-space()='Staging']",
        "the Staging banner",
    )
    .await;
    b.sees("Rule in Staging").await;

    // What the clicks said is what the database holds.
    check_database(app);
}

/// A receiver for webhooks: a plain HTTP server on a thread that answers 200
/// and keeps each request's body.
fn start_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the receiver");
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("the stream"));
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                kept.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, bodies)
}

async fn webhook_step(b: &Browser) {
    let (url, received) = start_receiver();
    b.click("Webhooks").await;
    b.wait_xpath(
        "//h1[contains(normalize-space(), 'Webhooks') and contains(normalize-space(), 'Production')]",
        "the Webhooks page of Production",
    )
    .await;
    b.fill("URL", &url).await;
    b.fill("Description optional", "Release notes channel")
        .await;
    // Every event is ticked at first; this endpoint wants new flags only.
    for event in ["flag.updated", "flag.deleted", "flag.rule_updated"] {
        b.click_label(event).await;
    }
    b.click("Add endpoint").await;
    b.sees(&format!("Copy the signing secret of {url} now"))
        .await;
    let secret = b.field("Signing secret").await.prop("value").await.unwrap();
    assert!(
        secret.is_some_and(|s| s.starts_with("whsec_")),
        "the secret is shown"
    );
    b.screenshot("webhooks").await;

    b.click("Feature flags").await;
    b.click("Create feature flag").await;
    b.heading("Create feature flag").await;
    b.fill("Name", "Webhook canary").await;
    b.fill("Slug", "webhook-canary").await;
    b.click("Create feature flag").await;
    b.heading("Webhook canary").await;

    let deadline = Instant::now() + WAIT;
    while received.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no webhook arrived");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let event: serde_json::Value =
        serde_json::from_str(&received.lock().unwrap()[0]).expect("a JSON event");
    assert_eq!(event["event"], "flag.created");
    assert_eq!(event["data"]["slug"], "webhook-canary");

    // The endpoint's page lists the delivery and its attempt.
    b.click("Webhooks").await;
    b.control(&url)
        .await
        .click()
        .await
        .expect("opening the endpoint");
    b.sees("Recent deliveries").await;
    b.wait_xpath(
        "//tr[@class='delivery'][.//code[normalize-space()='flag.created']]//span[normalize-space()='Succeeded']",
        "the succeeded delivery",
    )
    .await;
    b.screenshot("webhook-endpoint").await;
}

impl Browser {
    /// Clicks the `<label>` reading `text`, as a person picks a radio option.
    async fn click_label(&self, text: &str) {
        let xpath = format!("//label[normalize-space()={}]", xpath_literal(text));
        self.wait_xpath(&xpath, &format!("the label {text:?}"))
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking the label {text:?}: {e}"));
    }
}

fn check_database(app: &TestApp) {
    let mut conn = app.conn();
    let flag_id: String = flags::table
        .filter(flags::slug.eq("advanced-reports"))
        .select(flags::id)
        .first(&mut *conn)
        .expect("the flag exists");
    let (name, description): (String, String) = flags::table
        .filter(flags::id.eq(&flag_id))
        .select((flags::name, flags::description))
        .first(&mut *conn)
        .unwrap();
    assert_eq!(name, "Advanced reports");
    assert_eq!(
        description,
        "Pivot tables and scheduled exports for larger customers."
    );
    let acme: String = organizations::table
        .filter(organizations::name.eq("Acme Inc"))
        .select(organizations::id)
        .first(&mut *conn)
        .expect("Acme Inc exists");
    let env_id = |conn: &mut flagpole::db::DbConn, slug: &str| -> String {
        environments::table
            .filter(environments::slug.eq(slug))
            .select(environments::id)
            .first(conn)
            .unwrap_or_else(|e| panic!("the {slug} environment: {e}"))
    };
    let production = env_id(&mut conn, "production");
    let staging = env_id(&mut conn, "staging");

    let rule = |conn: &mut flagpole::db::DbConn, env: &str| -> (String, bool) {
        rules::table
            .filter(rules::flag_id.eq(&flag_id))
            .filter(rules::environment_id.eq(env))
            .select((rules::mode, rules::enabled))
            .first(conn)
            .expect("a rule per environment")
    };
    let chosen = |conn: &mut flagpole::db::DbConn, env: &str| -> Vec<(String, String)> {
        targets::table
            .filter(targets::flag_id.eq(&flag_id))
            .filter(targets::environment_id.eq(env))
            .select((targets::target_type, targets::target_id))
            .load(conn)
            .unwrap()
    };
    assert_eq!(rule(&mut conn, &production), ("some".to_string(), true));
    assert_eq!(
        chosen(&mut conn, &production),
        vec![("organization".to_string(), acme)]
    );
    assert_eq!(rule(&mut conn, &staging), ("none".to_string(), false));
    assert!(chosen(&mut conn, &staging).is_empty());
}

on_both_backends!(first_admin_to_enabled_flag_in_production);
