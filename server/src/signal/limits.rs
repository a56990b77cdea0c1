//! What one client may do to the signalling endpoints, so that one token or one address
//! cannot spend the node's media thread or peer slots for everyone else: WHIP/WHEP creations
//! per minute per token and per IP, trickle PATCHes per minute per resource. (Resources held
//! at once per token are counted in [`crate::peer_resources`]; peers per session and per node,
//! and candidates per peer, in the media engine.) Each refusal is a 429 with `Retry-After`
//! and a count in `floorcast_limit_refusals_total{limit}`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::api::error::ApiError;
use crate::config::Config;
use crate::floor::rate_limit::RateLimiter;
use crate::metrics::{Limit, Metrics};

/// Cheap to clone; clones share the counts.
#[derive(Clone)]
pub struct SignalLimits {
    creations_per_token: RateLimiter,
    creations_per_ip: RateLimiter,
    patches_per_resource: RateLimiter,
    pub max_resources_per_token: usize,
    metrics: Metrics,
}

impl SignalLimits {
    pub fn new(config: &Config, metrics: Metrics) -> Self {
        SignalLimits {
            creations_per_token: RateLimiter::new(config.creations_per_minute_per_token),
            creations_per_ip: RateLimiter::new(config.creations_per_minute_per_ip),
            patches_per_resource: RateLimiter::new(config.patches_per_minute_per_resource),
            max_resources_per_token: config.max_resources_per_token,
            metrics,
        }
    }

    /// Counts a WHIP/WHEP creation by token `sub` and by address (when known: requests that
    /// did not come through the node's listener, as in handler tests, have none).
    pub fn creation(&self, sub: &str, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let now = now_ms();
        if let Some(ip) = ip
            && let Err(wait) = self.creations_per_ip.check(&ip.to_string(), now)
        {
            return Err(self.refuse(
                Limit::CreationsPerIp,
                "too_many_creations",
                "this address created too many WHIP/WHEP sessions in the last minute",
                wait,
            ));
        }
        self.creations_per_token.check(sub, now).map_err(|wait| {
            self.refuse(
                Limit::CreationsPerToken,
                "too_many_creations",
                "this token created too many WHIP/WHEP sessions in the last minute",
                wait,
            )
        })
    }

    /// Counts a trickle PATCH on the resource of `peer`.
    pub fn patch(&self, peer: media::PeerId) -> Result<(), ApiError> {
        self.patches_per_resource
            .check(&peer.to_string(), now_ms())
            .map_err(|wait| {
                self.refuse(
                    Limit::PatchesPerResource,
                    "too_many_patches",
                    "this resource received too many PATCH requests in the last minute; \
                     send candidates together",
                    wait,
                )
            })
    }

    /// Counts a refusal that another part (resources table, media engine) decided.
    pub fn count(&self, limit: Limit) {
        self.metrics.limit_hit(limit);
    }

    fn refuse(&self, limit: Limit, code: &'static str, what: &str, wait: Duration) -> ApiError {
        self.metrics.limit_hit(limit);
        // Whole seconds, at least one: Retry-After has second resolution.
        let wait = Duration::from_secs(wait.as_millis().div_ceil(1000).max(1) as u64);
        ApiError::too_many_requests(code, format!("{what}; retry in {} s", wait.as_secs()), wait)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The address the request came from, as the listener accepted it. Behind a reverse proxy
/// this is the proxy: give the proxy its own per-IP limits, or raise ours.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}
