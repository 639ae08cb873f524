//! Downloading the media a post references. Users give Herald URLs; without a check, a URL
//! could make Herald read from its own network (SSRF: `http://169.254.169.254/`,
//! `http://localhost:5432/`, an internal admin page). Every address a media URL reaches —
//! the first request, each redirect, and each DNS answer at connection time, so DNS rebinding
//! is covered too — must be public unless the deployment allows it.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use herald_domain::{ErrorClass, PlatformFailure, VideoProbe};
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
    #[error("media URL host '{host}' is allowed by HERALD_MEDIA_ALLOWED_HOSTS on other ports only, not on port {port}")]
    PortNotAllowed { host: String, port: u16 },
}

/// An allowlist entry's host and port: `cdn.internal`, `cdn.internal:8081`, `[fd00::1]:8081`.
fn split_host_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest, None),
        };
    }
    match entry.rsplit_once(':') {
        // One colon: name or IPv4 with a port; more: a bare IPv6 address.
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
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

    /// Whether `host` on `port` is listed: as `host`, or as `host:port`. `port` is `None` only
    /// where the caller cannot know it (the resolver): then a `host:port` entry counts too,
    /// because every URL is checked with its port before its host is resolved
    /// (`refuse_other_ports`).
    fn host_allowed(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.to_ascii_lowercase();
        self.allowed_hosts.iter().any(|allowed| {
            let (name, listed_port) = split_host_port(allowed);
            name == host && (listed_port.is_none() || port.is_none() || listed_port == port)
        })
    }

    /// A host listed only with other ports (`cdn.internal:8081`) is allowed on those alone;
    /// on any other port it is refused outright, since its name would pass the resolver.
    fn refuse_other_ports(&self, url: &Url) -> Result<(), MediaUrlRefused> {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let listed = self
            .allowed_hosts
            .iter()
            .any(|allowed| split_host_port(allowed).0 == bare.to_ascii_lowercase());
        if listed && !self.host_allowed(host, Some(port.unwrap_or(0))) {
            return Err(MediaUrlRefused::PortNotAllowed {
                host: host.to_string(),
                port: port.unwrap_or(0),
            });
        }
        Ok(())
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
        if self.allow_private {
            return Ok(());
        }
        self.refuse_other_ports(&url)?;
        if self.host_allowed(host, port) {
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
        if self.allow_private {
            return Ok(());
        }
        self.refuse_other_ports(url)?;
        if self.host_allowed(host, url.port_or_known_default()) {
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
                // IETF protocol assignments (192.0.0.0/24: DS-Lite, NAT64 discovery, ...).
                || v4.octets()[..3] == [192, 0, 0]
                || (a == 198 && (b == 18 || b == 19))
            {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let embedded = |high: u16, low: u16| {
                let [a, b] = high.to_be_bytes();
                let [c, d] = low.to_be_bytes();
                std::net::Ipv4Addr::new(a, b, c, d)
            };
            // Addresses that carry an IPv4 address reach that address: IPv4-mapped
            // (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d), 6to4
            // (2002:aabb:ccdd::).
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_kind(IpAddr::V4(v4));
            }
            if segments[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return non_public_kind(IpAddr::V4(embedded(segments[6], segments[7])))
                    .or(Some("reserved (IPv4-compatible)"));
            }
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return non_public_kind(IpAddr::V4(embedded(segments[6], segments[7])));
            }
            if segments[0] == 0x2002 {
                return non_public_kind(IpAddr::V4(embedded(segments[1], segments[2])));
            }
            let first = segments[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast()
                // Local-use NAT64 (64:ff9b:1::/48), discard-only (100::/64), Teredo
                // (2001::/32, whose IPv4 part is hidden), documentation (2001:db8::/32).
                || segments[..3] == [0x64, 0xff9b, 1]
                || segments[..4] == [0x100, 0, 0, 0]
                || segments[..2] == [0x2001, 0]
                || segments[..2] == [0x2001, 0xdb8]
            {
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

/// A client builder for requests to URLs users name: its resolver refuses, at connection time,
/// any answer `policy` does not allow, so a name that resolved to a public address when it was
/// checked cannot be pointed at Herald's own network afterwards (DNS rebinding). Callers still
/// check each URL first (`MediaUrlPolicy::check`: literal IPs never reach a resolver) and choose
/// their redirect policy.
pub fn guarded_client(policy: Arc<MediaUrlPolicy>) -> reqwest::ClientBuilder {
    reqwest::Client::builder().dns_resolver(Arc::new(PublicOnlyResolver { policy }))
}

/// Streams media from user-given URLs under a `MediaUrlPolicy`.
#[derive(Clone)]
pub struct MediaSource {
    client: reqwest::Client,
    policy: Arc<MediaUrlPolicy>,
    /// Bytes all probes of this source may hold at once, in KiB: a video header can be tens of
    /// MB, so without a shared budget many concurrent requests could hold gigabytes.
    probe_memory: Arc<tokio::sync::Semaphore>,
}

/// What all concurrent probes of one `MediaSource` may hold in memory.
const PROBE_MEMORY_BYTES: u64 = 256 * 1024 * 1024;

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
        let client = guarded_client(policy.clone())
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
        Ok(Self {
            client,
            policy,
            probe_memory: Arc::new(tokio::sync::Semaphore::new(
                (PROBE_MEMORY_BYTES / 1024) as usize,
            )),
        })
    }

    /// Waits until `bytes` fit in the probes' memory budget; released when dropped.
    async fn reserve_probe_memory(&self, bytes: u64) -> tokio::sync::OwnedSemaphorePermit {
        let kib = bytes.div_ceil(1024).min(PROBE_MEMORY_BYTES / 1024) as u32;
        self.probe_memory
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("the probe budget is never closed")
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
        // The same checks as a redirect: the scheme, the port of a listed host, a literal IP.
        self.policy.check_redirect(&parsed).map_err(refused)?;
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
            pending: bytes::Bytes::new(),
        })
    }
}

/// How much of a file's start is read first when probing: enough for the header of a file
/// written for streaming ("fast start").
const PROBE_HEAD: u64 = 64 * 1024;
/// Largest `moov` box Herald reads (hours of video have a few MB of sample tables).
const MAX_MOOV: u64 = 64 * 1024 * 1024;

impl MediaSource {
    /// Reads a video's duration and frame size from its MP4/MOV header with `mp4parse`,
    /// fetching only the header boxes with HTTP ranges, never the media data. `Ok(None)` when
    /// the file is not an MP4/MOV Herald can read (the platform will judge it).
    pub async fn probe_video(&self, url: &str) -> Result<Option<VideoProbe>, PlatformFailure> {
        let _head = self.reserve_probe_memory(PROBE_HEAD).await;
        let mut reader = RangeReader::open(self, url).await?;
        let total = reader.total;
        let mut offset = 0u64;
        let mut ftyp = None;
        let mut moov = None;
        for _ in 0..64 {
            if total.is_some_and(|t| offset >= t) {
                break;
            }
            let header = reader.read_at(offset, 16).await?;
            if header.len() < 8 {
                break;
            }
            let short = u64::from(u32::from_be_bytes(
                header[0..4].try_into().expect("4 bytes"),
            ));
            let name = &header[4..8];
            let (size, header_len) = match short {
                1 if header.len() >= 16 => (
                    u64::from_be_bytes(header[8..16].try_into().expect("8 bytes")),
                    16,
                ),
                0 => (total.unwrap_or(offset + 8).saturating_sub(offset), 8),
                size => (size, 8),
            };
            if size < header_len {
                break;
            }
            match name {
                b"ftyp" if size <= 4096 => ftyp = Some(reader.read_at(offset, size).await?),
                b"moov" if size <= MAX_MOOV => {
                    // Held while the header is parsed, a little after this loop.
                    let _moov = self.reserve_probe_memory(size).await;
                    moov = Some(reader.read_at(offset, size).await?);
                    break;
                }
                _ => {}
            }
            offset += size;
        }
        let (Some(ftyp), Some(moov)) = (ftyp, moov) else {
            return Ok(None);
        };
        let mut header = ftyp;
        header.extend_from_slice(&moov);
        let context = match mp4parse::read_mp4(&mut std::io::Cursor::new(header)) {
            Ok(context) => context,
            Err(error) => {
                tracing::info!(?error, "the video header could not be parsed; not probed");
                return Ok(None);
            }
        };
        let Some(track) = context
            .tracks
            .iter()
            .find(|t| t.track_type == mp4parse::TrackType::Video)
        else {
            return Ok(None);
        };
        let (Some(duration), Some(timescale), Some(tkhd)) =
            (&track.duration, &track.timescale, &track.tkhd)
        else {
            return Ok(None);
        };
        if timescale.0 == 0 {
            return Ok(None);
        }
        Ok(Some(VideoProbe {
            duration_ms: duration.0.saturating_mul(1000) / timescale.0,
            // tkhd sizes are 16.16 fixed point.
            width: tkhd.width >> 16,
            height: tkhd.height >> 16,
            bytes: total.unwrap_or(0),
        }))
    }
}

/// Reads byte ranges of a remote file, keeping the first `PROBE_HEAD` bytes.
struct RangeReader<'a> {
    source: &'a MediaSource,
    url: &'a str,
    head: Vec<u8>,
    total: Option<u64>,
}

