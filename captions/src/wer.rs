//! Word error rate: how far a recognizer's text is from a reference transcript.
//!
//! Both texts are normalised the same way first (lowercase, punctuation dropped), so the rate
//! measures words, not casing or commas. Errors are the word-level Levenshtein distance
//! (substitutions + deletions + insertions); counts add up across utterances, which is how a
//! corpus WER is formed (sum of errors over sum of reference words, not a mean of rates).

/// Splits `text` into lowercase words. Punctuation becomes a word break, except an apostrophe
/// between two letters or digits ("don't", "john's"), which is part of the word.
pub fn normalise(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
            continue;
        }
        let inside_word = c == '\''
            && !word.is_empty()
            && chars.get(i + 1).is_some_and(|next| next.is_alphanumeric());
        if inside_word {
            word.push('\'');
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Word errors against a reference; add counts to pool several utterances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WerCount {
    /// Substitutions + deletions + insertions.
    pub errors: usize,
    /// Words in the (normalised) reference.
    pub ref_words: usize,
}

impl WerCount {
    /// Errors per reference word. An empty reference gives 0 with no errors and 1 per error
    /// otherwise, so a hypothesis invented out of silence still counts against the engine.
    pub fn rate(&self) -> f64 {
        if self.ref_words == 0 {
            return self.errors as f64;
        }
        self.errors as f64 / self.ref_words as f64
    }
}

impl std::ops::Add for WerCount {
    type Output = WerCount;

    fn add(self, other: WerCount) -> WerCount {
        WerCount {
            errors: self.errors + other.errors,
            ref_words: self.ref_words + other.ref_words,
        }
    }
}

impl std::ops::AddAssign for WerCount {
    fn add_assign(&mut self, other: WerCount) {
        *self = *self + other;
    }
}

/// Counts word errors of `hypothesis` against `reference` after [`normalise`] on both.
pub fn count(reference: &str, hypothesis: &str) -> WerCount {
    let reference = normalise(reference);
    let hypothesis = normalise(hypothesis);
    WerCount {
        errors: edit_distance(&reference, &hypothesis),
        ref_words: reference.len(),
    }
}

/// Levenshtein distance over words, one row at a time (memory is O(hypothesis length)).
fn edit_distance(reference: &[String], hypothesis: &[String]) -> usize {
    // prev[j]: distance between the first i-1 reference words and the first j hypothesis words.
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    let mut cur = vec![0; hypothesis.len() + 1];
    for (i, r) in reference.iter().enumerate() {
        cur[0] = i + 1;
        for (j, h) in hypothesis.iter().enumerate() {
            let substitution = prev[j] + usize::from(r != h);
            let deletion = prev[j + 1] + 1;
            let insertion = cur[j] + 1;
            cur[j + 1] = substitution.min(deletion).min(insertion);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[hypothesis.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_lowercases_and_drops_punctuation() {
        assert_eq!(
            normalise("Hello, World! It's  John's \"book\" -- 'quoted' 42."),
            ["hello", "world", "it's", "john's", "book", "quoted", "42"]
        );
    }

    #[test]
    fn normalise_keeps_only_inner_apostrophes() {
        assert_eq!(
            normalise("'tis the dogs' bone'"),
            ["tis", "the", "dogs", "bone"]
        );
        assert_eq!(normalise("rock-and-roll"), ["rock", "and", "roll"]);
        assert!(normalise(" ,.;! ").is_empty());
    }

    #[test]
    fn identical_texts_have_no_errors() {
        let c = count(
            "He was not an ill disposed young man",
            "he was NOT an ill-disposed young man.",
        );
        assert_eq!(
            c,
            WerCount {
                errors: 0,
                ref_words: 8
            }
        );
        assert_eq!(c.rate(), 0.0);
    }

    #[test]
    fn counts_substitutions_deletions_and_insertions() {
        // one substitution
        assert_eq!(count("a b c d", "a x c d").errors, 1);
        // one deletion
        assert_eq!(count("a b c d", "a c d").errors, 1);
        // one insertion
        assert_eq!(count("a b c d", "a b y c d").errors, 1);
        // all three
        let c = count(
            "he was not an ill disposed young man",
            "he was now an illness disposed man ok",
        );
        // now/not (sub), illness/ill (sub), young (del), ok (ins)
        assert_eq!(c.errors, 4);
        assert_eq!(c.ref_words, 8);
        assert!((c.rate() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn empty_sides() {
        assert_eq!(
            count("", ""),
            WerCount {
                errors: 0,
                ref_words: 0
            }
        );
        assert_eq!(
            count("one two", ""),
            WerCount {
                errors: 2,
                ref_words: 2
            }
        );
        let invented = count("", "one two three");
        assert_eq!(invented.errors, 3);
        assert_eq!(invented.rate(), 3.0);
    }

    #[test]
    fn counts_pool_across_utterances() {
        let mut total = WerCount::default();
        total += count("a b c d", "a b c d");
        total += count("e f", "e g");
        assert_eq!(
            total,
            WerCount {
                errors: 1,
                ref_words: 6
            }
        );
    }
}
