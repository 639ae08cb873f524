//! The Reddit adapter against the sandbox's Reddit twin over real HTTP: connect with Basic auth
//! and a permanent grant, refresh without rotation, self/link/image/gallery/video posts,
//! reconciliation, and the failure classes the publisher relies on.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaItem, MediaKind, PlatformFailure, PublishOptions};
use herald_infrastructure::media_source::MediaUrlPolicy;
use herald_infrastructure::platforms::reddit::{RedditAdapter, RedditConfig};
use herald_infrastructure::platforms::{
    CreatedPost, MediaUpload, PlatformAdapter, PostDraft, PostError, RateLimitGate, TokenGrant,
    UploadProgress,
};
use herald_infrastructure::secret::Secret;
use herald_sandbox::{Fault, RedditEndpoint, Sandbox, SandboxConfig};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/callback";

struct Env {
    sandbox: Sandbox,
    adapter: RedditAdapter,
}

impl Env {
    async fn start() -> Self {
        Self::start_with(|_| {}, |_| {}).await
    }

    async fn start_with(
        sandbox: impl FnOnce(&mut herald_sandbox::RedditConfig),
        adapter: impl FnOnce(&mut RedditConfig),
    ) -> Self {
        let mut sandbox_config = SandboxConfig::default();
        sandbox_config.reddit.image_processing_delay = Duration::from_millis(300);
        sandbox(&mut sandbox_config.reddit);
        let defaults = sandbox_config.reddit.clone();
        let sandbox = Sandbox::start("127.0.0.1:0", sandbox_config)
            .await
            .expect("sandbox starts");
        let mut config = RedditConfig::for_base(
            Url::parse(&sandbox.reddit_base_url()).unwrap(),
            defaults.client_id,
            Secret::new(defaults.client_secret),
        );
        config.user_agent = "server:herald-tests:v1 (by /u/herald_dev)".into();
        config.request_timeout = Duration::from_secs(1);
        config.image_poll_interval = Duration::from_millis(50);
        // The sandbox serves the sample media on loopback.
        config.media_policy = MediaUrlPolicy::new(true, "");
        adapter(&mut config);
        Self {
            adapter: RedditAdapter::new(config).expect("adapter builds"),
            sandbox,
        }
    }

