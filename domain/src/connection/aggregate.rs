use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{AccountProfile, ConnectionCommand};
use super::error::ConnectionError;
use super::events::{ConnectionEvent, ReauthorizationCause};
use crate::{ConnectionId, ErrorClass, Platform, UserId};

/// Consecutive transient refresh failures after which the connection shows `error`.
pub const REFRESH_FAILURES_BEFORE_ERROR: u32 = 3;

/// A connection's status, as the user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    #[default]
    New,
    Active,
    /// The access token expired and cannot be refreshed: reconnect.
    Expired,
    /// Refreshing keeps failing for a transient reason.
    Error,
    Disconnected,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::New => "new",
            ConnectionStatus::Active => "active",
            ConnectionStatus::Expired => "expired",
            ConnectionStatus::Error => "error",
            ConnectionStatus::Disconnected => "disconnected",
        }
    }
}

/// A connection's state, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub connection_id: Option<ConnectionId>,
    pub user_id: Option<UserId>,
    pub platform: Option<Platform>,
    pub account: Option<AccountProfile>,
    pub status: ConnectionStatus,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub can_refresh: bool,
    pub refresh_failures: u32,
    /// When the login ends (the refresh token's own expiry); the user must connect again by then.
    #[serde(default)]
    pub login_expires_at: Option<DateTime<Utc>>,
    /// When the account was last connected (a later grant replaces an earlier one).
    #[serde(default)]
    pub connected_at: Option<DateTime<Utc>>,
}

impl Connection {
    /// Whether the vault's token may be used to publish.
    pub fn is_usable(&self) -> bool {
        matches!(
            self.status,
            ConnectionStatus::Active | ConnectionStatus::Error
        )
    }

    fn decide(&self, command: ConnectionCommand) -> Result<Vec<ConnectionEvent>, ConnectionError> {
        use ConnectionCommand as C;
        match command {
            C::Connect {
                connection_id,
                user_id,
                platform,
                account,
                scopes,
                token_expires_at,
                can_refresh,
                login_expires_at,
                at,
            } => {
                if self.status != ConnectionStatus::New {
                    let same_owner = self.user_id.as_ref() == Some(&user_id)
                        && self.platform == Some(platform)
                        && self.account.as_ref().map(|a| &a.account_id)
                            == Some(&account.account_id);
                    if !same_owner {
                        return Err(ConnectionError::AccountMismatch(connection_id));
                    }
                }
                Ok(vec![ConnectionEvent::Connected {
                    connection_id,
                    user_id,
                    platform,
                    account,
                    scopes,
                    token_expires_at,
                    can_refresh,
                    login_expires_at,
                    at,
                }])
            }
            C::RecordTokenRefreshed {
                token_expires_at,
                login_expires_at,
                at,
            } => {
                self.require_connected()?;
                if !self.can_refresh {
                    return Err(ConnectionError::NotRefreshable);
                }
                Ok(vec![ConnectionEvent::TokenRefreshed {
                    token_expires_at,
                    login_expires_at,
                    at,
                }])
            }
            C::ExpireLogin { at } => {
                self.require_connected()?;
                match self.login_expires_at {
                    Some(ended) if ended <= at => {
                        let platform = self.platform.map_or("the platform", Platform::display_name);
                        Ok(vec![ConnectionEvent::ReauthorizationRequired {
                            reason: format!(
                                "the {platform} login ended on {} ({platform} ends a login a fixed time after it was first authorized, however often its token is refreshed): connect the account again to keep publishing",
                                ended.format("%Y-%m-%d %H:%M UTC")
                            ),
                            cause: Some(ReauthorizationCause::LoginEnded),
                            at,
                        }])
                    }
                    ends => Err(ConnectionError::LoginNotEnded(ends)),
                }
            }
            C::RecordAccessRemoved { why, at } => {
                match self.status {
                    // Webhooks arrive at least once: a repeat changes nothing.
                    ConnectionStatus::Expired => return Ok(vec![]),
                    _ => self.require_connected()?,
                }
                // A removal older than the latest connection ended a grant since replaced.
                // Platforms give whole seconds: the same second counts as not older.
                if self
                    .connected_at
                    .is_some_and(|connected| at.timestamp() < connected.timestamp())
                {
                    return Ok(vec![]);
                }
                let platform = self.platform.map_or("the platform", Platform::display_name);
                Ok(vec![ConnectionEvent::ReauthorizationRequired {
                    reason: format!(
                        "{platform} says Herald's access was removed ({why}): connect the account again to keep publishing"
                    ),
                    cause: Some(ReauthorizationCause::AccessRemoved),
                    at,
                }])
            }
            C::RecordTokenRefreshFailure { failure, at } => {
                self.require_connected()?;
                let consecutive_failures = self.refresh_failures + 1;
                let mut events = vec![ConnectionEvent::TokenRefreshFailed {
                    class: failure.class,
                    code: failure.code.clone(),
                    message: failure.message.clone(),
                    consecutive_failures,
                    at,
                }];
                // A refused grant never heals by retrying: stop and ask the user.
                if matches!(
                    failure.class,
                    ErrorClass::Auth | ErrorClass::ReauthorizationRequired | ErrorClass::Permanent
                ) {
                    events.push(ConnectionEvent::ReauthorizationRequired {
                        reason: format!(
                            "the platform refused to refresh the token ({}): {}. Connect the account again",
                            failure.code, failure.message
                        ),
                        cause: Some(ReauthorizationCause::RefreshRefused),
                        at,
                    });
                }
                Ok(events)
            }
            C::Disconnect { at } => match self.status {
                ConnectionStatus::New => Err(ConnectionError::NotFound),
                ConnectionStatus::Disconnected => Ok(vec![]),
                _ => Ok(vec![ConnectionEvent::Disconnected { at }]),
            },
        }
    }

