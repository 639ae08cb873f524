//! Meta downloads media from the URLs it is given; the twin does the same, far enough to know
//! whether the URL answers and what it serves (type and size), without keeping the bytes.

/// What a media URL serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetched {
    /// The `Content-Type` without parameters, lowercase.
    pub content_type: String,
    /// The `Content-Length`, when given.
    pub length: Option<u64>,
}

/// Why a media URL could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// No answer within the twin's media fetch timeout.
    Timeout,
    /// Not an absolute http(s) URL, no connection, or a non-success status.
    Unreachable(String),
}

/// Requests `url` and reads only its headers.
pub(crate) async fn probe(http: &reqwest::Client, url: &str) -> Result<Fetched, FetchError> {
    let parsed = crate::outbound::loopback_only(url).map_err(FetchError::Unreachable)?;
    let response = http.get(parsed).send().await.map_err(|e| {
        if e.is_timeout() {
            FetchError::Timeout
        } else {
            FetchError::Unreachable(format!("the media URL could not be reached: {e}"))
        }
    })?;
    if !response.status().is_success() {
        return Err(FetchError::Unreachable(format!(
            "the media URL answered HTTP {}",
            response.status().as_u16()
        )));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Ok(Fetched {
        content_type,
        length: response.content_length(),
    })
}
