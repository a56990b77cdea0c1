//! [`AppState`]: the handles every request may need, each a cheap clone of a narrow
//! structure (an `Arc` or a channel), never one lock around everything. Handlers extract
//! only the parts they use (`State<SessionRegistry>`, `Grant` reads `AuthKeys`).

use std::sync::Arc;

use axum::extract::FromRef;

use crate::auth::{AuthError, AuthKeys, StreamSlots, TokenPolicy};
use crate::config::Config;
use crate::drain::Drain;
use crate::floor::rate_limit::RateLimiter;
use crate::floor::runtime::FloorRuntime;
use crate::live_captions::feed::CaptionFeed;
use crate::media_engine::Media;
use crate::metrics::{Metrics, MetricsError};
use crate::peer_resources::Resources;
use crate::session::SessionError;
use crate::session_registry::{SessionParts, SessionRegistry};
use crate::signal_limits::SignalLimits;
use crate::store::Store;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub config: Arc<Config>,
    pub auth: AuthKeys,
    /// Event streams open per token (`max_event_streams_per_token`).
    pub event_streams: StreamSlots,
    /// Every session and what it owns (floor, captions, peers).
    pub sessions: SessionRegistry,
    pub media: Media,
    pub store: Store,
    pub metrics: Metrics,
    /// The node's one peer index (WHIP/WHEP resources of every session).
    pub resources: Resources,
    pub floor_limiter: RateLimiter,
    /// The node's caption work (store, media, metrics); each session's captions are in its
    /// handle.
    pub captions: CaptionFeed,
    pub drain: Drain,
    pub signal_limits: SignalLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "no JWT secret: set jwt_secret (floorcast.toml, FLOORCAST_JWT_SECRET or --jwt-secret), or run once with --dev to generate one"
    )]
    NoSecret,
    #[error(transparent)]
    Sessions(#[from] SessionError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

impl AppState {
    /// Builds the state from a config whose `jwt_secret` is set (see `secret::resolve`),
    /// an open store and a media slot; loads the sessions (declared ones are upserted).
    pub async fn new(config: Config, store: Store, media: Media) -> Result<Self, StateError> {
        let secret = config.jwt_secret.as_deref().ok_or(StateError::NoSecret)?;
        let metrics = Metrics::new()?;
        let auth_metrics = metrics.register_auth(&AuthError::REFUSALS)?;
        let auth = AuthKeys::new(
            secret.as_bytes(),
            TokenPolicy::from_config(&config),
            Some(auth_metrics.clone()),
        );
        let event_streams =
            StreamSlots::new(config.max_event_streams_per_token, Some(auth_metrics));
        let resources = Resources::default();
        let parts = SessionParts {
            floors: FloorRuntime::new(
                store.clone(),
                media.clone(),
                resources.clone(),
                metrics.clone(),
            ),
            peers: resources.clone(),
            media: media.clone(),
            metrics: metrics.clone(),
            caption_precedence: std::time::Duration::from_secs(
                config.cart_precedence_seconds.into(),
            ),
        };
        let sessions = SessionRegistry::load(store.clone(), &config.sessions, parts).await?;
        let captions = CaptionFeed::new(
            store.clone(),
            media.clone(),
            metrics.clone(),
            Arc::new(sessions.clone()),
        );
        Ok(AppState {
            signal_limits: SignalLimits::new(&config, metrics.clone()),
            captions,
            floor_limiter: RateLimiter::new(config.floor_actions_per_minute),
            config: Arc::new(config),
            auth,
            event_streams,
            sessions,
            media,
            store,
            metrics,
            resources,
            drain: Drain::default(),
        })
    }
}
