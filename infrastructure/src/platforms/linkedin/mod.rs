//! LinkedIn adapter (platform-facts §8): 3-legged OAuth with the client secret in the body
//! (state always, no PKCE), 60-day access tokens and — for approved MDP apps only — refresh
//! tokens whose 365-day lifetime is fixed at the first authorization; the member from
//! `/v2/userinfo` plus the organisations they may post for (`organizationAcls`); posts through
//! `POST /rest/posts` with `LinkedIn-Version` and `X-Restli-Protocol-Version: 2.0.0`, images,
//! documents and videos through the Images, Documents and Videos APIs (see `media`).
//!
//! **Which author a connection posts as.** A member and their organisations share one login
//! and one token; each is its own connection, whose account id is the author URN
//! (`urn:li:person:{sub}` from `/v2/userinfo`, `urn:li:organization:{id}` from the ACLs). The
//! adapter reads the author from the account it is given and the vault holds the plain token.
//! Herald once stored `"{author URN} {token}"` instead; [`PlatformAdapter::current_form`] still
//! reads that form, and the next refresh stores the plain one.
//!
//! Rate limits: LinkedIn's limits are per day and reset at midnight UTC; a 429 has no headers.
//! A 429 naming a `DAY` limit closes the endpoint in the shared gate until midnight UTC, any
//! other 429 for `throttle_backoff`. LinkedIn counts an Application limit (every call of the app)
//! and a Member limit per endpoint: a 429 naming `APPLICATION` closes the app-wide key
//! `app:{client_id}:{endpoint}`, which every call of every connected member asks first; one
//! naming `MEMBER` closes only that member's key. Gate keys: `linkedin_userinfo`,
//! `linkedin_acls`, `linkedin_orgs`, `linkedin_images`, `linkedin_documents`, `linkedin_videos`,
//! `linkedin_upload`,
//! `linkedin_media`, `linkedin_posts`, `linkedin_list`.
mod config;
mod errors;
mod media;
mod settings;
mod text;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaKind, Platform, PlatformFailure, Poll};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

pub use config::{LinkedInConfig, DEFAULT_POSTING_ROLES, DEFAULT_SCOPES, DEFAULT_VERSION};
pub use settings::{LinkedInSettings, ENTRY};

use self::errors::{classify, publish_transport_error, CallContext};
use super::http::{self, PlatformApi, Reply, SendError};
use super::{
    AuthorizationStart, ConnectedAccount, CreatedPost, MediaUpload, PlatformAdapter, PostDraft,
    PostError, RateLimitGate, TokenGrant, Unlimited, UploadProgress,
};
use crate::media_source::MediaSource;
use crate::oauth::{
    classify_token_error, redact, retry_after, ClientAuth, OAuthClient, OAuthEndpoints, SetupError,
    TokenCall,
};
use crate::secret::Secret;

/// Posts created this long before `since` still count: clocks differ between Herald and LinkedIn.
const CLOCK_SKEW_MS: i64 = 5_000;
/// Posts listed per page while reconciling, and how many pages at most.
const LIST_PAGE: usize = 50;
const LIST_PAGES: usize = 4;
/// LinkedIn shows article titles of up to 400 characters (the domain's rule for LinkedIn).
const MAX_ARTICLE_TITLE: usize = 400;

/// The LinkedIn adapter. Cheap to share: hold it in an `Arc`.
pub struct LinkedInAdapter {
    config: LinkedInConfig,
    /// Builds the consent URL (state, scopes); token calls are made by hand because LinkedIn's
    /// token responses add `refresh_token_expires_in` and list scopes comma-separated.
    oauth: OAuthClient,
    /// API calls; redirects are never followed (a redirect would carry the token elsewhere).
    api: reqwest::Client,
    /// Upload PUTs: a part or an image takes longer than one API call may.
    uploads: reqwest::Client,
    /// Downloads of media from user-supplied URLs, under the deployment's media URL policy.
    media_source: MediaSource,
}

impl std::fmt::Debug for LinkedInAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkedInAdapter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `secret` without the `"{author URN} "` an older Herald stored in front of LinkedIn's token.
fn without_legacy_author(secret: &Secret) -> Secret {
    match secret.expose().split_once(' ') {
        Some((author, token)) if author.starts_with("urn:li:") => Secret::new(token),
        _ => secret.clone(),
    }
}

