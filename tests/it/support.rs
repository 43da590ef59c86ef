//! Shortcuts for the dashboard tests: objects made straight in the database,
//! reads of what the database holds, and small readers of the pages' HTML.
#![allow(dead_code)]

use diesel::prelude::*;
use flagpole::audit::{Actor, AuditEvent};
use flagpole::db::schema::{audit_events, environments, flags, rules, targets};
use flagpole::directory::organizations::{self, NewOrganization};
use flagpole::directory::users::{self, NewUser};
use flagpole::directory::{Organization, User};
use flagpole::environments::Environment;
use flagpole::evaluation::Mode;
use flagpole::flags::rules::{RuleChange, RuleRow, TargetChange};
use flagpole::flags::{Flag, NewFlag};

use crate::common::{Page, TestApp};

/// How many rows `$table` holds, e.g. `count!(app, flags)`.
#[macro_export]
macro_rules! count {
    ($app:expr, $table:ident) => {{
        use diesel::prelude::*;
        let mut conn = $app.conn();
        flagpole::db::schema::$table::table
            .count()
            .get_result::<i64>(&mut *conn)
            .expect("a count")
    }};
}

pub fn env(app: &TestApp, slug: &str) -> Environment {
    let mut conn = app.conn();
    environments::table
        .filter(environments::slug.eq(slug))
        .select(Environment::as_select())
        .first(&mut *conn)
        .unwrap_or_else(|e| panic!("environment {slug}: {e}"))
}

/// Environment slugs in switcher order.
pub fn env_order(app: &TestApp) -> Vec<String> {
    let mut conn = app.conn();
    flagpole::environments::list(&mut conn)
        .unwrap()
        .into_iter()
        .map(|e| e.slug.into_string())
        .collect()
}

pub fn flag(app: &TestApp, slug: &str) -> Flag {
    let mut conn = app.conn();
    flags::table
        .filter(flags::slug.eq(slug))
        .select(Flag::as_select())
        .first(&mut *conn)
        .unwrap_or_else(|e| panic!("flag {slug}: {e}"))
}

pub fn rule(app: &TestApp, flag_slug: &str, env_slug: &str) -> RuleRow {
    let (f, e) = (flag(app, flag_slug), env(app, env_slug));
    let mut conn = app.conn();
    rules::table
        .find((&f.id, &e.id))
        .select(RuleRow::as_select())
        .first(&mut *conn)
        .unwrap_or_else(|err| panic!("rule of {flag_slug} in {env_slug}: {err}"))
}

/// The targeted ids of a flag in an environment, sorted.
pub fn targets(app: &TestApp, flag_slug: &str, env_slug: &str) -> Vec<String> {
    let (f, e) = (flag(app, flag_slug), env(app, env_slug));
    let mut conn = app.conn();
    let mut ids: Vec<String> = targets::table
        .filter(targets::flag_id.eq(&f.id))
        .filter(targets::environment_id.eq(&e.id))
        .select(targets::target_id)
        .load(&mut *conn)
        .unwrap();
    ids.sort();
    ids
}

pub fn tags(app: &TestApp, flag_slug: &str) -> Vec<String> {
    let f = flag(app, flag_slug);
    let mut conn = app.conn();
    flagpole::flags::tags_of(&mut conn, &f.id).unwrap()
}

/// Every audit event, oldest first.
pub fn audit(app: &TestApp) -> Vec<AuditEvent> {
    let mut conn = app.conn();
    audit_events::table
        .order(audit_events::id.asc())
        .select(AuditEvent::as_select())
        .load(&mut *conn)
        .unwrap()
}

