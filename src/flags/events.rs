//! Telling webhook endpoints about flag changes: the event's `data` is the
//! flag as WorkOS's `feature_flag` object in the endpoint's environment.

use diesel::prelude::*;
use serde_json::Value;

use super::{with_tags, Flag};
use crate::audit::Actor;
use crate::db::DbConn;
use crate::error::Result;
use crate::ids::FlagId;
use crate::webhooks::outbox::{self, Scope};

/// Queues `event` about `flag` for every endpoint subscribed to it in
/// `scope`, inside the caller's transaction. `context` is what the event
/// tells besides the flag (its previous attributes, a rule's targets);
/// without subscribed endpoints this costs one small query. The flag and
/// its rules are read as they are now, so a deletion calls this first.
pub(super) fn announce(
    conn: &mut DbConn,
    event: &'static str,
    flag: &Flag,
    scope: Scope<'_>,
    actor: &Actor,
    context: Value,
) -> Result<()> {
    let subscribers = outbox::subscribers(conn, event, scope)?;
    if subscribers.is_empty() {
        return Ok(());
    }
    let flag = with_tags(conn, flag.clone())?;
    let env_ids: Vec<_> = subscribers.environments().map(|e| e.id.clone()).collect();
    let rules = rules_of(conn, &flag.flag.id, &env_ids)?;
    outbox::queue(conn, event, &subscribers, actor, &context, |env| {
        let rule = rules.iter().find(|r| r.environment_id == env.id)?;
        let mut data = serde_json::to_value(flag.workos_object(rule)).ok()?;
        data["environment_id"] = Value::String(env.id.to_string());
        Some(data)
    })
}

fn rules_of(
    conn: &mut DbConn,
    flag_id: &FlagId,
    env_ids: &[crate::ids::EnvironmentId],
) -> Result<Vec<super::RuleRow>> {
    use crate::db::schema::rules;
    Ok(rules::table
        .filter(rules::flag_id.eq(flag_id))
        .filter(rules::environment_id.eq_any(env_ids))
        .select(super::RuleRow::as_select())
        .load(conn)?)
}
