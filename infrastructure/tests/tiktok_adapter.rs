//! The TikTok adapter against the sandbox's TikTok twin over real HTTP: connect, refresh with
//! rotation, revoke; Direct Post and inbox videos (chunked and pulled), photos; resuming an
//! interrupted upload; the failure classes the publisher relies on; and the shared limiter
//! keeping TikTok's documented limits across workers.
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use herald_domain::connection::AccountProfile;
use herald_domain::{ErrorClass, MediaItem, MediaKind, Platform, PlatformFailure, PublishOptions};
use herald_infrastructure::db::Db;
use herald_infrastructure::media_source::MediaUrlPolicy;
use herald_infrastructure::platforms::tiktok::{
    PkceEncoding, TiktokAdapter, TiktokConfig, MB, VIDEO_LIST_SCOPE,
};
use herald_infrastructure::platforms::{
    MediaUpload, PlatformAdapter, PostDraft, RateLimitGate, TokenGrant, UploadProgress,
    UploadResume,
};
use herald_infrastructure::rate_limit::SharedRateLimits;
use herald_infrastructure::secret::Secret;
use herald_sandbox::{Fault, Sandbox, SandboxConfig, TiktokEndpoint};
use serde_json::json;
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/callback";
/// 12 MB: two chunks of 5 MiB (the second takes the trailing bytes).
const VIDEO_BYTES: u64 = 12_000_000;

struct Env {
    sandbox: Arc<Sandbox>,
    adapter: TiktokAdapter,
    http: reqwest::Client,
}

impl Env {
    async fn start() -> Self {
        Self::start_with(|_, _| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut SandboxConfig, &mut TiktokConfig)) -> Self {
        let mut sandbox_config = SandboxConfig::default();
        sandbox_config.tiktok.processing_delay = Duration::from_millis(200);
        let defaults = SandboxConfig::default().tiktok;
        let mut config = TiktokConfig::for_base(
            Url::parse("http://127.0.0.1:1/tiktok").unwrap(),
            defaults.client_key,
            Secret::new(defaults.client_secret),
        );
        config.request_timeout = Duration::from_secs(2);
        config.status_poll_interval = Duration::from_millis(50);
        config.public_id_wait = Duration::from_secs(2);
        config.chunk_bytes = 5 * MB;
        adjust(&mut sandbox_config, &mut config);
        let sandbox = Sandbox::start("127.0.0.1:0", sandbox_config)
            .await
            .expect("sandbox starts");
        let base = Url::parse(&sandbox.tiktok_base_url()).unwrap();
        config.authorize_url = Url::parse(&format!("{base}/v2/auth/authorize/")).unwrap();
        config.api_base = base;
        // The sample media is served on loopback: allowed by name, nothing else is.
        config.media_policy = MediaUrlPolicy::default().allowing(sandbox.local_addr().to_string());
        config.pull_from_url_prefixes = config
            .pull_from_url_prefixes
            .iter()
            .map(|p| p.replace("{sandbox}", &sandbox.base_url()))
            .collect();
        Self {
            adapter: TiktokAdapter::new(config).expect("adapter builds"),
            sandbox: Arc::new(sandbox),
            http: reqwest::Client::new(),
        }
    }

    /// Connects `user` through the environment's adapter.
    async fn connect_as(&self, user: &str) -> TokenGrant {
        connect_through(&self.adapter, user).await
    }

    fn media_url(&self, name: &str, bytes: u64) -> String {
        format!("{}/media/{name}?bytes={bytes}", self.sandbox.base_url())
    }

    async fn media_bytes(&self, url: &str) -> Vec<u8> {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }

    async fn twin(&self, path: &str, body: serde_json::Value) {
        let resp = self
            .http
            .post(format!(
                "{}/_sandbox/{path}",
                self.sandbox.tiktok_base_url()
            ))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    }

    /// Uploads the single media item of `post` (or item `index` of several).
    async fn upload(
        &self,
        grant: &TokenGrant,
        post: &PostDraft,
        index: usize,
        gate: &Gate,
        progress: &Progress,
        resume: Option<&UploadResume>,
    ) -> Result<String, PlatformFailure> {
        let upload = MediaUpload {
            item: &post.media[index],
            index,
            count: post.media.len(),
            post,
            resume,
        };
        self.adapter
            .upload_media(&grant.access_token, &upload, gate, progress)
            .await
    }

    /// Uploads every media item, then creates the post.
    async fn publish(
        &self,
        grant: &TokenGrant,
        mut post: PostDraft,
        gate: &Gate,
    ) -> Result<(String, String), PlatformFailure> {
        for index in 0..post.media.len() {
            let id = self
                .upload(grant, &post, index, gate, &Progress::default(), None)
                .await?;
            post.media_ids.push(id);
        }
        let created = self
            .adapter
            .create_post(&grant.access_token, &post, gate)
            .await
            .map_err(|e| match e {
                herald_infrastructure::platforms::PostError::Failed(f) => f,
                other => panic!("{other:?}"),
            })?;
        Ok((created.post_id, created.url))
    }
}

/// The whole connect flow through `adapter`: authorize URL → consent (302) → code exchange.
async fn connect_through(adapter: &TiktokAdapter, user: &str) -> TokenGrant {
    let start = adapter.authorization_url(REDIRECT);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("{}&sandbox_user={user}", start.url);
    let consent = browser.get(url).send().await.unwrap();
    assert_eq!(consent.status(), 302, "authorize must redirect");
    let location = consent.headers()["location"].to_str().unwrap();
    let callback: HashMap<String, String> = Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(callback["state"], start.state, "{location}");
    adapter
        .exchange_code(&callback["code"], &start.pkce_verifier, REDIRECT)
        .await
        .expect("code exchange succeeds")
}

