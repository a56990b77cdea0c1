//! The command line: `floorcast [serve] [flags]` (serve is the default) and
//! `floorcast token …`. Flags are the top layer of the config (see `config`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use serde::de::value::StrDeserializer;

use crate::auth::{Claims, Role, SessionScope, TokenPolicy};
use crate::config::{CaptionEngine, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "floorcast",
    version,
    about = "Remote participation for hybrid conferences: SFU, floor queue, captions",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `serve`, accepted without the subcommand.
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

impl Command {
    pub fn config_args(&self) -> &ConfigArgs {
        match self {
            Command::Serve(args) => &args.common,
            Command::Token(args) => &args.common,
        }
    }
}

#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per process, parsed once: its size costs nothing"
)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Mint a token and print it (only the JWT) on stdout.
    Token(TokenArgs),
}

/// Flags shared by every command that needs the config: where it is, and the keys
/// `floorcast token` needs to mint what the server accepts (its secret and token policy).
#[derive(Debug, Args, Default)]
pub struct ConfigArgs {
    /// TOML config file [default: ./floorcast.toml if present].
    #[arg(long, env = "FLOORCAST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log lines on stderr as `text`, or as `json` (one object per line, for log shippers).
    /// Not a config-file key: logging starts before the file is read.
    #[arg(
        long,
        env = "FLOORCAST_LOG_FORMAT",
        value_enum,
        value_name = "FORMAT",
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
    /// Data directory (database, generated secret) [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HS256 secret for tokens (at least 32 bytes). Prefer FLOORCAST_JWT_SECRET or the config
    /// file: other local users can read a command line (`ps`).
    #[arg(long, value_name = "SECRET")]
    pub jwt_secret: Option<String>,
    /// Longest token lifetime in seconds [default: 604800].
    #[arg(long, value_name = "SECONDS")]
    pub max_token_ttl: Option<u64>,
    /// Tokens must carry this `iss`, and minted ones do.
    #[arg(long, value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// Tokens must name this in `aud`, and minted ones do.
    #[arg(long, value_name = "AUD")]
    pub jwt_audience: Option<String>,
}

