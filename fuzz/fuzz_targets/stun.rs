//! `media::stun` on arbitrary datagrams and keys: never panics, a ufrag is only ever read
//! out of a STUN message's own bytes, and a message signed by `floorcast_fuzz::sign` (a
//! second implementation of RFC 8489 §14.5) verifies under its key and under no other.
//!
//! Input: one byte `k`, then a key of `k % 64` bytes, then the datagram.

#![no_main]

use floorcast_fuzz::sign;
use libfuzzer_sys::fuzz_target;
use media::stun::{integrity_matches, is_stun, local_ufrag};

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let (key, datagram) = rest.split_at((k as usize % 64).min(rest.len()));

    if let Some(ufrag) = local_ufrag(datagram) {
        assert!(is_stun(datagram));
        assert!(!ufrag.is_empty() && !ufrag.contains(':'), "{ufrag:?}");
        let (start, at) = (datagram.as_ptr() as usize, ufrag.as_ptr() as usize);
        assert!(at >= start && at + ufrag.len() <= start + datagram.len());
    }
    if integrity_matches(datagram, key) {
        assert!(is_stun(datagram));
    }

    if let Some(signed) = sign(datagram, key) {
        assert!(integrity_matches(&signed, key), "signed with this key");
        let mut other = key.to_vec();
        other.push(b'x');
        assert!(
            !integrity_matches(&signed, &other),
            "signed with another key"
        );
        // Attributes appended after the USERNAME do not change the ufrag read.
        assert_eq!(local_ufrag(&signed), local_ufrag(datagram));
    }
});
