//! OAuth 2.0 helpers shared by the platform twins: PKCE, opaque tokens, client
//! authentication and redirect construction.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A PKCE `code_challenge_method` (RFC 7636).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkceMethod {
    /// `S256`: challenge = BASE64URL-NOPAD(SHA256(verifier)).
    S256,
    /// `plain`: challenge = verifier.
    Plain,
}

impl PkceMethod {
    /// Parses the wire value (`S256` or `plain`, exact case).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "S256" => Some(Self::S256),
            "plain" => Some(Self::Plain),
            _ => None,
        }
    }
}

/// The S256 challenge for `verifier`.
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` matches `challenge` under `method`.
pub fn verify_pkce(method: PkceMethod, challenge: &str, verifier: &str) -> bool {
    let computed = match method {
        PkceMethod::S256 => s256_challenge(verifier),
        PkceMethod::Plain => verifier.to_owned(),
    };
    constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

/// Compares secrets without an early exit on the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A random opaque token: `bytes` random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// Parses `Authorization: Basic base64(id:secret)` into `(id, secret)`.
pub fn parse_basic_auth(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// Parses `Authorization: Bearer <token>` into the token.
pub fn parse_bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `redirect_uri` with `params` appended to its query (existing query kept).
pub fn redirect_with(redirect_uri: &url::Url, params: &[(&str, &str)]) -> String {
    let mut url = redirect_uri.clone();
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

/// Parses a redirect URI usable for redirects: absolute http(s) without fragment.
pub fn parse_redirect_uri(raw: &str) -> Option<url::Url> {
    let url = url::Url::parse(raw).ok()?;
    let ok = matches!(url.scheme(), "http" | "https") && url.fragment().is_none();
    ok.then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            s256_challenge(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(verify_pkce(
            PkceMethod::S256,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            verifier
        ));
        assert!(!verify_pkce(
            PkceMethod::S256,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN",
            verifier
        ));
    }

    #[test]
    fn plain_pkce_compares_verbatim() {
        assert!(verify_pkce(PkceMethod::Plain, "challenge", "challenge"));
        assert!(!verify_pkce(PkceMethod::Plain, "challenge", "challengE"));
        assert_eq!(PkceMethod::parse("s256"), None);
    }

    #[test]
    fn basic_and_bearer_parsing() {
        let h = format!("Basic {}", STANDARD.encode("id:sec:ret"));
        assert_eq!(
            parse_basic_auth(&h),
            Some(("id".to_owned(), "sec:ret".to_owned()))
        );
        assert_eq!(parse_basic_auth("Bearer abc"), None);
        assert_eq!(parse_bearer("Bearer abc"), Some("abc"));
        assert_eq!(parse_bearer("bearer  abc "), Some("abc"));
        assert_eq!(parse_bearer("Bearer "), None);
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = random_token(32);
        assert!(a.len() >= 40);
        assert_ne!(a, random_token(32));
    }

    #[test]
    fn redirect_keeps_existing_query() {
        let u = parse_redirect_uri("http://localhost:9/cb?x=1").unwrap();
        assert_eq!(
            redirect_with(&u, &[("state", "a b"), ("code", "c")]),
            "http://localhost:9/cb?x=1&state=a+b&code=c"
        );
        assert!(parse_redirect_uri("ftp://x/").is_none());
        assert!(parse_redirect_uri("/relative").is_none());
    }
}
