//! User info (Login Kit), the Content Posting API: creator info, the three init endpoints,
//! status fetch and cancel (platform-facts §2.2, §2.3, §2.5, §2.6), and the Display API's video
//! list.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::state::{new_publish, Creator, Inner, Mode, Publish};
use super::{
    envelope_error, envelope_ok, finish, guard, invalid_param, json_body, utf16_len, Ctx,
    TiktokEndpoint, TiktokState, MAX_CHUNK, MAX_CHUNKS, MAX_FINAL_CHUNK, MAX_PHOTOS,
    MAX_PHOTO_DESCRIPTION, MAX_PHOTO_TITLE, MAX_VIDEO_BYTES, MAX_VIDEO_TITLE, MIN_CHUNK,
};
use crate::faults::{self, Fault};
use crate::oauth::random_token;

const PUBLISH: &str = "video.publish";
const UPLOAD: &str = "video.upload";
/// "Read a user's public videos on TikTok" (https://developers.tiktok.com/doc/display-api-overview/).
const LIST: &str = "video.list";
/// `video/list`'s `max_count` bounds and the default when it is left out.
const MAX_LIST_COUNT: u64 = 20;
const DEFAULT_LIST_COUNT: u64 = 10;
/// Longest `title` / `video_description` of the Video Object, in UTF-16 units
/// (https://developers.tiktok.com/doc/tiktok-api-v2-video-object).
const MAX_LISTED_TEXT: usize = 150;
/// Video Object fields the twin serves.
const VIDEO_FIELDS: &[&str] = &[
    "id",
    "create_time",
    "title",
    "video_description",
    "share_url",
    "cover_image_url",
    "duration",
    "embed_link",
];
const PRIVACY_LEVELS: &[&str] = &[
    "PUBLIC_TO_EVERYONE",
    "MUTUAL_FOLLOW_FRIENDS",
    "FOLLOWER_OF_CREATOR",
    "SELF_ONLY",
];

/// `user/info` fields and the scope each needs.
const USER_FIELDS: &[(&str, &str)] = &[
    ("open_id", "user.info.basic"),
    ("union_id", "user.info.basic"),
    ("avatar_url", "user.info.basic"),
    ("avatar_url_100", "user.info.basic"),
    ("avatar_large_url", "user.info.basic"),
    ("display_name", "user.info.basic"),
    ("bio_description", "user.info.profile"),
    ("profile_deep_link", "user.info.profile"),
    ("is_verified", "user.info.profile"),
    ("username", "user.info.profile"),
    ("follower_count", "user.info.stats"),
    ("following_count", "user.info.stats"),
    ("likes_count", "user.info.stats"),
    ("video_count", "user.info.stats"),
];

fn forbidden(code: &str, message: &str) -> HttpResponse {
    envelope_error(StatusCode::FORBIDDEN, code, message)
}

/// The caller's creator record.
fn creator_of(state: &TiktokState, ctx: &Ctx) -> Option<Creator> {
    state.lock().creators.get(&ctx.caller.open_id).cloned()
}

/// `GET /v2/user/info/?fields=open_id,display_name,...`.
pub(crate) async fn user_info(state: web::Data<TiktokState>, req: HttpRequest) -> HttpResponse {
    let ctx = match guard(&state, &req, TiktokEndpoint::UserInfo, &["user.info.basic"]).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let q: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let Some(fields) = q
        .iter()
        .find(|(k, _)| k == "fields")
        .map(|(_, v)| v.clone())
    else {
        return envelope_error(
            StatusCode::BAD_REQUEST,
            "invalid_params",
            "The fields parameter is required.",
        );
    };
    let Some(creator) = creator_of(&state, &ctx) else {
        return super::access_token_invalid();
    };
    let mut user = Map::new();
    for field in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let Some((_, scope)) = USER_FIELDS.iter().find(|(f, _)| *f == field) else {
            return envelope_error(
                StatusCode::BAD_REQUEST,
                "invalid_params",
                &format!("Unknown field {field}."),
            );
        };
        if !ctx.caller.scopes.iter().any(|s| s == scope) {
            return envelope_error(
                StatusCode::UNAUTHORIZED,
                "scope_not_authorized",
                &format!("The field {field} needs the {scope} scope."),
            );
        }
        let value = match field {
            "open_id" => json!(creator.open_id),
            "union_id" => json!(creator.union_id),
            "avatar_url" | "avatar_url_100" | "avatar_large_url" => json!(format!(
                "https://p16-sign.tiktokcdn.com/sandbox/{}.jpeg",
                creator.username
            )),
            "display_name" => json!(creator.display_name),
            "bio_description" => json!(""),
            "profile_deep_link" => json!(creator.profile_url()),
            "is_verified" => json!(false),
            "username" => json!(creator.username),
            _ => json!(0),
        };
        user.insert(field.to_owned(), value);
    }
    finish(&ctx, envelope_ok(json!({ "user": user }))).await
}