fn video_post(url: String, text: &str, options: PublishOptions) -> PostDraft {
    PostDraft {
        text: text.to_owned(),
        media: vec![MediaItem {
            url,
            kind: MediaKind::Video,
            mime_type: "video/mp4".into(),
            probe: None,
        }],
        options,
        ..PostDraft::default()
    }
}

fn tiktok_options(mode: &str, privacy: Option<&str>) -> PublishOptions {
    let mut options = PublishOptions::default();
    options.tiktok.mode = Some(mode.to_owned());
    options.tiktok.privacy_level = privacy.map(str::to_owned);
    options
}

/// A gate keeping documented limits in memory (sliding windows), recording what was asked.
#[derive(Default)]
struct Gate {
    documented: Mutex<Vec<(String, u32)>>,
    windows: Mutex<HashMap<String, VecDeque<Instant>>>,
}

#[async_trait::async_trait]
impl RateLimitGate for Gate {
    async fn acquire(&self, _endpoint: &str) -> Result<(), DateTime<Utc>> {
        Ok(())
    }

    async fn observe(&self, _: &str, _: Option<u64>, _: Option<DateTime<Utc>>) {}

    async fn acquire_documented(
        &self,
        endpoint: &str,
        limit: u32,
        window: Duration,
    ) -> Result<(), DateTime<Utc>> {
        self.documented
            .lock()
            .unwrap()
            .push((endpoint.to_owned(), limit));
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap();
        let times = windows.entry(endpoint.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.len() >= limit as usize {
            let free = window - now.duration_since(times[0]);
            return Err(Utc::now() + TimeDelta::from_std(free).unwrap());
        }
        times.push_back(now);
        Ok(())
    }
}

impl Gate {
    fn asked(&self, endpoint: &str) -> Vec<u32> {
        self.documented
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _)| e == endpoint)
            .map(|(_, l)| *l)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Session(String),
    Started(u64),
    Chunk(u64),
}

/// Records progress; `on_chunk` runs after each confirmed chunk (to inject faults mid-upload).
#[derive(Default)]
struct Progress {
    events: Mutex<Vec<Event>>,
    on_chunk: Option<Box<dyn Fn(u64) + Send + Sync>>,
}

impl Progress {
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// The last session handle and the last confirmed offset, as the publisher would keep them.
    fn resume(&self) -> UploadResume {
        let events = self.events();
        let session = events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Session(s) => Some(s.clone()),
                _ => None,
            })
            .expect("a session was opened");
        let confirmed = events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Chunk(n) => Some(*n),
                _ => None,
            })
            .unwrap_or(0);
        UploadResume {
            session: Secret::new(session),
            bytes_confirmed: confirmed,
        }
    }
}

#[async_trait::async_trait]
impl UploadProgress for Progress {
    async fn started(&self, total_bytes: u64) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Started(total_bytes));
    }

    async fn session_opened(&self, session: &Secret) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Session(session.expose().to_owned()));
    }

    async fn chunk_sent(&self, bytes_sent: u64, _total_bytes: u64) {
        self.events.lock().unwrap().push(Event::Chunk(bytes_sent));
        if let Some(hook) = &self.on_chunk {
            hook(bytes_sent);
        }
    }
}

#[tokio::test]
async fn connects_refreshes_with_rotation_reads_the_account_and_revokes() {
    let env =
        Env::start_with(|s, _| s.tiktok.access_token_lifetime = Duration::from_secs(7200)).await;
    let start = env.adapter.authorization_url(REDIRECT);
    let q: HashMap<String, String> = start.url.query_pairs().into_owned().collect();
    assert_eq!(q["client_key"], "herald-sandbox-tiktok");
    assert!(!q.contains_key("client_id"));
    assert_eq!(
        q["scope"],
        "user.info.basic,user.info.profile,video.publish,video.upload"
    );
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["state"], start.state);
    assert!(
        !q.contains_key("code_challenge"),
        "the web flow sends no PKCE"
    );

    let grant = env.connect_as("tok_ann").await;
    // The lifetime is read from the response (the twin says 2 h here).
    let expires = grant.expires_at.expect("expiry");
    assert!(
        expires > Utc::now() + TimeDelta::minutes(119)
            && expires < Utc::now() + TimeDelta::minutes(121)
    );
    assert!(grant.scopes.contains(&"video.publish".to_owned()));
    let accounts = env.adapter.accounts(&grant).await.unwrap();
    assert_eq!(accounts.len(), 1);
    let profile = &accounts[0].profile;
    assert_eq!(profile.username, "tok_ann");
    let issued = env.sandbox.tiktok_state().tokens_issued;
    assert_eq!(profile.account_id, issued[0].open_id);

    // Refresh tokens rotate: the new one is kept, the old one no longer works.
    let old_refresh = grant.refresh_token.clone().unwrap();
    let fresh = env
        .adapter
        .refresh(&AccountProfile::default(), &old_refresh)
        .await
        .unwrap();
    assert_ne!(fresh.refresh_token.as_ref(), Some(&old_refresh));
    assert_ne!(fresh.access_token, grant.access_token);
    let refused = env
        .adapter
        .refresh(&AccountProfile::default(), &old_refresh)
        .await
        .unwrap_err();
    assert_eq!(refused.class, ErrorClass::ReauthorizationRequired);
    assert!(refused.message.contains("reconnect"), "{}", refused.message);
    assert!(!refused.message.contains(old_refresh.expose()));

    env.adapter
        .revoke(&AccountProfile::default(), &fresh)
        .await
        .unwrap();
    let after = env.adapter.account(&fresh.access_token).await.unwrap_err();
    assert_eq!(after.class, ErrorClass::Auth);
    let gone = env
        .adapter
        .refresh(
            &AccountProfile::default(),
            fresh.refresh_token.as_ref().unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(gone.class, ErrorClass::ReauthorizationRequired);
}

