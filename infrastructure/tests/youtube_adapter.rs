//! The YouTube adapter against the sandbox's YouTube twin over real HTTP: connect, refresh,
//! revoke, the resumable upload (chunks, resume after an interrupted attempt, a lost session,
//! in-attempt resume), processing, thumbnails, reconciliation, the project quota in the shared
//! store, and the failure classes the publisher relies on.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaItem, MediaKind, Platform, PlatformFailure};
use herald_infrastructure::db::Db;
use herald_infrastructure::platforms::youtube::{
    next_pacific_midnight, QuotaConfig, YouTubeAdapter, YouTubeConfig,
};
use herald_infrastructure::platforms::{
    MediaUpload, PlatformAdapter, PostDraft, PostError, TokenGrant, UploadProgress, UploadResume,
};
use herald_infrastructure::rate_limit::SharedRateLimits;
use herald_infrastructure::secret::Secret;
use herald_sandbox::{Fault, Sandbox, SandboxConfig, YouTubeEndpoint, YouTubeStateSnapshot};
use sha2::{Digest, Sha256};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
const MIB: u64 = 1024 * 1024;

struct Env {
    sandbox: Sandbox,
    adapter: Arc<YouTubeAdapter>,
    db: Db,
    limits: SharedRateLimits,
}

async fn temp_db() -> Db {
    let dir = std::env::temp_dir().join(format!("herald-yt-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    Db::connect(&format!("sqlite://{}", dir.join("t.db").display()), 4)
        .await
        .expect("sqlite opens")
}

impl Env {
    async fn start() -> Self {
        Self::start_with(|_| {}, |_| {}).await
    }

    async fn start_with(
        sandbox_setup: impl FnOnce(&mut SandboxConfig),
        adapter_setup: impl FnOnce(&mut YouTubeConfig),
    ) -> Self {
        let mut sandbox_config = SandboxConfig::default();
        sandbox_config.youtube.processing_delay = Duration::from_millis(300);
        sandbox_setup(&mut sandbox_config);
        let defaults = sandbox_config.youtube.clone();
        let sandbox = Sandbox::start("127.0.0.1:0", sandbox_config)
            .await
            .expect("sandbox starts");
        let mut config = YouTubeConfig::for_base(
            Url::parse(&sandbox.youtube_base_url()).unwrap(),
            defaults.client_id,
            Secret::new(defaults.client_secret),
        );
        config.request_timeout = Duration::from_secs(2);
        // The sandbox serves the media on loopback.
        config.media_policy = herald_infrastructure::media_source::MediaUrlPolicy::new(true, "");
        config.chunk_timeout = Duration::from_secs(2);
        config.chunk_bytes = MIB as usize;
        config.processing_poll_interval = Duration::from_millis(50);
        adapter_setup(&mut config);
        let db = temp_db().await;
        Self {
            adapter: Arc::new(YouTubeAdapter::new(config).expect("adapter builds")),
            limits: SharedRateLimits::new(db.clone(), Platform::Youtube, "channel"),
            db,
            sandbox,
        }
    }

    fn state(&self) -> YouTubeStateSnapshot {
        self.sandbox.youtube_state()
    }

    /// The whole connect flow: authorize URL → consent (302) → code exchange.
    async fn connect_as(&self, user: Option<&str>) -> TokenGrant {
        let start = self.adapter.authorization_url(REDIRECT);
        let q: HashMap<String, String> = start.url.query_pairs().into_owned().collect();
        assert_eq!(q["access_type"], "offline");
        assert_eq!(q["prompt"], "consent");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["state"], start.state);
        assert_eq!(q["scope"], self.adapter.config().scopes.join(" "));
        let mut url = start.url.clone();
        if let Some(user) = user {
            url.query_pairs_mut().append_pair("sandbox_user", user);
        }
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let consent = browser.get(url).send().await.unwrap();
        assert_eq!(consent.status(), 302, "authorize must redirect");
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

    async fn connect(&self) -> TokenGrant {
        let scopes = &self.adapter.config().scopes;
        assert!(scopes.iter().any(|s| s.ends_with("/youtube.upload")));
        assert!(scopes.iter().any(|s| s.ends_with("/youtube.readonly")));
        self.connect_as(None).await
    }

    fn media_url(&self, name: &str, bytes: u64) -> String {
        format!("{}/media/{name}?bytes={bytes}", self.sandbox.base_url())
    }

    async fn media_sha256(&self, name: &str, bytes: u64) -> String {
        let body = reqwest::get(self.media_url(name, bytes))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    async fn upload(
        &self,
        grant: &TokenGrant,
        post: &PostDraft,
        resume: Option<&UploadResume>,
        progress: &Progress,
    ) -> Result<String, PlatformFailure> {
        let upload = MediaUpload {
            item: &post.media[0],
            index: 0,
            count: 1,
            post,
            resume,
        };
        self.adapter
            .upload_media(&grant.access_token, &upload, &self.limits, progress)
            .await
    }

    async fn publish(&self, grant: &TokenGrant, post: &PostDraft) -> Result<String, PostError> {
        let video_id = self.upload(grant, post, None, &Progress::default()).await?;
        let draft = PostDraft {
            media_ids: vec![video_id],
            ..post.clone()
        };
        self.adapter
            .create_post(&grant.access_token, &draft, &self.limits)
            .await
            .map(|created| {
                assert_eq!(
                    created.url,
                    format!("https://www.youtube.com/watch?v={}", created.post_id)
                );
                created.post_id
            })
    }

    fn fault(&self, endpoint: YouTubeEndpoint, fault: Fault, times: u32) {
        self.sandbox.inject_youtube_fault(endpoint, fault, times);
    }
}

fn video_post(url: String, title: &str) -> PostDraft {
    PostDraft {
        text: format!("{title}\nA description with <tags> removed."),
        title: Some(title.to_owned()),
        media: vec![MediaItem {
            url,
            kind: MediaKind::Video,
            mime_type: "video/mp4".to_owned(),
            probe: None,
        }],
        ..PostDraft::default()
    }
}

fn failure(result: Result<String, PostError>) -> PlatformFailure {
    match result {
        Err(PostError::Failed(f)) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// What the adapter reported, in order.
#[derive(Default)]
struct Progress {
    events: Mutex<Vec<String>>,
    session: Mutex<Option<String>>,
    confirmed: Mutex<u64>,
}

#[async_trait::async_trait]
impl UploadProgress for Progress {
    async fn started(&self, total_bytes: u64) {
        self.events
            .lock()
            .unwrap()
            .push(format!("started {total_bytes}"));
    }

    async fn session_opened(&self, session: &Secret) {
        self.events.lock().unwrap().push("session".to_owned());
        *self.session.lock().unwrap() = Some(session.expose().to_owned());
    }

    async fn chunk_sent(&self, bytes_sent: u64, _total_bytes: u64) {
        self.events
            .lock()
            .unwrap()
            .push(format!("chunk {bytes_sent}"));
        *self.confirmed.lock().unwrap() = bytes_sent;
    }
}

impl Progress {
    fn resume(&self) -> UploadResume {
        UploadResume {
            session: Secret::new(self.session.lock().unwrap().clone().expect("a session")),
            bytes_confirmed: *self.confirmed.lock().unwrap(),
        }
    }
}

/// Bytes of session `upload_id` the twin received more than once.
fn duplicated_bytes(state: &YouTubeStateSnapshot) -> u64 {
    let mut ranges: Vec<(u64, u64)> = state.received.iter().map(|r| (r.first, r.last)).collect();
    ranges.sort();
    let mut duplicated = 0;
    let mut covered_until = 0u64; // exclusive
    for (first, last) in ranges {
        if first < covered_until {
            duplicated += covered_until.min(last + 1) - first;
        }
        covered_until = covered_until.max(last + 1);
    }
    duplicated
}

#[tokio::test]
async fn connects_reads_the_channel_refreshes_without_rotation_and_revokes() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let refresh = grant
        .refresh_token
        .clone()
        .expect("offline access gives a refresh token");
    assert!(grant.expires_at.is_some());
    let profile = env.adapter.account(&grant.access_token).await.unwrap();
    assert!(profile.account_id.starts_with("UC"), "{profile:?}");
    assert_eq!(profile.display_name, "Herald Sandbox");
    assert_eq!(profile.username, "@heraldsandbox");

    let refreshed = env
        .adapter
        .refresh(&AccountProfile::default(), &refresh)
        .await
        .unwrap();
    assert_ne!(refreshed.access_token, grant.access_token);
    assert_eq!(refreshed.refresh_token.as_ref(), Some(&refresh), "kept");
    env.adapter.account(&refreshed.access_token).await.unwrap();

    env.adapter
        .revoke(&AccountProfile::default(), &refreshed)
        .await
        .unwrap();
    // Revoking what is already revoked is fine.
    env.adapter
        .revoke(&AccountProfile::default(), &refreshed)
        .await
        .unwrap();
    let err = env
        .adapter
        .refresh(&AccountProfile::default(), &refresh)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::ReauthorizationRequired);
    assert!(!err.message.contains(refresh.expose()));
    let err = env
        .adapter
        .account(&refreshed.access_token)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Auth);
}

#[tokio::test]
async fn accounts_without_a_channel_or_scope_are_explained() {
    let env = Env::start().await;
    let grant = env.connect_as(Some("nochannel_bob")).await;
    let err = env.adapter.account(&grant.access_token).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Permanent);
    assert!(err.message.contains("create one at youtube.com"), "{err}");

    let upload_only = Env::start_with(
        |_| {},
        |c| c.scopes = vec!["https://www.googleapis.com/auth/youtube.upload".into()],
    )
    .await;
    let grant = upload_only.connect_as(None).await;
    let err = upload_only
        .adapter
        .account(&grant.access_token)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::ReauthorizationRequired);
    assert!(err.message.contains("reconnect"), "{err}");
}

