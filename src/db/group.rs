//! Group commit for SQLite: writes that arrive together share one
//! transaction.
//!
//! SQLite has one writer at a time, so concurrent writes (32 session starts
//! at once, say) queue anyway; with a connection each, every write is a
//! thread woken for its turn and a commit of its own, and most of its time
//! is the hand-off and the WAL pages it writes again. Here one thread runs
//! them: it takes what is waiting, and what arrives meanwhile (up to
//! `MAX_BATCH` writes and `MAX_BATCH_TIME`), runs each in turn inside one
//! transaction (each service's own transaction becomes a
//! savepoint, so a write that fails undoes only itself), commits once, and
//! only then answers each caller. A commit that fails is reported to every
//! write of the batch: none of them is said to have happened.

use std::cell::Cell;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

use std::sync::Arc;

use super::{DatabaseUrl, DbConn, Stats};
use crate::error::{Error, Result};

/// At most this many writes share a commit…
const MAX_BATCH: usize = 64;
/// …and no write joins a batch that has worked this long, so a write waits
/// for at most this much of others' work before its commit.
const MAX_BATCH_TIME: Duration = Duration::from_millis(10);

/// A write waiting for its batch: it runs on the writer's connection and
/// leaves what to tell its caller once the batch has committed (or not).
type Job = Box<dyn FnOnce(&mut DbConn) -> Finish + Send>;
type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

thread_local! {
    /// Set by a write of the batch that must survive a power loss.
    static DURABLE: Cell<bool> = const { Cell::new(false) };
}

/// Asks that the current batch be synced to disk once it commits.
pub fn make_batch_durable() {
    DURABLE.with(|d| d.set(true));
}

/// A writer thread of an SQLite database.
pub struct GroupWriter {
    jobs: Sender<Job>,
}

/// How a writer thread competes for the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Changes people wait for: rules, keys, sessions.
    Normal,
    /// Writes that may take their time (bulk syncs): the thread runs at
    /// the lowest CPU priority (nice 19), so on a busy machine the requests
    /// being served come first and a sync uses what they leave. The price:
    /// a change that arrives while a bulk transaction holds SQLite's write
    /// lock waits for it, and that transaction runs slowly on a saturated
    /// machine (measured: p95 0.2 to 1 s, against 15 ms without a sync).
    Background,
}

impl GroupWriter {
    /// Starts a writer thread with a connection of its own, so a batch
    /// never waits for the pool that readers share.
    pub fn start(
        url: DatabaseUrl,
        stats: Arc<Stats>,
        priority: Priority,
    ) -> anyhow::Result<GroupWriter> {
        let mut conn = Some(super::connect_counted(&url, stats.clone())?);
        let (jobs, queue) = channel::<Job>();
        let name = match priority {
            Priority::Normal => "flagpole-writer",
            Priority::Background => "flagpole-bulk",
        };
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if priority == Priority::Background {
                    lower_this_threads_priority();
                }
                while let Ok(first) = queue.recv() {
                    if conn.is_none() {
                        match super::connect_counted(&url, stats.clone()) {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                // Dropping the job tells its caller.
                                tracing::warn!(error = %e, "no connection for a batch of writes");
                                continue;
                            }
                        }
                    }
                    if let Some(c) = conn.as_mut() {
                        run_batch(c, first, &queue);
                        if super::is_broken(c) {
                            conn = None;
                        }
                    }
                }
            })?;
        Ok(GroupWriter { jobs })
    }

    /// Runs `f` in the next batch; its answer comes once the batch committed.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut DbConn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            Box::new(move |committed| {
                let _ = reply.send(match committed {
                    Ok(()) => result,
                    Err(e) => Err(Error::internal(anyhow::anyhow!(
                        "the write's batch did not commit: {e}"
                    ))),
                });
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| Error::internal(anyhow::anyhow!("the database writer stopped")))?;
        answer.await.map_err(|_| {
            Error::internal(anyhow::anyhow!(
                "the write was not run: the database was unavailable"
            ))
        })?
    }
}

/// Lowers the calling thread's CPU priority to nice 19. On Linux a nice
/// value belongs to the thread (`PRIO_PROCESS` with the thread's id), and
/// lowering it needs no privilege. Elsewhere, or if refused, the thread
/// keeps its priority: the writes are the same, only less polite.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::warn!(error = %e, "could not lower the bulk writer's priority");
    }
}

/// Runs `first` and whatever arrives while the batch is young (up to
/// `MAX_BATCH` writes, `MAX_BATCH_TIME` of work), then commits.
fn run_batch(conn: &mut DbConn, first: Job, queue: &Receiver<Job>) {
    DURABLE.with(|d| d.set(false));
    let mut finishes: Vec<Finish> = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        super::write_transaction(conn, |conn| {
            let started = Instant::now();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                finishes.push(job(conn));
                if finishes.len() < MAX_BATCH && started.elapsed() < MAX_BATCH_TIME {
                    next = queue.try_recv().ok();
                }
            }
            Ok::<(), diesel::result::Error>(())
        })
    }));
    let committed = match outcome {
        Err(_) => Err("a write of the batch panicked".to_string()),
        Ok(result) => result.map_err(|e| e.to_string()),
    };
    if committed.is_ok() && DURABLE.with(|d| d.replace(false)) {
        super::make_durable(conn);
    }
    for finish in finishes {
        finish(committed.clone());
    }
}
