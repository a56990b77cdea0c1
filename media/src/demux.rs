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

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::ids::PeerId;
use crate::stun;

/// A peer may reach us from a few addresses (several candidate pairs during ICE). More than
/// this is not a real client: stop learning addresses for it.
const MAX_ADDRS_PER_PEER: usize = 8;

/// Where a datagram goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Peer(PeerId),
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
    addrs: Vec<SocketAddr>,
}

#[derive(Default)]
pub struct Demux {
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
    of_peer: HashMap<PeerId, PeerEntry>,
}

impl Demux {
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
            for a in entry.addrs {
                if self.by_addr.get(&a) == Some(&peer) {
                    self.by_addr.remove(&a);
                }
            }
        }
    }

    /// The peer this datagram is for, learning the source address from an authenticated
    /// STUN request. The HMAC is computed only for a request from an address not yet known
    /// to be this peer's: consent checks on an established path cost a map lookup.
    pub fn route(&mut self, source: SocketAddr, datagram: &[u8]) -> Route {
        if let Some(ufrag) = stun::local_ufrag(datagram) {
            let Some(&peer) = self.by_ufrag.get(ufrag) else {
                return Route::Unknown;
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
            self.learn(peer, source);
            return Route::Peer(peer);
        }
        match self.by_addr.get(&source) {
            Some(&peer) => Route::Peer(peer),
            None => Route::Unknown,
        }
    }

    fn learn(&mut self, peer: PeerId, source: SocketAddr) {
        if let Some(&old) = self.by_addr.get(&source) {
            // The address moved to a new peer (a client restarted with the same port): only
            // the holder of the new peer's password gets here.
            if let Some(e) = self.of_peer.get_mut(&old) {
                e.addrs.retain(|a| *a != source);
            }
            self.by_addr.remove(&source);
        }
        let Some(entry) = self.of_peer.get_mut(&peer) else {
            return;
        };
        if entry.addrs.len() >= MAX_ADDRS_PER_PEER {
            return;
        }
        entry.addrs.push(source);
        self.by_addr.insert(source, peer);
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
                entry.addrs.contains(addr),
                "{addr} of {peer} is in its entry"
            );
        }
        for (peer, entry) in &self.of_peer {
            assert!(
                entry.addrs.len() <= MAX_ADDRS_PER_PEER,
                "{peer}: too many addresses"
            );
            for (i, addr) in entry.addrs.iter().enumerate() {
                assert_eq!(
                    self.by_addr.get(addr),
                    Some(peer),
                    "{addr} routes to {peer}"
                );
                assert!(!entry.addrs[..i].contains(addr), "{addr} twice in {peer}");
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
        assert_eq!(d.route(addr(5000), b"\x80\x60rtp"), Route::Unknown);
        assert_eq!(d.route(addr(5000), &stun_with_user("bbbb:x")), peer(2));
        assert_eq!(d.route(addr(5000), b"\x80\x60rtp"), peer(2));
        assert_eq!(
            d.route(addr(5001), &stun_with_user("zzzz:x")),
            Route::Unknown
        );
    }

    #[test]
    fn removal_forgets_everything() {
        let mut d = Demux::default();
        insert(&mut d, 1, "aaaa");
        d.route(addr(1), &stun_with_user("aaaa:x"));
        d.remove(PeerId(1));
        assert_eq!(d.route(addr(1), b"\x80rtp"), Route::Unknown);
        assert_eq!(d.route(addr(1), &stun_with_user("aaaa:x")), Route::Unknown);
        assert_eq!(d.addr_count(), 0);
    }

    #[test]
    fn addresses_per_peer_are_bounded() {
        let mut d = Demux::default();
        insert(&mut d, 1, "aaaa");
        for port in 0..100 {
            d.route(addr(port), &stun_with_user("aaaa:x"));
        }
        assert_eq!(d.addr_count(), MAX_ADDRS_PER_PEER);
    }

    #[test]
    fn address_moves_to_new_peer() {
        let mut d = Demux::default();
        insert(&mut d, 1, "aaaa");
        insert(&mut d, 2, "bbbb");
        d.route(addr(9), &stun_with_user("aaaa:x"));
        d.route(addr(9), &stun_with_user("bbbb:x"));
        assert_eq!(d.route(addr(9), b"\x80rtp"), peer(2));
        d.remove(PeerId(1));
        assert_eq!(d.route(addr(9), b"\x80rtp"), peer(2));
    }

    /// The hijack: a request naming another peer's ufrag, from the publisher's (spoofed)
    /// address, with no or a wrong MESSAGE-INTEGRITY. The publisher keeps its address.
    #[test]
    fn unauthenticated_request_never_moves_an_address() {
        let mut d = Demux::default();
        insert(&mut d, 1, "publ");
        insert(&mut d, 2, "attk");
        assert_eq!(d.route(addr(7), &stun_with_user("publ:x")), peer(1));
        let unsigned = binding_request(b"attk:x");
        let wrong_key = sign(binding_request(b"attk:x"), b"pw-publ");
        for forged in [unsigned, wrong_key] {
            assert_eq!(d.route(addr(7), &forged), Route::Unauthenticated);
            assert_eq!(d.route(addr(7), b"\x80\x60rtp"), peer(1));
        }
        // Nor does an unknown address get learnt from one.
        assert_eq!(
            d.route(addr(8), &binding_request(b"publ:x")),
            Route::Unauthenticated
        );
        assert_eq!(d.route(addr(8), b"\x80\x60rtp"), Route::Unknown);
        assert_eq!(d.addr_count(), 1);
    }

    /// Consent checks on the proven path are routed without an HMAC (str0m checks them).
    #[test]
    fn known_path_routes_without_recheck() {
        let mut d = Demux::default();
        insert(&mut d, 1, "aaaa");
        d.route(addr(3), &stun_with_user("aaaa:x"));
        assert_eq!(d.route(addr(3), &binding_request(b"aaaa:x")), peer(1));
    }
}
