//! CART input as Zoom's closed-caption API defines it: each caption carries `seq`, which
//! rises by one per caption and repeats when the captioning software retries a POST.
//!
//! Sequencing is per *stream*: one captioner (the token's `sub`) writing one language in one
//! session. Two captioners taking turns, or one writing two languages, never disturb each
//! other. [`CartStream`] is the pure state of one stream (no clock, no storage: `now_ms` is
//! passed in) and decides what a POST is:
//!
//! - `seq` above the last (by at most [`MAX_JUMP`]): a new caption.
//! - `seq` equal to the last with the same text: a retry, acknowledged, changes nothing.
//! - `seq` below the last by more than [`RESTART_WINDOW`], or below it after
//!   [`RESTART_AFTER_MS`] of silence: the captioning software restarted (Zoom clients start
//!   again from 0 or 1): a new run, taken as a new caption.
//! - any other `seq` at or below the last: stale (a late duplicate, or a second copy of the
//!   software): refused with the last `seq`, so the client can resynchronise.
//! - `seq` more than [`MAX_JUMP`] above the last (or above `i64::MAX`, which SQLite cannot
//!   hold): refused, so one absurd number cannot jam the stream.
//!
//! An empty caption clears the viewers' caption line and ends the captioner's current
//! segment: the next caption's span starts after the clear, not at the previous caption.

/// A `seq` lower than the last by more than this starts a new run (about 20 s of captions at
/// one a second; a retry never arrives that late).
pub const RESTART_WINDOW: u64 = 20;
/// A lower `seq` after this long without a caption from the stream starts a new run too.
pub const RESTART_AFTER_MS: i64 = 60_000;
/// The largest step forward accepted: a lost caption or a few are normal, a million are not.
pub const MAX_JUMP: u64 = 1_000_000;
/// The largest `seq` accepted (SQLite integers are signed 64-bit).
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// Why a caption was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeqError {
    #[error(
        "seq {seq} is at or below the last seq {last} of this captioner and language \
         (a late duplicate?); continue from {next}",
        next = last + 1
    )]
    Stale { seq: u64, last: u64 },
    #[error(
        "seq {seq} jumps too far ahead of the last seq {last} (at most {MAX_JUMP} ahead); \
         continue from {next}",
        next = last + 1
    )]
    TooFarAhead { seq: u64, last: u64 },
}

/// What a caption the stream accepted does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// A new caption spanning `start_ms..end_ms` (Unix ms). `new_run`: the captioning
    /// software restarted its numbering.
    Caption {
        start_ms: i64,
        end_ms: i64,
        new_run: bool,
    },
    /// An empty caption: clear the line; the segment ends at `at_ms`.
    Clear { at_ms: i64, new_run: bool },
    /// The last caption again (a retry): acknowledge, change nothing.
    Repeat,
}

/// The sequencing state of one (session, captioner, language) stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CartStream {
    /// The last accepted seq and its text (to tell a retry from a conflicting reuse).
    last: Option<(u64, String)>,
    /// When the last caption was accepted (Unix ms).
    last_at_ms: i64,
    /// The end of the current segment: the last caption's end, or the time of a clear.
    segment_end_ms: Option<i64>,
    /// Bumped on every change: a store writes a stream's row only over an older version, so
    /// two concurrent posts cannot leave the older state on disk.
    version: u64,
    /// Counts runs (restarts) of the stream, from 0.
    run: u64,
}

/// A stream's state as persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSnapshot {
    pub last_seq: u64,
    pub last_text: String,
    pub last_at_ms: i64,
    pub segment_end_ms: Option<i64>,
    pub version: u64,
    pub run: u64,
}

impl CartStream {
    /// A stream that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream as it was stored.
    pub fn restore(s: StreamSnapshot) -> Self {
        CartStream {
            last: Some((s.last_seq, s.last_text)),
            last_at_ms: s.last_at_ms,
            segment_end_ms: s.segment_end_ms,
            version: s.version,
            run: s.run,
        }
    }

