//! Rows as stored, one struct per table, shared by every service.

use diesel::prelude::*;

use crate::db::schema::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = admins)]
pub struct Admin {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = environments)]
pub struct Environment {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub position: i32,
    pub color: String,
    pub require_confirmation: bool,
    pub client_id: String,
    pub created_at: String,
    pub updated_at: String,
}

impl Environment {
    /// The CSS class that gives this environment its colour everywhere.
    pub fn color_class(&self) -> &'static str {
        crate::environments::PALETTE
            .iter()
            .find(|(_, hex)| *hex == self.color)
            .map_or("env-slate", |(name, _)| match *name {
                "Teal" => "env-teal",
                "Blue" => "env-blue",
                "Violet" => "env-violet",
                "Amber" => "env-amber",
                "Red" => "env-red",
                "Green" => "env-green",
                _ => "env-slate",
            })
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = flags)]
pub struct Flag {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub archived: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = flag_tags)]
pub struct FlagTag {
    pub flag_id: String,
    pub tag: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = rules)]
pub struct Rule {
    pub flag_id: String,
    pub environment_id: String,
    pub mode: String,
    pub enabled: bool,
    pub version: i32,
    pub updated_by: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = organizations)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub external_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub external_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl User {
    pub fn display_name(&self) -> String {
        let name = format!("{} {}", self.first_name, self.last_name);
        let name = name.trim();
        if name.is_empty() {
            self.email.clone()
        } else {
            name.to_string()
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = memberships)]
pub struct Membership {
    pub user_id: String,
    pub organization_id: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = targets)]
pub struct Target {
    pub flag_id: String,
    pub environment_id: String,
    pub target_type: String,
    pub target_id: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: String,
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub object_label: String,
    pub flag_id: Option<String>,
    pub environment_id: Option<String>,
    pub before_state: Option<String>,
    pub after_state: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    pub id: String,
    pub environment_id: String,
    pub name: String,
    pub prefix: String,
    pub secret_hash: String,
    pub created_by: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
pub struct SigningKey {
    pub id: String,
    pub environment_id: String,
    pub algorithm: String,
    pub private_key_sealed: String,
    pub public_jwk: String,
    pub created_at: String,
    pub retired_at: Option<String>,
    pub publish_until: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id: String,
    pub environment_id: String,
    pub user_id: String,
    pub organization_id: Option<String>,
    pub created_at: String,
    pub last_refreshed_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    pub token_hash: String,
    pub session_id: String,
    pub created_at: String,
    pub rotated_at: Option<String>,
    pub successor_sealed: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_endpoints)]
pub struct WebhookEndpoint {
    pub id: String,
    pub environment_id: String,
    pub url: String,
    pub description: String,
    /// A comma-separated subset of `crate::webhooks::EVENTS`.
    pub events: String,
    /// The signing secret, sealed with the endpoint id as associated data.
    pub secret_sealed: String,
    pub secret_prefix: String,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_events)]
pub struct WebhookEvent {
    pub id: String,
    pub event: String,
    pub environment_id: String,
    /// The exact JSON text that is POSTed and signed.
    pub payload: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_deliveries)]
pub struct WebhookDelivery {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: String,
    /// While set and in the future, one instance is sending this delivery.
    pub locked_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_attempts)]
pub struct WebhookAttempt {
    pub id: String,
    pub delivery_id: String,
    pub attempted_at: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub response_excerpt: Option<String>,
}
