//! The OpenAPI document at `/api/v1/openapi.json`: it parses as OpenAPI 3.1,
//! its references resolve, it documents exactly the routes the server mounts
//! under `/api/v1`, `/ofrep/v1` and `/.well-known` (both ways), every
//! documented operation reaches a handler, the operations that need a key
//! say so, and real answers match the documented schemas, property for
//! property. Run on both backends: the document does not depend on the
//! database, but the answers checked against it do.

use std::collections::BTreeSet;

use crate::common::TestApp;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

/// The prefixes the server's API lives under.
const PREFIXES: [&str; 3] = ["/api/v1/", "/ofrep/v1/", "/.well-known/"];

fn key(app: &TestApp, env: &str) -> String {
    crate::support::api_key(app, env, "openapi")
}

/// An answer, whatever its content type.
struct Answer {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.text).ok()
    }

    fn is_json(&self) -> bool {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
    }

    /// The answer of the API's fallback for an unknown route (or of the
    /// dashboard's 404 page, outside the API scopes), or actix's 405.
    fn is_route_not_found(&self) -> bool {
        if self.status == 405 {
            return true;
        }
        if self.status != 404 {
            return false;
        }
        match self.json() {
            None => true,
            Some(body) => {
                body["error"]["code"] == "route_not_found"
                    || body["errorDetails"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("No OFREP route"))
            }
        }
    }
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    method: &Method,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Answer {
    let mut req = http.request(method.clone(), format!("{base}{path}"));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.expect("request");
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        text: resp.text().await.unwrap_or_default(),
    }
}

/// The OpenAPI document, with lookups into it.
struct Doc(Value);

impl Doc {
    /// Follows `$ref`s (`#/components/...`) to the object they name.
    fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        for _ in 0..16 {
            let Some(target) = value.get("$ref").and_then(Value::as_str) else {
                return value;
            };
            let pointer = target
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("a $ref outside the document: {target}"));
            value = self
                .0
                .pointer(pointer)
                .unwrap_or_else(|| panic!("the $ref {target} names nothing"));
        }
        panic!("a $ref cycle")
    }

    /// Every operation as (METHOD, path template, operation).
    fn operations(&self) -> Vec<(String, String, &Value)> {
        let mut ops = Vec::new();
        for (path, item) in self.0["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                if [
                    "get", "put", "post", "delete", "patch", "head", "options", "trace",
                ]
                .contains(&method.as_str())
                {
                    ops.push((method.to_uppercase(), path.clone(), op));
                }
            }
        }
        ops
    }

    fn operation(&self, method: &Method, template: &str) -> &Value {
        let op = &self.0["paths"][template][method.as_str().to_lowercase()];
        assert!(
            op.is_object(),
            "{method} {template} is not in the OpenAPI document"
        );
        op
    }

    fn needs_key(op: &Value) -> bool {
        op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("api_key").is_some()))
    }

    /// Checks an answer against what the document says of this operation
    /// and status: the status is documented, and the body has the
    /// documented content type and matches the schema exactly.
    fn check(&self, method: &Method, template: &str, answer: &Answer) -> Result<(), String> {
        let op = self.operation(method, template);
        let status = answer.status.to_string();
        let Some(response) = op["responses"].get(&status) else {
            return Err(format!(
                "{method} {template} answered {status}, which the document does not list: {}",
                answer.text
            ));
        };
        let response = self.resolve(response);
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            if !answer.text.is_empty() {
                return Err(format!(
                    "{method} {template} {status} is documented without a body but sent {}",
                    answer.text
                ));
            }
            return Ok(());
        };
        let Some(media) = content.get("application/json") else {
            return Err(format!(
                "{method} {template} {status}: not documented as JSON"
            ));
        };
        if !answer.is_json() {
            return Err(format!(
                "{method} {template} {status}: content type {:?}",
                answer.headers.get("content-type")
            ));
        }
        let body = answer.json().ok_or("the body is not JSON")?;
        let Some(schema) = media.get("schema") else {
            return Ok(());
        };
        let mut errors = Vec::new();
        self.validate(schema, &body, "body", &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {template} {status} does not match its schema:\n  {}\nbody: {body:#}",
                errors.join("\n  ")
            ))
        }
    }

    /// JSON Schema, as much of it as utoipa emits; stricter than JSON Schema
    /// in one way: a property the schema does not list is an error unless
    /// `additionalProperties` allows it, so the documented objects are the
    /// real ones.
    fn validate(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = self.resolve(schema);
        for combinator in ["oneOf", "anyOf"] {
            if let Some(options) = schema.get(combinator).and_then(Value::as_array) {
                let matching = options
                    .iter()
                    .filter(|s| {
                        let mut e = Vec::new();
                        self.validate(s, value, at, &mut e);
                        e.is_empty()
                    })
                    .count();
                let ok = if combinator == "oneOf" {
                    matching == 1
                } else {
                    matching >= 1
                };
                if !ok {
                    errors.push(format!(
                        "{at}: {matching} of the {combinator} match {value}"
                    ));
                }
            }
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.validate(s, value, at, errors);
            }
        }
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let fits = types.iter().any(|t| match *t {
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "array" => value.is_array(),
                "object" => value.is_object(),
                "null" => value.is_null(),
                _ => false,
            });
            if !fits {
                errors.push(format!("{at}: {value} is not of type {types:?}"));
                return;
            }
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            if !values.contains(value) {
                errors.push(format!("{at}: {value} is not one of {values:?}"));
            }
        }
        if let Some(object) = value.as_object() {
            let properties = schema.get("properties").and_then(Value::as_object);
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                if !object.contains_key(name) {
                    errors.push(format!("{at}: the required property {name:?} is missing"));
                }
            }
            if let Some(properties) = properties {
                let open = schema
                    .get("additionalProperties")
                    .is_some_and(|a| a != &Value::Bool(false));
                for (name, v) in object {
                    match properties.get(name) {
                        Some(s) => self.validate(s, v, &format!("{at}.{name}"), errors),
                        None if open => {}
                        None => {
                            errors.push(format!("{at}: the property {name:?} is not documented"))
                        }
                    }
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, v) in array.iter().enumerate() {
                self.validate(items, v, &format!("{at}[{i}]"), errors);
            }
        }
    }
}

