//! TikTok end to end: connect → publish → sandbox TikTok → projections, for a chunked Direct
//! Post video, photos and an inbox draft; the documented failure classes; the main flow on
//! Postgres and Kafka; a worker process killed mid-upload whose successor resumes from the
//! recorded offset; a pulled public post whose init answer was lost, found among the account's
//! public videos; TikTok's per-minute limits kept by two worker processes at once; and a signed
//! `authorization.removed` webhook ending the connection it names.
mod support;

use std::time::Duration;

use herald_api::config::Role;
use herald_infrastructure::platforms::tiktok::{DEFAULT_SCOPES, VIDEO_LIST_SCOPE};
use herald_sandbox::{SandboxConfig, TiktokUploadRecord};
use serde_json::{json, Value};
use support::worker::SplitApp;
use support::Twin;
use support::{event_data, eventually, spawn_app, spawn_app_configured, Backend, TestApp};

const SOON: Duration = Duration::from_secs(30);
const MB: u64 = 1024 * 1024;
const DEBUG_LOG: &str = "info,herald_api=debug,herald_infrastructure=debug,sqlx=warn";

fn video(app: &TestApp, name: &str, bytes: u64) -> Value {
    json!({
        "url": format!("{}/media/{name}?bytes={bytes}", app.sandbox.base_url()),
        "kind": "video",
        "mime_type": "video/mp4",
    })
}

fn photo(app: &TestApp, name: &str) -> Value {
    json!({
        "url": format!("{}/media/{name}?bytes=4000", app.sandbox.base_url()),
        "kind": "image",
        "mime_type": "image/jpeg",
    })
}

fn uploads_of(app: &TestApp, publish_id: &str) -> Vec<TiktokUploadRecord> {
    app.sandbox
        .tiktok_state()
        .upload_requests
        .into_iter()
        .filter(|r| r.publish_id.as_deref() == Some(publish_id))
        .collect()
}

