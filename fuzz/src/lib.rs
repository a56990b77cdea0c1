//! What more than one fuzz target needs: STUN Binding requests built and signed here
//! (RFC 8489 §14.5, with aws-lc's HMAC-SHA1), independently of `media::stun`, so a target
//! checks the code under test against a second implementation, not against itself.

use aws_lc_rs::hmac;

const HEADER_LEN: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_PRIORITY: u16 = 0x0024;

/// A Binding request carrying PRIORITY then USERNAME, unsigned.
pub fn binding_request(username: &[u8], transaction: [u8; 12]) -> Vec<u8> {
    let mut msg = vec![0x00, 0x01, 0, 0];
    msg.extend_from_slice(&MAGIC_COOKIE);
    msg.extend_from_slice(&transaction);
    msg.extend_from_slice(&ATTR_PRIORITY.to_be_bytes());
    msg.extend_from_slice(&[0, 4, 0x6e, 0, 0x1e, 0xff]);
    msg.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
    msg.extend_from_slice(&(username.len().min(512) as u16).to_be_bytes());
    msg.extend_from_slice(&username[..username.len().min(512)]);
    while msg.len() % 4 != 0 {
        msg.push(0);
    }
    let body = (msg.len() - HEADER_LEN) as u16;
    msg[2..4].copy_from_slice(&body.to_be_bytes());
    msg
}

/// `msg` with a MESSAGE-INTEGRITY under `key` appended, then a FINGERPRINT-shaped attribute
/// (which the HMAC does not cover). `None` unless `msg` is a well-formed STUN message
/// (declared length = its length, every attribute inside it and padded) without
/// MESSAGE-INTEGRITY yet.
pub fn sign(msg: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let end = attributes_end(msg)?;
    if end + 24 + 8 - HEADER_LEN > usize::from(u16::MAX) {
        return None;
    }
    let mut out = msg.to_vec();
    let covered = (end + 24 - HEADER_LEN) as u16;
    out[2..4].copy_from_slice(&covered.to_be_bytes());
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let tag = hmac::sign(&key, &out);
    out.extend_from_slice(&ATTR_MESSAGE_INTEGRITY.to_be_bytes());
    out.extend_from_slice(&20u16.to_be_bytes());
    out.extend_from_slice(tag.as_ref());
    out.extend_from_slice(&[0x80, 0x28, 0x00, 0x04, 1, 2, 3, 4]);
    let total = (out.len() - HEADER_LEN) as u16;
    out[2..4].copy_from_slice(&total.to_be_bytes());
    Some(out)
}

fn attributes_end(msg: &[u8]) -> Option<usize> {
    if msg.len() < HEADER_LEN || msg[0] & 0xC0 != 0 || msg[4..8] != MAGIC_COOKIE {
        return None;
    }
    let end = HEADER_LEN + usize::from(u16::from_be_bytes([msg[2], msg[3]]));
    if end != msg.len() {
        return None;
    }
    let mut at = HEADER_LEN;
    while at < end {
        let header = msg.get(at..at + 4)?;
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if kind == ATTR_MESSAGE_INTEGRITY {
            return None;
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    (at == end).then_some(end)
}
