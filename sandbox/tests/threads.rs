//! End-to-end tests of the Threads twin over real HTTP.

use std::time::Duration;

use herald_sandbox::{Fault, Sandbox, SandboxConfig, ThreadsEndpoint};
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

const CLIENT_ID: &str = "herald-sandbox-threads";
const CLIENT_SECRET: &str = "herald-sandbox-threads-secret";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
/// What Herald asks for: posting, and replying (the later parts of a thread).
const SCOPES: &str =
    "threads_basic,threads_content_publish,threads_manage_replies,threads_read_replies";
/// A connection made before Herald asked for the reply permissions.
const POST_ONLY: &str = "threads_basic,threads_content_publish";

struct Harness {
    sandbox: Sandbox,
    http: Client,
    base: String,
}

async fn spawn() -> Harness {
    let mut config = SandboxConfig::default();
    config.threads.video_processing_delay = Duration::from_millis(300);
    config.threads.quota_total = 3;
    config.threads.reply_quota_total = 2;
    let sandbox = Sandbox::start("127.0.0.1:0", config).await.expect("start");
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = sandbox.threads_base_url();
    Harness {
        sandbox,
        http,
        base,
    }
}

async fn json_of(resp: Response) -> Value {
    resp.json().await.expect("json body")
}

/// `(user_id, long-lived token)` after the whole OAuth flow.
struct Account {
    id: String,
    token: String,
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn code(&self, user: &str) -> String {
        self.code_for(user, SCOPES).await
    }

    async fn code_for(&self, user: &str, scopes: &str) -> String {
        let resp = self
            .http
            .get(self.url("/oauth/authorize"))
            .query(&[
                ("client_id", CLIENT_ID),
                ("redirect_uri", REDIRECT),
                ("scope", scopes),
                ("response_type", "code"),
                ("state", "st4te"),
                ("sandbox_user", user),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND);
        let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(REDIRECT));
        let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(q["state"], "st4te");
        q["code"].clone()
    }