    fn require_connected(&self) -> Result<(), ConnectionError> {
        match self.status {
            ConnectionStatus::New => Err(ConnectionError::NotFound),
            ConnectionStatus::Disconnected => Err(ConnectionError::Disconnected),
            ConnectionStatus::Expired => Err(ConnectionError::ReauthorizationRequired),
            ConnectionStatus::Active | ConnectionStatus::Error => Ok(()),
        }
    }
}

impl Aggregate for Connection {
    const TYPE: &'static str = "Connection";
    type Command = ConnectionCommand;
    type Event = ConnectionEvent;
    type Error = ConnectionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ConnectionEvent::Connected {
                connection_id,
                user_id,
                platform,
                account,
                token_expires_at,
                can_refresh,
                login_expires_at,
                at,
                ..
            } => {
                self.connected_at = Some(at);
                self.login_expires_at = login_expires_at;
                self.connection_id = Some(connection_id);
                self.user_id = Some(user_id);
                self.platform = Some(platform);
                self.account = Some(account);
                self.token_expires_at = token_expires_at;
                self.can_refresh = can_refresh;
                self.status = ConnectionStatus::Active;
                self.refresh_failures = 0;
            }
            ConnectionEvent::TokenRefreshed {
                token_expires_at,
                login_expires_at,
                ..
            } => {
                if login_expires_at.is_some() {
                    self.login_expires_at = login_expires_at;
                }
                self.token_expires_at = token_expires_at;
                self.refresh_failures = 0;
                self.status = ConnectionStatus::Active;
            }
            ConnectionEvent::TokenRefreshFailed {
                consecutive_failures,
                ..
            } => {
                self.refresh_failures = consecutive_failures;
                if consecutive_failures >= REFRESH_FAILURES_BEFORE_ERROR {
                    self.status = ConnectionStatus::Error;
                }
            }
            ConnectionEvent::ReauthorizationRequired { .. } => {
                self.status = ConnectionStatus::Expired;
            }
            ConnectionEvent::Disconnected { .. } => {
                self.status = ConnectionStatus::Disconnected;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::PlatformFailure;

    type ConnectionTest = TestFramework<Connection>;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn alice() -> UserId {
        UserId::parse("alice").unwrap()
    }

    fn account(id: &str) -> AccountProfile {
        AccountProfile {
            account_id: id.into(),
            username: "alice_x".into(),
            display_name: "Alice".into(),
        }
    }

    fn connect(user: UserId, account_id: &str) -> ConnectionCommand {
        ConnectionCommand::Connect {
            connection_id: ConnectionId::for_account(&alice(), Platform::X, "1"),
            user_id: user,
            platform: Platform::X,
            account: account(account_id),
            scopes: vec!["tweet.write".into()],
            token_expires_at: Some(t0()),
            can_refresh: true,
            login_expires_at: None,
            at: t0(),
        }
    }

    fn connected() -> ConnectionEvent {
        ConnectionEvent::Connected {
            connection_id: ConnectionId::for_account(&alice(), Platform::X, "1"),
            user_id: alice(),
            platform: Platform::X,
            account: account("1"),
            scopes: vec!["tweet.write".into()],
            token_expires_at: Some(t0()),
            can_refresh: true,
            login_expires_at: None,
            at: t0(),
        }
    }

    /// A LinkedIn connection whose login ends a year after `t0`.
    fn linkedin_connected() -> ConnectionEvent {
        ConnectionEvent::Connected {
            connection_id: ConnectionId::for_account(
                &alice(),
                Platform::Linkedin,
                "urn:li:person:a",
            ),
            user_id: alice(),
            platform: Platform::Linkedin,
            account: account("urn:li:person:a"),
            scopes: vec!["w_member_social".into()],
            token_expires_at: Some(t0() + chrono::Duration::days(60)),
            can_refresh: true,
            login_expires_at: Some(t0() + chrono::Duration::days(365)),
            at: t0(),
        }
    }

    #[test]
    fn a_login_that_has_ended_expires_the_connection_with_what_to_do() {
        let events = ConnectionTest::with(())
            .given(vec![linkedin_connected()])
            .when(ConnectionCommand::ExpireLogin {
                at: t0() + chrono::Duration::days(366),
            })
            .inspect_result()
            .unwrap();
        let [ConnectionEvent::ReauthorizationRequired { reason, cause, .. }] = events.as_slice()
        else {
            panic!("expected ReauthorizationRequired, got {events:?}");
        };
        assert_eq!(*cause, Some(ReauthorizationCause::LoginEnded));
        assert!(
            reason.contains("LinkedIn login ended on 2027-11-22"),
            "{reason}"
        );
        assert!(reason.contains("connect the account again"), "{reason}");
        let mut connection = Connection::default();
        connection.apply(linkedin_connected());
        connection.apply(events[0].clone());
        assert_eq!(connection.status, ConnectionStatus::Expired);
    }

    fn access_removed(at: DateTime<Utc>) -> ConnectionCommand {
        ConnectionCommand::RecordAccessRemoved {
            why: "the user disconnected Herald in the app".into(),
            at,
        }
    }

    #[test]
    fn given_a_connection_when_the_platform_says_access_was_removed_then_it_needs_the_user() {
        let events = ConnectionTest::with(())
            .given(vec![connected()])
            .when(access_removed(t0() + chrono::Duration::hours(1)))
            .inspect_result()
            .unwrap();
        let [ConnectionEvent::ReauthorizationRequired { reason, cause, at }] = events.as_slice()
        else {
            panic!("expected ReauthorizationRequired, got {events:?}");
        };
        assert_eq!(*at, t0() + chrono::Duration::hours(1));
        assert_eq!(*cause, Some(ReauthorizationCause::AccessRemoved));
        assert!(
            reason.contains(
                "X says Herald's access was removed (the user disconnected Herald in the app)"
            ),
            "{reason}"
        );
        assert!(reason.contains("connect the account again"), "{reason}");
    }

    #[test]
    fn given_a_removal_in_the_second_of_connecting_when_recorded_then_it_counts() {
        // The platform's time has whole seconds; the connection was made 400 ms into one.
        let mut connected_later = connected();
        if let ConnectionEvent::Connected { at, .. } = &mut connected_later {
            *at = t0() + chrono::Duration::milliseconds(400);
        }
        let events = ConnectionTest::with(())
            .given(vec![connected_later])
            .when(access_removed(t0()))
            .inspect_result()
            .unwrap();
        assert!(matches!(
            events.as_slice(),
            [ConnectionEvent::ReauthorizationRequired { .. }]
        ));
    }

    #[test]
    fn given_a_repeated_or_outdated_removal_when_recorded_then_nothing_changes() {
        // Delivered again after the connection already needs the user.
        let expired = ConnectionEvent::ReauthorizationRequired {
            reason: "removed".into(),
            cause: Some(ReauthorizationCause::AccessRemoved),
            at: t0(),
        };
        ConnectionTest::with(())
            .given(vec![connected(), expired])
            .when(access_removed(t0()))
            .then_expect_events(vec![]);
        // About a grant the user has since replaced by connecting again.
        ConnectionTest::with(())
            .given(vec![connected()])
            .when(access_removed(t0() - chrono::Duration::seconds(1)))
            .then_expect_events(vec![]);
        ConnectionTest::with(())
            .given(vec![
                connected(),
                ConnectionEvent::Disconnected { at: t0() },
            ])
            .when(access_removed(t0()))
            .then_expect_error(ConnectionError::Disconnected);
    }

    #[test]
    fn a_login_that_has_not_ended_or_never_ends_is_not_expired() {
        ConnectionTest::with(())
            .given(vec![linkedin_connected()])
            .when(ConnectionCommand::ExpireLogin {
                at: t0() + chrono::Duration::days(364),
            })
            .then_expect_error(ConnectionError::LoginNotEnded(Some(
                t0() + chrono::Duration::days(365),
            )));
        ConnectionTest::with(())
            .given(vec![connected()])
            .when(ConnectionCommand::ExpireLogin { at: t0() })
            .then_expect_error(ConnectionError::LoginNotEnded(None));
    }

    #[test]
    fn a_refresh_restating_the_login_end_keeps_it_and_one_without_keeps_the_old() {
        let restated = t0() + chrono::Duration::days(300);
        let mut connection = Connection::default();
        connection.apply(linkedin_connected());
        connection.apply(ConnectionEvent::TokenRefreshed {
            token_expires_at: None,
            login_expires_at: None,
            at: t0(),
        });
        assert_eq!(
            connection.login_expires_at,
            Some(t0() + chrono::Duration::days(365))
        );
        connection.apply(ConnectionEvent::TokenRefreshed {
            token_expires_at: None,
            login_expires_at: Some(restated),
            at: t0(),
        });
        assert_eq!(connection.login_expires_at, Some(restated));
    }

    #[test]
    fn events_written_before_the_login_end_was_recorded_still_read() {
        let old = serde_json::json!({"Connected": {
            "connection_id": ConnectionId::for_account(&alice(), Platform::X, "1"),
            "user_id": "alice", "platform": "x",
            "account": {"account_id": "1", "username": "alice_x", "display_name": "Alice"},
            "scopes": ["tweet.write"], "token_expires_at": t0(), "can_refresh": true, "at": t0()
        }});
        let event: ConnectionEvent = serde_json::from_value(old).unwrap();
        assert_eq!(event, connected());
        let refreshed: ConnectionEvent = serde_json::from_value(
            serde_json::json!({"TokenRefreshed": {"token_expires_at": null, "at": t0()}}),
        )
        .unwrap();
        assert!(matches!(
            refreshed,
            ConnectionEvent::TokenRefreshed {
                login_expires_at: None,
                ..
            }
        ));
    }

    #[test]
    fn connecting_records_the_account_without_tokens() {
        ConnectionTest::with(())
            .given_no_previous_events()
            .when(connect(alice(), "1"))
            .then_expect_events(vec![connected()]);
    }

    #[test]
    fn another_user_cannot_take_over_a_connection() {
        ConnectionTest::with(())
            .given(vec![connected()])
            .when(connect(UserId::parse("mallory").unwrap(), "1"))
            .then_expect_error(ConnectionError::AccountMismatch(ConnectionId::for_account(
                &alice(),
                Platform::X,
                "1",
            )));
    }

    #[test]
    fn reconnecting_after_disconnect_reactivates() {
        ConnectionTest::with(())
            .given(vec![
                connected(),
                ConnectionEvent::Disconnected { at: t0() },
            ])
            .when(connect(alice(), "1"))
            .then_expect_events(vec![connected()]);
    }

    #[test]
    fn a_revoked_grant_requires_reauthorization() {
        let failure = PlatformFailure::new(
            ErrorClass::ReauthorizationRequired,
            "invalid_request",
            "Value passed for the token was invalid.",
        );
        let events = ConnectionTest::with(())
            .given(vec![connected()])
            .when(ConnectionCommand::RecordTokenRefreshFailure { failure, at: t0() })
            .inspect_result()
            .unwrap();
        assert_eq!(events.len(), 2);
        assert!(matches!(
            events[1],
            ConnectionEvent::ReauthorizationRequired {
                cause: Some(ReauthorizationCause::RefreshRefused),
                ..
            }
        ));
    }

    #[test]
    fn transient_refresh_failures_are_counted_and_mark_error_after_three() {
        let failure = PlatformFailure::new(ErrorClass::Retryable, "503", "down");
        let failed = |n| ConnectionEvent::TokenRefreshFailed {
            class: ErrorClass::Retryable,
            code: "503".into(),
            message: "down".into(),
            consecutive_failures: n,
            at: t0(),
        };
        ConnectionTest::with(())
            .given(vec![connected(), failed(1)])
            .when(ConnectionCommand::RecordTokenRefreshFailure { failure, at: t0() })
            .then_expect_events(vec![failed(2)]);
        let mut connection = Connection::default();
        for e in [connected(), failed(1), failed(2), failed(3)] {
            connection.apply(e);
        }
        assert_eq!(connection.status, ConnectionStatus::Error);
        assert!(connection.is_usable());
    }

    #[test]
    fn a_disconnected_connection_cannot_record_refreshes() {
        ConnectionTest::with(())
            .given(vec![
                connected(),
                ConnectionEvent::Disconnected { at: t0() },
            ])
            .when(ConnectionCommand::RecordTokenRefreshed {
                token_expires_at: None,
                login_expires_at: None,
                at: t0(),
            })
            .then_expect_error(ConnectionError::Disconnected);
    }

    #[test]
    fn disconnecting_twice_is_a_no_op_and_unknown_connections_are_not_found() {
        ConnectionTest::with(())
            .given(vec![
                connected(),
                ConnectionEvent::Disconnected { at: t0() },
            ])
            .when(ConnectionCommand::Disconnect { at: t0() })
            .then_expect_events(vec![]);
        ConnectionTest::with(())
            .given_no_previous_events()
            .when(ConnectionCommand::Disconnect { at: t0() })
            .then_expect_error(ConnectionError::NotFound);
    }
}
