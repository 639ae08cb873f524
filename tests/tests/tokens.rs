//! Token refresh is single-flight: many jobs meeting one expired token cause one refresh.
mod support;

use std::time::Duration;

use serde_json::json;
use support::Twin;
use support::{spawn_app, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_refresh_the_token_once() {
    let app = spawn_app(Backend::Embedded).await;
    let connection = app.connect_x("alice", "alice_x").await;
    let token_requests = |app: &support::TestApp| {
        app.sandbox
            .x_state()
            .requests
            .iter()
            .filter(|r| r.path.ends_with("/2/oauth2/token"))
            .count()
    };
    assert_eq!(token_requests(&app), 1, "the code exchange");
    // From the first create_tweet on, the current access token is expired at X.
    app.fault(Twin::X, "create_tweet", json!({"kind": "expire_token"}), 1)
        .await;
    let mut jobs = Vec::new();
    for n in 0..5 {
        jobs.push(
            app.publish("alice", &connection, json!({"text": format!("burst {n}")}))
                .await,
        );
    }
    for job in &jobs {
        app.wait_for_status("alice", job, "published", Duration::from_secs(20))
            .await;
    }
    assert_eq!(token_requests(&app), 2, "one refresh for all five jobs");
    let issued = app.sandbox.x_state().tokens_issued;
    assert_eq!(issued.len(), 2);
    let connections: serde_json::Value =
        app.get("alice", "/connections").await.json().await.unwrap();
    assert_eq!(connections["connections"][0]["status"], "active");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refreshed_before_they_expire() {
    let mut sandbox = herald_sandbox::SandboxConfig::default();
    // Expires within the refresher's five-minute horizon as soon as it is issued.
    sandbox.x.access_token_lifetime = Duration::from_secs(120);
    let app = support::spawn_app_configured(
        Backend::Embedded,
        sandbox,
        herald_api::config::Role::All,
        |config| {
            config.refresh_scan_secs = 1;
        },
    )
    .await;
    let connection = app.connect_x("alice", "alice_x").await;
    let expiry = || async {
        app.herald()
            .connections
            .load(&connection)
            .await
            .unwrap()
            .token_expires_at
    };
    let first_expiry = expiry().await.expect("X tokens expire");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = app.herald().connections.events(&connection).await.unwrap();
        if events.iter().any(|e| {
            matches!(
                e.payload,
                herald_domain::connection::ConnectionEvent::TokenRefreshed { .. }
            )
        }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no proactive refresh within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The rotated pair is what the vault holds now, and the old refresh token is spent.
    let issued = app.sandbox.x_state().tokens_issued;
    assert!(issued.len() >= 2);
    let id = herald_domain::ConnectionId::parse(&connection).unwrap();
    let stored = app.herald().vault.load(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.access_token.expose(),
        issued.last().unwrap().access_token
    );
    let job = app
        .publish("alice", &connection, json!({"text": "with a fresh token"}))
        .await;
    app.wait_for_status("alice", &job, "published", Duration::from_secs(15))
        .await;
    assert!(expiry().await.unwrap() > first_expiry);
    app.stop().await;
}
