use chrono::{DateTime, Utc};

use crate::ConnectionId;

/// Why a connection command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("the connection does not exist")]
    NotFound,
    #[error("connection {0} belongs to another user or account")]
    AccountMismatch(ConnectionId),
    #[error("the connection is disconnected; connect the account again")]
    Disconnected,
    #[error("the connection needs to be authorized again; connect the account again")]
    ReauthorizationRequired,
    #[error("the connection has no refresh token; connect the account again when it expires")]
    NotRefreshable,
    /// `None`: the platform never said when the login ends.
    #[error("the connection's login has not ended (it ends at {0:?})")]
    LoginNotEnded(Option<DateTime<Utc>>),
}
