//! Organizations, users and memberships with a secret key. Wherever a path
//! or a body names an organization or a user, a Flagpole id or the
//! application's `external_id` works. The bulk endpoints create or update up
//! to 1,000 objects by `external_id` in one transaction.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use super::paging::{envelope, query_param, ListKind, ListMetadata, ListQuery};
use super::sessions::UserObject;
use super::{ApiAuth, ApiError, ApiRoutes, ErrorBody, API_PREFIX};
use crate::db::schema::{memberships, organizations, users};
use crate::db::DbConn;
use crate::directory::{
    self, BulkCounts, BulkOrganization, BulkUser, OrganizationInput, UserInput, BULK_LIMIT,
};
use crate::error::AppError;
use crate::models::{Membership, Organization, User};
use crate::{paginate, AppState};

/// The largest bulk body: 1,000 objects of the longest valid fields fit.
const BULK_BODY_LIMIT: usize = 4 << 20;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // The bulk routes come first and answer POST only, so any other method
    // on `…/bulk` falls through to `…/{id}`.
    ApiRoutes::new(cfg, API_PREFIX)
        .post_with_data(
            "/organizations/bulk",
            super::json_config_with_limit(BULK_BODY_LIMIT),
            bulk_orgs,
        )
        .post_with_data(
            "/users/bulk",
            super::json_config_with_limit(BULK_BODY_LIMIT),
            bulk_users,
        )
        .get("/organizations", list_orgs)
        .post("/organizations", create_org)
        .get("/organizations/{id}", get_org)
        .patch("/organizations/{id}", update_org)
        .delete("/organizations/{id}", delete_org)
        .get("/organizations/{id}/memberships", list_memberships)
        .post("/organizations/{id}/memberships", add_membership)
        .delete(
            "/organizations/{id}/memberships/{user_id}",
            remove_membership,
        )
        .get("/users", list_users)
        .post("/users", create_user)
        .get("/users/{id}", get_user)
        .patch("/users/{id}", update_user)
        .delete("/users/{id}", delete_user);
}

/// An organization, as the API answers it.
#[derive(ToSchema)]
pub struct OrganizationObject {
    #[schema(inline)]
    pub object: OrganizationKind,
    #[schema(example = "org_01JD6Z8X4G7Q2M3N5P6R7S8T9V")]
    pub id: String,
    #[schema(example = "Acme Inc.")]
    pub name: String,
    /// Your application's id for the organization.
    #[schema(required = true, example = "acme")]
    pub external_id: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum OrganizationKind {
    Organization,
}

/// A page of organizations.
#[derive(ToSchema)]
pub struct OrganizationList {
    #[schema(inline)]
    pub object: ListKind,
    pub data: Vec<OrganizationObject>,
    pub list_metadata: ListMetadata,
}

/// A page of users.
#[derive(ToSchema)]
pub struct UserList {
    #[schema(inline)]
    pub object: ListKind,
    pub data: Vec<UserObject>,
    pub list_metadata: ListMetadata,
}

/// A user's membership of an organization.
#[derive(ToSchema)]
pub struct MembershipObject {
    #[schema(inline)]
    pub object: MembershipKind,
    #[schema(example = "org_01JD6Z8X4G7Q2M3N5P6R7S8T9V")]
    pub organization_id: String,
    /// The member's Flagpole id, also the cursor of membership lists.
    #[schema(example = "user_01JD6Z8X4G7Q2M3N5P6R7S8T9V")]
    pub user_id: String,
    #[schema(required = true)]
    pub user: Option<UserObject>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum MembershipKind {
    OrganizationMembership,
}

/// A page of memberships, by member id.
#[derive(ToSchema)]
pub struct MembershipList {
    #[schema(inline)]
    pub object: ListKind,
    pub data: Vec<MembershipObject>,
    pub list_metadata: ListMetadata,
}

/// What a bulk request did. A repeated request creates and updates nothing.
#[derive(ToSchema)]
pub struct BulkResult {
    #[schema(inline)]
    pub object: BulkResultKind,
    pub created: u32,
    pub updated: u32,
    /// Objects that already had exactly the values sent.
    pub unchanged: u32,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum BulkResultKind {
    BulkResult,
}

/// Up to 1,000 users to create or update, matched by `external_id`.
#[derive(ToSchema)]
pub struct BulkUsers {
    #[schema(max_items = 1000)]
    pub data: Vec<BulkUserItem>,
}

/// A user of a bulk request: an absent (or null) field keeps its value when
/// the user exists; a new user needs an `email`.
#[derive(ToSchema)]
pub struct BulkUserItem {
    #[schema(example = "u-1042")]
    pub external_id: String,
    #[schema(example = "ada@example.com")]
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// Up to 1,000 organizations to create or update, matched by `external_id`.
#[derive(ToSchema)]
pub struct BulkOrganizations {
    #[schema(max_items = 1000)]
    pub data: Vec<BulkOrganizationItem>,
}

/// An organization of a bulk request: a new one needs a `name`.
#[derive(ToSchema)]
pub struct BulkOrganizationItem {
    #[schema(example = "acme")]
    pub external_id: String,
    #[schema(example = "Acme Inc.")]
    pub name: Option<String>,
}

pub fn org_json(org: &Organization) -> Value {
    json!({
        "object": "organization",
        "id": org.id,
        "name": org.name,
        "external_id": org.external_id,
        "created_at": org.created_at,
        "updated_at": org.updated_at,
    })
}

pub fn user_json(user: &User) -> Value {
    json!({
        "object": "user",
        "id": user.id,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "external_id": user.external_id,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    })
}

fn membership_json(m: &Membership, user: Option<&User>) -> Value {
    json!({
        "object": "organization_membership",
        "organization_id": m.organization_id,
        "user_id": m.user_id,
        "user": user.map(user_json),
        "created_at": m.created_at,
    })
}

fn org_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "organization_not_found",
        "No organization has this id or external id.",
    )
}

fn user_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "user_not_found",
        "No user has this id or external id.",
    )
}

