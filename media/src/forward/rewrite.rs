//! Per outgoing stream sequence-number and timestamp rewriting.
//!
//! Each viewer stream has its own SSRC (chosen at negotiation) and must see one unbroken
//! sequence-number space and a timestamp line that only moves forward, whatever happens
//! upstream: when the floor publisher drops and republishes (new SSRC, new random sequence
//! and timestamp bases), the next packet continues at `last + 1` and the timestamp advances
//! by the wall time that passed. Players then keep playing without renegotiation.
//!
//! Pure state, clock passed in; one small struct per viewer stream, no allocation.

use std::time::Instant;

/// An incoming stream: publisher peer plus its SSRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey {
    pub peer: u64,
    pub ssrc: u32,
}

#[derive(Clone, Copy, Debug)]
struct Source {
    key: SourceKey,
    /// Packets before this one belong to the time before the switch and are dropped.
    first_in_seq: u64,
    seq_offset: u64,
    ts_offset: u32,
}

#[derive(Clone, Copy, Debug)]
struct LastOut {
    seq: u64,
    ts: u32,
    at: Instant,
}

/// Rewriter for one outgoing stream.
#[derive(Clone, Debug)]
pub struct Rewriter {
    clock_rate: u32,
    source: Option<Source>,
    last: Option<LastOut>,
}

