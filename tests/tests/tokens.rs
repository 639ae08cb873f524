//! Token refresh is single-flight: many jobs meeting one expired token cause one refresh.
mod support;

use std::time::Duration;

use serde_json::json;
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
    app.x_fault("create_tweet", json!({"kind": "expire_token"}), 1)
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
