//! Every setting, the environment variable it comes from and its default.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rand::RngCore;

use crate::db::DatabaseUrl;

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: `sqlite://flagpole.db` by default, or `postgres://…`.
    pub database_url: String,
    /// `FLAGPOLE_BIND`: the address the server listens on.
    pub bind: String,
    /// `FLAGPOLE_PUBLIC_URL`: the base of links (and the token issuer).
    pub public_url: String,
    /// `FLAGPOLE_DATA_DIR`: where a generated secret key is kept.
    pub data_dir: PathBuf,
    /// `FLAGPOLE_SECRET_KEY`: at least 32 bytes; signs and encrypts cookies.
    pub secret_key: Vec<u8>,
    /// Largest number of pooled database connections.
    pub pool_size: u32,
    /// `FLAGPOLE_ACCESS_TOKEN_TTL`: seconds an access token lives (default 300).
    pub access_token_ttl: i64,
    /// `FLAGPOLE_REFRESH_TOKEN_TTL`: seconds a session lives without a refresh (default 30 days).
    pub refresh_token_ttl: i64,
    /// `FLAGPOLE_REFRESH_GRACE`: seconds during which a just-rotated refresh
    /// token may be presented again and get the same new pair (default 30,
    /// so two tabs refreshing at once keep their session; 0 is strict).
    pub refresh_grace: i64,
    /// `FLAGPOLE_KEY_PUBLICATION_DELAY`: seconds a rotated-in signing key is
    /// published before it signs (default 600, longer than the verifiers'
    /// key-set caches).
    pub key_publication_delay: Duration,
    /// How long to wait before each retry of a failed webhook delivery: the
    /// n-th retry waits the n-th entry (the last one repeats), give or take 10%.
    pub webhook_retry_schedule: Vec<Duration>,
    /// How long after its event a delivery is retried before it is given up as failed.
    pub webhook_retry_window: Duration,
    /// How often the delivery worker looks for due deliveries; it also wakes
    /// as soon as a change of this instance queues one.
    pub webhook_poll_interval: Duration,
    /// How long one webhook request may take.
    pub webhook_timeout: Duration,
    /// `FLAGPOLE_WEBHOOK_RETENTION_DAYS`: how long finished deliveries, their
    /// attempts and their events are kept (default 30 days).
    pub webhook_retention: Duration,
    /// How often the delivery worker forgets what is older than the retention.
    pub webhook_prune_interval: Duration,
    /// `FLAGPOLE_WEBHOOK_DELIVERY`: `false` makes this instance queue webhooks
    /// but leave sending them to the other instances (default true).
    pub webhook_delivery: bool,
    /// How long an instance keeps signing with the key it read, before it
    /// looks again for a rotation made by another instance (default 10 s).
    pub signer_cache_ttl: Duration,
    /// HTTP worker threads; `None` is one per core.
    pub http_workers: Option<usize>,
    /// How often the last use of keys is written (default 30 s).
    pub key_usage_flush_interval: Duration,
    /// `FLAGPOLE_MODEL_POLL_MS`: how often the live model reads the change
    /// log when nothing told it of a change (default 1000 ms). Writes of this
    /// instance, and on PostgreSQL those of every instance (`NOTIFY`), reach
    /// it at once; the poll is the fallback.
    pub model_poll_interval: Duration,
    /// How long the change log keeps a change (default 1 h); an instance
    /// further behind builds its model afresh.
    pub change_retention: Duration,
    /// `FLAGPOLE_METRICS`: serve Prometheus metrics at `/metrics` (default true).
    pub metrics: bool,
    /// `FLAGPOLE_WEBHOOK_ALLOW`: internal networks (CIDR) or host names that
    /// webhooks may be sent to anyway (default none).
    pub webhook_allow: crate::webhooks::guard::Guard,
    /// `FLAGPOLE_SESSION_IDLE_HOURS` (default 12) and
    /// `FLAGPOLE_SESSION_MAX_DAYS` (default 7): when dashboard sessions end.
    pub session_timeouts: crate::admins::sessions::Timeouts,
    /// `FLAGPOLE_TRUST_PROXY`: take the client's address from
    /// `X-Forwarded-For` / `Forwarded` (set by a reverse proxy you run),
    /// not from the connection (default false).
    pub trust_proxy: bool,
    /// `FLAGPOLE_ARGON2_MEMORY_KIB` (default 19456) and
    /// `FLAGPOLE_ARGON2_ITERATIONS` (default 2): the cost of new password hashes.
    pub hash_cost: crate::admins::hashing::HashCost,
    /// `FLAGPOLE_SQLITE_DURABILITY`: `changes` (default: flags, rules and
    /// keys survive a power loss), `full` (every write does) or `normal`
    /// (a process crash loses nothing, a power loss may lose the last writes).
    pub sqlite_durability: crate::db::Durability,
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://flagpole.db";
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_ACCESS_TOKEN_TTL: i64 = 5 * 60;
pub const DEFAULT_REFRESH_TOKEN_TTL: i64 = 30 * 24 * 60 * 60;
pub const DEFAULT_REFRESH_GRACE: i64 = 30;
pub const DEFAULT_KEY_PUBLICATION_DELAY: i64 = 10 * 60;

