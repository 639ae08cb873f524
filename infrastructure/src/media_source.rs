//! Downloading the media a post references. Users give Herald URLs; without a check, a URL
//! could make Herald read from its own network (SSRF: `http://169.254.169.254/`,
//! `http://localhost:5432/`, an internal admin page). Every address a media URL reaches —
//! the first request, each redirect, and each DNS answer at connection time, so DNS rebinding
//! is covered too — must be public unless the deployment allows it.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use herald_domain::{ErrorClass, PlatformFailure};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Which media URLs Herald may fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaUrlPolicy {
    /// Fetch from private, loopback and link-local addresses too (development only).
    pub allow_private: bool,
    /// Hosts (`host` or `host:port`) allowed whatever they resolve to, e.g. an internal CDN or
    /// the sandbox.
    pub allowed_hosts: Vec<String>,
}

/// Why a media URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaUrlRefused {
    #[error("media URL '{0}' must be an absolute http(s) URL")]
    NotHttp(String),
    #[error("media URL host '{host}' resolves to {address}, a {kind} address; Herald fetches media only from public addresses (allow the host with HERALD_MEDIA_ALLOWED_HOSTS if it is yours)")]
    NotPublic {
        host: String,
        address: IpAddr,
        kind: &'static str,
    },
    #[error("media URL host '{0}' does not resolve")]
    Unresolvable(String),
}

impl MediaUrlPolicy {
    /// A policy from configuration: `allowed_hosts` is comma-separated.
    pub fn new(allow_private: bool, allowed_hosts: &str) -> Self {
        Self {
            allow_private,
            allowed_hosts: allowed_hosts
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    /// Also allows `host` (e.g. the in-process sandbox's address).
    pub fn allowing(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into().to_ascii_lowercase());
        self
    }

    fn host_allowed(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.to_ascii_lowercase();
        self.allowed_hosts.iter().any(|allowed| {
            let allowed = allowed.as_str();
            allowed == host
                || port.is_some_and(|port| {
                    allowed == format!("{host}:{port}") || allowed == format!("[{host}]:{port}")
                })
        })
    }

    fn check_address(&self, host: &str, address: IpAddr) -> Result<(), MediaUrlRefused> {
        if self.allow_private {
            return Ok(());
        }
        match non_public_kind(address) {
            Some(kind) => Err(MediaUrlRefused::NotPublic {
                host: host.to_string(),
                address,
                kind,
            }),
            None => Ok(()),
        }
    }

    /// Checks a URL before a job is accepted: the scheme, and every address its host
    /// resolves to now.
    pub async fn check(&self, raw: &str) -> Result<(), MediaUrlRefused> {
        let url = Url::parse(raw).map_err(|_| MediaUrlRefused::NotHttp(raw.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(MediaUrlRefused::NotHttp(raw.to_string()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| MediaUrlRefused::NotHttp(raw.to_string()))?;
        let port = url.port_or_known_default();
        if self.host_allowed(host, url.port()) || self.allow_private {
            return Ok(());
        }
        if let Some(ip) = literal_ip(&url) {
            return self.check_address(host, ip);
        }
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port.unwrap_or(80)))
            .await
            .map_err(|_| MediaUrlRefused::Unresolvable(host.to_string()))?
            .collect();
        if addresses.is_empty() {
            return Err(MediaUrlRefused::Unresolvable(host.to_string()));
        }
        for address in addresses {
            self.check_address(host, address.ip())?;
        }
        Ok(())
    }

    /// A URL reached by redirect: hosts given as IP literals are checked here; names are
    /// checked by the resolver when the connection is made.
    fn check_redirect(&self, url: &Url) -> Result<(), MediaUrlRefused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(MediaUrlRefused::NotHttp(url.to_string()));
        }
        let host = url.host_str().unwrap_or_default();
        if self.host_allowed(host, url.port()) {
            return Ok(());
        }
        match literal_ip(url) {
            Some(ip) => self.check_address(host, ip),
            None => Ok(()),
        }
    }
}

fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// What kind of non-public address `ip` is, or `None` for a public one.
pub fn non_public_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() || a == 0 {
                Some("unspecified")
            } else if a == 100 && (64..128).contains(&b) {
                Some("shared (carrier-grade NAT)")
            } else if v4.is_multicast()
                || v4.is_broadcast()
                || a >= 240
                || v4.is_documentation()
                || (a == 198 && (b == 18 || b == 19))
            {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_kind(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("reserved")
            } else {
                None
            }
        }
    }
}

/// Resolves names and refuses answers that are not public, at connection time.
struct PublicOnlyResolver {
    policy: Arc<MediaUrlPolicy>,
}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !policy.host_allowed(&host, None) {
                for address in &addresses {
                    policy.check_address(&host, address.ip())?;
                }
            }
            let addrs: Addrs = Box::new(addresses.into_iter());
            Ok(addrs)
        })
    }
}

/// Streams media from user-given URLs under a `MediaUrlPolicy`.
#[derive(Clone)]
pub struct MediaSource {
    client: reqwest::Client,
    policy: Arc<MediaUrlPolicy>,
}

impl std::fmt::Debug for MediaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSource")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl MediaSource {
    pub fn new(policy: MediaUrlPolicy, read_timeout: Duration) -> reqwest::Result<Self> {
        let policy = Arc::new(policy);
        let redirect_policy = policy.clone();
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PublicOnlyResolver {
                policy: policy.clone(),
            }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error("too many redirects");
                }
                match redirect_policy.check_redirect(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(refused) => attempt.error(refused),
                }
            }))
            .connect_timeout(read_timeout.min(Duration::from_secs(10)))
            .read_timeout(read_timeout)
            .build()?;
        Ok(Self { client, policy })
    }

    /// The policy this source enforces.
    pub fn policy(&self) -> &MediaUrlPolicy {
        &self.policy
    }

    /// Starts downloading `url` from byte `offset` (0 for the whole file). A server that
    /// ignores the range answers 200 with the whole file: `Download::skip` says how many bytes
    /// to drop. A client error is the URL's fault; anything else may pass.
    pub async fn open(&self, url: &str, offset: u64) -> Result<Download, PlatformFailure> {
        let parsed = Url::parse(url).map_err(|_| refused(MediaUrlRefused::NotHttp(url.into())))?;
        if let Some(ip) = literal_ip(&parsed) {
            let host = parsed.host_str().unwrap_or_default();
            if !self.policy.host_allowed(host, parsed.port()) {
                self.policy.check_address(host, ip).map_err(refused)?;
            }
        }
        let mut request = self.client.get(parsed);
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let response = request.send().await.map_err(|e| source_failure(&e))?;
        let status = response.status();
        if !status.is_success() {
            let class = if status.is_server_error() || status.as_u16() == 429 {
                ErrorClass::Retryable
            } else {
                ErrorClass::Permanent
            };
            let advice = match class {
                ErrorClass::Retryable => "Herald will try again",
                _ => "check that the media URL is public and still valid",
            };
            return Err(PlatformFailure::new(
                class,
                format!("media_http_{}", status.as_u16()),
                format!("downloading the media from its URL failed with HTTP {status}: {advice}"),
            ));
        }
        let partial = status == reqwest::StatusCode::PARTIAL_CONTENT;
        let skip = if partial { 0 } else { offset };
        // The whole file's size: from Content-Range on a 206, Content-Length otherwise.
        let total = if partial {
            response
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit('/').next())
                .and_then(|v| v.parse::<u64>().ok())
        } else {
            response.content_length()
        };
        Ok(Download {
            response,
            total,
            skip,
        })
    }
}

/// A download in progress.
pub struct Download {
    response: reqwest::Response,
    /// The whole file's size, when the server said.
    pub total: Option<u64>,
    /// Bytes at the start of the body to drop (the server ignored the requested range).
    skip: u64,
}