/// The audit events whose action is `action`, oldest first.
pub fn audit_of(app: &TestApp, action: &str) -> Vec<AuditEvent> {
    audit(app)
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

/// Who the tests' own changes are made by.
pub fn actor() -> Actor {
    Actor::system("test")
}

/// A new secret key of the environment `env_slug`.
pub fn api_key(app: &TestApp, env_slug: &str, name: &str) -> String {
    let e = env(app, env_slug);
    let mut conn = app.conn();
    flagpole::environments::api_keys::create(
        &mut conn,
        &actor(),
        &e.id,
        name,
        flagpole::environments::api_keys::KeyScope::Admin,
    )
    .unwrap_or_else(|err| panic!("a key of {env_slug}: {err}"))
    .1
}

pub fn json(state: &Option<String>) -> serde_json::Value {
    serde_json::from_str(state.as_deref().expect("a recorded state")).expect("JSON state")
}

pub fn make_flag(app: &TestApp, name: &str, slug: &str, tags: &str) -> Flag {
    let mut conn = app.conn();
    flagpole::flags::create(
        &mut conn,
        &actor(),
        &NewFlag {
            name: name.into(),
            slug: slug.into(),
            description: String::new(),
            tags: tags.split(',').map(str::to_string).collect(),
        },
    )
    .unwrap_or_else(|e| panic!("flag {slug}: {e:?}"))
}

pub fn make_org(app: &TestApp, name: &str, external_id: &str) -> Organization {
    let mut conn = app.conn();
    organizations::create(
        &mut conn,
        &actor(),
        &NewOrganization {
            name: name.into(),
            external_id: external_id.into(),
        },
    )
    .unwrap_or_else(|e| panic!("organization {name}: {e:?}"))
}

pub fn make_user(app: &TestApp, email: &str, first: &str, last: &str, external_id: &str) -> User {
    let mut conn = app.conn();
    users::create(
        &mut conn,
        &actor(),
        &NewUser {
            email: email.into(),
            first_name: first.into(),
            last_name: last.into(),
            external_id: external_id.into(),
        },
    )
    .unwrap_or_else(|e| panic!("user {email}: {e:?}"))
}

/// Makes `user` a member of `org`.
pub fn make_member(app: &TestApp, org: &Organization, user: &User) {
    let mut conn = app.conn();
    flagpole::directory::memberships::add(&mut conn, &actor(), org, user, "user")
        .unwrap_or_else(|e| panic!("membership: {e:?}"));
}

/// Sets a rule directly, as if someone had saved it in the editor.
pub fn set_rule(app: &TestApp, flag_slug: &str, env_slug: &str, mode: Mode, add: &[&str]) {
    let (f, e) = (flag(app, flag_slug), env(app, env_slug));
    let mut conn = app.conn();
    flagpole::flags::rules::save_rule(
        &mut conn,
        &actor(),
        &f,
        &e,
        &RuleChange {
            mode: Some(mode),
            targets: TargetChange::Edit {
                add: add.iter().map(|s| s.to_string()).collect(),
                remove: Vec::new(),
            },
            ..Default::default()
        },
    )
    .unwrap_or_else(|err| panic!("saving the rule: {err:?}"));
}

pub fn set_enabled(app: &TestApp, flag_slug: &str, env_slug: &str, enabled: bool) {
    let (f, e) = (flag(app, flag_slug), env(app, env_slug));
    let mut conn = app.conn();
    flagpole::flags::rules::set_enabled(&mut conn, &actor(), &f, &e, enabled, None)
        .unwrap_or_else(|err| panic!("toggling: {err:?}"));
}

/// Undoes the HTML escaping of text, for comparing messages.
pub fn unescape(html: &str) -> String {
    html.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&#60;", "<")
        .replace("&gt;", ">")
        .replace("&#62;", ">")
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

/// Asserts that the page, read as text, says `text`.
pub fn says(page: &Page, text: &str) {
    assert!(
        unescape(&page.body).contains(text),
        "expected the page to say {text:?}; status {}, body:\n{}",
        page.status,
        page.body
    );
}

/// The message shown under the field `name`, if any.
pub fn field_error(body: &str, name: &str) -> Option<String> {
    let marker = format!("class=\"field-error\" id=\"{name}-error\">");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find("</p>")?;
    Some(unescape(&body[start..start + end]))
}

/// Every field that shows an error on the page.
pub fn fields_with_errors(body: &str) -> Vec<String> {
    let marker = "class=\"field-error\" id=\"";
    body.match_indices(marker)
        .map(|(i, _)| {
            let rest = &body[i + marker.len()..];
            rest[..rest.find("-error\"").unwrap_or(0)].to_string()
        })
        .collect()
}

/// The slug of the environment selected in the header's switcher.
pub fn active_environment(body: &str) -> Option<String> {
    let start = body.find("<select id=\"env-select\"")?;
    let end = start + body[start..].find("</select>")?;
    let select = &body[start..end];
    let selected = select.find(" selected>")?;
    let open = select[..selected].rfind("value=\"")? + "value=\"".len();
    let close = open + select[open..].find('"')?;
    Some(select[open..close].to_string())
}

/// The environment names of the switcher, in order.
pub fn switcher_names(body: &str) -> Vec<String> {
    let Some(start) = body.find("<select id=\"env-select\"") else {
        return Vec::new();
    };
    let end = start + body[start..].find("</select>").unwrap();
    body[start..end]
        .split("<option ")
        .skip(1)
        .map(|opt| {
            let text = &opt[opt.find('>').unwrap() + 1..];
            text[..text.find("</option>").unwrap()].trim().to_string()
        })
        .collect()
}

/// The table row of a flag on `/flags`.
pub fn flag_row<'a>(body: &'a str, slug: &str) -> Option<&'a str> {
    let marker = format!("class=\"flag-name\" href=\"/flags/{slug}\"");
    let at = body.find(&marker)?;
    let start = body[..at].rfind("<tr>")?;
    let end = at + body[at..].find("</tr>")?;
    Some(&body[start..end])
}

