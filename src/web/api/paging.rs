//! The query parameters of cursor-paged lists: `limit` (default 10, at most
//! 100), `before`, `after` (object ids) and `order` (`desc`, the default, or
//! `asc`), read into a [`Cursor`] and described for the OpenAPI document.

use serde::Deserialize;
use serde_json::json;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::IntoParams;

use crate::error::Result;
use crate::paging::Cursor;

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

impl ListQuery {
    pub fn cursor(&self) -> Result<Cursor> {
        Cursor::parse(
            self.limit.as_deref(),
            self.before.as_deref(),
            self.after.as_deref(),
            self.order.as_deref(),
            10,
        )
    }
}