/// The author URN of the account a connection publishes as.
fn author(account: &AccountProfile) -> Result<&str, PlatformFailure> {
    let urn = account.account_id.as_str();
    if urn.starts_with("urn:li:person:") || urn.starts_with("urn:li:organization:") {
        return Ok(urn);
    }
    Err(PlatformFailure::new(
        ErrorClass::Permanent,
        "linkedin_account_unknown",
        format!("the connection's account ({urn}) is not a LinkedIn member or organisation: connect LinkedIn again"),
    ))
}

#[derive(Debug, Deserialize)]
struct TokenBody {
    access_token: String,
    expires_in: Option<i64>,
    refresh_token: Option<String>,
    refresh_token_expires_in: Option<i64>,
    scope: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Userinfo {
    sub: String,
    name: Option<String>,
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    elements: Vec<T>,
}

#[derive(Debug, Deserialize)]
struct Acl {
    organization: Option<String>,
    role: Option<String>,
    state: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Organization {
    localized_name: Option<String>,
    vanity_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedPost {
    id: String,
    #[serde(default)]
    commentary: String,
    created_at: Option<i64>,
    content: Option<Value>,
}

impl LinkedInAdapter {
    /// An adapter for the LinkedIn API (or sandbox) described by `config`.
    pub fn new(config: LinkedInConfig) -> Result<Self, SetupError> {
        let oauth = OAuthClient::new(
            OAuthEndpoints {
                provider: "LinkedIn".to_owned(),
                authorize_url: config.oauth_url("authorization"),
                token_url: config.oauth_url("accessToken"),
                revoke_url: config.revoke_url.clone(),
                client_id: config.client_id.clone(),
                client_secret: Some(config.client_secret.clone()),
                scopes: config.scopes.clone(),
                // LinkedIn documents PKCE only for native clients (platform-facts §8.1).
                use_pkce: false,
                client_auth: ClientAuth::RequestBody,
            },
            config.request_timeout,
        )?;
        let connect_timeout = config.request_timeout.min(Duration::from_secs(10));
        let api = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .connect_timeout(connect_timeout)
            .build()?;
        let uploads = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout * 10)
            .connect_timeout(connect_timeout)
            .build()?;
        let media_source = MediaSource::new(config.media_policy.clone(), config.request_timeout)?;
        Ok(Self {
            config,
            oauth,
            api,
            uploads,
            media_source,
        })
    }

    /// The configuration the adapter was built with.
    pub fn config(&self) -> &LinkedInConfig {
        &self.config
    }

    /// A versioned Rest.li request.
    fn rest(&self, method: Method, url: url::Url, token: &str) -> reqwest::RequestBuilder {
        self.api
            .request(method, url)
            .bearer_auth(token)
            .header("LinkedIn-Version", &self.config.version)
            .header("X-Restli-Protocol-Version", "2.0.0")
    }

    /// A 429 LinkedIn explained (a daily limit) closes the endpoint for every worker until
    /// LinkedIn's reset, not just for the back-off the headers-only hook could see: the
    /// application's budget for the endpoint when LinkedIn names the `APPLICATION` limit (every
    /// member connected through this app waits), the member's otherwise.
    async fn close_on_limit(
        &self,
        endpoint: &str,
        limits: &dyn RateLimitGate,
        failure: &PlatformFailure,
    ) {
        if failure.class == ErrorClass::RateLimited && failure.code != "rate_limit_exhausted" {
            if let Some(until) = failure.not_before {
                let key = if errors::is_application_limit(failure) {
                    self.app_budget(endpoint)
                } else {
                    endpoint.to_owned()
                };
                limits.observe(&key, Some(0), Some(until)).await;
            }
        }
    }

    /// The gate key of the application's daily budget for `endpoint` (platform-facts §8.4:
    /// "Application" limits count every call of the app; "Member" limits one member's).
    fn app_budget(&self, endpoint: &str) -> String {
        super::app_key(&self.config.client_id, endpoint)
    }

    async fn call(
        &self,
        endpoint: &str,
        limits: &dyn RateLimitGate,
        request: reqwest::RequestBuilder,
        ctx: CallContext,
    ) -> Result<Reply, PlatformFailure> {
        let result = http::call(self, endpoint, limits, request, ctx).await;
        if let Err(failure) = &result {
            self.close_on_limit(endpoint, limits, failure).await;
        }
        result
    }

    async fn call_json<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        limits: &dyn RateLimitGate,
        request: reqwest::RequestBuilder,
        ctx: CallContext,
    ) -> Result<T, PlatformFailure> {
        self.call(endpoint, limits, request, ctx)
            .await?
            .json(self, ctx)
    }

