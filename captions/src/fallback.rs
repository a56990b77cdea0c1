//! When to caption a session with pocketsphinx because Whisper is behind. Whisper's workers
//! are shared by every session of the node; when more people speak than they can decode, a
//! session's finals wait, then its utterances are refused. Rather than lose them, the session
//! takes pocketsphinx (cheaper, its own thread) for its new utterances, and goes back to
//! Whisper once the workers have caught up. Interims are shed before that: they are decoded
//! only when no final waits for a worker.
//!
//! [`Fallback`] is the decision alone, pure, with the clock passed in: it is told the load
//! after each push and answers which engine new utterances should take. Hysteresis keeps a
//! session from flapping: it falls back when more than [`FallbackPolicy::enter_backlog`] of
//! audio waits for the workers or an utterance of its own was refused, and returns only after
//! [`FallbackPolicy::calm`] in fallback with the backlog at or below
//! [`FallbackPolicy::leave_backlog`]. The recognizer applies a change at the next pause, so
//! an utterance is never split between engines.

use std::time::{Duration, Instant};

/// Which engine a session's new utterances take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Whisper,
    /// Pocketsphinx, because Whisper is behind.
    Fallback,
}

/// What the Whisper workers look like from one session, at one push.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    /// Audio handed to the workers (all sessions of the node) and not decoded yet.
    pub backlog: Duration,
    /// An utterance of this session found the queue full since the last observation.
    pub refused: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FallbackPolicy {
    /// More audio than this waiting for the workers: fall back.
    pub enter_backlog: Duration,
    /// The backlog at or below which the workers have caught up.
    pub leave_backlog: Duration,
    /// The shortest stay in fallback.
    pub calm: Duration,
}

impl Default for FallbackPolicy {
    /// Enter past 12 s of waiting audio (more than one forced-cut utterance of 8 s: a new
    /// final would wait behind it); leave after 15 s in fallback once at most 4 s waits.
    fn default() -> Self {
        Self {
            enter_backlog: Duration::from_secs(12),
            leave_backlog: Duration::from_secs(4),
            calm: Duration::from_secs(15),
        }
    }
}

/// The decision for one session.
#[derive(Clone, Debug)]
pub struct Fallback {
    policy: FallbackPolicy,
    mode: Mode,
    /// When the session fell back (`Mode::Fallback` only).
    since: Option<Instant>,
}

impl Fallback {
    pub fn new(policy: FallbackPolicy) -> Self {
        Self {
            policy,
            mode: Mode::Whisper,
            since: None,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Takes the load at `now` and returns the mode new utterances should take.
    pub fn observe(&mut self, load: Load, now: Instant) -> Mode {
        match self.mode {
            Mode::Whisper if load.refused || load.backlog > self.policy.enter_backlog => {
                self.mode = Mode::Fallback;
                self.since = Some(now);
            }
            Mode::Fallback => {
                let calm = self
                    .since
                    .is_none_or(|since| now.saturating_duration_since(since) >= self.policy.calm);
                if load.refused || load.backlog > self.policy.leave_backlog {
                    // Still behind: the calm period starts again from here.
                    self.since = Some(now);
                } else if calm {
                    self.mode = Mode::Whisper;
                    self.since = None;
                }
            }
            Mode::Whisper => {}
        }
        self.mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(backlog_s: u64, refused: bool) -> Load {
        Load {
            backlog: Duration::from_secs(backlog_s),
            refused,
        }
    }

    #[test]
    fn a_busy_but_keeping_up_pool_stays_on_whisper() {
        let t0 = Instant::now();
        let mut f = Fallback::new(FallbackPolicy::default());
        for s in 0..60 {
            // One forced-cut utterance decoding, another waiting: busy, not behind.
            let backlog = if s % 2 == 0 { 8 } else { 12 };
            let at = t0 + Duration::from_secs(s);
            assert_eq!(f.observe(load(backlog, false), at), Mode::Whisper, "{s}");
        }
    }

    #[test]
    fn a_refused_utterance_or_a_long_backlog_falls_back() {
        let t0 = Instant::now();
        let mut f = Fallback::new(FallbackPolicy::default());
        assert_eq!(f.observe(load(0, true), t0), Mode::Fallback);
        let mut f = Fallback::new(FallbackPolicy::default());
        assert_eq!(f.observe(load(13, false), t0), Mode::Fallback);
        assert_eq!(f.mode(), Mode::Fallback);
    }

    #[test]
    fn it_goes_back_once_caught_up_for_the_calm_period() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut f = Fallback::new(FallbackPolicy::default());
        f.observe(load(20, false), s(0));
        // Caught up at once, but not for long enough.
        assert_eq!(f.observe(load(0, false), s(5)), Mode::Fallback);
        assert_eq!(f.observe(load(0, false), s(14)), Mode::Fallback);
        assert_eq!(f.observe(load(0, false), s(15)), Mode::Whisper);
    }

    #[test]
    fn being_behind_again_restarts_the_calm_period() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut f = Fallback::new(FallbackPolicy::default());
        f.observe(load(0, true), s(0));
        assert_eq!(
            f.observe(load(6, false), s(10)),
            Mode::Fallback,
            "above 4 s"
        );
        assert_eq!(
            f.observe(load(4, false), s(20)),
            Mode::Fallback,
            "10 s calm"
        );
        assert_eq!(f.observe(load(0, true), s(24)), Mode::Fallback, "refused");
        assert_eq!(f.observe(load(0, false), s(38)), Mode::Fallback);
        assert_eq!(f.observe(load(0, false), s(39)), Mode::Whisper);
        // And it can fall back again.
        assert_eq!(f.observe(load(0, true), s(40)), Mode::Fallback);
    }

    #[test]
    fn a_clock_that_steps_back_does_not_panic_or_leave_early() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut f = Fallback::new(FallbackPolicy::default());
        f.observe(load(0, true), t0);
        assert_eq!(
            f.observe(load(0, false), t0 - Duration::from_secs(50)),
            Mode::Fallback
        );
    }
}