#[tokio::test]
async fn a_desktop_app_can_send_pkce_and_a_basic_grant_still_names_the_account() {
    let env = Env::start_with(|_, c| {
        c.pkce = Some(PkceEncoding::Hex);
        c.scopes = vec!["user.info.basic".into(), "video.publish".into()];
    })
    .await;
    let start = env.adapter.authorization_url(REDIRECT);
    let q: HashMap<String, String> = start.url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge"].len(), 64, "hex SHA-256");
    assert_eq!(q["code_challenge_method"], "S256");
    let grant = env.connect_as("tok_desk").await;
    // Without user.info.profile the username comes from creator_info.
    let accounts = env.adapter.accounts(&grant).await.unwrap();
    assert_eq!(accounts[0].profile.username, "tok_desk");
    let wrong = env
        .adapter
        .exchange_code("bad-code", &start.pkce_verifier, REDIRECT)
        .await
        .unwrap_err();
    assert_eq!(wrong.class, ErrorClass::Permanent);
    assert!(!wrong.message.contains("bad-code"));
}

#[tokio::test]
async fn a_chunked_direct_post_reports_its_session_first_and_publishes_once() {
    let env = Env::start().await;
    let grant = env.connect_as("tok_bo").await;
    let url = env.media_url("clip.mp4", VIDEO_BYTES);
    let mut options = tiktok_options("direct", Some("PUBLIC_TO_EVERYONE"));
    options.tiktok.disable_duet = true;
    options.tiktok.is_aigc = true;
    let post = video_post(url.clone(), "my clip #fyp", options);
    let gate = Gate::default();
    let progress = Progress::default();
    let reference = env
        .upload(&grant, &post, 0, &gate, &progress, None)
        .await
        .unwrap();
    assert!(!reference.contains("upload_token"), "{reference}");
    let events = progress.events();
    assert!(
        matches!(&events[0], Event::Session(s) if s.contains("upload_url")),
        "{events:?}"
    );
    assert_eq!(events[1], Event::Started(VIDEO_BYTES));
    assert_eq!(
        events[2..],
        [Event::Chunk(5 * MB), Event::Chunk(VIDEO_BYTES)]
    );
    let created = env
        .adapter
        .create_post(
            &grant.access_token,
            &PostDraft {
                media_ids: vec![reference.clone()],
                ..post.clone()
            },
            &gate,
        )
        .await
        .unwrap();
    let state = env.sandbox.tiktok_state();
    assert_eq!(state.posts.len(), 1);
    assert_eq!(created.post_id, state.posts[0].id);
    assert_eq!(
        created.url,
        format!("https://www.tiktok.com/@tok_bo/video/{}", created.post_id)
    );
    let publish = &state.publishes[0];
    assert_eq!(publish.title.as_deref(), Some("my clip #fyp"));
    assert_eq!(publish.privacy_level.as_deref(), Some("PUBLIC_TO_EVERYONE"));
    assert!(publish.disable_duet && publish.is_aigc && !publish.disable_comment);
    assert_eq!(
        (publish.chunk_size, publish.total_chunk_count),
        (Some(5 * MB), Some(2))
    );
    let bytes = env.media_bytes(&url).await;
    assert_eq!(
        publish.uploaded_checksum,
        herald_sandbox::tiktok::checksum(&bytes)
    );
    let ranges: Vec<_> = state
        .upload_requests
        .iter()
        .map(|r| (r.first_byte, r.last_byte, r.accepted))
        .collect();
    assert_eq!(
        ranges,
        [
            (Some(0), Some(5 * MB - 1), true),
            (Some(5 * MB), Some(VIDEO_BYTES - 1), true)
        ]
    );
    // The documented limits were asked for.
    assert_eq!(gate.asked("tiktok_creator_info"), [20]);
    assert_eq!(gate.asked("tiktok_video_init"), [6]);
    assert!(gate.asked("tiktok_status").iter().all(|l| *l == 30));
    // Reconciliation finds it through the recorded publish id.
    let found = env
        .adapter
        .find_post(
            &grant.access_token,
            Utc::now(),
            &PostDraft {
                media_ids: vec![reference],
                ..post.clone()
            },
            &gate,
        )
        .await
        .unwrap()
        .expect("found");
    assert_eq!(found.post_id, created.post_id);
    assert_eq!(
        env.adapter
            .find_post(&grant.access_token, Utc::now(), &post, &gate)
            .await
            .unwrap(),
        None,
        "nothing recorded, nothing finished"
    );
}

#[tokio::test]
async fn an_interrupted_upload_resumes_from_the_recorded_offset() {
    let env = Env::start().await;
    let grant = env.connect_as("tok_cy").await;
    let url = env.media_url("long.mp4", 16 * MB);
    let post = video_post(url.clone(), "resumed", tiktok_options("direct", None));
    // After the first chunk TikTok fails every chunk: the attempt gives up mid-upload.
    let sandbox = env.sandbox.clone();
    let progress = Progress {
        on_chunk: Some(Box::new(move |sent| {
            if sent == 5 * MB {
                sandbox.inject_tiktok_fault(
                    TiktokEndpoint::Upload,
                    Fault::ServerError { status: 503 },
                    4,
                );
            }
        })),
        ..Progress::default()
    };
    let gate = Gate::default();
    let failure = env
        .upload(&grant, &post, 0, &gate, &progress, None)
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Retryable, "{failure}");
    let resume = progress.resume();
    assert_eq!(resume.bytes_confirmed, 5 * MB);

    let second = Progress::default();
    let reference = env
        .upload(&grant, &post, 0, &gate, &second, Some(&resume))
        .await
        .unwrap();
    assert_eq!(
        second.events(),
        [
            Event::Started(16 * MB),
            Event::Chunk(10 * MB),
            Event::Chunk(16 * MB)
        ]
    );
    let state = env.sandbox.tiktok_state();
    assert_eq!(state.publishes.len(), 1, "no second init");
    assert_eq!(state.posts.len(), 1);
    let accepted: Vec<_> = state
        .upload_requests
        .iter()
        .filter(|r| r.accepted)
        .map(|r| r.first_byte.unwrap())
        .collect();
    assert_eq!(accepted, [0, 5 * MB, 10 * MB], "each chunk accepted once");
    let bytes = env.media_bytes(&url).await;
    assert_eq!(
        state.publishes[0].uploaded_checksum,
        herald_sandbox::tiktok::checksum(&bytes)
    );

    // A later attempt with the session of a finished publish only takes its outcome.
    let third = Progress::default();
    let again = env
        .upload(&grant, &post, 0, &gate, &third, Some(&resume))
        .await
        .unwrap();
    assert_eq!(again, reference);
    assert!(third.events().is_empty());
    assert_eq!(
        env.sandbox.tiktok_state().upload_requests.len(),
        state.upload_requests.len()
    );
}

