//! End-to-end tests of the YouTube twin over real HTTP.

use std::time::Duration;

use herald_sandbox::{
    Fault, Sandbox, SandboxConfig, YouTubeEndpoint, YouTubeQuotaModel, YouTubeStateSnapshot,
};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const CLIENT_ID: &str = "herald-sandbox-youtube.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "herald-sandbox-youtube-secret";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const UPLOAD: &str = "https://www.googleapis.com/auth/youtube.upload";
const READONLY: &str = "https://www.googleapis.com/auth/youtube.readonly";
const KIB256: usize = 256 * 1024;
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct Harness {
    sandbox: Sandbox,
    http: Client,
    base: String,
}

async fn spawn_with(configure: impl FnOnce(&mut SandboxConfig)) -> Harness {
    let mut config = SandboxConfig::default();
    config.youtube.processing_delay = Duration::from_millis(200);
    configure(&mut config);
    let sandbox = Sandbox::start("127.0.0.1:0", config).await.expect("start");
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = sandbox.youtube_base_url();
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

/// `size` deterministic bytes.
fn bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 % 251) as u8).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The reason of a Google error body.
fn reason(body: &Value) -> &str {
    body["error"]["errors"][0]["reason"].as_str().unwrap_or("")
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn state(&self) -> YouTubeStateSnapshot {
        self.sandbox.youtube_state()
    }

    /// The code from an auto-approved consent.
    async fn code(&self, user: &str, scopes: &str, extra: &[(&str, &str)]) -> String {
        let mut query = vec![
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", scopes),
            ("state", "st4te"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("sandbox_user", user),
        ];
        query.extend_from_slice(extra);
        let resp = self
            .http
            .get(self.url("/o/oauth2/v2/auth"))
            .query(&query)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND);
        let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(q["state"], "st4te");
        q.get("code")
            .cloned()
            .unwrap_or_else(|| panic!("no code: {q:?}"))
    }

    async fn token(&self, form: &[(&str, &str)]) -> Response {
        let mut form = form.to_vec();
        form.extend_from_slice(&[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)]);
        self.http
            .post(self.url("/token"))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    async fn exchange(&self, code: &str, verifier: &str) -> Response {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
        .await
    }

    /// `(access, refresh)` after a full offline consent.
    async fn connect_with(&self, user: &str, scopes: &str) -> (String, String) {
        let code = self
            .code(
                user,
                scopes,
                &[("access_type", "offline"), ("prompt", "consent")],
            )
            .await;
        let body = json_of(self.exchange(&code, VERIFIER).await).await;
        (
            body["access_token"].as_str().expect("access").to_owned(),
            body["refresh_token"].as_str().expect("refresh").to_owned(),
        )
    }

    async fn connect(&self, user: &str) -> String {
        self.connect_with(user, &format!("{UPLOAD} {READONLY}"))
            .await
            .0
    }

    async fn get(&self, token: &str, path: &str, query: &[(&str, &str)]) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .query(query)
            .send()
            .await
            .unwrap()
    }

    /// Opens a resumable session for `size` bytes; returns the session URI.
    async fn open(&self, token: &str, size: usize, title: &str) -> Response {
        self.http
            .post(self.url("/upload/youtube/v3/videos"))
            .bearer_auth(token)
            .query(&[("uploadType", "resumable"), ("part", "snippet,status")])
            .header("X-Upload-Content-Length", size.to_string())
            .header("X-Upload-Content-Type", "video/mp4")
            .json(&json!({
                "snippet": {"title": title, "description": "desc", "tags": ["a", "b"], "categoryId": "22"},
                "status": {"privacyStatus": "unlisted", "selfDeclaredMadeForKids": false},
            }))
            .send()
            .await
            .unwrap()
    }

    async fn session(&self, token: &str, size: usize, title: &str) -> String {
        let resp = self.open(token, size, title).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.headers()["location"].to_str().unwrap().to_owned()
    }

    async fn put(&self, session: &str, data: &[u8], first: usize, total: usize) -> Response {
        let last = first + data.len() - 1;
        self.http
            .put(session)
            .header("Content-Range", format!("bytes {first}-{last}/{total}"))
            .body(data.to_vec())
            .send()
            .await
            .unwrap()
    }

    async fn query(&self, session: &str, total: usize) -> Response {
        self.http
            .put(session)
            .header("Content-Range", format!("bytes */{total}"))
            .header("Content-Length", "0")
            .send()
            .await
            .unwrap()
    }

    /// Uploads `data` in chunks of `chunk` bytes; returns the 201 body.
    async fn upload(&self, token: &str, data: &[u8], chunk: usize, title: &str) -> Value {
        let session = self.session(token, data.len(), title).await;
        let mut first = 0;
        loop {
            let end = (first + chunk).min(data.len());
            let resp = self
                .put(&session, &data[first..end], first, data.len())
                .await;
            if end == data.len() {
                assert_eq!(resp.status(), StatusCode::CREATED);
                return json_of(resp).await;
            }
            assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
            assert_eq!(
                resp.headers()["range"],
                format!("bytes=0-{}", end - 1).as_str()
            );
            first = end;
        }
    }

    async fn video(&self, token: &str, id: &str) -> Value {
        let body = json_of(
            self.get(
                token,
                "/youtube/v3/videos",
                &[("part", "snippet,status,processingDetails"), ("id", id)],
            )
            .await,
        )
        .await;
        body["items"][0].clone()
    }

    async fn fault(&self, endpoint: YouTubeEndpoint, fault: Fault, times: u32) {
        self.sandbox.inject_youtube_fault(endpoint, fault, times);
    }
}

