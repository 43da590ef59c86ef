//! The Environments page: environments, their API keys and signing keys,
//! and how a WorkOS client reaches each one.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;

use super::context::{Ctx, Form, Layout};
use crate::environments::api_keys::{self, KeyScope};
use crate::environments::{self, Environment, EnvironmentInput, PALETTE};
use crate::error::{Entity, Error, FieldErrors, Result};
use crate::ids::ApiKeyId;
use crate::tokens::keys::SigningAlgorithm;
use crate::tokens::signing::{self, KeyUsage};
use crate::web::routes::Routes;
use crate::web::{redirect, render_with_status, Surface};

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::new(cfg, "", Surface::Dashboard)
        .get("/environments", environments_page)
        .post("/environments", create_environment)
        .post("/environments/{slug}", update_environment)
        .post("/environments/{slug}/move", move_environment)
        .post("/environments/{slug}/api-keys", create_api_key)
        .post("/environments/{slug}/api-keys/{id}/revoke", revoke_api_key)
        .post("/environments/{slug}/signing-key", rotate_signing_key);
}

/// An environment with its credentials, as the Environments page shows it.
struct EnvironmentDetails {
    env: Environment,
    api_keys: Vec<ApiKeyRow>,
    signing_kid: String,
    signing_algorithm: &'static str,
    signing_since: String,
    workos_kid: String,
    /// The allowed browser origins, as the form shows them.
    origins: String,
    /// The next keys, published and waiting to sign: (kid, algorithm, from).
    pending: Vec<(String, &'static str, String)>,
}

struct ApiKeyRow {
    id: ApiKeyId,
    name: String,
    prefix: String,
    created: String,
    created_by: String,
    last_used: String,
    revoked: bool,
    scope: &'static str,
}

/// The secret of a key just created, shown once.
struct NewSecret {
    env_name: String,
    name: String,
    secret: String,
}

#[derive(Template)]
#[template(path = "environments.html")]
struct EnvironmentsPage {
    layout: Layout,
    details: Vec<EnvironmentDetails>,
    palette: &'static [(&'static str, &'static str)],
    algorithms: Vec<&'static str>,
    /// Each key scope with what it allows.
    scopes: Vec<(&'static str, &'static str)>,
    jwks_url: String,
    sdk: SdkOptions,
    new_name: String,
    new_slug: String,
    new_color: String,
    new_confirm: bool,
    errors: FieldErrors,
    /// Which environment's edit form the errors belong to, if not the new one.
    errors_for: String,
    /// The origins as typed, shown again with their error.
    typed_origins: String,
    new_secret: Option<NewSecret>,
}

/// How a WorkOS SDK client reaches this Flagpole: its options besides the
/// key and the client id.
struct SdkOptions {
    hostname: String,
    port: Option<u16>,
    https: bool,
}

impl SdkOptions {
    fn of(public_url: &str) -> SdkOptions {
        let url = reqwest::Url::parse(public_url).ok();
        SdkOptions {
            hostname: url
                .as_ref()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| "localhost".into()),
            port: url.as_ref().and_then(|u| u.port()),
            https: url.is_some_and(|u| u.scheme() == "https"),
        }
    }
}

/// What the page shows besides the environments themselves.
#[derive(Default)]
struct EnvironmentsView {
    new_name: String,
    new_slug: String,
    new_color: Option<String>,
    new_confirm: bool,
    errors: FieldErrors,
    errors_for: String,
    typed_origins: String,
    new_secret: Option<NewSecret>,
}

