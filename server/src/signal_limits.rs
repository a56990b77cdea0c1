//! What one client may do to the signalling endpoints, so that one token or one address
//! cannot spend the node's media thread or peer slots for everyone else: WHIP/WHEP creations
//! per minute per token and per IP, trickle PATCHes per minute per resource. (Resources held
//! at once per token are counted in [`crate::peer_resources`]; peers per session and per node,
//! and candidates per peer, in the media engine.) Each refusal is a [`LimitRefusal`] (the
//! HTTP side answers it 429 with `Retry-After`) and a count in
//! `floorcast_limit_refusals_total{limit}`. No HTTP here: `state` holds the limits below the
//! signalling routes that use them.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::floor::rate_limit::RateLimiter;
use crate::metrics::{Limit, Metrics};

/// A request refused by a limit: what to tell the client, and when it may try again.
#[derive(Debug, thiserror::Error)]
#[error("{what}; retry in {} s", retry_after.as_secs())]
pub struct LimitRefusal {
    /// The error code the client sees (`too_many_creations`, `too_many_patches`).
    pub code: &'static str,
    what: &'static str,
    /// Whole seconds, at least one: `Retry-After` has second resolution.
    pub retry_after: Duration,
}

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
    pub fn creation(&self, sub: &str, ip: Option<IpAddr>) -> Result<(), LimitRefusal> {
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
    pub fn patch(&self, peer: media::PeerId) -> Result<(), LimitRefusal> {
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

    fn refuse(
        &self,
        limit: Limit,
        code: &'static str,
        what: &'static str,
        wait: Duration,
    ) -> LimitRefusal {
        self.metrics.limit_hit(limit);
        LimitRefusal {
            code,
            what,
            retry_after: Duration::from_secs(wait.as_millis().div_ceil(1000).max(1) as u64),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
