//! End-to-end tests of the Meta twin (Facebook Pages and Instagram) over real HTTP.

use std::collections::HashMap;
use std::time::Duration;

use herald_sandbox::{Fault, MetaEndpoint, MetaPageSpec, MetaUserSpec, Sandbox, SandboxConfig};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

const CLIENT_ID: &str = "herald-sandbox-meta";
const CLIENT_SECRET: &str = "herald-sandbox-meta-secret";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const PAGE_SCOPES: &str = "pages_show_list,pages_read_engagement,pages_manage_posts";
const ALL_SCOPES: &str =
    "pages_show_list,pages_read_engagement,pages_manage_posts,instagram_basic,instagram_content_publish";

struct Harness {
    sandbox: Sandbox,
    http: Client,
    graph: String,
}

async fn spawn_with(adjust: impl FnOnce(&mut SandboxConfig)) -> Harness {
    let mut config = SandboxConfig::default();
    config.meta.video_chunk_size = 1000;
    config.meta.ig_quota_total = 3;
    adjust(&mut config);
    let sandbox = Sandbox::start("127.0.0.1:0", config).await.expect("start");
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let graph = format!("{}/v25.0", sandbox.meta_base_url());
    Harness {
        sandbox,
        http,
        graph,
    }
}

async fn spawn() -> Harness {
    spawn_with(|_| {}).await
}

async fn json_of(resp: Response) -> Value {
    resp.json().await.expect("json body")
}

/// The Graph error of a response: `(code, subcode)`.
async fn graph_error(resp: Response) -> (i64, Option<i64>, Value) {
    let body = json_of(resp).await;
    let error = body["error"].clone();
    assert!(error["fbtrace_id"].is_string(), "{body}");
    (
        error["code"].as_i64().expect("code"),
        error["error_subcode"].as_i64(),
        error,
    )
}

