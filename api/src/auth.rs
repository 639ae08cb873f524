//! Bearer-token auth: JWTs verified with an HS256 secret or a JWKS URL; the `sub` claim is the
//! user. In dev mode the secret is generated into the data dir and `herald token` mints tokens.
use std::future::{ready, Ready};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use anyhow::Context;
use herald_domain::UserId;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::problem::ApiError;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
}

enum Keys {
    Hs256(Vec<u8>),
    Jwks {
        url: String,
        http: reqwest::Client,
        cache: RwLock<(Option<JwkSet>, Option<Instant>)>,
        max_age: Duration,
    },
}

/// Verifies bearer tokens.
#[derive(Clone)]
pub struct Authenticator {
    keys: Arc<Keys>,
    issuer: Option<String>,
    audience: Option<String>,
}

/// Don't refetch the JWKS for an unknown `kid` more often than this.
const JWKS_REFRESH: Duration = Duration::from_secs(60);
/// A fetched JWKS is trusted this long; then it is fetched again, so a key the identity
/// provider removed (rotated out, or leaked) stops verifying tokens within this time.
const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// While the identity provider cannot be reached, the last JWKS still serves up to this age,
/// so a short outage of the provider does not lock every user out.
const JWKS_STALE_LIMIT: Duration = Duration::from_secs(3600);
/// The shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least as long as the
/// hash output (256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

impl Authenticator {
    pub fn hs256(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            keys: Arc::new(Keys::Hs256(secret.into())),
            issuer: None,
            audience: None,
        }
    }

    pub fn jwks(url: impl Into<String>) -> Self {
        Self {
            keys: Arc::new(Keys::Jwks {
                url: url.into(),
                http: reqwest::Client::new(),
                cache: RwLock::new((None, None)),
                max_age: JWKS_MAX_AGE,
            }),
            issuer: None,
            audience: None,
        }
    }

    /// The same JWKS authenticator trusting a fetched key set for `max_age` only.
    pub fn with_jwks_max_age(self, age: Duration) -> Self {
        let Keys::Jwks { url, http, .. } = &*self.keys else {
            return self;
        };
        Self {
            keys: Arc::new(Keys::Jwks {
                url: url.clone(),
                http: http.clone(),
                cache: RwLock::new((None, None)),
                max_age: age,
            }),
            ..self
        }
    }

    pub fn requiring(mut self, issuer: Option<String>, audience: Option<String>) -> Self {
        self.issuer = issuer;
        self.audience = audience;
        self
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // A token not valid yet is refused like an expired one.
        validation.validate_nbf = true;
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        validation
    }

    /// The user a bearer token speaks for.
    pub async fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        let invalid =
            |why: &str| ApiError::unauthorized(format!("the bearer token is not valid: {why}"));
        let claims = match &*self.keys {
            Keys::Hs256(secret) => {
                decode::<Claims>(
                    token,
                    &DecodingKey::from_secret(secret),
                    &self.validation(Algorithm::HS256),
                )
                .map_err(|e| invalid(&e.to_string()))?
                .claims
            }
            Keys::Jwks { .. } => {
                let header = decode_header(token).map_err(|e| invalid(&e.to_string()))?;
                let key = self.jwk_key(header.kid.as_deref()).await?;
                decode::<Claims>(token, &key, &self.validation(header.alg))
                    .map_err(|e| invalid(&e.to_string()))?
                    .claims
            }
        };
        UserId::parse(&claims.sub).map_err(|e| invalid(&e.to_string()))
    }

    async fn jwk_key(&self, kid: Option<&str>) -> Result<DecodingKey, ApiError> {
        let Keys::Jwks {
            url,
            http,
            cache,
            max_age,
        } = &*self.keys
        else {
            unreachable!("only called for JWKS")
        };
        let find = |set: &JwkSet| {
            set.keys
                .iter()
                .find(|k| kid.is_none() || k.common.key_id.as_deref() == kid)
                .and_then(|jwk| DecodingKey::from_jwk(jwk).ok())
        };
        let unknown = || ApiError::unauthorized("the bearer token's signing key is unknown");
        let stale = {
            let guard = cache.read().await;
            let age = guard.1.map(|at| at.elapsed());
            let fresh = age.is_some_and(|age| age < *max_age);
            if fresh {
                if let Some(key) = guard.0.as_ref().and_then(find) {
                    return Ok(key);
                }
                if age.is_some_and(|age| age < JWKS_REFRESH) {
                    return Err(unknown());
                }
            }
            // Kept to fall back on while the provider cannot be reached.
            match (&guard.0, age) {
                (Some(set), Some(age)) if age < JWKS_STALE_LIMIT => find(set),
                _ => None,
            }
        };
        let fetched: Result<JwkSet, ApiError> = async {
            http.get(url)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| {
                    ApiError::unavailable(format!(
                        "could not fetch the JWKS to verify the token: {e}"
                    ))
                })?
                .json()
                .await
                .map_err(|e| ApiError::unavailable(format!("the JWKS is not valid JSON: {e}")))
        }
        .await;
        match fetched {
            Ok(set) => {
                let key = find(&set);
                *cache.write().await = (Some(set), Some(Instant::now()));
                key.ok_or_else(unknown)
            }
            Err(error) => {
                tracing::warn!(%error, "the JWKS could not be fetched again");
                stale.ok_or(error)
            }
        }
    }
}

