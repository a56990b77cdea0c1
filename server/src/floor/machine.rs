//! The floor queue of one session as a pure, event-sourced state machine.
//!
//! [`FloorMachine::decide`] turns a command into events without changing anything, the
//! runtime stores them, and only then [`FloorMachine::apply`] folds them in. Replaying a
//! session's stored events into [`FloorMachine::new`] rebuilds the same state, so every
//! decision input (ids, times) travels inside the events, and `apply` accepts any sequence:
//! an event that does not fit the state (an unknown hand, a stale warning) is ignored rather
//! than trusted, because it comes from a database, not from `decide`.
//!
//! The clock is an argument ([`FloorMachine::tick`], `now` in `decide`), never read here, so
//! tests drive time by hand and the runtime sleeps until [`FloorMachine::next_deadline`].
//!
//! The queue is pinned hands first, then the waiting hands in the order of the
//! [`policy`](super::policy). That order is kept sorted as it changes: a raise inserts one key,
//! and a position is a binary search, because the runtime raises thousands of hands a second
//! and answers each with its position.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::model::{
    Actor, Command, DEFAULT_LIMIT_MS, EndReason, FloorError, FloorEvent, Hand, HandId,
    MAX_LIMIT_MS, MAX_OPEN_HANDS, MAX_PANEL_SIZE, MAX_TOPIC_CHARS, MIN_LIMIT_MS, Millis,
    Participant, Policy, QueueChange, Requester, Turn, WARNING_BEFORE_MS,
};
use super::patch::{MAX_PATCH_HANDS, OwnPlace, Place, QueuePatch};
use super::policy::{self, GroupHistory, SortKey};
use crate::language::check_language_tag;

#[cfg(test)]
#[path = "machine_tests.rs"]
mod machine_tests;
#[cfg(test)]
#[path = "patch_tests.rs"]
mod patch_tests;
#[cfg(test)]
#[path = "requests_tests.rs"]
mod requests_tests;

/// Longest a turn may last, extensions included, counted from its grant.
pub const MAX_TURN_MS: Millis = 4 * 60 * 60 * 1000;
/// Largest head count a hub may report: beyond it the figure is a typo or a lie, and the
/// report would sum it.
pub const MAX_HEAD_COUNT: u32 = 100_000;
/// When more keys than this change at once, sorting the whole queue again is cheaper than
/// moving keys one by one (each move shifts the sorted list).
const REKEY_IN_PLACE_MAX: usize = 32;

/// A fairness group: what fairness remembers about it, and its hands that wait for the policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Group {
    history: GroupHistory,
    /// Queued, unpinned hands of the group, in raise order (their round robin rounds).
    waiting: BTreeSet<HandId>,
}

/// The floor of one session. Keeps only what is open (queued hands, turns, pins) and the
/// fairness history of each group, so memory follows the live queue, not the session's length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloorMachine {
    policy: Policy,
    panel_size: u32,
    default_limit_ms: Millis,
    /// The highest hand id ever raised: the next raise gets the one after, so ids are never
    /// reused, even across restarts.
    last_id: HandId,
    /// Open hands that do not hold the floor.
    queued: HashMap<HandId, Hand>,
    holders: Vec<Turn>,
    /// `Participant::hand_key` of every open hand (queued or holding): one open hand each.
    open_by_key: HashMap<String, HandId>,
    pinned: Vec<HandId>,
    /// By `Participant::fairness_key`. A group stays while it waits or once it has history.
    groups: HashMap<String, Group>,
    /// Sort keys of the waiting (queued, unpinned) hands, ascending: the policy order.
    order: Vec<SortKey>,
    /// The key of each waiting hand, to find it in `order` without a scan.
    keys: HashMap<HandId, SortKey>,
}

impl Default for FloorMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl FloorMachine {
    pub fn new() -> Self {
        FloorMachine {
            policy: Policy::default(),
            panel_size: 1,
            default_limit_ms: DEFAULT_LIMIT_MS,
            last_id: 0,
            queued: HashMap::new(),
            holders: Vec::new(),
            open_by_key: HashMap::new(),
            pinned: Vec::new(),
            groups: HashMap::new(),
            order: Vec::new(),
            keys: HashMap::new(),
        }
    }

