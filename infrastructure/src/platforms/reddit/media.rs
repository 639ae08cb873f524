//! Media upload for Reddit image, gallery and video posts: a lease from
//! `POST /api/media/asset.json` (form `filepath`, `mimetype`; it answers the S3-style form to
//! post to and the asset's id), then a multipart form POST to the `action` it names (the
//! lease's fields first, the file last), streamed from the media URL. An image or video
//! submission points at the upload's URL (its `Location`); a gallery names each image by its
//! asset id. A video also needs a poster image (`video_poster_url`), uploaded the same way
//! from `options.reddit.thumbnail_url` (PRAW's `_upload_media`, `submit_gallery`,
//! `submit_video`).
use bytes::Bytes;
use futures::{stream, StreamExt};
use herald_domain::{ErrorClass, MediaKind, PlatformFailure};
use rand::distributions::{Alphanumeric, DistString};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use serde::{Deserialize, Serialize};

use super::errors::{s3_error, CallContext};
use super::RedditAdapter;
use crate::media_source::Download;
use crate::platforms::{media_not_taken, MediaUpload, RateLimitGate, UploadProgress};
use crate::secret::Secret;

/// Image types Reddit leases (PRAW's `_upload_media` table).
const IMAGE_TYPES: [&str; 3] = ["image/png", "image/jpeg", "image/gif"];

#[derive(Debug, Deserialize)]
struct Lease {
    args: LeaseArgs,
    asset: Option<LeaseAsset>,
}

#[derive(Debug, Deserialize)]
struct LeaseArgs {
    action: String,
    fields: Vec<LeaseField>,
}

#[derive(Debug, Deserialize)]
struct LeaseField {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
struct LeaseAsset {
    asset_id: String,
}

/// What Herald keeps of one uploaded item (`upload_media`'s answer, stored with the job): the
/// asset id a gallery names, the URL an image or video submission points at, and a video's
/// poster URL. Stored as JSON; a bare URL is an image an older Herald uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct UploadedMedia {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_id: Option<String>,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster_url: Option<String>,
}

impl UploadedMedia {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("plain strings serialize")
    }

    pub fn decode(stored: &str) -> Self {
        serde_json::from_str(stored).unwrap_or_else(|_| Self {
            asset_id: None,
            url: stored.to_owned(),
            poster_url: None,
        })
    }
}

/// What is being uploaded: decides the size limit, the advice and whether the file may be
/// buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Image,
    Video,
    Poster,
}

impl What {
    fn noun(self) -> &'static str {
        match self {
            What::Image => "image",
            What::Video => "video",
            What::Poster => "poster image (options.reddit.thumbnail_url)",
        }
    }

    fn formats(self) -> &'static str {
        match self {
            What::Video => "an MP4 or MOV",
            _ => "a PNG, JPEG or GIF",
        }
    }

    fn max_bytes(self, reddit: &RedditAdapter) -> u64 {
        match self {
            What::Video => reddit.config.video_max_bytes,
            _ => reddit.config.image_max_bytes,
        }
    }
}

/// Progress nobody records: the poster is small and not one of the post's media items.
struct Unrecorded;

#[async_trait::async_trait]
impl UploadProgress for Unrecorded {
    async fn started(&self, _total_bytes: u64) {}
    async fn session_opened(&self, _session: &Secret) {}
    async fn chunk_sent(&self, _bytes_sent: u64, _total_bytes: u64) {}
}

/// Uploads one media item; for a video, its poster first. Returns the `UploadedMedia` to store.
pub(super) async fn upload(
    reddit: &RedditAdapter,
    token: &str,
    upload: &MediaUpload<'_>,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<String, PlatformFailure> {
    let item = upload.item;
    if item.kind == MediaKind::Document {
        return Err(media_not_taken("Reddit", "documents", "share it as a link"));
    }
    if item.kind != MediaKind::Video {
        let image = put(
            reddit,
            token,
            &item.url,
            Some(&item.mime_type),
            What::Image,
            limits,
            progress,
        )
        .await?;
        return Ok(image.encode());
    }
    let poster = upload
        .post
        .options
        .reddit
        .thumbnail_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            PlatformFailure::new(
                ErrorClass::Permanent,
                "thumbnail_required",
                "a Reddit video post needs a poster image: set options.reddit.thumbnail_url to a JPEG, PNG or GIF",
            )
        })?;
    // The poster first: it is small, and a bad poster URL fails before the video is sent.
    let poster = put(
        reddit,
        token,
        poster,
        None,
        What::Poster,
        limits,
        &Unrecorded,
    )
    .await?;
    let video = put(
        reddit,
        token,
        &item.url,
        Some(&item.mime_type),
        What::Video,
        limits,
        progress,
    )
    .await?;
    Ok(UploadedMedia {
        poster_url: Some(poster.url),
        ..video
    }
    .encode())
}

