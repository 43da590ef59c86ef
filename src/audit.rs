//! The audit trail: who changed what, where, from what to what, and when.
//! Every service records its change inside the change's own transaction.

use diesel::prelude::*;
use serde_json::Value;

use crate::db::schema::{audit_events, revisions};
use crate::db::{Db, DbConn};
use crate::ids::{new_id, now};
use crate::models::AuditEvent;

/// One change, as the service that made it describes it.
pub struct Change<'a> {
    pub action: &'a str,
    pub object_type: &'a str,
    pub object_id: &'a str,
    pub object_label: &'a str,
    pub flag_id: Option<&'a str>,
    pub environment_id: Option<&'a str>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// The revision of everything the evaluation index is built from.
pub fn revision(conn: &mut DbConn) -> QueryResult<i64> {
    revisions::table
        .find(1)
        .select(revisions::revision)
        .first(conn)
}

fn event_of(actor: &str, change: Change<'_>, at: String) -> AuditEvent {
    AuditEvent {
        id: new_id("audit"),
        actor: actor.to_string(),
        action: change.action.to_string(),
        object_type: change.object_type.to_string(),
        object_id: change.object_id.to_string(),
        object_label: change.object_label.to_string(),
        flag_id: change.flag_id.map(str::to_string),
        environment_id: change.environment_id.map(str::to_string),
        before_state: change.before.map(|v| v.to_string()),
        after_state: change.after.map(|v| v.to_string()),
        created_at: at,
    }
}

pub fn record(conn: &mut DbConn, actor: &str, change: Change<'_>) -> QueryResult<()> {
    let event = event_of(actor, change, now());
    diesel::insert_into(audit_events::table)
        .values(&event)
        .execute(conn)?;
    diesel::update(revisions::table.find(1))
        .set(revisions::revision.eq(revisions::revision + 1))
        .execute(conn)?;
    Ok(())
}

/// Records many changes of one operation (a bulk upsert) with batched
/// inserts and a single revision bump.
pub fn record_many(conn: &mut DbConn, actor: &str, changes: Vec<Change<'_>>) -> QueryResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let at = now();
    let events: Vec<AuditEvent> = changes
        .into_iter()
        .map(|change| event_of(actor, change, at.clone()))
        .collect();
    for chunk in events.chunks(500) {
        crate::with_backend!(conn, |c| diesel::insert_into(audit_events::table)
            .values(chunk)
            .execute(c))?;
    }
    diesel::update(revisions::table.find(1))
        .set(revisions::revision.eq(revisions::revision + 1))
        .execute(conn)?;
    Ok(())
}

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub flag_id: Option<String>,
    pub environment_id: Option<String>,
    pub actor: Option<String>,
}

/// When events happened: `since` inclusive, `until` exclusive, both as
/// stored (RFC 3339 UTC with microseconds, see `ids::now`).
#[derive(Debug, Default, Clone)]
pub struct TimeRange {
    pub since: Option<String>,
    pub until: Option<String>,
}

/// The events that pass `filter` and `range`, unordered, for lists to sort and page.
pub fn matching<'a>(filter: &AuditFilter, range: &TimeRange) -> audit_events::BoxedQuery<'a, Db> {
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
    if let Some(since) = &range.since {
        query = query.filter(audit_events::created_at.ge(since.clone()));
    }
    if let Some(until) = &range.until {
        query = query.filter(audit_events::created_at.lt(until.clone()));
    }
    query
}

/// Newest first; `page` counts from 1.
pub fn list(
    conn: &mut DbConn,
    filter: &AuditFilter,
    page: i64,
    per_page: i64,
) -> QueryResult<(Vec<AuditEvent>, i64)> {
    let build = || matching(filter, &TimeRange::default());
    let total: i64 = build().count().get_result(conn)?;
    let events = build()
        .order(audit_events::id.desc())
        .limit(per_page)
        .offset((page.max(1) - 1) * per_page)
        .select(AuditEvent::as_select())
        .load(conn)?;
    Ok((events, total))
}

/// "enabled: false → true; mode: none → some": what differs between two states.
pub fn describe_change(before: Option<&str>, after: Option<&str>) -> String {
    let parse = |s: Option<&str>| s.and_then(|s| serde_json::from_str::<Value>(s).ok());
    let (before, after) = (parse(before), parse(after));
    let show = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".to_string(),
        other => other.to_string(),
    };
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let mut parts = Vec::new();
            for (key, new) in &a {
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
        (None, Some(Value::Object(a))) => a
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Null) && v.as_str() != Some(""))
            .map(|(k, v)| format!("{k}: {}", show(v)))
            .collect::<Vec<_>>()
            .join("; "),
        (Some(Value::Object(b)), None) => format!(
            "was {}",
            b.iter()
                .map(|(k, v)| format!("{k}: {}", show(v)))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        _ => String::new(),
    }
}