/// Mints an HS256 token for `user`, valid for `ttl` (dev mode and tests).
pub fn mint(secret: &[u8], user: &str, ttl: Duration) -> anyhow::Result<String> {
    let exp = (chrono::Utc::now() + chrono::Duration::from_std(ttl)?).timestamp() as u64;
    let claims = Claims {
        sub: user.to_string(),
        exp,
        iss: None,
    };
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

/// The dev-mode signing secret in the data dir, created (mode 0600) on first use.
pub fn dev_secret(data_dir: &Path) -> anyhow::Result<(Vec<u8>, bool)> {
    let path = data_dir.join("dev-jwt.secret");
    let (key, generated) = herald_infrastructure::vault::load_or_generate_key(&path)
        .with_context(|| format!("preparing the dev auth secret {}", path.display()))?;
    Ok((key.to_vec(), generated))
}

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct AuthUser(pub UserId);

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let auth = req.app_data::<web::Data<Authenticator>>().cloned();
        let limits = req
            .app_data::<web::Data<crate::rate_limit::ApiRateLimits>>()
            .cloned();
        let req = req.clone();
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            let auth = auth.ok_or_else(|| ApiError::internal("no authenticator configured"))?;
            let header = header.ok_or_else(|| {
                ApiError::unauthorized("send 'Authorization: Bearer <token>' (in dev mode, mint one with `herald token --user <id>`)")
            })?;
            let token = header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .ok_or_else(|| {
                    ApiError::unauthorized("the Authorization header must use the Bearer scheme")
                })?;
            let user = auth.verify(token.trim()).await?;
            // Counted per verified user, so nobody can spend another user's budget.
            if let Some(limits) = limits {
                limits.spend_for(&req, user.as_str())?;
            }
            Ok(AuthUser(user))
        })
    }
}

/// A request id for correlating events with the request that caused them.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The caller's `X-Request-Id` when it is 1-128 visible ASCII characters, else a new one.
    pub fn of(req: &HttpRequest) -> Self {
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Self(id)
    }
}

impl FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let known = req.extensions().get::<RequestId>().cloned();
        ready(Ok(known.unwrap_or_else(|| RequestId::of(req))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::json;

    const SECRET: &[u8] = b"secret-one-secret-one-secret-one";

    fn sign(secret: &[u8], kid: Option<&str>, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn in_an_hour() -> i64 {
        chrono::Utc::now().timestamp() + 3600
    }

    /// A JWKS endpoint on loopback serving whatever `keys` holds when asked.
    async fn jwks_server(keys: Arc<std::sync::Mutex<serde_json::Value>>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let server = actix_web::HttpServer::new(move || {
            let keys = keys.clone();
            actix_web::App::new().route(
                "/jwks.json",
                web::get().to(move || {
                    let body = keys.lock().unwrap().clone();
                    async move { actix_web::HttpResponse::Ok().json(body) }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        url
    }

    fn oct_jwk(kid: &str, secret: &[u8]) -> serde_json::Value {
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        json!({"kty": "oct", "kid": kid, "alg": "HS256", "k": k})
    }

    #[tokio::test]
    async fn a_token_not_valid_yet_is_refused() {
        let auth = Authenticator::hs256(SECRET.to_vec());
        let later = sign(
            SECRET,
            None,
            json!({"sub": "alice", "exp": in_an_hour(), "nbf": in_an_hour() - 60}),
        );
        assert_eq!(auth.verify(&later).await.unwrap_err().kind, "unauthorized");
        let now = sign(
            SECRET,
            None,
            json!({"sub": "alice", "exp": in_an_hour(), "nbf": in_an_hour() - 7200}),
        );
        assert_eq!(auth.verify(&now).await.unwrap().as_str(), "alice");
    }

    /// A key the provider removed stops verifying once the fetched set is older than its
    /// max age (zero here: every verification fetches again), not only at an unknown `kid`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_removed_from_the_jwks_stops_verifying_and_the_audience_is_checked() {
        let keys = Arc::new(std::sync::Mutex::new(
            json!({"keys": [oct_jwk("k1", SECRET)]}),
        ));
        let url = jwks_server(keys.clone()).await;
        let auth = Authenticator::jwks(url)
            .with_jwks_max_age(Duration::ZERO)
            .requiring(None, Some("herald".into()));
        let token = sign(
            SECRET,
            Some("k1"),
            json!({"sub": "alice", "exp": in_an_hour(), "aud": "herald"}),
        );
        assert_eq!(auth.verify(&token).await.unwrap().as_str(), "alice");
        let for_another_client = sign(
            SECRET,
            Some("k1"),
            json!({"sub": "alice", "exp": in_an_hour(), "aud": "another-app"}),
        );
        assert_eq!(
            auth.verify(&for_another_client).await.unwrap_err().kind,
            "unauthorized"
        );

        *keys.lock().unwrap() =
            json!({"keys": [oct_jwk("k2", b"secret-two-secret-two-secret-two")]});
        assert_eq!(auth.verify(&token).await.unwrap_err().kind, "unauthorized");
    }

    #[tokio::test]
    async fn tokens_verify_with_the_same_secret_only() {
        let token = mint(
            b"secret-one-secret-one-secret-one",
            "alice",
            Duration::from_secs(60),
        )
        .unwrap();
        let auth = Authenticator::hs256(b"secret-one-secret-one-secret-one".to_vec());
        assert_eq!(auth.verify(&token).await.unwrap().as_str(), "alice");
        let other = Authenticator::hs256(b"secret-two-secret-two-secret-two".to_vec());
        assert_eq!(other.verify(&token).await.unwrap_err().kind, "unauthorized");
    }
}
