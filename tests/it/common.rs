//! Test support: starts the real Flagpole on a free port, on SQLite or on a
//! fresh PostgreSQL database, and drives it over HTTP like a browser would.
#![allow(dead_code)]

use std::net::TcpListener;

use actix_web::web::Data;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use flagpole::admins::{self, Role};
use flagpole::{AppState, Application, Config};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one test per backend for each named `async fn(TestApp)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    if let Some(app) = $crate::common::TestApp::spawn($crate::common::Backend::Sqlite).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    if let Some(app) = $crate::common::TestApp::spawn($crate::common::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Says loudly that something was skipped; in CI a skip is a failure.
pub fn skip(what: &str, why: &str) {
    if in_ci() {
        panic!("CI=true and {what} is unavailable: {why}");
    }
    eprintln!("\n!!! SKIPPED ({what} unavailable: {why}). Set CI=true to make this a failure.\n");
}

pub fn postgres_admin_url() -> String {
    std::env::var("FLAGPOLE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A PostgreSQL schema made for one test and dropped after it. Each test
/// gets its own schema in one shared database (the app connects with
/// `search_path` set to it), which costs a few milliseconds where a
/// database per test cost half a second.
struct PgSchema {
    admin_url: String,
    name: String,
}

impl PgSchema {
    fn create() -> Result<(Self, String), String> {
        let admin_url = postgres_admin_url();
        let mut conn = PgConnection::establish(&admin_url).map_err(|e| e.to_string())?;
        let name = format!(
            "flagpole_test_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        conn.batch_execute(&format!("CREATE SCHEMA {name}"))
            .map_err(|e| e.to_string())?;
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-csearch_path%3D{name}");
        Ok((Self { admin_url, name }, url))
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.admin_url) {
            let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// A running Flagpole for one test.
pub struct TestApp {
    pub backend: Backend,
    pub base: String,
    pub setup_url: Option<String>,
    pub state: Data<AppState>,
    pub database_url: String,
    _dir: tempfile::TempDir,
    _pg: Option<PgSchema>,
}

impl TestApp {
    /// Starts Flagpole on `backend`; `None` (after saying so) when PostgreSQL is unreachable outside CI.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Starts Flagpole with settings changed by `configure`.
    pub async fn spawn_with(
        backend: Backend,
        configure: impl FnOnce(&mut Config),
    ) -> Option<TestApp> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (database_url, pg) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("flagpole.db").display()),
                None,
            ),
            Backend::Postgres => match PgSchema::create() {
                Ok((db, url)) => (url, Some(db)),
                Err(e) => {
                    skip("PostgreSQL", &e);
                    return None;
                }
            },
        };
        let mut config = Config::new(
            database_url.clone(),
            "127.0.0.1:0".into(),
            "http://127.0.0.1".into(),
            dir.path().to_path_buf(),
            vec![7u8; 64],
        );
        config.pool_size = 4;
        config.http_workers = Some(1);
        config.signer_cache_ttl = std::time::Duration::from_secs(1);
        // The tests' webhook receivers listen on the loopback address.
        config.webhook_allow = flagpole::webhooks::guard::Guard::parse("127.0.0.1").unwrap();
        configure(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let app = Application::build_with_listener(config, listener)
            .await
            .expect("the app starts");
        let base = format!("http://127.0.0.1:{}", app.port());
        let setup_url = app.setup_url().map(str::to_string);
        let state = app.state();
        actix_web::rt::spawn(app.run_until_stopped());
        Some(TestApp {
            backend,
            base,
            setup_url,
            state,
            database_url,
            _dir: dir,
            _pg: pg,
        })
    }

    /// Another Flagpole instance on the same database, as behind a load balancer.
    pub async fn second_instance(&self) -> TestApp {
        self.second_instance_with(|_| {}).await
    }

    /// Another instance on the same database, with settings changed by `configure`.
    pub async fn second_instance_with(&self, configure: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::new(
            self.database_url.clone(),
            "127.0.0.1:0".into(),
            "http://127.0.0.1".into(),
            dir.path().to_path_buf(),
            vec![7u8; 64],
        );
        config.pool_size = 4;
        config.http_workers = Some(1);
        config.signer_cache_ttl = std::time::Duration::from_secs(1);
        config.webhook_allow = flagpole::webhooks::guard::Guard::parse("127.0.0.1").unwrap();
        configure(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let app = Application::build_with_listener(config, listener)
            .await
            .expect("the second instance starts");
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state();
        actix_web::rt::spawn(app.run_until_stopped());
        TestApp {
            backend: self.backend,
            base,
            setup_url: None,
            state,
            database_url: self.database_url.clone(),
            _dir: dir,
            _pg: None,
        }
    }

    /// A pooled connection, to check what the database holds or to make
    /// objects through the services. When it is dropped, this instance's
    /// model catches up with what was written, as after a request.
    pub fn conn(&self) -> Conn {
        Conn {
            conn: Some(self.state.pool.get().expect("a database connection")),
            state: self.state.clone(),
        }
    }

    /// A pooled connection that leaves the model alone: the caller applies
    /// the change log itself.
    pub fn pool_conn(&self) -> flagpole::db::PooledConn {
        self.state.pool.get().expect("a database connection")
    }

    /// A browser-like client with its own cookies, not signed in.
    pub fn client(&self) -> Client {
        self.client_with(reqwest::header::HeaderMap::new())
    }

    /// A client that says (through a proxy Flagpole trusts, see
    /// `trust_proxy`) it comes from `address`.
    pub fn client_from(&self, address: &str) -> Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", address.parse().expect("an address"));
        self.client_with(headers)
    }

    fn client_with(&self, headers: reqwest::header::HeaderMap) -> Client {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        Client {
            base: self.base.clone(),
            http: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .default_headers(headers)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            jar,
        }
    }

    /// A client that sends exactly this `Cookie` header, as a stolen or
    /// kept-back cookie would be replayed.
    pub fn client_with_cookie(&self, cookie: &str) -> Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("cookie", cookie.parse().expect("a cookie"));
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        Client {
            base: self.base.clone(),
            http: reqwest::Client::builder()
                .default_headers(headers)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            jar,
        }
    }

    /// Creates an admin with `role` in the database and signs them in.
    pub async fn signed_in(&self, email: &str, role: Role) -> Client {
        let mut conn = self.conn();
        admins::create(
            &mut conn,
            &crate::support::actor(),
            email,
            "correct horse battery",
            role,
        )
        .expect("admin created");
        drop(conn);
        let client = self.client();
        let page = client.login(email, "correct horse battery").await;
        assert_eq!(page.status, 303, "sign-in redirects: {}", page.body);
        client
    }

    /// An owner, signed in.
    pub async fn owner(&self) -> Client {
        self.signed_in("owner@example.com", Role::Owner).await
    }
}

/// Waits, up to `within`, for `check` to hold: for what another instance or
/// process changed to reach this one, as its poll brings it.
pub async fn eventually<F, Fut>(what: &str, within: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A pooled connection that brings the model up to date when dropped.
pub struct Conn {
    conn: Option<flagpole::db::PooledConn>,
    state: Data<AppState>,
}

impl std::ops::Deref for Conn {
    type Target = flagpole::db::DbConn;
    fn deref(&self) -> &Self::Target {
        self.conn.as_ref().expect("a connection")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn.as_mut().expect("a connection")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            if !std::thread::panicking() {
                self.state
                    .model
                    .catch_up(&mut conn)
                    .expect("the model catches up");
            }
        }
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    pub fn assert_contains(&self, text: &str) -> &Self {
        assert!(
            self.body.contains(text),
            "expected the page to contain {text:?}; status {}, body:\n{}",
            self.status,
            self.body
        );
        self
    }
}

/// A cookie-keeping client that fills in the CSRF token like the browser form would.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
}

/// The value of the first hidden `_csrf` input in `html`.
pub fn csrf_in(html: &str) -> Option<String> {
    let marker = "name=\"_csrf\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

impl Client {
    /// The `Cookie` header this client would send now.
    pub fn cookie_header(&self) -> String {
        use reqwest::cookie::CookieStore;
        let url: reqwest::Url = self.base.parse().expect("the base URL");
        self.jar
            .cookies(&url)
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .unwrap_or_default()
    }

    async fn answer(resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.unwrap_or_default();
        Page {
            status,
            location,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        let resp = self
            .http
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .expect("GET");
        Self::answer(resp).await
    }

    /// The session's CSRF token, read from a page as a browser would see it.
    pub async fn csrf(&self) -> String {
        let page = self.get("/flags").await;
        if let Some(token) = csrf_in(&page.body) {
            return token;
        }
        let page = self.get("/login").await;
        csrf_in(&page.body).expect("a page with a CSRF token")
    }

    /// Posts a form with the session's CSRF token added.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.csrf().await;
        let mut all: Vec<(&str, &str)> = vec![("_csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// Posts exactly these fields, with no CSRF token added.
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let resp = self
            .http
            .post(format!("{}{}", self.base, path))
            .form(fields)
            .send()
            .await
            .expect("POST");
        Self::answer(resp).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Page {
        let page = self.get("/login").await;
        let token = csrf_in(&page.body).expect("the sign-in form has a CSRF token");
        self.post_raw(
            "/login",
            &[("_csrf", &token), ("email", email), ("password", password)],
        )
        .await
    }
}

/// An answer of the JSON API.
#[derive(Debug)]
pub struct Json {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

impl Json {
    /// The `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// A client of the JSON API, optionally with a secret key.
