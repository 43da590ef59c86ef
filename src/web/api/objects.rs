//! The objects `/api/v1` answers with: each one type, serialized on the
//! wire and described in the OpenAPI document from the same definition.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::audit::AuditEvent;
use crate::directory::{Membership, Organization, User};
use crate::environments::Environment;
use crate::evaluation::{Mode, TargetKind};
use crate::flags::rules::{RuleDetails, RuleRow};
use crate::flags::targets::TargetView;
use crate::flags::{Flag, FlagWithTags};
use crate::paging::Page;
use crate::time::Timestamp;

/// The body of every error answer of `/api/v1`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `invalid_field`, `flag_not_found`, `stale`.
    #[schema(example = "invalid_field")]
    pub code: &'static str,
    /// What went wrong and what to do about it, for a person.
    pub message: String,
    /// The request field at fault, for 409 and 422 answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
}

/// The cursors around a page: give `after` (or `before`) back to read the
/// next (or previous) page; `null` when there is none.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListMetadata {
    #[schema(required = true)]
    pub before: Option<String>,
    #[schema(required = true)]
    pub after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    List,
}

/// Declares a page type: `{"object": "list", "data": [...], "list_metadata": {...}}`.
macro_rules! list_type {
    ($(#[$doc:meta])* $name:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $name {
            #[schema(inline)]
            pub object: ListKind,
            pub data: Vec<$item>,
            pub list_metadata: ListMetadata,
        }

        impl<T: Into<$item>> From<Page<T>> for $name {
            fn from(page: Page<T>) -> Self {
                $name {
                    object: ListKind::List,
                    data: page.data.into_iter().map(Into::into).collect(),
                    list_metadata: ListMetadata {
                        before: page.before,
                        after: page.after,
                    },
                }
            }
        }
    };
}

/// A feature flag, as every flag endpoint answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeatureFlagObject {
    #[schema(inline)]
    pub object: FeatureFlagKind,
    #[schema(value_type = String, example = "flag_01JD6Z8X4G7Q2M3N5P6R7S8T9V")]
    pub id: crate::ids::FlagId,
    /// The key applications use; it never changes.
    #[schema(example = "new-checkout")]
    pub slug: String,
    #[schema(example = "New checkout")]
    pub name: String,
    pub description: String,
    #[schema(example = json!(["growth"]))]
    pub tags: Vec<String>,
    pub archived: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeatureFlagKind {
    FeatureFlag,
}

impl From<FlagWithTags> for FeatureFlagObject {
    fn from(f: FlagWithTags) -> Self {
        let Flag {
            id,
            slug,
            name,
            description,
            archived,
            created_at,
            updated_at,
        } = f.flag;
        FeatureFlagObject {
            object: FeatureFlagKind::FeatureFlag,
            id,
            slug: slug.into_string(),
            name,
            description,
            tags: f.tags,
            archived,
            created_at,
            updated_at,
        }
    }
}

list_type!(
    /// A page of feature flags.
    FeatureFlagList,
    FeatureFlagObject
);

/// A flag's rule in one environment. The answer's `ETag` header is its
/// version, to send back as `If-Match`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleObject {
    #[schema(inline)]
    pub object: RuleKind,
    /// The flag's slug.
    #[schema(example = "new-checkout")]
    pub flag: String,
    /// The environment's slug.
    #[schema(example = "production")]
    pub environment: String,
    pub mode: Mode,
    /// Off means nobody gets the flag in this environment, whatever the mode.
    pub enabled: bool,
    /// Goes up by one with every change; the `ETag` is this number in quotes.
    pub version: i32,
    /// Organizations first, then users, each in the order they were added.
    pub targets: Vec<TargetObject>,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// Who changed the rule last: a dashboard user's email or `api key NAME (PREFIX)`.
    #[schema(required = true)]
    pub updated_by: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    FeatureFlagRule,
}

impl RuleObject {
    pub fn new(flag: &Flag, env: &Environment, details: RuleDetails) -> Self {
        let RuleRow {
            mode,
            enabled,
            version,
            updated_by,
            updated_at,
            ..
        } = details.rule;
        RuleObject {
            object: RuleKind::FeatureFlagRule,
            flag: flag.slug.to_string(),
            environment: env.slug.to_string(),
            mode,
            enabled,
            version,
            targets: details
                .targets
                .into_iter()
                .map(TargetObject::from)
                .collect(),
            updated_at,
            updated_by,
        }
    }
}

/// A target of a rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetObject {
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: TargetKind,
    /// The Flagpole id (`user_…` or `org_…`).
    pub id: String,
    /// The user's name (or email) or the organization's name.
    pub name: String,
}

impl From<TargetView> for TargetObject {
    fn from(t: TargetView) -> Self {
        TargetObject {
            kind: t.kind,
            id: t.id,
            name: t.label,
        }
    }
}

