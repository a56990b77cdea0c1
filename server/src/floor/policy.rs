//! How the unpinned part of a floor queue is ordered.
//!
//! Every policy is a sort key per hand, not a comparator: a key depends only on the hand's
//! id, its rank among the waiting hands of its fairness group, and that group's history. So
//! the machine keeps the queue as a sorted list of keys, a raise inserts one key with a
//! binary search instead of re-sorting, and a position is a search too. Only a change of a
//! group's history (a grant, an end) or of its waiting hands changes the keys of that group
//! alone. [`order`] is the same ordering computed from scratch.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{HandId, Millis, Policy};

/// What fairness remembers about a group (a hub, or a person without a hub).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupHistory {
    /// Cumulative floor time of the group's ended turns.
    pub spoken_ms: Millis,
    /// When a hand of the group was last granted the floor.
    pub last_granted_ms: Option<Millis>,
}

/// A hand's place in the unpinned queue: hands sort by ascending key. Keys of one session
/// are comparable only while made under the same policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortKey {
    primary: u64,
    group_since: u64,
    group_first: HandId,
    /// Last, so that keys are unique and ties go to the earlier raise.
    hand: HandId,
}

impl SortKey {
    pub fn hand(&self) -> HandId {
        self.hand
    }
}

/// The key of hand `hand` under `policy`.
///
/// - `round`: how many waiting hands of the same group were raised before it (its round in
///   the round robin).
/// - `group_first`: the earliest waiting hand of its group (it breaks ties between groups
///   with the same history, so the group that has waited longest goes first).
pub fn sort_key(
    policy: Policy,
    hand: HandId,
    round: usize,
    group_first: HandId,
    history: &GroupHistory,
) -> SortKey {
    match policy {
        Policy::Fifo => SortKey {
            primary: 0,
            group_since: 0,
            group_first: 0,
            hand,
        },
        Policy::LeastSpokenFirst => SortKey {
            primary: history.spoken_ms,
            group_since: 0,
            group_first: 0,
            hand,
        },
        Policy::HubRoundRobin => SortKey {
            primary: round as u64,
            // Never granted sorts before any grant time.
            group_since: history.last_granted_ms.map_or(0, |at| at.saturating_add(1)),
            group_first,
            hand,
        },
    }
}

/// The policy order of `hands` (id and fairness key of each waiting, unpinned hand), with
/// `history` giving each group's history. Sorts everything: for previews and checks, not for
/// every raise.
pub fn order<'a>(
    policy: Policy,
    hands: impl IntoIterator<Item = (HandId, &'a str)>,
    history: impl Fn(&str) -> GroupHistory,
) -> Vec<HandId> {
    let mut groups: BTreeMap<&str, BTreeSet<HandId>> = BTreeMap::new();
    for (hand, group) in hands {
        groups.entry(group).or_default().insert(hand);
    }
    let mut keys = Vec::new();
    for (group, waiting) in &groups {
        let history = history(group);
        let first = waiting.first().copied().unwrap_or_default();
        keys.extend(
            waiting
                .iter()
                .enumerate()
                .map(|(round, &hand)| sort_key(policy, hand, round, first, &history)),
        );
    }
    keys.sort_unstable();
    keys.into_iter().map(|k| k.hand).collect()
}