/// Why the creator may not post right now, as TikTok reports it (creator_info: HTTP 200;
/// init: 403).
fn posting_refusal(
    state: &TiktokState,
    inner: &Inner,
    creator: &Creator,
    now: Instant,
) -> Option<(&'static str, &'static str)> {
    if creator.banned {
        return Some((
            "spam_risk_user_banned_from_posting",
            "The user is banned from making new posts.",
        ));
    }
    if inner.recent_direct_posts(&creator.open_id, now) >= state.config.daily_post_cap {
        return Some((
            "spam_risk_too_many_posts",
            "The daily post cap from the API is reached for the current user.",
        ));
    }
    if !state.config.audited {
        let creators = inner.recent_posting_creators();
        if creators.len() >= 5 && !creators.contains(&creator.open_id) {
            return Some((
                "reached_active_user_cap",
                "The daily quota for active publishing users from your client is reached.",
            ));
        }
    }
    None
}

/// `POST /v2/post/publish/creator_info/query/`.
pub(crate) async fn creator_info(state: web::Data<TiktokState>, req: HttpRequest) -> HttpResponse {
    let ctx = match guard(&state, &req, TiktokEndpoint::CreatorInfo, &[PUBLISH]).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let Some(creator) = creator_of(&state, &ctx) else {
        return super::access_token_invalid();
    };
    let refusal = {
        let mut inner = state.lock();
        let now = Instant::now();
        inner.settle(&state.config, now);
        posting_refusal(&state, &inner, &creator, now)
    };
    if let Some((code, message)) = refusal {
        // "HTTP 200 (intentional)".
        return envelope_error(StatusCode::OK, code, message);
    }
    let data = json!({
        "creator_avatar_url": format!("https://p16-sign.tiktokcdn.com/sandbox/{}.jpeg", creator.username),
        "creator_username": creator.username,
        "creator_nickname": creator.display_name,
        "privacy_level_options": creator.privacy_level_options(),
        "comment_disabled": creator.comment_disabled,
        "duet_disabled": creator.duet_disabled,
        "stitch_disabled": creator.stitch_disabled,
        "max_video_post_duration_sec": creator.max_video_post_duration_sec,
    });
    finish(&ctx, envelope_ok(data)).await
}

fn obj<'a>(
    body: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, HttpResponse> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(invalid_param(&format!("{key} must be an object."))),
    }
}

fn string(m: &Map<String, Value>, key: &str) -> Result<Option<String>, HttpResponse> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid_param(&format!("{key} must be a string."))),
    }
}

fn boolean(m: &Map<String, Value>, key: &str) -> Result<bool, HttpResponse> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid_param(&format!("{key} must be a boolean."))),
    }
}

fn int(m: &Map<String, Value>, key: &str) -> Result<Option<u64>, HttpResponse> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid_param(&format!("{key} must be a non-negative int64."))),
    }
}

