//! The SQLite side of captions: final segments (`caption_segments`) and the last CART `seq`
//! per session (`cart_seq`). Plain functions over a connection, called through
//! [`crate::store::Store::blocking`].

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use captions::Source;

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
}

pub fn insert(conn: &Connection, session: &str, s: &NewSegment<'_>) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO caption_segments
           (session, source, lang, start_ms, end_ms, text, shown, confidence)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
    ])?;
    Ok(conn.last_insert_rowid())
}

/// What a CART POST did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CartOutcome {
    /// Stored as segment `id`.
    Stored { id: i64 },
    /// `seq` was not above the last one: a retry, acknowledged and not stored again.
    Repeat,
}

/// Stores a CART caption unless its `seq` was seen; the seq check and both writes are one
/// transaction, so two concurrent retries cannot both store.
pub fn insert_cart(
    conn: &mut Connection,
    session: &str,
    seq: u64,
    segment: &NewSegment<'_>,
) -> Result<CartOutcome, StoreError> {
    let tx = conn.transaction()?;
    let last = last_seq(&tx, session)?;
    if captions::cart::check_seq(last, seq) == captions::cart::SeqCheck::Repeat {
        return Ok(CartOutcome::Repeat);
    }
    let id = insert(&tx, session, segment)?;
    tx.prepare_cached(
        "INSERT INTO cart_seq (session, last_seq) VALUES (?1, ?2)
         ON CONFLICT (session) DO UPDATE SET last_seq = excluded.last_seq",
    )?
    .execute(params![session, seq as i64])?;
    tx.commit()?;
    Ok(CartOutcome::Stored { id })
}

pub fn last_seq(conn: &Connection, session: &str) -> Result<Option<u64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT last_seq FROM cart_seq WHERE session = ?1")?
        .query_row(params![session], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|s| s as u64))
}

/// The end of the last CART caption of a session (Unix ms), to time the next one.
pub fn last_cart_end(conn: &Connection, session: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT end_ms FROM caption_segments WHERE session = ?1 AND source = 'cart'
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row(params![session], |r| r.get(0))
        .optional()?)
}

/// Every final segment of a session in time order (ties: arrival order).
pub fn all(conn: &Connection, session: &str) -> Result<Vec<StoredSegment>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, source, lang, start_ms, end_ms, text, shown, confidence
         FROM caption_segments WHERE session = ?1 ORDER BY start_ms, id",
    )?;
    let rows = stmt.query_map(params![session], |r| {
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
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
