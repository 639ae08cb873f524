//! End-to-end tests of the Reddit twin over real HTTP.

use std::collections::HashMap;
use std::time::Duration;

use herald_sandbox::{Fault, RedditConfig, RedditEndpoint, Sandbox, SandboxConfig};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::Value;

const CLIENT_ID: &str = "herald-sandbox-reddit";
const CLIENT_SECRET: &str = "herald-sandbox-reddit-secret";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const AGENT: &str = "server:herald-tests:v0.1 (by /u/herald_sandbox)";
const SCOPES: &str = "identity submit read history flair";

struct Harness {
    sandbox: Sandbox,
    http: Client,
    base: String,
}

async fn spawn_with(config: RedditConfig) -> Harness {
    let sandbox = Sandbox::start(
        "127.0.0.1:0",
        SandboxConfig {
            reddit: config,
            ..SandboxConfig::default()
        },
    )
    .await
    .expect("start");
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(AGENT)
        .build()
        .unwrap();
    let base = sandbox.reddit_base_url();
    Harness {
        sandbox,
        http,
        base,
    }
}

async fn spawn() -> Harness {
    spawn_with(RedditConfig {
        image_processing_delay: Duration::from_millis(200),
        ..RedditConfig::default()
    })
    .await
}

async fn json_of(resp: Response) -> Value {
    resp.json().await.expect("json body")
}

