//! Storage: one diesel `MultiConnection` over SQLite and PostgreSQL, an r2d2
//! pool whose backend is chosen from the URL scheme, and embedded migrations.

pub mod group;
pub mod schema;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

/// The backend type of `DbConn`, for boxed queries.
pub type Db = <DbConn as Connection>::Backend;

pub type Pool = r2d2::Pool<Manager>;
pub type PooledConn = r2d2::PooledConnection<Manager>;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What survives a power loss on SQLite. In WAL mode with `synchronous =
/// NORMAL` a committed write survives a crash of the process, but the last
/// ones before a power loss may not be on disk yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = NORMAL`; writes that change flags, rules, keys or
    /// anything else the model follows are synced to disk before they are
    /// answered (a checkpoint); sessions and usage stamps are not.
    #[default]
    Changes,
    /// `synchronous = FULL`: every commit is synced.
    Full,
    /// `synchronous = NORMAL` and nothing more.
    Normal,
}

/// A database URL with its backend decided from the scheme, never guessed:
/// SQLite would accept any string as a file name.
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    pub backend: Backend,
    /// What the driver is given: a file path for SQLite, the URL for PostgreSQL.
    pub target: String,
    /// SQLite only.
    pub durability: Durability,
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self {
                backend: Backend::Postgres,
                target: url.to_string(),
                durability: Durability::default(),
            });
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "DATABASE_URL must start with sqlite:// or postgres:// (got {url:?})"
                )
            })?;
        if path.is_empty() || path == ":memory:" {
            anyhow::bail!("DATABASE_URL needs a SQLite file path: an in-memory database cannot be shared by the pool");
        }
        Ok(Self {
            backend: Backend::Sqlite,
            target: path.to_string(),
            durability: Durability::default(),
        })
    }
}

/// What the pool and its connections have done, for `/metrics` and for
/// the test that the hot paths run no query.
#[derive(Debug, Default)]
pub struct Stats {
    /// Statements run, by every pooled connection.
    pub queries: AtomicU64,
    /// Connections handed out, and the time spent waiting for them.
    pub checkouts: AtomicU64,
    pub checkout_wait_micros: AtomicU64,
    /// Checkouts that gave up waiting.
    pub timeouts: AtomicU64,
    /// Writes run through `AppState::write` (or its background lane).
    pub writes: AtomicU64,
}

/// Counts the statements of one connection into [`Stats`].
struct QueryCounter(Arc<Stats>);

impl Instrumentation for QueryCounter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.queries.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counts checkouts and their waits into [`Stats`].
#[derive(Debug)]
struct CheckoutCounter(Arc<Stats>);

impl r2d2::HandleEvent for CheckoutCounter {
    fn handle_checkout(&self, event: r2d2::event::CheckoutEvent) {
        self.0.checkouts.fetch_add(1, Ordering::Relaxed);
        self.0
            .checkout_wait_micros
            .fetch_add(event.duration().as_micros() as u64, Ordering::Relaxed);
    }

