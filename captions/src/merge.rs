//! Which captions viewers see: a human captioner's (CART) text takes precedence over machine
//! recognition of the same language while the captioner is active. Machine captions are
//! still produced and stored (as the `asr` alternative); they are only held back from
//! viewers until the captioner has been silent for the precedence window.
//!
//! A pure state machine: the clock is passed in, so the switch is tested on a fake clock.

use std::time::{Duration, Instant};

use crate::CaptionEvent;
use crate::Source;

/// Languages a session can have captioners for at once; an older entry is forgotten first.
const MAX_LANGUAGES: usize = 16;

#[derive(Debug)]
pub struct CaptionMerge {
    window: Duration,
    /// Primary language subtag → when CART text in it last arrived.
    last_cart: Vec<(String, Instant)>,
}

impl CaptionMerge {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last_cart: Vec::new(),
        }
    }

    /// CART text arrived now in `lang`.
    pub fn on_cart(&mut self, lang: &str, now: Instant) {
        let key = primary_subtag(lang);
        if let Some(entry) = self.last_cart.iter_mut().find(|(l, _)| *l == key) {
            entry.1 = now;
            return;
        }
        if self.last_cart.len() >= MAX_LANGUAGES {
            // Forget the language whose captioner was heard from longest ago.
            if let Some(oldest) = (0..self.last_cart.len()).min_by_key(|&i| self.last_cart[i].1) {
                self.last_cart.swap_remove(oldest);
            }
        }
        self.last_cart.push((key, now));
    }

    /// Whether viewers see this event now. CART is always shown; machine captions only when
    /// no captioner of their language was active within the window.
    pub fn shown(&self, event: &CaptionEvent, now: Instant) -> bool {
        match event.source {
            Source::Cart => true,
            Source::Asr => !self.cart_active(&event.lang, now),
        }
    }

    /// Whether a captioner of `lang` sent text within the window before `now`.
    pub fn cart_active(&self, lang: &str, now: Instant) -> bool {
        let key = primary_subtag(lang);
        self.last_cart
            .iter()
            .any(|(l, at)| *l == key && now.saturating_duration_since(*at) < self.window)
    }
}

/// `en-US` and `en` are the same language for precedence: a captioner typing `en-GB` covers
/// a recognizer configured for `en-US`.
fn primary_subtag(lang: &str) -> String {
    lang.split(['-', '_'])
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asr(lang: &str) -> CaptionEvent {
        CaptionEvent {
            segment_id: 1,
            text: "machine words".into(),
            is_final: true,
            start: 0.0,
            end: 1.0,
            lang: lang.into(),
            source: Source::Asr,
            confidence: None,
        }
    }

    #[test]
    fn cart_holds_back_machine_captions_for_the_window_then_they_resume() {
        let t0 = Instant::now();
        let mut m = CaptionMerge::new(Duration::from_secs(10));
        assert!(
            m.shown(&asr("en-US"), t0),
            "no captioner yet: machine shown"
        );
        m.on_cart("en-US", t0);
        assert!(!m.shown(&asr("en-US"), t0));
        assert!(!m.shown(&asr("en-US"), t0 + Duration::from_millis(9_999)));
        assert!(m.shown(&asr("en-US"), t0 + Duration::from_secs(10)));
        // The captioner types again: held back again, measured from the new text.
        m.on_cart("en-US", t0 + Duration::from_secs(12));
        assert!(!m.shown(&asr("en-US"), t0 + Duration::from_secs(21)));
        assert!(m.shown(&asr("en-US"), t0 + Duration::from_secs(22)));
    }

    #[test]
    fn precedence_is_per_language_by_primary_subtag() {
        let t0 = Instant::now();
        let mut m = CaptionMerge::new(Duration::from_secs(10));
        m.on_cart("fr-FR", t0);
        assert!(
            m.shown(&asr("en-US"), t0),
            "a French captioner leaves English alone"
        );
        assert!(!m.shown(&asr("fr"), t0));
        m.on_cart("EN-gb", t0);
        assert!(!m.shown(&asr("en-US"), t0));
    }

    #[test]
    fn cart_is_always_shown_and_languages_stay_bounded() {
        let t0 = Instant::now();
        let mut m = CaptionMerge::new(Duration::from_secs(10));
        for i in 0..100 {
            m.on_cart(&format!("x{i}"), t0 + Duration::from_millis(i));
        }
        assert!(m.last_cart.len() <= MAX_LANGUAGES);
        assert!(m.cart_active("x99", t0 + Duration::from_millis(100)));
        assert!(
            !m.cart_active("x0", t0 + Duration::from_millis(100)),
            "oldest forgotten"
        );
        let mut cart = asr("en");
        cart.source = Source::Cart;
        assert!(m.shown(&cart, t0));
    }
}
