//! The route table builder. Routes of one path become one resource, which
//! answers a method it does not have with 405 and an `Allow` header, and
//! renders every error in its surface's shape. Documented routes are
//! recorded, so a test can compare what the server mounts with what the
//! OpenAPI document says.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{guard, web, FromRequest, Handler, Resource, Responder};

use super::errors::{render_errors, Surface};
use crate::error::{Error, Refusal};

/// Every (method, path) a documented route table mounted in this process,
/// with the full prefix. Each worker configures the same routes; the set
/// keeps one.
static MOUNTED: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

/// The documented routes mounted so far, as (`GET`,
/// `/api/v1/feature-flags/{slug}`), sorted.
pub fn mounted_routes() -> Vec<(String, String)> {
    MOUNTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect()
}

type Customize = Box<dyn FnOnce(Resource) -> Resource>;

struct PathRoutes {
    path: String,
    methods: Vec<Method>,
    routes: Vec<actix_web::Route>,
    customize: Vec<Customize>,
    /// Another surface than the table's, for this path.
    surface: Option<Surface>,
    /// Whether other methods fall through to the routes after this path.
    fall_through: bool,
}

/// Routes of one surface under one prefix, mounted when dropped, in the
/// order their paths first appear (so `/users/bulk` must come before
/// `/users/{id}`).
pub struct Routes<'a> {
    cfg: &'a mut web::ServiceConfig,
    prefix: &'static str,
    surface: Surface,
    documented: bool,
    paths: Vec<PathRoutes>,
}

impl<'a> Routes<'a> {
    pub fn new(cfg: &'a mut web::ServiceConfig, prefix: &'static str, surface: Surface) -> Self {
        Routes {
            cfg,
            prefix,
            surface,
            documented: false,
            paths: Vec::new(),
        }
    }

    /// Routes that the OpenAPI document describes.
    pub fn documented(
        cfg: &'a mut web::ServiceConfig,
        prefix: &'static str,
        surface: Surface,
    ) -> Self {
        Routes {
            cfg,
            prefix,
            surface,
            documented: true,
            paths: Vec::new(),
        }
    }

    fn entry(&mut self, path: &str) -> &mut PathRoutes {
        if let Some(i) = self.paths.iter().position(|p| p.path == path) {
            return &mut self.paths[i];
        }
        self.paths.push(PathRoutes {
            path: path.to_string(),
            methods: Vec::new(),
            routes: Vec::new(),
            customize: Vec::new(),
            surface: None,
            fall_through: false,
        });
        self.paths.last_mut().expect("just pushed")
    }

    pub fn route<F, Args>(&mut self, method: Method, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        if self.documented {
            MOUNTED
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((method.to_string(), format!("{}{path}", self.prefix)));
        }
        let entry = self.entry(path);
        entry.methods.push(method.clone());
        entry.routes.push(web::method(method).to(handler));
        self
    }

    pub fn get<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::GET, path, handler)
    }

    pub fn post<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::POST, path, handler)
    }

    pub fn put<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::PUT, path, handler)
    }

    pub fn patch<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::PATCH, path, handler)
    }

    pub fn delete<F, Args>(&mut self, path: &str, handler: F) -> &mut Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route(Method::DELETE, path, handler)
    }

    /// Gives every route of `path` this `app_data` (e.g. a larger body limit).
    pub fn data<D: 'static>(&mut self, path: &str, data: D) -> &mut Self {
        self.entry(path)
            .customize
            .push(Box::new(move |resource| resource.app_data(data)));
        self
    }

    /// Lets the methods `path` does not answer fall through to the routes
    /// mounted after it, instead of a 405: `/users/bulk` answers POST, and
    /// a GET of it reads the user `bulk` at `/users/{id}`.
    pub fn fall_through(&mut self, path: &str) -> &mut Self {
        self.entry(path).fall_through = true;
        self
    }

    /// Gives every route of `path` another surface than the table's.
    pub fn surface(&mut self, path: &str, surface: Surface) -> &mut Self {
        self.entry(path).surface = Some(surface);
        self
    }
}

impl Drop for Routes<'_> {
    fn drop(&mut self) {
        for path in self.paths.drain(..) {
            let surface = path.surface.unwrap_or(self.surface);
            let mut allow: Vec<String> = path.methods.iter().map(Method::to_string).collect();
            allow.sort();
            allow.dedup();
            let mut resource = web::resource(path.path.as_str());
            if path.fall_through {
                let methods = path.methods.clone();
                resource = resource.guard(guard::fn_guard(move |ctx| {
                    methods.contains(&ctx.head().method)
                }));
            }
            for route in path.routes {
                resource = resource.route(route);
            }
            for customize in path.customize {
                resource = customize(resource);
            }
            resource = resource.default_service(web::to(move || {
                let allow = allow.clone();
                async move {
                    Err::<actix_web::HttpResponse, _>(Error::Refused(Refusal::MethodNotAllowed {
                        allow,
                    }))
                }
            }));
            let resource =
                resource.wrap(from_fn(move |req, next| render_errors(surface, req, next)));
            self.cfg.service(resource);
        }
    }
}