/// An organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationObject {
    #[schema(inline)]
    pub object: OrganizationKind,
    #[schema(value_type = String, example = "org_01JD6Z8X4G7Q2M3N5P6R7S8T9V")]
    pub id: crate::ids::OrgId,
    #[schema(example = "Acme Inc.")]
    pub name: String,
    /// Your application's id for the organization.
    #[schema(value_type = Option<String>, required = true, example = "acme")]
    pub external_id: Option<crate::validate::ExternalId>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrganizationKind {
    Organization,
}

impl From<Organization> for OrganizationObject {
    fn from(o: Organization) -> Self {
        OrganizationObject {
            object: OrganizationKind::Organization,
            id: o.id,
            name: o.name,
            external_id: o.external_id,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

list_type!(
    /// A page of organizations.
    OrganizationList,
    OrganizationObject
);

/// A user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserObject {
    #[schema(inline)]
    pub object: UserKind,
    #[schema(value_type = String, example = "user_01JD6Z8X4G7Q2M3N5P6R7S8T9V")]
    pub id: crate::ids::UserId,
    #[schema(value_type = String, example = "ada@example.com")]
    pub email: crate::validate::Email,
    pub first_name: String,
    pub last_name: String,
    /// Your application's id for the user.
    #[schema(value_type = Option<String>, required = true, example = "u-1042")]
    pub external_id: Option<crate::validate::ExternalId>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    User,
}

impl From<User> for UserObject {
    fn from(u: User) -> Self {
        UserObject {
            object: UserKind::User,
            id: u.id,
            email: u.email,
            first_name: u.first_name,
            last_name: u.last_name,
            external_id: u.external_id,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

list_type!(
    /// A page of users.
    UserList,
    UserObject
);

/// A user's membership of an organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipObject {
    #[schema(inline)]
    pub object: MembershipKind,
    #[schema(value_type = String)]
    pub organization_id: crate::ids::OrgId,
    #[schema(value_type = String)]
    pub user_id: crate::ids::UserId,
    /// The member.
    #[schema(required = true)]
    pub user: Option<UserObject>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MembershipKind {
    OrganizationMembership,
}

impl From<(Membership, Option<User>)> for MembershipObject {
    fn from((m, user): (Membership, Option<User>)) -> Self {
        MembershipObject {
            object: MembershipKind::OrganizationMembership,
            organization_id: m.organization_id,
            user_id: m.user_id,
            user: user.map(UserObject::from),
            created_at: m.created_at,
        }
    }
}

list_type!(
    /// A page of an organization's memberships.
    MembershipList,
    MembershipObject
);

/// What a bulk upsert did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    #[schema(inline)]
    pub object: BulkResultKind,
    /// Objects that did not exist and were created.
    pub created: u32,
    /// Existing objects whose fields changed.
    pub updated: u32,
    /// Existing objects already as sent, left alone.
    pub unchanged: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkResultKind {
    BulkResult,
}

impl From<crate::directory::bulk::BulkCounts> for BulkResult {
    fn from(c: crate::directory::bulk::BulkCounts) -> Self {
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        BulkResult {
            object: BulkResultKind::BulkResult,
            created: n(c.created),
            updated: n(c.updated),
            unchanged: n(c.unchanged),
        }
    }
}

/// One change in the audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventObject {
    #[schema(inline)]
    pub object: AuditEventKind,
    #[schema(value_type = String, example = "audit_01JD6Z8X4G7Q2M3N5P6R7S8T9V")]
    pub id: crate::ids::AuditEventId,
    /// Who: a dashboard user's email, `api key NAME (PREFIX)`, or `system`.
    #[schema(example = "api key deploy (sk_3f2a)")]
    pub actor: String,
    #[schema(example = "rule.enabled")]
    pub action: String,
    #[schema(example = "flag")]
    pub object_type: String,
    pub object_id: String,
    /// The object's slug, name or email when the change was made.
    pub object_label: String,
    /// The slug of the flag the change concerns, if any.
    #[schema(required = true, example = "new-checkout")]
    pub flag: Option<String>,
    /// The slug of the environment the change was made in, if any.
    #[schema(required = true, example = "production")]
    pub environment: Option<String>,
    /// The object's state before the change.
    #[schema(required = true, value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The object's state after the change.
    #[schema(required = true, value_type = Option<Object>)]
    pub after: Option<Value>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditEventKind {
    AuditEvent,
}

impl AuditEventObject {
    pub fn new(e: AuditEvent, flag: Option<String>, environment: Option<String>) -> Self {
        let (before, after) = (e.before(), e.after());
        AuditEventObject {
            object: AuditEventKind::AuditEvent,
            id: e.id,
            actor: e.actor,
            action: e.action,
            object_type: e.object_type,
            object_id: e.object_id,
            object_label: e.object_label,
            flag,
            environment,
            before: Some(before).filter(|v| !v.is_null()),
            after: Some(after).filter(|v| !v.is_null()),
            created_at: e.created_at,
        }
    }
}

list_type!(
    /// A page of audit events.
    AuditEventList,
    AuditEventObject
);