#[tokio::test]
async fn oauth_with_pkce_offline_access_refresh_without_rotation_and_revoke() {
    let h = spawn().await;
    let scopes = format!("{UPLOAD} {READONLY}");
    // First consent with access_type=offline: a refresh token.
    let code = h
        .code("alice", &scopes, &[("access_type", "offline")])
        .await;
    let resp = h.exchange(&code, VERIFIER).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let first = json_of(resp).await;
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 3599);
    assert_eq!(first["scope"], scopes.as_str());
    let refresh = first["refresh_token"].as_str().unwrap().to_owned();
    // The code is single-use.
    let again = json_of(h.exchange(&code, VERIFIER).await).await;
    assert_eq!(again["error"], "invalid_grant");

    // Consenting again without prompt=consent yields no refresh token; with it, one.
    let code = h
        .code("alice", &scopes, &[("access_type", "offline")])
        .await;
    let second = json_of(h.exchange(&code, VERIFIER).await).await;
    assert!(second.get("refresh_token").is_none(), "{second}");
    let code = h
        .code(
            "alice",
            &scopes,
            &[("access_type", "offline"), ("prompt", "consent")],
        )
        .await;
    assert!(json_of(h.exchange(&code, VERIFIER).await).await["refresh_token"].is_string());

    // A wrong verifier fails.
    let code = h.code("alice", &scopes, &[]).await;
    let bad = h
        .exchange(&code, "wrong-verifier-wrong-verifier-wrong-verifier-x")
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(bad).await["error"], "invalid_grant");

    // Refresh: a new access token, no refresh token; the old refresh token keeps working.
    for _ in 0..2 {
        let resp = h
            .token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body = json_of(resp).await;
        assert!(body["access_token"].as_str().unwrap().starts_with("ya29."));
        assert!(body.get("refresh_token").is_none(), "{body}");
    }
    // A wrong client secret is invalid_client (401).
    let resp = h
        .http
        .post(h.url("/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", CLIENT_ID),
            ("client_secret", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(resp).await["error"], "invalid_client");

    // Revoking the access token revokes the grant, refresh token included.
    let access = first["access_token"].as_str().unwrap();
    let resp = h
        .http
        .post(h.url("/revoke"))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = h
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = json_of(resp).await;
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "Token has been expired or revoked."
    );
    let resp = h
        .get(
            access,
            "/youtube/v3/channels",
            &[("part", "id"), ("mine", "true")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(reason(&json_of(resp).await), "authError");
    // Revoking again: 400 invalid_token.
    let resp = h
        .http
        .post(h.url("/revoke"))
        .form(&[("token", refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(resp).await["error"], "invalid_token");
}

#[tokio::test]
async fn authorize_errors_redirect_only_to_a_trusted_client() {
    let h = spawn().await;
    let resp = h
        .http
        .get(h.url("/o/oauth2/v2/auth"))
        .query(&[
            ("client_id", "someone-else"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", UPLOAD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = h
        .http
        .get(h.url("/o/oauth2/v2/auth"))
        .query(&[
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "https://www.googleapis.com/auth/drive"),
            ("state", "s"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp.headers()["location"].to_str().unwrap();
    assert!(location.contains("error=invalid_scope"), "{location}");
    assert!(location.contains("state=s"), "{location}");
}

#[tokio::test]
async fn channel_of_the_caller_scopes_and_accounts_without_a_channel() {
    let h = spawn().await;
    let token = h.connect("alice").await;
    let resp = h
        .get(
            &token,
            "/youtube/v3/channels",
            &[("part", "snippet,contentDetails"), ("mine", "true")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_of(resp).await;
    assert_eq!(body["kind"], "youtube#channelListResponse");
    let channel = &body["items"][0];
    let id = channel["id"].as_str().unwrap();
    assert!(id.starts_with("UC") && id.len() == 24, "{id}");
    assert_eq!(channel["snippet"]["title"], "alice");
    assert_eq!(channel["snippet"]["customUrl"], "@alice");
    assert_eq!(
        channel["contentDetails"]["relatedPlaylists"]["uploads"],
        format!("UU{}", &id[2..]).as_str()
    );

    // youtube.upload alone does not allow reading the channel.
    let (upload_only, _) = h.connect_with("bob", UPLOAD).await;
    let resp = h
        .get(
            &upload_only,
            "/youtube/v3/channels",
            &[("part", "id"), ("mine", "true")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(reason(&json_of(resp).await), "insufficientPermissions");

    // A Google account without a channel: no items, and uploads need a channel first.
    let none = h.connect("nochannel_carol").await;
    let body = json_of(
        h.get(
            &none,
            "/youtube/v3/channels",
            &[("part", "id"), ("mine", "true")],
        )
        .await,
    )
    .await;
    assert_eq!(body["pageInfo"]["totalResults"], 0);
    assert_eq!(body["items"], json!([]));
    let resp = h.open(&none, 1000, "t").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(reason(&json_of(resp).await), "youtubeSignupRequired");
}

#[tokio::test]
async fn resumable_upload_in_chunks_then_processing() {
    // Long enough that a loaded machine still sees the video processing first.
    let h = spawn_with(|c| c.youtube.processing_delay = Duration::from_secs(3)).await;
    let token = h.connect("alice").await;
    let data = bytes(3 * KIB256 + 1234);
    let video = h.upload(&token, &data, 2 * KIB256, "My first video").await;
    assert_eq!(video["kind"], "youtube#video");
    let id = video["id"].as_str().unwrap();
    assert_eq!(id.len(), 11);
    assert_eq!(video["snippet"]["title"], "My first video");
    assert_eq!(video["status"]["uploadStatus"], "uploaded");
    assert_eq!(video["status"]["privacyStatus"], "unlisted");

    let state = h.state();
    assert_eq!(state.videos.len(), 1);
    let v = &state.videos[0];
    assert_eq!(v.bytes, data.len() as u64);
    assert_eq!(v.sha256, sha256_hex(&data));
    assert_eq!(v.tags, vec!["a", "b"]);
    assert_eq!(v.self_declared_made_for_kids, Some(false));
    assert_eq!(v.url, format!("https://www.youtube.com/watch?v={id}"));
    let ranges: Vec<(u64, u64)> = state.received.iter().map(|r| (r.first, r.last)).collect();
    assert_eq!(
        ranges,
        vec![
            (0, 2 * KIB256 as u64 - 1),
            (2 * KIB256 as u64, data.len() as u64 - 1)
        ]
    );

    // Owner view: processing, then processed.
    let item = h.video(&token, id).await;
    assert_eq!(item["processingDetails"]["processingStatus"], "processing");
    assert_eq!(item["status"]["uploadStatus"], "uploaded");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let item = h.video(&token, id).await;
    assert_eq!(item["processingDetails"]["processingStatus"], "succeeded");
    assert_eq!(item["status"]["uploadStatus"], "processed");

    // The uploads playlist and search list it.
    let channel = json_of(
        h.get(
            &token,
            "/youtube/v3/channels",
            &[("part", "contentDetails"), ("mine", "true")],
        )
        .await,
    )
    .await;
    let uploads = channel["items"][0]["contentDetails"]["relatedPlaylists"]["uploads"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = json_of(
        h.get(
            &token,
            "/youtube/v3/playlistItems",
            &[
                ("part", "snippet"),
                ("playlistId", &uploads),
                ("maxResults", "50"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(list["items"][0]["snippet"]["resourceId"]["videoId"], id);
    let found = json_of(
        h.get(
            &token,
            "/youtube/v3/search",
            &[
                ("part", "snippet"),
                ("forMine", "true"),
                ("type", "video"),
                ("q", "first video"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(found["items"][0]["id"]["videoId"], id);
}

#[tokio::test]
async fn chunk_rules_status_queries_overlaps_and_completion_replay() {
    let h = spawn().await;
    let token = h.connect("alice").await;
    let data = bytes(2 * KIB256 + 10);
    let total = data.len();
    let session = h.session(&token, total, "rules").await;

    // Nothing yet: 308 without Range.
    let resp = h.query(&session, total).await;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert!(!resp.headers().contains_key("range"));
    // A non-final chunk that is not a multiple of 256 KiB is refused.
    let resp = h.put(&session, &data[..1000], 0, total).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(json_of(resp).await["error"]["message"]
        .as_str()
        .unwrap()
        .contains("262144"));
    // A gap is refused.
    let resp = h
        .put(&session, &data[KIB256..2 * KIB256], KIB256, total)
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // First chunk.
    let resp = h.put(&session, &data[..KIB256], 0, total).await;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    let resp = h.query(&session, total).await;
    assert_eq!(
        resp.headers()["range"],
        format!("bytes=0-{}", KIB256 - 1).as_str()
    );
    // An overlapping chunk (sent again from 0) is accepted; the held prefix is skipped.
    let resp = h.put(&session, &data[..2 * KIB256], 0, total).await;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        resp.headers()["range"],
        format!("bytes=0-{}", 2 * KIB256 - 1).as_str()
    );
    // A wrong total is refused.
    let resp = h
        .put(&session, &data[2 * KIB256..], 2 * KIB256, total + 1)
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // The final chunk completes the upload with 201.
    let resp = h
        .put(&session, &data[2 * KIB256..], 2 * KIB256, total)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let id = json_of(resp).await["id"].as_str().unwrap().to_owned();
    // A status query after completion answers with the video again.
    let resp = h.query(&session, total).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_of(resp).await["id"], id.as_str());

    let state = h.state();
    assert_eq!(state.videos[0].sha256, sha256_hex(&data));
    // The overlap shows in the received ranges: bytes 0..256 KiB arrived twice.
    let firsts: Vec<u64> = state.received.iter().map(|r| r.first).collect();
    assert_eq!(firsts, vec![0, 0, 2 * KIB256 as u64]);
    assert_eq!(state.sessions[0].confirmed, total as u64);
    assert_eq!(state.sessions[0].video_id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn a_connection_broken_mid_chunk_keeps_whole_256_kib_units() {
    let h = spawn().await;
    let token = h.connect("alice").await;
    let data = bytes(4 * KIB256);
    let total = data.len();
    let session = h.session(&token, total, "broken").await;
    // A 4 × 256 KiB chunk whose body stops after 1.5 × 256 KiB.
    let sent = data[..KIB256 + KIB256 / 2].to_vec();
    // The error comes a moment later, so the first bytes are on the wire before the client
    // drops the connection.
    let stream = futures::stream::unfold(0, move |step| {
        let sent = sent.clone();
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(sent), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Some((Err(std::io::Error::other("client crashed")), 2))
                }
                _ => None,
            }
        }
    });
    let result = h
        .http
        .put(&session)
        .header("Content-Range", format!("bytes 0-{}/{total}", total - 1))
        .header("Content-Length", total.to_string())
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    assert!(result.is_err(), "the request must fail");
    // The twin notices the broken connection asynchronously.
    let mut range = None;
    for _ in 0..50 {
        let resp = h.query(&session, total).await;
        if let Some(r) = resp.headers().get("range") {
            range = Some(r.to_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        range.as_deref(),
        Some(format!("bytes=0-{}", KIB256 - 1).as_str())
    );
    let state = h.state();
    assert_eq!(state.received.len(), 1);
    assert!(!state.received[0].complete);
    // Resuming from the confirmed offset completes the upload with the right bytes.
    let resp = h.put(&session, &data[KIB256..], KIB256, total).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(h.state().videos[0].sha256, sha256_hex(&data));
}

#[tokio::test]
async fn expired_sessions_answer_404() {
    let h = spawn().await;
    let token = h.connect("alice").await;
    let data = bytes(2 * KIB256);
    let session = h.session(&token, data.len(), "expiring").await;
    let resp = h.put(&session, &data[..KIB256], 0, data.len()).await;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(h.sandbox.expire_youtube_sessions(), 1);
    let resp = h.query(&session, data.len()).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(h.state().sessions[0].expired);
}

#[tokio::test]
async fn metadata_is_checked_when_the_session_opens() {
    let h = spawn().await;
    let token = h.connect("alice").await;
    let open = |snippet: Value, status: Value| {
        let h = &h;
        let token = token.clone();
        async move {
            let resp = h
                .http
                .post(h.url("/upload/youtube/v3/videos"))
                .bearer_auth(token)
                .query(&[("uploadType", "resumable"), ("part", "snippet,status")])
                .header("X-Upload-Content-Length", "1000")
                .header("X-Upload-Content-Type", "video/mp4")
                .json(&json!({"snippet": snippet, "status": status}))
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = open(json!({"title": "x".repeat(101)}), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reason(&body), "invalidTitle");
    assert_eq!(body["error"]["errors"][0]["domain"], "youtube.video");
    let (_, body) = open(json!({"title": "a <b>"}), json!({})).await;
    assert_eq!(reason(&body), "invalidTitle");
    let (_, body) = open(
        json!({"title": "ok", "description": "é".repeat(2501)}),
        json!({}),
    )
    .await;
    assert_eq!(reason(&body), "invalidDescription");
    let (_, body) = open(json!({"title": "ok", "categoryId": "999"}), json!({})).await;
    assert_eq!(reason(&body), "invalidCategoryId");
    let (_, body) = open(
        json!({"title": "ok"}),
        json!({"privacyStatus": "public", "publishAt": "2999-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(reason(&body), "invalidPublishAt");
    let (status, _) = open(json!({"title": "ok"}), json!({"privacyStatus": "private"})).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn legacy_quota_refuses_the_insert_that_does_not_fit_until_midnight_pacific() {
    let h = spawn_with(|c| c.youtube.daily_units = 3300).await;
    let token = h.connect("alice").await;
    for i in 0..2 {
        let resp = h.open(&token, 1000, &format!("v{i}")).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = h.open(&token, 1000, "v3").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body = json_of(resp).await;
    assert_eq!(body["error"]["code"], 403);
    assert_eq!(body["error"]["errors"][0]["domain"], "youtube.quota");
    assert_eq!(reason(&body), "quotaExceeded");
    // A refused call is not charged; a 1-unit list still fits.
    let quota = h.state().quota;
    assert_eq!(
        (quota.units_used, quota.inserts, quota.refused),
        (3200, 2, 1)
    );
    let resp = h
        .get(&token, "/youtube/v3/videos", &[("part", "id"), ("id", "x")])
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    // The test control sets the day's usage.
    h.sandbox.set_youtube_quota_usage(Some(10_000), None);
    let resp = h
        .get(&token, "/youtube/v3/videos", &[("part", "id"), ("id", "x")])
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bucket_quota_counts_inserts_apart() {
    let h = spawn_with(|c| {
        c.youtube.quota_model = YouTubeQuotaModel::Buckets {
            inserts_per_day: 1,
            searches_per_day: 100,
        };
        c.youtube.daily_units = 5;
    })
    .await;
    let token = h.connect("alice").await;
    assert_eq!(h.open(&token, 1000, "one").await.status(), StatusCode::OK);
    let resp = h.open(&token, 1000, "two").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(reason(&json_of(resp).await), "quotaExceeded");
    let q = h.state().quota;
    // The insert bucket is apart from the units pool.
    assert_eq!((q.inserts, q.units_used), (1, 0));
}

#[tokio::test]
async fn channel_upload_limit_is_upload_limit_exceeded() {
    let h = spawn_with(|c| c.youtube.channel_upload_limit = 1).await;
    let token = h.connect("alice").await;
    h.upload(&token, &bytes(1000), KIB256, "only one").await;
    let resp = h.open(&token, 1000, "second").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(reason(&json_of(resp).await), "uploadLimitExceeded");
}

#[tokio::test]
async fn processing_failure_rejection_and_slow_processing() {
    let h = spawn().await;
    let token = h.connect("alice").await;
    h.fault(YouTubeEndpoint::InsertVideo, Fault::RejectMedia, 1)
        .await;
    let failed = h.upload(&token, &bytes(1000), KIB256, "fails").await;
    h.fault(
        YouTubeEndpoint::InsertVideo,
        Fault::ContentRejected {
            detail: "duplicate".into(),
        },
        1,
    )
    .await;
    let rejected = h.upload(&token, &bytes(1001), KIB256, "rejected").await;
    h.fault(
        YouTubeEndpoint::InsertVideo,
        Fault::SlowProcessing { secs: 30.0 },
        1,
    )
    .await;
    let slow = h.upload(&token, &bytes(1002), KIB256, "slow").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let item = h.video(&token, failed["id"].as_str().unwrap()).await;
    assert_eq!(item["status"]["uploadStatus"], "failed");
    assert_eq!(item["status"]["failureReason"], "codec");
    assert_eq!(item["processingDetails"]["processingStatus"], "failed");
    assert_eq!(
        item["processingDetails"]["processingFailureReason"],
        "transcodeFailed"
    );
    let item = h.video(&token, rejected["id"].as_str().unwrap()).await;
    assert_eq!(item["status"]["uploadStatus"], "rejected");
    assert_eq!(item["status"]["rejectionReason"], "duplicate");
    let item = h.video(&token, slow["id"].as_str().unwrap()).await;
    assert_eq!(item["processingDetails"]["processingStatus"], "processing");
    assert!(
        item["processingDetails"]["processingProgress"]["timeLeftMs"]
            .as_u64()
            .unwrap()
            > 1000
    );
}

#[tokio::test]
async fn thumbnails_set_checks_type_size_and_owner() {
    let h = spawn().await;
    let token = h.connect("alice").await;
    let video = h.upload(&token, &bytes(1000), KIB256, "thumb").await;
    let id = video["id"].as_str().unwrap();
    let set = |mime: &'static str, size: usize, video: String, token: String| {
        let h = &h;
        async move {
            h.http
                .post(h.url("/upload/youtube/v3/thumbnails/set"))
                .bearer_auth(token)
                .query(&[("videoId", video.as_str())])
                .header("Content-Type", mime)
                .body(vec![1u8; size])
                .send()
                .await
                .unwrap()
        }
    };
    let resp = set("image/png", 5000, id.into(), token.clone()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_of(resp).await;
    assert_eq!(body["kind"], "youtube#thumbnailSetResponse");
    assert!(body["items"][0]["high"]["url"]
        .as_str()
        .unwrap()
        .contains(id));
    assert_eq!(h.state().videos[0].thumbnail_bytes, Some(5000));
    let resp = set("image/gif", 5000, id.into(), token.clone()).await;
    assert_eq!(reason(&json_of(resp).await), "invalidImage");
    let resp = set("image/jpeg", 2 * 1024 * 1024 + 1, id.into(), token.clone()).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = set("image/jpeg", 10, "nosuchvideo".into(), token.clone()).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(reason(&json_of(resp).await), "videoNotFound");
    let other = h.connect("mallory").await;
    let resp = set("image/jpeg", 10, id.into(), other).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.state().quota.units_used, 1600 + 50 * 5);
}

#[tokio::test]
async fn faults_rate_limit_server_error_expired_token_and_timeout_after_success() {
    let h = spawn().await;
    let token = h.connect("alice").await;
    h.fault(
        YouTubeEndpoint::Channels,
        Fault::RateLimited {
            retry_after_secs: 7,
        },
        1,
    )
    .await;
    let resp = h
        .get(
            &token,
            "/youtube/v3/channels",
            &[("part", "id"), ("mine", "true")],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(reason(&json_of(resp).await), "rateLimitExceeded");

    h.fault(
        YouTubeEndpoint::UploadChunk,
        Fault::ServerError { status: 503 },
        1,
    )
    .await;
    let data = bytes(1000);
    let session = h.session(&token, data.len(), "faulty").await;
    let resp = h.put(&session, &data, 0, data.len()).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reason(&json_of(resp).await), "backendError");
    assert!(
        h.state().received.is_empty(),
        "a 503 chunk delivers nothing"
    );

    // Timeout after success: the chunk is kept although the client gives up waiting.
    h.fault(
        YouTubeEndpoint::UploadChunk,
        Fault::TimeoutAfterSuccess { secs: 2.0 },
        1,
    )
    .await;
    let quick = Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let result = quick
        .put(&session)
        .header("Content-Range", format!("bytes 0-999/{}", data.len()))
        .body(data.clone())
        .send()
        .await;
    assert!(result.is_err());
    let resp = h.query(&session, data.len()).await;
    assert_eq!(resp.status(), StatusCode::OK, "the upload completed");
    assert_eq!(h.state().videos.len(), 1);

    h.fault(YouTubeEndpoint::ListVideos, Fault::ExpireToken, 1)
        .await;
    let resp = h
        .get(&token, "/youtube/v3/videos", &[("part", "id"), ("id", "x")])
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = h
        .get(&token, "/youtube/v3/videos", &[("part", "id"), ("id", "x")])
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "expired for good");
}

#[tokio::test]
async fn control_routes_over_http() {
    let h = spawn().await;
    let resp = h
        .http
        .post(h.url("/_sandbox/faults"))
        .json(&json!({"endpoint": "insert_video", "fault": {"kind": "reject_media"}, "times": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let faults = json_of(h.http.get(h.url("/_sandbox/faults")).send().await.unwrap()).await;
    assert_eq!(faults["faults"][0]["remaining"], 2);
    let cleared = json_of(
        h.http
            .delete(h.url("/_sandbox/faults"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(cleared["cleared"], 1);
    let quota = json_of(
        h.http
            .post(h.url("/_sandbox/quota"))
            .json(&json!({"units_used": 9000}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(quota["units_used"], 9000);
    assert_eq!(quota["model"]["model"], "legacy");
    let state = json_of(h.http.get(h.url("/_sandbox/state")).send().await.unwrap()).await;
    assert_eq!(state["quota"]["units_used"], 9000);
    assert!(state["requests"].as_array().unwrap().is_empty());
}