    /// A token-endpoint call (client id and secret in the body); secrets never reach a message.
    async fn token_request(
        &self,
        form: &[(&str, &str)],
        call: TokenCall,
        secrets: &[&str],
    ) -> Result<TokenBody, PlatformFailure> {
        let secret = self.config.client_secret.expose();
        let mut all_secrets = secrets.to_vec();
        all_secrets.push(secret);
        let mut body = form.to_vec();
        body.push(("client_id", self.config.client_id.as_str()));
        body.push(("client_secret", secret));
        let response = self
            .api
            .post(self.config.oauth_url("accessToken"))
            .form(&body)
            .send()
            .await
            .map_err(|e| {
                http::default_transport_failure("LinkedIn", "exchange tokens with LinkedIn", &e)
            })?;
        let status = response.status();
        let retry_at = retry_after(response.headers(), Utc::now());
        let bytes = response.bytes().await.map_err(|e| {
            http::default_transport_failure("LinkedIn", "exchange tokens with LinkedIn", &e)
        })?;
        if !status.is_success() {
            let failure = classify_token_error("LinkedIn", call, status.as_u16(), retry_at, &bytes);
            let message = if failure.class == ErrorClass::ReauthorizationRequired {
                format!("{}. LinkedIn refresh tokens last 365 days from the first authorization and refreshing does not extend them", failure.message)
            } else {
                failure.message
            };
            return Err(PlatformFailure {
                message: redact(&message, &all_secrets),
                ..failure
            });
        }
        serde_json::from_slice(&bytes).map_err(|_| {
            PlatformFailure::new(
                ErrorClass::Permanent,
                "oauth_unexpected_response",
                "LinkedIn's token endpoint answered with a response Herald cannot read; check the LinkedIn OAuth base URL",
            )
        })
    }

