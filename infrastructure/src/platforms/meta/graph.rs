//! What every Meta Graph API answer shares (platform-facts §3.2, §3.3): the error envelope, the
//! usage headers, lists and their paging, what a call was doing when it failed, and failures
//! in transit.
use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use url::Url;

use crate::platforms::PostError;
use crate::text::truncate;

/// Meta does not say when app-level usage recovers; its window is a rolling hour.
const APP_USAGE_WINDOW_MINUTES: i64 = 60;

/// What the failed call was doing; shapes the message and how a refused token is read.
#[derive(Debug, Clone, Copy)]
pub struct CallContext {
    /// Completes "could not ...", e.g. "publish the post".
    pub action: &'static str,
    pub kind: CallKind,
    /// A permission the call needs beyond the ones every call of the adapter needs: a
    /// permission refusal then means the connection lacks it, and only reconnecting helps.
    pub permission: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// An API call with an access token: 190 means refresh and retry.
    Api,
    /// Exchanging an authorization code (or the short-lived token it gave).
    Code,
    /// Refreshing the long-lived token: 190 means the user must reconnect.
    Refresh,
}

impl CallContext {
    pub const CODE: Self = Self {
        action: "exchange the authorization code",
        kind: CallKind::Code,
        permission: None,
    };
    pub const REFRESH: Self = Self {
        action: "refresh the access token",
        kind: CallKind::Refresh,
        permission: None,
    };

    /// An API call doing `action`.
    pub const fn api(action: &'static str) -> Self {
        Self {
            action,
            kind: CallKind::Api,
            permission: None,
        }
    }

    /// The same call, needing `permission` as well.
    pub const fn needing(self, permission: &'static str) -> Self {
        Self {
            permission: Some(permission),
            ..self
        }
    }
}

/// A Graph list: `{"data": [...], "paging": {"cursors": {...}, "next": "..."}}`.
#[derive(Debug, Deserialize)]
pub struct Listing<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    #[serde(default)]
    pub paging: Paging,
}

#[derive(Debug, Default, Deserialize)]
pub struct Paging {
    /// The next page's URL (the same request with an `after` cursor), absent on the last.
    pub next: Option<String>,
}

impl<T> Listing<T> {
    /// The next page's URL when it is on `base`'s origin: the token goes with the request, so
    /// a link elsewhere is never followed.
    pub fn next_page(&self, base: &Url) -> Option<Url> {
        self.paging
            .next
            .as_deref()
            .and_then(|next| Url::parse(next).ok())
            .filter(|next| next.origin() == base.origin())
    }
}

/// `{"error": {"message", "type", "code", "error_subcode", "error_user_msg", "fbtrace_id"}}`.
#[derive(Debug, Default, Deserialize)]
pub struct GraphErrorBody {
    #[serde(default)]
    pub error: GraphError,
}

#[derive(Debug, Default, Deserialize)]
pub struct GraphError {
    pub message: Option<String>,
    pub code: Option<i64>,
    pub error_subcode: Option<i64>,
    pub error_user_title: Option<String>,
    pub error_user_msg: Option<String>,
    #[serde(default)]
    pub is_transient: bool,
    /// Extra data some errors carry (the video upload's expected offsets).
    #[serde(default)]
    pub error_data: Option<serde_json::Value>,
}

impl GraphErrorBody {
    pub fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// Meta's own words: the message meant for users, else the developer message.
    pub fn explanation(&self) -> Option<String> {
        self.error
            .error_user_msg
            .clone()
            .or_else(|| self.error.message.clone())
            .filter(|s| !s.trim().is_empty())
            .map(|s| truncate(s.trim(), 400))
    }

    /// `graph_{code}_{subcode}`, `graph_{code}` or `http_{status}`: the failure's stable code.
    pub fn code_name(&self, status: u16) -> String {
        match (self.error.code, self.error.error_subcode) {
            (Some(c), Some(s)) => format!("graph_{c}_{s}"),
            (Some(c), None) => format!("graph_{c}"),
            _ => format!("http_{status}"),
        }
    }
}

/// Whether a JSON body is a Graph error envelope.
/// Least time one rupload chunk may take: several MB on a slow uplink take longer than an API
/// call.
const RUPLOAD_CHUNK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// One chunk of a resumable upload to `rupload.facebook.com` (Instagram containers, Page
/// reels): `Authorization: OAuth`, the chunk's `offset` and the whole `file_size` as headers,
/// the bytes as the body; allowed `request_timeout` or the chunk floor, whichever is longer.
pub fn rupload_chunk(
    http: &reqwest::Client,
    url: Url,
    token: &crate::secret::Secret,
    offset: u64,
    file_size: u64,
    request_timeout: std::time::Duration,
    chunk: bytes::Bytes,
) -> reqwest::RequestBuilder {
    use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
    let timeout = request_timeout.max(RUPLOAD_CHUNK_TIMEOUT);
    http.post(url)
        .header(AUTHORIZATION, format!("OAuth {}", token.expose()))
        .header("offset", offset.to_string())
        .header("file_size", file_size.to_string())
        .header(CONTENT_TYPE, "application/octet-stream")
        .timeout(timeout)
        .body(chunk)
}