/// Retries after 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, then every 8 h.
pub fn default_webhook_retry_schedule() -> Vec<Duration> {
    [30, 120, 600, 1800, 3600, 7200, 14_400, 28_800]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

pub const DEFAULT_WEBHOOK_RETRY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
pub const DEFAULT_WEBHOOK_RETENTION_DAYS: i64 = 30;
pub const DEFAULT_WEBHOOK_PRUNE_INTERVAL: Duration = Duration::from_secs(60 * 60);
pub const DEFAULT_WEBHOOK_POLL_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SIGNER_CACHE_TTL: Duration = Duration::from_secs(10);
pub const DEFAULT_KEY_USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_MODEL_POLL_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_CHANGE_RETENTION: Duration = Duration::from_secs(60 * 60);

impl Config {
    /// Reads the settings from the process environment, generating and keeping
    /// a secret key in the data directory when none is given.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let database_url = var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        let bind = var("FLAGPOLE_BIND").unwrap_or_else(|| DEFAULT_BIND.into());
        let public_url = var("FLAGPOLE_PUBLIC_URL").unwrap_or_else(|| default_public_url(&bind));
        let data_dir = PathBuf::from(var("FLAGPOLE_DATA_DIR").unwrap_or_else(|| ".".into()));
        let secret_key = match var("FLAGPOLE_SECRET_KEY") {
            Some(key) => parse_secret_key(&key)?,
            None => load_or_generate_secret_key(&data_dir)?,
        };
        let seconds = |name: &str, default: i64| -> anyhow::Result<i64> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        anyhow::anyhow!("{name} must be a whole number of seconds (got {v:?})")
                    }),
            }
        };
        let whole = |name: &str, default: u64, min: u64, max: u64| -> anyhow::Result<u64> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "{name} must be a whole number from {min} to {max} (got {v:?})"
                        )
                    }),
            }
        };
        let flag = |name: &str, default: bool| -> anyhow::Result<bool> {
            match var(name).as_deref() {
                None => Ok(default),
                Some("true" | "1" | "on") => Ok(true),
                Some("false" | "0" | "off") => Ok(false),
                Some(other) => anyhow::bail!("{name} must be true or false (got {other:?})"),
            }
        };
        let days = |name: &str, default: i64| -> anyhow::Result<Duration> {
            let n = match var(name) {
                None => default,
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=3650).contains(n))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "{name} must be a whole number of days from 1 to 3650 (got {v:?})"
                        )
                    })? as i64,
            };
            Ok(Duration::from_secs(n as u64 * 86_400))
        };
        let config = Self {
            database_url,
            bind,
            public_url: public_url.trim_end_matches('/').to_string(),
            data_dir,
            secret_key,
            pool_size: 16,
            access_token_ttl: seconds("FLAGPOLE_ACCESS_TOKEN_TTL", DEFAULT_ACCESS_TOKEN_TTL)?,
            refresh_token_ttl: seconds("FLAGPOLE_REFRESH_TOKEN_TTL", DEFAULT_REFRESH_TOKEN_TTL)?,
            refresh_grace: seconds("FLAGPOLE_REFRESH_GRACE", DEFAULT_REFRESH_GRACE)?,
            key_publication_delay: Duration::from_secs(
                seconds("FLAGPOLE_KEY_PUBLICATION_DELAY", DEFAULT_KEY_PUBLICATION_DELAY)?.max(0)
                    as u64,
            ),
            webhook_delivery: match var("FLAGPOLE_WEBHOOK_DELIVERY").as_deref() {
                None | Some("true" | "1" | "on") => true,
                Some("false" | "0" | "off") => false,
                Some(other) => {
                    anyhow::bail!("FLAGPOLE_WEBHOOK_DELIVERY must be true or false (got {other:?})")
                }
            },
            webhook_retry_schedule: default_webhook_retry_schedule(),
            webhook_retry_window: DEFAULT_WEBHOOK_RETRY_WINDOW,
            webhook_poll_interval: DEFAULT_WEBHOOK_POLL_INTERVAL,
            webhook_timeout: DEFAULT_WEBHOOK_TIMEOUT,
            webhook_retention: days(
                "FLAGPOLE_WEBHOOK_RETENTION_DAYS",
                DEFAULT_WEBHOOK_RETENTION_DAYS,
            )?,
            webhook_prune_interval: DEFAULT_WEBHOOK_PRUNE_INTERVAL,
            signer_cache_ttl: DEFAULT_SIGNER_CACHE_TTL,
            http_workers: None,
            key_usage_flush_interval: DEFAULT_KEY_USAGE_FLUSH_INTERVAL,
            model_poll_interval: match var("FLAGPOLE_MODEL_POLL_MS") {
                None => DEFAULT_MODEL_POLL_INTERVAL,
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (10..=60_000).contains(n))
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "FLAGPOLE_MODEL_POLL_MS must be a whole number of milliseconds from 10 to 60000 (got {v:?})"
                        )
                    })?,
            },
            change_retention: DEFAULT_CHANGE_RETENTION,
            session_timeouts: crate::admins::sessions::Timeouts {
                idle: Duration::from_secs(
                    whole("FLAGPOLE_SESSION_IDLE_HOURS", 12, 1, 24 * 90)? * 3600,
                ),
                absolute: Duration::from_secs(
                    whole("FLAGPOLE_SESSION_MAX_DAYS", 7, 1, 365)? * 86_400,
                ),
            },
            trust_proxy: flag("FLAGPOLE_TRUST_PROXY", false)?,
            webhook_allow: crate::webhooks::guard::Guard::parse(
                &var("FLAGPOLE_WEBHOOK_ALLOW").unwrap_or_default(),
            )
            .map_err(|e| anyhow::anyhow!("FLAGPOLE_WEBHOOK_ALLOW: {e}"))?,
            hash_cost: crate::admins::hashing::HashCost {
                memory_kib: whole("FLAGPOLE_ARGON2_MEMORY_KIB", 19 * 1024, 8 * 1024, 1024 * 1024)?
                    as u32,
                iterations: whole("FLAGPOLE_ARGON2_ITERATIONS", 2, 1, 20)? as u32,
                parallelism: 1,
            },
            sqlite_durability: match var("FLAGPOLE_SQLITE_DURABILITY").as_deref() {
                None | Some("changes") => crate::db::Durability::Changes,
                Some("full") => crate::db::Durability::Full,
                Some("normal") => crate::db::Durability::Normal,
                Some(other) => anyhow::bail!(
                    "FLAGPOLE_SQLITE_DURABILITY must be changes, full or normal (got {other:?})"
                ),
            },
            metrics: match var("FLAGPOLE_METRICS").as_deref() {
                None | Some("true" | "1" | "on") => true,
                Some("false" | "0" | "off") => false,
                Some(other) => {
                    anyhow::bail!("FLAGPOLE_METRICS must be true or false (got {other:?})")
                }
            },
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        DatabaseUrl::parse(&self.database_url)?;
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            anyhow::bail!("FLAGPOLE_PUBLIC_URL must start with http:// or https://");
        }
        if self.access_token_ttl < 10 {
            anyhow::bail!("FLAGPOLE_ACCESS_TOKEN_TTL must be at least 10 seconds");
        }
        if self.refresh_token_ttl <= self.access_token_ttl {
            anyhow::bail!(
                "FLAGPOLE_REFRESH_TOKEN_TTL must be longer than FLAGPOLE_ACCESS_TOKEN_TTL"
            );
        }
        if self.webhook_retry_schedule.is_empty() {
            anyhow::bail!("the webhook retry schedule needs at least one delay");
        }
        if self.secret_key.len() < 32 {
            anyhow::bail!("FLAGPOLE_SECRET_KEY must hold at least 32 bytes");
        }
        Ok(())
    }

    pub fn token_settings(&self) -> crate::tokens::sessions::TokenSettings {
        crate::tokens::sessions::TokenSettings {
            access_ttl_seconds: self.access_token_ttl,
            refresh_ttl_seconds: self.refresh_token_ttl,
            refresh_grace_seconds: self.refresh_grace,
        }
    }

    /// A configuration for tests and tools: defaults everywhere but these.
    pub fn new(
        database_url: String,
        bind: String,
        public_url: String,
        data_dir: PathBuf,
        secret_key: Vec<u8>,
    ) -> Self {
        Self {
            database_url,
            bind,
            public_url,
            data_dir,
            secret_key,
            pool_size: 8,
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            refresh_token_ttl: DEFAULT_REFRESH_TOKEN_TTL,
            // The tests of reuse detection and rotation want strict reuse and
            // keys that sign at once; the grace and the delay have their own.
            refresh_grace: 0,
            key_publication_delay: Duration::ZERO,
            webhook_retry_schedule: default_webhook_retry_schedule(),
            webhook_retry_window: DEFAULT_WEBHOOK_RETRY_WINDOW,
            webhook_poll_interval: DEFAULT_WEBHOOK_POLL_INTERVAL,
            webhook_timeout: DEFAULT_WEBHOOK_TIMEOUT,
            webhook_retention: Duration::from_secs(DEFAULT_WEBHOOK_RETENTION_DAYS as u64 * 86_400),
            webhook_prune_interval: DEFAULT_WEBHOOK_PRUNE_INTERVAL,
            webhook_delivery: true,
            signer_cache_ttl: DEFAULT_SIGNER_CACHE_TTL,
            http_workers: None,
            key_usage_flush_interval: DEFAULT_KEY_USAGE_FLUSH_INTERVAL,
            model_poll_interval: DEFAULT_MODEL_POLL_INTERVAL,
            change_retention: DEFAULT_CHANGE_RETENTION,
            metrics: true,
            session_timeouts: crate::admins::sessions::Timeouts::default(),
            trust_proxy: false,
            webhook_allow: crate::webhooks::guard::Guard::default(),
            hash_cost: crate::admins::hashing::HashCost::default(),
            sqlite_durability: crate::db::Durability::Changes,
        }
    }

    /// How many passwords are hashed at once: one per core.
    pub fn hash_threads(&self) -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    pub fn applier_settings(&self) -> crate::live::ApplierSettings {
        crate::live::ApplierSettings {
            poll_interval: self.model_poll_interval,
            retention: self.change_retention,
        }
    }

    pub fn webhook_settings(&self) -> crate::webhooks::delivery::Settings {
        crate::webhooks::delivery::Settings {
            retry_schedule: self.webhook_retry_schedule.clone(),
            retry_window: self.webhook_retry_window,
            poll_interval: self.webhook_poll_interval,
            timeout: self.webhook_timeout,
            retention: self.webhook_retention,
            prune_interval: self.webhook_prune_interval,
            guard: std::sync::Arc::new(self.webhook_allow.clone()),
        }
    }

    /// How long a retired signing key stays published: the longest an
    /// access token it signed can live, plus the time other instances may
    /// keep signing with it from their caches, plus a margin.
    pub fn retired_key_publication(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl.max(0) as u64)
            + self.signer_cache_ttl * 2
            + Duration::from_secs(60)
    }

    /// Cookies are marked `Secure` when the dashboard is served over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// `http://` + the bind address, with a wildcard host (0.0.0.0, [::]) shown
