//! WorkOS's object shapes, as the official WorkOS SDKs parse them: a flag in
//! one environment (`feature_flag`), a user, a list, and the rule set the
//! SDK's runtime client polls. Shared by the WorkOS-compatible API
//! (`crate::web::workos`) and webhook payloads.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::directory::User;
use crate::evaluation::{named_subjects, FlagRule};
use crate::ids::{FlagId, UserId};
use crate::paging::Page;
use crate::time::Timestamp;

/// A flag in one environment: `enabled` is the environment's switch and
/// `default_value` what a context that no target names gets while it is on.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureFlag {
    pub object: &'static str,
    pub id: FlagId,
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    /// The admin who owns the flag; Flagpole has no flag owners yet.
    pub owner: Option<FlagOwner>,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub default_value: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlagOwner {
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// A user. Flagpole keeps no verification state, picture or locale, so
/// those carry neutral values.
#[derive(Debug, Clone, Serialize)]
pub struct WorkosUser {
    pub object: &'static str,
    pub id: UserId,
    pub email: String,
    pub email_verified: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub profile_picture_url: Option<String>,
    pub last_sign_in_at: Option<Timestamp>,
    pub locale: Option<String>,
    pub external_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&User> for WorkosUser {
    fn from(user: &User) -> Self {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        WorkosUser {
            object: "user",
            id: user.id.clone(),
            email: user.email.to_string(),
            email_verified: false,
            first_name: non_empty(&user.first_name),
            last_name: non_empty(&user.last_name),
            profile_picture_url: None,
            last_sign_in_at: None,
            locale: None,
            external_id: user.external_id.as_ref().map(|e| e.to_string()),
            metadata: BTreeMap::new(),
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// A list as WorkOS answers one.
#[derive(Debug, Serialize)]
pub struct List<T> {
    pub object: &'static str,
    pub data: Vec<T>,
    pub list_metadata: ListMetadata,
}

#[derive(Debug, Serialize)]
pub struct ListMetadata {
    pub before: Option<String>,
    pub after: Option<String>,
}

impl<T> From<Page<T>> for List<T> {
    fn from(page: Page<T>) -> Self {
        List {
            object: "list",
            data: page.data,
            list_metadata: ListMetadata {
                before: page.before,
                after: page.after,
            },
        }
    }
}

/// One flag of the runtime client's rule set.
#[derive(Debug, Serialize)]
pub struct RuntimeFlag<'a> {
    pub slug: &'a str,
    pub enabled: bool,
    pub default_value: bool,
    pub targets: RuntimeTargets,
}

#[derive(Debug, Default, Serialize)]
pub struct RuntimeTargets {
    pub users: Vec<RuntimeTarget>,
    pub organizations: Vec<RuntimeTarget>,
}

#[derive(Debug, Serialize)]
pub struct RuntimeTarget {
    pub id: String,
    pub enabled: bool,
}

/// What the runtime client gets for one flag: the switch, the value of a
/// context that names nobody (asked of [`decide`] as if the flag were on),
/// and the subjects the rule turns it on for by name. The client's
/// `isEnabled(slug, {userId, organizationId})` then agrees with Flagpole.
pub fn runtime_flag(flag: &FlagRule) -> RuntimeFlag<'_> {
    let default_value = crate::evaluation::value_for_anyone(flag.rule.mode);
    let (users, organizations) = named_subjects(&flag.rule);
    let target = |id: &str| RuntimeTarget {
        id: id.to_string(),
        enabled: true,
    };
    RuntimeFlag {
        slug: flag.slug.as_str(),
        enabled: flag.rule.enabled,
        default_value,
        targets: RuntimeTargets {
            users: users.into_iter().map(|u| target(u.as_str())).collect(),
            organizations: organizations
                .into_iter()
                .map(|o| target(o.as_str()))
                .collect(),
        },
    }
}
