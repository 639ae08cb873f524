//! One publish request to many platforms at once: one job per connection, each succeeding or
//! failing on its own, on Postgres + Kafka; per-target overrides give one platform (Reddit, whose
//! video posts need a poster image) its own content in the same request.
mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::Twin;
use support::{spawn_app, Backend};

const SOON: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_to_all_eight_platforms_makes_eight_independent_jobs() {
    let app = spawn_app(Backend::PostgresKafka).await;
    let mut connections: Vec<(&str, String)> = vec![
        ("x", app.connect_x("alice", "alice_x").await),
        ("threads", app.connect_threads("alice", "alice_th").await),
        ("youtube", app.connect_youtube("alice", "alice_yt").await),
        ("tiktok", app.connect_tiktok("alice", "alice_tt").await),
        (
            "instagram",
            app.connect_instagram("alice", "meta_alice").await.remove(0),
        ),
        (
            "linkedin",
            app.connect_linkedin("alice", "herald_sandbox")
                .await
                .remove(0),
        ),
    ];
    let page = app
        .connect_facebook_pages("alice", "meta_alice")
        .await
        .remove(0);
    connections.push(("facebook_pages", page));
    connections.push(("reddit", app.connect_reddit("alice", "reddit_alice").await));

    // LinkedIn refuses this post; every other platform publishes it.
    app.fault(Twin::Linkedin,
        "create_post",
        json!({"kind": "content_rejected", "detail": "This post violates the Professional Community Policies"}),
        1,
    )
    .await;
    let video = format!(
        "{}/media/clip.mp4?bytes=2000000&duration_ms=12000",
        app.sandbox.base_url()
    );
    let response = app
        .post(
            "alice",
            "/publish",
            json!({
                "connection_ids": connections.iter().map(|(_, id)| id).collect::<Vec<_>>(),
                "content": {
                    "text": "One clip for every platform",
                    "title": "One clip",
                    "media": [{"url": video, "kind": "video", "mime_type": "video/mp4"}],
                    "options": {
                        "instagram": {"placement": "reels"},
                        "reddit": {"subreddit": "herald_sandbox"}
                    }
                },
                // Reddit gets a text post with its own title instead of the video.
                "overrides": {"reddit": {"media": [], "title": "One clip, in words"}}
            }),
        )
        .await;
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let accepted: Value = response.json().await.unwrap();
    let jobs: HashMap<String, String> = accepted["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["connection_id"].as_str().unwrap().to_string(),
                j["job_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(jobs.len(), 8, "{accepted}");

    for (platform, connection) in &connections {
        let job_id = &jobs[connection];
        let expected = if *platform == "linkedin" {
            "failed"
        } else {
            "published"
        };
        let job = app.wait_for_status("alice", job_id, expected, SOON).await;
        assert_eq!(job["platform"], *platform, "{job}");
        if expected == "published" {
            assert!(
                job["post_id"].as_str().is_some_and(|id| !id.is_empty()),
                "{platform}: {job}"
            );
            assert!(
                job["post_url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("http")),
                "{platform}: {job}"
            );
        } else {
            assert_eq!(job["last_error"]["class"], "permanent", "{job}");
        }
    }

    // Exactly one copy where it was published, none where it was refused.
    assert_eq!(app.posts_with_text("One clip for every platform"), 1);
    let youtube = app.sandbox.youtube_state();
    assert_eq!(youtube.videos.len(), 1, "{:?}", youtube.videos);
    let linkedin = app.sandbox.linkedin_state();
    assert!(linkedin.posts.is_empty(), "{:?}", linkedin.posts);
    let reddit = app.sandbox.reddit_state();
    assert_eq!(reddit.posts.len(), 1, "{:?}", reddit.posts);
    assert_eq!(reddit.posts[0].title, "One clip, in words");
    assert_eq!(reddit.posts[0].kind, "self");
    app.stop().await;
}