    /// What `cmd` would do at `now`; the machine is not changed.
    ///
    /// The caller is expected to have applied `tick(now)` first: a turn past its limit still
    /// holds the floor until its timeout is applied. Ending a turn never dates it after its
    /// limit, though, so spoken time never exceeds what was granted.
    pub fn decide(&self, cmd: &Command, now: Millis) -> Result<Vec<FloorEvent>, FloorError> {
        let event = match cmd {
            Command::Raise {
                who,
                topic,
                language,
                head_count,
            } => self.decide_raise(who, topic, language.as_deref(), *head_count, now)?,
            Command::Withdraw { hand, by } => {
                let owner = self.hand(*hand).ok_or(FloorError::HandNotFound(*hand))?;
                let by = match by {
                    Requester::Moderator => Actor::Moderator,
                    Requester::Participant(sub) if *sub == owner.who.sub => Actor::Owner,
                    Requester::Participant(_) => return Err(FloorError::NotYourHand(*hand)),
                };
                match self.holder(*hand) {
                    Some(turn) => {
                        let reason = if by == Actor::Owner {
                            EndReason::Done
                        } else {
                            EndReason::Revoked
                        };
                        ended(turn, now, reason)
                    }
                    None => FloorEvent::HandWithdrawn {
                        hand: *hand,
                        at_ms: now,
                        by,
                    },
                }
            }
            Command::Pin { hand } => FloorEvent::QueueReordered {
                pinned: self.pins_after(&self.pinned, PinChange::Pin(*hand))?,
            },
            Command::Unpin { hand } => FloorEvent::QueueReordered {
                pinned: self.pins_after(&self.pinned, PinChange::Unpin(*hand))?,
            },
            Command::Move { hand, position } => FloorEvent::QueueReordered {
                pinned: self.pins_after(&self.pinned, PinChange::Move(*hand, *position))?,
            },
            Command::ChangeQueue(change) => return self.decide_queue_change(change),
            // Setting the current policy again is accepted: it is idempotent, and a client
            // that retries should not get an error for a change that did happen.
            Command::SetPolicy { policy } => FloorEvent::PolicyChanged { policy: *policy },
            Command::SetPanelSize { size } => {
                check_panel_size(*size)?;
                // A panel smaller than the current holders is fine: nobody is cut off, and
                // no one else is granted until enough turns end.
                FloorEvent::PanelChanged { size: *size }
            }
            Command::SetDefaultLimit { limit_ms } => {
                check_limit(*limit_ms)?;
                FloorEvent::DefaultLimitChanged {
                    limit_ms: *limit_ms,
                }
            }
            Command::Grant { hand, limit_ms } => {
                let hand = match hand {
                    Some(id) => {
                        self.queued_hand(*id)?;
                        *id
                    }
                    None => self.first_queued().ok_or(FloorError::QueueEmpty)?,
                };
                if self.holders.len() >= self.panel_size as usize {
                    return Err(FloorError::FloorBusy(self.holders.len(), self.panel_size));
                }
                let limit_ms = limit_ms.unwrap_or(self.default_limit_ms);
                check_limit(limit_ms)?;
                FloorEvent::FloorGranted {
                    hand,
                    granted_at_ms: now,
                    ends_at_ms: now.saturating_add(limit_ms),
                }
            }
            Command::Revoke { hand } => ended(self.turn(*hand)?, now, EndReason::Revoked),
            Command::Done { sub, hand } => {
                let turn = self
                    .holders
                    .iter()
                    .find(|t| t.hand.who.sub == *sub && hand.is_none_or(|h| h == t.hand.id))
                    .ok_or(FloorError::NotYourTurn)?;
                ended(turn, now, EndReason::Done)
            }
            Command::Extend { hand, by_ms } => {
                let turn = self.turn(*hand)?;
                if !(1..=MAX_LIMIT_MS).contains(by_ms) {
                    return Err(FloorError::Invalid(format!(
                        "an extension must be between 1 ms and {} s; got {by_ms} ms",
                        MAX_LIMIT_MS / 1000
                    )));
                }
                let ends_at_ms = turn.ends_at_ms.saturating_add(*by_ms);
                if ends_at_ms.saturating_sub(turn.granted_at_ms) > MAX_TURN_MS {
                    let room = (turn.granted_at_ms.saturating_add(MAX_TURN_MS))
                        .saturating_sub(turn.ends_at_ms);
                    return Err(FloorError::Invalid(format!(
                        "a turn lasts at most {} min with its extensions; this one can be \
                         extended by {} s at most",
                        MAX_TURN_MS / 60_000,
                        room / 1000
                    )));
                }
                FloorEvent::FloorExtended {
                    hand: turn.hand.id,
                    ends_at_ms,
                }
            }
        };
        Ok(vec![event])
    }

