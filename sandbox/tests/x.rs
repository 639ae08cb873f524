//! End-to-end tests of the X twin over real HTTP.

use std::time::Duration;

use herald_sandbox::oauth::s256_challenge;
use herald_sandbox::{Fault, Sandbox, SandboxConfig, XEndpoint};
use reqwest::{header, Client, Response, StatusCode};
use serde_json::{json, Value};

const CLIENT_ID: &str = "herald-sandbox-x";
const CLIENT_SECRET: &str = "herald-sandbox-x-secret";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const SCOPES: &str = "tweet.read tweet.write users.read offline.access media.write";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

struct Harness {
    sandbox: Sandbox,
    http: Client,
    x: String,
}

#[derive(Debug, Clone)]
struct Tokens {
    access: String,
    refresh: String,
}

async fn spawn_with(config: SandboxConfig) -> Harness {
    let sandbox = Sandbox::start("127.0.0.1:0", config).await.expect("start");
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let x = sandbox.x_base_url();
    Harness { sandbox, http, x }
}

async fn spawn() -> Harness {
    let mut config = SandboxConfig::default();
    config.x.media_processing_delay = Duration::from_millis(200);
    spawn_with(config).await
}

async fn json_of(resp: Response) -> Value {
    resp.json().await.expect("json body")
}

