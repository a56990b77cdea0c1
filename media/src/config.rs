use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::tap::AudioTap;
use crate::tcp::{TcpLimits, TcpListen};

/// Settings of the media engine. The server builds this from its own config; this crate never
/// reads files or the environment.
#[derive(Clone, Debug)]
pub struct MediaConfig {
    /// The one UDP address every WebRTC peer of this node uses. Port 0 picks a free port.
    pub udp_addr: SocketAddr,
    /// Media threads, each owning its peers on its own socket of the one port (see
    /// [`crate::shard`]); 1 to [`crate::MAX_SHARDS`].
    pub shards: usize,
    /// Send a peer's equal-size datagrams of one loop turn as one UDP GSO message (Linux
    /// 4.18+; without kernel support this falls back to one datagram per message).
    pub udp_gso: bool,
    /// Forwarded media leaves through our own egress (header template, SRTP with the keys
    /// str0m negotiated, NACKs answered from a per-source history: see
    /// [`crate::viewer_egress`]) instead of each viewer's str0m send stream.
    pub app_egress: bool,
    /// Where ICE-TCP (RFC 6544 passive candidates) listens, for clients whose UDP is blocked.
    pub tcp: TcpListen,
    /// What one ICE-TCP client, and all of them, may hold.
    pub tcp_limits: TcpLimits,
    /// Addresses announced as host candidates. Empty: the bound address, or when that is
    /// unspecified (0.0.0.0), the address of the interface that routes outward.
    pub public_ips: Vec<IpAddr>,
    /// The smallest interval between two keyframe requests sent to one publisher track.
    pub keyframe_min_interval: Duration,
    /// Peers (publishers + viewers) this node accepts before refusing new ones.
    pub max_peers: usize,
    /// Peers one session may have, so one crowded (or flooded) session cannot take every
    /// slot of the node from the others.
    pub max_peers_per_session: usize,
    /// Remote ICE candidates one peer may trickle; a real client sends a handful.
    pub max_remote_candidates: usize,
    /// The smallest interval between two keyframe requests one viewer may cause: its PLIs
    /// and FIRs in between are counted and dropped, so one viewer cannot make the publisher
    /// send keyframes (and lower the quality) for everyone.
    pub viewer_keyframe_interval: Duration,
    /// A peer that has not completed ICE + DTLS by then is dropped.
    pub connect_timeout: Duration,
    /// Where each session's current audio is copied (see [`crate::tap`]); `None`: nowhere.
    pub audio_tap: Option<AudioTap>,
}

impl MediaConfig {
    /// One shard per core the process may use.
    pub fn default_shards() -> usize {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(crate::MAX_SHARDS)
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            udp_addr: SocketAddr::from(([0, 0, 0, 0], 40000)),
            shards: Self::default_shards(),
            udp_gso: true,
            app_egress: true,
            tcp: TcpListen::SameAsUdp,
            tcp_limits: TcpLimits::default(),
            public_ips: Vec::new(),
            keyframe_min_interval: Duration::from_millis(300),
            max_peers: 10_000,
            max_peers_per_session: 5_000,
            max_remote_candidates: 32,
            viewer_keyframe_interval: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(20),
            audio_tap: None,
        }
    }
}
