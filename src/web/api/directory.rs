//! Organizations, users and memberships with a secret key. Wherever a path
//! or a body names an organization or a user, a Flagpole id or the
//! application's `external_id` works. The bulk endpoints create or update up
//! to 1,000 objects by `external_id` in one transaction.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Deserializer};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use super::objects::{
    BulkResult, ErrorBody, MembershipList, MembershipObject, OrganizationList, OrganizationObject,
    UserList, UserObject,
};
use super::paging::{query_param, ListQuery};
use super::AdminKey;
use super::{required, API_PREFIX, BULK_JSON_LIMIT};
use crate::directory::bulk::{self, BulkOrganization, BulkUser, BULK_LIMIT};
use crate::directory::memberships;
use crate::directory::organizations::{self, NewOrganization, OrganizationPatch};
use crate::directory::users::{self, NewUser, UserPatch};
use crate::error::{Error, Result};
use crate::web::json::{BodyLimit, Json};
use crate::web::routes::Routes;
use crate::web::Surface;
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // The bulk paths come before `…/{id}`, which would match them too.
    Routes::documented(cfg, API_PREFIX, Surface::Api)
        .post("/organizations/bulk", bulk_orgs)
        .data("/organizations/bulk", BodyLimit(BULK_JSON_LIMIT))
        .fall_through("/organizations/bulk")
        .post("/users/bulk", bulk_users)
        .data("/users/bulk", BodyLimit(BULK_JSON_LIMIT))
        .fall_through("/users/bulk")
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

/// A field that may be sent as `null` to clear it: absent is `None`,
/// `null` is `Some(None)`.
fn present<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The text a PATCH sets: `null` clears the value (an empty text).
fn patched(sent: Option<Option<String>>) -> Option<String> {
    sent.map(Option::unwrap_or_default)
}

