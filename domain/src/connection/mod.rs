//! The `Connection` aggregate: one platform account a user has connected. Tokens never enter
//! it; they live in the vault, keyed by the connection id.
mod aggregate;
mod commands;
mod error;
mod events;

pub use aggregate::{Connection, ConnectionStatus, REFRESH_FAILURES_BEFORE_ERROR};
pub use commands::{AccountProfile, ConnectionCommand};
pub use error::ConnectionError;
pub use events::{ConnectionEvent, ReauthorizationCause};
