//! The `floorcast` server: HTTP API, WHIP/WHEP signalling, auth, metrics and the embedded
//! web pages, in front of the media engine (`media`).
//!
//! How it fits together:
//! - [`Config`] is loaded once (`config`), then everything receives values, never env/files.
//! - [`AppState`] holds small cloneable handles (sessions, media, store, metrics, keys);
//!   handlers extract only what they use, and auth is the [`auth::Grant`] extractor.
//! - Every error a client sees is an [`api::error::ApiError`] rendered as JSON; that module
//!   alone chooses HTTP statuses.
//! - [`run`] takes an already bound listener, so tests bind port 0, and the binary prints the
//!   real address. [`app`] builds the router alone, for `oneshot` tests without a socket.
//! - The media engine is started in [`Server::new`]. If it fails for any reason other than
//!   its socket, the HTTP side still serves: `/readyz` answers 503 with the reason and
//!   WHIP/WHEP answer 503, so an operator sees why instead of a dead port.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod data_dir;
pub mod dev;
pub mod drain;
pub mod floor;
pub mod http_listener;
pub mod ice_sdp;
pub mod language;
mod layers;
pub mod live_captions;
pub mod media_engine;
pub mod media_events;
pub mod metrics;
pub mod peer_resources;
mod process_metrics;
pub mod secret;
pub mod session;
pub mod session_registry;
pub mod signal;
pub mod signal_limits;
pub mod state;
pub mod store;
pub mod tls;
pub mod turn_credentials;
pub mod viewers_report;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use tokio::net::TcpListener;

pub use config::Config;
pub use state::AppState;

use media_engine::Media;
use session::SessionId;
use store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("HTTP listener: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    DataDir(#[from] data_dir::DataDirError),
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    #[error("database {path}")]
    Store {
        path: std::path::PathBuf,
        source: store::StoreError,
    },
    #[error("media engine: {0}")]
    Media(#[from] media::MediaError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Session(#[from] session::SessionError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// The router with every route and layer, for a given state. No socket, no background task.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .merge(api::routes())
        .merge(signal::routes())
        .merge(turn_credentials::routes())
        .merge(web::routes());
    layers::wrap(routes, &state).with_state(state)
}

/// Open HTTP responses (event streams) may go on this long after a shutdown has begun.
const HTTP_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Starts a node on `listener` and serves until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::new(config, listener).await?.serve(shutdown).await
}

/// A node that has bound its sockets and opened its database but does not serve yet, so the
/// caller can print the real addresses first.
pub struct Server {
    state: AppState,
    listener: TcpListener,
    /// Set when the config names a certificate: the listener then speaks HTTPS only.
    tls: Option<tokio_rustls::TlsAcceptor>,
    http_addr: SocketAddr,
    /// Machine captions: the engine and the media engine's audio tap.
    recognition: Option<(
        ::captions::engine::EngineConfig,
        tokio::sync::mpsc::Receiver<media::TapPacket>,
    )>,
}