impl ConfigArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.data_dir.clone(),
            jwt_secret: self.jwt_secret.clone(),
            max_token_ttl: self.max_token_ttl,
            jwt_issuer: self.jwt_issuer.clone(),
            jwt_audience: self.jwt_audience.clone(),
            ..Overrides::default()
        }
    }
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// One flag per config key (`every_key_has_a_flag` in `config` keeps it so), named as the key
/// with dashes. Defaults in the help are the built-in ones; a flag left out keeps the value
/// of the environment or the file.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: ConfigArgs,
    /// Development mode: generate a secret, create session `demo`, print links and tokens.
    #[arg(long)]
    pub dev: bool,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Public base URL of this node (behind a proxy, the proxy's).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// HTTPS: the certificate chain, PEM, leaf first (with --tls-key).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// HTTPS: the certificate's private key, PEM (with --tls-cert).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Event streams (SSE) one token may hold open [default: 8].
    #[arg(long, value_name = "N")]
    pub max_event_streams_per_token: Option<u32>,
    /// Let a new floor publisher replace the current one instead of getting 409.
    #[arg(long)]
    pub allow_takeover: bool,
    /// Raise/withdraw requests per participant per minute [default: 20].
    #[arg(long, value_name = "N")]
    pub floor_actions_per_minute: Option<u32>,
    /// Drain after SIGTERM for at most this long [default: 600].
    #[arg(long, value_name = "SECONDS")]
    pub drain_timeout_seconds: Option<u32>,

    /// The one UDP address for all WebRTC peers [default: 0.0.0.0:40000].
    #[arg(long, value_name = "ADDR", help_heading = "Media")]
    pub media_udp_addr: Option<SocketAddr>,
    /// Addresses announced as ICE candidates, comma-separated or repeated.
    #[arg(
        long,
        value_name = "IPS",
        value_delimiter = ',',
        help_heading = "Media"
    )]
    pub media_public_ips: Option<Vec<IpAddr>>,
    /// Media threads, each with a share of the peers [default: one per core].
    #[arg(long, value_name = "N", help_heading = "Media")]
    pub media_shards: Option<usize>,
    /// Send a viewer's packets of one loop turn as one UDP GSO message [default: true].
    #[arg(long, value_name = "true|false", action = ArgAction::Set, help_heading = "Media")]
    pub media_udp_gso: Option<bool>,
    /// Forwarded media through Floorcast's own RTP/SRTP egress rather than str0m's send
    /// streams [default: true].
    #[arg(long, value_name = "true|false", action = ArgAction::Set, help_heading = "Media")]
    pub media_app_egress: Option<bool>,
    /// ICE-TCP listen address, or `off` [default: the media UDP address and port].
    #[arg(long, value_name = "ADDR|off", help_heading = "Media")]
    pub media_tcp_addr: Option<String>,
    /// One viewer's keyframe requests reach the publisher at most this often [default: 2000].
    #[arg(long, value_name = "MS", help_heading = "Media")]
    pub viewer_keyframe_interval_ms: Option<u32>,
    /// Keyframe requests reach one publisher at most this often, whoever asks [default: 300].
    #[arg(long, value_name = "MS", help_heading = "Media")]
    pub keyframe_min_interval_ms: Option<u32>,

    /// TURN servers handed to browsers (turn:, turns: or stun: URLs), comma-separated or
    /// repeated.
    #[arg(
        long,
        visible_alias = "turn-url",
        value_name = "URLS",
        value_delimiter = ',',
        help_heading = "TURN"
    )]
    pub turn_urls: Option<Vec<String>>,
    /// coturn's static-auth-secret. Prefer FLOORCAST_TURN_SECRET or the config file: other
    /// local users can read a command line (`ps`).
    #[arg(long, value_name = "SECRET", help_heading = "TURN")]
    pub turn_secret: Option<String>,
    /// Lifetime of handed-out TURN credentials [default: 43200].
    #[arg(long, value_name = "SECONDS", help_heading = "TURN")]
    pub turn_ttl_seconds: Option<u32>,

    /// Machine captions of the floor [default: pocketsphinx].
    #[arg(long, value_name = "ENGINE", value_parser = caption_engine(), help_heading = "Captions")]
    pub caption_engine: Option<CaptionEngine>,
    /// Language spoken on the floor, a BCP 47 tag [default: en-US].
    #[arg(long, value_name = "TAG", help_heading = "Captions")]
    pub caption_lang: Option<String>,
    /// Directory of the Whisper models (tiny.en/, base/) [default: DATA_DIR/whisper].
    #[arg(long, value_name = "DIR", help_heading = "Captions")]
    pub whisper_models: Option<PathBuf>,
    /// Whisper decoding threads shared by all sessions, one core each [default: 1].
    #[arg(long, value_name = "N", help_heading = "Captions")]
    pub whisper_workers: Option<usize>,
    /// A captioner's text holds machine captions back this long [default: 10].
    #[arg(long, value_name = "SECONDS", help_heading = "Captions")]
    pub cart_precedence_seconds: Option<u32>,

    /// Largest request body accepted [default: 65536].
    #[arg(long, value_name = "BYTES", help_heading = "Limits")]
    pub max_body_bytes: Option<usize>,
    /// Open HTTP connections [default: 4096].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_http_connections: Option<usize>,
    /// Open HTTP connections from one IP address [default: 512].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_http_connections_per_ip: Option<usize>,
    /// Time to send a request's headers; idle keep-alive connections close after it [default: 10].
    #[arg(long, value_name = "SECONDS", help_heading = "Limits")]
    pub http_header_timeout_seconds: Option<u32>,
    /// Time to send a request's body [default: 10].
    #[arg(long, value_name = "SECONDS", help_heading = "Limits")]
    pub http_body_timeout_seconds: Option<u32>,
    /// WebRTC peers on this node [default: 10000].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_peers: Option<usize>,
    /// WebRTC peers in one session [default: 5000].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_peers_per_session: Option<usize>,
    /// WHIP/WHEP resources one token holds at once [default: 8].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_resources_per_token: Option<usize>,
    /// WHIP/WHEP resources one token may create per minute [default: 30].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub creations_per_minute_per_token: Option<u32>,
    /// WHIP/WHEP resources one IP address may create per minute [default: 600].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub creations_per_minute_per_ip: Option<u32>,
    /// Trickle PATCHes per WHIP/WHEP resource per minute [default: 120].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub patches_per_minute_per_resource: Option<u32>,
    /// ICE candidates one peer may trickle [default: 32].
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_remote_candidates: Option<usize>,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            http_addr: self.http_addr,
            public_url: self.public_url.clone(),
            max_event_streams_per_token: self.max_event_streams_per_token,
            // A bare switch can only switch on; absent leaves file/env in force.
            allow_takeover: self.allow_takeover.then_some(true),
            floor_actions_per_minute: self.floor_actions_per_minute,
            drain_timeout_seconds: self.drain_timeout_seconds,
            dev: self.dev.then_some(true),
            media_udp_addr: self.media_udp_addr,
            media_public_ips: self.media_public_ips.clone(),
            media_shards: self.media_shards,
            media_udp_gso: self.media_udp_gso,
            media_app_egress: self.media_app_egress,
            media_tcp_addr: self.media_tcp_addr.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            viewer_keyframe_interval_ms: self.viewer_keyframe_interval_ms,
            keyframe_min_interval_ms: self.keyframe_min_interval_ms,
            turn_urls: self.turn_urls.clone(),
            turn_secret: self.turn_secret.clone(),
            turn_ttl_seconds: self.turn_ttl_seconds,
            caption_engine: self.caption_engine,
            caption_lang: self.caption_lang.clone(),
            whisper_models: self.whisper_models.clone(),
            whisper_workers: self.whisper_workers,
            cart_precedence_seconds: self.cart_precedence_seconds,
            max_body_bytes: self.max_body_bytes,
            max_http_connections: self.max_http_connections,
            max_http_connections_per_ip: self.max_http_connections_per_ip,
            http_header_timeout_seconds: self.http_header_timeout_seconds,
            http_body_timeout_seconds: self.http_body_timeout_seconds,
            max_peers: self.max_peers,
            max_peers_per_session: self.max_peers_per_session,
            max_resources_per_token: self.max_resources_per_token,
            creations_per_minute_per_token: self.creations_per_minute_per_token,
            creations_per_minute_per_ip: self.creations_per_minute_per_ip,
            patches_per_minute_per_resource: self.patches_per_minute_per_resource,
            max_remote_candidates: self.max_remote_candidates,
            ..self.common.overrides()
        }
    }
}

