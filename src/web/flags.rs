//! Feature-flag pages: the list, creation, a flag with one card per
//! environment, the enable toggle, "Edit in X" and the rule editor.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::context::{Ctx, Form, Layout};
use super::dashboard::{audit_rows, AuditRow};
use super::paging::{load_clamped, page_param, query_string, Paging};
use super::{redirect, render, render_with_status, safe_return};
use crate::audit::AuditFilter;
use crate::error::{AppError, FieldErrors};
use crate::flags::{self, mode_of, FlagInput, FlagQuery, Mode, RuleChange, TargetView};
use crate::ids::human_time;
use crate::models::{Environment, Flag};
use crate::validate;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/flags", web::get().to(list))
        .route("/flags", web::post().to(create))
        .route("/flags/new", web::get().to(new_form))
        .route("/flags/{slug}", web::get().to(show))
        .route("/flags/{slug}", web::post().to(update))
        .route("/flags/{slug}/archive", web::post().to(archive))
        .route("/flags/{slug}/delete", web::post().to(delete))
        .route(
            "/flags/{slug}/environments/{env}/toggle",
            web::post().to(toggle),
        )
        .route(
            "/flags/{slug}/environments/{env}/edit-in",
            web::post().to(edit_in),
        )
        .route("/flags/{slug}/environments/{env}", web::get().to(editor))
        .route(
            "/flags/{slug}/environments/{env}",
            web::post().to(editor_post),
        );
}

const PER_PAGE: i64 = 25;
const TARGETS_PER_PAGE: i64 = 20;

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    tag: Option<String>,
    archived: Option<String>,
    page: Option<String>,
}

struct FlagRow {
    slug: String,
    name: String,
    description: String,
    tags: Vec<String>,
    mode: &'static str,
    mode_label: &'static str,
    target_count: i64,
    enabled: bool,
    version: i32,
    toggle_label: String,
}

#[derive(Template)]
#[template(path = "flags/list.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<FlagRow>,
    q: String,
    tag: String,
    tags: Vec<String>,
    archived: bool,
    paging: Paging,
    return_to: String,
}

async fn list(ctx: Ctx, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let q = query.q.clone().unwrap_or_default();
    let tag = query.tag.clone().unwrap_or_default();
    let archived = query.archived.as_deref() == Some("true");
    let flag_query = FlagQuery {
        q: q.clone(),
        tag: Some(tag.clone()).filter(|t| !t.is_empty()),
        archived,
        page: page_param(query.page.as_deref()),
        per_page: PER_PAGE,
    };
    let env_id = ctx.active.id.clone();
    let fq = flag_query.clone();
    let ((items, total), tags) = ctx
        .state
        .db(move |conn| {
            let found = load_clamped(fq.page, fq.per_page, |page| {
                flags::list(conn, &env_id, &FlagQuery { page, ..fq.clone() })
            })?;
            Ok((found, flags::all_tags(conn)?))
        })
        .await?;
    let rows = items
        .into_iter()
        .map(|item| {
            let mode = mode_of(&item.rule);
            FlagRow {
                toggle_label: format!("{} enabled in {}", item.flag.name, ctx.active.name),
                slug: item.flag.slug,
                name: item.flag.name,
                description: item.flag.description,
                tags: item.tags,
                mode: mode.as_str(),
                mode_label: mode.label(),
                target_count: item.target_count,
                enabled: item.rule.enabled,
                version: item.rule.version,
            }
        })
        .collect();
    let archived_str = if archived { "true" } else { "" };
    let base = query_string(&[("q", &q), ("tag", &tag), ("archived", archived_str)]);
    let return_to = if base.is_empty() {
        format!("/flags?page={}", flag_query.page)
    } else {
        format!("/flags?{base}&page={}", flag_query.page)
    };
    render(&ListPage {
        layout: ctx.layout("Feature flags", "flags"),
        rows,
        q,
        tag,
        tags,
        archived,
        paging: Paging::new(flag_query.page, PER_PAGE, total, base),
        return_to,
    })
}

#[derive(Template)]
#[template(path = "flags/new.html")]
struct NewPage {
    layout: Layout,
    name: String,
    slug: String,
    description: String,
    tags: String,
    errors: FieldErrors,
}

