//! The ICE-TCP connections a shard owns, as its core sees them: which peer each one is bound
//! to. Pure bookkeeping; the sockets live in [`crate::tcp`].
//!
//! A connection is bound to a peer by its first frame, a STUN request that proves the peer's
//! password ([`crate::demux::Demux::authenticate`]); every later frame on it goes to that
//! peer, so TCP routing is one map lookup by remote address, as for UDP. Anything else as a
//! first frame closes the connection: a stranger gets no second try on the same socket.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::ids::{PeerId, PeerMap};

#[derive(Default)]
pub(crate) struct TcpLinks {
    /// Every open connection of this shard, by remote address; `None` until bound.
    by_remote: HashMap<SocketAddr, Option<PeerId>>,
    of_peer: PeerMap<Vec<SocketAddr>>,
    /// Connections the core wants closed, drained by the driver.
    closing: Vec<SocketAddr>,
}

/// What a frame on a connection is for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LinkRoute {
    Peer(PeerId),
    /// Not bound yet: the frame must prove a peer.
    Unbound,
    /// No such connection (closed meanwhile).
    Unknown,
}

impl TcpLinks {
    pub fn opened(&mut self, remote: SocketAddr) {
        self.by_remote.insert(remote, None);
    }

    pub fn route(&self, remote: SocketAddr) -> LinkRoute {
        match self.by_remote.get(&remote) {
            Some(Some(peer)) => LinkRoute::Peer(*peer),
            Some(None) => LinkRoute::Unbound,
            None => LinkRoute::Unknown,
        }
    }

    pub fn bind(&mut self, remote: SocketAddr, peer: PeerId) {
        if let Some(slot) = self.by_remote.get_mut(&remote) {
            *slot = Some(peer);
            self.of_peer.entry(peer).or_default().push(remote);
        }
    }

    /// The connection is gone (the remote closed it, or it failed). Returns the peer it
    /// served and whether that peer has any connection left.
    pub fn closed(&mut self, remote: SocketAddr) -> Option<(PeerId, bool)> {
        let peer = self.by_remote.remove(&remote)??;
        let left = match self.of_peer.get_mut(&peer) {
            Some(links) => {
                links.retain(|r| *r != remote);
                !links.is_empty()
            }
            None => false,
        };
        if !left {
            self.of_peer.remove(&peer);
        }
        Some((peer, left))
    }

    /// Closes a connection from this side.
    pub fn close(&mut self, remote: SocketAddr) {
        self.closed(remote);
        self.closing.push(remote);
    }

    /// The peer is gone: its connections are closed too.
    pub fn peer_removed(&mut self, peer: PeerId) {
        for remote in self.of_peer.remove(&peer).unwrap_or_default() {
            self.by_remote.remove(&remote);
            self.closing.push(remote);
        }
    }

    pub fn poll_close(&mut self) -> Option<SocketAddr> {
        self.closing.pop()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_remote.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn bound_connections_route_to_their_peer() {
        let mut l = TcpLinks::default();
        assert_eq!(l.route(addr(1)), LinkRoute::Unknown);
        l.opened(addr(1));
        assert_eq!(l.route(addr(1)), LinkRoute::Unbound);
        l.bind(addr(1), PeerId(7));
        assert_eq!(l.route(addr(1)), LinkRoute::Peer(PeerId(7)));
        // Binding a connection that is not open does nothing.
        l.bind(addr(2), PeerId(7));
        assert_eq!(l.route(addr(2)), LinkRoute::Unknown);
    }

    #[test]
    fn closing_tells_whether_the_peer_has_links_left() {
        let mut l = TcpLinks::default();
        for port in [1, 2] {
            l.opened(addr(port));
            l.bind(addr(port), PeerId(7));
        }
        l.opened(addr(3));
        assert_eq!(l.closed(addr(1)), Some((PeerId(7), true)));
        assert_eq!(l.closed(addr(2)), Some((PeerId(7), false)));
        assert_eq!(l.closed(addr(3)), None);
        assert_eq!(l.closed(addr(3)), None);
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn a_removed_peer_closes_its_connections() {
        let mut l = TcpLinks::default();
        for port in [1, 2] {
            l.opened(addr(port));
            l.bind(addr(port), PeerId(7));
        }
        l.opened(addr(3));
        l.peer_removed(PeerId(7));
        let mut closing: Vec<_> = std::iter::from_fn(|| l.poll_close()).collect();
        closing.sort();
        assert_eq!(closing, vec![addr(1), addr(2)]);
        assert_eq!(l.route(addr(1)), LinkRoute::Unknown);
        assert_eq!(l.route(addr(3)), LinkRoute::Unbound);
        l.close(addr(3));
        assert_eq!(l.poll_close(), Some(addr(3)));
        assert_eq!(l.len(), 0);
    }
}
