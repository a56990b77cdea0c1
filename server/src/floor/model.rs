//! The vocabulary of the floor queue: who asks ([`Participant`]), what they ask for
//! ([`Hand`]), what the moderator and the clock do ([`Command`]), and what happened
//! ([`FloorEvent`]).
//!
//! Events are the durable facts: the machine decides a command into events, the runtime
//! stores them, then the machine applies them. Replaying the stored events of a session
//! rebuilds its exact state after a restart, so every field a decision depends on is inside an
//! event (ids, times, the hub), never recomputed from the wall clock.

use serde::{Deserialize, Serialize};

/// Unix time in milliseconds: the clock every floor decision is made against.
pub type Millis = u64;

/// A hand's id, unique within a session, assigned in raise order (1, 2, 3…).
pub type HandId = u64;

/// Longest topic text accepted, in characters.
pub const MAX_TOPIC_CHARS: usize = 200;
pub use crate::language::MAX_LANGUAGE_CHARS;
/// Largest panel a moderator may open.
pub const MAX_PANEL_SIZE: u32 = 8;
/// Bounds of a grant's time limit.
pub const MIN_LIMIT_MS: Millis = 10_000;
pub const MAX_LIMIT_MS: Millis = 60 * 60 * 1000;
/// The warning comes this long before a grant's end.
pub const WARNING_BEFORE_MS: Millis = 30_000;
/// Default time limit of a session's grants.
pub const DEFAULT_LIMIT_MS: Millis = 180_000;
/// Most open hands one session holds; a raise beyond this is refused (queue full).
pub const MAX_OPEN_HANDS: usize = 100_000;

/// Who raised a hand, from their token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Participant {
    /// The token's `sub`: the identity that may withdraw the hand and publish when granted.
    pub sub: String,
    pub name: String,
    /// The hub this participant watches from (a hub token's hub, or a viewer's `hub` claim).
    pub hub: Option<String>,
    /// A hub token: the hand is the hub's, and the hub has at most one open hand.
    pub is_hub: bool,
}

impl Participant {
    /// The key of the "one open hand" rule: the hub for a hub token, else the person.
    pub fn hand_key(&self) -> String {
        match (&self.hub, self.is_hub) {
            (Some(hub), true) => format!("hub:{hub}"),
            _ => format!("sub:{}", self.sub),
        }
    }

    /// The key fairness counts by (round robin, least spoken): the hub if any, else the
    /// person.
    pub fn fairness_key(&self) -> String {
        match &self.hub {
            Some(hub) => format!("hub:{hub}"),
            None => format!("sub:{}", self.sub),
        }
    }
}

/// A raised hand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hand {
    pub id: HandId,
    #[serde(flatten)]
    pub who: Participant,
    pub topic: String,
    pub language: Option<String>,
    /// How many people a hub reports watching with it.
    pub head_count: Option<u32>,
    pub raised_at_ms: Millis,
}

/// How the unpinned part of the queue is ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// First raised, first served.
    #[default]
    Fifo,
    /// Hubs (and hub-less people) take turns: the group granted longest ago (or never)
    /// first, one hand per group per round, FIFO inside a group.
    HubRoundRobin,
    /// Least cumulative floor time of the group (hub, or person without hub) first; ties
    /// FIFO.
    LeastSpokenFirst,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Fifo => "fifo",
            Policy::HubRoundRobin => "hub_round_robin",
            Policy::LeastSpokenFirst => "least_spoken_first",
        }
    }
}

/// Why a turn ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The moderator took the floor back.
    Revoked,
    /// The time limit was reached.
    Timeout,
    /// The speaker ended their turn (or withdrew their granted hand).
    Done,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Revoked => "revoked",
            EndReason::Timeout => "timeout",
            EndReason::Done => "done",
        }
    }
}

/// A hand that holds the floor now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub hand: Hand,
    pub granted_at_ms: Millis,
    pub ends_at_ms: Millis,
    /// `floor_warning` was emitted for the current `ends_at_ms`.
    pub warned: bool,
}

/// Who asked for a change (the log keeps it; authorization happens before the machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The hand's owner.
    Owner,
    Moderator,
    /// The clock (warnings, timeouts).
    Clock,
}

/// Who sends a command that depends on whose hand or turn it is. The machine decides
/// whether they may in the same step as it acts, so nothing changes in between.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requester {
    Moderator,
    /// A token of the session, by its `sub`: it may act on its own hand or turn only.
    Participant(String),
}

/// A moderator's changes to the queue, decided together: all of them happen, or none.
/// Applied in this order: policy, panel size, default limit, unpin, pin, move.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueChange {
    pub policy: Option<Policy>,
    pub panel_size: Option<u32>,
    pub default_limit_ms: Option<Millis>,
    pub unpin: Option<HandId>,
    pub pin: Option<HandId>,
    /// A hand and its 0-based place in the pinned section.
    pub move_to: Option<(HandId, usize)>,
}

