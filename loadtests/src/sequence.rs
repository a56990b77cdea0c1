//! RTP sequence-number continuity as a receiver sees it: how many packets arrived, how many
//! are missing, duplicated or late, and whether the numbering ever jumped.
//!
//! A jump is what an SFU that fails to rewrite sequence numbers across a publisher restart
//! produces: thousands of "missing" packets at once, or a leap backwards. Such a jump is
//! counted as a [`SeqStats::discontinuities`] and the tracker re-bases on it, so a single
//! jump does not turn into a huge loss figure that hides everything else.

use serde::Serialize;

/// How far behind the highest number a packet may arrive and still be matched against the
/// ones already seen (duplicate vs late).
const WINDOW: u64 = 1024;
/// A forward gap larger than this is a discontinuity, not loss (≈ 20 s of audio at 50 pkt/s,
/// ≈ 7 s of 1 Mbps video): no real network drops that many packets in a row while the
/// connection stays up, but a broken rewrite produces a random leap of ±32k.
pub const MAX_GAP: u64 = 1000;

/// Counters of one RTP stream's sequence numbers; see the module doc.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SeqStats {
    /// Distinct packets received.
    pub received: u64,
    /// Packets expected (span from the first to the highest number, summed across re-bases).
    pub expected: u64,
    /// Expected but never received (so far).
    pub lost: u64,
    /// Same number received again.
    pub duplicates: u64,
    /// Received after a higher number (filled a gap).
    pub reordered: u64,
    /// Forward gaps (one or more missing packets in a row).
    pub gap_events: u64,
    /// Longest forward gap, in packets.
    pub max_gap: u64,
    /// Jumps beyond [`MAX_GAP`] forwards or beyond the window backwards.
    pub discontinuities: u64,
}

impl SeqStats {
    /// Lost share of expected packets, in percent.
    pub fn loss_percent(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.lost as f64 * 100.0 / self.expected as f64
        }
    }
}

/// Tracks one stream's sequence numbers (extended to 64 bits across wraps).
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// Highest extended number seen, and the first of the current run.
    highest: Option<u64>,
    first: u64,
    /// Expected packets of runs that ended at a discontinuity.
    expected_before: u64,
    /// Bit i%WINDOW set when extended number i (within the window below `highest`) was seen.
    seen: [u64; (WINDOW / 64) as usize],
    stats: SeqStats,
}

impl Default for SeqTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqTracker {
    pub fn new() -> Self {
        Self {
            highest: None,
            first: 0,
            expected_before: 0,
            seen: [0; (WINDOW / 64) as usize],
            stats: SeqStats::default(),
        }
    }

    fn bit(&self, ext: u64) -> bool {
        let i = (ext % WINDOW) as usize;
        self.seen[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_bit(&mut self, ext: u64, on: bool) {
        let i = (ext % WINDOW) as usize;
        if on {
            self.seen[i / 64] |= 1 << (i % 64);
        } else {
            self.seen[i / 64] &= !(1 << (i % 64));
        }
    }

    fn rebase(&mut self, ext: u64) {
        if let Some(h) = self.highest {
            self.expected_before += h - self.first + 1;
        }
        self.seen = [0; (WINDOW / 64) as usize];
        self.first = ext;
        self.highest = Some(ext);
        self.set_bit(ext, true);
        self.stats.received += 1;
    }

    /// Records one received packet's sequence number.
    pub fn record(&mut self, seq: u16) {
        let Some(highest) = self.highest else {
            // Start high so numbers slightly below the first one still extend correctly.
            self.rebase((1u64 << 32) + u64::from(seq));
            return;
        };
        let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
        let ext = (highest as i64 + delta) as u64;
        if delta > 0 {
            let gap = delta as u64 - 1;
            if gap > MAX_GAP {
                self.stats.discontinuities += 1;
                self.rebase(ext);
                return;
            }
            if gap > 0 {
                self.stats.gap_events += 1;
                self.stats.max_gap = self.stats.max_gap.max(gap);
            }
            // Clear the bits of the numbers we skip over and of the new one, then mark it.
            let clear_from = highest + 1;
            for n in clear_from..ext.min(clear_from + WINDOW) {
                self.set_bit(n, false);
            }
            self.set_bit(ext, true);
            self.highest = Some(ext);
            self.stats.received += 1;
        } else if highest - ext < WINDOW && ext >= self.first {
            if self.bit(ext) {
                self.stats.duplicates += 1;
            } else {
                self.set_bit(ext, true);
                self.stats.reordered += 1;
                self.stats.received += 1;
            }
        } else if highest - ext < WINDOW {
            // Just before the first packet of the run: late, extends the run backwards.
            self.first = ext;
            self.set_bit(ext, true);
            self.stats.reordered += 1;
            self.stats.received += 1;
        } else {
            self.stats.discontinuities += 1;
            self.rebase(ext);
        }
    }

    pub fn stats(&self) -> SeqStats {
        let mut s = self.stats;
        s.expected = self.expected_before + self.highest.map_or(0, |h| h - self.first + 1);
        s.lost = s.expected.saturating_sub(s.received);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: impl IntoIterator<Item = u16>) -> SeqStats {
        let mut t = SeqTracker::new();
        for s in seqs {
            t.record(s);
        }
        t.stats()
    }

    #[test]
    fn continuous_across_wrap() {
        let s = feed((0..3000u32).map(|i| (65000 + i) as u16));
        assert_eq!(s.received, 3000);
        assert_eq!(s.expected, 3000);
        assert_eq!(s.lost, 0);
        assert_eq!(s.discontinuities, 0);
        assert_eq!(s.gap_events, 0);
    }

    #[test]
    fn gaps_duplicates_and_reorders() {
        let s = feed([10, 11, 13, 14, 14, 12, 17, 18]);
        assert_eq!(s.received, 7);
        assert_eq!(s.expected, 9);
        assert_eq!(s.lost, 2); // 15, 16
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.reordered, 1);
        assert_eq!(s.gap_events, 2);
        assert_eq!(s.max_gap, 2);
        assert!((s.loss_percent() - 22.22).abs() < 0.01);
    }

    #[test]
    fn a_leap_is_a_discontinuity_not_loss() {
        let mut seqs: Vec<u16> = (100..200).collect();
        seqs.extend(30000..30100);
        let s = feed(seqs);
        assert_eq!(s.discontinuities, 1);
        assert_eq!(s.received, 200);
        assert_eq!(s.expected, 200);
        assert_eq!(s.lost, 0);
    }

    #[test]
    fn a_leap_backwards_is_a_discontinuity() {
        let mut seqs: Vec<u16> = (5000..6000).collect();
        seqs.extend(100..110);
        let s = feed(seqs);
        assert_eq!(s.discontinuities, 1);
        assert_eq!(s.lost, 0);
    }

    #[test]
    fn packet_before_first_is_late_not_lost() {
        let s = feed([50, 51, 49, 52]);
        assert_eq!(s.received, 4);
        assert_eq!(s.expected, 4);
        assert_eq!(s.reordered, 1);
    }

    #[test]
    fn old_window_bits_do_not_fake_duplicates() {
        // After a long run, a number WINDOW behind is outside the window; one just inside
        // that was received is a duplicate, one that was skipped is a reorder.
        let mut t = SeqTracker::new();
        for s in 0..2000u16 {
            if s != 1500 {
                t.record(s);
            }
        }
        t.record(1500);
        t.record(1999);
        let s = t.stats();
        assert_eq!(s.reordered, 1);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.lost, 0);
    }
}
