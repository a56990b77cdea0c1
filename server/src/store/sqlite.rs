//! SQLite in WAL mode with numbered migrations (`PRAGMA user_version` records how many ran).
//!
//! One writer connection behind a `std::sync::Mutex`, and a small pool of read-only
//! connections: WAL lets readers work beside the writer, so a long transcript export never
//! delays a caption, a floor transition or a session change. Writes are short and a single
//! writer keeps SQLite's locking trivial. Every lock is taken inside `spawn_blocking`, never
//! held across an `.await`.
//!
//! The database must take writes: [`Store::open`] proves it with a write at start, and
//! [`Store::check`] (the readiness probe) does again. A write that fails because the disk is
//! full, the file is read-only or locked is a [`StoreError`] for which
//! [`StoreError::is_unavailable`] holds (the HTTP layer answers 503 `storage_unavailable`).

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use tokio::sync::Semaphore;

/// Applied in order; never edit one that has shipped, add a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_sessions.sql"),
    include_str!("migrations/0002_floor.sql"),
    include_str!("migrations/0003_captions.sql"),
    include_str!("migrations/0004_cart_streams.sql"),
];

/// Read-only connections in the pool: enough for a few transcript exports at once on a small
/// node; more readers wait their turn (in the blocking pool, never in an async worker).
pub const READ_CONNECTIONS: usize = 4;
/// How long the writer waits for a lock held by another process before the write fails.
/// Short: inside the process there is one writer, so a lock is someone else's (a backup, an
/// operator's shell) and callers should hear "unavailable" soon rather than hang.
const WRITE_BUSY_TIMEOUT: Duration = Duration::from_secs(1);
const READ_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// A copy of an unavailable-storage error for a second recipient ([`StoreError::duplicate`]).
    #[error("{0}")]
    Unavailable(String),
    #[error(
        "the database does not take writes ({cause}); check the permissions, attributes \
         (lsattr) and free space of {path} and its directory"
    )]
    NotWritable {
        path: std::path::PathBuf,
        cause: rusqlite::Error,
    },
}

impl StoreError {
    /// A copy for one more recipient (the error is not `Clone`): the same message, and
    /// unavailable if this one is.
    pub fn duplicate(&self) -> StoreError {
        if self.is_unavailable() {
            StoreError::Unavailable(self.to_string())
        } else {
            StoreError::Task(self.to_string())
        }
    }

    /// The storage cannot serve right now (disk full, read-only or locked file, I/O error),
    /// as opposed to a bug in a query. Callers answer "try later", not "internal error".
    pub fn is_unavailable(&self) -> bool {
        let sqlite = match self {
            StoreError::Sqlite(e) | StoreError::NotWritable { cause: e, .. } => e,
            StoreError::DataDir { .. } | StoreError::Unavailable(_) => return true,
            StoreError::SchemaTooNew { .. } | StoreError::Task(_) => return false,
        };
        matches!(
            sqlite.sqlite_error_code(),
            Some(
                ErrorCode::ReadOnly
                    | ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::CannotOpen
                    | ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::PermissionDenied
                    | ErrorCode::FileLockingProtocolFailed
                    | ErrorCode::DatabaseCorrupt
                    | ErrorCode::NotADatabase
            )
        )
    }
}

/// One row of `sessions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub title: String,
    pub created_at: i64,
}

/// Cheap to clone; all clones share the writer and the read pool.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    /// One permit per read connection, taken before a read goes to the blocking pool: readers
    /// beyond the pool wait here, as cheap async tasks in FIFO order, rather than as blocked
    /// threads that could crowd the writer out of tokio's blocking pool.
    read_permits: Arc<Semaphore>,
    /// None for an in-memory database (a private one cannot be shared): reads use the writer.
    readers: Option<ReadPool>,
}

/// Idle read-only connections; a reader takes one, or waits until one comes back.
struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
}

impl ReadPool {
    fn take(&self) -> PooledReader<'_> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(conn) = idle.pop() {
                return PooledReader {
                    pool: self,
                    conn: Some(conn),
                };
            }
            idle = self.returned.wait(idle).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Gives its connection back to the pool when dropped, even after a panic.
struct PooledReader<'a> {
    pool: &'a ReadPool,
    conn: Option<Connection>,
}

