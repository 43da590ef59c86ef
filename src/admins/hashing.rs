//! Password hashing on a few threads of its own. Each argon2id hash takes
//! its memory cost (19 MiB by default) for tens of milliseconds, so hashes
//! run at most `threads` at a time (about one per core), never while a
//! database connection is held, and a burst beyond what the queue holds is
//! refused at once (429) instead of piling up memory and latency.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;

use crate::error::{Error, Refusal, Result};

/// The cost of a hash: memory in KiB, iterations, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashCost {
    /// OWASP's argon2id recommendation (and the argon2 crate's default).
    fn default() -> Self {
        HashCost {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashCost {
    pub fn argon2(&self) -> Result<Argon2<'static>> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| Error::internal(anyhow::anyhow!("argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// A new argon2id hash of `password`, in PHC string form.
pub fn hash(cost: &HashCost, password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    cost.argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(anyhow::anyhow!("hashing a password: {e}")))
}

thread_local! {
    /// This thread's argon2 memory, kept between hashes: a hash fills
    /// every block before it reads one, so nothing carries over, and the
    /// allocator never sees the tens of MiB come and go (which it would
    /// keep, fragmented, under a flood of sign-ins).
    static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether `password` matches `stored` (a PHC string: its own parameters
/// are used, so hashes made with another cost still verify).
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let hashed = MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon2.hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            &mut memory[..blocks],
        )
    });
    hashed.is_ok() && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads and their bounded queue.
pub struct Hasher {
    jobs: SyncSender<Job>,
    pub cost: HashCost,
    /// A hash of a throwaway password, checked when an email is unknown so
    /// that a wrong email costs as much as a wrong password.
    decoy: String,
}

impl Hasher {
    /// `threads` hashing threads; up to `queue` hashes wait for one.
    pub fn new(threads: usize, queue: usize, cost: HashCost) -> Result<Hasher> {
        let (jobs, receiver) = sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for n in 0..threads.max(1) {
            let receiver: Arc<Mutex<Receiver<Job>>> = receiver.clone();
            std::thread::Builder::new()
                .name(format!("flagpole-hash-{n}"))
                .spawn(move || loop {
                    let job = receiver
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .recv();
                    match job {
                        Ok(job) => job(),
                        // The hasher was dropped.
                        Err(_) => break,
                    }
                })
                .map_err(|e| Error::internal(anyhow::anyhow!("starting a hashing thread: {e}")))?;
        }
        let decoy = hash(&cost, "flagpole-timing-equalizer")?;
        Ok(Hasher { jobs, cost, decoy })
    }

    /// Runs `work` on a hashing thread; `TooManyAttempts` when the queue
    /// is full.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Error::Refused(Refusal::TooManyAttempts {
                    retry_after: 1,
                    message:
                        "Too many sign-ins are being checked right now. Try again in a second."
                            .into(),
                }))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::internal(anyhow::anyhow!(
                    "the hashing threads stopped"
                )))
            }
        }
        answer
            .await
            .map_err(|_| Error::internal(anyhow::anyhow!("a hashing job was lost")))
    }

    /// Hashes a new password on a hashing thread.
    pub async fn hash(&self, password: String) -> Result<String> {
        let cost = self.cost;
        self.run(move || hash(&cost, &password)).await?
    }

    /// Checks a password against a stored hash (or, for an unknown account,
    /// against the decoy, so both take as long) on a hashing thread.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool> {
        self.verify_account(password, move || Ok(stored), String::as_str)
            .await
            .map(|found| found.is_some())
    }

    /// Finds an account with `find` and checks `password` against its hash
    /// (`hash_of`), both on a hashing thread: a sign-in beyond what the
    /// queue holds is refused before it touches the database, so a flood
    /// costs neither connections nor threads. The account, if the password
    /// is its own.
    pub async fn verify_account<A: Send + 'static>(
        &self,
        password: String,
        find: impl FnOnce() -> Result<Option<A>> + Send + 'static,
        hash_of: fn(&A) -> &str,
    ) -> Result<Option<A>> {
        let decoy = self.decoy.clone();
        self.run(move || {
            let account = find()?;
            let matches = match &account {
                Some(account) => verify(&password, hash_of(account)),
                None => {
                    verify(&password, &decoy);
                    false
                }
            };
            Ok(account.filter(|_| matches))
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_of_any_cost_verify_on_reused_memory() {
        let small = HashCost {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        };
        let big = HashCost::default();
        let a = hash(&small, "correct horse").unwrap();
        let b = hash(&big, "battery staple").unwrap();
        // A hash made by the argon2 crate's own API, as earlier versions stored.
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let c = Argon2::default()
            .hash_password(b"old password", &salt)
            .unwrap()
            .to_string();
        // Big, then small, then big again on the same thread's memory.
        for _ in 0..2 {
            assert!(verify("battery staple", &b));
            assert!(verify("correct horse", &a));
            assert!(!verify("correct horsE", &a));
            assert!(!verify("correct horse", &b));
            assert!(verify("old password", &c));
        }
        assert!(!verify("x", "not a hash"));
        assert!(!verify("x", "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$"));
    }
}