#[tokio::test]
async fn a_stale_recorded_offset_follows_what_tiktok_holds() {
    let env = Env::start().await;
    let grant = env.connect_as("tok_dee").await;
    let post = video_post(
        env.media_url("stale.mp4", 16 * MB),
        "",
        tiktok_options("direct", None),
    );
    let sandbox = env.sandbox.clone();
    let progress = Progress {
        on_chunk: Some(Box::new(move |sent| {
            if sent == 10 * MB {
                sandbox.inject_tiktok_fault(
                    TiktokEndpoint::Upload,
                    Fault::ServerError { status: 500 },
                    4,
                );
            }
        })),
        ..Progress::default()
    };
    let gate = Gate::default();
    env.upload(&grant, &post, 0, &gate, &progress, None)
        .await
        .unwrap_err();
    // The worker died before recording the second chunk: the record says 5 MB, TikTok 10 MB.
    let mut resume = progress.resume();
    resume.bytes_confirmed = 5 * MB;
    let second = Progress::default();
    env.upload(&grant, &post, 0, &gate, &second, Some(&resume))
        .await
        .unwrap();
    assert_eq!(
        second.events(),
        [Event::Started(16 * MB), Event::Chunk(16 * MB)]
    );
    let accepted = env
        .sandbox
        .tiktok_state()
        .upload_requests
        .iter()
        .filter(|r| r.accepted)
        .count();
    assert_eq!(accepted, 3);
}

/// A chunk TikTok took but whose answer was lost is not counted twice: the retry gets 416 and
/// the upload follows TikTok's progress.
#[tokio::test]
async fn a_chunk_whose_answer_was_lost_is_not_sent_on_top_of_itself() {
    let env = Env::start_with(|_, c| c.upload_timeout = Duration::from_secs(1)).await;
    let grant = env.connect_as("tok_lost").await;
    let url = env.media_url("lost.mp4", VIDEO_BYTES);
    let post = video_post(url.clone(), "", tiktok_options("direct", None));
    env.sandbox.inject_tiktok_fault(
        TiktokEndpoint::Upload,
        Fault::TimeoutAfterSuccess { secs: 2.0 },
        1,
    );
    let progress = Progress::default();
    env.upload(&grant, &post, 0, &Gate::default(), &progress, None)
        .await
        .unwrap();
    let state = env.sandbox.tiktok_state();
    let puts: Vec<_> = state
        .upload_requests
        .iter()
        .map(|r| (r.first_byte.unwrap(), r.status))
        .collect();
    assert_eq!(
        puts,
        [(0, Some(206)), (0, Some(416)), (5 * MB, Some(201))],
        "{puts:?}"
    );
    assert_eq!(state.posts.len(), 1);
    let bytes = env.media_bytes(&url).await;
    assert_eq!(
        state.publishes[0].uploaded_checksum,
        herald_sandbox::tiktok::checksum(&bytes)
    );
    assert_eq!(
        progress.events()[2..],
        [Event::Chunk(5 * MB), Event::Chunk(VIDEO_BYTES)]
    );
}

#[tokio::test]
async fn an_expired_upload_url_starts_a_new_publish() {
    let env = Env::start_with(|s, _| s.tiktok.upload_url_lifetime = Duration::from_secs(6)).await;
    let grant = env.connect_as("tok_eve").await;
    let post = video_post(
        env.media_url("exp.mp4", VIDEO_BYTES),
        "late",
        tiktok_options("direct", None),
    );
    let sandbox = env.sandbox.clone();
    let progress = Progress {
        on_chunk: Some(Box::new(move |sent| {
            if sent == 5 * MB {
                sandbox.inject_tiktok_fault(
                    TiktokEndpoint::Upload,
                    Fault::ServerError { status: 502 },
                    4,
                );
            }
        })),
        ..Progress::default()
    };
    let gate = Gate::default();
    let opened = Instant::now();
    env.upload(&grant, &post, 0, &gate, &progress, None)
        .await
        .unwrap_err();
    tokio::time::sleep(Duration::from_millis(6100).saturating_sub(opened.elapsed())).await;
    let second = Progress::default();
    let reference = env
        .upload(&grant, &post, 0, &gate, &second, Some(&progress.resume()))
        .await
        .unwrap();
    let state = env.sandbox.tiktok_state();
    assert_eq!(state.publishes.len(), 2, "a new init after the 403");
    assert!(reference.contains(&state.publishes[1].publish_id));
    assert_eq!(state.publishes[0].status, "PROCESSING_UPLOAD");
    assert_eq!(state.posts.len(), 1);
    assert!(
        second
            .events()
            .iter()
            .any(|e| matches!(e, Event::Session(_))),
        "the new session is reported"
    );
}

