//! The Webhooks pages: the active environment's endpoints, adding one (its
//! signing secret shown once), and an endpoint with its recent deliveries.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::context::{Ctx, Form, Layout};
use super::{redirect, render_with_status};
use crate::error::{AppError, FieldErrors};
use crate::ids::human_time;
use crate::models::{Environment, WebhookEndpoint};
use crate::webhooks::{self, EndpointInput, EVENTS, MAX_URL_LENGTH};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks", web::get().to(list))
        .route("/webhooks", web::post().to(create))
        .route("/webhooks/{id}", web::get().to(show))
        .route("/webhooks/{id}", web::post().to(update))
        .route("/webhooks/{id}/enabled", web::post().to(set_enabled))
        .route("/webhooks/{id}/rotate", web::post().to(rotate))
        .route("/webhooks/{id}/delete", web::post().to(delete));
}

/// How many deliveries an endpoint's page shows.
const RECENT_DELIVERIES: i64 = 50;

struct EndpointRow {
    id: String,
    url: String,
    description: String,
    events: Vec<&'static str>,
    enabled: bool,
    secret_prefix: String,
    last_status: Option<String>,
}

/// The form's fields as typed, to show them again with their errors.
struct EndpointForm {
    url: String,
    description: String,
    events: Vec<String>,
    errors: FieldErrors,
}

impl EndpointForm {
    fn blank() -> Self {
        EndpointForm {
            url: String::new(),
            description: String::new(),
            events: EVENTS.iter().map(|e| e.to_string()).collect(),
            errors: FieldErrors::default(),
        }
    }

    fn of(endpoint: &WebhookEndpoint) -> Self {
        EndpointForm {
            url: endpoint.url.clone(),
            description: endpoint.description.clone(),
            events: webhooks::events_of(endpoint)
                .into_iter()
                .map(str::to_string)
                .collect(),
            errors: FieldErrors::default(),
        }
    }

    fn read(form: &Form) -> Self {
        EndpointForm {
            url: form.get("url"),
            description: form.get("description"),
            events: form.all("events"),
            errors: FieldErrors::default(),
        }
    }

    fn input(&self) -> EndpointInput {
        EndpointInput {
            url: self.url.clone(),
            description: self.description.clone(),
            events: self.events.clone(),
        }
    }

    fn has(&self, event: &&str) -> bool {
        self.events.iter().any(|e| e == event)
    }

    fn status(&self) -> StatusCode {
        if self.errors.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    }
}

/// A signing secret just made, shown once.
struct NewSecret {
    url: String,
    secret: String,
}

#[derive(Template)]
#[template(path = "webhooks/list.html")]
struct ListPage {
    layout: Layout,
    env: Environment,
    rows: Vec<EndpointRow>,
    form: EndpointForm,
    all_events: &'static [&'static str],
    max_url: usize,
    new_secret: Option<NewSecret>,
}

async fn render_list(
    ctx: &Ctx,
    env: Environment,
    form: EndpointForm,
    new_secret: Option<NewSecret>,
) -> Result<HttpResponse, AppError> {
    let env_id = env.id.clone();
    let summaries = ctx
        .state
        .db(move |conn| Ok(webhooks::list_endpoints(conn, &env_id)?))
        .await?;
    let rows = summaries
        .into_iter()
        .map(|s| EndpointRow {
            events: webhooks::events_of(&s.endpoint),
            id: s.endpoint.id,
            url: s.endpoint.url,
            description: s.endpoint.description,
            enabled: s.endpoint.enabled,
            secret_prefix: s.endpoint.secret_prefix,
            last_status: s.last_status,
        })
        .collect();
    let status = form.status();
    render_with_status(
        &ListPage {
            layout: ctx.layout(format!("Webhooks in {}", env.name), "webhooks"),
            env,
            rows,
            form,
            all_events: &EVENTS,
            max_url: MAX_URL_LENGTH,
            new_secret,
        },
        status,
    )
}

async fn list(ctx: Ctx) -> Result<HttpResponse, AppError> {
    let env = ctx.active.clone();
    render_list(&ctx, env, EndpointForm::blank(), None).await
}

async fn create(ctx: Ctx, form: Form) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    // The form names its environment, so a switch in another tab cannot
    // move the endpoint elsewhere than the page said.
    let env = ctx.environment_by_slug(&form.get("environment"))?;
    let mut typed = EndpointForm::read(&form);
    let input = typed.input();
    let actor = ctx.actor();
    let (state, env_id) = (ctx.state.clone(), env.id.clone());
    match ctx
        .state
        .db(move |conn| webhooks::create_endpoint(conn, &state.sealer, &actor, &env_id, &input))
        .await
    {
        Ok((endpoint, secret)) => {
            let created = NewSecret {
                url: endpoint.url,
                secret,
            };
            render_list(&ctx, env, EndpointForm::blank(), Some(created)).await
        }
        Err(AppError::Invalid(errors)) => {
            typed.errors = errors;
            render_list(&ctx, env, typed, None).await
        }
        Err(other) => Err(other),
    }
}

struct AttemptRow {
    when: String,
    outcome: String,
    ok: bool,
    duration_ms: i32,
    excerpt: String,
}

