//! Outbound webhooks: which domain events a user's own systems are told about, what each
//! notification says, and when a failed delivery is tried again. Pure: the log consumer that
//! records deliveries and the worker that sends them live in `herald_infrastructure::webhooks`.
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::connection::{ConnectionEvent, ReauthorizationCause};
use crate::publishing_job::PublishingJobEvent;
use crate::retry::RetryPolicy;
use crate::{ConnectionId, JobId, Platform};

/// What a subscriber can ask to be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WebhookEventType {
    JobPublished,
    JobFailed,
    JobOutcomeUnknown,
    JobRetryScheduled,
    JobCancelled,
    /// The login reached the end the platform gives every login.
    ConnectionExpired,
    /// The platform refused the grant or says access was removed.
    ConnectionReauthorizationRequired,
    ConnectionDisconnected,
}

impl WebhookEventType {
    pub const ALL: [WebhookEventType; 8] = [
        Self::JobPublished,
        Self::JobFailed,
        Self::JobOutcomeUnknown,
        Self::JobRetryScheduled,
        Self::JobCancelled,
        Self::ConnectionExpired,
        Self::ConnectionReauthorizationRequired,
        Self::ConnectionDisconnected,
    ];

    /// The name subscribers use and payloads carry (`job.published`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JobPublished => "job.published",
            Self::JobFailed => "job.failed",
            Self::JobOutcomeUnknown => "job.outcome_unknown",
            Self::JobRetryScheduled => "job.retry_scheduled",
            Self::JobCancelled => "job.cancelled",
            Self::ConnectionExpired => "connection.expired",
            Self::ConnectionReauthorizationRequired => "connection.reauthorization_required",
            Self::ConnectionDisconnected => "connection.disconnected",
        }
    }
}

impl fmt::Display for WebhookEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a webhook event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown webhook event type {0:?}; known: {known}", known = known_names())]
pub struct UnknownWebhookEventType(pub String);

fn known_names() -> String {
    WebhookEventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for WebhookEventType {
    type Err = UnknownWebhookEventType;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| UnknownWebhookEventType(name.to_string()))
    }
}

/// One notification: its type, when it happened, and what it says. Never a token or secret:
/// it is built only from events, which carry none.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    pub event_type: WebhookEventType,
    pub occurred_at: DateTime<Utc>,
    pub data: Value,
}

impl WebhookEvent {
    /// The request body, in the Standard Webhooks shape: `type`, `timestamp`, `data`.
    pub fn body(&self) -> Value {
        json!({
            "type": self.event_type.as_str(),
            "timestamp": self.occurred_at,
            "data": self.data,
        })
    }
}

impl WebhookEvent {
    /// The notification with what it is about: the job's ids and platform.
    pub fn about_job(mut self, job: &JobFacts) -> Self {
        merge(
            &mut self.data,
            json!({
                "job_id": job.job_id,
                "connection_id": job.connection_id,
                "platform": job.platform.as_str(),
            }),
        );
        self
    }

    /// The notification with what it is about: the connection and its account.
    pub fn about_connection(mut self, connection: &ConnectionFacts) -> Self {
        merge(
            &mut self.data,
            json!({
                "connection_id": connection.connection_id,
                "platform": connection.platform.as_str(),
                "account_username": connection.account_username,
            }),
        );
        self
    }
}

/// What a job's notifications say about the job besides the event: fixed when it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    pub job_id: JobId,
    pub connection_id: ConnectionId,
    pub platform: Platform,
}

/// The notification a job event gives, if any (most events are steps nobody is told about),
/// before [`WebhookEvent::about_job`] says which job: the caller looks the job up only for
/// events that notify.
pub fn job_webhook(event: &PublishingJobEvent) -> Option<WebhookEvent> {
    use PublishingJobEvent as E;
    use WebhookEventType as T;
    let (event_type, at, status, mut data) = match event {
        E::Published {
            post_ids,
            first_post_url,
            at,
            ..
        } => (
            T::JobPublished,
            at,
            "published",
            json!({
                "post_id": post_ids.first(),
                "post_ids": post_ids,
                "post_url": first_post_url,
            }),
        ),
        E::Failed {
            class,
            code,
            message,
            at,
        } => (
            T::JobFailed,
            at,
            "failed",
            json!({ "error": { "class": class, "code": code, "message": message } }),
        ),
        E::OutcomeUnknown { reason, at, .. } => (
            T::JobOutcomeUnknown,
            at,
            "outcome_unknown",
            json!({ "reason": reason }),
        ),
        E::RetryScheduled { retry_at, at } => (
            T::JobRetryScheduled,
            at,
            "retry_scheduled",
            json!({ "retry_at": retry_at }),
        ),
        E::Cancelled { at } => (T::JobCancelled, at, "cancelled", json!({})),
        _ => return None,
    };
    merge(&mut data, json!({ "status": status }));
    Some(WebhookEvent {
        event_type,
        occurred_at: *at,
        data,
    })
}

