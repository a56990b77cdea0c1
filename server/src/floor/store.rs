//! The SQLite side of the floor: the per-session event log (`floor_events`) and the
//! participants seen (`participants`). Plain functions over a connection; the runtime calls
//! them through [`crate::store::Store::blocking`].

use rusqlite::{Connection, params};
use serde::Serialize;

use super::model::{FloorEvent, Millis};
use crate::store::StoreError;

/// An event as stored: its log id (the SSE id) and when it was recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredEvent {
    pub id: i64,
    pub at_ms: Millis,
    #[serde(flatten)]
    pub event: FloorEvent,
}

/// Appends `events` of one session in one transaction; returns them with their ids.
/// All or nothing: on error nothing was stored.
pub fn append(
    conn: &mut Connection,
    session: &str,
    at_ms: Millis,
    events: Vec<FloorEvent>,
) -> Result<Vec<StoredEvent>, StoreError> {
    let tx = conn.transaction()?;
    let mut stored = Vec::with_capacity(events.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO floor_events (session, at_ms, kind, data) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for event in events {
            let data = serde_json::to_string(&event)
                .map_err(|e| StoreError::Task(format!("encoding a floor event: {e}")))?;
            insert.execute(params![session, at_ms as i64, event.kind(), data])?;
            stored.push(StoredEvent {
                id: tx.last_insert_rowid(),
                at_ms,
                event,
            });
        }
    }
    tx.commit()?;
    Ok(stored)
}

/// Events of `session` with id > `after`, oldest first, at most `limit`.
pub fn since(
    conn: &Connection,
    session: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at_ms, data FROM floor_events WHERE session = ?1 AND id > ?2
         ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![session, after, limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, at_ms, data) = row?;
        // A row this binary cannot read (written by a newer version, or edited by hand) is
        // skipped with a warning rather than making the whole session unreadable.
        match serde_json::from_str::<FloorEvent>(&data) {
            Ok(event) => out.push(StoredEvent {
                id,
                at_ms: at_ms.max(0) as Millis,
                event,
            }),
            Err(e) => tracing::warn!(session, id, error = %e, "skipping an unreadable floor event"),
        }
    }
    Ok(out)
}

/// Every event of `session`, oldest first.
pub fn all(conn: &Connection, session: &str) -> Result<Vec<StoredEvent>, StoreError> {
    since(conn, session, 0, usize::MAX >> 1)
}

/// The highest event id of `session` (0 when none).
pub fn last_id(conn: &Connection, session: &str) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM floor_events WHERE session = ?1",
        params![session],
        |r| r.get(0),
    )?)
}

/// Someone who watched or raised a hand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParticipantRow {
    pub sub: String,
    pub name: String,
    pub role: String,
    pub hub: Option<String>,
    pub first_seen_ms: Millis,
    pub last_seen_ms: Millis,
}

/// Records that `sub` took part at `now` (first sighting inserts, later ones update).
pub fn touch_participant(
    conn: &Connection,
    session: &str,
    p: &ParticipantRow,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO participants (session, sub, name, role, hub, first_seen_ms, last_seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (session, sub) DO UPDATE SET
           name = excluded.name, hub = excluded.hub, last_seen_ms = excluded.last_seen_ms",
    )?
    .execute(params![
        session,
        p.sub,
        p.name,
        p.role,
        p.hub,
        p.first_seen_ms as i64,
        p.last_seen_ms as i64
    ])?;
    Ok(())
}

pub fn participants(conn: &Connection, session: &str) -> Result<Vec<ParticipantRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT sub, name, role, hub, first_seen_ms, last_seen_ms FROM participants
         WHERE session = ?1 ORDER BY first_seen_ms, sub",
    )?;
    let rows = stmt
        .query_map(params![session], |r| {
            Ok(ParticipantRow {
                sub: r.get(0)?,
                name: r.get(1)?,
                role: r.get(2)?,
                hub: r.get(3)?,
                first_seen_ms: r.get::<_, i64>(4)?.max(0) as Millis,
                last_seen_ms: r.get::<_, i64>(5)?.max(0) as Millis,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floor::model::{Hand, Participant};
    use crate::store::Store;

    fn raised(id: u64) -> FloorEvent {
        FloorEvent::HandRaised {
            hand: Hand {
                id,
                who: Participant {
                    sub: format!("u{id}"),
                    name: "N".into(),
                    hub: None,
                    is_hub: false,
                },
                topic: "t".into(),
                language: None,
                head_count: None,
                raised_at_ms: 5,
            },
        }
    }

    #[tokio::test]
    async fn append_and_read_back_per_session() {
        let store = Store::open_in_memory().unwrap();
        let (a, b, tail, last) = store
            .blocking(|c| {
                crate::store::Store::insert_session(c, "s1", "S1", 0)?;
                crate::store::Store::insert_session(c, "s2", "S2", 0)?;
                let a = append(c, "s1", 10, vec![raised(1), raised(2)])?;
                let b = append(c, "s2", 11, vec![raised(1)])?;
                append(c, "s1", 12, vec![raised(3)])?;
                let tail = since(c, "s1", a[0].id, 10)?;
                let last = last_id(c, "s1")?;
                Ok((a, b, tail, last))
            })
            .await
            .unwrap();
        assert!(a[0].id < a[1].id && a[1].id < b[0].id);
        assert_eq!(tail.len(), 2, "events after the first one of s1 only");
        assert_eq!(tail[0].event, raised(2));
        assert_eq!(tail[1].event, raised(3));
        assert_eq!(tail[1].at_ms, 12);
        assert_eq!(last, tail[1].id);
    }

    #[tokio::test]
    async fn deleting_a_session_deletes_its_log() {
        let store = Store::open_in_memory().unwrap();
        let left = store
            .blocking(|c| {
                c.pragma_update(None, "foreign_keys", "ON")?;
                crate::store::Store::insert_session(c, "s1", "S1", 0)?;
                append(c, "s1", 1, vec![raised(1)])?;
                crate::store::Store::delete_session(c, "s1")?;
                all(c, "s1")
            })
            .await
            .unwrap();
        assert!(left.is_empty());
    }
}
