//! A video uploaded into its Instagram container (platform-facts §4.2, "resumable"):
//! `POST /{ig-user-id}/media` with `upload_type=resumable` makes the container, then the bytes go
//! to `rupload.facebook.com/ig-api-upload/{v}/{container}` (`Authorization: OAuth <token>`,
//! `offset`, `file_size`), streamed from the media URL one chunk per request, so at most one
//! chunk is in memory. Status polling and `media_publish` follow as for any container.
//!
//! Resuming: the session (container id and file size) is handed to the publisher before the
//! first byte, and each chunk Meta confirmed is recorded; a later attempt sends from the recorded
//! offset again. Meta documents no way to ask rupload how many bytes it holds, so Herald assumes
//! it holds exactly what it confirmed: a chunk whose answer was lost is sent again from its
//! offset. When Meta refuses to continue (the container expired or is gone, or it cannot resume
//! from that offset), the video is uploaded again into a new container.
use bytes::Bytes;
use herald_domain::{ErrorClass, PlatformFailure};
use serde::{Deserialize, Serialize};

use super::{
    caption_of, permanent, video_container, IdBody, InstagramAdapter, Params, Placement,
    CREATE_CONTAINER, UPLOAD,
};
use crate::media_source::Download;
use crate::platforms::http::{self, PlatformApi, SendError};
use crate::platforms::meta::graph;
use crate::platforms::x::join;
use crate::platforms::{MediaUpload, RateLimitGate, UploadProgress};
use crate::secret::Secret;

/// What the publisher keeps (sealed) to resume an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    container_id: String,
    file_size: u64,
}

/// The media reference of an uploaded video.
fn reference(container_id: &str) -> String {
    format!("container:{container_id}")
}

/// Progress nobody records: a re-upload inside `create_post` (the container expired).
pub(super) struct Unrecorded;

#[async_trait::async_trait]
impl UploadProgress for Unrecorded {
    async fn started(&self, _total_bytes: u64) {}
    async fn session_opened(&self, _session: &Secret) {}
    async fn chunk_sent(&self, _bytes_sent: u64, _total_bytes: u64) {}
}

/// Uploads the video of `upload` (resuming `upload.resume` when Meta lets it); returns
/// `container:{id}`.
pub(super) async fn upload(
    ig: &InstagramAdapter,
    token: &Secret,
    upload: &MediaUpload<'_>,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<String, PlatformFailure> {
    let placement = Placement::of(upload.post);
    let kind = video_container(placement, upload.count)?;
    let resumed = upload.resume.and_then(|r| {
        serde_json::from_str::<Session>(r.session.expose())
            .ok()
            .map(|s| (s, r.bytes_confirmed))
    });
    if let Some((session, confirmed)) = resumed {
        progress.started(session.file_size).await;
        if confirmed >= session.file_size {
            // Every byte was confirmed; the attempt ended before recording the upload.
            return Ok(reference(&session.container_id));
        }
        let mut source = Source::open(ig, &upload.item.url, confirmed).await?;
        match send(
            ig,
            token,
            &session,
            &mut source,
            confirmed,
            limits,
            progress,
        )
        .await
        {
            Ok(()) => return Ok(reference(&session.container_id)),
            Err(Stopped::Failed(failure)) => return Err(failure),
            Err(Stopped::Refused(failure)) => tracing::info!(
                container = %session.container_id,
                reason = %failure.message,
                "instagram would not continue the upload; uploading into a new container"
            ),
        }
    }
    let mut source = Source::open(ig, &upload.item.url, 0).await?;
    let file_size = source.total;
    if file_size == 0 {
        return Err(permanent(
            "media_empty",
            "the video at its URL is empty; check the URL",
        ));
    }
    let mut params: Params = kind.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    params.push(("upload_type", "resumable".to_owned()));
    if matches!(kind.first(), Some((_, "REELS"))) {
        caption_of(upload.post, &mut params);
    }
    let ig_id = &upload.post.account.account_id;
    let request = ig
        .login
        .http()
        .post(ig.url(&format!("{ig_id}/media")))
        .bearer_auth(token.expose())
        .form(&params);
    let created: IdBody =
        http::call_json(ig, "instagram_media", limits, request, CREATE_CONTAINER).await?;
    let session = Session {
        container_id: created.id,
        file_size,
    };
    progress.started(file_size).await;
    let handle = serde_json::to_string(&session).expect("the session serializes");
    progress.session_opened(&Secret::new(handle)).await;
    tracing::debug!(container = %session.container_id, file_size, "instagram upload session opened");
    match send(ig, token, &session, &mut source, 0, limits, progress).await {
        Ok(()) => Ok(reference(&session.container_id)),
        Err(Stopped::Failed(failure) | Stopped::Refused(failure)) => Err(failure),
    }
}

