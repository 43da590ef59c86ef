//! The Webhooks pages: the active environment's endpoints, adding one (its
//! signing secret shown once), and an endpoint with its recent deliveries.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::context::{Ctx, Form, Layout};
use crate::admins::Role;
use crate::environments::Environment;
use crate::error::{Entity, Error, FieldErrors, Result};
use crate::ids::WebhookEndpointId;
use crate::web::routes::Routes;
use crate::web::{redirect, render_with_status, Surface};
use crate::webhooks::endpoints::{self, EndpointInput, MAX_URL_LENGTH};
use crate::webhooks::guard::redact;
use crate::webhooks::{DeliveryStatus, WebhookEndpoint, EVENTS};

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::new(cfg, "", Surface::Dashboard)
        .get("/webhooks", list)
        .post("/webhooks", create)
        .get("/webhooks/{id}", show)
        .post("/webhooks/{id}", update)
        .post("/webhooks/{id}/enabled", set_enabled)
        .post("/webhooks/{id}/rotate", rotate)
        .post("/webhooks/{id}/delete", delete);
}

fn endpoint_id(text: &str) -> Result<WebhookEndpointId> {
    WebhookEndpointId::parse(text).ok_or(Error::NotFound(Entity::WebhookEndpoint))
}

/// How many deliveries an endpoint's page shows.
const RECENT_DELIVERIES: i64 = 50;