/// Maps "no such object" to the organization's own code.
fn for_org(err: AppError) -> ApiError {
    match err {
        AppError::NotFound => org_not_found(),
        other => other.into(),
    }
}

/// Maps "no such object" to the user's own code.
fn for_user(err: AppError) -> ApiError {
    match err {
        AppError::NotFound => user_not_found(),
        other => other.into(),
    }
}

/// The organization a path names by id or external id; `NotFound` otherwise.
fn load_org(conn: &mut DbConn, key: &str) -> Result<Organization, AppError> {
    directory::find_org(conn, key)?.ok_or(AppError::NotFound)
}

/// The user a path names by id or external id; `NotFound` otherwise.
fn load_user(conn: &mut DbConn, key: &str) -> Result<User, AppError> {
    directory::find_user_by_id_or_external(conn, key)?.ok_or(AppError::NotFound)
}

/// Tells an absent field (`None`) from one sent as `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The value an update leaves: the sent one, cleared by `null`, or the current one.
fn updated(sent: Option<Option<String>>, current: &Option<String>) -> String {
    match sent {
        Some(value) => value.unwrap_or_default(),
        None => current.clone().unwrap_or_default(),
    }
}

#[derive(Deserialize)]
struct SearchParams {
    q: Option<String>,
    #[serde(flatten)]
    page: ListQuery,
}

impl IntoParams for SearchParams {
    fn into_params(in_provider: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut params = vec![query_param(
            "q",
            "Text to find in the name (organizations), email or names (users), id or external id.",
            ObjectBuilder::new().schema_type(Type::String),
        )];
        params.extend(ListQuery::into_params(in_provider));
        params
    }
}

// Organizations.

