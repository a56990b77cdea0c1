//! Which peer a datagram on the shared UDP port belongs to.
//!
//! A new peer's first datagram is a STUN Binding request whose USERNAME starts with our
//! ufrag for that peer; from then on its source address is known and maps straight to the
//! peer. Both are hash-map lookups: routing costs the same with 10 peers or 10,000.
//!
//! An address is learnt (or moved from one peer to another) only from a request whose
//! MESSAGE-INTEGRITY proves the peer's ICE password. The ufrag alone is no secret: without
//! this check, a request naming any peer's ufrag from a spoofed source would steal that
//! address, and with it every packet the real owner sends (a publisher's media hijacked).
//!
//! With several shards, a datagram may land on a shard that does not own its peer: a STUN
//! request's ufrag names the owner, and an address the owner learnt through this shard's
//! socket is recorded here by the owner's [`ShardMsg::Route`] (see [`crate::shard`]).

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::ids::{PeerId, PeerMap};
use crate::shard::{Shard, ShardMsg, shard_of_ufrag};
use crate::stun;

/// A peer may reach us from a few addresses (several candidate pairs during ICE). More than
/// this is not a real client: stop learning addresses for it.
const MAX_ADDRS_PER_PEER: usize = 8;

/// Where a datagram goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Peer(PeerId),
    /// A peer of another shard: pass the datagram on.
    Shard(usize),
    /// Nobody's: no known address, no known ufrag.
    Unknown,
    /// A STUN request naming a peer's ufrag from an address not yet proven to be that peer's,
    /// without a valid MESSAGE-INTEGRITY: dropped before it can move anything.
    Unauthenticated,
}

struct PeerEntry {
    ufrag: String,
    /// The peer's local ICE password: the MESSAGE-INTEGRITY key of requests sent to it.
    pwd: String,
    /// Proven addresses, each with the shard whose socket receives its datagrams.
    addrs: Vec<(SocketAddr, usize)>,
}

pub struct Demux {
    shard: Shard,
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
    of_peer: PeerMap<PeerEntry>,
    /// Addresses of other shards' peers whose datagrams arrive on this shard's socket.
    /// Bounded: only an owner adds here, at most `MAX_ADDRS_PER_PEER` per peer it owns.
    foreign: HashMap<SocketAddr, usize>,
    /// Route changes to tell other shards, drained by [`Demux::poll_notice`].
    notices: Vec<(usize, ShardMsg)>,
}

impl Default for Demux {
    fn default() -> Self {
        Self::new(Shard::ONLY)
    }
}

impl Demux {
    pub(crate) fn new(shard: Shard) -> Self {
        Self {
            shard,
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            of_peer: PeerMap::default(),
            foreign: HashMap::new(),
            notices: Vec::new(),
        }
    }

    pub fn insert(&mut self, peer: PeerId, local_ufrag: String, local_pwd: String) {
        self.by_ufrag.insert(local_ufrag.clone(), peer);
        self.of_peer.insert(
            peer,
            PeerEntry {
                ufrag: local_ufrag,
                pwd: local_pwd,
                addrs: Vec::new(),
            },
        );
    }

    pub fn remove(&mut self, peer: PeerId) {
        if let Some(entry) = self.of_peer.remove(&peer) {
            self.by_ufrag.remove(&entry.ufrag);
            for (a, via) in entry.addrs {
                if self.by_addr.get(&a) == Some(&peer) {
                    self.by_addr.remove(&a);
                }
                self.notify(via, a, None);
            }
        }
    }

    /// The owner of a peer says where datagrams from `addr` go now.
    pub(crate) fn set_foreign(&mut self, addr: SocketAddr, owner: Option<usize>) {
        match owner {
            Some(owner) if owner != self.shard.index && owner < self.shard.count => {
                self.foreign.insert(addr, owner);
            }
            _ => {
                self.foreign.remove(&addr);
            }
        }
    }

    /// A route change another shard must hear about.
    pub(crate) fn poll_notice(&mut self) -> Option<(usize, ShardMsg)> {
        self.notices.pop()
    }

