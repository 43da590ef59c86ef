//! Flagpole: self-hosted feature flags. This crate builds the whole service
//! from a [`Config`], so the binary and the tests start the same app.

#![forbid(unsafe_code)]

pub mod admins;
pub mod api_keys;
pub mod audit;
pub mod bench;
pub mod config;
pub mod db;
pub mod demo;
pub mod directory;
pub mod environments;
pub mod error;
pub mod evaluation;
pub mod flags;
pub mod ids;
pub mod keys;
pub mod models;
pub mod sessions;
pub mod signing;
pub mod validate;
pub mod web;
pub mod webhooks;
pub mod workos;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use sha2::{Digest, Sha256};

pub use config::Config;
use db::{DatabaseUrl, DbConn, Pool};
use error::AppError;

/// What every request handler shares.
pub struct AppState {
    pub pool: Pool,
    pub config: Config,
    /// SHA-256 of the one-time setup token, while no admin exists.
    setup_token_hash: Mutex<Option<[u8; 32]>>,
    pub login_throttle: LoginThrottle,
    /// Seals signing keys at rest.
    pub sealer: keys::KeySealer,
    pub signers: signing::SignerCache,
    pub live_index: Arc<LiveIndex>,
    /// Wakes the webhook worker when a change of this instance queued deliveries.
    pub webhook_wakeup: Arc<tokio::sync::Notify>,
    /// The runtime rule sets of the WorkOS SDK, built once per revision.
    pub rule_sets: workos::RuleSets,
}

/// The evaluation index and the database revision it was built from.
pub struct LiveIndex {
    current: RwLock<(i64, Arc<evaluation::Index>)>,
    /// Held while the index is rebuilt, so concurrent requests rebuild once.
    rebuild: Mutex<()>,
}

impl LiveIndex {
    pub fn get(&self) -> Arc<evaluation::Index> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    fn revision(&self) -> i64 {
        self.current.read().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Rebuilds the index if the database changed since it was built.
    pub fn sync(&self, conn: &mut DbConn) -> Result<(), AppError> {
        if self.revision() == audit::revision(conn)? {
            return Ok(());
        }
        let _guard = self.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        let revision = audit::revision(conn)?;
        if self.revision() == revision {
            return Ok(());
        }
        let index = evaluation::Index::build(flags::rule_facts(conn)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (revision, Arc::new(index));
        Ok(())
    }
}

impl AppState {
    /// Runs `f` on a pooled connection on the blocking thread pool, so database
    /// work never stalls the async workers.
    pub async fn db<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConn) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let index = self.live_index.clone();
        let wakeup = self.webhook_wakeup.clone();
        actix_web::web::block(move || {
            let mut conn = pool.get()?;
            let result = f(&mut conn);
            if webhooks::take_queued() && result.is_ok() {
                wakeup.notify_one();
            }
            // Every change is audited, and every audit bumps the revision:
            // a change made by this call is in the index before it returns.
            index.sync(&mut conn)?;
            result
        })
        .await?
    }

    /// The evaluation index as of the last change this instance has seen.
    pub fn index(&self) -> Arc<evaluation::Index> {
        self.live_index.get()
    }

    /// Spends the setup token if it is the right one; it works once.
    pub fn take_setup_token(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut guard = self
            .setup_token_hash
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match *guard {
            Some(expected) if subtle::ConstantTimeEq::ct_eq(&expected[..], &digest[..]).into() => {
                *guard = None;
                true
            }
            _ => false,
        }
    }

    /// Gives back a setup token spent on a form that turned out invalid.
    pub fn restore_setup_token(&self, token: &str) {
        let mut guard = self
            .setup_token_hash
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(Sha256::digest(token.as_bytes()).into());
        }
    }

    pub fn setup_token_matches(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let guard = self
            .setup_token_hash
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        matches!(*guard, Some(expected) if bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &digest[..])))
    }
}

