//! Every participant that follows the events with [`OwnPlace`] knows its own place exactly
//! as the machine does, under every policy, pins and moves, grants and timeouts.

use proptest::prelude::*;

use super::FloorMachine;
use crate::floor::model::*;
use crate::floor::patch::{OwnPlace, QueuePatch};

/// Twelve people, some watching from one of three hubs, and two hub tokens.
fn cast() -> Vec<Participant> {
    let mut cast: Vec<Participant> = (0..12)
        .map(|i| Participant {
            sub: format!("p{i}"),
            name: format!("P{i}"),
            hub: (i % 3 != 0).then(|| format!("hub{}", i % 3)),
            is_hub: false,
        })
        .collect();
    for hub in ["hub1", "hub2"] {
        cast.push(Participant {
            sub: format!("{hub}-token"),
            name: hub.into(),
            hub: Some(hub.into()),
            is_hub: true,
        });
    }
    cast
}

#[derive(Clone, Debug)]
enum Op {
    Raise(usize),
    Withdraw(usize, bool),
    Pin(HandId),
    Unpin(HandId),
    Move(HandId, usize),
    Grant(Option<HandId>),
    Done(usize),
    Revoke,
    Policy(Policy),
    Panel(u32),
    Advance(Millis),
}

fn op() -> impl Strategy<Value = Op> {
    let hand = 1..40u64;
    let who = 0..14usize;
    prop_oneof![
        6 => who.clone().prop_map(Op::Raise),
        2 => (who.clone(), any::<bool>()).prop_map(|(w, moderator)| Op::Withdraw(w, moderator)),
        2 => hand.clone().prop_map(Op::Pin),
        1 => hand.clone().prop_map(Op::Unpin),
        2 => (hand.clone(), 0..6usize).prop_map(|(h, at)| Op::Move(h, at)),
        2 => proptest::option::of(hand).prop_map(Op::Grant),
        1 => who.prop_map(Op::Done),
        1 => Just(Op::Revoke),
        1 => prop_oneof![
            Just(Policy::Fifo),
            Just(Policy::HubRoundRobin),
            Just(Policy::LeastSpokenFirst)
        ]
        .prop_map(Op::Policy),
        1 => (1..4u32).prop_map(Op::Panel),
        2 => (1_000..200_000u64).prop_map(Op::Advance),
    ]
}

fn command(m: &FloorMachine, cast: &[Participant], op: &Op) -> Option<Command> {
    let own_hand = |w: usize| m.own_place(&cast[w]).hand.unwrap_or(u64::MAX);
    Some(match op {
        Op::Raise(w) => Command::Raise {
            who: cast[*w].clone(),
            topic: String::new(),
            language: None,
            head_count: None,
        },
        Op::Withdraw(w, moderator) => Command::Withdraw {
            hand: own_hand(*w),
            by: if *moderator {
                Requester::Moderator
            } else {
                Requester::Participant(cast[*w].sub.clone())
            },
        },
        Op::Pin(hand) => Command::Pin { hand: *hand },
        Op::Unpin(hand) => Command::Unpin { hand: *hand },
        Op::Move(hand, position) => Command::Move {
            hand: *hand,
            position: *position,
        },
        Op::Grant(hand) => Command::Grant {
            hand: *hand,
            limit_ms: None,
        },
        Op::Done(w) => Command::Done {
            sub: cast[*w].sub.clone(),
            hand: None,
        },
        Op::Revoke => Command::Revoke { hand: None },
        Op::Policy(policy) => Command::SetPolicy { policy: *policy },
        Op::Panel(size) => Command::SetPanelSize { size: *size },
        Op::Advance(_) => return None,
    })
}

/// Applies `event`, lets every participant follow it, and checks each one's place.
fn follow(
    m: &mut FloorMachine,
    cast: &[Participant],
    places: &mut [OwnPlace],
    event: &FloorEvent,
) -> Result<bool, TestCaseError> {
    let patch = m.apply_tracked(event);
    let mut read_again = false;
    for (who, place) in cast.iter().zip(places.iter_mut()) {
        if !place.follow(&who.sub, event, &patch) {
            *place = m.own_place(who);
            read_again = true;
        }
        prop_assert_eq!(
            &*place,
            &m.own_place(who),
            "{:?} after {:?} ({:?})",
            who.sub,
            event,
            patch
        );
    }
    prop_assert_eq!(read_again, patch == QueuePatch::Reordered);
    Ok(read_again)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_participant_keeps_its_place_from_the_events(
        ops in proptest::collection::vec(op(), 1..150)
    ) {
        let cast = cast();
        let mut m = FloorMachine::new();
        let mut places = vec![OwnPlace::default(); cast.len()];
        let mut now: Millis = 0;
        for op in &ops {
            if let Op::Advance(ms) = op {
                now += ms;
            }
            // The clock first, as the runtime does.
            for event in m.tick(now) {
                follow(&mut m, &cast, &mut places, &event)?;
            }
            let Some(cmd) = command(&m, &cast, op) else {
                continue;
            };
            for event in m.decide(&cmd, now).unwrap_or_default() {
                follow(&mut m, &cast, &mut places, &event)?;
            }
        }
    }
}

#[test]
fn a_policy_change_asks_for_places_again_and_small_moves_do_not() {
    let cast = cast();
    let mut m = FloorMachine::new();
    for who in &cast[..4] {
        let cmd = Command::Raise {
            who: who.clone(),
            topic: String::new(),
            language: None,
            head_count: None,
        };
        for e in m.decide(&cmd, 0).unwrap() {
            let patch = m.apply_tracked(&e);
            assert!(
                matches!(patch, QueuePatch::Moved { ref removed, ref inserted } if removed.is_empty() && inserted.len() == 1)
            );
        }
    }
    let change = m
        .decide(
            &Command::SetPolicy {
                policy: Policy::HubRoundRobin,
            },
            1,
        )
        .unwrap();
    assert_eq!(m.apply_tracked(&change[0]), QueuePatch::Reordered);
    // The same policy again moves nothing.
    let same = m
        .decide(
            &Command::SetPolicy {
                policy: Policy::HubRoundRobin,
            },
            2,
        )
        .unwrap();
    assert_eq!(m.apply_tracked(&same[0]), QueuePatch::unchanged());
}