/// What a connection's notifications say about it besides the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFacts {
    pub connection_id: ConnectionId,
    pub platform: Platform,
    /// The account's name on the platform (`@handle`, Page name), so a person reading the
    /// notification knows which account to reconnect.
    pub account_username: String,
}

/// The notification a connection event gives, if any, before
/// [`WebhookEvent::about_connection`] says which connection.
pub fn connection_webhook(event: &ConnectionEvent) -> Option<WebhookEvent> {
    use WebhookEventType as T;
    let (event_type, at, status, mut data) = match event {
        ConnectionEvent::ReauthorizationRequired { reason, cause, at } => {
            let event_type = match cause {
                Some(ReauthorizationCause::LoginEnded) => T::ConnectionExpired,
                // Events from before the cause was recorded say only that the user is needed.
                Some(ReauthorizationCause::AccessRemoved)
                | Some(ReauthorizationCause::RefreshRefused)
                | None => T::ConnectionReauthorizationRequired,
            };
            (event_type, at, "expired", json!({ "reason": reason }))
        }
        ConnectionEvent::Disconnected { at } => {
            (T::ConnectionDisconnected, at, "disconnected", json!({}))
        }
        _ => return None,
    };
    merge(&mut data, json!({ "status": status }));
    Some(WebhookEvent {
        event_type,
        occurred_at: *at,
        data,
    })
}

fn merge(into: &mut Value, more: Value) {
    if let (Value::Object(into), Value::Object(more)) = (into, more) {
        into.extend(more);
    }
}

/// When a delivery that failed is tried again: exponential backoff with jitter (the domain's
/// [`RetryPolicy`]), never before the receiver's `Retry-After`, for at most `give_up_after`
/// from the delivery's first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySchedule {
    pub backoff: RetryPolicy,
    pub give_up_after: Duration,
}

impl Default for DeliverySchedule {
    /// About twenty tries over a day: 10 s, 20 s, 40 s, ... then every two hours.
    fn default() -> Self {
        Self {
            backoff: RetryPolicy {
                base: Duration::seconds(10),
                max: Duration::hours(2),
            },
            give_up_after: Duration::hours(24),
        }
    }
}

