//! `POST /2/tweets` (platform-facts §1.3) and `GET /2/users/{id}/tweets`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::state::{Post, ProcState};
use super::{finish, guard, param, query_pairs, Problem, XEndpoint, XPollSnapshot, XState};

/// Weighted length limit of a post for accounts without a subscription.
pub const MAX_WEIGHTED_LENGTH: usize = 280;
/// Every URL counts as a t.co link of this length.
const URL_WEIGHT: usize = 23;

/// Approximates twitter-text v3's weighted length: code points in the Latin,
/// Cyrillic, Greek etc. ranges and common punctuation weigh 1, everything else
/// (CJK, emoji, ...) weighs 2, each http(s) URL weighs 23, and emoji modifiers
/// (variation selectors, skin tones, ZWJ) add nothing to the emoji they follow.
pub fn weighted_length(text: &str) -> usize {
    let mut total = 0;
    let mut in_url = false;
    let mut prev_ws = true;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_url = false;
        } else if prev_ws && starts_url(&text[i..]) {
            in_url = true;
            total += URL_WEIGHT;
        }
        prev_ws = c.is_whitespace();
        if !in_url {
            total += char_weight(c);
        }
    }
    total
}

fn starts_url(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn char_weight(c: char) -> usize {
    let cp = c as u32;
    match cp {
        0x200D | 0xFE00..=0xFE0F | 0x1F3FB..=0x1F3FF => 0,
        0x0000..=0x10FF | 0x2000..=0x200C | 0x2010..=0x201F | 0x2032..=0x2037 => 1,
        _ => 2,
    }
}

/// `CreatePostsMedia`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MediaReq {
    media_ids: Vec<String>,
    #[serde(default)]
    tagged_user_ids: Vec<String>,
    #[allow(dead_code)] // accepted for shape compatibility
    preview_media_id: Option<String>,
    #[allow(dead_code)]
    title: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    #[allow(dead_code)]
    embeddable: Option<bool>,
    #[allow(dead_code)]
    call_to_actions: Option<Value>,
}

/// `CreatePostsPoll`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PollReq {
    options: Vec<String>,
    duration_minutes: i64,
    #[allow(dead_code)]
    reply_settings: Option<ReplySettings>,
}

/// `CreatePostsReply`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyReq {
    in_reply_to_tweet_id: String,
    #[serde(default)]
    #[allow(dead_code)]
    exclude_reply_user_ids: Vec<String>,
    #[allow(dead_code)]
    auto_populate_reply_metadata: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum ReplySettings {
    Following,
    MentionedUsers,
    Subscribers,
    Verified,
}

/// `CreatePostsRequest` (additionalProperties: false).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReq {
    #[serde(default)]
    text: String,
    media: Option<MediaReq>,
    poll: Option<PollReq>,
    reply: Option<ReplyReq>,
    quote_tweet_id: Option<String>,
    #[allow(dead_code)]
    reply_settings: Option<ReplySettings>,
    card_uri: Option<String>,
    edit_options: Option<Value>,
    #[allow(dead_code)]
    community_id: Option<String>,
    #[allow(dead_code)]
    direct_message_deep_link: Option<String>,
    #[allow(dead_code)]
    for_super_followers_only: Option<bool>,
    #[allow(dead_code)]
    geo: Option<Value>,
    #[allow(dead_code)]
    made_with_ai: Option<bool>,
    #[allow(dead_code)]
    nullcast: Option<bool>,
    #[allow(dead_code)]
    paid_partnership: Option<bool>,
    #[allow(dead_code)]
    share_with_followers: Option<bool>,
}

fn parse_id(field: &str, raw: &str) -> Result<u64, Problem> {
    let ok = (1..=19).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit());
    raw.parse().ok().filter(|_| ok).ok_or_else(|| {
        Problem::invalid_request(format!(
            "The `{field}` value [{raw}] does not match ^[0-9]{{1,19}}$."
        ))
    })
}