/// Publishes `content` with the answer of its first video init lost (TikTok takes the init, the
/// answer comes after Herald gave up), and returns the job once published by its second attempt.
async fn published_after_a_lost_init_answer(
    app: &TestApp,
    connection: &str,
    content: Value,
) -> Value {
    app.sandbox_control(
        Twin::Tiktok,
        "faults",
        json!({"endpoint": "video_init", "fault": {"kind": "timeout_after_success", "secs": 5}}),
    )
    .await;
    let job_id = app.publish("alice", connection, content).await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    assert_eq!(job["attempts"], 2, "{job}");
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_video_photos_and_an_inbox_draft_are_published_once() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_tiktok("alice", "alice_tt").await;

    // A 12 MB video in two chunks, public.
    let clip = video(&app, "clip.mp4", 12_000_000);
    let job_id = app
        .publish(
            "alice",
            &connection,
            json!({"text": "Hello TikTok #herald", "media": [clip],
                   "options": {"tiktok": {"privacy_level": "PUBLIC_TO_EVERYONE", "disable_stitch": true}}}),
        )
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let connections = app.connections("alice").await;
    assert_eq!(connections[0]["platform"], "tiktok");
    assert_eq!(connections[0]["username"], "alice_tt");
    let state = app.sandbox.tiktok_state();
    assert_eq!(state.posts.len(), 1, "exactly one post on TikTok");
    let post = &state.posts[0];
    assert_eq!(job["post_id"], post.id.as_str());
    assert_eq!(job["post_url"], post.url.as_str());
    assert_eq!(post.title, "Hello TikTok #herald");
    assert_eq!(post.privacy_level, "PUBLIC_TO_EVERYONE");
    let publish = &state.publishes[0];
    assert!(publish.disable_stitch);
    assert_eq!(publish.uploaded_checksum, app.media_checksum(&clip).await);
    let uploads = uploads_of(&app, &publish.publish_id);
    assert_eq!(uploads.len(), 2);
    assert!(uploads.iter().all(|u| u.accepted));
    let history = app.history("alice", &job_id).await;
    let opened = history.iter().position(|t| t == "UploadSessionOpened");
    let chunked = history.iter().position(|t| t == "UploadChunked");
    assert!(
        matches!((opened, chunked), (Some(o), Some(c)) if o < c),
        "the session is recorded before any chunk: {history:?}"
    );
    assert_eq!(history.last().map(String::as_str), Some("Published"));
    // The session handle is sealed: no upload token in the job's history.
    let events = app.history_events("alice", &job_id).await;
    assert!(!serde_json::to_string(&events)
        .unwrap()
        .contains("upload_token"));

    // Three photos: one photo post.
    let photos_job = app
        .publish(
            "alice",
            &connection,
            json!({"text": "three photos", "title": "A day out",
                   "media": [photo(&app, "a.jpg"), photo(&app, "b.jpg"), photo(&app, "c.jpg")],
                   "options": {"tiktok": {"privacy_level": "PUBLIC_TO_EVERYONE"}}}),
        )
        .await;
    let job = app
        .wait_for_status("alice", &photos_job, "published", SOON)
        .await;
    let state = app.sandbox.tiktok_state();
    assert_eq!(state.posts.len(), 2);
    let photo_post = state.posts.last().unwrap();
    assert_eq!(photo_post.media_type, "PHOTO");
    assert_eq!(job["post_id"], photo_post.id.as_str());
    assert!(job["post_url"].as_str().unwrap().contains("/photo/"));
    assert_eq!(state.publishes.last().unwrap().photo_images.len(), 3);

    // Inbox: a draft for the creator to finish; the publish id and the profile stand in.
    let draft_job = app
        .publish(
            "alice",
            &connection,
            json!({"text": "finish me in the app", "media": [video(&app, "draft.mp4", 3000)],
                   "options": {"tiktok": {"mode": "inbox"}}}),
        )
        .await;
    let job = app
        .wait_for_status("alice", &draft_job, "published", SOON)
        .await;
    let state = app.sandbox.tiktok_state();
    let draft = state.publishes.last().unwrap();
    assert_eq!(
        (draft.mode.as_str(), draft.status.as_str()),
        ("inbox", "SEND_TO_USER_INBOX")
    );
    assert_eq!(job["post_id"], draft.publish_id.as_str());
    assert_eq!(job["post_url"], "https://www.tiktok.com/@alice_tt");
    assert_eq!(state.posts.len(), 2, "an inbox draft is not a post");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_tiktok_cannot_take_is_refused_with_422() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_tiktok("alice", "alice_tt").await;
    let cases = [
        json!({"text": "text alone is not a TikTok post"}),
        json!({"text": "x", "media": [video(&app, "v.mp4", 1000)], "options": {"tiktok": {"privacy_level": "FRIENDS"}}}),
        json!({"text": "x", "media": [video(&app, "v.mp4", 1000)], "options": {"tiktok": {"mode": "draft"}}}),
    ];
    for content in cases {
        let response = app
            .post(
                "alice",
                "/publish",
                json!({"connection_ids": [connection], "content": content}),
            )
            .await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 422, "{content} -> {body}");
    }
    assert!(app.sandbox.tiktok_state().publishes.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_kafka_publish_a_tiktok_video() {
    let app = spawn_app(Backend::PostgresKafka).await;
    let connection = app.connect_tiktok("alice", "alice_tt").await;
    let job_id = app
        .publish(
            "alice",
            &connection,
            json!({"text": "TikTok via Kafka", "media": [video(&app, "k.mp4", 11 * MB)]}),
        )
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let state = app.sandbox.tiktok_state();
    assert_eq!(state.publishes.len(), 1);
    // SELF_ONLY by default: nothing public by accident, so no public post id.
    assert_eq!(state.posts[0].privacy_level, "SELF_ONLY");
    assert_eq!(job["post_id"], state.publishes[0].publish_id.as_str());
    assert_eq!(uploads_of(&app, &state.publishes[0].publish_id).len(), 2);
    app.stop().await;
}

/// A chunk TikTok keeps failing ends the attempt; the next attempt resumes the same upload
/// from the offset the first one recorded instead of starting a new publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_chunk_is_retried_by_resuming_the_same_upload() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_tiktok("alice", "alice_tt").await;
    let clip = video(&app, "r.mp4", 16 * MB);
    // The first chunk goes in; the second fails on every try of the first attempt.
    app.sandbox_control(Twin::Tiktok,
        "faults",
        json!({"endpoint": "upload", "fault": {"kind": "slow_processing", "secs": 0.0}, "times": 1}),
    )
    .await;
    app.sandbox_control(
        Twin::Tiktok,
        "faults",
        json!({"endpoint": "upload", "fault": {"kind": "server_error", "status": 503}, "times": 4}),
    )
    .await;
    let job_id = app
        .publish(
            "alice",
            &connection,
            json!({"text": "resumed", "media": [clip]}),
        )
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", Duration::from_secs(60))
        .await;
    assert_eq!(job["attempts"], 2, "{job}");
    let state = app.sandbox.tiktok_state();
    assert_eq!(state.publishes.len(), 1, "the same publish, resumed");
    assert_eq!(state.posts.len(), 1);
    let accepted: Vec<u64> = uploads_of(&app, &state.publishes[0].publish_id)
        .iter()
        .filter(|u| u.accepted)
        .map(|u| u.first_byte.unwrap())
        .collect();
    assert_eq!(accepted, [0, 5 * MB, 10 * MB]);
    assert_eq!(
        state.publishes[0].uploaded_checksum,
        app.media_checksum(&clip).await
    );
    app.stop().await;
}

