//! The one typed [`Config`] of a node, loaded once at startup from layers, lowest first:
//! built-in defaults < TOML file < `FLOORCAST_*` environment < command-line flags.
//!
//! Nothing else in the server reads the environment or config files: everything below
//! `main` receives a validated `Config` value, so tests can build one in code.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

pub use crate::session::SessionDecl;
use crate::session::SessionId;

/// The default of `max_token_ttl`: a conference week.
pub const DEFAULT_MAX_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "floorcast.toml";

/// HS256 keys shorter than the hash output (32 bytes) are refused (RFC 7518 §3.2).
pub const MIN_JWT_SECRET_LEN: usize = 32;

/// Keys read from `FLOORCAST_<KEY>` variables. Listed so that unrelated `FLOORCAST_*`
/// variables (such as `FLOORCAST_CONFIG`, read by the CLI) never trip the unknown-key check.
/// Every key also has a `--flag` (`every_key_has_a_flag`) and a line in
/// `deploy/floorcast.example.toml` (`server/tests/config_example.rs`).
pub const ENV_KEYS: &[&str] = &[
    "http_addr",
    "public_url",
    "media_udp_addr",
    "media_public_ips",
    "media_shards",
    "media_udp_gso",
    "media_app_egress",
    "media_tcp_addr",
    "tls_cert",
    "tls_key",
    "data_dir",
    "jwt_secret",
    "max_token_ttl",
    "jwt_issuer",
    "jwt_audience",
    "max_event_streams_per_token",
    "allow_takeover",
    "max_body_bytes",
    "floor_actions_per_minute",
    "caption_engine",
    "caption_lang",
    "whisper_models",
    "whisper_workers",
    "cart_precedence_seconds",
    "drain_timeout_seconds",
    "turn_urls",
    "turn_secret",
    "turn_ttl_seconds",
    "dev",
    "max_http_connections",
    "max_http_connections_per_ip",
    "http_header_timeout_seconds",
    "http_body_timeout_seconds",
    "max_peers",
    "max_peers_per_session",
    "max_resources_per_token",
    "creations_per_minute_per_token",
    "creations_per_minute_per_ip",
    "patches_per_minute_per_resource",
    "max_remote_candidates",
    "viewer_keyframe_interval_ms",
    "keyframe_min_interval_ms",
];

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP API, WHIP/WHEP and pages listen.
    pub http_addr: SocketAddr,
    /// The base URL browsers and encoders use to reach `http_addr` (behind a proxy, the
    /// proxy's URL). Derived from the bound address when absent.
    pub public_url: Option<String>,
    /// The one UDP address every WebRTC peer uses.
    pub media_udp_addr: SocketAddr,
    /// Addresses announced as ICE host candidates (e.g. the public IP behind 1:1 NAT).
    #[serde(deserialize_with = "ip_list")]
    pub media_public_ips: Vec<IpAddr>,
    /// SQLite database and the generated dev secret live here.
    pub data_dir: PathBuf,
    /// The HS256 key for tokens. When absent, `data_dir/jwt_secret` is used (created by `--dev`).
    #[serde(deserialize_with = "lenient_string")]
    pub jwt_secret: Option<String>,
    /// The longest lifetime of a token, in seconds (`exp − iat`, or `exp − now` without
    /// `iat`); longer-lived tokens are refused, and `floorcast token` will not mint them.
    pub max_token_ttl: u64,
    /// When set, tokens must carry this `iss`, and minted tokens do.
    #[serde(deserialize_with = "lenient_string")]
    pub jwt_issuer: Option<String>,
    /// When set, tokens must name this in `aud`, and minted tokens do.
    #[serde(deserialize_with = "lenient_string")]
    pub jwt_audience: Option<String>,
    /// Event streams (SSE) one token may hold open at once (see `auth::streams`).
    pub max_event_streams_per_token: u32,
    /// A second floor publisher replaces the first instead of getting 409.
    pub allow_takeover: bool,
    /// Largest request body accepted on any route.
    pub max_body_bytes: usize,
    /// Raise and withdraw requests one participant may make per minute (abuse limit).
    pub floor_actions_per_minute: u32,
    /// Machine captions of the floor audio: `whisper` (Whisper through CTranslate2, when its
    /// model is in `whisper_models`; pocketsphinx otherwise, said once in the log),
    /// `pocketsphinx` (embedded, offline), or `off`.
    pub caption_engine: CaptionEngine,
    /// The language spoken on the floor, as a BCP 47 tag (the recognizer's language).
    pub caption_lang: String,
    /// The directory of the Whisper models (`tiny.en/` for English, `base/` for the other
    /// languages; tools/fetch_whisper_models.py). `None`: `data_dir/whisper`.
    pub whisper_models: Option<PathBuf>,
    /// Whisper decoding threads, one core each, shared by all sessions of the node.
    pub whisper_workers: usize,
    /// Machine captions of a language stay hidden from viewers while a human captioner
    /// (CART) of that language sent text within this many seconds.
    pub cart_precedence_seconds: u32,
    /// After SIGTERM, how long current viewers and publishers may stay before the node stops
    /// anyway (a second SIGTERM stops it at once).
    pub drain_timeout_seconds: u32,
    /// TURN servers handed to browsers (e.g. `turn:turn.example.org:3478?transport=udp`,
    /// `turns:turn.example.org:443?transport=tcp`), for hubs behind firewalls that block UDP.
    pub turn_urls: Vec<String>,
    /// coturn's `static-auth-secret` (`use-auth-secret`): credentials are derived from it.
    pub turn_secret: Option<String>,
    /// How long handed-out TURN credentials stay valid (a conference day).
    pub turn_ttl_seconds: u32,
    /// Development mode: generate a secret, create session `demo`, print links and tokens.
    pub dev: bool,
    // ---- Limits against hostile clients (each refusal counted in
    // `floorcast_limit_refusals_total{limit}`).
    /// Open HTTP connections; past it new connections get 503 and are closed.
    pub max_http_connections: usize,
    /// Open HTTP connections from one IP address (hubs behind one NAT share one).
    pub max_http_connections_per_ip: usize,
    /// A client must send a request's headers within this, and an idle keep-alive connection
    /// is closed after it.
    pub http_header_timeout_seconds: u32,
    /// A client must send a request's whole body within this (408 otherwise).
    pub http_body_timeout_seconds: u32,
    /// HTTPS: a PEM certificate chain (the leaf first) and its private key. With both set,
    /// `http_addr` speaks HTTPS only.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Media threads (shards), each owning its share of the peers on the one media port.
    /// Unset: one per core the process may use.
    pub media_shards: Option<usize>,
    /// Send a viewer's run of equal-size packets in one loop turn as one UDP GSO message
    /// (Linux 4.18+; falls back by itself where the kernel or device refuses). Off only to
    /// measure the difference.
    pub media_udp_gso: bool,
    /// Forwarded media leaves through Floorcast's own egress (RTP header and SRTP written
    /// by the SFU with the keys str0m negotiated) rather than each viewer's str0m send
    /// stream. Off only to measure the difference.
    pub media_app_egress: bool,
    /// ICE-TCP (RFC 6544) for clients whose UDP is blocked: the TCP address of the passive
    /// candidate (`0.0.0.0:443` for firewalls that pass only HTTPS). Absent: the media UDP
    /// address and port; `off` or empty: no ICE-TCP. See [`Config::media_tcp`].
    pub media_tcp_addr: Option<String>,
    /// WebRTC peers (publishers and viewers) this node serves.
    pub max_peers: usize,
    /// WebRTC peers one session may have.
    pub max_peers_per_session: usize,
    /// WHIP/WHEP resources one token (`sub`) may hold at once.
    pub max_resources_per_token: usize,
    /// WHIP/WHEP resources one token may create per minute.
    pub creations_per_minute_per_token: u32,
    /// WHIP/WHEP resources one IP address may create per minute.
    pub creations_per_minute_per_ip: u32,
    /// Trickle PATCHes one WHIP/WHEP resource may receive per minute.
    pub patches_per_minute_per_resource: u32,
    /// Remote ICE candidates one peer may trickle.
    pub max_remote_candidates: usize,
    /// One viewer's keyframe requests (PLI/FIR) reach the publisher at most this often.
    pub viewer_keyframe_interval_ms: u32,
    /// The shortest time between two keyframe requests sent to one publisher track, whoever
    /// asks. A joining viewer starts at the next keyframe, so this bounds join time when
    /// viewers arrive steadily; each keyframe costs the publisher's bitrate.
    pub keyframe_min_interval_ms: u32,
    #[serde(rename = "session")]
    pub sessions: Vec<SessionDecl>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            media_udp_addr: SocketAddr::from(([0, 0, 0, 0], 40000)),
            media_public_ips: Vec::new(),
            data_dir: PathBuf::from("./data"),
            jwt_secret: None,
            max_token_ttl: DEFAULT_MAX_TTL.as_secs(),
            jwt_issuer: None,
            jwt_audience: None,
            max_event_streams_per_token: 8,
            allow_takeover: false,
            max_body_bytes: 64 * 1024,
            floor_actions_per_minute: 20,
            caption_engine: CaptionEngine::Whisper,
            caption_lang: "en-US".into(),
            whisper_models: None,
            whisper_workers: 1,
            cart_precedence_seconds: 10,
            drain_timeout_seconds: 600,
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl_seconds: 12 * 3600,
            dev: false,
            max_http_connections: 4096,
            max_http_connections_per_ip: 512,
            http_header_timeout_seconds: 10,
            http_body_timeout_seconds: 10,
            tls_cert: None,
            tls_key: None,
            media_shards: None,
            media_udp_gso: true,
            media_app_egress: true,
            media_tcp_addr: None,
            max_peers: 10_000,
            max_peers_per_session: 5_000,
            max_resources_per_token: 8,
            creations_per_minute_per_token: 30,
            creations_per_minute_per_ip: 600,
            patches_per_minute_per_resource: 120,
            max_remote_candidates: 32,
            viewer_keyframe_interval_ms: 2000,
            keyframe_min_interval_ms: 300,
            sessions: Vec::new(),
        }
    }
}

