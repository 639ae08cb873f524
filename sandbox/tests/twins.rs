//! What the twins share: one server, two workers. A request held inside one twin must not
//! stop the others (nor the rest of its own twin) from answering.

use std::time::Duration;

use herald_sandbox::{Fault, LinkedInEndpoint, Sandbox, SandboxConfig};
use reqwest::Client;

#[tokio::test]
async fn every_twin_answers_while_linkedin_holds_requests() {
    let sandbox = Sandbox::start("127.0.0.1:0", SandboxConfig::default())
        .await
        .expect("start");
    let token_url = format!("{}/oauth/v2/accessToken", sandbox.linkedin_base_url());
    sandbox.inject_linkedin_fault(LinkedInEndpoint::Token, Fault::Timeout { secs: 600.0 }, 2);
    // Two held requests, each on its own connection, so each worker may be given one.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = token_url.clone();
            tokio::spawn(async move {
                Client::new()
                    .post(url)
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
            })
        })
        .collect();
    // Both are inside the twin once its request log shows them in flight.
    let mut in_flight = 0;
    for _ in 0..600 {
        in_flight = sandbox
            .linkedin_state()
            .requests
            .iter()
            .filter(|r| r.path.ends_with("/oauth/v2/accessToken") && r.status.is_none())
            .count();
        if in_flight == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(in_flight, 2, "both held requests reached the LinkedIn twin");

    // A twin that cannot answer fails the test instead of hanging it.
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = sandbox.base_url();
    for twin in [
        "x", "threads", "youtube", "linkedin", "tiktok", "meta", "reddit",
    ] {
        // Several requests per twin, on fresh connections, so both workers serve some.
        for _ in 0..4 {
            let resp = Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap()
                .get(format!("{base}/{twin}/_sandbox/state"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("the {twin} twin answers: {e}"));
            assert_eq!(resp.status(), 200, "{twin}");
        }
    }
    // The LinkedIn twin itself goes on serving its real routes.
    let resp = http
        .post(&token_url)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("LinkedIn answers a token request");
    assert_eq!(resp.status(), 400);
    let resp = http
        .get(format!("{}/v2/userinfo", sandbox.linkedin_base_url()))
        .send()
        .await
        .expect("LinkedIn answers userinfo");
    assert_eq!(resp.status(), 401);

    for h in &held {
        assert!(!h.is_finished(), "the held requests are still held");
    }
    for h in held {
        h.abort();
    }
    sandbox.stop().await;
}