    fn handle_timeout(&self, _event: r2d2::event::TimeoutEvent) {
        self.0.timeouts.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
pub struct Manager {
    url: DatabaseUrl,
    stats: Arc<Stats>,
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConn, r2d2::Error> {
        let mut conn = connect(&self.url)?;
        let counter = QueryCounter(self.stats.clone());
        match &mut conn {
            DbConn::Sqlite(c) => c.set_instrumentation(counter),
            DbConn::Pg(c) => c.set_instrumentation(counter),
        }
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    /// A connection dropped by a panic, or still inside a transaction, is not
    /// handed out again.
    fn has_broken(&self, conn: &mut DbConn) -> bool {
        std::thread::panicking() || is_broken(conn)
    }
}

/// How much of an SQLite file its connections map into memory: pages are
/// read from the OS's cache in place, with no system call and no copy into
/// each connection's own cache (the address space is reserved, not memory).
const MMAP_SIZE: u64 = 1 << 30;

/// Opens one connection, set up as every pooled one is: on SQLite, WAL,
/// foreign keys and a busy timeout.
pub fn connect(url: &DatabaseUrl) -> Result<DbConn, r2d2::Error> {
    match url.backend {
        Backend::Sqlite => {
            create_private_file(&url.target);
            let mut conn =
                SqliteConnection::establish(&url.target).map_err(r2d2::Error::ConnectionError)?;
            // The busy timeout comes first: switching to WAL takes a
            // lock, and connections opened at once on a new file would
            // otherwise fail with "database is locked" and be retried.
            // WAL lets readers run beside the single writer; the busy
            // timeout makes writers wait for each other instead of failing.
            let synchronous = match url.durability {
                Durability::Full => "FULL",
                Durability::Changes | Durability::Normal => "NORMAL",
            };
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
                 PRAGMA mmap_size = {MMAP_SIZE};"
            ))
            .map_err(r2d2::Error::QueryError)?;
            Ok(DbConn::Sqlite(conn))
        }
        Backend::Postgres => PgConnection::establish(&url.target)
            .map(DbConn::Pg)
            .map_err(r2d2::Error::ConnectionError),
    }
}

/// Opens a connection outside the pool, set up and counted as pooled ones
/// are (the SQLite writer keeps one of its own).
pub fn connect_counted(url: &DatabaseUrl, stats: Arc<Stats>) -> Result<DbConn, r2d2::Error> {
    Manager {
        url: url.clone(),
        stats,
    }
    .connect()
}

/// Whether a connection may not be used again: a transaction left broken.
pub fn is_broken(conn: &mut DbConn) -> bool {
    use diesel::connection::TransactionManager;
    <DbConn as Connection>::TransactionManager::is_broken_transaction_manager(conn)
}

pub fn build_pool(url: &DatabaseUrl, max_size: u32, stats: Arc<Stats>) -> anyhow::Result<Pool> {
    let manager = Manager {
        url: url.clone(),
        stats: stats.clone(),
    };
    let pool = r2d2::Pool::builder()
        .max_size(max_size)
        .event_handler(Box::new(CheckoutCounter(stats)))
        .connection_timeout(std::time::Duration::from_secs(10))
        .build(manager)?;
    Ok(pool)
}

pub fn run_migrations(conn: &mut DbConn) -> anyhow::Result<()> {
    let result = match conn {
        DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
        DbConn::Pg(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
    };
    result.map_err(|e| anyhow::anyhow!("running migrations: {e}"))
}

/// Tells whether an error is a unique-constraint violation, on either backend.
pub fn is_unique_violation(err: &diesel::result::Error) -> bool {
    matches!(
        err,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Maps a unique violation to the conflict of the field that must change;
/// `field_of` reads the database's message (which names the column) and
/// says which field and what to tell. Other errors pass through.
pub fn on_unique_violation(
    err: diesel::result::Error,
    field_of: impl Fn(&str) -> (&'static str, &'static str),
) -> crate::error::Error {
    if let diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::UniqueViolation,
        info,
    ) = &err
    {
        let (field, message) = field_of(info.message());
        return crate::error::Error::duplicate(field, message);
    }
    err.into()
}

diesel::define_sql_function! {
    /// Lower-cases text on both backends, for case-insensitive search.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// A `LIKE` pattern that matches `needle` anywhere, with the wildcards in it escaped.
pub fn contains_pattern(needle: &str) -> String {
    let escaped = needle
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Runs `$body` with `$c` bound to the concrete connection, for the few
/// statements `MultiConnection` cannot express (batch inserts).
#[macro_export]
macro_rules! with_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Sqlite($c) => $body,
            $crate::db::DbConn::Pg($c) => $body,
        }
    };
}

/// Serializes changes to the set of flags or environments: each new flag
/// needs a rule in every environment and each new environment one for every
/// flag, so a flag and an environment created at the same moment must not
/// miss each other. Holds the revision row's lock until the transaction ends.
pub fn lock_flags_and_environments(conn: &mut DbConn) -> QueryResult<()> {
    conn.batch_execute("UPDATE revisions SET revision = revision WHERE id = 1")
}

/// Runs `f` in a transaction meant to write. On SQLite the write lock is
/// taken by the first statement: a transaction that read first and wrote
/// later could not wait for a concurrent writer and would fail with
/// "database is locked"; this one waits (up to the busy timeout) instead.
pub fn write_transaction<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    // SQLite has one writer at a time; writers that find the lock taken
    // sleep in its busy handler (1, 2, 5, 10 … ms), so under load most of a
    // write's time would be spent asleep. Writers of this process queue on
    // a mutex instead and take the lock the moment it is free. Nested
    // transactions (savepoints) are already inside it.
    let _writer = match conn {
        DbConn::Sqlite(_) if WRITE_DEPTH.with(|d| d.get()) == 0 => Some(
            SQLITE_WRITER
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ),
        _ => None,
    };
    WRITE_DEPTH.with(|d| d.set(d.get() + 1));
    let result = conn.transaction(|conn| {
        if let DbConn::Sqlite(sqlite) = conn {
            sqlite.batch_execute("UPDATE revisions SET revision = revision WHERE id = 1")?;
        }
        f(conn)
    });
    WRITE_DEPTH.with(|d| d.set(d.get() - 1));
    result
}

/// Creates the SQLite file readable by its owner only (0600) before SQLite
/// opens it; an existing file open to others gets a warning. (The `-wal`
/// and `-shm` files SQLite makes take the main file's permissions.)
fn create_private_file(path: &str) {
    let path = std::path::Path::new(path);
    if path.exists() {
        crate::config::warn_if_shared(path, 0o077);
        return;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    // Another connection may have made it meanwhile; SQLite opens it either way.
    let _ = options.open(path);
}

/// Syncs what SQLite has committed to disk (a passive checkpoint syncs the
/// WAL first), for writes that must survive a power loss.
pub fn make_durable(conn: &mut DbConn) {
    if let DbConn::Sqlite(sqlite) = conn {
        if let Err(e) = sqlite.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::warn!(error = %e, "syncing a change to disk failed");
        }
    }
}

/// Held by this process's outermost SQLite write transaction.
static SQLITE_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

thread_local! {
    /// How deep this thread is in write transactions.
    static WRITE_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `f` on a pooled connection on the blocking thread pool, so database
/// work never stalls the async workers.
pub async fn run<T, F>(pool: &Pool, f: F) -> crate::error::Result<T>
where
    F: FnOnce(&mut DbConn) -> crate::error::Result<T> + Send + 'static,
    T: Send + 'static,
{
    let pool = pool.clone();
    actix_web::web::block(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await?
}
