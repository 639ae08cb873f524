//! TikTok webhooks (platform-facts §2.9; https://developers.tiktok.com/doc/webhooks-verification
//! and https://developers.tiktok.com/doc/webhooks-events).
//!
//! A delivery is a JSON `POST` of `{client_key, event, create_time, user_openid, content}`, where
//! `content` is itself a JSON string. It is signed in `TikTok-Signature: t=<unix>,s=<hex>`:
//! HMAC-SHA256 keyed with the app's client secret over `"{t}.{raw body}"`, lower-case hex.
//! TikTok leaves the timestamp window to the app; Herald refuses deliveries signed more than
//! [`MAX_SIGNATURE_AGE`] away from now, so a captured delivery cannot be replayed later.
//!
//! Herald acts on `authorization.removed` ("Fired when the user's account deauthorized from your
//! application. The access_token for the user will have been already revoked"): the account's
//! connections then need the user. Publishing outcomes (`post.publish.*`) are already followed
//! by polling the status endpoint, so those deliveries are acknowledged and logged only.
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::platforms::{WebhookNotice, WebhookRefusal};

/// How far a delivery's signing time may be from now.
pub const MAX_SIGNATURE_AGE: TimeDelta = TimeDelta::minutes(5);

#[derive(Debug, Deserialize)]
struct Delivery {
    client_key: String,
    event: String,
    create_time: i64,
    #[serde(default)]
    user_openid: String,
    #[serde(default)]
    content: String,
}

#[derive(Debug, Deserialize)]
struct AuthorizationRemoved {
    #[serde(default)]
    reason: i64,
}

/// Checks the signature of a delivery to the app `client_key`, then reads it.
pub(super) fn read(
    client_key: &str,
    client_secret: &str,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<WebhookNotice, WebhookRefusal> {
    let bad = |why: &str| WebhookRefusal::BadSignature(why.to_owned());
    let signature = signature.ok_or_else(|| bad("no TikTok-Signature header"))?;
    let (mut timestamp, mut digest) = (None, None);
    for part in signature.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("s", value)) => digest = decode_hex(value),
            _ => {}
        }
    }
    let (Some(timestamp), Some(digest)) = (timestamp, digest) else {
        return Err(bad("the TikTok-Signature header is not t=<unix>,s=<hex>"));
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(client_secret.as_bytes())
        .map_err(|_| bad("no client secret to check it with"))?;
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&digest)
        .map_err(|_| bad("it was not made with this app's client secret over this body"))?;
    let signed_at = DateTime::from_timestamp(timestamp, 0).ok_or_else(|| bad("bad timestamp"))?;
    if (now - signed_at).abs() > MAX_SIGNATURE_AGE {
        return Err(bad(&format!(
            "it was signed at {signed_at}, more than {} minutes from now",
            MAX_SIGNATURE_AGE.num_minutes()
        )));
    }
    let delivery: Delivery = serde_json::from_slice(body)
        .map_err(|e| WebhookRefusal::Unreadable(format!("not a TikTok event: {e}")))?;
    if delivery.client_key != client_key {
        return Err(bad("it is for another TikTok app"));
    }
    let at = DateTime::from_timestamp(delivery.create_time, 0).unwrap_or(signed_at);
    match delivery.event.as_str() {
        "authorization.removed" => {
            if delivery.user_openid.is_empty() {
                return Err(WebhookRefusal::Unreadable(
                    "authorization.removed without a user_openid".into(),
                ));
            }
            let reason = serde_json::from_str::<AuthorizationRemoved>(&delivery.content)
                .map(|c| c.reason)
                .unwrap_or(0);
            Ok(WebhookNotice::AccessRemoved {
                account_id: delivery.user_openid,
                why: removal_reason(reason).to_owned(),
                at,
            })
        }
        _ => Ok(WebhookNotice::NotActedOn {
            event: delivery.event,
        }),
    }
}

