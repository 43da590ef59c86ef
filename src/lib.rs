//! Flagpole: self-hosted feature flags. This crate builds the whole service
//! from a [`Config`], so the binary and the tests start the same app.
//!
//! Each concept has its module: [`flags`] (flags, rules, targets),
//! [`directory`] (organizations, users, memberships), [`environments`]
//! (environments and their API keys), [`evaluation`] (the one decision, the
//! model it reads), [`tokens`] (sessions, signing keys, JWKS), [`webhooks`],
//! [`audit`] and [`admins`]. [`web`] is HTTP: the dashboard, `/api/v1`, and
//! the WorkOS and OFREP surfaces, which parse, call a service and render.

#![forbid(unsafe_code)]

pub mod admins;
pub mod audit;
pub mod changes;
pub mod config;
pub mod db;
pub mod directory;
pub mod environments;
pub mod error;
pub mod evaluation;
pub mod flags;
pub mod ids;
pub mod live;
pub mod loader;
pub mod metrics;
pub mod paging;
pub mod small_set;
pub mod time;
pub mod tokens;
pub mod validate;
pub mod web;
pub mod webhooks;
pub mod workos;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;

pub use config::Config;
use db::{DatabaseUrl, DbConn, Pool};
use error::Result;
use live::LiveModel;
use live::Snapshot;

/// The longest a write waits for the model to reflect it.
const WRITE_WAITS_FOR_MODEL: Duration = Duration::from_secs(5);

/// What every request handler shares.
pub struct AppState {
    pub pool: Pool,
    pub config: Config,
    /// Password hashing, on threads of its own.
    pub hasher: admins::hashing::Hasher,
    pub login_throttle: admins::throttle::LoginThrottle,
    /// Seals signing keys and webhook secrets at rest.
    pub sealer: tokens::keys::KeySealer,
    pub signers: tokens::signing::SignerCache,
    pub model: Arc<LiveModel>,
    /// When each key was last used on this instance, not yet written.
    pub key_usage: environments::api_keys::KeyUsage,
    /// Wakes the webhook worker after a change of this instance.
    webhook_wakeup: Arc<tokio::sync::Notify>,
    /// The runtime rule sets of the WorkOS SDK, one per environment and
    /// model revision.
    pub rule_sets: web::workos::RuleSets,
    /// What the pool has done: statements, checkouts, waits.
    pub db_stats: Arc<db::Stats>,
    /// On SQLite, the one thread that runs writes, several to a commit…
    writer: Option<db::group::GroupWriter>,
    /// …and the one that runs bulk syncs, at a lower CPU priority.
    bulk_writer: Option<db::group::GroupWriter>,
    pub metrics: Arc<metrics::Metrics>,
}