/// Why sending stopped.
enum Stopped {
    /// Try again later (or give up): the session stays.
    Failed(PlatformFailure),
    /// Meta refused the bytes for good: a resumed upload starts again in a new container.
    Refused(PlatformFailure),
}

/// Sends the bytes from `offset` to the end, one confirmed chunk per request.
async fn send(
    ig: &InstagramAdapter,
    token: &Secret,
    session: &Session,
    source: &mut Source,
    mut offset: u64,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<(), Stopped> {
    let url = join(&ig.config.upload_base, &session.container_id);
    let chunk_bytes = ig.config.upload_chunk_bytes.max(1);
    while offset < session.file_size {
        let len = chunk_bytes.min(session.file_size - offset);
        let chunk = source.read_exact(len).await.map_err(Stopped::Failed)?;
        let request = graph::rupload_chunk(
            ig.login.http(),
            url.clone(),
            token,
            offset,
            session.file_size,
            ig.config.graph.request_timeout,
            chunk,
        );
        let response = match http::send(ig, "instagram_upload", limits, request).await {
            Ok(response) => response,
            Err(SendError::Limited(failure)) => return Err(Stopped::Failed(failure)),
            Err(SendError::Transport(e)) => {
                return Err(Stopped::Failed(ig.transport_failure(&e, UPLOAD)))
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| Stopped::Failed(ig.transport_failure(&e, UPLOAD)))?;
        if !status.is_success() {
            let failure = ig.classify(status, &headers, &body, UPLOAD, chrono::Utc::now());
            return Err(if failure.class == ErrorClass::Permanent {
                Stopped::Refused(failure)
            } else {
                Stopped::Failed(failure)
            });
        }
        offset += len;
        progress.chunk_sent(offset, session.file_size).await;
    }
    Ok(())
}

/// The video, streamed from its URL through the SSRF-guarded media source.
struct Source {
    download: Download,
    /// The whole file's size.
    total: u64,
}

impl Source {
    /// Opens the media at `offset` (a range request when not 0).
    async fn open(ig: &InstagramAdapter, url: &str, offset: u64) -> Result<Self, PlatformFailure> {
        let download = ig.media_source.open(url, offset).await?;
        let total = download.require_total()?;
        Ok(Self { download, total })
    }

    /// Exactly `n` bytes, or a retryable failure when the file ends first.
    async fn read_exact(&mut self, n: u64) -> Result<Bytes, PlatformFailure> {
        let n = usize::try_from(n).map_err(|_| {
            permanent(
                "media_chunk_too_large",
                "an upload chunk does not fit in memory: lower INSTAGRAM_UPLOAD_CHUNK_BYTES",
            )
        })?;
        self.download.read_exact(n).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_and_references() {
        let session = Session {
            container_id: "17900".into(),
            file_size: 42,
        };
        let sealed = serde_json::to_string(&session).unwrap();
        assert_eq!(serde_json::from_str::<Session>(&sealed).unwrap(), session);
        assert_eq!(reference("17900"), "container:17900");
    }
}
