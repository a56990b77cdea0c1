//! The sessions this node serves: declared in the config file or created through the API,
//! persisted in SQLite, and mirrored in memory so that every WHIP/WHEP request can check
//! "does this session exist" without touching the database.
//!
//! Invariant: the in-memory map equals the `sessions` table. Writers are serialized by an
//! async mutex and change the database first, then the map (persist before announce), so a
//! failed write leaves both unchanged. Readers take a std `RwLock` for a map lookup only.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::store::{SessionRow, Store, StoreError};

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
    fn from_row(row: SessionRow) -> Option<Self> {
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

/// Cheap to clone; all clones share one map and one store.
#[derive(Clone)]
pub struct SessionRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    map: RwLock<BTreeMap<SessionId, SessionInfo>>,
    /// Serializes writers so the database and the map change in the same order.
    writer: tokio::sync::Mutex<()>,
}

impl SessionRegistry {
    /// Upserts the declared sessions, then loads every session from the store.
    pub async fn load(store: Store, declared: &[SessionDecl]) -> Result<Self, SessionError> {
        let declared: Vec<(String, String)> = declared
            .iter()
            .map(|d| {
                (
                    d.id.clone(),
                    d.title.clone().unwrap_or_else(|| d.id.clone()),
                )
            })
            .collect();
        let rows = store
            .blocking(move |conn| {
                let now = unix_now();
                for (id, title) in &declared {
                    Store::upsert_session(conn, id, title, now)?;
                }
                Store::list_sessions(conn)
            })
            .await?;
        let map = rows
            .into_iter()
            .filter_map(SessionInfo::from_row)
            .map(|info| (info.id.clone(), info))
            .collect();
        Ok(SessionRegistry {
            inner: Arc::new(Inner {
                store,
                map: RwLock::new(map),
                writer: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn contains(&self, id: &SessionId) -> bool {
        self.read().contains_key(id)
    }

    pub fn get(&self, id: &SessionId) -> Option<SessionInfo> {
        self.read().get(id).cloned()
    }

    pub fn list(&self) -> Vec<SessionInfo> {
        self.read().values().cloned().collect()
    }

    pub fn ids(&self) -> Vec<SessionId> {
        self.read().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Creates a session; `id: None` picks a fresh one.
    pub async fn create(
        &self,
        id: Option<SessionId>,
        title: String,
    ) -> Result<SessionInfo, SessionError> {
        let title = title.trim().to_owned();
        if title.is_empty() || title.len() > MAX_TITLE_LEN {
            return Err(SessionError::InvalidTitle);
        }
        let _writer = self.inner.writer.lock().await;
        let explicit = id.is_some();
        // A generated id that collides is simply drawn again; an explicit one is a conflict.
        for _ in 0..4 {
            let id = id.clone().unwrap_or_else(SessionId::generate);
            if self.contains(&id) {
                if explicit {
                    return Err(SessionError::Exists(id));
                }
                continue;
            }
            let info = SessionInfo {
                id: id.clone(),
                title: title.clone(),
                created_at: unix_now(),
            };
            let row = (id.as_str().to_owned(), title.clone(), info.created_at);
            let inserted = self
                .inner
                .store
                .blocking(move |conn| Store::insert_session(conn, &row.0, &row.1, row.2))
                .await?;
            if !inserted {
                return Err(SessionError::Exists(id));
            }
            self.write().insert(id, info.clone());
            return Ok(info);
        }
        Err(SessionError::Exists(SessionId::generate()))
    }

    /// Creates the session unless it exists (dev mode's `demo`).
    pub async fn ensure(&self, id: SessionId, title: &str) -> Result<SessionInfo, SessionError> {
        if let Some(info) = self.get(&id) {
            return Ok(info);
        }
        match self.create(Some(id.clone()), title.to_owned()).await {
            Err(SessionError::Exists(_)) => self.get(&id).ok_or(SessionError::NotFound(id)),
            other => other,
        }
    }

    pub async fn delete(&self, id: &SessionId) -> Result<SessionInfo, SessionError> {
        let _writer = self.inner.writer.lock().await;
        let Some(info) = self.get(id) else {
            return Err(SessionError::NotFound(id.clone()));
        };
        let key = id.as_str().to_owned();
        self.inner
            .store
            .blocking(move |conn| Store::delete_session(conn, &key))
            .await?;
        self.write().remove(id);
        Ok(info)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<SessionId, SessionInfo>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts
        // and removes), so a poisoned lock is still safe to use.
        self.inner.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<SessionId, SessionInfo>> {
        self.inner.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn unix_now() -> i64 {
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

    #[tokio::test]
    async fn create_list_delete_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let declared = vec![SessionDecl {
            id: "plenary".into(),
            title: None,
        }];
        let store = Store::open(&path).unwrap();
        let reg = SessionRegistry::load(store, &declared).await.unwrap();
        assert_eq!(
            reg.get(&SessionId::parse("plenary").unwrap())
                .unwrap()
                .title,
            "plenary"
        );

        let a = reg
            .create(Some(SessionId::parse("a").unwrap()), "A".into())
            .await
            .unwrap();
        assert!(matches!(
            reg.create(Some(a.id.clone()), "again".into()).await,
            Err(SessionError::Exists(_))
        ));
        let generated = reg.create(None, "Generated".into()).await.unwrap();
        assert!(matches!(
            reg.create(None, "  ".into()).await,
            Err(SessionError::InvalidTitle)
        ));
        assert_eq!(reg.len(), 3);
        reg.delete(&a.id).await.unwrap();
        assert!(matches!(
            reg.delete(&a.id).await,
            Err(SessionError::NotFound(_))
        ));
        drop(reg);

        let reg = SessionRegistry::load(Store::open(&path).unwrap(), &[])
            .await
            .unwrap();
        let ids: Vec<_> = reg.ids().iter().map(|i| i.to_string()).collect();
        assert!(ids.contains(&generated.id.to_string()));
        assert!(ids.contains(&"plenary".to_string()));
        assert_eq!(ids.len(), 2);
    }
}