#[derive(Deserialize)]
pub(super) struct SearchParams {
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
    security(("api_key" = ["admin"])),
    params(SearchParams),
    responses(
        (status = 200, description = "A page of organizations.", body = OrganizationList),
        (status = 422, description = "A query parameter is invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn list_orgs(
    state: web::Data<AppState>,
    _auth: AdminKey,
    query: web::Query<SearchParams>,
) -> Result<HttpResponse> {
    let params = query.into_inner();
    let cursor = params.page.cursor()?;
    let q = params.q.unwrap_or_default();
    let page = state
        .read(move |conn| organizations::list(conn, &q, &cursor))
        .await?;
    Ok(HttpResponse::Ok().json(OrganizationList::from(page)))
}

/// A new organization.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateOrganization)]
struct CreateOrgBody {
    #[schema(value_type = String, required = true, example = "Acme Inc.")]
    name: Option<String>,
    /// Your application's id for it; unique.
    #[schema(example = "acme")]
    external_id: Option<String>,
}

/// The fields to change; the others keep their value. `external_id: null`
/// removes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
    security(("api_key" = ["admin"])),
    request_body = CreateOrgBody,
    responses(
        (status = 201, description = "The new organization.", body = OrganizationObject),
        (status = 409, description = "Another organization has this external id (`duplicate`).", body = ErrorBody),
        (status = 422, description = "A field is missing, unknown or invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn create_org(
    state: web::Data<AppState>,
    auth: AdminKey,
    body: Json<CreateOrgBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let input = NewOrganization {
        name: body.name.unwrap_or_default(),
        external_id: body.external_id.unwrap_or_default(),
    };
    let actor = auth.actor();
    let org = state
        .write(move |conn| organizations::create(conn, &actor, &input))
        .await?;
    Ok(HttpResponse::Created().json(OrganizationObject::from(org)))
}

/// Reads an organization.
#[utoipa::path(
    operation_id = "get_organization",
    get,
    path = "/api/v1/organizations/{id}",
    tag = "Organizations",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The organization's Flagpole id or external id.")),
    responses(
        (status = 200, description = "The organization.", body = OrganizationObject),
        (status = 404, description = "No organization has this id or external id (`organization_not_found`).", body = ErrorBody),
    )
)]
async fn get_org(
    state: web::Data<AppState>,
    _auth: AdminKey,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let key = path.into_inner();
    let org = state
        .read(move |conn| organizations::named(conn, &key))
        .await?;
    Ok(HttpResponse::Ok().json(OrganizationObject::from(org)))
}

/// Changes an organization's name or external id.
#[utoipa::path(
    operation_id = "update_organization",
    patch,
    path = "/api/v1/organizations/{id}",
    tag = "Organizations",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The organization's Flagpole id or external id.")),
    request_body = UpdateOrgBody,
    responses(
        (status = 200, description = "The organization as changed.", body = OrganizationObject),
        (status = 404, description = "No organization has this id or external id (`organization_not_found`).", body = ErrorBody),
        (status = 409, description = "Another organization has this external id (`duplicate`).", body = ErrorBody),
        (status = 422, description = "A field is unknown or invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn update_org(
    state: web::Data<AppState>,
    auth: AdminKey,
    path: web::Path<String>,
    body: Json<UpdateOrgBody>,
) -> Result<HttpResponse> {
    let key = path.into_inner();
    let body = body.into_inner();
    let patch = OrganizationPatch {
        name: body.name,
        external_id: patched(body.external_id),
    };
    let actor = auth.actor();
    let org = state
        .write(move |conn| {
            let org = organizations::named(conn, &key)?;
            organizations::update(conn, &actor, &org.id, &patch)
        })
        .await?;
    Ok(HttpResponse::Ok().json(OrganizationObject::from(org)))
}

/// Deletes an organization, its memberships and the flag targets naming it.
#[utoipa::path(
    operation_id = "delete_organization",
    delete,
    path = "/api/v1/organizations/{id}",
    tag = "Organizations",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The organization's Flagpole id or external id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No organization has this id or external id (`organization_not_found`).", body = ErrorBody),
    )
)]
async fn delete_org(
    state: web::Data<AppState>,
    auth: AdminKey,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let key = path.into_inner();
    let actor = auth.actor();
    state
        .write(move |conn| {
            let org = organizations::named(conn, &key)?;
            organizations::delete(conn, &actor, &org.id)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// Memberships.

/// Lists an organization's members, by user id.
#[utoipa::path(
    operation_id = "list_memberships",
    get,
    path = "/api/v1/organizations/{id}/memberships",
    tag = "Organizations",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The organization's Flagpole id or external id."), ListQuery),
    responses(
        (status = 200, description = "A page of memberships, each with its user.", body = MembershipList),
        (status = 404, description = "No organization has this id or external id (`organization_not_found`).", body = ErrorBody),
        (status = 422, description = "A query parameter is invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn list_memberships(
    state: web::Data<AppState>,
    _auth: AdminKey,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse> {
    let key = path.into_inner();
    let cursor = query.into_inner().cursor()?;
    let page = state
        .read(move |conn| {
            let org = organizations::named(conn, &key)?;
            memberships::list(conn, &org.id, &cursor)
        })
        .await?;
    Ok(HttpResponse::Ok().json(MembershipList::from(page)))
}

/// The user to add, by Flagpole id or external id.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AddMembership)]
struct MembershipBody {
    #[schema(value_type = String, required = true, example = "u-1042")]
    user_id: Option<String>,
}

/// Makes a user a member of an organization.
#[utoipa::path(
    operation_id = "add_membership",
    post,
    path = "/api/v1/organizations/{id}/memberships",
    tag = "Organizations",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The organization's Flagpole id or external id.")),
    request_body = MembershipBody,
    responses(
        (status = 201, description = "The membership.", body = MembershipObject),
        (status = 404, description = "No such organization or user (`organization_not_found`, `user_not_found`).", body = ErrorBody),
        (status = 409, description = "The user is a member already (`duplicate`).", body = ErrorBody),
        (status = 422, description = "`user_id` is missing, or the body has an unknown field.", body = ErrorBody),
    )
)]
async fn add_membership(
    state: web::Data<AppState>,
    auth: AdminKey,
    path: web::Path<String>,
    body: Json<MembershipBody>,
) -> Result<HttpResponse> {
    let key = path.into_inner();
    let user_key = required(
        body.into_inner().user_id,
        "user_id",
        "user_id: the user's Flagpole id or external id",
    )?;
    let actor = auth.actor();
    let membership = state
        .write(move |conn| {
            let org = organizations::named(conn, &key)?;
            let user = users::named(conn, &user_key)?;
            let membership = memberships::add(conn, &actor, &org, &user, "user_id")?;
            Ok((membership, Some(user)))
        })
        .await?;
    Ok(HttpResponse::Created().json(MembershipObject::from(membership)))
}

/// Ends a user's membership of an organization.
#[utoipa::path(
    operation_id = "remove_membership",
    delete,
    path = "/api/v1/organizations/{id}/memberships/{user_id}",
    tag = "Organizations",
    security(("api_key" = ["admin"])),
    params(
        ("id" = String, Path, description = "The organization's Flagpole id or external id."),
        ("user_id" = String, Path, description = "The member's Flagpole id or external id."),
    ),
    responses(
        (status = 204, description = "The membership ended."),
        (status = 404, description = "No such organization or user, or the user is not a member (`membership_not_found`).", body = ErrorBody),
    )
)]
async fn remove_membership(
    state: web::Data<AppState>,
    auth: AdminKey,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (key, user_key) = path.into_inner();
    let actor = auth.actor();
    state
        .write(move |conn| {
            let org = organizations::named(conn, &key)?;
            let user = users::named(conn, &user_key)?;
            memberships::remove(conn, &actor, &org, &user)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// Users.

/// Lists users, newest first, with cursor pagination.
#[utoipa::path(
    operation_id = "list_users",
    get,
    path = "/api/v1/users",
    tag = "Users",
    security(("api_key" = ["admin"])),
    params(SearchParams),
    responses(
        (status = 200, description = "A page of users.", body = UserList),
        (status = 422, description = "A query parameter is invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn list_users(
    state: web::Data<AppState>,
    _auth: AdminKey,
    query: web::Query<SearchParams>,
) -> Result<HttpResponse> {
    let params = query.into_inner();
    let cursor = params.page.cursor()?;
    let q = params.q.unwrap_or_default();
    let page = state
        .read(move |conn| users::list(conn, &q, &cursor))
        .await?;
    Ok(HttpResponse::Ok().json(UserList::from(page)))
}

/// A new user: `email` is required.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateUser)]
struct CreateUserBody {
    #[schema(value_type = String, required = true, example = "ada@example.com")]
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    /// Your application's id for the user; unique.
    #[schema(example = "u-1042")]
    external_id: Option<String>,
}

/// The fields to change; the others keep their value. `external_id: null`
/// removes it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
    security(("api_key" = ["admin"])),
    request_body = CreateUserBody,
    responses(
        (status = 201, description = "The new user.", body = UserObject),
        (status = 409, description = "Another user has this email or external id (`duplicate`).", body = ErrorBody),
        (status = 422, description = "A field is missing, unknown or invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn create_user(
    state: web::Data<AppState>,
    auth: AdminKey,
    body: Json<CreateUserBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let input = NewUser {
        email: body.email.unwrap_or_default(),
        first_name: body.first_name.unwrap_or_default(),
        last_name: body.last_name.unwrap_or_default(),
        external_id: body.external_id.unwrap_or_default(),
    };
    let actor = auth.actor();
    let user = state
        .write(move |conn| users::create(conn, &actor, &input))
        .await?;
    Ok(HttpResponse::Created().json(UserObject::from(user)))
}

/// Reads a user.
#[utoipa::path(
    operation_id = "get_user",
    get,
    path = "/api/v1/users/{id}",
    tag = "Users",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The user's Flagpole id or external id.")),
    responses(
        (status = 200, description = "The user.", body = UserObject),
        (status = 404, description = "No user has this id or external id (`user_not_found`).", body = ErrorBody),
    )
)]
async fn get_user(
    state: web::Data<AppState>,
    _auth: AdminKey,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let key = path.into_inner();
    let user = state.read(move |conn| users::named(conn, &key)).await?;
    Ok(HttpResponse::Ok().json(UserObject::from(user)))
}

/// Changes a user's email, names or external id.
#[utoipa::path(
    operation_id = "update_user",
    patch,
    path = "/api/v1/users/{id}",
    tag = "Users",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The user's Flagpole id or external id.")),
    request_body = UpdateUserBody,
    responses(
        (status = 200, description = "The user as changed.", body = UserObject),
        (status = 404, description = "No user has this id or external id (`user_not_found`).", body = ErrorBody),
        (status = 409, description = "Another user has this email or external id (`duplicate`).", body = ErrorBody),
        (status = 422, description = "A field is unknown or invalid; `field` names it.", body = ErrorBody),
    )
)]
async fn update_user(
    state: web::Data<AppState>,
    auth: AdminKey,
    path: web::Path<String>,
    body: Json<UpdateUserBody>,
) -> Result<HttpResponse> {
    let key = path.into_inner();
    let body = body.into_inner();
    let patch = UserPatch {
        email: body.email,
        first_name: body.first_name,
        last_name: body.last_name,
        external_id: patched(body.external_id),
    };
    let actor = auth.actor();
    let user = state
        .write(move |conn| {
            let user = users::named(conn, &key)?;
            users::update(conn, &actor, &user.id, &patch)
        })
        .await?;
    Ok(HttpResponse::Ok().json(UserObject::from(user)))
}

/// Deletes a user, their memberships and the flag targets naming them.
#[utoipa::path(
    operation_id = "delete_user",
    delete,
    path = "/api/v1/users/{id}",
    tag = "Users",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The user's Flagpole id or external id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No user has this id or external id (`user_not_found`).", body = ErrorBody),
    )
)]
async fn delete_user(
    state: web::Data<AppState>,
    auth: AdminKey,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let key = path.into_inner();
    let actor = auth.actor();
    state
        .write(move |conn| {
            let user = users::named(conn, &key)?;
            users::delete(conn, &actor, &user.id)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

// Bulk upserts.

/// Users to create or update by `external_id`: 1 to 1,000.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkUsers {
    #[schema(required = true, value_type = Vec<BulkUserItem>)]
    pub data: Option<Vec<serde_json::Value>>,
}

/// A user of a bulk upsert. An absent field keeps its current value when
/// the user exists; a new user needs an email.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkUserItem {
    #[schema(value_type = String, required = true, example = "u-1042")]
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// Organizations to create or update by `external_id`: 1 to 1,000.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkOrganizations {
    #[schema(required = true, value_type = Vec<BulkOrganizationItem>)]
    pub data: Option<Vec<serde_json::Value>>,
}

/// An organization of a bulk upsert. A new organization needs a name.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkOrganizationItem {
    #[schema(value_type = String, required = true, example = "acme")]
    pub external_id: Option<String>,
    pub name: Option<String>,
}

