//! Reddit end to end: connect → publish to a subreddit → sandbox Reddit → projections, for
//! text, link, image, gallery and video posts; the documented refusals and their outcomes; and
//! Reddit's request budget shared by worker processes on Postgres and Kafka.
mod support;

use std::time::Duration;

use herald_api::config::Role;
use herald_sandbox::{RedditPostSnapshot, SandboxConfig};
use serde_json::{json, Value};
use support::worker::SplitApp;
use support::Twin;
use support::{spawn_app, spawn_app_with, Backend, TestApp};

const SOON: Duration = Duration::from_secs(20);
/// How long restarted workers may take to join the Kafka consumer groups.
const PATIENCE: Duration = Duration::from_secs(180);

fn posts_titled(app: &TestApp, title: &str) -> Vec<RedditPostSnapshot> {
    app.sandbox
        .reddit_state()
        .posts
        .into_iter()
        .filter(|p| p.title == title)
        .collect()
}

fn submit_calls(app: &TestApp) -> usize {
    app.sandbox
        .reddit_state()
        .requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/api/submit"))
        .count()
}

fn gallery_calls(app: &TestApp) -> usize {
    app.sandbox
        .reddit_state()
        .requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/api/submit_gallery_post.json"))
        .count()
}

/// `count` sample PNGs.
fn pictures(app: &TestApp, count: usize) -> Value {
    let items: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "url": format!("{}/media/pic{i}.png?bytes={}", app.sandbox.base_url(), 2000 + i),
                "kind": "image", "mime_type": "image/png",
            })
        })
        .collect();
    Value::Array(items)
}

/// A video post to `subreddit` with a poster.
fn clip(app: &TestApp, subreddit: &str, text: &str) -> Value {
    let mut content = to(
        subreddit,
        json!({"text": text, "media": [{
            "url": format!("{}/media/clip.mp4?bytes=40000", app.sandbox.base_url()),
            "kind": "video", "mime_type": "video/mp4",
        }]}),
    );
    content["options"]["reddit"]["thumbnail_url"] = json!(format!(
        "{}/media/poster.jpg?bytes=3000",
        app.sandbox.base_url()
    ));
    content
}

fn to(subreddit: &str, content: Value) -> Value {
    let mut content = content;
    content["options"] = json!({"reddit": {"subreddit": subreddit}});
    content
}