struct DeliveryRow {
    event: String,
    event_id: String,
    created: String,
    status: String,
    attempts: i32,
    next_retry: String,
    tries: Vec<AttemptRow>,
}

#[derive(Template)]
#[template(path = "webhooks/show.html")]
struct ShowPage {
    layout: Layout,
    endpoint: WebhookEndpoint,
    env: Environment,
    form: EndpointForm,
    all_events: &'static [&'static str],
    max_url: usize,
    deliveries: Vec<DeliveryRow>,
    new_secret: Option<NewSecret>,
}

async fn render_show(
    ctx: &Ctx,
    id: String,
    form: Option<EndpointForm>,
    new_secret: Option<NewSecret>,
) -> Result<HttpResponse, AppError> {
    let (endpoint, details) = ctx
        .state
        .db(move |conn| {
            let endpoint = webhooks::endpoint(conn, &id)?;
            let details = webhooks::recent_deliveries(conn, &id, RECENT_DELIVERIES)?;
            Ok((endpoint, details))
        })
        .await?;
    let env = ctx
        .environments
        .iter()
        .find(|e| e.id == endpoint.environment_id)
        .cloned()
        .ok_or(AppError::NotFound)?;
    let deliveries = details
        .into_iter()
        .map(|d| DeliveryRow {
            event: d.event.event,
            event_id: d.event.id,
            created: human_time(&d.event.created_at),
            next_retry: if d.delivery.status == "pending" {
                human_time(&d.delivery.next_attempt_at)
            } else {
                String::new()
            },
            status: d.delivery.status,
            attempts: d.delivery.attempts,
            tries: d
                .attempts
                .into_iter()
                .map(|a| AttemptRow {
                    when: human_time(&a.attempted_at),
                    ok: a.status_code.is_some_and(|s| (200..300).contains(&s)),
                    outcome: match (a.status_code, a.error) {
                        (Some(code), _) => format!("HTTP {code}"),
                        (None, Some(error)) => error,
                        (None, None) => "no answer".into(),
                    },
                    duration_ms: a.duration_ms,
                    excerpt: a.response_excerpt.unwrap_or_default(),
                })
                .collect(),
        })
        .collect();
    let form = form.unwrap_or_else(|| EndpointForm::of(&endpoint));
    let status = form.status();
    render_with_status(
        &ShowPage {
            layout: ctx.layout(format!("Webhook {}", endpoint.url), "webhooks"),
            env,
            form,
            all_events: &EVENTS,
            max_url: MAX_URL_LENGTH,
            deliveries,
            new_secret,
            endpoint,
        },
        status,
    )
}

async fn show(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    render_show(&ctx, path.into_inner(), None, None).await
}

async fn update(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let id = path.into_inner();
    let mut typed = EndpointForm::read(&form);
    let input = typed.input();
    let actor = ctx.actor();
    let endpoint_id = id.clone();
    match ctx
        .state
        .db(move |conn| webhooks::update_endpoint(conn, &actor, &endpoint_id, &input))
        .await
    {
        Ok(endpoint) => {
            ctx.flash(format!("Saved the endpoint {}.", endpoint.url));
            Ok(redirect(&format!("/webhooks/{id}")))
        }
        Err(AppError::Invalid(errors)) => {
            typed.errors = errors;
            render_show(&ctx, id, Some(typed), None).await
        }
        Err(other) => Err(other),
    }
}

async fn set_enabled(
    ctx: Ctx,
    path: web::Path<String>,
    form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let id = path.into_inner();
    let enabled = match form.get("enabled").as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(AppError::BadRequest(
                "Say whether to enable or disable the endpoint.".into(),
            ))
        }
    };
    let actor = ctx.actor();
    let endpoint_id = id.clone();
    let endpoint = ctx
        .state
        .db(move |conn| webhooks::set_enabled(conn, &actor, &endpoint_id, enabled))
        .await?;
    ctx.flash(if enabled {
        format!(
            "Enabled {}: it hears about changes from now on.",
            endpoint.url
        )
    } else {
        format!(
            "Disabled {}: it is sent nothing new until you enable it again.",
            endpoint.url
        )
    });
    Ok(redirect(&format!("/webhooks/{id}")))
}

async fn rotate(ctx: Ctx, path: web::Path<String>, _form: Form) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let id = path.into_inner();
    let actor = ctx.actor();
    let (state, endpoint_id) = (ctx.state.clone(), id.clone());
    let (endpoint, secret) = ctx
        .state
        .db(move |conn| webhooks::rotate_secret(conn, &state.sealer, &actor, &endpoint_id))
        .await?;
    let created = NewSecret {
        url: endpoint.url,
        secret,
    };
    render_show(&ctx, id, None, Some(created)).await
}

async fn delete(ctx: Ctx, path: web::Path<String>, _form: Form) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let id = path.into_inner();
    let actor = ctx.actor();
    let endpoint = ctx
        .state
        .db(move |conn| webhooks::delete_endpoint(conn, &actor, &id))
        .await?;
    ctx.flash(format!(
        "Deleted the endpoint {} and its delivery history.",
        endpoint.url
    ));
    Ok(redirect("/webhooks"))
}
