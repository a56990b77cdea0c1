//! Synthetic media: byte strings shaped like Opus packets and VP8 frames, sized to a target
//! bitrate. Nothing decodes them; the SFU only looks at RTP headers and the VP8 payload
//! header (keyframe bit), so the rest is pseudo-random filler that defeats compression.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// SplitMix64: a tiny, seedable generator for SSRCs, sizes and filler bytes.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A seed that differs per call and per process (time, pid, a counter).
    pub fn from_entropy() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(nanos ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `lo..=hi` (inclusive; `lo` when `hi <= lo`).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            lo
        } else {
            lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
        }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// One 20 ms Opus packet of `len` bytes: TOC byte for CELT fullband 20 ms mono, one frame.
pub fn opus_packet(rng: &mut SplitMix64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len.max(2)];
    rng.fill(&mut buf[1..]);
    buf[0] = 31 << 3; // config 31 (CELT FB 20 ms), s=0 (mono), c=0 (one frame)
    buf
}

/// A VP8 frame of `len` bytes (at least 10): a valid uncompressed data chunk header (frame
/// tag; for keyframes also the start code and a 640×360 size) followed by filler.
pub fn vp8_frame(rng: &mut SplitMix64, keyframe: bool, len: usize) -> Vec<u8> {
    let len = len.max(10);
    let mut buf = vec![0u8; len];
    rng.fill(&mut buf);
    let header_len = if keyframe { 10 } else { 3 };
    let first_partition = ((len - header_len) / 4).min((1 << 19) - 1) as u32;
    // Frame tag: bit 0 = P (0 = keyframe), bits 1-3 version 0, bit 4 show_frame, 19 bits size.
    let tag = u32::from(!keyframe) | (1 << 4) | (first_partition << 5);
    buf[0] = tag as u8;
    buf[1] = (tag >> 8) as u8;
    buf[2] = (tag >> 16) as u8;
    if keyframe {
        buf[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
        buf[6..8].copy_from_slice(&640u16.to_le_bytes());
        buf[8..10].copy_from_slice(&360u16.to_le_bytes());
    }
    buf
}

/// Frame sizes for a target video bitrate: keyframes 3× an interframe, and the average over
/// one keyframe interval hitting the bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSizes {
    pub keyframe: usize,
    pub interframe: usize,
}

impl FrameSizes {
    /// `interval` = frames per keyframe interval (0 = keyframes only on request; sized as if
    /// one every 10 s).
    pub fn for_bitrate(bits_per_second: u32, fps: u32, interval: u32) -> Self {
        let fps = fps.max(1);
        let per_frame = (bits_per_second / 8 / fps).max(20) as usize;
        let n = if interval == 0 { fps * 10 } else { interval }.max(1) as usize;
        // n*avg = key + (n-1)*inter, key = 3*inter  →  inter = n*avg/(n+2)
        let inter = (per_frame * n / (n + 2)).max(10);
        Self {
            keyframe: inter * 3,
            interframe: inter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_bit_is_clear_only_on_keyframes() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..50 {
            let k = vp8_frame(&mut rng, true, 3000);
            let i = vp8_frame(&mut rng, false, 1000);
            assert_eq!(k[0] & 1, 0);
            assert_eq!(&k[3..6], &[0x9d, 0x01, 0x2a]);
            assert_eq!(i[0] & 1, 1);
            assert_eq!(k.len(), 3000);
        }
    }

    #[test]
    fn frame_sizes_hit_the_bitrate() {
        let s = FrameSizes::for_bitrate(1_000_000, 30, 90);
        let bytes_per_interval = s.keyframe + 89 * s.interframe;
        let bps = bytes_per_interval as f64 * 8.0 * 30.0 / 90.0;
        assert!((bps - 1_000_000.0).abs() / 1_000_000.0 < 0.02, "{bps}");
    }

    #[test]
    fn rng_ranges_and_entropy_differ() {
        let mut r = SplitMix64::new(7);
        for _ in 0..1000 {
            let v = r.range(100, 160);
            assert!((100..=160).contains(&v));
        }
        assert_ne!(
            SplitMix64::from_entropy().next_u64(),
            SplitMix64::from_entropy().next_u64()
        );
        assert_eq!(opus_packet(&mut r, 120).len(), 120);
    }
}