/// Validation that needs no state.
fn validate_shape(req: &CreateReq) -> Result<(), Problem> {
    let has_media = req.media.is_some();
    let has_poll = req.poll.is_some();
    let has_quote = req.quote_tweet_id.is_some();
    let has_card = req.card_uri.is_some();
    // Exclusions documented in the 2.159 spec descriptions.
    for (a, an, b, bn) in [
        (has_media, "media", has_poll, "poll"),
        (has_media, "media", has_quote, "quote_tweet_id"),
        (has_media, "media", has_card, "card_uri"),
        (has_poll, "poll", has_quote, "quote_tweet_id"),
        (has_poll, "poll", has_card, "card_uri"),
    ] {
        if a && b {
            return Err(Problem::invalid_request(format!(
                "The fields `{an}` and `{bn}` are mutually exclusive."
            )));
        }
    }
    if req.edit_options.is_some() {
        return Err(Problem::forbidden(
            "You are not permitted to edit this Post.",
        ));
    }
    if req.text.is_empty() && !has_media && !has_card {
        return Err(Problem::invalid_request(
            "The `text` field is required unless media is provided.",
        ));
    }
    let len = weighted_length(&req.text);
    if len > MAX_WEIGHTED_LENGTH {
        return Err(Problem::invalid_request(format!(
            "The `text` field is too long: weighted length {len} exceeds {MAX_WEIGHTED_LENGTH}."
        )));
    }
    if let Some(m) = &req.media {
        if !(1..=4).contains(&m.media_ids.len()) {
            return Err(Problem::invalid_request(format!(
                "The `media.media_ids` field must contain 1 to 4 ids, got {}.",
                m.media_ids.len()
            )));
        }
        if m.tagged_user_ids.len() > 10 {
            return Err(Problem::invalid_request(
                "The `media.tagged_user_ids` field must contain at most 10 ids.",
            ));
        }
    }
    if let Some(p) = &req.poll {
        if !(2..=4).contains(&p.options.len()) {
            return Err(Problem::invalid_request(format!(
                "The `poll.options` field must contain 2 to 4 options, got {}.",
                p.options.len()
            )));
        }
        if let Some(o) = p
            .options
            .iter()
            .find(|o| !(1..=25).contains(&o.chars().count()))
        {
            return Err(Problem::invalid_request(format!(
                "The poll option [{o}] must be 1 to 25 characters long."
            )));
        }
        if !(5..=10080).contains(&p.duration_minutes) {
            return Err(Problem::invalid_request(format!(
                "The `poll.duration_minutes` value [{}] must be between 5 and 10080.",
                p.duration_minutes
            )));
        }
    }
    Ok(())
}

