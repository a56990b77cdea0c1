//! Just enough STUN (RFC 8489) to route a new peer's first datagram: the local ICE username
//! fragment from a Binding request's USERNAME (`<our ufrag>:<their ufrag>`), and its
//! MESSAGE-INTEGRITY checked against the peer's ICE password before its source address is
//! believed. The ufrag is public (it travels in the SDP answer, and anyone on the path sees
//! it); the password is not, so only a message that proves it may move a peer's address.
//! Everything else about STUN is str0m's job.

use hmac::{Hmac, Mac};
use sha1::Sha1;

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const HEADER_LEN: usize = 20;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
/// HMAC-SHA1 output (RFC 8489 §14.5).
const INTEGRITY_LEN: usize = 20;

/// Whether a datagram looks like STUN (first two bits zero, magic cookie in place).
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram[0] & 0xC0 == 0 && datagram[4..8] == MAGIC_COOKIE
}

/// The local (server-side) ufrag named in a STUN message's USERNAME attribute. `None` for
/// anything that is not a well-formed STUN message with a `local:remote` username.
pub fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) {
        return None;
    }
    let declared = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let body = datagram.get(HEADER_LEN..HEADER_LEN + declared)?;
    let mut rest = body;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let value = rest.get(4..4 + len)?;
        if kind == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            let (local, remote) = username.split_once(':')?;
            return (!local.is_empty() && !remote.is_empty()).then_some(local);
        }
        // Attribute values are padded to a multiple of four bytes.
        let padded = (4 + len + 3) & !3;
        rest = rest.get(padded..)?;
    }
    None
}

/// Whether a STUN message carries a MESSAGE-INTEGRITY attribute that is the HMAC-SHA1 of the
/// message under `key` (for ICE, the short-term credential: the receiving agent's password,
/// RFC 8445 §7.2.2). Computed as RFC 8489 §14.5 says: over the header and every attribute
/// before MESSAGE-INTEGRITY, with the header's length field counting up to the end of that
/// attribute (so a FINGERPRINT after it is left out). Anything malformed is `false`.
pub fn integrity_matches(datagram: &[u8], key: &[u8]) -> bool {
    let Some(offset) = integrity_offset(datagram) else {
        return false;
    };
    let Some(tag) = datagram.get(offset + 4..offset + 4 + INTEGRITY_LEN) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return false;
    };
    let covered = (offset + 4 + INTEGRITY_LEN - HEADER_LEN) as u16;
    mac.update(&datagram[..2]);
    mac.update(&covered.to_be_bytes());
    mac.update(&datagram[4..offset]);
    mac.verify_slice(tag).is_ok()
}