impl Rewriter {
    /// `clock_rate` of the RTP timestamps: 48 000 for Opus, 90 000 for video.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            source: None,
            last: None,
        }
    }

    /// The outgoing (extended sequence number, timestamp) for an incoming packet, or `None`
    /// when the packet must not be forwarded (it predates the current source's first packet).
    pub fn rewrite(
        &mut self,
        key: SourceKey,
        in_seq: u64,
        in_ts: u32,
        now: Instant,
    ) -> Option<(u64, u32)> {
        let source = match self.source {
            Some(s) if s.key == key => {
                if in_seq < s.first_in_seq {
                    return None;
                }
                s
            }
            _ => self.switch_to(key, in_seq, in_ts, now),
        };
        let seq = in_seq.wrapping_add(source.seq_offset);
        let ts = in_ts.wrapping_add(source.ts_offset);
        match self.last {
            Some(last) if seq <= last.seq => {}
            _ => self.last = Some(LastOut { seq, ts, at: now }),
        }
        Some((seq, ts))
    }

    /// For a retransmission: the source packet behind outgoing sequence number `out_seq`
    /// (source, its sequence number) and the timestamp offset to apply, while that source is
    /// still the current one. Pure: a retransmission never moves the mapping.
    pub fn source_of(&self, out_seq: u64) -> Option<(SourceKey, u64, u32)> {
        let s = self.source?;
        let in_seq = out_seq.wrapping_sub(s.seq_offset);
        let sent = self.last.is_some_and(|l| out_seq <= l.seq);
        (sent && in_seq >= s.first_in_seq).then_some((s.key, in_seq, s.ts_offset))
    }

    /// The next outgoing (sequence number, timestamp) for an RTP padding packet: the
    /// sequence number after the last packet, the last packet's timestamp (padding carries no
    /// media time). `None` before the first packet.
    pub fn pad(&mut self) -> Option<(u64, u32)> {
        let last = self.last.as_mut()?;
        last.seq += 1;
        Some((last.seq, last.ts))
    }

    /// The next packet starts afresh, as after a source switch: it continues at the next
    /// sequence number with the timestamp moved on by the time that passed. For a stream
    /// that skipped packets (a paused video), so the viewer sees no gap to NACK.
    pub fn restart(&mut self) {
        self.source = None;
    }

    /// Whether any packet was written on this stream yet.
    pub fn started(&self) -> bool {
        self.last.is_some()
    }

    fn switch_to(&mut self, key: SourceKey, in_seq: u64, in_ts: u32, now: Instant) -> Source {
        let (next_seq, next_ts) = match self.last {
            None => (in_seq, in_ts),
            Some(last) => {
                let elapsed = now.saturating_duration_since(last.at);
                let ticks = (elapsed.as_micros() * self.clock_rate as u128 / 1_000_000) as u32;
                (last.seq + 1, last.ts.wrapping_add(ticks.max(1)))
            }
        };
        let source = Source {
            key,
            first_in_seq: in_seq,
            seq_offset: next_seq.wrapping_sub(in_seq),
            ts_offset: next_ts.wrapping_sub(in_ts),
        };
        self.source = Some(source);
        source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn padding_then_a_restart_leave_no_gap_and_no_stale_resends() {
        let t0 = Instant::now();
        let key = SourceKey { peer: 1, ssrc: 7 };
        let mut r = Rewriter::new(90_000);
        assert_eq!(r.pad(), None, "nothing to pad before the first packet");
        assert_eq!(r.rewrite(key, 100, 9_000, t0), Some((100, 9_000)));
        // Packets 101..=199 are skipped (video paused), padding goes out meanwhile.
        assert_eq!(r.pad(), Some((101, 9_000)));
        assert_eq!(r.pad(), Some((102, 9_000)));
        r.restart();
        assert_eq!(r.source_of(101), None, "padding is never resent as media");
        let later = t0 + Duration::from_secs(2);
        let (seq, ts) = r.rewrite(key, 200, 99_000, later).unwrap();
        assert_eq!(seq, 103, "continues right after the padding");
        assert_eq!(ts, 9_000 + 180_000, "time moved on by the 2 s that passed");
        assert_eq!(r.rewrite(key, 201, 99_900, later), Some((104, 189_900)));
    }

    const A: SourceKey = SourceKey { peer: 1, ssrc: 111 };
    const B: SourceKey = SourceKey { peer: 2, ssrc: 222 };

    #[test]
    fn first_source_passes_through() {
        let now = Instant::now();
        let mut r = Rewriter::new(90_000);
        assert_eq!(r.rewrite(A, 500, 1000, now), Some((500, 1000)));
        assert_eq!(r.rewrite(A, 501, 4000, now), Some((501, 4000)));
    }

    #[test]
    fn switch_continues_sequence_and_advances_timestamp_by_wall_time() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.rewrite(A, 100, 9_000, t0).unwrap();
        r.rewrite(A, 101, 12_000, t0 + Duration::from_millis(33))
            .unwrap();
        // The new publisher starts with unrelated bases, 2 s later.
        let t1 = t0 + Duration::from_millis(2_033);
        assert_eq!(r.rewrite(B, 40_000, 77, t1), Some((102, 12_000 + 180_000)));
        assert_eq!(
            r.rewrite(B, 40_001, 77 + 3000, t1),
            Some((103, 12_000 + 183_000))
        );
    }

    #[test]
    fn reordered_packets_keep_their_place() {
        let now = Instant::now();
        let mut r = Rewriter::new(48_000);
        r.rewrite(A, 10, 0, now).unwrap();
        assert_eq!(r.rewrite(A, 12, 1920, now), Some((12, 1920)));
        assert_eq!(r.rewrite(A, 11, 960, now), Some((11, 960)));
        assert_eq!(r.rewrite(A, 13, 2880, now), Some((13, 2880)));
    }

    #[test]
    fn late_packets_from_before_a_switch_are_dropped() {
        let now = Instant::now();
        let mut r = Rewriter::new(48_000);
        r.rewrite(A, 10, 0, now).unwrap();
        r.rewrite(B, 900, 0, now).unwrap();
        assert_eq!(r.rewrite(B, 899, 0, now), None);
        // Switching back to A starts a fresh mapping after B's last packet.
        assert_eq!(r.rewrite(A, 11, 960, now).map(|x| x.0), Some(12));
    }

    #[test]
    fn timestamp_wraps() {
        let now = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.rewrite(A, 1, u32::MAX - 10, now).unwrap();
        let (_, ts) = r.rewrite(B, 7, 5, now + Duration::from_millis(1)).unwrap();
        assert_eq!(ts, (u32::MAX - 10).wrapping_add(90));
    }

    #[test]
    fn a_retransmission_finds_its_source_packet_only_while_that_source_is_current() {
        let now = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.rewrite(A, 100, 9_000, now).unwrap();
        r.rewrite(A, 101, 12_000, now).unwrap();
        let (key, seq, off) = r.source_of(101).unwrap();
        assert_eq!((key, seq, 12_000u32.wrapping_add(off)), (A, 101, 12_000));
        assert!(r.source_of(102).is_none(), "not sent yet");
        assert!(
            r.source_of(99).is_none(),
            "before the source's first packet"
        );
        let (out, ts) = r.rewrite(B, 7_000, 5, now).unwrap();
        let (key, seq, off) = r.source_of(out).unwrap();
        assert_eq!((key, seq, 5u32.wrapping_add(off)), (B, 7_000, ts));
        assert!(r.source_of(101).is_none(), "A's packets are gone with A");
    }

    proptest! {
        /// Whatever the sources, restarts and their bases: in-order packets from the current
        /// source come out with sequence numbers that rise by exactly one.
        #[test]
        fn output_sequence_is_continuous(
            runs in proptest::collection::vec((any::<u32>(), 0u64..60_000, any::<u32>(), 1usize..40, 0u64..5_000), 1..8)
        ) {
            let mut r = Rewriter::new(90_000);
            let mut now = Instant::now();
            let mut prev: Option<u64> = None;
            for (i, (ssrc, seq0, ts0, len, gap_ms)) in runs.into_iter().enumerate() {
                now += Duration::from_millis(gap_ms);
                let key = SourceKey { peer: i as u64, ssrc };
                for k in 0..len as u64 {
                    let (seq, _) = r.rewrite(key, seq0 + k, ts0.wrapping_add(k as u32 * 3000), now).unwrap();
                    if let Some(p) = prev {
                        prop_assert_eq!(seq, p + 1);
                    }
                    prev = Some(seq);
                }
            }
        }
    }
}