    async fn exchange(&self, code: &str) -> Response {
        self.http
            .post(self.url("/oauth/access_token"))
            .form(&[
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("grant_type", "authorization_code"),
                ("redirect_uri", REDIRECT),
                ("code", code),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn connect(&self, user: &str) -> Account {
        self.connect_with(user, SCOPES).await
    }

    /// Connects `user`, who grants `scopes`.
    async fn connect_with(&self, user: &str, scopes: &str) -> Account {
        let code = self.code_for(user, scopes).await;
        let short = json_of(self.exchange(&code).await).await;
        let id = short["user_id"]
            .as_u64()
            .expect("numeric user_id")
            .to_string();
        let long = json_of(
            self.http
                .get(self.url("/access_token"))
                .query(&[
                    ("grant_type", "th_exchange_token"),
                    ("client_secret", CLIENT_SECRET),
                    ("access_token", short["access_token"].as_str().unwrap()),
                ])
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(long["token_type"], "bearer");
        assert_eq!(long["expires_in"], 5_184_000);
        Account {
            id,
            token: long["access_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn create(&self, a: &Account, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url(&format!("/{}/threads", a.id)))
            .bearer_auth(&a.token)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn create_id(&self, a: &Account, form: &[(&str, &str)]) -> String {
        let resp = self.create(a, form).await;
        assert_eq!(resp.status(), 200);
        json_of(resp).await["id"].as_str().unwrap().to_owned()
    }

    async fn publish(&self, a: &Account, creation_id: &str) -> Response {
        self.http
            .post(self.url(&format!("/{}/threads_publish", a.id)))
            .query(&[("creation_id", creation_id)])
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap()
    }

    /// A text post (a reply to `reply_to` if given), created and published; its id.
    async fn post_text(&self, a: &Account, text: &str, reply_to: Option<&str>) -> String {
        let mut form = vec![("media_type", "TEXT"), ("text", text)];
        form.extend(reply_to.map(|parent| ("reply_to_id", parent)));
        let container = self.create_id(a, &form).await;
        let published = self.publish(a, &container).await;
        assert_eq!(published.status(), 200);
        json_of(published).await["id"].as_str().unwrap().to_owned()
    }

    async fn get(&self, a: &Account, path: &str, query: &[(&str, &str)]) -> Response {
        self.http
            .get(self.url(path))
            .query(query)
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap()
    }

    /// `threads_publishing_limit` with `fields`.
    async fn limit(&self, a: &Account, fields: &str) -> Response {
        let path = format!("/{}/threads_publishing_limit", a.id);
        self.get(a, &path, &[("fields", fields)]).await
    }

    async fn status(&self, a: &Account, id: &str) -> Value {
        json_of(
            self.http
                .get(self.url(&format!("/{id}")))
                .query(&[
                    ("fields", "status,error_message"),
                    ("access_token", &a.token),
                ])
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

#[tokio::test]
async fn oauth_flow_gives_a_long_lived_token_that_reads_the_account_and_refreshes() {
    let h = spawn().await;
    let a = h.connect("alice_th").await;
    let me = h
        .http
        .get(h.url("/me"))
        .query(&[("fields", "id,username,name"), ("access_token", &a.token)])
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert!(me.headers().contains_key("x-app-usage"));
    let me = json_of(me).await;
    assert_eq!(me["id"], a.id.as_str());
    assert_eq!(me["username"], "alice_th");

    let refreshed = json_of(
        h.http
            .get(h.url("/refresh_access_token"))
            .query(&[
                ("grant_type", "th_refresh_token"),
                ("access_token", &a.token),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_ne!(refreshed["access_token"], a.token.as_str());

    // A code is single-use, and errors come in the Graph envelope.
    let code = h.code("alice_th").await;
    assert_eq!(h.exchange(&code).await.status(), 200);
    let again = h.exchange(&code).await;
    assert_eq!(again.status(), 400);
    let err = json_of(again).await;
    assert_eq!(err["error"]["code"], 100);
    assert!(err["error"]["fbtrace_id"].is_string());

    let bad = h
        .http
        .get(h.url("/me"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(bad).await["error"]["code"], 190);
    h.sandbox.stop().await;
}

#[tokio::test]
async fn text_post_publishes_once_and_is_listed() {
    let h = spawn().await;
    let a = h.connect("bob_th").await;
    let container = h
        .create_id(&a, &[("media_type", "TEXT"), ("text", "hello threads")])
        .await;
    assert_eq!(h.status(&a, &container).await["status"], "FINISHED");
    let published = h.publish(&a, &container).await;
    assert_eq!(published.status(), 200);
    let post_id = json_of(published).await["id"].as_str().unwrap().to_owned();

    let twice = h.publish(&a, &container).await;
    assert_eq!(twice.status(), 400);
    assert_eq!(json_of(twice).await["error"]["code"], 100);

    let posts = h.sandbox.threads_state().posts;
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].id, post_id);
    assert_eq!(posts[0].text, "hello threads");

    let since = (chrono::Utc::now() - chrono::TimeDelta::minutes(1)).timestamp();
    let listed = json_of(
        h.http
            .get(h.url(&format!("/{}/threads", a.id)))
            .query(&[
                ("since", since.to_string().as_str()),
                ("fields", "id,text,timestamp"),
            ])
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["data"][0]["id"], post_id.as_str());
    assert_eq!(listed["data"][0]["text"], "hello threads");
    h.sandbox.stop().await;
}

#[tokio::test]
async fn limits_text_length_carousel_size_and_publishing_quota() {
    let h = spawn().await;
    let a = h.connect("carol_th").await;
    let long = "a".repeat(501);
    let resp = h
        .create(&a, &[("media_type", "TEXT"), ("text", long.as_str())])
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(json_of(resp).await["error"]["code"], 100);
    let at_limit = "a".repeat(500);
    assert_eq!(
        h.create(&a, &[("media_type", "TEXT"), ("text", at_limit.as_str())])
            .await
            .status(),
        200
    );

    let one = h
        .create_id(
            &a,
            &[
                ("media_type", "IMAGE"),
                ("image_url", "https://cdn.example/1.png"),
                ("is_carousel_item", "true"),
            ],
        )
        .await;
    let lonely = h
        .create(
            &a,
            &[("media_type", "CAROUSEL"), ("children", one.as_str())],
        )
        .await;
    assert_eq!(lonely.status(), 400);
    let two = h
        .create_id(
            &a,
            &[
                ("media_type", "VIDEO"),
                ("video_url", "https://cdn.example/2.mp4"),
                ("is_carousel_item", "true"),
            ],
        )
        .await;
    let children = format!("{one},{two}");
    let carousel = h
        .create_id(
            &a,
            &[
                ("media_type", "CAROUSEL"),
                ("children", children.as_str()),
                ("text", "album"),
            ],
        )
        .await;
    // The video child is still processing, so is its carousel.
    assert_eq!(h.status(&a, &carousel).await["status"], "IN_PROGRESS");
    assert_eq!(h.publish(&a, &carousel).await.status(), 400);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.status(&a, &carousel).await["status"], "FINISHED");
    assert_eq!(h.publish(&a, &carousel).await.status(), 200);
    let posts = h.sandbox.threads_state().posts;
    assert_eq!(posts[0].media_type, "CAROUSEL_ALBUM");
    assert_eq!(posts[0].media_urls.len(), 2);

    // quota_total is 3 in this harness: two more posts fit, the third is refused.
    for n in 0..3 {
        let text = format!("post {n}");
        let c = h
            .create_id(&a, &[("media_type", "TEXT"), ("text", text.as_str())])
            .await;
        let resp = h.publish(&a, &c).await;
        if n < 2 {
            assert_eq!(resp.status(), 200);
        } else {
            assert_eq!(resp.status(), 400);
            assert_eq!(json_of(resp).await["error"]["code"], 4);
        }
    }
    let limit_now = json_of(h.limit(&a, "quota_usage,config").await).await;
    assert_eq!(limit_now["data"][0]["quota_usage"], 3);
    assert_eq!(limit_now["data"][0]["config"]["quota_total"], 3);
    assert_eq!(limit_now["data"][0]["config"]["quota_duration"], 86_400);
    assert_eq!(h.sandbox.threads_state().quota_refusals, 1);

    // Replies have a quota of their own (facts §6.3): one still goes out, uncounted.
    let first = h.sandbox.threads_state().posts[0].id.clone();
    let reply = h
        .create_id(
            &a,
            &[
                ("media_type", "TEXT"),
                ("text", "a reply"),
                ("reply_to_id", first.as_str()),
            ],
        )
        .await;
    assert_eq!(h.publish(&a, &reply).await.status(), 200);
    // `me` stands for the caller; without `fields` the posts' quota is answered.
    let by_me = json_of(h.get(&a, "/me/threads_publishing_limit", &[]).await).await;
    assert_eq!(by_me["data"][0]["quota_usage"], 3, "{by_me}");
    let listed = json_of(
        h.http
            .get(h.url("/me/threads"))
            .query(&[("fields", "id,timestamp,is_reply")])
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["data"][0]["is_reply"], true, "{listed}");
    assert_eq!(listed["data"][1]["is_reply"], false, "{listed}");
    h.sandbox.stop().await;
}

#[tokio::test]
async fn faults_reject_media_rate_limit_and_server_errors() {
    let h = spawn().await;
    let a = h.connect("dave_th").await;
    h.sandbox
        .inject_threads_fault(ThreadsEndpoint::CreateContainer, Fault::RejectMedia, 1);
    let c = h
        .create_id(
            &a,
            &[
                ("media_type", "IMAGE"),
                ("image_url", "https://cdn.example/x.png"),
            ],
        )
        .await;
    let status = h.status(&a, &c).await;
    assert_eq!(status["status"], "ERROR");
    assert!(status["error_message"].is_string());

    // Faults are injected over HTTP too.
    let queued = h
        .http
        .post(h.url("/_sandbox/faults"))
        .json(&serde_json::json!({
            "endpoint": "publish", "fault": {"kind": "rate_limited", "retry_after_secs": 90}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 200);
    let ok = h
        .create_id(&a, &[("media_type", "TEXT"), ("text", "limited")])
        .await;
    let limited = h.publish(&a, &ok).await;
    assert_eq!(limited.status(), 429);
    let buc: Value = serde_json::from_str(
        limited.headers()["x-business-use-case-usage"]
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(buc[&a.id][0]["estimated_time_to_regain_access"], 2);
    assert_eq!(json_of(limited).await["error"]["code"], 4);

    h.sandbox.inject_threads_fault(
        ThreadsEndpoint::Publish,
        Fault::ServerError { status: 503 },
        1,
    );
    let failed = h.publish(&a, &ok).await;
    assert_eq!(failed.status(), 503);
    assert_eq!(json_of(failed).await["error"]["is_transient"], true);
    assert!(h.sandbox.threads_state().posts.is_empty());
    assert_eq!(h.publish(&a, &ok).await.status(), 200);
    assert_eq!(h.sandbox.threads_state().posts.len(), 1);
    h.sandbox.stop().await;
}

/// create-replies: a reply needs threads_manage_replies, and answers a conversation the
/// profile started unless it may reply to others (threads_manage_mentions).
#[tokio::test]
async fn a_reply_needs_threads_manage_replies_and_a_conversation_of_ones_own() {
    let h = spawn().await;
    let alice = h.connect("alice_re").await;
    let root = h.post_text(&alice, "root", None).await;
    let reply = h.post_text(&alice, "part 2", Some(&root)).await;
    let chained = h.post_text(&alice, "part 3", Some(&reply)).await;
    let posts = h.sandbox.threads_state().posts;
    let parent_of = |id: &str| {
        posts
            .iter()
            .find(|p| p.id == id)
            .and_then(|p| p.reply_to_id.clone())
    };
    assert_eq!(parent_of(&reply), Some(root.clone()));
    assert_eq!(parent_of(&chained), Some(reply.clone()));

    // Connected before Herald asked for threads_manage_replies: posts go, replies are refused.
    let old = h.connect_with("alice_re", POST_ONLY).await;
    h.post_text(&old, "still posts", None).await;
    let refused = h
        .create(
            &old,
            &[
                ("media_type", "TEXT"),
                ("text", "no"),
                ("reply_to_id", &root),
            ],
        )
        .await;
    assert_eq!(refused.status(), 403);
    let err = json_of(refused).await;
    assert_eq!(err["error"]["code"], 10);
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("threads_manage_replies"), "{message}");

    // Someone else's conversation: refused, unless the profile may reply to others.
    let bob = h.connect("bob_re").await;
    let foreign = h
        .create(
            &bob,
            &[
                ("media_type", "TEXT"),
                ("text", "hi"),
                ("reply_to_id", &reply),
            ],
        )
        .await;
    assert_eq!(foreign.status(), 400);
    assert_eq!(json_of(foreign).await["error"]["code"], 100);
    let mentions = format!("{SCOPES},threads_manage_mentions");
    let bob = h.connect_with("bob_re", &mentions).await;
    h.post_text(&bob, "hi alice", Some(&reply)).await;

    let unknown = h
        .create(
            &alice,
            &[
                ("media_type", "TEXT"),
                ("text", "x"),
                ("reply_to_id", "404"),
            ],
        )
        .await;
    assert_eq!(unknown.status(), 400);
    h.sandbox.stop().await;
}

/// retrieve-and-manage-replies: 1,000 API-published replies per 24 hours (2 in this harness),
/// a quota apart from posts, read with `reply_quota_usage` and `reply_config`.
#[tokio::test]
async fn replies_have_a_quota_of_their_own() {
    let h = spawn().await;
    let a = h.connect("carol_re").await;
    let root = h.post_text(&a, "root", None).await;
    let first = h.post_text(&a, "reply 1", Some(&root)).await;
    h.post_text(&a, "reply 2", Some(&first)).await;
    let container = h
        .create_id(
            &a,
            &[
                ("media_type", "TEXT"),
                ("text", "reply 3"),
                ("reply_to_id", &root),
            ],
        )
        .await;
    let refused = h.publish(&a, &container).await;
    assert_eq!(refused.status(), 400);
    let err = json_of(refused).await;
    assert_eq!(err["error"]["code"], 4);
    assert_eq!(err["error"]["error_subcode"], 2_207_042);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("replies"),
        "{err}"
    );
    // Posts still go.
    h.post_text(&a, "a post", None).await;
    let state = h.sandbox.threads_state();
    assert_eq!((state.reply_quota_refusals, state.quota_refusals), (1, 0));

    let replies = json_of(h.limit(&a, "reply_quota_usage,reply_config").await).await;
    assert_eq!(replies["data"][0]["reply_quota_usage"], 2, "{replies}");
    assert_eq!(replies["data"][0]["reply_config"]["quota_total"], 2);
    assert_eq!(replies["data"][0]["reply_config"]["quota_duration"], 86_400);
    assert!(replies["data"][0].get("quota_usage").is_none(), "{replies}");
    let posts = json_of(h.limit(&a, "quota_usage,config").await).await;
    assert_eq!(posts["data"][0]["quota_usage"], 2, "{posts}");
    assert!(posts["data"][0].get("reply_quota_usage").is_none());
    // Reading the reply quota needs threads_manage_replies.
    let old = h.connect_with("carol_re", POST_ONLY).await;
    let refused = h.limit(&old, "reply_quota_usage,reply_config").await;
    assert_eq!(refused.status(), 403);
    assert_eq!(h.limit(&old, "quota_usage,config").await.status(), 200);
    h.sandbox.stop().await;
}

/// replies-and-conversations: `GET /{media-id}/replies` lists a post's direct replies, newest
/// first unless `reverse=false`, each saying whether it is the caller's; `GET /me/replies` the
/// caller's own replies. Both need threads_read_replies.
#[tokio::test]
async fn a_posts_replies_are_listed_with_whose_they_are() {
    let h = spawn().await;
    let alice = h.connect("dora_re").await;
    let root = h.post_text(&alice, "root", None).await;
    let own = h.post_text(&alice, "mine", Some(&root)).await;
    let mentions = format!("{SCOPES},threads_manage_mentions");
    let bob = h.connect_with("eve_re", &mentions).await;
    let foreign = h.post_text(&bob, "theirs", Some(&root)).await;
    let nested = h.post_text(&alice, "deeper", Some(&own)).await;

    let fields = "id,text,timestamp,media_type,permalink,is_reply_owned_by_me,replied_to,root_post";
    let path = format!("/{root}/replies");
    let listed = json_of(h.get(&alice, &path, &[("fields", fields)]).await).await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [foreign.as_str(), own.as_str()],
        "direct, newest first"
    );
    assert_eq!(listed["data"][0]["is_reply_owned_by_me"], false);
    assert_eq!(listed["data"][1]["is_reply_owned_by_me"], true);
    assert_eq!(listed["data"][1]["text"], "mine");
    assert_eq!(listed["data"][1]["replied_to"]["id"], root.as_str());
    assert_eq!(listed["data"][1]["root_post"]["id"], root.as_str());
    assert!(listed["data"][1]["timestamp"].is_string());

    let oldest_first = json_of(
        h.get(&alice, &path, &[("reverse", "false"), ("limit", "1")])
            .await,
    )
    .await;
    assert_eq!(oldest_first["data"][0]["id"], own.as_str());
    let next = oldest_first["paging"]["next"]
        .as_str()
        .expect("a next page");
    let second = json_of(
        h.http
            .get(next)
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(second["data"][0]["id"], foreign.as_str());
    assert!(second["paging"]["next"].is_null(), "{second}");

    let mine = json_of(
        h.get(&alice, "/me/replies", &[("fields", "id,is_reply")])
            .await,
    )
    .await;
    assert_eq!(mine["data"][0]["id"], nested.as_str());
    assert_eq!(mine["data"][1]["id"], own.as_str());
    assert_eq!(mine["data"].as_array().unwrap().len(), 2);

    let old = h.connect_with("dora_re", POST_ONLY).await;
    let refused = h.get(&old, &path, &[]).await;
    assert_eq!(refused.status(), 403);
    let err = json_of(refused).await;
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("threads_read_replies"),
        "{err}"
    );
    h.sandbox.stop().await;
}