/// Which recognizer listens to the floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptionEngine {
    Pocketsphinx,
    Whisper,
    Off,
}

/// Values given as command-line flags; `None` leaves the lower layers in force. One field per
/// key of `ENV_KEYS`, named as the key, so it lands on the same key as the file and the
/// environment (`every_flag_reaches_its_key` checks it). Unset fields are left out of the layer
/// entirely rather than merged as an empty value.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_udp_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_public_ips: Option<Vec<IpAddr>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_shards: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_udp_gso: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_app_egress: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_tcp_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_token_ttl: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_event_streams_per_token: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_takeover: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_actions_per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption_engine: Option<CaptionEngine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption_lang: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whisper_models: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whisper_workers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cart_precedence_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_timeout_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn_urls: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn_ttl_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_http_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_http_connections_per_ip: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_header_timeout_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_body_timeout_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_peers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_peers_per_session: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_resources_per_token: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creations_per_minute_per_token: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creations_per_minute_per_ip: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patches_per_minute_per_resource: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_remote_candidates: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub viewer_keyframe_interval_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyframe_min_interval_ms: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    #[error("invalid configuration: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl ConfigError {
    fn invalid(key: &'static str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key,
            message: message.into(),
        }
    }
}

impl Config {
    /// Loads the layers and validates the result. `file`: the `--config` path; when `None`,
    /// `./floorcast.toml` is read if it exists. An explicitly named file must exist.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => {
                let default = Path::new(DEFAULT_CONFIG_FILE);
                if default.exists() {
                    figment = figment.merge(Toml::file_exact(default));
                }
            }
        }
        let config: Config = figment
            .merge(Env::prefixed("FLOORCAST_").only(ENV_KEYS))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: value ranges, ids, the secret's strength.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                "public_url",
                format!("{url:?} must start with http:// or https://"),
            ));
        }
        if let Some(secret) = &self.jwt_secret
            && secret.len() < MIN_JWT_SECRET_LEN
        {
            return Err(ConfigError::invalid(
                "jwt_secret",
                format!(
                    "must be at least {MIN_JWT_SECRET_LEN} bytes (it is {}); \
                     generate one with `head -c 32 /dev/urandom | xxd -p -c 64`",
                    secret.len()
                ),
            ));
        }
        if !(60..=366 * 86_400).contains(&self.max_token_ttl) {
            return Err(ConfigError::invalid(
                "max_token_ttl",
                format!("{} s is outside 60..=31622400 (a year)", self.max_token_ttl),
            ));
        }
        for (key, value) in [
            ("jwt_issuer", &self.jwt_issuer),
            ("jwt_audience", &self.jwt_audience),
        ] {
            if value
                .as_ref()
                .is_some_and(|v| v.is_empty() || v.len() > 256)
            {
                return Err(ConfigError::invalid(key, "must be 1 to 256 bytes when set"));
            }
        }
        if !(1..=1000).contains(&self.max_event_streams_per_token) {
            return Err(ConfigError::invalid(
                "max_event_streams_per_token",
                format!("{} is outside 1..=1000", self.max_event_streams_per_token),
            ));
        }
        if !(1..=10_000).contains(&self.floor_actions_per_minute) {
            return Err(ConfigError::invalid(
                "floor_actions_per_minute",
                format!("{} is outside 1..=10000", self.floor_actions_per_minute),
            ));
        }
        for url in &self.turn_urls {
            if !(url.starts_with("turn:") || url.starts_with("turns:") || url.starts_with("stun:"))
            {
                return Err(ConfigError::invalid(
                    "turn_urls",
                    format!("{url:?} is not a turn:, turns: or stun: URL"),
                ));
            }
        }
        if self.turn_urls.iter().any(|u| !u.starts_with("stun:")) && self.turn_secret.is_none() {
            return Err(ConfigError::invalid(
                "turn_secret",
                "TURN servers are listed but there is no turn_secret to derive credentials from",
            ));
        }
        if !(60..=7 * 86_400).contains(&self.turn_ttl_seconds) {
            return Err(ConfigError::invalid(
                "turn_ttl_seconds",
                format!("{} is outside 60..=604800", self.turn_ttl_seconds),
            ));
        }
        if self.drain_timeout_seconds > 86_400 {
            return Err(ConfigError::invalid(
                "drain_timeout_seconds",
                format!("{} is over a day (86400)", self.drain_timeout_seconds),
            ));
        }
        if !(1..=300).contains(&self.cart_precedence_seconds) {
            return Err(ConfigError::invalid(
                "cart_precedence_seconds",
                format!("{} is outside 1..=300", self.cart_precedence_seconds),
            ));
        }
        if crate::language::check_language_tag(&self.caption_lang).is_err() {
            return Err(ConfigError::invalid(
                "caption_lang",
                format!(
                    "{:?} is not a language tag such as en-US",
                    self.caption_lang
                ),
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(ConfigError::invalid(
                "max_body_bytes",
                format!("{} is outside 1024..=16777216", self.max_body_bytes),
            ));
        }
        self.validate_limits()?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::invalid(
                if self.tls_cert.is_some() {
                    "tls_key"
                } else {
                    "tls_cert"
                },
                "HTTPS needs both tls_cert and tls_key (PEM files)".to_owned(),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        let mut seen = std::collections::HashSet::new();
        for decl in &self.sessions {
            SessionId::parse(&decl.id)
                .map_err(|e| ConfigError::invalid("session.id", e.to_string()))?;
            if !seen.insert(decl.id.as_str()) {
                return Err(ConfigError::invalid(
                    "session.id",
                    format!("session {:?} is declared twice", decl.id),
                ));
            }
            if let Some(title) = &decl.title
                && title.len() > crate::session::MAX_TITLE_LEN
            {
                return Err(ConfigError::invalid(
                    "session.title",
                    format!("title of {:?} is too long", decl.id),
                ));
            }
        }
        Ok(())
    }

    /// Where ICE-TCP listens (`media_tcp_addr`).
    pub fn media_tcp(&self) -> Result<media::TcpListen, ConfigError> {
        match self.media_tcp_addr.as_deref().map(str::trim) {
            None => Ok(media::TcpListen::SameAsUdp),
            Some("" | "off") => Ok(media::TcpListen::Off),
            Some(addr) => addr.parse().map(media::TcpListen::At).map_err(|_| {
                ConfigError::invalid(
                    "media_tcp_addr",
                    format!("{addr:?} is not an address such as 0.0.0.0:443, or off"),
                )
            }),
        }
    }

    /// Every limit must be at least 1 (0 would refuse everyone) and within reason.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        self.media_tcp()?;
        if let Some(n) = self.media_shards
            && !(1..=media::MAX_SHARDS).contains(&n)
        {
            return Err(ConfigError::invalid(
                "media_shards",
                format!("{n} is outside 1..={}", media::MAX_SHARDS),
            ));
        }
        let checks: [(&'static str, u64, u64); 14] = [
            (
                "max_http_connections",
                self.max_http_connections as u64,
                1_000_000,
            ),
            (
                "max_http_connections_per_ip",
                self.max_http_connections_per_ip as u64,
                1_000_000,
            ),
            (
                "http_header_timeout_seconds",
                self.http_header_timeout_seconds.into(),
                300,
            ),
            (
                "http_body_timeout_seconds",
                self.http_body_timeout_seconds.into(),
                300,
            ),
            ("max_peers", self.max_peers as u64, 1_000_000),
            (
                "max_peers_per_session",
                self.max_peers_per_session as u64,
                1_000_000,
            ),
            (
                "max_resources_per_token",
                self.max_resources_per_token as u64,
                100_000,
            ),
            (
                "creations_per_minute_per_token",
                self.creations_per_minute_per_token.into(),
                1_000_000,
            ),
            (
                "creations_per_minute_per_ip",
                self.creations_per_minute_per_ip.into(),
                1_000_000,
            ),
            (
                "patches_per_minute_per_resource",
                self.patches_per_minute_per_resource.into(),
                100_000,
            ),
            (
                "max_remote_candidates",
                self.max_remote_candidates as u64,
                1_000,
            ),
            (
                "viewer_keyframe_interval_ms",
                self.viewer_keyframe_interval_ms.into(),
                60_000,
            ),
            (
                "keyframe_min_interval_ms",
                self.keyframe_min_interval_ms.into(),
                60_000,
            ),
            ("whisper_workers", self.whisper_workers as u64, 64),
        ];
        for (key, value, max) in checks {
            if !(1..=max).contains(&value) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{value} is outside 1..={max}"),
                ));
            }
        }
        Ok(())
    }

    /// The public base URL without a trailing slash: the configured one, or one built from
    /// the address actually bound (so `127.0.0.1:0` yields the real port).
    /// Whether `http_addr` speaks HTTPS (a certificate and its key are configured).
    pub fn serves_https(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    pub fn public_base(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let ip = if bound.ip().is_unspecified() {
                    IpAddr::from([127, 0, 0, 1])
                } else {
                    bound.ip()
                };
                let scheme = if self.serves_https() { "https" } else { "http" };
                format!("{scheme}://{}", SocketAddr::new(ip, bound.port()))
            }
        }
    }

    /// Where the generated (dev) secret is kept.
    pub fn secret_file(&self) -> PathBuf {
        self.data_dir.join("jwt_secret")
    }

    pub fn database_file(&self) -> PathBuf {
        self.data_dir.join("floorcast.db")
    }
}