pub fn is_error_body(body: &serde_json::Value) -> bool {
    body.get("error").is_some()
}

/// `{"call_count","total_cputime","total_time"}` in percent (`X-App-Usage`, `X-Page-Usage`;
/// the latter sometimes with the wait in minutes).
#[derive(Debug, Default, Deserialize)]
struct PlatformUsage {
    #[serde(default)]
    call_count: u64,
    #[serde(default)]
    total_cputime: u64,
    #[serde(default)]
    total_time: u64,
    #[serde(default)]
    estimated_time_to_regain_access: i64,
}

impl PlatformUsage {
    /// Percent used and the wait in minutes: the stated wait, else Meta's rolling hour once
    /// the budget is spent.
    fn reading(&self) -> (u64, i64) {
        let used = self.call_count.max(self.total_cputime).max(self.total_time);
        let wait = match self.estimated_time_to_regain_access {
            minutes if minutes > 0 => minutes,
            _ if used >= 100 => APP_USAGE_WINDOW_MINUTES,
            _ => 0,
        };
        (used, wait)
    }
}

#[derive(Debug, Default, Deserialize)]
struct BucUsage {
    #[serde(default)]
    call_count: u64,
    #[serde(default)]
    total_cputime: u64,
    #[serde(default)]
    total_time: u64,
    #[serde(default)]
    estimated_time_to_regain_access: i64,
}

