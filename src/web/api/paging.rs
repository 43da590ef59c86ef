//! Cursor pagination for API lists: `limit` (default 10, at most 100),
//! `before`, `after` (object ids) and `order` (`desc`, the default, or `asc`).
//! Ids are ULIDs, which sort by creation, so walking `after` visits every
//! object once even while new ones are added.

use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::{IntoParams, ToSchema};

use super::ApiError;

#[derive(Debug, Clone)]
pub struct Cursor {
    pub limit: i64,
    pub before: Option<String>,
    pub after: Option<String>,
    pub descending: bool,
}

/// The query parameters of a list, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub limit: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub order: Option<String>,
}

/// An optional query parameter for the OpenAPI document.
pub fn query_param(name: &str, description: &str, schema: ObjectBuilder) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

impl IntoParams for ListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        vec![
            query_param(
                "limit",
                "How many objects a page holds, from 1 to 100.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(100))
                    .default(Some(json!(10))),
            ),
            query_param(
                "before",
                "An object id: the page of objects before it (`list_metadata.before` of a page).",
                text(),
            ),
            query_param(
                "after",
                "An object id: the page of objects after it (`list_metadata.after` of a page).",
                text(),
            ),
            query_param(
                "order",
                "`desc` (newest first, the default) or `asc`.",
                text()
                    .enum_values(Some(["desc", "asc"]))
                    .default(Some(json!("desc"))),
            ),
        ]
    }
}

/// The cursors around a page: give `after` (or `before`) back to read the
/// next (or previous) page; `null` when there is none.
#[derive(ToSchema)]
pub struct ListMetadata {
    #[schema(required = true)]
    pub before: Option<String>,
    #[schema(required = true)]
    pub after: Option<String>,
}

/// The `object` of every list envelope.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ListKind {
    List,
}

impl ListQuery {
    pub fn cursor(&self) -> Result<Cursor, ApiError> {
        let limit = match self.limit.as_deref() {
            None | Some("") => 10,
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid("limit", "limit is a whole number from 1 to 100.")
                })?,
        };
        let descending = match self.order.as_deref() {
            None | Some("") | Some("desc") => true,
            Some("asc") => false,
            Some(_) => return Err(ApiError::invalid("order", "order is asc or desc.")),
        };
        let clean = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let (before, after) = (clean(&self.before), clean(&self.after));
        if before.is_some() && after.is_some() {
            return Err(ApiError::invalid(
                "before",
                "Give before or after, not both.",
            ));
        }
        Ok(Cursor {
            limit,
            before,
            after,
            descending,
        })
    }
}

/// One page and the cursors around it.
pub struct Page<T> {
    pub data: Vec<T>,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Cursor {
    /// True when the rows must be read in the opposite order and reversed
    /// (paging backwards with `before`).
    pub fn backwards(&self) -> bool {
        self.before.is_some()
    }

    /// Whether the query should sort its ids descending.
    pub fn sorts_descending(&self) -> bool {
        self.descending != self.backwards()
    }

    /// Turns `limit + 1` rows read in query order into a page.
    pub fn finish<T>(&self, mut rows: Vec<T>, id: impl Fn(&T) -> String) -> Page<T> {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        if self.backwards() {
            rows.reverse();
        }
        let (first, last) = (rows.first().map(&id), rows.last().map(&id));
        let (before, after) = if self.backwards() {
            (first.filter(|_| more), last)
        } else {
            (
                first.filter(|_| self.after.is_some()),
                last.filter(|_| more),
            )
        };
        Page {
            data: rows,
            before,
            after,
        }
    }
}

/// Applies a cursor to a boxed diesel query over `$id`, loads `limit + 1`
/// rows and returns the `Page`.
#[macro_export]
macro_rules! paginate {
    ($query:expr, $id:expr, $cursor:expr, $conn:expr, $select:ty, $id_of:expr) => {{
        let cursor: &$crate::web::api::paging::Cursor = $cursor;
        let mut query = $query;
        // After/before, in the list's own order.
        if let Some(after) = &cursor.after {
            query = if cursor.descending {
                query.filter($id.lt(after.clone()))
            } else {
                query.filter($id.gt(after.clone()))
            };
        }
        if let Some(before) = &cursor.before {
            query = if cursor.descending {
                query.filter($id.gt(before.clone()))
            } else {
                query.filter($id.lt(before.clone()))
            };
        }
        query = if cursor.sorts_descending() {
            query.order($id.desc())
        } else {
            query.order($id.asc())
        };
        let rows: Vec<$select> = query
            .limit(cursor.limit + 1)
            .select(<$select>::as_select())
            .load($conn)?;
        cursor.finish(rows, $id_of)
    }};
}

/// The list envelope: `{"object": "list", "data": [...], "list_metadata": {...}}`.
pub fn envelope<T>(page: &Page<T>, render: impl Fn(&T) -> Value) -> Value {
    json!({
        "object": "list",
        "data": page.data.iter().map(render).collect::<Vec<_>>(),
        "list_metadata": {"before": page.before, "after": page.after},
    })
}