impl<'a> RangeReader<'a> {
    async fn open(source: &'a MediaSource, url: &'a str) -> Result<Self, PlatformFailure> {
        let mut reader = Self {
            source,
            url,
            head: Vec::new(),
            total: None,
        };
        let (head, total) = reader.fetch(0, PROBE_HEAD).await?;
        reader.head = head;
        reader.total = total;
        Ok(reader)
    }

    async fn read_at(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, PlatformFailure> {
        let end = offset.saturating_add(len);
        if end <= self.head.len() as u64 || self.total.is_some_and(|t| offset >= t) {
            let start = (offset as usize).min(self.head.len());
            let end = (end as usize).min(self.head.len());
            return Ok(self.head[start..end].to_vec());
        }
        Ok(self.fetch(offset, len).await?.0)
    }

    /// `len` bytes from `offset`, and the whole file's size when the server says.
    async fn fetch(
        &self,
        offset: u64,
        len: u64,
    ) -> Result<(Vec<u8>, Option<u64>), PlatformFailure> {
        let range = format!("bytes={offset}-{}", offset + len.max(1) - 1);
        let response = self
            .source
            .client
            .get(self.url)
            .header(reqwest::header::RANGE, range)
            .send()
            .await
            .map_err(|e| source_failure(&e))?;
        let partial = response.status() == reqwest::StatusCode::PARTIAL_CONTENT;
        if !response.status().is_success() {
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                format!("media_http_{}", response.status().as_u16()),
                format!(
                    "reading the video from its URL failed with HTTP {}: check that the media URL is public and still valid",
                    response.status()
                ),
            ));
        }
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
        // A server that ignores ranges sends the whole file: read only up to what is needed,
        // and not at all past the first few MB.
        let (skip, want) = if partial {
            (0, len)
        } else if offset <= 8 * 1024 * 1024 {
            (offset, len)
        } else {
            return Ok((Vec::new(), total));
        };
        let mut download = Download {
            response,
            total,
            skip,
            pending: bytes::Bytes::new(),
        };
        let mut bytes = Vec::with_capacity(want.min(PROBE_HEAD) as usize);
        while (bytes.len() as u64) < want {
            match download.chunk().await? {
                Some(piece) => bytes.extend_from_slice(&piece),
                None => break,
            }
        }
        bytes.truncate(want as usize);
        Ok((bytes, total))
    }
}

