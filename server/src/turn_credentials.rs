//! ICE servers for browsers: TURN with time-limited credentials in the "TURN REST API" scheme
//! coturn implements with `use-auth-secret` (draft-uberti-behave-turn-rest): the username is
//! `<expiry unix time>:<who>`, the password base64(HMAC-SHA1(shared secret, username)). coturn
//! checks both against the same secret, so no credential is stored anywhere, and a leaked one
//! stops working at its expiry. Hubs behind firewalls that block UDP reach the media over
//! TURN/TCP or TURN/TLS on 443.
//!
//! `GET /api/sessions/{id}/ice-servers` (any token of the session) answers
//! `{"ice_servers": [RTCIceServer…], "expires_at_ms"}`; the pages pass it to
//! `RTCPeerConnection`. Credentials never outlive the token that asked for them: they expire
//! at `now + turn_ttl_seconds` or at the token's `exp`, whichever comes first (a revoked or
//! short-lived token must not leave a day-long relay behind).

use axum::Router;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::routing::get;
use base64::Engine;
use serde::Serialize;

use crate::api::error::ApiError;
use crate::api::json::ApiJson;
use crate::api::session_access::{self as access, SessionAccess};
use crate::config::Config;
use crate::state::AppState;

/// One `RTCIceServer` as browsers take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct IceServers {
    pub ice_servers: Vec<IceServer>,
    /// When the TURN credentials stop working (Unix ms); `None` without TURN.
    pub expires_at_ms: Option<u64>,
}

/// The REST credentials for `who`, valid until `expires_s` (Unix seconds).
pub fn credentials(secret: &str, who: &str, expires_s: u64) -> (String, String) {
    // A colon in `who` would end coturn's timestamp field early: keep it out.
    let who: String = who.chars().filter(|c| *c != ':').take(64).collect();
    let username = format!("{expires_s}:{who}");
    let key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        secret.as_bytes(),
    );
    let tag = aws_lc_rs::hmac::sign(&key, username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    (username, password)
}

/// When credentials handed out at `now_s` to a token expiring at `token_exp_s` expire.
pub fn expiry(now_s: u64, ttl_s: u64, token_exp_s: u64) -> u64 {
    now_s.saturating_add(ttl_s).min(token_exp_s)
}

/// The ICE servers of this node for `who` (whose token expires at `token_exp_s`): STUN URLs
/// as they are, TURN URLs with fresh credentials (one entry for all of them).
pub fn ice_servers(config: &Config, who: &str, now_s: u64, token_exp_s: u64) -> IceServers {
    let (stun, turn): (Vec<String>, Vec<String>) = config
        .turn_urls
        .iter()
        .cloned()
        .partition(|u| u.starts_with("stun:"));
    let mut out = Vec::new();
    if !stun.is_empty() {
        out.push(IceServer {
            urls: stun,
            username: None,
            credential: None,
        });
    }
    let mut expires_at_ms = None;
    if let (false, Some(secret)) = (turn.is_empty(), config.turn_secret.as_deref()) {
        let expires_s = expiry(now_s, config.turn_ttl_seconds.into(), token_exp_s);
        let (username, credential) = credentials(secret, who, expires_s);
        expires_at_ms = Some(expires_s.saturating_mul(1000));
        out.push(IceServer {
            urls: turn,
            username: Some(username),
            credential: Some(credential),
        });
    }
    IceServers {
        ice_servers: out,
        expires_at_ms,
    }
}

/// The ICE servers as RFC 9725 §4.6 `Link` headers (one per URL), for WHIP/WHEP clients
/// that do not fetch `/ice-servers` (OBS, GStreamer). A URL that cannot travel in a header
/// is left out.
pub fn link_headers(servers: &IceServers) -> Vec<HeaderValue> {
    let mut out = Vec::new();
    for server in &servers.ice_servers {
        for url in &server.urls {
            if url.contains(['<', '>', '"']) {
                continue;
            }
            let mut value = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(user), Some(credential)) = (&server.username, &server.credential) {
                value.push_str(&format!(
                    "; username=\"{user}\"; credential=\"{credential}\"; credential-type=\"password\""
                ));
            }
            if let Ok(v) = HeaderValue::from_str(&value) {
                out.push(v);
            }
        }
    }
    out
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/sessions/{id}/ice-servers", get(handler))
}