async fn new_form(ctx: Ctx) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    render(&NewPage {
        layout: ctx.layout("Create feature flag", "flags"),
        name: String::new(),
        slug: String::new(),
        description: String::new(),
        tags: String::new(),
        errors: FieldErrors::default(),
    })
}

async fn create(ctx: Ctx, form: Form) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let mut input = FlagInput {
        name: form.get("name"),
        slug: form.get("slug"),
        description: form.get("description"),
        tags: form.get("tags"),
    };
    // Without JavaScript the slug may be left empty: suggest it from the name.
    if input.slug.trim().is_empty() {
        input.slug = validate::slug_from_name(&input.name);
    }
    let actor = ctx.actor();
    let result = {
        let input = FlagInput {
            name: input.name.clone(),
            slug: input.slug.clone(),
            description: input.description.clone(),
            tags: input.tags.clone(),
        };
        ctx.state
            .db(move |conn| flags::create(conn, &actor, &input))
            .await
    };
    match result {
        Ok(flag) => {
            ctx.flash(format!(
                "Created {}. It is off in every environment until you set its rule and turn it on.",
                flag.name
            ));
            Ok(redirect(&format!("/flags/{}", flag.slug)))
        }
        Err(AppError::Invalid(errors)) => render_with_status(
            &NewPage {
                layout: ctx.layout("Create feature flag", "flags"),
                name: input.name,
                slug: input.slug,
                description: input.description,
                tags: input.tags,
                errors,
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(other) => Err(other),
    }
}

/// One environment's card on a flag's page.
struct Card {
    env: Environment,
    is_active: bool,
    mode: &'static str,
    mode_label: &'static str,
    enabled: bool,
    version: i32,
    users: i64,
    organizations: i64,
    preview: Vec<TargetView>,
    updated_by: String,
    updated_at: String,
    toggle_label: String,
    return_to: String,
}

impl Card {
    fn more_targets(&self) -> i64 {
        self.users + self.organizations - self.preview.len() as i64
    }
}

#[derive(Template)]
#[template(path = "flags/show.html")]
struct ShowPage {
    layout: Layout,
    flag: Flag,
    name: String,
    description: String,
    tags: String,
    errors: FieldErrors,
    cards: Vec<Card>,
    history: Vec<AuditRow>,
}

async fn load_flag(ctx: &Ctx, slug: &str) -> Result<Flag, AppError> {
    let slug = slug.to_string();
    ctx.state
        .db(move |conn| Ok(flags::by_slug(conn, &slug)?))
        .await
}

async fn show_page(
    ctx: &Ctx,
    slug: &str,
    edit: Option<(FlagInput, FieldErrors)>,
) -> Result<HttpResponse, AppError> {
    let flag = load_flag(ctx, slug).await?;
    let flag_id = flag.id.clone();
    let (tags, summaries, (events, _)) = ctx
        .state
        .db(move |conn| {
            let filter = AuditFilter {
                flag_id: Some(flag_id.clone()),
                ..Default::default()
            };
            Ok((
                flags::tags_of(conn, &flag_id)?,
                flags::rules_of(conn, &flag_id)?,
                crate::audit::list(conn, &filter, 1, 20)?,
            ))
        })
        .await?;
    let cards = summaries
        .into_iter()
        .map(|s| {
            let mode = mode_of(&s.rule);
            Card {
                is_active: s.environment.id == ctx.active.id,
                mode: mode.as_str(),
                mode_label: mode.label(),
                enabled: s.rule.enabled,
                version: s.rule.version,
                users: s.users,
                organizations: s.organizations,
                preview: s.preview,
                updated_by: s.rule.updated_by.clone().unwrap_or_default(),
                updated_at: human_time(&s.rule.updated_at),
                toggle_label: format!("Enabled in {}", s.environment.name),
                return_to: format!("/flags/{}", flag.slug),
                env: s.environment,
            }
        })
        .collect();
    let history = audit_rows(events, &ctx.environments);
    let (status, name, description, tags, errors) = match edit {
        Some((input, errors)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            input.name,
            input.description,
            input.tags,
            errors,
        ),
        None => (
            StatusCode::OK,
            flag.name.clone(),
            flag.description.clone(),
            tags.join(", "),
            FieldErrors::default(),
        ),
    };
    render_with_status(
        &ShowPage {
            layout: ctx.layout(flag.name.clone(), "flags"),
            flag,
            name,
            description,
            tags,
            errors,
            cards,
            history,
        },
        status,
    )
}

async fn show(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse, AppError> {
    show_page(&ctx, &path, None).await
}

async fn update(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let flag = load_flag(&ctx, &path).await?;
    let input = FlagInput {
        name: form.get("name"),
        slug: flag.slug.clone(),
        description: form.get("description"),
        tags: form.get("tags"),
    };
    let actor = ctx.actor();
    let copy = FlagInput {
        name: input.name.clone(),
        slug: input.slug.clone(),
        description: input.description.clone(),
        tags: input.tags.clone(),
    };
    let flag_id = flag.id.clone();
    match ctx
        .state
        .db(move |conn| flags::update(conn, &actor, &flag_id, &copy))
        .await
    {
        Ok(_) => {
            ctx.flash("Saved the flag's details.");
            Ok(redirect(&format!("/flags/{}", flag.slug)))
        }
        Err(AppError::Invalid(errors)) => show_page(&ctx, &flag.slug, Some((input, errors))).await,
        Err(other) => Err(other),
    }
}

async fn archive(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let flag = load_flag(&ctx, &path).await?;
    let archived = form.get("archived") != "false";
    let actor = ctx.actor();
    let id = flag.id.clone();
    ctx.state
        .db(move |conn| flags::set_archived(conn, &actor, &id, archived))
        .await?;
    ctx.flash(if archived {
        format!("Archived {}: it is off in every environment.", flag.name)
    } else {
        format!("Restored {}. Its rules are as they were.", flag.name)
    });
    Ok(redirect(&format!("/flags/{}", flag.slug)))
}

#[derive(Template)]
#[template(path = "flags/confirm_delete.html")]
struct ConfirmDeletePage {
    layout: Layout,
    flag: Flag,
}

/// Deletes an archived flag after a confirmation page, which works without
/// JavaScript: the first post shows it, the confirmed one deletes.
async fn delete(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let flag = load_flag(&ctx, &path).await?;
    if !flag.archived {
        return Err(AppError::BadRequest(format!(
            "{} is not archived. Archive it first (it is then off everywhere), then delete it.",
            flag.name
        )));
    }
    if !form.checkbox("confirmed") {
        return render(&ConfirmDeletePage {
            layout: ctx.layout(format!("Delete {}?", flag.name), "flags"),
            flag,
        });
    }
    let actor = ctx.actor();
    let id = flag.id.clone();
    ctx.state
        .db(move |conn| flags::delete(conn, &actor, &id))
        .await?;
    ctx.flash(format!(
        "Deleted {} ({}) permanently, with its rules in every environment.",
        flag.name, flag.slug
    ));
    Ok(redirect("/flags?archived=true"))
}

#[derive(Template)]
#[template(path = "flags/confirm_toggle.html")]
struct ConfirmTogglePage {
    layout: Layout,
    flag: Flag,
    env: Environment,
    enabled: bool,
    version: i32,
    return_to: String,
}

async fn toggle(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let (slug, env_slug) = path.into_inner();
    let env = ctx.environment_by_slug(&env_slug)?;
    let flag = load_flag(&ctx, &slug).await?;
    let enabled = match form.get("enabled").as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(AppError::BadRequest(
                "Say whether to turn the flag on or off.".into(),
            ))
        }
    };
    let version = form.get("version").parse::<i32>().ok();
    let return_to = safe_return(&form.get("return_to"), &format!("/flags/{}", flag.slug));
    if env.require_confirmation && !form.checkbox("confirmed") {
        return render(&ConfirmTogglePage {
            layout: ctx.layout(format!("Confirm change in {}", env.name), "flags"),
            flag,
            env,
            enabled,
            version: version.unwrap_or_default(),
            return_to,
        });
    }
    let actor = ctx.actor();
    let (f, e) = (flag.clone(), env.clone());
    match ctx
        .state
        .db(move |conn| flags::set_enabled(conn, &actor, &f, &e, enabled, version))
        .await
    {
        Ok(_) => ctx.flash(format!(
            "{} is now {} in {}.",
            flag.name,
            if enabled { "on" } else { "off" },
            env.name
        )),
        Err(AppError::Stale(message)) => ctx.flash(message),
        Err(other) => return Err(other),
    }
    Ok(redirect(&return_to))
}

