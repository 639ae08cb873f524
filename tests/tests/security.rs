//! Security and fairness at the API's edge.
//!
//! Account linking: the OAuth callback is opened by whoever holds the authorization URL, so it
//! connects nothing. A login authorized there is attached only when the Herald user who started
//! the flow claims its one-time code: a flow Mallory starts and sends to someone else can never
//! give Mallory that person's accounts (the account-linking CSRF of issue 15).
//!
//! Request limits: each user has a budget of reads and of commands; one user's flood is answered
//! 429 while another user's requests go on.
mod support;

use std::time::Duration;

use herald_domain::{ConnectionId, Platform, UserId};
use serde_json::{json, Value};
use support::{eventually, spawn_app, spawn_app_configured, Backend, TestApp};

/// Every platform, with a sandbox login of the person whose browser opens the link.
const PLATFORMS: [(&str, &str); 8] = [
    ("x", "victim_x"),
    ("youtube", "victim_yt"),
    ("tiktok", "victim_tt"),
    ("instagram", "meta_victim"),
    ("facebook_pages", "meta_victim"),
    ("linkedin", "li_victim"),
    ("threads", "victim_th"),
    ("reddit", "reddit_victim"),
];

/// `user` starts connecting `platform`; the authorization URL, logged in at the platform as
/// `sandbox_user`.
async fn start(app: &TestApp, user: &str, platform: &str, sandbox_user: &str) -> String {
    let response = app
        .post(user, &format!("/{platform}/connect"), json!({}))
        .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let started: Value = response.json().await.unwrap();
    format!(
        "{}&sandbox_user={sandbox_user}",
        started["authorization_url"].as_str().unwrap()
    )
}

/// A browser opens `url`: the platform approves and sends it to Herald's callback.
async fn open_in_browser(app: &TestApp, url: &str) -> Value {
    let response = app.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let authorized: Value = response.json().await.unwrap();
    assert_eq!(authorized["status"], "authorized", "{authorized}");
    authorized
}

async fn connections(app: &TestApp, user: &str) -> Vec<Value> {
    let body: Value = app.get(user, "/connections").await.json().await.unwrap();
    body["connections"].as_array().unwrap().clone()
}

/// Whether any of the `authorized` accounts became a connection of `user`, read from the event
/// store and the vault themselves (an empty connection list could only mean a projection lags).
async fn attached_to(app: &TestApp, user: &str, platform: &str, authorized: &Value) -> bool {
    let user = UserId::parse(user).unwrap();
    let platform: Platform = platform.parse().unwrap();
    for account in authorized["accounts"].as_array().unwrap() {
        let id =
            ConnectionId::for_account(&user, platform, account["account_id"].as_str().unwrap());
        let connection = app
            .herald()
            .connections
            .load(&id.to_string())
            .await
            .unwrap();
        let stored = app.herald().vault.load(&id).await.unwrap();
        if connection.user_id.is_some() || stored.is_some() {
            return true;
        }
    }
    false
}

async fn problem_type(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["type"].as_str().unwrap_or_default().to_owned())
}

