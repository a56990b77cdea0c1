//! Keyframes: finding them in RTP payloads, and asking publishers for them without flooding.
//!
//! A viewer's video stream starts (and restarts after a publisher change) on a keyframe, so
//! its decoder never sees frames that reference pictures it does not have. Every joining
//! viewer and every viewer PLI wants a keyframe; a session with thousands of viewers would
//! otherwise send thousands of PLIs, and each one costs the publisher a large frame.

use std::time::{Duration, Instant};

/// Video codecs whose keyframes we recognise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    H264,
}

/// Whether this RTP payload starts a keyframe.
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_starts_keyframe(payload),
        VideoCodec::H264 => h264_starts_keyframe(payload),
    }
}

/// RFC 7741: payload descriptor, then the VP8 payload header whose P bit is 0 on keyframes.
fn vp8_starts_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let start_of_partition = first & 0x10 != 0;
    let partition_index = first & 0x07;
    if !start_of_partition || partition_index != 0 {
        return false;
    }
    let mut at = 1;
    if first & 0x80 != 0 {
        let Some(&ext) = p.get(at) else {
            return false;
        };
        at += 1;
        if ext & 0x80 != 0 {
            // Picture ID: 15 bits when its M bit is set, else 7.
            let Some(&pid) = p.get(at) else {
                return false;
            };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            at += 1; // TID / KEYIDX
        }
    }
    p.get(at).is_some_and(|h| h & 0x01 == 0)
}

/// RFC 6184: an IDR slice or an SPS at the start of a NAL, a STAP-A or the first FU-A fragment.
fn h264_starts_keyframe(p: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    let is_key = |t: u8| t == IDR || t == SPS;
    let Some(&nal) = p.first() else {
        return false;
    };
    match nal & 0x1F {
        STAP_A => {
            let mut rest = &p[1..];
            while rest.len() > 2 {
                let size = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                let Some(unit) = rest.get(2..2 + size) else {
                    return false;
                };
                if unit.first().is_some_and(|h| is_key(h & 0x1F)) {
                    return true;
                }
                rest = &rest[2 + size..];
            }
            false
        }
        FU_A => p
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && is_key(fu & 0x1F)),
        t => is_key(t),
    }
}

/// Rate limit for keyframe requests to one publisher track: at most one per `min_interval`;
/// a request inside the interval is remembered and sent when the interval ends.
#[derive(Clone, Debug)]
pub struct KeyframeLimiter {
    min_interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeLimiter {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_sent: None,
            pending: false,
        }
    }

    /// Someone wants a keyframe. Returns true when the request should go out now.
    pub fn request(&mut self, now: Instant) -> bool {
        match self.last_sent {
            Some(last) if now < last + self.min_interval => {
                self.pending = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// When a deferred request becomes due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.pending, self.last_sent) {
            (true, Some(last)) => Some(last + self.min_interval),
            _ => None,
        }
    }

    /// Returns true when a deferred request should go out now.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.poll_timeout().is_some_and(|due| now >= due) {
            self.last_sent = Some(now);
            self.pending = false;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vp8_keyframe_and_delta() {
        // S=1, PID=0, no extension; payload header P=0 → keyframe.
        assert!(starts_keyframe(VideoCodec::Vp8, &[0x10, 0x00, 0x9d]));
        // P=1 → interframe.
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x10, 0x01]));
        // Not the start of the partition.
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x00, 0x00]));
    }

    #[test]
    fn vp8_with_extended_descriptor() {
        // X=1,S=1; I=1,L=1,T=1; 15-bit picture id; TL0PICIDX; TID; then P=0.
        let p = [0x90, 0xE0, 0x81, 0x23, 0x05, 0x40, 0x00];
        assert!(starts_keyframe(VideoCodec::Vp8, &p));
        let p = [0x90, 0xE0, 0x81, 0x23, 0x05, 0x40, 0x01];
        assert!(!starts_keyframe(VideoCodec::Vp8, &p));
        // Truncated descriptor.
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x90, 0xE0, 0x81]));
    }

    #[test]
    fn h264_forms() {
        assert!(starts_keyframe(VideoCodec::H264, &[0x65, 0x88])); // IDR
        assert!(starts_keyframe(VideoCodec::H264, &[0x67, 0x42])); // SPS
        assert!(!starts_keyframe(VideoCodec::H264, &[0x41, 0x9a])); // non-IDR slice
        // STAP-A with an SPS inside.
        assert!(starts_keyframe(
            VideoCodec::H264,
            &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]
        ));
        // FU-A start of an IDR, then a middle fragment.
        assert!(starts_keyframe(VideoCodec::H264, &[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x05, 0x00]));
    }

    #[test]
    fn limiter_defers_then_fires_once() {
        let t0 = Instant::now();
        let mut l = KeyframeLimiter::new(Duration::from_millis(500));
        assert!(l.request(t0));
        assert!(!l.request(t0 + Duration::from_millis(10)));
        assert!(!l.request(t0 + Duration::from_millis(20)));
        assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        assert!(!l.handle_timeout(t0 + Duration::from_millis(499)));
        assert!(l.handle_timeout(t0 + Duration::from_millis(500)));
        assert_eq!(l.poll_timeout(), None);
        assert!(!l.handle_timeout(t0 + Duration::from_millis(2000)));
        assert!(l.request(t0 + Duration::from_millis(2000)));
    }

    proptest! {
        #[test]
        fn detection_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = starts_keyframe(VideoCodec::Vp8, &data);
            let _ = starts_keyframe(VideoCodec::H264, &data);
        }

        /// However requests arrive, two sends are never closer than the interval.
        #[test]
        fn limiter_respects_interval(steps in proptest::collection::vec((0u64..300, any::<bool>()), 1..200)) {
            let t0 = Instant::now();
            let min = Duration::from_millis(500);
            let mut l = KeyframeLimiter::new(min);
            let mut now = t0;
            let mut last: Option<Instant> = None;
            for (dt, req) in steps {
                now += Duration::from_millis(dt);
                let sent = if req { l.request(now) } else { l.handle_timeout(now) };
                if sent {
                    if let Some(p) = last { prop_assert!(now - p >= min); }
                    last = Some(now);
                }
            }
        }
    }
}
