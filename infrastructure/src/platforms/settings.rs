//! Platform settings: each platform reads its own from environment variables under its prefix
//! (`X_`, `YOUTUBE_`, ...), with typed parsing and errors that name the variable. Defaults live
//! in each adapter's config (`XConfig::new`, ...); a setting left unset keeps it.
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::PlatformAdapter;
use crate::media_source::MediaUrlPolicy;
use crate::secret::Secret;

/// The platform variables a process runs with: a copy of the environment's variables under a
/// registered platform's prefix, or set by hand (tests, tools). Values are secrets as far as
/// `Debug` goes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PlatformEnv {
    vars: BTreeMap<String, String>,
}

impl fmt::Debug for PlatformEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

impl PlatformEnv {
    /// The process environment's variables that some registered platform reads.
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// `vars` that some registered platform reads; others are left out.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars = vars
            .into_iter()
            .filter(|(name, _)| super::registry::reads(name))
            .collect();
        Self { vars }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.vars.remove(name);
        self
    }

    /// Every variable, to hand to a child process.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Points the platform read under `prefix` at a sandbox twin, as an operator would with
    /// `{prefix}CLIENT_ID`, `{prefix}CLIENT_SECRET` and `{prefix}API_BASE`.
    pub fn use_twin(&mut self, prefix: &str, twin: &SandboxTwin) -> &mut Self {
        self.set(format!("{prefix}CLIENT_ID"), &twin.client_id)
            .set(format!("{prefix}CLIENT_SECRET"), &twin.client_secret)
            .set(format!("{prefix}API_BASE"), &twin.base_url)
    }

    /// The variables under `prefix`, for one platform's `from_env`.
    pub fn scoped<'a>(&'a self, prefix: &'a str) -> Vars<'a> {
        Vars { env: self, prefix }
    }
}

/// A setting whose value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct SettingError {
    /// The environment variable, in full (`YOUTUBE_CHUNK_BYTES`).
    pub variable: String,
    pub reason: String,
}

/// One platform's variables: names are relative to its prefix unless said otherwise.
#[derive(Clone, Copy)]
pub struct Vars<'a> {
    env: &'a PlatformEnv,
    prefix: &'a str,
}

impl<'a> Vars<'a> {
    /// The variable's full name.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// `{prefix}{suffix}`; an empty value counts as unset, as clap read it.
    pub fn text(&self, suffix: &str) -> Option<String> {
        self.full_text(&self.name(suffix))
    }

    /// A variable outside the prefix (`FACEBOOK_REELS_PER_DAY`).
    pub fn full_text(&self, variable: &str) -> Option<String> {
        self.env
            .get(variable)
            .filter(|v| !v.trim().is_empty())
            .map(str::to_owned)
    }

    /// `{prefix}{suffix}` parsed as `T`.
    pub fn parse<T>(&self, suffix: &str) -> Result<Option<T>, SettingError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.full_parse(&self.name(suffix))
    }

    /// A variable outside the prefix, parsed as `T`.
    pub fn full_parse<T>(&self, variable: &str) -> Result<Option<T>, SettingError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.full_text(variable)
            .map(|raw| {
                raw.trim().parse().map_err(|e: T::Err| SettingError {
                    variable: variable.to_owned(),
                    reason: format!("{raw:?} is not valid: {e}"),
                })
            })
            .transpose()
    }

    /// `{prefix}{suffix}` in whole seconds, at least one.
    pub fn seconds(&self, suffix: &str) -> Result<Option<Duration>, SettingError> {
        Ok(self
            .parse::<u64>(suffix)?
            .map(|secs| Duration::from_secs(secs.max(1))))
    }
}

/// What every platform's settings start with: its app, where to reach it and how long one
/// request may take.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// The platform's prefix (`X_`), for messages.
    pub prefix: String,
    /// `{prefix}CLIENT_ID`: set, Herald talks to the platform (or `api_base`) with this app.
    pub client_id: Option<String>,
    /// `{prefix}CLIENT_SECRET`.
    pub client_secret: Option<Secret>,
    /// `{prefix}API_BASE`: a platform-compatible server hosting every endpoint under it.
    pub api_base: Option<Url>,
    /// `{prefix}REQUEST_TIMEOUT_SECS`: how long one API request may take before its outcome
    /// counts as unknown (the adapter's default, 30 s, when unset).
    pub request_timeout: Option<Duration>,
}

