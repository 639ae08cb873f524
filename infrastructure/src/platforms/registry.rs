//! The platforms Herald knows: one line each. Wiring (`herald serve`, `herald bench`) and the
//! test harness build adapters through this list only; see `docs/platforms.md` for what a
//! new platform brings.
use super::settings::{build, Factory, PlatformEnv, PlatformSettings, Services};
use super::Adapters;
use super::{facebook_pages, instagram, linkedin, reddit, threads, tiktok, x, youtube};
use herald_domain::Platform;

/// One platform: where its settings are read and how its adapter is built.
#[derive(Clone, Copy)]
pub struct PlatformEntry {
    pub platform: Platform,
    /// Prefix of its environment variables (`X_` for `X_CLIENT_ID`, ...).
    pub env_prefix: &'static str,
    /// Variables it reads outside its prefix (kept from before the prefixes were uniform).
    pub also_reads: &'static [&'static str],
    /// Its twin's path in the sandbox (`/x`, `/meta`): twins may serve several platforms.
    pub twin: &'static str,
    pub build: Factory,
}

impl PlatformEntry {
    /// The entry of the platform whose settings are `S`.
    pub const fn of<S: PlatformSettings>(platform: Platform) -> Self {
        Self {
            platform,
            env_prefix: S::PREFIX,
            also_reads: S::ALSO_READS,
            twin: S::TWIN,
            build: build::<S>,
        }
    }
}

/// Every platform, in the order adapters are built.
pub const PLATFORMS: &[PlatformEntry] = &[
    x::ENTRY,
    threads::ENTRY,
    youtube::ENTRY,
    linkedin::ENTRY,
    tiktok::ENTRY,
    reddit::ENTRY,
    facebook_pages::ENTRY,
    instagram::ENTRY,
];

/// The platform's entry.
pub fn entry(platform: Platform) -> &'static PlatformEntry {
    PLATFORMS
        .iter()
        .find(|e| e.platform == platform)
        .expect("every platform has a registry entry")
}

/// Whether some platform reads the variable `name`.
pub fn reads(name: &str) -> bool {
    PLATFORMS
        .iter()
        .any(|e| name.starts_with(e.env_prefix) || e.also_reads.contains(&name))
}

/// Whether an app is configured for any platform (`{prefix}CLIENT_ID`): then the sandbox is
/// off unless asked for.
pub fn any_app_configured(env: &PlatformEnv) -> bool {
    PLATFORMS
        .iter()
        .any(|e| env.scoped(e.env_prefix).text("CLIENT_ID").is_some())
}

/// The adapter of every platform that is on: with an app configured, or with a sandbox twin.
pub fn build_adapters(env: &PlatformEnv, services: &Services<'_>) -> anyhow::Result<Adapters> {
    let mut adapters = Adapters::default();
    for entry in PLATFORMS {
        if let Some(adapter) = (entry.build)(env, services)? {
            adapters = adapters.with(adapter);
        }
    }
    Ok(adapters)
}

/// For `--help`: where each platform's settings come from.
pub fn env_help() -> String {
    let prefixes: Vec<String> = PLATFORMS
        .iter()
        .map(|e| format!("{}*", e.env_prefix))
        .collect();
    format!(
        "Platform settings are read from the environment, per platform: {} \
         ({{PREFIX}}CLIENT_ID, CLIENT_SECRET, API_BASE, REQUEST_TIMEOUT_SECS and the platform's \
         own; see README.md, Production, and docs/platforms.md).",
        prefixes.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_platform() {
        for platform in Platform::ALL {
            assert_eq!(entry(platform).platform, platform);
        }
        assert_eq!(PLATFORMS.len(), Platform::ALL.len());
        assert!(reads("FACEBOOK_REELS_PER_DAY") && reads("TIKTOK_SCOPES") && !reads("HOME"));
    }
}
