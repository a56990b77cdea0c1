//! Shared by the `oneshot` handler tests (`api.rs`, `floor_api.rs`): a fake media engine,
//! an app built on an in-memory store, tokens and request helpers; [`floor`] has the floor
//! queue's requests.
#![allow(dead_code)]

pub mod floor;

pub use std::collections::HashMap;
pub use std::sync::atomic::{AtomicU64, Ordering};
pub use std::sync::{Arc, Mutex};
pub use std::time::{Duration, SystemTime};

pub use axum::Router;
pub use axum::body::{Body, Bytes};
pub use axum::http::{HeaderMap, Method, Request, StatusCode, header};
pub use http_body_util::BodyExt;
pub use media::{
    Answer, MediaError, MediaEvent, MediaStats, PeerId, Role as MediaRole,
    SessionId as MediaSessionId, Takeover,
};
pub use serde_json::{Value, json};
pub use server::auth::{AuthKeys, Claims, Role, SessionScope};
pub use server::config::{Config, SessionDecl};
pub use server::media_engine::{BoxFuture, Media, MediaEngine};
pub use server::store::Store;
pub use server::{AppState, app};
pub use tokio::sync::broadcast;
pub use tower::ServiceExt;

pub const SECRET: &str = "test-secret-test-secret-test-secret!";
pub const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:offr\r\na=ice-pwd:0123456789012345678901\r\na=rtpmap:111 opus/48000/2\r\n";

// ---------------------------------------------------------------- fake engine

/// Answers like the engine would: one floor publisher per session, peers numbered from 1.
#[derive(Default)]
pub struct FakeEngine {
    pub next: AtomicU64,
    pub floor: Mutex<HashMap<String, PeerId>>,
    pub peers: Mutex<Vec<PeerId>>,
    pub candidates: Mutex<Vec<(PeerId, String)>>,
    pub closed_sessions: Mutex<Vec<String>>,
    /// What each viewer asked to follow, in order.
    pub follows: Mutex<Vec<media::Follow>>,
    pub stats: Arc<MediaStats>,
    pub events: Option<broadcast::Sender<MediaEvent>>,
}

impl FakeEngine {
    fn new() -> Arc<Self> {
        Arc::new(FakeEngine {
            events: Some(broadcast::channel(16).0),
            ..FakeEngine::default()
        })
    }

    fn answer(&self, offer: &str) -> Result<Answer, MediaError> {
        if !offer.contains("m=") {
            return Err(MediaError::InvalidSdp("no media section".into()));
        }
        if !offer.contains("opus") {
            return Err(MediaError::NoSupportedCodec);
        }
        let peer = PeerId(self.next.fetch_add(1, Ordering::Relaxed) + 1);
        self.peers.lock().unwrap().push(peer);
        Ok(Answer {
            peer,
            sdp: format!("v=0\r\ns=answer-{peer}\r\n"),
        })
    }
}

impl MediaEngine for FakeEngine {
    fn publish(
        &self,
        session: MediaSessionId,
        _role: MediaRole,
        offer: String,
        takeover: Takeover,
    ) -> BoxFuture<'_, Result<Answer, MediaError>> {
        Box::pin(async move {
            let mut floor = self.floor.lock().unwrap();
            if floor.contains_key(session.as_str()) && takeover == Takeover::Refuse {
                return Err(MediaError::PublisherExists(session));
            }
            let answer = self.answer(&offer)?;
            floor.insert(session.as_str().to_owned(), answer.peer);
            Ok(answer)
        })
    }
    fn subscribe(
        &self,
        _session: MediaSessionId,
        offer: String,
        follow: media::Follow,
    ) -> BoxFuture<'_, Result<Answer, MediaError>> {
        Box::pin(async move {
            let answer = self.answer(&offer)?;
            self.follows.lock().unwrap().push(follow);
            Ok(answer)
        })
    }
    fn add_candidate(
        &self,
        peer: PeerId,
        candidate: String,
    ) -> BoxFuture<'_, Result<(), MediaError>> {
        Box::pin(async move {
            if !self.peers.lock().unwrap().contains(&peer) {
                return Err(MediaError::PeerNotFound(peer));
            }
            if !candidate.contains(" typ ") {
                return Err(MediaError::InvalidCandidate(candidate));
            }
            self.candidates.lock().unwrap().push((peer, candidate));
            Ok(())
        })
    }
    fn close_peer(&self, peer: PeerId) -> BoxFuture<'_, Result<(), MediaError>> {
        Box::pin(async move {
            let mut peers = self.peers.lock().unwrap();
            let before = peers.len();
            peers.retain(|p| *p != peer);
            self.floor.lock().unwrap().retain(|_, p| *p != peer);
            if peers.len() == before {
                Err(MediaError::PeerNotFound(peer))
            } else {
                Ok(())
            }
        })
    }
    fn close_session(&self, session: MediaSessionId) -> BoxFuture<'_, Result<(), MediaError>> {
        Box::pin(async move {
            self.closed_sessions
                .lock()
                .unwrap()
                .push(session.as_str().to_owned());
            Ok(())
        })
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), MediaError>> {
        Box::pin(async { Ok(()) })
    }
    fn stats(&self) -> Arc<MediaStats> {
        self.stats.clone()
    }
    fn events(&self) -> broadcast::Receiver<MediaEvent> {
        self.events.as_ref().expect("events channel").subscribe()
    }
    fn udp_addr(&self) -> std::net::SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }
    fn shutdown(&self) {}
}