/// The chunk rules of the Media Transfer Guide (platform-facts §2.4).
pub(crate) fn check_chunks(video_size: u64, chunk_size: u64, total: u64) -> Result<(), String> {
    if video_size == 0 || video_size > MAX_VIDEO_BYTES {
        return Err(format!(
            "video_size must be between 1 byte and 4 GB; got {video_size}."
        ));
    }
    if video_size < MIN_CHUNK {
        if chunk_size != video_size || total != 1 {
            return Err("A video under 5 MB must be uploaded whole: chunk_size equal to video_size and total_chunk_count 1.".into());
        }
        return Ok(());
    }
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) || chunk_size > video_size {
        return Err(format!(
            "chunk_size must be between 5 MB and 64 MB and not above video_size; got {chunk_size}."
        ));
    }
    let expected = video_size / chunk_size;
    if total != expected {
        return Err(format!(
            "total_chunk_count must be video_size / chunk_size rounded down ({expected}); got {total}."
        ));
    }
    if !(1..=MAX_CHUNKS).contains(&total) {
        return Err(format!(
            "An upload has 1 to 1000 chunks; this one would have {total}."
        ));
    }
    let last = video_size - (total - 1) * chunk_size;
    if last > MAX_FINAL_CHUNK {
        return Err(format!(
            "The final chunk would be {last} bytes; it may be at most 128 MB."
        ));
    }
    Ok(())
}

/// Whether `url` is an absolute http(s) URL under a verified prefix.
fn url_verified(state: &TiktokState, url: &str) -> Result<(), HttpResponse> {
    let parsed = url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    if parsed.is_none() {
        return Err(invalid_param(&format!("{url} is not a valid URL.")));
    }
    let verified = state
        .config
        .verified_url_prefixes
        .as_ref()
        .is_none_or(|prefixes| prefixes.iter().any(|p| url.starts_with(p.as_str())));
    if verified {
        Ok(())
    } else {
        Err(forbidden(
            "url_ownership_unverified",
            "The domain or URL prefix of the media URL is not verified for this app.",
        ))
    }
}

/// The parsed `source_info` of a video init.
struct VideoSource {
    source: &'static str,
    video_size: Option<u64>,
    chunk_size: Option<u64>,
    total_chunk_count: Option<u64>,
    video_url: Option<String>,
}

fn video_source(
    state: &TiktokState,
    body: &Map<String, Value>,
) -> Result<VideoSource, HttpResponse> {
    let Some(info) = obj(body, "source_info")? else {
        return Err(invalid_param("source_info is required."));
    };
    match string(info, "source")?.as_deref() {
        Some("FILE_UPLOAD") => {
            let (Some(size), Some(chunk), Some(total)) = (
                int(info, "video_size")?,
                int(info, "chunk_size")?,
                int(info, "total_chunk_count")?,
            ) else {
                return Err(invalid_param(
                    "video_size, chunk_size and total_chunk_count are required for FILE_UPLOAD.",
                ));
            };
            check_chunks(size, chunk, total).map_err(|m| invalid_param(&m))?;
            Ok(VideoSource {
                source: "FILE_UPLOAD",
                video_size: Some(size),
                chunk_size: Some(chunk),
                total_chunk_count: Some(total),
                video_url: None,
            })
        }
        Some("PULL_FROM_URL") => {
            let Some(url) = string(info, "video_url")? else {
                return Err(invalid_param("video_url is required for PULL_FROM_URL."));
            };
            url_verified(state, &url)?;
            Ok(VideoSource {
                source: "PULL_FROM_URL",
                video_size: None,
                chunk_size: None,
                total_chunk_count: None,
                video_url: Some(url),
            })
        }
        _ => Err(invalid_param(
            "source must be FILE_UPLOAD or PULL_FROM_URL.",
        )),
    }
}

/// Checks a Direct Post's `privacy_level` against the creator's options and the app's audit.
fn check_privacy(
    state: &TiktokState,
    creator: &Creator,
    privacy: Option<&str>,
) -> Result<String, HttpResponse> {
    let Some(privacy) = privacy else {
        return Err(invalid_param("post_info.privacy_level is required."));
    };
    if !PRIVACY_LEVELS.contains(&privacy) {
        return Err(invalid_param(&format!(
            "privacy_level must be one of {}.",
            PRIVACY_LEVELS.join(", ")
        )));
    }
    if !state.config.audited && privacy != "SELF_ONLY" {
        return Err(forbidden(
            "unaudited_client_can_only_post_to_private_accounts",
            "Unaudited clients can only post with SELF_ONLY visibility.",
        ));
    }
    if !creator.privacy_level_options().contains(&privacy) {
        return Err(forbidden(
            "privacy_level_option_mismatch",
            "privacy_level is not one of the creator's privacy_level_options.",
        ));
    }
    Ok(privacy.to_owned())
}