    /// What to persist (None before the first caption).
    pub fn snapshot(&self) -> Option<StreamSnapshot> {
        self.last.as_ref().map(|(seq, text)| StreamSnapshot {
            last_seq: *seq,
            last_text: text.clone(),
            last_at_ms: self.last_at_ms,
            segment_end_ms: self.segment_end_ms,
            version: self.version,
            run: self.run,
        })
    }

    /// The last accepted seq; 0 before the first (what Zoom's `GET …/seq` answers).
    pub fn last_seq(&self) -> u64 {
        self.last.as_ref().map_or(0, |(seq, _)| *seq)
    }

    /// Which run of the stream this is (0 until the first restart).
    pub fn run(&self) -> u64 {
        self.run
    }

    /// Decides on a caption (`text` already trimmed; empty clears) that arrived at `now_ms`,
    /// and updates the stream when it is accepted.
    pub fn caption(&mut self, seq: u64, text: &str, now_ms: i64) -> Result<Accepted, SeqError> {
        let new_run = match &self.last {
            None => {
                if seq > MAX_JUMP {
                    return Err(SeqError::TooFarAhead { seq, last: 0 });
                }
                false
            }
            Some((last, last_text)) => {
                let last = *last;
                if seq > last {
                    if seq - last > MAX_JUMP || seq > MAX_SEQ {
                        return Err(SeqError::TooFarAhead { seq, last });
                    }
                    false
                } else if seq == last && text == last_text {
                    return Ok(Accepted::Repeat);
                } else if last - seq > RESTART_WINDOW
                    || now_ms.saturating_sub(self.last_at_ms) >= RESTART_AFTER_MS
                {
                    true
                } else {
                    return Err(SeqError::Stale { seq, last });
                }
            }
        };
        if new_run {
            self.run += 1;
        }
        self.last = Some((seq, text.to_owned()));
        self.last_at_ms = now_ms;
        self.version += 1;
        if text.is_empty() {
            // Never move the segment's end backwards (a clock step).
            let at_ms = self.segment_end_ms.map_or(now_ms, |e| e.max(now_ms));
            self.segment_end_ms = Some(at_ms);
            return Ok(Accepted::Clear { at_ms, new_run });
        }
        let (start_ms, end_ms) = caption_span(self.segment_end_ms, now_ms, text);
        self.segment_end_ms = Some(end_ms);
        Ok(Accepted::Caption {
            start_ms,
            end_ms,
            new_run,
        })
    }
}

/// Captioners type behind the speech; a caption spans the time since the previous one,
/// bounded by a speaking rate so a caption after a long pause does not claim the pause.
const MS_PER_WORD: i64 = 400;
const MAX_SPAN_MS: i64 = 10_000;

