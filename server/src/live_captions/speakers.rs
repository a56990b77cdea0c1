//! Who was speaking when: transcript lines are labelled from the floor log. A caption whose
//! middle falls inside a granted turn belongs to that turn's holder ("Name (Hub)");
//! otherwise to the room's floor ("Floor").

use crate::floor::log::LogEntry;

pub const FLOOR: &str = "Floor";

/// Turns as (start, end, label), Unix ms, in start order; an open turn runs to `open_end`.
pub struct Speakers {
    turns: Vec<(i64, i64, String)>,
}

impl Speakers {
    pub fn from_log(entries: &[LogEntry], open_end_ms: i64) -> Self {
        let mut turns: Vec<(i64, i64, String)> = entries
            .iter()
            .map(|e| {
                let end = e.end_ms.map_or(open_end_ms, |m| m as i64);
                (e.start_ms as i64, end, label(&e.name, e.hub.as_deref()))
            })
            .collect();
        turns.sort_by_key(|t| t.0);
        Self { turns }
    }

    /// The label for a caption spanning `start_ms..end_ms`. Panel turns overlap: their
    /// holders share the line.
    pub fn at(&self, start_ms: i64, end_ms: i64) -> String {
        let mid = start_ms + (end_ms - start_ms).max(0) / 2;
        let holders: Vec<&str> = self
            .turns
            .iter()
            .take_while(|t| t.0 <= mid)
            .filter(|t| mid < t.1)
            .map(|t| t.2.as_str())
            .collect();
        if holders.is_empty() {
            FLOOR.to_owned()
        } else {
            holders.join(" / ")
        }
    }
}

fn label(name: &str, hub: Option<&str>) -> String {
    match hub {
        Some(hub) if !hub.is_empty() && hub != name => format!("{name} ({hub})"),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floor::model::EndReason;

    fn turn(name: &str, hub: Option<&str>, start: u64, end: Option<u64>) -> LogEntry {
        LogEntry {
            hand: start,
            sub: name.into(),
            name: name.into(),
            hub: hub.map(Into::into),
            topic: String::new(),
            language: None,
            raised_at_ms: 0,
            start_ms: start,
            end_ms: end,
            end_reason: end.map(|_| EndReason::Done),
        }
    }

    #[test]
    fn captions_inside_a_turn_name_its_holder_else_the_floor() {
        let s = Speakers::from_log(
            &[
                turn("Ana", Some("Nairobi"), 10_000, Some(20_000)),
                turn("Bo", None, 30_000, None),
            ],
            40_000,
        );
        assert_eq!(s.at(0, 5_000), "Floor");
        assert_eq!(s.at(11_000, 13_000), "Ana (Nairobi)");
        // Mostly after the turn: the floor again.
        assert_eq!(s.at(19_000, 25_000), "Floor");
        assert_eq!(s.at(35_000, 36_000), "Bo", "an open turn runs to the end");
        assert_eq!(s.at(41_000, 42_000), "Floor");
    }

    #[test]
    fn panel_turns_share_the_line() {
        let s = Speakers::from_log(
            &[
                turn("Ana", Some("Nairobi"), 0, Some(10_000)),
                turn("Bo", Some("Lima"), 1_000, Some(10_000)),
            ],
            0,
        );
        assert_eq!(s.at(2_000, 3_000), "Ana (Nairobi) / Bo (Lima)");
    }
}