impl Download {
    /// The next piece of the body from the requested offset; `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, PlatformFailure> {
        loop {
            let Some(mut piece) = self
                .response
                .chunk()
                .await
                .map_err(|e| source_failure(&e))?
            else {
                return Ok(None);
            };
            if self.skip == 0 {
                return Ok(Some(piece));
            }
            let drop = self.skip.min(piece.len() as u64) as usize;
            self.skip -= drop as u64;
            let rest = piece.split_off(drop);
            if !rest.is_empty() {
                return Ok(Some(rest));
            }
        }
    }

    /// The whole file's size, or a permanent failure saying the URL must send it (platforms
    /// need the size before an upload starts).
    pub fn require_total(&self) -> Result<u64, PlatformFailure> {
        self.total.ok_or_else(|| {
            PlatformFailure::new(
                ErrorClass::Permanent,
                "media_length_unknown",
                "the media URL must send Content-Length: the platform needs the size before the upload starts; serve the file with a Content-Length header",
            )
        })
    }
}

fn refused(refused: MediaUrlRefused) -> PlatformFailure {
    PlatformFailure::new(
        ErrorClass::Permanent,
        "media_url_refused",
        refused.to_string(),
    )
}

fn source_failure(error: &reqwest::Error) -> PlatformFailure {
    // A refusal by the resolver or the redirect policy is permanent and says why.
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = cause {
        if let Some(refusal) = e.downcast_ref::<MediaUrlRefused>() {
            return refused(refusal.clone());
        }
        cause = e.source();
    }
    if error.is_builder() || error.is_redirect() {
        return PlatformFailure::new(
            ErrorClass::Permanent,
            "media_url_invalid",
            "the media URL is not a valid http(s) URL or redirects too often: check it",
        );
    }
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "was interrupted"
    };
    PlatformFailure::new(
        ErrorClass::Retryable,
        "media_source_network",
        format!("downloading the media from its URL {what}; Herald will try again"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_not_public() {
        for (address, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("::1", "loopback"),
            ("fd00::1", "private (unique local)"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
        ] {
            assert_eq!(non_public_kind(ip(address)), Some(kind), "{address}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert_eq!(non_public_kind(ip(public)), None, "{public}");
        }
    }

    #[tokio::test]
    async fn urls_reaching_internal_addresses_are_refused_unless_allowed() {
        let policy = MediaUrlPolicy::default();
        let refused = policy
            .check("http://169.254.169.254/latest/meta-data")
            .await
            .unwrap_err();
        assert!(matches!(
            refused,
            MediaUrlRefused::NotPublic {
                kind: "link-local",
                ..
            }
        ));
        assert!(refused.to_string().contains("HERALD_MEDIA_ALLOWED_HOSTS"));
        assert!(policy.check("http://localhost:8081/a.png").await.is_err());
        assert!(policy.check("file:///etc/passwd").await.is_err());
        assert!(policy.check("http://[::1]/a.png").await.is_err());

        let allowed = MediaUrlPolicy::new(false, "localhost:8081, cdn.internal");
        assert!(allowed.check("http://localhost:8081/a.png").await.is_ok());
        assert!(allowed.check("http://localhost:8082/a.png").await.is_err());
        assert!(MediaUrlPolicy::new(true, "")
            .check("http://127.0.0.1/a.png")
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_download_from_a_loopback_address_is_refused_before_connecting() {
        let source = MediaSource::new(MediaUrlPolicy::default(), Duration::from_secs(2)).unwrap();
        let failure = source
            .open("http://127.0.0.1:9/a.mp4", 0)
            .await
            .err()
            .unwrap();
        assert_eq!(failure.code, "media_url_refused");
        assert_eq!(failure.class, ErrorClass::Permanent);
        let failure = source
            .open("http://localhost:9/a.mp4", 0)
            .await
            .err()
            .unwrap();
        assert_eq!(failure.code, "media_url_refused", "{failure}");
    }
}
