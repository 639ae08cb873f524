//! End-to-end tests of the LinkedIn twin over real HTTP.

use std::collections::HashMap;
use std::time::Duration;

use herald_sandbox::linkedin::little_escape;
use herald_sandbox::{Fault, LinkedInConfig, LinkedInEndpoint, Sandbox, SandboxConfig};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

const CLIENT_ID: &str = "herald-sandbox-linkedin";
const CLIENT_SECRET: &str = "herald-sandbox-linkedin-secret";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const ALL_SCOPES: &str = "openid profile email w_member_social r_member_social \
                          w_organization_social r_organization_social rw_organization_admin";

struct Harness {
    sandbox: Sandbox,
    http: Client,
    base: String,
    version: String,
}

async fn spawn_with(config: LinkedInConfig) -> Harness {
    let sandbox = Sandbox::start(
        "127.0.0.1:0",
        SandboxConfig {
            linkedin: config,
            ..SandboxConfig::default()
        },
    )
    .await
    .expect("start");
    // A twin that stops answering fails the test instead of hanging it.
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = sandbox.linkedin_base_url();
    Harness {
        sandbox,
        http,
        base,
        version: chrono::Utc::now().format("%Y%m").to_string(),
    }
}

async fn spawn() -> Harness {
    spawn_with(LinkedInConfig {
        video_part_size: 100_000,
        video_min_bytes: 1,
        posts_per_day: 5,
        ..LinkedInConfig::default()
    })
    .await
}

async fn json_of(resp: Response) -> Value {
    resp.json().await.expect("json body")
}

struct Account {
    urn: String,
    token: String,
    refresh: Option<String>,
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request to a versioned `/rest/` route with both required headers.
    fn rest(&self, method: reqwest::Method, path: &str, token: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(token)
            .header("LinkedIn-Version", &self.version)
            .header("X-Restli-Protocol-Version", "2.0.0")
    }

