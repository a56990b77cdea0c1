//! Hostile input for the media port: random datagrams, and datagrams that look almost like
//! STUN, RTP, RTCP or DTLS, plus well-formed STUN binding requests that name a real ICE
//! session but fail MESSAGE-INTEGRITY (a hijack attempt an SFU must ignore), sent from a
//! forged source address when the attack needs one ([`SpoofingSocket`]).

use std::io;
use std::net::SocketAddrV4;

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

/// A raw IPv4 socket that sends UDP datagrams with any source address, as an attacker on a
/// venue's Wi-Fi can. Needs root (CAP_NET_RAW); on loopback the kernel delivers the datagram
/// as if the forged source had sent it.
pub struct SpoofingSocket {
    fd: libc::c_int,
}

impl SpoofingSocket {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain socket(2) call with constant arguments; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // IPPROTO_RAW implies IP_HDRINCL: we write the IP header ourselves.
        Ok(Self { fd })
    }

    /// Sends `payload` as a UDP datagram from `from` to `to`. The kernel fills in the IP
    /// checksum and total length; the UDP checksum is left 0 (none), which IPv4 allows.
    pub fn send(&self, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> io::Result<()> {
        let udp_len = 8 + payload.len();
        let total = 20 + udp_len;
        let mut pkt = Vec::with_capacity(total);
        pkt.extend_from_slice(&[0x45, 0]); // version 4, IHL 5; DSCP 0
        pkt.extend_from_slice(&(total as u16).to_be_bytes());
        pkt.extend_from_slice(&[0, 0, 0x40, 0]); // id 0 (kernel sets it), DF
        pkt.extend_from_slice(&[64, libc::IPPROTO_UDP as u8, 0, 0]); // TTL, UDP, checksum
        pkt.extend_from_slice(&from.ip().octets());
        pkt.extend_from_slice(&to.ip().octets());
        pkt.extend_from_slice(&from.port().to_be_bytes());
        pkt.extend_from_slice(&to.port().to_be_bytes());
        pkt.extend_from_slice(&(udp_len as u16).to_be_bytes());
        pkt.extend_from_slice(&[0, 0]);
        pkt.extend_from_slice(payload);
        let dest = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(to.ip().octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `pkt` and `dest` are live for the call and the lengths passed are theirs.
        let sent = unsafe {
            libc::sendto(
                self.fd,
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&raw const dest).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for SpoofingSocket {
    fn drop(&mut self) {
        // SAFETY: `fd` is the socket this value owns, closed once.
        unsafe { libc::close(self.fd) };
    }
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

    /// The forged datagram arrives at an ordinary UDP socket as if `from` had sent it.
    #[test]
    fn spoofed_datagram_arrives_from_the_forged_source() {
        let Ok(raw) = SpoofingSocket::new() else {
            eprintln!("skipped: raw sockets need root (CAP_NET_RAW)");
            return;
        };
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
        let to = match rx.local_addr().expect("addr") {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("not IPv4: {other}"),
        };
        let from: SocketAddrV4 = "127.0.0.77:4242".parse().expect("addr");
        raw.send(from, to, b"hello").expect("send");
        let mut buf = [0u8; 16];
        let (n, src) = rx.recv_from(&mut buf).expect("datagram arrives");
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(src, std::net::SocketAddr::V4(from));
    }

    #[test]
    fn finds_ufrag() {
        assert_eq!(
            ice_ufrag("v=0\r\na=ice-ufrag:abcd\r\n").as_deref(),
            Some("abcd")
        );
    }
}