    fn notify(&mut self, via: usize, addr: SocketAddr, owner: Option<usize>) {
        if via != self.shard.index {
            self.notices.push((via, ShardMsg::Route { addr, owner }));
        }
    }

    /// The peer this datagram is for, learning the source address from an authenticated
    /// STUN request. The HMAC is computed only for a request from an address not yet known
    /// to be this peer's: consent checks on an established path cost a map lookup.
    /// `via`: the shard whose socket received it (this one, unless another passed it on).
    pub fn route(&mut self, source: SocketAddr, datagram: &[u8], via: usize) -> Route {
        if let Some(ufrag) = stun::local_ufrag(datagram) {
            let Some(&peer) = self.by_ufrag.get(ufrag) else {
                return match shard_of_ufrag(ufrag) {
                    Some(s)
                        if s != self.shard.index
                            && s < self.shard.count
                            && via == self.shard.index =>
                    {
                        Route::Shard(s)
                    }
                    _ => Route::Unknown,
                };
            };
            if self.by_addr.get(&source) == Some(&peer) {
                return Route::Peer(peer);
            }
            let proven = self
                .of_peer
                .get(&peer)
                .is_some_and(|e| stun::integrity_matches(datagram, e.pwd.as_bytes()));
            if !proven {
                return Route::Unauthenticated;
            }
            self.learn(peer, source, via);
            return Route::Peer(peer);
        }
        if let Some(&peer) = self.by_addr.get(&source) {
            return Route::Peer(peer);
        }
        match self.foreign.get(&source) {
            // A shard never passes on what another passed to it: no loops.
            Some(&owner) if via == self.shard.index => Route::Shard(owner),
            _ => Route::Unknown,
        }
    }

    /// The peer a STUN request proves it is for (its ufrag names the peer, its
    /// MESSAGE-INTEGRITY the peer's password), without learning the source address: an
    /// ICE-TCP connection is bound to its peer by the connection itself (see
    /// [`crate::tcp_links`]), and its address must not shadow a UDP one.
    pub fn authenticate(&self, datagram: &[u8]) -> Option<PeerId> {
        let ufrag = stun::local_ufrag(datagram)?;
        let peer = *self.by_ufrag.get(ufrag)?;
        let entry = self.of_peer.get(&peer)?;
        stun::integrity_matches(datagram, entry.pwd.as_bytes()).then_some(peer)
    }

    /// Whether a UDP address of the peer is known (it can be reached without TCP).
    pub fn has_udp_path(&self, peer: PeerId) -> bool {
        self.of_peer.get(&peer).is_some_and(|e| !e.addrs.is_empty())
    }

    fn learn(&mut self, peer: PeerId, source: SocketAddr, via: usize) {
        if let Some(&old) = self.by_addr.get(&source) {
            // The address moved to a new peer (a client restarted with the same port): only
            // the holder of the new peer's password gets here.
            if let Some(e) = self.of_peer.get_mut(&old) {
                e.addrs.retain(|(a, _)| *a != source);
            }
            self.by_addr.remove(&source);
        }
        let Some(entry) = self.of_peer.get_mut(&peer) else {
            return;
        };
        if entry.addrs.len() >= MAX_ADDRS_PER_PEER {
            return;
        }
        entry.addrs.push((source, via));
        self.by_addr.insert(source, peer);
        self.notify(via, source, Some(self.shard.index));
    }