struct EndpointRow {
    id: WebhookEndpointId,
    url: String,
    description: String,
    events: Vec<&'static str>,
    enabled: bool,
    secret_prefix: String,
    last_status: Option<DeliveryStatus>,
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
            url: redact(&endpoint.url),
            description: endpoint.description.clone(),
            events: endpoint.events().into_iter().map(str::to_string).collect(),
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
) -> Result<HttpResponse> {
    let env_id = env.id.clone();
    let summaries = ctx
        .state
        .read(move |conn| endpoints::list(conn, &env_id))
        .await?;
    let rows = summaries
        .into_iter()
        .map(|s| EndpointRow {
            events: s.endpoint.events(),
            id: s.endpoint.id,
            url: redact(&s.endpoint.url),
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

async fn list(ctx: Ctx) -> Result<HttpResponse> {
    let env = ctx.active.clone();
    render_list(&ctx, env, EndpointForm::blank(), None).await
}

async fn create(ctx: Ctx, form: Form) -> Result<HttpResponse> {
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
        .write(move |conn| {
            endpoints::create(
                conn,
                &state.sealer,
                &actor,
                &env_id,
                &input,
                &state.config.webhook_allow,
            )
        })
        .await
    {
        Ok((endpoint, secret)) => {
            let created = NewSecret {
                url: redact(&endpoint.url),
                secret,
            };
            render_list(&ctx, env, EndpointForm::blank(), Some(created)).await
        }
        Err(error) => match error.field_errors() {
            Some(errors) => {
                typed.errors = errors;
                render_list(&ctx, env, typed, None).await
            }
            None => Err(error),
        },
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
    status: DeliveryStatus,
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
    id: WebhookEndpointId,
    form: Option<EndpointForm>,
    new_secret: Option<NewSecret>,
) -> Result<HttpResponse> {
    let (endpoint, details) = ctx
        .state
        .read(move |conn| {
            let endpoint = endpoints::get(conn, &id)?;
            let details = endpoints::recent_deliveries(conn, &id, RECENT_DELIVERIES)?;
            Ok((endpoint, details))
        })
        .await?;
    let env = ctx
        .environments
        .iter()
        .find(|e| e.id == endpoint.environment_id)
        .cloned()
        .ok_or(Error::NotFound(Entity::WebhookEndpoint))?;
    let deliveries = details
        .into_iter()
        .map(|d| DeliveryRow {
            event: d.event.event,
            event_id: d.event.id.to_string(),
            created: d.event.created_at.human(),
            next_retry: if d.delivery.status == DeliveryStatus::Pending {
                d.delivery.next_attempt_at.human()
            } else {
                String::new()
            },
            status: d.delivery.status,
            attempts: d.delivery.attempts,
            tries: d
                .attempts
                .into_iter()
                .map(|a| AttemptRow {
                    when: a.attempted_at.human(),
                    ok: a.status_code.is_some_and(|s| (200..300).contains(&s)),
                    outcome: match (a.status_code, a.error) {
                        (Some(code), _) => format!("HTTP {code}"),
                        (None, Some(error)) => error,
                        (None, None) => "no answer".into(),
                    },
                    duration_ms: a.duration_ms,
                    // What the receiver answered can hold anything it
                    // knows: editors and owners see it, viewers do not.
                    excerpt: if ctx.role >= Role::Editor {
                        a.response_excerpt.unwrap_or_default()
                    } else {
                        String::new()
                    },
                })
                .collect(),
        })
        .collect();
    let form = form.unwrap_or_else(|| EndpointForm::of(&endpoint));
    let status = form.status();
    render_with_status(
        &ShowPage {
            layout: ctx.layout(format!("Webhook {}", redact(&endpoint.url)), "webhooks"),
            env,
            form,
            all_events: &EVENTS,
            max_url: MAX_URL_LENGTH,
            deliveries,
            new_secret,
            endpoint: WebhookEndpoint {
                url: redact(&endpoint.url),
                ..endpoint
            },
        },
        status,
    )
}

async fn show(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse> {
    render_show(&ctx, endpoint_id(&path)?, None, None).await
}

async fn update(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let id = endpoint_id(&path)?;
    let mut typed = EndpointForm::read(&form);
    let input = typed.input();
    let actor = ctx.actor();
    let target = id.clone();
    let state = ctx.state.clone();
    match ctx
        .state
        .write(move |conn| {
            endpoints::update(conn, &actor, &target, &input, &state.config.webhook_allow)
        })
        .await
    {
        Ok(endpoint) => {
            ctx.flash(format!("Saved the endpoint {}.", redact(&endpoint.url)));
            Ok(redirect(&format!("/webhooks/{id}")))
        }
        Err(error) => match error.field_errors() {
            Some(errors) => {
                typed.errors = errors;
                render_show(&ctx, id, Some(typed), None).await
            }
            None => Err(error),
        },
    }
}

async fn set_enabled(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let id = endpoint_id(&path)?;
    let enabled = match form.get("enabled").as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(Error::malformed(
                "form",
                "Say whether to enable or disable the endpoint.",
            ))
        }
    };
    let actor = ctx.actor();
    let target = id.clone();
    let endpoint = ctx
        .state
        .write(move |conn| endpoints::set_enabled(conn, &actor, &target, enabled))
        .await?;
    ctx.flash(if enabled {
        format!(
            "Enabled {}: it hears about changes from now on.",
            redact(&endpoint.url)
        )
    } else {
        format!(
            "Disabled {}: it is sent nothing new until you enable it again.",
            redact(&endpoint.url)
        )
    });
    Ok(redirect(&format!("/webhooks/{id}")))
}

async fn rotate(ctx: Ctx, path: web::Path<String>, _form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let id = endpoint_id(&path)?;
    let actor = ctx.actor();
    let (state, target) = (ctx.state.clone(), id.clone());
    let (endpoint, secret) = ctx
        .state
        .write(move |conn| endpoints::rotate_secret(conn, &state.sealer, &actor, &target))
        .await?;
    let created = NewSecret {
        url: redact(&endpoint.url),
        secret,
    };
    render_show(&ctx, id, None, Some(created)).await
}

async fn delete(ctx: Ctx, path: web::Path<String>, _form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let id = endpoint_id(&path)?;
    let actor = ctx.actor();
    let endpoint = ctx
        .state
        .write(move |conn| endpoints::delete(conn, &actor, &id))
        .await?;
    ctx.flash(format!(
        "Deleted the endpoint {} and its delivery history.",
        redact(&endpoint.url)
    ));
    Ok(redirect("/webhooks"))
}
