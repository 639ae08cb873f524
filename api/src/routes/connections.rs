//! Connecting, listing and disconnecting platform accounts.
use std::collections::HashSet;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use herald_domain::connection::{ConnectionCommand, ConnectionEvent};
use herald_domain::{ConnectionId, Platform, PlatformFailure, UserId};
use herald_infrastructure::platforms::{ConnectedAccount, TokenGrant};
use herald_infrastructure::secret::Secret;
use herald_infrastructure::store::CommandMetadata;
use herald_projections::connections::ConnectionView;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::Row;

use crate::auth::{AuthUser, RequestId};
use crate::problem::ApiError;
use crate::runtime::Herald;

/// How long a started authorization may take.
const AUTHORIZATION_TTL: chrono::Duration = chrono::Duration::minutes(10);

pub(crate) fn parse_platform(raw: &str) -> Result<Platform, ApiError> {
    raw.parse::<Platform>()
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "platform-unknown", e.to_string()))
}

fn platform_failure(failure: PlatformFailure) -> ApiError {
    use herald_domain::ErrorClass as C;
    let status = match failure.class {
        C::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        C::Retryable => StatusCode::BAD_GATEWAY,
        C::Auth | C::ReauthorizationRequired | C::Permanent => StatusCode::BAD_REQUEST,
    };
    let kind = match failure.class {
        C::RateLimited => "rate-limited",
        C::Retryable => "platform-unavailable",
        _ => "authorization-failed",
    };
    ApiError::new(
        status,
        kind,
        format!("the platform refused: {}", failure.message),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    platform: Option<String>,
}

/// `GET /connections`: the user's connections.
pub async fn list(
    herald: web::Data<Herald>,
    user: AuthUser,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let platform = query.platform.as_deref().map(parse_platform).transpose()?;
    let connections = herald
        .connection_queries
        .list(user.0.as_str(), platform.map(Platform::as_str))
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "connections": connections })))
}

fn callback_url(herald: &Herald, req: &HttpRequest, platform: Platform) -> String {
    let base = herald.config.public_url.clone().unwrap_or_else(|| {
        let info = req.connection_info();
        format!("{}://{}", info.scheme(), info.host())
    });
    format!(
        "{}/api/v1/platforms/{platform}/callback",
        base.trim_end_matches('/')
    )
}

/// What `POST /{platform}/connect` may say; an empty body takes the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// One of `HERALD_OAUTH_RETURN_URLS`, where the callback sends the browser with the code.
    return_url: Option<String>,
}

/// The return URL a connect asked for: one of the configured ones exactly (anything else would
/// make the callback an open redirect), else the first configured, else none.
fn chosen_return_url(herald: &Herald, asked: Option<&str>) -> Result<Option<url::Url>, ApiError> {
    let configured = &herald.oauth_return_urls;
    match asked {
        None => Ok(configured.first().cloned()),
        Some(raw) => configured
            .iter()
            .find(|url| url.as_str() == raw || url.as_str().trim_end_matches('/') == raw)
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "validation-error",
                    if configured.is_empty() {
                        "return_url: this Herald has no return URLs (HERALD_OAUTH_RETURN_URLS); leave it out".to_string()
                    } else {
                        format!("return_url must be one of HERALD_OAUTH_RETURN_URLS, not {raw:?}")
                    },
                )
            }),
    }
}

/// `POST /{platform}/connect`: where to send the user to authorize Herald. Whoever opens the
/// URL only authorizes; the connection is made by `complete`, for the user who called this.
pub async fn connect(
    herald: web::Data<Herald>,
    user: AuthUser,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let platform = parse_platform(&path)?;
    let request: ConnectRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ConnectRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request("validation-error", format!("the body is not valid: {e}"))
        })?
    };
    let return_url = chosen_return_url(&herald, request.return_url.as_deref())?;
    let adapter = herald
        .adapters
        .get(platform)
        .map_err(|f| ApiError::unprocessable("platform-not-supported", f.message))?;
    let redirect_uri = callback_url(&herald, &req, platform);
    let start = adapter.authorization_url(&redirect_uri);
    let sealer = herald.vault.sealer();
    let (nonce, sealed) = sealer.seal(
        start.state.as_bytes(),
        start.pkce_verifier.expose().as_bytes(),
    );
    let now = Utc::now();
    let expires_at = now + AUTHORIZATION_TTL;
    purge_expired_authorizations(&herald, now).await?;
    sqlx::query(
        "INSERT INTO oauth_pending (state, user_id, platform, redirect_uri, nonce, sealed_verifier, expires_at_ms, return_url)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&start.state)
    .bind(user.0.as_str())
    .bind(platform.as_str())
    .bind(&redirect_uri)
    .bind(nonce)
    .bind(sealed)
    .bind(expires_at.timestamp_millis())
    .bind(return_url.as_ref().map(url::Url::as_str))
    .execute(&herald.db.any)
    .await
    .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(json!({
        "authorization_url": start.url.as_str(),
        "state": start.state,
        "redirect_uri": redirect_uri,
        "return_url": return_url,
        "expires_at": expires_at,
    })))
}