impl XState {
    fn create_post(&self, author: &str, req: CreateReq) -> Result<Value, Problem> {
        validate_shape(&req)?;
        let media_ids = req
            .media
            .as_ref()
            .map(|m| {
                m.media_ids
                    .iter()
                    .map(|id| parse_id("media.media_ids", id))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let reply_to = req
            .reply
            .as_ref()
            .map(|r| parse_id("reply.in_reply_to_tweet_id", &r.in_reply_to_tweet_id))
            .transpose()?;
        let quote_of = req
            .quote_tweet_id
            .as_deref()
            .map(|q| parse_id("quote_tweet_id", q))
            .transpose()?;

        let mut inner = self.lock();
        let now = std::time::Instant::now();
        let mut heavy = 0;
        for id in &media_ids {
            let m = inner
                .media
                .get(id)
                .filter(|m| m.owner == author)
                .ok_or_else(|| {
                    Problem::invalid_request(format!("Media id [{id}] was not found."))
                })?;
            match m.proc_state(now) {
                Some(ProcState::Succeeded) => {}
                None => {
                    return Err(Problem::invalid_request(format!(
                        "Media id [{id}] has not been finalized."
                    )))
                }
                Some(s) => {
                    return Err(Problem::invalid_request(format!(
                        "Media id [{id}] is not ready: processing is {}.",
                        s.name()
                    )))
                }
            }
            if m.async_processing {
                heavy += 1;
            }
        }
        if heavy > 0 && media_ids.len() > 1 {
            return Err(Problem::invalid_request(
                "A post may carry up to 4 images, or 1 GIF, or 1 video.",
            ));
        }
        if let Some(id) = reply_to {
            if !inner.post_index.contains_key(&id) {
                return Err(Problem::forbidden(
                    "You attempted to reply to a Tweet that is deleted or not visible to you.",
                ));
            }
        }
        if let Some(id) = quote_of {
            if !inner.post_index.contains_key(&id) {
                return Err(Problem::invalid_request(format!(
                    "The quoted Post [{id}] does not exist."
                )));
            }
        }
        let key = (author.to_owned(), req.text.clone());
        if !req.text.is_empty() && inner.texts.contains(&key) {
            return Err(Problem::forbidden(
                "You are not allowed to create a Tweet with duplicate content.",
            ));
        }

        let id = inner.next_id();
        let post = Post {
            id,
            author_id: author.to_owned(),
            text: req.text.clone(),
            media_ids,
            poll: req.poll.map(|p| XPollSnapshot {
                options: p.options,
                duration_minutes: p.duration_minutes as u32,
            }),
            in_reply_to: reply_to,
            quote_of,
            created_at: chrono::Utc::now(),
        };
        if !req.text.is_empty() {
            inner.texts.insert(key);
        }
        let idx = inner.posts.len();
        inner.posts.push(post);
        inner.post_index.insert(id, idx);
        tracing::debug!(id, author, "x sandbox post created");
        Ok(json!({"data": {
            "id": id.to_string(),
            "text": req.text,
            // 2.167 spec name (older API versions said edit_history_tweet_ids).
            "edit_history_post_ids": [id.to_string()],
        }}))
    }
}

/// `POST /2/tweets`.
pub(crate) async fn create(
    state: web::Data<XState>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let ctx = match guard(
        &state,
        &req,
        XEndpoint::CreateTweet,
        &["tweet.read", "tweet.write", "users.read"],
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let result = serde_json::from_slice::<CreateReq>(&body)
        .map_err(|e| Problem::invalid_request(format!("The request body is not valid: {e}")))
        .and_then(|r| state.create_post(&ctx.caller.user_id, r));
    let resp = match result {
        Ok(body) => HttpResponse::Created().json(body),
        Err(p) => p.response(),
    };
    finish(ctx, resp).await
}

const TIMELINE_PARAMS: &[&str] = &[
    "max_results",
    "pagination_token",
    "start_time",
    "end_time",
    "since_id",
    "until_id",
    "exclude",
    "tweet.fields",
    "expansions",
    "media.fields",
    "poll.fields",
    "user.fields",
    "place.fields",
];

fn parse_time(name: &str, raw: &str) -> Result<chrono::DateTime<chrono::Utc>, Problem> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| {
            Problem::invalid_request(format!(
                "Invalid '{name}':'{raw}'. '{name}' must be a valid RFC 3339 date-time."
            ))
        })
}

/// Filters parsed from the timeline query.
struct Timeline {
    max_results: usize,
    before: Option<u64>,
    since_id: Option<u64>,
    until_id: Option<u64>,
    start: Option<chrono::DateTime<chrono::Utc>>,
    end: Option<chrono::DateTime<chrono::Utc>>,
    exclude_replies: bool,
    fields: Vec<String>,
}

fn parse_timeline(q: &[(String, String)]) -> Result<Timeline, Problem> {
    if let Some((k, _)) = q
        .iter()
        .find(|(k, _)| !TIMELINE_PARAMS.contains(&k.as_str()))
    {
        return Err(Problem::invalid_request(format!(
            "The query parameter [{k}] is not one of [id,{}]",
            TIMELINE_PARAMS.join(",")
        )));
    }
    let max_results = match param(q, "max_results") {
        None => 10,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (5..=100).contains(n))
            .ok_or_else(|| {
                Problem::invalid_request(format!(
                    "The `max_results` query parameter value [{raw}] is not between 5 and 100"
                ))
            })?,
    };
    let id_param = |name: &str| param(q, name).map(|v| parse_id(name, v)).transpose();
    let exclude = param(q, "exclude").unwrap_or_default();
    for e in exclude.split(',').filter(|e| !e.is_empty()) {
        if !matches!(e, "replies" | "retweets") {
            return Err(Problem::invalid_request(format!(
                "The `exclude` value [{e}] is not one of [replies,retweets]"
            )));
        }
    }
    Ok(Timeline {
        max_results,
        before: id_param("pagination_token")?,
        since_id: id_param("since_id")?,
        until_id: id_param("until_id")?,
        start: param(q, "start_time")
            .map(|t| parse_time("start_time", t))
            .transpose()?,
        end: param(q, "end_time")
            .map(|t| parse_time("end_time", t))
            .transpose()?,
        exclude_replies: exclude.split(',').any(|e| e == "replies"),
        fields: param(q, "tweet.fields")
            .unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect(),
    })
}

