//! Facebook Login with Page tokens (platform-facts §3.1), shared by the Facebook Pages and
//! Instagram adapters: where the Graph API lives, the consent URL (state always, no PKCE: the
//! server flow authenticates with the app secret), the code → short-lived → long-lived user
//! token exchange, the granted permissions, the Pages with their tokens, and renewing a Page
//! token.
//!
//! A Page token made from a long-lived user token does not expire, so every connection holds
//! its Page's token (Instagram business accounts are reached through the linked Page's token).
//! Meta has no refresh token; the connection's "refresh token" is the long-lived user token
//! (sealed in the vault like any token). Renewing exchanges the user token again
//! (`fb_exchange_token`) and asks for the Page's token anew — which Page comes from the
//! connection's account; once the user token has expired (about 60 days) or was revoked, the
//! user must log in again. Herald once stored the Page id beside the user token (a JSON
//! handle); [`current_form`] still reads that form, and the next renewal stores the plain one.
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use serde::Deserialize;
use url::Url;

use super::graph::{CallContext, Listing};
use crate::oauth::{redact, ClientAuth, OAuthClient, OAuthEndpoints, SetupError};
use crate::platforms::http::{self, PlatformApi};
use crate::platforms::x::join;
use crate::platforms::{AuthorizationStart, TokenGrant, Unlimited};
use crate::secret::Secret;

/// The Graph API version Herald speaks (facts §3.0: "Latest Graph API Version: v25.0").
pub const GRAPH_VERSION: &str = "v25.0";
/// `/me/accounts` pages followed at most (25 Pages each by default).
const MAX_ACCOUNT_PAGES: usize = 40;

const LIST_PAGES: CallContext = CallContext::api("list the Facebook Pages the login manages");
const READ_PERMISSIONS: CallContext = CallContext::api("read the permissions the login granted");
const READ_PERSON: CallContext = CallContext::api("read whose Facebook login it is");
const REVOKE: CallContext = CallContext::api("revoke Herald's permissions at Facebook");
/// `TokenGrant::login_id` of a Facebook login: `facebook:{app-scoped user id}`.
pub(crate) const LOGIN_PREFIX: &str = "facebook:";

/// Where the Graph API and Facebook Login live, and the Meta app.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// Versioned Graph base, e.g. `https://graph.facebook.com/v25.0`.
    pub graph_base: Url,
    /// Versioned base for video uploads, e.g. `https://graph-video.facebook.com/v25.0`.
    pub video_base: Url,
    /// The Facebook Login dialog, e.g. `https://www.facebook.com/v25.0/dialog/oauth`.
    pub dialog_url: Url,
    /// Makes Meta's host-less permalinks (`/{page}/videos/{id}/`) absolute.
    pub web_base: Url,
    /// The Meta app id.
    pub client_id: String,
    /// The app secret (Facebook Login's server flow sends it with every token call).
    pub client_secret: Secret,
    /// Permissions asked for at login.
    pub scopes: Vec<String>,
    /// Total time allowed for one request (including its response body).
    pub request_timeout: Duration,
}

