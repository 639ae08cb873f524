//! YouTube Data API v3 adapter (platform-facts §7): Google OAuth with PKCE, `state`,
//! `access_type=offline` and `prompt=consent` (so a refresh token is issued; refreshes keep it),
//! revocation; the account is the channel (`channels.list?mine=true`).
//!
//! Publishing: the upload creates the video, so `upload_media` runs the resumable
//! `videos.insert` with the post's metadata (see [`upload`]) and returns the video id;
//! `create_post` sets the custom thumbnail, waits for processing and returns the watch URL.
//! `find_post` looks for the video in the channel's uploads playlist by title.
//!
//! Quota: Google reports none, so every call spends its cost from the project's daily quota in
//! the shared store first ([`quota`]); a `quotaExceeded` closes it until midnight Pacific time
//! for every worker. Rate-limit keys: `youtube_channels`, `youtube_videos_insert`,
//! `youtube_upload_chunk`, `youtube_videos_list`, `youtube_thumbnails_set`,
//! `youtube_playlist_items`.
mod config;
mod errors;
mod metadata;
mod quota;
mod settings;
mod upload;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, Platform, PlatformFailure};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde::Deserialize;

pub use config::{InsertQuota, QuotaConfig, YouTubeConfig, CHUNK_GRANULARITY, DEFAULT_SCOPES};
pub use quota::next_pacific_midnight;
pub use settings::{YouTubeSettings, ENTRY};

use self::errors::{classify, is_error_body, processing_failure, transport_failure, CallContext};
use self::quota::{Cost, Quota};
use super::http::{self, PlatformApi, Reply};
use super::{
    AuthorizationStart, CreatedPost, MediaUpload, PlatformAdapter, PostDraft, PostError,
    RateLimitGate, TokenGrant, Unlimited, UploadProgress,
};
use crate::media_source::MediaSource;
use crate::oauth::{ClientAuth, OAuthClient, OAuthEndpoints, SetupError};
use crate::secret::Secret;

/// Videos published this long before `since` still count: clocks differ.
const CLOCK_SKEW_SECS: i64 = 60;
/// Uploads-playlist pages read when reconciling (50 videos each).
const FIND_PAGES: usize = 4;
/// Largest thumbnail YouTube accepts (facts §7.4).
const MAX_THUMBNAIL_BYTES: u64 = 2 * 1024 * 1024;

/// The YouTube adapter. Cheap to share: hold it in an `Arc`.
pub struct YouTubeAdapter {
    config: YouTubeConfig,
    oauth: OAuthClient,
    /// Redirects are never followed: a redirect would carry the token elsewhere.
    api: reqwest::Client,
    /// Downloads media from its URL (a few redirects allowed, no token).
    media_source: MediaSource,
    quota: Quota,
}

impl std::fmt::Debug for YouTubeAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YouTubeAdapter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct ListResponse<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Channel {
    id: String,
    #[serde(default)]
    snippet: ChannelSnippet,
}

