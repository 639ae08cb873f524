//! Herald's wiring builds every adapter through the platform registry: the embedded default
//! has every platform at its sandbox twin, an operator's variables switch the sandbox off and
//! point a platform at its real hosts, and a bad value stops start-up naming the variable.
use herald_api::config::Config;
use herald_api::runtime::Herald;
use herald_domain::Platform;
use herald_infrastructure::platforms::registry::PLATFORMS;
use herald_infrastructure::platforms::settings::PlatformEnv;

/// The embedded default in a scratch data dir, removed when dropped.
struct Scratch(Config);

impl Scratch {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("herald-registry-{}", uuid::Uuid::new_v4().simple()));
        Self(Config::embedded(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0.data_dir);
    }
}

#[tokio::test]
async fn the_embedded_default_has_every_platform_at_its_sandbox_twin() {
    let scratch = Scratch::new();
    let herald = Herald::build(scratch.0.clone())
        .await
        .expect("Herald builds");
    let sandbox = herald.sandbox.clone().expect("the sandbox runs");
    for platform in Platform::ALL {
        let adapter = herald.adapters.get(platform).expect("every platform is on");
        let start = adapter.authorization_url("http://127.0.0.1:9/callback");
        assert!(
            start.url.as_str().starts_with(&sandbox.base_url()),
            "{platform} goes to its twin: {}",
            start.url
        );
    }
}

#[tokio::test]
async fn an_operators_variables_switch_the_sandbox_off_and_reach_the_real_platform() {
    let mut scratch = Scratch::new();
    // What `herald serve` copies from its environment: platform variables only.
    scratch.0.platforms = PlatformEnv::from_vars(
        [
            ("X_CLIENT_ID", "my-app"),
            ("X_CLIENT_SECRET", "my-secret"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    assert_eq!(scratch.0.platforms.iter().count(), 2);
    let herald = Herald::build(scratch.0.clone())
        .await
        .expect("Herald builds");
    assert!(herald.sandbox.is_none());
    let x = herald.adapters.get(Platform::X).expect("X is configured");
    let url = x.authorization_url("http://127.0.0.1:9/callback").url;
    assert_eq!(url.host_str(), Some("x.com"));
    assert!(url
        .query_pairs()
        .any(|(k, v)| k == "client_id" && v == "my-app"));
    for platform in Platform::ALL.into_iter().filter(|p| *p != Platform::X) {
        assert!(herald.adapters.get(platform).is_err(), "{platform} is off");
    }
}

#[tokio::test]
async fn a_bad_platform_setting_stops_start_up_naming_the_variable() {
    for platform in PLATFORMS {
        let mut scratch = Scratch::new();
        let variable = format!("{}REQUEST_TIMEOUT_SECS", platform.env_prefix);
        scratch.0.platforms.set(&variable, "soon");
        let error = match Herald::build(scratch.0.clone()).await {
            Ok(_) => panic!("{variable}=soon was accepted"),
            Err(error) => format!("{error:#}"),
        };
        assert!(
            error.starts_with(&format!("{variable}: \"soon\"")),
            "{error}"
        );
    }
}