struct Account {
    token: String,
    refresh: Option<String>,
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn authorize(&self, query: &[(&str, &str)]) -> HashMap<String, String> {
        let resp = self
            .http
            .get(self.url("/api/v1/authorize"))
            .query(query)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND);
        let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        location.query_pairs().into_owned().collect()
    }

    async fn code(&self, user: &str, duration: &str) -> String {
        let q = self
            .authorize(&[
                ("client_id", CLIENT_ID),
                ("response_type", "code"),
                ("state", "st4te"),
                ("redirect_uri", REDIRECT),
                ("duration", duration),
                ("scope", SCOPES),
                ("sandbox_user", user),
            ])
            .await;
        assert_eq!(q["state"], "st4te");
        q["code"].clone()
    }

    fn token_request(&self) -> RequestBuilder {
        self.http
            .post(self.url("/api/v1/access_token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
    }

    async fn connect_as(&self, user: &str, duration: &str) -> Account {
        let code = self.code(user, duration).await;
        let resp = self
            .token_request()
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = json_of(resp).await;
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 3600);
        Account {
            token: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().map(str::to_owned),
        }
    }

    async fn connect(&self, user: &str) -> Account {
        self.connect_as(user, "permanent").await
    }

    async fn submit(&self, a: &Account, form: &[(&str, &str)]) -> Response {
        let mut form = form.to_vec();
        form.push(("api_type", "json"));
        self.http
            .post(self.url("/api/submit"))
            .bearer_auth(&a.token)
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// The first error code of a submit, or `None` on success.
    async fn submit_error(&self, a: &Account, form: &[(&str, &str)]) -> Option<String> {
        let resp = self.submit(a, form).await;
        assert_eq!(resp.status(), 200, "errors come in the JSON envelope");
        let body = json_of(resp).await;
        body["json"]["errors"][0][0].as_str().map(str::to_owned)
    }

    /// Lease → S3-style form upload; returns the URL to submit.
    async fn upload_image(&self, a: &Account, bytes: usize) -> Result<String, Response> {
        self.upload(a, "cat.png", "image/png", bytes)
            .await
            .map(|(_, location)| location)
    }

    /// Lease → S3-style form upload of `bytes` bytes; returns the asset id and the URL.
    async fn upload(
        &self,
        a: &Account,
        filepath: &str,
        mimetype: &str,
        bytes: usize,
    ) -> Result<(String, String), Response> {
        let lease = json_of(
            self.http
                .post(self.url("/api/media/asset.json"))
                .bearer_auth(&a.token)
                .form(&[("filepath", filepath), ("mimetype", mimetype)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        let asset_id = lease["asset"]["asset_id"].as_str().unwrap().to_owned();
        let action = lease["args"]["action"].as_str().unwrap();
        assert!(action.starts_with("//"), "protocol-relative like Reddit's");
        let mut body = Vec::new();
        let boundary = "XyZzy";
        let mut key = String::new();
        for field in lease["args"]["fields"].as_array().unwrap() {
            let (name, value) = (
                field["name"].as_str().unwrap(),
                field["value"].as_str().unwrap(),
            );
            if name == "key" {
                key = value.to_owned();
            }
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filepath}\"\r\nContent-Type: {mimetype}\r\n\r\n").as_bytes());
        body.extend(std::iter::repeat_n(7u8, bytes));
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let resp = self
            .http
            .post(format!("http:{action}"))
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        if resp.status() != 201 {
            return Err(resp);
        }
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let xml = resp.text().await.unwrap();
        assert!(xml.contains(&format!("<Key>{key}</Key>")));
        Ok((asset_id, location))
    }

    async fn submit_gallery(&self, a: &Account, body: Value) -> Value {
        let resp = self
            .http
            .post(self.url("/api/submit_gallery_post.json"))
            .bearer_auth(&a.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "errors come in the JSON envelope");
        json_of(resp).await
    }

    async fn listing(&self, a: &Account, user: &str) -> Vec<Value> {
        let resp = self
            .http
            .get(self.url(&format!("/user/{user}/submitted")))
            .query(&[("limit", "10"), ("sort", "new")])
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap();
        json_of(resp).await["data"]["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["data"].clone())
            .collect()
    }
}

fn gallery(sr: &str, title: &str, ids: &[&str]) -> Value {
    let items: Vec<Value> = ids
        .iter()
        .map(|id| serde_json::json!({"media_id": id, "caption": "", "outbound_url": ""}))
        .collect();
    serde_json::json!({"api_type": "json", "sr": sr, "title": title, "items": items,
        "sendreplies": true, "nsfw": false, "spoiler": false})
}

#[tokio::test]
async fn gallery_posts_answer_with_the_post_and_list_their_images() {
    let h = spawn_with(RedditConfig {
        max_gallery_items: 3,
        ..RedditConfig::default()
    })
    .await;
    let a = h.connect("reddit_gallery").await;
    let (one, _) = h.upload(&a, "a.png", "image/png", 100).await.unwrap();
    let (two, _) = h.upload(&a, "b.jpg", "image/jpeg", 100).await.unwrap();
    let mut body = gallery("herald_sandbox", "Two pictures", &[&one, &two]);
    body["items"][1]["caption"] = serde_json::json!("the second");
    body["items"][1]["outbound_url"] = serde_json::json!("https://example.com/2");
    let answer = h.submit_gallery(&a, body).await;
    assert_eq!(answer["json"]["errors"], serde_json::json!([]));
    let data = &answer["json"]["data"];
    let id = data["id"].as_str().unwrap().strip_prefix("t3_").unwrap();
    assert!(data["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/r/herald_sandbox/comments/{id}/two_pictures/")));

    let listed = h.listing(&a, "reddit_gallery").await;
    let post = &listed[0];
    assert_eq!(post["is_gallery"], true);
    assert_eq!(post["is_self"], false);
    assert_eq!(post["gallery_data"]["items"][0]["media_id"], one.as_str());
    assert_eq!(post["gallery_data"]["items"][1]["caption"], "the second");
    assert_eq!(post["media_metadata"][&two]["m"], "image/jpeg");
    let state = h.sandbox.reddit_state();
    assert_eq!(state.posts[0].kind, "gallery");
    assert_eq!(state.posts[0].media_ids, [one.clone(), two.clone()]);

    // Refusals, each in the envelope with its code and field.
    let (video, _) = h.upload(&a, "v.mp4", "video/mp4", 100).await.unwrap();
    let stranger = h.connect("reddit_stranger").await;
    let (theirs, _) = h
        .upload(&stranger, "c.png", "image/png", 100)
        .await
        .unwrap();
    let cases = [
        (
            gallery("herald_sandbox", "One", &[&one]),
            "BAD_NUMBER",
            "items",
        ),
        (
            gallery("herald_sandbox", "Four", &[&one, &two, &one, &two]),
            "BAD_NUMBER",
            "items",
        ),
        (
            gallery("herald_sandbox", "Unknown", &[&one, "nosuchasset"]),
            "INVALID_MEDIA_ASSETS",
            "items",
        ),
        (
            gallery("herald_sandbox", "Not mine", &[&one, &theirs]),
            "INVALID_MEDIA_ASSETS",
            "items",
        ),
        (
            gallery("herald_sandbox", "A video", &[&one, &video]),
            "INVALID_MEDIA_ASSETS",
            "items",
        ),
        (
            gallery("stills", "Stills", &[&one, &two]),
            "INVALID_OPTION",
            "sr",
        ),
        (gallery("textonly", "Text", &[&one, &two]), "NO_LINKS", "sr"),
        (
            gallery("herald_sandbox", "", &[&one, &two]),
            "NO_TEXT",
            "title",
        ),
        (
            gallery("needsflair", "Flair", &[&one, &two]),
            "SUBMIT_VALIDATION_FLAIR_REQUIRED",
            "flair",
        ),
    ];
    for (body, code, field) in cases {
        let answer = h.submit_gallery(&a, body).await;
        let error = &answer["json"]["errors"][0];
        assert_eq!(
            (error[0].as_str(), error[2].as_str()),
            (Some(code), Some(field)),
            "{answer}"
        );
    }
    let mut long = gallery("herald_sandbox", "Long caption", &[&one, &two]);
    long["items"][0]["caption"] = serde_json::json!("c".repeat(181));
    let answer = h.submit_gallery(&a, long).await;
    assert_eq!(answer["json"]["errors"][0][0], "TOO_LONG");
    assert_eq!(
        h.sandbox.reddit_state().posts.len(),
        1,
        "nothing else posted"
    );

    // Faults apply to the gallery endpoint by its own name.
    h.sandbox.inject_reddit_fault(
        RedditEndpoint::SubmitGallery,
        Fault::ServerError { status: 503 },
        1,
    );
    let resp = h
        .http
        .post(h.url("/api/submit_gallery_post.json"))
        .bearer_auth(&a.token)
        .json(&gallery("herald_sandbox", "Unlucky", &[&one, &two]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(h.sandbox.reddit_state().posts.len(), 1);
    h.sandbox.stop().await;
}

#[tokio::test]
async fn video_posts_need_an_uploaded_video_and_poster_and_answer_with_a_websocket() {
    let h = spawn().await;
    let a = h.connect("reddit_video").await;
    let (video, video_url) = h.upload(&a, "clip.mp4", "video/mp4", 4000).await.unwrap();
    let (_, poster_url) = h.upload(&a, "poster.png", "image/png", 100).await.unwrap();
    let state = h.sandbox.reddit_state();
    assert!(
        video_url.ends_with(&format!("/{video}")),
        "a video's key is its asset id: {video_url}"
    );
    assert!(state.assets[1]
        .location
        .as_deref()
        .unwrap()
        .contains("rte_images"));

    let base = [("sr", "herald_sandbox"), ("title", "A clip")];
    let with = |extra: &[(&'static str, &str)]| {
        let mut form: Vec<(&str, String)> = base.iter().map(|(k, v)| (*k, v.to_string())).collect();
        form.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        form
    };
    let cases: [(Vec<(&str, String)>, &str); 4] = [
        (with(&[("kind", "video"), ("url", &video_url)]), "NO_URL"),
        (
            with(&[
                ("kind", "video"),
                ("url", &poster_url),
                ("video_poster_url", &poster_url),
            ]),
            "BAD_URL",
        ),
        (
            with(&[
                ("kind", "video"),
                ("url", &video_url),
                ("video_poster_url", &video_url),
            ]),
            "BAD_URL",
        ),
        (with(&[("kind", "image"), ("url", &video_url)]), "BAD_URL"),
    ];
    for (form, code) in cases {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            h.submit_error(&a, &form).await.as_deref(),
            Some(code),
            "{form:?}"
        );
    }
    let stills = [
        ("sr", "stills"),
        ("title", "Not here"),
        ("kind", "video"),
        ("url", video_url.as_str()),
        ("video_poster_url", poster_url.as_str()),
    ];
    assert_eq!(
        h.submit_error(&a, &stills).await.as_deref(),
        Some("INVALID_OPTION")
    );

    let form = [
        ("sr", "herald_sandbox"),
        ("title", "A clip"),
        ("kind", "video"),
        ("url", video_url.as_str()),
        ("video_poster_url", poster_url.as_str()),
    ];
    let answer = json_of(h.submit(&a, &form).await).await;
    assert_eq!(answer["json"]["errors"], serde_json::json!([]));
    let data = answer["json"]["data"].as_object().unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["websocket_url"],
        "a video answers with a websocket only"
    );
    assert!(
        h.listing(&a, "reddit_video").await.is_empty(),
        "still processing"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let listed = h.listing(&a, "reddit_video").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["is_video"], true);
    assert_eq!(listed[0]["post_hint"], "hosted:video");
    assert!(listed[0]["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/{video}")));
    assert_eq!(listed[0]["media"]["reddit_video"]["is_gif"], false);
    let state = h.sandbox.reddit_state();
    assert_eq!(state.posts.len(), 1);
    assert_eq!(state.posts[0].kind, "video");
    assert_eq!(state.posts[0].media_ids, [video]);
    assert_eq!(
        state.posts[0].poster_url.as_deref(),
        Some(poster_url.as_str())
    );
    h.sandbox.stop().await;
}

#[tokio::test]
async fn oauth_uses_basic_auth_and_permanent_refresh_tokens_that_do_not_rotate() {
    let h = spawn().await;
    let a = h.connect("reddit_alice").await;
    let refresh = a
        .refresh
        .clone()
        .expect("permanent grants have refresh tokens");
    let resp = h
        .token_request()
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    let body = json_of(resp).await;
    assert!(body["access_token"].is_string());
    assert!(body.get("refresh_token").is_none(), "no new refresh token");
    // The same refresh token works again.
    let again = h
        .token_request()
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);

    // Temporary grants have none; the client secret in the body is not enough.
    assert!(h
        .connect_as("reddit_alice", "temporary")
        .await
        .refresh
        .is_none());
    let code = h.code("reddit_alice", "permanent").await;
    let body_auth = h
        .http
        .post(h.url("/api/v1/access_token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(body_auth.status(), 401);
    // A generic User-Agent is refused.
    let generic = Client::new()
        .get(h.url("/api/v1/me"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(generic.status(), 403);

    let me = h
        .http
        .get(h.url("/api/v1/me"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(json_of(me).await["name"], "reddit_alice");

    // Revoking the refresh token ends the grant.
    let resp = h
        .http
        .post(h.url("/api/v1/revoke_token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("token", refresh.as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let refused = h
        .token_request()
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(json_of(refused).await["error"], "invalid_grant");
    let me = h
        .http
        .get(h.url("/api/v1/me"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);

    // State is required; unknown scopes are refused.
    let q = h
        .authorize(&[
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "identity"),
        ])
        .await;
    assert_eq!(q["error"], "invalid_request");
    h.sandbox.stop().await;
}

#[tokio::test]
async fn self_link_and_image_posts() {
    let h = spawn().await;
    let a = h.connect("reddit_poster").await;
    let resp = h
        .submit(
            &a,
            &[
                ("sr", "herald_sandbox"),
                ("kind", "self"),
                ("title", "Hello Reddit"),
                ("text", "body **markdown**"),
            ],
        )
        .await;
    assert!(resp.headers().contains_key("x-ratelimit-remaining"));
    let body = json_of(resp).await;
    let data = &body["json"]["data"];
    assert_eq!(body["json"]["errors"], serde_json::json!([]));
    let id = data["id"].as_str().unwrap();
    assert_eq!(data["name"], format!("t3_{id}"));
    assert!(data["url"]
        .as_str()
        .unwrap()
        .contains(&format!("/r/herald_sandbox/comments/{id}/hello_reddit/")));

    let link = json_of(
        h.submit(
            &a,
            &[
                ("sr", "linksonly"),
                ("kind", "link"),
                ("title", "A link"),
                ("url", "https://example.com/page"),
                ("nsfw", "true"),
            ],
        )
        .await,
    )
    .await;
    assert!(link["json"]["data"]["id"].is_string());

    let url = h.upload_image(&a, 5000).await.unwrap();
    let image = json_of(
        h.submit(
            &a,
            &[
                ("sr", "herald_sandbox"),
                ("kind", "image"),
                ("title", "A cat"),
                ("url", &url),
            ],
        )
        .await,
    )
    .await;
    let data = &image["json"]["data"];
    assert!(
        data.get("id").is_none(),
        "image posts answer with a websocket"
    );
    assert!(data["websocket_url"]
        .as_str()
        .unwrap()
        .starts_with("wss://"));

    let listing = |h: &Harness| {
        let request = h
            .http
            .get(h.url("/user/reddit_poster/submitted"))
            .query(&[("limit", "10"), ("sort", "new")])
            .bearer_auth(&a.token);
        async move { json_of(request.send().await.unwrap()).await }
    };
    let before = listing(&h).await;
    assert_eq!(before["data"]["children"].as_array().unwrap().len(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = listing(&h).await;
    let children = after["data"]["children"].as_array().unwrap();
    assert_eq!(children.len(), 3);
    assert_eq!(children[0]["data"]["title"], "A cat");
    assert_eq!(children[0]["data"]["post_hint"], "image");
    assert_eq!(children[2]["data"]["selftext"], "body **markdown**");

    let state = h.sandbox.reddit_state();
    assert_eq!(state.posts.len(), 3);
    assert_eq!(state.posts[1].kind, "link");
    assert!(state.posts[1].nsfw);
    assert_eq!(state.assets[0].bytes, Some(5000));
    assert!(state.user_agents.iter().all(|ua| ua == AGENT));
    h.sandbox.stop().await;
}

#[tokio::test]
async fn every_validator_answers_with_its_code() {
    let h = spawn_with(RedditConfig {
        submits_per_window: 3,
        users_in_timeout: vec!["reddit_timeout".into()],
        users_needing_captcha: vec!["reddit_newbie".into()],
        ..RedditConfig::default()
    })
    .await;
    let a = h.connect("reddit_checker").await;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("kind", "self"), ("title", "t")], "SUBREDDIT_REQUIRED"),
        (
            vec![("sr", "nowhere"), ("kind", "self"), ("title", "t")],
            "SUBREDDIT_NOEXIST",
        ),
        (
            vec![("sr", "private_club"), ("kind", "self"), ("title", "t")],
            "SUBREDDIT_NOTALLOWED",
        ),
        (
            vec![("sr", "herald_sandbox"), ("kind", "poll"), ("title", "t")],
            "INVALID_OPTION",
        ),
        (
            vec![("sr", "linksonly"), ("kind", "self"), ("title", "t")],
            "NO_SELFS",
        ),
        (
            vec![
                ("sr", "textonly"),
                ("kind", "link"),
                ("title", "t"),
                ("url", "https://e.com"),
            ],
            "NO_LINKS",
        ),
        (
            vec![("sr", "herald_sandbox"), ("kind", "self"), ("title", " ")],
            "NO_TEXT",
        ),
        (
            vec![("sr", "herald_sandbox"), ("kind", "link"), ("title", "t")],
            "NO_URL",
        ),
        (
            vec![
                ("sr", "herald_sandbox"),
                ("kind", "link"),
                ("title", "t"),
                ("url", "not a url"),
            ],
            "BAD_URL",
        ),
        (
            vec![
                ("sr", "linksonly"),
                ("kind", "link"),
                ("title", "t"),
                ("url", "https://spam.example/x"),
            ],
            "DOMAIN_BANNED",
        ),
        (
            vec![("sr", "needsflair"), ("kind", "self"), ("title", "t")],
            "SUBMIT_VALIDATION_FLAIR_REQUIRED",
        ),
        (
            vec![
                ("sr", "needsflair"),
                ("kind", "self"),
                ("title", "t"),
                ("flair_id", "nope"),
            ],
            "INVALID_FLAIR_TEMPLATE_ID",
        ),
    ];
    for (form, code) in &cases {
        assert_eq!(
            h.submit_error(&a, form).await.as_deref(),
            Some(*code),
            "{form:?}"
        );
    }
    let long_title = "x".repeat(301);
    assert_eq!(
        h.submit_error(
            &a,
            &[
                ("sr", "herald_sandbox"),
                ("kind", "self"),
                ("title", &long_title)
            ]
        )
        .await
        .as_deref(),
        Some("TOO_LONG")
    );
    // A flair makes the post acceptable; the same link twice is ALREADY_SUB.
    assert_eq!(
        h.submit_error(
            &a,
            &[
                ("sr", "needsflair"),
                ("kind", "self"),
                ("title", "t"),
                ("flair_id", "3f2c0e1a-0000-4000-8000-000000000002"),
            ],
        )
        .await,
        None
    );
    let link = [
        ("sr", "linksonly"),
        ("kind", "link"),
        ("title", "t"),
        ("url", "https://e.com/a"),
    ];
    assert_eq!(h.submit_error(&a, &link).await, None);
    assert_eq!(
        h.submit_error(&a, &link).await.as_deref(),
        Some("ALREADY_SUB")
    );
    // The third accepted submission used up the window: RATELIMIT says how long to wait.
    assert_eq!(
        h.submit_error(
            &a,
            &[("sr", "herald_sandbox"), ("kind", "self"), ("title", "two")]
        )
        .await,
        None
    );
    let resp = h
        .submit(
            &a,
            &[
                ("sr", "herald_sandbox"),
                ("kind", "self"),
                ("title", "three"),
            ],
        )
        .await;
    let body = json_of(resp).await;
    assert_eq!(body["json"]["errors"][0][0], "RATELIMIT");
    assert!(body["json"]["errors"][0][1]
        .as_str()
        .unwrap()
        .contains("try again in 10 minutes"));
    assert!(body["json"]["ratelimit"].as_f64().unwrap() > 590.0);

    let flairs = json_of(
        h.http
            .get(h.url("/r/needsflair/api/link_flair_v2"))
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(flairs[1]["text"], "News");
    let timeout = h.connect("reddit_timeout").await;
    let captcha = h.connect("reddit_newbie").await;
    let form = [("sr", "herald_sandbox"), ("kind", "self"), ("title", "t")];
    assert_eq!(
        h.submit_error(&timeout, &form).await.as_deref(),
        Some("IN_TIMEOUT")
    );
    assert_eq!(
        h.submit_error(&captcha, &form).await.as_deref(),
        Some("BAD_CAPTCHA")
    );
    h.sandbox.stop().await;
}

#[tokio::test]
async fn rate_limit_headers_count_down_per_client_and_429_keeps_them() {
    let h = spawn_with(RedditConfig {
        requests_per_window: 3,
        ..RedditConfig::default()
    })
    .await;
    let a = h.connect("reddit_busy").await;
    let b = h.connect("reddit_other").await;
    let me = |token: &str| {
        h.http
            .get(h.url("/api/v1/me"))
            .bearer_auth(token.to_owned())
            .send()
    };
    let first = me(&a.token).await.unwrap();
    assert_eq!(first.headers()["x-ratelimit-used"], "1");
    assert_eq!(first.headers()["x-ratelimit-remaining"], "2.0");
    let reset: i64 = first.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&reset));
    // The window belongs to the client id, not the user.
    me(&b.token).await.unwrap();
    let third = me(&a.token).await.unwrap();
    assert_eq!(third.headers()["x-ratelimit-remaining"], "0.0");
    let refused = me(&b.token).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-ratelimit-remaining"], "0.0");
    assert!(refused.headers().contains_key("x-ratelimit-reset"));
    h.sandbox.stop().await;
}

#[tokio::test]
async fn faults_use_reddit_shapes() {
    let h = spawn().await;
    let a = h.connect("reddit_faults").await;
    let form = [
        ("sr", "herald_sandbox"),
        ("kind", "self"),
        ("title", "slow"),
    ];
    h.sandbox.inject_reddit_fault(
        RedditEndpoint::Submit,
        Fault::RateLimited {
            retry_after_secs: 42,
        },
        1,
    );
    let resp = h.submit(&a, &form).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["x-ratelimit-reset"], "42");

    h.sandbox.inject_reddit_fault(
        RedditEndpoint::Submit,
        Fault::TimeoutAfterSuccess { secs: 0.3 },
        1,
    );
    assert_eq!(h.submit_error(&a, &form).await, None);
    assert_eq!(h.sandbox.reddit_state().posts.len(), 1);

    h.sandbox.inject_reddit_fault(
        RedditEndpoint::Submit,
        Fault::ContentRejected {
            detail: "forbidden phrase".into(),
        },
        1,
    );
    assert_eq!(
        h.submit_error(&a, &form).await.as_deref(),
        Some("SUBMIT_VALIDATION_BODY_BLACKLISTED_STRING")
    );

    h.sandbox
        .inject_reddit_fault(RedditEndpoint::MediaAsset, Fault::RejectMedia, 1);
    let refused = h.upload_image(&a, 100).await.unwrap_err();
    assert_eq!(refused.status(), 400);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("<Code>InvalidArgument</Code>"));

    h.sandbox
        .inject_reddit_fault(RedditEndpoint::Me, Fault::ExpireToken, 1);
    let me = h
        .http
        .get(h.url("/api/v1/me"))
        .bearer_auth(&a.token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    assert_eq!(json_of(me).await["error"], 401);

    let b = h.connect("reddit_revoked").await;
    h.sandbox
        .inject_reddit_fault(RedditEndpoint::Me, Fault::RevokeGrant, 1);
    let me = h
        .http
        .get(h.url("/api/v1/me"))
        .bearer_auth(&b.token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    let refresh = h
        .token_request()
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", b.refresh.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(refresh).await["error"], "invalid_grant");

    let resp = h
        .http
        .post(h.url("/_sandbox/faults"))
        .json(&serde_json::json!({"endpoint": "submit", "fault": {"kind": "server_error", "status": 502}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let c = h.connect("reddit_control").await;
    let resp = h.submit(&c, &form).await;
    assert_eq!(resp.status(), 502);
    let state = json_of(h.http.get(h.url("/_sandbox/state")).send().await.unwrap()).await;
    assert_eq!(state["posts"].as_array().unwrap().len(), 1);
    h.sandbox.stop().await;
}
