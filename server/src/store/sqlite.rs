//! SQLite in WAL mode with numbered migrations (`PRAGMA user_version` records how many ran).
//!
//! Why a `std::sync::Mutex<Connection>`: writes are rare (session CRUD, later floor
//! transitions) and short, a single connection keeps SQLite's locking trivial, and the lock
//! is only taken inside `spawn_blocking`, never held across an `.await`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

/// Applied in order; never edit one that has shipped, add a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_sessions.sql"),
    include_str!("migrations/0002_floor.sql"),
    include_str!("migrations/0003_captions.sql"),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("could not create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the database schema is version {found}, newer than this binary ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("the database task failed: {0}")]
    Task(String),
}

/// One row of `sessions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub title: String,
    pub created_at: i64,
}

/// Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database file and its directory, then migrates.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // WAL + NORMAL: durable across process crashes; a power cut may lose the last commit.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Self::from_connection(conn)
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(mut conn: Connection) -> Result<Store, StoreError> {
        migrate(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside a previous closure aborted its transaction (rusqlite rolls back
            // on drop), so the connection is still consistent.
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Readiness probe: the database answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    pub fn list_sessions(conn: &Connection) -> Result<Vec<SessionRow>, StoreError> {
        let mut stmt = conn.prepare("SELECT id, title, created_at FROM sessions ORDER BY id")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SessionRow {
                    id: r.get(0)?,
                    title: r.get(1)?,
                    created_at: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Inserts a new session; `false` when the id is taken.
    pub fn insert_session(
        conn: &Connection,
        id: &str,
        title: &str,
        created_at: i64,
    ) -> Result<bool, StoreError> {
        let n = conn.execute(
            "INSERT INTO sessions (id, title, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO NOTHING",
            params![id, title, created_at],
        )?;
        Ok(n == 1)
    }

    /// Creates a declared session or updates its title (the config file is authoritative
    /// for titles of the sessions it declares).
    pub fn upsert_session(
        conn: &Connection,
        id: &str,
        title: &str,
        created_at: i64,
    ) -> Result<(), StoreError> {
        conn.execute(
            "INSERT INTO sessions (id, title, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET title = excluded.title",
            params![id, title, created_at],
        )?;
        Ok(())
    }

    /// `false` when there was no such session.
    pub fn delete_session(conn: &Connection, id: &str) -> Result<bool, StoreError> {
        Ok(conn.execute("DELETE FROM sessions WHERE id = ?1", params![id])? == 1)
    }

    pub fn get_session(conn: &Connection, id: &str) -> Result<Option<SessionRow>, StoreError> {
        Ok(conn
            .query_row(
                "SELECT id, title, created_at FROM sessions WHERE id = ?1",
                params![id],
                |r| {
                    Ok(SessionRow {
                        id: r.get(0)?,
                        title: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        // Each migration and its version bump commit together, so a crash never leaves a
        // half-applied step.
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrates_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/floorcast.db");
        let store = Store::open(&path).unwrap();
        store.ping().await.unwrap();
        let inserted = store
            .blocking(|c| Store::insert_session(c, "s1", "One", 1))
            .await
            .unwrap();
        assert!(inserted);
        let again = store
            .blocking(|c| Store::insert_session(c, "s1", "Other", 2))
            .await
            .unwrap();
        assert!(!again, "duplicate id is refused");
        drop(store);

        let store = Store::open(&path).unwrap();
        let (mode, row) = store
            .blocking(|c| {
                let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
                Ok((mode, Store::get_session(c, "s1")?))
            })
            .await
            .unwrap();
        assert_eq!(mode.to_lowercase(), "wal");
        assert_eq!(row.unwrap().title, "One");
        assert!(
            store
                .blocking(|c| Store::delete_session(c, "s1"))
                .await
                .unwrap()
        );
    }

    #[test]
    fn refuses_newer_schema() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            Store::from_connection(conn),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }
}