fn post_json(
    p: &Post,
    inner_media_key: impl Fn(u64) -> Option<String>,
    fields: &[String],
) -> Value {
    let mut v = json!({
        "id": p.id.to_string(),
        "text": p.text,
        "created_at": p.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "edit_history_post_ids": [p.id.to_string()],
    });
    let wants = |f: &str| fields.iter().any(|x| x == f);
    if wants("author_id") {
        v["author_id"] = json!(p.author_id);
    }
    if wants("attachments") && !p.media_ids.is_empty() {
        let keys: Vec<String> = p
            .media_ids
            .iter()
            .filter_map(|m| inner_media_key(*m))
            .collect();
        v["attachments"] = json!({ "media_keys": keys });
    }
    if wants("in_reply_to_user_id") || wants("referenced_posts") {
        let mut refs = Vec::new();
        if let Some(r) = p.in_reply_to {
            refs.push(json!({"type": "replied_to", "id": r.to_string()}));
        }
        if let Some(r) = p.quote_of {
            refs.push(json!({"type": "quoted", "id": r.to_string()}));
        }
        if !refs.is_empty() {
            v["referenced_posts"] = json!(refs);
        }
    }
    v
}

/// `GET /2/users/{id}/tweets`: the user's posts, newest first.
pub(crate) async fn user_tweets(
    state: web::Data<XState>,
    req: HttpRequest,
    user_id: web::Path<String>,
) -> HttpResponse {
    let ctx = match guard(
        &state,
        &req,
        XEndpoint::UserTweets,
        &["tweet.read", "users.read"],
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(resp) => return resp,
    };
    let q = query_pairs(&req);
    let resp = match parse_timeline(&q) {
        Err(p) => p.response(),
        Ok(t) => {
            let inner = state.lock();
            if !inner.users.contains_key(user_id.as_str()) {
                // X answers 200 with a partial error for an unknown user.
                HttpResponse::Ok().json(json!({"errors": [{
                    "value": *user_id,
                    "detail": format!("Could not find user with id: [{}].", *user_id),
                    "title": "Not Found Error",
                    "resource_type": "user",
                    "parameter": "id",
                    "resource_id": *user_id,
                    "type": "https://api.x.com/2/problems/resource-not-found",
                }]}))
            } else {
                let mut matching = inner
                    .posts
                    .iter()
                    .rev()
                    .filter(|p| p.author_id == *user_id)
                    .filter(|p| t.before.is_none_or(|b| p.id < b))
                    .filter(|p| t.since_id.is_none_or(|s| p.id > s))
                    .filter(|p| t.until_id.is_none_or(|u| p.id < u))
                    .filter(|p| t.start.is_none_or(|s| p.created_at >= s))
                    .filter(|p| t.end.is_none_or(|e| p.created_at <= e))
                    .filter(|p| !(t.exclude_replies && p.in_reply_to.is_some()));
                let page: Vec<&Post> = matching.by_ref().take(t.max_results).collect();
                let more = matching.next().is_some();
                let media_key = |id: u64| inner.media.get(&id).map(|m| m.media_key.clone());
                let mut meta = json!({ "result_count": page.len() });
                let mut body = json!({});
                if let (Some(first), Some(last)) = (page.first(), page.last()) {
                    meta["newest_id"] = json!(first.id.to_string());
                    meta["oldest_id"] = json!(last.id.to_string());
                    if more {
                        meta["next_token"] = json!(last.id.to_string());
                    }
                    body["data"] = page
                        .iter()
                        .map(|p| post_json(p, media_key, &t.fields))
                        .collect();
                }
                body["meta"] = meta;
                HttpResponse::build(StatusCode::OK).json(body)
            }
        }
    };
    finish(ctx, resp).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_counts_one_per_char() {
        assert_eq!(weighted_length(""), 0);
        assert_eq!(weighted_length("hello world"), 11);
        assert_eq!(weighted_length(&"a".repeat(280)), 280);
    }

    #[test]
    fn cjk_counts_two() {
        assert_eq!(weighted_length("日本語"), 6);
        assert_eq!(weighted_length(&"日".repeat(140)), 280);
        assert_eq!(weighted_length(&"日".repeat(141)), 282);
    }

    #[test]
    fn urls_count_twenty_three() {
        let long = format!("see https://example.com/{} ok", "x".repeat(200));
        assert_eq!(weighted_length(&long), 4 + 23 + 3);
        assert_eq!(weighted_length("HTTP://a.b"), 23);
        // Only at a word start: "xhttp://" is plain text.
        assert_eq!(weighted_length("xhttp://a"), 9);
    }

    #[test]
    fn emoji_with_modifiers_counts_two() {
        assert_eq!(weighted_length("👍"), 2);
        assert_eq!(weighted_length("👍🏽"), 2);
        assert_eq!(weighted_length("❤️"), 2);
        assert_eq!(weighted_length("é—’"), 3);
    }

    #[test]
    fn shape_rules() {
        let req = |v: Value| serde_json::from_value::<CreateReq>(v);
        assert!(req(json!({"text": "a", "bogus": 1})).is_err());
        assert!(req(json!({"text": "a", "reply_settings": "everyone"})).is_err());
        let both = req(json!({"text": "a", "media": {"media_ids": ["1"]},
            "poll": {"options": ["a", "b"], "duration_minutes": 5}}))
        .unwrap();
        assert!(validate_shape(&both)
            .unwrap_err()
            .detail
            .contains("mutually exclusive"));
        let bad_poll =
            req(json!({"text": "a", "poll": {"options": ["a"], "duration_minutes": 5}})).unwrap();
        assert!(validate_shape(&bad_poll).is_err());
        let long_opt = req(
            json!({"text": "a", "poll": {"options": ["a", "x".repeat(26)], "duration_minutes": 5}}),
        )
        .unwrap();
        assert!(validate_shape(&long_opt).is_err());
        let short =
            req(json!({"text": "a", "poll": {"options": ["a", "b"], "duration_minutes": 4}}))
                .unwrap();
        assert!(validate_shape(&short).is_err());
        let ok =
            req(json!({"text": "a", "poll": {"options": ["a", "b"], "duration_minutes": 10080}}))
                .unwrap();
        assert!(validate_shape(&ok).is_ok());
        assert!(validate_shape(&req(json!({})).unwrap()).is_err());
        let too_long = req(json!({"text": "a".repeat(281)})).unwrap();
        assert_eq!(
            validate_shape(&too_long).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