/// The slugs of the flags listed on a `/flags` page, in order.
pub fn listed_flags(body: &str) -> Vec<String> {
    let marker = "class=\"flag-name\" href=\"/flags/";
    body.match_indices(marker)
        .map(|(i, _)| {
            let rest = &body[i + marker.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// The card of environment `name` on a flag's page.
pub fn card<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let marker = format!("aria-label=\"{name}\">");
    let mut from = 0;
    while let Some(pos) = body[from..].find(&marker) {
        let at = from + pos;
        let start = body[..at].rfind('<')?;
        if body[start..].starts_with("<article") {
            let end = at + body[at..].find("</article>")?;
            return Some(&body[start..end]);
        }
        from = at + marker.len();
    }
    None
}

/// Cards' environment names on a flag's page, in order.
pub fn card_names(body: &str) -> Vec<String> {
    let marker = "<article class=\"card env-card";
    body.match_indices(marker)
        .map(|(i, _)| {
            let rest = &body[i..];
            let a = rest.find("aria-label=\"").unwrap() + "aria-label=\"".len();
            rest[a..a + rest[a..].find('"').unwrap()].to_string()
        })
        .collect()
}

/// The values of the buttons named `name` (e.g. the search results' `add_target`).
pub fn button_values(body: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    body.match_indices(&marker)
        .map(|(i, _)| {
            let rest = &body[i + marker.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// The values of the hidden inputs named `name`.
pub fn hidden_values(body: &str, name: &str) -> Vec<String> {
    let marker = format!("<input type=\"hidden\" name=\"{name}\" value=\"");
    body.match_indices(&marker)
        .map(|(i, _)| {
            let rest = &body[i + marker.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// The value of the radio button `mode` that is checked in the rule editor.
pub fn checked_mode(body: &str) -> Option<String> {
    ["none", "some", "all"]
        .into_iter()
        .find(|m| body.contains(&format!("name=\"mode\" value=\"{m}\" checked")))
        .map(str::to_string)
}