/// Applies init-time faults and injected fail reasons to a new publish.
fn apply_processing(
    state: &TiktokState,
    inner: &mut Inner,
    publish: &mut Publish,
    fault: Option<&Fault>,
) {
    publish.processing = state.config.processing_delay;
    publish.fail_reason = inner.take_fail_reason();
    match fault {
        Some(Fault::SlowProcessing { secs }) => publish.processing = faults::secs(*secs),
        Some(Fault::RejectMedia) => {
            publish.fail_reason = Some(
                match publish.source {
                    "FILE_UPLOAD" => "file_format_check_failed",
                    _ if publish.media_type == "PHOTO" => "photo_pull_failed",
                    _ => "video_pull_failed",
                }
                .to_owned(),
            )
        }
        // TikTok moderates after processing: a policy refusal shows in status/fetch.
        Some(Fault::ContentRejected { .. }) => publish.fail_reason = Some("spam_risk_text".into()),
        _ => {}
    }
}

/// Stores the publish and builds the init response (`upload_url` for FILE_UPLOAD).
fn register(
    state: &TiktokState,
    req: &HttpRequest,
    inner: &mut Inner,
    mut publish: Publish,
) -> Value {
    let mut data = json!({ "publish_id": publish.publish_id });
    if publish.source == "FILE_UPLOAD" {
        let upload_id = (60_000 + inner.next_publish_number()).to_string();
        let token = random_token(12);
        let info = req.connection_info();
        data["upload_url"] = json!(format!(
            "{}://{}/tiktok/upload/video/?upload_id={upload_id}&upload_token={token}",
            info.scheme(),
            info.host()
        ));
        publish.upload_id = Some(upload_id);
        publish.upload_token = Some(token);
        publish.upload_expires_at = Instant::now() + state.config.upload_url_lifetime;
    } else {
        publish.media_in_at = Some(Instant::now());
    }
    inner.publishes.push(publish);
    data
}

fn publish_id(inner: &mut Inner, prefix: &str) -> String {
    format!(
        "{prefix}~v2.{}",
        7_000_000_000 + inner.next_publish_number()
    )
}

/// `POST /v2/post/publish/video/init/`: Direct Post of a video.
pub(crate) async fn video_init(
    state: web::Data<TiktokState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let ctx = match guard(&state, &req, TiktokEndpoint::VideoInit, &[PUBLISH]).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let result = direct_video(&state, &req, &ctx, &body);
    match result {
        Ok(data) => finish(&ctx, envelope_ok(data)).await,
        Err(resp) => resp,
    }
}

fn direct_video(
    state: &TiktokState,
    req: &HttpRequest,
    ctx: &Ctx,
    body: &[u8],
) -> Result<Value, HttpResponse> {
    let body = json_body(body)?;
    let empty = Map::new();
    let info = obj(&body, "post_info")?.unwrap_or(&empty);
    let Some(creator) = creator_of(state, ctx) else {
        return Err(super::access_token_invalid());
    };
    let privacy = check_privacy(state, &creator, string(info, "privacy_level")?.as_deref())?;
    let title = string(info, "title")?;
    if let Some(t) = &title {
        if utf16_len(t) > MAX_VIDEO_TITLE {
            return Err(invalid_param(&format!(
                "title is {} UTF-16 units long; at most {MAX_VIDEO_TITLE} are allowed.",
                utf16_len(t)
            )));
        }
    }
    let branded = boolean(info, "brand_content_toggle")?;
    if branded && privacy == "SELF_ONLY" {
        return Err(invalid_param(
            "Branded content cannot be posted with SELF_ONLY visibility.",
        ));
    }
    let source = video_source(state, &body)?;
    let mut inner = state.lock();
    let now = Instant::now();
    inner.settle(&state.config, now);
    if let Some((code, message)) = posting_refusal(state, &inner, &creator, now) {
        return Err(forbidden(code, message));
    }
    let prefix = if source.source == "FILE_UPLOAD" {
        "v_pub_file"
    } else {
        "v_pub_url"
    };
    let id = publish_id(&mut inner, prefix);
    let mut p = new_publish(id, &creator.open_id, Mode::Direct, "VIDEO", source.source);
    p.title = title;
    p.privacy_level = Some(privacy);
    p.disable_comment = boolean(info, "disable_comment")?;
    p.disable_duet = boolean(info, "disable_duet")?;
    p.disable_stitch = boolean(info, "disable_stitch")?;
    p.is_aigc = boolean(info, "is_aigc")?;
    p.video_size = source.video_size;
    p.chunk_size = source.chunk_size;
    p.total_chunk_count = source.total_chunk_count;
    p.video_url = source.video_url;
    apply_processing(state, &mut inner, &mut p, ctx.fault.as_ref());
    Ok(register(state, req, &mut inner, p))
}