    /// Panics unless the three maps agree: every ufrag and address entry names a live peer
    /// whose entry holds it, every address of a peer routes back to it, and no peer holds
    /// more than `MAX_ADDRS_PER_PEER` addresses or one twice. For the fuzz target and tests.
    pub fn assert_consistent(&self) {
        for (ufrag, peer) in &self.by_ufrag {
            let entry = self.of_peer.get(peer).expect("by_ufrag names a live peer");
            assert_eq!(&entry.ufrag, ufrag, "by_ufrag entry of {peer} is its ufrag");
        }
        for (addr, peer) in &self.by_addr {
            let entry = self.of_peer.get(peer).expect("by_addr names a live peer");
            assert!(
                entry.addrs.iter().any(|(a, _)| a == addr),
                "{addr} of {peer} is in its entry"
            );
        }
        for (peer, entry) in &self.of_peer {
            assert!(
                entry.addrs.len() <= MAX_ADDRS_PER_PEER,
                "{peer}: too many addresses"
            );
            for (i, (addr, _)) in entry.addrs.iter().enumerate() {
                assert_eq!(
                    self.by_addr.get(addr),
                    Some(peer),
                    "{addr} routes to {peer}"
                );
                assert!(
                    !entry.addrs[..i].iter().any(|(a, _)| a == addr),
                    "{addr} twice in {peer}"
                );
            }
        }
    }

