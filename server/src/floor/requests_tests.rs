//! The commands an HTTP request turns into, each decided in one step: who may withdraw a
//! hand or end a turn is checked against the state it acts on, and a queue PATCH happens
//! whole or not at all.

use super::FloorMachine;
use crate::floor::model::*;

fn person(sub: &str) -> Participant {
    Participant {
        sub: sub.into(),
        name: sub.to_uppercase(),
        hub: None,
        is_hub: false,
    }
}

fn raise(m: &mut FloorMachine, sub: &str, now: Millis) -> HandId {
    let cmd = Command::Raise {
        who: person(sub),
        topic: String::new(),
        language: None,
        head_count: None,
    };
    match m.handle(&cmd, now).expect("raise").as_slice() {
        [FloorEvent::HandRaised { hand }] => hand.id,
        other => panic!("unexpected events {other:?}"),
    }
}

fn grant(m: &mut FloorMachine, hand: HandId, now: Millis) {
    m.handle(
        &Command::Grant {
            hand: Some(hand),
            limit_ms: None,
        },
        now,
    )
    .expect("grant");
}

fn participant(sub: &str) -> Requester {
    Requester::Participant(sub.into())
}

fn queue(m: &FloorMachine) -> Vec<HandId> {
    m.queue().iter().map(|h| h.id).collect()
}

#[test]
fn only_the_owner_or_a_moderator_withdraws_a_hand() {
    let mut m = FloorMachine::new();
    let a = raise(&mut m, "a", 0);
    let withdraw = |by| Command::Withdraw { hand: a, by };
    assert_eq!(
        m.decide(&withdraw(participant("b")), 1),
        Err(FloorError::NotYourHand(a))
    );
    assert_eq!(
        m.decide(&withdraw(participant("a")), 1),
        Ok(vec![FloorEvent::HandWithdrawn {
            hand: a,
            at_ms: 1,
            by: Actor::Owner
        }])
    );
    assert_eq!(
        m.decide(&withdraw(Requester::Moderator), 1),
        Ok(vec![FloorEvent::HandWithdrawn {
            hand: a,
            at_ms: 1,
            by: Actor::Moderator
        }])
    );
    // An unknown hand is not found for anyone, so a stranger learns nothing more.
    assert_eq!(
        m.decide(
            &Command::Withdraw {
                hand: 99,
                by: participant("b")
            },
            1
        ),
        Err(FloorError::HandNotFound(99))
    );
}

#[test]
fn a_withdrawal_is_judged_on_the_hand_as_it_is_when_it_arrives() {
    // The race the old handler had: it read the owner, then sent the withdrawal. Now the
    // hand's state at the command decides: granted in between, the owner's withdrawal ends
    // the turn (done), a stranger's is refused.
    let mut m = FloorMachine::new();
    let a = raise(&mut m, "a", 0);
    grant(&mut m, a, 10);
    assert_eq!(
        m.decide(
            &Command::Withdraw {
                hand: a,
                by: participant("b")
            },
            20
        ),
        Err(FloorError::NotYourHand(a))
    );
    let events = m
        .handle(
            &Command::Withdraw {
                hand: a,
                by: participant("a"),
            },
            20,
        )
        .expect("withdraw");
    assert_eq!(
        events,
        [FloorEvent::FloorEnded {
            hand: a,
            at_ms: 20,
            reason: EndReason::Done
        }]
    );
    assert!(m.holders().is_empty());
}