    /// Applies a decided or stored event. Never fails: stored events were valid when decided.
    pub fn apply(&mut self, event: &FloorEvent) {
        match event {
            FloorEvent::HandRaised { hand } => self.apply_raised(hand),
            FloorEvent::HandWithdrawn { hand, .. } => {
                if let Some(hand) = self.take_queued(*hand) {
                    self.release(&hand);
                }
            }
            FloorEvent::QueueReordered { pinned } => self.apply_pins(pinned),
            FloorEvent::PolicyChanged { policy } => {
                if self.policy != *policy {
                    self.policy = *policy;
                    self.rebuild_order();
                }
            }
            FloorEvent::PanelChanged { size } => {
                if (1..=MAX_PANEL_SIZE).contains(size) {
                    self.panel_size = *size;
                }
            }
            FloorEvent::DefaultLimitChanged { limit_ms } => {
                if check_limit(*limit_ms).is_ok() {
                    self.default_limit_ms = *limit_ms;
                }
            }
            FloorEvent::FloorGranted {
                hand,
                granted_at_ms,
                ends_at_ms,
            } => self.apply_granted(*hand, *granted_at_ms, *ends_at_ms),
            FloorEvent::FloorExtended { hand, ends_at_ms } => {
                if let Some(turn) = self.holders.iter_mut().find(|t| t.hand.id == *hand) {
                    turn.ends_at_ms = *ends_at_ms;
                    // `warned` is about the current end: the new end deserves its own
                    // warning, at once if it is already less than the warning time away.
                    turn.warned = false;
                }
            }
            FloorEvent::FloorWarning {
                hand, ends_at_ms, ..
            } => {
                // A warning for an end that was extended since is stale.
                if let Some(turn) = self
                    .holders
                    .iter_mut()
                    .find(|t| t.hand.id == *hand && t.ends_at_ms == *ends_at_ms)
                {
                    turn.warned = true;
                }
            }
            FloorEvent::FloorEnded { hand, at_ms, .. } => self.apply_ended(*hand, *at_ms),
        }
    }

    /// `apply`, and how `event` moved hands in the queue, for clients that keep only their
    /// own place ([`QueuePatch`]). Costs a position search per hand the event may move.
    pub fn apply_tracked(&mut self, event: &FloorEvent) -> QueuePatch {
        let Some(hands) = self.moved_by(event) else {
            self.apply(event);
            return QueuePatch::Reordered;
        };
        let places = |m: &Self| -> Vec<Place> {
            hands
                .iter()
                .filter_map(|&hand| m.position(hand).map(|at| Place { hand, at }))
                .collect()
        };
        let mut removed = places(self);
        self.apply(event);
        let mut inserted = places(self);
        removed.sort_unstable_by_key(|p| std::cmp::Reverse(p.at));
        inserted.sort_unstable_by_key(|p| p.at);
        QueuePatch::Moved { removed, inserted }
    }

