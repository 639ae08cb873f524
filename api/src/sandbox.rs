//! The in-process sandbox platforms, present only in builds with the `sandbox` feature (the
//! default, for development, tests and the bench). A production image is built without it
//! (`--no-default-features`), so it holds no simulated platforms and their control routes at
//! all; such a build refuses to start when it would need them.
use std::net::SocketAddr;

use herald_infrastructure::platforms::settings::SandboxTwin;

#[cfg(feature = "sandbox")]
pub use herald_sandbox::Sandbox;

/// No sandbox in this build: a type with no value, so code that would use one cannot run.
#[cfg(not(feature = "sandbox"))]
pub enum Sandbox {}

/// Starts the sandbox platforms on `bind`.
#[cfg(feature = "sandbox")]
pub async fn start(bind: &str) -> anyhow::Result<Sandbox> {
    Ok(Sandbox::start(bind, herald_sandbox::SandboxConfig::default()).await?)
}

/// This build has no sandbox platforms.
#[cfg(not(feature = "sandbox"))]
pub async fn start(_bind: &str) -> anyhow::Result<Sandbox> {
    anyhow::bail!(
        "this herald was built without the sandbox platforms (the `sandbox` feature): set your platforms' credentials (X_CLIENT_ID, ...), or HERALD_SANDBOX=false"
    )
}

/// Where the sandbox listens.
pub fn local_addr(sandbox: &Sandbox) -> SocketAddr {
    #[cfg(feature = "sandbox")]
    return sandbox.local_addr();
    #[cfg(not(feature = "sandbox"))]
    match *sandbox {}
}

/// The sandbox twin at `path` as the platform registry reaches it.
pub fn twin(sandbox: &Sandbox, path: &str) -> Option<SandboxTwin> {
    #[cfg(feature = "sandbox")]
    return sandbox.twin(path).map(|twin| SandboxTwin {
        base_url: twin.base_url,
        client_id: twin.client_id,
        client_secret: twin.client_secret,
    });
    #[cfg(not(feature = "sandbox"))]
    {
        let _ = path;
        match *sandbox {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With the feature the sandbox starts; without it, asking for it is refused, saying why
    /// and what to set instead. (`.ci/run` runs this test in both builds.)
    #[tokio::test]
    async fn the_sandbox_starts_only_in_builds_that_have_it() {
        let started = start("127.0.0.1:0").await;
        #[cfg(feature = "sandbox")]
        assert!(local_addr(&started.unwrap()).ip().is_loopback());
        #[cfg(not(feature = "sandbox"))]
        {
            let refused = format!("{:#}", started.err().expect("no sandbox in this build"));
            assert!(
                refused.contains("`sandbox` feature") && refused.contains("X_CLIENT_ID"),
                "{refused}"
            );
        }
    }
}