/// An init whose answer is lost leaves a publish without bytes, which TikTok never posts: the
/// retry starts a new one and the post appears once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_answer_lost_in_a_timeout_does_not_post_twice() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_tiktok("alice", "alice_tt").await;
    let job = published_after_a_lost_init_answer(
        &app,
        &connection,
        json!({"text": "once", "media": [video(&app, "o.mp4", 2000)]}),
    )
    .await;
    let state = app.sandbox.tiktok_state();
    assert_eq!(state.publishes.len(), 2);
    assert_eq!(state.publishes[0].status, "PROCESSING_UPLOAD");
    assert_eq!(state.publishes[0].uploaded_bytes, 0);
    assert_eq!(state.posts.len(), 1, "exactly one post on TikTok");
    assert_eq!(job["post_id"], state.publishes[1].publish_id.as_str());
    app.stop().await;
}

/// A pulled init is the post. When its answer is lost and the post is public, the retry finds it
/// among the account's public videos (Herald asks for video.list) and records it: the job ends
/// published with one copy on TikTok, instead of stopping for the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_public_post_whose_init_answer_was_lost_is_found_not_sent_twice() {
    let app = spawn_app_configured(
        Backend::Embedded,
        SandboxConfig::default(),
        Role::All,
        |config| {
            // The sandbox serves the media on the one allowed host.
            let pull = format!("http://{}/media/pull-", config.media_allowed_hosts);
            config
                .platforms
                .set("TIKTOK_PULL_FROM_URL_PREFIXES", pull)
                .set(
                    "TIKTOK_SCOPES",
                    format!("{},{VIDEO_LIST_SCOPE}", DEFAULT_SCOPES.join(",")),
                );
        },
    )
    .await;
    let connection = app.connect_tiktok("alice", "alice_tt").await;
    let job = published_after_a_lost_init_answer(
        &app,
        &connection,
        json!({"text": "pulled once #herald", "media": [video(&app, "pull-once.mp4", 2000)],
               "options": {"tiktok": {"privacy_level": "PUBLIC_TO_EVERYONE"}}}),
    )
    .await;
    let state = app.sandbox.tiktok_state();
    assert_eq!(state.publishes.len(), 1, "the init was sent once");
    assert_eq!(state.publishes[0].source, "PULL_FROM_URL");
    assert_eq!(state.posts.len(), 1, "exactly one copy on TikTok");
    assert_eq!(job["post_id"], state.posts[0].id.as_str());
    assert_eq!(job["post_url"], state.posts[0].url.as_str());
    assert!(state
        .requests
        .iter()
        .any(|r| r.path.ends_with("/v2/video/list/") && r.status == Some(200)));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_once_and_the_post_goes_out() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_tiktok("alice", "alice_tt").await;
    app.sandbox_control(
        Twin::Tiktok,
        "faults",
        json!({"endpoint": "creator_info", "fault": {"kind": "expire_token"}}),
    )
    .await;
    let job_id = app
        .publish(
            "alice",
            &connection,
            json!({"text": "after a refresh", "media": [video(&app, "t.mp4", 2000)]}),
        )
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    assert_eq!(job["attempts"], 2, "{job}");
    let token_calls = app
        .sandbox
        .tiktok_state()
        .requests
        .into_iter()
        .filter(|r| r.path.ends_with("/v2/oauth/token/"))
        .count();
    assert_eq!(token_calls, 2, "the code exchange and one refresh");
    assert_eq!(app.sandbox.tiktok_state().posts.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_asks_for_reconnection() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_tiktok("alice", "alice_tt").await;
    app.sandbox_control(
        Twin::Tiktok,
        "faults",
        json!({"endpoint": "creator_info", "fault": {"kind": "revoke_grant"}}),
    )
    .await;
    let job_id = app
        .publish(
            "alice",
            &connection,
            json!({"text": "never", "media": [video(&app, "n.mp4", 2000)]}),
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
            .contains("reconnect"),
        "{job}"
    );
    assert!(app.sandbox.tiktok_state().publishes.is_empty());
    app.stop().await;
}