    /// The open hand `who` raised, and its place in the queue. A hub's hand is the raising
    /// token's own, not every token's of the hub.
    pub fn own_place(&self, who: &Participant) -> OwnPlace {
        let hand = self
            .open_by_key
            .get(&who.hand_key())
            .copied()
            .filter(|&id| self.hand(id).is_some_and(|h| h.who.sub == who.sub));
        OwnPlace {
            hand,
            position: hand.and_then(|id| self.position(id)),
        }
    }

    /// The hands whose place `event` may change (decided before it is applied): the hands it
    /// names, and the waiting hands of a group whose sort keys it changes. `None` when that
    /// may be most of the queue.
    fn moved_by(&self, event: &FloorEvent) -> Option<Vec<HandId>> {
        let group_of = |hand: &Hand| -> Vec<HandId> {
            self.groups
                .get(&hand.who.fairness_key())
                .map(|g| g.waiting.iter().copied().collect())
                .unwrap_or_default()
        };
        let queued_group = |id: HandId, policy: Policy| -> Vec<HandId> {
            match self.queued.get(&id) {
                Some(hand) if self.policy == policy => group_of(hand),
                _ => Vec::new(),
            }
        };
        let mut hands = match event {
            // Ids only grow, so a live raise goes behind its group's hands and moves none of
            // them; a replayed one may not.
            FloorEvent::HandRaised { hand } => {
                let mut hands = vec![hand.id];
                if self.policy == Policy::HubRoundRobin {
                    hands.extend(group_of(hand).into_iter().filter(|&id| id > hand.id));
                }
                hands
            }
            FloorEvent::HandWithdrawn { hand, .. } | FloorEvent::FloorGranted { hand, .. } => {
                let mut hands = queued_group(*hand, Policy::HubRoundRobin);
                hands.push(*hand);
                hands
            }
            // A hand that joins or leaves the pins also leaves or joins its group's rounds.
            FloorEvent::QueueReordered { pinned } => {
                let mut hands: Vec<HandId> = self.pinned.iter().chain(pinned).copied().collect();
                if self.policy == Policy::HubRoundRobin {
                    let groups: Vec<HandId> = hands
                        .iter()
                        .filter_map(|id| self.queued.get(id))
                        .flat_map(group_of)
                        .collect();
                    hands.extend(groups);
                }
                hands
            }
            FloorEvent::PolicyChanged { policy } if *policy != self.policy => return None,
            FloorEvent::FloorEnded { hand, .. } if self.policy == Policy::LeastSpokenFirst => self
                .holder(*hand)
                .map(|t| group_of(&t.hand))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        hands.sort_unstable();
        hands.dedup();
        (hands.len() <= MAX_PATCH_HANDS).then_some(hands)
    }

    /// `decide` then `apply`.
    pub fn handle(&mut self, cmd: &Command, now: Millis) -> Result<Vec<FloorEvent>, FloorError> {
        let events = self.decide(cmd, now)?;
        for event in &events {
            self.apply(event);
        }
        Ok(events)
    }

    /// Warnings and timeouts due at `now` (not applied).
    ///
    /// A timeout is dated at the turn's limit, not at `now`, so a late tick does not lengthen
    /// the turn in the log or in spoken time.
    pub fn tick(&self, now: Millis) -> Vec<FloorEvent> {
        self.holders
            .iter()
            .filter_map(|turn| {
                if now >= turn.ends_at_ms {
                    Some(FloorEvent::FloorEnded {
                        hand: turn.hand.id,
                        at_ms: turn.ends_at_ms,
                        reason: EndReason::Timeout,
                    })
                } else if !turn.warned && now >= warning_at(turn) {
                    Some(FloorEvent::FloorWarning {
                        hand: turn.hand.id,
                        at_ms: now,
                        ends_at_ms: turn.ends_at_ms,
                    })
                } else {
                    None
                }
            })
            .collect()
    }

    /// When `tick` next has something to say.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.holders
            .iter()
            .map(|turn| {
                if turn.warned {
                    turn.ends_at_ms
                } else {
                    warning_at(turn)
                }
            })
            .min()
    }

