//! Recent packets of one publisher stream, kept to answer viewers' NACKs.
//!
//! One history per source stream, shared by every viewer on the shard (the packets are the
//! refcounted ones the fan-out already holds), instead of str0m's copy per viewer: a NACK
//! for a viewer's sequence number maps back to the source's through the viewer's
//! [`crate::forward::rewrite::Rewriter`], and the packet is rewritten and protected again.
//! A ring indexed by sequence number: O(1) insert and lookup, fixed memory.

use std::sync::Arc;

/// Slots per source: at ≈ 300 packets/s (2–3 Mbit/s video) about 3 s, beyond any useful
/// retransmission.
const SLOTS: usize = 1024;

/// A held packet with its extended sequence number.
type Slot<T> = Option<(u64, Arc<T>)>;

pub(crate) struct History<T> {
    slots: Box<[Slot<T>]>,
}

impl<T> History<T> {
    pub fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| None).collect(),
        }
    }

    pub fn push(&mut self, seq: u64, packet: Arc<T>) {
        self.slots[seq as usize % SLOTS] = Some((seq, packet));
    }

    /// The packet with extended sequence number `seq`, if still held.
    pub fn get(&self, seq: u64) -> Option<&Arc<T>> {
        match &self.slots[seq as usize % SLOTS] {
            Some((s, p)) if *s == seq => Some(p),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_last_slots_packets_and_nothing_older() {
        let mut h = History::new();
        for seq in 1000..1000 + SLOTS as u64 + 10 {
            h.push(seq, Arc::new(seq));
        }
        assert!(h.get(1009).is_none(), "overwritten by a newer packet");
        assert_eq!(h.get(1010).map(|p| **p), Some(1010));
        let last = 1000 + SLOTS as u64 + 9;
        assert_eq!(h.get(last).map(|p| **p), Some(last));
        assert!(h.get(last + 1).is_none(), "never sent");
    }

    #[test]
    fn a_gap_leaves_the_missing_numbers_empty() {
        let mut h = History::new();
        h.push(5, Arc::new('a'));
        h.push(7, Arc::new('b'));
        assert!(h.get(6).is_none());
        assert_eq!(h.get(7).map(|p| **p), Some('b'));
    }
}