// ---------------------------------------------------------------- helpers

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
}

pub async fn test_app(media: Media) -> TestApp {
    test_app_with(media, |_| {}).await
}

/// An app whose config `adjust` may change (limits, for instance).
pub async fn test_app_with(media: Media, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config {
        jwt_secret: Some(SECRET.into()),
        sessions: vec![
            SessionDecl {
                id: "demo".into(),
                title: Some("Demo".into()),
            },
            SessionDecl {
                id: "other".into(),
                title: None,
            },
        ],
        ..Config::default()
    };
    adjust(&mut config);
    let state = AppState::new(config, Store::open_in_memory().unwrap(), media)
        .await
        .unwrap();
    TestApp {
        router: app(state.clone()),
        state,
    }
}

pub async fn without_media() -> TestApp {
    test_app(Media::unavailable("not started in this test")).await
}

pub async fn with_fake() -> (TestApp, Arc<FakeEngine>) {
    let fake = FakeEngine::new();
    (test_app(Media::running(fake.clone())).await, fake)
}

pub async fn test_app_with_fake(adjust: impl FnOnce(&mut Config)) -> (TestApp, Arc<FakeEngine>) {
    let fake = FakeEngine::new();
    (
        test_app_with(Media::running(fake.clone()), adjust).await,
        fake,
    )
}

pub fn token(role: Role, session: &str) -> String {
    token_with(
        &AuthKeys::from_secret(SECRET.as_bytes()),
        role,
        session,
        SystemTime::now(),
    )
}

/// A token for someone by name (and hub), as people's pages hold them.
pub fn person(role: Role, session: &str, name: &str, hub: Option<&str>) -> String {
    let mut claims = Claims::new(
        role,
        SessionScope::parse(session).unwrap(),
        name,
        Duration::from_secs(600),
        SystemTime::now(),
    );
    claims.hub = hub.map(Into::into);
    AuthKeys::from_secret(SECRET.as_bytes())
        .mint(&claims)
        .unwrap()
}

pub fn token_with(keys: &AuthKeys, role: Role, session: &str, now: SystemTime) -> String {
    let claims = Claims::new(
        role,
        SessionScope::parse(session).unwrap(),
        "Test",
        Duration::from_secs(600),
        now,
    );
    keys.mint(&claims).unwrap()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    /// Asserts the status and our JSON error shape with `code`.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.headers[header::CONTENT_TYPE], "application/json");
        let v = self.json();
        assert_eq!(v["error"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    pub fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

pub async fn call(router: &Router, req: Request<Body>) -> Reply {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

pub fn req(method: Method, uri: &str, token: Option<&str>) -> axum::http::request::Builder {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b
}

pub fn json_req(method: Method, uri: &str, token: Option<&str>, body: Value) -> Request<Body> {
    req(method, uri, token)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub fn sdp_req(uri: &str, token: Option<&str>, body: &str) -> Request<Body> {
    req(Method::POST, uri, token)
        .header(header::CONTENT_TYPE, "application/sdp")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

pub fn empty(method: Method, uri: &str, token: Option<&str>) -> Request<Body> {
    req(method, uri, token).body(Body::empty()).unwrap()
}