#[derive(Debug, Default, Deserialize)]
struct ChannelSnippet {
    title: Option<String>,
    #[serde(rename = "customUrl")]
    custom_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Video {
    #[serde(default)]
    status: VideoStatus,
    #[serde(rename = "processingDetails", default)]
    processing: ProcessingDetails,
}

#[derive(Debug, Default, Deserialize)]
struct VideoStatus {
    #[serde(rename = "uploadStatus")]
    upload_status: Option<String>,
    #[serde(rename = "failureReason")]
    failure_reason: Option<String>,
    #[serde(rename = "rejectionReason")]
    rejection_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ProcessingDetails {
    #[serde(rename = "processingStatus")]
    status: Option<String>,
    #[serde(rename = "processingFailureReason")]
    failure_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PlaylistItem {
    snippet: PlaylistSnippet,
}

#[derive(Debug, Deserialize)]
struct PlaylistSnippet {
    #[serde(default)]
    title: String,
    #[serde(rename = "publishedAt")]
    published_at: Option<DateTime<Utc>>,
    #[serde(rename = "resourceId")]
    resource: ResourceId,
}

#[derive(Debug, Deserialize)]
struct ResourceId {
    #[serde(rename = "videoId")]
    video_id: Option<String>,
}

impl YouTubeAdapter {
    /// An adapter for the YouTube Data API (or sandbox) described by `config`.
    pub fn new(config: YouTubeConfig) -> Result<Self, SetupError> {
        let oauth = OAuthClient::new(
            OAuthEndpoints {
                provider: "Google".to_owned(),
                authorize_url: config.authorize_url.clone(),
                token_url: config.token_url.clone(),
                revoke_url: Some(config.revoke_url.clone()),
                client_id: config.client_id.clone(),
                client_secret: Some(config.client_secret.clone()),
                scopes: config.scopes.clone(),
                use_pkce: true,
                client_auth: ClientAuth::RequestBody,
            },
            config.request_timeout,
        )?;
        let api = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()?;
        let media_source = MediaSource::new(config.media_policy.clone(), config.request_timeout)?;
        let quota = Quota::new(config.quota, &config.client_id);
        Ok(Self {
            config,
            oauth,
            api,
            media_source,
            quota,
        })
    }

    /// The configuration the adapter was built with.
    pub fn config(&self) -> &YouTubeConfig {
        &self.config
    }

    /// Spends the call's quota, sends, reads and classifies; a `quotaExceeded` closes the
    /// project's quota until the reset for every worker.
    async fn call(
        &self,
        endpoint: &str,
        limits: &dyn RateLimitGate,
        request: reqwest::RequestBuilder,
        ctx: CallContext,
        cost: Cost,
    ) -> Result<Reply, PlatformFailure> {
        self.quota.take(limits, cost, ctx.action).await?;
        let result = http::call(self, endpoint, limits, request, ctx).await;
        if let Err(failure) = &result {
            if failure.code.ends_with("_quotaExceeded") {
                let until = self.quota.exhausted(limits, cost).await;
                tracing::warn!(%until, "YouTube quota exceeded; closed until the reset");
            }
        }
        result
    }

    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        limits: &dyn RateLimitGate,
        request: reqwest::RequestBuilder,
        ctx: CallContext,
        cost: Cost,
    ) -> Result<T, PlatformFailure> {
        self.call(endpoint, limits, request, ctx, cost)
            .await?
            .json(self, ctx)
    }

    fn classify_reply(
        &self,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        ctx: CallContext,
    ) -> PlatformFailure {
        classify(status.as_u16(), headers, body, ctx, Utc::now())
    }

    fn watch_url(&self, video_id: &str) -> String {
        format!("{}{video_id}", self.config.watch_url)
    }

    /// Sets the custom thumbnail from `url`. The image is at most 2 MiB, so it is read whole.
    async fn set_thumbnail(
        &self,
        token: &Secret,
        video_id: &str,
        url: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<(), PlatformFailure> {
        let ctx = CallContext::THUMBNAIL;
        let source = self.media_source.open(url, 0).await?;
        let too_large = || {
            PlatformFailure::new(
                ErrorClass::Permanent,
                "thumbnail_too_large",
                "the thumbnail is larger than the 2 MB YouTube accepts: use a smaller JPEG or PNG",
            )
        };
        if source.total.is_some_and(|n| n > MAX_THUMBNAIL_BYTES) {
            return Err(too_large());
        }
        let mime = source
            .content_type()
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        // Bounded even when the server sends no Content-Length.
        let image = source
            .into_bytes_within(MAX_THUMBNAIL_BYTES)
            .await?
            .ok_or_else(too_large)?;
        let mut target = self.config.upload_url("thumbnails/set");
        target
            .query_pairs_mut()
            .append_pair("uploadType", "media")
            .append_pair("videoId", video_id);
        let request = self
            .api
            .post(target)
            .bearer_auth(token.expose())
            .header(CONTENT_TYPE, mime)
            .header(CONTENT_LENGTH, image.len())
            .body(image);
        self.call(
            "youtube_thumbnails_set",
            limits,
            request,
            ctx,
            Cost::THUMBNAIL,
        )
        .await
        .map(|_| ())
    }

    /// Polls `videos.list` until YouTube has processed the video, or it failed or was rejected.
    async fn await_processing(
        &self,
        token: &Secret,
        video_id: &str,
        limits: &dyn RateLimitGate,
    ) -> Result<(), PlatformFailure> {
        let ctx = CallContext::PROCESSING;
        let deadline = tokio::time::Instant::now() + self.config.processing_max_wait;
        loop {
            let mut url = self.config.api_url("videos");
            url.query_pairs_mut()
                .append_pair("part", "status,processingDetails")
                .append_pair("id", video_id);
            let request = self.api.get(url).bearer_auth(token.expose());
            let list: ListResponse<Video> = self
                .call_json("youtube_videos_list", limits, request, ctx, Cost::LIST)
                .await?;
            if let Some(video) = list.items.first() {
                let upload_status = video.status.upload_status.as_deref().unwrap_or("");
                match upload_status {
                    "processed" => return Ok(()),
                    "failed" | "rejected" => {
                        return Err(processing_failure(
                            upload_status,
                            video.status.failure_reason.as_deref(),
                            video.status.rejection_reason.as_deref(),
                        ))
                    }
                    "deleted" => {
                        return Err(PlatformFailure::new(
                            ErrorClass::Permanent,
                            "video_deleted",
                            "the video was deleted on YouTube while it was processing",
                        ))
                    }
                    _ => {}
                }
                if matches!(
                    video.processing.status.as_deref(),
                    Some("failed" | "terminated")
                ) {
                    let reason = video
                        .processing
                        .failure_reason
                        .as_deref()
                        .unwrap_or("other");
                    return Err(PlatformFailure::new(
                        ErrorClass::Permanent,
                        format!("processing_{reason}"),
                        format!("YouTube could not process the video ({reason}): re-encode it as H.264/AAC MP4 and publish again"),
                    ));
                }
            }
            if tokio::time::Instant::now() + self.config.processing_poll_interval > deadline {
                return Err(PlatformFailure::new(
                    ErrorClass::Retryable,
                    "processing_pending",
                    format!(
                        "YouTube is still processing the video after {} s; Herald checks again later",
                        self.config.processing_max_wait.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(self.config.processing_poll_interval).await;
        }
    }
}

impl PlatformApi for YouTubeAdapter {
    type Context = CallContext;

    fn name(&self) -> &'static str {
        "YouTube"
    }

    fn action(&self, ctx: CallContext) -> &'static str {
        ctx.action
    }

    /// YouTube sends no rate-limit headers; a 429 with `Retry-After` closes the endpoint.
    fn rate_limit(
        &self,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        now: DateTime<Utc>,
    ) -> (Option<u64>, Option<DateTime<Utc>>) {
        http::retry_after_on_429(status, headers, now)
    }

    fn classify(
        &self,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        ctx: CallContext,
        now: DateTime<Utc>,
    ) -> PlatformFailure {
        classify(status.as_u16(), headers, body, ctx, now)
    }

    fn transport_failure(&self, error: &reqwest::Error, ctx: CallContext) -> PlatformFailure {
        transport_failure(error, ctx)
    }

    fn is_error_body(&self, body: &serde_json::Value) -> bool {
        is_error_body(body)
    }
}

#[async_trait::async_trait]
impl PlatformAdapter for YouTubeAdapter {
    fn platform(&self) -> Platform {
        Platform::Youtube
    }

    /// Google's consent URL: `state`, PKCE S256, and `access_type=offline` with
    /// `prompt=consent` so that a refresh token is issued every time the user connects.
    fn authorization_url(&self, redirect_uri: &str) -> AuthorizationStart {
        let mut start = self.oauth.start(redirect_uri);
        start
            .url
            .query_pairs_mut()
            .append_pair("access_type", "offline")
            .append_pair("prompt", "consent")
            .append_pair("include_granted_scopes", "true");
        start
    }

    #[tracing::instrument(skip_all, fields(platform = "youtube"))]
    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenGrant, PlatformFailure> {
        self.oauth
            .exchange_code(code, pkce_verifier, redirect_uri)
            .await
    }

    /// Google normally returns no new refresh token: the old one is kept.
    #[tracing::instrument(skip_all, fields(platform = "youtube"))]
    async fn refresh(
        &self,
        _account: &AccountProfile,
        refresh_token: &Secret,
    ) -> Result<TokenGrant, PlatformFailure> {
        self.oauth.refresh(refresh_token).await
    }

    /// Revoking either token ends Google's whole grant; an already revoked or expired token
    /// (`invalid_token`) is what disconnecting wants anyway.
    #[tracing::instrument(skip_all, fields(platform = "youtube"))]
    async fn revoke(
        &self,
        _account: &AccountProfile,
        grant: &TokenGrant,
    ) -> Result<(), PlatformFailure> {
        match self.oauth.revoke_grant(grant).await {
            Err(failure) if failure.code == "invalid_token" => Ok(()),
            other => other,
        }
    }

    /// The channel of the signed-in Google account.
    #[tracing::instrument(skip_all, fields(platform = "youtube", account_id = tracing::field::Empty))]
    async fn account(&self, access_token: &Secret) -> Result<AccountProfile, PlatformFailure> {
        let mut url = self.config.api_url("channels");
        url.query_pairs_mut()
            .append_pair("part", "snippet")
            .append_pair("mine", "true");
        let request = self.api.get(url).bearer_auth(access_token.expose());
        let list: ListResponse<Channel> = self
            .call_json(
                "youtube_channels",
                &Unlimited,
                request,
                CallContext::READ_CHANNEL,
                Cost::LIST,
            )
            .await?;
        let Some(channel) = list.items.into_iter().next() else {
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                "youtube_no_channel",
                "the Google account has no YouTube channel: create one at youtube.com, then connect again",
            ));
        };
        tracing::Span::current().record("account_id", channel.id.as_str());
        let display_name = channel
            .snippet
            .title
            .clone()
            .unwrap_or_else(|| channel.id.clone());
        Ok(AccountProfile {
            username: channel
                .snippet
                .custom_url
                .clone()
                .unwrap_or_else(|| channel.id.clone()),
            account_id: channel.id,
            display_name,
        })
    }

    /// The resumable `videos.insert`: the upload creates the video.
    #[tracing::instrument(skip_all, fields(platform = "youtube", resumed = upload.resume.is_some()))]
    async fn upload_media(
        &self,
        access_token: &Secret,
        upload: &MediaUpload<'_>,
        limits: &dyn RateLimitGate,
        progress: &dyn UploadProgress,
    ) -> Result<String, PlatformFailure> {
        upload::upload(self, access_token, upload, limits, progress).await
    }

    /// Finishes the video the upload created: thumbnail, then processing.
    #[tracing::instrument(skip_all, fields(platform = "youtube", post_id = tracing::field::Empty))]
    async fn create_post(
        &self,
        access_token: &Secret,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<CreatedPost, PostError> {
        let Some(video_id) = draft.media_ids.first() else {
            return Err(PostError::Failed(PlatformFailure::new(
                ErrorClass::Permanent,
                "youtube_video_required",
                "a YouTube post needs one video: attach a video file",
            )));
        };
        tracing::Span::current().record("post_id", video_id.as_str());
        if let Some(thumbnail) = &draft.options.youtube.thumbnail_url {
            match self
                .set_thumbnail(access_token, video_id, thumbnail, limits)
                .await
            {
                Ok(()) => {}
                // The video is live either way: a thumbnail YouTube will never take must not
                // turn a published video into a failed job.
                Err(failure) if failure.class == ErrorClass::Permanent => {
                    tracing::warn!(error = %failure, "the custom thumbnail was not set");
                }
                Err(failure) => return Err(PostError::Failed(failure)),
            }
        }
        self.await_processing(access_token, video_id, limits)
            .await?;
        Ok(CreatedPost {
            post_id: video_id.clone(),
            url: self.watch_url(video_id),
        })
    }

    /// The video in the channel's uploads playlist, published at or after `since`, whose title
    /// is the one this draft uploads with.
    async fn find_post(
        &self,
        access_token: &Secret,
        since: DateTime<Utc>,
        draft: &PostDraft,
        limits: &dyn RateLimitGate,
    ) -> Result<Option<CreatedPost>, PlatformFailure> {
        let account_id = draft.account.account_id.as_str();
        let Some(suffix) = account_id.strip_prefix("UC") else {
            return Ok(None);
        };
        let playlist = format!("UU{suffix}");
        let resource = metadata::video_resource(draft);
        let title = resource["snippet"]["title"].as_str().unwrap_or_default();
        let earliest = since - TimeDelta::seconds(CLOCK_SKEW_SECS);
        let mut page_token: Option<String> = None;
        for _ in 0..FIND_PAGES {
            let mut url = self.config.api_url("playlistItems");
            url.query_pairs_mut()
                .append_pair("part", "snippet")
                .append_pair("playlistId", &playlist)
                .append_pair("maxResults", "50");
            if let Some(token) = &page_token {
                url.query_pairs_mut().append_pair("pageToken", token);
            }
            let request = self.api.get(url).bearer_auth(access_token.expose());
            let page: ListResponse<PlaylistItem> = self
                .call_json(
                    "youtube_playlist_items",
                    limits,
                    request,
                    CallContext::LIST_UPLOADS,
                    Cost::LIST,
                )
                .await?;
            let mut older = false;
            for item in &page.items {
                let published = item.snippet.published_at;
                if published.is_some_and(|p| p < earliest) {
                    // Newest first: everything after this is older still.
                    older = true;
                    break;
                }
                if item.snippet.title == title {
                    if let Some(id) = &item.snippet.resource.video_id {
                        return Ok(Some(CreatedPost {
                            post_id: id.clone(),
                            url: self.watch_url(id),
                        }));
                    }
                }
            }
            match page.next_page_token {
                Some(next) if !older => page_token = Some(next),
                _ => break,
            }
        }
        Ok(None)
    }
}
