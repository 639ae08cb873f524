//! One user connects all eight platforms, with every account each login gives (the LinkedIn
//! member and the organisations they post for, every Facebook Page, every linked Instagram
//! account), and publishes one vertical video to every one of them in one request: every job
//! ends published and every account holds exactly one copy. On the embedded default and on
//! Postgres + Kafka.
//!
//! The same request once ended with no job published: an organisation's LinkedIn upload blocked
//! the sandbox, so every twin stopped answering.
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, spawn_app, Backend, TestApp, Twin};

/// Eleven uploads of one video on a shared two-core machine: a bound for a stuck job, not a
/// speed target.
const ALL_SETTLED: Duration = Duration::from_secs(600);
const USER: &str = "alice";
const TEXT: &str = "One vertical clip for every account";
/// 6 MiB: two LinkedIn parts of 4 MiB, a TikTok file over its 5 MiB chunk, several Meta chunks.
const VIDEO_BYTES: u64 = 6 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_vertical_video_to_every_account_embedded() {
    one_vertical_video_to_every_account(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_vertical_video_to_every_account_on_postgres_and_kafka() {
    one_vertical_video_to_every_account(Backend::PostgresKafka).await;
}

async fn one_vertical_video_to_every_account(backend: Backend) {
    let app = spawn_app(backend).await;
    app.connect_x(USER, "alice_x").await;
    app.connect_threads(USER, "alice_th").await;
    app.connect_youtube(USER, "alice_yt").await;
    app.connect_tiktok(USER, "alice_tt").await;
    // The sandbox member is an administrator of one organisation and a content administrator
    // of another (an analyst of a third, who may not post).
    assert_eq!(app.connect_linkedin(USER, "herald_sandbox").await.len(), 3);
    // A Facebook user the twin has not been told about has two Pages, the first linked to an
    // Instagram business account.
    assert_eq!(
        app.connect_facebook_pages(USER, "meta_alice").await.len(),
        2
    );
    assert_eq!(app.connect_instagram(USER, "meta_alice").await.len(), 1);
    app.connect_reddit(USER, "reddit_alice").await;

    // The read model catches up with the last connection shortly after its callback.
    let connections = eventually("the eleven connections are listed", ALL_SETTLED, || async {
        Some(app.connections(USER).await).filter(|c| c.len() == 11)
    })
    .await;

    let base = app.sandbox.base_url();
    let video = format!(
        "{base}/media/vertical.mp4?bytes={VIDEO_BYTES}&width=1080&height=1920&duration_ms=20000"
    );
    let response = app
        .post(
            USER,
            "/publish",
            json!({
                "connection_ids": connections.iter().map(|c| &c["connection_id"]).collect::<Vec<_>>(),
                "content": {
                    "text": TEXT,
                    "title": "One vertical clip",
                    "media": [{"url": video, "kind": "video", "mime_type": "video/mp4"}],
                    "options": {
                        "youtube": {"privacy": "unlisted"},
                        "instagram": {"placement": "reels"},
                        "facebook_pages": {"placement": "reels"},
                        // Reddit shows a video post under a poster image it requires.
                        "reddit": {
                            "subreddit": "herald_sandbox",
                            "thumbnail_url": format!("{base}/media/poster.jpg?bytes=3000"),
                        },
                    },
                },
            }),
        )
        .await;
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let accepted: Value = response.json().await.unwrap();
    let job_ids: Vec<String> = accepted["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(job_ids.len(), 11, "{accepted}");

    let jobs = settled(&app, &job_ids).await;
    let unpublished: Vec<&Value> = jobs.iter().filter(|j| j["status"] != "published").collect();
    assert!(unpublished.is_empty(), "not published: {unpublished:#?}");
    let mut published_on: BTreeMap<String, usize> = BTreeMap::new();
    for job in &jobs {
        *published_on
            .entry(job["platform"].as_str().unwrap().to_owned())
            .or_default() += 1;
        assert!(
            job["post_url"]
                .as_str()
                .is_some_and(|u| u.starts_with("http")),
            "{job}"
        );
    }
    assert_eq!(
        published_on,
        BTreeMap::from([
            ("facebook_pages".to_owned(), 2),
            ("instagram".to_owned(), 1),
            ("linkedin".to_owned(), 3),
            ("reddit".to_owned(), 1),
            ("threads".to_owned(), 1),
            ("tiktok".to_owned(), 1),
            ("x".to_owned(), 1),
            ("youtube".to_owned(), 1),
        ])
    );

    // Exactly one copy per account, as each twin's own state route shows it.
    let x = app.twin_state(Twin::X).await;
    assert_copies(&connections, "x", &x["posts"], "author_id");
    let threads = app.twin_state(Twin::Threads).await;
    assert_copies(&connections, "threads", &threads["posts"], "owner_id");
    let youtube = app.twin_state(Twin::Youtube).await;
    assert_copies(&connections, "youtube", &youtube["videos"], "channel_id");
    assert_eq!(youtube["videos"][0]["privacy_status"], "unlisted");
    let tiktok = app.twin_state(Twin::Tiktok).await;
    assert_copies(&connections, "tiktok", &tiktok["posts"], "open_id");
    let linkedin = app.twin_state(Twin::Linkedin).await;
    assert_copies(&connections, "linkedin", &linkedin["posts"], "author");
    let meta = app.twin_state(Twin::Meta).await;
    let reels: Vec<Value> = meta["videos"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["reel"] == true && v["post_id"].is_string())
        .cloned()
        .collect();
    assert_copies(
        &connections,
        "facebook_pages",
        &Value::Array(reels),
        "page_id",
    );
    assert_copies(&connections, "instagram", &meta["instagram_media"], "ig_id");
    let reddit = app.twin_state(Twin::Reddit).await;
    // Reddit names a post's author by username.
    assert_copies_by(
        &connections,
        "reddit",
        &reddit["posts"],
        "author",
        "username",
    );
    assert_eq!(reddit["posts"][0]["kind"], "video", "{reddit}");
    app.stop().await;
}

/// Every job once none is still on its way (published, failed or cancelled).
async fn settled(app: &TestApp, job_ids: &[String]) -> Vec<Value> {
    eventually("every job settles", ALL_SETTLED, || async {
        let mut jobs = Vec::new();
        for id in job_ids {
            let response = app.get(USER, &format!("/jobs/{id}")).await;
            if response.status() != 200 {
                return None;
            }
            let job: Value = response.json().await.unwrap();
            if !matches!(
                job["status"].as_str(),
                Some("published" | "failed" | "cancelled")
            ) {
                return None;
            }
            jobs.push(job);
        }
        Some(jobs)
    })
    .await
}

/// `copies` (posts, videos or media of one twin) hold exactly one item per `platform` account
/// of the user, told apart by `owner`, and nothing for anyone else.
fn assert_copies(connections: &[Value], platform: &str, copies: &Value, owner: &str) {
    assert_copies_by(connections, platform, copies, owner, "account_id");
}

/// [`assert_copies`], matching `owner` with the connection's `account` field (`account_id`, or
/// `username` where the twin names the author so).
fn assert_copies_by(
    connections: &[Value],
    platform: &str,
    copies: &Value,
    owner: &str,
    account: &str,
) {
    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    for copy in copies.as_array().unwrap() {
        *held
            .entry(copy[owner].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    // Ids are only unique per platform: the Threads and Instagram twins number accounts alike.
    let expected: BTreeMap<String, usize> = connections
        .iter()
        .filter(|c| c["platform"] == platform)
        .map(|c| (c[account].as_str().unwrap().to_owned(), 1))
        .collect();
    assert_eq!(held, expected, "{platform}: {copies:#}");
}
