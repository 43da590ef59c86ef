//! The live model: everything the hot paths read, in memory, so that
//! checking a key and evaluating flags cost no query. Readers take the
//! current snapshot and never wait; the model is brought up to date after
//! each local write and by a poll for the writes of other instances.

pub mod source;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::changes;
use crate::db::DbConn;
use crate::environments::api_keys::ApiKey;
use crate::environments::Environment;
use crate::error::Result;
use crate::evaluation::model::Model;

/// A live secret key with its environment.
#[derive(Debug, Clone)]
pub struct Credential {
    pub key: ApiKey,
    pub environment: Environment,
}

/// One consistent state of everything the hot paths read.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The change revision this snapshot reflects.
    pub revision: i64,
    /// Every flag's rule in every environment.
    pub model: Model,
    /// Live keys by the SHA-256 of their secret.
    keys: HashMap<String, Arc<Credential>>,
}

impl Snapshot {
    /// The live key whose secret hashes to `hash`.
    pub fn credential(&self, hash: &str) -> Option<&Arc<Credential>> {
        self.keys.get(hash)
    }
}

impl std::ops::Deref for Snapshot {
    type Target = Model;
    fn deref(&self) -> &Model {
        &self.model
    }
}

pub struct LiveModel {
    current: RwLock<Arc<Snapshot>>,
    /// Held while the model is rebuilt, so concurrent syncs rebuild once.
    rebuild: Mutex<()>,
}

impl Default for LiveModel {
    fn default() -> Self {
        LiveModel {
            current: RwLock::new(Arc::new(Snapshot {
                revision: -1,
                ..Default::default()
            })),
            rebuild: Mutex::new(()),
        }
    }
}

impl LiveModel {
    /// The model as of the last change this instance has seen.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn revision(&self) -> i64 {
        self.snapshot().revision
    }

    /// Brings the model up to the database's revision.
    pub fn sync(&self, conn: &mut DbConn) -> Result<()> {
        if self.revision() == changes::revision(conn)? {
            return Ok(());
        }
        let _guard = self.rebuild.lock().unwrap_or_else(PoisonError::into_inner);
        // Read the revision before the rest: a snapshot is never older than
        // the revision it claims.
        let revision = changes::revision(conn)?;
        if self.revision() == revision {
            return Ok(());
        }
        let model = Model::build(source::load_all(conn)?);
        let keys = source::load_keys(conn)?
            .into_iter()
            .map(|(key, environment)| {
                (
                    key.secret_hash.clone(),
                    Arc::new(Credential { key, environment }),
                )
            })
            .collect();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Snapshot {
            revision,
            model,
            keys,
        });
        Ok(())
    }
}
