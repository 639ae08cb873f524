//! Every X content type through the whole pipeline: images, a chunked video, a poll, a thread.
mod support;

use std::time::Duration;

use serde_json::json;
use support::Twin;
use support::{spawn_app, Backend};

const SOON: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_video_polls_and_threads_reach_x() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_x("alice", "alice_x").await;
    let media = |name: &str, kind: &str, mime: &str, bytes: u64| json!({"url": format!("{}/media/{name}?bytes={bytes}", app.sandbox.base_url()), "kind": kind, "mime_type": mime});

    let images = app
        .publish(
            "alice",
            &connection,
            json!({"text": "two pictures", "media": [media("a.png", "image", "image/png", 200_000), media("b.jpg", "image", "image/jpeg", 90_000)]}),
        )
        .await;
    // 9 MiB in 4 MiB chunks: three APPEND segments.
    let video = app
        .publish("alice", &connection, json!({"text": "a clip", "media": [media("clip.mp4", "video", "video/mp4", 9 * 1024 * 1024)]}))
        .await;
    let poll = app
        .publish("alice", &connection, json!({"text": "tabs or spaces?", "poll": {"options": ["tabs", "spaces"], "duration_minutes": 60}}))
        .await;
    let long_text = (0..120)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let thread = app
        .publish(
            "alice",
            &connection,
            json!({"text": long_text, "thread": true}),
        )
        .await;

    let images_job = app
        .wait_for_status("alice", &images, "published", SOON)
        .await;
    let video_job = app
        .wait_for_status("alice", &video, "published", SOON)
        .await;
    app.wait_for_status("alice", &poll, "published", SOON).await;
    let thread_job = app
        .wait_for_status("alice", &thread, "published", SOON)
        .await;

    assert_eq!(images_job["upload_progress_percent"], 100);
    assert_eq!(video_job["upload_progress_percent"], 100);
    let video_history = app.history("alice", &video).await;
    assert_eq!(
        video_history
            .iter()
            .filter(|e| *e == "UploadChunked")
            .count(),
        3,
        "{video_history:?}"
    );
    assert!(
        video_history.contains(&"UploadStarted".to_string())
            && video_history.contains(&"UploadCompleted".to_string())
    );

    let state = app.sandbox.x_state();
    let post = |id: &serde_json::Value| {
        state
            .posts
            .iter()
            .find(|p| p.id == id.as_str().unwrap())
            .unwrap()
            .clone()
    };
    assert_eq!(post(&images_job["post_id"]).media_ids.len(), 2);
    let video_post = post(&video_job["post_id"]);
    assert_eq!(video_post.media_ids.len(), 1);
    let uploaded = state
        .media
        .iter()
        .find(|m| m.id == video_post.media_ids[0])
        .unwrap();
    assert_eq!(uploaded.total_bytes, 9 * 1024 * 1024);
    assert_eq!(uploaded.segments.len(), 3);
    assert!(state
        .posts
        .iter()
        .any(|p| p.text == "tabs or spaces?" && p.poll.is_some()));

    // The thread is a reply chain: each part answers the previous one and fits in 280.
    let ids: Vec<&str> = thread_job["post_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(ids.len() >= 3, "{ids:?}");
    for (i, id) in ids.iter().enumerate() {
        let part = state.posts.iter().find(|p| p.id == *id).unwrap();
        assert!(part.text.chars().count() <= 280);
        let parent = if i == 0 {
            None
        } else {
            Some(ids[i - 1].to_string())
        };
        assert_eq!(part.in_reply_to_tweet_id, parent);
    }
    let rebuilt: Vec<String> = ids
        .iter()
        .map(|id| {
            state
                .posts
                .iter()
                .find(|p| p.id == *id)
                .unwrap()
                .text
                .clone()
        })
        .collect();
    assert_eq!(rebuilt.join(" "), long_text);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_media_fails_the_job_with_an_actionable_message() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_x("alice", "alice_x").await;
    app.fault(Twin::X, "media_status", json!({"kind": "reject_media"}), 1)
        .await;
    app.fault(
        Twin::X,
        "media_finalize",
        json!({"kind": "reject_media"}),
        1,
    )
    .await;
    let url = format!("{}/media/bad.mp4?bytes=100000", app.sandbox.base_url());
    let job = app
        .publish("alice", &connection, json!({"text": "broken clip", "media": [{"url": url, "kind": "video", "mime_type": "video/mp4"}]}))
        .await;
    let failed = app.wait_for_status("alice", &job, "failed", SOON).await;
    assert_eq!(failed["last_error"]["class"], "permanent");
    assert!(!failed["last_error"]["message"].as_str().unwrap().is_empty());
    assert_eq!(failed["attempts"], 1);
    assert!(app
        .sandbox
        .x_state()
        .posts
        .iter()
        .all(|p| p.text != "broken clip"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_urls_reaching_internal_addresses_are_refused_before_anything_is_stored() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_x("alice", "alice_x").await;
    for url in [
        "http://169.254.169.254/latest/meta-data/iam",
        "http://localhost:5432/a.png",
        "http://[::1]/a.png",
        "http://10.0.0.7/a.png",
    ] {
        let response = app
            .post(
                "alice",
                "/publish",
                json!({"connection_ids": [connection], "content": {"text": "internal", "media": [{"url": url, "kind": "image", "mime_type": "image/png"}]}}),
            )
            .await;
        assert_eq!(response.status(), 422, "{url}");
        let problem: serde_json::Value = response.json().await.unwrap();
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("media-url-refused"),
            "{problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains("public"),
            "{problem}"
        );
    }
    let jobs = app.get("alice", "/jobs").await;
    let jobs: serde_json::Value = jobs.json().await.unwrap();
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_over_the_platform_limits_is_refused_when_the_job_is_accepted() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_x("alice", "alice_x").await;
    let video = |query: &str| json!({"text": "clip", "media": [{"url": format!("{}/media/long.mp4?bytes=300000&{query}", app.sandbox.base_url()), "kind": "video", "mime_type": "video/mp4"}]});
    // X takes 0.5-140 s: Herald reads the MP4 header and refuses a 200 s video at once.
    let response = app
        .post(
            "alice",
            "/publish",
            json!({"connection_ids": [connection], "content": video("duration_ms=200000")}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let problem: serde_json::Value = response.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("0.5-140 seconds") && detail.contains("200.0 s"),
        "{detail}"
    );
    // A probe sent by the client is ignored: Herald's own reading decides.
    let mut forged = video("duration_ms=200000");
    forged["media"][0]["probe"] =
        json!({"duration_ms": 1000, "width": 10, "height": 10, "bytes": 1});
    let response = app
        .post(
            "alice",
            "/publish",
            json!({"connection_ids": [connection], "content": forged}),
        )
        .await;
    assert_eq!(response.status(), 422);
    // Within the limits it is accepted and published.
    let job = app
        .publish(
            "alice",
            &connection,
            video("duration_ms=30000&width=720&height=1280"),
        )
        .await;
    app.wait_for_status("alice", &job, "published", SOON).await;
    app.stop().await;
}

/// The problem `type`'s last segment and the `detail` of a refused request.
async fn refusal(response: reqwest::Response, status: u16) -> (String, String) {
    assert_eq!(response.status(), status);
    let problem: serde_json::Value = response.json().await.unwrap();
    let kind = problem["type"].as_str().unwrap_or_default();
    (
        kind.rsplit('/').next().unwrap_or_default().to_string(),
        problem["detail"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_give_each_target_its_own_content_and_bad_ones_change_nothing() {
    let app = spawn_app(Backend::Embedded).await;
    let x = app.connect_x("alice", "alice_x").await;
    let threads = app.connect_threads("alice", "alice_th").await;
    let poll = json!({"options": ["tabs", "spaces"], "duration_minutes": 60});

    // Threads takes no polls: without an override nothing is accepted, for any target.
    let (kind, detail) = refusal(
        app.post(
            "alice",
            "/publish",
            json!({"connection_ids": [x, threads], "content": {"text": "tabs or spaces?", "poll": poll}}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(kind, "content-invalid");
    assert!(
        detail.contains(&threads) && detail.contains("threads"),
        "{detail}"
    );

    // An override naming no target is refused.
    let (kind, detail) = refusal(
        app.post(
            "alice",
            "/publish",
            json!({"connection_ids": [x], "content": {"text": "hi"}, "overrides": {"tiktok": {"text": "hey"}}}),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(kind, "validation-error");
    assert!(detail.contains("overrides.tiktok"), "{detail}");

    // An unknown override field is refused too.
    let response = app
        .post(
            "alice",
            "/publish",
            json!({"connection_ids": [x], "content": {"text": "hi"}, "overrides": {"x": {"options": {}}}}),
        )
        .await;
    assert_eq!(response.status(), 400, "{:?}", response.text().await);
    let jobs: serde_json::Value = app.get("alice", "/jobs").await.json().await.unwrap();
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");

    // The poll stays on X; Threads gets its own text without it (platform key), and a
    // connection key applies over the platform's.
    let response = app
        .post(
            "alice",
            "/publish",
            json!({
                "connection_ids": [x, threads],
                "content": {"text": "tabs or spaces?", "poll": poll},
                "overrides": {
                    "threads": {"poll": null, "text": "replaced again below"},
                    threads.clone(): {"text": "Tabs or spaces? Reply below"}
                }
            }),
        )
        .await;
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let accepted: serde_json::Value = response.json().await.unwrap();
    for job in accepted["jobs"].as_array().unwrap() {
        app.wait_for_status("alice", job["job_id"].as_str().unwrap(), "published", SOON)
            .await;
    }
    assert_eq!(app.posts_with_text("tabs or spaces?"), 1);
    let threads_posts: Vec<_> = app
        .sandbox
        .threads_state()
        .posts
        .into_iter()
        .map(|p| p.text)
        .collect();
    assert_eq!(
        threads_posts,
        vec!["Tabs or spaces? Reply below".to_string()]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_adjusts_a_platforms_rules_from_its_configuration() {
    let rules = std::env::temp_dir().join(format!("herald-rules-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&rules, r#"{"x": {"max_text": 100}}"#).unwrap();
    let text = (0..30)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");

    // The documented 280 weighted characters: published.
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_x("alice", "alice_x").await;
    let job = app
        .publish("alice", &connection, json!({"text": text}))
        .await;
    app.wait_for_status("alice", &job, "published", SOON).await;
    app.stop().await;

    // A deployment that allows 100: refused at once, naming the configured limit.
    let app = support::spawn_app_configured(
        Backend::Embedded,
        herald_sandbox::SandboxConfig::default(),
        herald_api::config::Role::All,
        |config| config.content_rules = Some(rules.clone()),
    )
    .await;
    let connection = app.connect_x("alice", "alice_x").await;
    let (kind, detail) = refusal(
        app.post(
            "alice",
            "/publish",
            json!({"connection_ids": [connection], "content": {"text": text}}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(kind, "content-invalid");
    assert!(detail.contains("allows 100 characters"), "{detail}");
    app.stop().await;
    std::fs::remove_file(rules).unwrap();
}

/// A loopback server that counts the connections made to it and answers each with a 404.
async fn counting_media_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        }
    });
    (address, count)
}

/// Thousands of media URLs in one body (3,000 fit in the 256 KiB limit) are refused from the counts
/// alone: no URL is resolved or fetched, so one request cannot make Herald do thousands of
/// look-ups and probes. The media server would otherwise see them: its host is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_media_urls_are_refused_before_any_is_fetched() {
    let (media_server, requests) = counting_media_server().await;
    let app = support::spawn_app_configured(
        Backend::Embedded,
        herald_sandbox::SandboxConfig::default(),
        herald_api::config::Role::All,
        |config| {
            config.media_allowed_hosts = format!("{},{media_server}", config.media_allowed_hosts)
        },
    )
    .await;
    let x = app.connect_x("alice", "alice_x").await;
    let media: Vec<_> = (0..3000)
        .map(|i| json!({"url": format!("http://{media_server}/{i}.mp4"), "kind": "video", "mime_type": "video/mp4"}))
        .collect();
    let started = std::time::Instant::now();
    let response = app
        .post(
            "alice",
            "/publish",
            json!({"connection_ids": [x], "content": {"text": "many", "media": media}}),
        )
        .await;
    let (kind, detail) = refusal(response, 422).await;
    eprintln!("refused in {:?}: {detail}", started.elapsed());
    assert_eq!(kind, "content-invalid", "{detail}");
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 0);

    // The host is allowed: a request within the counts has its one video probed (the server
    // answers 404, so it is unreadable), and the server sees that.
    let response = app
        .post(
            "alice",
            "/publish",
            json!({"connection_ids": [x], "content": {"text": "one", "media": [media[0]]}}),
        )
        .await;
    let (kind, _) = refusal(response, 422).await;
    assert_eq!(kind, "media-unreadable");
    assert!(requests.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let jobs: serde_json::Value = app.get("alice", "/jobs").await.json().await.unwrap();
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
    app.stop().await;
}
