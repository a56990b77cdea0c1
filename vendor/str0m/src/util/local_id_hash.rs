//! Floorcast patch: a multiplicative hasher for maps keyed by ids this side chose itself
//! (the SSRCs of our own send streams). Those keys cannot be picked by a remote, so SipHash's
//! flooding resistance buys nothing, and the lookup runs once per written packet.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub(crate) struct LocalIdHasher(u64);

pub(crate) type LocalIdBuild = BuildHasherDefault<LocalIdHasher>;

impl Hasher for LocalIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        let h = (self.0 ^ n ^ (n >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}