fn pending_share_refusal(
    state: &TiktokState,
    inner: &Inner,
    open_id: &str,
) -> Result<(), HttpResponse> {
    let pending = inner.pending_shares(open_id, state.config.pending_share_window, Instant::now());
    if pending >= state.config.pending_share_limit {
        return Err(forbidden(
            "spam_risk_too_many_pending_share",
            "There may be at most 5 pending shares within any 24-hour period.",
        ));
    }
    Ok(())
}

/// `POST /v2/post/publish/inbox/video/init/`: a video to the creator's inbox.
pub(crate) async fn inbox_video_init(
    state: web::Data<TiktokState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let ctx = match guard(&state, &req, TiktokEndpoint::InboxVideoInit, &[UPLOAD]).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let result = (|| {
        let body = json_body(&body)?;
        let Some(creator) = creator_of(&state, &ctx) else {
            return Err(super::access_token_invalid());
        };
        if creator.banned {
            return Err(forbidden(
                "spam_risk_user_banned_from_posting",
                "The user is banned from making new posts.",
            ));
        }
        let source = video_source(&state, &body)?;
        let mut inner = state.lock();
        inner.settle(&state.config, Instant::now());
        pending_share_refusal(&state, &inner, &creator.open_id)?;
        let prefix = if source.source == "FILE_UPLOAD" {
            "v_inbox_file"
        } else {
            "v_inbox_url"
        };
        let id = publish_id(&mut inner, prefix);
        let mut p = new_publish(id, &creator.open_id, Mode::Inbox, "VIDEO", source.source);
        p.video_size = source.video_size;
        p.chunk_size = source.chunk_size;
        p.total_chunk_count = source.total_chunk_count;
        p.video_url = source.video_url;
        apply_processing(&state, &mut inner, &mut p, ctx.fault.as_ref());
        Ok(register(&state, &req, &mut inner, p))
    })();
    match result {
        Ok(data) => finish(&ctx, envelope_ok(data)).await,
        Err(resp) => resp,
    }
}