    /// Open, not granted hands in queue order: pinned first, then by policy.
    pub fn queue(&self) -> Vec<&Hand> {
        self.pinned
            .iter()
            .copied()
            .chain(self.order.iter().map(SortKey::hand))
            .filter_map(|id| self.queued.get(&id))
            .collect()
    }

    /// How many hands `queue` would return, without building it.
    pub fn queue_len(&self) -> usize {
        self.queued.len()
    }

    /// The 0-based place of a queued hand in `queue`. A search in the sorted order (plus a
    /// scan of the pins, which a moderator keeps short).
    pub fn position(&self, hand: HandId) -> Option<usize> {
        if let Some(at) = self.pinned.iter().position(|&id| id == hand) {
            return Some(at);
        }
        let key = self.keys.get(&hand)?;
        let at = self.order.binary_search(key).ok()?;
        Some(self.pinned.len() + at)
    }

    pub fn holders(&self) -> &[Turn] {
        &self.holders
    }

    pub fn holder_by_sub(&self, sub: &str) -> Option<&Turn> {
        self.holders.iter().find(|t| t.hand.who.sub == sub)
    }

    /// An open hand: queued or holding the floor.
    pub fn hand(&self, id: HandId) -> Option<&Hand> {
        self.queued
            .get(&id)
            .or_else(|| self.holder(id).map(|t| &t.hand))
    }

