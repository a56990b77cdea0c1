//! The Floorcast SFU: every WebRTC peer of a node on one UDP port, RTP forwarded without
//! transcoding from a session's publishers to its viewers.
//!
//! Why it is built this way:
//! - **One socket, one owner.** Venue firewalls and Kubernetes give us one media port. The
//!   driver thread ([`driver`]) owns that socket and every peer; datagrams are routed to a peer
//!   by ICE username fragment (new peers) or remote address (known ones) in [`demux`], by map
//!   lookup, never by asking each peer.
//! - **Sans-I/O core.** Each peer is a str0m `Rtc` in RTP mode: we feed it datagrams and time,
//!   and drain `poll_output` until it gives a timeout. The SFU logic ([`sfu`]) never reads the
//!   clock or a socket, so it is testable on virtual time.
//! - **Forwarding without allocation per copy.** A publisher's payload is one `Arc<[u8]>`
//!   shared by all viewers; the per-viewer work is the header rewrite ([`forward::rewrite`]),
//!   which keeps each viewer's sequence numbers and timestamps continuous across publisher
//!   restarts so players never renegotiate.
//! - **ICE-TCP beside UDP** ([`tcp`]): clients behind firewalls that pass only TCP reach
//!   the same peers through RFC 6544 passive candidates; their frames enter the owning
//!   shard's queue like a datagram passed between shards, and the core answers on the
//!   connection through a bounded queue that drops rather than blocks.
//! - **The HTTP side talks to it only through [`MediaHandle`]** (bounded channel, oneshot
//!   reply). A full channel is an `Overloaded` error, never an unbounded queue.
//! - **Live captions touch the loop twice, both bounded and non-blocking.** The [`tap`] copies
//!   each session's current audio (once per packet, not per viewer) to a consumer off the
//!   media thread; [`MediaHandle::send_captions`] writes caption text to viewers that opened a
//!   `captions` data channel. A slow consumer or a full queue loses captions, never media.

mod config;
mod demux;
mod driver;
mod error;
mod fan_out;
pub mod forward;
pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod ids;
mod peer;
mod runtime_thread;
pub mod sdp_check;
mod send_batch;
mod sfu;
#[cfg(test)]
mod sfu_tests;
mod shard;
pub mod stats;
pub mod stun;
pub mod tap;
mod tcp;
mod tcp_links;
mod viewer_egress;

pub use config::MediaConfig;
pub use error::MediaError;
pub use handle::{Answer, Follow, MediaEvent, MediaHandle, Takeover};
pub use ids::{PeerId, Role, SessionId};
pub use shard::MAX_SHARDS;
pub use stats::{
    FORWARD_LATENCY_BUCKETS_US, Kind, LatencyHistogram, MediaStats, SessionCounts, ViewerLink,
};
pub use tap::{AudioTap, TapPacket};
pub use tcp::{TcpLimits, TcpListen};

/// Binds the media socket and starts the driver thread.
pub fn start(config: MediaConfig) -> Result<MediaHandle, MediaError> {
    driver::start(config)
}