/// `POST /v2/post/publish/content/init/`: a photo post, direct or to the inbox.
pub(crate) async fn content_init(
    state: web::Data<TiktokState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let ctx = match guard(
        &state,
        &req,
        TiktokEndpoint::ContentInit,
        &[PUBLISH, UPLOAD],
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let result = photo(&state, &req, &ctx, &body);
    match result {
        Ok(data) => finish(&ctx, envelope_ok(data)).await,
        Err(resp) => resp,
    }
}

fn photo(
    state: &TiktokState,
    req: &HttpRequest,
    ctx: &Ctx,
    body: &[u8],
) -> Result<Value, HttpResponse> {
    let body = json_body(body)?;
    if string(&body, "media_type")?.as_deref() != Some("PHOTO") {
        return Err(invalid_param("media_type must be PHOTO."));
    }
    let mode = match string(&body, "post_mode")?.as_deref() {
        Some("DIRECT_POST") => Mode::Direct,
        Some("MEDIA_UPLOAD") => Mode::Inbox,
        _ => {
            return Err(invalid_param(
                "post_mode must be DIRECT_POST or MEDIA_UPLOAD.",
            ))
        }
    };
    let needed = if mode == Mode::Direct {
        PUBLISH
    } else {
        UPLOAD
    };
    if !ctx.caller.scopes.iter().any(|s| s == needed) {
        return Err(envelope_error(
            StatusCode::UNAUTHORIZED,
            "scope_not_authorized",
            &format!("This post_mode needs the {needed} scope."),
        ));
    }
    let empty = Map::new();
    let info = obj(&body, "post_info")?.unwrap_or(&empty);
    let Some(source) = obj(&body, "source_info")? else {
        return Err(invalid_param("source_info is required."));
    };
    if string(source, "source")?.as_deref() != Some("PULL_FROM_URL") {
        return Err(invalid_param("Photos support only source PULL_FROM_URL."));
    }
    let images: Vec<String> = match source.get("photo_images") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid_param("photo_images must be a list of URLs."))?,
        _ => return Err(invalid_param("photo_images is required.")),
    };
    if !(1..=MAX_PHOTOS).contains(&images.len()) {
        return Err(invalid_param(&format!(
            "photo_images must hold 1 to {MAX_PHOTOS} URLs; got {}.",
            images.len()
        )));
    }
    for image in &images {
        url_verified(state, image)?;
    }
    if let Some(cover) = int(source, "photo_cover_index")? {
        if cover as usize >= images.len() {
            return Err(invalid_param("photo_cover_index is out of range."));
        }
    }
    let title = string(info, "title")?;
    if title
        .as_deref()
        .is_some_and(|t| utf16_len(t) > MAX_PHOTO_TITLE)
    {
        return Err(invalid_param(&format!(
            "title may be at most {MAX_PHOTO_TITLE} characters."
        )));
    }
    let description = string(info, "description")?;
    if description
        .as_deref()
        .is_some_and(|d| utf16_len(d) > MAX_PHOTO_DESCRIPTION)
    {
        return Err(invalid_param(&format!(
            "description may be at most {MAX_PHOTO_DESCRIPTION} characters."
        )));
    }
    let Some(creator) = creator_of(state, ctx) else {
        return Err(super::access_token_invalid());
    };
    let privacy = match mode {
        Mode::Direct => Some(check_privacy(
            state,
            &creator,
            string(info, "privacy_level")?.as_deref(),
        )?),
        Mode::Inbox => None,
    };
    let mut inner = state.lock();
    let now = Instant::now();
    inner.settle(&state.config, now);
    match mode {
        Mode::Direct => {
            if let Some((code, message)) = posting_refusal(state, &inner, &creator, now) {
                return Err(forbidden(code, message));
            }
        }
        Mode::Inbox => {
            if creator.banned {
                return Err(forbidden(
                    "spam_risk_user_banned_from_posting",
                    "The user is banned from making new posts.",
                ));
            }
            pending_share_refusal(state, &inner, &creator.open_id)?;
        }
    }
    let prefix = if mode == Mode::Direct {
        "p_pub_url"
    } else {
        "p_inbox_url"
    };
    let id = publish_id(&mut inner, prefix);
    let mut p = new_publish(id, &creator.open_id, mode, "PHOTO", "PULL_FROM_URL");
    p.title = title;
    p.description = description;
    p.privacy_level = privacy;
    p.disable_comment = boolean(info, "disable_comment")?;
    p.photo_images = images;
    apply_processing(state, &mut inner, &mut p, ctx.fault.as_ref());
    Ok(register(state, req, &mut inner, p))
}