/// Authorizations nobody finished are dropped when new ones start, so the tables stay small.
async fn purge_expired_authorizations(
    herald: &Herald,
    now: chrono::DateTime<Utc>,
) -> Result<(), ApiError> {
    for table in ["oauth_pending", "oauth_completions"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE expires_at_ms < $1"))
            .bind(now.timestamp_millis())
            .execute(&herald.db.any)
            .await
            .map_err(ApiError::internal)?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// A started authorization, taken (once) from `oauth_pending` by its `state`.
struct PendingAuthorization {
    user_id: UserId,
    redirect_uri: String,
    verifier: Secret,
    return_url: Option<url::Url>,
}

async fn take_pending(
    herald: &Herald,
    platform: Platform,
    state: &str,
) -> Result<PendingAuthorization, ApiError> {
    // Single use: the row is gone whatever happens next.
    let row = sqlx::query(
        "DELETE FROM oauth_pending WHERE state = $1
         RETURNING user_id, platform, redirect_uri, nonce, sealed_verifier, expires_at_ms, return_url",
    )
    .bind(state)
    .fetch_optional(&herald.db.any)
    .await
    .map_err(ApiError::internal)?
    .ok_or_else(|| {
        ApiError::bad_request(
            "oauth-state-invalid",
            "unknown or already used state; start again with POST /connect",
        )
    })?;
    let get = |name: &str| row.try_get::<String, _>(name).map_err(ApiError::internal);
    let expires_at_ms: i64 = row.try_get("expires_at_ms").map_err(ApiError::internal)?;
    if expires_at_ms < Utc::now().timestamp_millis() {
        return Err(ApiError::bad_request(
            "oauth-state-invalid",
            "the authorization took too long; start again with POST /connect",
        ));
    }
    if get("platform")? != platform.as_str() {
        return Err(ApiError::bad_request(
            "oauth-state-invalid",
            "the state belongs to another platform",
        ));
    }
    let nonce: Vec<u8> = row.try_get("nonce").map_err(ApiError::internal)?;
    let sealed: Vec<u8> = row.try_get("sealed_verifier").map_err(ApiError::internal)?;
    let verifier = herald
        .vault
        .sealer()
        .open(state.as_bytes(), &nonce, &sealed)?;
    let return_url: Option<String> = row.try_get("return_url").map_err(ApiError::internal)?;
    Ok(PendingAuthorization {
        user_id: UserId::parse(&get("user_id")?).map_err(ApiError::internal)?,
        redirect_uri: get("redirect_uri")?,
        verifier: Secret::new(String::from_utf8(verifier).map_err(ApiError::internal)?),
        return_url: return_url
            .as_deref()
            .map(url::Url::parse)
            .transpose()
            .map_err(ApiError::internal)?,
    })
}

/// What a platform granted at the callback, kept sealed until the starting user claims it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AuthorizedLogin {
    grant: TokenGrant,
    accounts: Vec<ConnectedAccount>,
}

/// How long the one-time code of an authorized login may wait to be claimed.
const COMPLETION_TTL: chrono::Duration = chrono::Duration::minutes(10);

/// The stored key of a one-time code: its SHA-256, so the table alone claims nothing.
fn completion_key(code: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(code.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /{platform}/callback`: the platform sends the browser back here with a code. The browser
/// may not belong to the user who started the flow (anyone can be sent the authorization URL),
/// so nothing is connected here: the platform's answer is stored under a one-time code, which
/// goes back to the browser (to the client application's return URL, where one is set) and is
/// claimed with `POST /{platform}/connect/complete` by the user who started the flow.
pub async fn callback(
    herald: web::Data<Herald>,
    path: web::Path<String>,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    let platform = parse_platform(&path)?;
    let state = query.state.as_deref().ok_or_else(|| {
        ApiError::bad_request(
            "oauth-state-invalid",
            "the callback has no state; start again with POST /connect",
        )
    })?;
    let pending = take_pending(&herald, platform, state).await?;
    let authorized = authorize(&herald, platform, &query, &pending).await;
    let Some(return_url) = pending.return_url else {
        let (code, expires_at, accounts) = authorized?;
        return Ok(HttpResponse::Ok().json(json!({
            "status": "authorized",
            "platform": platform,
            "connect_code": code,
            "expires_at": expires_at,
            "accounts": accounts,
            "detail": format!(
                "{platform} authorized Herald; the user who started this connection completes it with POST /api/v1/platforms/{platform}/connect/complete and {{\"connect_code\": \"…\"}}"
            ),
        })));
    };
    // The client application learns the outcome at its own URL, success or not.
    let mut location = return_url;
    {
        let mut pairs = location.query_pairs_mut();
        pairs.append_pair("platform", platform.as_str());
        match &authorized {
            Ok((code, _, _)) => {
                pairs.append_pair("connect_code", code);
            }
            Err(error) => {
                pairs.append_pair("error", error.kind);
                pairs.append_pair("error_description", &error.detail);
            }
        }
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, location.as_str()))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// Exchanges the callback's code and stores what the platform granted under a new one-time code;
/// returns that code, until when it may be claimed, and the accounts (no token) it would connect.
async fn authorize(
    herald: &Herald,
    platform: Platform,
    query: &CallbackQuery,
    pending: &PendingAuthorization,
) -> Result<(String, chrono::DateTime<Utc>, Vec<Value>), ApiError> {
    if let Some(error) = &query.error {
        let why = query.error_description.clone().unwrap_or_default();
        return Err(ApiError::bad_request(
            "authorization-denied",
            format!("the platform did not authorize Herald ({error}): {why}"),
        ));
    }
    let code = query
        .code
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("validation-error", "the callback has no code"))?;
    let adapter = herald
        .adapters
        .get(platform)
        .map_err(|f| ApiError::unprocessable("platform-not-supported", f.message))?;
    let grant = adapter
        .exchange_code(code, &pending.verifier, &pending.redirect_uri)
        .await
        .map_err(platform_failure)?;
    let accounts = adapter.accounts(&grant).await.map_err(platform_failure)?;
    if accounts.is_empty() {
        return Err(ApiError::bad_request(
            "authorization-failed",
            format!("the {platform} login gives access to no account Herald can publish as"),
        ));
    }
    let listed = accounts
        .iter()
        .map(|a| {
            json!({
                "account_id": a.profile.account_id,
                "username": a.profile.username,
                "display_name": a.profile.display_name,
            })
        })
        .collect();
    let login =
        serde_json::to_vec(&AuthorizedLogin { grant, accounts }).map_err(ApiError::internal)?;
    let connect_code = {
        use base64::Engine;
        use rand::RngCore;
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let key = completion_key(&connect_code);
    let (nonce, sealed) = herald.vault.sealer().seal(key.as_bytes(), &login);
    let expires_at = Utc::now() + COMPLETION_TTL;
    sqlx::query(
        "INSERT INTO oauth_completions (code_hash, user_id, platform, nonce, sealed_login, expires_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&key)
    .bind(pending.user_id.as_str())
    .bind(platform.as_str())
    .bind(nonce)
    .bind(sealed)
    .bind(expires_at.timestamp_millis())
    .execute(&herald.db.any)
    .await
    .map_err(ApiError::internal)?;
    Ok((connect_code, expires_at, listed))
}

/// A user has at most `max_connections_per_user` connections not disconnected; connecting an
/// account again does not count twice.
async fn check_connection_limit(
    herald: &Herald,
    user: &UserId,
    platform: Platform,
    accounts: &[ConnectedAccount],
) -> Result<(), ApiError> {
    let limit = herald.config.max_connections_per_user as usize;
    if limit == 0 {
        return Ok(());
    }
    let current: HashSet<String> = herald
        .connection_queries
        .list(user.as_str(), None)
        .await?
        .into_iter()
        .filter(|c| c.status != "disconnected")
        .map(|c| c.connection_id)
        .collect();
    let new = accounts
        .iter()
        .map(|a| ConnectionId::for_account(user, platform, &a.profile.account_id).to_string())
        .filter(|id| !current.contains(id))
        .count();
    if current.len() + new > limit {
        return Err(ApiError::limit_reached(
            format!(
                "you have {} connections and this login would add {new}, past the {limit} one user may have: disconnect some first",
                current.len()
            ),
            "HERALD_MAX_CONNECTIONS_PER_USER",
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    connect_code: String,
}

/// `POST /{platform}/connect/complete`: the user who started a connection claims what the
/// platform authorized, by the one-time code the callback gave the browser. Anyone else's claim
/// is refused and ends the code, so a login authorized from a flow another user started (sent
/// its authorization URL) is never attached to that user, nor to anyone.
pub async fn complete(
    herald: web::Data<Herald>,
    user: AuthUser,
    path: web::Path<String>,
    body: web::Json<CompleteRequest>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let platform = parse_platform(&path)?;
    let invalid = || {
        ApiError::bad_request(
            "connect-code-invalid",
            "unknown, expired or already used connect_code; start again with POST /connect",
        )
    };
    let key = completion_key(body.connect_code.trim());
    // Single use, whoever claims it.
    let row = sqlx::query(
        "DELETE FROM oauth_completions WHERE code_hash = $1
         RETURNING user_id, platform, nonce, sealed_login, expires_at_ms",
    )
    .bind(&key)
    .fetch_optional(&herald.db.any)
    .await
    .map_err(ApiError::internal)?
    .ok_or_else(invalid)?;
    let get = |name: &str| row.try_get::<String, _>(name).map_err(ApiError::internal);
    let expires_at_ms: i64 = row.try_get("expires_at_ms").map_err(ApiError::internal)?;
    if expires_at_ms < Utc::now().timestamp_millis() || get("platform")? != platform.as_str() {
        return Err(invalid());
    }
    if get("user_id")? != user.0.as_str() {
        tracing::warn!(
            %platform,
            claimant = %user.0,
            "a connect code was claimed by a user who did not start the flow; refused and ended"
        );
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "connect-not-yours",
            "this authorization belongs to a connection another user started, so it is not connected to anyone; start your own with POST /connect",
        ));
    }
    let nonce: Vec<u8> = row.try_get("nonce").map_err(ApiError::internal)?;
    let sealed: Vec<u8> = row.try_get("sealed_login").map_err(ApiError::internal)?;
    let login = herald
        .vault
        .sealer()
        .open(key.as_bytes(), &nonce, &sealed)?;
    let login: AuthorizedLogin = serde_json::from_slice(&login).map_err(ApiError::internal)?;
    let user_id = user.0;
    check_connection_limit(&herald, &user_id, platform, &login.accounts).await?;
    let connected_at = Utc::now();
    let mut connected_ids = Vec::with_capacity(login.accounts.len());
    let mut connected = Vec::with_capacity(login.accounts.len());
    for account in login.accounts {
        let profile = account.profile;
        // An account with its own token (a Facebook Page) keeps it; others share the login's.
        let account_grant = account.grant.unwrap_or_else(|| login.grant.clone());
        let connection_id = ConnectionId::for_account(&user_id, platform, &profile.account_id);
        herald.vault.store(&connection_id, &account_grant).await?;
        let command = ConnectionCommand::Connect {
            connection_id,
            user_id: user_id.clone(),
            platform,
            account: profile.clone(),
            scopes: account_grant.scopes.clone(),
            token_expires_at: account_grant.expires_at,
            can_refresh: account_grant.refresh_token.is_some(),
            login_expires_at: account_grant.refresh_token_expires_at,
            at: connected_at,
        };
        herald
            .connections
            .execute(
                &connection_id.to_string(),
                command,
                &CommandMetadata::actor(user_id.as_str()).correlated(request_id.0.clone()),
            )
            .await?;
        connected_ids.push(connection_id);
        connected.push(json!({
            "connection_id": connection_id,
            "platform": platform,
            "account_id": profile.account_id,
            "username": profile.username,
            "display_name": profile.display_name,
            "status": "active",
        }));
    }
    wait_until_listed(&herald, &user_id, &connected_ids, connected_at).await?;
    // The first account's fields stay at the top level for single-account platforms.
    let mut body = connected[0].clone();
    body["connections"] = Value::Array(connected);
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisconnectQuery {
    connection_id: Option<String>,
}

/// Whether another usable connection shares the login of `grant`, so revoking it at the
/// platform would end that connection too: the same token (a LinkedIn member and the
/// organisations of one login; the Pages of one Facebook login), or, where permissions belong
/// to the person, the same person (`login_id`: two Facebook logins of one person, whichever
/// Herald user made them). A connection stored before Herald recorded the person might be
/// theirs, so it counts too. Tokens are compared here and go nowhere else.
async fn grant_still_used(
    herald: &Herald,
    user: &UserId,
    platform: Platform,
    disconnecting: &ConnectionId,
    grant: &TokenGrant,
) -> Result<bool, ApiError> {
    let same = |a: &Secret, b: &Secret| a.expose() == b.expose();
    let family: Vec<&str> = platform.login_family().iter().map(|p| p.as_str()).collect();
    // A token is only ever the user's own; a person may be connected by several users.
    let owner = grant.login_id.is_none().then_some(user.as_str());
    for other in herald.connection_queries.usable_on(&family, owner).await? {
        if other.connection_id == disconnecting.to_string() {
            continue;
        }
        let Some(theirs) = stored_grant(herald, &other).await? else {
            continue;
        };
        let shared_refresh = matches!(
            (&theirs.refresh_token, &grant.refresh_token),
            (Some(a), Some(b)) if same(a, b)
        );
        let same_person = match (&theirs.login_id, &grant.login_id) {
            (Some(a), Some(b)) => a == b,
            (None, Some(_)) => true,
            _ => false,
        };
        if shared_refresh || same_person || same(&theirs.access_token, &grant.access_token) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The grant the vault holds for a listed connection, in the form its adapter works with
/// today; `None` if it holds none. Tokens read here go nowhere but the caller's comparison.
pub(crate) async fn stored_grant(
    herald: &Herald,
    connection: &ConnectionView,
) -> Result<Option<TokenGrant>, ApiError> {
    let (Ok(id), Ok(platform)) = (
        ConnectionId::parse(&connection.connection_id),
        connection.platform.parse::<Platform>(),
    ) else {
        return Ok(None);
    };
    let Some(stored) = herald.vault.load(&id).await? else {
        return Ok(None);
    };
    Ok(Some(match herald.adapters.get(platform) {
        Ok(adapter) => adapter.current_form(stored),
        Err(_) => stored,
    }))
}

/// `DELETE /{platform}/disconnect?connection_id=`: revokes at the platform where possible —
/// unless another connection still uses the same token — deletes this connection's tokens and
/// marks it disconnected.
pub async fn disconnect(
    herald: web::Data<Herald>,
    user: AuthUser,
    path: web::Path<String>,
    query: web::Query<DisconnectQuery>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let platform = parse_platform(&path)?;
    let connection_id = match &query.connection_id {
        Some(raw) => ConnectionId::parse(raw).map_err(|_| ApiError::not_found("connection"))?,
        None => {
            let active: Vec<_> = herald
                .connection_queries
                .list(user.0.as_str(), Some(platform.as_str()))
                .await?
                .into_iter()
                .filter(|c| c.status != "disconnected")
                .collect();
            match active.as_slice() {
                [only] => ConnectionId::parse(&only.connection_id).map_err(ApiError::internal)?,
                [] => return Err(ApiError::not_found("connection")),
                _ => {
                    return Err(ApiError::bad_request(
                        "validation-error",
                        format!(
                            "you have {} {platform} connections: name one with ?connection_id=",
                            active.len()
                        ),
                    ))
                }
            }
        }
    };
    let connection = herald.connections.load(&connection_id.to_string()).await?;
    if connection.user_id.as_ref() != Some(&user.0) || connection.platform != Some(platform) {
        return Err(ApiError::not_found("connection"));
    }
    if let (Ok(adapter), Ok(Some(stored)), Some(account)) = (
        herald.adapters.get(platform),
        herald.vault.load(&connection_id).await,
        connection.account.as_ref(),
    ) {
        let grant = adapter.current_form(stored);
        if grant_still_used(&herald, &user.0, platform, &connection_id, &grant).await? {
            tracing::info!(connection = %connection_id, "another connection shares this login; not revoking it at the platform");
        } else if let Err(failure) = adapter.revoke(account, &grant).await {
            tracing::warn!(connection = %connection_id, %failure, "revocation at the platform failed; deleting the tokens anyway");
        }
    }
    herald.vault.delete(&connection_id).await?;
    herald
        .connections
        .execute(
            &connection_id.to_string(),
            ConnectionCommand::Disconnect { at: Utc::now() },
            &CommandMetadata::actor(user.0.as_str()).correlated(request_id.0),
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"connection_id": connection_id, "status": "disconnected"})))
}

/// How long `complete` waits for the connections read model to show what it recorded.
/// The local log applies an event within milliseconds and Kafka usually within a second; a
/// completed connect is a person's action, so waiting a little longer at worst is cheap.
const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(5);

/// Read-your-writes for connecting: returns once the read model lists each of `ids` as
/// connected at `at` or later, so the client's next `GET /connections` shows them (a reconnect
/// of a known account counts only once its new `Connected` is applied). After
/// `READ_YOUR_WRITES_WAIT` it returns anyway: the connection is recorded, only its listing lags.
async fn wait_until_listed(
    herald: &Herald,
    user: &UserId,
    ids: &[ConnectionId],
    at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let deadline = Instant::now() + READ_YOUR_WRITES_WAIT;
    for id in ids {
        loop {
            let listed = herald
                .connection_queries
                .get(user.as_str(), &id.to_string())
                .await?
                .is_some_and(|view| view.updated_at.timestamp_millis() >= at.timestamp_millis());
            if listed {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(connection = %id, "the connections read model did not show a completed connect in time");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// `GET /connections/{id}/history`: the connection's events in order (connected, refreshed,
/// refresh failed, reauthorization required, disconnected), for its owner only.
pub async fn history(
    herald: web::Data<Herald>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let connection_id =
        ConnectionId::parse(&path).map_err(|_| ApiError::not_found("connection"))?;
    let events = herald
        .connections
        .events(&connection_id.to_string())
        .await?;
    let owner = events.iter().find_map(|e| match &e.payload {
        ConnectionEvent::Connected { user_id, .. } => Some(user_id),
        _ => None,
    });
    if owner != Some(&user.0) {
        return Err(ApiError::not_found("connection"));
    }
    let events: Vec<Value> = events
        .iter()
        .map(|envelope| {
            use cqrs_es::DomainEvent;
            json!({
                "sequence": envelope.sequence,
                "event_type": envelope.payload.event_type(),
                "event_version": envelope.payload.event_version(),
                "data": connection_event_json(&envelope.payload),
                "metadata": envelope.metadata,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "connection_id": connection_id, "events": events })))
}

/// What the history shows of a connection event, field by field rather than the event as
/// stored, so that a field added to an event later is not shown until someone decides it may
/// be. Connection events hold no token (those are sealed in the vault); this keeps it so.
fn connection_event_json(event: &ConnectionEvent) -> Value {
    match event {
        ConnectionEvent::Connected {
            platform,
            account,
            scopes,
            token_expires_at,
            can_refresh,
            login_expires_at,
            at,
            ..
        } => json!({
            "platform": platform,
            "account_id": account.account_id,
            "username": account.username,
            "display_name": account.display_name,
            "scopes": scopes,
            "token_expires_at": token_expires_at,
            "can_refresh": can_refresh,
            "login_expires_at": login_expires_at,
            "at": at,
        }),
        ConnectionEvent::TokenRefreshed {
            token_expires_at,
            login_expires_at,
            at,
        } => json!({
            "token_expires_at": token_expires_at,
            "login_expires_at": login_expires_at,
            "at": at,
        }),
        ConnectionEvent::TokenRefreshFailed {
            class,
            code,
            message,
            consecutive_failures,
            at,
        } => json!({
            "class": class,
            "code": code,
            "message": message,
            "consecutive_failures": consecutive_failures,
            "at": at,
        }),
        ConnectionEvent::ReauthorizationRequired { reason, cause, at } => json!({
            "reason": reason,
            "cause": cause,
            "at": at,
        }),
        ConnectionEvent::Disconnected { at } => json!({ "at": at }),
    }
}
