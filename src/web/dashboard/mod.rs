//! The dashboard: server-rendered pages for admins, which work without
//! JavaScript. Every change goes through a CSRF-checked [`context::Form`].

pub mod admins;
pub mod audit;
pub mod auth;
pub mod context;
pub mod directory;
pub mod environments;
pub mod flags;
pub mod paging;
pub mod webhooks;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    auth::routes(cfg);
    flags::routes(cfg);
    directory::routes(cfg);
    environments::routes(cfg);
    webhooks::routes(cfg);
    audit::routes(cfg);
    admins::routes(cfg);
}
