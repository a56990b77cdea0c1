//! CART input as Zoom's closed-caption API defines it: each caption carries `seq`, which
//! rises by one per caption and repeats when the captioning software retries a POST. A
//! repeated (or older) `seq` is acknowledged without storing the caption twice.

/// What to do with a caption given the last `seq` stored for the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqCheck {
    /// Not seen yet: store and deliver it.
    Fresh,
    /// Seen already (a retry): acknowledge, change nothing.
    Repeat,
}

pub fn check_seq(last: Option<u64>, seq: u64) -> SeqCheck {
    match last {
        Some(last) if seq <= last => SeqCheck::Repeat,
        _ => SeqCheck::Fresh,
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

    #[test]
    fn repeats_and_older_seqs_are_not_fresh() {
        assert_eq!(check_seq(None, 0), SeqCheck::Fresh);
        assert_eq!(check_seq(None, 7), SeqCheck::Fresh);
        assert_eq!(check_seq(Some(7), 8), SeqCheck::Fresh);
        assert_eq!(check_seq(Some(7), 7), SeqCheck::Repeat);
        assert_eq!(check_seq(Some(7), 3), SeqCheck::Repeat);
        // A gap (a caption lost on the way) is accepted: the captioner has moved on.
        assert_eq!(check_seq(Some(7), 12), SeqCheck::Fresh);
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
