//! Threads end to end on the embedded default: connect → publish → sandbox Threads →
//! projections, for text, an image, a carousel, a thread (a reply chain), refused content and
//! the irreversible call's failure paths; the 24-hour publishing limit held by two worker
//! processes at once.
mod support;

use std::time::Duration;

use chrono::TimeDelta;
use herald_api::config::Role;
use herald_sandbox::SandboxConfig;
use serde_json::{json, Value};
use support::worker::published_or_waiting_for_a_limit;
use support::worker::SplitApp;
use support::{event_data, spawn_app, spawn_app_configured, time, Backend, TestApp};

const SOON: Duration = Duration::from_secs(20);

fn posts_with_text(app: &TestApp, text: &str) -> Vec<herald_sandbox::ThreadsPostSnapshot> {
    app.sandbox
        .threads_state()
        .posts
        .into_iter()
        .filter(|p| p.text == text)
        .collect()
}

fn publish_calls(app: &TestApp) -> Vec<Option<u16>> {
    app.sandbox
        .threads_state()
        .requests
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/threads_publish"))
        .map(|r| r.status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_image_and_carousel_posts_are_published_once() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_threads("alice", "alice_th").await;
    let job_id = app
        .publish(
            "alice",
            &connection,
            json!({"text": "Hello from Herald on Threads"}),
        )
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let posts = posts_with_text(&app, "Hello from Herald on Threads");
    assert_eq!(posts.len(), 1, "exactly one post on the platform");
    assert_eq!(job["post_id"], posts[0].id.as_str());
    assert_eq!(job["post_url"], posts[0].permalink.as_str());
    assert!(job["post_url"].as_str().unwrap().ends_with(&posts[0].id));
    assert_eq!(
        app.history("alice", &job_id).await,
        ["JobScheduled", "AttemptStarted", "Published"]
    );
    let connections: Value = app.get("alice", "/connections").await.json().await.unwrap();
    assert_eq!(connections["connections"][0]["platform"], "threads");
    assert_eq!(connections["connections"][0]["username"], "alice_th");

    let media = |n: u32, kind: &str, mime: &str| json!({"url": format!("{}/media/{n}.png?bytes=1000", app.sandbox.base_url()), "kind": kind, "mime_type": mime});
    let image_job = app
        .publish(
            "alice",
            &connection,
            json!({"text": "one picture", "media": [media(1, "image", "image/png")]}),
        )
        .await;
    app.wait_for_status("alice", &image_job, "published", SOON)
        .await;
    let image = posts_with_text(&app, "one picture");
    assert_eq!(image.len(), 1);
    assert_eq!(image[0].media_type, "IMAGE");
    assert_eq!(image[0].media_urls.len(), 1);

    let carousel_job = app
        .publish(
            "alice",
            &connection,
            json!({"text": "an album", "media": [
                media(1, "image", "image/png"),
                media(2, "image", "image/jpeg"),
                media(3, "image", "image/png"),
            ]}),
        )
        .await;
    app.wait_for_status("alice", &carousel_job, "published", SOON)
        .await;
    let album = posts_with_text(&app, "an album");
    assert_eq!(album.len(), 1);
    assert_eq!(album[0].media_type, "CAROUSEL_ALBUM");
    assert_eq!(album[0].media_urls.len(), 3);
    assert!(album[0].media_urls[0].contains("/media/1.png"));
    assert!(album[0].media_urls[2].contains("/media/3.png"));

    // A video container is processed before it is published.
    let video_job = app
        .publish(
            "alice",
            &connection,
            json!({"text": "a clip", "media": [{
                "url": format!("{}/media/clip.mp4?bytes=5000", app.sandbox.base_url()),
                "kind": "video", "mime_type": "video/mp4",
            }]}),
        )
        .await;
    app.wait_for_status("alice", &video_job, "published", SOON)
        .await;
    let clip = posts_with_text(&app, "a clip");
    assert_eq!(clip.len(), 1);
    assert_eq!(clip[0].media_type, "VIDEO");
    assert_eq!(app.sandbox.threads_state().posts.len(), 4);
    app.stop().await;
}

/// About 1,200 characters: 240 words of 4, three parts of at most 500.
fn long_text() -> String {
    (0..240)
        .map(|i| format!("w{i:03}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Publishes [`long_text`] with `"thread": true` and waits until the job is published; its id
/// and its posts on the twin in order, after checking they are a reply chain of three parts:
/// each at most 500 characters and a reply to the part before it, each published once.
async fn publish_a_long_thread(
    app: &TestApp,
    connection: &str,
) -> (String, Vec<herald_sandbox::ThreadsPostSnapshot>) {
    let text = long_text();
    let job_id = app
        .publish("alice", connection, json!({"text": text, "thread": true}))
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let ids: Vec<&str> = job["post_ids"]
        .as_array()
        .expect("post_ids")
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    let posts = app.sandbox.threads_state().posts;
    let parts: Vec<_> = ids
        .iter()
        .map(|id| {
            posts
                .iter()
                .find(|p| p.id == *id)
                .expect("on Threads")
                .clone()
        })
        .collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(part.text.chars().count() <= 500, "{}", part.text.len());
        let parent = i.checked_sub(1).map(|before| ids[before].to_owned());
        assert_eq!(part.reply_to_id, parent, "part {i}");
        assert_eq!(
            posts_with_text(app, &part.text).len(),
            1,
            "one copy of part {i}"
        );
    }
    let rebuilt: Vec<&str> = parts.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(rebuilt.join(" "), text);
    assert_eq!(job["post_id"], ids[0]);
    assert_eq!(parts.len(), 3, "{job}");
    (job_id, parts)
}

async fn a_long_text_with_thread_is_published_as_a_reply_chain(backend: Backend) {
    let app = spawn_app(backend).await;
    let connection = app.connect_threads("alice", "alice_th").await;
    let (job_id, _) = publish_a_long_thread(&app, &connection).await;
    assert_eq!(app.sandbox.threads_state().posts.len(), 3);
    assert_eq!(
        app.history("alice", &job_id).await,
        [
            "JobScheduled",
            "AttemptStarted",
            "ThreadPartPublished",
            "ThreadPartPublished",
            "Published"
        ]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_text_with_thread_is_published_as_a_reply_chain_on_the_embedded_default() {
    a_long_text_with_thread_is_published_as_a_reply_chain(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_kafka_publish_a_threads_reply_chain() {
    a_long_text_with_thread_is_published_as_a_reply_chain(Backend::PostgresKafka).await;
}

/// The second part's publish succeeds but its answer never arrives: Herald finds the reply
/// among the first part's replies and goes on with the third, nothing published twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_after_a_replys_publish_is_reconciled_not_resent() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_threads("alice", "alice_th").await;
    // Faults on an endpoint apply in order: the first publish (the first part) is untouched,
    // the second (the first reply) times out after it took effect.
    app.threads_fault("publish", json!({"kind": "slow_processing", "secs": 0}), 1)
        .await;
    app.threads_fault(
        "publish",
        json!({"kind": "timeout_after_success", "secs": 5}),
        1,
    )
    .await;
    let (job_id, parts) = publish_a_long_thread(&app, &connection).await;
    app.history_reconciled("alice", &job_id).await;
    let events = app.history_events("alice", &job_id).await;
    let found: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "Reconciled")
        .map(|e| &event_data(e)["found_post_id"])
        .collect();
    assert_eq!(found, [parts[1].id.as_str()], "the second part was found");
    assert_eq!(publish_calls(&app).len(), 3, "nothing was published again");
    let replies_listed = app
        .sandbox
        .threads_state()
        .requests
        .iter()
        .any(|r| r.path.ends_with(&format!("/{}/replies", parts[0].id)));
    assert!(replies_listed, "looked among the first part's replies");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_kafka_publish_a_threads_post() {
    let app = spawn_app(Backend::PostgresKafka).await;
    let connection = app.connect_threads("alice", "alice_th").await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "Threads via Kafka"}))
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let posts = posts_with_text(&app, "Threads via Kafka");
    assert_eq!(posts.len(), 1);
    assert_eq!(job["post_id"], posts[0].id.as_str());
    app.stop().await;
}

/// Threads refreshes a token by presenting it: once Threads rejects the token itself, only
/// reconnecting helps, and Herald says so instead of retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_threads_token_asks_for_reconnection_without_a_retry_storm() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_threads("alice", "alice_th").await;
    app.threads_fault("create_container", json!({"kind": "expire_token"}), 1)
        .await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "never posted"}))
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
            .contains("reconnect"),
        "{job}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refreshes = app
        .sandbox
        .threads_state()
        .requests
        .into_iter()
        .filter(|r| r.path.ends_with("/refresh_access_token"))
        .count();
    assert_eq!(refreshes, 1, "exactly one refresh attempt");
    assert!(posts_with_text(&app, "never posted").is_empty());
    assert_eq!(job["attempts"], 1, "{job}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_over_the_threads_limits_is_refused_with_422() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_threads("alice", "alice_th").await;
    let cases = [
        json!({"text": "a".repeat(501)}),
        json!({"text": "vote", "poll": {"options": ["a", "b"], "duration_minutes": 60}}),
    ];
    for content in cases {
        let response = app
            .post(
                "alice",
                "/publish",
                json!({"connection_ids": [connection], "content": content}),
            )
            .await;
        assert_eq!(response.status(), 422, "{content}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "content-invalid", "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("Threads")
                || problem["detail"].as_str().unwrap().contains("threads"),
            "{problem}"
        );
    }
    let at_limit = app
        .publish("alice", &connection, json!({"text": "é".repeat(500)}))
        .await;
    app.wait_for_status("alice", &at_limit, "published", SOON)
        .await;
    assert_eq!(app.sandbox.threads_state().posts.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_on_publish_is_retried_into_one_post() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_threads("alice", "alice_th").await;
    app.threads_fault("publish", json!({"kind": "server_error", "status": 503}), 1)
        .await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "second time lucky"}))
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    assert_eq!(job["attempts"], 2, "{job}");
    assert_eq!(posts_with_text(&app, "second time lucky").len(), 1);
    assert_eq!(publish_calls(&app), [Some(503), Some(200)]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_after_publish_is_reconciled_not_resent() {
    let app = spawn_app(Backend::Embedded).await;
    assert_eq!(
        app.config.platforms.get("THREADS_REQUEST_TIMEOUT_SECS"),
        Some("2")
    );
    let connection = app.connect_threads("alice", "alice_th").await;
    app.threads_fault(
        "publish",
        json!({"kind": "timeout_after_success", "secs": 5}),
        1,
    )
    .await;
    let job_id = app
        .publish("alice", &connection, json!({"text": "did it go out?"}))
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    app.history_reconciled("alice", &job_id).await;
    let posts = posts_with_text(&app, "did it go out?");
    assert_eq!(posts.len(), 1, "exactly one post on the platform");
    assert_eq!(job["post_id"], posts[0].id.as_str());
    assert_eq!(publish_calls(&app).len(), 1, "nothing was published again");
    app.stop().await;
}

/// Two worker processes publish eight posts to one Threads profile whose limit is 3 (Threads
/// documents 250 per 24 hours), every container ready at the same moment: exactly three are
/// published, Threads never refuses a publish past its limit, the rest wait for a free slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_threads_publishing_limit_holds_across_two_worker_processes() {
    const QUOTA: usize = 3;
    const JOBS: usize = 8;
    let mut sandbox = SandboxConfig::default();
    sandbox.threads.quota_total = QUOTA as u32;
    let mut split = SplitApp::start_with(Backend::Embedded, sandbox).await;
    let connection = split.app.connect_threads("alice", "alice_quota").await;
    let workers = split
        .spawn_workers(2, "info,herald_infrastructure=debug", |c| {
            c.worker_concurrency = 4
        })
        .await;
    let app = &split.app;
    // Containers that are ready together, and publishes that take a second: each process
    // reads the live count while the other's publishes are still on their way.
    app.threads_fault(
        "create_container",
        json!({"kind": "slow_processing", "secs": 2.0}),
        JOBS as u32,
    )
    .await;
    app.threads_fault(
        "publish",
        json!({"kind": "slow_processing", "secs": 1.0}),
        JOBS as u32,
    )
    .await;
    let mut job_ids = Vec::new();
    for n in 0..JOBS {
        job_ids.push(
            app.publish(
                "alice",
                &connection,
                json!({"text": format!("quota post {n}")}),
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
    let state = app.sandbox.threads_state();
    assert_eq!(state.posts.len(), QUOTA, "exactly the quota");
    assert_eq!(
        state.quota_refusals, 0,
        "Threads never refused a publish past its limit"
    );
    assert_eq!(publish_calls(app), vec![Some(200); QUOTA]);
    let published = jobs.iter().filter(|j| j["status"] == "published").count();
    assert_eq!(published, QUOTA);
    let oldest = state
        .posts
        .iter()
        .map(|p| time(&p.timestamp))
        .min()
        .unwrap();
    for job in jobs.iter().filter(|j| j["status"] == "retry_scheduled") {
        let message = job["last_error"]["message"].as_str().unwrap();
        assert!(message.contains("Threads profile used its 3"), "{job}");
        let retry_at = time(job["retry_at"].as_str().unwrap());
        assert!(
            retry_at >= oldest + TimeDelta::hours(24) - TimeDelta::seconds(5),
            "waits for the oldest post to leave the 24-hour window: {job}"
        );
    }
    drop(workers);
    split.stop().await;
}

/// With no Threads settings, the embedded default connects Threads to its own sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_connects_threads_to_its_sandbox() {
    let app = spawn_app_configured(
        Backend::Embedded,
        SandboxConfig::default(),
        Role::All,
        |config| {
            config.sandbox = Some(true);
            config
                .platforms
                .remove("THREADS_CLIENT_ID")
                .remove("THREADS_CLIENT_SECRET")
                .remove("THREADS_API_BASE");
        },
    )
    .await;
    let started: Value = app
        .post("alice", "/threads/connect", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let url = started["authorization_url"].as_str().expect("a URL");
    assert!(url.contains("/threads/oauth/authorize"), "{url}");
    assert!(
        !url.starts_with(&app.sandbox.base_url()),
        "the in-process sandbox, not the test's: {url}"
    );
    let callback = app.http.get(url).send().await.unwrap();
    assert_eq!(callback.status(), 200, "{:?}", callback.text().await);
    app.stop().await;
}