impl Drop for PooledReader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
            self.pool.returned.notify_one();
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database file and its directory, migrates, proves the
    /// database takes writes, then opens the read pool.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let not_writable = |cause| StoreError::NotWritable {
            path: path.to_owned(),
            cause,
        };
        let mut conn = Connection::open(path).map_err(not_writable)?;
        conn.busy_timeout(WRITE_BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(not_writable)?;
        // WAL + NORMAL: durable across process crashes; a power cut may lose the last commit.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn).map_err(|e| match e {
            StoreError::Sqlite(cause) => not_writable(cause),
            e => e,
        })?;
        probe_write(&conn).map_err(not_writable)?;
        let mut readers = Vec::with_capacity(READ_CONNECTIONS);
        for _ in 0..READ_CONNECTIONS {
            let reader = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            reader.busy_timeout(READ_BUSY_TIMEOUT)?;
            readers.push(reader);
        }
        Ok(Store {
            inner: Arc::new(Inner {
                writer: Mutex::new(conn),
                read_permits: Arc::new(Semaphore::new(READ_CONNECTIONS)),
                readers: Some(ReadPool {
                    idle: Mutex::new(readers),
                    returned: Condvar::new(),
                }),
            }),
        })
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(mut conn: Connection) -> Result<Store, StoreError> {
        migrate(&mut conn)?;
        Ok(Store {
            inner: Arc::new(Inner {
                writer: Mutex::new(conn),
                read_permits: Arc::new(Semaphore::new(READ_CONNECTIONS)),
                readers: None,
            }),
        })
    }

    /// Runs `f` with the writer connection on the blocking pool. Use it for anything that
    /// writes (and for reads that must see the writer's transaction).
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // A panic inside a previous closure aborted its transaction (rusqlite rolls back
            // on drop), so the connection is still consistent.
            let mut conn = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` with a read-only connection of the pool on the blocking pool: it sees the
    /// last committed state and never waits for the writer.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let permit = inner
            .read_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        tokio::task::spawn_blocking(move || match &inner.readers {
            Some(pool) => {
                let _permit = permit;
                let reader = pool.take();
                f(reader
                    .conn
                    .as_ref()
                    .expect("a pooled reader holds its connection"))
            }
            None => f(&inner.writer.lock().unwrap_or_else(|e| e.into_inner())),
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Readiness probe: a reader answers a query and the writer takes a write.
    pub async fn check(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await?;
        self.blocking(|conn| Ok(probe_write(conn)?)).await
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

/// Rewrites the probe row: proves the database file, its WAL and the disk take a write.
fn probe_write(conn: &Connection) -> Result<(), rusqlite::Error> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    conn.prepare_cached(
        "INSERT INTO store_probe (id, at_ms) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
    )?
    .execute(params![now_ms])?;
    Ok(())
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
        store.check().await.unwrap();
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

    /// Readers hold their own connections: a write completes while every reader of the pool
    /// is inside a long read (with one shared connection it would wait for all of them).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_do_not_wait_for_readers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(Mutex::new(wait));
        let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
        let mut reads = Vec::new();
        for _ in 0..READ_CONNECTIONS {
            let (store, wait, entered_tx) = (store.clone(), wait.clone(), entered_tx.clone());
            reads.push(tokio::spawn(async move {
                store
                    .read(move |c| {
                        let tx = c.unchecked_transaction()?;
                        let n: i64 =
                            tx.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))?;
                        entered_tx.send(()).unwrap();
                        // Held until the test lets go: a long export.
                        let _ = wait.lock().unwrap().recv_timeout(Duration::from_secs(10));
                        Ok(n)
                    })
                    .await
            }));
        }
        // (Were reads to share the writer, only one would get in: do not wait forever.)
        let all_in = tokio::time::timeout(Duration::from_secs(2), async {
            for _ in 0..READ_CONNECTIONS {
                entered.recv().await.unwrap();
            }
        })
        .await;
        let write = store.blocking(|c| Store::insert_session(c, "s1", "One", 1));
        let inserted = tokio::time::timeout(Duration::from_secs(2), write).await;
        for _ in 0..READ_CONNECTIONS {
            let _ = release.send(());
        }
        assert!(all_in.is_ok(), "the readers did not run side by side");
        assert!(
            matches!(inserted, Ok(Ok(true))),
            "the write waited for the readers: {inserted:?}"
        );
        for r in reads {
            assert_eq!(r.await.unwrap().unwrap(), 0, "readers see their snapshot");
        }
        // A reader afterwards sees the write.
        let row = store.read(|c| Store::get_session(c, "s1")).await.unwrap();
        assert_eq!(row.unwrap().title, "One");
    }

    #[tokio::test]
    async fn the_write_probe_runs_at_open_and_in_check() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let first: i64 = store
            .read(|c| Ok(c.query_row("SELECT at_ms FROM store_probe", [], |r| r.get(0))?))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        store.check().await.unwrap();
        let second: i64 = store
            .read(|c| Ok(c.query_row("SELECT at_ms FROM store_probe", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert!(second > first);
        let busy = StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ));
        assert!(busy.is_unavailable() && busy.duplicate().is_unavailable());
        let bug = StoreError::Sqlite(rusqlite::Error::InvalidQuery);
        assert!(!bug.is_unavailable() && !bug.duplicate().is_unavailable());
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