    pub fn pinned(&self) -> &[HandId] {
        &self.pinned
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn panel_size(&self) -> u32 {
        self.panel_size
    }

    pub fn default_limit_ms(&self) -> Millis {
        self.default_limit_ms
    }

    /// Cumulative floor time of a fairness key (ended turns).
    pub fn spoken_ms(&self, fairness_key: &str) -> Millis {
        self.groups
            .get(fairness_key)
            .map_or(0, |g| g.history.spoken_ms)
    }

    // ------------------------------------------------------------------ decide helpers

    fn decide_raise(
        &self,
        who: &Participant,
        topic: &str,
        language: Option<&str>,
        head_count: Option<u32>,
        now: Millis,
    ) -> Result<FloorEvent, FloorError> {
        let topic = topic.trim();
        let chars = topic.chars().count();
        if chars > MAX_TOPIC_CHARS {
            return Err(FloorError::Invalid(format!(
                "the topic has {chars} characters; at most {MAX_TOPIC_CHARS} are allowed"
            )));
        }
        if topic.chars().any(char::is_control) {
            return Err(FloorError::Invalid(
                "the topic must be one line of text, without control characters".into(),
            ));
        }
        // An empty language (a blank form field) means "not given".
        let language = language.map(str::trim).filter(|l| !l.is_empty());
        if let Some(language) = language {
            check_language_tag(language)
                .map_err(|e| FloorError::Invalid(format!("the language is {e}")))?;
        }
        if let Some(count) = head_count
            && count > MAX_HEAD_COUNT
        {
            return Err(FloorError::Invalid(format!(
                "the head count must be at most {MAX_HEAD_COUNT}; got {count}"
            )));
        }
        if let Some(&open) = self.open_by_key.get(&who.hand_key()) {
            return Err(FloorError::HandAlreadyOpen(display_name(who), open));
        }
        if self.queued.len() + self.holders.len() >= MAX_OPEN_HANDS {
            return Err(FloorError::QueueFull);
        }
        let id = self
            .last_id
            .checked_add(1)
            .ok_or_else(|| FloorError::Invalid("this session has run out of hand ids".into()))?;
        Ok(FloorEvent::HandRaised {
            hand: Hand {
                id,
                who: who.clone(),
                topic: topic.to_owned(),
                language: language.map(str::to_owned),
                head_count,
                raised_at_ms: now,
            },
        })
    }

    /// `hand` if it is queued, else why it cannot be treated as queued.
    fn queued_hand(&self, hand: HandId) -> Result<&Hand, FloorError> {
        match self.queued.get(&hand) {
            Some(h) => Ok(h),
            None if self.holder(hand).is_some() => Err(FloorError::AlreadyGranted(hand)),
            None => Err(FloorError::HandNotFound(hand)),
        }
    }

    /// `pinned` after `change`; the hand must be queued (only waiting hands are pinned).
    fn pins_after(&self, pinned: &[HandId], change: PinChange) -> Result<Vec<HandId>, FloorError> {
        let hand = change.hand();
        self.queued_hand(hand)?;
        let mut pins: Vec<HandId> = pinned.iter().copied().filter(|&id| id != hand).collect();
        match change {
            PinChange::Pin(_) => pins.insert(0, hand),
            PinChange::Unpin(_) if pins.len() == pinned.len() => {
                return Err(FloorError::Invalid(format!("hand {hand} is not pinned")));
            }
            PinChange::Unpin(_) => {}
            PinChange::Move(_, position) => pins.insert(position.min(pins.len()), hand),
        }
        Ok(pins)
    }

    /// The events of a queue PATCH, each decided on the state the ones before it leave. Only
    /// the pins depend on each other; the settings do not depend on the queue, nor the queue
    /// on them. One refusal refuses the whole change.
    fn decide_queue_change(&self, change: &QueueChange) -> Result<Vec<FloorEvent>, FloorError> {
        let mut events = Vec::new();
        if let Some(policy) = change.policy {
            events.push(FloorEvent::PolicyChanged { policy });
        }
        if let Some(size) = change.panel_size {
            check_panel_size(size)?;
            events.push(FloorEvent::PanelChanged { size });
        }
        if let Some(limit_ms) = change.default_limit_ms {
            check_limit(limit_ms)?;
            events.push(FloorEvent::DefaultLimitChanged { limit_ms });
        }
        let pin_changes = [
            change.unpin.map(PinChange::Unpin),
            change.pin.map(PinChange::Pin),
            change.move_to.map(|(hand, at)| PinChange::Move(hand, at)),
        ];
        let mut pinned = self.pinned.clone();
        for pin_change in pin_changes.into_iter().flatten() {
            pinned = self.pins_after(&pinned, pin_change)?;
            events.push(FloorEvent::QueueReordered {
                pinned: pinned.clone(),
            });
        }
        Ok(events)
    }

    fn first_queued(&self) -> Option<HandId> {
        self.pinned
            .first()
            .copied()
            .or_else(|| self.order.first().map(SortKey::hand))
    }

    fn holder(&self, hand: HandId) -> Option<&Turn> {
        self.holders.iter().find(|t| t.hand.id == hand)
    }

    /// The turn `hand` names, or the only one when `None`.
    fn turn(&self, hand: Option<HandId>) -> Result<&Turn, FloorError> {
        match hand {
            Some(id) => self.holder(id).ok_or(FloorError::NotHolding(id)),
            None => match self.holders.as_slice() {
                [] => Err(FloorError::NoHolder),
                [only] => Ok(only),
                many => Err(FloorError::AmbiguousHolder(many.len())),
            },
        }
    }

    // ------------------------------------------------------------------ apply helpers

    fn apply_raised(&mut self, hand: &Hand) {
        // Ids only grow; an id seen before is a duplicate or out of order.
        if hand.id <= self.last_id {
            return;
        }
        // Recorded even if the hand is refused below, so the id is never given out twice.
        self.last_id = hand.id;
        let key = hand.who.hand_key();
        if self.open_by_key.contains_key(&key) {
            return;
        }
        self.open_by_key.insert(key, hand.id);
        self.queued.insert(hand.id, hand.clone());
        self.insert_waiting(hand.id, hand.who.fairness_key());
    }

    fn apply_pins(&mut self, pinned: &[HandId]) {
        let mut seen = HashSet::with_capacity(pinned.len());
        let new: Vec<HandId> = pinned
            .iter()
            .copied()
            .filter(|id| self.queued.contains_key(id) && seen.insert(*id))
            .collect();
        let old = std::mem::replace(&mut self.pinned, new);
        let old: HashSet<HandId> = old.into_iter().collect();
        if old == seen {
            return; // the same pins in another order: the policy part is untouched
        }
        // Pins are rare moderator actions: move the hands between pins and groups, then sort
        // once.
        for &id in old.difference(&seen) {
            if let Some(group) = self.queued.get(&id).map(|h| h.who.fairness_key()) {
                self.groups.entry(group).or_default().waiting.insert(id);
            }
        }
        for &id in seen.difference(&old) {
            if let Some(group) = self.queued.get(&id).map(|h| h.who.fairness_key())
                && let Some(g) = self.groups.get_mut(&group)
            {
                g.waiting.remove(&id);
                self.prune(&group);
            }
        }
        self.rebuild_order();
    }

    fn apply_granted(&mut self, id: HandId, granted_at_ms: Millis, ends_at_ms: Millis) {
        let Some(hand) = self.take_queued(id) else {
            return;
        };
        let group = hand.who.fairness_key();
        // Recorded at the grant, not at the end, so the group's next hand goes behind the
        // others while this one still speaks.
        self.groups
            .entry(group.clone())
            .or_default()
            .history
            .last_granted_ms = Some(granted_at_ms);
        if self.policy == Policy::HubRoundRobin {
            self.rekey_group(&group);
        }
        self.holders.push(Turn {
            hand,
            granted_at_ms,
            ends_at_ms,
            warned: false,
        });
    }

    fn apply_ended(&mut self, id: HandId, at_ms: Millis) {
        let Some(at) = self.holders.iter().position(|t| t.hand.id == id) else {
            return;
        };
        let turn = self.holders.remove(at);
        let group = turn.hand.who.fairness_key();
        let history = &mut self.groups.entry(group.clone()).or_default().history;
        history.spoken_ms = history
            .spoken_ms
            .saturating_add(at_ms.saturating_sub(turn.granted_at_ms));
        if self.policy == Policy::LeastSpokenFirst {
            self.rekey_group(&group);
        }
        self.release(&turn.hand);
    }

    /// Takes a hand out of the queue (pins or policy order); it stays open.
    fn take_queued(&mut self, id: HandId) -> Option<Hand> {
        let hand = self.queued.remove(&id)?;
        if let Some(at) = self.pinned.iter().position(|&p| p == id) {
            self.pinned.remove(at);
        } else {
            self.remove_waiting(id, &hand.who.fairness_key());
        }
        Some(hand)
    }

    /// The hand is closed: its owner may raise again.
    fn release(&mut self, hand: &Hand) {
        let key = hand.who.hand_key();
        if self.open_by_key.get(&key) == Some(&hand.id) {
            self.open_by_key.remove(&key);
        }
    }

    // ------------------------------------------------------------------ policy order

    fn insert_waiting(&mut self, id: HandId, group: String) {
        let policy = self.policy;
        let g = self.groups.entry(group.clone()).or_default();
        let appended = g.waiting.last().is_none_or(|&last| last < id);
        if !g.waiting.insert(id) {
            return;
        }
        if policy == Policy::HubRoundRobin && !appended {
            // Later hands of the group move one round back.
            self.rekey_group(&group);
            return;
        }
        let round = if appended {
            g.waiting.len() - 1
        } else {
            g.waiting.range(..id).count()
        };
        let first = g.waiting.first().copied().unwrap_or(id);
        let key = policy::sort_key(policy, id, round, first, &g.history);
        self.insert_key(key);
    }

    fn remove_waiting(&mut self, id: HandId, group: &str) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        if !g.waiting.remove(&id) {
            return;
        }
        let was_last = g.waiting.last().is_none_or(|&last| last < id);
        self.remove_key(id);
        if self.policy == Policy::HubRoundRobin && !was_last {
            // Later hands of the group move one round forward (and its first hand may change).
            self.rekey_group(group);
        }
        self.prune(group);
    }