    /// The grant in a token response; `previous_refresh` is kept when none comes back.
    fn grant(&self, body: TokenBody, previous_refresh: Option<&str>) -> TokenGrant {
        let expires_at = body
            .expires_in
            .and_then(|s| Utc::now().checked_add_signed(TimeDelta::seconds(s)));
        // The refresh token's lifetime is fixed at the first authorization; each refresh
        // restates what is left of it.
        let refresh_token_expires_at = body
            .refresh_token_expires_in
            .and_then(|s| Utc::now().checked_add_signed(TimeDelta::seconds(s)));
        let scopes = body
            .scope
            .map(|s| {
                s.split([',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.config.scopes.clone());
        TokenGrant {
            access_token: Secret::new(body.access_token),
            refresh_token: body
                .refresh_token
                .or_else(|| previous_refresh.map(str::to_owned))
                .map(Secret::new),
            expires_at,
            scopes,
            refresh_token_expires_at,
            login_id: None,
        }
    }

    async fn userinfo(
        &self,
        token: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<AccountProfile, PlatformFailure> {
        let request = self
            .api
            .get(self.config.api_url("v2/userinfo"))
            .bearer_auth(token);
        let me: Userinfo = self
            .call_json(
                "linkedin_userinfo",
                limits,
                request,
                CallContext::READ_ACCOUNT,
            )
            .await?;
        Ok(AccountProfile {
            account_id: format!("urn:li:person:{}", me.sub),
            display_name: me.name.clone().unwrap_or_else(|| me.sub.clone()),
            username: me.email.unwrap_or(me.sub),
        })
    }

    /// The organisations the member holds a posting role in (approved), as profiles.
    async fn organizations(&self, token: &str) -> Result<Vec<AccountProfile>, PlatformFailure> {
        let mut url = self.config.api_url("rest/organizationAcls");
        url.query_pairs_mut()
            .append_pair("q", "roleAssignee")
            .append_pair("state", "APPROVED")
            .append_pair("count", "100");
        let request = self.rest(Method::GET, url, token);
        let acls: Page<Acl> = self
            .call_json(
                "linkedin_acls",
                &Unlimited,
                request,
                CallContext::READ_ORGANIZATIONS,
            )
            .await?;
        let mut orgs: Vec<String> = Vec::new();
        for acl in acls.elements {
            let posts = acl
                .role
                .as_ref()
                .is_some_and(|r| self.config.posting_roles.contains(r));
            let approved = acl.state.as_deref().is_none_or(|s| s == "APPROVED");
            if let Some(org) = acl.organization.filter(|_| posts && approved) {
                if !orgs.contains(&org) {
                    orgs.push(org);
                }
            }
        }
        let mut profiles = Vec::with_capacity(orgs.len());
        for urn in orgs {
            let id = urn.rsplit(':').next().unwrap_or_default().to_owned();
            let request = self.rest(
                Method::GET,
                self.config.api_url(&format!("rest/organizations/{id}")),
                token,
            );
            let org: Option<Organization> = match self
                .call_json(
                    "linkedin_orgs",
                    &Unlimited,
                    request,
                    CallContext::READ_ORGANIZATIONS,
                )
                .await
            {
                Ok(org) => Some(org),
                // The name is a nicety; the organisation is still one the member posts for.
                Err(failure) if failure.class == ErrorClass::Permanent => None,
                Err(failure) => return Err(failure),
            };
            let name = org.as_ref().and_then(|o| o.localized_name.clone());
            let vanity = org.and_then(|o| o.vanity_name);
            profiles.push(AccountProfile {
                display_name: name.unwrap_or_else(|| format!("LinkedIn organisation {id}")),
                username: vanity.unwrap_or_else(|| id.clone()),
                account_id: urn,
            });
        }
        Ok(profiles)
    }

    /// The `POST /rest/posts` body for `draft` by `author`.
    fn post_body(&self, author: &str, draft: &PostDraft) -> Result<Value, PlatformFailure> {
        let organization = author.starts_with("urn:li:organization:");
        let visibility = draft
            .options
            .linkedin
            .visibility
            .as_deref()
            .unwrap_or("PUBLIC");
        if organization && visibility == "CONNECTIONS" {
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                "visibility_not_allowed",
                "LinkedIn organisations have no connections: their posts are PUBLIC; drop options.linkedin.visibility or set it to PUBLIC",
            ));
        }
        let mut text = draft.text.clone();
        let link = draft.link.as_deref().filter(|l| !l.trim().is_empty());
        let content = match (draft.media_ids.as_slice(), link) {
            ([], _) if draft.poll.is_some() => {
                // A post has one kind of content: a link goes into the text.
                if let Some(link) = link {
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(link);
                }
                draft
                    .poll
                    .as_ref()
                    .map(|poll| poll_content(poll, &draft.text))
            }
            ([], None) => None,
            ([], Some(link)) => {
                let title = draft
                    .title
                    .clone()
                    .unwrap_or_else(|| text::derive_title(&draft.text, link, MAX_ARTICLE_TITLE));
                Some(json!({"article": {"source": link, "title": title}}))
            }
            (ids, link) => {
                // A post has one kind of content: with media, the link goes into the text,
                // where LinkedIn turns it into a link.
                if let Some(link) = link {
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(link);
                }
                if let [id] = ids {
                    let mut media = json!({ "id": id });
                    match draft.media.first() {
                        Some(item) if item.kind == MediaKind::Document => {
                            media["title"] = json!(document_title(draft, &item.url));
                        }
                        Some(item) if item.kind == MediaKind::Video => {
                            if let Some(title) = &draft.title {
                                media["title"] = json!(title);
                            }
                        }
                        _ => {}
                    }
                    Some(json!({ "media": media }))
                } else {
                    let images: Vec<Value> = ids.iter().map(|id| json!({ "id": id })).collect();
                    Some(json!({"multiImage": {"images": images}}))
                }
            }
        };
        let mut body = json!({
            "author": author,
            "commentary": text::escape(&text),
            "visibility": visibility,
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": false,
        });
        if let Some(content) = content {
            body["content"] = content;
        }
        Ok(body)
    }

    /// The irreversible call: 201 with the post's URN in `x-restli-id`.
    async fn send_post(
        &self,
        token: &str,
        body: &Value,
        limits: &dyn RateLimitGate,
    ) -> Result<CreatedPost, PostError> {
        let request = self
            .rest(Method::POST, self.config.api_url("rest/posts"), token)
            .json(body);
        let ctx = CallContext::CREATE_POST;
        let response = match http::send(self, "linkedin_posts", limits, request).await {
            Ok(response) => response,
            Err(SendError::Limited(failure)) => return Err(PostError::Failed(failure)),
            Err(SendError::Transport(e)) => return Err(publish_transport_error(&e)),
        };
        let status = response.status();
        let urn = response
            .headers()
            .get("x-restli-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if status.is_success() {
            return match urn {
                Some(urn) => Ok(CreatedPost {
                    url: self.config.post_url(&urn),
                    post_id: urn,
                }),
                None => Err(PostError::OutcomeUnknown(format!(
                    "LinkedIn answered HTTP {status} without the post's id (x-restli-id); the post may exist"
                ))),
            };
        }
        let body = response.bytes().await.unwrap_or_default();
        let failure = classify(
            status.as_u16(),
            &body,
            ctx,
            Utc::now(),
            self.config.throttle_backoff,
            &self.config.version,
        );
        self.close_on_limit("linkedin_posts", limits, &failure)
            .await;
        Err(PostError::Failed(failure))
    }
}

impl PlatformApi for LinkedInAdapter {
    type Context = CallContext;

    fn name(&self) -> &'static str {
        "LinkedIn"
    }

    fn action(&self, ctx: CallContext) -> &'static str {
        ctx.action
    }

    /// LinkedIn sends no rate-limit headers. A 429 closes the endpoint for the back-off; the
    /// classifier, which sees the body, extends that to midnight UTC for a daily limit.
    fn rate_limit(
        &self,
        status: StatusCode,
        _headers: &reqwest::header::HeaderMap,
        now: DateTime<Utc>,
    ) -> (Option<u64>, Option<DateTime<Utc>>) {
        if status == StatusCode::TOO_MANY_REQUESTS {
            let backoff =
                TimeDelta::from_std(self.config.throttle_backoff).unwrap_or(TimeDelta::seconds(60));
            return (Some(0), Some(now + backoff));
        }
        (None, None)
    }

    /// Every call also draws from the application's daily budget for its endpoint.
    fn shared_budgets(&self, endpoint: &str) -> Vec<String> {
        vec![self.app_budget(endpoint)]
    }

    fn classify(
        &self,
        status: StatusCode,
        _headers: &reqwest::header::HeaderMap,
        body: &[u8],
        ctx: CallContext,
        now: DateTime<Utc>,
    ) -> PlatformFailure {
        classify(
            status.as_u16(),
            body,
            ctx,
            now,
            self.config.throttle_backoff,
            &self.config.version,
        )
    }

    fn transport_failure(&self, error: &reqwest::Error, ctx: CallContext) -> PlatformFailure {
        errors::transport_failure(error, ctx)
    }

    fn is_error_body(&self, body: &Value) -> bool {
        body.get("status")
            .and_then(Value::as_u64)
            .is_some_and(|s| s >= 400)
            && body.get("message").is_some()
    }
}

#[async_trait::async_trait]
impl PlatformAdapter for LinkedInAdapter {
    fn platform(&self) -> Platform {
        Platform::Linkedin
    }

