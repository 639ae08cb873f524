//! Meta Graph API pieces shared by the Meta twins (Threads under `/threads`, Facebook Pages and
//! Instagram under `/meta`): the error envelope (platform-facts §3.2), the usage headers (§3.3),
//! parameters that may come in the query or a form body, and Graph's time formats.

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::faults::{self, Fault};

/// A Graph API error: `{"error":{"message","type","code","error_subcode","fbtrace_id"}}`.
pub fn graph_error(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: i64,
    subcode: Option<i64>,
) -> HttpResponse {
    graph_error_with(status, message, kind, code, subcode, json!({}))
}

/// [`graph_error`] with extra members in `error` (`error_user_title`, `error_user_msg`,
/// `error_data`, ...).
pub fn graph_error_with(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: i64,
    subcode: Option<i64>,
    extra: Value,
) -> HttpResponse {
    let mut error = json!({
        "message": message,
        "type": kind,
        "code": code,
        "fbtrace_id": format!("A{}", crate::oauth::random_token(9)),
    });
    if let Some(subcode) = subcode {
        error["error_subcode"] = json!(subcode);
    }
    // Meta marks its "unknown" and "service" errors as transient.
    error["is_transient"] = json!(matches!(code, 1 | 2 | -1));
    if let (Some(error), Some(extra)) = (error.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            error.insert(k.clone(), v.clone());
        }
    }
    HttpResponse::build(status).json(json!({ "error": error }))
}

/// Error 100: a parameter is missing or invalid.
pub fn invalid_parameter(message: &str, subcode: Option<i64>) -> HttpResponse {
    graph_error(
        StatusCode::BAD_REQUEST,
        message,
        "OAuthException",
        100,
        subcode,
    )
}

/// Graph's answer for an id the caller cannot see (code 100, subcode 33).
pub fn no_object(id: &str) -> HttpResponse {
    graph_error(
        StatusCode::BAD_REQUEST,
        &format!("Unsupported request: object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation"),
        "GraphMethodException",
        100,
        Some(33),
    )
}

/// Error 101: the app secret is wrong.
pub fn bad_client_secret() -> HttpResponse {
    graph_error(
        StatusCode::BAD_REQUEST,
        "Error validating client secret.",
        "OAuthException",
        101,
        None,
    )
}

fn set_header(resp: &mut HttpResponse, name: &'static str, value: &Value) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

/// `X-App-Usage: {"call_count","total_cputime","total_time"}` in percent of the app's budget.
pub fn set_app_usage(resp: &mut HttpResponse, percent: u64) {
    set_header(
        resp,
        "x-app-usage",
        &json!({"call_count": percent, "total_cputime": percent / 2, "total_time": percent / 2}),
    );
}

/// `X-Business-Use-Case-Usage: {"<id>":[{"type","call_count",...,"estimated_time_to_regain_access"}]}`
/// (the wait in minutes).
pub fn set_buc_usage(resp: &mut HttpResponse, owner: &str, kind: &str, percent: u64, minutes: u64) {
    set_header(
        resp,
        "x-business-use-case-usage",
        &json!({ owner: [{
            "type": kind, "call_count": percent, "total_cputime": percent / 2,
            "total_time": percent / 2, "estimated_time_to_regain_access": minutes,
        }]}),
    );
}

/// How a twin answers when its rate limit is reached.
#[derive(Debug, Clone, Copy)]
pub struct Throttle<'a> {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// Graph error code (4 app, 17 user, 32 page, 80001 Pages BUC, 80002 Instagram BUC).
    pub code: i64,
    pub message: &'a str,
    /// Business-use-case owner id and type (`pages`, `instagram`, `threads`); `None` for an
    /// app-level limit, which only `X-App-Usage` reports.
    pub buc: Option<(&'a str, &'a str)>,
}

impl Throttle<'_> {
    /// Meta's throttling error for this limit, without the usage header (the caller adds it).
    pub fn error(&self) -> HttpResponse {
        graph_error(self.status, self.message, "OAuthException", self.code, None)
    }
}

/// The response for a fault that prevents any effect, if `fault` is one: rate limits, server
/// errors, timeouts and content rejection (`content_rejected` as `(code, subcode)`).
pub async fn blocking_fault_response(
    fault: &Fault,
    throttle: Throttle<'_>,
    content_rejected: (i64, Option<i64>),
) -> Option<HttpResponse> {
    match fault {
        Fault::RateLimited { retry_after_secs } => {
            let mut resp = throttle.error();
            // The spent budget's own header: the app's, or the business use case's with the
            // wait in minutes.
            match throttle.buc {
                Some((owner, kind)) => {
                    set_buc_usage(&mut resp, owner, kind, 100, retry_after_secs.div_ceil(60))
                }
                None => set_app_usage(&mut resp, 100),
            }
            Some(resp)
        }
        Fault::ServerError { status } => Some(graph_error(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "An unknown error has occurred.",
            "OAuthException",
            1,
            None,
        )),
        Fault::Timeout { secs } => {
            tokio::time::sleep(faults::secs(*secs)).await;
            Some(graph_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "An unexpected error has occurred. Please retry your request later.",
                "OAuthException",
                2,
                None,
            ))
        }
        Fault::ContentRejected { detail } => Some(graph_error(
            StatusCode::BAD_REQUEST,
            detail,
            "OAuthException",
            content_rejected.0,
            content_rejected.1,
        )),
        _ => None,
    }
}