/// Publishes and waits until published; returns the job and the one post on the twin.
async fn publish_once(
    app: &TestApp,
    connection: &str,
    content: Value,
    title: &str,
) -> (Value, RedditPostSnapshot) {
    let job_id = app.publish("alice", connection, content).await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let mut posts = posts_titled(app, title);
    assert_eq!(posts.len(), 1, "exactly one copy of {title:?} on Reddit");
    let post = posts.remove(0);
    assert_eq!(job["post_id"], format!("t3_{}", post.id));
    assert_eq!(
        job["post_url"],
        format!("{}{}", app.sandbox.reddit_base_url(), post.permalink)
    );
    (job, post)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_link_and_image_posts_are_published_once() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_reddit("alice", "reddit_alice").await;
    let view = support::eventually("the connection view", SOON, || async {
        app.connections("alice").await.pop()
    })
    .await;
    assert_eq!(view["username"], "reddit_alice");
    assert_eq!(view["can_refresh"], true);

    // A text post: the title is derived from the first line.
    let (_, text) = publish_once(
        &app,
        &connection,
        to(
            "herald_sandbox",
            json!({"text": "Hello from Herald\n\nThe body, in *markdown*."}),
        ),
        "Hello from Herald",
    )
    .await;
    assert_eq!(text.kind, "self");
    assert_eq!(text.text, "Hello from Herald\n\nThe body, in *markdown*.");

    // A link post with its own title, flair and NSFW mark.
    let mut link = to(
        "needsflair",
        json!({"text": "worth a read", "title": "An article", "link": "https://example.com/article"}),
    );
    link["options"]["reddit"]["flair_id"] = json!("3f2c0e1a-0000-4000-8000-000000000002");
    link["options"]["reddit"]["nsfw"] = json!(true);
    let (_, shared) = publish_once(&app, &connection, link, "An article").await;
    assert_eq!(shared.kind, "link");
    assert_eq!(shared.url.as_deref(), Some("https://example.com/article"));
    assert_eq!(shared.flair_text.as_deref(), Some("News"));
    assert!(shared.nsfw);

    // An image post: leased, uploaded, submitted, then found in the listing.
    let image = to(
        "r/herald_sandbox",
        json!({"text": "A picture", "media": [{
            "url": format!("{}/media/cat.png?bytes=6000", app.sandbox.base_url()),
            "kind": "image", "mime_type": "image/png",
        }]}),
    );
    let (_, picture) = publish_once(&app, &connection, image, "A picture").await;
    assert_eq!(picture.kind, "image");
    let state = app.sandbox.reddit_state();
    assert_eq!(state.assets.len(), 1);
    assert_eq!(state.assets[0].bytes, Some(6000));
    assert_eq!(state.posts.len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_kafka_publish_reddit_text_gallery_and_video_posts() {
    let app = spawn_app(Backend::PostgresKafka).await;
    let connection = app.connect_reddit("alice", "reddit_kafka").await;
    publish_once(
        &app,
        &connection,
        to("herald_sandbox", json!({"text": "Reddit via Kafka"})),
        "Reddit via Kafka",
    )
    .await;
    let (_, gallery) = publish_once(
        &app,
        &connection,
        to(
            "herald_sandbox",
            json!({"text": "A gallery via Kafka", "media": pictures(&app, 2)}),
        ),
        "A gallery via Kafka",
    )
    .await;
    assert_eq!(
        (gallery.kind.as_str(), gallery.media_ids.len()),
        ("gallery", 2)
    );
    let (_, video) = publish_once(
        &app,
        &connection,
        clip(&app, "herald_sandbox", "A video via Kafka"),
        "A video via Kafka",
    )
    .await;
    assert_eq!(video.kind, "video");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gallery_and_video_posts_are_published_once() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_reddit("alice", "reddit_media").await;

    // Three images: each leased and uploaded, then one gallery naming them by asset id.
    let (_, gallery) = publish_once(
        &app,
        &connection,
        to(
            "herald_sandbox",
            json!({"text": "Three pictures", "media": pictures(&app, 3)}),
        ),
        "Three pictures",
    )
    .await;
    assert_eq!(gallery.kind, "gallery");
    let state = app.sandbox.reddit_state();
    let assets: Vec<String> = state.assets.iter().map(|a| a.asset_id.clone()).collect();
    assert_eq!(gallery.media_ids, assets);
    assert_eq!(gallery_calls(&app), 1);

    // A video with its poster: both uploaded, then `kind=video`, found in the listing.
    let (_, video) = publish_once(
        &app,
        &connection,
        clip(&app, "herald_sandbox", "A short clip"),
        "A short clip",
    )
    .await;
    assert_eq!(video.kind, "video");
    let state = app.sandbox.reddit_state();
    let uploaded = &state.assets[3..];
    assert_eq!(
        uploaded
            .iter()
            .map(|a| (a.mimetype.as_str(), a.bytes))
            .collect::<Vec<_>>(),
        [("image/jpeg", Some(3000)), ("video/mp4", Some(40_000))]
    );
    assert_eq!(video.media_ids, [uploaded[1].asset_id.clone()]);
    assert_eq!(video.poster_url, uploaded[0].location);

    // Timed out after Reddit made the gallery: reconciled from the listing, not sent again.
    app.fault(
        Twin::Reddit,
        "submit_gallery",
        json!({"kind": "timeout_after_success", "secs": 3}),
        1,
    )
    .await;
    let (job, _) = publish_once(
        &app,
        &connection,
        to(
            "herald_sandbox",
            json!({"text": "Slow gallery", "media": pictures(&app, 2)}),
        ),
        "Slow gallery",
    )
    .await;
    let history = app.history("alice", job["job_id"].as_str().unwrap()).await;
    assert!(history.contains(&"Reconciled".to_string()), "{history:?}");
    assert_eq!(gallery_calls(&app), 2);

    // The same for a video.
    app.fault(
        Twin::Reddit,
        "submit",
        json!({"kind": "timeout_after_success", "secs": 3}),
        1,
    )
    .await;
    let before = submit_calls(&app);
    let (job, _) = publish_once(
        &app,
        &connection,
        clip(&app, "herald_sandbox", "Slow clip"),
        "Slow clip",
    )
    .await;
    let history = app.history("alice", job["job_id"].as_str().unwrap()).await;
    assert!(history.contains(&"Reconciled".to_string()), "{history:?}");
    assert_eq!(submit_calls(&app), before + 1);

    // Refused when the job is accepted, naming the rule and its limit; nothing is sent.
    let refusals = [
        (
            to(
                "herald_sandbox",
                json!({"text": "Too many", "media": pictures(&app, 21)}),
            ),
            "at most 20 images",
        ),
        (
            {
                let mut no_poster = clip(&app, "herald_sandbox", "No poster");
                no_poster["options"]["reddit"]
                    .as_object_mut()
                    .unwrap()
                    .remove("thumbnail_url");
                no_poster
            },
            "options.reddit.thumbnail_url",
        ),
        (
            {
                let mut mixed = clip(&app, "herald_sandbox", "Mixed");
                let picture = pictures(&app, 1)[0].clone();
                mixed["media"].as_array_mut().unwrap().push(picture);
                mixed
            },
            "one video",
        ),
    ];
    let posts = app.sandbox.reddit_state().posts.len();
    for (content, says) in refusals {
        let refused = app
            .post(
                "alice",
                "/publish",
                json!({"connection_ids": [connection], "content": content}),
            )
            .await;
        assert_eq!(refused.status(), 422);
        let problem: Value = refused.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{detail}");
    }
    assert_eq!(app.sandbox.reddit_state().posts.len(), posts);

    // A subreddit that takes no videos: Reddit's refusal fails the job with advice.
    let job_id = app
        .publish("alice", &connection, clip(&app, "stills", "Not here"))
        .await;
    let job = app.wait_for_status("alice", &job_id, "failed", SOON).await;
    assert_eq!(job["last_error"]["code"], "INVALID_OPTION");
    assert!(job["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("videos"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_give_the_documented_outcomes() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_reddit("alice", "reddit_bob").await;

    // No subreddit: refused when the job is accepted, nothing is sent.
    let refused = app
        .post(
            "alice",
            "/publish",
            json!({"connection_ids": [connection], "content": {"text": "where to?"}}),
        )
        .await;
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("options.reddit.subreddit"));

    // A subreddit that needs flair: failed, naming the flairs to choose from.
    let job_id = app
        .publish(
            "alice",
            &connection,
            to("needsflair", json!({"text": "no flair"})),
        )
        .await;
    let job = app.wait_for_status("alice", &job_id, "failed", SOON).await;
    assert_eq!(
        job["last_error"]["code"],
        "SUBMIT_VALIDATION_FLAIR_REQUIRED"
    );
    let message = job["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("(Discussion)") && message.contains("(News)"),
        "{message}"
    );

    // Text to a links-only subreddit.
    let job_id = app
        .publish(
            "alice",
            &connection,
            to("linksonly", json!({"text": "just words"})),
        )
        .await;
    let job = app.wait_for_status("alice", &job_id, "failed", SOON).await;
    assert_eq!(job["last_error"]["code"], "NO_SELFS");
    assert!(job["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not allow text posts"));

    // 5xx: retried, then published once.
    app.fault(
        Twin::Reddit,
        "submit",
        json!({"kind": "server_error", "status": 502}),
        1,
    )
    .await;
    let (job, _) = publish_once(
        &app,
        &connection,
        to("herald_sandbox", json!({"text": "after a 502"})),
        "after a 502",
    )
    .await;
    let history = app.history("alice", job["job_id"].as_str().unwrap()).await;
    assert!(
        history.contains(&"AttemptFailed".to_string()),
        "{history:?}"
    );

    // A rejected token: refreshed (the refresh token does not rotate), then published.
    app.fault(Twin::Reddit, "submit", json!({"kind": "expire_token"}), 1)
        .await;
    publish_once(
        &app,
        &connection,
        to("herald_sandbox", json!({"text": "after a refresh"})),
        "after a refresh",
    )
    .await;
    let issued = app.sandbox.reddit_state().tokens_issued;
    assert_eq!(issued.len(), 2);
    assert!(issued[1].refresh_token.is_none(), "no new refresh token");

    // Timed out after Reddit made the post: reconciled from the listing, not sent again.
    app.fault(
        Twin::Reddit,
        "submit",
        json!({"kind": "timeout_after_success", "secs": 3}),
        1,
    )
    .await;
    let before = submit_calls(&app);
    let (job, _) = publish_once(
        &app,
        &connection,
        to("herald_sandbox", json!({"text": "slow answer"})),
        "slow answer",
    )
    .await;
    let history = app.history("alice", job["job_id"].as_str().unwrap()).await;
    assert!(history.contains(&"Reconciled".to_string()), "{history:?}");
    assert_eq!(submit_calls(&app), before + 1);

    // The same link again: Reddit's ALREADY_SUB fails the job with advice.
    let link = json!({"text": "again", "title": "Same link", "link": "https://example.com/same"});
    publish_once(
        &app,
        &connection,
        to("herald_sandbox", link.clone()),
        "Same link",
    )
    .await;
    let job_id = app
        .publish("alice", &connection, to("herald_sandbox", link))
        .await;
    let job = app.wait_for_status("alice", &job_id, "failed", SOON).await;
    assert!(job["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("already submitted"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reddit_posting_throttle_schedules_the_retry_when_reddit_says() {
    let mut sandbox = SandboxConfig::default();
    sandbox.reddit.submits_per_window = 1;
    let app = spawn_app_with(Backend::Embedded, sandbox, Role::All).await;
    let connection = app.connect_reddit("alice", "reddit_carol").await;
    publish_once(
        &app,
        &connection,
        to("herald_sandbox", json!({"text": "first"})),
        "first",
    )
    .await;
    let job_id = app
        .publish(
            "alice",
            &connection,
            to("herald_sandbox", json!({"text": "second"})),
        )
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "retry_scheduled", SOON)
        .await;
    assert_eq!(job["last_error"]["code"], "RATELIMIT", "{job}");
    let retry_at = support::time(job["retry_at"].as_str().unwrap());
    let wait = retry_at - chrono::Utc::now();
    assert!(wait > chrono::Duration::minutes(9), "{job}");
    app.stop().await;
}

/// Reddit budgets requests per OAuth client id and says what is left in `X-Ratelimit-*` on
/// every answer. One worker process spends the budget and stops; two other worker processes
/// then run at once and must not call Reddit until the window resets — they learn of it only
/// through the shared gate in Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_budget_holds_across_worker_processes() {
    let mut sandbox = SandboxConfig::default();
    // `/api/v1/me` at connect, then two submissions spend it.
    sandbox.reddit.requests_per_window = 3;
    let mut split = SplitApp::start_with(Backend::PostgresKafka, sandbox).await;
    let config = split.worker_config();
    let first = split.spawn_worker(&config, "info");
    let app = &split.app;
    let connection = app.connect_reddit("alice", "reddit_erin").await;
    for text in ["budget one", "budget two"] {
        publish_once(
            app,
            &connection,
            to("herald_sandbox", json!({"text": text})),
            text,
        )
        .await;
    }
    first.kill();
    let workers = split.spawn_workers(2, "info", |_| {}).await;
    let app = &split.app;
    let mut later = Vec::new();
    for i in 0..3 {
        later.push(
            app.publish(
                "alice",
                &connection,
                to("herald_sandbox", json!({"text": format!("later {i}")})),
            )
            .await,
        );
    }
    let waiting = workers
        .settle(app, "alice", &later, PATIENCE, |job| {
            job["status"] == "retry_scheduled"
        })
        .await;
    for job in &waiting {
        assert_eq!(job["last_error"]["code"], "rate_limit_exhausted", "{job}");
        let wait = support::time(job["retry_at"].as_str().unwrap()) - chrono::Utc::now();
        assert!(
            wait > chrono::Duration::minutes(8),
            "until the window resets: {job}"
        );
    }
    assert!(workers.any_logged("rate_limit_exhausted"));
    assert_eq!(
        submit_calls(app),
        2,
        "no submission after the budget was spent"
    );
    assert!(app
        .sandbox
        .reddit_state()
        .requests
        .iter()
        .all(|r| r.status != Some(429)));
    drop(workers);
    split.stop().await;
}

/// Reddit's budget is "100 queries per minute per OAuth client id": every account connected
/// through Herald's app draws from it. Two accounts on two worker processes: once Erin's posts
/// have spent what is left of the window, Frank's posts wait for its reset instead of taking
/// the 429 that a budget kept per account would let through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_of_one_app_share_its_budget_across_worker_processes() {
    let mut sandbox = SandboxConfig::default();
    // `/api/v1/me` for each connection, then three submissions spend it.
    sandbox.reddit.requests_per_window = 5;
    let mut split = SplitApp::start_with(Backend::PostgresKafka, sandbox).await;
    let erin = split.app.connect_reddit("alice", "reddit_erin").await;
    let frank = split.app.connect_reddit("alice", "reddit_frank").await;
    let workers = split
        .spawn_workers(2, "info", |config| config.worker_concurrency = 1)
        .await;
    let app = &split.app;
    let post = |i: usize, who: &str| to("herald_sandbox", json!({"text": format!("{who} {i}")}));
    let mut erins = Vec::new();
    for i in 0..3 {
        erins.push(app.publish("alice", &erin, post(i, "erin")).await);
    }
    workers
        .settle(app, "alice", &erins, PATIENCE, |job| {
            job["status"] == "published"
        })
        .await;
    let mut franks = Vec::new();
    for i in 0..2 {
        franks.push(app.publish("alice", &frank, post(i, "frank")).await);
    }
    let waiting = workers
        .settle(app, "alice", &franks, PATIENCE, |job| {
            job["status"] == "retry_scheduled"
        })
        .await;
    for job in &waiting {
        assert_eq!(job["last_error"]["code"], "rate_limit_exhausted", "{job}");
        let message = job["last_error"]["message"].as_str().unwrap();
        assert!(message.contains("every account of the app"), "{message}");
        let wait = support::time(job["retry_at"].as_str().unwrap()) - chrono::Utc::now();
        assert!(
            wait > chrono::Duration::minutes(8),
            "until the window resets: {job}"
        );
    }
    assert_eq!(submit_calls(app), 3, "Frank's posts were never sent");
    let requests = app.sandbox.reddit_state().requests;
    assert!(
        requests.iter().all(|r| r.status != Some(429)),
        "Reddit refused a call: {requests:?}"
    );
    assert!(workers.any_logged("rate_limit_exhausted"));
    drop(workers);
    split.stop().await;
}