    fn authorization_url(&self, redirect_uri: &str) -> AuthorizationStart {
        self.oauth.start(redirect_uri)
    }

    #[tracing::instrument(skip_all, fields(platform = "linkedin"))]
    async fn exchange_code(
        &self,
        code: &str,
        _pkce_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenGrant, PlatformFailure> {
        let body = self
            .token_request(
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", redirect_uri),
                ],
                TokenCall::Code,
                &[code],
            )
            .await?;
        Ok(self.grant(body, None))
    }

    /// LinkedIn returns the same refresh token with what is left of its fixed lifetime; when no
    /// refresh token comes back the old one is kept. The new grant holds plain tokens.
    #[tracing::instrument(skip_all, fields(platform = "linkedin"))]
    async fn refresh(
        &self,
        _account: &AccountProfile,
        refresh_token: &Secret,
    ) -> Result<TokenGrant, PlatformFailure> {
        let token = without_legacy_author(refresh_token);
        let token = token.expose();
        let body = self
            .token_request(
                &[("grant_type", "refresh_token"), ("refresh_token", token)],
                TokenCall::Refresh,
                &[token],
            )
            .await?;
        Ok(self.grant(body, Some(token)))
    }

    /// Revokes the login's token: this ends the member's connection and every organisation
    /// connection made with the same login, so Herald asks only when the last one goes.
    async fn revoke(
        &self,
        _account: &AccountProfile,
        grant: &TokenGrant,
    ) -> Result<(), PlatformFailure> {
        let Some(url) = &self.config.revoke_url else {
            return Ok(());
        };
        // The caller passes the grant in its current form (`current_form`).
        let token = grant.access_token.expose();
        let secret = self.config.client_secret.expose();
        let response = self
            .api
            .post(url.clone())
            .form(&[
                ("client_id", self.config.client_id.as_str()),
                ("client_secret", secret),
                ("token", token),
            ])
            .send()
            .await
            .map_err(|e| http::default_transport_failure("LinkedIn", "revoke the token", &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_at = retry_after(response.headers(), Utc::now());
        let body = response.bytes().await.unwrap_or_default();
        let failure = classify_token_error(
            "LinkedIn",
            TokenCall::Revoke,
            status.as_u16(),
            retry_at,
            &body,
        );
        Err(PlatformFailure {
            message: redact(&failure.message, &[token, secret]),
            ..failure
        })
    }

    /// Reads the `"{author URN} {token}"` form an older Herald stored.
    fn current_form(&self, stored: TokenGrant) -> TokenGrant {
        TokenGrant {
            access_token: without_legacy_author(&stored.access_token),
            refresh_token: stored.refresh_token.as_ref().map(without_legacy_author),
            ..stored
        }
    }

    #[tracing::instrument(skip_all, fields(platform = "linkedin"))]
    async fn account(&self, access_token: &Secret) -> Result<AccountProfile, PlatformFailure> {
        self.userinfo(access_token.expose(), &Unlimited).await
    }

    /// The member, then every organisation where the member holds a posting role. All share
    /// the login's grant; each account id is the author URN the connection posts as.
    #[tracing::instrument(skip_all, fields(platform = "linkedin", organizations = tracing::field::Empty))]
    async fn accounts(&self, grant: &TokenGrant) -> Result<Vec<ConnectedAccount>, PlatformFailure> {
        let token = grant.access_token.expose();
        let member = self.userinfo(token, &Unlimited).await?;
        let organizations = match self.organizations(token).await {
            Ok(orgs) => orgs,
            // Without the organisation scopes (no Community Management product), the member
            // alone is connected.
            Err(failure) if failure.class == ErrorClass::Permanent => {
                tracing::info!(%failure, "no organisations: the login cannot list them");
                vec![]
            }
            Err(failure) => return Err(failure),
        };
        tracing::Span::current().record("organizations", organizations.len());
        Ok(std::iter::once(member)
            .chain(organizations)
            .map(|profile| ConnectedAccount {
                profile,
                grant: None,
            })
            .collect())
    }

    #[tracing::instrument(skip_all, fields(platform = "linkedin", kind = ?upload.item.kind))]
    async fn upload_media(
        &self,
        access_token: &Secret,
        upload: &MediaUpload<'_>,
        limits: &dyn RateLimitGate,
        progress: &dyn UploadProgress,
    ) -> Result<String, PlatformFailure> {
        let author = author(&upload.post.account)?;
        media::upload(
            self,
            access_token.expose(),
            author,
            upload,
            limits,
            progress,
        )
        .await
    }

    #[tracing::instrument(
        skip_all,
        fields(platform = "linkedin", media = draft.media_ids.len(), post_id = tracing::field::Empty)
    )]
    async fn create_post(
        &self,
        access_token: &Secret,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<CreatedPost, PostError> {
        let body = self.post_body(author(&draft.account)?, draft)?;
        let post = self.send_post(access_token.expose(), &body, limits).await?;
        tracing::Span::current().record("post_id", post.post_id.as_str());
        Ok(post)
    }

    /// Lists the author's posts (newest first) and matches the commentary Herald would have
    /// sent and the kind of content.
    #[tracing::instrument(skip_all, fields(platform = "linkedin", %since, found = tracing::field::Empty))]
    async fn find_post(
        &self,
        access_token: &Secret,
        since: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure> {
        let author = author(&draft.account)?;
        let token = access_token.expose();
        let expected = self.post_body(author, draft)?;
        let wanted_text =
            crate::text::normalize_whitespace(expected["commentary"].as_str().unwrap_or_default());
        let wanted_kind = content_kind(expected.get("content"));
        let since_ms = since.timestamp_millis() - CLOCK_SKEW_MS;
        for page in 0..LIST_PAGES {
            let mut url = self.config.api_url("rest/posts");
            url.query_pairs_mut()
                .append_pair("q", "author")
                .append_pair("author", author)
                .append_pair("sortBy", "CREATED")
                .append_pair("start", &(page * LIST_PAGE).to_string())
                .append_pair("count", &LIST_PAGE.to_string());
            let request = self.rest(Method::GET, url, token);
            let listed: Page<ListedPost> = self
                .call_json("linkedin_list", limits, request, CallContext::READ_POSTS)
                .await?;
            let exhausted = listed.elements.len() < LIST_PAGE;
            let mut older = false;
            for post in listed.elements {
                let created = post.created_at.unwrap_or(i64::MAX);
                if created < since_ms {
                    older = true;
                    continue;
                }
                if crate::text::normalize_whitespace(&post.commentary) == wanted_text
                    && content_kind(post.content.as_ref()) == wanted_kind
                {
                    tracing::Span::current().record("found", true);
                    return Ok(Some(CreatedPost {
                        url: self.config.post_url(&post.id),
                        post_id: post.id,
                    }));
                }
            }
            if exhausted || older {
                break;
            }
        }
        tracing::Span::current().record("found", false);
        Ok(None)
    }
}

/// A poll (Poll API): the question (the text when none is given), 2-4 options, and one of
/// LinkedIn's four durations, which the rules table has already checked.
fn poll_content(poll: &Poll, text: &str) -> Value {
    let duration = match poll.duration_minutes {
        1_440 => "ONE_DAY",
        4_320 => "THREE_DAYS",
        10_080 => "SEVEN_DAYS",
        _ => "FOURTEEN_DAYS",
    };
    let question = poll.question.as_deref().unwrap_or(text).trim();
    let options: Vec<Value> = poll
        .options
        .iter()
        .map(|o| json!({ "text": o.trim() }))
        .collect();
    json!({"poll": {
        "question": question,
        "options": options,
        "settings": {"duration": duration},
    }})
}

/// A document post shows a title above its pages: the one given, else the file's name (as
/// LinkedIn's own composer does), else the text's first line.
fn document_title(draft: &PostDraft, url: &str) -> String {
    if let Some(title) = draft.title.as_deref().filter(|t| !t.trim().is_empty()) {
        return title.trim().to_owned();
    }
    let file_name = url::Url::parse(url)
        .ok()
        .and_then(|u| {
            let last = u.path_segments()?.next_back()?.to_owned();
            Some(
                percent_encoding::percent_decode_str(&last)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        })
        .filter(|name| !name.is_empty());
    match file_name {
        Some(name) => name.chars().take(MAX_ARTICLE_TITLE).collect(),
        None => text::derive_title(&draft.text, url, MAX_ARTICLE_TITLE),
    }
}

/// The kind of a post's `content` (`media`, `multiImage`, `article`, or none).
fn content_kind(content: Option<&Value>) -> Option<String> {
    content
        .and_then(Value::as_object)
        .and_then(|o| o.keys().next().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_author_prefixed_form_reads_as_the_plain_token() {
        assert_eq!(
            without_legacy_author(&Secret::new("urn:li:organization:5 AQtoken")),
            Secret::new("AQtoken")
        );
        assert_eq!(
            without_legacy_author(&Secret::new("AQplain")),
            Secret::new("AQplain")
        );
    }

    #[test]
    fn the_author_is_the_account_urn() {
        let account = |id: &str| AccountProfile {
            account_id: id.into(),
            ..AccountProfile::default()
        };
        assert_eq!(
            author(&account("urn:li:organization:5")),
            Ok("urn:li:organization:5")
        );
        assert_eq!(author(&account("urn:li:person:a")), Ok("urn:li:person:a"));
        assert_eq!(
            author(&account("")).unwrap_err().code,
            "linkedin_account_unknown"
        );
    }
}