    async fn connect(&self, user: &str) -> TokenGrant {
        let start = self.adapter.authorization_url(REDIRECT);
        let query: HashMap<String, String> = start.url.query_pairs().into_owned().collect();
        assert_eq!(query["duration"], "permanent");
        assert_eq!(query["state"], start.state);
        assert!(!query.contains_key("code_challenge"), "no PKCE");
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let consent = browser
            .get(format!("{}&sandbox_user={user}", start.url))
            .send()
            .await
            .unwrap();
        assert_eq!(consent.status(), 302);
        let location = consent.headers()["location"].to_str().unwrap();
        let callback: HashMap<String, String> = Url::parse(location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(callback["state"], start.state);
        self.adapter
            .exchange_code(&callback["code"], &start.pkce_verifier, REDIRECT)
            .await
            .expect("code exchange succeeds")
    }

    async fn post(&self, grant: &TokenGrant, draft: &PostDraft) -> Result<CreatedPost, PostError> {
        self.adapter
            .create_post(&grant.access_token, draft, &Gate::default())
            .await
    }

    async fn image(&self, grant: &TokenGrant, bytes: usize) -> Result<String, PlatformFailure> {
        let item = MediaItem {
            url: format!("{}/media/cat.png?bytes={bytes}", self.sandbox.base_url()),
            kind: MediaKind::Image,
            mime_type: "image/png".into(),
            probe: None,
        };
        let draft = PostDraft::default();
        self.adapter
            .upload_media(
                &grant.access_token,
                &MediaUpload::single(&item, &draft),
                &Gate::default(),
                &Progress::default(),
            )
            .await
    }

    /// Uploads every item of `draft.media` as the publisher does, filling `draft.media_ids`.
    async fn upload_all(
        &self,
        grant: &TokenGrant,
        draft: &mut PostDraft,
    ) -> Result<(), PlatformFailure> {
        let post = draft.clone();
        let mut ids = Vec::new();
        for (index, item) in post.media.iter().enumerate() {
            let upload = MediaUpload {
                item,
                index,
                count: post.media.len(),
                post: &post,
                resume: None,
            };
            ids.push(
                self.adapter
                    .upload_media(
                        &grant.access_token,
                        &upload,
                        &Gate::default(),
                        &Progress::default(),
                    )
                    .await?,
            );
        }
        draft.media_ids = ids;
        Ok(())
    }

    fn sample(&self, name: &str, bytes: usize) -> MediaItem {
        let (kind, mime_type) = match name.rsplit_once('.').map(|(_, e)| e) {
            Some("mp4") => (MediaKind::Video, "video/mp4"),
            Some("mov") => (MediaKind::Video, "video/quicktime"),
            Some("jpg") => (MediaKind::Image, "image/jpeg"),
            _ => (MediaKind::Image, "image/png"),
        };
        MediaItem {
            url: format!("{}/media/{name}?bytes={bytes}", self.sandbox.base_url()),
            kind,
            mime_type: mime_type.into(),
            probe: None,
        }
    }

    /// A gallery of `count` PNGs to `subreddit`, uploaded.
    async fn gallery(
        &self,
        grant: &TokenGrant,
        subreddit: &str,
        title: &str,
        count: usize,
    ) -> PostDraft {
        let mut draft = to(subreddit, title);
        draft.media = (0..count)
            .map(|i| self.sample(&format!("pic{i}.png"), 1000 + i))
            .collect();
        self.upload_all(grant, &mut draft).await.expect("uploaded");
        draft
    }

    /// A video to `subreddit` with a poster, uploaded.
    async fn video(&self, grant: &TokenGrant, subreddit: &str, title: &str) -> PostDraft {
        let mut draft = to(subreddit, title);
        draft.media = vec![self.sample("clip.mp4", 50_000)];
        draft.options.reddit.thumbnail_url = Some(self.sample("poster.jpg", 3000).url);
        self.upload_all(grant, &mut draft).await.expect("uploaded");
        draft
    }

    fn fault(&self, endpoint: RedditEndpoint, fault: Fault) {
        self.sandbox.inject_reddit_fault(endpoint, fault, 1);
    }
}

fn to(subreddit: &str, text: &str) -> PostDraft {
    let mut options = PublishOptions::default();
    options.reddit.subreddit = Some(subreddit.into());
    PostDraft {
        text: text.into(),
        options,
        ..PostDraft::default()
    }
}

fn failure(result: Result<CreatedPost, PostError>) -> PlatformFailure {
    match result {
        Err(PostError::Failed(f)) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

type Observation = (String, Option<u64>, Option<DateTime<Utc>>);

/// The gate key of Reddit's request budget: the app's (the twin's client id), not the account's.
fn app_api() -> String {
    format!(
        "app:{}:reddit_api",
        herald_sandbox::reddit::RedditConfig::default().client_id
    )
}

#[derive(Default)]
struct Gate {
    acquired: Mutex<Vec<String>>,
    observed: Mutex<Vec<Observation>>,
}

#[async_trait::async_trait]
impl RateLimitGate for Gate {
    async fn acquire(&self, endpoint: &str) -> Result<(), DateTime<Utc>> {
        self.acquired.lock().unwrap().push(endpoint.to_owned());
        Ok(())
    }

    async fn observe(&self, endpoint: &str, remaining: Option<u64>, reset: Option<DateTime<Utc>>) {
        self.observed
            .lock()
            .unwrap()
            .push((endpoint.to_owned(), remaining, reset));
    }
}

#[derive(Default)]
struct Progress {
    sent: Mutex<Vec<u64>>,
}

#[async_trait::async_trait]
impl UploadProgress for Progress {
    async fn started(&self, _total_bytes: u64) {}
    async fn session_opened(&self, _session: &Secret) {}
    async fn chunk_sent(&self, bytes_sent: u64, _total_bytes: u64) {
        self.sent.lock().unwrap().push(bytes_sent);
    }
}

#[tokio::test]
async fn connects_with_basic_auth_refreshes_without_rotation_and_revokes() {
    let env = Env::start().await;
    let grant = env.connect("reddit_alice").await;
    let refresh = grant.refresh_token.clone().expect("a permanent grant");
    assert!(grant.expires_at.unwrap() <= Utc::now() + TimeDelta::hours(1));
    assert!(grant.scopes.contains(&"submit".to_owned()));
    let account = env.adapter.account(&grant.access_token).await.unwrap();
    assert_eq!(account.username, "reddit_alice");
    assert!(account.account_id.starts_with("t2_"));

    let fresh = env
        .adapter
        .refresh(&AccountProfile::default(), &refresh)
        .await
        .unwrap();
    assert_ne!(fresh.access_token, grant.access_token);
    assert_eq!(
        fresh.refresh_token,
        Some(refresh.clone()),
        "kept: no rotation"
    );
    let agents = env.sandbox.reddit_state().user_agents;
    assert!(!agents.is_empty());
    assert!(agents
        .iter()
        .all(|a| a == "server:herald-tests:v1 (by /u/herald_dev)"));

    let refused = env
        .adapter
        .refresh(&AccountProfile::default(), &Secret::new("not-a-token"))
        .await
        .unwrap_err();
    assert_eq!(refused.class, ErrorClass::ReauthorizationRequired);
    assert!(!refused.message.contains("not-a-token"));

    env.adapter
        .revoke(&AccountProfile::default(), &fresh)
        .await
        .unwrap();
    let after = env
        .adapter
        .refresh(&AccountProfile::default(), &refresh)
        .await
        .unwrap_err();
    assert_eq!(after.class, ErrorClass::ReauthorizationRequired);
    env.sandbox.stop().await;
}

#[tokio::test]
async fn self_link_and_image_posts_come_back_with_id_and_url() {
    let env = Env::start().await;
    let grant = env.connect("reddit_poster").await;
    let post = env
        .post(
            &grant,
            &to("herald_sandbox", "Hello Reddit\n\nA body with **markdown**"),
        )
        .await
        .unwrap();
    assert!(post.post_id.starts_with("t3_"));
    assert!(
        post.url.contains("/r/herald_sandbox/comments/"),
        "{}",
        post.url
    );

    let mut link = to("linksonly", "A good read");
    link.link = Some("https://example.com/read".into());
    link.title = Some("Worth reading".into());
    link.options.reddit.nsfw = true;
    env.post(&grant, &link).await.unwrap();

    let url = env.image(&grant, 4000).await.unwrap();
    let mut image = to("r/herald_sandbox", "Look at this cat");
    image.media_ids = vec![url];
    let gate = Gate::default();
    let pic = env
        .adapter
        .create_post(&grant.access_token, &image, &gate)
        .await
        .unwrap();
    let state = env.sandbox.reddit_state();
    assert_eq!(state.posts.len(), 3);
    assert_eq!(pic.post_id, format!("t3_{}", state.posts[2].id));
    assert!(pic.url.ends_with(&state.posts[2].permalink));
    assert_eq!(state.posts[0].title, "Hello Reddit");
    assert_eq!(
        state.posts[0].text,
        "Hello Reddit\n\nA body with **markdown**"
    );
    assert_eq!(state.posts[1].kind, "link");
    assert!(state.posts[1].nsfw);
    assert_eq!(state.posts[1].title, "Worth reading");
    assert_eq!(state.posts[2].kind, "image");
    assert_eq!(state.assets[0].bytes, Some(4000));
    // The submission asked both gates; the headers fed the budget every account of the app
    // shares (Reddit counts per client id).
    assert!(gate
        .acquired
        .lock()
        .unwrap()
        .contains(&"reddit_submit".to_owned()));
    assert!(gate
        .observed
        .lock()
        .unwrap()
        .iter()
        .any(|(e, left, at)| e == &app_api() && left.is_some() && at.is_some()));
    env.sandbox.stop().await;
}

#[tokio::test]
async fn gallery_and_video_posts_come_back_with_id_and_url() {
    let env = Env::start().await;
    let grant = env.connect("reddit_media").await;

    // A gallery: three leases and uploads, one JSON submission answered with the post.
    let mut gallery = env
        .gallery(&grant, "herald_sandbox", "Three pictures", 3)
        .await;
    gallery.options.reddit.spoiler = true;
    let gate = Gate::default();
    let posted = env
        .adapter
        .create_post(&grant.access_token, &gallery, &gate)
        .await
        .unwrap();
    let state = env.sandbox.reddit_state();
    assert_eq!(state.posts.len(), 1);
    let post = &state.posts[0];
    assert_eq!(post.kind, "gallery");
    assert!(post.spoiler);
    assert_eq!(posted.post_id, format!("t3_{}", post.id), "not t3_t3_");
    assert!(posted.url.ends_with(&post.permalink), "{}", posted.url);
    let assets: Vec<String> = state.assets.iter().map(|a| a.asset_id.clone()).collect();
    assert_eq!(post.media_ids, assets, "every image, by asset id, in order");
    assert!(state
        .requests
        .iter()
        .any(|r| r.path.ends_with("/api/submit_gallery_post.json")));
    assert!(gate
        .acquired
        .lock()
        .unwrap()
        .contains(&"reddit_submit".to_owned()));

    // A video: the poster and the video leased and uploaded, `kind=video` with
    // `video_poster_url`, answered with a websocket, then found in the listing.
    let video = env.video(&grant, "herald_sandbox", "A short clip").await;
    let posted = env.post(&grant, &video).await.unwrap();
    let state = env.sandbox.reddit_state();
    assert_eq!(state.posts.len(), 2);
    let post = &state.posts[1];
    assert_eq!(post.kind, "video");
    assert_eq!(posted.post_id, format!("t3_{}", post.id));
    assert!(posted.url.ends_with(&post.permalink), "{}", posted.url);
    let poster = &state.assets[3];
    let clip = &state.assets[4];
    assert_eq!(
        (poster.mimetype.as_str(), poster.bytes),
        ("image/jpeg", Some(3000))
    );
    assert_eq!(
        (clip.mimetype.as_str(), clip.bytes),
        ("video/mp4", Some(50_000))
    );
    assert_eq!(post.media_ids, std::slice::from_ref(&clip.asset_id));
    assert_eq!(post.poster_url, poster.location);

    // A muted videogif.
    let mut gif = env.video(&grant, "herald_sandbox", "A loop").await;
    gif.options.reddit.videogif = true;
    env.post(&grant, &gif).await.unwrap();
    assert_eq!(env.sandbox.reddit_state().posts[2].kind, "videogif");
    env.sandbox.stop().await;
}

#[tokio::test]
async fn gallery_and_video_refusals_are_actionable() {
    let env = Env::start_with(|s| s.max_gallery_items = 3, |_| {}).await;
    let grant = env.connect("reddit_media_errors").await;

    // A subreddit that takes no galleries or videos.
    let gallery = env.gallery(&grant, "stills", "No galleries here", 2).await;
    let f = failure(env.post(&grant, &gallery).await);
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Permanent, "INVALID_OPTION")
    );
    assert!(f.message.contains("galleries"), "{}", f.message);
    let video = env.video(&grant, "stills", "No videos here").await;
    let f = failure(env.post(&grant, &video).await);
    assert_eq!(f.code, "INVALID_OPTION");
    assert!(f.message.contains("videos"), "{}", f.message);

    // More items than the twin's gallery takes: Reddit's words are passed on.
    let big = env.gallery(&grant, "herald_sandbox", "Too many", 4).await;
    let f = failure(env.post(&grant, &big).await);
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Permanent, "BAD_NUMBER")
    );
    assert!(f.message.contains("2 to 3 items"), "{}", f.message);

    // Media ids another account uploaded.
    let other = env.connect("reddit_someone_else").await;
    let theirs = env.gallery(&other, "herald_sandbox", "Not mine", 2).await;
    let mut borrowed = to("herald_sandbox", "Borrowed");
    borrowed.media_ids = theirs.media_ids.clone();
    let f = failure(env.post(&grant, &borrowed).await);
    assert_eq!(f.code, "INVALID_MEDIA_ASSETS");
    assert!(f.message.contains("upload them again"), "{}", f.message);

    // A poster that is not an image, and a video without one: refused before any lease.
    let leases = env.sandbox.reddit_state().assets.len();
    let mut bad_poster = to("herald_sandbox", "Bad poster");
    bad_poster.media = vec![env.sample("clip.mp4", 2000)];
    bad_poster.options.reddit.thumbnail_url = Some(env.sample("other.mp4", 2000).url);
    let f = env.upload_all(&grant, &mut bad_poster).await.unwrap_err();
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Permanent, "thumbnail_unsupported")
    );
    assert!(
        f.message.contains("options.reddit.thumbnail_url"),
        "{}",
        f.message
    );
    bad_poster.options.reddit.thumbnail_url = None;
    let f = env.upload_all(&grant, &mut bad_poster).await.unwrap_err();
    assert_eq!(f.code, "thumbnail_required");
    assert_eq!(env.sandbox.reddit_state().assets.len(), leases);

    // A video over the configured size is refused before its lease.
    let small = Env::start_with(|_| {}, |c| c.video_max_bytes = 10_000).await;
    let grant = small.connect("reddit_small").await;
    let mut large = to("herald_sandbox", "Large");
    large.media = vec![small.sample("clip.mov", 20_000)];
    large.options.reddit.thumbnail_url = Some(small.sample("poster.png", 100).url);
    let f = small.upload_all(&grant, &mut large).await.unwrap_err();
    assert_eq!(f.code, "media_too_large");
    assert!(f.message.contains("video"), "{}", f.message);
    let assets = small.sandbox.reddit_state().assets;
    assert_eq!(assets.len(), 1, "only the poster was leased");
    small.sandbox.stop().await;
    env.sandbox.stop().await;
}