/// Lists organizations, newest first, with cursor pagination.
#[utoipa::path(
    operation_id = "list_organizations",
    get,
    path = "/api/v1/organizations",
    tag = "Organizations",
    security(("api_key" = [])),
    params(SearchParams),
    responses(
        (status = 200, description = "A page of organizations.", body = OrganizationList),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn list_orgs(
    state: web::Data<AppState>,
    _auth: ApiAuth,
    query: web::Query<SearchParams>,
) -> Result<HttpResponse, ApiError> {
    let params = query.into_inner();
    let cursor = params.page.cursor()?;
    let q = params.q.unwrap_or_default();
    let page = state
        .db(move |conn| {
            use diesel::prelude::*;
            Ok(paginate!(
                directory::orgs_matching(&q),
                organizations::id,
                &cursor,
                conn,
                Organization,
                |o: &Organization| o.id.clone()
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(envelope(&page, org_json)))
}

/// A new organization: `name` is required.
#[derive(Deserialize, ToSchema)]
#[schema(as = CreateOrganization)]
struct CreateOrgBody {
    #[schema(value_type = String, required = true, example = "Acme Inc.")]
    name: Option<String>,
    /// Your application's id for the organization, unique.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "acme")]
    external_id: Option<Option<String>>,
}

/// The fields to change; the others keep their value. `"external_id": null`
/// removes the external id.
#[derive(Deserialize, ToSchema)]
#[schema(as = UpdateOrganization)]
struct UpdateOrgBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    external_id: Option<Option<String>>,
}

/// Creates an organization.
#[utoipa::path(
    operation_id = "create_organization",
    post,
    path = "/api/v1/organizations",
    tag = "Organizations",
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The new organization.", body = OrganizationObject),
        (status = 400, description = "The body is not valid JSON.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 409, description = "Another organization has this external id (`duplicate`).", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn create_org(
    state: web::Data<AppState>,
    auth: ApiAuth,
    body: web::Json<CreateOrgBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let input = OrganizationInput {
        name: body.name.unwrap_or_default(),
        external_id: body.external_id.flatten().unwrap_or_default(),
    };
    let actor = auth.actor();
    let org = state
        .db(move |conn| directory::create_org(conn, &actor, &input))
        .await?;
    Ok(HttpResponse::Created().json(org_json(&org)))
}

/// Reads an organization.
#[utoipa::path(
    operation_id = "get_organization",
    get,
    path = "/api/v1/organizations/{id}",
    tag = "Organizations",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The organization's Flagpole id or external id.")),
    responses(
        (status = 200, description = "The organization.", body = OrganizationObject),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No organization has this id or external id (`organization_not_found`).", body = ErrorBody),
    )
)]
async fn get_org(
    state: web::Data<AppState>,
    _auth: ApiAuth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    let org = state
        .db(move |conn| load_org(conn, &key))
        .await
        .map_err(for_org)?;
    Ok(HttpResponse::Ok().json(org_json(&org)))
}

/// Changes an organization's name or external id.
#[utoipa::path(
    operation_id = "update_organization",
    patch,
    path = "/api/v1/organizations/{id}",
    tag = "Organizations",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The organization's Flagpole id or external id.")),
    responses(
        (status = 200, description = "The organization as changed.", body = OrganizationObject),
        (status = 400, description = "The body is not valid JSON.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No organization has this id or external id (`organization_not_found`).", body = ErrorBody),
        (status = 409, description = "Another organization has this external id (`duplicate`).", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn update_org(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<String>,
    body: web::Json<UpdateOrgBody>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    let body = body.into_inner();
    let actor = auth.actor();
    let org = state
        .db(move |conn| {
            let org = load_org(conn, &key)?;
            let input = OrganizationInput {
                name: body.name.unwrap_or(org.name.clone()),
                external_id: updated(body.external_id, &org.external_id),
            };
            directory::update_org(conn, &actor, &org.id, &input)
        })
        .await
        .map_err(for_org)?;
    Ok(HttpResponse::Ok().json(org_json(&org)))
}

/// Deletes an organization, its memberships and the flag targets naming it.
#[utoipa::path(
    operation_id = "delete_organization",
    delete,
    path = "/api/v1/organizations/{id}",
    tag = "Organizations",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The organization's Flagpole id or external id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No organization has this id or external id (`organization_not_found`).", body = ErrorBody),
    )
)]
async fn delete_org(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    let actor = auth.actor();
    state
        .db(move |conn| {
            let org = load_org(conn, &key)?;
            directory::delete_org(conn, &actor, &org.id)
        })
        .await
        .map_err(for_org)?;
    Ok(HttpResponse::NoContent().finish())
}

// Memberships.

/// Lists an organization's members, by member id, with cursor pagination.
#[utoipa::path(
    operation_id = "list_memberships",
    get,
    path = "/api/v1/organizations/{id}/memberships",
    tag = "Organizations",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The organization's Flagpole id or external id."), ListQuery),
    responses(
        (status = 200, description = "A page of memberships.", body = MembershipList),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No organization has this id or external id (`organization_not_found`).", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn list_memberships(
    state: web::Data<AppState>,
    _auth: ApiAuth,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    let cursor = query.into_inner().cursor()?;
    let (page, members) = state
        .db(move |conn| {
            use diesel::prelude::*;
            let org = load_org(conn, &key)?;
            // A user belongs to an organization once, so the user's id is
            // the membership's cursor.
            let page = paginate!(
                memberships::table
                    .filter(memberships::organization_id.eq(org.id))
                    .into_boxed(),
                memberships::user_id,
                &cursor,
                conn,
                Membership,
                |m: &Membership| m.user_id.clone()
            );
            let ids: Vec<&str> = page.data.iter().map(|m| m.user_id.as_str()).collect();
            let members: HashMap<String, User> = users::table
                .filter(users::id.eq_any(&ids))
                .select(User::as_select())
                .load(conn)?
                .into_iter()
                .map(|u| (u.id.clone(), u))
                .collect();
            Ok((page, members))
        })
        .await
        .map_err(for_org)?;
    Ok(HttpResponse::Ok().json(envelope(&page, |m| {
        membership_json(m, members.get(&m.user_id))
    })))
}