#[tokio::test]
async fn pulled_videos_photos_and_inbox_uploads() {
    let env =
        Env::start_with(|_, c| c.pull_from_url_prefixes = vec!["{sandbox}/media/pull-".into()])
            .await;
    let grant = env.connect_as("tok_fay").await;
    let gate = Gate::default();

    // A video under a verified prefix is pulled by TikTok.
    let pulled = video_post(
        env.media_url("pull-me.mp4", 1000),
        "pulled",
        tiktok_options("direct", Some("SELF_ONLY")),
    );
    let (post_id, url) = env.publish(&grant, pulled, &gate).await.unwrap();
    let state = env.sandbox.tiktok_state();
    assert_eq!(state.publishes[0].source, "PULL_FROM_URL");
    assert!(state.upload_requests.is_empty());
    // SELF_ONLY has no public id: the publish id and the profile stand in.
    assert_eq!(post_id, state.publishes[0].publish_id);
    assert_eq!(url, "https://www.tiktok.com/@tok_fay");

    // Three photos: one content/init with every URL, on the last item.
    let photos: Vec<MediaItem> = (0..3)
        .map(|i| MediaItem {
            url: env.media_url(&format!("p{i}.jpg"), 2000),
            kind: MediaKind::Image,
            mime_type: "image/jpeg".into(),
            probe: None,
        })
        .collect();
    let mut options = tiktok_options("direct", Some("PUBLIC_TO_EVERYONE"));
    options.tiktok.photo_cover_index = Some(1);
    let post = PostDraft {
        text: "three photos".into(),
        title: Some("Trip".into()),
        media: photos.clone(),
        options,
        ..PostDraft::default()
    };
    let first = env
        .upload(&grant, &post, 0, &gate, &Progress::default(), None)
        .await
        .unwrap();
    assert_eq!(first, "photo:0");
    assert_eq!(
        env.sandbox.tiktok_state().publishes.len(),
        1,
        "no call for a photo that is not the last"
    );
    let (photo_id, photo_url) = env.publish(&grant, post, &gate).await.unwrap();
    let state = env.sandbox.tiktok_state();
    let photo = state.publishes.last().unwrap();
    assert_eq!(photo.media_type, "PHOTO");
    assert_eq!(photo.photo_images.len(), 3);
    assert_eq!(photo.title.as_deref(), Some("Trip"));
    assert_eq!(photo.description.as_deref(), Some("three photos"));
    assert_eq!(
        photo_url,
        format!("https://www.tiktok.com/@tok_fay/photo/{photo_id}")
    );
    assert_eq!(state.posts.len(), 2);

    // Inbox: the video lands in the creator's inbox; no post on the profile.
    let inbox = video_post(
        env.media_url("draft.mp4", 6 * MB),
        "ignored in inbox mode",
        tiktok_options("inbox", None),
    );
    let (draft_id, draft_url) = env.publish(&grant, inbox, &gate).await.unwrap();
    let state = env.sandbox.tiktok_state();
    let draft = state.publishes.last().unwrap();
    assert_eq!(draft.mode, "inbox");
    assert_eq!(draft.status, "SEND_TO_USER_INBOX");
    assert_eq!(draft.title, None, "inbox uploads carry no post_info");
    assert_eq!(draft_id, draft.publish_id);
    assert_eq!(draft_url, "https://www.tiktok.com/@tok_fay");
    assert_eq!(state.posts.len(), 2);
    assert_eq!(gate.asked("tiktok_inbox_share"), [5]);
}

