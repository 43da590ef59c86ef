//! Every setting, the environment variable it comes from and its default.

use std::path::PathBuf;

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
    /// token may be presented again and get the same new pair (default 0: strict).
    pub refresh_grace: i64,
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://flagpole.db";
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_ACCESS_TOKEN_TTL: i64 = 5 * 60;
pub const DEFAULT_REFRESH_TOKEN_TTL: i64 = 30 * 24 * 60 * 60;

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
        let config = Self {
            database_url,
            bind,
            public_url: public_url.trim_end_matches('/').to_string(),
            data_dir,
            secret_key,
            pool_size: 16,
            access_token_ttl: seconds("FLAGPOLE_ACCESS_TOKEN_TTL", DEFAULT_ACCESS_TOKEN_TTL)?,
            refresh_token_ttl: seconds("FLAGPOLE_REFRESH_TOKEN_TTL", DEFAULT_REFRESH_TOKEN_TTL)?,
            refresh_grace: seconds("FLAGPOLE_REFRESH_GRACE", 0)?,
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
        if self.secret_key.len() < 32 {
            anyhow::bail!("FLAGPOLE_SECRET_KEY must hold at least 32 bytes");
        }
        Ok(())
    }

    pub fn token_settings(&self) -> crate::sessions::TokenSettings {
        crate::sessions::TokenSettings {
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
            refresh_grace: 0,
        }
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
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return parse_secret_key(&text);
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
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