#[tokio::test]
async fn uploads_in_chunks_waits_for_processing_and_reconciles() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let bytes = 2 * MIB + MIB / 2;
    let mut post = video_post(env.media_url("clip.mp4", bytes), "My video");
    post.options.youtube.tags = vec!["herald".into()];
    post.options.youtube.privacy = Some("unlisted".into());
    post.options.youtube.shorts = true;
    let progress = Progress::default();
    let video_id = env.upload(&grant, &post, None, &progress).await.unwrap();
    assert_eq!(
        *progress.events.lock().unwrap(),
        vec![
            "session".to_owned(),
            format!("started {bytes}"),
            format!("chunk {}", MIB),
            format!("chunk {}", 2 * MIB),
            format!("chunk {bytes}"),
        ],
        "the session is reported before the first byte"
    );
    let state = env.state();
    let video = &state.videos[0];
    assert_eq!(video.id, video_id);
    assert_eq!(video.bytes, bytes);
    assert_eq!(video.sha256, env.media_sha256("clip.mp4", bytes).await);
    assert_eq!(video.title, "My video #Shorts");
    assert_eq!(
        video.description,
        "My video\nA description with tags removed."
    );
    assert_eq!(video.tags, vec!["herald"]);
    assert_eq!(video.privacy_status, "unlisted");
    assert_eq!(video.category_id, "22");
    assert_eq!(state.received.len(), 3);
    assert_eq!(duplicated_bytes(&state), 0);

    let draft = PostDraft {
        media_ids: vec![video_id.clone()],
        ..post.clone()
    };
    let created = env
        .adapter
        .create_post(&grant.access_token, &draft, &env.limits)
        .await
        .unwrap();
    assert_eq!(created.post_id, video_id);
    assert_eq!(env.state().videos[0].upload_status, "processed");

    // Reconciliation finds the video by its title in the uploads playlist.
    let channel = env.adapter.account(&grant.access_token).await.unwrap();
    let since = Utc::now() - TimeDelta::minutes(5);
    let found = env
        .adapter
        .find_post(
            &grant.access_token,
            since,
            &PostDraft {
                account: channel.clone(),
                ..post.clone()
            },
            &env.limits,
        )
        .await
        .unwrap();
    assert_eq!(found.map(|p| p.post_id), Some(video_id));
    let other = video_post(env.media_url("clip.mp4", bytes), "Another video");
    let none = env
        .adapter
        .find_post(
            &grant.access_token,
            since,
            &PostDraft {
                account: channel.clone(),
                ..other.clone()
            },
            &env.limits,
        )
        .await
        .unwrap();
    assert_eq!(none, None);
    // Quota spent: one insert, processing checks, playlist reads.
    let quota = env.state().quota;
    assert_eq!(quota.inserts, 1);
    assert!(quota.units_used > 1600, "{quota:?}");
}

