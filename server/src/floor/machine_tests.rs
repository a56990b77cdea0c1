//! Scenarios for every command and policy, then properties over random command sequences on
//! a fake clock, checked against a shadow model built only from the events and a slow,
//! obvious ordering.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use proptest::prelude::*;

use super::{FloorMachine, MAX_HEAD_COUNT, MAX_TURN_MS};
use crate::floor::model::*;
use crate::floor::policy;

// ------------------------------------------------------------------ helpers

fn person(sub: &str) -> Participant {
    Participant {
        sub: sub.into(),
        name: sub.to_uppercase(),
        hub: None,
        is_hub: false,
    }
}

/// Someone watching from a hub: their own hand, but the hub's fairness.
fn viewer(sub: &str, hub: &str) -> Participant {
    Participant {
        hub: Some(hub.into()),
        ..person(sub)
    }
}

fn hub(name: &str) -> Participant {
    Participant {
        sub: format!("hub-{name}"),
        name: format!("Hub {name}"),
        hub: Some(name.into()),
        is_hub: true,
    }
}

/// The request of the hand's owner (an unknown hand gets a sub nobody has).
fn owner(m: &FloorMachine, hand: HandId) -> Requester {
    Requester::Participant(
        m.hand(hand)
            .map_or_else(|| "nobody".into(), |h| h.who.sub.clone()),
    )
}

/// The holder of `hand` ends their own turn.
fn done(m: &FloorMachine, hand: HandId) -> Command {
    let Requester::Participant(sub) = owner(m, hand) else {
        unreachable!("owner() names a participant")
    };
    Command::Done {
        sub,
        hand: Some(hand),
    }
}

fn raise_cmd(who: Participant) -> Command {
    Command::Raise {
        who,
        topic: "a question".into(),
        language: None,
        head_count: None,
    }
}

fn raise(m: &mut FloorMachine, who: Participant, now: Millis) -> HandId {
    match m.handle(&raise_cmd(who), now).expect("raise").as_slice() {
        [FloorEvent::HandRaised { hand }] => hand.id,
        other => panic!("unexpected events {other:?}"),
    }
}

fn grant(m: &mut FloorMachine, hand: Option<HandId>, now: Millis) -> Vec<FloorEvent> {
    m.handle(
        &Command::Grant {
            hand,
            limit_ms: None,
        },
        now,
    )
    .expect("grant")
}

fn ids(m: &FloorMachine) -> Vec<HandId> {
    m.queue().iter().map(|h| h.id).collect()
}

fn holder_ids(m: &FloorMachine) -> Vec<HandId> {
    m.holders().iter().map(|t| t.hand.id).collect()
}

/// Applies what the clock has to say at `now`, as the runtime does.
fn tick(m: &mut FloorMachine, now: Millis) -> Vec<FloorEvent> {
    let events = m.tick(now);
    for e in &events {
        m.apply(e);
    }
    events
}

