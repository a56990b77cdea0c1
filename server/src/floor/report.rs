//! The post-session report remote moderators file: how many hubs and remote participants,
//! hands raised / granted / withdrawn, speaking time per hub and per person, and how long
//! hands waited. Pure: built from the stored events and the participants table.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::log::{self, LogEntry};
use super::model::{EndReason, FloorEvent, HandId, Millis};
use super::store::{ParticipantRow, StoredEvent};

#[derive(Debug, Serialize, PartialEq)]
pub struct Report {
    /// Distinct hubs that watched or raised a hand.
    pub hubs: usize,
    /// Distinct people and hub screens that watched or raised a hand (staff roles excluded).
    pub remote_connections: usize,
    /// Sum over hubs of the largest head-count each reported with a hand.
    pub hub_head_count: u64,
    /// Individual connections (not hub screens) plus the hubs' head-counts.
    pub remote_participants_estimate: u64,
    pub hands: HandCounts,
    pub turns_ended: BTreeMap<&'static str, usize>,
    pub speaking_s_total: f64,
    pub speaking_by_hub: Vec<SpeakingTime>,
    pub speaking_by_person: Vec<SpeakingTime>,
    pub wait_s: WaitStats,
}

#[derive(Debug, Serialize, PartialEq, Default)]
pub struct HandCounts {
    pub raised: usize,
    pub granted: usize,
    pub withdrawn: usize,
    /// Still queued when the report was made.
    pub open: usize,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct SpeakingTime {
    /// The hub name, or the person's name.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
    pub turns: usize,
    pub seconds: f64,
}

#[derive(Debug, Serialize, PartialEq, Default)]
pub struct WaitStats {
    /// Granted hands the figures are over.
    pub count: usize,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub max: Option<f64>,
}

const AUDIENCE_ROLES: [&str; 3] = ["viewer", "hub", "speaker"];

/// `now` closes turns still running, so their time so far counts.
pub fn build(events: &[StoredEvent], participants: &[ParticipantRow], now: Millis) -> Report {
    let mut hands = HandCounts::default();
    let mut open: BTreeSet<HandId> = BTreeSet::new();
    let mut hubs: BTreeSet<String> = BTreeSet::new();
    let mut subs: BTreeSet<String> = BTreeSet::new();
    let mut hub_subs: BTreeSet<String> = BTreeSet::new();
    let mut head_counts: HashMap<String, u32> = HashMap::new();
    for p in participants {
        if !AUDIENCE_ROLES.contains(&p.role.as_str()) {
            continue;
        }
        subs.insert(p.sub.clone());
        if p.role == "hub" {
            hub_subs.insert(p.sub.clone());
        }
        if let Some(h) = &p.hub {
            hubs.insert(h.clone());
        }
    }
    for e in events {
        match &e.event {
            FloorEvent::HandRaised { hand } => {
                hands.raised += 1;
                open.insert(hand.id);
                subs.insert(hand.who.sub.clone());
                if hand.who.is_hub {
                    hub_subs.insert(hand.who.sub.clone());
                }
                if let Some(h) = &hand.who.hub {
                    hubs.insert(h.clone());
                    if let Some(n) = hand.head_count {
                        let best = head_counts.entry(h.clone()).or_default();
                        *best = (*best).max(n);
                    }
                }
            }
            FloorEvent::HandWithdrawn { hand, .. } => {
                hands.withdrawn += 1;
                open.remove(hand);
            }
            FloorEvent::FloorGranted { hand, .. } => {
                hands.granted += 1;
                open.remove(hand);
            }
            _ => {}
        }
    }
    hands.open = open.len();

    let turns = log::entries(events);
    let mut turns_ended: BTreeMap<&'static str, usize> =
        [EndReason::Revoked, EndReason::Timeout, EndReason::Done]
            .into_iter()
            .map(|r| (r.as_str(), 0))
            .collect();
    let mut by_hub: BTreeMap<String, (usize, Millis)> = BTreeMap::new();
    let mut by_person: BTreeMap<String, (String, Option<String>, usize, Millis)> = BTreeMap::new();
    let mut total: Millis = 0;
    for t in &turns {
        if let Some(r) = t.end_reason {
            *turns_ended.entry(r.as_str()).or_default() += 1;
        }
        let spoken = spoken_ms(t, now);
        total += spoken;
        if let Some(h) = &t.hub {
            let e = by_hub.entry(h.clone()).or_default();
            e.0 += 1;
            e.1 += spoken;
        }
        let e = by_person
            .entry(t.sub.clone())
            .or_insert_with(|| (t.name.clone(), t.hub.clone(), 0, 0));
        e.2 += 1;
        e.3 += spoken;
    }
    let mut speaking_by_hub: Vec<SpeakingTime> = by_hub
        .into_iter()
        .map(|(name, (turns, ms))| SpeakingTime {
            name,
            sub: None,
            hub: None,
            turns,
            seconds: ms as f64 / 1000.0,
        })
        .collect();
    let mut speaking_by_person: Vec<SpeakingTime> = by_person
        .into_iter()
        .map(|(sub, (name, hub, turns, ms))| SpeakingTime {
            name,
            sub: Some(sub),
            hub,
            turns,
            seconds: ms as f64 / 1000.0,
        })
        .collect();
    // Most speaking time first: what a report reader looks for.
    let by_time = |a: &SpeakingTime, b: &SpeakingTime| b.seconds.total_cmp(&a.seconds);
    speaking_by_hub.sort_by(by_time);
    speaking_by_person.sort_by(by_time);

    let mut waits: Vec<Millis> = turns.iter().map(LogEntry::wait_ms).collect();
    waits.sort_unstable();
    let secs = |ms: Millis| ms as f64 / 1000.0;
    let wait_s = WaitStats {
        count: waits.len(),
        p50: percentile(&waits, 50).map(secs),
        p95: percentile(&waits, 95).map(secs),
        max: waits.last().copied().map(secs),
    };

    let hub_head_count: u64 = head_counts.values().map(|&n| u64::from(n)).sum();
    let individuals = subs.len() - hub_subs.intersection(&subs).count();
    Report {
        hubs: hubs.len(),
        remote_connections: subs.len(),
        hub_head_count,
        remote_participants_estimate: individuals as u64 + hub_head_count,
        hands,
        turns_ended,
        speaking_s_total: total as f64 / 1000.0,
        speaking_by_hub,
        speaking_by_person,
        wait_s,
    }
}

fn spoken_ms(t: &LogEntry, now: Millis) -> Millis {
    t.end_ms.unwrap_or(now).saturating_sub(t.start_ms)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Millis], p: usize) -> Option<Millis> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floor::model::{Hand, Participant};

    fn ev(id: i64, event: FloorEvent) -> StoredEvent {
        StoredEvent {
            id,
            at_ms: 0,
            event,
        }
    }

    fn raise(id: HandId, sub: &str, hub: Option<&str>, is_hub: bool, at: Millis) -> FloorEvent {
        FloorEvent::HandRaised {
            hand: Hand {
                id,
                who: Participant {
                    sub: sub.into(),
                    name: sub.to_uppercase(),
                    hub: hub.map(Into::into),
                    is_hub,
                },
                topic: String::new(),
                language: None,
                head_count: is_hub.then_some(30),
                raised_at_ms: at,
            },
        }
    }

    fn grant(hand: HandId, at: Millis) -> FloorEvent {
        FloorEvent::FloorGranted {
            hand,
            granted_at_ms: at,
            ends_at_ms: at + 180_000,
        }
    }

    fn end(hand: HandId, at: Millis, reason: EndReason) -> FloorEvent {
        FloorEvent::FloorEnded {
            hand,
            at_ms: at,
            reason,
        }
    }

    #[test]
    fn counts_times_and_waits() {
        let events = vec![
            ev(1, raise(1, "hub-n", Some("Nairobi"), true, 0)),
            ev(2, raise(2, "ana", None, false, 1_000)),
            ev(3, raise(3, "bo", Some("Nairobi"), false, 2_000)),
            ev(4, grant(2, 11_000)),
            ev(5, end(2, 41_000, EndReason::Done)),
            ev(6, grant(1, 50_000)),
            ev(7, end(1, 110_000, EndReason::Timeout)),
            ev(
                8,
                FloorEvent::HandWithdrawn {
                    hand: 3,
                    at_ms: 120_000,
                    by: crate::floor::model::Actor::Owner,
                },
            ),
            ev(9, raise(4, "cy", None, false, 130_000)),
        ];
        let participants = vec![ParticipantRow {
            sub: "dee".into(),
            name: "Dee".into(),
            role: "viewer".into(),
            hub: Some("Lima".into()),
            first_seen_ms: 0,
            last_seen_ms: 0,
        }];
        let r = build(&events, &participants, 200_000);
        assert_eq!(r.hubs, 2, "Nairobi and Lima");
        assert_eq!(r.remote_connections, 5);
        assert_eq!(r.hub_head_count, 30);
        assert_eq!(r.remote_participants_estimate, 4 + 30);
        assert_eq!(
            r.hands,
            HandCounts {
                raised: 4,
                granted: 2,
                withdrawn: 1,
                open: 1
            }
        );
        assert_eq!(r.turns_ended["done"], 1);
        assert_eq!(r.turns_ended["timeout"], 1);
        assert_eq!(r.turns_ended["revoked"], 0);
        assert_eq!(r.speaking_s_total, 90.0);
        assert_eq!(r.speaking_by_hub.len(), 1);
        assert_eq!(r.speaking_by_hub[0].seconds, 60.0);
        assert_eq!(r.speaking_by_person[0].sub.as_deref(), Some("hub-n"));
        assert_eq!(r.speaking_by_person[1].seconds, 30.0);
        // Waits: 10 s (ana) and 50 s (hub).
        assert_eq!(r.wait_s.count, 2);
        assert_eq!(r.wait_s.p50, Some(10.0));
        assert_eq!(r.wait_s.p95, Some(50.0));
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<Millis> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 95), Some(95));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }
}
