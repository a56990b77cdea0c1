//! VP8 RTP payload format (RFC 7741), the two halves a test peer needs: cutting a frame into
//! packets with a payload descriptor, and reading a descriptor back to tell where a frame starts
//! and whether it is a keyframe.
//!
//! The SFU finds keyframes the same way a receiver does: on the first packet of a frame (S bit
//! set, partition 0) the byte after the descriptor is the VP8 payload header, whose bit 0 (P) is
//! 0 for a keyframe. So the packetizer here must get the S bit and the descriptor length exactly
//! right, and the parser must accept every descriptor shape a browser sends (X/I/L/T/K, 7- and
//! 15-bit picture ids).

use bytes::{BufMut, Bytes, BytesMut};

/// Cuts VP8 frames into RTP payloads (descriptor + a slice of the frame).
#[derive(Debug, Clone)]
pub struct Vp8Packetizer {
    /// Largest payload (descriptor included) per packet.
    max_payload: usize,
    /// 15-bit picture id, incremented per frame, when `picture_id` is on.
    picture_id: Option<u16>,
}

impl Vp8Packetizer {
    /// `max_payload` is the RTP payload budget (e.g. 1,200 bytes). With `picture_id` the
    /// descriptor carries a 15-bit PictureID like browsers send (4-byte descriptor), otherwise
    /// it is the minimal 1-byte form.
    pub fn new(max_payload: usize, picture_id: Option<u16>) -> Self {
        Self {
            max_payload: max_payload.max(16),
            picture_id: picture_id.map(|p| p & 0x7fff),
        }
    }

    fn descriptor_len(&self) -> usize {
        if self.picture_id.is_some() { 4 } else { 1 }
    }

    /// Payloads for one frame, in order; the caller sets the RTP marker on the last one.
    pub fn packetize(&mut self, frame: &[u8]) -> Vec<Bytes> {
        let chunk = self.max_payload - self.descriptor_len();
        let mut out = Vec::with_capacity(frame.len().div_ceil(chunk).max(1));
        let mut first = true;
        for piece in frame.chunks(chunk.max(1)) {
            let mut buf = BytesMut::with_capacity(self.descriptor_len() + piece.len());
            let s_bit = if first { 0x10 } else { 0 };
            match self.picture_id {
                Some(pid) => {
                    buf.put_u8(0x80 | s_bit); // X=1, S, PID=0
                    buf.put_u8(0x80); // I=1
                    buf.put_u16(0x8000 | pid); // M=1, 15-bit picture id
                }
                None => buf.put_u8(s_bit),
            }
            buf.put_slice(piece);
            out.push(buf.freeze());
            first = false;
        }
        if let Some(pid) = self.picture_id.as_mut() {
            *pid = (*pid + 1) & 0x7fff;
        }
        out
    }
}

/// What the payload descriptor of one VP8 RTP packet says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// S: this packet starts a VP8 partition.
    pub start_of_partition: bool,
    /// PID: the partition index.
    pub partition_id: u8,
    /// PictureID if present (7 or 15 bits).
    pub picture_id: Option<u16>,
    /// Descriptor length in bytes; the VP8 payload starts there.
    pub len: usize,
}

impl Vp8Descriptor {
    /// Parses the descriptor at the start of an RTP payload; `None` if it is truncated.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let b0 = *payload.first()?;
        let mut len = 1;
        let mut picture_id = None;
        if b0 & 0x80 != 0 {
            let x = *payload.get(len)?;
            len += 1;
            if x & 0x80 != 0 {
                let p0 = *payload.get(len)?;
                if p0 & 0x80 != 0 {
                    let p1 = *payload.get(len + 1)?;
                    picture_id = Some((u16::from(p0 & 0x7f) << 8) | u16::from(p1));
                    len += 2;
                } else {
                    picture_id = Some(u16::from(p0));
                    len += 1;
                }
            }
            if x & 0x40 != 0 {
                len += 1; // TL0PICIDX
            }
            if x & 0x30 != 0 {
                len += 1; // TID/Y/KEYIDX
            }
        }
        if len > payload.len() {
            return None;
        }
        Some(Self {
            start_of_partition: b0 & 0x10 != 0,
            partition_id: b0 & 0x07,
            picture_id,
            len,
        })
    }
}

/// Whether this RTP payload is the first packet of a VP8 keyframe (S=1, PID=0, P=0).
pub fn is_keyframe_start(payload: &[u8]) -> bool {
    match Vp8Descriptor::parse(payload) {
        Some(d) if d.start_of_partition && d.partition_id == 0 => {
            payload.get(d.len).is_some_and(|b| b & 0x01 == 0)
        }
        _ => false,
    }
}

/// Whether this RTP payload starts a VP8 frame (S=1, PID=0).
pub fn is_frame_start(payload: &[u8]) -> bool {
    Vp8Descriptor::parse(payload).is_some_and(|d| d.start_of_partition && d.partition_id == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_byte_descriptor_marks_only_the_first_packet() {
        let mut p = Vp8Packetizer::new(100, None);
        let frame = vec![0u8; 250]; // keyframe: P bit 0
        let pkts = p.packetize(&frame);
        assert_eq!(pkts.len(), 3); // 99 + 99 + 52
        assert_eq!(pkts[0][0], 0x10);
        assert_eq!(pkts[1][0], 0x00);
        assert!(is_keyframe_start(&pkts[0]));
        assert!(!is_keyframe_start(&pkts[1]));
        let total: usize = pkts.iter().map(|p| p.len() - 1).sum();
        assert_eq!(total, 250);
    }

    #[test]
    fn picture_id_descriptor_round_trips_and_wraps() {
        let mut p = Vp8Packetizer::new(1200, Some(0x7ffe));
        let inter = vec![0x01u8; 10];
        let a = p.packetize(&inter);
        let b = p.packetize(&inter);
        let c = p.packetize(&inter);
        let da = Vp8Descriptor::parse(&a[0]).unwrap();
        assert_eq!(da.len, 4);
        assert_eq!(da.picture_id, Some(0x7ffe));
        assert_eq!(
            Vp8Descriptor::parse(&b[0]).unwrap().picture_id,
            Some(0x7fff)
        );
        assert_eq!(Vp8Descriptor::parse(&c[0]).unwrap().picture_id, Some(0));
        assert!(is_frame_start(&a[0]));
        assert!(!is_keyframe_start(&a[0]), "P=1 is an interframe");
    }

    #[test]
    fn parses_browser_style_descriptors() {
        // X, I (7-bit), L, T/K present, then a keyframe header.
        let pkt = [0x90, 0xf0, 0x05, 0x11, 0x22, 0x00, 0xaa];
        let d = Vp8Descriptor::parse(&pkt).unwrap();
        assert_eq!(d.picture_id, Some(5));
        assert_eq!(d.len, 5);
        assert!(is_keyframe_start(&pkt));
        // Non-zero partition id is not a frame start.
        assert!(!is_frame_start(&[0x11, 0x00]));
    }

    #[test]
    fn truncated_input_never_panics() {
        for len in 0..6 {
            let buf = [0xffu8; 6];
            let _ = Vp8Descriptor::parse(&buf[..len]);
            let _ = is_keyframe_start(&buf[..len]);
        }
        assert!(Vp8Descriptor::parse(&[0x80]).is_none());
        assert!(!is_keyframe_start(&[0x10])); // no payload header byte
    }
}