struct Page {
    id: String,
    token: String,
    instagram: Option<String>,
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.graph, path)
    }

    fn media(&self, name: &str, bytes: u64) -> String {
        format!("{}/media/{name}?bytes={bytes}", self.sandbox.base_url())
    }

    async fn dialog(&self, extra: &[(&str, &str)]) -> Response {
        let mut query = vec![
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("state", "st4te"),
        ];
        query.extend_from_slice(extra);
        self.http
            .get(self.url("/dialog/oauth"))
            .query(&query)
            .send()
            .await
            .unwrap()
    }

    async fn code(&self, user: &str, scopes: &str, decline: &str) -> String {
        let resp = self
            .dialog(&[
                ("scope", scopes),
                ("sandbox_user", user),
                ("sandbox_decline", decline),
            ])
            .await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(REDIRECT));
        let q: HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(q["state"], "st4te");
        q["code"].clone()
    }

    async fn token_call(&self, query: &[(&str, &str)]) -> Response {
        self.http
            .get(self.url("/oauth/access_token"))
            .query(query)
            .send()
            .await
            .unwrap()
    }

    async fn exchange(&self, code: &str) -> Response {
        self.token_call(&[
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("redirect_uri", REDIRECT),
            ("code", code),
        ])
        .await
    }

    async fn long_lived(&self, short: &str) -> Response {
        self.token_call(&[
            ("grant_type", "fb_exchange_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("fb_exchange_token", short),
        ])
        .await
    }

    /// The long-lived user token of `user` after the whole login.
    async fn login(&self, user: &str, scopes: &str, decline: &str) -> String {
        let code = self.code(user, scopes, decline).await;
        let short = json_of(self.exchange(&code).await).await;
        assert_eq!(short["token_type"], "bearer");
        let long = json_of(
            self.long_lived(short["access_token"].as_str().unwrap())
                .await,
        )
        .await;
        assert_eq!(long["expires_in"], 5_183_944);
        long["access_token"].as_str().unwrap().to_owned()
    }

    async fn get(&self, path: &str, token: &str, query: &[(&str, &str)]) -> Response {
        self.http
            .get(self.url(path))
            .query(query)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, token: &str, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn pages(&self, user_token: &str) -> Vec<Page> {
        let body = json_of(
            self.get(
                "/me/accounts",
                user_token,
                &[(
                    "fields",
                    "id,name,access_token,tasks,instagram_business_account",
                )],
            )
            .await,
        )
        .await;
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| Page {
                id: p["id"].as_str().unwrap().to_owned(),
                token: p["access_token"].as_str().unwrap().to_owned(),
                instagram: p["instagram_business_account"]["id"]
                    .as_str()
                    .map(str::to_owned),
            })
            .collect()
    }

    async fn fault(&self, endpoint: &str, fault: Value, times: u32) {
        let resp = self
            .http
            .post(format!("{}/_sandbox/faults", self.sandbox.meta_base_url()))
            .json(&json!({"endpoint": endpoint, "fault": fault, "times": times}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    }

    async fn container(&self, ig: &str, token: &str, form: &[(&str, &str)]) -> Response {
        self.post(&format!("/{ig}/media"), token, form).await
    }

    async fn container_id(&self, ig: &str, token: &str, form: &[(&str, &str)]) -> String {
        let resp = self.container(ig, token, form).await;
        assert_eq!(resp.status(), 200);
        json_of(resp).await["id"].as_str().unwrap().to_owned()
    }

    async fn status(&self, container: &str, token: &str) -> Value {
        json_of(
            self.get(
                &format!("/{container}"),
                token,
                &[("fields", "status_code,status")],
            )
            .await,
        )
        .await
    }

    async fn wait_finished(&self, container: &str, token: &str) {
        for _ in 0..100 {
            if self.status(container, token).await["status_code"] == "FINISHED" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("container {container} never finished");
    }

    async fn publish(&self, ig: &str, token: &str, creation_id: &str) -> Response {
        self.post(
            &format!("/{ig}/media_publish"),
            token,
            &[("creation_id", creation_id)],
        )
        .await
    }

    async fn transfer(&self, page: &Page, session: &str, offset: u64, chunk: &[u8]) -> Response {
        let boundary = "XbOuNdArY";
        let mut body = Vec::new();
        for (name, value) in [
            ("upload_phase", "transfer"),
            ("upload_session_id", session),
            ("start_offset", &offset.to_string()),
        ] {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
            );
        }
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"video_file_chunk\"; filename=\"chunk\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.http
            .post(self.url(&format!("/{}/videos", page.id)))
            .bearer_auth(&page.token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn facebook_login_lists_each_page_with_a_token_and_its_instagram_account() {
    let h = spawn().await;
    let user = h.login("alice", ALL_SCOPES, "").await;
    let me = json_of(h.get("/me", &user, &[("fields", "id,name")]).await).await;
    assert_eq!(me["name"], "alice");
    let pages = h.pages(&user).await;
    assert_eq!(pages.len(), 2);
    assert!(pages[0].instagram.is_some(), "the first Page has IG linked");
    assert!(pages[1].instagram.is_none());
    let state = h.sandbox.meta_state();
    let page_tokens: Vec<_> = state
        .tokens_issued
        .iter()
        .filter(|t| t.kind == "page")
        .collect();
    assert_eq!(page_tokens.len(), 2);

    // A Page token acts as its Page.
    let page_me = json_of(
        h.get("/me", &pages[0].token, &[("fields", "id,name")])
            .await,
    )
    .await;
    assert_eq!(page_me["id"], pages[0].id.as_str());
    assert_eq!(page_me["name"], "alice Page One");
    let ig = pages[0].instagram.clone().unwrap();
    let account = json_of(
        h.get(
            &format!("/{ig}"),
            &pages[0].token,
            &[("fields", "id,username")],
        )
        .await,
    )
    .await;
    assert_eq!(account["username"], "alice_ig");
    let linked = json_of(
        h.get(
            &format!("/{}", pages[0].id),
            &user,
            &[("fields", "instagram_business_account")],
        )
        .await,
    )
    .await;
    assert_eq!(linked["instagram_business_account"]["id"], ig.as_str());
    // The other Page's token cannot use the account.
    let (code, subcode, _) = graph_error(
        h.get(&format!("/{ig}"), &pages[1].token, &[("fields", "id")])
            .await,
    )
    .await;
    assert_eq!((code, subcode), (100, Some(33)));

    // Paging follows `next`.
    let first = json_of(
        h.get("/me/accounts", &user, &[("limit", "1"), ("fields", "id")])
            .await,
    )
    .await;
    assert_eq!(first["data"].as_array().unwrap().len(), 1);
    let next = first["paging"]["next"].as_str().expect("a next page");
    let second = json_of(h.http.get(next).bearer_auth(&user).send().await.unwrap()).await;
    assert_eq!(second["data"][0]["id"], pages[1].id.as_str());
    assert!(second["paging"]["next"].is_null());

    // Permissions the user granted.
    let perms = json_of(h.get("/me/permissions", &user, &[]).await).await;
    assert!(perms["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["permission"] == "instagram_content_publish" && p["status"] == "granted"));
}

#[tokio::test]
async fn oauth_errors_follow_facebook_login() {
    let h = spawn().await;
    let code = h.code("bob", PAGE_SCOPES, "").await;
    // Wrong redirect: 36008; the code is then used up.
    let resp = h
        .token_call(&[
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("redirect_uri", "http://127.0.0.1:9/other"),
            ("code", &code),
        ])
        .await;
    assert_eq!(graph_error(resp).await.1, Some(36008));
    assert_eq!(graph_error(h.exchange(&code).await).await.1, Some(36009));
    let code = h.code("bob", PAGE_SCOPES, "").await;
    let resp = h
        .token_call(&[
            ("client_id", CLIENT_ID),
            ("client_secret", "wrong"),
            ("redirect_uri", REDIRECT),
            ("code", &code),
        ])
        .await;
    assert_eq!(graph_error(resp).await.0, 101);
    // An unknown token cannot be exchanged.
    let (code, _, _) = graph_error(h.long_lived("EAAnot-a-token").await).await;
    assert_eq!(code, 190);
    // The user cancels; unknown scopes are refused on the dialog page.
    let resp = h
        .dialog(&[("scope", PAGE_SCOPES), ("sandbox_deny", "1")])
        .await;
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("error=access_denied") && location.contains("state=st4te"));
    let resp = h.dialog(&[("scope", "publish_everything")]).await;
    assert_eq!(resp.status(), 400);
    // Unversioned Graph paths are not served.
    let resp = h
        .http
        .get(format!("{}/me", h.sandbox.meta_base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn page_posts_text_link_and_several_photos() {
    let h = spawn().await;
    let user = h.login("carol", PAGE_SCOPES, "").await;
    let page = h.pages(&user).await.remove(0);
    let feed = format!("/{}/feed", page.id);

    let text = json_of(
        h.post(&feed, &page.token, &[("message", "Hello Page")])
            .await,
    )
    .await;
    let text_id = text["id"].as_str().unwrap().to_owned();
    assert!(text_id.starts_with(&format!("{}_", page.id)));
    let twice = h
        .post(&feed, &page.token, &[("message", "Hello Page")])
        .await;
    assert_eq!(graph_error(twice).await.0, 506, "a duplicate status");
    let link = json_of(
        h.post(
            &feed,
            &page.token,
            &[("message", "Read this"), ("link", "https://example.com/a")],
        )
        .await,
    )
    .await;

    // Several photos: upload unpublished, then attach.
    let mut photos = Vec::new();
    for n in 0..3 {
        let resp = h
            .post(
                &format!("/{}/photos", page.id),
                &page.token,
                &[
                    ("url", &h.media(&format!("p{n}.jpg"), 2000)),
                    ("published", "false"),
                ],
            )
            .await;
        assert_eq!(resp.status(), 200);
        let body = json_of(resp).await;
        assert!(body["post_id"].is_null(), "unpublished photos make no post");
        photos.push(body["id"].as_str().unwrap().to_owned());
    }
    let mut form: Vec<(String, String)> = vec![("message".into(), "Album".into())];
    for (i, id) in photos.iter().enumerate() {
        form.push((
            format!("attached_media[{i}]"),
            json!({"media_fbid": id}).to_string(),
        ));
    }
    let album = h
        .http
        .post(h.url(&feed))
        .bearer_auth(&page.token)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(album.status(), 200);
    let album_id = json_of(album).await["id"].as_str().unwrap().to_owned();
    // A photo attaches once.
    let again = h
        .post(
            &feed,
            &page.token,
            &[(
                "attached_media",
                &json!([{"media_fbid": photos[0]}]).to_string(),
            )],
        )
        .await;
    assert_eq!(graph_error(again).await.0, 100);

    let listed = json_of(
        h.get(
            &feed,
            &page.token,
            &[("fields", "id,message,created_time,permalink_url")],
        )
        .await,
    )
    .await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [album_id.as_str(), link["id"].as_str().unwrap(), &text_id]
    );
    assert!(listed["data"][0]["permalink_url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("https://www.facebook.com/{}/posts/", page.id)));
    let state = h.sandbox.meta_state();
    let album = state.page_posts.iter().find(|p| p.id == album_id).unwrap();
    assert_eq!(album.photo_urls.len(), 3);
    assert!(album.photo_urls[2].contains("p2.jpg"));

    // Posting needs a Page token, and the Page must be the token's.
    let resp = h.post(&feed, &user, &[("message", "as the user")]).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(graph_error(resp).await.0, 200);
    // A PNG is fine for Facebook; a missing file is not.
    let png = h
        .post(
            &format!("/{}/photos", page.id),
            &page.token,
            &[("url", &h.media("x.png", 100))],
        )
        .await;
    assert_eq!(png.status(), 200);
    let missing = h
        .post(
            &format!("/{}/photos", page.id),
            &page.token,
            &[("url", &format!("{}/nothing.jpg", h.sandbox.base_url()))],
        )
        .await;
    assert_eq!(graph_error(missing).await.0, 324);
}

#[tokio::test]
async fn publishing_needs_the_create_content_task_and_permissions() {
    let h = spawn().await;
    h.sandbox.define_meta_user(&MetaUserSpec {
        username: "analyst".into(),
        name: None,
        pages: vec![MetaPageSpec {
            name: "Read Only Page".into(),
            category: None,
            tasks: Some(vec!["ANALYZE".into()]),
            instagram_business_account: None,
        }],
    });
    let user = h.login("analyst", PAGE_SCOPES, "").await;
    let page = h.pages(&user).await.remove(0);
    let resp = h
        .post(
            &format!("/{}/feed", page.id),
            &page.token,
            &[("message", "hi")],
        )
        .await;
    assert_eq!(graph_error(resp).await.0, 200);

    let user = h.login("dave", PAGE_SCOPES, "pages_manage_posts").await;
    let page = h.pages(&user).await.remove(0);
    let resp = h
        .post(
            &format!("/{}/feed", page.id),
            &page.token,
            &[("message", "hi")],
        )
        .await;
    assert_eq!(graph_error(resp).await.0, 200);
    // Without pages_show_list the app sees no Page.
    let user = h.login("erin", PAGE_SCOPES, "pages_show_list").await;
    assert!(h.pages(&user).await.is_empty());
}

#[tokio::test]
async fn video_upload_start_transfer_finish_then_processing() {
    let h = spawn().await;
    let user = h.login("vid", PAGE_SCOPES, "").await;
    let page = h.pages(&user).await.remove(0);
    let videos = format!("/{}/videos", page.id);
    let start = json_of(
        h.post(
            &videos,
            &page.token,
            &[("upload_phase", "start"), ("file_size", "2500")],
        )
        .await,
    )
    .await;
    assert_eq!(start["start_offset"], "0");
    assert_eq!(start["end_offset"], "1000");
    let session = start["upload_session_id"].as_str().unwrap().to_owned();
    let video_id = start["video_id"].as_str().unwrap().to_owned();
    let data = vec![7u8; 2500];

    let first = json_of(h.transfer(&page, &session, 0, &data[..1000]).await).await;
    assert_eq!(
        (first["start_offset"].as_str(), first["end_offset"].as_str()),
        (Some("1000"), Some("2000"))
    );
    // A wrong offset is corrected in error_data.
    let (code, subcode, error) =
        graph_error(h.transfer(&page, &session, 0, &data[..1000]).await).await;
    assert_eq!((code, subcode), (6000, Some(1_363_037)));
    assert_eq!(error["error_data"]["start_offset"], 1000);
    // Finishing early is refused.
    let early = h
        .post(
            &videos,
            &page.token,
            &[("upload_phase", "finish"), ("upload_session_id", &session)],
        )
        .await;
    assert_eq!(graph_error(early).await.0, 6000);
    h.transfer(&page, &session, 1000, &data[1000..2000]).await;
    let last = json_of(h.transfer(&page, &session, 2000, &data[2000..]).await).await;
    assert_eq!(last["start_offset"], "2500");
    let finish_form = [
        ("upload_phase", "finish"),
        ("upload_session_id", session.as_str()),
        ("title", "Clip"),
        ("description", "A clip"),
    ];
    for _ in 0..2 {
        let done = json_of(h.post(&videos, &page.token, &finish_form).await).await;
        assert_eq!(done["success"], true);
    }
    let status = json_of(
        h.get(
            &format!("/{video_id}"),
            &page.token,
            &[("fields", "status,permalink_url")],
        )
        .await,
    )
    .await;
    assert_eq!(status["status"]["video_status"], "processing");
    assert_eq!(
        status["permalink_url"],
        format!("/{}/videos/{video_id}/", page.id)
    );
    let feed = format!("/{}/feed", page.id);
    let listed = json_of(h.get(&feed, &page.token, &[]).await).await;
    assert!(listed["data"].as_array().unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = json_of(
        h.get(
            &format!("/{video_id}"),
            &page.token,
            &[("fields", "status")],
        )
        .await,
    )
    .await;
    assert_eq!(status["status"]["video_status"], "ready");
    let listed = json_of(h.get(&feed, &page.token, &[("fields", "id,message")]).await).await;
    assert_eq!(
        listed["data"][0]["id"],
        format!("{}_{video_id}", page.id).as_str()
    );
    assert_eq!(listed["data"][0]["message"], "A clip");
    assert_eq!(h.sandbox.meta_state().page_posts.len(), 1, "one post");

    // file_url: Meta fetches the file; a rejected one fails processing.
    h.fault("video_start", json!({"kind": "reject_media"}), 1)
        .await;
    let resp = h
        .post(
            &videos,
            &page.token,
            &[
                ("file_url", &h.media("v.mp4", 5000)),
                ("description", "bad"),
            ],
        )
        .await;
    let bad_id = json_of(resp).await["id"].as_str().unwrap().to_owned();
    let status = json_of(
        h.get(&format!("/{bad_id}"), &page.token, &[("fields", "status")])
            .await,
    )
    .await;
    assert_eq!(status["status"]["video_status"], "error");
    let image = h
        .post(&videos, &page.token, &[("file_url", &h.media("v.png", 10))])
        .await;
    assert_eq!(graph_error(image).await.0, 352);
}

#[tokio::test]
async fn instagram_image_reel_story_and_carousel_publish_once() {
    let h = spawn_with(|c| c.meta.ig_quota_total = 10).await;
    let user = h.login("ig_user", ALL_SCOPES, "").await;
    let page = h.pages(&user).await.remove(0);
    let ig = page.instagram.clone().unwrap();
    let token = &page.token;

    let image = h
        .container_id(
            &ig,
            token,
            &[
                ("image_url", &h.media("a.jpg", 3000)),
                ("caption", "One #pic"),
            ],
        )
        .await;
    assert_eq!(h.status(&image, token).await["status_code"], "FINISHED");
    let published = json_of(h.publish(&ig, token, &image).await).await;
    let media_id = published["id"].as_str().unwrap().to_owned();
    let again = h.publish(&ig, token, &image).await;
    assert_eq!(graph_error(again).await.0, 100);

    // A reel processes first; publishing early is "not ready" (9007/2207027).
    let reel = h
        .container_id(
            &ig,
            token,
            &[
                ("media_type", "REELS"),
                ("video_url", &h.media("r.mp4", 5000)),
                ("caption", "A reel"),
            ],
        )
        .await;
    assert_eq!(h.status(&reel, token).await["status_code"], "IN_PROGRESS");
    let (code, subcode, _) = graph_error(h.publish(&ig, token, &reel).await).await;
    assert_eq!((code, subcode), (9007, Some(2_207_027)));
    h.wait_finished(&reel, token).await;
    assert_eq!(h.publish(&ig, token, &reel).await.status(), 200);

    let story = h
        .container_id(
            &ig,
            token,
            &[
                ("media_type", "STORIES"),
                ("image_url", &h.media("s.jpg", 100)),
            ],
        )
        .await;
    assert_eq!(h.publish(&ig, token, &story).await.status(), 200);

    let child_a = h
        .container_id(
            &ig,
            token,
            &[
                ("image_url", &h.media("c1.jpg", 100)),
                ("is_carousel_item", "true"),
            ],
        )
        .await;
    let child_b = h
        .container_id(
            &ig,
            token,
            &[
                ("media_type", "VIDEO"),
                ("video_url", &h.media("c2.mp4", 100)),
                ("is_carousel_item", "true"),
            ],
        )
        .await;
    let one_child = h
        .container(
            &ig,
            token,
            &[("media_type", "CAROUSEL"), ("children", &child_a)],
        )
        .await;
    assert_eq!(graph_error(one_child).await.1, Some(2_207_028));
    let carousel = h
        .container_id(
            &ig,
            token,
            &[
                ("media_type", "CAROUSEL"),
                ("children", &format!("{child_a},{child_b}")),
                ("caption", "Album"),
            ],
        )
        .await;
    h.wait_finished(&carousel, token).await;
    assert_eq!(h.publish(&ig, token, &carousel).await.status(), 200);

    let state = h.sandbox.meta_state();
    let kinds: Vec<(&str, &str)> = state
        .instagram_media
        .iter()
        .map(|m| (m.media_type.as_str(), m.media_product_type.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("IMAGE", "FEED"),
            ("VIDEO", "REELS"),
            ("IMAGE", "STORY"),
            ("CAROUSEL_ALBUM", "FEED")
        ]
    );
    assert_eq!(state.instagram_media[3].media_urls.len(), 2);

    // The feed listing holds feed and reels; stories have their own edge.
    let listed = json_of(
        h.get(
            &format!("/{ig}/media"),
            token,
            &[(
                "fields",
                "id,caption,media_type,media_product_type,permalink,timestamp",
            )],
        )
        .await,
    )
    .await;
    let data = listed["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["caption"], "Album");
    assert!(data[1]["permalink"]
        .as_str()
        .unwrap()
        .starts_with("https://www.instagram.com/reel/"));
    let stories = json_of(h.get(&format!("/{ig}/stories"), token, &[]).await).await;
    assert_eq!(stories["data"].as_array().unwrap().len(), 1);
    let one = json_of(
        h.get(&format!("/{media_id}"), token, &[("fields", "permalink")])
            .await,
    )
    .await;
    assert!(one["permalink"]
        .as_str()
        .unwrap()
        .starts_with("https://www.instagram.com/p/"));
}

#[tokio::test]
async fn instagram_media_rules_and_publishing_quota() {
    let h = spawn().await;
    let user = h.login("quota", ALL_SCOPES, "").await;
    let page = h.pages(&user).await.remove(0);
    let ig = page.instagram.clone().unwrap();
    let token = &page.token;

    let png = h
        .container(&ig, token, &[("image_url", &h.media("a.png", 10))])
        .await;
    assert_eq!(graph_error(png).await.1, Some(2_207_005));
    let big = h
        .container(
            &ig,
            token,
            &[("image_url", &h.media("a.jpg", 9 * 1024 * 1024))],
        )
        .await;
    let (code, subcode, _) = graph_error(big).await;
    assert_eq!((code, subcode), (36000, Some(2_207_004)));
    let missing = h
        .container(
            &ig,
            token,
            &[("image_url", &format!("{}/none.jpg", h.sandbox.base_url()))],
        )
        .await;
    assert_eq!(graph_error(missing).await.1, Some(2_207_052));
    let long = h
        .container(
            &ig,
            token,
            &[
                ("image_url", &h.media("a.jpg", 10)),
                ("caption", &"x".repeat(2201)),
            ],
        )
        .await;
    assert_eq!(graph_error(long).await.1, Some(2_207_010));
    let single_video = h
        .container(
            &ig,
            token,
            &[
                ("media_type", "VIDEO"),
                ("video_url", &h.media("v.mp4", 10)),
            ],
        )
        .await;
    assert_eq!(graph_error(single_video).await.1, Some(2_207_023));
    // A video in an unsupported format ends in ERROR, with the reason in `status`.
    let avi = h
        .container_id(
            &ig,
            token,
            &[
                ("media_type", "REELS"),
                ("video_url", &h.media("v.gif", 10)),
            ],
        )
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = h.status(&avi, token).await;
    assert_eq!(status["status_code"], "ERROR");
    assert!(
        status["status"].as_str().unwrap().contains("2207026"),
        "{status}"
    );
    let (code, _, _) = graph_error(h.publish(&ig, token, &avi).await).await;
    assert_eq!(code, -1);

    // The quota (3 here) is enforced on media_publish and reported live.
    let limit = |fields: &'static str| {
        let path = format!("/{ig}/content_publishing_limit");
        let token = token.clone();
        let h = &h;
        async move { json_of(h.get(&path, &token, &[("fields", fields)]).await).await }
    };
    let before = limit("quota_usage,config").await;
    assert_eq!(before["data"][0]["quota_usage"], 0);
    assert_eq!(before["data"][0]["config"]["quota_total"], 3);
    assert_eq!(before["data"][0]["config"]["quota_duration"], 86_400);
    for n in 0..3 {
        let c = h
            .container_id(
                &ig,
                token,
                &[("image_url", &h.media(&format!("{n}.jpg"), 10))],
            )
            .await;
        assert_eq!(h.publish(&ig, token, &c).await.status(), 200);
    }
    let c = h
        .container_id(&ig, token, &[("image_url", &h.media("4.jpg", 10))])
        .await;
    let (code, subcode, _) = graph_error(h.publish(&ig, token, &c).await).await;
    assert_eq!((code, subcode), (9, Some(2_207_042)));
    let after = limit("quota_usage").await;
    assert_eq!(after["data"][0]["quota_usage"], 3);
    assert!(after["data"][0]["config"].is_null());
    assert_eq!(h.sandbox.meta_state().ig_quota_refusals, 1);

    // Without instagram_content_publish: (#10).
    let user = h
        .login("no_publish", ALL_SCOPES, "instagram_content_publish")
        .await;
    let page = h.pages(&user).await.remove(0);
    let ig = page.instagram.unwrap();
    let resp = h
        .container(&ig, &page.token, &[("image_url", &h.media("a.jpg", 10))])
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(graph_error(resp).await.0, 10);
}

#[tokio::test]
async fn faults_answer_like_the_graph_api() {
    let h = spawn().await;
    let user = h.login("faulty", ALL_SCOPES, "").await;
    let pages = h.pages(&user).await;
    let page = &pages[0];
    let ig = page.instagram.clone().unwrap();
    let token = &page.token;

    // Instagram's business-use-case limit: 80002 and the wait in minutes.
    h.fault(
        "ig_publishing_limit",
        json!({"kind": "rate_limited", "retry_after_secs": 120}),
        1,
    )
    .await;
    let resp = h
        .get(&format!("/{ig}/content_publishing_limit"), token, &[])
        .await;
    let buc: Value = serde_json::from_str(
        resp.headers()["x-business-use-case-usage"]
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(buc[&ig][0]["type"], "instagram");
    assert_eq!(buc[&ig][0]["estimated_time_to_regain_access"], 2);
    assert_eq!(graph_error(resp).await.0, 80002);
    // A Page's: 80001. The app's (user token): 4 with X-App-Usage at 100.
    h.fault(
        "page_feed",
        json!({"kind": "rate_limited", "retry_after_secs": 60}),
        1,
    )
    .await;
    let resp = h
        .post(&format!("/{}/feed", page.id), token, &[("message", "x")])
        .await;
    assert_eq!(graph_error(resp).await.0, 80001);
    h.fault(
        "me",
        json!({"kind": "rate_limited", "retry_after_secs": 60}),
        1,
    )
    .await;
    let resp = h.get("/me/accounts", &user, &[]).await;
    let usage: Value =
        serde_json::from_str(resp.headers()["x-app-usage"].to_str().unwrap()).unwrap();
    assert_eq!(usage["call_count"], 100);
    assert_eq!(graph_error(resp).await.0, 4);
    // Usage headers on ordinary answers: a Page token's call counts against the business use
    // case, a user token's against the app.
    let resp = h.get(&format!("/{ig}"), token, &[]).await;
    assert!(!resp.headers().contains_key("x-app-usage"));
    assert!(resp.headers().contains_key("x-business-use-case-usage"));
    let resp = h.get("/me/accounts", &user, &[]).await;
    assert!(resp.headers().contains_key("x-app-usage"));
    assert!(!resp.headers().contains_key("x-business-use-case-usage"));

    // Content rejected: Instagram's spam restriction.
    let c = h
        .container_id(&ig, token, &[("image_url", &h.media("a.jpg", 10))])
        .await;
    h.fault("ig_publish", json!({"kind": "content_rejected"}), 1)
        .await;
    let (code, subcode, _) = graph_error(h.publish(&ig, token, &c).await).await;
    assert_eq!((code, subcode), (4, Some(2_207_051)));
    // Server error, then the effect happens once.
    h.fault(
        "ig_publish",
        json!({"kind": "server_error", "status": 503}),
        1,
    )
    .await;
    let resp = h.publish(&ig, token, &c).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(graph_error(resp).await.0, 1);
    // Timeout after success: the media exists although the answer is late.
    h.fault(
        "ig_publish",
        json!({"kind": "timeout_after_success", "secs": 0.3}),
        1,
    )
    .await;
    let quick = Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let timed_out = quick
        .post(h.url(&format!("/{ig}/media_publish")))
        .bearer_auth(token)
        .form(&[("creation_id", c.as_str())])
        .send()
        .await;
    assert!(timed_out.is_err());
    assert_eq!(h.sandbox.meta_state().instagram_media.len(), 1);
    // Rejected media: the container ends in ERROR.
    h.fault("ig_create_container", json!({"kind": "reject_media"}), 1)
        .await;
    let bad = h
        .container_id(&ig, token, &[("image_url", &h.media("b.jpg", 10))])
        .await;
    assert_eq!(h.status(&bad, token).await["status_code"], "ERROR");

    // An expired token: 190/463. A revoked grant: 190/458 for every token of the user.
    h.fault("account", json!({"kind": "expire_token"}), 1).await;
    let (code, subcode, _) = graph_error(h.get(&format!("/{ig}"), token, &[]).await).await;
    assert_eq!((code, subcode), (190, Some(463)));
    assert_eq!(
        graph_error(h.get(&format!("/{ig}"), token, &[]).await)
            .await
            .1,
        Some(463)
    );
    h.fault("me", json!({"kind": "revoke_grant"}), 1).await;
    assert_eq!(
        graph_error(h.get("/me", &user, &[]).await).await.1,
        Some(458)
    );
    let (code, subcode, _) = graph_error(h.get("/me", &pages[1].token, &[]).await).await;
    assert_eq!((code, subcode), (190, Some(458)));

    // Control routes validate.
    let resp = h
        .http
        .post(format!("{}/_sandbox/faults", h.sandbox.meta_base_url()))
        .json(&json!({"endpoint": "nowhere", "fault": {"kind": "reject_media"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    h.sandbox
        .inject_meta_fault(MetaEndpoint::IgPublish, Fault::RejectMedia, 2);
    h.sandbox.clear_meta_faults();
}

#[tokio::test]
async fn a_user_without_a_linked_business_account_has_no_instagram_account() {
    let h = spawn().await;
    let resp = h
        .http
        .post(format!("{}/_sandbox/users", h.sandbox.meta_base_url()))
        .json(&json!({"username": "personal", "pages": [{"name": "Only Facebook"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let user = h.login("personal", ALL_SCOPES, "").await;
    let pages = h.pages(&user).await;
    assert_eq!(pages.len(), 1);
    assert!(pages[0].instagram.is_none());
    let nobody = h.login("no_pages_user", ALL_SCOPES, "").await;
    assert_eq!(h.pages(&nobody).await.len(), 2, "the default layout");
    h.sandbox.define_meta_user(&MetaUserSpec {
        username: "no_pages_user".into(),
        name: None,
        pages: vec![],
    });
    assert!(h.pages(&nobody).await.is_empty());
}

/// One rupload request: `Authorization: OAuth`, `offset`, `file_size`, the raw bytes.
async fn rupload(
    h: &Harness,
    uri: &str,
    token: Option<&str>,
    offset: u64,
    file_size: u64,
    bytes: &[u8],
) -> Response {
    let mut request = h
        .http
        .post(uri)
        .header("offset", offset.to_string())
        .header("file_size", file_size.to_string())
        .body(bytes.to_vec());
    if let Some(token) = token {
        request = request.header("authorization", format!("OAuth {token}"));
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn instagram_resumable_upload_takes_the_video_in_parts() {
    let h = spawn().await;
    let user = h.login("rupload", ALL_SCOPES, "").await;
    let page = h.pages(&user).await.remove(0);
    let ig = page.instagram.clone().unwrap();
    let token = page.token.as_str();

    let image = h
        .container(
            &ig,
            token,
            &[("upload_type", "resumable"), ("media_type", "IMAGE")],
        )
        .await;
    assert_eq!(graph_error(image).await.1, Some(2_207_023));
    let created = json_of(
        h.container(
            &ig,
            token,
            &[
                ("upload_type", "resumable"),
                ("media_type", "REELS"),
                ("caption", "uploaded reel"),
            ],
        )
        .await,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let uri = created["uri"].as_str().unwrap().to_owned();
    assert_eq!(
        uri,
        format!("{}/ig-api-upload/v25.0/{id}", h.sandbox.meta_base_url())
    );
    assert_eq!(h.status(&id, token).await["status_code"], "IN_PROGRESS");
    let (code, subcode, _) = graph_error(h.publish(&ig, token, &id).await).await;
    assert_eq!(
        (code, subcode),
        (9007, Some(2_207_027)),
        "not ready before the bytes"
    );

    let video = h
        .http
        .get(h.media("clip.mp4", 3000))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let resp = rupload(&h, &uri, Some(token), 0, 3000, &video[..1000]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json_of(resp).await["success"], true);
    // No gap: an offset past what arrived is refused; one before it is fine (bytes already
    // here are ignored).
    let gap = rupload(&h, &uri, Some(token), 2000, 3000, &video[2000..]).await;
    assert_eq!(gap.status(), 400);
    assert!(graph_error(gap).await.2["message"]
        .as_str()
        .unwrap()
        .contains("1000 bytes received"));
    let other_size = rupload(&h, &uri, Some(token), 1000, 4000, &video[1000..]).await;
    assert_eq!(other_size.status(), 400);
    let anonymous = rupload(&h, &uri, None, 1000, 3000, &video[1000..2000]).await;
    assert_eq!(graph_error(anonymous).await.0, 2500);
    h.fault(
        "ig_upload",
        json!({"kind": "server_error", "status": 503}),
        1,
    )
    .await;
    let failed = rupload(&h, &uri, Some(token), 1000, 3000, &video[1000..2000]).await;
    assert_eq!(failed.status(), 503);
    let overlap = rupload(&h, &uri, Some(token), 500, 3000, &video[500..2000]).await;
    assert_eq!(overlap.status(), 200);
    assert_eq!(
        h.sandbox.meta_state().containers[0].bytes_received,
        2000,
        "the overlap was taken once"
    );
    let last = rupload(&h, &uri, Some(token), 2000, 3000, &video[2000..]).await;
    assert_eq!(last.status(), 200);
    assert!(json_of(last).await["message"]
        .as_str()
        .unwrap()
        .starts_with("Upload successful"));
    let state = h.sandbox.meta_state();
    let container = &state.containers[0];
    assert_eq!(container.upload_type.as_deref(), Some("resumable"));
    assert_eq!(container.file_size, Some(3000));
    assert_eq!(
        container.upload_checksum.as_deref(),
        Some(herald_sandbox::tiktok::checksum(&video).as_str())
    );
    let sent: Vec<(Option<u64>, u64, Option<u16>, bool)> = state
        .ig_uploads
        .iter()
        .map(|u| (u.offset, u.bytes_received, u.status, u.accepted))
        .collect();
    assert_eq!(
        sent,
        [
            (Some(0), 1000, Some(200), true),
            (Some(2000), 1000, Some(400), false),
            (Some(1000), 2000, Some(400), false),
            (Some(1000), 1000, Some(400), false),
            (Some(1000), 1000, Some(503), false),
            (Some(500), 1500, Some(200), true),
            (Some(2000), 1000, Some(200), true),
        ]
    );
    h.wait_finished(&id, token).await;
    assert_eq!(h.publish(&ig, token, &id).await.status(), 200);
    let media = &h.sandbox.meta_state().instagram_media[0];
    assert_eq!(
        (media.media_type.as_str(), media.media_product_type.as_str()),
        ("VIDEO", "REELS")
    );
    assert_eq!(media.caption, "uploaded reel");
    assert!(media.media_urls[0].ends_with(".mp4"), "{media:?}");

    // Bytes that are no video: the container ends in ERROR once they are all in.
    let created = json_of(
        h.container(
            &ig,
            token,
            &[("upload_type", "resumable"), ("media_type", "STORIES")],
        )
        .await,
    )
    .await;
    let (id, uri) = (
        created["id"].as_str().unwrap(),
        created["uri"].as_str().unwrap(),
    );
    assert_eq!(
        rupload(&h, uri, Some(token), 0, 5, b"hello").await.status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = h.status(id, token).await;
    assert_eq!(status["status_code"], "ERROR");
    assert!(
        status["status"].as_str().unwrap().contains("2207026"),
        "{status}"
    );
    // A container made from a URL takes no upload.
    let plain = h
        .container_id(
            &ig,
            token,
            &[
                ("media_type", "REELS"),
                ("video_url", &h.media("v.mp4", 10)),
            ],
        )
        .await;
    let uri = format!("{}/ig-api-upload/v25.0/{plain}", h.sandbox.meta_base_url());
    assert_eq!(
        rupload(&h, &uri, Some(token), 0, 5, b"hello")
            .await
            .status(),
        400
    );
}

/// A Page's business-use-case budget: the usage header climbs with each call, the call that
/// spends the last of it says how many minutes until access is back, and the next call is
/// refused with 80001 until the window ends. The app's budget is apart (code 4).
#[tokio::test]
async fn the_usage_budget_runs_out_and_comes_back() {
    let h = spawn_with(|config| {
        config.meta.call_budget = 4;
        config.meta.usage_window = std::time::Duration::from_secs(2);
    })
    .await;
    let user = h.login("busy", ALL_SCOPES, "").await;
    let pages = h.pages(&user).await;
    let page = &pages[0];
    let buc = |resp: &Response| -> Value {
        let raw = resp.headers()["x-business-use-case-usage"]
            .to_str()
            .unwrap();
        serde_json::from_str::<Value>(raw).unwrap()[&page.id][0].clone()
    };
    let mut seen = Vec::new();
    for i in 0..4 {
        let resp = h
            .post(
                &format!("/{}/feed", page.id),
                &page.token,
                &[("message", &format!("m{i}"))],
            )
            .await;
        assert_eq!(resp.status(), 200);
        let usage = buc(&resp);
        assert_eq!(usage["type"], "pages");
        seen.push((
            usage["call_count"].as_u64().unwrap(),
            usage["estimated_time_to_regain_access"].as_u64().unwrap(),
        ));
    }
    assert_eq!(seen, [(25, 0), (50, 0), (75, 0), (100, 1)]);
    let refused = h
        .post(
            &format!("/{}/feed", page.id),
            &page.token,
            &[("message", "over")],
        )
        .await;
    assert_eq!(buc(&refused)["call_count"], 100);
    assert_eq!(buc(&refused)["estimated_time_to_regain_access"], 1);
    let (code, _, error) = graph_error(refused).await;
    assert_eq!(code, 80001, "{error}");
    let state = h.sandbox.meta_state();
    assert_eq!(state.page_posts.len(), 4);
    let events: Vec<(bool, u64)> = state
        .usage_events
        .iter()
        .filter(|e| e.owner == page.id)
        .map(|e| (e.refused, e.regain_minutes))
        .collect();
    assert_eq!(events, [(false, 1), (true, 1)]);
    // The app's budget (user-token calls) is another owner's.
    let resp = h.get("/me/accounts", &user, &[]).await;
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let again = h
        .post(
            &format!("/{}/feed", page.id),
            &page.token,
            &[("message", "back")],
        )
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(buc(&again)["call_count"], 25);
}

/// A reel's status: `(video_status, uploading, processing, publishing, bytes_transfered)`.
async fn reel_status(
    h: &Harness,
    page: &Page,
    video_id: &str,
) -> (String, String, String, String, Value) {
    let body = json_of(
        h.get(
            &format!("/{video_id}"),
            &page.token,
            &[("fields", "status")],
        )
        .await,
    )
    .await;
    let s = &body["status"];
    let phase = |name: &str| s[name]["status"].as_str().unwrap_or_default().to_owned();
    (
        s["video_status"].as_str().unwrap_or_default().to_owned(),
        phase("uploading_phase"),
        phase("processing_phase"),
        phase("publishing_phase"),
        s["uploading_phase"]["bytes_transfered"].clone(),
    )
}

#[tokio::test]
async fn page_reels_start_upload_finish_and_stop_at_the_pages_limit() {
    let h = spawn_with(|c| c.meta.reel_quota_total = 1).await;
    let user = h.login("reels", PAGE_SCOPES, "").await;
    let page = h.pages(&user).await.remove(0);
    let reels = format!("/{}/video_reels", page.id);
    let start = json_of(
        h.post(&reels, &page.token, &[("upload_phase", "start")])
            .await,
    )
    .await;
    let video_id = start["video_id"].as_str().unwrap().to_owned();
    let upload_url = start["upload_url"].as_str().unwrap().to_owned();
    assert!(
        upload_url.ends_with(&format!("/video-upload/v25.0/{video_id}")),
        "{upload_url}"
    );
    // An MP4 header, then the rest.
    let mut data = vec![0u8; 3000];
    data[4..8].copy_from_slice(b"ftyp");

    let first = rupload(&h, &upload_url, Some(&page.token), 0, 3000, &data[..1000]).await;
    assert_eq!(json_of(first).await, json!({"success": true}));
    let (status, uploading, _, publishing, held) = reel_status(&h, &page, &video_id).await;
    assert_eq!(
        (status.as_str(), uploading.as_str(), publishing.as_str()),
        ("uploading", "in_progress", "not_started")
    );
    assert_eq!(held, 1000, "Meta says what it holds");
    // Finishing early, a later offset and another Page's token are refused.
    let early = h
        .post(
            &reels,
            &page.token,
            &[
                ("upload_phase", "finish"),
                ("video_id", &video_id),
                ("video_state", "PUBLISHED"),
            ],
        )
        .await;
    assert_eq!(graph_error(early).await.0, 6000);
    let gap = rupload(
        &h,
        &upload_url,
        Some(&page.token),
        2000,
        3000,
        &data[2000..],
    )
    .await;
    assert_eq!(gap.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        rupload(&h, &upload_url, None, 1000, 3000, &data[1000..])
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    // A range sent again is taken once.
    let rest = rupload(&h, &upload_url, Some(&page.token), 500, 3000, &data[500..]).await;
    assert!(rest.status().is_success());
    let (status, uploading, processing, publishing, _) = reel_status(&h, &page, &video_id).await;
    assert_eq!(
        (uploading.as_str(), processing.as_str(), publishing.as_str()),
        ("complete", "not_started", "not_started"),
        "{status}: uploaded, waiting for finish"
    );
    assert_eq!(
        json_of(finish_reel(&h, &page, &video_id).await).await,
        json!({"success": true})
    );
    let (status, _, processing, _, _) = reel_status(&h, &page, &video_id).await;
    assert_eq!(
        (status.as_str(), processing.as_str()),
        ("processing", "in_progress")
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _, processing, publishing, _) = reel_status(&h, &page, &video_id).await;
    assert_eq!(
        (status.as_str(), processing.as_str(), publishing.as_str()),
        ("ready", "complete", "complete")
    );
    // Finishing twice publishes once.
    assert!(finish_reel(&h, &page, &video_id)
        .await
        .status()
        .is_success());

    // The Page's reels of the window are used up: the next publish is refused.
    let second = json_of(
        h.post(&reels, &page.token, &[("upload_phase", "start")])
            .await,
    )
    .await;
    let second_id = second["video_id"].as_str().unwrap().to_owned();
    let url = second["upload_url"].as_str().unwrap().to_owned();
    assert!(rupload(&h, &url, Some(&page.token), 0, 3000, &data)
        .await
        .status()
        .is_success());
    let (code, _, error) = graph_error(finish_reel(&h, &page, &second_id).await).await;
    assert_eq!(code, 4);
    assert!(
        error["message"].as_str().unwrap().contains("reels"),
        "{error}"
    );
    let state = h.sandbox.meta_state();
    assert_eq!(state.reel_quota_refusals, 1);
    assert_eq!(
        state
            .videos
            .iter()
            .filter(|v| v.reel && v.post_id.is_some())
            .count(),
        1
    );
    let offsets: Vec<(Option<u64>, bool)> = state
        .reel_uploads
        .iter()
        .map(|u| (u.offset, u.accepted))
        .collect();
    assert_eq!(
        offsets,
        [
            (Some(0), true),
            (Some(2000), false),
            (Some(1000), false),
            (Some(500), true),
            (Some(0), true)
        ]
    );
}

/// `upload_phase=finish` of a reel, published with a description.
async fn finish_reel(h: &Harness, page: &Page, video_id: &str) -> Response {
    h.post(
        &format!("/{}/video_reels", page.id),
        &page.token,
        &[
            ("upload_phase", "finish"),
            ("video_id", video_id),
            ("video_state", "PUBLISHED"),
            ("description", "A reel"),
        ],
    )
    .await
}