    /// Drops a group that neither waits nor has history.
    fn prune(&mut self, group: &str) {
        if self
            .groups
            .get(group)
            .is_some_and(|g| g.waiting.is_empty() && g.history == GroupHistory::default())
        {
            self.groups.remove(group);
        }
    }

    /// Brings the keys of one group's waiting hands up to date with the group.
    fn rekey_group(&mut self, group: &str) {
        let Some(g) = self.groups.get(group) else {
            return;
        };
        let first = g.waiting.first().copied().unwrap_or_default();
        let changed: Vec<SortKey> = g
            .waiting
            .iter()
            .enumerate()
            .map(|(round, &id)| policy::sort_key(self.policy, id, round, first, &g.history))
            .filter(|key| self.keys.get(&key.hand()) != Some(key))
            .collect();
        if changed.len() > REKEY_IN_PLACE_MAX {
            self.rebuild_order();
        } else {
            for key in changed {
                self.insert_key(key);
            }
        }
    }

    /// Computes every key again: after a policy change, or when many keys change at once.
    fn rebuild_order(&mut self) {
        self.order.clear();
        self.keys.clear();
        for g in self.groups.values() {
            let first = g.waiting.first().copied().unwrap_or_default();
            for (round, &id) in g.waiting.iter().enumerate() {
                let key = policy::sort_key(self.policy, id, round, first, &g.history);
                self.order.push(key);
                self.keys.insert(id, key);
            }
        }
        self.order.sort_unstable();
    }