/// Every `$ref` anywhere in the document.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// `{slug}`-style parameters of a path template.
fn template_params(template: &str) -> BTreeSet<String> {
    template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
        .collect()
}

async fn fetch_document(app: &TestApp) -> Doc {
    let http = reqwest::Client::new();
    let answer = send(
        &http,
        &app.base,
        &Method::GET,
        "/api/v1/openapi.json",
        None,
        &[],
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.is_json(), "{:?}", answer.headers);
    let spec = oas3::from_json(&answer.text).expect("the document parses as OpenAPI 3.1");
    spec.validate_version()
        .expect("the document's OpenAPI version is supported");
    Doc(answer.json().unwrap())
}

async fn the_document_is_valid_openapi(app: TestApp) {
    let doc = fetch_document(&app).await;
    let d = &doc.0;
    assert!(
        d["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        d["openapi"]
    );
    assert_eq!(d["info"]["title"], "Flagpole");
    assert_eq!(d["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        d["components"]["securitySchemes"]["api_key"],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "sk_…",
               "description": d["components"]["securitySchemes"]["api_key"]["description"]})
    );

    let mut all_refs = Vec::new();
    refs(d, &mut all_refs);
    assert!(all_refs.len() > 50, "the schemas are shared by reference");
    for r in &all_refs {
        doc.resolve(&json!({ "$ref": r }));
    }

    let schemes: BTreeSet<&String> = d["components"]["securitySchemes"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    let tags: BTreeSet<&str> = d["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let mut operation_ids = BTreeSet::new();
    for (method, path, op) in doc.operations() {
        let what = format!("{method} {path}");
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no operationId"));
        assert!(
            operation_ids.insert(id.to_string()),
            "{what}: operationId {id} is used twice"
        );
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.contains('\n')),
            "{what}: a one-line summary"
        );
        for tag in op["tags"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no tag"))
        {
            assert!(
                tags.contains(tag.as_str().unwrap()),
                "{what}: the tag {tag} is not declared"
            );
        }
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: no responses"));
        assert!(!responses.is_empty(), "{what}: no responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{what}: no success response"
        );
        for (status, response) in responses {
            let response = doc.resolve(response);
            assert!(
                response["description"].is_string(),
                "{what} {status}: no description"
            );
            if let Some(content) = response.get("content").and_then(Value::as_object) {
                for (media, body) in content {
                    assert!(
                        body.get("schema").is_some(),
                        "{what} {status} {media}: no schema"
                    );
                }
            }
            if status.starts_with('4') && path.starts_with("/api/v1/") {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{what} {status}");
            }
        }
        for requirement in op["security"].as_array().into_iter().flatten() {
            for scheme in requirement.as_object().unwrap().keys() {
                assert!(
                    schemes.contains(scheme),
                    "{what}: unknown security scheme {scheme}"
                );
            }
        }
        if Doc::needs_key(op) {
            assert!(
                responses.contains_key("401"),
                "{what} needs a key, so it documents 401"
            );
        }
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{what}: path parameters are required");
                p["name"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(declared, template_params(&path), "{what}: path parameters");
        if let Some(body) = op.get("requestBody") {
            let body = doc.resolve(body);
            assert!(
                body["content"]["application/json"]["schema"].is_object(),
                "{what}: a JSON request body with a schema"
            );
        }
    }
}

/// The source files of the web layer, recursively.
fn web_sources() -> Vec<(std::path::PathBuf, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).unwrap();
                out.push((path, source));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src/web")),
        &mut out,
    );
    assert!(out.len() > 10, "the web sources are found");
    out
}

