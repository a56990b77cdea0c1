//! Hostile input for the media port: random datagrams, and datagrams that look almost like
//! STUN, RTP, RTCP or DTLS, plus well-formed STUN binding requests that name a real ICE
//! session but fail MESSAGE-INTEGRITY (a hijack attempt an SFU must ignore).

use crate::synthetic::SplitMix64;

/// Datagrams that look like nothing, or almost like STUN, RTP, RTCP or DTLS.
pub fn garbage_datagrams(rng: &mut SplitMix64) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![0xff; 1], vec![0u8; 20]];
    for _ in 0..300 {
        let len = rng.range(1, 1500);
        let mut b = vec![0u8; len];
        rng.fill(&mut b);
        out.push(b);
    }
    // STUN-looking: binding request header with the magic cookie, bogus lengths/attributes.
    for i in 0..200 {
        let mut b = vec![0u8; 20 + rng.range(0, 200)];
        rng.fill(&mut b[20..]);
        b[0] = 0x00;
        b[1] = if i % 3 == 0 {
            0x01
        } else {
            rng.next_u32() as u8
        };
        let declared = match i % 4 {
            0 => (b.len() - 20) as u16,
            1 => 0xfffc,
            2 => 4,
            _ => rng.next_u32() as u16 & 0xfffc,
        };
        b[2..4].copy_from_slice(&declared.to_be_bytes());
        b[4..8].copy_from_slice(&0x2112_a442u32.to_be_bytes());
        for x in &mut b[8..20] {
            *x = rng.next_u32() as u8;
        }
        if i % 2 == 0 && b.len() >= 40 {
            // USERNAME attribute claiming more bytes than there are.
            b[20..22].copy_from_slice(&0x0006u16.to_be_bytes());
            b[22..24].copy_from_slice(&(rng.range(0, 600) as u16).to_be_bytes());
            b[24..28].copy_from_slice(b"ab:c");
        }
        out.push(b);
    }
    // RTP/RTCP-looking (version 2), DTLS-looking (handshake, DTLS 1.2).
    for i in 0..200 {
        let mut b = vec![0u8; rng.range(2, 1200)];
        rng.fill(&mut b);
        match i % 3 {
            0 => b[0] = 0x80 | (b[0] & 0x3f),
            1 => {
                b[0] = 0x80;
                b[1] = 200 + (i % 8) as u8;
            }
            _ => {
                b[0] = 0x16;
                b[1] = 0xfe;
                if b.len() > 2 {
                    b[2] = 0xfd;
                }
            }
        }
        out.push(b);
    }
    out
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

pub fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(str::to_owned)
}

/// A well-formed STUN binding request that names a real ICE session (USERNAME
/// `server:client`), nominates this sender (USE-CANDIDATE) and carries a correct
/// FINGERPRINT but a wrong MESSAGE-INTEGRITY: an SFU that does not check integrity before
/// trusting a new remote address would move the viewer's media to the attacker.
pub fn forged_binding_request(rng: &mut SplitMix64, username: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    let mut push = |typ: u16, value: &[u8]| {
        attrs.extend_from_slice(&typ.to_be_bytes());
        attrs.extend_from_slice(&(value.len() as u16).to_be_bytes());
        attrs.extend_from_slice(value);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
    };
    push(0x0006, username.as_bytes()); // USERNAME
    push(0x0024, &0x6e7f_00ffu32.to_be_bytes()); // PRIORITY
    push(0x802a, &rng.next_u64().to_be_bytes()); // ICE-CONTROLLING
    push(0x0025, &[]); // USE-CANDIDATE
    let mut mi = [0u8; 20];
    rng.fill(&mut mi);
    push(0x0008, &mi); // MESSAGE-INTEGRITY (wrong)
    let mut msg = Vec::new();
    msg.extend_from_slice(&0x0001u16.to_be_bytes());
    msg.extend_from_slice(&((attrs.len() + 8) as u16).to_be_bytes());
    msg.extend_from_slice(&0x2112_a442u32.to_be_bytes());
    let mut txid = [0u8; 12];
    rng.fill(&mut txid);
    msg.extend_from_slice(&txid);
    msg.extend_from_slice(&attrs);
    let fp = crc32(&msg) ^ 0x5354_554e;
    msg.extend_from_slice(&0x8028u16.to_be_bytes());
    msg.extend_from_slice(&4u16.to_be_bytes());
    msg.extend_from_slice(&fp.to_be_bytes());
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::stun::attributes::ATTR_USERNAME;
    use rtc::stun::fingerprint::FINGERPRINT;
    use rtc::stun::message::Message;

    #[test]
    fn forged_request_is_well_formed_stun_with_a_valid_fingerprint() {
        let mut rng = SplitMix64::new(3);
        let raw = forged_binding_request(&mut rng, "srv1:cli2");
        let mut m = Message::new();
        m.unmarshal_binary(&raw).expect("parses as STUN");
        FINGERPRINT.check(&m).expect("fingerprint is right");
        assert_eq!(m.get(ATTR_USERNAME).unwrap(), b"srv1:cli2");
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn garbage_has_all_shapes() {
        let g = garbage_datagrams(&mut SplitMix64::new(1));
        assert!(g.iter().any(Vec::is_empty));
        assert!(
            g.iter()
                .any(|d| d.len() >= 8 && d[4..8] == [0x21, 0x12, 0xa4, 0x42])
        );
        assert!(g.iter().any(|d| d.first() == Some(&0x16)));
    }

    #[test]
    fn finds_ufrag() {
        assert_eq!(
            ice_ufrag("v=0\r\na=ice-ufrag:abcd\r\n").as_deref(),
            Some("abcd")
        );
    }
}