/// Slows down password guessing: after `MAX_FAILURES` wrong passwords for
/// one email within `WINDOW`, sign-in for it is refused until the window ends.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    pub const MAX_FAILURES: u32 = 5;
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);

    /// `Some(wait)` when this email is locked out for `wait` more.
    pub fn locked_for(&self, email: &str) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (count, since) = map.get(&email.to_lowercase())?;
        let elapsed = since.elapsed();
        (*count >= Self::MAX_FAILURES && elapsed < Self::WINDOW).then(|| Self::WINDOW - elapsed)
    }

    pub fn record_failure(&self, email: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (_, since)| since.elapsed() < Self::WINDOW);
        }
        let entry = map
            .entry(email.to_lowercase())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= Self::WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub fn record_success(&self, email: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&email.to_lowercase());
    }
}

/// A running Flagpole: the server future and where it listens.
pub struct Application {
    server: Server,
    port: u16,
    setup_url: Option<String>,
    state: actix_web::web::Data<AppState>,
}

impl Application {
    /// Connects to the database, applies migrations, creates the default
    /// environments, binds the listener and builds the server.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&config.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind))?;
        Self::build_with_listener(config, listener).await
    }

    pub async fn build_with_listener(
        config: Config,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        let url = DatabaseUrl::parse(&config.database_url)?;
        let pool = prepare_database(&url, config.pool_size).await?;
        let state = actix_web::web::Data::new(AppState {
            pool,
            setup_token_hash: Mutex::new(None),
            login_throttle: LoginThrottle::default(),
            sealer: keys::KeySealer::new(&config.secret_key),
            signers: signing::SignerCache::new(config.signer_cache_ttl),
            live_index: Arc::new(LiveIndex {
                current: RwLock::new((-1, Arc::default())),
                rebuild: Mutex::new(()),
            }),
            webhook_wakeup: Arc::default(),
            rule_sets: workos::RuleSets::default(),
            config,
        });
        state.db(|_| Ok(())).await?;
        spawn_index_poller(state.clone());
        webhooks::spawn_worker(state.clone())?;
        let port = listener.local_addr()?.port();
        let admin_count = state.db(|conn| Ok(admins::count(conn)?)).await?;
        let setup_url = if admin_count == 0 {
            let token = ids::random_token(24);
            *state
                .setup_token_hash
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Sha256::digest(token.as_bytes()).into());
            let base = if state.config.bind.ends_with(":0") {
                format!("http://127.0.0.1:{port}")
            } else {
                state.config.public_url.clone()
            };
            Some(format!("{base}/setup?token={token}"))
        } else {
            None
        };
        let server = web::server(state.clone(), listener)?;
        Ok(Self {
            server,
            port,
            setup_url,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The one-time link that creates the first admin, while none exists.
    pub fn setup_url(&self) -> Option<&str> {
        self.setup_url.as_deref()
    }

    pub fn state(&self) -> actix_web::web::Data<AppState> {
        self.state.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Checks the database revision every second, so changes made by other
/// instances reach this one's index within about a second.
fn spawn_index_poller(state: actix_web::web::Data<AppState>) {
    let weak = Arc::downgrade(&state.into_inner());
    actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(Duration::from_secs(1)).await;
            let Some(state) = weak.upgrade() else { break };
            if let Err(e) = state.db(|_| Ok(())).await {
                tracing::warn!(error = %e, "refreshing the evaluation index failed");
            }
        }
    });
}

/// Builds the pool, then migrates and seeds the database on a blocking thread.
pub async fn prepare_database(url: &DatabaseUrl, pool_size: u32) -> anyhow::Result<Pool> {
    let url = url.clone();
    actix_web::web::block(move || -> anyhow::Result<Pool> {
        let pool = db::build_pool(&url, pool_size)?;
        let mut conn = pool.get()?;
        db::run_migrations(&mut conn)?;
        environments::ensure_defaults(&mut conn).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(pool)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?
}
