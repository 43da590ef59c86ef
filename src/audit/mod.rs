//! The audit trail: who changed what, where, from what to what, and when.
//! Every service records its change inside the change's own transaction,
//! with a [`Change`] built where the change is made.

use diesel::prelude::*;
use serde_json::Value;

use crate::db::schema::audit_events;
use crate::db::{Db, DbConn};
use crate::error::Result;
use crate::ids::{AdminId, ApiKeyId, AuditEventId, EnvironmentId, FlagId};
use crate::paging::{Cursor, Page};
use crate::time::Timestamp;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: AuditEventId,
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub object_label: String,
    pub flag_id: Option<FlagId>,
    pub environment_id: Option<EnvironmentId>,
    pub before_state: Option<String>,
    pub after_state: Option<String>,
    pub created_at: Timestamp,
}

impl AuditEvent {
    pub fn before(&self) -> Value {
        parse_state(self.before_state.as_deref())
    }
    pub fn after(&self) -> Value {
        parse_state(self.after_state.as_deref())
    }
}

fn parse_state(text: Option<&str>) -> Value {
    text.map(|s| serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string())))
        .unwrap_or(Value::Null)
}

/// Who makes a change: an admin in the dashboard, an API key, or Flagpole
/// itself (start-up, the command line, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Admin {
        id: AdminId,
        email: String,
    },
    ApiKey {
        id: ApiKeyId,
        name: String,
        prefix: String,
    },
    System(String),
}

impl Actor {
    pub fn system(name: impl Into<String>) -> Self {
        Actor::System(name.into())
    }

    /// How the audit trail and the rules' "changed by" name this actor.
    pub fn label(&self) -> String {
        match self {
            Actor::Admin { email, .. } => email.clone(),
            Actor::ApiKey { name, prefix, .. } => format!("api key {name} ({prefix})"),
            Actor::System(name) => name.clone(),
        }
    }

    /// The actor as WorkOS's events describe one: `{id, source, name}`.
    pub fn as_event_actor(&self) -> Value {
        match self {
            Actor::Admin { id, email } => {
                serde_json::json!({"id": id, "source": "dashboard", "name": email})
            }
            Actor::ApiKey { id, name, .. } => {
                serde_json::json!({"id": id, "source": "api", "name": name})
            }
            Actor::System(name) => {
                serde_json::json!({"id": name, "source": "system", "name": name})
            }
        }
    }
}

/// One change, described by the service that makes it:
/// `Change::new("flag.created", "flag", &flag.id, &flag.slug).flag(&flag.id).after(state)`.
#[derive(Debug, Clone)]
pub struct Change {
    action: &'static str,
    object_type: &'static str,
    object_id: String,
    object_label: String,
    flag_id: Option<FlagId>,
    environment_id: Option<EnvironmentId>,
    before: Option<Value>,
    after: Option<Value>,
}

impl Change {
    pub fn new(
        action: &'static str,
        object_type: &'static str,
        object_id: impl ToString,
        object_label: impl Into<String>,
    ) -> Self {
        Change {
            action,
            object_type,
            object_id: object_id.to_string(),
            object_label: object_label.into(),
            flag_id: None,
            environment_id: None,
            before: None,
            after: None,
        }
    }

    /// The flag the change concerns, so the flag's history lists it.
    pub fn flag(mut self, id: &FlagId) -> Self {
        self.flag_id = Some(id.clone());
        self
    }

    pub fn environment(mut self, id: &EnvironmentId) -> Self {
        self.environment_id = Some(id.clone());
        self
    }

    pub fn before(mut self, state: Value) -> Self {
        self.before = Some(state);
        self
    }

    pub fn after(mut self, state: Value) -> Self {
        self.after = Some(state);
        self
    }

    fn into_event(self, actor: &Actor, at: Timestamp) -> AuditEvent {
        AuditEvent {
            id: AuditEventId::generate(),
            actor: actor.label(),
            action: self.action.to_string(),
            object_type: self.object_type.to_string(),
            object_id: self.object_id,
            object_label: self.object_label,
            flag_id: self.flag_id,
            environment_id: self.environment_id,
            before_state: self.before.map(|v| v.to_string()),
            after_state: self.after.map(|v| v.to_string()),
            created_at: at,
        }
    }