/// Every route goes through the route table (`web::routes::Routes`), which
/// answers 405 and renders errors per surface; the API's and OFREP's go
/// through `Routes::documented`, which records them, so a route mounted
/// any other way would escape the comparison with the document.
#[test]
fn routes_are_only_mounted_through_the_route_table() {
    for (path, source) in web_sources() {
        if path.ends_with("web/routes.rs") {
            continue;
        }
        let documented =
            path.to_string_lossy().contains("/web/api/") || path.ends_with("web/ofrep.rs");
        for (n, line) in source.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            let mut patterns = vec![
                ".route(",
                "web::resource(",
                "web::get()",
                "web::post()",
                "web::put()",
                "web::patch()",
                "web::delete()",
                "#[get(",
                "#[post(",
                "#[put(",
                "#[patch(",
                "#[delete(",
            ];
            if documented {
                patterns.push("Routes::new(");
            }
            for pattern in patterns {
                assert!(
                    !code.contains(pattern),
                    "{}:{}: mount routes with the route table (Routes::documented for the API) so 405s, error shapes and the OpenAPI check cover them: {line}",
                    path.display(),
                    n + 1
                );
            }
        }
    }
}

/// Handlers parse, call a service and render: nothing under `src/web`
/// touches the database schema.
#[test]
fn the_web_layer_does_not_touch_the_database_schema() {
    for (path, source) in web_sources() {
        for (n, line) in source.lines().enumerate() {
            assert!(
                !line.contains("db::schema"),
                "{}:{}: call a service instead of querying from a handler: {line}",
                path.display(),
                n + 1
            );
        }
    }
}

async fn documented_and_mounted_routes_are_the_same(app: TestApp) {
    let doc = fetch_document(&app).await;
    // An answer came back, so a worker has configured every route.
    let mounted: BTreeSet<(String, String)> = flagpole::web::routes::mounted_routes()
        .into_iter()
        .collect();
    let documented: BTreeSet<(String, String)> = doc
        .operations()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    for (method, path) in mounted.iter().chain(&documented) {
        assert!(
            PREFIXES.iter().any(|p| path.starts_with(p)),
            "{method} {path} is outside the API prefixes"
        );
    }
    let undocumented: Vec<_> = mounted.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&mounted).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "mounted but not documented: {undocumented:#?}\ndocumented but not mounted: {missing:#?}"
    );
    assert!(mounted.len() >= 20, "{mounted:#?}");
}

