//! The floor log: one entry per turn (who, hub, topic, language, start, end, why it ended),
//! derived from the stored events, as JSON or CSV. The transcript names speakers from it.

use std::collections::HashMap;
use std::fmt::Write;

use serde::Serialize;

use super::model::{EndReason, FloorEvent, Hand, HandId, Millis};
use super::store::StoredEvent;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogEntry {
    pub hand: HandId,
    pub sub: String,
    pub name: String,
    pub hub: Option<String>,
    pub topic: String,
    pub language: Option<String>,
    pub raised_at_ms: Millis,
    pub start_ms: Millis,
    /// `None` while the turn is still going.
    pub end_ms: Option<Millis>,
    pub end_reason: Option<EndReason>,
}

impl LogEntry {
    pub fn duration_ms(&self) -> Option<Millis> {
        self.end_ms.map(|e| e.saturating_sub(self.start_ms))
    }

    pub fn wait_ms(&self) -> Millis {
        self.start_ms.saturating_sub(self.raised_at_ms)
    }
}

/// Every turn in grant order.
pub fn entries(events: &[StoredEvent]) -> Vec<LogEntry> {
    let mut raised: HashMap<HandId, &Hand> = HashMap::new();
    let mut out: Vec<LogEntry> = Vec::new();
    let mut open: HashMap<HandId, usize> = HashMap::new();
    for e in events {
        match &e.event {
            FloorEvent::HandRaised { hand } => {
                raised.insert(hand.id, hand);
            }
            FloorEvent::FloorGranted {
                hand,
                granted_at_ms,
                ..
            } => {
                let Some(h) = raised.get(hand) else { continue };
                open.insert(*hand, out.len());
                out.push(LogEntry {
                    hand: *hand,
                    sub: h.who.sub.clone(),
                    name: h.who.name.clone(),
                    hub: h.who.hub.clone(),
                    topic: h.topic.clone(),
                    language: h.language.clone(),
                    raised_at_ms: h.raised_at_ms,
                    start_ms: *granted_at_ms,
                    end_ms: None,
                    end_reason: None,
                });
            }
            FloorEvent::FloorEnded {
                hand,
                at_ms,
                reason,
            } => {
                if let Some(i) = open.remove(hand) {
                    out[i].end_ms = Some(*at_ms);
                    out[i].end_reason = Some(*reason);
                }
            }
            _ => {}
        }
    }
    out
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: Millis) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The JSON shape of an entry: times as RFC 3339, durations in seconds.
#[derive(Serialize)]
pub struct LogRow<'a> {
    pub hand: HandId,
    pub sub: &'a str,
    pub name: &'a str,
    pub hub: Option<&'a str>,
    pub topic: &'a str,
    pub language: Option<&'a str>,
    pub raised_at: String,
    pub start: String,
    pub end: Option<String>,
    pub duration_s: Option<f64>,
    pub wait_s: f64,
    pub end_reason: Option<&'static str>,
}

impl<'a> From<&'a LogEntry> for LogRow<'a> {
    fn from(e: &'a LogEntry) -> Self {
        LogRow {
            hand: e.hand,
            sub: &e.sub,
            name: &e.name,
            hub: e.hub.as_deref(),
            topic: &e.topic,
            language: e.language.as_deref(),
            raised_at: rfc3339(e.raised_at_ms),
            start: rfc3339(e.start_ms),
            end: e.end_ms.map(rfc3339),
            duration_s: e.duration_ms().map(|d| d as f64 / 1000.0),
            wait_s: e.wait_ms() as f64 / 1000.0,
            end_reason: e.end_reason.map(EndReason::as_str),
        }
    }
}

const CSV_HEADER: &str =
    "hand,sub,name,hub,topic,language,raised_at,start,end,duration_s,wait_s,end_reason\r\n";

/// RFC 4180 CSV with a header row. Cells that a spreadsheet would run as a formula are
/// prefixed with `'` (names and topics come from participants).
pub fn to_csv(entries: &[LogEntry]) -> String {
    let mut out = String::from(CSV_HEADER);
    for e in entries {
        let r = LogRow::from(e);
        let cells = [
            r.hand.to_string(),
            r.sub.to_owned(),
            r.name.to_owned(),
            r.hub.unwrap_or("").to_owned(),
            r.topic.to_owned(),
            r.language.unwrap_or("").to_owned(),
            r.raised_at,
            r.start,
            r.end.unwrap_or_default(),
            r.duration_s.map(|d| format!("{d:.3}")).unwrap_or_default(),
            format!("{:.3}", r.wait_s),
            r.end_reason.unwrap_or("").to_owned(),
        ];
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_csv_cell(&mut out, cell);
        }
        out.push_str("\r\n");
    }
    out
}

fn push_csv_cell(out: &mut String, cell: &str) {
    let formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || cell.contains([',', '"', '\n', '\r']);
    if !quote {
        out.push_str(cell);
        return;
    }
    out.push('"');
    if formula {
        out.push('\'');
    }
    for c in cell.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    let _ = write!(out, "\"");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floor::model::Participant;

    pub(crate) fn stored(id: i64, event: FloorEvent) -> StoredEvent {
        StoredEvent {
            id,
            at_ms: 0,
            event,
        }
    }

    pub(crate) fn raise(id: HandId, sub: &str, hub: Option<&str>, at: Millis) -> FloorEvent {
        FloorEvent::HandRaised {
            hand: Hand {
                id,
                who: Participant {
                    sub: sub.into(),
                    name: format!("Name {sub}"),
                    hub: hub.map(Into::into),
                    is_hub: false,
                },
                topic: "On, \"quotes\"".into(),
                language: Some("en".into()),
                head_count: None,
                raised_at_ms: at,
            },
        }
    }

    #[test]
    fn turns_in_grant_order_with_open_last() {
        let events = vec![
            stored(1, raise(1, "a", Some("Nairobi"), 1_000)),
            stored(2, raise(2, "b", None, 2_000)),
            stored(
                3,
                FloorEvent::FloorGranted {
                    hand: 2,
                    granted_at_ms: 10_000,
                    ends_at_ms: 20_000,
                },
            ),
            stored(
                4,
                FloorEvent::FloorEnded {
                    hand: 2,
                    at_ms: 20_000,
                    reason: EndReason::Timeout,
                },
            ),
            stored(
                5,
                FloorEvent::FloorGranted {
                    hand: 1,
                    granted_at_ms: 21_000,
                    ends_at_ms: 30_000,
                },
            ),
        ];
        let log = entries(&events);
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].sub, "b");
        assert_eq!(log[0].duration_ms(), Some(10_000));
        assert_eq!(log[0].wait_ms(), 8_000);
        assert_eq!(log[0].end_reason, Some(EndReason::Timeout));
        assert_eq!(log[1].hub.as_deref(), Some("Nairobi"));
        assert_eq!(log[1].end_ms, None);

        let csv = to_csv(&log);
        let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("hand,sub,name"));
        assert!(lines[1].contains("\"On, \"\"quotes\"\"\""), "{}", lines[1]);
        assert!(lines[1].ends_with(",timeout"));
        assert!(
            lines[2].ends_with(",,,20.000,"),
            "open turn: no end, duration or reason: {}",
            lines[2]
        );
    }

    #[test]
    fn csv_defuses_formulas() {
        let mut out = String::new();
        push_csv_cell(&mut out, "=HYPERLINK(1)");
        assert_eq!(out, "\"'=HYPERLINK(1)\"");
    }
}
