//! Facebook Pages and Instagram end to end: Facebook Login through the API → one connection per
//! Page, and one per linked Instagram business account → publish every content type → sandbox
//! Meta twin → projections; the documented error classes; the Instagram publishing limit held
//! strictly by two worker processes at once; reels uploaded resumably, also across a worker
//! killed mid-upload; Facebook Page reels, their resumed upload and the Page's reels of 24 hours;
//! and Facebook's signed Deauthorize Callback ending a person's connections.
mod support;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use herald_sandbox::{MetaPageSpec, MetaUserSpec, SandboxConfig};
use serde_json::{json, Value};
use support::worker::published_or_waiting_for_a_limit;
use support::worker::SplitApp;
use support::{event_data, eventually, spawn_app, spawn_app_configured, time, Backend, TestApp};

const SOON: Duration = Duration::from_secs(20);

fn media(app: &TestApp, name: &str) -> Value {
    let (kind, mime) = match name.rsplit_once('.').map(|(_, e)| e) {
        Some("mp4") => ("video", "video/mp4"),
        Some("png") => ("image", "image/png"),
        _ => ("image", "image/jpeg"),
    };
    json!({
        "url": format!("{}/media/{name}?bytes=3000", app.sandbox.base_url()),
        "kind": kind,
        "mime_type": mime,
    })
}

/// Publishes `content` and waits until the job is published; returns the job.
async fn published(app: &TestApp, connection: &str, content: Value) -> Value {
    let job_id = app.publish("alice", connection, content).await;
    app.wait_for_status("alice", &job_id, "published", SOON)
        .await
}