#[tokio::test]
async fn the_sixth_pending_inbox_share_is_refused_with_the_quota_and_its_reset() {
    let env = Env::start().await;
    let grant = env.connect_as("tok_gus").await;
    let gate = Gate::default();
    for i in 0..5 {
        let post = video_post(
            env.media_url(&format!("d{i}.mp4"), 1000),
            "",
            tiktok_options("inbox", None),
        );
        env.publish(&grant, post, &gate).await.unwrap();
    }
    let sixth = video_post(
        env.media_url("d5.mp4", 1000),
        "",
        tiktok_options("inbox", None),
    );
    let before = Utc::now();
    let refused = env.publish(&grant, sixth, &gate).await.unwrap_err();
    assert_eq!(refused.class, ErrorClass::RateLimited);
    assert_eq!(refused.code, "spam_risk_too_many_pending_share");
    assert!(
        refused.message.contains("0 of 5 left"),
        "{}",
        refused.message
    );
    let reset = refused.not_before.expect("a reset time");
    assert!(reset > before + TimeDelta::hours(23) && reset <= Utc::now() + TimeDelta::hours(24));
    assert!(refused
        .message
        .contains(&reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
}

#[tokio::test]
async fn failures_are_classified_for_the_publisher() {
    let env = Env::start().await;
    let grant = env.connect_as("tok_hal").await;
    let gate = Gate::default();
    let small = |name: &str, options| video_post(env.media_url(name, 1000), "x", options);

    // A privacy level the creator does not have: refused before any init.
    env.twin("creators", json!({"username": "tok_hal", "private": true}))
        .await;
    let f = env
        .publish(
            &grant,
            small(
                "a.mp4",
                tiktok_options("direct", Some("PUBLIC_TO_EVERYONE")),
            ),
            &gate,
        )
        .await
        .unwrap_err();
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Permanent, "privacy_level_option_mismatch")
    );
    assert!(f.message.contains("FOLLOWER_OF_CREATOR"), "{}", f.message);
    assert!(env.sandbox.tiktok_state().publishes.is_empty());

    // Spam refusal with HTTP 200 on creator_info.
    env.twin(
        "errors",
        json!({"endpoint": "creator_info", "code": "spam_risk_too_many_posts"}),
    )
    .await;
    let f = env
        .publish(&grant, small("b.mp4", PublishOptions::default()), &gate)
        .await
        .unwrap_err();
    assert_eq!(
        (f.class, f.code.as_str()),
        (ErrorClass::Permanent, "spam_risk_too_many_posts")
    );
    assert!(f.message.contains("tomorrow"));

    // Processing failures: duration (with the creator's limit), auth removed.
    env.twin(
        "fail_reasons",
        json!({"fail_reason": "duration_check_failed"}),
    )
    .await;
    let f = env
        .publish(&grant, small("c.mp4", PublishOptions::default()), &gate)
        .await
        .unwrap_err();
    assert_eq!(f.class, ErrorClass::Permanent);
    assert!(f.message.contains("600 seconds"), "{}", f.message);
    env.twin("fail_reasons", json!({"fail_reason": "auth_removed"}))
        .await;
    let f = env
        .publish(&grant, small("d.mp4", PublishOptions::default()), &gate)
        .await
        .unwrap_err();
    assert_eq!(f.class, ErrorClass::ReauthorizationRequired);

    // Init errors (a fresh gate: these calls would use up the 6 inits a minute).
    let gate = Gate::default();
    for (code, class) in [
        ("rate_limit_exceeded", ErrorClass::RateLimited),
        ("internal_error", ErrorClass::Retryable),
        ("scope_not_authorized", ErrorClass::ReauthorizationRequired),
        ("invalid_params", ErrorClass::Permanent),
        (
            "unaudited_client_can_only_post_to_private_accounts",
            ErrorClass::Permanent,
        ),
    ] {
        env.twin("errors", json!({"endpoint": "video_init", "code": code}))
            .await;
        let f = env
            .publish(&grant, small("e.mp4", PublishOptions::default()), &gate)
            .await
            .unwrap_err();
        assert_eq!((f.class, f.code.as_str()), (class, code));
        if class == ErrorClass::RateLimited {
            assert!(f.not_before.unwrap() > Utc::now() + TimeDelta::seconds(50));
        }
    }
    // An expired token asks for a refresh.
    env.sandbox
        .inject_tiktok_fault(TiktokEndpoint::CreatorInfo, Fault::ExpireToken, 1);
    let f = env
        .publish(&grant, small("f.mp4", PublishOptions::default()), &gate)
        .await
        .unwrap_err();
    assert_eq!(f.class, ErrorClass::Auth);
}

#[tokio::test]
async fn an_internal_failure_is_published_again_by_the_next_attempt() {
    let env = Env::start().await;
    let grant = env.connect_as("tok_ida").await;
    let post = video_post(
        env.media_url("i.mp4", 6 * MB),
        "again",
        tiktok_options("direct", None),
    );
    let gate = Gate::default();
    env.twin("fail_reasons", json!({"fail_reason": "internal"}))
        .await;
    let progress = Progress::default();
    let f = env
        .upload(&grant, &post, 0, &gate, &progress, None)
        .await
        .unwrap_err();
    assert_eq!(f.class, ErrorClass::Retryable);
    env.upload(
        &grant,
        &post,
        0,
        &gate,
        &Progress::default(),
        Some(&progress.resume()),
    )
    .await
    .unwrap();
    let state = env.sandbox.tiktok_state();
    assert_eq!(state.publishes.len(), 2);
    assert_eq!(state.publishes[0].status, "FAILED");
    assert_eq!(state.posts.len(), 1);
}

#[tokio::test]
async fn the_shared_limiter_keeps_documented_limits_across_workers() {
    let path = std::env::temp_dir().join(format!(
        "herald_tiktok_limits_{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let db = Db::connect(&format!("sqlite://{}", path.display()), 4)
        .await
        .unwrap();
    // Two workers' gates for the same account.
    let a = SharedRateLimits::new(db.clone(), Platform::Tiktok, "open-1");
    let b = SharedRateLimits::new(db.clone(), Platform::Tiktok, "open-1");
    let other = SharedRateLimits::new(db.clone(), Platform::Tiktok, "open-2");
    let window = Duration::from_millis(800);
    let mut taken = Vec::new();
    for i in 0..8 {
        let gate = if i % 2 == 0 { &a } else { &b };
        taken.push(
            gate.acquire_documented("tiktok_video_init", 6, window)
                .await,
        );
    }
    assert_eq!(taken.iter().filter(|r| r.is_ok()).count(), 6);
    let until = taken[6].unwrap_err();
    assert!(until > Utc::now() && until <= Utc::now() + TimeDelta::milliseconds(800));
    assert!(
        other
            .acquire_documented("tiktok_video_init", 6, window)
            .await
            .is_ok(),
        "per account"
    );
    // Concurrent takers never share a slot.
    tokio::time::sleep(window).await;
    let results = futures::future::join_all((0..10).map(|i| {
        let gate = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            gate.acquire_documented("tiktok_status", 3, Duration::from_secs(5))
                .await
        }
    }))
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    let _ = std::fs::remove_file(&path);
}

/// A PULL_FROM_URL init is the post. If its answer is lost, the next attempt must not send it
/// again (TikTok cannot be asked whether it exists): it stops and tells the user what to check.
/// An init TikTok answered with a refusal created nothing, so the next attempt starts anew.
#[tokio::test]
async fn a_pulled_post_whose_init_answer_was_lost_is_not_sent_twice() {
    let env =
        Env::start_with(|_, c| c.pull_from_url_prefixes = vec!["{sandbox}/media/pull-".into()])
            .await;
    let grant = env.connect_as("tok_lost_init").await;
    let gate = Gate::default();
    let post = video_post(
        env.media_url("pull-lost.mp4", 1000),
        "pulled once",
        tiktok_options("direct", Some("SELF_ONLY")),
    );

    // The init succeeds at TikTok, but its answer comes after the adapter gave up (2 s).
    env.sandbox.inject_tiktok_fault(
        TiktokEndpoint::VideoInit,
        Fault::TimeoutAfterSuccess { secs: 3.0 },
        1,
    );
    let first = Progress::default();
    let failure = env
        .upload(&grant, &post, 0, &gate, &first, None)
        .await
        .unwrap_err();
    assert_eq!(failure.code, "network_error", "{failure}");
    let second = Progress::default();
    let failure = env
        .upload(&grant, &post, 0, &gate, &second, Some(&first.resume()))
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Permanent, "{failure}");
    assert_eq!(failure.code, "tiktok_outcome_unknown");
    assert!(
        failure.message.contains("Check the TikTok profile") && failure.message.contains("retry"),
        "{failure}"
    );
    assert!(second.events().is_empty(), "{:?}", second.events());
    let inits = env.sandbox.tiktok_state().publishes.len();
    assert_eq!(inits, 1, "the post was not sent a second time");

    // A refusal TikTok answered clears the intent: the next attempt publishes.
    env.sandbox.inject_tiktok_fault(
        TiktokEndpoint::VideoInit,
        Fault::ServerError { status: 503 },
        1,
    );
    let refused = Progress::default();
    let failure = env
        .upload(&grant, &post, 0, &gate, &refused, None)
        .await
        .unwrap_err();
    assert_eq!(failure.class, ErrorClass::Retryable, "{failure}");
    let retried = Progress::default();
    env.upload(&grant, &post, 0, &gate, &retried, Some(&refused.resume()))
        .await
        .unwrap();
    let state = env.sandbox.tiktok_state();
    assert_eq!(state.publishes.len(), inits + 1, "one new publish");
}