/// Environment values are parsed by figment, so an all-digit secret arrives as a number.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        U(u64),
        I(i64),
        F(f64),
    }
    Ok(Option::<Raw>::deserialize(d)?.map(|raw| match raw {
        Raw::S(s) => s,
        Raw::U(n) => n.to_string(),
        Raw::I(n) => n.to_string(),
        Raw::F(n) => n.to_string(),
    }))
}

/// A TOML list, or (handy in the environment) one comma-separated string.
fn ip_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        One(String),
    }
    let items = match Raw::deserialize(d)? {
        Raw::List(list) => list,
        Raw::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    items
        .iter()
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an IP address")))
        })
        .collect()
}

#[cfg(test)]
// Jail's closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use clap::Parser;
    use figment::Jail;

    fn load_in(jail: &Jail, file: Option<&str>, overrides: &Overrides) -> Result<Config, String> {
        let _ = jail;
        Config::load(file.map(Path::new), overrides).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_without_any_layer() {
        Jail::expect_with(|jail| {
            let c = load_in(jail, None, &Overrides::default())?;
            assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
            assert_eq!(c.media_udp_addr.port(), 40000);
            assert_eq!(c.data_dir, PathBuf::from("./data"));
            assert_eq!(c.max_body_bytes, 65536);
            assert!(!c.allow_takeover);
            assert!(c.jwt_secret.is_none());
            Ok(())
        });
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "floorcast.toml",
                r#"
                http_addr = "127.0.0.1:9000"
                media_udp_addr = "127.0.0.1:41000"
                data_dir = "/var/lib/fc"
                media_public_ips = ["192.0.2.1"]
                [[session]]
                id = "plenary"
                title = "Plenary"
                [[session]]
                id = "ws-1"
                "#,
            )?;
            jail.set_env("FLOORCAST_MEDIA_UDP_ADDR", "127.0.0.1:42000");
            jail.set_env("FLOORCAST_DATA_DIR", "/env/dir");
            jail.set_env("FLOORCAST_ALLOW_TAKEOVER", "true");
            jail.set_env("FLOORCAST_CONFIG", "ignored-by-config");
            let flags = Overrides {
                data_dir: Some("/flag/dir".into()),
                ..Overrides::default()
            };
            let c = load_in(jail, None, &flags)?;
            assert_eq!(c.http_addr.port(), 9000, "file beats default");
            assert_eq!(c.media_udp_addr.port(), 42000, "env beats file");
            assert_eq!(c.data_dir, PathBuf::from("/flag/dir"), "flag beats env");
            assert!(c.allow_takeover);
            assert_eq!(
                c.media_public_ips,
                vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
            );
            assert_eq!(c.sessions.len(), 2);
            assert_eq!(c.sessions[0].title.as_deref(), Some("Plenary"));
            assert_eq!(c.sessions[1].title, None);
            Ok(())
        });
    }

    #[test]
    fn env_ip_list_and_numeric_secret() {
        Jail::expect_with(|jail| {
            jail.set_env("FLOORCAST_MEDIA_PUBLIC_IPS", "192.0.2.1, 2001:db8::1");
            jail.set_env(
                "FLOORCAST_JWT_SECRET",
                "12345678901234567890123456789012345678",
            );
            let c = load_in(jail, None, &Overrides::default())?;
            assert_eq!(c.media_public_ips.len(), 2);
            assert_eq!(c.jwt_secret.as_deref().map(str::len), Some(38));
            Ok(())
        });
    }

    #[test]
    fn explicit_file_must_exist() {
        Jail::expect_with(|jail| {
            let err = load_in(jail, Some("nope.toml"), &Overrides::default()).unwrap_err();
            assert!(err.contains("nope.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn clear_errors_for_bad_values() {
        Jail::expect_with(|jail| {
            jail.create_file("a.toml", "http_adr = \"127.0.0.1:1\"")?;
            let err = load_in(jail, Some("a.toml"), &Overrides::default()).unwrap_err();
            assert!(err.contains("http_adr"), "unknown key named: {err}");

            jail.create_file("b.toml", "http_addr = \"nonsense\"")?;
            let err = load_in(jail, Some("b.toml"), &Overrides::default()).unwrap_err();
            assert!(err.contains("http_addr"), "bad key named: {err}");

            jail.create_file("c.toml", "jwt_secret = \"short\"")?;
            let err = load_in(jail, Some("c.toml"), &Overrides::default()).unwrap_err();
            assert!(err.contains("jwt_secret") && err.contains("32"), "{err}");

            jail.create_file("d.toml", "[[session]]\nid = \"bad id!\"")?;
            let err = load_in(jail, Some("d.toml"), &Overrides::default()).unwrap_err();
            assert!(err.contains("session.id"), "{err}");

            jail.create_file("e.toml", "[[session]]\nid = \"a\"\n[[session]]\nid = \"a\"")?;
            let err = load_in(jail, Some("e.toml"), &Overrides::default()).unwrap_err();
            assert!(err.contains("twice"), "{err}");

            jail.create_file("f.toml", "public_url = \"example.org\"")?;
            let err = load_in(jail, Some("f.toml"), &Overrides::default()).unwrap_err();
            assert!(err.contains("public_url"), "{err}");
            Ok(())
        });
    }

    /// The command line that sets every key to a valid value other than its default.
    /// A key added to `ENV_KEYS` needs a line here too.
    const EVERY_FLAG: &[(&str, &[&str])] = &[
        ("http_addr", &["--http-addr", "127.0.0.1:9001"]),
        ("public_url", &["--public-url", "https://fc.example.org"]),
        ("media_udp_addr", &["--media-udp-addr", "127.0.0.1:41001"]),
        ("media_public_ips", &["--media-public-ips", "192.0.2.7"]),
        ("media_shards", &["--media-shards", "2"]),
        ("media_udp_gso", &["--media-udp-gso", "false"]),
        ("media_app_egress", &["--media-app-egress", "false"]),
        ("media_tcp_addr", &["--media-tcp-addr", "127.0.0.1:41443"]),
        ("tls_cert", &["--tls-cert", "/etc/fc/cert.pem"]),
        ("tls_key", &["--tls-key", "/etc/fc/key.pem"]),
        ("data_dir", &["--data-dir", "/flag/dir"]),
        (
            "jwt_secret",
            &["--jwt-secret", "0123456789abcdef0123456789abcdef"],
        ),
        ("max_token_ttl", &["--max-token-ttl", "3600"]),
        ("jwt_issuer", &["--jwt-issuer", "fc"]),
        ("jwt_audience", &["--jwt-audience", "conf"]),
        (
            "max_event_streams_per_token",
            &["--max-event-streams-per-token", "3"],
        ),
        ("allow_takeover", &["--allow-takeover"]),
        ("max_body_bytes", &["--max-body-bytes", "2048"]),
        (
            "floor_actions_per_minute",
            &["--floor-actions-per-minute", "5"],
        ),
        ("caption_engine", &["--caption-engine", "off"]),
        ("caption_lang", &["--caption-lang", "fr-FR"]),
        ("whisper_models", &["--whisper-models", "/models/whisper"]),
        ("whisper_workers", &["--whisper-workers", "2"]),
        (
            "cart_precedence_seconds",
            &["--cart-precedence-seconds", "4"],
        ),
        ("drain_timeout_seconds", &["--drain-timeout-seconds", "30"]),
        (
            "turn_urls",
            &[
                "--turn-url",
                "turn:t.example.org:3478",
                "--turn-url",
                "stun:s.example.org",
            ],
        ),
        ("turn_secret", &["--turn-secret", "coturn"]),
        ("turn_ttl_seconds", &["--turn-ttl-seconds", "600"]),
        ("dev", &["--dev"]),
        ("max_http_connections", &["--max-http-connections", "100"]),
        (
            "max_http_connections_per_ip",
            &["--max-http-connections-per-ip", "10"],
        ),
        (
            "http_header_timeout_seconds",
            &["--http-header-timeout-seconds", "3"],
        ),
        (
            "http_body_timeout_seconds",
            &["--http-body-timeout-seconds", "4"],
        ),
        ("max_peers", &["--max-peers", "50"]),
        ("max_peers_per_session", &["--max-peers-per-session", "40"]),
        (
            "max_resources_per_token",
            &["--max-resources-per-token", "2"],
        ),
        (
            "creations_per_minute_per_token",
            &["--creations-per-minute-per-token", "6"],
        ),
        (
            "creations_per_minute_per_ip",
            &["--creations-per-minute-per-ip", "60"],
        ),
        (
            "patches_per_minute_per_resource",
            &["--patches-per-minute-per-resource", "12"],
        ),
        ("max_remote_candidates", &["--max-remote-candidates", "8"]),
        (
            "viewer_keyframe_interval_ms",
            &["--viewer-keyframe-interval-ms", "1000"],
        ),
        (
            "keyframe_min_interval_ms",
            &["--keyframe-min-interval-ms", "250"],
        ),
    ];

    fn serve_args(args: &[&str]) -> crate::cli::ServeArgs {
        let cli = crate::cli::Cli::try_parse_from(
            std::iter::once("floorcast").chain(args.iter().copied()),
        )
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.into_command() {
            crate::cli::Command::Serve(serve) => serve,
            crate::cli::Command::Token(_) => panic!("expected serve"),
        }
    }

    #[test]
    fn every_key_has_a_flag() {
        use clap::CommandFactory;
        let cli = crate::cli::Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve subcommand");
        for command in [&cli, serve] {
            for key in ENV_KEYS {
                let flag = key.replace('_', "-");
                assert!(
                    command
                        .get_arguments()
                        .any(|a| a.get_long() == Some(flag.as_str())),
                    "config key {key} has no --{flag} on `{}`",
                    command.get_name()
                );
            }
        }
    }

    /// Each flag lands on its own key, over the default: a flag parsed but never copied into
    /// `Overrides` (or copied into the wrong field) fails here.
    #[test]
    fn every_flag_reaches_its_key() {
        let mut keys: Vec<_> = EVERY_FLAG.iter().map(|(key, _)| *key).collect();
        keys.sort_unstable();
        let mut expected = ENV_KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(
            keys, expected,
            "EVERY_FLAG must list each key of ENV_KEYS once"
        );

        let defaults = serde_json::to_value(Config::default()).unwrap();
        for (key, args) in EVERY_FLAG {
            let overrides = serve_args(args).overrides();
            let set = serde_json::to_value(&overrides).unwrap();
            let set: Vec<&str> = set
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(set, [*key], "{args:?} sets exactly {key}");
        }
        let all: Vec<&str> = EVERY_FLAG
            .iter()
            .flat_map(|(_, args)| args.iter().copied())
            .collect();
        let overrides = serve_args(&all).overrides();
        Jail::expect_with(|jail| {
            let loaded = serde_json::to_value(load_in(jail, None, &overrides)?).unwrap();
            for key in ENV_KEYS {
                assert_ne!(loaded[key], defaults[key], "--{key} did not change {key}");
            }
            Ok(())
        });
    }

    #[test]
    fn flags_beat_env_and_absent_flags_leave_it() {
        Jail::expect_with(|jail| {
            jail.create_file("floorcast.toml", "max_peers = 10\nturn_ttl_seconds = 700")?;
            jail.set_env("FLOORCAST_MAX_PEERS", "20");
            jail.set_env("FLOORCAST_MEDIA_UDP_GSO", "false");
            jail.set_env("FLOORCAST_CAPTION_ENGINE", "off");
            let flags = serve_args(&[
                "--max-peers",
                "30",
                "--media-udp-gso",
                "true",
                "--turn-urls",
                "stun:a.example.org,stun:b.example.org",
            ])
            .overrides();
            let c = load_in(jail, None, &flags)?;
            assert_eq!(c.max_peers, 30, "flag beats env and file");
            assert!(
                c.media_udp_gso,
                "a boolean flag switches back on what env switched off"
            );
            assert_eq!(c.turn_urls.len(), 2, "comma-separated list");
            assert_eq!(
                c.caption_engine,
                CaptionEngine::Off,
                "env stays without the flag"
            );
            assert_eq!(c.turn_ttl_seconds, 700, "file stays without env or flag");
            Ok(())
        });
    }

    #[test]
    fn flag_values_are_checked_like_file_values() {
        for bad in [
            &["--media-udp-gso", "yes"][..],
            &["--media-udp-gso"],
            &["--caption-engine", "vosk"],
            &["--max-peers", "-1"],
        ] {
            let parsed = crate::cli::Cli::try_parse_from(
                std::iter::once("floorcast").chain(bad.iter().copied()),
            );
            assert!(parsed.is_err(), "{bad:?} accepted");
        }
        for engine in ["pocketsphinx", "whisper", "off"] {
            assert!(
                serve_args(&["--caption-engine", engine])
                    .caption_engine
                    .is_some()
            );
        }
        Jail::expect_with(|jail| {
            let flags = serve_args(&["--max-peers", "0"]).overrides();
            let err = load_in(jail, None, &flags).unwrap_err();
            assert!(err.contains("max_peers"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn public_base_from_bound_address() {
        let c = Config::default();
        assert_eq!(
            c.public_base("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        let c = Config {
            public_url: Some("https://fc.example.org/".into()),
            ..Config::default()
        };
        assert_eq!(
            c.public_base("0.0.0.0:8080".parse().unwrap()),
            "https://fc.example.org"
        );
    }
}