/// Has the TikTok twin remove `username`'s authorization; returns what Herald's callback
/// answered.
async fn remove_authorization_at_tiktok(app: &TestApp, username: &str, reason: i64) -> Value {
    let response = app
        .http
        .post(format!(
            "{}/_sandbox/deauthorize",
            app.sandbox.tiktok_base_url()
        ))
        .json(&json!({"username": username, "reason": reason}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_authorization_removed_webhook_ends_the_connection_once() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_tiktok("alice", "alice_tt").await;
    let other = app.connect_tiktok("bob", "bob_tt").await;
    let callback = format!("{}/api/v1/webhooks/tiktok", app.url);
    let registered = app
        .http
        .put(format!(
            "{}/_sandbox/webhook",
            app.sandbox.tiktok_base_url()
        ))
        .json(&json!({"url": callback}))
        .send()
        .await
        .unwrap();
    assert!(registered.status().is_success());

    // A forged delivery (not signed with the app's secret) is refused and changes nothing.
    let forged = app
        .http
        .post(&callback)
        .header(
            "TikTok-Signature",
            format!("t={},s={}", chrono::Utc::now().timestamp(), "ab".repeat(32)),
        )
        .json(
            &json!({"client_key": "sandbox", "event": "authorization.removed",
            "create_time": chrono::Utc::now().timestamp(), "user_openid": "x", "content": "{}"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let problem: Value = forged.json().await.unwrap();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("webhook-signature-invalid"),
        "{problem}"
    );
    let status = |views: &[Value], id: &str| {
        views
            .iter()
            .find(|v| v["connection_id"] == id)
            .map(|v| v["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        status(&app.connections("alice").await, &connection).as_deref(),
        Some("active")
    );

    // alice removes Herald in the TikTok app: TikTok revokes her tokens and tells Herald.
    let answer = remove_authorization_at_tiktok(&app, "alice_tt", 1).await;
    assert_eq!(answer["delivered_status"], 200, "{answer}");
    let view = eventually("alice's connection needs her", SOON, || async {
        app.connections("alice")
            .await
            .into_iter()
            .find(|v| v["connection_id"] == connection.as_str() && v["status"] == "expired")
    })
    .await;
    let reason = view["status_reason"].as_str().unwrap();
    assert!(
        reason.contains("TikTok says Herald's access was removed (the user disconnected Herald in the TikTok app)"),
        "{reason}"
    );
    // TikTok delivers at least once: a repeat is accepted and changes nothing more.
    let again = remove_authorization_at_tiktok(&app, "alice_tt", 1).await;
    assert_eq!(again["delivered_status"], 200, "{again}");
    // bob's connection is another account: untouched.
    assert_eq!(
        status(&app.connections("bob").await, &other).as_deref(),
        Some("active")
    );

    // A job for the ended connection is refused at once with what to do.
    let refused = app
        .post(
            "alice",
            "/publish",
            json!({"connection_ids": [connection], "content": {"text": "hello", "media": [video(&app, "w.mp4", 2000)]}}),
        )
        .await;
    assert_eq!(refused.status(), 409, "{:?}", refused.text().await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_revokes_the_grant_at_tiktok() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_tiktok("alice", "alice_tt").await;
    let issued = app.sandbox.tiktok_state().tokens_issued;
    let response = app
        .delete(
            "alice",
            &format!("/tiktok/disconnect?connection_id={connection}"),
        )
        .await;
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    let revokes = app
        .sandbox
        .tiktok_state()
        .requests
        .into_iter()
        .filter(|r| r.path.ends_with("/v2/oauth/revoke/"))
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert_eq!(revokes, [Some(200)]);
    let refused = app
        .http
        .post(format!(
            "{}/v2/post/publish/creator_info/query/",
            app.sandbox.tiktok_base_url()
        ))
        .bearer_auth(&issued[0].access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "the token no longer works at TikTok");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_failures_end_with_an_actionable_message_or_a_new_publish() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_tiktok("alice", "alice_tt").await;
    // Too long for the creator: final, with the creator's limit.
    app.sandbox_control(
        Twin::Tiktok,
        "creators",
        json!({"username": "alice_tt", "max_video_post_duration_sec": 60}),
    )
    .await;
    app.sandbox_control(
        Twin::Tiktok,
        "fail_reasons",
        json!({"fail_reason": "duration_check_failed"}),
    )
    .await;
    let long = app
        .publish(
            "alice",
            &connection,
            json!({"text": "too long", "media": [video(&app, "l.mp4", 2000)]}),
        )
        .await;
    let job = app.wait_for_status("alice", &long, "failed", SOON).await;
    assert_eq!(job["last_error"]["class"], "permanent");
    assert_eq!(job["last_error"]["code"], "duration_check_failed");
    assert!(
        job["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("60 seconds"),
        "{job}"
    );
    assert_eq!(job["attempts"], 1);

    // The daily cap, reported by creator_info with HTTP 200: final, try tomorrow.
    app.sandbox_control(
        Twin::Tiktok,
        "errors",
        json!({"endpoint": "creator_info", "code": "spam_risk_too_many_posts"}),
    )
    .await;
    let capped = app
        .publish(
            "alice",
            &connection,
            json!({"text": "one too many", "media": [video(&app, "c.mp4", 2000)]}),
        )
        .await;
    let job = app.wait_for_status("alice", &capped, "failed", SOON).await;
    assert_eq!(job["last_error"]["code"], "spam_risk_too_many_posts");
    assert!(job["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("tomorrow"));

    // TikTok's internal failure: published again, once.
    app.sandbox_control(
        Twin::Tiktok,
        "fail_reasons",
        json!({"fail_reason": "internal"}),
    )
    .await;
    let retried = app
        .publish(
            "alice",
            &connection,
            json!({"text": "second time", "media": [video(&app, "i.mp4", 2000)]}),
        )
        .await;
    let job = app
        .wait_for_status("alice", &retried, "published", SOON)
        .await;
    assert_eq!(job["attempts"], 2, "{job}");
    let state = app.sandbox.tiktok_state();
    let titled: Vec<_> = state
        .publishes
        .iter()
        .filter(|p| p.title.as_deref() == Some("second time"))
        .collect();
    assert_eq!(titled.len(), 2);
    assert_eq!(titled[0].status, "FAILED");
    assert_eq!(
        state
            .posts
            .iter()
            .filter(|p| p.title == "second time")
            .count(),
        1
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sixth_pending_inbox_share_waits_and_says_how_long() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_tiktok("alice", "alice_tt").await;
    for i in 0..5 {
        let job = app
            .publish(
                "alice",
                &connection,
                json!({"text": "draft", "media": [video(&app, &format!("d{i}.mp4"), 2000)],
                       "options": {"tiktok": {"mode": "inbox"}}}),
            )
            .await;
        app.wait_for_status("alice", &job, "published", SOON).await;
    }
    let sixth = app
        .publish(
            "alice",
            &connection,
            json!({"text": "draft", "media": [video(&app, "d5.mp4", 2000)],
                   "options": {"tiktok": {"mode": "inbox"}}}),
        )
        .await;
    let job = app
        .wait_for_status("alice", &sixth, "retry_scheduled", SOON)
        .await;
    assert_eq!(job["last_error"]["class"], "rate_limited", "{job}");
    assert_eq!(
        job["last_error"]["code"],
        "spam_risk_too_many_pending_share"
    );
    let message = job["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("0 of 5 left"), "{message}");
    let retry_at = support::time(job["retry_at"].as_str().unwrap());
    assert!(
        retry_at > chrono::Utc::now() + chrono::TimeDelta::hours(23),
        "{job}"
    );
    assert!(
        message.contains(&retry_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "the message names the reset: {message} / {retry_at}"
    );
    app.stop().await;
}

/// With no TikTok settings, the embedded default connects TikTok to its own sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_connects_tiktok_to_its_sandbox() {
    let url = support::connect_through_the_embedded_sandbox("tiktok", |config| {
        config
            .platforms
            .remove("TIKTOK_CLIENT_ID")
            .remove("TIKTOK_CLIENT_SECRET")
            .remove("TIKTOK_API_BASE");
    })
    .await;
    assert!(
        url.contains("/tiktok/v2/auth/authorize/?client_key="),
        "{url}"
    );
}

/// `kill -9` of the worker process while a chunk is on its way: the next worker resumes the
/// same upload from the offset the first one recorded, and TikTok never receives a range twice
/// except the chunk that was in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_upload_is_resumed_from_the_recorded_offset() {
    let mut split = SplitApp::start(Backend::Embedded).await;
    let app = &split.app;
    let connection = app.connect_tiktok("alice", "alice_tt").await;
    let size = 16 * MB;
    let clip = video(app, "crash.mp4", size);
    // Every chunk takes TikTok 1.5 s to start reading: time to kill the worker mid-chunk.
    app.sandbox_control(Twin::Tiktok,
        "faults",
        json!({"endpoint": "upload", "fault": {"kind": "slow_processing", "secs": 1.5}, "times": 3}),
    )
    .await;
    let worker = split.spawn_worker(&split.worker_config(), DEBUG_LOG);
    let app = &split.app;
    let job_id = app
        .publish(
            "alice",
            &connection,
            json!({"text": "crash test", "media": [clip.clone()]}),
        )
        .await;
    // Wait until the first chunk is in and recorded, and the second is on its way.
    let publish_id = eventually(
        "the second chunk is in flight",
        Duration::from_secs(60),
        || async {
            worker.assert_running();
            let state = app.sandbox.tiktok_state();
            let publish = state.publishes.first()?;
            let uploads = uploads_of(app, &publish.publish_id);
            let second_in_flight = uploads
                .iter()
                .any(|u| u.first_byte == Some(5 * MB) && u.status.is_none());
            let recorded = app.history_events("alice", &job_id).await.iter().any(|e| {
                e["event_type"] == "UploadChunked" && event_data(e)["bytes_sent"] == 5 * MB
            });
            (second_in_flight && recorded).then(|| publish.publish_id.clone())
        },
    )
    .await;
    worker.kill();
    let second = split.spawn_worker(&split.worker_config(), DEBUG_LOG);
    let app = &split.app;
    let job = app
        .wait_for_status("alice", &job_id, "published", Duration::from_secs(90))
        .await;
    second.assert_running();

    let state = app.sandbox.tiktok_state();
    assert_eq!(
        state.publishes.len(),
        1,
        "the same publish, resumed: {:?}",
        state.publishes
    );
    assert_eq!(state.posts.len(), 1);
    assert_eq!(job["post_id"], state.publishes[0].publish_id.as_str());
    assert_eq!(
        state.publishes[0].uploaded_checksum,
        app.media_checksum(&clip).await
    );
    let uploads = uploads_of(app, &publish_id);
    let accepted: Vec<(u64, u64)> = uploads
        .iter()
        .filter(|u| u.accepted)
        .map(|u| (u.first_byte.unwrap(), u.last_byte.unwrap()))
        .collect();
    assert_eq!(
        accepted,
        [(0, 5 * MB - 1), (5 * MB, 10 * MB - 1), (10 * MB, size - 1)],
        "each range accepted once: {uploads:?}"
    );
    // Nothing before the recorded offset was sent again. The chunk in flight when the worker
    // died is sent again only if TikTok did not get all of it (the kernel may still deliver
    // what the dead process had written); either way the new worker follows TikTok's progress.
    let starts: Vec<u64> = uploads.iter().map(|u| u.first_byte.unwrap()).collect();
    assert!(
        starts == [0, 5 * MB, 5 * MB, 10 * MB] || starts == [0, 5 * MB, 10 * MB],
        "{uploads:?}"
    );
    if starts.len() == 4 {
        assert!(
            !uploads[1].accepted,
            "the cut-off chunk did not count: {uploads:?}"
        );
    }
    // The second attempt opened no new session: it resumed from the recorded 5 MB.
    let history = app.history_events("alice", &job_id).await;
    let sessions = history
        .iter()
        .filter(|e| e["event_type"] == "UploadSessionOpened")
        .count();
    assert_eq!(sessions, 1);
    let offsets: Vec<u64> = history
        .iter()
        .filter(|e| e["event_type"] == "UploadChunked")
        .map(|e| event_data(e)["bytes_sent"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets.first(), Some(&(5 * MB)), "{offsets:?}");
    assert_eq!(offsets.last(), Some(&size), "{offsets:?}");
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    drop(second);
    split.stop().await;
}

/// Two worker processes publish seven videos for one account at once: together they send at
/// most six init calls a minute (TikTok's documented limit), so TikTok never refuses one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_together_keep_tiktoks_per_minute_limits() {
    let mut split = SplitApp::start(Backend::Embedded).await;
    let app = &split.app;
    let connection = app.connect_tiktok("alice", "alice_tt").await;
    // Three jobs at a time each: seven jobs need both workers.
    let workers = split
        .spawn_workers(2, DEBUG_LOG, |config| config.worker_concurrency = 3)
        .await;
    let app = &split.app;
    let mut jobs = Vec::new();
    for i in 0..7 {
        jobs.push(
            app.publish(
                "alice",
                &connection,
                json!({"text": format!("limited #{i}"), "media": [video(app, &format!("m{i}.mp4"), 2000)]}),
            )
            .await,
        );
    }
    let published = workers
        .settle(app, "alice", &jobs, Duration::from_secs(150), |job| {
            job["status"] == "published"
        })
        .await;
    let state = app.sandbox.tiktok_state();
    assert!(
        state.rate_limit_refusals.is_empty(),
        "TikTok refused calls for exceeding its limits: {:?}",
        state.rate_limit_refusals
    );
    assert_eq!(state.posts.len(), 7);
    assert!(
        published.iter().all(|j| j["attempts"] == 1),
        "{published:?}"
    );
    // The seventh init had to wait for the first one's minute to pass.
    let inits: Vec<chrono::DateTime<chrono::Utc>> = state
        .requests
        .iter()
        .filter(|r| r.path.ends_with("/v2/post/publish/video/init/"))
        .map(|r| support::time(&r.at))
        .collect();
    assert_eq!(inits.len(), 7);
    assert!(
        inits[6] - inits[0] >= chrono::TimeDelta::seconds(60),
        "{inits:?}"
    );
    workers.assert_each_logged_one_of(&["TikTok accepted the publish"]);
    drop(workers);
    split.stop().await;
}