/// An adapter configured for pulled videos, asking for `video.list` when `list` says so.
async fn pulling_env(list: bool, adjust: impl FnOnce(&mut SandboxConfig)) -> Env {
    Env::start_with(|s, c| {
        c.pull_from_url_prefixes = vec!["{sandbox}/media/pull-".into()];
        if list {
            c.scopes.push(VIDEO_LIST_SCOPE.into());
        }
        adjust(s);
    })
    .await
}

/// Sends `post`'s pulled init through `adapter` so that it reaches TikTok but its answer is
/// lost, then runs the next attempt with the session that left (the intent, no publish id).
async fn retry_after_lost_answer(
    env: &Env,
    adapter: &TiktokAdapter,
    grant: &TokenGrant,
    post: &PostDraft,
    gate: &Gate,
) -> Result<String, PlatformFailure> {
    let resume = lose_init_answer(env, adapter, grant, post, gate).await;
    retry(adapter, grant, post, &resume, gate).await
}

/// Sends `post`'s pulled init so that TikTok takes it but the answer comes after the adapter
/// gave up; returns the session the attempt left.
async fn lose_init_answer(
    env: &Env,
    adapter: &TiktokAdapter,
    grant: &TokenGrant,
    post: &PostDraft,
    gate: &Gate,
) -> UploadResume {
    env.sandbox.inject_tiktok_fault(
        TiktokEndpoint::VideoInit,
        Fault::TimeoutAfterSuccess { secs: 3.0 },
        1,
    );
    let first = Progress::default();
    let upload = MediaUpload::single(&post.media[0], post);
    let failure = adapter
        .upload_media(&grant.access_token, &upload, gate, &first)
        .await
        .unwrap_err();
    assert_eq!(failure.code, "network_error", "{failure}");
    first.resume()
}

/// The next attempt at `post`, given the session an earlier one left.
async fn retry(
    adapter: &TiktokAdapter,
    grant: &TokenGrant,
    post: &PostDraft,
    resume: &UploadResume,
    gate: &Gate,
) -> Result<String, PlatformFailure> {
    let upload = MediaUpload {
        resume: Some(resume),
        ..MediaUpload::single(&post.media[0], post)
    };
    adapter
        .upload_media(&grant.access_token, &upload, gate, &Progress::default())
        .await
}

/// The attempt stopped for the user, saying whether Herald looked among the public videos.
fn assert_stops_for_the_user(outcome: Result<String, PlatformFailure>, looked_up: bool) {
    let failure = outcome.unwrap_err();
    assert_eq!(failure.class, ErrorClass::Permanent, "{failure}");
    assert_eq!(failure.code, "tiktok_outcome_unknown");
    let said_looked = failure
        .message
        .contains("looked among the account's public videos")
        && failure.message.contains("may still be processing");
    let said_no_way = failure.message.contains("no way to look it up");
    assert_eq!(
        (said_looked, said_no_way),
        (looked_up, !looked_up),
        "{failure}"
    );
}

fn public_video(env: &Env, name: &str, caption: &str) -> PostDraft {
    video_post(
        env.media_url(name, 1000),
        caption,
        tiktok_options("direct", Some("PUBLIC_TO_EVERYONE")),
    )
}

fn video_list_calls(env: &Env) -> usize {
    env.sandbox
        .tiktok_state()
        .requests
        .iter()
        .filter(|r| r.path.ends_with("/v2/video/list/"))
        .count()
}

