//! Herald's HTTP API, configuration, wiring and CLI.
#![forbid(unsafe_code)]

pub mod auth;
#[cfg(feature = "sandbox")]
pub mod bench;
pub mod config;
pub mod metrics;
pub mod problem;
pub mod rate_limit;
pub mod replay;
pub mod routes;
pub mod runtime;
pub mod sandbox;
pub mod server;
