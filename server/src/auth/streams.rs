//! How many long-lived event streams (SSE) one token may hold open at once
//! (`max_event_streams_per_token`). Each open stream costs buffers and a task for as long as
//! the client keeps it; without a bound one viewer token held 3,000 of them (+180 MB).
//!
//! A stream takes a [`StreamSlot`] before its response starts and gives it back when the
//! response body is dropped (the client went away, the stream ended, or the node stops), so
//! a slot can never leak.
//!
//! The key is the token's holder: its `sub` together with its `session` claim. Tokens are
//! not stored, so this is what identifies "the same token" (`floorcast token` gives every
//! token a fresh random `sub`); two tokens minted for the same holder and scope share one
//! budget, which is what a per-person limit wants, while the same `sub` with a token for
//! another session (or for `*`) has its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::jwt::Claims;
use crate::metrics::AuthMetrics;

/// Over the limit: the client should close a stream or retry later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this token already has {limit} event streams open, the most one token may hold; close \
     one (another tab or screen) and retry"
)]
pub struct TooManyStreams {
    pub limit: u32,
}

/// Cheap to clone; clones share the counts.
#[derive(Clone)]
pub struct StreamSlots {
    limit: u32,
    open: Arc<Mutex<HashMap<String, u32>>>,
    metrics: Option<AuthMetrics>,
}

impl StreamSlots {
    pub fn new(limit: u32, metrics: Option<AuthMetrics>) -> Self {
        StreamSlots {
            limit: limit.max(1),
            open: Arc::default(),
            metrics,
        }
    }

    /// A slot for a stream of the holder of `claims`, or [`TooManyStreams`] (counted).
    pub fn acquire(&self, claims: &Claims) -> Result<StreamSlot, TooManyStreams> {
        let key = format!("{}\u{0}{}", claims.sub, claims.session);
        {
            // Never held across an await; a panic elsewhere cannot leave the map half-changed.
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let count = open.entry(key.clone()).or_insert(0);
            if *count >= self.limit {
                drop(open);
                if let Some(m) = &self.metrics {
                    m.count_event_stream_refused();
                }
                return Err(TooManyStreams { limit: self.limit });
            }
            *count += 1;
        }
        if let Some(m) = &self.metrics {
            m.event_stream_opened();
        }
        Ok(StreamSlot {
            slots: self.clone(),
            key,
        })
    }

    /// Streams open now for the holder of `claims`.
    pub fn open_for(&self, claims: &Claims) -> u32 {
        let key = format!("{}\u{0}{}", claims.sub, claims.session);
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&key).copied().unwrap_or(0)
    }

    fn release(&self, key: &str) {
        {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = open.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    // The map only holds holders with open streams: it cannot grow unbounded.
                    open.remove(key);
                }
            }
        }
        if let Some(m) = &self.metrics {
            m.event_stream_closed();
        }
    }
}

/// One open stream; dropping it frees the slot.
pub struct StreamSlot {
    slots: StreamSlots,
    key: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.slots.release(&self.key);
    }
}

impl std::fmt::Debug for StreamSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSlot").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::auth::{Role, SessionScope};

    fn claims(sub: &str, session: &str) -> Claims {
        let mut c = Claims::new(
            Role::Viewer,
            SessionScope::parse(session).unwrap(),
            "x",
            Duration::from_secs(60),
            SystemTime::now(),
        );
        c.sub = sub.into();
        c
    }

    #[test]
    fn limit_per_holder_and_freed_on_drop() {
        let slots = StreamSlots::new(2, None);
        let a = claims("a", "s1");
        let first = slots.acquire(&a).unwrap();
        let second = slots.acquire(&a).unwrap();
        assert_eq!(slots.acquire(&a).unwrap_err(), TooManyStreams { limit: 2 });
        // Another holder, and the same sub with a token for another scope, are not affected.
        let _b = slots.acquire(&claims("b", "s1")).unwrap();
        let _a_any = slots.acquire(&claims("a", "*")).unwrap();
        drop(first);
        assert_eq!(slots.open_for(&a), 1);
        let third = slots.acquire(&a).unwrap();
        assert!(slots.acquire(&a).is_err());
        drop((second, third));
        assert_eq!(slots.open_for(&a), 0);
        let open = slots.open.lock().unwrap();
        assert_eq!(open.len(), 2, "holders without streams are forgotten");
    }
}
