use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ConnectionId, Platform, PlatformFailure, UserId};

/// The platform account behind a connection, as the platform reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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
        /// When the login itself ends (the refresh token's own expiry, e.g. LinkedIn's 365
        /// days): the user must connect again by then.
        login_expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    RecordTokenRefreshed {
        token_expires_at: Option<DateTime<Utc>>,
        /// What the platform said about the login's end with the new tokens, if anything.
        login_expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// The login's end has passed: the connection needs the user (sent by the refresher).
    ExpireLogin {
        at: DateTime<Utc>,
    },
    RecordTokenRefreshFailure {
        failure: PlatformFailure,
        at: DateTime<Utc>,
    },
    /// The platform says the account removed Herald's access (a signed webhook); `why` is its
    /// reason in words, `at` when the platform says it happened.
    RecordAccessRemoved {
        why: String,
        at: DateTime<Utc>,
    },
    Disconnect {
        at: DateTime<Utc>,
    },
}