/// TikTok's `reason` codes for `authorization.removed`, in words.
fn removal_reason(code: i64) -> &'static str {
    match code {
        1 => "the user disconnected Herald in the TikTok app",
        2 => "the TikTok account was deleted",
        3 => "the account holder's age changed",
        4 => "the TikTok account was banned",
        5 => "the app's developer revoked the authorization",
        _ => "TikTok gave no reason",
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sandbox_client_key";
    const SECRET: &str = "sandbox_client_secret";

    /// Signed as the TikTok twin signs its deliveries.
    fn sign(secret: &str, timestamp: i64, body: &str) -> String {
        herald_sandbox::tiktok::webhook_signature(secret, timestamp, body)
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).unwrap()
    }

    fn removal(reason: i64) -> String {
        serde_json::json!({
            "client_key": KEY,
            "event": "authorization.removed",
            "create_time": 1_789_999_990,
            "user_openid": "act.alice",
            "content": format!("{{\"reason\": {reason} }}"),
        })
        .to_string()
    }

    #[test]
    fn a_signed_removal_names_the_account_the_reason_and_the_time() {
        let body = removal(1);
        let signature = sign(SECRET, now().timestamp(), &body);
        let notice = read(KEY, SECRET, Some(&signature), body.as_bytes(), now()).unwrap();
        assert_eq!(
            notice,
            WebhookNotice::AccessRemoved {
                account_id: "act.alice".into(),
                why: "the user disconnected Herald in the TikTok app".into(),
                at: DateTime::from_timestamp(1_789_999_990, 0).unwrap(),
            }
        );
    }

    #[test]
    fn a_forged_tampered_stale_or_foreign_delivery_is_refused() {
        let body = removal(4);
        let t = now().timestamp();
        let refused = |signature: Option<&str>, body: &str, key: &str| {
            read(key, SECRET, signature, body.as_bytes(), now()).unwrap_err()
        };
        let wrong_secret = sign("someone else", t, &body);
        assert!(matches!(
            refused(Some(&wrong_secret), &body, KEY),
            WebhookRefusal::BadSignature(_)
        ));
        let signed = sign(SECRET, t, &body);
        let tampered = body.replace("act.alice", "act.mallory");
        assert!(matches!(
            refused(Some(&signed), &tampered, KEY),
            WebhookRefusal::BadSignature(_)
        ));
        let stale = sign(SECRET, t - 301, &body);
        let WebhookRefusal::BadSignature(why) = refused(Some(&stale), &body, KEY) else {
            panic!("a stale delivery must be refused");
        };
        assert!(why.contains("more than 5 minutes"), "{why}");
        assert!(matches!(
            refused(None, &body, KEY),
            WebhookRefusal::BadSignature(_)
        ));
        assert!(matches!(
            refused(Some("s=00,t=x"), &body, KEY),
            WebhookRefusal::BadSignature(_)
        ));
        assert!(matches!(
            refused(Some(&signed), &body, "another_app"),
            WebhookRefusal::BadSignature(_)
        ));
    }

    #[test]
    fn publishing_events_are_acknowledged_not_acted_on() {
        let body = serde_json::json!({
            "client_key": KEY,
            "event": "post.publish.complete",
            "create_time": 1_789_999_990,
            "user_openid": "act.alice",
            "content": "{\"publish_id\":\"v_pub_url~v2.1\",\"publish_type\":\"DIRECT_PUBLISH\"}",
        })
        .to_string();
        let signature = sign(SECRET, now().timestamp(), &body);
        assert_eq!(
            read(KEY, SECRET, Some(&signature), body.as_bytes(), now()),
            Ok(WebhookNotice::NotActedOn {
                event: "post.publish.complete".into()
            })
        );
    }

    #[test]
    fn every_documented_removal_reason_reads_as_words() {
        for code in 0..=5 {
            assert!(!removal_reason(code).is_empty());
        }
        assert_eq!(removal_reason(2), "the TikTok account was deleted");
        assert_eq!(removal_reason(42), removal_reason(0));
    }
}
