//! The HTTP plumbing every adapter shares: ask the shared rate-limit gate, send, report what the
//! platform said about its limits, read the whole body, and classify a refusal. A platform only
//! says how its headers and error bodies read, by implementing [`PlatformApi`].
use bytes::Bytes;
use chrono::{DateTime, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::RateLimitGate;

pub use crate::oauth::retry_after;

/// What differs between platforms in the call plumbing.
pub trait PlatformApi: Send + Sync {
    /// What the classifier needs to know about a call (the action, the scopes it needs, ...).
    type Context: Copy + Send + Sync;

    /// The platform's name, for messages.
    fn name(&self) -> &'static str;

    /// Completes "could not ..." for messages, e.g. "create the post".
    fn action(&self, ctx: Self::Context) -> &'static str;

    /// What a response says about the endpoint's budget: calls left and when it resets.
    /// A 429 should report `(Some(0), until)` so every worker waits.
    fn rate_limit(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        now: DateTime<Utc>,
    ) -> (Option<u64>, Option<DateTime<Utc>>);

    /// How many calls the endpoint's window allows, where a response says (see
    /// `RateLimitGate::observe_limit`).
    fn window_limit(&self, _headers: &HeaderMap) -> Option<u64> {
        None
    }

    /// Gate keys of budgets a call to `endpoint` draws from besides the endpoint's own: one the
    /// whole application shares (a [`super::app_key`]) or one all of the account's calls share.
    /// Each is asked before the call.
    fn shared_budgets(&self, _endpoint: &str) -> Vec<String> {
        Vec::new()
    }

    /// What a response says about those shared budgets: `(gate key, calls left, when it resets)`.
    fn shared_rate_limits(
        &self,
        _status: StatusCode,
        _headers: &HeaderMap,
        _now: DateTime<Utc>,
    ) -> Vec<SharedReading> {
        Vec::new()
    }

    /// Classifies a refusal (a non-success status, or a success status whose body is the
    /// platform's error envelope).
    fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        ctx: Self::Context,
        now: DateTime<Utc>,
    ) -> PlatformFailure;

    /// Classifies a request that got no response.
    fn transport_failure(&self, error: &reqwest::Error, ctx: Self::Context) -> PlatformFailure {
        default_transport_failure(self.name(), self.action(ctx), error)
    }

    /// Whether a success-status body that does not parse as expected is the platform's error
    /// envelope (then it is classified) rather than an unreadable answer.
    fn is_error_body(&self, _body: &serde_json::Value) -> bool {
        false
    }
}

/// A response's word on a shared budget: its gate key, calls left and when it resets.
pub type SharedReading = (String, Option<u64>, Option<DateTime<Utc>>);

/// Why a call returned no response to read.
#[derive(Debug)]
pub enum SendError {
    /// Herald's shared limiter refused; nothing was sent.
    Limited(PlatformFailure),
    Transport(reqwest::Error),
}

/// A fully read response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Parses the body; an error envelope is classified, anything else unreadable is permanent.
    pub fn json<P: PlatformApi, T: DeserializeOwned>(
        &self,
        api: &P,
        ctx: P::Context,
    ) -> Result<T, PlatformFailure> {
        serde_json::from_slice(&self.body).map_err(|_| {
            if serde_json::from_slice::<serde_json::Value>(&self.body)
                .is_ok_and(|v| api.is_error_body(&v))
            {
                return api.classify(self.status, &self.headers, &self.body, ctx, Utc::now());
            }
            unreadable(api, ctx, self.status)
        })
    }
}

/// An answer Herald cannot read: most likely a wrong base URL, so retrying will not help.
pub fn unreadable<P: PlatformApi>(api: &P, ctx: P::Context, status: StatusCode) -> PlatformFailure {
    let name = api.name();
    PlatformFailure::new(
        ErrorClass::Permanent,
        "unexpected_response",
        format!(
            "{name} answered the request to {} with HTTP {status} and a body Herald cannot read; check the {name} API base URL",
            api.action(ctx)
        ),
    )
}