/// A download in progress.
pub struct Download {
    response: reqwest::Response,
    /// The whole file's size, when the server said.
    pub total: Option<u64>,
    /// Bytes at the start of the body to drop (the server ignored the requested range).
    skip: u64,
    /// Read from the body but not yet handed out by `read_exact`.
    pending: bytes::Bytes,
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

    /// Exactly the next `n` bytes (one upload chunk), or a retryable failure when the body
    /// ends first. Do not mix with `chunk`.
    pub async fn read_exact(&mut self, n: usize) -> Result<bytes::Bytes, PlatformFailure> {
        let mut buffer = bytes::BytesMut::with_capacity(n);
        while buffer.len() < n {
            if self.pending.is_empty() {
                self.pending = self.chunk().await?.ok_or_else(|| {
                    PlatformFailure::new(
                        ErrorClass::Retryable,
                        "media_source_short",
                        "the media URL sent fewer bytes than its Content-Length; Herald will try again",
                    )
                })?;
            }
            let take = (n - buffer.len()).min(self.pending.len());
            buffer.extend_from_slice(&self.pending.split_to(take));
        }
        Ok(buffer.freeze())
    }

    /// The MIME type the server gave, without parameters.
    pub fn content_type(&self) -> Option<String> {
        let value = self
            .response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)?
            .to_str()
            .ok()?;
        Some(value.split(';').next()?.trim().to_owned())
    }

    /// The rest of the body at once, or `None` as soon as it passes `limit` bytes (a body sent
    /// without Content-Length is read no further than that); for small files only.
    pub async fn into_bytes_within(
        mut self,
        limit: u64,
    ) -> Result<Option<bytes::Bytes>, PlatformFailure> {
        let mut all = bytes::BytesMut::new();
        while let Some(piece) = self.chunk().await? {
            if (all.len() + piece.len()) as u64 > limit {
                return Ok(None);
            }
            all.extend_from_slice(&piece);
        }
        Ok(Some(all.freeze()))
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
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("::8.8.8.8", "reserved (IPv4-compatible)"),
            ("64:ff9b::10.0.0.1", "private"),
            ("64:ff9b::169.254.169.254", "link-local"),
            ("64:ff9b:1::1", "reserved"),
            ("2002:7f00:1::", "loopback"),
            ("2002:a9fe:a9fe::1", "link-local"),
            ("2001:0:4136:e378::1", "reserved"),
            ("2001:db8::1", "reserved"),
            ("100::1", "reserved"),
            ("192.0.0.1", "reserved"),
            ("192.0.0.170", "reserved"),
        ] {
            assert_eq!(non_public_kind(ip(address)), Some(kind), "{address}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
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

    #[test]
    fn allowlist_entries_are_split_into_host_and_port() {
        assert_eq!(split_host_port("cdn.internal"), ("cdn.internal", None));
        assert_eq!(
            split_host_port("cdn.internal:8081"),
            ("cdn.internal", Some(8081))
        );
        assert_eq!(split_host_port("10.0.0.5:80"), ("10.0.0.5", Some(80)));
        assert_eq!(split_host_port("fd00::1"), ("fd00::1", None));
        assert_eq!(split_host_port("[fd00::1]:8081"), ("fd00::1", Some(8081)));
    }

    /// A `host:port` entry lets that name through on that port, to whatever it resolves, as a
    /// bare `host` entry does on every port; on another port the host is refused.
    #[tokio::test]
    async fn a_host_listed_with_a_port_is_fetched_on_that_port_only() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 1024];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            }
        });
        let source = MediaSource::new(
            MediaUrlPolicy::new(false, &format!("localhost:{port}")),
            Duration::from_secs(5),
        )
        .unwrap();
        let url = format!("http://localhost:{port}/a.png");
        assert!(source.policy().check(&url).await.is_ok());
        let body = source.open(&url, 0).await.unwrap();
        let body = body.into_bytes_within(2).await.unwrap().unwrap();
        assert_eq!(&body[..], b"ok");
        let body = source.open(&url, 0).await.unwrap();
        assert_eq!(body.into_bytes_within(1).await.unwrap(), None);

        let other = format!("http://localhost:{}/a.png", port.wrapping_add(1).max(1));
        let refused = source.policy().check(&other).await.unwrap_err();
        assert!(
            matches!(refused, MediaUrlRefused::PortNotAllowed { .. }),
            "{refused}"
        );
        let failure = source.open(&other, 0).await.err().unwrap();
        assert_eq!(failure.code, "media_url_refused", "{failure}");
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