async fn handler(
    State(config): State<std::sync::Arc<Config>>,
    SessionAccess { grant, .. }: SessionAccess<access::Subscribe>,
) -> Result<ApiJson<IceServers>, ApiError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(ApiJson(ice_servers(
        &config,
        &grant.claims.sub,
        now,
        grant.claims.exp,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_servers_become_link_headers() {
        let config = Config {
            turn_urls: vec![
                "stun:turn.example.net:3478".into(),
                "turn:turn.example.net:3478?transport=udp".into(),
                "turns:turn.example.net:443?transport=tcp".into(),
            ],
            turn_secret: Some("s3cret".into()),
            ..Config::default()
        };
        let servers = ice_servers(&config, "viewer-1", 1_000, u64::MAX);
        let links = link_headers(&servers);
        let links: Vec<&str> = links.iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(links.len(), 3);
        assert_eq!(links[0], "<stun:turn.example.net:3478>; rel=\"ice-server\"");
        let (user, credential) = credentials("s3cret", "viewer-1", 1_000 + 12 * 3600);
        assert_eq!(
            links[2],
            format!(
                "<turns:turn.example.net:443?transport=tcp>; rel=\"ice-server\"; \
                 username=\"{user}\"; credential=\"{credential}\"; credential-type=\"password\""
            )
        );
        assert!(link_headers(&ice_servers(&Config::default(), "v", 1_000, u64::MAX)).is_empty());
    }

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        // Checked against `openssl dgst -sha1 -hmac secret -binary | base64` of the username.
        let (user, pass) = credentials("north", "hub:dakar", 1_800_003_600);
        assert_eq!(user, "1800003600:hubdakar");
        assert_eq!(pass, "MbaX9ysadqNGNLNWJN6Zt8M4wdc=");
    }

    #[test]
    fn stun_as_is_turn_with_credentials() {
        let config = Config {
            turn_urls: vec![
                "stun:stun.example.org:3478".into(),
                "turn:turn.example.org:3478?transport=udp".into(),
                "turns:turn.example.org:443?transport=tcp".into(),
            ],
            turn_secret: Some("s3cret".into()),
            turn_ttl_seconds: 600,
            ..Config::default()
        };
        let s = ice_servers(&config, "viewer-1", 1_000, u64::MAX);
        assert_eq!(s.ice_servers.len(), 2);
        assert_eq!(s.ice_servers[0].urls, vec!["stun:stun.example.org:3478"]);
        assert_eq!(s.ice_servers[0].username, None);
        assert_eq!(s.ice_servers[1].urls.len(), 2);
        assert_eq!(s.ice_servers[1].username.as_deref(), Some("1600:viewer-1"));
        assert_eq!(s.expires_at_ms, Some(1_600_000));
        let none = ice_servers(&Config::default(), "v", 1_000, u64::MAX);
        assert!(none.ice_servers.is_empty() && none.expires_at_ms.is_none());
        // A token that ends sooner than turn_ttl_seconds ends its credentials with it.
        let s = ice_servers(&config, "viewer-1", 1_000, 1_300);
        assert_eq!(s.ice_servers[1].username.as_deref(), Some("1300:viewer-1"));
        assert_eq!(s.expires_at_ms, Some(1_300_000));
    }

    #[test]
    fn never_longer_than_the_token() {
        assert_eq!(expiry(1_000, 600, u64::MAX), 1_600);
        assert_eq!(expiry(1_000, 600, 1_200), 1_200);
        assert_eq!(
            expiry(1_000, 600, 900),
            900,
            "an expired token: nothing usable"
        );
        assert_eq!(expiry(u64::MAX - 1, 600, u64::MAX), u64::MAX);
    }
}