fn calls(app: &TestApp, method: &str, suffix: &str) -> usize {
    app.sandbox
        .meta_state()
        .requests
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(suffix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_facebook_login_connects_every_page_and_the_linked_instagram_account() {
    let app = spawn_app(Backend::Embedded).await;
    let pages = app.connect_facebook_pages("alice", "meta_alice").await;
    assert_eq!(pages.len(), 2, "one connection per Page");
    let instagram = app.connect_instagram("alice", "meta_alice").await;
    assert_eq!(instagram.len(), 1, "the business account linked to a Page");
    // The read model catches up with the second login.
    let connections = eventually("three connections are listed", SOON, || async {
        let connections = app.connections("alice").await;
        (connections.len() == 3).then_some(connections)
    })
    .await;
    let mut seen: Vec<(String, String)> = connections
        .iter()
        .map(|c| {
            (
                c["platform"].as_str().unwrap().to_owned(),
                c["username"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("facebook_pages".into(), "meta_alice Page One".into()),
            ("facebook_pages".into(), "meta_alice Page Two".into()),
            ("instagram".into(), "meta_alice_ig".into()),
        ]
    );
    let state = app.sandbox.meta_state();
    for connection in &connections {
        let text = connection.to_string();
        assert!(
            state
                .tokens_issued
                .iter()
                .all(|t| !text.contains(&t.access_token)),
            "no token in a connection view"
        );
    }

    // A personal Instagram account cannot be linked to a Page: the person is told what to do.
    app.sandbox.define_meta_user(&MetaUserSpec {
        username: "meta_personal".into(),
        name: None,
        pages: vec![MetaPageSpec {
            name: "Corner Shop".into(),
            category: None,
            tasks: None,
            instagram_business_account: None,
        }],
    });
    let problem = app
        .connect_accounts("instagram", "bob", "meta_personal")
        .await
        .unwrap_err();
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("professional account (Business or Creator)")
            && detail.contains("Corner Shop"),
        "{problem}"
    );
    assert!(app.connections("bob").await.is_empty());
    app.stop().await;
}

/// A person who removes Herald in their Facebook settings ends every connection made from their
/// login (their Pages and Instagram accounts, whichever Herald user connected them), once Meta's
/// signed Deauthorize Callback checks out; a forged one changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_deauthorize_callback_ends_the_persons_connections() {
    let app = spawn_app(Backend::Embedded).await;
    let pages = app.connect_facebook_pages("alice", "meta_quitting").await;
    let instagram = app
        .connect_instagram("bob", "meta_quitting")
        .await
        .remove(0);
    let others = app.connect_facebook_pages("alice", "meta_staying").await;
    eventually("every connection view", SOON, || async {
        (app.connections("alice").await.len() == 4 && app.connections("bob").await.len() == 1)
            .then_some(())
    })
    .await;
    let callback = format!("{}/api/v1/webhooks/facebook_pages", app.url);
    let set = app
        .http
        .put(format!(
            "{}/_sandbox/deauthorize_callback",
            app.sandbox.meta_base_url()
        ))
        .json(&json!({"url": callback}))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success());

    let forged = app
        .http
        .post(&callback)
        .form(&[(
            "signed_request",
            herald_sandbox::meta::signed_request("not the app secret", Utc::now().timestamp(), "1"),
        )])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    let removed: Value = app
        .http
        .post(format!(
            "{}/_sandbox/deauthorize",
            app.sandbox.meta_base_url()
        ))
        .json(&json!({"username": "meta_quitting"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(removed["delivered_status"], 200, "{removed}");
    let statuses = |views: Vec<Value>| -> Vec<(String, String)> {
        views
            .into_iter()
            .map(|v| {
                (
                    v["connection_id"].as_str().unwrap().to_owned(),
                    v["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    eventually("the person's connections need them", SOON, || async {
        let alice = statuses(app.connections("alice").await);
        let bob = statuses(app.connections("bob").await);
        let ended = |id: &String| {
            alice
                .iter()
                .chain(&bob)
                .any(|(c, s)| c == id && s == "expired")
        };
        (pages.iter().all(ended) && ended(&instagram)).then_some(())
    })
    .await;
    let alice = statuses(app.connections("alice").await);
    for page in &others {
        assert!(
            alice.iter().any(|(c, s)| c == page && s == "active"),
            "another person's Pages stay: {alice:?}"
        );
    }
    let view = app
        .connections("bob")
        .await
        .into_iter()
        .find(|v| v["connection_id"] == instagram.as_str())
        .unwrap();
    assert!(
        view["status_reason"]
            .as_str()
            .unwrap()
            .contains("the person removed Herald in their Facebook settings"),
        "{view}"
    );
    app.stop().await;
}

async fn disconnect(app: &TestApp, user: &str, platform: &str, connection: &str) {
    let path = format!("/{platform}/disconnect?connection_id={connection}");
    assert_eq!(app.delete(user, &path).await.status(), 200);
}

/// Facebook grants its permissions per person, not per token: Herald takes them back only when
/// the person's last connection goes, whichever login, platform or Herald user made the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_persons_permissions_are_revoked_with_their_last_connection_only() {
    let app = spawn_app(Backend::Embedded).await;
    let pages = app.connect_facebook_pages("alice", "meta_leaving").await;
    let alices_instagram = app
        .connect_instagram("alice", "meta_leaving")
        .await
        .remove(0);
    let bobs_instagram = app.connect_instagram("bob", "meta_leaving").await.remove(0);
    eventually("every connection view", SOON, || async {
        (app.connections("alice").await.len() == 3 && app.connections("bob").await.len() == 1)
            .then_some(())
    })
    .await;
    let revoked = || app.sandbox.meta_state().revoked_permissions;

    disconnect(&app, "alice", "facebook_pages", &pages[0]).await;
    assert!(revoked().is_empty(), "the other Page shares the login");
    disconnect(&app, "alice", "facebook_pages", &pages[1]).await;
    assert!(
        revoked().is_empty(),
        "the person's Instagram connections remain"
    );
    disconnect(&app, "alice", "instagram", &alices_instagram).await;
    assert!(revoked().is_empty(), "bob connected the same person");
    let job = app
        .publish(
            "bob",
            &bobs_instagram,
            json!({"text": "still connected", "media": [media(&app, "b.jpg")]}),
        )
        .await;
    app.wait_for_status("bob", &job, "published", SOON).await;

    disconnect(&app, "bob", "instagram", &bobs_instagram).await;
    let state = app.sandbox.meta_state();
    let person = state
        .users
        .iter()
        .find(|u| u.username == "meta_leaving")
        .unwrap();
    let mut taken_back: Vec<&str> = state
        .revoked_permissions
        .iter()
        .map(|r| {
            assert_eq!(r.user_id, person.id);
            r.permission.as_str()
        })
        .collect();
    taken_back.sort_unstable();
    taken_back.dedup();
    assert!(
        taken_back.contains(&"instagram_content_publish")
            && taken_back.contains(&"pages_manage_posts"),
        "every permission the person granted, from both logins: {taken_back:?}"
    );
    eventually("bob's connection shows disconnected", SOON, || async {
        (app.connections("bob").await[0]["status"] == "disconnected").then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_facebook_content_type_is_published_once() {
    let app = spawn_app(Backend::Embedded).await;
    let pages = app.connect_facebook_pages("alice", "meta_fb").await;

    let text = published(&app, &pages[0], json!({"text": "Hello from Herald"})).await;
    let link = published(
        &app,
        &pages[0],
        json!({"text": "Worth reading", "link": "https://example.com/story"}),
    )
    .await;
    let album = published(
        &app,
        &pages[0],
        json!({"text": "Three photos", "media": [media(&app, "a.jpg"), media(&app, "b.png"), media(&app, "c.jpg")]}),
    )
    .await;
    let clip = published(
        &app,
        &pages[0],
        json!({"text": "A short clip", "title": "Clip", "media": [media(&app, "clip.mp4")]}),
    )
    .await;
    let other_page = published(&app, &pages[1], json!({"text": "On the second Page"})).await;

    let state = app.sandbox.meta_state();
    assert_eq!(state.page_posts.len(), 5, "exactly one post per job");
    let post = |job: &Value| {
        let id = job["post_id"].as_str().unwrap();
        let post = state
            .page_posts
            .iter()
            .find(|p| p.id == id)
            .unwrap_or_else(|| panic!("{id} is not on the Page"));
        assert_eq!(job["post_url"], post.permalink_url.as_str(), "{job}");
        post.clone()
    };
    assert_eq!(post(&text).message.as_deref(), Some("Hello from Herald"));
    assert_eq!(
        post(&link).link.as_deref(),
        Some("https://example.com/story")
    );
    assert_eq!(post(&album).photo_urls.len(), 3);
    let video = post(&clip);
    assert!(video.visible, "processed before Published");
    assert!(clip["post_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/videos/{}/", video.video_id.unwrap())));
    assert_eq!(state.videos[0].title.as_deref(), Some("Clip"));
    assert_ne!(post(&other_page).page_id, post(&text).page_id);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instagram_content_type_is_published_once() {
    let app = spawn_app(Backend::Embedded).await;
    let account = app.connect_instagram("alice", "meta_ig").await.remove(0);
    let reels = json!({"instagram": {"placement": "reels"}});
    let stories = json!({"instagram": {"placement": "stories"}});
    let jobs = [
        published(&app, &account, json!({"text": "A photo", "hashtags": ["herald"], "media": [media(&app, "p.jpg")]})).await,
        published(&app, &account, json!({"text": "A feed video", "media": [media(&app, "v.mp4")]})).await,
        published(&app, &account, json!({"text": "A reel", "media": [media(&app, "r.mp4")], "options": reels})).await,
        published(&app, &account, json!({"text": "A story", "media": [media(&app, "s.jpg")], "options": stories})).await,
        published(
            &app,
            &account,
            json!({"text": "A carousel", "media": [media(&app, "1.jpg"), media(&app, "2.mp4"), media(&app, "3.jpg")]}),
        )
        .await,
    ];
    let state = app.sandbox.meta_state();
    assert_eq!(state.instagram_media.len(), 5, "exactly one post per job");
    let kinds: Vec<(String, String)> = jobs
        .iter()
        .map(|job| {
            let media = state
                .instagram_media
                .iter()
                .find(|m| job["post_id"] == m.id.as_str())
                .unwrap_or_else(|| panic!("{job}"));
            assert_eq!(job["post_url"], media.permalink.as_str());
            (media.media_type.clone(), media.media_product_type.clone())
        })
        .collect();
    let expected = [
        ("IMAGE", "FEED"),
        ("VIDEO", "REELS"),
        ("VIDEO", "REELS"),
        ("IMAGE", "STORY"),
        ("CAROUSEL_ALBUM", "FEED"),
    ];
    assert_eq!(kinds, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    assert_eq!(state.instagram_media[0].caption, "A photo\n\n#herald");
    assert_eq!(state.instagram_media[4].media_urls.len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_kafka_publish_to_a_page_and_to_instagram() {
    let app = spawn_app(Backend::PostgresKafka).await;
    let page = app
        .connect_facebook_pages("alice", "meta_pg")
        .await
        .remove(0);
    let account = app.connect_instagram("alice", "meta_pg").await.remove(0);
    let fb = published(&app, &page, json!({"text": "Pages via Kafka"})).await;
    let reel = published(
        &app,
        &page,
        json!({"text": "A reel via Kafka", "media": [reel_video(&app, "k.mp4", 5000)], "options": {"facebook_pages": {"placement": "reels"}}}),
    )
    .await;
    let ig = published(
        &app,
        &account,
        json!({"text": "Instagram via Kafka", "media": [media(&app, "k.jpg")]}),
    )
    .await;
    let state = app.sandbox.meta_state();
    assert_eq!(state.page_posts.len(), 1);
    assert_eq!(fb["post_id"], state.page_posts[0].id.as_str());
    assert_eq!(state.instagram_media.len(), 1);
    assert_eq!(ig["post_id"], state.instagram_media[0].id.as_str());
    let reels: Vec<_> = state.videos.iter().filter(|v| v.reel).collect();
    assert_eq!(reels.len(), 1);
    assert_eq!(reel["post_id"], reels[0].post_id.as_deref().unwrap());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_error_classes_get_the_right_outcome() {
    let app = spawn_app(Backend::Embedded).await;
    let page = app
        .connect_facebook_pages("alice", "meta_err")
        .await
        .remove(0);
    let account = app.connect_instagram("alice", "meta_err").await.remove(0);

    // 5xx: retried with backoff into one post.
    app.meta_fault(
        "page_feed",
        json!({"kind": "server_error", "status": 503}),
        1,
    )
    .await;
    let job = published(&app, &page, json!({"text": "second time lucky"})).await;
    assert_eq!(job["attempts"], 2, "{job}");

    // The answer to the irreversible call is lost: reconciled, not sent again.
    app.meta_fault(
        "page_feed",
        json!({"kind": "timeout_after_success", "secs": 5}),
        1,
    )
    .await;
    let before = calls(&app, "POST", "/feed");
    let job_id = app
        .publish("alice", &page, json!({"text": "did it go out?"}))
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let history = app.history("alice", &job_id).await;
    assert!(
        history.contains(&"OutcomeUnknown".to_owned())
            && history.contains(&"Reconciled".to_owned()),
        "{history:?}"
    );
    assert_eq!(
        calls(&app, "POST", "/feed") - before,
        1,
        "nothing was sent again"
    );
    let state = app.sandbox.meta_state();
    let matching: Vec<_> = state
        .page_posts
        .iter()
        .filter(|p| p.message.as_deref() == Some("did it go out?"))
        .collect();
    assert_eq!(matching.len(), 1);
    assert_eq!(job["post_id"], matching[0].id.as_str());

    // An expired Page token: renewed through the login, then the post goes out.
    let page_tokens = |app: &TestApp| {
        app.sandbox
            .meta_state()
            .tokens_issued
            .iter()
            .filter(|t| t.kind == "page")
            .count()
    };
    let tokens_before = page_tokens(&app);
    app.meta_fault("ig_publish", json!({"kind": "expire_token"}), 1)
        .await;
    published(
        &app,
        &account,
        json!({"text": "after a renewal", "media": [media(&app, "t.jpg")]}),
    )
    .await;
    assert_eq!(page_tokens(&app), tokens_before + 1, "one renewal");

    // Content Instagram refuses: Failed, saying what to do.
    app.meta_fault("ig_publish", json!({"kind": "content_rejected"}), 1)
        .await;
    let job_id = app
        .publish(
            "alice",
            &account,
            json!({"text": "buy now!!!", "media": [media(&app, "s.jpg")]}),
        )
        .await;
    let job = app.wait_for_status("alice", &job_id, "failed", SOON).await;
    assert_eq!(job["last_error"]["class"], "permanent", "{job}");
    assert_eq!(job["last_error"]["code"], "graph_4_2207051", "{job}");
    assert!(
        job["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("possible spam"),
        "{job}"
    );

    // Media Instagram cannot fetch: Failed before anything is published.
    let job_id = app
        .publish(
            "alice",
            &account,
            json!({"text": "gone", "media": [{"url": format!("{}/gone.jpg", app.sandbox.base_url()), "kind": "image", "mime_type": "image/jpeg"}]}),
        )
        .await;
    let job = app.wait_for_status("alice", &job_id, "failed", SOON).await;
    assert!(
        job["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("make the URL public"),
        "{job}"
    );

    // Rate limited: waits as long as Meta says, without failing.
    app.meta_fault(
        "page_feed",
        json!({"kind": "rate_limited", "retry_after_secs": 3600}),
        1,
    )
    .await;
    let job_id = app.publish("alice", &page, json!({"text": "later"})).await;
    let job = app
        .wait_for_status("alice", &job_id, "retry_scheduled", SOON)
        .await;
    assert_eq!(job["last_error"]["class"], "rate_limited", "{job}");
    let retry_at = time(job["retry_at"].as_str().unwrap());
    assert!(retry_at > Utc::now() + TimeDelta::minutes(55), "{job}");

    // The person removed Herald from their Facebook apps: reconnect.
    app.meta_fault("ig_publish", json!({"kind": "revoke_grant"}), 1)
        .await;
    let job_id = app
        .publish(
            "alice",
            &account,
            json!({"text": "never", "media": [media(&app, "n.jpg")]}),
        )
        .await;
    let job = app.wait_for_status("alice", &job_id, "failed", SOON).await;
    assert_eq!(
        job["last_error"]["class"], "reauthorization_required",
        "{job}"
    );
    assert!(
        job["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("connect Instagram again"),
        "{job}"
    );
    app.stop().await;
}

/// Two worker processes publish eight posts to one Instagram account at once, with every
/// container ready at the same moment: together they publish exactly the quota Meta reports
/// (3), Instagram never has to refuse a publish (each is reserved through the database first),
/// and the rest wait for the first slot to free instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instagram_publishing_limit_holds_across_two_worker_processes() {
    const QUOTA: usize = 3;
    const JOBS: usize = 8;
    let mut sandbox = SandboxConfig::default();
    sandbox.meta.ig_quota_total = QUOTA as u32;
    let mut split = SplitApp::start_with(Backend::PostgresKafka, sandbox).await;
    let account = split
        .app
        .connect_instagram("alice", "meta_quota")
        .await
        .remove(0);
    // Four attempts at a time each, and containers that all finish together: both processes
    // reach media_publish at once, the race a per-process guard or a bare live reading loses.
    let log = "info,herald_infrastructure::platforms::instagram=debug";
    let workers = split
        .spawn_workers(2, log, |c| c.worker_concurrency = 4)
        .await;
    let app = &split.app;
    app.meta_fault(
        "ig_create_container",
        json!({"kind": "slow_processing", "secs": 2.0}),
        JOBS as u32,
    )
    .await;
    // Publishes take a second: each process reads the live count while the other's are still
    // on their way.
    app.meta_fault(
        "ig_publish",
        json!({"kind": "slow_processing", "secs": 1.0}),
        JOBS as u32,
    )
    .await;
    let mut job_ids = Vec::new();
    for n in 0..JOBS {
        job_ids.push(
            app.publish(
                "alice",
                &account,
                json!({"text": format!("quota post {n}"), "media": [media(app, "q.jpg")]}),
            )
            .await,
        );
    }
    let jobs = workers
        .settle(
            app,
            "alice",
            &job_ids,
            Duration::from_secs(120),
            published_or_waiting_for_a_limit,
        )
        .await;
    for worker in workers.iter() {
        let log = worker.log();
        assert!(
            log.contains("instagram media published") || log.contains("attempt failed"),
            "each process publishes: {}",
            worker.log_path.display()
        );
    }
    let state = app.sandbox.meta_state();
    assert_eq!(state.instagram_media.len(), QUOTA, "exactly the quota");
    assert_eq!(
        state.ig_quota_refusals, 0,
        "Instagram never refused a publish past its limit (2207042)"
    );
    let published: Vec<&Value> = jobs.iter().filter(|j| j["status"] == "published").collect();
    assert_eq!(published.len(), QUOTA);
    let oldest = state
        .instagram_media
        .iter()
        .map(|m| time(&m.timestamp))
        .min()
        .unwrap();
    for job in jobs.iter().filter(|j| j["status"] == "retry_scheduled") {
        assert!(job["attempts"].as_i64().unwrap() <= 2, "{job}");
        assert!(
            job["last_error"]["message"]
                .as_str()
                .unwrap()
                .contains("when the oldest leaves the window"),
            "{job}"
        );
        let retry_at = time(job["retry_at"].as_str().unwrap());
        assert!(
            retry_at >= oldest + TimeDelta::hours(24) - TimeDelta::seconds(5),
            "waits for the oldest post to leave the 24-hour window: {job}"
        );
    }
    let publish_calls = |app: &TestApp| {
        app.sandbox
            .meta_state()
            .requests
            .iter()
            .filter(|r| r.path.ends_with("/media_publish"))
            .map(|r| r.status)
            .collect::<Vec<_>>()
    };
    let calls = publish_calls(app);
    assert_eq!(calls, vec![Some(200); QUOTA], "one media_publish per post");

    // A later post waits for the free slot without asking Instagram to publish it.
    let late = app
        .publish(
            "alice",
            &account,
            json!({"text": "late post", "media": [media(app, "q.jpg")]}),
        )
        .await;
    let job = app
        .wait_for_status("alice", &late, "retry_scheduled", Duration::from_secs(60))
        .await;
    assert_eq!(job["last_error"]["class"], "rate_limited", "{job}");
    assert_eq!(
        publish_calls(app).len(),
        calls.len(),
        "no publish past the quota"
    );
    drop(workers);
    split.stop().await;
}

fn video(app: &TestApp, name: &str, bytes: u64) -> Value {
    json!({
        "url": format!("{}/media/{name}?bytes={bytes}", app.sandbox.base_url()),
        "kind": "video",
        "mime_type": "video/mp4",
    })
}

const MIB: u64 = 1024 * 1024;

/// A reel goes to Instagram through rupload, in 1 MiB chunks recorded as upload progress, and
/// is published once from the container its upload made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instagram_reel_is_uploaded_resumably_and_published_once() {
    let app = spawn_app(Backend::Embedded).await;
    let account = app.connect_instagram("alice", "meta_reel").await.remove(0);
    let clip = video(&app, "reel.mp4", 3 * MIB + 500);
    let job = published(
        &app,
        &account,
        json!({"text": "A reel, uploaded", "media": [clip.clone()], "options": {"instagram": {"placement": "reels"}}}),
    )
    .await;
    let state = app.sandbox.meta_state();
    assert_eq!(state.containers.len(), 1, "the upload made the container");
    let container = &state.containers[0];
    assert_eq!(container.upload_type.as_deref(), Some("resumable"));
    assert_eq!(container.media_type, "REELS");
    assert_eq!(
        container.upload_checksum.as_deref(),
        Some(app.media_checksum(&clip).await.as_str())
    );
    let offsets: Vec<Option<u64>> = state.ig_uploads.iter().map(|u| u.offset).collect();
    assert_eq!(
        offsets,
        [Some(0), Some(MIB), Some(2 * MIB), Some(3 * MIB)],
        "each chunk sent once"
    );
    assert_eq!(state.instagram_media.len(), 1);
    let media = &state.instagram_media[0];
    assert_eq!(job["post_id"], media.id.as_str());
    assert_eq!(media.container_id, container.id);
    assert_eq!(media.media_product_type, "REELS");
    assert_eq!(calls(&app, "POST", "/media_publish"), 1);
    let history = app
        .history_events("alice", job["job_id"].as_str().unwrap())
        .await;
    let chunked: Vec<u64> = history
        .iter()
        .filter(|e| e["event_type"] == "UploadChunked")
        .map(|e| event_data(e)["bytes_sent"].as_u64().unwrap())
        .collect();
    assert_eq!(chunked, [MIB, 2 * MIB, 3 * MIB, 3 * MIB + 500]);
    let sessions = history
        .iter()
        .filter(|e| e["event_type"] == "UploadSessionOpened")
        .count();
    assert_eq!(sessions, 1);
    app.stop().await;
}

/// `kill -9` of the worker while a chunk is on its way: the next worker resumes the same
/// container's upload from the offset the first one recorded, and Meta receives no range twice
/// except the chunk that was in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_upload_resumes_the_reel_from_the_recorded_offset() {
    const LOG: &str = "info,herald_infrastructure=debug";
    let mut split = SplitApp::start(Backend::Embedded).await;
    let app = &split.app;
    let account = app.connect_instagram("alice", "meta_crash").await.remove(0);
    let size = 4 * MIB;
    let clip = video(app, "crash.mp4", size);
    // Every chunk takes Meta 1.5 s to start reading: time to kill the worker mid-chunk.
    app.meta_fault(
        "ig_upload",
        json!({"kind": "slow_processing", "secs": 1.5}),
        3,
    )
    .await;
    let worker = split.spawn_worker(&split.worker_config(), LOG);
    let app = &split.app;
    let job_id = app
        .publish(
            "alice",
            &account,
            json!({"text": "crash test", "media": [clip.clone()], "options": {"instagram": {"placement": "reels"}}}),
        )
        .await;
    eventually(
        "the second chunk is in flight",
        Duration::from_secs(60),
        || async {
            worker.assert_running();
            let state = app.sandbox.meta_state();
            let second_in_flight = state
                .ig_uploads
                .iter()
                .any(|u| u.offset == Some(MIB) && u.status.is_none());
            let recorded =
                app.history_events("alice", &job_id).await.iter().any(|e| {
                    e["event_type"] == "UploadChunked" && event_data(e)["bytes_sent"] == MIB
                });
            (second_in_flight && recorded).then_some(())
        },
    )
    .await;
    worker.kill();
    let second = split.spawn_worker(&split.worker_config(), LOG);
    let app = &split.app;
    let job = app
        .wait_for_status("alice", &job_id, "published", Duration::from_secs(90))
        .await;
    second.assert_running();

    let state = app.sandbox.meta_state();
    assert_eq!(state.containers.len(), 1, "the same container, resumed");
    assert_eq!(
        state.containers[0].upload_checksum.as_deref(),
        Some(app.media_checksum(&clip).await.as_str())
    );
    assert_eq!(state.instagram_media.len(), 1);
    assert_eq!(job["post_id"], state.instagram_media[0].id.as_str());
    // Nothing before the recorded offset was sent again; the chunk in flight when the worker
    // died is sent again (Meta may or may not have got all of it before the process died).
    let starts: Vec<u64> = state.ig_uploads.iter().filter_map(|u| u.offset).collect();
    assert!(
        starts == [0, MIB, MIB, 2 * MIB, 3 * MIB],
        "{:?}",
        state.ig_uploads
    );
    assert!(
        state.ig_uploads[2..].iter().all(|u| u.accepted),
        "the resumed chunks were taken: {:?}",
        state.ig_uploads
    );
    let history = app.history_events("alice", &job_id).await;
    let sessions = history
        .iter()
        .filter(|e| e["event_type"] == "UploadSessionOpened")
        .count();
    assert_eq!(sessions, 1, "the second attempt opened no new session");
    let offsets: Vec<u64> = history
        .iter()
        .filter(|e| e["event_type"] == "UploadChunked")
        .map(|e| event_data(e)["bytes_sent"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [MIB, 2 * MIB, 3 * MIB, 4 * MIB], "{offsets:?}");
    drop(second);
    split.stop().await;
}

/// With no Meta settings, the embedded default connects both platforms to its own sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_connects_facebook_and_instagram_to_its_sandbox() {
    let app = support::spawn_app_configured(
        Backend::Embedded,
        SandboxConfig::default(),
        herald_api::config::Role::All,
        |config| {
            config.sandbox = Some(true);
            config
                .platforms
                .remove("FACEBOOK_PAGES_CLIENT_ID")
                .remove("FACEBOOK_PAGES_API_BASE")
                .remove("INSTAGRAM_CLIENT_ID")
                .remove("INSTAGRAM_API_BASE");
        },
    )
    .await;
    for platform in ["facebook_pages", "instagram"] {
        let started: Value = app
            .post("alice", &format!("/{platform}/connect"), json!({}))
            .await
            .json()
            .await
            .unwrap();
        let url = started["authorization_url"].as_str().expect("a URL");
        assert!(url.contains("/meta/v25.0/dialog/oauth"), "{url}");
        assert!(
            !url.starts_with(&app.sandbox.base_url()),
            "the in-process sandbox, not the test's: {url}"
        );
        let callback = app.http.get(url).send().await.unwrap();
        assert_eq!(callback.status(), 200, "{:?}", callback.text().await);
    }
    app.stop().await;
}

/// Page and Instagram grants an older Herald stored (the renewal handle with the Page id) still
/// publish, a video goes to the connection's Page without asking Facebook who the token is, and
/// the next renewal stores only the user token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_page_grants_still_publish_and_renew_to_the_new_form() {
    use herald_infrastructure::secret::Secret;
    use herald_infrastructure::tokens::RefreshWhen;

    let app = spawn_app(Backend::Embedded).await;
    let pages = app.connect_facebook_pages("alice", "meta_legacy").await;
    let instagram = app.connect_instagram("alice", "meta_legacy").await;
    let vault = &app.herald().vault;
    // Page One: the Page itself, and the Page the Instagram account is linked to.
    let page_one = app
        .herald()
        .connections
        .load(&pages[0])
        .await
        .unwrap()
        .account
        .unwrap();
    for connection in [&pages[0], &instagram[0]] {
        let id = herald_domain::ConnectionId::parse(connection).unwrap();
        let current = vault.load(&id).await.unwrap().unwrap();
        let user_token = current
            .refresh_token
            .clone()
            .expect("the login's user token");
        let old_form = herald_infrastructure::platforms::TokenGrant {
            refresh_token: Some(Secret::new(
                json!({
                    "page_id": page_one.account_id,
                    "user_token": user_token.expose(),
                })
                .to_string(),
            )),
            ..current.clone()
        };
        vault.store(&id, &old_form).await.unwrap();
    }

    let before = app.sandbox.meta_state().requests.len();
    published(
        &app,
        &pages[0],
        json!({"text": "old entry clip", "title": "Clip", "media": [media(&app, "old.mp4")]}),
    )
    .await;
    published(
        &app,
        &instagram[0],
        json!({"text": "old entry photo", "media": [media(&app, "old.jpg")]}),
    )
    .await;
    let state = app.sandbox.meta_state();
    assert_eq!(state.videos[0].page_id, page_one.account_id);
    let lookups: Vec<_> = state.requests[before..]
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/me"))
        .collect();
    assert!(lookups.is_empty(), "no /me before publishing: {lookups:?}");

    for connection in [&pages[0], &instagram[0]] {
        let id = herald_domain::ConnectionId::parse(connection).unwrap();
        app.herald()
            .tokens
            .refresh(&id, RefreshWhen::Always)
            .await
            .unwrap();
        let renewed = vault.load(&id).await.unwrap().unwrap();
        let refresh = renewed.refresh_token.unwrap();
        assert!(!refresh.expose().contains('{'), "the plain user token");
    }
    published(&app, &pages[0], json!({"text": "after renewal"})).await;
    published(
        &app,
        &instagram[0],
        json!({"text": "after renewal too", "media": [media(&app, "new.jpg")]}),
    )
    .await;
    app.stop().await;
}

/// A vertical MP4 (1080x1920, 10 s) the sandbox serves, `bytes` long.
fn reel_video(app: &TestApp, name: &str, bytes: u64) -> Value {
    json!({
        "url": format!(
            "{}/media/{name}?bytes={bytes}&width=1080&height=1920&duration_ms=10000",
            app.sandbox.base_url()
        ),
        "kind": "video",
        "mime_type": "video/mp4",
    })
}

fn reel_options() -> Value {
    json!({"facebook_pages": {"placement": "reels"}})
}

/// A Facebook reel: opened on `/video_reels`, its video streamed to rupload in 1 MiB chunks
/// recorded as upload progress, published once, with the post id and the reel's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facebook_reel_is_uploaded_and_published_once() {
    let app = spawn_app(Backend::Embedded).await;
    let page = app
        .connect_facebook_pages("alice", "meta_fb_reel")
        .await
        .remove(0);
    let clip = reel_video(&app, "fb-reel.mp4", 2 * MIB + 10);
    let job = published(
        &app,
        &page,
        json!({"text": "A Page reel", "link": "https://example.com/r", "media": [clip.clone()], "options": reel_options()}),
    )
    .await;
    let state = app.sandbox.meta_state();
    assert_eq!(state.videos.len(), 1);
    let reel = &state.videos[0];
    assert!(reel.reel);
    assert_eq!(reel.status, "ready");
    assert_eq!(
        reel.description.as_deref(),
        Some("A Page reel https://example.com/r"),
        "a reel's link goes into its description"
    );
    assert_eq!(
        reel.upload_checksum.as_deref(),
        Some(app.media_checksum(&clip).await.as_str())
    );
    assert_eq!(job["post_id"], reel.post_id.as_deref().unwrap());
    assert!(
        job["post_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/reel/{}/", reel.id)),
        "{job}"
    );
    let offsets: Vec<Option<u64>> = state.reel_uploads.iter().map(|u| u.offset).collect();
    assert_eq!(
        offsets,
        [Some(0), Some(MIB), Some(2 * MIB)],
        "each chunk sent once"
    );
    assert_eq!(
        calls(&app, "POST", "/video_reels"),
        2,
        "start and one finish"
    );
    assert!(state.page_posts.is_empty(), "a reel, not a feed post");
    let history = app
        .history_events("alice", job["job_id"].as_str().unwrap())
        .await;
    let sessions = history
        .iter()
        .filter(|e| e["event_type"] == "UploadSessionOpened")
        .count();
    assert_eq!(sessions, 1);

    // A reel is one vertical video: anything else is refused at acceptance, naming the rule.
    let refused = app
        .post(
            "alice",
            "/publish",
            json!({"connection_ids": [page], "content": {"text": "not a reel", "media": [media(&app, "p.jpg")], "options": reel_options()}}),
        )
        .await;
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("options.facebook_pages.placement"),
        "{problem}"
    );
    app.stop().await;
}

/// `kill -9` of the worker while a reel's chunk is on its way: the next worker asks Meta what it
/// holds and resumes the same reel from there; no range is taken twice, nothing before the
/// recorded offset is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_upload_resumes_the_facebook_reel() {
    const LOG: &str = "info,herald_infrastructure=debug";
    let mut split = SplitApp::start(Backend::Embedded).await;
    let app = &split.app;
    let page = app
        .connect_facebook_pages("alice", "meta_fb_crash")
        .await
        .remove(0);
    let size = 4 * MIB;
    let clip = reel_video(app, "fb-crash.mp4", size);
    // Every chunk takes Meta 1.5 s to start reading: time to kill the worker mid-chunk.
    app.meta_fault(
        "reel_upload",
        json!({"kind": "slow_processing", "secs": 1.5}),
        3,
    )
    .await;
    let worker = split.spawn_worker(&split.worker_config(), LOG);
    let app = &split.app;
    let job_id = app
        .publish(
            "alice",
            &page,
            json!({"text": "crash reel", "media": [clip.clone()], "options": reel_options()}),
        )
        .await;
    eventually(
        "the second chunk is in flight",
        Duration::from_secs(60),
        || async {
            worker.assert_running();
            let state = app.sandbox.meta_state();
            let second_in_flight = state
                .reel_uploads
                .iter()
                .any(|u| u.offset == Some(MIB) && u.status.is_none());
            let recorded =
                app.history_events("alice", &job_id).await.iter().any(|e| {
                    e["event_type"] == "UploadChunked" && event_data(e)["bytes_sent"] == MIB
                });
            (second_in_flight && recorded).then_some(())
        },
    )
    .await;
    worker.kill();
    let second = split.spawn_worker(&split.worker_config(), LOG);
    let app = &split.app;
    let job = app
        .wait_for_status("alice", &job_id, "published", Duration::from_secs(90))
        .await;
    second.assert_running();

    let state = app.sandbox.meta_state();
    assert_eq!(state.videos.len(), 1, "the same reel, resumed");
    let reel = &state.videos[0];
    assert_eq!(
        reel.upload_checksum.as_deref(),
        Some(app.media_checksum(&clip).await.as_str())
    );
    assert_eq!(job["post_id"], reel.post_id.as_deref().unwrap());
    let taken: Vec<u64> = state
        .reel_uploads
        .iter()
        .filter(|u| u.accepted)
        .filter_map(|u| u.offset)
        .collect();
    assert_eq!(
        taken,
        [0, MIB, 2 * MIB, 3 * MIB],
        "{:?}",
        state.reel_uploads
    );
    // The chunk in flight when the worker died is sent again only if Meta did not get all of
    // it (the kernel may have delivered the whole body before the process died): the second
    // worker starts from what Meta says it holds.
    let starts: Vec<u64> = state.reel_uploads.iter().filter_map(|u| u.offset).collect();
    assert!(
        starts == [0, MIB, MIB, 2 * MIB, 3 * MIB] || starts == [0, MIB, 2 * MIB, 3 * MIB],
        "{:?}",
        state.reel_uploads
    );
    let history = app.history_events("alice", &job_id).await;
    let sessions = history
        .iter()
        .filter(|e| e["event_type"] == "UploadSessionOpened")
        .count();
    assert_eq!(sessions, 1, "the second attempt opened no new reel");
    assert_eq!(
        calls(app, "POST", "/video_reels"),
        2,
        "one start, one finish"
    );
    drop(second);
    split.stop().await;
}

/// A Page whose reels of the last 24 hours are used up: the next reel waits, told when the
/// oldest leaves the window, and nothing of it is uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_past_its_reels_of_24_hours_waits_for_the_window() {
    let app = spawn_app_configured(
        Backend::Embedded,
        herald_sandbox::SandboxConfig::default(),
        herald_api::config::Role::All,
        |config| {
            config.platforms.set("FACEBOOK_REELS_PER_DAY", "1");
        },
    )
    .await;
    let page = app
        .connect_facebook_pages("alice", "meta_fb_limit")
        .await
        .remove(0);
    let first = published(
        &app,
        &page,
        json!({"text": "the day's reel", "media": [reel_video(&app, "l1.mp4", 4000)], "options": reel_options()}),
    )
    .await;
    let late = app
        .publish(
            "alice",
            &page,
            json!({"text": "one reel too many", "media": [reel_video(&app, "l2.mp4", 4000)], "options": reel_options()}),
        )
        .await;
    let job = app
        .wait_for_status("alice", &late, "retry_scheduled", SOON)
        .await;
    assert_eq!(job["last_error"]["class"], "rate_limited", "{job}");
    let message = job["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("used its 1 API-published reels of the last 24 hours"),
        "{message}"
    );
    let published_at = time(first["published_at"].as_str().unwrap());
    let retry_at = time(job["retry_at"].as_str().unwrap());
    assert!(
        retry_at >= published_at + TimeDelta::hours(24) - TimeDelta::seconds(5),
        "waits for the first reel to leave the window: {job}"
    );
    let state = app.sandbox.meta_state();
    assert_eq!(
        state.videos.len(),
        1,
        "nothing of the late reel was uploaded"
    );
    assert_eq!(state.reel_quota_refusals, 0);
    app.stop().await;
}