impl DeliverySchedule {
    /// After the `failed_attempts`-th failed attempt (1-based) of a delivery first tried at
    /// `first_attempt_at`: when to try next, or `None` to give up. The last try is made at the
    /// end of the window rather than skipped; a `Retry-After` past the window gives up, since
    /// the receiver asked not to be called before then.
    pub fn next_attempt(
        &self,
        failed_attempts: u32,
        first_attempt_at: DateTime<Utc>,
        now: DateTime<Utc>,
        retry_after: Option<DateTime<Utc>>,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        let deadline = first_attempt_at + self.give_up_after;
        if now >= deadline {
            return None;
        }
        let backed_off = now + self.backoff.backoff(failed_attempts, jitter);
        match retry_after {
            Some(asked) if asked > deadline => None,
            Some(asked) if asked > backed_off => Some(asked),
            _ => Some(backed_off.min(deadline)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttemptId, ErrorClass};

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn job() -> JobFacts {
        JobFacts {
            job_id: JobId::new(),
            connection_id: ConnectionId::new(),
            platform: Platform::X,
        }
    }

    #[test]
    fn event_type_names_round_trip_and_unknown_names_are_refused() {
        for event_type in WebhookEventType::ALL {
            assert_eq!(event_type.as_str().parse(), Ok(event_type));
        }
        let refused = "job.exploded".parse::<WebhookEventType>().unwrap_err();
        assert!(refused.to_string().contains("job.published"), "{refused}");
    }

    #[test]
    fn a_published_job_tells_its_post_and_where_it_is() {
        let job = job();
        let published = PublishingJobEvent::Published {
            attempt_id: AttemptId::new(),
            post_ids: vec!["p1".into(), "p2".into()],
            first_post_url: "https://x.example/p1".into(),
            at: t0(),
        };
        let webhook = job_webhook(&published).unwrap().about_job(&job);
        assert_eq!(webhook.event_type, WebhookEventType::JobPublished);
        assert_eq!(webhook.occurred_at, t0());
        let body = webhook.body();
        assert_eq!(body["type"], "job.published");
        assert_eq!(body["data"]["job_id"], job.job_id.to_string());
        assert_eq!(body["data"]["connection_id"], job.connection_id.to_string());
        assert_eq!(body["data"]["platform"], "x");
        assert_eq!(body["data"]["status"], "published");
        assert_eq!(body["data"]["post_id"], "p1");
        assert_eq!(body["data"]["post_url"], "https://x.example/p1");
    }

    #[test]
    fn job_outcomes_map_to_their_types_and_steps_to_nothing() {
        let job = job();
        let cases = [
            (
                PublishingJobEvent::Failed {
                    class: ErrorClass::Permanent,
                    code: "403".into(),
                    message: "duplicate".into(),
                    at: t0(),
                },
                Some(WebhookEventType::JobFailed),
            ),
            (
                PublishingJobEvent::OutcomeUnknown {
                    attempt_id: AttemptId::new(),
                    reason: "timeout".into(),
                    at: t0(),
                },
                Some(WebhookEventType::JobOutcomeUnknown),
            ),
            (
                PublishingJobEvent::RetryScheduled {
                    retry_at: t0(),
                    at: t0(),
                },
                Some(WebhookEventType::JobRetryScheduled),
            ),
            (
                PublishingJobEvent::Cancelled { at: t0() },
                Some(WebhookEventType::JobCancelled),
            ),
            (
                PublishingJobEvent::AttemptStarted {
                    attempt_id: AttemptId::new(),
                    attempt_number: 1,
                    at: t0(),
                },
                None,
            ),
        ];
        for (event, expected) in cases {
            assert_eq!(
                job_webhook(&event).map(|w| w.event_type),
                expected,
                "{event:?}"
            );
        }
        let failed = job_webhook(&PublishingJobEvent::Failed {
            class: ErrorClass::Permanent,
            code: "403".into(),
            message: "duplicate".into(),
            at: t0(),
        })
        .unwrap()
        .about_job(&job);
        assert_eq!(failed.data["job_id"], job.job_id.to_string());
        assert_eq!(failed.data["error"]["class"], "permanent");
        assert_eq!(failed.data["error"]["message"], "duplicate");
    }

    #[test]
    fn a_login_that_ended_is_expired_and_other_causes_need_reauthorization() {
        let connection = ConnectionFacts {
            connection_id: ConnectionId::new(),
            platform: Platform::Linkedin,
            account_username: "alice".into(),
        };
        let needs_user = |cause| ConnectionEvent::ReauthorizationRequired {
            reason: "connect again".into(),
            cause,
            at: t0(),
        };
        let type_of = |event: &ConnectionEvent| connection_webhook(event).map(|w| w.event_type);
        assert_eq!(
            type_of(&needs_user(Some(ReauthorizationCause::LoginEnded))),
            Some(WebhookEventType::ConnectionExpired)
        );
        for cause in [
            Some(ReauthorizationCause::AccessRemoved),
            Some(ReauthorizationCause::RefreshRefused),
            None,
        ] {
            assert_eq!(
                type_of(&needs_user(cause)),
                Some(WebhookEventType::ConnectionReauthorizationRequired)
            );
        }
        assert_eq!(
            type_of(&ConnectionEvent::Disconnected { at: t0() }),
            Some(WebhookEventType::ConnectionDisconnected)
        );
        assert_eq!(
            type_of(&ConnectionEvent::TokenRefreshed {
                token_expires_at: None,
                login_expires_at: None,
                at: t0()
            }),
            None
        );
        let expired = connection_webhook(&needs_user(Some(ReauthorizationCause::LoginEnded)))
            .unwrap()
            .about_connection(&connection);
        assert_eq!(
            expired.data["connection_id"],
            connection.connection_id.to_string()
        );
        assert_eq!(expired.data["status"], "expired");
        assert_eq!(expired.data["account_username"], "alice");
        assert_eq!(expired.data["reason"], "connect again");
    }

    fn schedule() -> DeliverySchedule {
        DeliverySchedule::default()
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter() {
        let now = t0();
        let next = |failed, jitter| schedule().next_attempt(failed, now, now, None, jitter);
        assert_eq!(next(1, 1.0), Some(now + Duration::seconds(10)));
        assert_eq!(next(2, 1.0), Some(now + Duration::seconds(20)));
        // Equal jitter: between half and all of the backoff.
        assert_eq!(next(2, 0.0), Some(now + Duration::seconds(10)));
        assert_eq!(next(30, 1.0), Some(now + Duration::hours(2)));
    }

    #[test]
    fn retries_span_the_whole_window_then_stop() {
        let first = t0();
        let schedule = schedule();
        let mut now = first;
        let mut failed = 0;
        while let Some(next) = schedule.next_attempt(failed + 1, first, now, None, 1.0) {
            assert!(next > now);
            failed += 1;
            now = next;
        }
        assert_eq!(
            now,
            first + Duration::hours(24),
            "the last try is at the window's end"
        );
        assert!((15..=30).contains(&failed), "{failed} retries");
    }

    #[test]
    fn the_receivers_retry_after_is_honoured_unless_past_the_window() {
        let now = t0();
        let later = now + Duration::minutes(30);
        assert_eq!(
            schedule().next_attempt(1, now, now, Some(later), 1.0),
            Some(later)
        );
        // Sooner than the backoff: the backoff wins.
        assert_eq!(
            schedule().next_attempt(1, now, now, Some(now + Duration::seconds(1)), 1.0),
            Some(now + Duration::seconds(10))
        );
        assert_eq!(
            schedule().next_attempt(1, now, now, Some(now + Duration::hours(25)), 1.0),
            None
        );
    }
}