    async fn authorize(&self, query: &[(&str, &str)]) -> HashMap<String, String> {
        let resp = self
            .http
            .get(self.url("/oauth/v2/authorization"))
            .query(query)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND);
        let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(REDIRECT));
        location.query_pairs().into_owned().collect()
    }

    async fn code(&self, user: &str, scopes: &str) -> String {
        let q = self
            .authorize(&[
                ("response_type", "code"),
                ("client_id", CLIENT_ID),
                ("redirect_uri", REDIRECT),
                ("state", "st4te"),
                ("scope", scopes),
                ("sandbox_user", user),
            ])
            .await;
        assert_eq!(q["state"], "st4te");
        q["code"].clone()
    }

    async fn token_call(&self, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url("/oauth/v2/accessToken"))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn connect_with(&self, user: &str, scopes: &str) -> Account {
        let code = self.code(user, scopes).await;
        let resp = self
            .token_call(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
            ])
            .await;
        assert_eq!(resp.status(), 200);
        let body = json_of(resp).await;
        assert_eq!(body["expires_in"], 60 * 86_400);
        let token = body["access_token"].as_str().unwrap().to_owned();
        let me = json_of(
            self.http
                .get(self.url("/v2/userinfo"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        Account {
            urn: format!("urn:li:person:{}", me["sub"].as_str().unwrap()),
            token,
            refresh: body["refresh_token"].as_str().map(str::to_owned),
        }
    }

    async fn connect(&self, user: &str) -> Account {
        self.connect_with(user, ALL_SCOPES).await
    }

    async fn post(&self, a: &Account, body: Value) -> Response {
        self.rest(reqwest::Method::POST, "/rest/posts", &a.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn upload_image(&self, a: &Account, owner: &str, bytes: usize) -> String {
        let init = self
            .rest(
                reqwest::Method::POST,
                "/rest/images?action=initializeUpload",
                &a.token,
            )
            .json(&json!({"initializeUploadRequest": {"owner": owner}}))
            .send()
            .await
            .unwrap();
        assert_eq!(init.status(), 200);
        let value = json_of(init).await["value"].clone();
        let put = self
            .http
            .put(value["uploadUrl"].as_str().unwrap())
            .bearer_auth(&a.token)
            .body(vec![7u8; bytes])
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201);
        value["image"].as_str().unwrap().to_owned()
    }
}

fn text_post(author: &str, commentary: &str) -> Value {
    json!({
        "author": author,
        "commentary": commentary,
        "visibility": "PUBLIC",
        "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [], "thirdPartyDistributionChannels": []},
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": false,
    })
}

#[tokio::test]
async fn oauth_issues_60_day_tokens_and_a_fixed_lifetime_refresh_token() {
    let h = spawn().await;
    let a = h.connect("li_alice").await;
    assert!(a.urn.starts_with("urn:li:person:"));
    let refresh = a.refresh.clone().expect("MDP apps get refresh tokens");

    let resp = h
        .token_call(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .await;
    assert_eq!(resp.status(), 200);
    let body = json_of(resp).await;
    assert_ne!(body["access_token"], a.token.as_str());
    // The refresh token does not rotate and its lifetime does not restart.
    assert_eq!(body["refresh_token"], refresh.as_str());
    assert!(body["refresh_token_expires_in"].as_u64().unwrap() <= 365 * 86_400);
    assert_eq!(body["scope"].as_str().unwrap().split(',').count(), 8);

    // The client secret belongs in the body; Basic auth alone is refused.
    let basic = h
        .http
        .post(h.url("/oauth/v2/accessToken"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 400);
    assert_eq!(json_of(basic).await["error"], "invalid_request");

    // Codes are single-use.
    let code = h.code("li_alice", "openid profile").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    assert_eq!(h.token_call(&form).await.status(), 200);
    let again = h.token_call(&form).await;
    assert_eq!(again.status(), 400);
    assert_eq!(json_of(again).await["error"], "invalid_request");

    // State is always required, and unknown scopes fail at consent.
    let q = h
        .authorize(&[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
        ])
        .await;
    assert_eq!(q["error"], "invalid_request");
    let q = h
        .authorize(&[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("state", "s"),
            ("scope", "openid r_everything"),
        ])
        .await;
    assert_eq!(q["error"], "unauthorized_scope_error");
    assert_eq!(q["state"], "s");

    // Revocation ends the grant.
    let resp = h
        .http
        .post(h.url("/oauth/v2/revoke"))
        .form(&[
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("token", &a.token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let me = h
        .http
        .get(h.url("/v2/userinfo"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    assert_eq!(json_of(me).await["serviceErrorCode"], 65601);
    h.sandbox.stop().await;
}

#[tokio::test]
async fn apps_without_refresh_tokens_get_none() {
    let h = spawn_with(LinkedInConfig {
        refresh_tokens: false,
        ..LinkedInConfig::default()
    })
    .await;
    let a = h.connect("li_nomdp").await;
    assert!(a.refresh.is_none());
    h.sandbox.stop().await;
}

#[tokio::test]
async fn rest_calls_need_an_active_version_and_the_restli_header() {
    let h = spawn().await;
    let a = h.connect("li_version").await;
    let body = text_post(&a.urn, "versions");
    let missing = h
        .http
        .post(h.url("/rest/posts"))
        .bearer_auth(&a.token)
        .header("X-Restli-Protocol-Version", "2.0.0")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    assert_eq!(json_of(missing).await["code"], "VERSION_MISSING");

    let sunset = h
        .http
        .post(h.url("/rest/posts"))
        .bearer_auth(&a.token)
        .header("LinkedIn-Version", "202301")
        .header("X-Restli-Protocol-Version", "2.0.0")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(sunset.status(), 426);
    let err = json_of(sunset).await;
    assert_eq!(err["code"], "NONEXISTENT_VERSION");
    assert_eq!(err["message"], "Requested version 20230101 is not active");

    let no_restli = h
        .http
        .post(h.url("/rest/posts"))
        .bearer_auth(&a.token)
        .header("LinkedIn-Version", &h.version)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_restli.status(), 400);
    assert!(h.sandbox.linkedin_state().posts.is_empty());
    h.sandbox.stop().await;
}

#[tokio::test]
async fn text_article_image_and_multi_image_posts() {
    let h = spawn().await;
    let a = h.connect("li_poster").await;

    let text = "Launch (beta) [v2] #rust @home";
    let resp = h.post(&a, text_post(&a.urn, &little_escape(text))).await;
    assert_eq!(resp.status(), 201);
    let urn = resp.headers()["x-restli-id"].to_str().unwrap().to_owned();
    assert!(urn.starts_with("urn:li:share:"));
    assert_eq!(resp.content_length(), Some(0));

    // Unescaped reserved characters silently cut the text.
    let resp = h
        .post(&a, text_post(&a.urn, "Cut here (this part is lost)"))
        .await;
    assert_eq!(resp.status(), 201);

    let mut article = text_post(&a.urn, "read this");
    article["content"] =
        json!({"article": {"source": "https://example.com/a", "title": "A title"}});
    assert_eq!(h.post(&a, article).await.status(), 201);
    let mut untitled = text_post(&a.urn, "no title");
    untitled["content"] = json!({"article": {"source": "https://example.com/b"}});
    assert_eq!(h.post(&a, untitled).await.status(), 422);

    let image = h.upload_image(&a, &a.urn, 2048).await;
    let status = json_of(
        h.rest(
            reqwest::Method::GET,
            &format!("/rest/images/{}", urlencode(&image)),
            &a.token,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status["status"], "AVAILABLE");
    let mut single = text_post(&a.urn, "an image");
    single["content"] = json!({"media": {"id": image, "altText": "alt"}});
    assert_eq!(h.post(&a, single).await.status(), 201);

    let second = h.upload_image(&a, &a.urn, 1024).await;
    let mut multi = text_post(&a.urn, "two images");
    multi["content"] = json!({"multiImage": {"images": [{"id": image, "altText": "a"}, {"id": second, "altText": "b"}]}});
    assert_eq!(h.post(&a, multi).await.status(), 201);

    let state = h.sandbox.linkedin_state();
    let kinds: Vec<&str> = state
        .posts
        .iter()
        .map(|p| p.content_kind.as_str())
        .collect();
    assert_eq!(kinds, ["none", "none", "article", "image", "multi_image"]);
    assert_eq!(state.posts[0].text, text);
    assert!(!state.posts[0].truncated);
    assert_eq!(state.posts[1].text, "Cut here ");
    assert!(state.posts[1].truncated);
    assert_eq!(state.posts[2].content_title.as_deref(), Some("A title"));
    assert_eq!(state.posts[0].linkedin_version, h.version);

    // The same post again is a duplicate, naming the first one.
    let dup = h.post(&a, text_post(&a.urn, &little_escape(text))).await;
    assert_eq!(dup.status(), 422);
    let err = json_of(dup).await;
    assert_eq!(
        err["errorDetails"]["inputErrors"][0]["code"],
        "DUPLICATE_POST"
    );
    assert!(err["message"].as_str().unwrap().ends_with(&urn));

    // Unknown fields are refused with Rest.li's message.
    let mut odd = text_post(&a.urn, "odd");
    odd["text"] = json!("x");
    let resp = h.post(&a, odd).await;
    assert_eq!(resp.status(), 422);
    assert!(json_of(resp).await["message"]
        .as_str()
        .unwrap()
        .contains("ERROR :: /text :: unrecognized field"));

    // Listing needs r_member_social and returns newest first.
    let list = json_of(
        h.rest(
            reqwest::Method::GET,
            &format!("/rest/posts?q=author&author={}&count=2", urlencode(&a.urn)),
            &a.token,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(list["paging"]["total"], 5);
    assert_eq!(list["elements"][0]["commentary"], "two images");
    h.sandbox.stop().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn video_upload_in_byte_ranges_then_processing_then_post() {
    let h = spawn().await;
    let a = h.connect("li_video").await;
    let size = 250_000u64;
    let init = json_of(
        h.rest(
            reqwest::Method::POST,
            "/rest/videos?action=initializeUpload",
            &a.token,
        )
        .json(&json!({"initializeUploadRequest": {
            "owner": a.urn, "fileSizeBytes": size, "uploadCaptions": false, "uploadThumbnail": false,
        }}))
        .send()
        .await
        .unwrap(),
    )
    .await["value"]
        .clone();
    let video = init["video"].as_str().unwrap().to_owned();
    let parts = init["uploadInstructions"].as_array().unwrap().clone();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[2]["firstByte"], 200_000);
    assert_eq!(parts[2]["lastByte"], size - 1);
    let token = init["uploadToken"].as_str().unwrap().to_owned();
    assert!(!token.is_empty());

    // A part of the wrong size is refused.
    let wrong = h
        .http
        .put(parts[0]["uploadUrl"].as_str().unwrap())
        .body(vec![0u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);

    let mut etags = Vec::new();
    for p in &parts {
        let len = p["lastByte"].as_u64().unwrap() - p["firstByte"].as_u64().unwrap() + 1;
        let resp = h
            .http
            .put(p["uploadUrl"].as_str().unwrap())
            .header("Content-Type", "application/octet-stream")
            .body(vec![1u8; len as usize])
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
        etags.push(resp.headers()["etag"].to_str().unwrap().to_owned());
    }
    let finalize = |ids: Vec<String>| {
        h.rest(
            reqwest::Method::POST,
            "/rest/videos?action=finalizeUpload",
            &a.token,
        )
        .json(&json!({"finalizeUploadRequest": {
            "video": video, "uploadToken": token, "uploadedPartIds": ids,
        }}))
        .send()
    };
    let mut reversed = etags.clone();
    reversed.reverse();
    assert_eq!(finalize(reversed).await.unwrap().status(), 400);
    assert_eq!(finalize(etags).await.unwrap().status(), 200);

    let status_url = format!("/rest/videos/{}", urlencode(&video));
    let status = || async {
        json_of(
            h.rest(reqwest::Method::GET, &status_url, &a.token)
                .send()
                .await
                .unwrap(),
        )
        .await["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(status().await, "PROCESSING");
    let mut early = text_post(&a.urn, "video too early");
    early["content"] = json!({"media": {"id": video, "title": "clip"}});
    assert_eq!(h.post(&a, early).await.status(), 422);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status().await, "AVAILABLE");

    let mut post = text_post(&a.urn, "a video");
    post["content"] = json!({"media": {"id": video, "title": "clip"}});
    let resp = h.post(&a, post).await;
    assert_eq!(resp.status(), 201);
    assert!(resp.headers()["x-restli-id"]
        .to_str()
        .unwrap()
        .starts_with("urn:li:ugcPost:"));
    let state = h.sandbox.linkedin_state();
    assert_eq!(state.videos[0].parts_uploaded, 3);
    assert_eq!(state.posts[0].content_title.as_deref(), Some("clip"));
    h.sandbox.stop().await;
}

/// An organisation's video, from initializeUpload to a post: finalizeUpload checks the
/// organisation role under the state lock it holds, which once took that lock a second time
/// and blocked the worker, and every twin it served, for good.
#[tokio::test]
async fn an_organisation_uploads_finalizes_and_posts_a_video() {
    let h = spawn().await;
    let a = h.connect("herald_sandbox").await;
    let org = "urn:li:organization:10000001";
    let size = 150_000u64;
    let init = h
        .rest(
            reqwest::Method::POST,
            "/rest/videos?action=initializeUpload",
            &a.token,
        )
        .json(&json!({"initializeUploadRequest": {
            "owner": org, "fileSizeBytes": size, "uploadCaptions": false, "uploadThumbnail": false,
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    let init = json_of(init).await["value"].clone();
    let video = init["video"].as_str().unwrap().to_owned();
    let mut etags = Vec::new();
    for p in init["uploadInstructions"].as_array().unwrap() {
        let len = p["lastByte"].as_u64().unwrap() - p["firstByte"].as_u64().unwrap() + 1;
        let resp = h
            .http
            .put(p["uploadUrl"].as_str().unwrap())
            .body(vec![1u8; len as usize])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        etags.push(resp.headers()["etag"].to_str().unwrap().to_owned());
    }
    let finalize = h
        .rest(
            reqwest::Method::POST,
            "/rest/videos?action=finalizeUpload",
            &a.token,
        )
        .json(&json!({"finalizeUploadRequest": {
            "video": video, "uploadToken": init["uploadToken"], "uploadedPartIds": etags,
        }}))
        .send()
        .await
        .expect("finalizeUpload answers");
    assert_eq!(finalize.status(), 200);

    // The status is read until processing ends, as the adapter does.
    let status_url = format!("/rest/videos/{}", urlencode(&video));
    let mut status = String::new();
    for _ in 0..200 {
        let resp = h
            .rest(reqwest::Method::GET, &status_url, &a.token)
            .send()
            .await
            .expect("the video status answers");
        assert_eq!(resp.status(), 200);
        let body = json_of(resp).await;
        assert_eq!(body["owner"], org);
        status = body["status"].as_str().unwrap().to_owned();
        if status != "PROCESSING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "AVAILABLE");

    let mut post = text_post(org, "an organisation's video");
    post["content"] = json!({"media": {"id": video, "title": "clip"}});
    let resp = h.post(&a, post).await;
    assert_eq!(resp.status(), 201);
    let state = h.sandbox.linkedin_state();
    assert_eq!(state.posts.len(), 1);
    assert_eq!(state.posts[0].author, org);
    assert_eq!(state.posts[0].media, vec![video]);
    assert_eq!(state.videos[0].owner, org);

    // A member with no role there may not read it.
    let other = h.connect("li_outsider").await;
    let resp = h
        .rest(reqwest::Method::GET, &status_url, &other.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    h.sandbox.stop().await;
}

#[tokio::test]
async fn organisations_the_member_may_post_for() {
    let h = spawn().await;
    let a = h.connect("herald_sandbox").await;
    let acls = json_of(
        h.rest(
            reqwest::Method::GET,
            "/rest/organizationAcls?q=roleAssignee&state=APPROVED",
            &a.token,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    let roles: Vec<(&str, &str)> = acls["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["organization"].as_str().unwrap(),
                e["role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("urn:li:organization:10000001", "ADMINISTRATOR"),
            ("urn:li:organization:10000002", "ANALYST"),
            ("urn:li:organization:10000003", "CONTENT_ADMINISTRATOR"),
        ]
    );
    let org = json_of(
        h.rest(
            reqwest::Method::GET,
            "/rest/organizations/10000001",
            &a.token,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(org["localizedName"], "Herald Sandbox Inc.");

    let org_urn = "urn:li:organization:10000001";
    let image = h.upload_image(&a, org_urn, 500).await;
    let mut post = text_post(org_urn, "from the page");
    post["content"] = json!({"media": {"id": image}});
    assert_eq!(h.post(&a, post).await.status(), 201);
    // An analyst cannot post; CONNECTIONS is for members only.
    let resp = h
        .post(&a, text_post("urn:li:organization:10000002", "nope"))
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(json_of(resp).await["code"], "ACCESS_DENIED");
    let mut connections = text_post("urn:li:organization:10000003", "connections");
    connections["visibility"] = json!("CONNECTIONS");
    assert_eq!(h.post(&a, connections).await.status(), 422);

    // Someone else holds no roles.
    let b = h.connect("li_nobody").await;
    let acls = json_of(
        h.rest(
            reqwest::Method::GET,
            "/rest/organizationAcls?q=roleAssignee",
            &b.token,
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(acls["paging"]["total"], 0);
    // Without organisation scopes the finder is refused.
    let c = h
        .connect_with("li_member", "openid profile w_member_social")
        .await;
    let resp = h
        .rest(
            reqwest::Method::GET,
            "/rest/organizationAcls?q=roleAssignee",
            &c.token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    h.sandbox.stop().await;
}

#[tokio::test]
async fn daily_post_limit_answers_429_without_retry_headers() {
    let h = spawn().await;
    let a = h.connect("li_busy").await;
    for i in 0..5 {
        let resp = h.post(&a, text_post(&a.urn, &format!("post {i}"))).await;
        assert_eq!(resp.status(), 201);
    }
    let resp = h.post(&a, text_post(&a.urn, "one too many")).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_none());
    let err = json_of(resp).await;
    assert!(err["message"]
        .as_str()
        .unwrap()
        .contains("MEMBER DAY limit"));
    h.sandbox.stop().await;
}

#[tokio::test]
async fn faults_use_linkedin_shapes() {
    let h = spawn().await;
    let a = h.connect("li_faults").await;
    h.sandbox.inject_linkedin_fault(
        LinkedInEndpoint::CreatePost,
        Fault::RateLimited {
            retry_after_secs: 30,
        },
        1,
    );
    let resp = h.post(&a, text_post(&a.urn, "throttled")).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_none());

    h.sandbox.inject_linkedin_fault(
        LinkedInEndpoint::CreatePost,
        Fault::TimeoutAfterSuccess { secs: 0.3 },
        1,
    );
    let resp = h.post(&a, text_post(&a.urn, "slow answer")).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(h.sandbox.linkedin_state().posts.len(), 1);

    h.sandbox
        .inject_linkedin_fault(LinkedInEndpoint::InitializeImage, Fault::RejectMedia, 1);
    let image = h.upload_image(&a, &a.urn, 100).await;
    let mut post = text_post(&a.urn, "bad image");
    post["content"] = json!({"media": {"id": image}});
    let resp = h.post(&a, post).await;
    assert_eq!(resp.status(), 422);
    assert!(json_of(resp).await["message"]
        .as_str()
        .unwrap()
        .contains("PROCESSING_FAILED"));

    h.sandbox
        .inject_linkedin_fault(LinkedInEndpoint::Userinfo, Fault::ExpireToken, 1);
    let me = h
        .http
        .get(h.url("/v2/userinfo"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    let err = json_of(me).await;
    assert_eq!(err["serviceErrorCode"], 65602);
    assert_eq!(err["code"], "EXPIRED_ACCESS_TOKEN");

    // A revoked grant also refuses the refresh token.
    let b = h.connect("li_revoked").await;
    h.sandbox
        .inject_linkedin_fault(LinkedInEndpoint::CreatePost, Fault::RevokeGrant, 1);
    let resp = h.post(&b, text_post(&b.urn, "gone")).await;
    assert_eq!(resp.status(), 401);
    let refresh = h
        .token_call(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", b.refresh.as_deref().unwrap()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .await;
    assert_eq!(refresh.status(), 400);
    assert_eq!(json_of(refresh).await["error"], "invalid_grant");

    // Control routes over HTTP.
    let c = h.connect("li_control").await;
    let resp = h
        .http
        .post(h.url("/_sandbox/faults"))
        .json(&json!({"endpoint": "create_post", "fault": {"kind": "server_error", "status": 503}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = h.post(&c, text_post(&c.urn, "unavailable")).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(json_of(resp).await["status"], 503);
    let state = json_of(h.http.get(h.url("/_sandbox/state")).send().await.unwrap()).await;
    assert_eq!(state["posts"].as_array().unwrap().len(), 1);
    h.sandbox.stop().await;
}
