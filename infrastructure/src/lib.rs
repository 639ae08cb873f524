//! Herald's infrastructure: event stores, the outbox and event log, the token vault, OAuth,
//! platform adapters, rate limits, the scheduler and the process-manager runners.
#![forbid(unsafe_code)]

pub mod db;
pub mod log;
pub mod media_source;
pub mod oauth;
pub mod platforms;
pub mod process;
pub mod rate_limit;
pub mod scheduler;
pub mod secret;
pub mod store;
pub mod text;
pub mod tokens;
pub mod vault;
pub mod webhooks;
