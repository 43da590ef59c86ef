//! Flagpole's integration tests: one binary, one module per capability.
//! Each test drives the real app over HTTP (see `common`), on SQLite and
//! on PostgreSQL (`on_both_backends!`).

#[macro_use]
mod common;
#[macro_use]
mod support;

mod api_audit;
mod api_directory;
mod api_flags;
mod api_keys;
mod auth;
mod browser;
mod directory;
mod environments;
mod errors;
mod evaluation_property;
mod example_app;
mod flags_dashboard;
mod hardening;
mod hot_paths;
mod instances;
mod key_scopes;
mod lost_updates;
mod metrics;
mod migrations;
mod ofrep;
mod openapi;
mod rules;
mod surfaces;
mod tokens;
mod webhooks;
mod workos;