fn header_str(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.x, path)
    }

    /// Runs authorize and returns the redirect `Location` as a parsed URL.
    async fn authorize_raw(&self, params: &[(&str, &str)]) -> Response {
        self.http
            .get(self.url("/i/oauth2/authorize"))
            .query(params)
            .send()
            .await
            .unwrap()
    }

    async fn code_for(&self, user: Option<&str>, scopes: &str) -> String {
        let challenge = s256_challenge(VERIFIER);
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("scope", scopes),
            ("state", "st-123"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        if let Some(u) = user {
            params.push(("sandbox_user", u));
        }
        let resp = self.authorize_raw(&params).await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        let loc = url::Url::parse(&header_str(&resp, "location").unwrap()).unwrap();
        assert!(loc.as_str().starts_with(REDIRECT));
        let q: Vec<(String, String)> = loc.query_pairs().into_owned().collect();
        assert!(q.contains(&("state".into(), "st-123".into())), "{q:?}");
        q.into_iter().find(|(k, _)| k == "code").unwrap().1
    }

    async fn token(&self, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url("/2/oauth2/token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn login_as(&self, user: Option<&str>) -> Tokens {
        let code = self.code_for(user, SCOPES).await;
        let resp = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ])
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body = json_of(resp).await;
        Tokens {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn login(&self) -> Tokens {
        self.login_as(None).await
    }

    async fn refresh(&self, refresh: &str) -> Response {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
            .await
    }

    async fn get(&self, token: &str, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn post_json(&self, token: &str, path: &str, body: Value) -> Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn tweet(&self, token: &str, body: Value) -> Response {
        self.post_json(token, "/2/tweets", body).await
    }

    async fn fault(&self, endpoint: &str, fault: Value, times: u32) {
        let resp = self
            .http
            .post(self.url("/_sandbox/faults"))
            .json(&json!({"endpoint": endpoint, "fault": fault, "times": times}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{:?}", resp.text().await);
    }

    async fn state(&self) -> Value {
        json_of(
            self.http
                .get(self.url("/_sandbox/state"))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// INIT + APPEND (multipart then JSON) + FINALIZE; returns (id, finalize body).
    async fn upload(
        &self,
        token: &str,
        media_type: &str,
        category: &str,
        data: &[u8],
    ) -> (String, Value) {
        let init = self
            .post_json(
                token,
                "/2/media/upload/initialize",
                json!({"media_type": media_type, "total_bytes": data.len(), "media_category": category}),
            )
            .await;
        assert_eq!(init.status(), StatusCode::OK);
        let init = json_of(init).await;
        let id = init["data"]["id"].as_str().unwrap().to_owned();
        let half = data.len() / 2;
        let r = self.append_multipart(token, &id, 0, &data[..half]).await;
        assert_eq!(r.status(), StatusCode::OK);
        let r = self
            .post_json(
                token,
                &format!("/2/media/upload/{id}/append"),
                json!({"media": b64(&data[half..]), "segment_index": 1}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let fin = self
            .http
            .post(self.url(&format!("/2/media/upload/{id}/finalize")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(fin.status(), StatusCode::OK);
        (id, json_of(fin).await)
    }

    async fn append_multipart(&self, token: &str, id: &str, seg: u32, data: &[u8]) -> Response {
        let (ct, body) = multipart(&[("segment_index", seg.to_string().as_bytes())], Some(data));
        self.http
            .post(self.url(&format!("/2/media/upload/{id}/append")))
            .bearer_auth(token)
            .header(header::CONTENT_TYPE, ct)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn wait_processed(&self, token: &str, id: &str) -> Value {
        for _ in 0..50 {
            let r = self
                .get(
                    token,
                    &format!("/2/media/upload?command=STATUS&media_id={id}"),
                )
                .await;
            assert_eq!(r.status(), StatusCode::OK);
            let body = json_of(r).await;
            let state = body["data"]["processing_info"]["state"]
                .as_str()
                .unwrap()
                .to_owned();
            if state == "succeeded" || state == "failed" {
                return body;
            }
            assert_eq!(state, "in_progress");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("media {id} never finished processing");
    }
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A multipart/form-data body with text fields and an optional binary `media` part.
fn multipart(fields: &[(&str, &[u8])], media: Option<&[u8]>) -> (String, Vec<u8>) {
    let boundary = "----heraldBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    if let Some(media) = media {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"blob\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(media);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn assert_problem(resp: &Response, status: StatusCode) {
    assert_eq!(resp.status(), status);
    assert_eq!(
        header_str(resp, "content-type").as_deref(),
        Some("application/problem+json")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_pkce_dance_and_refresh_rotation() {
    let h = spawn().await;
    let code = h.code_for(None, SCOPES).await;

    // Wrong verifier burns the code.
    let bad = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", "not-the-verifier"),
        ])
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(bad).await,
        json!({"error": "invalid_request", "error_description": "Value passed for the authorization code was invalid."})
    );

    let code = h.code_for(None, SCOPES).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let resp = h.token(&form).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_of(resp).await;
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 7200);
    assert_eq!(body["scope"], SCOPES);
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(access.len() >= 40 && refresh.len() >= 40);

    // Codes are single use.
    assert_eq!(h.token(&form).await.status(), StatusCode::BAD_REQUEST);

    let me = h.get(&access, "/2/users/me").await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(
        json_of(me).await,
        json!({"data": {"id": "1500000000000000001", "name": "Herald Sandbox", "username": "herald_sandbox"}})
    );

    // Refresh rotates: new pair, old refresh and old access are dead.
    let r = h.refresh(&refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = json_of(r).await;
    let access2 = r["access_token"].as_str().unwrap().to_owned();
    let refresh2 = r["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(access2, access);
    assert_ne!(refresh2, refresh);
    let reuse = h.refresh(&refresh).await;
    assert_eq!(reuse.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(reuse).await,
        json!({"error": "invalid_request", "error_description": "Value passed for the token was invalid."})
    );
    let old = h.get(&access, "/2/users/me").await;
    assert_problem(&old, StatusCode::UNAUTHORIZED);
    assert_eq!(
        json_of(old).await,
        json!({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})
    );
    assert_eq!(
        h.get(&access2, "/2/users/me").await.status(),
        StatusCode::OK
    );

    // Public client: client_id in the body instead of Basic auth.
    let r = h
        .http
        .post(h.url("/2/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh2.as_str()),
            ("client_id", CLIENT_ID),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let refresh3 = json_of(r).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bad client credentials.
    let r = h
        .http
        .post(h.url("/2/oauth2/token"))
        .basic_auth(CLIENT_ID, Some("wrong"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh3.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json_of(r).await,
        json!({"error": "unauthorized_client", "error_description": "Missing valid authorization header"})
    );

    // Revoking the refresh token kills the grant.
    let r = h
        .http
        .post(h.url("/2/oauth2/revoke"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", refresh3.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await, json!({"revoked": true}));
    assert_eq!(h.refresh(&refresh3).await.status(), StatusCode::BAD_REQUEST);

    // Every issued pair is visible to inspection (for leak checks).
    let st = h.sandbox.x_state();
    assert_eq!(st.tokens_issued.len(), 3);
    assert_eq!(st.tokens_issued[0].access_token, access);
    assert_eq!(
        st.tokens_issued[1].refresh_token.as_deref(),
        Some(refresh2.as_str())
    );
    h.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_validation_and_multiple_users() {
    let h = spawn().await;
    let challenge = s256_challenge(VERIFIER);
    // Unknown client: no redirect.
    let r = h
        .authorize_raw(&[
            ("response_type", "code"),
            ("client_id", "nope"),
            ("redirect_uri", REDIRECT),
            ("scope", SCOPES),
            ("state", "s"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Bad challenge method: redirected error with state.
    let r = h
        .authorize_raw(&[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("scope", SCOPES),
            ("state", "s1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S512"),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = header_str(&r, "location").unwrap();
    assert!(
        loc.contains("error=invalid_request") && loc.contains("state=s1"),
        "{loc}"
    );
    assert!(!loc.contains("code="));
    // Over-long state.
    let long_state = "s".repeat(501);
    let r = h
        .authorize_raw(&[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("scope", SCOPES),
            ("state", &long_state),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .await;
    assert!(header_str(&r, "location")
        .unwrap()
        .contains("error=invalid_request"));

    // sandbox_user picks a distinct, stable account.
    let alice = h.login_as(Some("alice")).await;
    let alice_again = h.login_as(Some("alice")).await;
    let me1 = json_of(h.get(&alice.access, "/2/users/me").await).await;
    let me2 = json_of(h.get(&alice_again.access, "/2/users/me").await).await;
    assert_eq!(me1, me2);
    assert_eq!(me1["data"]["username"], "alice");
    let id = me1["data"]["id"].as_str().unwrap();
    assert_eq!(id.len(), 19);
    assert_ne!(id, "1500000000000000001");

    // A token without tweet.write cannot post.
    let code = h.code_for(None, "tweet.read users.read").await;
    let r = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .await;
    let body = json_of(r).await;
    assert!(
        body.get("refresh_token").is_none(),
        "no offline.access, no refresh token"
    );
    let ro = body["access_token"].as_str().unwrap();
    assert_problem(
        &h.tweet(ro, json!({"text": "nope"})).await,
        StatusCode::FORBIDDEN,
    );
    h.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_video_upload_then_tweet_with_media() {
    let h = spawn().await;
    let t = h.login().await;
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let (id, fin) = h.upload(&t.access, "video/mp4", "tweet_video", &data).await;
    assert_eq!(id.len(), 19);
    assert_eq!(fin["data"]["media_key"], format!("7_{id}"));
    assert_eq!(fin["data"]["size"], 10_000);
    assert_eq!(fin["data"]["processing_info"]["state"], "pending");

    // Not usable while processing.
    let early = h
        .tweet(
            &t.access,
            json!({"text": "too soon", "media": {"media_ids": [id]}}),
        )
        .await;
    assert_problem(&early, StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(early).await["type"],
        "https://api.x.com/2/problems/invalid-request"
    );

    let done = h.wait_processed(&t.access, &id).await;
    assert_eq!(done["data"]["processing_info"]["state"], "succeeded");

    let r = h
        .tweet(
            &t.access,
            json!({"text": "with video", "media": {"media_ids": [id]}}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body = json_of(r).await;
    let post_id = body["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["data"]["text"], "with video");
    assert_eq!(body["data"]["edit_history_post_ids"], json!([post_id]));

    let st = h.sandbox.x_state();
    assert_eq!(st.media.len(), 1);
    assert_eq!(st.media[0].segments, vec![0, 1]);
    assert_eq!(st.media[0].bytes_received, 10_000);
    assert_eq!(st.media[0].state, "succeeded");
    assert_eq!(st.posts.len(), 1);
    assert_eq!(st.posts[0].media_ids, vec![id.clone()]);

    // Another user cannot attach this media.
    let bob = h.login_as(Some("bob")).await;
    let r = h
        .tweet(
            &bob.access,
            json!({"text": "stolen", "media": {"media_ids": [id]}}),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);
    h.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn media_validation_errors() {
    let h = spawn().await;
    let t = h.login().await;
    let too_big = h
        .post_json(
            &t.access,
            "/2/media/upload/initialize",
            json!({"media_type": "image/png", "total_bytes": 6 * 1024 * 1024, "media_category": "tweet_image"}),
        )
        .await;
    assert_problem(&too_big, StatusCode::BAD_REQUEST);
    assert!(json_of(too_big).await["detail"]
        .as_str()
        .unwrap()
        .contains("5 MB"));
    let bad_type = h
        .post_json(
            &t.access,
            "/2/media/upload/initialize",
            json!({"media_type": "image/heic", "total_bytes": 10, "media_category": "tweet_image"}),
        )
        .await;
    assert_problem(&bad_type, StatusCode::BAD_REQUEST);

    // Finalize with missing bytes.
    let init = json_of(
        h.post_json(
            &t.access,
            "/2/media/upload/initialize",
            json!({"media_type": "image/png", "total_bytes": 100, "media_category": "tweet_image"}),
        )
        .await,
    )
    .await;
    let id = init["data"]["id"].as_str().unwrap();
    assert_eq!(init["data"]["media_key"], format!("3_{id}"));
    assert_eq!(init["data"]["expires_after_secs"], 86400);
    let r = h.append_multipart(&t.access, id, 0, &[1u8; 60]).await;
    let expires_at = json_of(r).await["data"]["expires_at"].as_i64().unwrap();
    assert!(expires_at > 1_700_000_000);
    let bad_seg = h.append_multipart(&t.access, id, 1000, &[1u8; 40]).await;
    assert_problem(&bad_seg, StatusCode::BAD_REQUEST);
    let fin = h
        .http
        .post(h.url(&format!("/2/media/upload/{id}/finalize")))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_problem(&fin, StatusCode::BAD_REQUEST);
    assert!(json_of(fin).await["detail"]
        .as_str()
        .unwrap()
        .contains("received 60 bytes"));
    // Completing it makes finalize succeed; images have no processing_info.
    h.append_multipart(&t.access, id, 1, &[2u8; 40]).await;
    let fin = h
        .http
        .post(h.url(&format!("/2/media/upload/{id}/finalize")))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(fin.status(), StatusCode::OK);
    let fin = json_of(fin).await;
    assert!(fin["data"].get("processing_info").is_none());
    let r = h
        .tweet(
            &t.access,
            json!({"text": "image", "media": {"media_ids": [id]}}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    h.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reject_media_and_slow_processing_faults() {
    let h = spawn().await;
    let t = h.login().await;
    h.fault("media_finalize", json!({"kind": "reject_media"}), 1)
        .await;
    let (id, _) = h
        .upload(&t.access, "video/mp4", "tweet_video", &[7u8; 64])
        .await;
    let done = h.wait_processed(&t.access, &id).await;
    let info = &done["data"]["processing_info"];
    assert_eq!(info["state"], "failed");
    assert_eq!(info["error"]["name"], "InvalidMedia");
    let r = h
        .tweet(
            &t.access,
            json!({"text": "bad media", "media": {"media_ids": [id]}}),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST);

    h.sandbox.inject_x_fault(
        XEndpoint::MediaFinalize,
        Fault::SlowProcessing { secs: 30.0 },
        1,
    );
    let (id, _) = h
        .upload(&t.access, "image/gif", "tweet_gif", &[7u8; 64])
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let s = json_of(
        h.get(
            &t.access,
            &format!("/2/media/upload?command=STATUS&media_id={id}"),
        )
        .await,
    )
    .await;
    assert_eq!(s["data"]["processing_info"]["state"], "in_progress");
    assert!(
        s["data"]["processing_info"]["check_after_secs"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(s["data"]["media_key"], format!("16_{id}"));
    h.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn poll_tweet_duplicate_and_validation() {
    let h = spawn().await;
    let t = h.login().await;
    let r = h
        .tweet(
            &t.access,
            json!({"text": "Which?", "poll": {"options": ["yes", "no"], "duration_minutes": 60}}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let poll_id = json_of(r).await["data"]["id"].as_str().unwrap().to_owned();

    let dup = h.tweet(&t.access, json!({"text": "Which?"})).await;
    assert_problem(&dup, StatusCode::FORBIDDEN);
    assert_eq!(
        json_of(dup).await,
        json!({"detail": "You are not allowed to create a Tweet with duplicate content.",
               "type": "about:blank", "title": "Forbidden", "status": 403})
    );
    // The same text by another user is fine.
    let bob = h.login_as(Some("bob")).await;
    assert_eq!(
        h.tweet(&bob.access, json!({"text": "Which?"}))
            .await
            .status(),
        StatusCode::CREATED
    );

    let unknown = h.tweet(&t.access, json!({"text": "x", "nope": true})).await;
    assert_problem(&unknown, StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(unknown).await["type"],
        "https://api.x.com/2/problems/invalid-request"
    );
    let long = h.tweet(&t.access, json!({"text": "日".repeat(141)})).await;
    assert_problem(&long, StatusCode::BAD_REQUEST);
    let ok_cjk = h.tweet(&t.access, json!({"text": "日".repeat(140)})).await;
    assert_eq!(ok_cjk.status(), StatusCode::CREATED);
    let bad_poll = h
        .tweet(
            &t.access,
            json!({"text": "q", "poll": {"options": ["only"], "duration_minutes": 60}}),
        )
        .await;
    assert_problem(&bad_poll, StatusCode::BAD_REQUEST);

    // Replies must target an existing post.
    let reply = h
        .tweet(
            &t.access,
            json!({"text": "reply", "reply": {"in_reply_to_tweet_id": poll_id}}),
        )
        .await;
    assert_eq!(reply.status(), StatusCode::CREATED);
    let orphan = h
        .tweet(
            &t.access,
            json!({"text": "orphan", "reply": {"in_reply_to_tweet_id": "1"}}),
        )
        .await;
    assert_problem(&orphan, StatusCode::FORBIDDEN);

    let st = h.state().await;
    let posts = st["posts"].as_array().unwrap();
    assert_eq!(posts.len(), 4);
    assert_eq!(
        posts[0]["poll"],
        json!({"options": ["yes", "no"], "duration_minutes": 60})
    );
    assert_eq!(posts[3]["in_reply_to_tweet_id"], json!(poll_id));
    h.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_fault_sets_retry_after() {
    let h = spawn().await;
    let t = h.login().await;
    h.fault(
        "create_tweet",
        json!({"kind": "rate_limited", "retry_after_secs": 42}),
        1,
    )
    .await;
    let r = h.tweet(&t.access, json!({"text": "limited"})).await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header_str(&r, "retry-after").as_deref(), Some("42"));
    assert_eq!(
        header_str(&r, "x-rate-limit-remaining").as_deref(),
        Some("0")
    );
    let reset: i64 = header_str(&r, "x-rate-limit-reset")
        .unwrap()
        .parse()
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((now + 40..=now + 44).contains(&reset), "{reset} vs {now}");
    assert_eq!(
        json_of(r).await,
        json!({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429})
    );
    // Consumed: the next request goes through, and nothing was created before.
    assert_eq!(
        h.tweet(&t.access, json!({"text": "limited"}))
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(h.sandbox.x_state().posts.len(), 1);
    h.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_after_success_creates_the_post() {
    let h = spawn().await;
    let t = h.login().await;
    h.fault(
        "create_tweet",
        json!({"kind": "timeout_after_success", "secs": 3}),
        1,
    )
    .await;
    let err = h
        .http
        .post(h.url("/2/tweets"))
        .bearer_auth(&t.access)
        .timeout(Duration::from_millis(300))
        .json(&json!({"text": "did it post?"}))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");

    let posts = h.sandbox.x_state().posts;
    assert_eq!(posts.iter().filter(|p| p.text == "did it post?").count(), 1);

    // Reconciliation: the post is visible in the user's timeline, and a retry is a duplicate.
    let me = json_of(h.get(&t.access, "/2/users/me").await).await;
    let uid = me["data"]["id"].as_str().unwrap();
    let tl = json_of(
        h.get(
            &t.access,
            &format!("/2/users/{uid}/tweets?max_results=5&tweet.fields=created_at"),
        )
        .await,
    )
    .await;
    assert_eq!(tl["meta"]["result_count"], 1);
    assert_eq!(tl["data"][0]["text"], "did it post?");
    assert_eq!(tl["data"][0]["id"], json!(posts[0].id));
    assert_eq!(
        h.tweet(&t.access, json!({"text": "did it post?"}))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    h.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_headers_decrement_and_exhaust() {
    let mut config = SandboxConfig::default();
    config.x.rate_limits.create_tweet = 3;
    let h = spawn_with(config).await;
    let t = h.login().await;
    let mut remaining = Vec::new();
    for i in 0..3 {
        let r = h
            .tweet(&t.access, json!({"text": format!("post {i}")}))
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(header_str(&r, "x-rate-limit-limit").as_deref(), Some("3"));
        remaining.push(header_str(&r, "x-rate-limit-remaining").unwrap());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = h.tweet(&t.access, json!({"text": "post 3"})).await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header_str(&r, "x-rate-limit-remaining").as_deref(),
        Some("0")
    );
    // Per user: another account still has its own window.
    let bob = h.login_as(Some("bob")).await;
    let r = h.tweet(&bob.access, json!({"text": "post 3"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header_str(&r, "x-rate-limit-remaining").as_deref(),
        Some("2")
    );
    // users/me has its own limit (75).
    let me = h.get(&t.access, "/2/users/me").await;
    assert_eq!(header_str(&me, "x-rate-limit-limit").as_deref(), Some("75"));
    assert_eq!(
        header_str(&me, "x-rate-limit-remaining").as_deref(),
        Some("74")
    );
    h.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_tweets_lists_newest_first_with_filters() {
    let h = spawn().await;
    let t = h.login().await;
    let uid = json_of(h.get(&t.access, "/2/users/me").await).await["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let empty = json_of(h.get(&t.access, &format!("/2/users/{uid}/tweets")).await).await;
    assert_eq!(empty, json!({"meta": {"result_count": 0}}));

    let mut ids = Vec::new();
    for i in 0..7 {
        let r = h
            .tweet(&t.access, json!({"text": format!("timeline {i}")}))
            .await;
        ids.push(json_of(r).await["data"]["id"].as_str().unwrap().to_owned());
    }
    let page = json_of(
        h.get(&t.access, &format!("/2/users/{uid}/tweets?max_results=5"))
            .await,
    )
    .await;
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 5);
    assert_eq!(data[0]["text"], "timeline 6");
    assert_eq!(data[0]["edit_history_post_ids"], json!([ids[6]]));
    assert!(data[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(page["meta"]["newest_id"], json!(ids[6]));
    assert_eq!(page["meta"]["oldest_id"], json!(ids[2]));
    let next = page["meta"]["next_token"].as_str().unwrap();
    let page2 = json_of(
        h.get(
            &t.access,
            &format!("/2/users/{uid}/tweets?max_results=5&pagination_token={next}"),
        )
        .await,
    )
    .await;
    assert_eq!(page2["meta"]["result_count"], 2);
    assert_eq!(page2["data"][1]["id"], json!(ids[0]));

    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let none = json_of(
        h.http
            .get(h.url(&format!("/2/users/{uid}/tweets")))
            .query(&[("start_time", future.as_str())])
            .bearer_auth(&t.access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(none["meta"]["result_count"], 0);
    assert!(none.get("data").is_none());

    let bad = h
        .get(&t.access, &format!("/2/users/{uid}/tweets?max_results=500"))
        .await;
    assert_problem(&bad, StatusCode::BAD_REQUEST);
    h.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_faults_server_errors_and_inspection() {
    let h = spawn().await;
    let t = h.login().await;

    // expire_token: 401 now and later.
    h.fault("users_me", json!({"kind": "expire_token"}), 1)
        .await;
    assert_problem(
        &h.get(&t.access, "/2/users/me").await,
        StatusCode::UNAUTHORIZED,
    );
    assert_problem(
        &h.get(&t.access, "/2/users/me").await,
        StatusCode::UNAUTHORIZED,
    );
    // ... but the refresh token still works.
    let r = json_of(h.refresh(&t.refresh).await).await;
    let access = r["access_token"].as_str().unwrap().to_owned();
    let refresh = r["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(h.get(&access, "/2/users/me").await.status(), StatusCode::OK);

    // revoke_grant on the token endpoint: this refresh fails, for good.
    h.fault("token", json!({"kind": "revoke_grant"}), 1).await;
    assert_eq!(h.refresh(&refresh).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.refresh(&refresh).await.status(), StatusCode::BAD_REQUEST);
    assert_problem(
        &h.get(&access, "/2/users/me").await,
        StatusCode::UNAUTHORIZED,
    );

    // server_error via the wildcard, two times.
    let t = h.login().await;
    h.fault("any", json!({"kind": "server_error", "status": 503}), 2)
        .await;
    assert_problem(
        &h.get(&t.access, "/2/users/me").await,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    assert_problem(
        &h.tweet(&t.access, json!({"text": "a"})).await,
        StatusCode::SERVICE_UNAVAILABLE,
    );
    assert_eq!(
        h.tweet(&t.access, json!({"text": "a"})).await.status(),
        StatusCode::CREATED
    );

    // content_rejected, and clearing faults.
    h.fault(
        "create_tweet",
        json!({"kind": "content_rejected", "detail": "nope"}),
        5,
    )
    .await;
    let r = h.tweet(&t.access, json!({"text": "b"})).await;
    assert_problem(&r, StatusCode::FORBIDDEN);
    assert_eq!(json_of(r).await["detail"], "nope");
    let cleared = h
        .http
        .delete(h.url("/_sandbox/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(cleared).await, json!({"cleared": 1}));
    assert_eq!(
        h.tweet(&t.access, json!({"text": "b"})).await.status(),
        StatusCode::CREATED
    );

    // Bad fault requests are refused.
    let r = h
        .http
        .post(h.url("/_sandbox/faults"))
        .json(
            &json!({"endpoint": "create_tweet", "fault": {"kind": "server_error", "status": 200}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // No token at all.
    let r = h.http.get(h.url("/2/users/me")).send().await.unwrap();
    assert_problem(&r, StatusCode::UNAUTHORIZED);

    let st = h.state().await;
    let requests = st["requests"].as_array().unwrap();
    assert!(requests
        .iter()
        .any(|r| r["path"] == "/x/2/tweets" && r["status"] == 503 && r["method"] == "POST"));
    assert!(requests
        .iter()
        .all(|r| !r["path"].as_str().unwrap().contains("_sandbox")));
    h.sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_command_upload_and_one_shot() {
    let h = spawn().await;
    let t = h.login().await;
    let send = |fields: Vec<(&'static str, Vec<u8>)>, media: Option<Vec<u8>>| {
        let refs: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let (ct, body) = multipart(&refs, media.as_deref());
        h.http
            .post(h.url("/2/media/upload"))
            .bearer_auth(&t.access)
            .header(header::CONTENT_TYPE, ct)
            .body(body)
            .send()
    };
    let init = send(
        vec![
            ("command", b"INIT".to_vec()),
            ("media_type", b"image/jpeg".to_vec()),
            ("total_bytes", b"8".to_vec()),
            ("media_category", b"tweet_image".to_vec()),
        ],
        None,
    )
    .await
    .unwrap();
    assert_eq!(init.status(), StatusCode::OK);
    let id = json_of(init).await["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let app = send(
        vec![
            ("command", b"APPEND".to_vec()),
            ("media_id", id.clone().into_bytes()),
            ("segment_index", b"0".to_vec()),
        ],
        Some(vec![9u8; 8]),
    )
    .await
    .unwrap();
    assert_eq!(app.status(), StatusCode::OK);
    let fin = send(
        vec![
            ("command", b"FINALIZE".to_vec()),
            ("media_id", id.clone().into_bytes()),
        ],
        None,
    )
    .await
    .unwrap();
    assert_eq!(fin.status(), StatusCode::OK);
    assert_eq!(json_of(fin).await["data"]["size"], 8);

    let one = send(
        vec![("media_category", b"tweet_image".to_vec())],
        Some(vec![1u8; 5]),
    )
    .await
    .unwrap();
    assert_eq!(one.status(), StatusCode::OK);
    let one_id = json_of(one).await["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = h
        .tweet(
            &t.access,
            json!({"text": "two images", "media": {"media_ids": [id, one_id]}}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    h.sandbox.stop().await;
}