/// Leases an upload for the file at `url` and streams it to Reddit's media storage.
/// `mime_type` is the type the request gave; a poster's comes from its URL's answer.
async fn put(
    reddit: &RedditAdapter,
    token: &str,
    url: &str,
    mime_type: Option<&str>,
    what: What,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<UploadedMedia, PlatformFailure> {
    let source = reddit.media_source.open(url, 0).await?;
    let mime = match mime_type {
        Some(mime) => mime.to_owned(),
        None => poster_type(&source, url)?,
    };
    let max = what.max_bytes(reddit);
    if source.total.is_some_and(|n| n > max) {
        return Err(too_large(what, max));
    }
    // A video is streamed, never held whole in memory: S3 needs its length up front.
    if what == What::Video {
        source.require_total()?;
    }
    let filepath = file_name(url, &mime);
    let request = reddit
        .api
        .post(reddit.config.api_url("api/media/asset.json"))
        .bearer_auth(token)
        .form(&[("filepath", filepath.as_str()), ("mimetype", mime.as_str())]);
    let lease: Lease = reddit
        .call_json(&reddit.api_key(), limits, request, CallContext::LEASE_MEDIA)
        .await?;
    // Reddit's action is protocol-relative (`//bucket.s3...`).
    let action = if lease.args.action.starts_with("//") {
        format!("{}:{}", reddit.config.api_base.scheme(), lease.args.action)
    } else {
        lease.args.action.clone()
    };

    let boundary = Alphanumeric.sample_string(&mut rand::thread_rng(), 32);
    let mut head = String::new();
    let mut key = String::new();
    for field in &lease.args.fields {
        if field.name == "key" {
            key = field.value.clone();
        }
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{}\r\n",
            field.name, field.value
        ));
    }
    head.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filepath}\"\r\nContent-Type: {mime}\r\n\r\n",
    ));
    let tail = format!("\r\n--{boundary}--\r\n");
    // S3 needs the length up front: stream when the source says it, else buffer (images only,
    // bounded by Reddit's size limit).
    type Chunks =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, PlatformFailure>> + Send>>;
    let (file, length): (Chunks, u64) = match source.total {
        Some(length) => (Box::pin(chunks(source)), length),
        None => {
            let bytes = read_bounded(source, what, max).await?;
            let length = bytes.len() as u64;
            (Box::pin(stream::iter([Ok(bytes)])), length)
        }
    };
    progress.started(length).await;
    let body = stream::iter([Ok::<_, PlatformFailure>(Bytes::from(head.clone()))])
        .chain(file)
        .chain(stream::iter([Ok(Bytes::from(tail.clone()))]));
    let total = head.len() as u64 + length + tail.len() as u64;
    let mut request = reddit
        .uploads
        .post(&action)
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header(CONTENT_LENGTH, total)
        .body(reqwest::Body::wrap_stream(body));
    if what == What::Video {
        request = request.timeout(reddit.config.video_upload_timeout);
    }
    let response = request.send().await.map_err(|e| {
        PlatformFailure::new(
            ErrorClass::Retryable,
            "media_upload_network",
            format!(
                "uploading the {} to Reddit's media storage failed ({}); Herald will try again",
                what.noun(),
                if e.is_timeout() {
                    "timed out"
                } else {
                    "connection lost"
                }
            ),
        )
    })?;
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(storage_failure(status.as_u16(), &text, what, max));
    }
    progress.chunk_sent(length, length).await;
    let from_xml = s3_tag(&text, "Location");
    let asset_id = lease.asset.map(|a| a.asset_id).filter(|id| !id.is_empty());
    Ok(UploadedMedia {
        asset_id,
        url: location
            .or(from_xml)
            .unwrap_or_else(|| format!("{}/{key}", action.trim_end_matches('/'))),
        poster_url: None,
    })
}

/// The poster's type, from its URL's answer (or its name): one Reddit leases as an image.
fn poster_type(source: &Download, url: &str) -> Result<String, PlatformFailure> {
    let from_name = || {
        let name = url_file_name(url)?.to_ascii_lowercase();
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_owned())?;
        let mime = match ext.as_str() {
            "png" => "image/png",
            "jpg" | "jpeg" => "image/jpeg",
            "gif" => "image/gif",
            _ => return None,
        };
        Some(mime.to_owned())
    };
    let given = source
        .content_type()
        .map(|t| t.to_ascii_lowercase())
        .filter(|t| t.starts_with("image/"));
    given
        .or_else(from_name)
        .filter(|t| IMAGE_TYPES.contains(&t.as_str()))
        .ok_or_else(|| {
            PlatformFailure::new(
                ErrorClass::Permanent,
                "thumbnail_unsupported",
                format!(
                    "the poster image (options.reddit.thumbnail_url) must be a PNG, JPEG or GIF; {} is {}",
                    url,
                    source.content_type().unwrap_or_else(|| "of an unknown type".into())
                ),
            )
        })
}