async fn edit_in(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    _form: Form,
) -> Result<HttpResponse, AppError> {
    let (slug, env_slug) = path.into_inner();
    let env = ctx.environment_by_slug(&env_slug)?;
    ctx.set_active(&env);
    Ok(redirect(&format!(
        "/flags/{slug}/environments/{}",
        env.slug
    )))
}

/// A target row in the editor: saved, or about to be added or removed.
struct TargetRow {
    view: TargetView,
    pending_remove: bool,
}

struct SearchResult {
    view: TargetView,
    chosen: bool,
}

#[derive(Template)]
#[template(path = "flags/editor.html")]
struct EditorPage {
    layout: Layout,
    flag: Flag,
    env: Environment,
    mode: &'static str,
    mode_label: &'static str,
    version: i32,
    saved_mode: &'static str,
    enabled: bool,
    add: Vec<TargetView>,
    remove: Vec<String>,
    rows: Vec<TargetRow>,
    target_total: i64,
    tpage: i64,
    tpages: i64,
    q: String,
    searched: bool,
    results: Vec<SearchResult>,
    message: Option<String>,
    confirm: bool,
}

/// What the editor's form carries between clicks before it is saved.
struct Draft {
    mode: Mode,
    version: i32,
    add: Vec<String>,
    remove: Vec<String>,
    q: String,
    tpage: i64,
}