pub struct Api {
    pub base: String,
    pub key: Option<String>,
    pub http: reqwest::Client,
}

impl TestApp {
    pub fn api(&self, key: Option<&str>) -> Api {
        Api {
            base: self.base.clone(),
            key: key.map(str::to_string),
            http: reqwest::Client::new(),
        }
    }
}

impl Api {
    async fn answer(resp: reqwest::Response) -> Json {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("the API answered {status} with non-JSON: {text}"))
        };
        Json {
            status,
            headers,
            body,
        }
    }

    fn with_key(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    pub async fn get(&self, path: &str) -> Json {
        let req = self.with_key(self.http.get(format!("{}{}", self.base, path)));
        Self::answer(req.send().await.expect("GET")).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> Json {
        let req = self.with_key(self.http.post(format!("{}{}", self.base, path)).json(&body));
        Self::answer(req.send().await.expect("POST")).await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        if_match: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Json {
        let mut req = self.with_key(self.http.request(method, format!("{}{}", self.base, path)));
        if let Some(etag) = if_match {
            req = req.header("if-match", etag);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        Self::answer(req.send().await.expect("request")).await
    }

    pub async fn patch_json(&self, path: &str, body: serde_json::Value) -> Json {
        self.send(reqwest::Method::PATCH, path, None, Some(body))
            .await
    }

    pub async fn put_json(
        &self,
        path: &str,
        if_match: Option<&str>,
        body: serde_json::Value,
    ) -> Json {
        self.send(reqwest::Method::PUT, path, if_match, Some(body))
            .await
    }

    pub async fn post_with(
        &self,
        path: &str,
        if_match: Option<&str>,
        body: serde_json::Value,
    ) -> Json {
        self.send(reqwest::Method::POST, path, if_match, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Json {
        self.send(reqwest::Method::DELETE, path, None, None).await
    }

    /// Posts a raw body with a JSON content type.
    pub async fn post_raw(&self, path: &str, body: &str) -> Json {
        let req = self.with_key(
            self.http
                .post(format!("{}{}", self.base, path))
                .header("content-type", "application/json")
                .body(body.to_string()),
        );
        Self::answer(req.send().await.expect("POST")).await
    }
}