/// The user to add.
#[derive(Deserialize, ToSchema)]
#[schema(as = AddMembership)]
struct MembershipBody {
    /// The user's Flagpole id or external id.
    #[schema(value_type = String, required = true, example = "u-1042")]
    user_id: Option<String>,
}

/// Makes a user a member of an organization.
#[utoipa::path(
    operation_id = "add_membership",
    post,
    path = "/api/v1/organizations/{id}/memberships",
    tag = "Organizations",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The organization's Flagpole id or external id.")),
    responses(
        (status = 201, description = "The new membership.", body = MembershipObject),
        (status = 400, description = "The body is not valid JSON.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No organization (`organization_not_found`) or user (`user_not_found`) has this id or external id.", body = ErrorBody),
        (status = 409, description = "The user is already a member (`duplicate`).", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "`user_id` is missing.", body = ErrorBody),
    )
)]
async fn add_membership(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<String>,
    body: web::Json<MembershipBody>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    let user_key = body
        .into_inner()
        .user_id
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "user_id",
                "Give user_id: the user's Flagpole id or external id.",
            )
        })?;
    let actor = auth.actor();
    let outcome = state
        .db(move |conn| {
            let org = load_org(conn, &key)?;
            let Some(user) = directory::find_user_by_id_or_external(conn, &user_key)? else {
                return Ok(Err(user_not_found()));
            };
            match directory::add_membership(conn, &actor, &org.id, &user.id) {
                Ok(_) => {}
                Err(AppError::Invalid(e)) if e.is_conflict() => {
                    return Ok(Err(ApiError {
                        status: StatusCode::CONFLICT,
                        code: "duplicate",
                        message: format!("{} is already a member of {}.", user.email, org.name),
                        field: Some("user_id".into()),
                    }))
                }
                Err(other) => return Err(other),
            }
            let membership =
                directory::membership(conn, &org.id, &user.id)?.ok_or(AppError::NotFound)?;
            Ok(Ok((membership, user)))
        })
        .await
        .map_err(for_org)?;
    let (membership, user) = outcome?;
    Ok(HttpResponse::Created().json(membership_json(&membership, Some(&user))))
}

/// Removes a user from an organization.
#[utoipa::path(
    operation_id = "remove_membership",
    delete,
    path = "/api/v1/organizations/{id}/memberships/{user_id}",
    tag = "Organizations",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The organization's Flagpole id or external id."), ("user_id" = String, Path, description = "The member's Flagpole id or external id.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No such organization (`organization_not_found`) or user (`user_not_found`), or the user is not a member (`membership_not_found`).", body = ErrorBody),
    )
)]
async fn remove_membership(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (key, user_key) = path.into_inner();
    let actor = auth.actor();
    let outcome = state
        .db(move |conn| {
            let org = load_org(conn, &key)?;
            let Some(user) = directory::find_user_by_id_or_external(conn, &user_key)? else {
                return Ok(Err(user_not_found()));
            };
            match directory::remove_membership(conn, &actor, &org.id, &user.id) {
                Ok(()) => Ok(Ok(())),
                Err(AppError::NotFound) => Ok(Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "membership_not_found",
                    format!("{} is not a member of {}.", user.email, org.name),
                ))),
                Err(other) => Err(other),
            }
        })
        .await
        .map_err(for_org)?;
    outcome?;
    Ok(HttpResponse::NoContent().finish())
}

// Users.

