//! `POST /2/tweets` and the reconciliation lookup over `GET /2/users/{id}/tweets`.
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use herald_domain::{ErrorClass, PlatformFailure};
use serde::{Deserialize, Serialize};

use super::errors::{classify, post_transport_error, CallContext, XErrorBody};
use super::{Envelope, XAdapter};
use crate::platforms::http::{self, SendError};
use crate::platforms::{CreatedPost, PostDraft, PostError, RateLimitGate};
use crate::secret::Secret;

/// Posts created this long before `since` still count: clocks differ between Herald and X.
const CLOCK_SKEW_SECS: i64 = 5;
/// Pages of 100 posts read while reconciling before giving up.
const MAX_PAGES: usize = 5;

/// `CreatePostsRequest` (only the fields Herald uses).
#[derive(Debug, Serialize)]
struct CreateBody<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<MediaBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    poll: Option<PollBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<ReplyBody<'a>>,
}

#[derive(Debug, Serialize)]
struct MediaBody<'a> {
    media_ids: &'a [String],
}

#[derive(Debug, Serialize)]
struct PollBody<'a> {
    options: &'a [String],
    duration_minutes: u32,
}

#[derive(Debug, Serialize)]
struct ReplyBody<'a> {
    in_reply_to_tweet_id: &'a str,
}

impl<'a> CreateBody<'a> {
    fn from_draft(draft: &'a PostDraft) -> Self {
        Self {
            text: &draft.text,
            media: (!draft.media_ids.is_empty()).then_some(MediaBody {
                media_ids: &draft.media_ids,
            }),
            poll: draft.poll.as_ref().map(|p| PollBody {
                options: &p.options,
                duration_minutes: p.duration_minutes,
            }),
            reply: draft.reply_to.as_deref().map(|id| ReplyBody {
                in_reply_to_tweet_id: id,
            }),
        }
    }
}

#[derive(Debug, Deserialize)]
struct CreatedData {
    id: String,
}

/// Creates one post. See `PostError` for what a failure means for the post's existence.
pub(super) async fn create(
    x: &XAdapter,
    token: &Secret,
    draft: &PostDraft,
    limits: &dyn RateLimitGate,
) -> Result<CreatedPost, PostError> {
    let request = x
        .api
        .post(x.config.api_url("2/tweets"))
        .bearer_auth(token.expose())
        .json(&CreateBody::from_draft(draft));
    let response = match http::send(x, "create_tweet", limits, request).await {
        Ok(response) => response,
        Err(SendError::Limited(failure)) => return Err(PostError::Failed(failure)),
        Err(SendError::Transport(e)) => return Err(post_transport_error(&e)),
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = match response.bytes().await {
        Ok(body) => body,
        // X created the post but we lost its id on the way back.
        Err(_) if status.is_success() => {
            return Err(PostError::OutcomeUnknown(format!(
                "X accepted the post (HTTP {status}) but its answer was cut off; the post exists"
            )))
        }
        Err(_) => Default::default(),
    };
    let ctx = CallContext::CREATE_POST;
    if !status.is_success() {
        return Err(PostError::Failed(classify(
            status.as_u16(),
            &headers,
            &body,
            ctx,
            Utc::now(),
        )));
    }
    match serde_json::from_slice::<Envelope<CreatedData>>(&body) {
        Ok(created) => Ok(CreatedPost {
            url: post_url(x, &created.data.id),
            post_id: created.data.id,
        }),
        Err(_) if !XErrorBody::parse(&body).errors.is_empty() => Err(PostError::Failed(classify(
            status.as_u16(),
            &headers,
            &body,
            ctx,
            Utc::now(),
        ))),
        Err(_) => Err(PostError::OutcomeUnknown(format!(
            "X answered HTTP {status} without a readable post id; the post may exist"
        ))),
    }
}

fn post_url(x: &XAdapter, id: &str) -> String {
    let mut url = x.config.post_url_base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(["i", "web", "status", id]);
    }
    url.to_string()
}