fn invalid(result: Result<Vec<FloorEvent>, FloorError>) -> String {
    match result {
        Err(FloorError::Invalid(message)) => message,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ------------------------------------------------------------------ raise

#[test]
fn raise_assigns_ids_in_order_and_queues_at_the_end() {
    let mut m = FloorMachine::new();
    for (i, sub) in ["a", "b", "c"].iter().enumerate() {
        let id = raise(&mut m, person(sub), 1_000 + i as u64);
        assert_eq!(id, i as u64 + 1);
        assert_eq!(m.position(id), Some(i));
    }
    assert_eq!(ids(&m), [1, 2, 3]);
    assert_eq!(m.queue_len(), 3);
    assert_eq!(m.hand(2).map(|h| h.raised_at_ms), Some(1_001));
    assert_eq!(m.position(4), None);
}

#[test]
fn raise_trims_the_topic_and_treats_a_blank_language_as_none() {
    let mut m = FloorMachine::new();
    let events = m
        .handle(
            &Command::Raise {
                who: hub("paris"),
                topic: "  budget line 4 \u{a0}".into(),
                language: Some("  ".into()),
                head_count: Some(40),
            },
            5,
        )
        .expect("raise");
    let [FloorEvent::HandRaised { hand }] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(hand.topic, "budget line 4");
    assert_eq!(hand.language, None);
    assert_eq!(hand.head_count, Some(40));

    let mut m = FloorMachine::new();
    let events = m
        .handle(
            &Command::Raise {
                who: person("a"),
                topic: String::new(),
                language: Some("pt-BR".into()),
                head_count: None,
            },
            5,
        )
        .expect("an empty topic is allowed");
    let [FloorEvent::HandRaised { hand }] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(hand.language.as_deref(), Some("pt-BR"));
}

#[test]
fn raise_rejects_bad_input_with_a_message() {
    let m = FloorMachine::new();
    let with = |topic: &str, language: Option<&str>, head_count: Option<u32>| {
        m.decide(
            &Command::Raise {
                who: person("a"),
                topic: topic.into(),
                language: language.map(Into::into),
                head_count,
            },
            0,
        )
    };
    // Characters, not bytes.
    assert!(with(&"é".repeat(MAX_TOPIC_CHARS), None, None).is_ok());
    let message = invalid(with(&"é".repeat(MAX_TOPIC_CHARS + 1), None, None));
    assert!(message.contains("201 characters"), "{message}");
    assert!(invalid(with("two\nlines", None, None)).contains("control"));
    assert!(invalid(with("bell\u{7}", None, None)).contains("control"));
    assert!(invalid(with("ok", Some("en_US"), None)).contains("language"));
    assert!(
        invalid(with("ok", Some(&"a".repeat(MAX_LANGUAGE_CHARS + 1)), None)).contains("language")
    );
    assert!(with("ok", Some(&"a".repeat(MAX_LANGUAGE_CHARS)), None).is_ok());
    assert!(with("ok", None, Some(MAX_HEAD_COUNT)).is_ok());
    assert!(invalid(with("ok", None, Some(MAX_HEAD_COUNT + 1))).contains("head count"));
}

#[test]
fn one_open_hand_per_person_and_per_hub() {
    let mut m = FloorMachine::new();
    let a = raise(&mut m, person("a"), 0);
    assert_eq!(
        m.decide(&raise_cmd(person("a")), 1),
        Err(FloorError::HandAlreadyOpen("A".into(), a))
    );
    let paris = raise(&mut m, hub("paris"), 2);
    // Another token of the same hub is the same hub.
    let other_paris_token = Participant {
        sub: "hub-paris-2".into(),
        ..hub("paris")
    };
    assert_eq!(
        m.decide(&raise_cmd(other_paris_token), 3),
        Err(FloorError::HandAlreadyOpen("hub paris".into(), paris))
    );
    // A person watching from the hub has a hand of their own.
    raise(&mut m, viewer("b", "paris"), 4);

    // Closing the hand frees the key; ids are never reused.
    m.handle(
        &Command::Withdraw {
            hand: a,
            by: owner(&m, a),
        },
        5,
    )
    .expect("withdraw");
    assert_eq!(raise(&mut m, person("a"), 6), 4);
}

#[test]
fn a_hand_holding_the_floor_stays_open_until_its_turn_ends() {
    let mut m = FloorMachine::new();
    let a = raise(&mut m, person("a"), 0);
    grant(&mut m, Some(a), 10);
    assert_eq!(
        m.decide(&raise_cmd(person("a")), 11),
        Err(FloorError::HandAlreadyOpen("A".into(), a))
    );
    assert_eq!(m.hand(a).map(|h| h.id), Some(a));
    m.handle(&done(&m, a), 20).expect("done");
    assert_eq!(m.hand(a), None);
    assert_eq!(raise(&mut m, person("a"), 21), 2);
}

#[test]
fn the_queue_refuses_raises_beyond_its_capacity() {
    let mut m = FloorMachine::new();
    for i in 0..MAX_OPEN_HANDS {
        raise(&mut m, person(&format!("p{i}")), 0);
    }
    assert_eq!(
        m.decide(&raise_cmd(person("late")), 0),
        Err(FloorError::QueueFull)
    );
    // A holder counts as open too.
    grant(&mut m, None, 0);
    assert_eq!(
        m.decide(&raise_cmd(person("late")), 0),
        Err(FloorError::QueueFull)
    );
}

// ------------------------------------------------------------------ withdraw

#[test]
fn withdraw_removes_a_queued_hand() {
    let mut m = FloorMachine::new();
    let a = raise(&mut m, person("a"), 0);
    let b = raise(&mut m, person("b"), 0);
    let events = m
        .handle(
            &Command::Withdraw {
                hand: a,
                by: Requester::Moderator,
            },
            7,
        )
        .expect("withdraw");
    assert_eq!(
        events,
        [FloorEvent::HandWithdrawn {
            hand: a,
            at_ms: 7,
            by: Actor::Moderator
        }]
    );
    assert_eq!(ids(&m), [b]);
    assert_eq!(m.position(b), Some(0));
    let again = Command::Withdraw {
        hand: a,
        by: owner(&m, a),
    };
    assert_eq!(m.decide(&again, 8), Err(FloorError::HandNotFound(a)));
    let unknown = Command::Withdraw {
        hand: 99,
        by: owner(&m, 99),
    };
    assert_eq!(m.decide(&unknown, 8), Err(FloorError::HandNotFound(99)));
}

#[test]
fn withdrawing_a_granted_hand_ends_the_floor() {
    for (by, reason) in [
        (Requester::Participant("a".into()), EndReason::Done),
        (Requester::Moderator, EndReason::Revoked),
    ] {
        let mut m = FloorMachine::new();
        let a = raise(&mut m, viewer("a", "rome"), 0);
        grant(&mut m, Some(a), 1_000);
        let events = m
            .handle(&Command::Withdraw { hand: a, by }, 61_000)
            .expect("withdraw");
        assert_eq!(
            events,
            [FloorEvent::FloorEnded {
                hand: a,
                at_ms: 61_000,
                reason
            }]
        );
        assert!(m.holders().is_empty());
        assert_eq!(m.hand(a), None);
        assert_eq!(m.spoken_ms("hub:rome"), 60_000);
        assert_eq!(m.next_deadline(), None);
    }
}

// ------------------------------------------------------------------ pins

#[test]
fn pin_puts_a_hand_on_top_and_move_places_it_among_the_pins() {
    let mut m = FloorMachine::new();
    for sub in ["a", "b", "c", "d", "e"] {
        raise(&mut m, person(sub), 0);
    }
    let reorder = |m: &mut FloorMachine, cmd: Command| match m.handle(&cmd, 0) {
        Ok(events) => match events.as_slice() {
            [FloorEvent::QueueReordered { pinned }] => pinned.clone(),
            other => panic!("{other:?}"),
        },
        Err(e) => panic!("{cmd:?}: {e}"),
    };
    assert_eq!(reorder(&mut m, Command::Pin { hand: 4 }), [4]);
    assert_eq!(ids(&m), [4, 1, 2, 3, 5]);
    // The latest pin goes above the earlier ones.
    assert_eq!(reorder(&mut m, Command::Pin { hand: 3 }), [3, 4]);
    assert_eq!(ids(&m), [3, 4, 1, 2, 5]);
    assert_eq!(m.position(3), Some(0));
    assert_eq!(m.position(1), Some(2));
    // Beyond the end of the pins means their end.
    let to_end = Command::Move {
        hand: 5,
        position: 99,
    };
    assert_eq!(reorder(&mut m, to_end), [3, 4, 5]);
    let to_middle = Command::Move {
        hand: 3,
        position: 1,
    };
    assert_eq!(reorder(&mut m, to_middle), [4, 3, 5]);
    // Pinning a pinned hand moves it to the top.
    assert_eq!(reorder(&mut m, Command::Pin { hand: 5 }), [5, 4, 3]);
    assert_eq!(ids(&m), [5, 4, 3, 1, 2]);
    assert_eq!(reorder(&mut m, Command::Unpin { hand: 4 }), [5, 3]);
    assert_eq!(ids(&m), [5, 3, 1, 2, 4]);
    assert_eq!(m.position(4), Some(4));
    assert!(invalid(m.decide(&Command::Unpin { hand: 4 }, 0)).contains("not pinned"));
    assert_eq!(
        m.decide(&Command::Pin { hand: 42 }, 0),
        Err(FloorError::HandNotFound(42))
    );

    // A pinned hand that leaves the queue leaves the pins.
    m.handle(
        &Command::Withdraw {
            hand: 5,
            by: owner(&m, 5),
        },
        0,
    )
    .expect("withdraw");
    assert_eq!(m.pinned(), [3]);
    grant(&mut m, None, 0);
    assert_eq!(holder_ids(&m), [3]);
    assert!(m.pinned().is_empty());
    assert_eq!(ids(&m), [1, 2, 4]);
    // Only waiting hands can be pinned.
    assert_eq!(
        m.decide(&Command::Pin { hand: 3 }, 0),
        Err(FloorError::AlreadyGranted(3))
    );
}

// ------------------------------------------------------------------ policies

#[test]
fn fifo_serves_in_raise_order() {
    let mut m = FloorMachine::new();
    for who in [hub("rome"), person("a"), viewer("b", "rome"), hub("oslo")] {
        raise(&mut m, who, 0);
    }
    assert_eq!(ids(&m), [1, 2, 3, 4]);
    grant(&mut m, None, 0);
    assert_eq!(holder_ids(&m), [1]);
    assert_eq!(ids(&m), [2, 3, 4]);
}

#[test]
fn hub_round_robin_takes_one_hand_per_group_per_round() {
    let mut m = FloorMachine::new();
    m.handle(
        &Command::SetPolicy {
            policy: Policy::HubRoundRobin,
        },
        0,
    )
    .expect("policy");
    let raised = [
        viewer("p1", "paris"),
        viewer("p2", "paris"),
        hub("rome"),
        viewer("p4", "paris"),
        person("solo"),
        viewer("r6", "rome"),
    ];
    for who in raised {
        raise(&mut m, who, 0);
    }
    // Groups by earliest hand: paris (1), rome (3), solo (5).
    assert_eq!(ids(&m), [1, 3, 5, 2, 6, 4]);
    for (at, id) in ids(&m).into_iter().enumerate() {
        assert_eq!(m.position(id), Some(at));
    }

    // Paris was just granted: it goes after the groups never granted.
    grant(&mut m, None, 1_000);
    assert_eq!(holder_ids(&m), [1]);
    assert_eq!(ids(&m), [3, 5, 2, 6, 4]);
    m.handle(&Command::Revoke { hand: None }, 2_000)
        .expect("revoke");
    grant(&mut m, None, 3_000);
    assert_eq!(holder_ids(&m), [3]);
    // solo (never), paris (1 s), rome (3 s).
    assert_eq!(ids(&m), [5, 2, 6, 4]);
    m.handle(&done(&m, 3), 4_000).expect("done");
    // A new group joins round 0 after the groups of the same history that waited longer.
    raise(&mut m, person("late"), 5_000);
    assert_eq!(ids(&m), [5, 7, 2, 6, 4]);
    // Withdrawing a group's first hand moves its next one up a round.
    m.handle(
        &Command::Withdraw {
            hand: 2,
            by: owner(&m, 2),
        },
        6_000,
    )
    .expect("withdraw");
    assert_eq!(ids(&m), [5, 7, 4, 6]);
}

#[test]
fn least_spoken_first_orders_by_the_group_floor_time() {
    let mut m = FloorMachine::new();
    // Rome speaks 60 s, solo 20 s, Paris never.
    for (who, seconds) in [(hub("rome"), 60), (person("solo"), 20)] {
        let id = raise(&mut m, who, 0);
        grant(&mut m, Some(id), 0);
        m.handle(&done(&m, id), seconds * 1000).expect("done");
    }
    assert_eq!(m.spoken_ms("hub:rome"), 60_000);
    assert_eq!(m.spoken_ms("sub:solo"), 20_000);
    assert_eq!(m.spoken_ms("hub:paris"), 0);
    m.handle(
        &Command::SetPolicy {
            policy: Policy::LeastSpokenFirst,
        },
        0,
    )
    .expect("policy");
    let rome = raise(&mut m, viewer("r", "rome"), 100_000);
    let solo = raise(&mut m, person("solo"), 100_000);
    let paris = raise(&mut m, hub("paris"), 100_000);
    let paris2 = raise(&mut m, viewer("p", "paris"), 100_000);
    assert_eq!(ids(&m), [paris, paris2, solo, rome]);

    // Paris speaks 90 s: now it has spoken the most.
    grant(&mut m, Some(paris), 100_000);
    m.handle(&Command::Revoke { hand: Some(paris) }, 190_000)
        .expect("revoke");
    assert_eq!(ids(&m), [solo, rome, paris2]);
    assert_eq!(m.position(paris2), Some(2));
}

#[test]
fn pins_survive_a_policy_change_mid_session() {
    let mut m = FloorMachine::new();
    for who in [
        viewer("p1", "paris"),
        viewer("p2", "paris"),
        viewer("p3", "paris"),
        hub("rome"),
        person("solo"),
    ] {
        raise(&mut m, who, 0);
    }
    m.handle(&Command::Pin { hand: 3 }, 0).expect("pin");
    assert_eq!(ids(&m), [3, 1, 2, 4, 5]);
    m.handle(
        &Command::SetPolicy {
            policy: Policy::HubRoundRobin,
        },
        0,
    )
    .expect("policy");
    assert_eq!(m.policy(), Policy::HubRoundRobin);
    assert_eq!(ids(&m), [3, 1, 4, 5, 2]);
    // Unpinned, 3 goes back to its place in its group's rounds.
    m.handle(&Command::Unpin { hand: 3 }, 0).expect("unpin");
    assert_eq!(ids(&m), [1, 4, 5, 2, 3]);
    m.handle(&Command::Pin { hand: 5 }, 0).expect("pin");
    m.handle(
        &Command::SetPolicy {
            policy: Policy::Fifo,
        },
        0,
    )
    .expect("policy");
    assert_eq!(ids(&m), [5, 1, 2, 3, 4]);
    // The same policy again is accepted and changes nothing.
    let before = m.clone();
    m.handle(
        &Command::SetPolicy {
            policy: Policy::Fifo,
        },
        0,
    )
    .expect("same policy");
    assert_eq!(m, before);
}

// ------------------------------------------------------------------ settings and grants

#[test]
fn settings_are_validated() {
    let mut m = FloorMachine::new();
    assert_eq!(m.panel_size(), 1);
    assert_eq!(m.default_limit_ms(), DEFAULT_LIMIT_MS);
    assert!(invalid(m.decide(&Command::SetPanelSize { size: 0 }, 0)).contains("panel"));
    let too_big = Command::SetPanelSize {
        size: MAX_PANEL_SIZE + 1,
    };
    assert!(invalid(m.decide(&too_big, 0)).contains("panel"));
    m.handle(
        &Command::SetPanelSize {
            size: MAX_PANEL_SIZE,
        },
        0,
    )
    .expect("panel");
    assert_eq!(m.panel_size(), MAX_PANEL_SIZE);
    for limit_ms in [MIN_LIMIT_MS - 1, MAX_LIMIT_MS + 1] {
        let message = invalid(m.decide(&Command::SetDefaultLimit { limit_ms }, 0));
        assert!(message.contains("time limit"), "{message}");
    }
    m.handle(&Command::SetDefaultLimit { limit_ms: 60_000 }, 0)
        .expect("limit");
    assert_eq!(m.default_limit_ms(), 60_000);
    let a = raise(&mut m, person("a"), 0);
    assert_eq!(
        grant(&mut m, Some(a), 500),
        [FloorEvent::FloorGranted {
            hand: a,
            granted_at_ms: 500,
            ends_at_ms: 60_500
        }]
    );
}

#[test]
fn grant_picks_the_head_of_the_queue_and_checks_its_hand() {
    let mut m = FloorMachine::new();
    let grant_cmd = |hand, limit_ms| Command::Grant { hand, limit_ms };
    assert_eq!(
        m.decide(&grant_cmd(None, None), 0),
        Err(FloorError::QueueEmpty)
    );
    let a = raise(&mut m, person("a"), 0);
    let b = raise(&mut m, person("b"), 0);
    m.handle(&Command::Pin { hand: b }, 0).expect("pin");
    assert_eq!(
        m.decide(&grant_cmd(Some(9), None), 0),
        Err(FloorError::HandNotFound(9))
    );
    for limit_ms in [MIN_LIMIT_MS - 1, MAX_LIMIT_MS + 1] {
        let message = invalid(m.decide(&grant_cmd(None, Some(limit_ms)), 0));
        assert!(message.contains("time limit"), "{message}");
    }
    let events = m
        .handle(&grant_cmd(None, Some(MIN_LIMIT_MS)), 1_000)
        .expect("grant");
    assert_eq!(
        events,
        [FloorEvent::FloorGranted {
            hand: b,
            granted_at_ms: 1_000,
            ends_at_ms: 1_000 + MIN_LIMIT_MS
        }]
    );
    assert_eq!(
        m.decide(&grant_cmd(Some(b), None), 0),
        Err(FloorError::AlreadyGranted(b))
    );
    assert_eq!(
        m.decide(&grant_cmd(Some(a), None), 0),
        Err(FloorError::FloorBusy(1, 1))
    );
    assert_eq!(m.holder_by_sub("b").map(|t| t.hand.id), Some(b));
    assert_eq!(m.holder_by_sub("a"), None);
    assert_eq!(ids(&m), [a]);
    assert_eq!(m.position(b), None);
}

#[test]
fn revoke_done_and_extend_name_a_holder() {
    let mut m = FloorMachine::new();
    assert_eq!(
        m.decide(&Command::Revoke { hand: None }, 0),
        Err(FloorError::NoHolder)
    );
    let extend_any = Command::Extend {
        hand: None,
        by_ms: 1_000,
    };
    assert_eq!(m.decide(&extend_any, 0), Err(FloorError::NoHolder));
    let a = raise(&mut m, person("a"), 0);
    assert_eq!(m.decide(&done(&m, a), 0), Err(FloorError::NotYourTurn));
    assert_eq!(
        m.decide(&Command::Revoke { hand: Some(a) }, 0),
        Err(FloorError::NotHolding(a))
    );
    grant(&mut m, Some(a), 0);
    let events = m
        .handle(&Command::Revoke { hand: None }, 5_000)
        .expect("revoke");
    assert_eq!(
        events,
        [FloorEvent::FloorEnded {
            hand: a,
            at_ms: 5_000,
            reason: EndReason::Revoked
        }]
    );
    assert_eq!(m.spoken_ms("sub:a"), 5_000);
}

#[test]
fn a_panel_of_two_holds_two_turns() {
    let mut m = FloorMachine::new();
    let hands: Vec<HandId> = ["a", "b", "c"]
        .iter()
        .map(|s| raise(&mut m, person(s), 0))
        .collect();
    m.handle(&Command::SetPanelSize { size: 2 }, 0)
        .expect("panel");
    grant(&mut m, None, 0);
    grant(&mut m, None, 1_000);
    assert_eq!(holder_ids(&m), [hands[0], hands[1]]);
    assert_eq!(
        m.decide(
            &Command::Grant {
                hand: None,
                limit_ms: None
            },
            2_000
        ),
        Err(FloorError::FloorBusy(2, 2))
    );
    assert_eq!(
        m.decide(&Command::Revoke { hand: None }, 2_000),
        Err(FloorError::AmbiguousHolder(2))
    );
    // Closing the panel cuts nobody off, but grants wait until a single holder is left… and
    // then until none is.
    m.handle(&Command::SetPanelSize { size: 1 }, 2_000)
        .expect("panel");
    assert_eq!(m.holders().len(), 2);
    m.handle(&done(&m, hands[0]), 3_000).expect("done");
    assert_eq!(
        m.decide(
            &Command::Grant {
                hand: None,
                limit_ms: None
            },
            3_000
        ),
        Err(FloorError::FloorBusy(1, 1))
    );
    m.handle(&Command::Revoke { hand: None }, 4_000)
        .expect("the only holder");
    grant(&mut m, None, 5_000);
    assert_eq!(holder_ids(&m), [hands[2]]);
}

// ------------------------------------------------------------------ clock

#[test]
fn a_turn_is_warned_30_s_before_its_limit_and_ends_at_it() {
    let mut m = FloorMachine::new();
    let a = raise(&mut m, person("a"), 0);
    assert_eq!(m.next_deadline(), None);
    grant(&mut m, Some(a), 10_000);
    let ends = 10_000 + DEFAULT_LIMIT_MS;
    assert_eq!(m.next_deadline(), Some(ends - WARNING_BEFORE_MS));
    assert!(tick(&mut m, ends - WARNING_BEFORE_MS - 1).is_empty());
    assert_eq!(
        tick(&mut m, ends - WARNING_BEFORE_MS + 5),
        [FloorEvent::FloorWarning {
            hand: a,
            at_ms: ends - WARNING_BEFORE_MS + 5,
            ends_at_ms: ends
        }]
    );
    assert!(m.holders()[0].warned);
    assert_eq!(m.next_deadline(), Some(ends));
    assert!(tick(&mut m, ends - 1).is_empty());
    // A late tick still dates the end at the limit.
    assert_eq!(
        tick(&mut m, ends + 2_500),
        [FloorEvent::FloorEnded {
            hand: a,
            at_ms: ends,
            reason: EndReason::Timeout
        }]
    );
    assert!(m.holders().is_empty());
    assert_eq!(m.spoken_ms("sub:a"), DEFAULT_LIMIT_MS);
    assert_eq!(m.next_deadline(), None);
}

#[test]
fn a_grant_shorter_than_the_warning_is_warned_at_once() {
    let mut m = FloorMachine::new();
    let a = raise(&mut m, person("a"), 0);
    m.handle(
        &Command::Grant {
            hand: Some(a),
            limit_ms: Some(20_000),
        },
        1_000,
    )
    .expect("grant");
    assert_eq!(m.next_deadline(), Some(0));
    assert_eq!(
        tick(&mut m, 1_000),
        [FloorEvent::FloorWarning {
            hand: a,
            at_ms: 1_000,
            ends_at_ms: 21_000
        }]
    );
    assert_eq!(m.next_deadline(), Some(21_000));
}

#[test]
fn a_tick_past_the_limit_of_an_unwarned_turn_only_ends_it() {
    let mut m = FloorMachine::new();
    let a = raise(&mut m, person("a"), 0);
    grant(&mut m, Some(a), 0);
    assert_eq!(
        tick(&mut m, 10 * DEFAULT_LIMIT_MS),
        [FloorEvent::FloorEnded {
            hand: a,
            at_ms: DEFAULT_LIMIT_MS,
            reason: EndReason::Timeout
        }]
    );
}

#[test]
fn ending_a_turn_late_never_dates_it_past_its_limit() {
    let mut m = FloorMachine::new();
    let a = raise(&mut m, person("a"), 0);
    grant(&mut m, Some(a), 0);
    let events = m
        .handle(&done(&m, a), DEFAULT_LIMIT_MS + 9_000)
        .expect("done");
    assert_eq!(
        events,
        [FloorEvent::FloorEnded {
            hand: a,
            at_ms: DEFAULT_LIMIT_MS,
            reason: EndReason::Done
        }]
    );
}

#[test]
fn extend_moves_the_end_and_resets_the_warning() {
    let mut m = FloorMachine::new();
    let a = raise(&mut m, person("a"), 0);
    grant(&mut m, Some(a), 0);
    let ends = DEFAULT_LIMIT_MS;
    assert_eq!(tick(&mut m, ends - 20_000).len(), 1);
    assert!(m.holders()[0].warned);

    let events = m
        .handle(
            &Command::Extend {
                hand: None,
                by_ms: 60_000,
            },
            ends - 20_000,
        )
        .expect("extend");
    assert_eq!(
        events,
        [FloorEvent::FloorExtended {
            hand: a,
            ends_at_ms: ends + 60_000
        }]
    );
    assert!(!m.holders()[0].warned);
    assert_eq!(m.next_deadline(), Some(ends + 60_000 - WARNING_BEFORE_MS));
    assert!(tick(&mut m, ends).is_empty());
    assert_eq!(
        tick(&mut m, ends + 60_000 - WARNING_BEFORE_MS),
        [FloorEvent::FloorWarning {
            hand: a,
            at_ms: ends + 60_000 - WARNING_BEFORE_MS,
            ends_at_ms: ends + 60_000
        }]
    );

    // An extension that still ends within the warning time warns again at once, with the
    // new end.
    let now = ends + 60_000 - 10_000;
    m.handle(
        &Command::Extend {
            hand: Some(a),
            by_ms: 5_000,
        },
        now,
    )
    .expect("extend");
    assert_eq!(
        tick(&mut m, now),
        [FloorEvent::FloorWarning {
            hand: a,
            at_ms: now,
            ends_at_ms: ends + 65_000
        }]
    );
    assert_eq!(
        tick(&mut m, ends + 65_000),
        [FloorEvent::FloorEnded {
            hand: a,
            at_ms: ends + 65_000,
            reason: EndReason::Timeout
        }]
    );
}

#[test]
fn extend_is_bounded() {
    let mut m = FloorMachine::new();
    let a = raise(&mut m, person("a"), 0);
    grant(&mut m, Some(a), 0);
    let extend = |by_ms| Command::Extend {
        hand: Some(a),
        by_ms,
    };
    assert!(invalid(m.decide(&extend(0), 0)).contains("extension"));
    assert!(invalid(m.decide(&extend(MAX_LIMIT_MS + 1), 0)).contains("extension"));
    // Up to four hours in all, and not a millisecond more.
    for _ in 0..3 {
        m.handle(&extend(MAX_LIMIT_MS), 0).expect("extend");
    }
    let room = MAX_TURN_MS - 3 * MAX_LIMIT_MS - DEFAULT_LIMIT_MS;
    let message = invalid(m.decide(&extend(room + 1), 0));
    assert!(message.contains("at most 240 min"), "{message}");
    m.handle(&extend(room), 0).expect("extend to the maximum");
    assert_eq!(m.holders()[0].ends_at_ms, MAX_TURN_MS);
    assert_eq!(
        m.decide(
            &Command::Extend {
                hand: Some(a + 1),
                by_ms: 1
            },
            0
        ),
        Err(FloorError::NotHolding(a + 1))
    );
}

// ------------------------------------------------------------------ events and replay

#[test]
fn apply_ignores_events_that_do_not_fit() {
    let mut m = FloorMachine::new();
    let a = raise(&mut m, person("a"), 0);
    let b = raise(&mut m, person("b"), 0);
    grant(&mut m, Some(a), 0);
    let before = m.clone();
    let hand_c = |id| Hand {
        id,
        who: person("c"),
        topic: String::new(),
        language: None,
        head_count: None,
        raised_at_ms: 0,
    };
    let nonsense = [
        // An id seen before, or 0.
        FloorEvent::HandRaised { hand: hand_c(b) },
        FloorEvent::HandRaised { hand: hand_c(0) },
        FloorEvent::HandWithdrawn {
            hand: 77,
            at_ms: 0,
            by: Actor::Owner,
        },
        // A holder is not withdrawn, it is ended.
        FloorEvent::HandWithdrawn {
            hand: a,
            at_ms: 0,
            by: Actor::Owner,
        },
        FloorEvent::QueueReordered {
            pinned: vec![77, a],
        },
        FloorEvent::PanelChanged { size: 0 },
        FloorEvent::PanelChanged {
            size: MAX_PANEL_SIZE + 1,
        },
        FloorEvent::DefaultLimitChanged { limit_ms: 1 },
        FloorEvent::FloorGranted {
            hand: 77,
            granted_at_ms: 0,
            ends_at_ms: 1,
        },
        FloorEvent::FloorGranted {
            hand: a,
            granted_at_ms: 0,
            ends_at_ms: 1,
        },
        FloorEvent::FloorExtended {
            hand: b,
            ends_at_ms: 1,
        },
        // Stale: for an end the turn no longer has.
        FloorEvent::FloorWarning {
            hand: a,
            at_ms: 0,
            ends_at_ms: 1,
        },
        FloorEvent::FloorEnded {
            hand: b,
            at_ms: 5,
            reason: EndReason::Done,
        },
    ];
    for event in &nonsense {
        m.apply(event);
        assert_eq!(m, before, "{event:?} changed the machine");
    }
    // A raise for a key that is open takes its id but nothing else.
    m.apply(&FloorEvent::HandRaised {
        hand: Hand {
            who: person("b"),
            ..hand_c(10)
        },
    });
    assert_eq!(ids(&m), [b]);
    assert_eq!(raise(&mut m, person("c"), 0), 11);
    // Duplicated pins collapse to one.
    m.apply(&FloorEvent::QueueReordered {
        pinned: vec![11, b, 11],
    });
    assert_eq!(m.pinned(), [11, b]);
}

#[test]
fn replaying_the_events_rebuilds_the_same_machine() {
    let mut m = FloorMachine::new();
    let mut log = Vec::new();
    let mut run = |m: &mut FloorMachine, cmd: Command, now| {
        log.extend(tick(m, now));
        log.extend(m.handle(&cmd, now).expect("command"));
    };
    run(
        &mut m,
        Command::SetPolicy {
            policy: Policy::HubRoundRobin,
        },
        0,
    );
    for (i, who) in [
        hub("paris"),
        viewer("a", "paris"),
        person("b"),
        hub("rome"),
        viewer("c", "rome"),
    ]
    .into_iter()
    .enumerate()
    {
        run(&mut m, raise_cmd(who), i as u64 * 100);
    }
    run(&mut m, Command::SetPanelSize { size: 2 }, 1_000);
    run(
        &mut m,
        Command::Grant {
            hand: None,
            limit_ms: Some(40_000),
        },
        1_000,
    );
    run(&mut m, Command::Pin { hand: 5 }, 2_000);
    run(
        &mut m,
        Command::Grant {
            hand: None,
            limit_ms: None,
        },
        3_000,
    );
    run(
        &mut m,
        Command::SetPolicy {
            policy: Policy::LeastSpokenFirst,
        },
        50_000,
    );
    run(
        &mut m,
        Command::Extend {
            hand: Some(5),
            by_ms: 20_000,
        },
        60_000,
    );
    run(&mut m, raise_cmd(person("d")), 70_000);
    log.extend(tick(&mut m, 200_000));

    let mut replayed = FloorMachine::new();
    for e in &log {
        replayed.apply(e);
    }
    assert_eq!(replayed, m);
    assert_eq!(ids(&replayed), ids(&m));
}

#[test]
fn raises_10000_hands_with_positions() {
    for policy in [
        Policy::Fifo,
        Policy::HubRoundRobin,
        Policy::LeastSpokenFirst,
    ] {
        let mut m = FloorMachine::new();
        m.handle(&Command::SetPolicy { policy }, 0).expect("policy");
        // Some history, so that groups differ.
        for i in 0..20 {
            let id = raise(&mut m, viewer(&format!("warm{i}"), &format!("hub{i}")), 0);
            grant(&mut m, Some(id), i);
            m.handle(&done(&m, id), i + 1_000 * (i % 7)).expect("done");
        }
        let started = Instant::now();
        let mut last_position = 0;
        for i in 0..10_000u64 {
            // A third watch from one of 50 hubs, the rest on their own.
            let who = if i % 3 == 0 {
                viewer(&format!("p{i}"), &format!("hub{}", i % 50))
            } else {
                person(&format!("p{i}"))
            };
            let events = m.handle(&raise_cmd(who), 1_000 + i).expect("raise");
            let [FloorEvent::HandRaised { hand }] = events.as_slice() else {
                panic!("{events:?}");
            };
            last_position = m.position(hand.id).expect("a raised hand is queued");
        }
        let elapsed = started.elapsed();
        assert_eq!(m.queue_len(), 10_000);
        assert!(last_position < 10_000);
        let queue = ids(&m);
        assert_eq!(
            queue
                .iter()
                .enumerate()
                .filter(|(at, id)| m.position(**id) != Some(*at))
                .count(),
            0
        );
        println!(
            "floor machine: 10000 raises with positions, {}: {:.1} ms ({:.0} raises/s)",
            policy.as_str(),
            elapsed.as_secs_f64() * 1e3,
            10_000.0 / elapsed.as_secs_f64()
        );
    }
}

// ------------------------------------------------------------------ properties

/// A small cast, so that keys collide: people alone, people watching from hubs, hub tokens.
fn cast() -> Vec<Participant> {
    vec![
        person("ana"),
        person("bo"),
        person("cy"),
        hub("paris"),
        viewer("di", "paris"),
        viewer("ed", "paris"),
        hub("rome"),
        viewer("fay", "rome"),
        viewer("gus", "rome"),
        hub("oslo"),
        viewer("hal", "oslo"),
        viewer("ivy", "oslo"),
    ]
}

/// Valid raise fields first; `Op::Raise::bad` picks one of the last ones to break a raise.
const TOPICS: [&str; 5] = ["", "budget", "  padded  ", "x", "two\nlines"];
const LANGUAGES: [Option<&str>; 4] = [None, Some("en"), Some("pt-BR"), Some("en_US")];
const HEAD_COUNTS: [Option<u32>; 3] = [None, Some(12), Some(MAX_HEAD_COUNT + 1)];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bad {
    Topic,
    Language,
    HeadCount,
}

#[derive(Clone, Debug)]
enum Op {
    Raise {
        who: usize,
        topic: usize,
        language: usize,
        head_count: usize,
        /// Which field to make invalid, if any.
        bad: Option<Bad>,
    },
    Withdraw {
        pick: usize,
        owner: bool,
    },
    Pin {
        pick: usize,
    },
    Unpin {
        pick: usize,
    },
    Move {
        pick: usize,
        position: usize,
    },
    SetPolicy(Policy),
    SetPanel(u32),
    SetDefaultLimit(Millis),
    Grant {
        pick: Option<usize>,
        limit_ms: Option<Millis>,
    },
    Revoke {
        pick: Option<usize>,
    },
    Done {
        pick: usize,
    },
    Extend {
        pick: Option<usize>,
        by_ms: Millis,
    },
    Advance(Millis),
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::Fifo),
        Just(Policy::HubRoundRobin),
        Just(Policy::LeastSpokenFirst)
    ]
}