fn s3_tag(body: &str, name: &str) -> Option<String> {
    body.split(&format!("<{name}>"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("</{name}>")).next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn too_large(what: What, max: u64) -> PlatformFailure {
    PlatformFailure::new(
        ErrorClass::Permanent,
        "media_too_large",
        format!(
            "the {} is larger than Reddit takes ({} MB): use a smaller one",
            what.noun(),
            max / (1024 * 1024)
        ),
    )
}

/// Classifies a refusal of the S3-style upload target.
fn storage_failure(status: u16, body: &str, what: What, max: u64) -> PlatformFailure {
    let (code, message) = s3_error(body);
    let code_name = if code.is_empty() {
        format!("media_http_{status}")
    } else {
        format!("s3_{}", code.to_ascii_lowercase())
    };
    let said = if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    };
    match (status, code.as_str()) {
        (_, "EntityTooLarge") => PlatformFailure {
            code: code_name,
            ..too_large(what, max)
        },
        (500..=599, _) | (_, "SlowDown" | "RequestTimeout") => PlatformFailure::new(
            ErrorClass::Retryable,
            code_name,
            format!("Reddit's media storage failed (HTTP {status}){said}; Herald will try again"),
        ),
        // A refused lease (expired, or its signature) is replaced by a new one next attempt.
        (403, _) => PlatformFailure::new(
            ErrorClass::Retryable,
            code_name,
            format!("Reddit's media storage refused the upload lease{said}; Herald asks for a new one"),
        ),
        _ => PlatformFailure::new(
            ErrorClass::Permanent,
            code_name,
            format!(
                "Reddit's media storage refused the {} (HTTP {status}){said}; check that it is {} Reddit can read",
                what.noun(),
                what.formats()
            ),
        ),
    }
}

/// The file name at the end of `url`'s path, if it has an extension.
fn url_file_name(url: &str) -> Option<String> {
    url::Url::parse(url).ok().and_then(|u| {
        u.path_segments()
            .and_then(|mut s| s.next_back().map(str::to_owned))
            .filter(|s| s.contains('.') && !s.contains('"'))
    })
}

fn file_name(url: &str, mime: &str) -> String {
    url_file_name(url).unwrap_or_else(|| {
        let (name, ext) = match mime {
            "image/jpeg" => ("image", "jpg"),
            "image/gif" => ("image", "gif"),
            "video/mp4" => ("video", "mp4"),
            "video/quicktime" => ("video", "mov"),
            _ => ("image", "png"),
        };
        format!("{name}.{ext}")
    })
}

async fn read_bounded(
    mut source: Download,
    what: What,
    max: u64,
) -> Result<Bytes, PlatformFailure> {
    let mut buffer = bytes::BytesMut::new();
    while let Some(chunk) = source.chunk().await? {
        if buffer.len() as u64 + chunk.len() as u64 > max {
            return Err(too_large(what, max));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

/// The rest of a download as a stream, for a streamed request body.
fn chunks(
    download: Download,
) -> impl futures::Stream<Item = Result<Bytes, PlatformFailure>> + Send + 'static {
    stream::unfold(download, |mut download| async move {
        download
            .chunk()
            .await
            .transpose()
            .map(|chunk| (chunk, download))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_come_from_the_url_or_the_type() {
        assert_eq!(
            file_name("https://cdn.test/a/cat.png?x=1", "image/png"),
            "cat.png"
        );
        assert_eq!(file_name("https://cdn.test/a/", "image/jpeg"), "image.jpg");
        assert_eq!(
            file_name("https://cdn.test/v?id=1", "video/quicktime"),
            "video.mov"
        );
        assert_eq!(
            s3_tag(
                "<PostResponse><Location>https://x/k</Location></PostResponse>",
                "Location"
            ),
            Some("https://x/k".to_owned())
        );
    }

    #[test]
    fn stored_media_keeps_the_asset_id_and_reads_a_bare_url_as_an_older_image() {
        let video = UploadedMedia {
            asset_id: Some("fmng6wpyyw261".into()),
            url: "https://s3.test/fmng6wpyyw261".into(),
            poster_url: Some("https://s3.test/rte_images%2Fp1".into()),
        };
        assert_eq!(UploadedMedia::decode(&video.encode()), video);
        assert_eq!(
            UploadedMedia::decode("https://s3.test/rte_images%2Fa1"),
            UploadedMedia {
                asset_id: None,
                url: "https://s3.test/rte_images%2Fa1".into(),
                poster_url: None,
            }
        );
    }
}