/// Asks the gate, sends, and reports the platform's rate-limit state.
pub async fn send<P: PlatformApi>(
    api: &P,
    endpoint: &str,
    limits: &dyn RateLimitGate,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, SendError> {
    let shared = api.shared_budgets(endpoint);
    for key in shared.iter().map(String::as_str).chain([endpoint]) {
        limits
            .acquire(key)
            .await
            .map_err(|until| SendError::Limited(local_limit(api.name(), key, until)))?;
    }
    let started = std::time::Instant::now();
    let sent = request.send().await;
    let outcome = match &sent {
        Ok(response) if response.status().is_success() => "ok",
        Ok(response) if response.status().as_u16() == 429 => "rate_limited",
        Ok(response) if response.status().is_server_error() => "server_error",
        Ok(_) => "client_error",
        Err(_) => "transport_error",
    };
    metrics::counter!("herald_platform_calls_total", "platform" => api.name(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("herald_platform_call_duration_seconds", "platform" => api.name())
        .record(started.elapsed().as_secs_f64());
    let response = sent.map_err(SendError::Transport)?;
    let now = Utc::now();
    let (remaining, reset) = api.rate_limit(response.status(), response.headers(), now);
    if remaining.is_some() || reset.is_some() {
        limits.observe(endpoint, remaining, reset).await;
    }
    if let Some(limit) = api.window_limit(response.headers()) {
        limits.observe_limit(endpoint, limit).await;
    }
    for (key, remaining, reset) in
        api.shared_rate_limits(response.status(), response.headers(), now)
    {
        if remaining.is_some() || reset.is_some() {
            limits.observe(&key, remaining, reset).await;
        }
    }
    Ok(response)
}

/// Sends and reads the whole response; a non-success status is classified.
pub async fn call<P: PlatformApi>(
    api: &P,
    endpoint: &str,
    limits: &dyn RateLimitGate,
    request: reqwest::RequestBuilder,
    ctx: P::Context,
) -> Result<Reply, PlatformFailure> {
    let response = match send(api, endpoint, limits, request).await {
        Ok(response) => response,
        Err(SendError::Limited(failure)) => return Err(failure),
        Err(SendError::Transport(e)) => return Err(api.transport_failure(&e, ctx)),
    };
    read(api, response, ctx).await
}

/// Reads a response that `send` returned; a non-success status is classified.
pub async fn read<P: PlatformApi>(
    api: &P,
    response: reqwest::Response,
    ctx: P::Context,
) -> Result<Reply, PlatformFailure> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| api.transport_failure(&e, ctx))?;
    if !status.is_success() {
        return Err(api.classify(status, &headers, &body, ctx, Utc::now()));
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// `call`, then parse the JSON body.
pub async fn call_json<P: PlatformApi, T: DeserializeOwned>(
    api: &P,
    endpoint: &str,
    limits: &dyn RateLimitGate,
    request: reqwest::RequestBuilder,
    ctx: P::Context,
) -> Result<T, PlatformFailure> {
    call(api, endpoint, limits, request, ctx)
        .await?
        .json(api, ctx)
}

/// Herald's own limiter refused the call: the endpoint's budget is used up until `until`.
pub fn local_limit(platform: &str, endpoint: &str, until: DateTime<Utc>) -> PlatformFailure {
    PlatformFailure::new(
        ErrorClass::RateLimited,
        "rate_limit_exhausted",
        format!(
            "the {platform} rate limit for {} is used up until {}; Herald waits before calling again",
            super::describe_key(endpoint),
            until.to_rfc3339()
        ),
    )
    .not_before(until)
}

/// A request that got no response: a timeout or a lost connection is worth retrying; a request
/// that could not even be built is not.
pub fn default_transport_failure(
    platform: &str,
    action: &str,
    error: &reqwest::Error,
) -> PlatformFailure {
    if error.is_builder() {
        return PlatformFailure::new(
            ErrorClass::Permanent,
            "request_invalid",
            format!("could not {action}: the request to {platform} could not be built"),
        );
    }
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "lost the connection"
    };
    PlatformFailure::new(
        ErrorClass::Retryable,
        "network_error",
        format!("could not {action}: the request to {platform} {what}; Herald will retry"),
    )
}

/// A `429` with `Retry-After` closes the endpoint until then.
pub fn retry_after_on_429(
    status: StatusCode,
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> (Option<u64>, Option<DateTime<Utc>>) {
    if status == StatusCode::TOO_MANY_REQUESTS {
        if let Some(until) = retry_after(headers, now) {
            return (Some(0), Some(until));
        }
    }
    (None, None)
}