/// Where the MESSAGE-INTEGRITY attribute starts (its type field), if the message has one
/// with the right length inside the declared body.
fn integrity_offset(datagram: &[u8]) -> Option<usize> {
    if !is_stun(datagram) {
        return None;
    }
    let declared = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let end = HEADER_LEN.checked_add(declared)?;
    if end > datagram.len() {
        return None;
    }
    let mut at = HEADER_LEN;
    while at + 4 <= end {
        let kind = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
        let len = u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]) as usize;
        if at + 4 + len > end {
            return None;
        }
        if kind == ATTR_MESSAGE_INTEGRITY {
            return (len == INTEGRITY_LEN).then_some(at);
        }
        at += (4 + len + 3) & !3;
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `msg` with MESSAGE-INTEGRITY under `key` appended (and the length field fixed), then
    /// a FINGERPRINT-shaped attribute after it, which the HMAC must not cover.
    pub(crate) fn sign(mut msg: Vec<u8>, key: &[u8]) -> Vec<u8> {
        let covered = (msg.len() + 4 + INTEGRITY_LEN - HEADER_LEN) as u16;
        msg[2..4].copy_from_slice(&covered.to_be_bytes());
        let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
        mac.update(&msg);
        let tag = mac.finalize().into_bytes();
        msg.extend_from_slice(&ATTR_MESSAGE_INTEGRITY.to_be_bytes());
        msg.extend_from_slice(&(INTEGRITY_LEN as u16).to_be_bytes());
        msg.extend_from_slice(&tag);
        msg.extend_from_slice(&[0x80, 0x28, 0x00, 0x04, 1, 2, 3, 4]);
        let total = (msg.len() - HEADER_LEN) as u16;
        msg[2..4].copy_from_slice(&total.to_be_bytes());
        msg
    }

    #[test]
    fn integrity_under_the_right_key_only() {
        let msg = sign(binding_request(b"srv:cli"), b"server-password-22chars");
        assert!(integrity_matches(&msg, b"server-password-22chars"));
        assert!(!integrity_matches(&msg, b"server-password-22charz"));
        assert!(
            !integrity_matches(&binding_request(b"srv:cli"), b"x"),
            "no MI at all"
        );
    }

    #[test]
    fn any_flipped_byte_before_the_tag_fails() {
        let key = b"k3y";
        let msg = sign(binding_request(b"srvAbc:cli9"), key);
        let tag_end = msg.len() - 8;
        for i in 0..tag_end {
            let mut bad = msg.clone();
            bad[i] ^= 0x01;
            assert!(!integrity_matches(&bad, key), "flip at {i}");
        }
        // The FINGERPRINT after MESSAGE-INTEGRITY is not covered.
        let mut fp = msg.clone();
        let last = fp.len() - 1;
        fp[last] ^= 0xff;
        assert!(integrity_matches(&fp, key));
    }

    /// The test vector of RFC 5769 §2.1 (from another implementation), so the check does not
    /// only agree with `sign` above.
    #[test]
    fn integrity_of_rfc5769_sample_request() {
        // RFC 5769 §2.1 sample request, password "VOkJxbRl1RmTxUk/WvJxBt".
        let hex = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
        let msg: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        assert!(integrity_matches(&msg, b"VOkJxbRl1RmTxUk/WvJxBt"));
        assert!(!integrity_matches(&msg, b"VOkJxbRl1RmTxUk/WvJxBT"));
        assert_eq!(local_ufrag(&msg), Some("evtj"));
    }

    pub(crate) fn binding_request(username: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A leading PRIORITY attribute, so the parser must skip one.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attrs);
        msg
    }

    #[test]
    fn finds_local_ufrag() {
        let msg = binding_request(b"srvAbc:cli9");
        assert_eq!(local_ufrag(&msg), Some("srvAbc"));
    }

    #[test]
    fn rejects_username_without_colon_or_empty_parts() {
        assert_eq!(local_ufrag(&binding_request(b"nocolon")), None);
        assert_eq!(local_ufrag(&binding_request(b":x")), None);
        assert_eq!(local_ufrag(&binding_request(b"x:")), None);
    }

    #[test]
    fn rejects_non_stun() {
        assert_eq!(local_ufrag(b"\x80\x60garbage-rtp-looking-datagram"), None);
        assert_eq!(local_ufrag(&[]), None);
    }

    #[test]
    fn truncated_message_is_none() {
        let msg = binding_request(b"srv:cli");
        for cut in 0..msg.len() {
            assert_eq!(local_ufrag(&msg[..cut]), None, "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = local_ufrag(&data);
            let _ = integrity_matches(&data, b"key");
        }

        #[test]
        fn never_panics_with_valid_header(tail in proptest::collection::vec(any::<u8>(), 0..200), len in 0u16..400) {
            let mut msg = vec![0x00, 0x01];
            msg.extend_from_slice(&len.to_be_bytes());
            msg.extend_from_slice(&MAGIC_COOKIE);
            msg.extend_from_slice(&[0; 12]);
            msg.extend_from_slice(&tail);
            let _ = local_ufrag(&msg);
            let _ = integrity_matches(&msg, b"key");
        }
    }
}