/// Finds the caller's publish named in the body (`invalid_publish_id`,
/// `token_not_authorized_for_specified_publish_id`).
fn own_publish(inner: &Inner, ctx: &Ctx, body: &[u8]) -> Result<usize, HttpResponse> {
    let body = json_body(body)?;
    let id = string(&body, "publish_id")?.unwrap_or_default();
    let Some(index) = inner.publishes.iter().position(|p| p.publish_id == id) else {
        return Err(envelope_error(
            StatusCode::BAD_REQUEST,
            "invalid_publish_id",
            "The publish_id does not exist.",
        ));
    };
    if inner.publishes[index].open_id != ctx.caller.open_id {
        return Err(envelope_error(
            StatusCode::BAD_REQUEST,
            "token_not_authorized_for_specified_publish_id",
            "The access token is not authorized for this publish_id.",
        ));
    }
    Ok(index)
}

/// `POST /v2/post/publish/status/fetch/`.
pub(crate) async fn status_fetch(
    state: web::Data<TiktokState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let ctx = match guard(
        &state,
        &req,
        TiktokEndpoint::StatusFetch,
        &[PUBLISH, UPLOAD],
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let data = {
        let mut inner = state.lock();
        let now = Instant::now();
        inner.settle(&state.config, now);
        let index = match own_publish(&inner, &ctx, &body) {
            Ok(i) => i,
            Err(resp) => return resp,
        };
        let p = &inner.publishes[index];
        let status = p.status(now);
        let mut data = json!({ "status": status });
        if status == "FAILED" {
            let reason = if p.cancelled {
                "publish_cancelled".to_owned()
            } else {
                p.fail_reason.clone().unwrap_or_else(|| "internal".into())
            };
            data["fail_reason"] = json!(reason);
        }
        let public_ids: Vec<u64> = inner
            .posts
            .iter()
            .filter(|post| post.publish_id == p.publish_id && now >= post.public_at)
            .filter(|_| p.is_public())
            .filter_map(|post| post.id.parse().ok())
            .collect();
        data["publicaly_available_post_id"] = json!(public_ids);
        if p.source == "FILE_UPLOAD" {
            data["uploaded_bytes"] = json!(p.uploaded_bytes);
        } else if status == "PROCESSING_DOWNLOAD" {
            // The twin does not download the media, so it cannot count it.
            data["downloaded_bytes"] = json!(0);
        }
        data
    };
    finish(&ctx, envelope_ok(data)).await
}

/// `POST /v2/post/publish/cancel/`: stops a PULL_FROM_URL task that is still downloading.
pub(crate) async fn cancel(
    state: web::Data<TiktokState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let ctx = match guard(&state, &req, TiktokEndpoint::Cancel, &[PUBLISH, UPLOAD]).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    {
        let mut inner = state.lock();
        let now = Instant::now();
        inner.settle(&state.config, now);
        let index = match own_publish(&inner, &ctx, &body) {
            Ok(i) => i,
            Err(resp) => return resp,
        };
        let p = &mut inner.publishes[index];
        if p.source != "PULL_FROM_URL" || p.status(now) != "PROCESSING_DOWNLOAD" {
            return envelope_error(
                StatusCode::BAD_REQUEST,
                "publish_not_cancellable",
                "Only a PULL_FROM_URL publish still downloading can be cancelled.",
            );
        }
        p.cancelled = true;
    }
    finish(&ctx, envelope_ok(json!({}))).await
}

fn invalid_params(message: &str) -> HttpResponse {
    envelope_error(StatusCode::BAD_REQUEST, "invalid_params", message)
}

/// `text` cut to at most `max` UTF-16 units, at a character boundary.
fn cut_utf16(text: &str, max: usize) -> String {
    let mut units = 0;
    text.chars()
        .take_while(|c| {
            units += c.len_utf16();
            units <= max
        })
        .collect()
}

/// `POST /v2/video/list/?fields=...` with `{"max_count": 1..=20, "cursor": <ms>}`: the caller's
/// public videos (PUBLIC_TO_EVERYONE, past moderation), newest first, those posted before
/// `cursor` when given. The answer's `cursor` is the last video's `create_time` in milliseconds.
pub(crate) async fn video_list(
    state: web::Data<TiktokState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let ctx = match guard(&state, &req, TiktokEndpoint::VideoList, &[LIST]).await {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let result = (|| {
        let fields: Vec<String> = url::form_urlencoded::parse(req.query_string().as_bytes())
            .find(|(k, _)| k == "fields")
            .map(|(_, v)| {
                v.split(',')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if fields.is_empty() {
            return Err(invalid_params("The fields parameter is required."));
        }
        if let Some(unknown) = fields.iter().find(|f| !VIDEO_FIELDS.contains(&f.as_str())) {
            return Err(invalid_params(&format!("Unknown field {unknown}.")));
        }
        let body = json_body(&body)?;
        let count = match body.get("max_count") {
            None | Some(Value::Null) => DEFAULT_LIST_COUNT,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=MAX_LIST_COUNT).contains(n))
                .ok_or_else(|| invalid_params("max_count must be between 1 and 20."))?,
        };
        let cursor = match body.get("cursor") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| invalid_params("cursor must be an int64 timestamp."))?,
            ),
        };
        let mut inner = state.lock();
        let now = Instant::now();
        inner.settle(&state.config, now);
        let username = inner
            .creators
            .get(&ctx.caller.open_id)
            .map(|c| c.username.clone())
            .unwrap_or_default();
        let mut public: Vec<_> = inner
            .posts
            .iter()
            .filter(|p| p.open_id == ctx.caller.open_id && p.media_type == "VIDEO")
            .filter(|p| p.privacy_level == "PUBLIC_TO_EVERYONE" && now >= p.public_at)
            .filter(|p| cursor.is_none_or(|c| p.posted_at.timestamp_millis() < c))
            .collect();
        public.sort_by_key(|p| std::cmp::Reverse(p.posted_at));
        let has_more = public.len() as u64 > count;
        public.truncate(count as usize);
        let videos: Vec<Value> = public
            .iter()
            .map(|p| {
                let text = cut_utf16(&p.title, MAX_LISTED_TEXT);
                let share_url = super::state::post_url(&username, p.media_type, &p.id);
                let mut video = Map::new();
                for field in &fields {
                    let value = match field.as_str() {
                        "id" => json!(p.id),
                        "create_time" => json!(p.posted_at.timestamp()),
                        "title" | "video_description" => json!(text),
                        "share_url" => json!(share_url),
                        "cover_image_url" => json!(format!(
                            "https://p16-sign.tiktokcdn.com/sandbox/{}.jpeg",
                            p.id
                        )),
                        "duration" => json!(0),
                        "embed_link" => {
                            json!(format!("https://www.tiktok.com/player/v1/{}", p.id))
                        }
                        _ => Value::Null,
                    };
                    video.insert(field.clone(), value);
                }
                Value::Object(video)
            })
            .collect();
        let next = public
            .last()
            .map_or(cursor.unwrap_or(0), |p| p.posted_at.timestamp_millis());
        Ok(json!({ "videos": videos, "cursor": next, "has_more": has_more }))
    })();
    match result {
        Ok(data) => finish(&ctx, envelope_ok(data)).await,
        Err(resp) => resp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiktok::MB;

    #[test]
    fn chunk_rules_follow_the_media_transfer_guide() {
        // The guide's example, in binary megabytes: 5 chunks, the last one larger.
        assert!(check_chunks(50 * MB + 123, 10 * MB, 5).is_ok());
        assert!(check_chunks(50 * MB + 123, 10 * MB, 6).is_err());
        // Under 5 MB: whole.
        assert!(check_chunks(MB, MB, 1).is_ok());
        assert!(check_chunks(MB, MB / 2, 2).is_err());
        // Chunk size bounds.
        assert!(check_chunks(20 * MB, 4 * MB, 5).is_err());
        assert!(check_chunks(200 * MB, 65 * MB, 3).is_err());
        // Over 64 MB cannot be one chunk.
        assert!(check_chunks(70 * MB, 70 * MB, 1).is_err());
        // Final chunk at most 128 MB: 64 MB chunks, 191 MB → 2 chunks, last 127 MB: fine.
        assert!(check_chunks(191 * MB, 64 * MB, 2).is_ok());
        // The largest video in the smallest chunks stays under 1000 chunks.
        assert!(check_chunks(4 * 1024 * MB, 5 * MB, 819).is_ok());
        assert!(check_chunks(0, 0, 0).is_err());
    }
}
