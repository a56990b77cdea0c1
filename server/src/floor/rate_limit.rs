//! The abuse limit on raise/withdraw: at most N actions per participant in any sliding
//! minute. Pure (the clock is passed in) and bounded: a key keeps at most N timestamps, and
//! keys idle for a minute are swept once the map grows, at most once a minute (a sweep
//! walks every key, so it must not run per request).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::model::Millis;

const WINDOW_MS: Millis = 60_000;
/// Above this many keys, idle ones are swept on the next check.
const SWEEP_ABOVE: usize = 10_000;

/// Cheap to clone; clones share the counts.
#[derive(Clone)]
pub struct RateLimiter {
    per_minute: usize,
    keys: Arc<Mutex<Keys>>,
}

#[derive(Default)]
struct Keys {
    times: HashMap<String, VecDeque<Millis>>,
    last_sweep: Millis,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute: per_minute.max(1) as usize,
            keys: Arc::default(),
        }
    }

    /// Counts an action of `key` at `now`, or says how long until one is allowed.
    pub fn check(&self, key: &str, now: Millis) -> Result<(), Duration> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.times.len() > SWEEP_ABOVE && now >= keys.last_sweep + WINDOW_MS {
            keys.last_sweep = now;
            keys.times
                .retain(|_, times| times.back().is_some_and(|t| now < t + WINDOW_MS));
        }
        let times = match keys.times.get_mut(key) {
            Some(t) => t,
            None => keys.times.entry(key.to_owned()).or_default(),
        };
        while times.front().is_some_and(|t| now >= t + WINDOW_MS) {
            times.pop_front();
        }
        if times.len() >= self.per_minute {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(Duration::from_millis(oldest + WINDOW_MS - now));
        }
        times.push_back(now);
        Ok(())
    }

    /// Takes back the action `check` counted for `key` at `at` (one that turned out not to
    /// be an action of `key`'s at all).
    pub fn refund(&self, key: &str, at: Millis) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(times) = keys.times.get_mut(key)
            && let Some(i) = times.iter().rposition(|&t| t == at)
        {
            times.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_n_per_sliding_minute() {
        let limit = RateLimiter::new(3);
        for t in [0, 10, 20] {
            assert!(limit.check("a", t).is_ok());
        }
        assert_eq!(limit.check("a", 30), Err(Duration::from_millis(59_970)));
        assert!(limit.check("b", 30).is_ok(), "keys are independent");
        assert!(
            limit.check("a", 60_000).is_ok(),
            "the first action left the window"
        );
        assert!(limit.check("a", 60_001).is_err());
    }

    #[test]
    fn idle_keys_are_swept() {
        let limit = RateLimiter::new(1);
        for i in 0..=SWEEP_ABOVE {
            limit.check(&format!("k{i}"), 0).unwrap();
        }
        limit.check("late", WINDOW_MS + 1).unwrap();
        assert_eq!(limit.keys.lock().unwrap().times.len(), 1);
        // No second sweep within the same minute, however many keys arrive.
        for i in 0..=SWEEP_ABOVE {
            limit.check(&format!("j{i}"), WINDOW_MS + 2).unwrap();
        }
        limit.check("later", WINDOW_MS + 3).unwrap();
        assert_eq!(limit.keys.lock().unwrap().times.len(), SWEEP_ABOVE + 3);
    }
}