/// Lists users, newest first, with cursor pagination.
#[utoipa::path(
    operation_id = "list_users",
    get,
    path = "/api/v1/users",
    tag = "Users",
    security(("api_key" = [])),
    params(SearchParams),
    responses(
        (status = 200, description = "A page of users.", body = UserList),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn list_users(
    state: web::Data<AppState>,
    _auth: ApiAuth,
    query: web::Query<SearchParams>,
) -> Result<HttpResponse, ApiError> {
    let params = query.into_inner();
    let cursor = params.page.cursor()?;
    let q = params.q.unwrap_or_default();
    let page = state
        .db(move |conn| {
            use diesel::prelude::*;
            Ok(paginate!(
                directory::users_matching(&q),
                users::id,
                &cursor,
                conn,
                User,
                |u: &User| u.id.clone()
            ))
        })
        .await?;
    Ok(HttpResponse::Ok().json(envelope(&page, user_json)))
}

/// A new user: `email` is required.
#[derive(Deserialize, ToSchema)]
#[schema(as = CreateUser)]
struct CreateUserBody {
    #[schema(value_type = String, required = true, example = "ada@example.com")]
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    /// Your application's id for the user, unique.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "u-1042")]
    external_id: Option<Option<String>>,
}

/// The fields to change; the others keep their value. `"external_id": null`
/// removes the external id.
#[derive(Deserialize, ToSchema)]
#[schema(as = UpdateUser)]
struct UpdateUserBody {
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    external_id: Option<Option<String>>,
}

/// Creates a user.
#[utoipa::path(
    operation_id = "create_user",
    post,
    path = "/api/v1/users",
    tag = "Users",
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The new user.", body = UserObject),
        (status = 400, description = "The body is not valid JSON.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 409, description = "Another user has this email or external id (`duplicate`).", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn create_user(
    state: web::Data<AppState>,
    auth: ApiAuth,
    body: web::Json<CreateUserBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let input = UserInput {
        email: body.email.unwrap_or_default(),
        first_name: body.first_name.unwrap_or_default(),
        last_name: body.last_name.unwrap_or_default(),
        external_id: body.external_id.flatten().unwrap_or_default(),
    };
    let actor = auth.actor();
    let user = state
        .db(move |conn| directory::create_user(conn, &actor, &input))
        .await?;
    Ok(HttpResponse::Created().json(user_json(&user)))
}

/// Reads a user.
#[utoipa::path(
    operation_id = "get_user",
    get,
    path = "/api/v1/users/{id}",
    tag = "Users",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The user's Flagpole id or external id.")),
    responses(
        (status = 200, description = "The user.", body = UserObject),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No user has this id or external id (`user_not_found`).", body = ErrorBody),
    )
)]
async fn get_user(
    state: web::Data<AppState>,
    _auth: ApiAuth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    let user = state
        .db(move |conn| load_user(conn, &key))
        .await
        .map_err(for_user)?;
    Ok(HttpResponse::Ok().json(user_json(&user)))
}

/// Changes a user's email, names or external id.
#[utoipa::path(
    operation_id = "update_user",
    patch,
    path = "/api/v1/users/{id}",
    tag = "Users",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The user's Flagpole id or external id.")),
    responses(
        (status = 200, description = "The user as changed.", body = UserObject),
        (status = 400, description = "The body is not valid JSON.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No user has this id or external id (`user_not_found`).", body = ErrorBody),
        (status = 409, description = "Another user has this email or external id (`duplicate`).", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn update_user(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<String>,
    body: web::Json<UpdateUserBody>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    let body = body.into_inner();
    let actor = auth.actor();
    let user = state
        .db(move |conn| {
            let user = load_user(conn, &key)?;
            let input = UserInput {
                email: body.email.unwrap_or(user.email.clone()),
                first_name: body.first_name.unwrap_or(user.first_name.clone()),
                last_name: body.last_name.unwrap_or(user.last_name.clone()),
                external_id: updated(body.external_id, &user.external_id),
            };
            directory::update_user(conn, &actor, &user.id, &input)
        })
        .await
        .map_err(for_user)?;
    Ok(HttpResponse::Ok().json(user_json(&user)))
}

/// Deletes a user, their memberships and the flag targets naming them.
#[utoipa::path(
    operation_id = "delete_user",
    delete,
    path = "/api/v1/users/{id}",
    tag = "Users",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The user's Flagpole id or external id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 404, description = "No user has this id or external id (`user_not_found`).", body = ErrorBody),
    )
)]
async fn delete_user(
    state: web::Data<AppState>,
    auth: ApiAuth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    let actor = auth.actor();
    state
        .db(move |conn| {
            let user = load_user(conn, &key)?;
            directory::delete_user(conn, &actor, &user.id)
        })
        .await
        .map_err(for_user)?;
    Ok(HttpResponse::NoContent().finish())
}

// Bulk upserts.

#[derive(Deserialize)]
struct BulkBody {
    data: Option<Vec<Value>>,
}