#[test]
fn a_holder_ends_only_their_own_turn() {
    let mut m = FloorMachine::new();
    m.handle(&Command::SetPanelSize { size: 2 }, 0)
        .expect("panel");
    let a = raise(&mut m, "a", 0);
    let b = raise(&mut m, "b", 0);
    let c = raise(&mut m, "c", 0);
    grant(&mut m, a, 10);
    grant(&mut m, b, 10);
    let done = |sub: &str, hand| Command::Done {
        sub: sub.into(),
        hand,
    };
    // Not holding, holding another hand, or naming a hand that is only queued.
    assert_eq!(m.decide(&done("c", None), 20), Err(FloorError::NotYourTurn));
    assert_eq!(
        m.decide(&done("a", Some(b)), 20),
        Err(FloorError::NotYourTurn)
    );
    assert_eq!(
        m.decide(&done("c", Some(c)), 20),
        Err(FloorError::NotYourTurn)
    );
    // Their own, named or not.
    let ended = |hand| {
        Ok(vec![FloorEvent::FloorEnded {
            hand,
            at_ms: 20,
            reason: EndReason::Done,
        }])
    };
    assert_eq!(m.decide(&done("a", Some(a)), 20), ended(a));
    assert_eq!(m.decide(&done("b", None), 20), ended(b));
    // The turn ended by its clock before the request: nothing left to end.
    let mut timed_out = m.clone();
    for e in timed_out.tick(DEFAULT_LIMIT_MS + 10) {
        timed_out.apply(&e);
    }
    assert_eq!(
        timed_out.decide(&done("a", None), DEFAULT_LIMIT_MS + 20),
        Err(FloorError::NotYourTurn)
    );
}

#[test]
fn a_queue_change_is_applied_whole() {
    let mut m = FloorMachine::new();
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|s| raise(&mut m, s, 0));
    m.handle(&Command::Pin { hand: d }, 1).expect("pin");
    let change = QueueChange {
        policy: Some(Policy::LeastSpokenFirst),
        panel_size: Some(2),
        default_limit_ms: Some(60_000),
        unpin: Some(d),
        pin: Some(c),
        move_to: Some((b, 5)),
    };
    let events = m.handle(&Command::ChangeQueue(change), 2).expect("change");
    // The same events, in the same order, as the changes one by one.
    assert_eq!(
        events,
        [
            FloorEvent::PolicyChanged {
                policy: Policy::LeastSpokenFirst
            },
            FloorEvent::PanelChanged { size: 2 },
            FloorEvent::DefaultLimitChanged { limit_ms: 60_000 },
            FloorEvent::QueueReordered { pinned: vec![] },
            FloorEvent::QueueReordered { pinned: vec![c] },
            FloorEvent::QueueReordered { pinned: vec![c, b] },
        ]
    );
    assert_eq!(m.policy(), Policy::LeastSpokenFirst);
    assert_eq!(m.panel_size(), 2);
    assert_eq!(m.default_limit_ms(), 60_000);
    assert_eq!(queue(&m), [c, b, a, d]);
}

#[test]
fn a_refused_part_refuses_the_whole_queue_change() {
    let mut m = FloorMachine::new();
    let a = raise(&mut m, "a", 0);
    let b = raise(&mut m, "b", 0);
    grant(&mut m, a, 1);
    let before = m.clone();
    for change in [
        // The last part names a hand that holds the floor.
        QueueChange {
            policy: Some(Policy::HubRoundRobin),
            pin: Some(b),
            move_to: Some((a, 0)),
            ..QueueChange::default()
        },
        // A bad setting after good ones.
        QueueChange {
            policy: Some(Policy::HubRoundRobin),
            panel_size: Some(0),
            ..QueueChange::default()
        },
        // Unpinning a hand that is not pinned, though a pin comes later in the change.
        QueueChange {
            unpin: Some(b),
            pin: Some(b),
            ..QueueChange::default()
        },
    ] {
        assert!(m.decide(&Command::ChangeQueue(change.clone()), 2).is_err());
        assert!(m.handle(&Command::ChangeQueue(change), 2).is_err());
        assert_eq!(m, before, "nothing changed");
    }
}

#[test]
fn later_pin_changes_see_the_earlier_ones() {
    let mut m = FloorMachine::new();
    let [a, b, c] = ["a", "b", "c"].map(|s| raise(&mut m, s, 0));
    m.handle(&Command::Pin { hand: a }, 1).expect("pin");
    let events = m
        .handle(
            &Command::ChangeQueue(QueueChange {
                pin: Some(c),
                move_to: Some((c, 1)),
                ..QueueChange::default()
            }),
            2,
        )
        .expect("change");
    assert_eq!(events.len(), 2);
    assert_eq!(m.pinned(), [a, c]);
    assert_eq!(queue(&m), [a, c, b]);
}