/// as localhost, since nobody can open a link to 0.0.0.0.
fn default_public_url(bind: &str) -> String {
    let address = bind
        .strip_prefix("0.0.0.0:")
        .or_else(|| bind.strip_prefix("[::]:"))
        .map_or_else(|| bind.to_string(), |port| format!("localhost:{port}"));
    format!("http://{address}")
}

/// A key given as hex (64+ digits) is decoded; any other text of 32+ bytes is used as is.
fn parse_secret_key(key: &str) -> anyhow::Result<Vec<u8>> {
    let key = key.trim();
    if key.len() >= 64 && key.len().is_multiple_of(2) {
        if let Ok(bytes) = hex::decode(key) {
            return Ok(bytes);
        }
    }
    if key.len() < 32 {
        anyhow::bail!(
            "FLAGPOLE_SECRET_KEY must hold at least 32 bytes (64 hex digits recommended)"
        );
    }
    Ok(key.as_bytes().to_vec())
}

fn load_or_generate_secret_key(data_dir: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("flagpole.secret");
    if path.exists() {
        warn_if_shared(&path, 0o077);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return parse_secret_key(&text);
    }
    crate::config::create_private_dir(data_dir)?;
    let mut bytes = [0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    write_private_file(&path, &hex::encode(bytes))?;
    tracing::warn!(
        path = %path.display(),
        "FLAGPOLE_SECRET_KEY is not set: generated one and kept it in the data directory; \
         set FLAGPOLE_SECRET_KEY when running several instances"
    );
    Ok(bytes.to_vec())
}

/// Creates a directory only its owner may enter (0700), or warns when an
/// existing one is open to others.
pub fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.exists() {
        warn_if_shared(dir, 0o077);
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Warns when others than the owner may read (or enter) `path`.
pub fn warn_if_shared(path: &std::path::Path, others: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & others != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "others than its owner can read this; chmod it to 600 (files) or 700 (directories)"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, others);
}

fn write_private_file(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