async fn render_environments(ctx: &Ctx, view: EnvironmentsView) -> Result<HttpResponse> {
    let state = ctx.state.clone();
    let envs = ctx.environments.clone();
    signing::ensure_keys(&ctx.state, envs.iter().map(|env| env.id.clone()).collect()).await?;
    let details = ctx
        .state
        .read(move |conn| {
            let mut out = Vec::with_capacity(envs.len());
            for env in envs {
                let current = |conn: &mut crate::DbConn, usage| {
                    signing::current_key(conn, &env.id, usage)?.ok_or_else(|| {
                        Error::internal(anyhow::anyhow!(
                            "no {usage:?} signing key after creating it"
                        ))
                    })
                };
                let key = current(conn, KeyUsage::Tokens)?;
                let workos = current(conn, KeyUsage::Workos)?;
                let mut pending = Vec::new();
                for &usage in KeyUsage::ALL {
                    if let Some(next) = signing::pending_key(conn, &env.id, usage)? {
                        let from = next
                            .signs_from
                            .map(|t| t.human_seconds())
                            .unwrap_or_default();
                        pending.push((next.id, next.algorithm.as_str(), from));
                    }
                }
                let api_keys = api_keys::list(conn, &env.id)?
                    .into_iter()
                    .map(|k| ApiKeyRow {
                        created: k.created_at.human(),
                        last_used: k
                            .last_used_at
                            .max(state.key_usage.pending(&k.id))
                            .map(|t| t.human())
                            .unwrap_or_else(|| "never".into()),
                        revoked: k.revoked_at.is_some(),
                        scope: k.scope.as_str(),
                        id: k.id,
                        name: k.name,
                        prefix: k.prefix,
                        created_by: k.created_by,
                    })
                    .collect();
                out.push(EnvironmentDetails {
                    signing_kid: key.id,
                    signing_algorithm: key.algorithm.as_str(),
                    signing_since: key.signs_from.unwrap_or(key.created_at).human(),
                    workos_kid: workos.id,
                    origins: env.origins().collect::<Vec<_>>().join(", "),
                    pending,
                    api_keys,
                    env,
                });
            }
            Ok(out)
        })
        .await?;
    let status = if view.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render_with_status(
        &EnvironmentsPage {
            layout: ctx.layout("Environments", "environments"),
            details,
            palette: PALETTE,
            algorithms: SigningAlgorithm::ALL.iter().map(|a| a.as_str()).collect(),
            scopes: KeyScope::ALL
                .iter()
                .map(|s| (s.as_str(), s.description()))
                .collect(),
            jwks_url: format!("{}/.well-known/jwks.json", ctx.state.config.public_url),
            sdk: SdkOptions::of(&ctx.state.config.public_url),
            new_name: view.new_name,
            new_slug: view.new_slug,
            new_color: view.new_color.unwrap_or_else(|| PALETTE[1].1.to_string()),
            new_confirm: view.new_confirm,
            errors: view.errors,
            errors_for: view.errors_for,
            typed_origins: view.typed_origins,
            new_secret: view.new_secret,
        },
        status,
    )
}

async fn environments_page(ctx: Ctx) -> Result<HttpResponse> {
    render_environments(&ctx, EnvironmentsView::default()).await
}

fn environment_input(form: &Form) -> EnvironmentInput {
    EnvironmentInput {
        name: form.get("name"),
        slug: form.get("slug"),
        color: form.get("color"),
        require_confirmation: form.checkbox("require_confirmation"),
        allowed_origins: form
            .has("allowed_origins")
            .then(|| form.get("allowed_origins")),
    }
}

async fn create_environment(ctx: Ctx, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let input = environment_input(&form);
    let actor = ctx.actor();
    let view = EnvironmentsView {
        new_name: input.name.clone(),
        new_slug: input.slug.clone(),
        new_color: Some(input.color.clone()),
        new_confirm: input.require_confirmation,
        ..Default::default()
    };
    match ctx
        .state
        .write(move |conn| environments::create(conn, &actor, &input))
        .await
    {
        Ok(env) => {
            ctx.flash(format!(
                "Added {}. Every flag has a rule there: None, off.",
                env.name
            ));
            Ok(redirect("/environments"))
        }
        Err(error) => match error.field_errors() {
            Some(errors) => render_environments(&ctx, EnvironmentsView { errors, ..view }).await,
            None => Err(error),
        },
    }
}

async fn update_environment(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let env = ctx.environment_by_slug(&path)?;
    let input = environment_input(&form);
    let typed_origins = input.allowed_origins.clone().unwrap_or_default();
    let actor = ctx.actor();
    let id = env.id.clone();
    match ctx
        .state
        .write(move |conn| environments::update(conn, &actor, &id, &input))
        .await
    {
        Ok(env) => {
            ctx.flash(format!("Saved {}.", env.name));
            Ok(redirect("/environments"))
        }
        Err(error) => match error.field_errors() {
            Some(errors) => {
                let view = EnvironmentsView {
                    errors,
                    errors_for: env.slug.to_string(),
                    typed_origins,
                    ..Default::default()
                };
                render_environments(&ctx, view).await
            }
            None => Err(error),
        },
    }
}

