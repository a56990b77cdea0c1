//! Identifiers shared between the SFU core and its callers.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A conference session (one room). Cheap to clone: the id is shared, never copied per packet.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

/// One WebRTC peer connection of the SFU (a publisher or a viewer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A map keyed by peer, hashed by one multiplication. Peer ids are assigned by the SFU, never
/// chosen by a remote, so SipHash's flooding resistance buys nothing here, while the lookup
/// runs once per forwarded packet per viewer.
pub type PeerMap<V> = HashMap<PeerId, V, BuildHasherDefault<PeerIdHasher>>;

/// The hasher of [`PeerMap`]: Fibonacci hashing of the folded id.
#[derive(Default, Clone, Copy)]
pub struct PeerIdHasher(u64);

impl Hasher for PeerIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Folded before and after so the shard index in the top byte reaches the low bits,
        // which pick the bucket.
        let h = (self.0 ^ n ^ (n >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}

impl std::str::FromStr for PeerId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(PeerId)
    }
}

/// What a peer does in its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Publishes the room's floor feed (venue mixer, OBS, GStreamer).
    Floor,
    /// A remote participant who holds the floor and publishes their own media.
    Speaker,
    /// Receives the session's media.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Floor => "floor",
            Role::Speaker => "speaker",
            Role::Viewer => "viewer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn peer_ids_that_differ_only_in_the_shard_byte_hash_apart_in_the_low_bits() {
        let build = BuildHasherDefault::<PeerIdHasher>::default();
        let low = |id: u64| build.hash_one(PeerId(id)) & 0xffff;
        let ids = (0..8u64).map(|shard| low(0x1234_5678 | (shard << 56)));
        let distinct: std::collections::HashSet<u64> = ids.collect();
        assert_eq!(distinct.len(), 8);
    }
}
