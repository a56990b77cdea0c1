//! The RTP header of a viewer's outgoing stream, written by us (not str0m) for forwarded
//! packets: see [`crate::viewer_egress`].
//!
//! Everything but four fields is fixed per stream for its lifetime (version, SSRC, the MID
//! header extension), so it is laid out once when the stream is bound and each packet only
//! copies the template and stamps payload type, marker, sequence number and timestamp.
//! Pure bytes; no allocation.

/// Longest header we write: 12 fixed bytes, the 4-byte one-byte-extension header, and a MID
/// element (1 + up to 16 bytes) padded to a 4-byte boundary.
const MAX_LEN: usize = 12 + 4 + 20;
/// RFC 8285 one-byte header extensions: elements of 1..=16 bytes, ids 1..=14.
const ONE_BYTE_PROFILE: [u8; 2] = [0xBE, 0xDE];
const MAX_ONE_BYTE_LEN: usize = 16;

#[derive(Clone, Copy, Debug)]
pub(crate) struct HeadTemplate {
    bytes: [u8; MAX_LEN],
    len: u8,
}

/// The per-packet fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeadFields {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
}

impl HeadTemplate {
    /// A header for `ssrc`, carrying the MID (RFC 8843 §15) when the viewer negotiated the
    /// extension (`mid_ext`: its id); a MID that does not fit a one-byte element, or an id
    /// outside 1..=14, is left out (receivers then route by the SSRC from the SDP).
    pub fn new(ssrc: u32, mid_ext: Option<(u8, &[u8])>) -> Self {
        let mut bytes = [0u8; MAX_LEN];
        bytes[0] = 0x80; // V=2, no padding, no extension yet, no CSRC
        bytes[8..12].copy_from_slice(&ssrc.to_be_bytes());
        let mut len = 12;
        if let Some((id, mid)) = mid_ext
            && (1..=14).contains(&id)
            && (1..=MAX_ONE_BYTE_LEN).contains(&mid.len())
        {
            let element = 1 + mid.len();
            let words = element.div_ceil(4);
            bytes[0] |= 0x10; // X
            bytes[12..14].copy_from_slice(&ONE_BYTE_PROFILE);
            bytes[14..16].copy_from_slice(&(words as u16).to_be_bytes());
            bytes[16] = (id << 4) | (mid.len() as u8 - 1);
            bytes[17..17 + mid.len()].copy_from_slice(mid);
            // The rest of the last word stays zero: padding.
            len = 16 + words * 4;
        }
        Self {
            bytes,
            len: len as u8,
        }
    }

    /// The header for one packet. The returned array is `MAX_LEN` long; the header is its
    /// first [`HeadTemplate::len`] bytes.
    pub fn render(&self, f: HeadFields) -> [u8; MAX_LEN] {
        let mut b = self.bytes;
        b[1] = (f.pt & 0x7F) | if f.marker { 0x80 } else { 0 };
        b[2..4].copy_from_slice(&f.seq.to_be_bytes());
        b[4..8].copy_from_slice(&f.timestamp.to_be_bytes());
        b
    }

    /// The header of an RTP padding packet (RFC 3550 §5.1: the P bit; the padding and its
    /// count are the packet's payload as [`crate::viewer_egress::PADDING`] writes it).
    pub fn render_padding(&self, f: HeadFields) -> [u8; MAX_LEN] {
        let mut b = self.render(f);
        b[0] |= 0x20;
        b
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a receiver reads from a header, parsed by RFC 3550 §5.1 and RFC 8285 §4.2 (the
    /// end-to-end check, str0m and browsers reading our packets, is in the SFU tests).
    #[derive(Debug, PartialEq)]
    struct Parsed {
        pt: u8,
        marker: bool,
        seq: u16,
        timestamp: u32,
        ssrc: u32,
        /// (id, value) of each one-byte extension element.
        elements: Vec<(u8, Vec<u8>)>,
        header_len: usize,
    }

    fn parse(b: &[u8]) -> Parsed {
        assert_eq!(b[0] >> 6, 2, "version");
        assert_eq!(b[0] & 0x2F, 0, "no padding, no CSRC");
        let mut p = Parsed {
            pt: b[1] & 0x7F,
            marker: b[1] & 0x80 != 0,
            seq: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes(b[4..8].try_into().unwrap()),
            ssrc: u32::from_be_bytes(b[8..12].try_into().unwrap()),
            elements: Vec::new(),
            header_len: 12,
        };
        if b[0] & 0x10 != 0 {
            assert_eq!(&b[12..14], &[0xBE, 0xDE]);
            let words = u16::from_be_bytes([b[14], b[15]]) as usize;
            let ext = &b[16..16 + words * 4];
            let mut i = 0;
            while i < ext.len() {
                if ext[i] == 0 {
                    i += 1; // padding
                    continue;
                }
                let (id, len) = (ext[i] >> 4, (ext[i] & 0x0F) as usize + 1);
                p.elements.push((id, ext[i + 1..i + 1 + len].to_vec()));
                i += 1 + len;
            }
            p.header_len = 16 + words * 4;
        }
        p
    }

    #[test]
    fn every_field_and_the_mid_read_back() {
        let t = HeadTemplate::new(0xDEAD_BEEF, Some((4, b"1")));
        let f = HeadFields {
            pt: 96,
            marker: true,
            seq: 65_535,
            timestamp: 0x0102_0304,
        };
        let b = t.render(f);
        assert_eq!(
            parse(&b[..t.len()]),
            Parsed {
                pt: 96,
                marker: true,
                seq: 65_535,
                timestamp: 0x0102_0304,
                ssrc: 0xDEAD_BEEF,
                elements: vec![(4, b"1".to_vec())],
                header_len: t.len(),
            }
        );
    }

    #[test]
    fn a_long_mid_is_padded_to_whole_words() {
        for mid in ["a", "ab", "abc", "abcd", "video-main-0123x"] {
            let t = HeadTemplate::new(7, Some((1, mid.as_bytes())));
            let f = HeadFields {
                pt: 111,
                marker: false,
                seq: 1,
                timestamp: 2,
            };
            let p = parse(&t.render(f)[..t.len()]);
            assert_eq!(p.elements, vec![(1, mid.as_bytes().to_vec())], "{mid}");
            assert_eq!(t.len() % 4, 0, "{mid}");
            assert!(!p.marker);
        }
    }

    #[test]
    fn without_a_usable_extension_the_header_is_the_fixed_twelve_bytes() {
        for ext in [None, Some((15u8, &b"0"[..])), Some((3, &[b'x'; 17][..]))] {
            let t = HeadTemplate::new(9, ext);
            assert_eq!(t.len(), 12);
            let f = HeadFields {
                pt: 0,
                marker: false,
                seq: 0,
                timestamp: 0,
            };
            assert_eq!(parse(&t.render(f)[..12]).elements, vec![]);
        }
    }

    #[test]
    fn a_payload_type_above_127_cannot_set_the_marker() {
        let t = HeadTemplate::new(9, None);
        let b = t.render(HeadFields {
            pt: 0xFF,
            marker: false,
            seq: 0,
            timestamp: 0,
        });
        assert_eq!(b[1], 0x7F);
    }
}