    /// Writes the change in the caller's transaction.
    pub fn record(self, conn: &mut DbConn, actor: &Actor) -> Result<()> {
        diesel::insert_into(audit_events::table)
            .values(&self.into_event(actor, Timestamp::now()))
            .execute(conn)?;
        Ok(())
    }
}

/// Records many changes of one operation (a bulk upsert) in batches.
pub fn record_many(conn: &mut DbConn, actor: &Actor, changes: Vec<Change>) -> Result<()> {
    let at = Timestamp::now();
    let events: Vec<AuditEvent> = changes
        .into_iter()
        .map(|change| change.into_event(actor, at))
        .collect();
    match conn {
        // SQLite has no round trip to save: one cached statement a row
        // costs less than building a statement of 500 rows each time.
        DbConn::Sqlite(c) => {
            for event in &events {
                diesel::insert_into(audit_events::table)
                    .values(event)
                    .execute(c)?;
            }
        }
        DbConn::Pg(c) => {
            for chunk in events.chunks(500) {
                diesel::insert_into(audit_events::table)
                    .values(chunk)
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

/// Which events a list shows.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub flag_id: Option<FlagId>,
    pub environment_id: Option<EnvironmentId>,
    pub actor: Option<String>,
    /// Inclusive.
    pub since: Option<Timestamp>,
    /// Exclusive.
    pub until: Option<Timestamp>,
}

fn matching<'a>(filter: &AuditFilter) -> audit_events::BoxedQuery<'a, Db> {
    let mut query = audit_events::table.into_boxed();
    if let Some(flag_id) = &filter.flag_id {
        query = query.filter(audit_events::flag_id.eq(flag_id.clone()));
    }
    if let Some(env_id) = &filter.environment_id {
        query = query.filter(audit_events::environment_id.eq(env_id.clone()));
    }
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_events::actor.eq(actor.clone()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_events::created_at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_events::created_at.lt(until));
    }
    query
}

/// One numbered page, newest first; `page` counts from 1.
pub fn page(
    conn: &mut DbConn,
    filter: &AuditFilter,
    page: i64,
    per_page: i64,
) -> Result<(Vec<AuditEvent>, i64)> {
    let total: i64 = matching(filter).count().get_result(conn)?;
    let events = matching(filter)
        .order(audit_events::id.desc())
        .limit(per_page)
        .offset((page.max(1) - 1) * per_page)
        .select(AuditEvent::as_select())
        .load(conn)?;
    Ok((events, total))
}

/// One cursor page, for the API.
pub fn list(conn: &mut DbConn, filter: &AuditFilter, cursor: &Cursor) -> Result<Page<AuditEvent>> {
    Ok(crate::paginate!(
        matching(filter),
        audit_events::id,
        cursor,
        conn,
        AuditEvent,
        |e: &AuditEvent| e.id.to_string()
    ))
}

/// "enabled: false → true; mode: none → some": what differs between two states.
pub fn describe_change(before: &Value, after: &Value) -> String {
    let show = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".to_string(),
        other => other.to_string(),
    };
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut parts = Vec::new();
            for (key, new) in a {
                match b.get(key) {
                    None => parts.push(format!("{key}: {}", show(new))),
                    Some(old) if old != new => {
                        parts.push(format!("{key}: {} → {}", show(old), show(new)))
                    }
                    Some(_) => {}
                }
            }
            if parts.is_empty() {
                "no visible change".to_string()
            } else {
                parts.join("; ")
            }
        }
        (Value::Null, Value::Object(a)) => a
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Null) && v.as_str() != Some(""))
            .map(|(k, v)| format!("{k}: {}", show(v)))
            .collect::<Vec<_>>()
            .join("; "),
        (Value::Object(b), Value::Null) => format!(
            "was {}",
            b.iter()
                .map(|(k, v)| format!("{k}: {}", show(v)))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        _ => String::new(),
    }
}
