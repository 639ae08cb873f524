//! Facebook Login's Deauthorize Callback: when a person removes the app in their Facebook
//! settings, Meta `POST`s a form with `signed_request` to the callback URL set in the app
//! dashboard (Facebook Login → Settings). A signed request is `{signature}.{payload}`, both
//! base64url; the signature is HMAC-SHA256 of the encoded payload keyed with the app secret, and
//! the payload is JSON `{"algorithm": "HMAC-SHA256", "issued_at": <unix>, "user_id": "<app-scoped
//! id>"}` (https://developers.facebook.com/docs/facebook-login/guides/advanced/manual-flow/ →
//! "Deauthorize Callback"; the parsing steps are Meta's "Parse the signed request").
//!
//! The person's Pages and Instagram accounts all hang off that one login, so the notice names
//! the login (`TokenGrant::login_id`), not an account.
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::login::LOGIN_PREFIX;
use crate::platforms::{WebhookNotice, WebhookRefusal};

/// How old a signed request may be. Meta retries a failed callback, so this is generous; it
/// still stops a captured request being replayed much later.
pub const MAX_SIGNED_REQUEST_AGE: TimeDelta = TimeDelta::hours(24);

#[derive(Debug, Deserialize)]
struct Payload {
    algorithm: String,
    issued_at: i64,
    user_id: String,
}

/// Checks and reads a Deauthorize Callback body (`signed_request=...`, form-encoded).
pub(crate) fn read(
    app_secret: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<WebhookNotice, WebhookRefusal> {
    let bad = |why: &str| WebhookRefusal::BadSignature(why.to_owned());
    let signed = url::form_urlencoded::parse(body)
        .find(|(name, _)| name == "signed_request")
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| {
            WebhookRefusal::Unreadable("no signed_request: not a Deauthorize Callback".into())
        })?;
    let (signature, payload) = signed
        .split_once('.')
        .ok_or_else(|| bad("the signed_request is not {signature}.{payload}"))?;
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('='))
    };
    let signature = decode(signature).map_err(|_| bad("the signature is not base64url"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
        .map_err(|_| bad("no app secret to check it with"))?;
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| bad("it was not made with this app's secret over this payload"))?;
    let payload: Payload = decode(payload)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| WebhookRefusal::Unreadable("the payload is not Meta's JSON".into()))?;
    if !payload.algorithm.eq_ignore_ascii_case("HMAC-SHA256") {
        return Err(bad("the algorithm is not HMAC-SHA256"));
    }
    let issued_at =
        DateTime::from_timestamp(payload.issued_at, 0).ok_or_else(|| bad("bad issued_at"))?;
    if now - issued_at > MAX_SIGNED_REQUEST_AGE || issued_at - now > TimeDelta::minutes(5) {
        return Err(bad(&format!(
            "it was issued at {issued_at}, too far from now"
        )));
    }
    if payload.user_id.is_empty() {
        return Err(WebhookRefusal::Unreadable("no user_id".into()));
    }
    Ok(WebhookNotice::LoginRemoved {
        login_id: format!("{LOGIN_PREFIX}{}", payload.user_id),
        why: "the person removed Herald in their Facebook settings".into(),
        at: issued_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "sandbox_app_secret";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).unwrap()
    }

    /// Signed as the Meta twin signs its callbacks.
    fn body(secret: &str, issued_at: i64, user_id: &str) -> Vec<u8> {
        let signed = herald_sandbox::meta::signed_request(secret, issued_at, user_id);
        format!("signed_request={signed}").into_bytes()
    }

    #[test]
    fn a_signed_request_names_the_login_and_when() {
        let notice = read(SECRET, &body(SECRET, now().timestamp() - 60, "1234"), now()).unwrap();
        assert_eq!(
            notice,
            WebhookNotice::LoginRemoved {
                login_id: "facebook:1234".into(),
                why: "the person removed Herald in their Facebook settings".into(),
                at: now() - TimeDelta::seconds(60),
            }
        );
    }

    #[test]
    fn a_forged_tampered_or_old_request_is_refused() {
        let t = now().timestamp();
        assert!(matches!(
            read(SECRET, &body("another app", t, "1234"), now()),
            Err(WebhookRefusal::BadSignature(_))
        ));
        let genuine = String::from_utf8(body(SECRET, t, "1234")).unwrap();
        let (signature, _) = genuine.split_once('.').unwrap();
        let other_payload = String::from_utf8(body(SECRET, t, "9999")).unwrap();
        let (_, payload) = other_payload.split_once('.').unwrap();
        let tampered = format!("{signature}.{payload}");
        assert!(matches!(
            read(SECRET, tampered.as_bytes(), now()),
            Err(WebhookRefusal::BadSignature(_))
        ));
        assert!(matches!(
            read(SECRET, &body(SECRET, t - 25 * 3600, "1234"), now()),
            Err(WebhookRefusal::BadSignature(_))
        ));
        assert!(matches!(
            read(SECRET, b"hub.mode=subscribe", now()),
            Err(WebhookRefusal::Unreadable(_))
        ));
    }
}