#[tokio::test]
async fn gallery_and_video_posts_timed_out_after_success_are_found_not_sent_again() {
    let env = Env::start().await;
    let grant = env.connect("reddit_media_slow").await;
    let since = Utc::now();

    let gallery = env
        .gallery(&grant, "herald_sandbox", "Slow gallery", 2)
        .await;
    env.fault(
        RedditEndpoint::SubmitGallery,
        Fault::TimeoutAfterSuccess { secs: 1.5 },
    );
    assert!(matches!(
        env.post(&grant, &gallery).await,
        Err(PostError::OutcomeUnknown(_))
    ));
    let found = env
        .adapter
        .find_post(&grant.access_token, since, &gallery, &Gate::default())
        .await
        .unwrap()
        .expect("the gallery is found");
    let state = env.sandbox.reddit_state();
    assert_eq!(state.posts.len(), 1);
    assert_eq!(found.post_id, format!("t3_{}", state.posts[0].id));
    // Another gallery of the same title and subreddit is not this one.
    let other = env
        .gallery(&grant, "herald_sandbox", "Slow gallery", 2)
        .await;
    assert!(env
        .adapter
        .find_post(&grant.access_token, since, &other, &Gate::default())
        .await
        .unwrap()
        .is_none());

    let video = env.video(&grant, "herald_sandbox", "Slow video").await;
    env.fault(
        RedditEndpoint::Submit,
        Fault::TimeoutAfterSuccess { secs: 1.5 },
    );
    assert!(matches!(
        env.post(&grant, &video).await,
        Err(PostError::OutcomeUnknown(_))
    ));
    let found = env
        .adapter
        .find_post(&grant.access_token, since, &video, &Gate::default())
        .await
        .unwrap()
        .expect("the video is found");
    let state = env.sandbox.reddit_state();
    assert_eq!(state.posts.len(), 2);
    assert_eq!(state.posts[1].kind, "video");
    assert_eq!(found.post_id, format!("t3_{}", state.posts[1].id));
    let other = env.video(&grant, "herald_sandbox", "Slow video").await;
    assert!(env
        .adapter
        .find_post(&grant.access_token, since, &other, &Gate::default())
        .await
        .unwrap()
        .is_none());

    // A media storage failure is retryable, and a 5xx on the gallery submission too.
    env.fault(
        RedditEndpoint::MediaUpload,
        Fault::ServerError { status: 503 },
    );
    let mut retry = to("herald_sandbox", "Retry me");
    retry.media = vec![env.sample("a.png", 100), env.sample("b.png", 100)];
    let f = env.upload_all(&grant, &mut retry).await.unwrap_err();
    assert_eq!(f.class, ErrorClass::Retryable);
    env.upload_all(&grant, &mut retry).await.unwrap();
    env.fault(
        RedditEndpoint::SubmitGallery,
        Fault::ServerError { status: 502 },
    );
    assert_eq!(
        failure(env.post(&grant, &retry).await).class,
        ErrorClass::Retryable
    );
    env.post(&grant, &retry).await.unwrap();
    assert_eq!(env.sandbox.reddit_state().posts.len(), 3);
    env.sandbox.stop().await;
}