/// A pulled public post whose init answer was lost is found among the account's public videos
/// (with `video.list` granted): the next attempt takes it instead of stopping, sends nothing
/// again, and the post id and link are TikTok's; reconciliation finds it the same way.
#[tokio::test]
async fn a_lost_pulled_public_post_is_found_among_the_public_videos() {
    let env = pulling_env(true, |_| {}).await;
    let grant = env.connect_as("tok_listed").await;
    assert!(grant.scopes.iter().any(|s| s == VIDEO_LIST_SCOPE));
    let gate = Gate::default();
    // Another public video of the account, posted earlier with another caption.
    let earlier = public_video(&env, "pull-earlier.mp4", "an earlier post");
    env.publish(&grant, earlier, &gate).await.unwrap();
    // Longer than the 150 characters the list holds.
    let caption = format!("{} #found", "a caption longer than TikTok lists ".repeat(6));
    let mut post = public_video(&env, "pull-found.mp4", &caption);
    post.account.username = "tok_listed".into();
    let since = Utc::now();

    let media_id = retry_after_lost_answer(&env, &env.adapter, &grant, &post, &gate)
        .await
        .unwrap();
    let state = env.sandbox.tiktok_state();
    assert_eq!(state.publishes.len(), 2, "no second init");
    let ours = state.posts.last().unwrap();
    assert_eq!(ours.title, caption);
    assert!(video_list_calls(&env) >= 1);
    assert_eq!(gate.asked("tiktok_video_list").first(), Some(&600));
    post.media_ids = vec![media_id];
    let created = env
        .adapter
        .create_post(&grant.access_token, &post, &gate)
        .await
        .unwrap();
    assert_eq!((&created.post_id, &created.url), (&ours.id, &ours.url));

    // Reconciliation of the same attempt, before any media id was recorded.
    post.media_ids.clear();
    let found = env
        .adapter
        .find_post(&grant.access_token, since, &post, &gate)
        .await
        .unwrap()
        .expect("reconciliation finds the post");
    assert_eq!((&found.post_id, &found.url), (&ours.id, &ours.url));
    assert_eq!(env.sandbox.tiktok_state().publishes.len(), 2);
}

/// Twenty-one newer public videos fill the first page of the list: the post is found on the
/// second, and the adapter reads no further than that.
#[tokio::test]
async fn a_lost_pulled_post_behind_a_page_of_newer_videos_is_found_on_the_next_page() {
    let env = pulling_env(true, |s| {
        s.tiktok.init_limit = 30;
        s.tiktok.daily_post_cap = 30;
    })
    .await;
    let grant = env.connect_as("tok_busy").await;
    let gate = Gate::default();
    let post = public_video(&env, "pull-buried.mp4", "buried under newer posts");
    // The lost answer, then newer posts made elsewhere, then the next attempt.
    let resume = lose_init_answer(&env, &env.adapter, &grant, &post, &gate).await;
    for i in 0..21 {
        let resp = env
            .http
            .post(format!(
                "{}/v2/post/publish/video/init/",
                env.sandbox.tiktok_base_url()
            ))
            .bearer_auth(grant.access_token.expose())
            .json(&json!({
                "post_info": {"privacy_level": "PUBLIC_TO_EVERYONE", "title": format!("newer {i}")},
                "source_info": {"source": "PULL_FROM_URL", "video_url": env.media_url("elsewhere.mp4", 1000)},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let media_id = retry(&env.adapter, &grant, &post, &resume, &gate)
        .await
        .unwrap();
    let state = env.sandbox.tiktok_state();
    assert_eq!(state.posts.len(), 22);
    let ours = &state.posts[0];
    assert_eq!(ours.title, "buried under newer posts");
    assert!(media_id.contains(&ours.id), "{media_id}");
    assert_eq!(video_list_calls(&env), 2, "two pages");
    assert_eq!(state.publishes.len(), 22, "no second init");
}

/// What video.list cannot see keeps today's answer: a SELF_ONLY post, and a post whose
/// connection did not grant `video.list` (Herald does not ask for it, or the token predates
/// asking). A public post not listed yet says Herald looked and TikTok may still be processing.
/// Nothing is sent twice.
#[tokio::test]
async fn a_lost_pulled_post_video_list_cannot_see_still_stops_for_the_user() {
    let env = pulling_env(true, |s| {
        s.tiktok.moderation_delay = Duration::from_secs(60);
    })
    .await;
    let grant = env.connect_as("tok_unlisted").await;
    let gate = Gate::default();

    let private = video_post(
        env.media_url("pull-private.mp4", 1000),
        "only me",
        tiktok_options("direct", Some("SELF_ONLY")),
    );
    let outcome = retry_after_lost_answer(&env, &env.adapter, &grant, &private, &gate).await;
    assert_stops_for_the_user(outcome, false);
    assert_eq!(video_list_calls(&env), 0, "a private post is not listed");

    // Public, but still in moderation: not listed yet.
    let public = public_video(&env, "pull-public.mp4", "everyone, soon");
    let outcome = retry_after_lost_answer(&env, &env.adapter, &grant, &public, &gate).await;
    assert_stops_for_the_user(outcome, true);
    assert_eq!(video_list_calls(&env), 1);

    // Herald not asking for video.list: no list call at all.
    let mut basic_config = env.adapter.config().clone();
    basic_config.scopes.retain(|s| s != VIDEO_LIST_SCOPE);
    let basic = TiktokAdapter::new(basic_config).unwrap();
    let basic_grant = connect_through(&basic, "tok_unlisted").await;
    assert!(!basic_grant.scopes.iter().any(|s| s == VIDEO_LIST_SCOPE));
    let unasked = public_video(&env, "pull-unasked.mp4", "no list asked for");
    let outcome = retry_after_lost_answer(&env, &basic, &basic_grant, &unasked, &gate).await;
    assert_stops_for_the_user(outcome, false);
    assert_eq!(video_list_calls(&env), 1);

    // Herald asking for it now, with a token granted before: TikTok refuses the list.
    let older = public_video(&env, "pull-older.mp4", "token from before");
    let outcome = retry_after_lost_answer(&env, &env.adapter, &basic_grant, &older, &gate).await;
    assert_stops_for_the_user(outcome, false);
    assert_eq!(video_list_calls(&env), 2, "one call, refused for the scope");
    assert_eq!(
        env.sandbox.tiktok_state().publishes.len(),
        4,
        "each post sent once"
    );
}