/// Token roles by their claim names (serde's), so the CLI adds nothing to `auth::Role`; the
/// list is spelled out for `--help` and shell completion.
fn role() -> impl TypedValueParser<Value = Role> {
    PossibleValuesParser::new(Role::ALL.map(Role::as_str))
        .try_map(|name| Role::deserialize(StrDeserializer::<serde::de::value::Error>::new(&name)))
}

/// The engine names are the config file's (serde's), so a flag and a file line agree; the
/// list is spelled out for `--help` and shell completion.
fn caption_engine() -> impl TypedValueParser<Value = CaptionEngine> {
    PossibleValuesParser::new(["pocketsphinx", "whisper", "off"]).try_map(|name| {
        CaptionEngine::deserialize(StrDeserializer::<serde::de::value::Error>::new(&name))
    })
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub common: ConfigArgs,
    #[arg(long, value_parser = role())]
    pub role: Role,
    /// A session id, or `*` for every session.
    #[arg(long, value_parser = parse_scope)]
    pub session: SessionScope,
    /// Display name [default: the role].
    #[arg(long)]
    pub name: Option<String>,
    /// Hub the holder belongs to.
    #[arg(long)]
    pub hub: Option<String>,
    /// Lifetime in seconds [default: 86400, or max_token_ttl if shorter]. More than the
    /// config's max_token_ttl is refused: the server would not accept the token.
    #[arg(long)]
    pub ttl_s: Option<u64>,
}