/// The objects of a bulk body: counted first, so an oversized request is
/// refused before its objects are read, then read one by one, so that a
/// wrong value is named as `data[3].email`.
fn bulk_data<T: serde::de::DeserializeOwned>(
    data: Option<Vec<serde_json::Value>>,
) -> Result<Vec<T>> {
    let data = data.ok_or_else(|| {
        Error::invalid(
            "data",
            format!("Send {{\"data\": [...]}} with 1 to {BULK_LIMIT} objects."),
        )
    })?;
    bulk::check_size(data.len())?;
    data.into_iter()
        .enumerate()
        .map(|(i, item)| {
            if !item.is_object() {
                return Err(Error::invalid(
                    format!("data[{i}]"),
                    "Each element of data is a JSON object.",
                ));
            }
            serde_path_to_error::deserialize(item).map_err(|err| {
                let path = err.path().to_string();
                let field = if path == "." {
                    format!("data[{i}]")
                } else {
                    format!("data[{i}].{path}")
                };
                let message = err.into_inner().to_string();
                Error::invalid(field.clone(), format!("{field}: {message}"))
            })
        })
        .collect()
}

/// Creates or updates users by `external_id`, all or none.
#[utoipa::path(
    operation_id = "bulk_upsert_users",
    post,
    path = "/api/v1/users/bulk",
    tag = "Users",
    security(("api_key" = ["admin"])),
    request_body = BulkUsers,
    responses(
        (status = 200, description = "What changed.", body = BulkResult),
        (status = 409, description = "An email or external id another user has (`duplicate`); `field` names the object.", body = ErrorBody),
        (status = 413, description = "More than 1,000 objects (`too_many_objects`), or a body over 4 MiB.", body = ErrorBody),
        (status = 422, description = "An object is invalid; `field` names it, e.g. `data[3].email`.", body = ErrorBody),
    )
)]
async fn bulk_users(
    state: web::Data<AppState>,
    auth: AdminKey,
    body: Json<BulkUsers>,
) -> Result<HttpResponse> {
    let items: Vec<BulkUser> = bulk_data::<BulkUserItem>(body.into_inner().data)?
        .into_iter()
        .map(|item| BulkUser {
            external_id: item.external_id.unwrap_or_default(),
            email: item.email,
            first_name: item.first_name,
            last_name: item.last_name,
        })
        .collect();
    let actor = auth.actor();
    let counts = state
        .write_in_background(move |conn| bulk::upsert_users(conn, &actor, &items))
        .await?;
    Ok(HttpResponse::Ok().json(BulkResult::from(counts)))
}

