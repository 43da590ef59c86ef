//! What the model knows of users and organizations: just enough to resolve
//! the ids callers give without a query, and to list a user's flags with
//! those of the user's organizations. A caller names a subject by its
//! Flagpole id or its external id; only subjects that rules name (and the
//! members of targeted organizations) can change an answer, so only their
//! external ids are kept. A subject the model does not know is evaluated as
//! given and matches no target: exactly what it would get if it were known.

use std::sync::Arc;

use imbl::{HashMap, HashSet};

use crate::small_set::SmallSet;

use crate::ids::{OrgId, UserId};

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
    /// The targeted organizations of each user.
    memberships: HashMap<UserId, SmallSet<OrgId>>,
    /// The members of each targeted organization.
    members: HashMap<OrgId, HashSet<UserId>>,
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
    pub fn organizations_of(&self, user: &UserId) -> impl Iterator<Item = &OrgId> + '_ {
        self.memberships
            .get(user)
            .into_iter()
            .flat_map(|orgs| orgs.iter())
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
        if let Some(user) = UserId::parse(id) {
            self.set_memberships(&user, Vec::new());
        }
    }

    /// Counts one more rule naming `org`; true when it was named by none.
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
        if *count > 0 {
            return;
        }
        self.targeted.remove(org);
        if let Some(members) = self.members.remove(org) {
            for user in members {
                let now_empty = match self.memberships.get_mut(&user) {
                    Some(orgs) => {
                        *orgs = orgs.without(org);
                        orgs.is_empty()
                    }
                    None => false,
                };
                if now_empty {
                    self.memberships.remove(&user);
                }
            }
        }
    }

    pub fn is_targeted(&self, org: &OrgId) -> bool {
        self.targeted.contains_key(org)
    }

    /// Records that `user` belongs to `org`, if rules target `org`.
    pub fn add_member(&mut self, user: &UserId, org: &OrgId) {
        if !self.is_targeted(org) {
            return;
        }
        let orgs = self.memberships.entry(user.clone()).or_default();
        *orgs = orgs.with(org.clone());
        self.members
            .entry(org.clone())
            .or_default()
            .insert(user.clone());
    }

    /// Replaces what is known of a user's organizations by `orgs` (those
    /// that rules do not target are left out).
    pub fn set_memberships(&mut self, user: &UserId, orgs: Vec<OrgId>) {
        let orgs = SmallSet::from_items(orgs.into_iter().filter(|o| self.is_targeted(o)));
        let before = self.memberships.remove(user).unwrap_or_default();
        for org in before.iter().filter(|o| !orgs.contains(*o)) {
            let now_empty = match self.members.get_mut(org) {
                Some(users) => {
                    users.remove(user);
                    users.is_empty()
                }
                None => false,
            };
            if now_empty {
                self.members.remove(org);
            }
        }
        for org in orgs.iter().filter(|o| !before.contains(*o)) {
            self.members
                .entry(org.clone())
                .or_default()
                .insert(user.clone());
        }
        if !orgs.is_empty() {
            self.memberships.insert(user.clone(), orgs);
        }
    }

    /// How many users and organizations the model knows by external id,
    /// and how many memberships of targeted organizations.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.users.len(),
            self.organizations.len(),
            self.memberships.values().map(SmallSet::len).sum(),
        )
    }
}