/// `floorcast token` without `--ttl-s`: a conference day.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

impl TokenArgs {
    pub fn overrides(&self) -> Overrides {
        self.common.overrides()
    }

    /// The claims to mint. An explicit `--ttl-s` is kept as asked (minting refuses it when
    /// it is over `policy.max_ttl`); the default is shortened to fit.
    pub fn claims(&self, now: SystemTime, policy: &TokenPolicy) -> Claims {
        let name = self.name.as_deref().unwrap_or(self.role.as_str());
        let ttl = match self.ttl_s {
            Some(s) => Duration::from_secs(s),
            None => DEFAULT_TOKEN_TTL.min(policy.max_ttl),
        };
        let mut claims = Claims::new(self.role, self.session.clone(), name, ttl, now);
        claims.hub = self.hub.clone();
        claims
    }
}

fn parse_scope(s: &str) -> Result<SessionScope, String> {
    SessionScope::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("floorcast").chain(args.iter().copied()))
            .unwrap()
            .into_command()
    }

    #[test]
    fn serve_is_the_default() {
        let Command::Serve(a) = parse(&["--dev", "--http-addr", "127.0.0.1:0"]) else {
            panic!("expected serve");
        };
        assert!(a.dev);
        assert_eq!(a.overrides().http_addr.unwrap().port(), 0);
        assert_eq!(a.overrides().allow_takeover, None);
        let Command::Serve(a) = parse(&[
            "serve",
            "--allow-takeover",
            "--media-public-ips",
            "192.0.2.1,192.0.2.2",
        ]) else {
            panic!("expected serve");
        };
        assert_eq!(a.overrides().allow_takeover, Some(true));
        assert_eq!(a.media_public_ips.unwrap().len(), 2);
    }

    #[test]
    fn token_args() {
        let Command::Token(t) = parse(&[
            "token",
            "--role",
            "hub",
            "--session",
            "s1",
            "--name",
            "Nairobi hub",
            "--hub",
            "nairobi",
        ]) else {
            panic!("expected token");
        };
        let c = t.claims(SystemTime::now(), &TokenPolicy::default());
        assert_eq!(c.role, Role::Hub);
        assert_eq!(c.hub.as_deref(), Some("nairobi"));
        assert_eq!(c.name, "Nairobi hub");
        assert_eq!(c.exp - c.iat.unwrap(), DEFAULT_TOKEN_TTL.as_secs());
        assert!(matches!(
            parse(&["token", "--role", "operator", "--session", "*"]),
            Command::Token(_)
        ));
        assert!(
            Cli::try_parse_from(["floorcast", "token", "--role", "admin", "--session", "s"])
                .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "floorcast",
                "token",
                "--role",
                "viewer",
                "--session",
                "bad id"
            ])
            .is_err()
        );
    }

    #[test]
    fn ttl_bounded_by_max_token_ttl() {
        use crate::auth::{AuthError, AuthKeys};
        let policy = TokenPolicy {
            max_ttl: Duration::from_secs(3600),
            ..TokenPolicy::default()
        };
        let keys = AuthKeys::new(&[7; 32], policy.clone(), None);
        let token = |args: &[&str]| {
            let Command::Token(t) = parse(args) else {
                panic!("expected token");
            };
            keys.mint(&t.claims(SystemTime::now(), &policy))
        };
        let base = ["token", "--role", "viewer", "--session", "s1"];
        // The default shrinks to the maximum; an explicit ttl above it is refused.
        assert!(token(&base).is_ok());
        assert!(token(&[&base[..], &["--ttl-s", "3600"]].concat()).is_ok());
        let refused = token(&[&base[..], &["--ttl-s", "3601"]].concat()).unwrap_err();
        assert!(
            matches!(&refused, AuthError::Mint(m) if m.contains("max_token_ttl")),
            "{refused}"
        );
    }
}