async fn render_editor(
    ctx: &Ctx,
    flag: Flag,
    env: Environment,
    draft: Option<Draft>,
    message: Option<String>,
    confirm: bool,
) -> Result<HttpResponse, AppError> {
    let (flag_id, env_id) = (flag.id.clone(), env.id.clone());
    let tpage_wanted = draft.as_ref().map_or(1, |d| d.tpage);
    let q = draft.as_ref().map(|d| d.q.clone()).unwrap_or_default();
    let adds = draft.as_ref().map(|d| d.add.clone()).unwrap_or_default();
    let query = q.clone();
    let (rule, (page_targets, total), add_views, found) = ctx
        .state
        .db(move |conn| {
            let rule = flags::rule(conn, &flag_id, &env_id)?;
            let page = load_clamped(tpage_wanted, TARGETS_PER_PAGE, |p| {
                flags::targets_page(conn, &flag_id, &env_id, p, TARGETS_PER_PAGE)
            })?;
            let add_views = flags::describe_targets(conn, &adds)?;
            let found = flags::search_targetables(conn, &query, 10)?;
            Ok((rule, page, add_views, found))
        })
        .await?;
    let saved_mode = mode_of(&rule);
    let draft = draft.unwrap_or(Draft {
        mode: saved_mode,
        version: rule.version,
        add: Vec::new(),
        remove: Vec::new(),
        q: String::new(),
        tpage: 1,
    });
    let tpages = ((total + TARGETS_PER_PAGE - 1) / TARGETS_PER_PAGE).max(1);
    let saved_ids: Vec<String> = page_targets.iter().map(|t| t.id.clone()).collect();
    let rows = page_targets
        .into_iter()
        .map(|view| TargetRow {
            pending_remove: draft.remove.contains(&view.id),
            view,
        })
        .collect();
    let results = found
        .into_iter()
        .map(|view| SearchResult {
            chosen: draft.add.contains(&view.id)
                || (saved_ids.contains(&view.id) && !draft.remove.contains(&view.id)),
            view,
        })
        .collect();
    render(&EditorPage {
        layout: ctx.layout(format!("{} in {}", flag.name, env.name), "flags"),
        mode: draft.mode.as_str(),
        mode_label: draft.mode.label(),
        version: draft.version,
        saved_mode: saved_mode.as_str(),
        enabled: rule.enabled,
        add: add_views,
        remove: draft.remove,
        rows,
        target_total: total,
        tpage: draft.tpage.clamp(1, tpages),
        tpages,
        searched: !q.trim().is_empty(),
        q,
        results,
        message,
        confirm,
        flag,
        env,
    })
}

