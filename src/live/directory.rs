//! What the model knows of users and organizations: just enough to resolve
//! the ids callers give without a query, and to list a user's flags with
//! those of the user's organizations.
//!
//! A caller names a subject by its Flagpole id or its external id. Only
//! subjects that rules name can change an answer, so only their external
//! ids are kept: a subject the model does not know is evaluated as given
//! and matches no target, exactly what it would get if it were known.
//!
//! The members of each organization that rules target are kept as a sorted
//! set of compact user keys (the 128 bits of the user id's ULID, 16 bytes a
//! member), so a million memberships cost about 16 MB; the organizations of
//! a user are found by looking the user up in each targeted organization.

use std::sync::Arc;

use imbl::HashMap;

use crate::ids::{OrgId, UserId};
use crate::small_set::SmallSet;

/// A user as the member sets keep it: the ULID of its id.
pub type UserKey = u128;

/// The compact key of a user id (`user_` and a ULID); `None` for an id
/// Flagpole cannot have generated, which therefore belongs to nobody.
pub fn user_key(id: &str) -> Option<UserKey> {
    let ulid = id.strip_prefix(UserId::PREFIX)?.strip_prefix('_')?;
    ulid::Ulid::from_string(ulid).ok().map(u128::from)
}

#[derive(Debug, Default, Clone)]
pub struct Directory {
    /// Users by external id.
    users: HashMap<Arc<str>, UserId>,
    /// Organizations by external id.
    organizations: HashMap<Arc<str>, OrgId>,
    /// The external id of each subject above, by Flagpole id.
    external: HashMap<Arc<str>, Arc<str>>,
    /// How many rules (in any environment, of any mode) name each
    /// organization: the targeted organizations.
    targeted: HashMap<OrgId, u32>,
    /// The members of each targeted organization.
    members: HashMap<OrgId, SmallSet<UserKey>>,
}

impl Directory {
    /// The user a caller means by `given`: a Flagpole id as it is, or the
    /// user whose external id it is; `None` when the model knows no user by
    /// that external id (who therefore matches no target).
    pub fn user(&self, given: &str) -> Option<UserId> {
        let given = given.trim();
        UserId::parse(given).or_else(|| self.users.get(given).cloned())
    }

    /// The organization a caller means by `given`, as for [`Directory::user`].
    pub fn organization(&self, given: &str) -> Option<OrgId> {
        let given = given.trim();
        OrgId::parse(given).or_else(|| self.organizations.get(given).cloned())
    }

    /// The organizations the user belongs to that rules target: the only
    /// ones whose flags can differ from the user's own.
    pub fn organizations_of(&self, user: &UserId) -> Vec<OrgId> {
        let Some(key) = user_key(user) else {
            return Vec::new();
        };
        let mut orgs: Vec<OrgId> = self
            .members
            .iter()
            .filter(|(_, members)| members.contains(&key))
            .map(|(org, _)| org.clone())
            .collect();
        orgs.sort();
        orgs
    }

    /// Records a subject's external id (or that it has none), replacing the
    /// one it had.
    pub fn set_external_id(&mut self, id: &str, external: Option<&str>) {
        if let Some(old) = self.external.get(id) {
            if Some(old.as_ref()) == external {
                return;
            }
        }
        self.forget_external_id(id);
        let Some(external) = external else { return };
        let external: Arc<str> = Arc::from(external);
        if let Some(user) = UserId::parse(id) {
            self.users.insert(external.clone(), user);
        } else if let Some(org) = OrgId::parse(id) {
            self.organizations.insert(external.clone(), org);
        } else {
            return;
        }
        self.external.insert(Arc::from(id), external);
    }

    fn forget_external_id(&mut self, id: &str) {
        let Some(old) = self.external.remove(id) else {
            return;
        };
        if UserId::parse(id).is_some() {
            if self.users.get(&old).is_some_and(|u| u.as_str() == id) {
                self.users.remove(&old);
            }
        } else if self
            .organizations
            .get(&old)
            .is_some_and(|o| o.as_str() == id)
        {
            self.organizations.remove(&old);
        }
    }

    /// Forgets a deleted subject (its targets go by their own changes).
    pub fn forget(&mut self, id: &str) {
        self.forget_external_id(id);
        if UserId::parse(id).is_some() {
            self.set_memberships(id, &[]);
        }
    }

    /// Counts one more rule naming `org`; true when it was named by none
    /// (its members are then to be loaded).
    pub fn target(&mut self, org: &OrgId) -> bool {
        let count = self.targeted.entry(org.clone()).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Counts one rule less naming `org`; when none is left, its members
    /// are forgotten.
    pub fn untarget(&mut self, org: &OrgId) {
        let Some(count) = self.targeted.get_mut(org) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.targeted.remove(org);
            self.members.remove(org);
        }
    }

    pub fn is_targeted(&self, org: &OrgId) -> bool {
        self.targeted.contains_key(org)
    }

    /// Sets the members of a targeted organization.
    pub fn set_members(&mut self, org: &OrgId, users: impl IntoIterator<Item = UserKey>) {
        if self.is_targeted(org) {
            self.members
                .insert(org.clone(), SmallSet::from_items(users));
        }
    }

    /// Sets which of the targeted organizations `user` (a Flagpole id)
    /// belongs to: exactly those of `orgs`.
    pub fn set_memberships(&mut self, user: &str, orgs: &[OrgId]) {
        let Some(key) = user_key(user) else { return };
        let changed: Vec<(OrgId, SmallSet<UserKey>)> = self
            .members
            .iter()
            .filter_map(|(org, members)| {
                let member = orgs.contains(org);
                match (members.contains(&key), member) {
                    (false, true) => Some((org.clone(), members.with(key))),
                    (true, false) => Some((org.clone(), members.without(&key))),
                    _ => None,
                }
            })
            .collect();
        for (org, members) in changed {
            self.members.insert(org, members);
        }
        // A targeted organization with no member yet has no set to find.
        for org in orgs {
            if self.is_targeted(org) && !self.members.contains_key(org) {
                self.members
                    .insert(org.clone(), SmallSet::from_items([key]));
            }
        }
    }

    /// How many users and organizations the model knows by external id,
    /// and how many memberships of targeted organizations.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.users.len(),
            self.organizations.len(),
            self.members.values().map(SmallSet::len).sum(),
        )
    }
}