/// One page of `GET /2/users/{id}/tweets`.
#[derive(Debug, Default, Deserialize)]
struct TimelinePage {
    #[serde(default)]
    data: Vec<TimelinePost>,
    meta: Option<TimelineMeta>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct TimelineMeta {
    next_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct TimelinePost {
    id: String,
    #[serde(default)]
    text: String,
    attachments: Option<Attachments>,
    /// Named `referenced_tweets` by the live API and `referenced_posts` by the 2.167 spec.
    #[serde(alias = "referenced_posts")]
    referenced_tweets: Option<Vec<Reference>>,
}

#[derive(Debug, Default, Deserialize)]
struct Attachments {
    #[serde(default)]
    media_keys: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Reference {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

/// Looks for the account's post matching `draft`, created at or after `since`.
pub(super) async fn find(
    x: &XAdapter,
    token: &Secret,
    account_id: &str,
    since: DateTime<Utc>,
    draft: &PostDraft,
    limits: &dyn RateLimitGate,
) -> Result<Option<CreatedPost>, PlatformFailure> {
    let ctx = CallContext::READ_POSTS;
    let start =
        (since - TimeDelta::seconds(CLOCK_SKEW_SECS)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut url = x.config.api_url("2/users");
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.push(account_id).push("tweets");
    }
    let mut pagination_token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut query = vec![
            ("start_time", start.clone()),
            ("max_results", "100".to_owned()),
            // `referenced_tweets` is the live API's name; the sandbox (2.167 names) answers
            // with `referenced_posts` when `in_reply_to_user_id` is asked for.
            (
                "tweet.fields",
                "created_at,attachments,in_reply_to_user_id,referenced_tweets".to_owned(),
            ),
        ];
        if let Some(t) = &pagination_token {
            query.push(("pagination_token", t.clone()));
        }
        let request = x
            .api
            .get(url.clone())
            .query(&query)
            .bearer_auth(token.expose());
        let page: TimelinePage = http::call_json(x, "user_tweets", limits, request, ctx).await?;
        if page.data.is_empty() && !page.errors.is_empty() {
            let detail = page
                .errors
                .iter()
                .filter_map(|e| e.get("detail").and_then(|d| d.as_str()))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(PlatformFailure::new(
                ErrorClass::Permanent,
                "user_not_found",
                format!("X could not list the posts of account {account_id}: {detail}"),
            ));
        }
        if let Some(post) = page.data.iter().find(|p| matches(draft, p)) {
            return Ok(Some(CreatedPost {
                post_id: post.id.clone(),
                url: post_url(x, &post.id),
            }));
        }
        match page.meta.and_then(|m| m.next_token) {
            Some(next) => pagination_token = Some(next),
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// Whether `post` is the post `draft` would have created.
pub(super) fn matches(draft: &PostDraft, post: &TimelinePost) -> bool {
    if normalize(&draft.text) != normalize(&post.text) {
        return false;
    }
    if let (Some(parent), Some(refs)) = (&draft.reply_to, &post.referenced_tweets) {
        if !refs
            .iter()
            .any(|r| r.kind == "replied_to" && &r.id == parent)
        {
            return false;
        }
    }
    if !draft.media_ids.is_empty() {
        // Media keys are `<type>_<media id>`.
        let keys = post
            .attachments
            .as_ref()
            .map(|a| a.media_keys.as_slice())
            .unwrap_or_default();
        let attached = |id: &String| keys.iter().any(|k| k.rsplit('_').next() == Some(id));
        if !draft.media_ids.iter().all(attached) {
            return false;
        }
    }
    true
}

/// Text as comparable across X's rewriting: X HTML-escapes `&<>`, wraps links in t.co URLs
/// (and appends one for attached media) and normalises whitespace. Links are dropped and
/// whitespace collapsed on both sides.
fn normalize(text: &str) -> String {
    let unescaped = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    unescaped
        .split_whitespace()
        .filter(|word| {
            let lower = word.to_ascii_lowercase();
            !(lower.starts_with("http://") || lower.starts_with("https://"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_domain::Poll;
    use serde_json::json;

    fn draft(text: &str) -> PostDraft {
        PostDraft {
            text: text.into(),
            ..PostDraft::default()
        }
    }

    fn post(v: serde_json::Value) -> TimelinePost {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn create_body_has_only_what_the_draft_uses() {
        let plain = serde_json::to_value(CreateBody::from_draft(&draft("hi"))).unwrap();
        assert_eq!(plain, json!({"text": "hi"}));

        let full = PostDraft {
            text: "".into(),
            media_ids: vec!["1".into(), "2".into()],
            poll: Some(Poll {
                options: vec!["a".into(), "b".into()],
                duration_minutes: 60,
                question: None,
            }),
            reply_to: Some("99".into()),
            ..PostDraft::default()
        };
        assert_eq!(
            serde_json::to_value(CreateBody::from_draft(&full)).unwrap(),
            json!({
                "media": {"media_ids": ["1", "2"]},
                "poll": {"options": ["a", "b"], "duration_minutes": 60},
                "reply": {"in_reply_to_tweet_id": "99"},
            })
        );
    }

    #[test]
    fn text_matches_across_x_rewriting() {
        let d = draft("Fish & chips <3\nsee https://example.com/a-long-link  ");
        let p = post(
            json!({"id": "1", "text": "Fish &amp; chips &lt;3 see https://t.co/xYz https://t.co/media"}),
        );
        assert!(matches(&d, &p));
        assert!(!matches(&draft("Fish & chips"), &p));
    }

    #[test]
    fn reply_and_media_must_agree_when_reported() {
        let mut d = draft("part 2");
        d.reply_to = Some("10".into());
        let reply = post(json!({"id": "2", "text": "part 2",
            "referenced_posts": [{"type": "replied_to", "id": "10"}]}));
        let other = post(json!({"id": "3", "text": "part 2",
            "referenced_tweets": [{"type": "replied_to", "id": "11"}]}));
        let unknown = post(json!({"id": "4", "text": "part 2"}));
        assert!(matches(&d, &reply));
        assert!(!matches(&d, &other));
        assert!(matches(&d, &unknown));

        let mut m = draft("");
        m.media_ids = vec!["555".into()];
        assert!(matches(
            &m,
            &post(json!({"id": "5", "text": "https://t.co/a",
            "attachments": {"media_keys": ["3_555"]}}))
        ));
        assert!(!matches(&m, &post(json!({"id": "6", "text": ""}))));
    }
}