impl Server {
    /// Resolves the JWT secret, opens the store, starts the media engine, loads sessions
    /// (and creates `demo` in dev mode).
    pub async fn new(mut config: Config, listener: TcpListener) -> Result<Server, ServerError> {
        let http_addr = listener.local_addr()?;
        // First: a wrong certificate path must stop the node before it opens anything.
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        // Before any file there is opened: the secret and the database are private.
        data_dir::prepare(&config.data_dir, &config.database_file())?;
        config.jwt_secret = Some(secret::resolve(&config, config.dev)?);
        let db = config.database_file();
        let store = Store::open(&db).map_err(|source| ServerError::Store { path: db, source })?;
        let asr = live_captions::recognition::engine_config(&config);
        let (tap_tx, tap_rx) = match asr {
            Some(_) => {
                let (tx, rx) = tokio::sync::mpsc::channel(live_captions::recognition::TAP_QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let media = start_media(&config, tap_tx)?;
        let state = AppState::new(config, store, media).await?;
        if state.config.dev {
            let demo = SessionId::parse(dev::DEMO_SESSION).expect("the demo session id is valid");
            state.sessions.ensure(demo, "Demo session").await?;
        }
        Ok(Server {
            state,
            listener,
            tls,
            http_addr,
            recognition: asr.zip(tap_rx),
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The media engine's UDP address, if it is running.
    pub fn media_addr(&self) -> Option<SocketAddr> {
        self.state.media.udp_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The URL browsers use for this node.
    pub fn public_base(&self) -> String {
        self.state.config.public_base(self.http_addr)
    }

    /// In dev mode: the links and tokens to print (see [`dev::banner`]).
    pub fn dev_banner(&self) -> Result<Option<String>, ServerError> {
        if !self.state.config.dev {
            return Ok(None);
        }
        Ok(Some(dev::banner(
            &self.public_base(),
            &self.state.auth,
            SystemTime::now(),
        )?))
    }

    /// Serves until `shutdown` resolves, then stops the media engine.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let state = self.state;
        let recognition = self
            .recognition
            .zip(state.media.engine().map(|e| e.events()))
            .map(|((engine, tap), events)| {
                live_captions::recognition::spawn(
                    tap,
                    events,
                    engine,
                    state.captions.clone(),
                    state.metrics.clone(),
                )
            });
        let events = state.media.engine().map(|engine| {
            media_events::spawn(engine, state.resources.clone(), state.metrics.clone())
        });
        let engine = state.media.engine().cloned();
        // Long-lived responses (event streams) would hold a graceful shutdown open for ever:
        // they get a short grace once the shutdown has begun, then the node stops anyway.
        let (begun_tx, begun_rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = begun_tx.send(());
        };
        let serve = http_listener::serve(
            self.listener,
            self.tls,
            app(state.clone()),
            http_listener::HttpLimits::from_config(&state.config),
            state.metrics.clone(),
            shutdown,
        );
        let result = tokio::select! {
            r = serve => r,
            () = async {
                if begun_rx.await.is_ok() {
                    tokio::time::sleep(HTTP_GRACE).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => Ok(()),
        };
        if let Some(engine) = engine {
            engine.shutdown();
        }
        if let Some(events) = events {
            events.abort();
        }
        if let Some(recognition) = recognition {
            recognition.abort();
        }
        tracing::info!("stopped");
        result.map_err(ServerError::Io)
    }
}

/// Starts the engine. A bind failure is fatal (wrong address or port taken: the operator must
/// fix the config); any other failure leaves the node up but not ready (see crate doc).
fn start_media(config: &Config, audio_tap: Option<media::AudioTap>) -> Result<Media, ServerError> {
    let media_config = media::MediaConfig {
        udp_addr: config.media_udp_addr,
        public_ips: config.media_public_ips.clone(),
        shards: config
            .media_shards
            .unwrap_or_else(media::MediaConfig::default_shards),
        udp_gso: config.media_udp_gso,
        app_egress: config.media_app_egress,
        // Validated when the config was loaded.
        tcp: config.media_tcp().unwrap_or_default(),
        audio_tap,
        max_peers: config.max_peers,
        max_peers_per_session: config.max_peers_per_session,
        max_remote_candidates: config.max_remote_candidates,
        viewer_keyframe_interval: std::time::Duration::from_millis(
            config.viewer_keyframe_interval_ms.into(),
        ),
        keyframe_min_interval: std::time::Duration::from_millis(
            config.keyframe_min_interval_ms.into(),
        ),
        ..media::MediaConfig::default()
    };
    match media::start(media_config) {
        Ok(handle) => {
            tracing::info!(
                udp = %handle.udp_addr(),
                tcp = ?handle.tcp_addr(),
                shards = handle.shards(),
                "media engine started"
            );
            Ok(Media::running(Arc::new(handle)))
        }
        Err(e @ media::MediaError::Bind { .. }) => Err(e.into()),
        Err(e) => {
            tracing::error!(error = %e, "the media engine did not start; WHIP/WHEP will answer 503");
            Ok(Media::unavailable(e.to_string()))
        }
    }
}
