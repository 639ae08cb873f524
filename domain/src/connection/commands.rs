use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ConnectionId, Platform, PlatformFailure, UserId};

/// The platform account behind a connection, as the platform reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountProfile {
    pub account_id: String,
    pub username: String,
    pub display_name: String,
}

/// Everything that can be asked of a connection. The vault is written before `Connect` and
/// `RecordTokenRefreshed` are sent, so these only record what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConnectionCommand {
    Connect {
        connection_id: ConnectionId,
        user_id: UserId,
        platform: Platform,
        account: AccountProfile,
        scopes: Vec<String>,
        token_expires_at: Option<DateTime<Utc>>,
        can_refresh: bool,
        at: DateTime<Utc>,
    },
    RecordTokenRefreshed {
        token_expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    RecordTokenRefreshFailure {
        failure: PlatformFailure,
        at: DateTime<Utc>,
    },
    Disconnect {
        at: DateTime<Utc>,
    },
}