impl QueueChange {
    pub fn is_empty(&self) -> bool {
        *self == QueueChange::default()
    }
}

/// What a client or the clock asks the machine to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Raise {
        who: Participant,
        topic: String,
        language: Option<String>,
        head_count: Option<u32>,
    },
    /// Withdraws a queued hand, or ends the turn of a granted one (reason `done` for the
    /// owner, `revoked` for a moderator). A participant may withdraw only their own hand.
    Withdraw {
        hand: HandId,
        by: Requester,
    },
    /// Pins the hand at the top, above hands pinned before it (a pinned hand moves there).
    Pin {
        hand: HandId,
    },
    Unpin {
        hand: HandId,
    },
    /// Pins the hand at `position` (0-based) of the pinned section; beyond its end means
    /// the end of the pinned section.
    Move {
        hand: HandId,
        position: usize,
    },
    SetPolicy {
        policy: Policy,
    },
    SetPanelSize {
        size: u32,
    },
    SetDefaultLimit {
        limit_ms: Millis,
    },
    /// Several of the changes above as one (the queue PATCH).
    ChangeQueue(QueueChange),
    /// Grants `hand`, or the first of the queue when `None`; `limit_ms` overrides the
    /// session default.
    Grant {
        hand: Option<HandId>,
        limit_ms: Option<Millis>,
    },
    /// Ends a turn: `hand`, or the only holder when `None`.
    Revoke {
        hand: Option<HandId>,
    },
    /// The holder `sub` ends their own turn: `hand`, or the one they hold when `None`.
    Done {
        sub: String,
        hand: Option<HandId>,
    },
    /// Adds time to a turn (`hand`, or the only holder when `None`).
    Extend {
        hand: Option<HandId>,
        by_ms: Millis,
    },
}

/// A durable fact. Serialized as `{"type": "...", ...}`; the `type` is the SSE event name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FloorEvent {
    HandRaised {
        hand: Hand,
    },
    HandWithdrawn {
        hand: HandId,
        at_ms: Millis,
        by: Actor,
    },
    /// The pinned section changed; `pinned` is its new content in order.
    QueueReordered {
        pinned: Vec<HandId>,
    },
    PolicyChanged {
        policy: Policy,
    },
    PanelChanged {
        size: u32,
    },
    DefaultLimitChanged {
        limit_ms: Millis,
    },
    FloorGranted {
        hand: HandId,
        granted_at_ms: Millis,
        ends_at_ms: Millis,
    },
    FloorExtended {
        hand: HandId,
        ends_at_ms: Millis,
    },
    FloorWarning {
        hand: HandId,
        at_ms: Millis,
        ends_at_ms: Millis,
    },
    FloorEnded {
        hand: HandId,
        at_ms: Millis,
        reason: EndReason,
    },
}

impl FloorEvent {
    /// The SSE event name (`hand_raised`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            FloorEvent::HandRaised { .. } => "hand_raised",
            FloorEvent::HandWithdrawn { .. } => "hand_withdrawn",
            FloorEvent::QueueReordered { .. } => "queue_reordered",
            FloorEvent::PolicyChanged { .. } => "policy_changed",
            FloorEvent::PanelChanged { .. } => "panel_changed",
            FloorEvent::DefaultLimitChanged { .. } => "default_limit_changed",
            FloorEvent::FloorGranted { .. } => "floor_granted",
            FloorEvent::FloorExtended { .. } => "floor_extended",
            FloorEvent::FloorWarning { .. } => "floor_warning",
            FloorEvent::FloorEnded { .. } => "floor_ended",
        }
    }
}

/// Why the machine refused a command. Mapped to HTTP statuses in `api::error`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FloorError {
    #[error("there is no open hand {0} in this session")]
    HandNotFound(HandId),
    #[error("{0} already has an open hand (id {1}); withdraw it first")]
    HandAlreadyOpen(String, HandId),
    #[error("the queue is full ({MAX_OPEN_HANDS} open hands)")]
    QueueFull,
    #[error("the queue is empty: there is no hand to grant")]
    QueueEmpty,
    #[error(
        "the floor is held by {0} holder(s) and the panel allows {1}; revoke first or open a larger panel"
    )]
    FloorBusy(usize, u32),
    #[error("hand {0} already holds the floor")]
    AlreadyGranted(HandId),
    #[error("hand {0} does not hold the floor")]
    NotHolding(HandId),
    #[error("nobody holds the floor")]
    NoHolder,
    #[error("{0} people hold the floor; say which hand")]
    AmbiguousHolder(usize),
    #[error("only the hand's owner or a moderator may withdraw it")]
    NotYourHand(HandId),
    #[error("you do not hold the floor; only a moderator may end someone else's turn")]
    NotYourTurn,
    #[error("{0}")]
    Invalid(String),
}
