//! Image upload for Reddit image posts: a lease from `POST /api/media/asset.json`, then a
//! multipart form POST to the S3-style `action` it names (the lease's fields first, the file
//! last), streamed from the media URL. The URL to submit is the upload's `Location`.
use bytes::Bytes;
use futures::{stream, StreamExt};
use herald_domain::{ErrorClass, MediaKind, PlatformFailure};
use rand::distributions::{Alphanumeric, DistString};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use serde::Deserialize;

use super::errors::{s3_error, CallContext};
use super::RedditAdapter;
use crate::media_source::Download;
use crate::platforms::{MediaUpload, RateLimitGate, UploadProgress};

#[derive(Debug, Deserialize)]
struct Lease {
    args: LeaseArgs,
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

/// Uploads the image; returns the URL a `kind=image` submission points at.
pub(super) async fn upload(
    reddit: &RedditAdapter,
    token: &str,
    upload: &MediaUpload<'_>,
    limits: &dyn RateLimitGate,
    progress: &dyn UploadProgress,
) -> Result<String, PlatformFailure> {
    let item = upload.item;
    if item.kind == MediaKind::Video {
        return Err(PlatformFailure::new(
            ErrorClass::Permanent,
            "unsupported_media",
            "Herald posts images, links and text to Reddit, not videos; share the video as a link",
        ));
    }
    let source = reddit.media_source.open(&item.url, 0).await?;
    let max = reddit.config.image_max_bytes;
    if source.total.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    let filepath = file_name(&item.url, &item.mime_type);
    let request = reddit
        .api
        .post(reddit.config.api_url("api/media/asset.json"))
        .bearer_auth(token)
        .form(&[
            ("filepath", filepath.as_str()),
            ("mimetype", item.mime_type.as_str()),
        ]);
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
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filepath}\"\r\nContent-Type: {}\r\n\r\n",
        item.mime_type
    ));
    let tail = format!("\r\n--{boundary}--\r\n");
    // S3 needs the length up front: stream when the source says it, else buffer (images only,
    // bounded by Reddit's size limit).
    type Chunks =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, PlatformFailure>> + Send>>;
    let (file, length): (Chunks, u64) = match source.total {
        Some(length) => (Box::pin(chunks(source)), length),
        None => {
            let bytes = read_bounded(source, max).await?;
            let length = bytes.len() as u64;
            (Box::pin(stream::iter([Ok(bytes)])), length)
        }
    };
    progress.started(length).await;
    let body = stream::iter([Ok::<_, PlatformFailure>(Bytes::from(head.clone()))])
        .chain(file)
        .chain(stream::iter([Ok(Bytes::from(tail.clone()))]));
    let total = head.len() as u64 + length + tail.len() as u64;
    let response = reddit
        .uploads
        .post(&action)
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header(CONTENT_LENGTH, total)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(|e| {
            PlatformFailure::new(
                ErrorClass::Retryable,
                "media_upload_network",
                format!("uploading the image to Reddit's media storage failed ({}); Herald will try again", if e.is_timeout() { "timed out" } else { "connection lost" }),
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
        return Err(storage_failure(status.as_u16(), &text, max));
    }
    progress.chunk_sent(length, length).await;
    let from_xml = s3_tag(&text, "Location");
    Ok(location
        .or(from_xml)
        .unwrap_or_else(|| format!("{}/{key}", action.trim_end_matches('/'))))
}

fn s3_tag(body: &str, name: &str) -> Option<String> {
    body.split(&format!("<{name}>"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("</{name}>")).next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn too_large(max: u64) -> PlatformFailure {
    PlatformFailure::new(
        ErrorClass::Permanent,
        "media_too_large",
        format!(
            "the image is larger than Reddit takes ({} MB): use a smaller image",
            max / (1024 * 1024)
        ),
    )
}

/// Classifies a refusal of the S3-style upload target.
fn storage_failure(status: u16, body: &str, max: u64) -> PlatformFailure {
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
            ..too_large(max)
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
            format!("Reddit's media storage refused the image (HTTP {status}){said}; check that it is a PNG, JPEG or GIF Reddit can read"),
        ),
    }
}

fn file_name(url: &str, mime: &str) -> String {
    let from_url = url::Url::parse(url).ok().and_then(|u| {
        u.path_segments()
            .and_then(|mut s| s.next_back().map(str::to_owned))
            .filter(|s| s.contains('.') && !s.contains('"'))
    });
    from_url.unwrap_or_else(|| {
        let ext = match mime {
            "image/jpeg" => "jpg",
            "image/gif" => "gif",
            _ => "png",
        };
        format!("image.{ext}")
    })
}

async fn read_bounded(mut source: Download, max: u64) -> Result<Bytes, PlatformFailure> {
    let mut buffer = bytes::BytesMut::new();
    while let Some(chunk) = source.chunk().await? {
        if buffer.len() as u64 + chunk.len() as u64 > max {
            return Err(too_large(max));
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
            s3_tag(
                "<PostResponse><Location>https://x/k</Location></PostResponse>",
                "Location"
            ),
            Some("https://x/k".to_owned())
        );
    }
}
