//! The one-time link that creates the first owner while no admin exists:
//! a random token kept only as its SHA-256, spent when used.

use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Default)]
pub struct SetupToken {
    hash: Mutex<Option<[u8; 32]>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl SetupToken {
    /// Makes a new token and returns it; the previous one stops working.
    pub fn issue(&self) -> String {
        let token = crate::ids::random_token(24);
        *self.hash.lock().unwrap_or_else(PoisonError::into_inner) = Some(digest(&token));
        token
    }

    pub fn matches(&self, token: &str) -> bool {
        let given = digest(token);
        let guard = self.hash.lock().unwrap_or_else(PoisonError::into_inner);
        matches!(*guard, Some(expected) if bool::from(expected.ct_eq(&given)))
    }

    /// Spends the token if it is the right one; it works once.
    pub fn take(&self, token: &str) -> bool {
        let given = digest(token);
        let mut guard = self.hash.lock().unwrap_or_else(PoisonError::into_inner);
        match *guard {
            Some(expected) if bool::from(expected.ct_eq(&given)) => {
                *guard = None;
                true
            }
            _ => false,
        }
    }

    /// Gives back a token spent on a form that turned out invalid.
    pub fn restore(&self, token: &str) {
        let mut guard = self.hash.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(digest(token));
        }
    }
}