/// Applies `timeout_after_success`: the effect has happened; the client should time out
/// before this answer arrives.
pub async fn delay_after_success(fault: Option<&Fault>) {
    if let Some(Fault::TimeoutAfterSuccess { secs }) = fault {
        tokio::time::sleep(faults::secs(*secs)).await;
    }
}

/// Query parameters followed by form-body parameters, percent-decoded.
pub fn params(req: &HttpRequest, body: &[u8]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(req.query_string().as_bytes())
            .into_owned()
            .collect();
    pairs.extend(url::form_urlencoded::parse(body).into_owned());
    pairs
}

/// The value of the first parameter named `name`.
pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The access token of a request: the `access_token` parameter, or an `Authorization` header
/// with the `Bearer` or `OAuth` scheme (Meta's upload hosts use `OAuth`).
pub fn request_token(req: &HttpRequest, params: &[(String, String)]) -> Option<String> {
    if let Some(token) = param(params, "access_token") {
        return Some(token.to_owned());
    }
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    if let Some(token) = crate::oauth::parse_bearer(header) {
        return Some(token.to_owned());
    }
    let (scheme, rest) = header.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("oauth") && !rest.trim().is_empty())
        .then(|| rest.trim().to_owned())
}

/// Graph's timestamp shape (`2025-01-02T03:04:05+0000`).
pub fn graph_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%z").to_string()
}

/// Parses `since`/`until`: a Unix timestamp or an RFC 3339 time.
pub fn parse_time(raw: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    raw.parse::<i64>()
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(raw)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc))
        })
}

/// The requested `fields` (comma-separated), or `default` when none are given.
pub fn fields<'a>(pairs: &'a [(String, String)], default: &'a str) -> Vec<&'a str> {
    param(pairs, "fields")
        .unwrap_or(default)
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect()
}

/// The page of a list after `after` (an opaque cursor) with `limit` items, and the cursor of
/// the next page if there is one.
pub fn paginate<T: Clone>(items: &[T], p: &[(String, String)]) -> (Vec<T>, Option<String>) {
    let limit = param(p, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, 100);
    let start = param(p, "after")
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0);
    let page: Vec<T> = items.iter().skip(start).take(limit).cloned().collect();
    let end = start + page.len();
    let next = (end < items.len()).then(|| URL_SAFE_NO_PAD.encode(end.to_string()));
    (page, next)
}

/// `{cursors, next}`: `next` is the same request with `after` set to the next cursor.
pub fn paging(req: &HttpRequest, p: &[(String, String)], next: Option<String>) -> Value {
    let mut paging = json!({ "cursors": {} });
    if let Some(cursor) = next {
        let info = req.connection_info();
        let mut url = url::Url::parse(&format!(
            "{}://{}{}",
            info.scheme(),
            info.host(),
            req.path()
        ))
        .expect("request URL is valid");
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in p.iter().filter(|(k, _)| k != "after") {
                q.append_pair(k, v);
            }
            q.append_pair("after", &cursor);
        }
        paging["cursors"]["after"] = json!(cursor);
        paging["next"] = json!(url.to_string());
    }
    paging
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_fields() {
        assert_eq!(
            parse_time("1700000000").map(|t| t.timestamp()),
            Some(1_700_000_000)
        );
        assert!(parse_time("2025-01-02T03:04:05Z").is_some());
        assert!(parse_time("yesterday").is_none());
        let p = vec![("fields".to_owned(), "id, name,".to_owned())];
        assert_eq!(fields(&p, "id"), ["id", "name"]);
        assert_eq!(fields(&[], "id"), ["id"]);
    }

    #[test]
    fn pagination_cursors() {
        let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> {
            items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let items: Vec<u32> = (0..5).collect();
        let (first, next) = paginate(&items, &pairs(&[("limit", "2")]));
        assert_eq!(first, [0, 1]);
        let next = next.unwrap();
        let (second, _) = paginate(&items, &pairs(&[("limit", "2"), ("after", &next)]));
        assert_eq!(second, [2, 3]);
        let (all, none) = paginate(&items, &[]);
        assert_eq!((all.len(), none), (5, None));
    }
}
