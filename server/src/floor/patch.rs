//! How an event moves hands in the queue, so that a client can keep its own place from the
//! events alone and never read the queue again (issue 17: with 100,000 hands and thousands
//! of pages, a queue read per page per event is what falls over first).
//!
//! A [`QueuePatch`] names only the hands whose place the event may change: take `removed`
//! out one by one, then put `inserted` in one by one; every other hand keeps its order.
//! [`OwnPlace`] is that rule applied to one participant's hand. When too many hands move (a
//! policy change), the patch says [`QueuePatch::Reordered`] and the place must be read again
//! once, in the floor task, by whoever tracks it.

use serde::Serialize;

use super::model::{FloorEvent, HandId};

/// Most hands a patch lists; an event that moves more is [`QueuePatch::Reordered`].
pub const MAX_PATCH_HANDS: usize = 64;

/// A hand at a 0-based place in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Place {
    pub hand: HandId,
    pub at: usize,
}

/// What an event did to the order of the queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueuePatch {
    /// `removed` from the last place up, then `inserted` from the first place down, so that
    /// each step's place is right for the queue the steps before it leave.
    Moved {
        removed: Vec<Place>,
        inserted: Vec<Place>,
    },
    /// Most of the queue may have moved: read places again.
    Reordered,
}

impl QueuePatch {
    pub fn unchanged() -> Self {
        QueuePatch::Moved {
            removed: Vec::new(),
            inserted: Vec::new(),
        }
    }
}

/// One participant's hand and its place in the queue, kept from the events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OwnPlace {
    /// The participant's open hand (queued or holding the floor).
    pub hand: Option<HandId>,
    /// Its 0-based place in the queue; `None` while it holds the floor, or without a hand.
    pub position: Option<usize>,
}

impl OwnPlace {
    /// Follows `event` of the participant `sub`; `false` when the patch cannot say where the
    /// hand is now (read it again).
    pub fn follow(&mut self, sub: &str, event: &FloorEvent, patch: &QueuePatch) -> bool {
        if let FloorEvent::HandRaised { hand } = event
            && hand.who.sub == sub
        {
            self.hand = Some(hand.id);
        }
        let QueuePatch::Moved { removed, inserted } = patch else {
            return false;
        };
        for place in removed {
            if Some(place.hand) == self.hand {
                self.position = None;
            } else if let Some(p) = self.position.as_mut()
                && *p > place.at
            {
                *p -= 1;
            }
        }
        for place in inserted {
            if Some(place.hand) == self.hand {
                self.position = Some(place.at);
            } else if let Some(p) = self.position.as_mut()
                && *p >= place.at
            {
                *p += 1;
            }
        }
        match event {
            FloorEvent::HandWithdrawn { hand, .. } | FloorEvent::FloorEnded { hand, .. }
                if Some(*hand) == self.hand =>
            {
                *self = OwnPlace::default();
            }
            _ => {}
        }
        true
    }
}