/// The objects of a bulk body, refused whole when there are too many.
fn bulk_objects(body: BulkBody) -> Result<Vec<Value>, ApiError> {
    let data = body.data.ok_or_else(|| {
        ApiError::invalid(
            "data",
            format!("Send {{\"data\": [...]}} with 1 to {BULK_LIMIT} objects."),
        )
    })?;
    if data.len() > BULK_LIMIT {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_objects",
            format!(
                "A bulk request takes at most {BULK_LIMIT} objects and this one has {}; nothing was saved. Split it into several requests.",
                data.len()
            ),
        ));
    }
    Ok(data)
}

/// One object of a bulk body, or a 422 naming its index.
fn bulk_item(i: usize, value: Value) -> Result<serde_json::Map<String, Value>, ApiError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::invalid(
            &format!("data[{i}]"),
            "Each element of data is a JSON object.",
        )),
    }
}

/// A text field of the `i`th bulk object: absent or null is `None`.
fn bulk_text(
    i: usize,
    item: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match item.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(
            &format!("data[{i}].{field}"),
            format!("{field} is a string."),
        )),
    }
}

fn counts_json(counts: BulkCounts) -> Value {
    json!({
        "object": "bulk_result",
        "created": counts.created,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
    })
}

/// Creates or updates up to 1,000 users by external id, all or nothing.
#[utoipa::path(
    operation_id = "bulk_upsert_users",
    post,
    path = "/api/v1/users/bulk",
    tag = "Users",
    security(("api_key" = [])),
    request_body = BulkUsers,
    responses(
        (status = 200, description = "What was created, updated and left unchanged.", body = BulkResult),
        (status = 400, description = "The body is not valid JSON.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 409, description = "An object conflicts with another one already saved, e.g. an email another user has (`duplicate`); nothing was saved.", body = ErrorBody),
        (status = 413, description = "More than 1,000 objects (`too_many_objects`), or a body over 4 MiB; nothing was saved.", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "An object is invalid; `field` names it, e.g. `data[3].email`. Nothing was saved.", body = ErrorBody),
    )
)]
async fn bulk_users(
    state: web::Data<AppState>,
    auth: ApiAuth,
    body: web::Json<BulkBody>,
) -> Result<HttpResponse, ApiError> {
    let items = bulk_objects(body.into_inner())?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let item = bulk_item(i, v)?;
            Ok(BulkUser {
                external_id: bulk_text(i, &item, "external_id")?.unwrap_or_default(),
                email: bulk_text(i, &item, "email")?,
                first_name: bulk_text(i, &item, "first_name")?,
                last_name: bulk_text(i, &item, "last_name")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let actor = auth.actor();
    let counts = state
        .db(move |conn| directory::bulk_upsert_users(conn, &actor, &items))
        .await?;
    Ok(HttpResponse::Ok().json(counts_json(counts)))
}

/// Creates or updates up to 1,000 organizations by external id, all or nothing.
#[utoipa::path(
    operation_id = "bulk_upsert_organizations",
    post,
    path = "/api/v1/organizations/bulk",
    tag = "Organizations",
    security(("api_key" = [])),
    request_body = BulkOrganizations,
    responses(
        (status = 200, description = "What was created, updated and left unchanged.", body = BulkResult),
        (status = 400, description = "The body is not valid JSON.", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked one.", body = ErrorBody),
        (status = 409, description = "An object conflicts with another one already saved, e.g. an email another user has (`duplicate`); nothing was saved.", body = ErrorBody),
        (status = 413, description = "More than 1,000 objects (`too_many_objects`), or a body over 4 MiB; nothing was saved.", body = ErrorBody),
        (status = 415, description = "The body is not sent as application/json.", body = ErrorBody),
        (status = 422, description = "An object is invalid; `field` names it, e.g. `data[3].email`. Nothing was saved.", body = ErrorBody),
    )
)]
async fn bulk_orgs(
    state: web::Data<AppState>,
    auth: ApiAuth,
    body: web::Json<BulkBody>,
) -> Result<HttpResponse, ApiError> {
    let items = bulk_objects(body.into_inner())?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let item = bulk_item(i, v)?;
            Ok(BulkOrganization {
                external_id: bulk_text(i, &item, "external_id")?.unwrap_or_default(),
                name: bulk_text(i, &item, "name")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let actor = auth.actor();
    let counts = state
        .db(move |conn| directory::bulk_upsert_orgs(conn, &actor, &items))
        .await?;
    Ok(HttpResponse::Ok().json(counts_json(counts)))
}
