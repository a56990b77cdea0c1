//! The clear part of an SRTP datagram: SRTP (RFC 3711) encrypts the payload but leaves the RTP
//! header readable, so a light-mode viewer counts packets, sequence gaps and jitter from it
//! without decrypting. Also sorts a datagram into STUN / DTLS / RTP / RTCP (RFC 7983).

/// What arrived on a WebRTC socket (RFC 7983 first-byte ranges, RFC 5761 RTP/RTCP split).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
    Other,
}

pub fn classify(buf: &[u8]) -> Datagram {
    let Some(&b0) = buf.first() else {
        return Datagram::Other;
    };
    match b0 {
        0..=3 => Datagram::Stun,
        20..=63 => Datagram::Dtls,
        128..=191 => match buf.get(1) {
            // RTCP packet types 192..=223 sit where RTP's marker bit + payload type would be.
            Some(192..=223) => Datagram::Rtcp,
            Some(_) => Datagram::Rtp,
            None => Datagram::Other,
        },
        _ => Datagram::Other,
    }
}

/// The fields a receiver needs from an RTP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Bytes before the payload (fixed header, CSRCs, extension).
    pub header_len: usize,
}

/// Parses the header of an RTP (or SRTP) packet; `None` if it is not one.
pub fn parse(buf: &[u8]) -> Option<RtpHeader> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let csrc_count = usize::from(buf[0] & 0x0f);
    let mut header_len = 12 + 4 * csrc_count;
    if buf[0] & 0x10 != 0 {
        let ext = buf.get(header_len..header_len + 4)?;
        header_len += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    if header_len > buf.len() {
        return None;
    }
    Some(RtpHeader {
        payload_type: buf[1] & 0x7f,
        marker: buf[1] & 0x80 != 0,
        sequence: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        header_len,
    })
}

/// The authentication tag AES_CM_128_HMAC_SHA1_80 appends to each SRTP packet; payload byte
/// counts subtract it (with AEAD_AES_128_GCM's 16-byte tag they read 6 bytes high).
pub const SRTP_AUTH_TAG: usize = 10;

/// Payload types and what they carry, from an SDP's `a=rtpmap` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadKinds {
    pub audio: Vec<u8>,
    pub video: Vec<u8>,
}

impl PayloadKinds {
    /// Opus and PCM are audio; VP8, VP9, H264 and AV1 video. RTX, RED and FEC are neither:
    /// they repair, and counting them would hide loss.
    pub fn from_sdp(sdp: &str) -> Self {
        let mut kinds = PayloadKinds::default();
        for line in sdp.lines() {
            let Some(rest) = line.trim().strip_prefix("a=rtpmap:") else {
                continue;
            };
            let mut parts = rest.split_whitespace();
            let (Some(pt), Some(codec)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(pt) = pt.parse::<u8>() else { continue };
            let name = codec.split('/').next().unwrap_or("").to_ascii_lowercase();
            match name.as_str() {
                "opus" | "pcmu" | "pcma" | "g722" => kinds.audio.push(pt),
                "vp8" | "vp9" | "h264" | "av1" => kinds.video.push(pt),
                _ => {}
            }
        }
        kinds
    }

    pub fn is_audio(&self, pt: u8) -> bool {
        self.audio.contains(&pt)
    }

    pub fn is_video(&self, pt: u8) -> bool {
        self.video.contains(&pt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ext_words: u16, csrcs: u8) -> Vec<u8> {
        let mut p = vec![
            0x80 | csrcs,
            0x80 | 96,
            0x12,
            0x34,
            0,
            0,
            0x01,
            0x00,
            0xde,
            0xad,
            0xbe,
            0xef,
        ];
        for _ in 0..csrcs {
            p.extend_from_slice(&[0, 0, 0, 1]);
        }
        if ext_words > 0 {
            p[0] |= 0x10;
            p.extend_from_slice(&[0xbe, 0xde]);
            p.extend_from_slice(&ext_words.to_be_bytes());
            p.extend(std::iter::repeat_n(0u8, 4 * usize::from(ext_words)));
        }
        p.extend_from_slice(&[1, 2, 3]);
        p
    }

    #[test]
    fn reads_the_header_with_csrcs_and_extension() {
        let h = parse(&packet(2, 1)).unwrap();
        assert_eq!(h.payload_type, 96);
        assert!(h.marker);
        assert_eq!(h.sequence, 0x1234);
        assert_eq!(h.timestamp, 256);
        assert_eq!(h.ssrc, 0xdead_beef);
        assert_eq!(h.header_len, 12 + 4 + 4 + 8);
        assert_eq!(parse(&packet(0, 0)).unwrap().header_len, 12);
    }

    #[test]
    fn refuses_what_is_not_rtp() {
        assert_eq!(parse(&[0x80; 11]), None);
        assert_eq!(parse(&[0x40; 20]), None);
        // An extension longer than the packet.
        let mut p = packet(1, 0);
        p.truncate(15);
        assert_eq!(parse(&p), None);
    }

    #[test]
    fn classifies_by_first_bytes() {
        assert_eq!(classify(&[0, 1]), Datagram::Stun);
        assert_eq!(classify(&[22, 254]), Datagram::Dtls);
        assert_eq!(classify(&[0x80, 96]), Datagram::Rtp);
        assert_eq!(classify(&[0x80, 0x80 | 111]), Datagram::Rtp);
        assert_eq!(classify(&[0x81, 200]), Datagram::Rtcp);
        assert_eq!(classify(&[0x80, 206]), Datagram::Rtcp);
        assert_eq!(classify(&[]), Datagram::Other);
        assert_eq!(classify(&[70]), Datagram::Other);
    }

    #[test]
    fn payload_kinds_from_rtpmap() {
        let sdp = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n";
        let k = PayloadKinds::from_sdp(sdp);
        assert_eq!(k.audio, vec![111]);
        assert_eq!(k.video, vec![96]);
        assert!(!k.is_video(97), "RTX is not counted as video");
    }
}
