//! Where the twins may send requests of their own: this machine only. Control routes let any
//! caller name a URL (TikTok's webhook, Meta's Deauthorize Callback) and the Meta twin fetches
//! the media URLs it is given, so without this a sandbox left reachable would be an open proxy
//! into its network.

/// `raw` if it is an http(s) URL on a loopback address (`localhost`, `127.0.0.0/8`, `::1`).
pub(crate) fn loopback_only(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|_| format!("'{raw}' is not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !matches!(url.scheme(), "http" | "https") || !loopback {
        return Err(format!(
            "'{raw}' is not an http(s) URL on this machine: the sandbox calls loopback addresses only"
        ));
    }
    Ok(url)
}

/// An HTTP client for the twins' own requests: follows redirects only to loopback addresses.
pub(crate) fn client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("too many redirects");
            }
            match loopback_only(attempt.url().as_str()) {
                Ok(_) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            }
        }))
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_called() {
        for ok in [
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "https://[::1]:9/x",
            "http://127.9.9.9/",
        ] {
            assert!(loopback_only(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://169.254.169.254/latest",
            "http://10.0.0.1/",
            "https://example.com/hook",
            "file:///etc/passwd",
            "http://localhost.example.com/",
            "not a url",
        ] {
            assert!(loopback_only(refused).is_err(), "{refused}");
        }
    }
}