fn limit_strategy() -> impl Strategy<Value = Millis> {
    prop_oneof![
        Just(MIN_LIMIT_MS - 1),
        Just(MIN_LIMIT_MS),
        Just(25_000),
        Just(45_000),
        Just(DEFAULT_LIMIT_MS),
        Just(MAX_LIMIT_MS + 1),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let pick = 0..64usize;
    prop_oneof![
        6 => (
            0..cast().len(),
            0..TOPICS.len() - 1,
            0..LANGUAGES.len() - 1,
            0..HEAD_COUNTS.len() - 1,
            prop_oneof![
                12 => Just(None),
                1 => Just(Some(Bad::Topic)),
                1 => Just(Some(Bad::Language)),
                1 => Just(Some(Bad::HeadCount)),
            ],
        )
            .prop_map(|(who, topic, language, head_count, bad)| Op::Raise {
                who,
                topic,
                language,
                head_count,
                bad,
            }),
        2 => (pick.clone(), any::<bool>()).prop_map(|(pick, owner)| Op::Withdraw { pick, owner }),
        1 => pick.clone().prop_map(|pick| Op::Pin { pick }),
        1 => pick.clone().prop_map(|pick| Op::Unpin { pick }),
        1 => (pick.clone(), 0..4usize).prop_map(|(pick, position)| Op::Move { pick, position }),
        1 => policy_strategy().prop_map(Op::SetPolicy),
        1 => (0..4u32).prop_map(Op::SetPanel),
        1 => limit_strategy().prop_map(Op::SetDefaultLimit),
        3 => (proptest::option::of(pick.clone()), proptest::option::of(limit_strategy()))
            .prop_map(|(pick, limit_ms)| Op::Grant { pick, limit_ms }),
        1 => proptest::option::of(pick.clone()).prop_map(|pick| Op::Revoke { pick }),
        1 => pick.clone().prop_map(|pick| Op::Done { pick }),
        1 => (
            proptest::option::of(pick),
            prop_oneof![Just(0), Just(5_000), Just(20_000), Just(60_000), Just(MAX_LIMIT_MS)],
        )
            .prop_map(|(pick, by_ms)| Op::Extend { pick, by_ms }),
        3 => prop_oneof![
            0..40_000u64,
            Just(WARNING_BEFORE_MS),
            Just(DEFAULT_LIMIT_MS),
            Just(MAX_LIMIT_MS),
        ]
        .prop_map(Op::Advance),
    ]
}

/// What the events say, kept without the machine's code: the reference the machine is
/// checked against.
#[derive(Default)]
struct Shadow {
    /// Open hands.
    hands: BTreeMap<HandId, Hand>,
    /// Open hands that hold the floor.
    holders: BTreeMap<HandId, ShadowTurn>,
    pinned: Vec<HandId>,
    spoken: HashMap<String, Millis>,
    last_granted: HashMap<String, Millis>,
    policy: Policy,
    panel: u32,
    default_limit_ms: Millis,
    last_id: HandId,
    closed: BTreeSet<HandId>,
}

#[derive(Clone, Copy, Debug)]
struct ShadowTurn {
    granted: Millis,
    ends: Millis,
    /// Warned for the current end.
    warned: bool,
}

impl Shadow {
    fn new() -> Self {
        Shadow {
            panel: 1,
            default_limit_ms: DEFAULT_LIMIT_MS,
            ..Shadow::default()
        }
    }

    fn queued(&self) -> impl Iterator<Item = &Hand> {
        self.hands
            .values()
            .filter(|h| !self.holders.contains_key(&h.id))
    }

    /// Checks that `event` fits, then records it.
    fn observe(&mut self, event: &FloorEvent) {
        match event {
            FloorEvent::HandRaised { hand } => {
                assert_eq!(hand.id, self.last_id + 1, "ids are consecutive");
                let key = hand.who.hand_key();
                assert!(
                    self.hands.values().all(|h| h.who.hand_key() != key),
                    "a second open hand for {key}"
                );
                self.last_id = hand.id;
                self.hands.insert(hand.id, hand.clone());
            }
            FloorEvent::HandWithdrawn { hand, .. } => {
                assert!(self.hands.contains_key(hand) && !self.holders.contains_key(hand));
                self.hands.remove(hand);
                self.pinned.retain(|p| p != hand);
                self.closed.insert(*hand);
            }
            FloorEvent::QueueReordered { pinned } => {
                let unique: BTreeSet<_> = pinned.iter().collect();
                assert_eq!(unique.len(), pinned.len(), "pins are unique");
                for id in pinned {
                    assert!(self.hands.contains_key(id) && !self.holders.contains_key(id));
                }
                self.pinned = pinned.clone();
            }
            FloorEvent::PolicyChanged { policy } => self.policy = *policy,
            FloorEvent::PanelChanged { size } => self.panel = *size,
            FloorEvent::DefaultLimitChanged { limit_ms } => self.default_limit_ms = *limit_ms,
            FloorEvent::FloorGranted {
                hand,
                granted_at_ms,
                ends_at_ms,
            } => {
                assert!(self.hands.contains_key(hand) && !self.holders.contains_key(hand));
                assert!(
                    self.holders.len() < self.panel as usize,
                    "granted with {} holders and a panel of {}",
                    self.holders.len(),
                    self.panel
                );
                assert!(ends_at_ms > granted_at_ms);
                let turn = ShadowTurn {
                    granted: *granted_at_ms,
                    ends: *ends_at_ms,
                    warned: false,
                };
                self.holders.insert(*hand, turn);
                self.pinned.retain(|p| p != hand);
                let group = self.hands[hand].who.fairness_key();
                self.last_granted.insert(group, *granted_at_ms);
            }
            FloorEvent::FloorExtended { hand, ends_at_ms } => {
                let turn = self.holders.get_mut(hand).expect("extends a holder");
                assert!(*ends_at_ms > turn.ends);
                assert!(*ends_at_ms - turn.granted <= MAX_TURN_MS);
                turn.ends = *ends_at_ms;
                turn.warned = false;
            }
            FloorEvent::FloorWarning {
                hand,
                at_ms,
                ends_at_ms,
            } => {
                let turn = self.holders.get_mut(hand).expect("warns a holder");
                assert_eq!(turn.ends, *ends_at_ms);
                assert!(!turn.warned, "warned twice for the same end");
                assert!(*at_ms + WARNING_BEFORE_MS >= *ends_at_ms && at_ms < ends_at_ms);
                turn.warned = true;
            }
            FloorEvent::FloorEnded { hand, at_ms, .. } => {
                let ShadowTurn { granted, ends, .. } =
                    self.holders.remove(hand).expect("ends a holder");
                assert!(
                    granted <= *at_ms && *at_ms <= ends,
                    "turn {hand} ({granted}..{ends}) ended at {at_ms}"
                );
                let who = self.hands.remove(hand).expect("open").who;
                *self.spoken.entry(who.fairness_key()).or_default() += at_ms - granted;
                self.closed.insert(*hand);
            }
        }
    }

    /// What the clock must say at `now`, by hand id.
    fn due(&self, now: Millis) -> Vec<FloorEvent> {
        self.holders
            .iter()
            .filter_map(|(&hand, turn)| {
                if now >= turn.ends {
                    Some(FloorEvent::FloorEnded {
                        hand,
                        at_ms: turn.ends,
                        reason: EndReason::Timeout,
                    })
                } else if !turn.warned && now + WARNING_BEFORE_MS >= turn.ends {
                    Some(FloorEvent::FloorWarning {
                        hand,
                        at_ms: now,
                        ends_at_ms: turn.ends,
                    })
                } else {
                    None
                }
            })
            .collect()
    }

    fn is_queued(&self, hand: HandId) -> bool {
        self.hands.contains_key(&hand) && !self.holders.contains_key(&hand)
    }

    /// The only holder, or the named one.
    fn turn(&self, hand: Option<HandId>) -> Option<&ShadowTurn> {
        match hand {
            Some(id) => self.holders.get(&id),
            None if self.holders.len() == 1 => self.holders.values().next(),
            None => None,
        }
    }

    /// Whether `cmd` must succeed (`invalid_raise`: the raise has a bad field).
    fn accepts(&self, cmd: &Command, invalid_raise: bool) -> bool {
        let limit_ok = |ms: Millis| (MIN_LIMIT_MS..=MAX_LIMIT_MS).contains(&ms);
        match cmd {
            Command::Raise { who, .. } => {
                !invalid_raise
                    && self
                        .hands
                        .values()
                        .all(|h| h.who.hand_key() != who.hand_key())
            }
            Command::Withdraw { hand, .. } => self.hands.contains_key(hand),
            Command::Pin { hand } | Command::Move { hand, .. } => self.is_queued(*hand),
            Command::Unpin { hand } => self.is_queued(*hand) && self.pinned.contains(hand),
            Command::SetPolicy { .. } => true,
            Command::SetPanelSize { size } => (1..=MAX_PANEL_SIZE).contains(size),
            Command::SetDefaultLimit { limit_ms } => limit_ok(*limit_ms),
            Command::Grant { hand, limit_ms } => {
                let target = hand.or_else(|| self.expected_queue().first().copied());
                target.is_some_and(|h| self.is_queued(h))
                    && self.holders.len() < self.panel as usize
                    && limit_ok(limit_ms.unwrap_or(self.default_limit_ms))
            }
            Command::Revoke { hand } => self.turn(*hand).is_some(),
            Command::Done { hand, .. } => hand.is_some_and(|h| self.holders.contains_key(&h)),
            Command::ChangeQueue(_) => unreachable!("not generated: tested on its own"),
            Command::Extend { hand, by_ms } => self.turn(*hand).is_some_and(|t| {
                (1..=MAX_LIMIT_MS).contains(by_ms) && t.ends + by_ms - t.granted <= MAX_TURN_MS
            }),
        }
    }

    /// The queue as the policy describes it, computed the slow, obvious way.
    fn expected_queue(&self) -> Vec<HandId> {
        let waiting: Vec<&Hand> = self
            .queued()
            .filter(|h| !self.pinned.contains(&h.id))
            .collect();
        let rest: Vec<HandId> = match self.policy {
            Policy::Fifo => waiting.iter().map(|h| h.id).collect(),
            Policy::LeastSpokenFirst => {
                let mut v: Vec<(Millis, HandId)> = waiting
                    .iter()
                    .map(|h| {
                        let spoken = self.spoken.get(&h.who.fairness_key()).copied();
                        (spoken.unwrap_or(0), h.id)
                    })
                    .collect();
                v.sort();
                v.into_iter().map(|(_, id)| id).collect()
            }
            Policy::HubRoundRobin => {
                let mut groups: BTreeMap<String, Vec<HandId>> = BTreeMap::new();
                for h in &waiting {
                    groups.entry(h.who.fairness_key()).or_default().push(h.id);
                }
                let mut groups: Vec<(String, Vec<HandId>)> = groups.into_iter().collect();
                // Never granted first, then the longest ago; ties: who waited longest.
                groups.sort_by_key(|(group, hands)| {
                    let granted = match self.last_granted.get(group) {
                        None => (false, 0),
                        Some(&at) => (true, at),
                    };
                    (granted, hands[0])
                });
                let mut out = Vec::new();
                for round in 0.. {
                    let before = out.len();
                    out.extend(groups.iter().filter_map(|(_, hands)| hands.get(round)));
                    if out.len() == before {
                        break;
                    }
                }
                out
            }
        };
        self.pinned.iter().copied().chain(rest).collect()
    }
}

struct Run {
    m: FloorMachine,
    shadow: Shadow,
    now: Millis,
    log: Vec<FloorEvent>,
    largest_panel: u32,
}

impl Run {
    fn new() -> Self {
        Run {
            m: FloorMachine::new(),
            shadow: Shadow::new(),
            now: 1_000_000,
            log: Vec::new(),
            largest_panel: 1,
        }
    }

    fn apply(&mut self, events: &[FloorEvent]) {
        for event in events {
            self.shadow.observe(event);
            self.m.apply(event);
            self.log.push(event.clone());
            if let FloorEvent::PanelChanged { size } = event {
                self.largest_panel = self.largest_panel.max(*size);
            }
            assert!(self.m.holders().len() <= self.largest_panel as usize);
        }
    }

    fn tick(&mut self) {
        let before = self.m.clone();
        let events = self.m.tick(self.now);
        assert_eq!(self.m, before, "tick changes nothing");
        let mut by_hand = events.clone();
        by_hand.sort_by_key(|e| match e {
            FloorEvent::FloorEnded { hand, .. } | FloorEvent::FloorWarning { hand, .. } => *hand,
            other => panic!("the clock said {other:?}"),
        });
        assert_eq!(by_hand, self.shadow.due(self.now), "at {}", self.now);
        self.apply(&events);
        // Every grant ends by its limit: nothing is past due after a tick.
        for turn in self.m.holders() {
            assert!(turn.ends_at_ms > self.now, "{turn:?} outlived its limit");
            if self.now >= turn.ends_at_ms - WARNING_BEFORE_MS {
                assert!(turn.warned, "{turn:?} was not warned at {}", self.now);
            }
        }
        if let Some(deadline) = self.m.next_deadline() {
            assert!(deadline > self.now);
        }
    }

    /// An id to act on: mostly an open hand, sometimes a closed or an unknown one.
    fn pick(&self, pick: usize) -> HandId {
        let mut candidates: Vec<HandId> = self.shadow.hands.keys().copied().collect();
        candidates.extend(self.shadow.closed.first());
        candidates.push(self.shadow.last_id + 1);
        candidates[pick % candidates.len()]
    }

    fn command(&self, op: &Op) -> Option<Command> {
        Some(match *op {
            Op::Raise {
                who,
                topic,
                language,
                head_count,
                bad,
            } => {
                // The last entry of each list is the invalid one.
                let pick = |n: usize, i: usize, field: Bad| {
                    if bad == Some(field) { n - 1 } else { i }
                };
                Command::Raise {
                    who: cast()[who].clone(),
                    topic: TOPICS[pick(TOPICS.len(), topic, Bad::Topic)].into(),
                    language: LANGUAGES[pick(LANGUAGES.len(), language, Bad::Language)]
                        .map(Into::into),
                    head_count: HEAD_COUNTS[pick(HEAD_COUNTS.len(), head_count, Bad::HeadCount)],
                }
            }
            Op::Withdraw { pick, owner: true } => {
                let hand = self.pick(pick);
                Command::Withdraw {
                    hand,
                    by: owner(&self.m, hand),
                }
            }
            Op::Withdraw { pick, owner: false } => Command::Withdraw {
                hand: self.pick(pick),
                by: Requester::Moderator,
            },
            Op::Pin { pick } => Command::Pin {
                hand: self.pick(pick),
            },
            Op::Unpin { pick } => Command::Unpin {
                hand: self.pick(pick),
            },
            Op::Move { pick, position } => Command::Move {
                hand: self.pick(pick),
                position,
            },
            Op::SetPolicy(policy) => Command::SetPolicy { policy },
            Op::SetPanel(size) => Command::SetPanelSize { size },
            Op::SetDefaultLimit(limit_ms) => Command::SetDefaultLimit { limit_ms },
            Op::Grant { pick, limit_ms } => Command::Grant {
                hand: pick.map(|p| self.pick(p)),
                limit_ms,
            },
            Op::Revoke { pick } => Command::Revoke {
                hand: pick.map(|p| self.pick(p)),
            },
            Op::Done { pick } => done(&self.m, self.pick(pick)),
            Op::Extend { pick, by_ms } => Command::Extend {
                hand: pick.map(|p| self.pick(p)),
                by_ms,
            },
            Op::Advance(_) => return None,
        })
    }

    fn step(&mut self, op: &Op) {
        if let Op::Advance(ms) = op {
            self.now += ms;
            self.tick();
            return;
        }
        // As the runtime does: the clock first, then the command at the same instant.
        self.tick();
        let cmd = self.command(op).expect("a command");
        let before = self.m.clone();
        let head = self.m.queue().first().map(|h| h.id);
        let result = self.m.decide(&cmd, self.now);
        assert_eq!(self.m, before, "decide changes nothing");
        let invalid_raise = matches!(op, Op::Raise { bad: Some(_), .. });
        let expected = self.shadow.accepts(&cmd, invalid_raise);
        assert_eq!(result.is_ok(), expected, "{cmd:?} → {result:?}");
        let Ok(events) = result else {
            return;
        };
        assert_eq!(events.len(), 1, "{cmd:?} → {events:?}");
        match (&cmd, &events[0]) {
            // Withdrawing a granted hand ends the floor.
            (Command::Withdraw { hand, by }, event)
                if before.holders().iter().any(|t| t.hand.id == *hand) =>
            {
                let reason = if matches!(by, Requester::Participant(_)) {
                    EndReason::Done
                } else {
                    EndReason::Revoked
                };
                assert!(
                    matches!(event, FloorEvent::FloorEnded { hand: h, reason: r, .. } if h == hand && *r == reason),
                    "{event:?}"
                );
            }
            (Command::Grant { hand: None, .. }, FloorEvent::FloorGranted { hand, .. }) => {
                assert_eq!(Some(*hand), head, "grant takes the head of the queue");
            }
            _ => {}
        }
        self.apply(&events);
        match cmd {
            Command::Withdraw { hand, .. } => {
                assert!(self.m.hand(hand).is_none());
                assert!(self.m.holders().iter().all(|t| t.hand.id != hand));
            }
            Command::Pin { hand } => assert_eq!(self.m.pinned().first(), Some(&hand)),
            Command::Move { hand, position } => {
                let pinned = self.m.pinned();
                let at = position.min(pinned.len() - 1);
                assert_eq!(pinned.get(at), Some(&hand));
            }
            _ => {}
        }
    }

    fn check(&self) {
        let m = &self.m;
        let queue = ids(m);
        let holders = holder_ids(m);
        // No hand lost or duplicated.
        let mut all: Vec<HandId> = queue.iter().chain(&holders).copied().collect();
        all.sort_unstable();
        let open: Vec<HandId> = self.shadow.hands.keys().copied().collect();
        assert_eq!(all, open, "queue {queue:?} + holders {holders:?}");
        let shadow_holders: Vec<HandId> = self.shadow.holders.keys().copied().collect();
        let mut sorted_holders = holders.clone();
        sorted_holders.sort_unstable();
        assert_eq!(sorted_holders, shadow_holders);
        if self.largest_panel == 1 {
            assert!(holders.len() <= 1, "two holders without a panel");
        }
        // The order is the pins, then the policy.
        assert_eq!(m.pinned(), self.shadow.pinned.as_slice());
        assert_eq!(
            queue,
            self.shadow.expected_queue(),
            "policy {:?}",
            m.policy()
        );
        assert_eq!(m.policy(), self.shadow.policy);
        assert_eq!(m.panel_size(), self.shadow.panel);
        assert_eq!(m.queue_len(), queue.len());
        for (at, id) in queue.iter().enumerate() {
            assert_eq!(m.position(*id), Some(at));
        }
        for id in &holders {
            assert_eq!(m.position(*id), None);
            assert!(m.hand(*id).is_some());
        }
        for id in &self.shadow.closed {
            assert!(m.hand(*id).is_none() && m.position(*id).is_none());
        }
        for (group, spoken) in &self.shadow.spoken {
            assert_eq!(m.spoken_ms(group), *spoken);
        }
        // The policy module alone agrees on the unpinned part.
        let waiting: Vec<(HandId, String)> = m
            .queue()
            .iter()
            .filter(|h| !m.pinned().contains(&h.id))
            .map(|h| (h.id, h.who.fairness_key()))
            .collect();
        let alone = policy::order(
            m.policy(),
            waiting.iter().map(|(id, g)| (*id, g.as_str())),
            |group| policy::GroupHistory {
                spoken_ms: m.spoken_ms(group),
                last_granted_ms: self.shadow.last_granted.get(group).copied(),
            },
        );
        assert_eq!(alone, queue[m.pinned().len()..]);
    }

    fn check_replay(&self) {
        let mut replayed = FloorMachine::new();
        for e in &self.log {
            replayed.apply(e);
        }
        assert_eq!(replayed, self.m, "replay differs");
        // Through storage: the serialized form must carry everything.
        let mut stored = FloorMachine::new();
        for e in &self.log {
            let json = serde_json::to_string(e).expect("serialize");
            let back: FloorEvent = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(&back, e, "{json}");
            stored.apply(&back);
        }
        assert_eq!(stored, self.m, "replay of stored events differs");
        assert_eq!(ids(&stored), ids(&self.m));
        assert_eq!(stored.holders(), self.m.holders());
        assert_eq!(stored.pinned(), self.m.pinned());
        assert_eq!(stored.policy(), self.m.policy());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_sessions_keep_the_floor_invariants(
        policy in policy_strategy(),
        ops in proptest::collection::vec(op_strategy(), 1..60),
    ) {
        let mut run = Run::new();
        run.step(&Op::SetPolicy(policy));
        for op in &ops {
            run.step(op);
            run.check();
        }
        run.check_replay();
        // Whatever is left ends by its limit.
        run.now += MAX_TURN_MS;
        run.tick();
        prop_assert!(run.m.holders().is_empty());
        run.check();
        run.check_replay();
    }
}
