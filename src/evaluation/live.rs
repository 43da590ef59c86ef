//! The model this instance evaluates with, and the revision it was built
//! from. Readers take the current snapshot and never wait; the model is
//! brought up to date after each local write and by a poll for the writes
//! of other instances.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::model::Model;
use super::source;
use crate::db::DbConn;
use crate::error::Result;

pub struct LiveModel {
    current: RwLock<(i64, Arc<Model>)>,
    /// Held while the model is rebuilt, so concurrent syncs rebuild once.
    rebuild: Mutex<()>,
}

impl Default for LiveModel {
    fn default() -> Self {
        LiveModel {
            current: RwLock::new((-1, Arc::default())),
            rebuild: Mutex::new(()),
        }
    }
}

impl LiveModel {
    /// The model as of the last change this instance has seen.
    pub fn snapshot(&self) -> Arc<Model> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    /// The model with the revision it was built from, read together.
    pub fn current(&self) -> (i64, Arc<Model>) {
        let guard = self.current.read().unwrap_or_else(PoisonError::into_inner);
        (guard.0, guard.1.clone())
    }

    pub fn revision(&self) -> i64 {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    /// Brings the model up to the database's revision.
    pub fn sync(&self, conn: &mut DbConn) -> Result<()> {
        if self.revision() == source::revision(conn)? {
            return Ok(());
        }
        let _guard = self.rebuild.lock().unwrap_or_else(PoisonError::into_inner);
        // Read the revision before the rules: a model is never older than
        // the revision it claims.
        let revision = source::revision(conn)?;
        if self.revision() == revision {
            return Ok(());
        }
        let model = Model::build(source::load_all(conn)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = (revision, Arc::new(model));
        Ok(())
    }
}
