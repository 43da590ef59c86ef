//! The audit log page, and the rows a flag's history shows.

use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::context::{Ctx, Layout};
use super::paging::{load_clamped, page_param, query_string, Paging};
use crate::audit::{self, describe_change, AuditEvent, AuditFilter};
use crate::environments::Environment;
use crate::error::Result;
use crate::web::render;
use crate::web::routes::Routes;
use crate::web::Surface;

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::new(cfg, "", Surface::Dashboard).get("/audit", audit_page);
}

/// An audit event as a table row.
pub struct AuditRow {
    pub when: String,
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_label: String,
    pub flag_slug: Option<String>,
    pub environment: Option<Environment>,
    pub summary: String,
}

pub fn audit_rows(events: Vec<AuditEvent>, envs: &[Environment]) -> Vec<AuditRow> {
    events
        .into_iter()
        .map(|e| AuditRow {
            when: e.created_at.human(),
            summary: describe_change(&e.before(), &e.after()),
            environment: e
                .environment_id
                .as_ref()
                .and_then(|id| envs.iter().find(|env| &env.id == id).cloned()),
            flag_slug: e.flag_id.as_ref().map(|_| e.object_label.clone()),
            actor: e.actor,
            action: e.action,
            object_type: e.object_type,
            object_label: e.object_label,
        })
        .collect()
}

#[derive(Deserialize)]
struct AuditQuery {
    environment: Option<String>,
    actor: Option<String>,
    page: Option<String>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    rows: Vec<AuditRow>,
    environment: String,
    actor: String,
    paging: Paging,
}

async fn audit_page(ctx: Ctx, query: web::Query<AuditQuery>) -> Result<HttpResponse> {
    const PER_PAGE: i64 = 50;
    let environment = query.environment.clone().unwrap_or_default();
    let actor = query.actor.clone().unwrap_or_default();
    let filter = AuditFilter {
        environment_id: ctx
            .environments
            .iter()
            .find(|e| e.slug == environment.as_str())
            .map(|e| e.id.clone()),
        actor: Some(actor.trim().to_string()).filter(|a| !a.is_empty()),
        ..Default::default()
    };
    let page = page_param(query.page.as_deref());
    let (events, total) = ctx
        .state
        .read(move |conn| load_clamped(page, PER_PAGE, |p| audit::page(conn, &filter, p, PER_PAGE)))
        .await?;
    render(&AuditPage {
        layout: ctx.layout("Audit log", "audit"),
        rows: audit_rows(events, &ctx.environments),
        paging: Paging::new(
            page,
            PER_PAGE,
            total,
            query_string(&[("environment", &environment), ("actor", &actor)]),
        ),
        environment,
        actor,
    })
}
