//! Facebook Login's Deauthorize Callback, as Meta sends it: when a person removes the app, their
//! tokens stop working and a form `signed_request={signature}.{payload}` is posted to the
//! callback URL set in the app dashboard. Both parts are base64url; the signature is
//! HMAC-SHA256 of the encoded payload keyed with the app secret; the payload is
//! `{"algorithm":"HMAC-SHA256","issued_at":<unix>,"user_id":"<app-scoped id>"}`.
use std::time::Duration;

use actix_web::{web, HttpResponse};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;

use super::MetaState;

/// A signed request for `user_id`, issued at `issued_at` (unix seconds).
pub fn signed_request(app_secret: &str, issued_at: i64, user_id: &str) -> String {
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let payload = encode(
        json!({"algorithm": "HMAC-SHA256", "issued_at": issued_at, "user_id": user_id})
            .to_string()
            .as_bytes(),
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(app_secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(payload.as_bytes());
    format!("{}.{payload}", encode(&mac.finalize().into_bytes()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallbackRequest {
    url: Option<String>,
}

/// `PUT /_sandbox/deauthorize_callback`: sets (or, with `null`, clears) the callback URL.
pub(crate) async fn set_callback(state: web::Data<MetaState>, body: web::Bytes) -> HttpResponse {
    let req: CallbackRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return HttpResponse::BadRequest().json(json!({"error": e.to_string()})),
    };
    if let Some(url) = &req.url {
        if let Err(refused) = crate::outbound::loopback_only(url) {
            return HttpResponse::BadRequest().json(json!({ "error": refused }));
        }
    }
    state.lock().deauthorize_url.clone_from(&req.url);
    HttpResponse::Ok().json(json!({ "url": req.url }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveAppRequest {
    username: String,
}

/// `POST /_sandbox/deauthorize`: the person `username` removes the app in their Facebook
/// settings. Answers what the callback answered (`delivered_status`, `null` if none).
pub(crate) async fn remove_app(state: web::Data<MetaState>, body: web::Bytes) -> HttpResponse {
    let req: RemoveAppRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return HttpResponse::BadRequest().json(json!({"error": e.to_string()})),
    };
    let Some(user_id) = state
        .lock()
        .user_by_username(&req.username)
        .map(|u| u.id.clone())
    else {
        return HttpResponse::NotFound().json(json!({"error": "no such user"}));
    };
    // Meta's "Error validating access token: The user has not authorized application".
    state.revoke_user(&user_id, 458);
    let url = state.lock().deauthorize_url.clone();
    let delivered = match url {
        Some(url) => {
            let signed = signed_request(
                &state.config.client_secret,
                chrono::Utc::now().timestamp(),
                &user_id,
            );
            state
                .http
                .post(&url)
                .form(&[("signed_request", signed)])
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        }
        None => None,
    };
    HttpResponse::Ok().json(json!({ "user_id": user_id, "delivered_status": delivered }))
}
