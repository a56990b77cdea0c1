//! Which peer a datagram on the shared UDP port belongs to.
//!
//! A new peer's first datagram is a STUN Binding request whose USERNAME starts with our
//! ufrag for that peer; from then on its source address is known and maps straight to the
//! peer. Both are hash-map lookups: routing costs the same with 10 peers or 10,000.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::ids::PeerId;
use crate::stun;

/// A peer may reach us from a few addresses (several candidate pairs during ICE). More than
/// this is not a real client: stop learning addresses for it.
const MAX_ADDRS_PER_PEER: usize = 8;

#[derive(Default)]
pub(crate) struct Demux {
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
    of_peer: HashMap<PeerId, (String, Vec<SocketAddr>)>,
}

impl Demux {
    pub fn insert(&mut self, peer: PeerId, local_ufrag: String) {
        self.by_ufrag.insert(local_ufrag.clone(), peer);
        self.of_peer.insert(peer, (local_ufrag, Vec::new()));
    }

    pub fn remove(&mut self, peer: PeerId) {
        if let Some((ufrag, addrs)) = self.of_peer.remove(&peer) {
            self.by_ufrag.remove(&ufrag);
            for a in addrs {
                if self.by_addr.get(&a) == Some(&peer) {
                    self.by_addr.remove(&a);
                }
            }
        }
    }

    /// The peer this datagram is for, learning the source address from a STUN request.
    pub fn route(&mut self, source: SocketAddr, datagram: &[u8]) -> Option<PeerId> {
        if let Some(ufrag) = stun::local_ufrag(datagram) {
            let peer = *self.by_ufrag.get(ufrag)?;
            self.learn(peer, source);
            return Some(peer);
        }
        self.by_addr.get(&source).copied()
    }

    fn learn(&mut self, peer: PeerId, source: SocketAddr) {
        match self.by_addr.get(&source) {
            Some(p) if *p == peer => return,
            // The address moved to a new peer (a client restarted with the same port).
            Some(old) => {
                let old = *old;
                if let Some((_, addrs)) = self.of_peer.get_mut(&old) {
                    addrs.retain(|a| *a != source);
                }
            }
            None => {}
        }
        let Some((_, addrs)) = self.of_peer.get_mut(&peer) else {
            return;
        };
        if addrs.len() >= MAX_ADDRS_PER_PEER {
            return;
        }
        addrs.push(source);
        self.by_addr.insert(source, peer);
    }

    #[cfg(test)]
    fn addr_count(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_with_user(user: &str) -> Vec<u8> {
        let mut attrs = vec![0x00, 0x06];
        attrs.extend_from_slice(&(user.len() as u16).to_be_bytes());
        attrs.extend_from_slice(user.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        m.extend_from_slice(&[0; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn stun_then_address() {
        let mut d = Demux::default();
        d.insert(PeerId(1), "aaaa".into());
        d.insert(PeerId(2), "bbbb".into());
        assert_eq!(d.route(addr(5000), b"\x80\x60rtp"), None);
        assert_eq!(
            d.route(addr(5000), &stun_with_user("bbbb:x")),
            Some(PeerId(2))
        );
        assert_eq!(d.route(addr(5000), b"\x80\x60rtp"), Some(PeerId(2)));
        assert_eq!(d.route(addr(5001), &stun_with_user("zzzz:x")), None);
    }

    #[test]
    fn removal_forgets_everything() {
        let mut d = Demux::default();
        d.insert(PeerId(1), "aaaa".into());
        d.route(addr(1), &stun_with_user("aaaa:x"));
        d.remove(PeerId(1));
        assert_eq!(d.route(addr(1), b"\x80rtp"), None);
        assert_eq!(d.route(addr(1), &stun_with_user("aaaa:x")), None);
        assert_eq!(d.addr_count(), 0);
    }

    #[test]
    fn addresses_per_peer_are_bounded() {
        let mut d = Demux::default();
        d.insert(PeerId(1), "aaaa".into());
        for port in 0..100 {
            d.route(addr(port), &stun_with_user("aaaa:x"));
        }
        assert_eq!(d.addr_count(), MAX_ADDRS_PER_PEER);
    }

    #[test]
    fn address_moves_to_new_peer() {
        let mut d = Demux::default();
        d.insert(PeerId(1), "aaaa".into());
        d.insert(PeerId(2), "bbbb".into());
        d.route(addr(9), &stun_with_user("aaaa:x"));
        d.route(addr(9), &stun_with_user("bbbb:x"));
        assert_eq!(d.route(addr(9), b"\x80rtp"), Some(PeerId(2)));
        d.remove(PeerId(1));
        assert_eq!(d.route(addr(9), b"\x80rtp"), Some(PeerId(2)));
    }
}