#[tokio::test]
async fn submit_errors_are_actionable() {
    let env = Env::start_with(|s| s.submits_per_window = 2, |_| {}).await;
    let grant = env.connect("reddit_errors").await;
    let cases = [
        ("nowhere_sub", "SUBREDDIT_NOEXIST", "does not exist"),
        ("private_club", "SUBREDDIT_NOTALLOWED", "moderators"),
        ("linksonly", "NO_SELFS", "does not allow text posts"),
    ];
    for (sr, code, advice) in cases {
        let f = failure(env.post(&grant, &to(sr, "hello")).await);
        assert_eq!((f.class, f.code.as_str()), (ErrorClass::Permanent, code));
        assert!(f.message.contains(advice), "{}", f.message);
    }
    let mut link = to("textonly", "x");
    link.link = Some("https://e.com".into());
    assert_eq!(failure(env.post(&grant, &link).await).code, "NO_LINKS");

    // A subreddit that needs flair: the message lists them.
    let f = failure(env.post(&grant, &to("needsflair", "no flair")).await);
    assert_eq!(f.code, "SUBMIT_VALIDATION_FLAIR_REQUIRED");
    assert!(
        f.message.contains("options.reddit.flair_id"),
        "{}",
        f.message
    );
    assert!(f.message.contains("(Discussion)") && f.message.contains("(News)"));
    let mut flaired = to("needsflair", "with flair");
    flaired.options.reddit.flair_id = Some("3f2c0e1a-0000-4000-8000-000000000001".into());
    env.post(&grant, &flaired).await.unwrap();

    // The same link twice: the duplicate code the publisher reconciles on.
    let mut shared = to("linksonly", "shared");
    shared.link = Some("https://example.com/once".into());
    env.post(&grant, &shared).await.unwrap();
    let dup = failure(env.post(&grant, &shared).await);
    assert_eq!(dup.code, herald_domain::failure::DUPLICATE_POST);

    // RATELIMIT in the body closes the posting gate until Reddit's "try again in".
    let gate = Gate::default();
    let limited = match env
        .adapter
        .create_post(
            &grant.access_token,
            &to("herald_sandbox", "one more"),
            &gate,
        )
        .await
    {
        Err(PostError::Failed(f)) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(limited.class, ErrorClass::RateLimited);
    let until = limited.not_before.unwrap();
    assert!(until > Utc::now() + TimeDelta::minutes(9));
    assert!(gate
        .observed
        .lock()
        .unwrap()
        .iter()
        .any(|(e, left, at)| e == "reddit_submit" && *left == Some(0) && *at == Some(until)));
    env.sandbox.stop().await;
}

#[tokio::test]
async fn http_failures_and_unknown_outcomes() {
    let env = Env::start().await;
    let grant = env.connect("reddit_http").await;
    env.fault(
        RedditEndpoint::Submit,
        Fault::RateLimited {
            retry_after_secs: 30,
        },
    );
    let gate = Gate::default();
    let throttled = match env
        .adapter
        .create_post(&grant.access_token, &to("herald_sandbox", "a"), &gate)
        .await
    {
        Err(PostError::Failed(f)) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(throttled.class, ErrorClass::RateLimited);
    let wait = throttled.not_before.unwrap() - Utc::now();
    assert!(wait > TimeDelta::seconds(25) && wait <= TimeDelta::seconds(31));
    assert!(gate
        .observed
        .lock()
        .unwrap()
        .iter()
        .any(|(e, left, _)| e == &app_api() && *left == Some(0)));

    env.fault(RedditEndpoint::Submit, Fault::ServerError { status: 503 });
    assert_eq!(
        failure(env.post(&grant, &to("herald_sandbox", "b")).await).class,
        ErrorClass::Retryable
    );
    env.fault(RedditEndpoint::Submit, Fault::ExpireToken);
    assert_eq!(
        failure(env.post(&grant, &to("herald_sandbox", "c")).await).class,
        ErrorClass::Auth
    );
    let grant = env
        .adapter
        .refresh(
            &AccountProfile::default(),
            grant.refresh_token.as_ref().unwrap(),
        )
        .await
        .unwrap();

    // Timed out after Reddit made the post: unknown, then found by listing.
    let since = Utc::now();
    env.fault(
        RedditEndpoint::Submit,
        Fault::TimeoutAfterSuccess { secs: 1.5 },
    );
    let draft = to("herald_sandbox", "did it post?");
    assert!(matches!(
        env.post(&grant, &draft).await,
        Err(PostError::OutcomeUnknown(_))
    ));
    let found = env
        .adapter
        .find_post(&grant.access_token, since, &draft, &Gate::default())
        .await
        .unwrap()
        .expect("found");
    let state = env.sandbox.reddit_state();
    assert_eq!(state.posts.len(), 1);
    assert_eq!(found.post_id, format!("t3_{}", state.posts[0].id));
    let other = env
        .adapter
        .find_post(
            &grant.access_token,
            since,
            &to("herald_sandbox", "never posted"),
            &Gate::default(),
        )
        .await
        .unwrap();
    assert!(other.is_none());

    // An image the media storage refuses fails for good.
    env.fault(RedditEndpoint::MediaAsset, Fault::RejectMedia);
    let refused = env.image(&grant, 100).await.unwrap_err();
    assert_eq!(refused.class, ErrorClass::Permanent);
    assert!(
        refused.message.contains("PNG, JPEG or GIF"),
        "{}",
        refused.message
    );
    env.sandbox.stop().await;
}

#[tokio::test]
async fn an_image_post_not_listed_in_time_is_an_unknown_outcome_then_found() {
    let env = Env::start_with(
        |s| s.image_processing_delay = Duration::from_millis(1500),
        |c| c.image_poll_max_wait = Duration::from_millis(300),
    )
    .await;
    let grant = env.connect("reddit_slow").await;
    let url = env.image(&grant, 2000).await.unwrap();
    let mut draft = to("herald_sandbox", "slow cat");
    draft.media_ids = vec![url];
    let since = Utc::now();
    assert!(matches!(
        env.post(&grant, &draft).await,
        Err(PostError::OutcomeUnknown(_))
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let found = env
        .adapter
        .find_post(&grant.access_token, since, &draft, &Gate::default())
        .await
        .unwrap();
    assert!(found.is_some());
    assert_eq!(env.sandbox.reddit_state().posts.len(), 1);
    env.sandbox.stop().await;
}

#[tokio::test]
async fn media_urls_on_private_addresses_are_refused_by_default() {
    let env = Env::start_with(|_| {}, |c| c.media_policy = MediaUrlPolicy::default()).await;
    let grant = env.connect("reddit_ssrf").await;
    let refused = env.image(&grant, 100).await.unwrap_err();
    assert_eq!(refused.code, "media_url_refused");
    assert!(
        env.sandbox.reddit_state().assets.is_empty(),
        "no lease taken"
    );
    env.sandbox.stop().await;
}

/// A SQLite store the workers' gates share.
async fn shared_store() -> herald_infrastructure::db::Db {
    let path = std::env::temp_dir().join(format!(
        "herald_reddit_limits_{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    herald_infrastructure::db::Db::connect(&format!("sqlite://{}", path.display()), 4)
        .await
        .unwrap()
}

/// Reddit counts requests per OAuth client id: once one account has spent the app's budget,
/// another account of the same app waits instead of taking a 429 from Reddit.
#[tokio::test]
async fn accounts_of_one_app_share_its_request_budget() {
    use herald_domain::Platform;
    use herald_infrastructure::rate_limit::SharedRateLimits;
    let env = Env::start_with(|reddit| reddit.requests_per_window = 3, |_| {}).await;
    let alice = env.connect("reddit_alice").await;
    let bob = env.connect("reddit_bob").await;
    let db = shared_store().await;
    let alice_gate = SharedRateLimits::new(db.clone(), Platform::Reddit, "t2_alice");
    let bob_gate = SharedRateLimits::new(db.clone(), Platform::Reddit, "t2_bob");
    for i in 0..3 {
        env.adapter
            .create_post(
                &alice.access_token,
                &to("herald_sandbox", &format!("alice {i}")),
                &alice_gate,
            )
            .await
            .unwrap();
    }
    let waiting = failure(
        env.adapter
            .create_post(&bob.access_token, &to("herald_sandbox", "bob"), &bob_gate)
            .await,
    );
    assert_eq!(waiting.code, "rate_limit_exhausted", "{waiting:?}");
    assert!(
        waiting.message.contains("every account of the app"),
        "{}",
        waiting.message
    );
    assert!(waiting.not_before.unwrap() > Utc::now() + TimeDelta::minutes(9));
    let state = env.sandbox.reddit_state();
    assert_eq!(state.posts.len(), 3);
    assert!(
        state.requests.iter().all(|r| r.status != Some(429)),
        "Reddit never refused: {:?}",
        state.requests
    );
    env.sandbox.stop().await;
}
