//! What a session is: its id ([`SessionId`], validated once), what the API shows of it
//! ([`SessionInfo`]), how the config file declares one ([`SessionDecl`]) and why creating or
//! deleting one fails ([`SessionError`]). The sessions themselves, each with the state it
//! owns, are in `session_registry`: this module is the vocabulary every other one may use.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::store::{SessionRow, StoreError};

/// A session declared in the config file (`[[session]]`); it exists after every start.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionDecl {
    pub id: String,
    /// Defaults to the id.
    #[serde(default)]
    pub title: Option<String>,
}

/// Longest session title accepted.
pub const MAX_TITLE_LEN: usize = 200;

/// A validated session id: 1–64 characters of `[A-Za-z0-9_-]`, so it is safe in URLs,
/// metric labels and log lines without escaping.
///
/// It is the media engine's [`media::SessionId`] (one shared string, one type for both)
/// with the proof that it was validated: the engine takes any string, the API does not.
/// [`SessionId::to_media`] is the one conversion, a reference-count increment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(media::SessionId);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSessionId {
    #[error("a session id must be 1 to 64 characters long")]
    Length,
    #[error("a session id may only contain letters, digits, '_' and '-'")]
    Characters,
}

impl SessionId {
    pub fn parse(s: &str) -> Result<Self, InvalidSessionId> {
        if s.is_empty() || s.len() > 64 {
            return Err(InvalidSessionId::Length);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(InvalidSessionId::Characters);
        }
        Ok(SessionId(media::SessionId::new(s)))
    }

    /// A fresh random id for sessions created without one (12 lowercase letters/digits:
    /// about 62 bits, so collisions are not a practical concern; the insert still checks).
    pub fn generate() -> Self {
        use rand::Rng;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        let id: String = (0..12)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        SessionId(media::SessionId::new(id))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The same id as the media engine's type.
    pub fn to_media(&self) -> media::SessionId {
        self.0.clone()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.as_str())
    }
}

impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What the API returns for a session.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: SessionId,
    pub title: String,
    /// RFC 3339, UTC.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: i64,
}

fn rfc3339<S: serde::Serializer>(unix: &i64, s: S) -> Result<S::Ok, S::Error> {
    let formatted = time::OffsetDateTime::from_unix_timestamp(*unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    s.serialize_str(&formatted)
}

impl SessionInfo {
    pub(crate) fn from_row(row: SessionRow) -> Option<Self> {
        // Rows only ever come from validated ids; a hand-edited bad row is skipped, not fatal.
        let id = SessionId::parse(&row.id).ok()?;
        Some(SessionInfo {
            id,
            title: row.title,
            created_at: row.created_at,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session {0} already exists")]
    Exists(SessionId),
    #[error("no session {0}")]
    NotFound(SessionId),
    #[error("a session title must be 1 to {MAX_TITLE_LEN} characters")]
    InvalidTitle,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Seconds since the Unix epoch, for `created_at`.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_rules() {
        assert!(SessionId::parse("demo").is_ok());
        assert!(SessionId::parse("A_b-9").is_ok());
        assert!(SessionId::parse(&"x".repeat(64)).is_ok());
        assert_eq!(
            SessionId::parse(&"x".repeat(65)),
            Err(InvalidSessionId::Length)
        );
        assert_eq!(SessionId::parse(""), Err(InvalidSessionId::Length));
        assert_eq!(SessionId::parse("a b"), Err(InvalidSessionId::Characters));
        assert_eq!(SessionId::parse("a/b"), Err(InvalidSessionId::Characters));
        assert_eq!(SessionId::parse("é"), Err(InvalidSessionId::Characters));
        let generated = SessionId::generate();
        assert!(SessionId::parse(generated.as_str()).is_ok());
    }
}
