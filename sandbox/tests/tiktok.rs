//! End-to-end tests of the TikTok twin over real HTTP.

use std::collections::HashMap;
use std::time::Duration;

use herald_sandbox::oauth::s256_challenge;
use herald_sandbox::{Fault, Sandbox, SandboxConfig, TiktokEndpoint};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

const CLIENT_KEY: &str = "herald-sandbox-tiktok";
const CLIENT_SECRET: &str = "herald-sandbox-tiktok-secret";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const SCOPES: &str = "user.info.basic,user.info.profile,video.publish,video.upload";
const MB: u64 = 1024 * 1024;

struct Harness {
    sandbox: Sandbox,
    http: Client,
    base: String,
}

#[derive(Debug, Clone)]
struct Tokens {
    access: String,
    refresh: String,
    open_id: String,
}

async fn spawn_with(adjust: impl FnOnce(&mut SandboxConfig)) -> Harness {
    let mut config = SandboxConfig::default();
    config.tiktok.processing_delay = Duration::from_millis(200);
    adjust(&mut config);
    let sandbox = Sandbox::start("127.0.0.1:0", config).await.expect("start");
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = sandbox.tiktok_base_url();
    Harness {
        sandbox,
        http,
        base,
    }
}

async fn spawn() -> Harness {
    spawn_with(|_| {}).await
}

async fn json_of(resp: Response) -> Value {
    resp.json().await.expect("json body")
}