#[tokio::test]
async fn an_interrupted_attempt_resumes_its_session_without_resending_bytes() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let bytes = 5 * MIB + 12_345;
    let post = video_post(env.media_url("long.mp4", bytes), "Resumed");
    // Every chunk takes a while, so the attempt can be cut off mid-upload.
    env.fault(
        YouTubeEndpoint::UploadChunk,
        Fault::TimeoutAfterSuccess { secs: 0.3 },
        100,
    );
    let progress = Arc::new(Progress::default());
    let task = {
        let adapter = env.adapter.clone();
        let progress = progress.clone();
        let access = grant.access_token.clone();
        let limits = env.limits.clone();
        let post = post.clone();
        tokio::spawn(async move {
            let upload = MediaUpload::single(&post.media[0], &post);
            adapter
                .upload_media(&access, &upload, &limits, progress.as_ref())
                .await
        })
    };
    for _ in 0..200 {
        if env
            .state()
            .sessions
            .first()
            .is_some_and(|s| s.confirmed >= 2 * MIB)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The worker dies: the connection of the chunk in flight is dropped.
    task.abort();
    let _ = task.await;
    env.sandbox.clear_youtube_faults();
    let resume = progress.resume();
    assert!(resume.bytes_confirmed >= MIB, "{}", resume.bytes_confirmed);

    let again = Progress::default();
    let video_id = env
        .upload(&grant, &post, Some(&resume), &again)
        .await
        .unwrap();
    assert!(
        !again.events.lock().unwrap().contains(&"session".to_owned()),
        "the session is resumed, not reopened"
    );
    let state = env.state();
    assert_eq!(state.sessions.len(), 1);
    assert_eq!(state.quota.inserts, 1);
    assert_eq!(state.videos.len(), 1);
    assert_eq!(state.videos[0].id, video_id);
    assert_eq!(
        state.videos[0].sha256,
        env.media_sha256("long.mp4", bytes).await
    );
    assert!(
        duplicated_bytes(&state) <= MIB,
        "no byte range twice beyond the chunk in flight: {:?}",
        state.received
    );

    // Resuming a finished session answers with the same video.
    let done = env
        .upload(&grant, &post, Some(&resume), &Progress::default())
        .await
        .unwrap();
    assert_eq!(done, video_id);
    assert_eq!(env.state().videos.len(), 1);
}