/// The (start, end) of a caption that arrived at `now_ms` (Unix ms), given the end of the
/// previous one.
pub fn caption_span(previous_end_ms: Option<i64>, now_ms: i64, text: &str) -> (i64, i64) {
    let words = text.split_whitespace().count().max(1) as i64;
    let by_rate = now_ms - (words * MS_PER_WORD).min(MAX_SPAN_MS);
    let start = match previous_end_ms {
        Some(prev) if prev <= now_ms => prev.max(by_rate),
        _ => by_rate,
    };
    (start, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000_000;

    fn stored(r: Result<Accepted, SeqError>) -> bool {
        matches!(r, Ok(Accepted::Caption { .. } | Accepted::Clear { .. }))
    }

    #[test]
    fn rising_seqs_are_captions_and_gaps_are_accepted() {
        let mut s = CartStream::new();
        assert_eq!(s.last_seq(), 0);
        assert!(stored(s.caption(0, "zero", T)));
        assert!(stored(s.caption(1, "one", T + 1_000)));
        // A gap (a caption lost on the way) is accepted: the captioner has moved on.
        assert!(stored(s.caption(5, "five", T + 2_000)));
        assert_eq!(s.last_seq(), 5);
        assert_eq!(s.run(), 0);
    }

    #[test]
    fn an_exact_retry_of_the_last_is_a_repeat_and_changes_nothing() {
        let mut s = CartStream::new();
        s.caption(1, "hello", T).unwrap();
        let before = s.clone();
        assert_eq!(s.caption(1, "hello", T + 500), Ok(Accepted::Repeat));
        assert_eq!(s, before);
    }

    #[test]
    fn stale_seqs_are_refused_with_the_last() {
        let mut s = CartStream::new();
        for seq in 1..=5 {
            s.caption(seq, &format!("c{seq}"), T + seq as i64).unwrap();
        }
        let before = s.clone();
        // A late duplicate of an older caption.
        assert_eq!(
            s.caption(3, "c3", T + 10),
            Err(SeqError::Stale { seq: 3, last: 5 })
        );
        // The last seq reused for other text: a second copy of the software, not a retry.
        assert_eq!(
            s.caption(5, "something else", T + 10),
            Err(SeqError::Stale { seq: 5, last: 5 })
        );
        assert_eq!(s, before, "a refusal changes nothing");
        let msg = SeqError::Stale { seq: 3, last: 5 }.to_string();
        assert!(msg.contains("continue from 6"), "{msg}");
    }

    #[test]
    fn a_restart_from_one_is_a_new_run() {
        // Far below the last: a new run at once.
        let mut s = CartStream::new();
        let n = RESTART_WINDOW + 5;
        for seq in 1..=n {
            s.caption(seq, "x", T + seq as i64 * 1_000).unwrap();
        }
        let now = T + n as i64 * 1_000 + 500;
        assert!(matches!(
            s.caption(1, "restarted", now),
            Ok(Accepted::Caption { new_run: true, .. })
        ));
        assert_eq!((s.last_seq(), s.run()), (1, 1));
        assert!(stored(s.caption(2, "and on", now + 1_000)));

        // Just below the last, but after a minute of silence: a new run too.
        let mut s = CartStream::new();
        s.caption(1, "a", T).unwrap();
        s.caption(2, "b", T + 1_000).unwrap();
        assert!(matches!(
            s.caption(1, "c", T + 2_000),
            Err(SeqError::Stale { .. })
        ));
        assert!(matches!(
            s.caption(1, "c", T + 1_000 + RESTART_AFTER_MS),
            Ok(Accepted::Caption { new_run: true, .. })
        ));
    }

    #[test]
    fn absurd_jumps_are_refused_and_do_not_jam_the_stream() {
        let mut s = CartStream::new();
        assert_eq!(
            s.caption(1 << 63, "jam", T),
            Err(SeqError::TooFarAhead {
                seq: 1 << 63,
                last: 0
            })
        );
        assert!(stored(s.caption(1, "first", T)));
        assert!(matches!(
            s.caption(1 << 63, "jam", T + 1),
            Err(SeqError::TooFarAhead { last: 1, .. })
        ));
        assert!(matches!(
            s.caption(u64::MAX, "jam", T + 1),
            Err(SeqError::TooFarAhead { .. })
        ));
        assert!(matches!(
            s.caption(2 + MAX_JUMP, "too far", T + 1),
            Err(SeqError::TooFarAhead { .. })
        ));
        assert!(stored(s.caption(1 + MAX_JUMP, "far but allowed", T + 2)));
        assert!(stored(s.caption(2 + MAX_JUMP, "next", T + 3)));
        // Near the top of the range: never past what SQLite holds.
        let mut s = CartStream::restore(StreamSnapshot {
            last_seq: MAX_SEQ - 1,
            last_text: "x".into(),
            last_at_ms: T,
            segment_end_ms: None,
            version: 1,
            run: 0,
        });
        assert!(stored(s.caption(MAX_SEQ, "top", T + 1)));
        assert!(matches!(
            s.caption(MAX_SEQ + 1, "over", T + 2),
            Err(SeqError::TooFarAhead { .. })
        ));
    }

    #[test]
    fn an_empty_caption_clears_and_ends_the_segment() {
        let mut s = CartStream::new();
        s.caption(1, "Good morning.", T).unwrap();
        assert_eq!(
            s.caption(2, "", T + 3_000),
            Ok(Accepted::Clear {
                at_ms: T + 3_000,
                new_run: false
            })
        );
        assert_eq!(s.caption(2, "", T + 3_100), Ok(Accepted::Repeat));
        assert_eq!(s.last_seq(), 2);
        // The next caption starts no earlier than the clear, even if its words would
        // reach back further.
        let long = "w ".repeat(20);
        match s.caption(3, long.trim(), T + 4_000) {
            Ok(Accepted::Caption {
                start_ms, end_ms, ..
            }) => assert_eq!((start_ms, end_ms), (T + 3_000, T + 4_000)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn snapshots_restore_the_same_decisions_and_versions_rise() {
        let mut s = CartStream::new();
        assert_eq!(s.snapshot(), None);
        s.caption(4, "four", T).unwrap();
        let v1 = s.snapshot().unwrap();
        s.caption(5, "five", T + 1).unwrap();
        let v2 = s.snapshot().unwrap();
        assert!(v2.version > v1.version);
        let mut back = CartStream::restore(v2.clone());
        assert_eq!(back.caption(5, "five", T + 2), Ok(Accepted::Repeat));
        assert!(matches!(
            back.caption(4, "four", T + 2),
            Err(SeqError::Stale { .. })
        ));
        assert_eq!(back.snapshot().unwrap(), v2);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Seqs near the interesting edges: small, around the last, jumps, the top of u64.
        fn seq() -> impl Strategy<Value = u64> {
            prop_oneof![
                0u64..40,
                Just(MAX_JUMP),
                Just(MAX_JUMP + 1),
                Just(MAX_SEQ),
                Just(1 << 63),
                Just(u64::MAX),
                any::<u64>(),
            ]
        }

        proptest! {
            /// Whatever captioners send: never a panic; refusals and retries change nothing;
            /// an accepted caption is the new last, with a higher version; a caption's span
            /// never ends before it starts; the last seq never exceeds what SQLite holds.
            #[test]
            fn the_sequencer_keeps_its_invariants(
                posts in proptest::collection::vec(
                    (seq(), prop_oneof![Just(""), Just("a"), Just("b c")], 0i64..120_000),
                    1..60,
                )
            ) {
                let mut s = CartStream::new();
                let mut now = T;
                for (seq, text, dt) in posts {
                    now += dt;
                    let before = s.clone();
                    match s.caption(seq, text, now) {
                        Ok(Accepted::Repeat) | Err(_) => prop_assert_eq!(&s, &before),
                        Ok(accepted) => {
                            prop_assert_eq!(s.last_seq(), seq);
                            prop_assert!(s.version > before.version);
                            if let Accepted::Caption { start_ms, end_ms, .. } = accepted {
                                prop_assert!(start_ms <= end_ms);
                                prop_assert!(!text.is_empty());
                            }
                        }
                    }
                    prop_assert!(s.last_seq() <= MAX_SEQ);
                    if let Some(snap) = s.snapshot() {
                        prop_assert_eq!(CartStream::restore(snap), s.clone());
                    }
                }
            }
        }
    }

    #[test]
    fn a_caption_spans_from_the_previous_one_bounded_by_speaking_rate() {
        assert_eq!(
            caption_span(Some(9_000), 10_000, "three short words"),
            (9_000, 10_000)
        );
        assert_eq!(
            caption_span(Some(1_000), 10_000, "two words"),
            (9_200, 10_000)
        );
        assert_eq!(
            caption_span(None, 100_000, &"w ".repeat(100)),
            (90_000, 100_000)
        );
        // A clock step backwards must not give a negative span.
        let (s, e) = caption_span(Some(20_000), 10_000, "one");
        assert!(s <= e);
    }
}