/// Creates or updates organizations by `external_id`, all or none.
#[utoipa::path(
    operation_id = "bulk_upsert_organizations",
    post,
    path = "/api/v1/organizations/bulk",
    tag = "Organizations",
    security(("api_key" = ["admin"])),
    request_body = BulkOrganizations,
    responses(
        (status = 200, description = "What changed.", body = BulkResult),
        (status = 409, description = "An external id another organization has (`duplicate`).", body = ErrorBody),
        (status = 413, description = "More than 1,000 objects (`too_many_objects`), or a body over 4 MiB.", body = ErrorBody),
        (status = 422, description = "An object is invalid; `field` names it, e.g. `data[3].name`.", body = ErrorBody),
    )
)]
async fn bulk_orgs(
    state: web::Data<AppState>,
    auth: AdminKey,
    body: Json<BulkOrganizations>,
) -> Result<HttpResponse> {
    let items: Vec<BulkOrganization> = bulk_data::<BulkOrganizationItem>(body.into_inner().data)?
        .into_iter()
        .map(|item| BulkOrganization {
            external_id: item.external_id.unwrap_or_default(),
            name: item.name,
        })
        .collect();
    let actor = auth.actor();
    let counts = state
        .write_in_background(move |conn| bulk::upsert_organizations(conn, &actor, &items))
        .await?;
    Ok(HttpResponse::Ok().json(BulkResult::from(counts)))
}