#[tokio::test]
async fn a_lost_session_starts_over_and_interrupted_chunks_resume_in_the_attempt() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let bytes = 3 * MIB;
    let post = video_post(env.media_url("again.mp4", bytes), "Again");
    env.fault(
        YouTubeEndpoint::UploadChunk,
        Fault::ServerError { status: 503 },
        1,
    );
    let progress = Progress::default();
    // 503 once: the adapter asks where the session stands and carries on.
    env.upload(&grant, &post, None, &progress).await.unwrap();
    assert_eq!(env.state().videos.len(), 1);
    assert_eq!(duplicated_bytes(&env.state()), 0);

    // An attempt that gives up after 5xx on every chunk and status query; its session then
    // expires before the next attempt, which opens a new one.
    let post2 = video_post(env.media_url("expired.mp4", bytes), "Expired");
    env.fault(
        YouTubeEndpoint::UploadChunk,
        Fault::ServerError { status: 500 },
        20,
    );
    let progress = Progress::default();
    let err = env
        .upload(&grant, &post2, None, &progress)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Retryable, "{err}");
    env.sandbox.clear_youtube_faults();
    assert_eq!(env.sandbox.expire_youtube_sessions(), 1);
    let again = Progress::default();
    let video = env
        .upload(&grant, &post2, Some(&progress.resume()), &again)
        .await
        .unwrap();
    assert!(again.events.lock().unwrap().contains(&"session".to_owned()));
    let state = env.state();
    assert_eq!(state.sessions.len(), 3);
    assert_eq!(state.videos.len(), 2);
    assert_eq!(state.videos[1].id, video);
    assert_eq!(
        state.videos[1].sha256,
        env.media_sha256("expired.mp4", bytes).await
    );

    // The last chunk's answer is lost: the status query finds the finished video.
    let post3 = video_post(env.media_url("last.mp4", MIB / 2), "Lost answer");
    env.fault(
        YouTubeEndpoint::UploadChunk,
        Fault::TimeoutAfterSuccess { secs: 3.0 },
        1,
    );
    let id = env
        .upload(&grant, &post3, None, &Progress::default())
        .await
        .unwrap();
    assert_eq!(env.state().videos.len(), 3);
    assert_eq!(env.state().videos[2].id, id);
}