    #[cfg(test)]
    fn addr_count(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::tests::{binding_request, sign};

    /// A binding request to the peer whose ufrag and password are `<ufrag>` and `pw-<ufrag>`.
    fn stun_with_user(user: &str) -> Vec<u8> {
        let ufrag = user.split(':').next().unwrap_or_default();
        sign(
            binding_request(user.as_bytes()),
            format!("pw-{ufrag}").as_bytes(),
        )
    }

    fn insert(d: &mut Demux, peer: u64, ufrag: &str) {
        d.insert(PeerId(peer), ufrag.into(), format!("pw-{ufrag}"));
    }

    fn peer(id: u64) -> Route {
        Route::Peer(PeerId(id))
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn stun_then_address() {
        let mut d = Demux::default();
        insert(&mut d, 1, "aaaa");
        insert(&mut d, 2, "bbbb");
        assert_eq!(d.route(addr(5000), b"\x80\x60rtp", 0), Route::Unknown);
        assert_eq!(d.route(addr(5000), &stun_with_user("bbbb:x"), 0), peer(2));
        assert_eq!(d.route(addr(5000), b"\x80\x60rtp", 0), peer(2));
        assert_eq!(
            d.route(addr(5001), &stun_with_user("zzzz:x"), 0),
            Route::Unknown
        );
    }

    #[test]
    fn removal_forgets_everything() {
        let mut d = Demux::default();
        insert(&mut d, 1, "aaaa");
        d.route(addr(1), &stun_with_user("aaaa:x"), 0);
        d.remove(PeerId(1));
        assert_eq!(d.route(addr(1), b"\x80rtp", 0), Route::Unknown);
        assert_eq!(
            d.route(addr(1), &stun_with_user("aaaa:x"), 0),
            Route::Unknown
        );
        assert_eq!(d.addr_count(), 0);
    }

    #[test]
    fn addresses_per_peer_are_bounded() {
        let mut d = Demux::default();
        insert(&mut d, 1, "aaaa");
        for port in 0..100 {
            d.route(addr(port), &stun_with_user("aaaa:x"), 0);
        }
        assert_eq!(d.addr_count(), MAX_ADDRS_PER_PEER);
    }

    #[test]
    fn address_moves_to_new_peer() {
        let mut d = Demux::default();
        insert(&mut d, 1, "aaaa");
        insert(&mut d, 2, "bbbb");
        d.route(addr(9), &stun_with_user("aaaa:x"), 0);
        d.route(addr(9), &stun_with_user("bbbb:x"), 0);
        assert_eq!(d.route(addr(9), b"\x80rtp", 0), peer(2));
        d.remove(PeerId(1));
        assert_eq!(d.route(addr(9), b"\x80rtp", 0), peer(2));
    }

    /// The hijack: a request naming another peer's ufrag, from the publisher's (spoofed)
    /// address, with no or a wrong MESSAGE-INTEGRITY. The publisher keeps its address.
    #[test]
    fn unauthenticated_request_never_moves_an_address() {
        let mut d = Demux::default();
        insert(&mut d, 1, "publ");
        insert(&mut d, 2, "attk");
        assert_eq!(d.route(addr(7), &stun_with_user("publ:x"), 0), peer(1));
        let unsigned = binding_request(b"attk:x");
        let wrong_key = sign(binding_request(b"attk:x"), b"pw-publ");
        for forged in [unsigned, wrong_key] {
            assert_eq!(d.route(addr(7), &forged, 0), Route::Unauthenticated);
            assert_eq!(d.route(addr(7), b"\x80\x60rtp", 0), peer(1));
        }
        // Nor does an unknown address get learnt from one.
        assert_eq!(
            d.route(addr(8), &binding_request(b"publ:x"), 0),
            Route::Unauthenticated
        );
        assert_eq!(d.route(addr(8), b"\x80\x60rtp", 0), Route::Unknown);
        assert_eq!(d.addr_count(), 1);
    }

    #[test]
    fn authenticate_proves_without_learning() {
        let mut d = Demux::default();
        insert(&mut d, 1, "aaaa");
        assert_eq!(d.authenticate(&stun_with_user("aaaa:x")), Some(PeerId(1)));
        assert_eq!(d.authenticate(&binding_request(b"aaaa:x")), None);
        assert_eq!(d.authenticate(&stun_with_user("zzzz:x")), None);
        assert_eq!(d.authenticate(b"\x80\x60rtp"), None);
        assert_eq!(d.addr_count(), 0);
        assert!(!d.has_udp_path(PeerId(1)));
    }

    /// Consent checks on the proven path are routed without an HMAC (str0m checks them).
    #[test]
    fn known_path_routes_without_recheck() {
        let mut d = Demux::default();
        insert(&mut d, 1, "aaaa");
        d.route(addr(3), &stun_with_user("aaaa:x"), 0);
        assert_eq!(d.route(addr(3), &binding_request(b"aaaa:x"), 0), peer(1));
    }

    /// A peer of shard 1 whose datagrams land on shard 0's socket: its first request is passed
    /// on by ufrag, the owner tells shard 0 the address once proven, and shard 0 forgets it
    /// when the peer goes. A passed-on datagram is never passed on again.
    #[test]
    fn datagrams_on_the_wrong_shard_reach_the_owner() {
        let two = |index| Shard { index, count: 2 };
        let (mut s0, mut s1) = (Demux::new(two(0)), Demux::new(two(1)));
        let ufrag = two(1).ufrag("abcdefgh");
        s1.insert(PeerId(1), ufrag.clone(), format!("pw-{ufrag}"));
        let request = stun_with_user(&format!("{ufrag}:x"));
        assert_eq!(s0.route(addr(5), b"\x80\x60rtp", 0), Route::Unknown);
        assert_eq!(s0.route(addr(5), &request, 0), Route::Shard(1));
        assert_eq!(s1.route(addr(5), &request, 0), peer(1));
        let Some((0, ShardMsg::Route { addr: a, owner })) = s1.poll_notice() else {
            panic!("owner did not tell the receiving shard");
        };
        s0.set_foreign(a, owner);
        assert_eq!(s0.route(addr(5), b"\x80\x60rtp", 0), Route::Shard(1));
        // Only the receiving shard passes on; the owner routes by address.
        assert_eq!(s0.route(addr(5), b"\x80\x60rtp", 1), Route::Unknown);
        assert_eq!(s1.route(addr(5), b"\x80\x60rtp", 0), peer(1));
        // A request naming a shard that does not exist is nobody's.
        let bogus = stun_with_user(&format!(
            "{}:x",
            Shard {
                index: 9,
                count: 10
            }
            .ufrag("zz")
        ));
        assert_eq!(s0.route(addr(6), &bogus, 0), Route::Unknown);
        s1.remove(PeerId(1));
        let Some((
            0,
            ShardMsg::Route {
                addr: a,
                owner: None,
            },
        )) = s1.poll_notice()
        else {
            panic!("owner did not withdraw the route");
        };
        s0.set_foreign(a, None);
        assert_eq!(s0.route(addr(5), b"\x80\x60rtp", 0), Route::Unknown);
    }
}