impl AppSettings {
    pub fn from_env(vars: &Vars<'_>) -> Result<Self, SettingError> {
        Ok(Self {
            prefix: vars.prefix.to_owned(),
            client_id: vars.text("CLIENT_ID"),
            client_secret: vars.text("CLIENT_SECRET").map(Secret::new),
            api_base: vars.parse("API_BASE")?,
            request_timeout: vars.seconds("REQUEST_TIMEOUT_SECS")?,
        })
    }

    /// Which app to talk to and where: the configured app, else the sandbox twin when the
    /// sandbox runs, else none (the platform is off).
    pub fn app(&self, twin: Option<SandboxTwin>) -> anyhow::Result<Option<App>> {
        if let Some(client_id) = &self.client_id {
            return Ok(Some(App {
                prefix: self.prefix.clone(),
                client_id: client_id.clone(),
                client_secret: self.client_secret.clone(),
                base: self.api_base.clone(),
                request_timeout: self.request_timeout,
            }));
        }
        let Some(twin) = twin else {
            return Ok(None);
        };
        let base = Url::parse(&twin.base_url)
            .map_err(|e| anyhow::anyhow!("the sandbox twin's URL {}: {e}", twin.base_url))?;
        Ok(Some(App {
            prefix: self.prefix.clone(),
            client_id: twin.client_id,
            client_secret: Some(Secret::new(twin.client_secret)),
            base: Some(base),
            request_timeout: self.request_timeout,
        }))
    }
}

/// The app an adapter uses: configured, or the sandbox twin's.
#[derive(Debug, Clone)]
pub struct App {
    prefix: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// `None`: the platform's real hosts.
    pub base: Option<Url>,
    /// `{prefix}REQUEST_TIMEOUT_SECS`, if set.
    pub request_timeout: Option<Duration>,
}

impl App {
    /// The secret, for platforms whose token calls always carry it.
    pub fn required_secret(&self) -> anyhow::Result<Secret> {
        self.client_secret.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "{p}CLIENT_SECRET is required with {p}CLIENT_ID",
                p = self.prefix
            )
        })
    }

    /// `for_base(base, ..)` against a compatible server, else `new(..)` for the real hosts.
    pub fn config<C, S>(
        self,
        secret: S,
        new: impl FnOnce(String, S) -> C,
        for_base: impl FnOnce(Url, String, S) -> C,
    ) -> C {
        match self.base {
            Some(base) => for_base(base, self.client_id, secret),
            None => new(self.client_id, secret),
        }
    }
}

/// A sandbox twin as an adapter reaches it: its base URL and the app it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxTwin {
    pub base_url: String,
    pub client_id: String,
    pub client_secret: String,
}

/// The running sandbox's twin by its path (`x`, `meta`, ...).
pub type Twins<'a> = &'a dyn Fn(&str) -> Option<SandboxTwin>;

/// What every adapter factory is given besides its settings.
pub struct Services<'a> {
    /// The sandbox's twins, when the sandbox runs.
    pub sandbox: Option<Twins<'a>>,
    /// Which media URLs adapters may download.
    pub media_policy: MediaUrlPolicy,
}

impl Services<'_> {
    pub fn twin(&self, path: &str) -> Option<SandboxTwin> {
        self.sandbox.and_then(|twins| twins(path))
    }
}

