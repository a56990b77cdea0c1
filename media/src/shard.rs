//! Shards: the media engine on every core.
//!
//! Each shard is one thread with its own `Sfu`, its own peers and its own socket; all the
//! sockets share the one media port (`SO_REUSEPORT`), so clients see one address. What a
//! shard needs from another travels as a [`ShardMsg`] over a bounded channel, never through
//! a lock on the hot path:
//!
//! - **Who owns a peer is written in its ids.** A peer's [`PeerId`] and its ICE ufrag both
//!   carry its shard, so the HTTP side routes a PATCH/DELETE, and any shard routes a new
//!   peer's first STUN request, without asking anyone.
//! - **A datagram on the wrong socket** (the kernel picks the socket by hashing the client's
//!   address, not by owner) is passed to the owner once ([`ShardMsg::Datagram`]). When the
//!   owner learns that address it tells the receiving shard ([`ShardMsg::Route`]), so later
//!   datagrams cost one map lookup there, not a search.
//! - **A session has a home shard** ([`home_shard`]) holding its publishers and deciding what
//!   its viewers receive. Its viewers are spread over every shard; the home sends each
//!   publisher packet once to each shard that has viewers ([`ShardMsg::Media`], one `Arc`
//!   shared by all of them), and each shard writes it to its own viewers.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::forward::rewrite::SourceKey;
use crate::handle::Follow;
use crate::ids::{PeerId, SessionId};
use crate::peer::FwdCodec;
use crate::tcp::TcpWriter;

/// Shards are at most this many: the shard index lives in the top byte of a [`PeerId`] and
/// viewer interest is a 64-bit mask.
pub const MAX_SHARDS: usize = 64;

/// Where this shard stands among the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The only shard of a one-thread engine (and of the virtual-time tests).
    pub const ONLY: Shard = Shard { index: 0, count: 1 };

    pub fn is_home_of(self, session: &SessionId) -> bool {
        home_shard(session, self.count) == self.index
    }

    /// A peer id of this shard from 56 random bits.
    pub fn peer_id(self, random: u64) -> PeerId {
        PeerId((random & PEER_BITS) | ((self.index as u64) << 56))
    }

    /// An ICE ufrag that names this shard: two hex digits, then str0m's random ufrag.
    pub fn ufrag(self, random: &str) -> String {
        format!("{:02x}{random}", self.index)
    }
}

const PEER_BITS: u64 = (1 << 56) - 1;

/// The shard owning a peer (from its id).
pub(crate) fn shard_of_peer(peer: PeerId) -> usize {
    (peer.0 >> 56) as usize
}

/// The shard named by a ufrag [`Shard::ufrag`] made, if it names one.
pub(crate) fn shard_of_ufrag(ufrag: &str) -> Option<usize> {
    let digits = ufrag.get(..2)?;
    usize::from_str_radix(digits, 16).ok()
}

/// The shard holding a session's publishers. A stable function of the id (not of the process's
/// random hash keys): the HTTP side and every shard compute the same answer.
pub fn home_shard(session: &SessionId, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    // `DefaultHasher::new()` is SipHash with fixed keys: stable within a build.
    let mut h = std::hash::DefaultHasher::new();
    session.as_str().hash(&mut h);
    (h.finish() % count as u64) as usize
}

/// One publisher packet on its way to a session's viewers: what the home shard decided, and
/// what every shard needs to write it to its own viewers.
pub(crate) struct Relayed {
    pub session: SessionId,
    pub source: SourceKey,
    pub codec: FwdCodec,
    pub keyframe: bool,
    /// For viewers of what the session shows now (`Follow::Current`).
    pub to_current: bool,
    /// For viewers of the floor feed only (`Follow::Floor`).
    pub to_floor: bool,
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Arc<[u8]>,
    /// Opus only: the payload as RED (RFC 2198) with the packet before, for viewers that
    /// negotiated it ([`crate::forward::red`]).
    pub red: Option<Arc<[u8]>>,
}

impl Relayed {
    pub fn source_peer(&self) -> PeerId {
        PeerId(self.source.peer)
    }
}

/// What one shard asks of another.
pub(crate) enum ShardMsg {
    /// A datagram that arrived on the sender's socket for a peer of the receiver.
    Datagram {
        via: usize,
        source: SocketAddr,
        destination: SocketAddr,
        data: Box<[u8]>,
    },
    /// From a peer's owner to the shard whose socket receives its datagrams: datagrams from
    /// `addr` go to `owner` (`None`: to nobody any more).
    Route {
        addr: SocketAddr,
        owner: Option<usize>,
    },
    /// A publisher packet for the receiver's viewers.
    Media(Arc<Relayed>),
    /// From the ICE-TCP thread ([`crate::tcp`]): a connection whose first STUN request names
    /// a peer of the receiver; `writer` takes the datagrams to send on it.
    TcpOpen {
        remote: SocketAddr,
        writer: TcpWriter,
    },
    /// A frame read from such a connection; `local` is our candidate address it reached.
    TcpFrame {
        remote: SocketAddr,
        local: SocketAddr,
        data: Box<[u8]>,
    },
    /// The connection is gone.
    TcpClosed { remote: SocketAddr },
    /// To a session's home: the sender has (or no longer has) viewers of the session.
    Interest {
        session: SessionId,
        shard: usize,
        viewers: bool,
    },
    /// To a session's home: viewers following `follow` need a keyframe (one joined, or asked).
    Keyframe { session: SessionId, follow: Follow },
    /// To a publisher's owner: viewers elsewhere wait for a keyframe of this publisher.
    KeyframeFrom { peer: PeerId },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_their_shard() {
        for index in [0, 1, 7, MAX_SHARDS - 1] {
            let shard = Shard {
                index,
                count: MAX_SHARDS,
            };
            assert_eq!(shard_of_peer(shard.peer_id(u64::MAX)), index);
            assert_eq!(shard_of_peer(shard.peer_id(0x1234)), index);
            assert_eq!(
                shard_of_ufrag(&shard.ufrag("abcdEFGH12345678")),
                Some(index)
            );
        }
        assert_eq!(shard_of_ufrag("zz12"), None);
        assert_eq!(shard_of_ufrag("é"), None);
    }

    #[test]
    fn home_is_stable_and_spreads_sessions() {
        let ids: Vec<SessionId> = (0..64)
            .map(|i| SessionId::new(format!("room-{i}")))
            .collect();
        let mut per_shard = [0; 4];
        for id in &ids {
            let home = home_shard(id, 4);
            assert_eq!(home, home_shard(&SessionId::new(id.as_str()), 4));
            per_shard[home] += 1;
        }
        assert!(per_shard.iter().all(|&n| n > 4), "{per_shard:?}");
        assert_eq!(home_shard(&ids[3], 1), 0);
    }
}