/// Highest usage and longest wait of `readings` as `(percent left, when it is back)`.
fn budget(
    readings: impl IntoIterator<Item = (u64, i64)>,
    now: DateTime<Utc>,
) -> Option<(u64, DateTime<Utc>)> {
    let (used, wait) = readings
        .into_iter()
        .reduce(|(u1, w1), (u2, w2)| (u1.max(u2), w1.max(w2)))?;
    Some((100u64.saturating_sub(used), now + TimeDelta::minutes(wait)))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The application's budget (`X-App-Usage`, counted per app id across every account that uses
/// the app): `(percent left, when it is back)`.
pub fn app_usage(headers: &HeaderMap, now: DateTime<Utc>) -> Option<(u64, DateTime<Utc>)> {
    let app = header(headers, "x-app-usage")
        .and_then(|v| serde_json::from_str::<PlatformUsage>(v).ok())?;
    budget([app.reading()], now)
}

/// The account's budgets: `X-Business-Use-Case-Usage` (per Page, Instagram account or
/// business, the wait in minutes) and `X-Page-Usage` (per Page): `(percent left, when it is
/// back)`, the highest usage winning.
pub fn account_usage(headers: &HeaderMap, now: DateTime<Utc>) -> Option<(u64, DateTime<Utc>)> {
    let page = header(headers, "x-page-usage")
        .and_then(|v| serde_json::from_str::<PlatformUsage>(v).ok())
        .map(|p| p.reading());
    let buc = header(headers, "x-business-use-case-usage")
        .and_then(|v| {
            serde_json::from_str::<std::collections::HashMap<String, Vec<BucUsage>>>(v).ok()
        })
        .into_iter()
        .flat_map(|by_owner| by_owner.into_values().flatten())
        .map(|e| {
            let used = e.call_count.max(e.total_cputime).max(e.total_time);
            (used, e.estimated_time_to_regain_access.max(0))
        });
    budget(page.into_iter().chain(buc), now)
}

/// Every budget Meta's usage headers report, the highest usage winning: `(percent left, when it
/// is back)`.
pub fn usage(headers: &HeaderMap, now: DateTime<Utc>) -> Option<(u64, DateTime<Utc>)> {
    let both = [app_usage(headers, now), account_usage(headers, now)];
    both.into_iter()
        .flatten()
        .reduce(|(l1, a1), (l2, a2)| (l1.min(l2), a1.max(a2)))
}

/// [`usage`] in the shape `PlatformApi::rate_limit` returns. Meta reports percentages, not
/// calls, so only a spent budget is reported (as in [`shared_rate_limits`]): a percentage left
/// with a "back in 0 minutes" estimate read as calls in a window that resets now made other
/// workers wait for nothing.
pub fn rate_limit(headers: &HeaderMap, now: DateTime<Utc>) -> (Option<u64>, Option<DateTime<Utc>>) {
    match usage(headers, now) {
        Some((0, back_at)) => (Some(0), Some(back_at)),
        _ => (None, None),
    }
}

/// The gate key of the application's Graph budget (`X-App-Usage`). It names no platform: the
/// Facebook Pages and Instagram adapters of one Meta app share it.
pub fn app_budget(client_id: &str) -> String {
    crate::platforms::app_key(client_id, "meta_app_usage")
}

/// The gate key of the account's Graph budget (business use case and Page usage), which every
/// call of the account draws from whatever its endpoint.
pub const ACCOUNT_BUDGET: &str = "meta_usage";

/// What a Graph answer says about the application's and the account's budgets, keyed for the
/// gate (see `PlatformApi::shared_rate_limits`).
pub fn shared_rate_limits(
    client_id: &str,
    headers: &HeaderMap,
    now: DateTime<Utc>,
) -> Vec<crate::platforms::http::SharedReading> {
    // Meta reports percentages, not calls: counting calls against them would close the gate
    // early or late. Only a spent budget is reported, closing it until Meta says it is back.
    let reading = |u: Option<(u64, DateTime<Utc>)>| match u {
        Some((0, at)) => (Some(0), Some(at)),
        _ => (None, None),
    };
    let (app_left, app_at) = reading(app_usage(headers, now));
    let (account_left, account_at) = reading(account_usage(headers, now));
    vec![
        (app_budget(client_id), app_left, app_at),
        (ACCOUNT_BUDGET.to_owned(), account_left, account_at),
    ]
}

/// When a rate-limited call may be tried again, if the headers say.
pub fn not_before(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    usage(headers, now)
        .filter(|(left, at)| *left == 0 && *at > now)
        .map(|(_, at)| at)
        .or_else(|| crate::oauth::retry_after(headers, now))
}

/// A request that failed in transit, for any call except the irreversible one: nothing
/// happened that cannot be repeated, so retry.
pub fn transport_failure(
    platform: &str,
    error: &reqwest::Error,
    ctx: CallContext,
) -> PlatformFailure {
    if error.is_builder() {
        return PlatformFailure::new(
            ErrorClass::Permanent,
            "invalid_request",
            format!(
                "Herald could not build the request to {}: check the {platform} API base URL",
                ctx.action
            ),
        );
    }
    PlatformFailure::new(
        ErrorClass::Retryable,
        "network",
        format!(
            "the request to {} {}; Herald will try again",
            ctx.action,
            transport_kind(platform, error)
        ),
    )
}

/// The irreversible call failed in transit. Only a connection never established proves nothing
/// was published; after that, the post may exist.
pub fn publish_transport_error(
    platform: &str,
    error: &reqwest::Error,
    ctx: CallContext,
) -> PostError {
    if error.is_builder() || error.is_connect() {
        return PostError::Failed(transport_failure(platform, error, ctx));
    }
    PostError::OutcomeUnknown(format!(
        "the request to {} {} after it was sent; the post may exist on {platform}",
        ctx.action,
        transport_kind(platform, error)
    ))
}

fn transport_kind(platform: &str, error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        format!("could not connect to {platform}")
    } else {
        "lost its connection".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn usage_headers_give_the_budget_and_the_wait() {
        let h = headers(&[
            (
                "x-app-usage",
                r#"{"call_count":100,"total_cputime":3,"total_time":4}"#,
            ),
            (
                "x-business-use-case-usage",
                r#"{"123":[{"type":"pages","call_count":100,"total_cputime":1,"total_time":1,"estimated_time_to_regain_access":7}]}"#,
            ),
        ]);
        // The app's budget (no stated wait: Meta's rolling hour) and the Page's, apart.
        assert_eq!(
            app_usage(&h, now()),
            Some((0, now() + TimeDelta::minutes(60)))
        );
        assert_eq!(
            account_usage(&h, now()),
            Some((0, now() + TimeDelta::minutes(7)))
        );
        assert_eq!(usage(&h, now()), Some((0, now() + TimeDelta::minutes(60))));
        assert_eq!(not_before(&h, now()), Some(now() + TimeDelta::minutes(60)));
        let page = headers(&[(
            "x-page-usage",
            r#"{"call_count":96,"total_cputime":10,"total_time":12}"#,
        )]);
        assert_eq!(account_usage(&page, now()), Some((4, now())));
        assert_eq!(app_usage(&page, now()), None);
        let keyed = shared_rate_limits("app-1", &h, now());
        assert_eq!(
            keyed,
            vec![
                (
                    "app:app-1:meta_app_usage".to_owned(),
                    Some(0),
                    Some(now() + TimeDelta::minutes(60))
                ),
                (
                    "meta_usage".to_owned(),
                    Some(0),
                    Some(now() + TimeDelta::minutes(7))
                ),
            ]
        );
        let relaxed = headers(&[(
            "x-app-usage",
            r#"{"call_count":28,"total_cputime":25,"total_time":25}"#,
        )]);
        assert_eq!(usage(&relaxed, now()), Some((72, now())));
        assert_eq!(not_before(&relaxed, now()), None);
        assert_eq!(usage(&HeaderMap::new(), now()), None);
    }

    #[test]
    fn error_bodies_parse_and_name_their_code() {
        let body = GraphErrorBody::parse(
            br#"{"error":{"message":"m","code":6000,"error_subcode":1363037,"error_user_msg":"Try again","error_data":{"start_offset":5}}}"#,
        );
        assert_eq!(body.code_name(400), "graph_6000_1363037");
        assert_eq!(body.explanation().as_deref(), Some("Try again"));
        assert_eq!(body.error.error_data.unwrap()["start_offset"], 5);
        assert_eq!(GraphErrorBody::parse(b"nope").code_name(502), "http_502");
    }
}