/// Builds one platform's adapter from the variables and the shared services; `None` when the
/// platform is off (no app configured and no sandbox).
pub type Factory =
    fn(&PlatformEnv, &Services<'_>) -> anyhow::Result<Option<Arc<dyn PlatformAdapter>>>;

/// One platform's own settings (the shared ones are [`AppSettings`]): read from its variables,
/// then made into its adapter.
pub trait PlatformSettings: Sized {
    /// Prefix of its variables (`X_`).
    const PREFIX: &'static str;
    /// Variables it reads outside its prefix (kept from before the prefixes were uniform).
    const ALSO_READS: &'static [&'static str] = &[];
    /// Its twin's path in the sandbox (`x`, `meta`): a twin may serve several platforms.
    const TWIN: &'static str;

    /// Its own variables; `vars` is scoped to `PREFIX`.
    fn from_vars(vars: &Vars<'_>) -> Result<Self, SettingError>;

    /// The adapter talking to `app`, with these settings applied.
    fn adapter(self, app: App, services: &Services<'_>)
        -> anyhow::Result<Arc<dyn PlatformAdapter>>;

    fn from_env(env: &PlatformEnv) -> Result<Self, SettingError> {
        Self::from_vars(&env.scoped(Self::PREFIX))
    }
}

/// The [`Factory`] of `S`: the shared settings and its own, then its app (configured, or the
/// sandbox twin), then its adapter.
pub fn build<S: PlatformSettings>(
    env: &PlatformEnv,
    services: &Services<'_>,
) -> anyhow::Result<Option<Arc<dyn PlatformAdapter>>> {
    let vars = env.scoped(S::PREFIX);
    let shared = AppSettings::from_env(&vars)?;
    let own = S::from_vars(&vars)?;
    match shared.app(services.twin(S::TWIN))? {
        Some(app) => own.adapter(app, services).map(Some),
        None => Ok(None),
    }
}

/// What a platform's `settings.rs` uses.
pub mod prelude {
    pub use std::sync::Arc;

    pub use super::{App, PlatformSettings, Services, SettingError, Vars};
    pub use crate::platforms::registry::PlatformEntry;
    pub use crate::platforms::PlatformAdapter;
}

/// Splits a list setting on `separators`, dropping empty items.
pub fn list(raw: &str, separators: &[char]) -> Vec<String> {
    raw.split(|c: char| separators.contains(&c))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> PlatformEnv {
        let mut env = PlatformEnv::default();
        for (k, v) in vars {
            env.set(*k, *v);
        }
        env
    }

    #[test]
    fn app_settings_default_override_and_bad_value() {
        let unset = AppSettings::from_env(&env(&[]).scoped("X_")).unwrap();
        assert!(unset.client_id.is_none() && unset.request_timeout.is_none());
        let set = env(&[
            ("X_CLIENT_ID", "id"),
            ("X_API_BASE", "http://127.0.0.1:9/x"),
            ("X_REQUEST_TIMEOUT_SECS", "0"),
        ]);
        let app = AppSettings::from_env(&set.scoped("X_")).unwrap();
        assert_eq!(app.client_id.as_deref(), Some("id"));
        assert_eq!(app.request_timeout, Some(Duration::from_secs(1)));
        let bad = AppSettings::from_env(&env(&[("X_REQUEST_TIMEOUT_SECS", "soon")]).scoped("X_"))
            .unwrap_err();
        assert_eq!(bad.variable, "X_REQUEST_TIMEOUT_SECS");
        assert!(bad
            .to_string()
            .starts_with("X_REQUEST_TIMEOUT_SECS: \"soon\""));
        let url =
            AppSettings::from_env(&env(&[("X_API_BASE", "not a url")]).scoped("X_")).unwrap_err();
        assert_eq!(url.variable, "X_API_BASE");
    }

    #[test]
    fn the_configured_app_wins_over_the_twin() {
        let twin = SandboxTwin {
            base_url: "http://127.0.0.1:9/x".into(),
            client_id: "twin".into(),
            client_secret: "s".into(),
        };
        let none = AppSettings::from_env(&env(&[]).scoped("X_")).unwrap();
        assert!(none.app(None).unwrap().is_none());
        let sandboxed = none.app(Some(twin.clone())).unwrap().unwrap();
        assert_eq!(sandboxed.client_id, "twin");
        assert!(sandboxed.base.is_some());
        let real = AppSettings::from_env(&env(&[("X_CLIENT_ID", "mine")]).scoped("X_"))
            .unwrap()
            .app(Some(twin))
            .unwrap()
            .unwrap();
        assert_eq!(real.client_id, "mine");
        assert!(real.base.is_none());
        assert_eq!(
            real.required_secret().unwrap_err().to_string(),
            "X_CLIENT_SECRET is required with X_CLIENT_ID"
        );
    }

    #[test]
    fn empty_values_count_as_unset_and_debug_hides_values() {
        let e = env(&[("X_CLIENT_ID", ""), ("X_CLIENT_SECRET", "hush")]);
        assert!(e.scoped("X_").text("CLIENT_ID").is_none());
        assert!(!format!("{e:?}").contains("hush"));
    }
}
