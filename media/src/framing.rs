//! RFC 4571 framing of datagrams on a TCP stream (what RFC 6544 ICE-TCP uses): each
//! datagram is preceded by its length as a 16-bit big-endian number.
//!
//! Pure: bytes in, frames out, no socket, so split frames, oversize lengths and garbage are
//! tested here. The decoder's buffer is allocated once per connection and bounded by the
//! largest frame it accepts, so a peer that announces 64 KiB and then trickles bytes holds
//! no more memory than an honest one.

/// Length prefix of a frame.
const HEADER: usize = 2;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No WebRTC datagram is empty: a stream that says so is not ICE-TCP.
    #[error("an empty frame")]
    Empty,
    #[error("a frame of {len} bytes, more than the {max} accepted")]
    Oversize { len: usize, max: usize },
}

/// Reassembles frames from the chunks a TCP read returns.
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Where the unconsumed bytes of `buf` start.
    start: usize,
    max_frame: usize,
}

impl FrameDecoder {
    /// `max_frame`: the largest datagram accepted; a larger length is an error.
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: Vec::with_capacity(2 * (HEADER + max_frame)),
            start: 0,
            max_frame,
        }
    }

    /// Appends bytes read from the stream. The buffer holds at most one partial frame plus
    /// the caller's read size: drain [`FrameDecoder::next_frame`] before the next push.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            // Move the partial frame to the front: at most one frame's bytes.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one is buffered. An error means the stream is not (or no
    /// longer) framed datagrams: close it.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let Some(len) = self.pending_len() else {
            return Ok(None);
        };
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max_frame {
            return Err(FrameError::Oversize {
                len,
                max: self.max_frame,
            });
        }
        let begin = self.start + HEADER;
        if self.buf.len() < begin + len {
            return Ok(None);
        }
        self.start = begin + len;
        Ok(Some(&self.buf[begin..begin + len]))
    }

    /// The length announced by the buffered header, if it is complete.
    fn pending_len(&self) -> Option<usize> {
        let head = self.buf.get(self.start..self.start + HEADER)?;
        Some(usize::from(u16::from_be_bytes([head[0], head[1]])))
    }
}

/// The header to write before `len` bytes of datagram; `None` if it cannot be framed.
pub fn frame_header(len: usize) -> Option<[u8; HEADER]> {
    match u16::try_from(len) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n.to_be_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            out.extend_from_slice(&frame_header(p.len()).unwrap());
            out.extend_from_slice(p);
        }
        out
    }

    fn drain(d: &mut FrameDecoder) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut frames = Vec::new();
        while let Some(f) = d.next_frame()? {
            frames.push(f.to_vec());
        }
        Ok(frames)
    }

    #[test]
    fn frames_in_one_chunk() {
        let mut d = FrameDecoder::new(1500);
        d.push(&framed(&[b"stun", b"dtls record", b"x"]));
        assert_eq!(
            drain(&mut d).unwrap(),
            vec![b"stun".to_vec(), b"dtls record".to_vec(), b"x".to_vec()]
        );
        assert_eq!(d.next_frame(), Ok(None));
    }

    /// Every split point of a stream of frames, fed one byte at a time and in two halves,
    /// yields the same frames.
    #[test]
    fn frames_split_anywhere() {
        let stream = framed(&[b"first", &[7u8; 300], b"third"]);
        let expected = vec![b"first".to_vec(), vec![7u8; 300], b"third".to_vec()];
        let mut d = FrameDecoder::new(1500);
        let mut got = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            got.extend(drain(&mut d).unwrap());
        }
        assert_eq!(got, expected);
        for cut in 0..stream.len() {
            let mut d = FrameDecoder::new(1500);
            d.push(&stream[..cut]);
            let mut got = drain(&mut d).unwrap();
            d.push(&stream[cut..]);
            got.extend(drain(&mut d).unwrap());
            assert_eq!(got, expected, "cut at {cut}");
        }
    }

    #[test]
    fn oversize_frame_is_refused_before_its_body() {
        let mut d = FrameDecoder::new(1500);
        d.push(&frame_header(1501).unwrap());
        assert_eq!(
            d.next_frame(),
            Err(FrameError::Oversize {
                len: 1501,
                max: 1500
            })
        );
        let mut d = FrameDecoder::new(1500);
        d.push(&framed(&[&[1u8; 1500]]));
        assert_eq!(drain(&mut d).unwrap().len(), 1);
    }

    /// Not ICE-TCP (an HTTP request, a TLS hello): its first bytes read as a huge or empty
    /// length, and the decoder refuses instead of waiting for kilobytes.
    #[test]
    fn garbage_is_refused() {
        for garbage in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"\x16\x03\x01\x02\x00",
            b"\0\0abc",
        ] {
            let mut d = FrameDecoder::new(1500);
            d.push(garbage);
            assert!(d.next_frame().is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn headers_for_what_fits() {
        assert_eq!(frame_header(1), Some([0, 1]));
        assert_eq!(frame_header(0x1234), Some([0x12, 0x34]));
        assert_eq!(frame_header(0), None);
        assert_eq!(frame_header(65_536), None);
    }
}