impl GraphConfig {
    /// Meta's real hosts.
    pub fn new(client_id: impl Into<String>, client_secret: Secret, scopes: &[&str]) -> Self {
        let parse = |s: String| Url::parse(&s).expect("static URL is valid");
        Self {
            graph_base: parse(format!("https://graph.facebook.com/{GRAPH_VERSION}")),
            video_base: parse(format!("https://graph-video.facebook.com/{GRAPH_VERSION}")),
            dialog_url: parse(format!(
                "https://www.facebook.com/{GRAPH_VERSION}/dialog/oauth"
            )),
            web_base: parse("https://www.facebook.com".into()),
            client_id: client_id.into(),
            client_secret,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// A Graph-compatible server (the sandbox's `/meta`) serving everything under `base`:
    /// `{base}/v25.0/dialog/oauth`, `{base}/v25.0/oauth/access_token`, `{base}/v25.0/me`, ...
    pub fn for_base(
        base: Url,
        client_id: impl Into<String>,
        client_secret: Secret,
        scopes: &[&str],
    ) -> Self {
        let versioned = join(&base, GRAPH_VERSION);
        Self {
            dialog_url: join(&versioned, "dialog/oauth"),
            video_base: versioned.clone(),
            graph_base: versioned,
            ..Self::new(client_id, client_secret, scopes)
        }
    }

    pub fn graph_url(&self, path: &str) -> Url {
        join(&self.graph_base, path)
    }

    pub fn video_url(&self, path: &str) -> Url {
        join(&self.video_base, path)
    }

    /// `link` made absolute against the Facebook web host when Meta gave only a path.
    pub fn web_url(&self, link: &str) -> String {
        if Url::parse(link).is_ok() {
            return link.to_owned();
        }
        self.web_base
            .join(link)
            .map_or_else(|_| link.to_owned(), String::from)
    }
}

/// What an older Herald kept instead of a refresh token: the Page id is now the account's.
#[derive(Debug, Deserialize)]
struct LegacyRenewalHandle {
    user_token: String,
}

/// A stored Page grant in today's form: a legacy JSON handle becomes the plain user token.
pub fn current_form(stored: TokenGrant) -> TokenGrant {
    let legacy = stored
        .refresh_token
        .as_ref()
        .and_then(|r| serde_json::from_str::<LegacyRenewalHandle>(r.expose()).ok());
    match legacy {
        Some(handle) => TokenGrant {
            refresh_token: Some(Secret::new(handle.user_token)),
            ..stored
        },
        None => stored,
    }
}

/// Which Page's token renews a connection.
#[derive(Debug, Clone, Copy)]
pub enum RenewedPage<'a> {
    /// The connection is the Page (Facebook Pages: its account id).
    Page(&'a str),
    /// The Page linked to this Instagram business account (Instagram: its account id).
    LinkedTo(&'a str),
}

#[derive(Debug, Deserialize)]
struct TokenBody {
    access_token: String,
    expires_in: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Permission {
    permission: String,
    status: String,
}

/// A reference to another Graph object.
#[derive(Debug, Clone, Deserialize)]
pub struct IdRef {
    pub id: String,
}

/// One Page from `/me/accounts`.
#[derive(Debug, Clone, Deserialize)]
pub struct PageEntry {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub tasks: Vec<String>,
    #[serde(default)]
    pub instagram_business_account: Option<IdRef>,
}

impl PageEntry {
    /// Whether the user may publish as the Page.
    pub fn can_create_content(&self) -> bool {
        self.tasks.iter().any(|t| t == "CREATE_CONTENT")
    }

    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.id.clone())
    }
}

#[derive(Debug, Deserialize)]
struct PageToken {
    access_token: Option<String>,
}

/// Facebook Login for one adapter (its scopes and its name in messages).
pub struct FacebookLogin {
    config: GraphConfig,
    /// Builds the consent URL (state, scopes); token calls are made by hand because Meta's token
    /// endpoint is a GET with query parameters.
    oauth: OAuthClient,
    /// Redirects are never followed: a redirect would carry the token elsewhere.
    http: reqwest::Client,
}

impl std::fmt::Debug for FacebookLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FacebookLogin")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FacebookLogin {
    /// Reads a Deauthorize Callback, checked against the app secret (see `meta::deauthorize`).
    pub fn read_deauthorize(
        &self,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<crate::platforms::WebhookNotice, crate::platforms::WebhookRefusal> {
        super::deauthorize::read(self.config.client_secret.expose(), body, now)
    }

    pub fn new(config: GraphConfig, provider: &str) -> Result<Self, SetupError> {
        let oauth = OAuthClient::new(
            OAuthEndpoints {
                provider: provider.to_owned(),
                authorize_url: config.dialog_url.clone(),
                token_url: join(&config.graph_base, "oauth/access_token"),
                revoke_url: None,
                client_id: config.client_id.clone(),
                client_secret: Some(config.client_secret.clone()),
                // Facebook separates permissions with commas, so they travel as one value.
                scopes: vec![config.scopes.join(",")],
                use_pkce: false,
                client_auth: ClientAuth::RequestBody,
            },
            config.request_timeout,
        )?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()?;
        Ok(Self {
            config,
            oauth,
            http,
        })
    }

    pub fn config(&self) -> &GraphConfig {
        &self.config
    }

    /// The client for Graph calls (no redirects, the configured timeout).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The Facebook Login dialog URL with a fresh `state`.
    pub fn authorization_url(&self, redirect_uri: &str) -> AuthorizationStart {
        self.oauth.start(redirect_uri)
    }

    /// A token-endpoint call; secrets are removed from any message.
    async fn token_call<P: PlatformApi<Context = CallContext>>(
        &self,
        api: &P,
        query: &[(&str, &str)],
        ctx: CallContext,
        secrets: &[&str],
    ) -> Result<TokenBody, PlatformFailure> {
        let request = self
            .http
            .get(self.config.graph_url("oauth/access_token"))
            .query(query);
        http::call_json(api, "meta_token", &Unlimited, request, ctx)
            .await
            .map_err(|failure| PlatformFailure {
                message: redact(&failure.message, secrets),
                ..failure
            })
    }

    /// `fb_exchange_token`: a valid user token → a long-lived one (about 60 days).
    async fn long_lived<P: PlatformApi<Context = CallContext>>(
        &self,
        api: &P,
        user_token: &str,
        ctx: CallContext,
        secrets: &[&str],
    ) -> Result<TokenBody, PlatformFailure> {
        let secret = self.config.client_secret.expose();
        let mut all = secrets.to_vec();
        all.extend([secret, user_token]);
        self.token_call(
            api,
            &[
                ("grant_type", "fb_exchange_token"),
                ("client_id", &self.config.client_id),
                ("client_secret", secret),
                ("fb_exchange_token", user_token),
            ],
            ctx,
            &all,
        )
        .await
    }

    /// The code → a short-lived user token → a long-lived one. The grant has no refresh token:
    /// each account gets its own from [`Self::page_grant`].
    pub async fn exchange_code<P: PlatformApi<Context = CallContext>>(
        &self,
        api: &P,
        code: &str,
        redirect_uri: &str,
    ) -> Result<TokenGrant, PlatformFailure> {
        let secret = self.config.client_secret.expose();
        let short = self
            .token_call(
                api,
                &[
                    ("client_id", &self.config.client_id),
                    ("client_secret", secret),
                    ("redirect_uri", redirect_uri),
                    ("code", code),
                ],
                CallContext::CODE,
                &[code, secret],
            )
            .await?;
        let long = self
            .long_lived(api, &short.access_token, CallContext::CODE, &[code])
            .await?;
        let person = self
            .person(api, &Secret::new(long.access_token.clone()))
            .await?;
        Ok(TokenGrant {
            expires_at: long
                .expires_in
                .and_then(|s| Utc::now().checked_add_signed(TimeDelta::seconds(s))),
            access_token: Secret::new(long.access_token),
            refresh_token: None,
            scopes: self.config.scopes.clone(),
            refresh_token_expires_at: None,
            login_id: Some(format!("{LOGIN_PREFIX}{person}")),
        })
    }

    /// The app-scoped id of the person a user token belongs to.
    async fn person<P: PlatformApi<Context = CallContext>>(
        &self,
        api: &P,
        user_token: &Secret,
    ) -> Result<String, PlatformFailure> {
        let mut url = self.config.graph_url("me");
        url.query_pairs_mut().append_pair("fields", "id");
        let request = self.http.get(url).bearer_auth(user_token.expose());
        let me: IdRef = http::call_json(api, "meta_me", &Unlimited, request, READ_PERSON).await?;
        Ok(me.id)
    }

    /// Takes back every permission the person granted Herald's app (Graph reference, User
    /// permissions: `GET /{user-id}/permissions`, then `DELETE /{user-id}/permissions/{name}`
    /// with the user token, answering true). Facebook grants per person, not per token, so
    /// this ends every token of every login of theirs: the caller asks only once no
    /// connection with the same `login_id` is left. A grant stored before Herald recorded
    /// whose login it is cannot tell that, and is not revoked.
    pub async fn revoke<P: PlatformApi<Context = CallContext>>(
        &self,
        api: &P,
        grant: &TokenGrant,
    ) -> Result<(), PlatformFailure> {
        let person = grant
            .login_id
            .as_deref()
            .and_then(|id| id.strip_prefix(LOGIN_PREFIX));
        let (Some(person), Some(user_token)) = (person, grant.refresh_token.as_ref()) else {
            tracing::info!(
                "the grant does not say whose Facebook login it is; not revoked at Facebook"
            );
            return Ok(());
        };
        let request = self
            .http
            .get(self.config.graph_url(&format!("{person}/permissions")))
            .bearer_auth(user_token.expose());
        let granted: Listing<Permission> = http::call_json(
            api,
            "meta_permissions",
            &Unlimited,
            request,
            READ_PERMISSIONS,
        )
        .await?;
        // `public_profile` comes with every Facebook Login; Herald never asked for it.
        let taken_back = granted
            .data
            .iter()
            .filter(|p| p.status == "granted" && p.permission != "public_profile");
        for permission in taken_back {
            let path = format!("{person}/permissions/{}", permission.permission);
            let request = self
                .http
                .delete(self.config.graph_url(&path))
                .bearer_auth(user_token.expose());
            http::call(api, "meta_revoke", &Unlimited, request, REVOKE).await?;
        }
        Ok(())
    }

    /// Fails with what to do when the user unticked a permission Herald needs.
    pub async fn require_permissions<P: PlatformApi<Context = CallContext>>(
        &self,
        api: &P,
        user_token: &Secret,
        required: &[&str],
        reconnect: &str,
    ) -> Result<(), PlatformFailure> {
        let request = self
            .http
            .get(self.config.graph_url("me/permissions"))
            .bearer_auth(user_token.expose());
        let granted: Listing<Permission> = http::call_json(
            api,
            "meta_permissions",
            &Unlimited,
            request,
            READ_PERMISSIONS,
        )
        .await?;
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|needed| {
                !granted
                    .data
                    .iter()
                    .any(|p| p.permission == *needed && p.status == "granted")
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(PlatformFailure::new(
            ErrorClass::Permanent,
            "permissions_declined",
            format!(
                "the Facebook login did not grant {}; {reconnect} and leave those permissions switched on in the login dialog",
                missing.join(", ")
            ),
        ))
    }

    /// Every Page the user token manages, following `paging.next`.
    pub async fn pages<P: PlatformApi<Context = CallContext>>(
        &self,
        api: &P,
        user_token: &Secret,
        fields: &str,
    ) -> Result<Vec<PageEntry>, PlatformFailure> {
        let mut url = self.config.graph_url("me/accounts");
        url.query_pairs_mut()
            .append_pair("fields", fields)
            .append_pair("limit", "25");
        let mut pages = Vec::new();
        for _ in 0..MAX_ACCOUNT_PAGES {
            let request = self.http.get(url.clone()).bearer_auth(user_token.expose());
            let listing: Listing<PageEntry> =
                http::call_json(api, "meta_accounts", &Unlimited, request, LIST_PAGES).await?;
            let next = listing.next_page(&self.config.graph_base);
            pages.extend(listing.data);
            match next {
                Some(next) => url = next,
                None => break,
            }
        }
        Ok(pages)
    }

    /// The connection's grant for one Page: its Page token (no expiry), renewable with the
    /// login's long-lived user token.
    pub fn page_grant(&self, page_token: &str, login: &TokenGrant) -> TokenGrant {
        TokenGrant {
            access_token: Secret::new(page_token),
            refresh_token: Some(login.access_token.clone()),
            expires_at: None,
            scopes: login.scopes.clone(),
            refresh_token_expires_at: None,
            login_id: login.login_id.clone(),
        }
    }

    /// Renews a Page token: the user token (`user_token`, the grant's refresh token) is
    /// exchanged again (extending it), then `page`'s token is asked for anew. A refusal means
    /// the user must log in again.
    pub async fn renew_page_grant<P: PlatformApi<Context = CallContext>>(
        &self,
        api: &P,
        user_token: &Secret,
        page: RenewedPage<'_>,
    ) -> Result<TokenGrant, PlatformFailure> {
        let user = self
            .long_lived(api, user_token.expose(), CallContext::REFRESH, &[])
            .await?;
        let fresh_user_token = Secret::new(user.access_token);
        let page_token = self
            .page_token(api, &fresh_user_token, page)
            .await
            .map_err(|failure| PlatformFailure {
                message: redact(
                    &failure.message,
                    &[fresh_user_token.expose(), user_token.expose()],
                ),
                ..failure
            })?;
        let Some(page_token) = page_token else {
            return Err(PlatformFailure::new(
                ErrorClass::ReauthorizationRequired,
                "page_token_unavailable",
                "Facebook no longer gives Herald this Page's token: the person who connected it may have lost their role on the Page (or unlinked the Instagram account from it); connect it again with an account that manages the Page",
            ));
        };
        let login = TokenGrant {
            access_token: fresh_user_token,
            refresh_token: None,
            expires_at: None,
            scopes: self.config.scopes.clone(),
            refresh_token_expires_at: None,
            login_id: None,
        };
        Ok(self.page_grant(&page_token, &login))
    }

    /// `page`'s token as the user token sees it, if the user still manages the Page.
    async fn page_token<P: PlatformApi<Context = CallContext>>(
        &self,
        api: &P,
        user_token: &Secret,
        page: RenewedPage<'_>,
    ) -> Result<Option<String>, PlatformFailure> {
        let page_id = match page {
            RenewedPage::Page(page_id) => page_id.to_owned(),
            RenewedPage::LinkedTo(ig_user_id) => {
                // Listed without tokens: only the one Page's token is asked for below.
                let pages = self
                    .pages(api, user_token, "id,instagram_business_account")
                    .await?;
                let linked = pages.into_iter().find(|p| {
                    p.instagram_business_account
                        .as_ref()
                        .is_some_and(|ig| ig.id == ig_user_id)
                });
                match linked {
                    Some(page) => page.id,
                    None => return Ok(None),
                }
            }
        };
        let mut url = self.config.graph_url(&page_id);
        url.query_pairs_mut().append_pair("fields", "access_token");
        let request = self.http.get(url).bearer_auth(user_token.expose());
        let page: PageToken =
            http::call_json(api, "meta_token", &Unlimited, request, CallContext::REFRESH).await?;
        Ok(page.access_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_and_sandbox_urls() {
        let real = GraphConfig::new("id", Secret::new("s"), &["pages_show_list"]);
        assert_eq!(
            real.graph_url("me/accounts").as_str(),
            "https://graph.facebook.com/v25.0/me/accounts"
        );
        assert_eq!(
            real.video_url("1/videos").as_str(),
            "https://graph-video.facebook.com/v25.0/1/videos"
        );
        assert_eq!(
            real.dialog_url.as_str(),
            "https://www.facebook.com/v25.0/dialog/oauth"
        );
        assert_eq!(
            real.web_url("/1/videos/2/"),
            "https://www.facebook.com/1/videos/2/"
        );
        assert_eq!(real.web_url("https://x.test/a"), "https://x.test/a");
        let sandbox = GraphConfig::for_base(
            Url::parse("http://127.0.0.1:4000/meta").unwrap(),
            "id",
            Secret::new("s"),
            &[],
        );
        assert_eq!(
            sandbox.dialog_url.as_str(),
            "http://127.0.0.1:4000/meta/v25.0/dialog/oauth"
        );
        assert_eq!(
            sandbox.video_url("me/videos").as_str(),
            "http://127.0.0.1:4000/meta/v25.0/me/videos"
        );
    }

    #[test]
    fn the_old_handle_with_the_page_id_reads_as_the_plain_user_token() {
        let grant = |refresh: &str| TokenGrant {
            access_token: Secret::new("page-token"),
            refresh_token: Some(Secret::new(refresh)),
            expires_at: None,
            scopes: vec![],
            refresh_token_expires_at: None,
            login_id: None,
        };
        let old = grant(r#"{"page_id":"1001","user_token":"EAAuser"}"#);
        assert_eq!(current_form(old), grant("EAAuser"));
        assert_eq!(current_form(grant("EAAuser")), grant("EAAuser"));
    }
}