async fn a_flow_started_by_one_user_connects_nobody_when_another_completes_it(backend: Backend) {
    let app = spawn_app(backend).await;
    for (platform, sandbox_user) in PLATFORMS {
        let url = start(&app, "mallory", platform, sandbox_user).await;
        // Mallory sends the link to someone, who approves in their own browser.
        let authorized = open_in_browser(&app, &url).await;
        assert!(
            !attached_to(&app, "mallory", platform, &authorized).await,
            "{platform}: the callback attached the login to the user who started the flow"
        );
        // That person's client app, signed in as them, claims the code: not their flow.
        let claimed = app.complete_connect("victim", platform, &authorized).await;
        assert_eq!(
            problem_type(claimed).await,
            (403, "connect-not-yours".to_owned()),
            "{platform}"
        );
        // The refused claim ended the code: nobody can claim it after that.
        let again = app.complete_connect("mallory", platform, &authorized).await;
        assert_eq!(
            problem_type(again).await,
            (400, "connect-code-invalid".to_owned()),
            "{platform}"
        );
        for user in ["mallory", "victim"] {
            assert!(
                !attached_to(&app, user, platform, &authorized).await,
                "{platform}: attached to {user}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_another_party_completes_connects_nobody_on_every_platform_embedded() {
    a_flow_started_by_one_user_connects_nobody_when_another_completes_it(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_another_party_completes_connects_nobody_on_every_platform_postgres_kafka() {
    a_flow_started_by_one_user_connects_nobody_when_another_completes_it(Backend::PostgresKafka)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_who_started_the_flow_connects_every_platform_once_per_code() {
    let app = spawn_app(Backend::Embedded).await;
    for (platform, sandbox_user) in PLATFORMS {
        let url = start(&app, "alice", platform, sandbox_user).await;
        let authorized = open_in_browser(&app, &url).await;
        let accounts = authorized["accounts"].as_array().unwrap().clone();
        assert!(!accounts.is_empty(), "{platform}: {authorized}");
        // What the browser is shown names the accounts and carries no token.
        let shown = authorized.to_string();
        assert!(!shown.contains("token"), "{platform}: {shown}");

        let claimed = app.complete_connect("alice", platform, &authorized).await;
        assert_eq!(claimed.status(), 200, "{platform}");
        let body: Value = claimed.json().await.unwrap();
        let connected = body["connections"].as_array().unwrap();
        assert_eq!(connected.len(), accounts.len(), "{platform}: {body}");
        for (connection, account) in connected.iter().zip(&accounts) {
            assert_eq!(connection["account_id"], account["account_id"]);
            assert_eq!(connection["status"], "active");
        }
        let again = app.complete_connect("alice", platform, &authorized).await;
        assert_eq!(
            problem_type(again).await,
            (400, "connect-code-invalid".to_owned()),
            "{platform}: a code connects once"
        );
    }
    eventually(
        "every platform is listed",
        Duration::from_secs(30),
        || async {
            let listed = connections(&app, "alice").await;
            PLATFORMS
                .iter()
                .all(|(platform, _)| listed.iter().any(|c| c["platform"] == *platform))
                .then_some(())
        },
    )
    .await;
    app.stop().await;
}

/// With return URLs configured, the callback sends the browser to the client application with
/// the code (and only the code), and a connect may only name one of those URLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_sends_the_browser_to_the_client_apps_return_url() {
    let app = spawn_app_configured(
        Backend::Embedded,
        herald_sandbox::SandboxConfig::default(),
        herald_api::config::Role::All,
        |config| {
            config.oauth_return_urls =
                "https://app.example/herald/return, https://admin.example/linked".into();
        },
    )
    .await;
    let elsewhere = app
        .post(
            "alice",
            "/x/connect",
            json!({"return_url": "https://evil.example/collect"}),
        )
        .await;
    assert_eq!(
        problem_type(elsewhere).await,
        (400, "validation-error".to_owned())
    );

    let response = app
        .post(
            "alice",
            "/x/connect",
            json!({"return_url": "https://admin.example/linked"}),
        )
        .await;
    let started: Value = response.json().await.unwrap();
    assert_eq!(started["return_url"], "https://admin.example/linked");
    let url = format!(
        "{}&sandbox_user=alice_x",
        started["authorization_url"].as_str().unwrap()
    );
    // Step by step, as a browser would: the platform, then Herald's callback, then the app.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let to_callback = browser.get(&url).send().await.unwrap();
    let callback = to_callback.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let to_app = browser.get(&callback).send().await.unwrap();
    assert_eq!(to_app.status(), 303);
    let location = url::Url::parse(to_app.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(
        location.origin().ascii_serialization(),
        "https://admin.example"
    );
    assert_eq!(location.path(), "/linked");
    let query: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    let mut names: Vec<&str> = query.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["connect_code", "platform"], "{location}");
    assert_eq!(query["platform"], "x");

    // The same callback URL opened again (a replayed redirect) is refused at the app.
    let replayed = browser.get(&callback).send().await.unwrap();
    assert_eq!(
        problem_type(replayed).await,
        (400, "oauth-state-invalid".to_owned())
    );

    let claimed = app
        .complete_connect(
            "alice",
            "x",
            &json!({"connect_code": query["connect_code"]}),
        )
        .await;
    assert_eq!(claimed.status(), 200);
    eventually(
        "alice's X connection is listed",
        Duration::from_secs(30),
        || async { (connections(&app, "alice").await.len() == 1).then_some(()) },
    )
    .await;

    // Without a return_url the first configured one is used.
    let started: Value = app
        .post("alice", "/youtube/connect", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(started["return_url"], "https://app.example/herald/return");
    app.stop().await;
}

/// A connect body that is not what the API takes changes nothing and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_connect_body_or_code_is_a_clear_problem() {
    let app = spawn_app(Backend::Embedded).await;
    let unknown_field = app
        .post(
            "alice",
            "/x/connect",
            json!({"redirect": "https://x.example"}),
        )
        .await;
    assert_eq!(
        problem_type(unknown_field).await,
        (400, "validation-error".to_owned())
    );
    // No return URLs configured: naming one is refused.
    let not_configured = app
        .post(
            "alice",
            "/x/connect",
            json!({"return_url": "https://app.example/r"}),
        )
        .await;
    assert_eq!(
        problem_type(not_configured).await,
        (400, "validation-error".to_owned())
    );
    let made_up = app
        .complete_connect("alice", "x", &json!({"connect_code": "made-up"}))
        .await;
    assert_eq!(
        problem_type(made_up).await,
        (400, "connect-code-invalid".to_owned())
    );
    // A code for one platform does not complete another.
    let url = start(&app, "alice", "x", "alice_x").await;
    let authorized = open_in_browser(&app, &url).await;
    let wrong_platform = app.complete_connect("alice", "reddit", &authorized).await;
    assert_eq!(
        problem_type(wrong_platform).await,
        (400, "connect-code-invalid".to_owned())
    );
    assert!(!attached_to(&app, "alice", "x", &authorized).await);
    assert!(!attached_to(&app, "alice", "reddit", &authorized).await);
    app.stop().await;
}

/// One user's flood of reads gets 429s with `Retry-After` and the IETF `RateLimit` headers,
/// while another user's reads, made during the flood, all succeed; commands have their own
/// budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_flood_is_refused_while_another_users_requests_go_on() {
    use futures::StreamExt;
    let app = spawn_app_configured(
        Backend::Embedded,
        herald_sandbox::SandboxConfig::default(),
        herald_api::config::Role::All,
        |config| {
            // One read a second after a burst of 60: a thousand cannot all pass in this test.
            config.api_queries_per_minute = 60;
            config.api_commands_per_minute = 5;
        },
    )
    .await;
    let shared = &app;
    let flood = futures::stream::iter(0..1000)
        .map(|_| async move { shared.get("mallory", "/jobs").await })
        .buffer_unordered(50);
    let others = futures::stream::iter(0..20)
        .map(|_| async move { shared.get("alice", "/jobs").await })
        .buffer_unordered(2);
    let (flooded, others): (Vec<reqwest::Response>, Vec<reqwest::Response>) =
        futures::join!(flood.collect(), others.collect());

    let mut refused = 0;
    for response in flooded {
        match response.status().as_u16() {
            200 => {}
            429 => {
                refused += 1;
                let retry_after: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&retry_after), "{retry_after}");
                assert!(response.headers().contains_key("ratelimit-policy"));
                assert_eq!(response.headers()["ratelimit"], "\"queries\";r=0;t=60");
                let (status, kind) = problem_type(response).await;
                assert_eq!((status, kind.as_str()), (429, "rate-limited"));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(refused >= 1000 - 60 - 60, "{refused} of 1000 refused");
    for response in others {
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"queries\";q=60;w=60"
        );
    }

    // Commands spend their own budget: mallory's reads are spent, but connects go on, up to 5.
    for _ in 0..5 {
        let started = app.post("mallory", "/x/connect", json!({})).await;
        assert_eq!(started.status(), 200);
    }
    let sixth = app.post("mallory", "/x/connect", json!({})).await;
    assert_eq!(problem_type(sixth).await, (429, "rate-limited".to_owned()));
    assert_eq!(
        app.post("alice", "/x/connect", json!({})).await.status(),
        200
    );
    app.stop().await;
}

/// A user's jobs not ended yet and their connections are capped; reaching a cap is a clear
/// problem naming the setting, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_caps_on_pending_jobs_and_connections() {
    let app = spawn_app_configured(
        Backend::Embedded,
        herald_sandbox::SandboxConfig::default(),
        herald_api::config::Role::All,
        |config| {
            config.max_pending_jobs_per_user = 3;
            config.max_connections_per_user = 1;
        },
    )
    .await;
    let x = app.connect_x("alice", "alice_x").await;
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let schedule = |text: &str| json!({"connection_ids": [x], "content": {"text": text}, "publish_at": tomorrow});
    let mut jobs = Vec::new();
    for n in 0..3 {
        let response = app
            .post("alice", "/schedule", schedule(&format!("post {n}")))
            .await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        jobs.push(body["jobs"][0]["job_id"].as_str().unwrap().to_owned());
    }
    let listed = || async {
        let body: Value = app.get("alice", "/jobs").await.json().await.unwrap();
        body["jobs"].as_array().unwrap().len()
    };
    eventually("three jobs listed", Duration::from_secs(30), || async {
        (listed().await == 3).then_some(())
    })
    .await;
    let fourth = app.post("alice", "/schedule", schedule("post 3")).await;
    let status = fourth.status().as_u16();
    let problem: Value = fourth.json().await.unwrap();
    assert_eq!(
        (status, problem["type"].as_str()),
        (409, Some("limit-reached"))
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("HERALD_MAX_PENDING_JOBS_PER_USER"),
        "{problem}"
    );
    assert_eq!(listed().await, 3, "the refused request stored nothing");
    // Another user is not held by alice's cap.
    let y = app.connect_x("bob", "bob_x").await;
    let bobs = app
        .post(
            "bob",
            "/schedule",
            json!({"connection_ids": [y], "content": {"text": "bob"}, "publish_at": tomorrow}),
        )
        .await;
    assert_eq!(bobs.status(), 202);

    // Cancelling one makes room again.
    let cancelled = app.delete("alice", &format!("/jobs/{}", jobs[0])).await;
    assert!(cancelled.status().is_success());
    eventually("room for one more job", Duration::from_secs(30), || async {
        let again = app.post("alice", "/schedule", schedule("post 3")).await;
        (again.status() == 202).then_some(())
    })
    .await;

    // One connection at most: alice has X, so a YouTube login is refused and connects nothing.
    eventually(
        "alice's X connection listed",
        Duration::from_secs(30),
        || async { (connections(&app, "alice").await.len() == 1).then_some(()) },
    )
    .await;
    let url = start(&app, "alice", "youtube", "alice_yt").await;
    let authorized = open_in_browser(&app, &url).await;
    let refused = app.complete_connect("alice", "youtube", &authorized).await;
    assert_eq!(
        problem_type(refused).await,
        (409, "limit-reached".to_owned())
    );
    assert!(!attached_to(&app, "alice", "youtube", &authorized).await);
    // Connecting the same X account again does not count twice.
    app.connect_x("alice", "alice_x").await;
    app.stop().await;
}
