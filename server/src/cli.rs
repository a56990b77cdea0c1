//! The command line: `floorcast [serve] [flags]` (serve is the default) and
//! `floorcast token …`. Flags are the top layer of the config (see `config`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};

use crate::auth::{Claims, Role, SessionScope, TokenPolicy};
use crate::config::Overrides;

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Mint a token and print it (only the JWT) on stdout.
    Token(TokenArgs),
}

/// Flags shared by every command that needs the config.
#[derive(Debug, Args, Default)]
pub struct ConfigArgs {
    /// TOML config file [default: ./floorcast.toml if present].
    #[arg(long, env = "FLOORCAST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (database, generated secret) [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HS256 secret for tokens (at least 32 bytes).
    #[arg(long, value_name = "SECRET")]
    pub jwt_secret: Option<String>,
}

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
    /// The one UDP address for all WebRTC peers [default: 0.0.0.0:40000].
    #[arg(long, value_name = "ADDR")]
    pub media_udp_addr: Option<SocketAddr>,
    /// Addresses announced as ICE candidates, comma-separated.
    #[arg(long, value_name = "IPS", value_delimiter = ',')]
    pub media_public_ips: Option<Vec<IpAddr>>,
    /// Media threads, each with a share of the peers [default: one per core].
    #[arg(long, value_name = "N")]
    pub media_shards: Option<usize>,
    /// Public base URL of this node (behind a proxy, the proxy's).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Let a new floor publisher replace the current one instead of getting 409.
    #[arg(long)]
    pub allow_takeover: bool,
    /// Largest request body accepted [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Raise/withdraw requests per participant per minute [default: 20].
    #[arg(long, value_name = "N")]
    pub floor_actions_per_minute: Option<u32>,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            http_addr: self.http_addr,
            public_url: self.public_url.clone(),
            media_udp_addr: self.media_udp_addr,
            media_public_ips: self.media_public_ips.clone(),
            media_shards: self.media_shards,
            data_dir: self.common.data_dir.clone(),
            jwt_secret: self.common.jwt_secret.clone(),
            // A boolean flag can only switch on; absent leaves file/env in force.
            allow_takeover: self.allow_takeover.then_some(true),
            max_body_bytes: self.max_body_bytes,
            floor_actions_per_minute: self.floor_actions_per_minute,
            dev: self.dev.then_some(true),
        }
    }
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub common: ConfigArgs,
    #[arg(long, value_enum)]
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
        Overrides {
            data_dir: self.common.data_dir.clone(),
            jwt_secret: self.common.jwt_secret.clone(),
            ..Overrides::default()
        }
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