#[tokio::test]
async fn thumbnail_processing_failures_and_rejections() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let mut post = video_post(env.media_url("thumb.mp4", MIB), "Thumbnail");
    post.options.youtube.thumbnail_url = Some(env.media_url("cover.png", 50_000));
    env.publish(&grant, &post).await.unwrap();
    assert_eq!(env.state().videos[0].thumbnail_bytes, Some(50_000));

    // A thumbnail YouTube refuses does not fail a live video.
    let mut post = video_post(env.media_url("gifthumb.mp4", MIB), "Gif thumbnail");
    post.options.youtube.thumbnail_url = Some(env.media_url("cover.gif", 1000));
    env.publish(&grant, &post).await.unwrap();
    assert_eq!(env.state().videos[1].thumbnail_bytes, None);

    env.fault(YouTubeEndpoint::InsertVideo, Fault::RejectMedia, 1);
    let post = video_post(env.media_url("bad.mp4", MIB), "Bad codec");
    let f = failure(env.publish(&grant, &post).await);
    assert_eq!(f.class, ErrorClass::Permanent);
    assert!(f.message.contains("H.264"), "{f}");

    env.fault(
        YouTubeEndpoint::InsertVideo,
        Fault::ContentRejected {
            detail: "copyright".into(),
        },
        1,
    );
    let post = video_post(env.media_url("claimed.mp4", MIB), "Claimed");
    let f = failure(env.publish(&grant, &post).await);
    assert_eq!(f.code, "rejected_copyright");

    // Processing that outlasts the wait: the attempt ends retryable.
    env.fault(
        YouTubeEndpoint::InsertVideo,
        Fault::SlowProcessing { secs: 60.0 },
        1,
    );
    let mut config = env.adapter.config().clone();
    config.processing_max_wait = Duration::from_millis(300);
    let impatient = YouTubeAdapter::new(config).unwrap();
    let post = video_post(env.media_url("slow.mp4", MIB), "Slow");
    let upload = MediaUpload::single(&post.media[0], &post);
    let id = impatient
        .upload_media(
            &grant.access_token,
            &upload,
            &env.limits,
            &Progress::default(),
        )
        .await
        .unwrap();
    let draft = PostDraft {
        media_ids: vec![id],
        ..post.clone()
    };
    let err = impatient
        .create_post(&grant.access_token, &draft, &env.limits)
        .await
        .unwrap_err();
    match err {
        PostError::Failed(f) => assert_eq!(f.class, ErrorClass::Retryable),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn failure_classes() {
    let env = Env::start().await;
    let grant = env.connect().await;
    let post = |name: &str| video_post(env.media_url(name, 1000), name);

    env.fault(YouTubeEndpoint::InsertVideo, Fault::ExpireToken, 1);
    let f = env
        .upload(&grant, &post("a.mp4"), None, &Progress::default())
        .await
        .unwrap_err();
    assert_eq!(f.class, ErrorClass::Auth);
    let fresh = env
        .adapter
        .refresh(
            &AccountProfile::default(),
            grant.refresh_token.as_ref().unwrap(),
        )
        .await
        .unwrap();

    let mut bad = post("b.mp4");
    bad.options.youtube.category_id = Some("999".into());
    let f = env
        .upload(&fresh, &bad, None, &Progress::default())
        .await
        .unwrap_err();
    assert_eq!(f.class, ErrorClass::Permanent);
    assert!(f.message.contains("category_id"), "{f}");

    env.fault(
        YouTubeEndpoint::InsertVideo,
        Fault::RateLimited {
            retry_after_secs: 30,
        },
        1,
    );
    let f = env
        .upload(&fresh, &post("c.mp4"), None, &Progress::default())
        .await
        .unwrap_err();
    assert_eq!(f.class, ErrorClass::RateLimited);
    assert!(f.not_before.unwrap() > Utc::now() + TimeDelta::seconds(20));
    // The 429's Retry-After closed the insert endpoint for every worker.
    let f = env
        .upload(&fresh, &post("c.mp4"), None, &Progress::default())
        .await
        .unwrap_err();
    assert_eq!(f.code, "rate_limit_exhausted");

    // The channel's upload limit: two videos, then uploadLimitExceeded for 24 hours.
    let other = Env::start_with(|c| c.youtube.channel_upload_limit = 1, |_| {}).await;
    let grant = other.connect().await;
    other
        .upload(
            &grant,
            &video_post(other.media_url("x.mp4", 1000), "x"),
            None,
            &Progress::default(),
        )
        .await
        .unwrap();
    let f = other
        .upload(
            &grant,
            &video_post(other.media_url("y.mp4", 1000), "y"),
            None,
            &Progress::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(f.class, ErrorClass::RateLimited);
    assert_eq!(f.code, "http_400_uploadLimitExceeded");
    assert!(f.not_before.unwrap() > Utc::now() + TimeDelta::hours(23));

    // An image is not a YouTube post.
    let mut image = post("d.png");
    image.media[0].kind = MediaKind::Image;
    let f = env
        .upload(&fresh, &image, None, &Progress::default())
        .await
        .unwrap_err();
    assert_eq!(f.class, ErrorClass::Permanent);
}

#[tokio::test]
async fn the_project_quota_is_counted_in_the_shared_store() {
    // 3300 units: two inserts (3200) and a few lists fit, a third insert does not.
    let env = Env::start_with(
        |c| c.youtube.daily_units = 3300,
        |c| {
            c.quota = QuotaConfig {
                daily_units: 3300,
                ..QuotaConfig::default()
            }
        },
    )
    .await;
    let grant = env.connect().await;
    for i in 0..2 {
        let post = video_post(env.media_url(&format!("q{i}.mp4"), 1000), &format!("q{i}"));
        env.upload(&grant, &post, None, &Progress::default())
            .await
            .unwrap();
    }
    let post = video_post(env.media_url("q2.mp4", 1000), "q2");
    let f = env
        .upload(&grant, &post, None, &Progress::default())
        .await
        .unwrap_err();
    assert_eq!(f.class, ErrorClass::RateLimited);
    assert_eq!(f.code, "quota_exhausted");
    assert_eq!(f.not_before, Some(next_pacific_midnight(Utc::now())));
    assert!(f.message.contains("Google Cloud console"), "{f}");
    let quota = env.state().quota;
    assert_eq!(
        (quota.inserts, quota.refused),
        (2, 0),
        "Herald never overdraws"
    );
    // A second gate on the same store (another worker, another channel) sees the same quota.
    let other_worker = SharedRateLimits::new(env.db.clone(), Platform::Youtube, "another-channel");
    let f = env
        .adapter
        .upload_media(
            &grant.access_token,
            &MediaUpload::single(&post.media[0], &post),
            &other_worker,
            &Progress::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(f.code, "quota_exhausted");
}

#[tokio::test]
async fn a_quota_exceeded_from_google_closes_the_quota_until_the_reset() {
    let env = Env::start().await;
    let grant = env.connect().await;
    // Another app of the same project spent the day's quota.
    env.sandbox.set_youtube_quota_usage(Some(10_000), None);
    let post = video_post(env.media_url("late.mp4", 1000), "late");
    let f = env
        .upload(&grant, &post, None, &Progress::default())
        .await
        .unwrap_err();
    assert_eq!(f.class, ErrorClass::RateLimited);
    assert_eq!(f.code, "http_403_quotaExceeded");
    assert_eq!(f.not_before, Some(next_pacific_midnight(Utc::now())));
    // Closed for every worker: nothing more reaches YouTube today.
    let f = env
        .upload(&grant, &post, None, &Progress::default())
        .await
        .unwrap_err();
    assert_eq!(f.code, "quota_exhausted");
    assert_eq!(env.state().quota.refused, 1);
}