async fn create_api_key(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let env = ctx.environment_by_slug(&path)?;
    let name = form.get("name");
    let scope = match form.get("scope").as_str() {
        "" => KeyScope::Evaluation,
        other => match KeyScope::parse(other) {
            Some(scope) => scope,
            None => {
                let view = EnvironmentsView {
                    errors: FieldErrors::single(
                        "key_name",
                        format!("A key's scope is one of {}.", KeyScope::choices()),
                    ),
                    errors_for: env.slug.to_string(),
                    ..Default::default()
                };
                return render_environments(&ctx, view).await;
            }
        },
    };
    let actor = ctx.actor();
    let env_id = env.id.clone();
    match ctx
        .state
        .write(move |conn| api_keys::create(conn, &actor, &env_id, &name, scope))
        .await
    {
        Ok((key, secret)) => {
            let view = EnvironmentsView {
                new_secret: Some(NewSecret {
                    env_name: env.name,
                    name: key.name,
                    secret,
                }),
                ..Default::default()
            };
            render_environments(&ctx, view).await
        }
        Err(error) => match error.field_errors() {
            Some(errors) => {
                let errors = FieldErrors::single(
                    "key_name",
                    errors.get("name").unwrap_or("Name the key.").to_string(),
                );
                let view = EnvironmentsView {
                    errors,
                    errors_for: env.slug.to_string(),
                    ..Default::default()
                };
                render_environments(&ctx, view).await
            }
            None => Err(error),
        },
    }
}

async fn revoke_api_key(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    _form: Form,
) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let (slug, id) = path.into_inner();
    let env = ctx.environment_by_slug(&slug)?;
    let id = ApiKeyId::parse(&id).ok_or(Error::NotFound(Entity::ApiKey))?;
    let actor = ctx.actor();
    let key = ctx
        .state
        .write(move |conn| api_keys::revoke(conn, &actor, &env.id, &id))
        .await?;
    ctx.flash(format!(
        "Revoked the key {}. Calls made with it fail from now on.",
        key.name
    ));
    Ok(redirect("/environments"))
}

async fn rotate_signing_key(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let env = ctx.environment_by_slug(&path)?;
    let algorithm = SigningAlgorithm::parse(&form.get("algorithm"))
        .ok_or_else(|| Error::malformed("form", "Choose ES256, RS256 or EdDSA."))?;
    let now = form.get("now") == "true";
    let delay = if now {
        std::time::Duration::ZERO
    } else {
        ctx.state.config.key_publication_delay
    };
    let actor = ctx.actor();
    let state = ctx.state.clone();
    let env_id = env.id.clone();
    let rotation = ctx
        .state
        .write(move |conn| {
            signing::rotate(
                conn,
                &state.sealer,
                &actor,
                &env_id,
                Some(algorithm),
                delay,
                state.config.retired_key_publication(),
            )
        })
        .await?;
    ctx.state.signers.forget(&env.id);
    if now {
        ctx.flash(format!(
            "{} signs with new keys from now on ({} key {}). The old public keys stay in the JWKS until their tokens expire; verifiers that cached the key set fail until they fetch it again.",
            env.name, rotation.tokens.algorithm, rotation.tokens.id
        ));
    } else {
        ctx.flash(format!(
            "{} publishes new keys now ({} key {}); they sign from {}, once every verifier's cache has them.",
            env.name,
            rotation.tokens.algorithm,
            rotation.tokens.id,
            rotation.takes_over_at.human_seconds()
        ));
    }
    Ok(redirect("/environments"))
}

async fn move_environment(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let env = ctx.environment_by_slug(&path)?;
    let up = form.get("direction") == "up";
    let actor = ctx.actor();
    ctx.state
        .write(move |conn| environments::move_by_one(conn, &actor, &env.id, up))
        .await?;
    Ok(redirect("/environments"))
}