/// Every documented operation reaches its handler (placeholder path
/// parameters, an empty JSON object as the body), answers with a
/// documented status and body, and asks for a key exactly when the
/// document says it needs one.
async fn every_documented_operation_answers_as_documented(app: TestApp) {
    let doc = fetch_document(&app).await;
    let key = key(&app, "production");
    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    for (method, template, op) in doc.operations() {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut path = template.clone();
        for name in template_params(&template) {
            path = path.replace(&format!("{{{name}}}"), "openapi-probe");
        }
        let body = op.get("requestBody").map(|_| json!({}));
        let answer = send(
            &http,
            &app.base,
            &method,
            &path,
            Some(&key),
            &[],
            body.as_ref(),
        )
        .await;
        if answer.is_route_not_found() {
            failures.push(format!(
                "{method} {path}: no route ({} {})",
                answer.status, answer.text
            ));
            continue;
        }
        if let Err(e) = doc.check(&method, &template, &answer) {
            failures.push(e);
        }

        let keyless = send(&http, &app.base, &method, &path, None, &[], body.as_ref()).await;
        if Doc::needs_key(op) {
            if keyless.status != 401 {
                failures.push(format!(
                    "{method} {template} declares the api_key scheme but answered {} without a key",
                    keyless.status
                ));
            }
            if let Err(e) = doc.check(&method, &template, &keyless) {
                failures.push(e);
            }
        } else if keyless.status == 401 {
            failures.push(format!(
                "{method} {template} wants a key without declaring the api_key scheme"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A client that checks each answer against the document.
struct Checked<'a> {
    doc: &'a Doc,
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Checked<'_> {
    async fn call(
        &self,
        method: Method,
        template: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, HeaderMap, Value) {
        let answer = send(
            &self.http,
            &self.base,
            &method,
            path,
            Some(&self.key),
            headers,
            body.as_ref(),
        )
        .await;
        if let Err(e) = self.doc.check(&method, template, &answer) {
            panic!("{e}");
        }
        let json = answer.json().unwrap_or(Value::Null);
        (answer.status, answer.headers, json)
    }
}

/// A realistic walk through the API, each answer checked against its
/// documented schema, so the documented objects are the real ones.
async fn real_answers_match_their_schemas(app: TestApp) {
    let doc = fetch_document(&app).await;
    let api = Checked {
        doc: &doc,
        base: app.base.clone(),
        key: key(&app, "production"),
        http: reqwest::Client::new(),
    };
    use Method as M;
    let flags = "/api/v1/feature-flags";
    let flag = "/api/v1/feature-flags/{slug}";
    let rule = "/api/v1/feature-flags/{slug}/environments/{env}";

    let created = json!({"name": "New checkout", "slug": "new-checkout", "description": "One page", "tags": ["growth"]});
    let (status, _, body) = api
        .call(M::POST, flags, flags, &[], Some(created.clone()))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["object"], "feature_flag");
    let (status, _, body) = api.call(M::POST, flags, flags, &[], Some(created)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("duplicate"))
    );
    let (status, _, _) = api
        .call(
            M::POST,
            flags,
            flags,
            &[],
            Some(json!({"name": "Second", "slug": "second"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _, body) = api
        .call(M::GET, flags, "/api/v1/feature-flags?limit=1", &[], None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert!(body["list_metadata"]["after"].is_string());
    let (status, _, body) = api
        .call(M::GET, flags, "/api/v1/feature-flags?limit=500", &[], None)
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("limit"))
    );
    let (status, _, _) = api
        .call(
            M::GET,
            flag,
            "/api/v1/feature-flags/new-checkout",
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = api
        .call(M::GET, flag, "/api/v1/feature-flags/nope", &[], None)
        .await;
    assert_eq!(status, 404);
    let (status, _, body) = api
        .call(
            M::PATCH,
            flag,
            "/api/v1/feature-flags/new-checkout",
            &[],
            Some(json!({"tags": ["growth", "beta"]})),
        )
        .await;
    assert_eq!(
        (status, body["tags"].clone()),
        (200, json!(["beta", "growth"]))
    );
    for action in ["archive", "unarchive"] {
        let (status, _, body) = api
            .call(
                M::POST,
                &format!("{flag}/{action}"),
                &format!("/api/v1/feature-flags/second/{action}"),
                &[],
                None,
            )
            .await;
        assert_eq!(
            (status, body["archived"].as_bool()),
            (200, Some(action == "archive"))
        );
    }
    // Only an archived flag can be deleted.
    let (status, _, _) = api
        .call(
            M::POST,
            flags,
            flags,
            &[],
            Some(json!({"name": "Doomed", "slug": "doomed"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _, body) = api
        .call(M::DELETE, flag, "/api/v1/feature-flags/doomed", &[], None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("flag_not_archived"))
    );
    let (status, _, _) = api
        .call(
            M::POST,
            &format!("{flag}/archive"),
            "/api/v1/feature-flags/doomed/archive",
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = api
        .call(M::DELETE, flag, "/api/v1/feature-flags/doomed", &[], None)
        .await;
    assert_eq!(status, 204);
    let (status, _, body) = api
        .call(M::DELETE, flag, "/api/v1/feature-flags/doomed", &[], None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("flag_not_found"))
    );

    // A session with an inline user and organization creates both.
    let (status, _, session) = api
        .call(
            M::POST,
            "/api/v1/sessions",
            "/api/v1/sessions",
            &[],
            Some(json!({
                "user": {"external_id": "u-1042", "email": "ada@example.com", "first_name": "Ada"},
                "organization": {"external_id": "acme", "name": "Acme"},
            })),
        )
        .await;
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["feature_flags"], json!([]));

    // The directory: bulk upserts, objects, memberships, deletions.
    let ok = |status: u16| (200..300).contains(&status);
    let (status, _, body) = api
        .call(
            M::POST,
            "/api/v1/users/bulk",
            "/api/v1/users/bulk",
            &[],
            Some(json!({"data": [{"external_id": "u-2000", "email": "grace@example.com", "first_name": "Grace"}]})),
        )
        .await;
    assert_eq!((status, body["created"].as_u64()), (200, Some(1)), "{body}");
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"external_id": format!("bulk-{i}"), "email": format!("b{i}@example.com")}))
        .collect();
    let (status, _, _) = api
        .call(
            M::POST,
            "/api/v1/users/bulk",
            "/api/v1/users/bulk",
            &[],
            Some(json!({ "data": many })),
        )
        .await;
    assert_eq!(status, 413);
    let (status, _, body) = api
        .call(
            M::POST,
            "/api/v1/organizations/bulk",
            "/api/v1/organizations/bulk",
            &[],
            Some(json!({"data": [{"external_id": "globex", "name": "Globex"}]})),
        )
        .await;
    assert_eq!((status, body["created"].as_u64()), (200, Some(1)), "{body}");
    let members = "/api/v1/organizations/{id}/memberships";
    let (status, _, body) = api
        .call(
            M::POST,
            members,
            "/api/v1/organizations/globex/memberships",
            &[],
            Some(json!({"user_id": "u-2000"})),
        )
        .await;
    assert!(ok(status), "{status} {body}");
    let (status, _, body) = api
        .call(
            M::GET,
            members,
            "/api/v1/organizations/globex/memberships",
            &[],
            None,
        )
        .await;
    assert_eq!(
        (status, body["data"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    for (template, path) in [
        ("/api/v1/organizations", "/api/v1/organizations"),
        ("/api/v1/users", "/api/v1/users?q=grace"),
        ("/api/v1/organizations/{id}", "/api/v1/organizations/globex"),
        ("/api/v1/users/{id}", "/api/v1/users/u-2000"),
        ("/api/v1/audit-events", "/api/v1/audit-events?limit=5"),
    ] {
        let (status, _, body) = api.call(M::GET, template, path, &[], None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, _, body) = api
        .call(
            M::PATCH,
            "/api/v1/users/{id}",
            "/api/v1/users/u-2000",
            &[],
            Some(json!({"last_name": "Hopper"})),
        )
        .await;
    assert_eq!((status, body["last_name"].as_str()), (200, Some("Hopper")));
    let (status, _, body) = api
        .call(
            M::POST,
            "/api/v1/organizations",
            "/api/v1/organizations",
            &[],
            Some(json!({"name": "Initech", "external_id": "initech"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = api
        .call(
            M::POST,
            "/api/v1/users",
            "/api/v1/users",
            &[],
            Some(json!({"email": "linus@example.com", "external_id": "u-2001"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _, _) = api
        .call(
            M::DELETE,
            "/api/v1/organizations/{id}/memberships/{user_id}",
            "/api/v1/organizations/globex/memberships/u-2000",
            &[],
            None,
        )
        .await;
    assert!(ok(status));
    for (template, path) in [
        ("/api/v1/users/{id}", "/api/v1/users/u-2001"),
        (
            "/api/v1/organizations/{id}",
            "/api/v1/organizations/initech",
        ),
    ] {
        let (status, _, _) = api.call(M::DELETE, template, path, &[], None).await;
        assert!(ok(status), "{path}");
    }

    let production = "/api/v1/feature-flags/new-checkout/environments/production";
    let (status, headers, body) = api.call(M::GET, rule, production, &[], None).await;
    assert_eq!((status, body["mode"].as_str()), (200, Some("none")));
    let etag = headers["etag"].to_str().unwrap().to_string();
    let (status, _, body) = api
        .call(
            M::PUT,
            rule,
            production,
            &[("if-match", &etag)],
            Some(json!({"mode": "some", "targets": [{"type": "organization", "id": "acme"}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["targets"][0]["type"], "organization");
    let (status, _, _) = api
        .call(
            M::PUT,
            rule,
            production,
            &[("if-match", &etag)],
            Some(json!({"mode": "all"})),
        )
        .await;
    assert_eq!(status, 412);
    let (status, _, body) = api
        .call(
            M::POST,
            &format!("{rule}/enable"),
            &format!("{production}/enable"),
            &[],
            None,
        )
        .await;
    assert_eq!((status, body["enabled"].as_bool()), (200, Some(true)));
    let (status, _, body) = api
        .call(
            M::POST,
            &format!("{rule}/targets"),
            &format!("{production}/targets"),
            &[],
            Some(json!({"type": "user", "id": "u-1042"})),
        )
        .await;
    assert_eq!(
        (status, body["targets"].as_array().unwrap().len()),
        (200, 2)
    );
    let (status, _, body) = api
        .call(
            M::DELETE,
            &format!("{rule}/targets/{{id}}"),
            &format!("{production}/targets/u-1042"),
            &[],
            None,
        )
        .await;
    assert_eq!(
        (status, body["targets"].as_array().unwrap().len()),
        (200, 1)
    );
    let (status, _, _) = api
        .call(
            M::POST,
            &format!("{rule}/disable"),
            "/api/v1/feature-flags/new-checkout/environments/staging/disable",
            &[],
            None,
        )
        .await;
    assert_eq!(status, 403, "a production key does not change staging");

    let (status, _, body) = api
        .call(
            M::POST,
            "/api/v1/evaluate",
            "/api/v1/evaluate",
            &[],
            Some(json!({"user_id": "u-1042", "organization_id": "acme"})),
        )
        .await;
    assert_eq!(
        (status, body["feature_flags"].clone()),
        (200, json!(["new-checkout"]))
    );
    let (status, _, body) = api
        .call(
            M::GET,
            "/api/v1/users/{id}/feature-flags",
            "/api/v1/users/u-1042/feature-flags",
            &[],
            None,
        )
        .await;
    assert_eq!(
        (status, body["organization_id"].clone()),
        (200, Value::Null)
    );

    let (status, _, refreshed) = api
        .call(
            M::POST,
            "/api/v1/sessions/refresh",
            "/api/v1/sessions/refresh",
            &[],
            Some(json!({"refresh_token": session["refresh_token"]})),
        )
        .await;
    assert_eq!(
        (status, refreshed["feature_flags"].clone()),
        (200, json!(["new-checkout"]))
    );
    let (status, _, _) = api
        .call(
            M::POST,
            "/api/v1/sessions/revoke",
            "/api/v1/sessions/revoke",
            &[],
            Some(json!({"session_id": session["session_id"]})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _, body) = api
        .call(
            M::POST,
            "/api/v1/sessions/refresh",
            "/api/v1/sessions/refresh",
            &[],
            Some(json!({"refresh_token": refreshed["refresh_token"]})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("session_revoked"))
    );

    let (status, _, body) = api
        .call(
            M::GET,
            "/.well-known/jwks.json",
            "/.well-known/jwks.json",
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(!body["keys"].as_array().unwrap().is_empty());
    let (status, _, _) = api
        .call(
            M::GET,
            "/.well-known/openid-configuration",
            "/.well-known/openid-configuration",
            &[],
            None,
        )
        .await;
    assert_eq!(status, 200);

    let context = json!({"context": {"targetingKey": "u-1042", "organizationId": "acme"}});
    let (status, _, body) = api
        .call(
            M::POST,
            "/ofrep/v1/evaluate/flags/{key}",
            "/ofrep/v1/evaluate/flags/new-checkout",
            &[],
            Some(context.clone()),
        )
        .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (200, Some("TARGETING_MATCH"))
    );
    let (status, _, body) = api
        .call(
            M::POST,
            "/ofrep/v1/evaluate/flags/{key}",
            "/ofrep/v1/evaluate/flags/nope",
            &[],
            Some(context.clone()),
        )
        .await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (404, Some("FLAG_NOT_FOUND"))
    );
    let bulk = "/ofrep/v1/evaluate/flags";
    let (status, headers, body) = api
        .call(M::POST, bulk, bulk, &[], Some(context.clone()))
        .await;
    assert_eq!((status, body["flags"].as_array().unwrap().len()), (200, 2));
    let etag = headers["etag"].to_str().unwrap().to_string();
    let (status, _, _) = api
        .call(
            M::POST,
            bulk,
            bulk,
            &[("if-none-match", &etag)],
            Some(context),
        )
        .await;
    assert_eq!(status, 304);
    let (status, _, body) = api
        .call(M::POST, bulk, bulk, &[], Some(json!({"context": {}})))
        .await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (400, Some("TARGETING_KEY_MISSING"))
    );
}

/// The JSON errors every body-taking route shares: malformed JSON, a body
/// that is not JSON, and a body of the wrong shape.
async fn body_errors_are_documented(app: TestApp) {
    let doc = fetch_document(&app).await;
    let key = key(&app, "production");
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/feature-flags", app.base);
    for (content_type, body, status) in [
        ("application/json", "{\"name\": ", 400),
        ("text/plain", "name=x", 415),
        ("application/json", "{\"tags\": \"growth\"}", 422),
    ] {
        let resp = http
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let answer = Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.unwrap(),
        };
        assert_eq!(answer.status, status, "{}", answer.text);
        doc.check(&Method::POST, "/api/v1/feature-flags", &answer)
            .unwrap();
    }
}

/// Every `/api/v1` request body is closed: the document says
/// `additionalProperties: false` for each, as the server refuses unknown
/// fields. (OFREP's body is the OpenFeature providers' to extend.)
async fn request_bodies_are_closed(app: TestApp) {
    let doc = fetch_document(&app).await;
    let mut bodies = 0;
    for (template, item) in doc.0["paths"].as_object().unwrap() {
        if !template.starts_with("/api/v1/") {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            let Some(schema) = operation.pointer("/requestBody/content/application~1json/schema")
            else {
                continue;
            };
            bodies += 1;
            let schema = doc.resolve(schema);
            assert_eq!(
                schema.get("additionalProperties"),
                Some(&Value::Bool(false)),
                "{method} {template}: {schema}"
            );
        }
    }
    assert!(bodies >= 10, "{bodies} request bodies");
}

on_both_backends!(
    request_bodies_are_closed,
    the_document_is_valid_openapi,
    documented_and_mounted_routes_are_the_same,
    every_documented_operation_answers_as_documented,
    real_answers_match_their_schemas,
    body_errors_are_documented,
);

#[test]
fn the_schema_check_catches_mismatches() {
    let doc = Doc(json!({"components": {"schemas": {
        "Thing": {"type": "object", "required": ["id", "note"], "properties": {
            "id": {"type": "string"},
            "note": {"type": ["string", "null"]},
            "kind": {"type": "string", "enum": ["thing"]},
            "items": {"type": "array", "items": {"type": "integer"}},
        }},
    }}}));
    let schema = json!({"$ref": "#/components/schemas/Thing"});
    let errors = |value: Value| {
        let mut errors = Vec::new();
        doc.validate(&schema, &value, "body", &mut errors);
        errors
    };
    assert!(errors(json!({"id": "a", "note": null, "kind": "thing", "items": [1]})).is_empty());
    for wrong in [
        json!({"id": "a"}),
        json!({"id": "a", "note": null, "extra": 1}),
        json!({"id": 1, "note": null}),
        json!({"id": "a", "note": null, "kind": "other"}),
        json!({"id": "a", "note": null, "items": ["x"]}),
        json!([]),
    ] {
        assert_eq!(errors(wrong.clone()).len(), 1, "{wrong}");
    }
}