/// Deterministic video bytes.
fn video(len: u64) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn authorize(&self, extra: &[(&str, &str)]) -> Response {
        let mut q = vec![
            ("client_key", CLIENT_KEY),
            ("redirect_uri", REDIRECT),
            ("scope", SCOPES),
            ("response_type", "code"),
            ("state", "st4te"),
        ];
        // Extra parameters replace the defaults of the same name.
        q.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        q.extend_from_slice(extra);
        self.http
            .get(self.url("/v2/auth/authorize/"))
            .query(&q)
            .send()
            .await
            .unwrap()
    }

    async fn code(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let resp = self.authorize(extra).await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(REDIRECT));
        location.query_pairs().into_owned().collect()
    }

    async fn token_call(&self, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url("/v2/oauth/token/"))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn connect_with(&self, extra: &[(&str, &str)]) -> Tokens {
        let q = self.code(extra).await;
        assert_eq!(q["state"], "st4te");
        let resp = self
            .token_call(&[
                ("client_key", CLIENT_KEY),
                ("client_secret", CLIENT_SECRET),
                ("code", &q["code"]),
                ("grant_type", "authorization_code"),
                ("redirect_uri", REDIRECT),
            ])
            .await;
        assert_eq!(resp.status(), 200);
        let body = json_of(resp).await;
        Tokens {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
            open_id: body["open_id"].as_str().unwrap().to_owned(),
        }
    }

    async fn connect(&self, user: &str) -> Tokens {
        self.connect_with(&[("sandbox_user", user)]).await
    }

    async fn api(&self, t: &Tokens, path: &str, body: Value) -> Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&t.access)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn creator_info(&self, t: &Tokens) -> Value {
        let resp = self
            .http
            .post(self.url("/v2/post/publish/creator_info/query/"))
            .bearer_auth(&t.access)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        json_of(resp).await
    }

    async fn status(&self, t: &Tokens, publish_id: &str) -> Value {
        let resp = self
            .api(
                t,
                "/v2/post/publish/status/fetch/",
                json!({ "publish_id": publish_id }),
            )
            .await;
        assert_eq!(resp.status(), 200);
        json_of(resp).await["data"].clone()
    }

    async fn wait_status(&self, t: &Tokens, publish_id: &str) -> Value {
        for _ in 0..100 {
            let data = self.status(t, publish_id).await;
            if !data["status"].as_str().unwrap().starts_with("PROCESSING") {
                return data;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{publish_id} still processing");
    }

    async fn put(&self, upload_url: &str, bytes: &[u8], first: u64, total: u64) -> Response {
        let last = first + bytes.len() as u64 - 1;
        self.http
            .put(upload_url)
            .header("Content-Type", "video/mp4")
            .header("Content-Range", format!("bytes {first}-{last}/{total}"))
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
    }

    async fn fault(&self, endpoint: &str, fault: Value, times: u32) {
        let resp = self
            .http
            .post(self.url("/_sandbox/faults"))
            .json(&json!({"endpoint": endpoint, "fault": fault, "times": times}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    }

    async fn error(&self, endpoint: &str, code: &str) {
        let resp = self
            .http
            .post(self.url("/_sandbox/errors"))
            .json(&json!({"endpoint": endpoint, "code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    }
}

fn file_upload_body(privacy: &str, size: u64, chunk: u64) -> Value {
    json!({
        "post_info": {"title": "hello #tiktok", "privacy_level": privacy, "disable_duet": true, "is_aigc": true},
        "source_info": {"source": "FILE_UPLOAD", "video_size": size, "chunk_size": chunk, "total_chunk_count": size / chunk},
    })
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap()
}

/// The `publish_id` of an accepted init.
async fn publish_id_of(resp: Response) -> String {
    assert_eq!(resp.status(), 200);
    json_of(resp).await["data"]["publish_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn oauth_code_exchange_refresh_rotation_and_revoke() {
    let h = spawn().await;
    let q = h.code(&[("sandbox_user", "alice")]).await;
    assert_eq!(q["scopes"], SCOPES);
    let resp = h
        .token_call(&[
            ("client_key", CLIENT_KEY),
            ("client_secret", CLIENT_SECRET),
            ("code", &q["code"]),
            ("grant_type", "authorization_code"),
            ("redirect_uri", REDIRECT),
        ])
        .await;
    assert_eq!(resp.status(), 200);
    let body = json_of(resp).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 86_400);
    assert_eq!(body["refresh_expires_in"], 31_536_000);
    assert_eq!(body["scope"], SCOPES);
    assert!(body["access_token"].as_str().unwrap().starts_with("act."));
    assert!(body["open_id"].is_string());
    // Codes are single-use.
    let again = h
        .token_call(&[
            ("client_key", CLIENT_KEY),
            ("client_secret", CLIENT_SECRET),
            ("code", &q["code"]),
            ("grant_type", "authorization_code"),
            ("redirect_uri", REDIRECT),
        ])
        .await;
    assert_eq!(again.status(), 400);
    let err = json_of(again).await;
    assert_eq!(err["error"], "invalid_grant");
    assert!(err["log_id"].is_string() && err["error_description"].is_string());

    // Refresh rotates: the old refresh token stops working.
    let old_refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |token: String| {
        let h = &h;
        async move {
            h.token_call(&[
                ("client_key", CLIENT_KEY),
                ("client_secret", CLIENT_SECRET),
                ("grant_type", "refresh_token"),
                ("refresh_token", &token),
            ])
            .await
        }
    };
    let resp = refresh(old_refresh.clone()).await;
    assert_eq!(resp.status(), 200);
    let fresh = json_of(resp).await;
    assert_ne!(fresh["refresh_token"], old_refresh.as_str());
    assert!(fresh["refresh_expires_in"].as_u64().unwrap() <= 31_536_000);
    let reused = refresh(old_refresh).await;
    assert_eq!(json_of(reused).await["error"], "invalid_grant");

    // A wrong secret is invalid_client.
    let resp = h
        .token_call(&[
            ("client_key", CLIENT_KEY),
            ("client_secret", "nope"),
            ("grant_type", "refresh_token"),
            ("refresh_token", fresh["refresh_token"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(json_of(resp).await["error"], "invalid_client");

    // Revoke: the access token and the refresh token stop working.
    let t = Tokens {
        access: fresh["access_token"].as_str().unwrap().to_owned(),
        refresh: fresh["refresh_token"].as_str().unwrap().to_owned(),
        open_id: fresh["open_id"].as_str().unwrap().to_owned(),
    };
    assert_eq!(h.creator_info(&t).await["error"]["code"], "ok");
    let resp = h
        .http
        .post(h.url("/v2/oauth/revoke/"))
        .form(&[
            ("client_key", CLIENT_KEY),
            ("client_secret", CLIENT_SECRET),
            ("token", &t.access),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = h
        .http
        .post(h.url("/v2/post/publish/creator_info/query/"))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(error_code(&json_of(resp).await), "access_token_invalid");
    let resp = refresh(t.refresh).await;
    assert_eq!(json_of(resp).await["error"], "invalid_grant");
}

#[tokio::test]
async fn authorize_checks_client_scopes_and_pkce() {
    let h = spawn().await;
    let resp = h
        .http
        .get(h.url("/v2/auth/authorize/"))
        .query(&[("client_key", "other"), ("redirect_uri", REDIRECT)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "an unknown client is not redirected");
    let q = h
        .code(&[("scope", "video.publish"), ("sandbox_user", "bob")])
        .await;
    assert_eq!(q["error"], "invalid_scope");
    assert_eq!(q["state"], "st4te");

    // PKCE (desktop): the verifier must match; base64url and hex challenges are both accepted.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let hex: String = {
        use sha2::Digest;
        sha2::Sha256::digest(verifier.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    for challenge in [s256_challenge(verifier), hex] {
        let q = h
            .code(&[
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .await;
        let exchange = |v: &'static str, code: String| {
            let h = &h;
            async move {
                h.token_call(&[
                    ("client_key", CLIENT_KEY),
                    ("client_secret", CLIENT_SECRET),
                    ("code", &code),
                    ("grant_type", "authorization_code"),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", v),
                ])
                .await
            }
        };
        let wrong = exchange("wrong-verifier", q["code"].clone()).await;
        assert_eq!(json_of(wrong).await["error"], "invalid_request");
        let q = h
            .code(&[
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .await;
        let ok = exchange(verifier, q["code"].clone()).await;
        assert_eq!(ok.status(), 200);
    }
}

#[tokio::test]
async fn user_info_fields_need_their_scopes() {
    let h = spawn().await;
    let t = h.connect("carol").await;
    let resp = h
        .http
        .get(h.url("/v2/user/info/"))
        .query(&[(
            "fields",
            "open_id,union_id,display_name,username,avatar_url",
        )])
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = json_of(resp).await;
    assert_eq!(body["error"]["code"], "ok");
    assert_eq!(body["data"]["user"]["open_id"], t.open_id.as_str());
    assert_eq!(body["data"]["user"]["username"], "carol");

    let basic_only = h
        .connect_with(&[("sandbox_user", "dave"), ("scope", "user.info.basic")])
        .await;
    let resp = h
        .http
        .get(h.url("/v2/user/info/"))
        .query(&[("fields", "open_id,username")])
        .bearer_auth(&basic_only.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(error_code(&json_of(resp).await), "scope_not_authorized");
    let resp = h
        .http
        .get(h.url("/v2/user/info/"))
        .bearer_auth(&basic_only.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(&json_of(resp).await), "invalid_params");
    // Publishing needs video.publish.
    let resp = h
        .api(
            &basic_only,
            "/v2/post/publish/video/init/",
            file_upload_body("SELF_ONLY", MB, MB),
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(error_code(&json_of(resp).await), "scope_not_authorized");
}

#[tokio::test]
async fn creator_info_reports_options_and_spam_errors_with_http_200() {
    let h = spawn().await;
    let public = h.connect("erin").await;
    let body = h.creator_info(&public).await;
    assert_eq!(body["error"]["code"], "ok");
    assert_eq!(
        body["data"]["privacy_level_options"],
        json!(["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"])
    );
    assert_eq!(body["data"]["creator_username"], "erin");
    assert_eq!(body["data"]["max_video_post_duration_sec"], 600);
    let private = h
        .connect_with(&[("sandbox_user", "frank"), ("sandbox_private", "true")])
        .await;
    assert_eq!(
        h.creator_info(&private).await["data"]["privacy_level_options"],
        json!(["FOLLOWER_OF_CREATOR", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"])
    );
    // A private account cannot post PUBLIC_TO_EVERYONE.
    let resp = h
        .api(
            &private,
            "/v2/post/publish/video/init/",
            json!({"post_info": {"privacy_level": "PUBLIC_TO_EVERYONE"},
                   "source_info": {"source": "PULL_FROM_URL", "video_url": "https://example.com/v.mp4"}}),
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        error_code(&json_of(resp).await),
        "privacy_level_option_mismatch"
    );

    // Banned: HTTP 200 on creator_info, 403 on init.
    let resp = h
        .http
        .post(h.url("/_sandbox/creators"))
        .json(&json!({"username": "erin", "banned": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = h.creator_info(&public).await;
    assert_eq!(error_code(&body), "spam_risk_user_banned_from_posting");
    let resp = h
        .api(
            &public,
            "/v2/post/publish/video/init/",
            file_upload_body("SELF_ONLY", MB, MB),
        )
        .await;
    assert_eq!(resp.status(), 403);

    // Injected codes come back at their documented status.
    h.error("creator_info", "spam_risk_too_many_posts").await;
    let body = h.creator_info(&private).await;
    assert_eq!(error_code(&body), "spam_risk_too_many_posts");
    h.error("video_init", "spam_risk_too_many_posts").await;
    let resp = h
        .api(
            &private,
            "/v2/post/publish/video/init/",
            file_upload_body("SELF_ONLY", MB, MB),
        )
        .await;
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn file_upload_in_chunks_publishes_once_with_the_exact_bytes() {
    let h = spawn().await;
    let t = h.connect("gina").await;
    let size = 11 * MB + 123;
    let chunk = 5 * MB;
    let bytes = video(size);
    // Chunk rules are enforced at init.
    for (chunk_size, total) in [(5 * MB, 3), (4 * MB, 2), (size, 1)] {
        let mut body = file_upload_body("PUBLIC_TO_EVERYONE", size, chunk_size);
        body["source_info"]["total_chunk_count"] = json!(total);
        let resp = h.api(&t, "/v2/post/publish/video/init/", body).await;
        if chunk_size == size {
            // 11 MB whole is within 5..64 MB: allowed.
            assert_eq!(resp.status(), 200);
        } else {
            assert_eq!(resp.status(), 400, "{chunk_size}/{total}");
            assert_eq!(error_code(&json_of(resp).await), "invalid_param");
        }
    }
    let resp = h
        .api(
            &t,
            "/v2/post/publish/video/init/",
            file_upload_body("PUBLIC_TO_EVERYONE", size, chunk),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = json_of(resp).await;
    assert_eq!(body["error"]["code"], "ok");
    let publish_id = body["data"]["publish_id"].as_str().unwrap().to_owned();
    assert!(publish_id.starts_with("v_pub_file~"));
    let upload_url = body["data"]["upload_url"].as_str().unwrap().to_owned();
    assert!(upload_url.contains("upload_id=") && upload_url.contains("upload_token="));

    assert_eq!(
        h.status(&t, &publish_id).await["status"],
        "PROCESSING_UPLOAD"
    );
    // Out of order: 416 with the progress.
    let resp = h
        .put(&upload_url, &bytes[chunk as usize..], chunk, size)
        .await;
    assert_eq!(resp.status(), 416);
    assert_eq!(resp.headers()["content-range"], format!("bytes */{size}"));
    // A first chunk of the wrong size: 400.
    let resp = h.put(&upload_url, &bytes[..MB as usize], 0, size).await;
    assert_eq!(resp.status(), 400);
    // Wrong content type: 400.
    let resp = h
        .http
        .put(&upload_url)
        .header("Content-Type", "image/png")
        .header("Content-Range", format!("bytes 0-{}/{size}", chunk - 1))
        .body(bytes[..chunk as usize].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Chunk 1: 206 with progress; chunk 2 (the larger last one): 201.
    let resp = h.put(&upload_url, &bytes[..chunk as usize], 0, size).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 0-{}/{size}", chunk - 1)
    );
    assert_eq!(h.status(&t, &publish_id).await["uploaded_bytes"], chunk);
    let resp = h.put(&upload_url, &bytes[..chunk as usize], 0, size).await;
    assert_eq!(resp.status(), 416, "a chunk is not accepted twice");
    let resp = h
        .put(&upload_url, &bytes[chunk as usize..], chunk, size)
        .await;
    assert_eq!(resp.status(), 201);
    let resp = h
        .put(&upload_url, &bytes[chunk as usize..], chunk, size)
        .await;
    assert_eq!(resp.status(), 416, "nothing after the last chunk");

    let data = h.wait_status(&t, &publish_id).await;
    assert_eq!(data["status"], "PUBLISH_COMPLETE");
    let post_ids = data["publicaly_available_post_id"].as_array().unwrap();
    assert_eq!(post_ids.len(), 1);
    let state = h.sandbox.tiktok_state();
    assert_eq!(state.posts.len(), 1);
    assert_eq!(state.posts[0].id, post_ids[0].as_u64().unwrap().to_string());
    assert_eq!(
        state.posts[0].url,
        format!("https://www.tiktok.com/@gina/video/{}", state.posts[0].id)
    );
    let publish = state
        .publishes
        .iter()
        .find(|p| p.publish_id == publish_id)
        .unwrap();
    assert_eq!(
        publish.uploaded_checksum,
        herald_sandbox::tiktok::checksum(&bytes)
    );
    assert!(publish.disable_duet && publish.is_aigc && !publish.disable_comment);
    let accepted: Vec<_> = state
        .upload_requests
        .iter()
        .filter(|r| r.accepted)
        .map(|r| (r.first_byte.unwrap(), r.last_byte.unwrap()))
        .collect();
    assert_eq!(accepted, vec![(0, chunk - 1), (chunk, size - 1)]);
    assert_eq!(state.upload_requests.len(), 7);
}

#[tokio::test]
async fn self_only_posts_have_no_public_id_and_moderation_delays_public_ones() {
    let h = spawn_with(|c| c.tiktok.moderation_delay = Duration::from_millis(600)).await;
    let t = h.connect("hank").await;
    let mut ids = Vec::new();
    for privacy in ["SELF_ONLY", "PUBLIC_TO_EVERYONE"] {
        let resp = h
            .api(
                &t,
                "/v2/post/publish/video/init/",
                json!({"post_info": {"privacy_level": privacy, "title": "pulled"},
                       "source_info": {"source": "PULL_FROM_URL", "video_url": "https://cdn.example.com/v.mp4"}}),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let body = json_of(resp).await;
        assert!(body["data"].get("upload_url").is_none());
        ids.push(body["data"]["publish_id"].as_str().unwrap().to_owned());
    }
    assert!(ids[0].starts_with("v_pub_url~"));
    assert_eq!(h.status(&t, &ids[0]).await["status"], "PROCESSING_DOWNLOAD");
    let private = h.wait_status(&t, &ids[0]).await;
    assert_eq!(private["status"], "PUBLISH_COMPLETE");
    assert_eq!(private["publicaly_available_post_id"], json!([]));
    let public = h.wait_status(&t, &ids[1]).await;
    assert_eq!(public["status"], "PUBLISH_COMPLETE");
    assert_eq!(
        public["publicaly_available_post_id"],
        json!([]),
        "still in moderation"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let public = h.status(&t, &ids[1]).await;
    assert_eq!(
        public["publicaly_available_post_id"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(h.sandbox.tiktok_state().posts.len(), 2);
}

#[tokio::test]
async fn inbox_uploads_allow_five_pending_shares() {
    let h = spawn().await;
    let t = h.connect("ivy").await;
    let pull = json!({"source_info": {"source": "PULL_FROM_URL", "video_url": "https://cdn.example.com/v.mp4"}});
    let mut ids = Vec::new();
    for _ in 0..5 {
        let resp = h
            .api(&t, "/v2/post/publish/inbox/video/init/", pull.clone())
            .await;
        ids.push(publish_id_of(resp).await);
    }
    assert!(ids[0].starts_with("v_inbox_url~"));
    assert_eq!(
        h.wait_status(&t, &ids[0]).await["status"],
        "SEND_TO_USER_INBOX"
    );
    let resp = h
        .api(&t, "/v2/post/publish/inbox/video/init/", pull.clone())
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        error_code(&json_of(resp).await),
        "spam_risk_too_many_pending_share"
    );
    // The creator finishes one draft: a share frees up. (Init calls are limited to 6 a minute;
    // this is the seventh, so it is refused for the rate instead.)
    let resp = h
        .http
        .post(h.url("/_sandbox/inbox/complete"))
        .json(&json!({"publish_id": ids[0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = h.api(&t, "/v2/post/publish/inbox/video/init/", pull).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(error_code(&json_of(resp).await), "rate_limit_exceeded");
    assert!(
        h.sandbox.tiktok_state().posts.is_empty(),
        "inbox uploads are not posts"
    );
}

#[tokio::test]
async fn request_limits_are_per_token_sliding_windows() {
    let h = spawn_with(|c| c.tiktok.rate_window = Duration::from_millis(1500)).await;
    let t = h.connect("jack").await;
    for i in 0..20 {
        let resp = h
            .http
            .post(h.url("/v2/post/publish/creator_info/query/"))
            .bearer_auth(&t.access)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
    }
    let resp = h
        .http
        .post(h.url("/v2/post/publish/creator_info/query/"))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let state = h.sandbox.tiktok_state();
    assert_eq!(state.rate_limit_refusals.len(), 1);
    assert_eq!(
        state.rate_limit_refusals[0].endpoint,
        TiktokEndpoint::CreatorInfo
    );
    // Other endpoints have their own budgets.
    let body = json!({"post_info": {"privacy_level": "SELF_ONLY"},
        "source_info": {"source": "PULL_FROM_URL", "video_url": "https://cdn.example.com/v.mp4"}});
    for _ in 0..6 {
        let resp = h
            .api(&t, "/v2/post/publish/video/init/", body.clone())
            .await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        h.api(&t, "/v2/post/publish/video/init/", body.clone())
            .await
            .status(),
        429
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        h.api(&t, "/v2/post/publish/video/init/", body)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn photo_posts_pull_up_to_35_images() {
    let h = spawn().await;
    let t = h.connect("kate").await;
    let images: Vec<String> = (0..36)
        .map(|i| format!("https://cdn.example.com/{i}.jpg"))
        .collect();
    let body = |n: usize, mode: &str| {
        json!({"media_type": "PHOTO", "post_mode": mode,
            "post_info": {"title": "photos", "description": "many", "privacy_level": "PUBLIC_TO_EVERYONE"},
            "source_info": {"source": "PULL_FROM_URL", "photo_images": images[..n], "photo_cover_index": 0}})
    };
    let resp = h
        .api(
            &t,
            "/v2/post/publish/content/init/",
            body(36, "DIRECT_POST"),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let resp = h
        .api(&t, "/v2/post/publish/content/init/", body(3, "DIRECT_POST"))
        .await;
    let id = publish_id_of(resp).await;
    assert!(id.starts_with("p_pub_url~"));
    let data = h.wait_status(&t, &id).await;
    assert_eq!(data["status"], "PUBLISH_COMPLETE");
    let state = h.sandbox.tiktok_state();
    assert_eq!(state.posts[0].media_type, "PHOTO");
    assert!(state.posts[0].url.contains("/photo/"));
    assert_eq!(state.publishes[0].photo_images.len(), 3);
    let resp = h
        .api(
            &t,
            "/v2/post/publish/content/init/",
            body(2, "MEDIA_UPLOAD"),
        )
        .await;
    let id = publish_id_of(resp).await;
    assert_eq!(h.wait_status(&t, &id).await["status"], "SEND_TO_USER_INBOX");
}

#[tokio::test]
async fn status_fetch_errors_fail_reasons_and_unverified_urls() {
    let h = spawn_with(|c| {
        c.tiktok.verified_url_prefixes = Some(vec!["https://cdn.example.com/".into()]);
    })
    .await;
    let t = h.connect("liam").await;
    let other = h.connect("mia").await;
    let resp = h
        .api(
            &t,
            "/v2/post/publish/status/fetch/",
            json!({"publish_id": "v_pub_url~v2.1"}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(&json_of(resp).await), "invalid_publish_id");
    let pull = |url: &str| {
        json!({"post_info": {"privacy_level": "SELF_ONLY"},
            "source_info": {"source": "PULL_FROM_URL", "video_url": url}})
    };
    let resp = h
        .api(
            &t,
            "/v2/post/publish/video/init/",
            pull("https://elsewhere.example.org/v.mp4"),
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(error_code(&json_of(resp).await), "url_ownership_unverified");

    let resp = h
        .http
        .post(h.url("/_sandbox/fail_reasons"))
        .json(&json!({"fail_reason": "duration_check_failed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = h
        .api(
            &t,
            "/v2/post/publish/video/init/",
            pull("https://cdn.example.com/v.mp4"),
        )
        .await;
    let id = publish_id_of(resp).await;
    let resp = h
        .api(
            &other,
            "/v2/post/publish/status/fetch/",
            json!({"publish_id": id}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        error_code(&json_of(resp).await),
        "token_not_authorized_for_specified_publish_id"
    );
    let data = h.wait_status(&t, &id).await;
    assert_eq!(data["status"], "FAILED");
    assert_eq!(data["fail_reason"], "duration_check_failed");
    // reject_media on a pull: video_pull_failed.
    h.fault("video_init", json!({"kind": "reject_media"}), 1)
        .await;
    let resp = h
        .api(
            &t,
            "/v2/post/publish/video/init/",
            pull("https://cdn.example.com/w.mp4"),
        )
        .await;
    let id = publish_id_of(resp).await;
    assert_eq!(
        h.wait_status(&t, &id).await["fail_reason"],
        "video_pull_failed"
    );
    assert!(h.sandbox.tiktok_state().posts.is_empty());
}

#[tokio::test]
async fn faults_expire_tokens_fail_chunks_and_expire_upload_urls() {
    let h = spawn_with(|c| c.tiktok.upload_url_lifetime = Duration::from_millis(800)).await;
    let t = h.connect("nina").await;
    h.fault(
        "creator_info",
        json!({"kind": "server_error", "status": 503}),
        1,
    )
    .await;
    let resp = h
        .http
        .post(h.url("/v2/post/publish/creator_info/query/"))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(error_code(&json_of(resp).await), "internal_error");

    let size = 6 * MB;
    let bytes = video(size);
    let resp = h
        .api(
            &t,
            "/v2/post/publish/video/init/",
            file_upload_body("SELF_ONLY", size, size),
        )
        .await;
    let body = json_of(resp).await;
    let upload_url = body["data"]["upload_url"].as_str().unwrap().to_owned();
    h.sandbox.inject_tiktok_fault(
        TiktokEndpoint::Upload,
        Fault::ServerError { status: 502 },
        1,
    );
    let resp = h.put(&upload_url, &bytes, 0, size).await;
    assert_eq!(resp.status(), 502);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let resp = h.put(&upload_url, &bytes, 0, size).await;
    assert_eq!(resp.status(), 403, "the upload_url expired");
    let resp = h
        .put(
            &upload_url.replace("upload_id=", "upload_id=9"),
            &bytes,
            0,
            size,
        )
        .await;
    assert_eq!(resp.status(), 404);
    let state = h.sandbox.tiktok_state();
    assert!(state.upload_requests.iter().all(|r| !r.accepted));
    assert_eq!(state.upload_requests[0].bytes_received, size);

    h.fault("any", json!({"kind": "expire_token"}), 1).await;
    let resp = h
        .api(
            &t,
            "/v2/post/publish/status/fetch/",
            json!({"publish_id": "x"}),
        )
        .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(error_code(&json_of(resp).await), "access_token_invalid");
    let resp = h
        .http
        .post(h.url("/v2/post/publish/creator_info/query/"))
        .bearer_auth(&t.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the token stays expired");
    // A refresh gives a working token again.
    let resp = h
        .token_call(&[
            ("client_key", CLIENT_KEY),
            ("client_secret", CLIENT_SECRET),
            ("grant_type", "refresh_token"),
            ("refresh_token", &t.refresh),
        ])
        .await;
    let fresh = json_of(resp).await;
    let t2 = Tokens {
        access: fresh["access_token"].as_str().unwrap().to_owned(),
        ..t.clone()
    };
    assert_eq!(h.creator_info(&t2).await["error"]["code"], "ok");
    assert!(h.sandbox.tiktok_state().tokens_issued.len() >= 2);
}

/// The Display API's video list: `video.list` is granted when asked for; the list holds the
/// caller's public videos only (past moderation), newest first, paged by `cursor`, with long
/// captions cut to 150; `max_count` is 1 to 20; it has its own per-token limit.
#[tokio::test]
async fn video_list_pages_the_public_videos_newest_first() {
    let h = spawn_with(|c| c.tiktok.video_list_limit = 6).await;
    let list_path = "/v2/video/list/?fields=id,create_time,video_description,share_url";
    let without = h.connect("lia").await;
    let resp = h.api(&without, list_path, json!({"max_count": 20})).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(error_code(&json_of(resp).await), "scope_not_authorized");

    let scopes = format!("{SCOPES},video.list");
    let q = h
        .code(&[("sandbox_user", "lia"), ("scope", scopes.as_str())])
        .await;
    assert_eq!(q["scopes"], scopes, "the consent grants video.list");
    let t = h
        .connect_with(&[("sandbox_user", "lia"), ("scope", scopes.as_str())])
        .await;
    let long = "a long caption ".repeat(20);
    let mut public = Vec::new();
    for (privacy, title) in [
        ("PUBLIC_TO_EVERYONE", "first"),
        ("SELF_ONLY", "private"),
        ("PUBLIC_TO_EVERYONE", "second"),
        ("PUBLIC_TO_EVERYONE", long.as_str()),
    ] {
        let resp = h
            .api(
                &t,
                "/v2/post/publish/video/init/",
                json!({"post_info": {"privacy_level": privacy, "title": title},
                       "source_info": {"source": "PULL_FROM_URL", "video_url": "https://cdn.example.com/v.mp4"}}),
            )
            .await;
        let id = publish_id_of(resp).await;
        let done = h.wait_status(&t, &id).await;
        assert_eq!(done["status"], "PUBLISH_COMPLETE");
        if privacy == "PUBLIC_TO_EVERYONE" {
            public.push(done["publicaly_available_post_id"][0].to_string());
        }
    }

    let resp = h.api(&t, list_path, json!({"max_count": 2})).await;
    assert_eq!(resp.status(), 200);
    let page = json_of(resp).await["data"].clone();
    let videos = page["videos"].as_array().unwrap();
    let ids: Vec<&str> = videos.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [public[2].as_str(), public[1].as_str()],
        "newest first"
    );
    assert_eq!(page["has_more"], true);
    let cut = videos[0]["video_description"].as_str().unwrap();
    assert_eq!(cut.chars().count(), 150);
    assert!(long.starts_with(cut));
    assert_eq!(
        videos[1]["share_url"],
        format!("https://www.tiktok.com/@lia/video/{}", public[1])
    );
    assert!(videos[1]["create_time"].as_i64().unwrap() > 1_700_000_000);
    assert!(
        videos[1].get("title").is_none(),
        "only the fields asked for"
    );

    let resp = h
        .api(
            &t,
            list_path,
            json!({"max_count": 2, "cursor": page["cursor"]}),
        )
        .await;
    let rest = json_of(resp).await["data"].clone();
    assert_eq!(rest["videos"].as_array().unwrap().len(), 1);
    assert_eq!(rest["videos"][0]["id"], public[0].as_str());
    assert_eq!(rest["videos"][0]["video_description"], "first");
    assert_eq!(rest["has_more"], false);

    for bad in [json!({"max_count": 0}), json!({"max_count": 21})] {
        let resp = h.api(&t, list_path, bad).await;
        assert_eq!(resp.status(), 400);
        assert_eq!(error_code(&json_of(resp).await), "invalid_params");
    }
    let resp = h.api(&t, "/v2/video/list/", json!({})).await;
    assert_eq!(error_code(&json_of(resp).await), "invalid_params");

    // Five calls so far with this token (invalid ones count too): the seventh is one too many.
    let resp = h.api(&t, list_path, json!({})).await;
    assert_eq!(resp.status(), 200);
    let resp = h.api(&t, list_path, json!({})).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(error_code(&json_of(resp).await), "rate_limit_exceeded");
    let refusals = h.sandbox.tiktok_state().rate_limit_refusals;
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].endpoint, TiktokEndpoint::VideoList);
}

/// The twin posts webhooks of its own, so it takes a webhook URL on this machine only: a
/// sandbox left reachable must not post to (or through) anything else.
#[tokio::test]
async fn the_webhook_url_must_be_on_this_machine() {
    let h = spawn().await;
    for refused in [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
        "https://example.com/hook",
    ] {
        let resp = h
            .http
            .put(h.url("/_sandbox/webhook"))
            .json(&json!({ "url": refused }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{refused}");
    }
    let resp = h
        .http
        .put(h.url("/_sandbox/webhook"))
        .json(&json!({ "url": "http://127.0.0.1:9/hook" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
