//! The SQLite side of captions: final segments (`caption_segments`) and the sequencing state
//! of each CART stream (`cart_streams`: one captioner, one language, one session). Plain
//! functions over a connection, called through [`crate::store::Store::blocking`] (writes) and
//! [`crate::store::Store::read`] (reads).

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use captions::Source;
use captions::cart::StreamSnapshot;

use crate::store::StoreError;

/// A final caption as stored. Times are Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredSegment {
    pub id: i64,
    pub source: Source,
    pub lang: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub text: String,
    /// Viewers saw it (false: a machine caption held back by a human captioner).
    pub shown: bool,
    pub confidence: Option<f32>,
}

/// A final caption to store.
#[derive(Clone, Debug)]
pub struct NewSegment<'a> {
    pub source: Source,
    pub lang: &'a str,
    pub start_ms: i64,
    pub end_ms: i64,
    pub text: &'a str,
    pub shown: bool,
    pub confidence: Option<f32>,
    /// The captioner's `sub` (human captions only).
    pub captioner: Option<&'a str>,
}

pub fn insert(conn: &Connection, session: &str, s: &NewSegment<'_>) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO caption_segments
           (session, source, lang, start_ms, end_ms, text, shown, confidence, captioner)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        session,
        s.source.as_str(),
        s.lang,
        s.start_ms,
        s.end_ms,
        s.text,
        s.shown,
        s.confidence.map(f64::from),
        s.captioner,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// One CART stream: a captioner writing one language in one session.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub session: String,
    pub captioner: String,
    pub lang: String,
}

/// The stored state of a CART stream, if it ever took a caption.
pub fn load_stream(
    conn: &Connection,
    key: &StreamKey,
) -> Result<Option<StreamSnapshot>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT last_seq, last_text, last_at_ms, segment_end_ms, version, run
             FROM cart_streams WHERE session = ?1 AND captioner = ?2 AND lang = ?3",
        )?
        .query_row(params![key.session, key.captioner, key.lang], |r| {
            Ok(StreamSnapshot {
                last_seq: r.get::<_, i64>(0)? as u64,
                last_text: r.get(1)?,
                last_at_ms: r.get(2)?,
                segment_end_ms: r.get(3)?,
                version: r.get::<_, i64>(4)? as u64,
                run: r.get::<_, i64>(5)? as u64,
            })
        })
        .optional()?)
}

/// Stores a caption the stream accepted (none for a clear) and the stream's new state, in
/// one transaction. A state older than the stored one (a concurrent post that reached the
/// writer later) does not overwrite it; its caption is stored all the same.
pub fn save_cart(
    conn: &mut Connection,
    key: &StreamKey,
    state: &StreamSnapshot,
    segment: Option<&NewSegment<'_>>,
) -> Result<Option<i64>, StoreError> {
    let tx = conn.transaction()?;
    let id = match segment {
        Some(segment) => Some(insert(&tx, &key.session, segment)?),
        None => None,
    };
    tx.prepare_cached(
        "INSERT INTO cart_streams
           (session, captioner, lang, last_seq, last_text, last_at_ms, segment_end_ms, version, run)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (session, captioner, lang) DO UPDATE SET
           last_seq = excluded.last_seq, last_text = excluded.last_text,
           last_at_ms = excluded.last_at_ms, segment_end_ms = excluded.segment_end_ms,
           version = excluded.version, run = excluded.run
         WHERE excluded.version > cart_streams.version",
    )?
    .execute(params![
        key.session,
        key.captioner,
        key.lang,
        state.last_seq as i64,
        state.last_text,
        state.last_at_ms,
        state.segment_end_ms,
        state.version as i64,
        state.run as i64,
    ])?;
    tx.commit()?;
    Ok(id)
}

/// Every final segment of a session in time order (ties: arrival order).
pub fn all(conn: &Connection, session: &str) -> Result<Vec<StoredSegment>, StoreError> {
    page(conn, session, false, None, usize::MAX)
}

/// Up to `limit` segments after `after` (the `(start_ms, id)` of the last one of the
/// previous page), in time order; `shown_only` leaves out held-back machine captions.
/// Exports read a long transcript in such pages, holding a reader for one page at a time.
pub fn page(
    conn: &Connection,
    session: &str,
    shown_only: bool,
    after: Option<(i64, i64)>,
    limit: usize,
) -> Result<Vec<StoredSegment>, StoreError> {
    let (after_start, after_id) = after.unwrap_or((i64::MIN, i64::MIN));
    let mut stmt = conn.prepare_cached(
        "SELECT id, source, lang, start_ms, end_ms, text, shown, confidence
         FROM caption_segments
         WHERE session = ?1 AND (?2 = 0 OR shown = 1) AND (start_ms, id) > (?3, ?4)
         ORDER BY start_ms, id LIMIT ?5",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(
        params![session, shown_only, after_start, after_id, limit],
        |r| {
            let source: String = r.get(1)?;
            Ok(StoredSegment {
                id: r.get(0)?,
                source: if source == "cart" {
                    Source::Cart
                } else {
                    Source::Asr
                },
                lang: r.get(2)?,
                start_ms: r.get(3)?,
                end_ms: r.get(4)?,
                text: r.get(5)?,
                shown: r.get(6)?,
                confidence: r.get::<_, Option<f64>>(7)?.map(|c| c as f32),
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The start of the first shown caption of a session (time 0 of the text transcripts).
pub fn shown_origin(conn: &Connection, session: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT MIN(start_ms) FROM caption_segments WHERE session = ?1 AND shown = 1",
        )?
        .query_row(params![session], |r| r.get(0))?)
}
