//! LinkedIn end to end: connect (the member and the organisations they post for) → publish →
//! sandbox LinkedIn → projections, for every content type (text, article, image, multi-image,
//! video, document, poll); the documented refusals; a sunset
//! API version; a login without refresh tokens; and the daily limit shared by two worker
//! processes on Postgres and Kafka.
mod support;

use std::time::Duration;

use herald_api::config::Role;
use herald_sandbox::{LinkedInPostSnapshot, SandboxConfig};
use serde_json::{json, Value};
use support::worker::SplitApp;
use support::Twin;
use support::{spawn_app, spawn_app_configured, spawn_app_with, Backend, TestApp};

const SOON: Duration = Duration::from_secs(20);
/// How long a restarted worker may take to join the Kafka consumer groups.
const PATIENCE: Duration = Duration::from_secs(180);

fn posts_with_text(app: &TestApp, text: &str) -> Vec<LinkedInPostSnapshot> {
    app.sandbox
        .linkedin_state()
        .posts
        .into_iter()
        .filter(|p| p.text == text)
        .collect()
}

fn post_calls(app: &TestApp) -> Vec<Option<u16>> {
    app.sandbox
        .linkedin_state()
        .requests
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/rest/posts"))
        .map(|r| r.status)
        .collect()
}

fn sandbox_config() -> SandboxConfig {
    let mut config = SandboxConfig::default();
    config.linkedin.video_part_size = 100_000;
    config.linkedin.video_processing_delay = Duration::from_millis(300);
    config
}

fn media(app: &TestApp, name: &str, bytes: usize, kind: &str, mime: &str) -> Value {
    json!({
        "url": format!("{}/media/{name}?bytes={bytes}", app.sandbox.base_url()),
        "kind": kind,
        "mime_type": mime,
    })
}

