//! Outbound webhooks to the users' own systems, in the Standard Webhooks format.
//!
//! Three parts, so that a slow or dead receiver delays only its own subscription:
//! - [`subscriptions`]: each user's endpoints and event types, the signing secret sealed with
//!   the vault key, and the deliveries and attempts the owner can see and re-send;
//! - [`fanout`]: a consumer of the event log (either backend) that turns each event a
//!   subscription wants into a `webhook_deliveries` row, idempotently, and never calls out;
//! - [`delivery`]: the worker that sends due deliveries, one at a time per subscription and
//!   stream (so per job in order), retries with backoff over a day, and disables a subscription
//!   whose deliveries keep failing.
//!
//! Every target URL is checked under the same policy as media URLs
//! ([`crate::media_source::MediaUrlPolicy`]) when subscribing and again before every attempt,
//! through a resolver that refuses non-public answers; redirects are not followed.
use crate::media_source::MediaUrlRefused;

pub mod delivery;
pub mod fanout;
pub mod signing;
pub mod subscriptions;

pub use delivery::{DeliverySettings, DeliveryWorker};
pub use fanout::WebhookFanout;
pub use subscriptions::{
    DeliveryView, NewSubscription, Subscription, SubscriptionStatus, WebhookSubscriptions,
};

/// Why a target URL is refused, in the words of webhooks: the media policy's own reasons name
/// media and its settings.
pub fn url_refusal(refusal: &MediaUrlRefused) -> String {
    match refusal {
        MediaUrlRefused::NotHttp(url) => format!("the URL {url:?} must be an absolute http(s) URL"),
        MediaUrlRefused::NotPublic {
            host,
            address,
            kind,
        } => format!(
            "the URL's host '{host}' resolves to {address}, a {kind} address; Herald sends webhooks only to public addresses (an operator may allow a host with HERALD_WEBHOOK_ALLOWED_HOSTS)"
        ),
        MediaUrlRefused::Unresolvable(host) => format!("the URL's host '{host}' does not resolve"),
        MediaUrlRefused::PortNotAllowed { host, port } => format!(
            "the URL's host '{host}' is allowed by HERALD_WEBHOOK_ALLOWED_HOSTS on other ports only, not on port {port}"
        ),
    }
}

/// The Standard Webhooks `webhook-id` of an event for a subscription: stable across retries,
/// redeliveries and the log handing the event over again, so receivers can deduplicate.
pub fn webhook_id(subscription_id: &str, stream_id: &str, sequence: i64) -> String {
    /// Namespace of webhook ids (uuid v5), so they never equal another id Herald derives.
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6865_7261_6c64_4000_8000_7765_6268_6f6f);
    let name = format!("{subscription_id}|{stream_id}|{sequence}");
    format!(
        "msg_{}",
        uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_ids_are_stable_per_subscription_and_event() {
        let id = webhook_id("sub-1", "job-1", 7);
        assert!(id.starts_with("msg_"));
        assert_eq!(id, webhook_id("sub-1", "job-1", 7));
        assert_ne!(id, webhook_id("sub-2", "job-1", 7));
        assert_ne!(id, webhook_id("sub-1", "job-1", 8));
        assert_ne!(id, webhook_id("sub-1", "job-2", 7));
    }
}
