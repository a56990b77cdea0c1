//! Finals in the order the words were spoken. A session's utterances are decoded by a pool
//! of workers, so a short utterance handed over after a long one can finish first; viewers
//! and the transcript must still get the finals in utterance order. Each utterance takes a
//! [`Ticket`] when it is handed over; results come back in any order and leave in ticket
//! order, each as soon as every earlier ticket has left. A ticket whose utterance gives no
//! caption (refused by a full queue, failed, taken for noise) is completed with `None`, so it
//! holds nothing back.
//!
//! Pure: no clock, no threads. The caller bounds how many tickets are open (the recognizer's
//! in-flight limit), so the buffer is bounded too.

use std::collections::VecDeque;

/// An utterance's place in its session's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

/// Results by ticket, released in ticket order.
#[derive(Debug)]
pub struct Reorder<T> {
    /// The ticket of `slots[0]`: every earlier one has left.
    first: u64,
    /// One slot per open ticket from `first` on: `None` while its result is awaited,
    /// `Some(result)` once it came back (and an earlier one is still awaited).
    slots: VecDeque<Option<Option<T>>>,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Self {
            first: 0,
            slots: VecDeque::new(),
        }
    }
}

impl<T> Reorder<T> {
    /// The next utterance's ticket.
    pub fn issue(&mut self) -> Ticket {
        let ticket = Ticket(self.first + self.slots.len() as u64);
        self.slots.push_back(None);
        ticket
    }

    /// Records what `ticket` gave (`None`: nothing to deliver). False, and nothing changes,
    /// for a ticket never issued or already completed.
    pub fn complete(&mut self, ticket: Ticket, result: Option<T>) -> bool {
        let Some(slot) = ticket
            .0
            .checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.slots.get_mut(i))
        else {
            return false;
        };
        if slot.is_some() {
            return false;
        }
        *slot = Some(result);
        // Tickets at the front that gave nothing leave at once: they hold nothing back, and
        // `open` counts only what is still owed.
        while matches!(self.slots.front(), Some(Some(None))) {
            self.slots.pop_front();
            self.first += 1;
        }
        true
    }

    /// The next result whose turn has come, skipping tickets that gave nothing.
    pub fn pop(&mut self) -> Option<T> {
        while matches!(self.slots.front(), Some(Some(_))) {
            self.first += 1;
            if let Some(Some(Some(result))) = self.slots.pop_front() {
                return Some(result);
            }
        }
        None
    }

    /// Tickets issued that have not left yet (awaited, or waiting behind an awaited one).
    pub fn open(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(r: &mut Reorder<&'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| r.pop()).collect()
    }

    #[test]
    fn a_later_result_waits_for_the_earlier_one() {
        let mut r = Reorder::default();
        let (long, short) = (r.issue(), r.issue());
        assert!(r.complete(short, Some("second")));
        assert_eq!(drain(&mut r), Vec::<&str>::new(), "held behind the first");
        assert_eq!(r.open(), 2);
        assert!(r.complete(long, Some("first")));
        assert_eq!(drain(&mut r), ["first", "second"]);
        assert_eq!(r.open(), 0);
    }

    #[test]
    fn a_ticket_that_gave_nothing_holds_nothing_back() {
        let mut r = Reorder::default();
        let (a, b, c) = (r.issue(), r.issue(), r.issue());
        r.complete(c, Some("c"));
        r.complete(a, None);
        assert_eq!(r.open(), 2, "a left at once");
        assert_eq!(drain(&mut r), Vec::<&str>::new(), "b is still awaited");
        r.complete(b, None);
        assert_eq!(drain(&mut r), ["c"]);
        // The last ticket refused (nothing after it to pop it): nothing is left open.
        let d = r.issue();
        r.complete(d, None);
        assert_eq!(r.open(), 0);
    }

    #[test]
    fn unknown_and_repeated_tickets_are_ignored() {
        let mut r = Reorder::default();
        let a = r.issue();
        assert!(r.complete(a, Some("a")));
        assert!(!r.complete(a, Some("again")), "completed twice");
        assert_eq!(drain(&mut r), ["a"]);
        assert!(!r.complete(a, Some("late")), "already left");
        assert!(!r.complete(Ticket(7), Some("never issued")));
        assert_eq!(r.open(), 0);
    }

    proptest! {
        /// Whatever order the workers finish in, results leave in ticket order, none twice,
        /// and all of them once every ticket is complete.
        #[test]
        fn results_leave_in_ticket_order(
            order in Just((0..12usize).collect::<Vec<_>>()).prop_shuffle(),
            empty in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let mut r = Reorder::default();
            let tickets: Vec<Ticket> = (0..12).map(|_| r.issue()).collect();
            let mut out = Vec::new();
            for &i in &order {
                prop_assert!(r.complete(tickets[i], (!empty[i]).then_some(i)));
                out.extend(std::iter::from_fn(|| r.pop()));
                prop_assert!(out.windows(2).all(|w| w[0] < w[1]), "{out:?}");
            }
            let expected: Vec<usize> = (0..12).filter(|&i| !empty[i]).collect();
            prop_assert_eq!(out, expected);
            prop_assert_eq!(r.open(), 0);
        }
    }
}