/// Publishes and waits until published; returns the job and the one post on the twin.
async fn publish_once(
    app: &TestApp,
    connection: &str,
    content: Value,
    shown_text: &str,
) -> (Value, LinkedInPostSnapshot) {
    let job_id = app.publish("alice", connection, content).await;
    let job = app
        .wait_for_status("alice", &job_id, "published", SOON)
        .await;
    let mut posts = posts_with_text(app, shown_text);
    assert_eq!(
        posts.len(),
        1,
        "exactly one copy of {shown_text:?} on LinkedIn"
    );
    let post = posts.remove(0);
    assert_eq!(job["post_id"], post.urn.as_str());
    assert_eq!(
        job["post_url"],
        format!(
            "{}/feed/update/{}/",
            app.sandbox.linkedin_base_url(),
            post.urn
        )
    );
    (job, post)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_and_organisation_posts_of_every_kind_are_published_once() {
    let app = spawn_app_with(Backend::Embedded, sandbox_config(), Role::All).await;
    let connections = app.connect_linkedin("alice", "herald_sandbox").await;
    assert_eq!(connections.len(), 3, "the member and two organisations");
    let views = support::eventually("three connection views", SOON, || async {
        let views = app.connections("alice").await;
        (views.len() == 3).then_some(views)
    })
    .await;
    let mut accounts: Vec<&str> = views
        .iter()
        .map(|c| c["account_id"].as_str().unwrap())
        .collect();
    accounts.sort();
    assert_eq!(
        &accounts[..2],
        [
            "urn:li:organization:10000001",
            "urn:li:organization:10000003"
        ]
    );
    assert!(accounts[2].starts_with("urn:li:person:"));
    assert!(views.iter().all(|c| c["can_refresh"] == true));
    let member = &connections[0];

    // Text with Little Text Format's reserved characters shows verbatim.
    let words = "Shipping v2 (finally) [beta] with *love* #rust";
    let (_, post) = publish_once(&app, member, json!({"text": words}), words).await;
    assert!(post.urn.starts_with("urn:li:share:"));
    assert!(!post.truncated);

    // An article share with a title.
    let (_, article) = publish_once(
        &app,
        member,
        json!({"text": "Our notes", "link": "https://example.com/notes", "title": "Release notes"}),
        "Our notes",
    )
    .await;
    assert_eq!(article.content_kind, "article");
    assert_eq!(
        article.article_url.as_deref(),
        Some("https://example.com/notes")
    );
    assert_eq!(article.content_title.as_deref(), Some("Release notes"));

    // One image, then several.
    let (_, image) = publish_once(
        &app,
        member,
        json!({"text": "one picture", "media": [media(&app, "a.png", 4000, "image", "image/png")]}),
        "one picture",
    )
    .await;
    assert_eq!(image.content_kind, "image");
    let (_, album) = publish_once(
        &app,
        member,
        json!({"text": "three pictures", "media": [
            media(&app, "a.png", 4000, "image", "image/png"),
            media(&app, "b.jpg", 3000, "image", "image/jpeg"),
            media(&app, "c.png", 2000, "image", "image/png"),
        ]}),
        "three pictures",
    )
    .await;
    assert_eq!(album.content_kind, "multi_image");
    assert_eq!(album.media.len(), 3);

    // A video in three byte ranges, processed before it is posted.
    let (job, clip) = publish_once(
        &app,
        member,
        json!({"text": "a clip", "title": "Clip", "media": [media(&app, "clip.mp4", 250_000, "video", "video/mp4")]}),
        "a clip",
    )
    .await;
    assert!(clip.urn.starts_with("urn:li:ugcPost:"));
    assert_eq!(clip.content_kind, "video");
    let video = app.sandbox.linkedin_state().videos.pop().unwrap();
    assert_eq!((video.parts, video.parts_uploaded), (3, 3));
    let history = app.history("alice", job["job_id"].as_str().unwrap()).await;
    assert!(
        history.contains(&"UploadSessionOpened".to_string()),
        "{history:?}"
    );

    // A PDF shown as a document under its title; refused at once beside other media.
    let deck = media(&app, "deck.pdf", 6000, "document", "application/pdf");
    let (_, document) = publish_once(
        &app,
        member,
        json!({"text": "the deck", "title": "Roadmap 2027", "media": [deck]}),
        "the deck",
    )
    .await;
    assert_eq!(document.content_kind, "document");
    assert_eq!(document.content_title.as_deref(), Some("Roadmap 2027"));
    assert!(document.media[0].starts_with("urn:li:document:"));
    let mixed = app
        .post(
            "alice",
            "/publish",
            json!({"connection_ids": [member], "content": {"text": "deck and photo", "media": [
                media(&app, "deck.pdf", 6000, "document", "application/pdf"),
                media(&app, "a.png", 4000, "image", "image/png"),
            ]}}),
        )
        .await;
    assert_eq!(mixed.status(), 422);
    let problem: Value = mixed.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("a document is posted on its own")),
        "{problem}"
    );

    // A poll for seven days, its question apart from the text; an hour-long one is refused
    // at once (LinkedIn's polls run one, three, seven or fourteen days).
    let (_, poll) = publish_once(
        &app,
        member,
        json!({"text": "Tell us", "poll": {"question": "What should we build next?",
            "options": ["Docs", "Tests"], "duration_minutes": 10_080}}),
        "Tell us",
    )
    .await;
    assert_eq!(poll.content_kind, "poll");
    assert_eq!(
        poll.content_title.as_deref(),
        Some("What should we build next?")
    );
    let hour_long = app
        .post(
            "alice",
            "/publish",
            json!({"connection_ids": [member], "content": {"text": "quick vote",
                "poll": {"options": ["a", "b"], "duration_minutes": 60}}}),
        )
        .await;
    assert_eq!(hour_long.status(), 422);
    let problem: Value = hour_long.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("lasts one of 1440, 4320, 10080, 20160 minutes")),
        "{problem}"
    );

    // The organisation's connection posts as the organisation.
    let org = views
        .iter()
        .find(|v| v["account_id"] == "urn:li:organization:10000001")
        .map(|v| v["connection_id"].as_str().unwrap().to_string())
        .unwrap();
    let (_, page_post) = publish_once(
        &app,
        &org,
        json!({"text": "news from the page"}),
        "news from the page",
    )
    .await;
    assert_eq!(page_post.author, "urn:li:organization:10000001");
    assert!(page_post.created_by.starts_with("urn:li:person:"));
    assert_eq!(app.sandbox.linkedin_state().posts.len(), 8);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_kafka_publish_linkedin_text_image_and_document() {
    let app = spawn_app(Backend::PostgresKafka).await;
    let connections = app.connect_linkedin("alice", "li_alice").await;
    assert_eq!(connections.len(), 1, "li_alice manages no organisation");
    publish_once(
        &app,
        &connections[0],
        json!({"text": "LinkedIn via Kafka"}),
        "LinkedIn via Kafka",
    )
    .await;
    let (_, image) = publish_once(
        &app,
        &connections[0],
        json!({"text": "a picture via Kafka", "media": [media(&app, "k.png", 5000, "image", "image/png")]}),
        "a picture via Kafka",
    )
    .await;
    assert_eq!(image.content_kind, "image");
    let (_, document) = publish_once(
        &app,
        &connections[0],
        json!({"text": "a deck via Kafka", "media": [media(&app, "plan.pptx", 7000, "document",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation")]}),
        "a deck via Kafka",
    )
    .await;
    assert_eq!(document.content_kind, "document");
    assert_eq!(document.content_title.as_deref(), Some("plan.pptx"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_give_the_documented_outcomes() {
    let app = spawn_app(Backend::Embedded).await;
    let member = app.connect_linkedin("alice", "li_bob").await.remove(0);

    // 5xx: retried with backoff, then published once.
    app.fault(
        Twin::Linkedin,
        "create_post",
        json!({"kind": "server_error", "status": 503}),
        1,
    )
    .await;
    let (job, _) = publish_once(&app, &member, json!({"text": "after a 503"}), "after a 503").await;
    let history = app.history("alice", job["job_id"].as_str().unwrap()).await;
    assert!(
        history.contains(&"AttemptFailed".to_string()),
        "{history:?}"
    );

    // An expired token: refreshed, then published.
    app.fault(
        Twin::Linkedin,
        "create_post",
        json!({"kind": "expire_token"}),
        1,
    )
    .await;
    publish_once(
        &app,
        &member,
        json!({"text": "after a refresh"}),
        "after a refresh",
    )
    .await;
    let issued = app.sandbox.linkedin_state().tokens_issued;
    assert_eq!(issued.len(), 2, "one refresh");
    assert_eq!(
        issued[1].refresh_token, issued[0].refresh_token,
        "not rotated"
    );

    // Timed out after LinkedIn created the post: reconciled, not sent again.
    app.fault(
        Twin::Linkedin,
        "create_post",
        json!({"kind": "timeout_after_success", "secs": 3}),
        1,
    )
    .await;
    let (job, _) = publish_once(&app, &member, json!({"text": "slow answer"}), "slow answer").await;
    let history = app.history("alice", job["job_id"].as_str().unwrap()).await;
    assert!(
        history.contains(&"OutcomeUnknown".to_string()),
        "{history:?}"
    );
    assert!(history.contains(&"Reconciled".to_string()), "{history:?}");

    // Refused content fails with LinkedIn's reason; a duplicate says to change the text.
    app.fault(Twin::Linkedin,
        "create_post",
        json!({"kind": "content_rejected", "detail": "This post violates the Professional Community Policies"}),
        1,
    )
    .await;
    let job_id = app
        .publish("alice", &member, json!({"text": "refused"}))
        .await;
    let job = app.wait_for_status("alice", &job_id, "failed", SOON).await;
    assert_eq!(job["last_error"]["class"], "permanent", "{job}");
    assert!(job["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("Professional Community Policies"));
    let job_id = app
        .publish("alice", &member, json!({"text": "after a 503"}))
        .await;
    let job = app.wait_for_status("alice", &job_id, "failed", SOON).await;
    assert!(
        job["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate"),
        "{job}"
    );
    assert_eq!(posts_with_text(&app, "after a 503").len(), 1);

    // A 429 without a daily limit waits for the configured back-off.
    app.fault(
        Twin::Linkedin,
        "create_post",
        json!({"kind": "rate_limited", "retry_after_secs": 1}),
        1,
    )
    .await;
    let job_id = app
        .publish("alice", &member, json!({"text": "throttled"}))
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "retry_scheduled", SOON)
        .await;
    assert_eq!(job["last_error"]["class"], "rate_limited", "{job}");
    let calls = post_calls(&app);
    assert_eq!(calls.last(), Some(&Some(429)));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_refresh_tokens_an_expired_login_asks_for_reconnection() {
    let mut sandbox = SandboxConfig::default();
    sandbox.linkedin.refresh_tokens = false;
    let app = spawn_app_with(Backend::Embedded, sandbox, Role::All).await;
    let member = app.connect_linkedin("alice", "li_carol").await.remove(0);
    let view = support::eventually("the connection view", SOON, || async {
        app.connections("alice").await.pop()
    })
    .await;
    assert_eq!(view["can_refresh"], false);
    let expires = support::time(view["token_expires_at"].as_str().unwrap());
    assert!(expires > chrono::Utc::now() + chrono::Duration::days(59));

    app.fault(
        Twin::Linkedin,
        "create_post",
        json!({"kind": "expire_token"}),
        1,
    )
    .await;
    let job_id = app
        .publish("alice", &member, json!({"text": "too late"}))
        .await;
    let job = app.wait_for_status("alice", &job_id, "failed", SOON).await;
    assert_eq!(
        job["last_error"]["class"], "reauthorization_required",
        "{job}"
    );
    let view = support::eventually("the connection is marked expired", SOON, || async {
        let view = app.connections("alice").await.remove(0);
        (view["status"] == "expired").then_some(view)
    })
    .await;
    let reason = view["status_reason"].as_str().unwrap();
    assert!(reason.contains("connect the account again"), "{reason}");
    assert!(posts_with_text(&app, "too late").is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sunset_api_version_fails_with_the_setting_to_change() {
    let app = spawn_app_configured(
        Backend::Embedded,
        SandboxConfig::default(),
        Role::All,
        |c| {
            c.platforms.set("LINKEDIN_VERSION", "202301");
        },
    )
    .await;
    let member = app.connect_linkedin("alice", "li_dave").await.remove(0);
    let job_id = app
        .publish("alice", &member, json!({"text": "old API"}))
        .await;
    let job = app.wait_for_status("alice", &job_id, "failed", SOON).await;
    assert_eq!(job["last_error"]["code"], "nonexistent_version", "{job}");
    assert!(job["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("LINKEDIN_VERSION"));
    app.stop().await;
}

/// LinkedIn's daily limits reset at midnight UTC and its 429 carries no headers. One worker
/// process meets the limit and stops; two other worker processes then run at once and must not
/// call LinkedIn again today — they learn of the limit only through the shared gate in Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_limit_holds_across_worker_processes() {
    let mut sandbox = SandboxConfig::default();
    sandbox.linkedin.posts_per_day = 2;
    let mut split = SplitApp::start_with(Backend::PostgresKafka, sandbox).await;
    let config = split.worker_config();
    let first = split.spawn_worker(&config, "info");
    let app = &split.app;
    let member = app.connect_linkedin("alice", "li_erin").await.remove(0);
    for text in ["daily one", "daily two"] {
        publish_once(app, &member, json!({"text": text}), text).await;
    }
    // The third post meets the limit: its retry is due at midnight UTC.
    let job_id = app
        .publish("alice", &member, json!({"text": "daily three"}))
        .await;
    let job = app
        .wait_for_status("alice", &job_id, "retry_scheduled", SOON)
        .await;
    let midnight = (chrono::Utc::now().date_naive() + chrono::Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(
        support::time(job["retry_at"].as_str().unwrap()),
        midnight,
        "{job}"
    );
    assert!(first.log().contains("too_many_requests"));
    first.kill();

    let workers = split.spawn_workers(2, "info", |_| {}).await;
    let app = &split.app;
    let mut later = Vec::new();
    for i in 0..4 {
        later.push(
            app.publish("alice", &member, json!({"text": format!("later {i}")}))
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
        assert_eq!(support::time(job["retry_at"].as_str().unwrap()), midnight);
    }
    assert!(workers.any_logged("rate_limit_exhausted"));
    let calls = post_calls(app);
    assert_eq!(
        calls.len(),
        3,
        "two posts and one 429, nothing more: {calls:?}"
    );
    drop(workers);
    split.stop().await;
}

fn revoke_calls(app: &TestApp) -> usize {
    app.sandbox
        .linkedin_state()
        .requests
        .iter()
        .filter(|r| r.path.ends_with("/oauth/v2/revoke"))
        .count()
}

async fn disconnect(app: &TestApp, connection: &str) {
    let path = format!("/linkedin/disconnect?connection_id={connection}");
    assert_eq!(app.delete("alice", &path).await.status(), 200);
}

async fn vault_holds(app: &TestApp, connection: &str) -> bool {
    let id = herald_domain::ConnectionId::parse(connection).unwrap();
    app.herald().vault.load(&id).await.unwrap().is_some()
}

/// A member and their organisations share one login: disconnecting an organisation only
/// forgets its tokens, and LinkedIn is asked to revoke the login when its last connection goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_login_is_revoked_only_with_its_last_connection() {
    let app = spawn_app_with(Backend::Embedded, sandbox_config(), Role::All).await;
    let connections = app.connect_linkedin("alice", "herald_sandbox").await;
    let [member, first_org, second_org] = connections.as_slice() else {
        panic!("the member and two organisations: {connections:?}");
    };
    support::eventually("three connection views", SOON, || async {
        (app.connections("alice").await.len() == 3).then_some(())
    })
    .await;
    disconnect(&app, first_org).await;
    assert_eq!(revoke_calls(&app), 0, "the member still uses the login");
    assert!(
        !vault_holds(&app, first_org).await,
        "its own tokens are gone"
    );
    publish_once(
        &app,
        member,
        json!({"text": "member still here"}),
        "member still here",
    )
    .await;
    publish_once(
        &app,
        second_org,
        json!({"text": "org still here"}),
        "org still here",
    )
    .await;

    disconnect(&app, member).await;
    assert_eq!(
        revoke_calls(&app),
        0,
        "an organisation still uses the login"
    );
    publish_once(&app, second_org, json!({"text": "org alone"}), "org alone").await;

    disconnect(&app, second_org).await;
    assert_eq!(
        revoke_calls(&app),
        1,
        "the last connection revokes the login"
    );
    assert_eq!(
        app.sandbox
            .linkedin_state()
            .requests
            .iter()
            .rev()
            .find(|r| r.path.ends_with("/oauth/v2/revoke"))
            .and_then(|r| r.status),
        Some(200)
    );
    app.stop().await;
}

/// LinkedIn ends a login 365 days after it was first authorized (here: seconds). The
/// connection shows when, and once that has passed the refresher marks it expired with the
/// reason and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_past_its_end_is_expired_with_what_to_do() {
    let mut sandbox = sandbox_config();
    sandbox.linkedin.refresh_token_lifetime = Duration::from_secs(4);
    let app = spawn_app_configured(Backend::Embedded, sandbox, Role::All, |config| {
        config.refresh_scan_secs = 1;
    })
    .await;
    let member = app.connect_linkedin("alice", "li_year").await.remove(0);
    let view = support::eventually("the connection view", SOON, || async {
        app.connections("alice").await.pop()
    })
    .await;
    assert_eq!(view["status"], "active");
    let ends = support::time(
        view["login_expires_at"]
            .as_str()
            .expect("the login's end is shown"),
    );
    let left = ends - chrono::Utc::now();
    assert!(
        left <= chrono::Duration::seconds(5) && left > chrono::Duration::zero(),
        "{left}"
    );

    let view = support::eventually("the connection is marked expired", SOON, || async {
        let view = app.connections("alice").await.remove(0);
        (view["status"] == "expired").then_some(view)
    })
    .await;
    assert!(support::time(view["updated_at"].as_str().unwrap()) >= ends);
    let reason = view["status_reason"].as_str().unwrap();
    assert!(reason.contains("LinkedIn login ended"), "{reason}");
    assert!(reason.contains("connect the account again"), "{reason}");
    let job = app
        .post(
            "alice",
            "/publish",
            json!({"connection_ids": [member], "content": {"text": "too late"}}),
        )
        .await;
    assert_eq!(job.status(), 409, "an expired connection takes no jobs");
    app.stop().await;
}

/// A vault entry an older Herald wrote (`"{author URN} {token}"`) still publishes as its
/// organisation; the next refresh stores the plain token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_author_prefixed_vault_entry_still_publishes() {
    let app = spawn_app_with(Backend::Embedded, sandbox_config(), Role::All).await;
    let org = app
        .connect_linkedin("alice", "herald_sandbox")
        .await
        .remove(1);
    let id = herald_domain::ConnectionId::parse(&org).unwrap();
    let vault = &app.herald().vault;
    let plain = vault.load(&id).await.unwrap().unwrap();
    let urn = "urn:li:organization:10000001";
    let old_form = herald_infrastructure::platforms::TokenGrant {
        access_token: herald_infrastructure::secret::Secret::new(format!(
            "{urn} {}",
            plain.access_token.expose()
        )),
        refresh_token: plain
            .refresh_token
            .as_ref()
            .map(|r| herald_infrastructure::secret::Secret::new(format!("{urn} {}", r.expose()))),
        ..plain.clone()
    };
    vault.store(&id, &old_form).await.unwrap();

    let (_, post) = publish_once(
        &app,
        &org,
        json!({"text": "from an old entry"}),
        "from an old entry",
    )
    .await;
    assert_eq!(post.author, urn);

    app.herald()
        .tokens
        .refresh(&id, herald_infrastructure::tokens::RefreshWhen::Always)
        .await
        .unwrap();
    let stored = vault.load(&id).await.unwrap().unwrap();
    assert!(!stored.access_token.expose().starts_with("urn:li:"));
    assert_eq!(stored.refresh_token, plain.refresh_token);
    publish_once(
        &app,
        &org,
        json!({"text": "after the refresh"}),
        "after the refresh",
    )
    .await;
    app.stop().await;
}
