//! Feature-flag pages: the list, creation, a flag with one card per
//! environment, the enable toggle, "Edit in X" and the rule editor.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::audit::{audit_rows, AuditRow};
use super::context::{Ctx, Form, Layout};
use super::paging::{load_clamped, page_param, query_string, Paging};
use crate::audit::{self, AuditFilter};
use crate::environments::Environment;
use crate::error::{Error, FieldErrors, Result};
use crate::evaluation::{Mode, TargetKind};
use crate::flags::rules::{self, RuleChange, TargetChange};
use crate::flags::targets::{self, TargetView};
use crate::flags::{self, Flag, FlagFilter, FlagPatch, NewFlag};
use crate::validate;
use crate::web::routes::Routes;
use crate::web::{redirect, render, render_with_status, safe_return, Surface};

pub fn routes(cfg: &mut web::ServiceConfig) {
    Routes::new(cfg, "", Surface::Dashboard)
        .get("/flags", list)
        .post("/flags", create)
        .get("/flags/new", new_form)
        .get("/flags/{slug}", show)
        .post("/flags/{slug}", update)
        .post("/flags/{slug}/archive", archive)
        .post("/flags/{slug}/delete", delete)
        .post("/flags/{slug}/environments/{env}/toggle", toggle)
        .post("/flags/{slug}/environments/{env}/edit-in", edit_in)
        .get("/flags/{slug}/environments/{env}", editor)
        .post("/flags/{slug}/environments/{env}", editor_post);
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

async fn list(ctx: Ctx, query: web::Query<ListQuery>) -> Result<HttpResponse> {
    let q = query.q.clone().unwrap_or_default();
    let tag = query.tag.clone().unwrap_or_default();
    let archived = query.archived.as_deref() == Some("true");
    let filter = FlagFilter {
        q: q.clone(),
        tag: Some(tag.clone()).filter(|t| !t.is_empty()),
        archived,
        slugs: None,
    };
    let page = page_param(query.page.as_deref());
    let env_id = ctx.active.id.clone();
    let ((items, total), tags) = ctx
        .state
        .read(move |conn| {
            let found = load_clamped(page, PER_PAGE, |p| {
                flags::page(conn, &env_id, &filter, p, PER_PAGE)
            })?;
            Ok((found, flags::all_tags(conn)?))
        })
        .await?;
    let rows = items
        .into_iter()
        .map(|item| FlagRow {
            toggle_label: format!("{} enabled in {}", item.flag.name, ctx.active.name),
            slug: item.flag.slug.to_string(),
            name: item.flag.name,
            description: item.flag.description,
            tags: item.tags,
            mode: item.rule.mode.as_str(),
            mode_label: item.rule.mode.label(),
            target_count: item.target_count,
            enabled: item.rule.enabled,
            version: item.rule.version,
        })
        .collect();
    let archived_str = if archived { "true" } else { "" };
    let base = query_string(&[("q", &q), ("tag", &tag), ("archived", archived_str)]);
    let return_to = if base.is_empty() {
        format!("/flags?page={page}")
    } else {
        format!("/flags?{base}&page={page}")
    };
    render(&ListPage {
        layout: ctx.layout("Feature flags", "flags"),
        rows,
        q,
        tag,
        tags,
        archived,
        paging: Paging::new(page, PER_PAGE, total, base),
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

async fn new_form(ctx: Ctx) -> Result<HttpResponse> {
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

fn split_tags(text: &str) -> Vec<String> {
    text.split(',').map(str::to_string).collect()
}

async fn create(ctx: Ctx, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let mut slug = form.get("slug");
    // Without JavaScript the slug may be left empty: suggest it from the name.
    if slug.trim().is_empty() {
        slug = validate::slug_from_name(&form.get("name"));
    }
    let input = NewFlag {
        name: form.get("name"),
        slug: slug.clone(),
        description: form.get("description"),
        tags: split_tags(&form.get("tags")),
    };
    let actor = ctx.actor();
    match ctx
        .state
        .write(move |conn| flags::create(conn, &actor, &input))
        .await
    {
        Ok(flag) => {
            ctx.flash(format!(
                "Created {}. It is off in every environment until you set its rule and turn it on.",
                flag.name
            ));
            Ok(redirect(&format!("/flags/{}", flag.slug)))
        }
        Err(error) => match error.field_errors() {
            Some(errors) => render_with_status(
                &NewPage {
                    layout: ctx.layout("Create feature flag", "flags"),
                    name: form.get("name"),
                    slug,
                    description: form.get("description"),
                    tags: form.get("tags"),
                    errors,
                },
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            None => Err(error),
        },
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

async fn load_flag(ctx: &Ctx, slug: &str) -> Result<Flag> {
    let slug = slug.to_string();
    ctx.state
        .read(move |conn| flags::by_slug(conn, &slug))
        .await
}

/// What the details form shows after a failed save.
struct Edit {
    name: String,
    description: String,
    tags: String,
    errors: FieldErrors,
}

async fn show_page(ctx: &Ctx, slug: &str, edit: Option<Edit>) -> Result<HttpResponse> {
    let flag = load_flag(ctx, slug).await?;
    let flag_id = flag.id.clone();
    let (tags, summaries, (events, _)) = ctx
        .state
        .read(move |conn| {
            let filter = AuditFilter {
                flag_id: Some(flag_id.clone()),
                ..Default::default()
            };
            Ok((
                flags::tags_of(conn, &flag_id)?,
                rules::summaries(conn, &flag_id)?,
                audit::page(conn, &filter, 1, 20)?,
            ))
        })
        .await?;
    let cards = summaries
        .into_iter()
        .map(|s| Card {
            is_active: s.environment.id == ctx.active.id,
            mode: s.rule.mode.as_str(),
            mode_label: s.rule.mode.label(),
            enabled: s.rule.enabled,
            version: s.rule.version,
            users: s.users,
            organizations: s.organizations,
            preview: s.preview,
            updated_by: s.rule.updated_by.clone().unwrap_or_default(),
            updated_at: s.rule.updated_at.human(),
            toggle_label: format!("Enabled in {}", s.environment.name),
            return_to: format!("/flags/{}", flag.slug),
            env: s.environment,
        })
        .collect();
    let history = audit_rows(events, &ctx.environments);
    let (status, edit) = match edit {
        Some(edit) => (StatusCode::UNPROCESSABLE_ENTITY, edit),
        None => (
            StatusCode::OK,
            Edit {
                name: flag.name.clone(),
                description: flag.description.clone(),
                tags: tags.join(", "),
                errors: FieldErrors::default(),
            },
        ),
    };
    render_with_status(
        &ShowPage {
            layout: ctx.layout(flag.name.clone(), "flags"),
            flag,
            name: edit.name,
            description: edit.description,
            tags: edit.tags,
            errors: edit.errors,
            cards,
            history,
        },
        status,
    )
}

async fn show(ctx: Ctx, path: web::Path<String>) -> Result<HttpResponse> {
    show_page(&ctx, &path, None).await
}

async fn update(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let flag = load_flag(&ctx, &path).await?;
    let patch = FlagPatch {
        name: Some(form.get("name")),
        description: Some(form.get("description")),
        tags: Some(split_tags(&form.get("tags"))),
    };
    let actor = ctx.actor();
    let flag_id = flag.id.clone();
    match ctx
        .state
        .write(move |conn| flags::update(conn, &actor, &flag_id, &patch))
        .await
    {
        Ok(_) => {
            ctx.flash("Saved the flag's details.");
            Ok(redirect(&format!("/flags/{}", flag.slug)))
        }
        Err(error) => match error.field_errors() {
            Some(errors) => {
                let edit = Edit {
                    name: form.get("name"),
                    description: form.get("description"),
                    tags: form.get("tags"),
                    errors,
                };
                show_page(&ctx, flag.slug.as_str(), Some(edit)).await
            }
            None => Err(error),
        },
    }
}

async fn archive(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let flag = load_flag(&ctx, &path).await?;
    let archived = form.get("archived") != "false";
    let actor = ctx.actor();
    let id = flag.id.clone();
    ctx.state
        .write(move |conn| flags::set_archived(conn, &actor, &id, archived))
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
async fn delete(ctx: Ctx, path: web::Path<String>, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let flag = load_flag(&ctx, &path).await?;
    if !flag.archived {
        return Err(Error::Refused(crate::error::Refusal::FlagNotArchived {
            name: flag.name.clone(),
        }));
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
        .write(move |conn| flags::delete(conn, &actor, &id))
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

async fn toggle(ctx: Ctx, path: web::Path<(String, String)>, form: Form) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let (slug, env_slug) = path.into_inner();
    let env = ctx.environment_by_slug(&env_slug)?;
    let flag = load_flag(&ctx, &slug).await?;
    let enabled = match form.get("enabled").as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(Error::malformed(
                "form",
                "Say whether to turn the flag on or off.",
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
        .write(move |conn| rules::set_enabled(conn, &actor, &f, &e, enabled, version))
        .await
    {
        Ok(_) => ctx.flash(format!(
            "{} is now {} in {}.",
            flag.name,
            if enabled { "on" } else { "off" },
            env.name
        )),
        Err(error @ Error::Stale(_)) => ctx.flash(error.message()),
        Err(other) => return Err(other),
    }
    Ok(redirect(&return_to))
}

async fn edit_in(ctx: Ctx, path: web::Path<(String, String)>, _form: Form) -> Result<HttpResponse> {
    let (slug, env_slug) = path.into_inner();
    let env = ctx.environment_by_slug(&env_slug)?;
    ctx.set_active(&env);
    Ok(redirect(&format!(
        "/flags/{slug}/environments/{}",
        env.slug
    )))
}

/// A target row in the editor: saved, or about to be removed.
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
) -> Result<HttpResponse> {
    let (flag_id, env_id) = (flag.id.clone(), env.id.clone());
    let tpage_wanted = draft.as_ref().map_or(1, |d| d.tpage);
    let q = draft.as_ref().map(|d| d.q.clone()).unwrap_or_default();
    let adds = draft.as_ref().map(|d| d.add.clone()).unwrap_or_default();
    let query = q.clone();
    let (rule, (page_targets, total), add_views, found) = ctx
        .state
        .read(move |conn| {
            let rule = rules::rule(conn, &flag_id, &env_id)?;
            let page = load_clamped(tpage_wanted, TARGETS_PER_PAGE, |p| {
                targets::page(conn, &flag_id, &env_id, p, TARGETS_PER_PAGE)
            })?;
            let add_views = targets::describe_targets(conn, &adds)?;
            let found = targets::search(conn, &query, 10)?;
            Ok((rule, page, add_views, found))
        })
        .await?;
    let draft = draft.unwrap_or(Draft {
        mode: rule.mode,
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
        saved_mode: rule.mode.as_str(),
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

async fn editor(ctx: Ctx, path: web::Path<(String, String)>) -> Result<HttpResponse> {
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
) -> Result<HttpResponse> {
    ctx.require_editor()?;
    let (slug, env_slug) = path.into_inner();
    let env = ctx.environment_by_slug(&env_slug)?;
    let flag = load_flag(&ctx, &slug).await?;
    let mode = Mode::parse(&form.get("mode"))
        .ok_or_else(|| Error::malformed("form", "Choose None, Some or All."))?;
    let version = form
        .get("version")
        .parse::<i32>()
        .map_err(|_| Error::malformed("form", "The form lost its version: reload the page."))?;
    let valid_id = |id: &String| TargetKind::of_id(id).is_some();
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
        return Err(Error::malformed(
            "form",
            "Add at most 1,000 targets in one save.",
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
        mode: Some(draft.mode),
        enabled: None,
        targets: TargetChange::Edit {
            add: draft.add.clone(),
            remove: draft.remove.clone(),
        },
        expected_version: Some(draft.version),
    };
    let actor = ctx.actor();
    let (f, e) = (flag.clone(), env.clone());
    match ctx
        .state
        .write(move |conn| rules::save_rule(conn, &actor, &f, &e, &change))
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
                rule.mode.label()
            ));
            Ok(redirect(&format!("/flags/{}", flag.slug)))
        }
        Err(error @ Error::Stale(_)) => {
            let status = error.status();
            let mut page =
                render_editor(&ctx, flag, env, None, Some(error.message()), false).await?;
            *page.status_mut() = status;
            Ok(page)
        }
        Err(error @ (Error::Invalid(_) | Error::Conflict { .. })) => {
            let status = error.status();
            let mut page =
                render_editor(&ctx, flag, env, Some(draft), Some(error.message()), false).await?;
            *page.status_mut() = status;
            Ok(page)
        }
        Err(other) => Err(other),
    }
}