impl AppState {
    /// Runs `f`, which only reads, on a pooled connection on the blocking
    /// thread pool, so database work never stalls the async workers.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut DbConn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        db::run(&self.pool, f).await
    }

    /// Runs `f`, which writes (in its own transactions), then waits until
    /// this instance's model reflects the write before answering, so the
    /// caller's next request sees its change; the webhook worker is woken
    /// for what the change queued. A write that committed is never reported
    /// as failed: if the model is slow to follow, the answer goes out anyway
    /// and the model catches up in the background.
    pub async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        F: FnOnce(&mut DbConn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_on(self.writer.as_ref(), f).await
    }

    /// [`AppState::write`] for a write that may take its time, a bulk sync:
    /// on SQLite it runs on the writer thread of lower CPU priority, so
    /// that on a busy machine evaluations come first. (On PostgreSQL the
    /// work is the database server's, and it runs like any other write.)
    pub async fn write_in_background<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        F: FnOnce(&mut DbConn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_on(self.bulk_writer.as_ref(), f).await
    }

    async fn write_on<T, F>(
        self: &Arc<Self>,
        writer: Option<&db::group::GroupWriter>,
        f: F,
    ) -> Result<T>
    where
        F: FnOnce(&mut DbConn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.db_stats
            .writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let durable = self.config.sqlite_durability == db::Durability::Changes;
        // What the write leaves to do once it committed: the revision the
        // model must reach (only a write that recorded a change has one;
        // the others, a session started, skip the read) and whether it
        // queued webhook deliveries.
        let after = move |conn: &mut DbConn| {
            let revision = changes::take_recorded()
                .then(|| changes::revision(conn).ok())
                .flatten();
            (revision, webhooks::outbox::take_queued())
        };
        let (result, (revision, queued)) = match writer {
            // SQLite: in the writer's next batch, synced after its commit.
            Some(writer) => {
                writer
                    .run(move |conn| {
                        changes::take_recorded();
                        webhooks::outbox::take_queued();
                        let result = f(conn)?;
                        let after = after(conn);
                        if durable && after.0.is_some() {
                            db::group::make_batch_durable();
                        }
                        Ok((result, after))
                    })
                    .await?
            }
            None => {
                db::run(&self.pool, move |conn| {
                    changes::take_recorded();
                    webhooks::outbox::take_queued();
                    let result = f(conn)?;
                    Ok((result, after(conn)))
                })
                .await?
            }
        };
        if queued {
            self.webhook_wakeup.notify_one();
        }
        if let Some(revision) = revision {
            if revision > self.model.revision() {
                self.model.wake();
                if !self.model.reach(revision, WRITE_WAITS_FOR_MODEL).await {
                    tracing::warn!(
                        revision,
                        "the live model did not reflect a write in time; answering anyway"
                    );
                }
            }
        }
        Ok(result)
    }

    /// The live model as of the last change this instance has seen.
    pub fn model(&self) -> Arc<Snapshot> {
        self.model.snapshot()
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
        let mut url = DatabaseUrl::parse(&config.database_url)?;
        url.durability = config.sqlite_durability;
        let db_stats = Arc::new(db::Stats::default());
        let metrics = Arc::new(metrics::Metrics::default());
        let pool = prepare_database_with(&url, config.pool_size, db_stats.clone()).await?;
        let writer_of = |priority| match url.backend {
            db::Backend::Sqlite => {
                db::group::GroupWriter::start(url.clone(), db_stats.clone(), priority).map(Some)
            }
            db::Backend::Postgres => Ok(None),
        };
        let writer = writer_of(db::group::Priority::Normal)?;
        let bulk_writer = writer_of(db::group::Priority::Background)?;
        let state = actix_web::web::Data::new(AppState {
            pool,
            hasher: admins::hashing::Hasher::new(
                config.hash_threads(),
                config.hash_threads() * 4,
                config.hash_cost,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
            login_throttle: admins::throttle::LoginThrottle::default(),
            sealer: tokens::keys::KeySealer::new(&config.secret_key),
            signers: tokens::signing::SignerCache::new(config.signer_cache_ttl),
            model: Arc::new(LiveModel::new(metrics.clone())),
            key_usage: environments::api_keys::KeyUsage::default(),
            webhook_wakeup: Arc::default(),
            rule_sets: web::workos::RuleSets::default(),
            db_stats,
            metrics,
            writer,
            bulk_writer,
            config,
        });
        let model = state.model.clone();
        state.read(move |conn| model.catch_up(conn)).await?;
        state
            .model
            .spawn_applier(url.clone(), state.config.applier_settings())?;
        spawn_usage_flusher(state.clone());
        spawn_janitor(state.clone());
        if state.config.webhook_delivery {
            webhooks::delivery::spawn(
                state.pool.clone(),
                state.sealer.clone(),
                state.config.webhook_settings(),
                Arc::downgrade(&state.webhook_wakeup),
                state.metrics.clone(),
            )?;
        }
        let port = listener.local_addr()?.port();
        let admin_count = state.read(admins::count).await?;
        let setup_url = if admin_count == 0 {
            let token = state.write(admins::setup::issue).await?;
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

/// Writes when keys were last used, in one batch, every
/// `key_usage_flush_interval`: a key check itself never writes.
fn spawn_usage_flusher(state: actix_web::web::Data<AppState>) {
    let weak = Arc::downgrade(&state.clone().into_inner());
    let interval = state.config.key_usage_flush_interval;
    actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(interval).await;
            let Some(state) = weak.upgrade() else { break };
            let pending = state.key_usage.take();
            if pending.is_empty() {
                continue;
            }
            let result = state
                .read(move |conn| environments::api_keys::record_usage(conn, &pending))
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "recording when keys were last used failed");
            }
        }
    });
}

/// How long ended token sessions and dashboard sessions are kept.
const ENDED_SESSIONS_KEPT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Every hour, forgets token sessions (with their refresh tokens) that
/// ended more than a week ago, and ended dashboard sessions.
fn spawn_janitor(state: actix_web::web::Data<AppState>) {
    let weak = Arc::downgrade(&state.into_inner());
    actix_web::rt::spawn(async move {
        loop {
            let Some(state) = weak.upgrade() else { break };
            let timeouts = state.config.session_timeouts;
            let result = state
                .read(move |conn| {
                    let tokens = tokens::sessions::prune(conn, ENDED_SESSIONS_KEPT)?;
                    let dashboard = admins::sessions::prune(conn, &timeouts)?;
                    Ok(tokens + dashboard)
                })
                .await;
            match result {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "forgot ended sessions"),
                Err(e) => tracing::warn!(error = %e, "forgetting ended sessions failed"),
            }
            drop(state);
            actix_web::rt::time::sleep(Duration::from_secs(60 * 60)).await;
        }
    });
}

/// Builds the pool, then migrates and seeds the database on a blocking thread.
pub async fn prepare_database(url: &DatabaseUrl, pool_size: u32) -> anyhow::Result<Pool> {
    prepare_database_with(url, pool_size, Arc::default()).await
}

/// [`prepare_database`], counting what the pool does into `stats`.
pub async fn prepare_database_with(
    url: &DatabaseUrl,
    pool_size: u32,
    stats: Arc<db::Stats>,
) -> anyhow::Result<Pool> {
    let url = url.clone();
    actix_web::web::block(move || -> anyhow::Result<Pool> {
        let pool = db::build_pool(&url, pool_size, stats)?;
        let mut conn = pool.get()?;
        db::run_migrations(&mut conn)?;
        environments::ensure_defaults(&mut conn).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(pool)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?
}
