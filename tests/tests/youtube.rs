//! YouTube end to end: connect through the API's OAuth flow → publish a video → resumable
//! upload to the sandbox's YouTube twin → processing → `Published`, on SQLite and on Postgres +
//! Kafka; the failure classes; a worker killed mid-upload that resumes its session from the
//! recorded offset; and the project quota respected by two worker processes at once.
mod support;

use std::time::Duration;

use herald_api::config::Role;
use herald_sandbox::{SandboxConfig, YouTubeStateSnapshot};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::worker::SplitApp;
use support::Twin;
use support::{event_data, eventually, spawn_app, spawn_app_with, Backend, TestApp};

const SOON: Duration = Duration::from_secs(30);
/// Covers lease expiry after a kill, reconciliation and the resumed upload.
const PATIENCE: Duration = Duration::from_secs(180);
const MIB: u64 = 1024 * 1024;
const DEBUG_LOG: &str = "info,herald_api=debug,herald_infrastructure=debug,sqlx=warn";

fn video(app: &TestApp, name: &str, bytes: u64) -> Value {
    json!({
        "url": format!("{}/media/{name}?bytes={bytes}", app.sandbox.base_url()),
        "kind": "video",
        "mime_type": "video/mp4",
    })
}

async fn media_sha256(app: &TestApp, name: &str, bytes: u64) -> String {
    let body = reqwest::get(format!(
        "{}/media/{name}?bytes={bytes}",
        app.sandbox.base_url()
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Bytes the twin received more than once, over every session.
fn duplicated_bytes(state: &YouTubeStateSnapshot) -> u64 {
    let mut ranges: Vec<(&str, u64, u64)> = state
        .received
        .iter()
        .map(|r| (r.upload_id.as_str(), r.first, r.last))
        .collect();
    ranges.sort();
    let mut duplicated = 0;
    let mut current: (&str, u64) = ("", 0); // session, covered until (exclusive)
    for (session, first, last) in ranges {
        if session != current.0 {
            current = (session, 0);
        }
        if first < current.1 {
            duplicated += current.1.min(last + 1) - first;
        }
        current.1 = current.1.max(last + 1);
    }
    duplicated
}

fn count(history: &[String], event: &str) -> usize {
    history.iter().filter(|t| *t == event).count()
}

async fn publishes_a_video_once(app: &TestApp) {
    let connection = app.connect_youtube("alice", "alice_yt").await;
    let connections = eventually("the connection is listed", SOON, || async {
        let list = app.connections("alice").await;
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(connections[0]["platform"], "youtube");
    assert_eq!(connections[0]["username"], "@alice_yt");
    let bytes = 2 * MIB + 300_000;
    let job_id = app
        .publish(
            "alice",
            &connection,
            json!({
                "text": "Launch day\nEverything about the launch.",
                "media": [video(app, "launch.mp4", bytes)],
                "options": {"youtube": {
                    "privacy": "unlisted",
                    "tags": ["launch"],
                    "category_id": "28",
                    "made_for_kids": false,
                    "thumbnail_url": format!("{}/media/cover.png?bytes=20000", app.sandbox.base_url()),
                }},
            }),
        )
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let state = app.sandbox.youtube_state();
    assert_eq!(state.videos.len(), 1, "exactly one video on YouTube");
    let v = &state.videos[0];
    assert_eq!(job["post_id"], v.id.as_str());
    assert_eq!(job["post_url"], v.url.as_str());
    assert_eq!(v.title, "Launch day", "derived from the text's first line");
    assert_eq!(v.description, "Launch day\nEverything about the launch.");
    assert_eq!(v.privacy_status, "unlisted");
    assert_eq!(v.tags, vec!["launch"]);
    assert_eq!(v.category_id, "28");
    assert_eq!(v.self_declared_made_for_kids, Some(false));
    assert_eq!(v.thumbnail_bytes, Some(20_000));
    assert_eq!(v.upload_status, "processed");
    assert_eq!(v.sha256, media_sha256(app, "launch.mp4", bytes).await);
    assert_eq!(duplicated_bytes(&state), 0);
    let history = app.history("alice", &job_id).await;
    assert_eq!(count(&history, "UploadSessionOpened"), 1, "{history:?}");
    assert_eq!(count(&history, "UploadChunked"), 3, "{history:?}");
    assert_eq!(history.last().map(String::as_str), Some("Published"));
    assert_eq!(state.quota.inserts, 1);
    let events = app.history_events("alice", &job_id).await;
    assert!(
        events
            .iter()
            .all(|e| !e["data"].to_string().contains("sealed")),
        "the sealed upload session stays out of the history: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_is_uploaded_processed_and_published_once_embedded() {
    let app = spawn_app(Backend::Embedded).await;
    publishes_a_video_once(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_is_uploaded_processed_and_published_once_postgres_kafka() {
    let app = spawn_app(Backend::PostgresKafka).await;
    publishes_a_video_once(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_youtube_cannot_take_is_refused_up_front() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_youtube("alice", "alice_yt").await;
    let response = app
        .post(
            "alice",
            "/publish",
            json!({"connection_ids": [connection], "content": {"text": "no video"}}),
        )
        .await;
    assert_eq!(response.status(), 422, "{:?}", response.text().await);
    let response = app
        .post(
            "alice",
            "/publish",
            json!({"connection_ids": [connection], "content": {
                "text": "t", "media": [video(&app, "v.mp4", 1000)],
                "options": {"youtube": {"privacy": "friends-only"}}}}),
        )
        .await;
    assert_eq!(response.status(), 422, "{:?}", response.text().await);
    assert!(app.sandbox.youtube_state().videos.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_refreshed_or_explained() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_youtube("alice", "alice_yt").await;
    let publish = |title: &'static str, name: &'static str| {
        let app = &app;
        let connection = connection.clone();
        async move {
            app.publish(
                "alice",
                &connection,
                json!({"title": title, "text": "text", "media": [video(app, name, 300_000)]}),
            )
            .await
        }
    };

    // An expired token: refreshed, then the upload goes through.
    app.fault(
        Twin::Youtube,
        "insert_video",
        json!({"kind": "expire_token"}),
        1,
    )
    .await;
    let job = publish("after refresh", "a.mp4").await;
    app.wait_for_status("alice", &job, "published", SOON).await;
    let issued = app.sandbox.youtube_state().tokens_issued;
    assert_eq!(issued.len(), 2, "the code exchange, then one refresh");
    assert!(issued[1].refresh_token.is_none(), "Google does not rotate");

    // A 503 on a chunk: the adapter asks where the session stands and carries on.
    app.fault(
        Twin::Youtube,
        "upload_chunk",
        json!({"kind": "server_error", "status": 503}),
        1,
    )
    .await;
    let job = publish("after a 503", "b.mp4").await;
    let done = app.wait_for_status("alice", &job, "published", SOON).await;
    assert_eq!(done["attempts"], 1, "{done}");

    // Processing fails: the job fails with advice.
    app.fault(
        Twin::Youtube,
        "insert_video",
        json!({"kind": "reject_media"}),
        1,
    )
    .await;
    let job = publish("bad codec", "c.mp4").await;
    let failed = app.wait_for_status("alice", &job, "failed", SOON).await;
    assert_eq!(failed["last_error"]["class"], "permanent", "{failed}");
    assert!(
        failed["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("H.264"),
        "{failed}"
    );

    // The grant is revoked: one refresh is refused, and the user is asked to reconnect.
    app.fault(
        Twin::Youtube,
        "insert_video",
        json!({"kind": "revoke_grant"}),
        1,
    )
    .await;
    let job = publish("revoked", "d.mp4").await;
    let failed = app.wait_for_status("alice", &job, "failed", SOON).await;
    assert_eq!(
        failed["last_error"]["class"], "reauthorization_required",
        "{failed}"
    );
    assert!(
        failed["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("reconnect"),
        "{failed}"
    );
    let titles: Vec<String> = app
        .sandbox
        .youtube_state()
        .videos
        .iter()
        .map(|v| v.title.clone())
        .collect();
    assert_eq!(titles, ["after refresh", "after a 503", "bad codec"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channel_upload_limit_waits_a_day() {
    let mut sandbox = SandboxConfig::default();
    sandbox.youtube.channel_upload_limit = 1;
    let app = spawn_app_with(Backend::Embedded, sandbox, Role::All).await;
    let connection = app.connect_youtube("alice", "alice_yt").await;
    let first = app
        .publish(
            "alice",
            &connection,
            json!({"text": "one", "media": [video(&app, "one.mp4", 1000)]}),
        )
        .await;
    app.wait_for_status("alice", &first, "published", SOON)
        .await;
    let second = app
        .publish(
            "alice",
            &connection,
            json!({"text": "two", "media": [video(&app, "two.mp4", 1000)]}),
        )
        .await;
    let waiting = app
        .wait_for_status("alice", &second, "retry_scheduled", SOON)
        .await;
    assert_eq!(
        waiting["last_error"]["code"], "http_400_uploadLimitExceeded",
        "{waiting}"
    );
    let retry_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(waiting["retry_at"].clone()).unwrap();
    assert!(retry_at > chrono::Utc::now() + chrono::Duration::hours(23));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_exceeded_from_google_holds_every_job_until_midnight_pacific() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_youtube("alice", "alice_yt").await;
    // Another app of the same Google project used up today's quota.
    app.sandbox.set_youtube_quota_usage(Some(10_000), None);
    let midnight =
        herald_infrastructure::platforms::youtube::next_pacific_midnight(chrono::Utc::now());
    let mut codes = Vec::new();
    for name in ["q1.mp4", "q2.mp4"] {
        let job = app
            .publish(
                "alice",
                &connection,
                json!({"text": name, "media": [video(&app, name, 1000)]}),
            )
            .await;
        let waiting = app
            .wait_for_status("alice", &job, "retry_scheduled", SOON)
            .await;
        let retry_at: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(waiting["retry_at"].clone()).unwrap();
        assert_eq!(retry_at, midnight, "{waiting}");
        assert!(waiting["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("midnight Pacific"));
        codes.push(waiting["last_error"]["code"].as_str().unwrap().to_owned());
    }
    assert_eq!(codes, ["http_403_quotaExceeded", "quota_exhausted"]);
    assert_eq!(
        app.sandbox.youtube_state().quota.refused,
        1,
        "the second job did not ask YouTube"
    );
    app.stop().await;
}

/// A worker is `kill -9`ed while a video is half uploaded; a fresh worker reconciles the
/// attempt (no video yet), resumes the same session from the offset the job recorded (after
/// asking YouTube where it stands), and the twin receives no byte range twice beyond the
/// chunk that was in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_upload_resumes_the_session_from_the_recorded_offset() {
    let mut split = SplitApp::start(Backend::Embedded).await;
    let app = &split.app;
    let connection = app.connect_youtube("alice", "alice_yt").await;
    // Each chunk takes a while to be answered, so the kill lands mid-upload.
    app.fault(
        Twin::Youtube,
        "upload_chunk",
        json!({"kind": "timeout_after_success", "secs": 0.4}),
        1000,
    )
    .await;
    let first = split.worker_config();
    let worker = split.spawn_worker(&first, DEBUG_LOG);
    let app = &split.app;
    let bytes = 8 * MIB + 4321;
    let job_id = app
        .publish(
            "alice",
            &connection,
            json!({"title": "Half way", "text": "a long video", "media": [video(app, "long.mp4", bytes)]}),
        )
        .await;
    eventually(
        "the first worker has uploaded three chunks",
        PATIENCE,
        || async {
            worker.assert_running();
            let state = app.sandbox.youtube_state();
            state
                .sessions
                .first()
                .is_some_and(|s| s.confirmed >= 3 * MIB)
                .then_some(())
        },
    )
    .await;
    worker.kill();
    app.sandbox.clear_youtube_faults();
    let at_kill = app.sandbox.youtube_state();
    assert!(at_kill.videos.is_empty());
    let received_before = at_kill.received.len();
    let media_requests_before = app.sandbox.media_requests().len();
    let recorded: u64 = app
        .history_events("alice", &job_id)
        .await
        .iter()
        .filter(|e| e["event_type"] == "UploadChunked")
        .map(|e| event_data(e)["bytes_sent"].as_u64().unwrap())
        .max()
        .expect("the job recorded upload progress before the kill");
    assert!(recorded >= 2 * MIB, "recorded offset {recorded}");

    let second_config = split.worker_config();
    let second = split.spawn_worker(&second_config, DEBUG_LOG);
    let app = &split.app;
    let job = app
        .wait_for_status("alice", &job_id, "published", PATIENCE)
        .await;
    second.assert_running();
    // Taken before the test's own checksum download below.
    let resumed_downloads: Vec<_> = app.sandbox.media_requests()[media_requests_before..]
        .iter()
        .filter(|r| r.name == "long.mp4")
        .cloned()
        .collect();
    let state = app.sandbox.youtube_state();
    assert_eq!(state.videos.len(), 1, "one video");
    assert_eq!(
        state.sessions.len(),
        1,
        "the session was resumed, not reopened"
    );
    assert_eq!(state.quota.inserts, 1, "one videos.insert");
    assert_eq!(job["post_id"], state.videos[0].id.as_str());
    assert_eq!(state.videos[0].bytes, bytes);
    assert_eq!(
        state.videos[0].sha256,
        media_sha256(app, "long.mp4", bytes).await
    );
    let resumed_from = state.received[received_before].first;
    assert!(
        resumed_from >= recorded,
        "resumed at {resumed_from}, before the recorded offset {recorded}"
    );
    assert!(
        duplicated_bytes(&state) <= MIB,
        "no byte range twice beyond the chunk in flight: {:?}",
        state.received
    );
    // The resumed attempt downloaded the video from the recorded offset, not from byte 0.
    assert!(
        !resumed_downloads.is_empty(),
        "the resumed attempt read the media"
    );
    for download in &resumed_downloads {
        let from: u64 = download
            .range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("the resumed download asked for a range: {download:?}"));
        assert!(
            from >= recorded,
            "downloaded from {from}, before the recorded {recorded}"
        );
    }
    let history = app.history("alice", &job_id).await;
    assert_eq!(count(&history, "UploadSessionOpened"), 1, "{history:?}");
    assert_eq!(count(&history, "Reconciled"), 1, "{history:?}");
    assert_eq!(count(&history, "AttemptStarted"), 2, "{history:?}");
    drop(second);
    split.stop().await;
}

/// Two worker processes share the project's quota through the store: with room for two
/// uploads left today, exactly two reach YouTube and the rest wait for midnight Pacific time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_respect_the_project_quota_together() {
    let mut split = SplitApp::start(Backend::PostgresKafka).await;
    let app = &split.app;
    let connection = app.connect_youtube("alice", "alice_yt").await;
    // 3300 units left on YouTube's side and in Herald's configuration: two uploads (1600
    // each) and some processing checks fit, a third upload does not.
    app.sandbox
        .set_youtube_quota_usage(Some(10_000 - 3300), None);
    // One job at a time each, so both processes take part.
    let workers = split
        .spawn_workers(2, DEBUG_LOG, |config| {
            config.platforms.set("YOUTUBE_DAILY_QUOTA_UNITS", "3300");
            config.worker_concurrency = 1;
        })
        .await;
    let app = &split.app;
    let mut jobs = Vec::new();
    for i in 0..5 {
        let name = format!("quota{i}.mp4");
        jobs.push(
            app.publish(
                "alice",
                &connection,
                json!({"title": format!("quota {i}"), "text": "t", "media": [video(app, &name, 200_000)]}),
            )
            .await,
        );
    }
    let settled = workers
        .settle(app, "alice", &jobs, PATIENCE, |view| {
            view["status"] == "published"
                || (view["status"] == "retry_scheduled"
                    && view["last_error"]["code"] == "quota_exhausted")
        })
        .await;
    let published = settled
        .iter()
        .filter(|v| v["status"] == "published")
        .count();
    assert_eq!(published, 2, "{settled:?}");
    let midnight =
        herald_infrastructure::platforms::youtube::next_pacific_midnight(chrono::Utc::now());
    for view in settled.iter().filter(|v| v["status"] != "published") {
        let retry_at: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(view["retry_at"].clone()).unwrap();
        assert_eq!(retry_at, midnight, "{view}");
    }
    let state = app.sandbox.youtube_state();
    assert_eq!(state.videos.len(), 2);
    assert_eq!(state.quota.inserts, 2);
    assert_eq!(state.quota.refused, 0, "Herald never overdrew the quota");
    // Both processes spent from the one quota: each uploaded or was held back by it.
    workers.assert_each_logged_one_of(&["YouTube upload complete", "quota_exhausted"]);
    let uploads: usize = workers
        .iter()
        .map(|w| w.log().matches("YouTube upload complete").count())
        .sum();
    assert_eq!(uploads, 2);
    drop(workers);
    split.stop().await;
}

/// With no YouTube settings, the embedded default connects YouTube to its own sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_connects_youtube_to_its_sandbox() {
    let url = support::connect_through_the_embedded_sandbox("youtube", |config| {
        config
            .platforms
            .remove("YOUTUBE_CLIENT_ID")
            .remove("YOUTUBE_CLIENT_SECRET")
            .remove("YOUTUBE_API_BASE");
    })
    .await;
    assert!(url.contains("/youtube/o/oauth2/v2/auth"), "{url}");
    assert!(
        url.contains("access_type=offline") && url.contains("prompt=consent"),
        "{url}"
    );
}
