//! Just enough STUN (RFC 8489) to route a new peer's first datagram: the local ICE username
//! fragment from a Binding request's USERNAME (`<our ufrag>:<their ufrag>`). Everything else
//! about STUN is str0m's job.

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const HEADER_LEN: usize = 20;
const ATTR_USERNAME: u16 = 0x0006;

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
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
        }

        #[test]
        fn never_panics_with_valid_header(tail in proptest::collection::vec(any::<u8>(), 0..200), len in 0u16..400) {
            let mut msg = vec![0x00, 0x01];
            msg.extend_from_slice(&len.to_be_bytes());
            msg.extend_from_slice(&MAGIC_COOKIE);
            msg.extend_from_slice(&[0; 12]);
            msg.extend_from_slice(&tail);
            let _ = local_ufrag(&msg);
        }
    }
}