async fn editor(ctx: Ctx, path: web::Path<(String, String)>) -> Result<HttpResponse, AppError> {
    let (slug, env_slug) = path.into_inner();
    let env = ctx.environment_by_slug(&env_slug)?;
    let flag = load_flag(&ctx, &slug).await?;
    render_editor(&ctx, flag, env, None, None, false).await
}

fn push_unique(list: &mut Vec<String>, id: String) {
    if !list.contains(&id) {
        list.push(id);
    }
}

async fn editor_post(
    ctx: Ctx,
    path: web::Path<(String, String)>,
    form: Form,
) -> Result<HttpResponse, AppError> {
    ctx.require_editor()?;
    let (slug, env_slug) = path.into_inner();
    let env = ctx.environment_by_slug(&env_slug)?;
    let flag = load_flag(&ctx, &slug).await?;
    let mode = Mode::parse(&form.get("mode"))
        .ok_or_else(|| AppError::BadRequest("Choose None, Some or All.".into()))?;
    let version = form
        .get("version")
        .parse::<i32>()
        .map_err(|_| AppError::BadRequest("The form lost its version: reload the page.".into()))?;
    let valid_id = |id: &String| flags::TargetKind::of_id(id).is_some();
    let mut draft = Draft {
        mode,
        version,
        add: form.all("add").into_iter().filter(valid_id).collect(),
        remove: form.all("remove").into_iter().filter(valid_id).collect(),
        q: form.get("q"),
        tpage: page_param(Some(&form.get("tpage"))),
    };
    let add_target = form.get("add_target");
    if valid_id(&add_target) {
        draft.remove.retain(|id| *id != add_target);
        push_unique(&mut draft.add, add_target);
        // Adding someone means the rule targets them.
        draft.mode = Mode::Some;
    }
    let undo_add = form.get("undo_add");
    draft.add.retain(|id| *id != undo_add);
    let remove_target = form.get("remove_target");
    if valid_id(&remove_target) {
        if draft.add.contains(&remove_target) {
            draft.add.retain(|id| *id != remove_target);
        } else {
            push_unique(&mut draft.remove, remove_target);
        }
    }
    let undo_remove = form.get("undo_remove");
    draft.remove.retain(|id| *id != undo_remove);
    if form.has("goto_page") {
        draft.tpage = page_param(Some(&form.get("goto_page")));
    }
    if draft.add.len() > 1000 {
        return Err(AppError::BadRequest(
            "Add at most 1,000 targets in one save.".into(),
        ));
    }

    let op = form.get("op");
    if op != "save" && op != "confirm" {
        return render_editor(&ctx, flag, env, Some(draft), None, false).await;
    }
    if env.require_confirmation && op != "confirm" {
        return render_editor(&ctx, flag, env, Some(draft), None, true).await;
    }
    let change = RuleChange {
        mode: draft.mode,
        add: draft.add.clone(),
        remove: draft.remove.clone(),
        expected_version: draft.version,
    };
    let actor = ctx.actor();
    let (f, e) = (flag.clone(), env.clone());
    match ctx
        .state
        .db(move |conn| flags::save_rule(conn, &actor, &f, &e, &change))
        .await
    {
        Ok(rule) => {
            let state = if rule.enabled {
                "on"
            } else {
                "off (turn it on to apply the rule)"
            };
            ctx.flash(format!(
                "Saved the rule of {} in {}: {}. The flag is {state}.",
                flag.name,
                env.name,
                mode_of(&rule).label()
            ));
            Ok(redirect(&format!("/flags/{}", flag.slug)))
        }
        Err(AppError::Stale(message)) => {
            let mut page = render_editor(&ctx, flag, env, None, Some(message), false).await?;
            *page.status_mut() = StatusCode::CONFLICT;
            Ok(page)
        }
        Err(AppError::Invalid(errors)) => {
            let message = errors.0.first().map(|(_, m)| m.clone());
            let mut page = render_editor(&ctx, flag, env, Some(draft), message, false).await?;
            *page.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(page)
        }
        Err(other) => Err(other),
    }
}