    /// Puts `key` in the order, replacing the hand's previous key.
    fn insert_key(&mut self, key: SortKey) {
        if let Some(old) = self.keys.insert(key.hand(), key)
            && let Ok(at) = self.order.binary_search(&old)
        {
            self.order.remove(at);
        }
        if let Err(at) = self.order.binary_search(&key) {
            self.order.insert(at, key);
        }
    }

    fn remove_key(&mut self, id: HandId) {
        if let Some(key) = self.keys.remove(&id)
            && let Ok(at) = self.order.binary_search(&key)
        {
            self.order.remove(at);
        }
    }
}

/// The end of `turn` decided at `now`, dated within the turn so its duration stays within
/// what was granted even if the caller ticks late or the clock steps back.
fn ended(turn: &Turn, now: Millis, reason: EndReason) -> FloorEvent {
    FloorEvent::FloorEnded {
        hand: turn.hand.id,
        at_ms: now.min(turn.ends_at_ms).max(turn.granted_at_ms),
        reason,
    }
}

fn warning_at(turn: &Turn) -> Millis {
    turn.ends_at_ms.saturating_sub(WARNING_BEFORE_MS)
}

fn check_panel_size(size: u32) -> Result<(), FloorError> {
    if (1..=MAX_PANEL_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(FloorError::Invalid(format!(
            "the panel size must be between 1 and {MAX_PANEL_SIZE}; got {size}"
        )))
    }
}

/// One change to the pinned section.
#[derive(Clone, Copy, Debug)]
enum PinChange {
    /// To the top.
    Pin(HandId),
    Unpin(HandId),
    /// To a 0-based place (past the end: the end).
    Move(HandId, usize),
}

impl PinChange {
    fn hand(self) -> HandId {
        match self {
            PinChange::Pin(h) | PinChange::Unpin(h) | PinChange::Move(h, _) => h,
        }
    }
}

fn check_limit(limit_ms: Millis) -> Result<(), FloorError> {
    if (MIN_LIMIT_MS..=MAX_LIMIT_MS).contains(&limit_ms) {
        Ok(())
    } else {
        Err(FloorError::Invalid(format!(
            "a time limit must be between {} s and {} s; got {limit_ms} ms",
            MIN_LIMIT_MS / 1000,
            MAX_LIMIT_MS / 1000
        )))
    }
}

/// Who an "already open" error names: the hub for a hub's hand, since another token of
/// the same hub may have raised it.
fn display_name(who: &Participant) -> String {
    match (&who.hub, who.is_hub) {
        (Some(hub), true) => format!("hub {hub}"),
        _ if who.name.trim().is_empty() => who.sub.clone(),
        _ => who.name.clone(),
    }
}
