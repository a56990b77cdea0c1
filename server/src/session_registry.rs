//! The sessions this node serves, each with the state it owns: one map, session id →
//! [`SessionHandle`] { info, floor, captions, peers }. Creating a session is one call
//! ([`SessionRegistry::create`]: its row, its floor task, its caption state); so is deleting
//! one ([`SessionRegistry::delete`]: the row, then the floor task, the captions, its peers in
//! the node's peer index and in the media engine). Nothing else keeps a per-session map, so
//! nothing has to be kept in step with this one.
//!
//! Sessions are declared in the config file or created through the API, persisted in SQLite,
//! and mirrored here so that every request finds its session without the database.
//!
//! Invariant: the map's sessions equal the `sessions` table. Writers are serialized by an
//! async mutex and change the database first, then the map (persist before announce), so a
//! failed write leaves both unchanged. Readers take a std `RwLock` for a map lookup only,
//! never across an `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::floor::runtime::{FloorRuntime, SessionFloor};
use crate::live_captions::feed::{CaptionSessions, SessionCaptions};
use crate::media_engine::{Media, reply_raw};
use crate::metrics::Metrics;
use crate::peer_resources::{Resources, SessionPeers};
use crate::session::{SessionDecl, SessionError, SessionId, SessionInfo, unix_now};
use crate::store::Store;

/// Everything one session owns. Cheap to clone (each part is an `Arc` or a channel); a clone
/// handed to a request stays usable while the session is deleted, and then answers "stopped".
#[derive(Clone)]
pub struct SessionHandle {
    pub info: SessionInfo,
    /// The session's floor task: queue, turns, their clock.
    pub floor: SessionFloor,
    /// Its live captions: subscribers, ASR/CART arbitration, CART streams.
    pub captions: SessionCaptions,
    /// Its WHIP/WHEP peers, in the node's one peer index.
    pub peers: SessionPeers,
}

/// What a session's handle is built from: the node's shared parts.
#[derive(Clone)]
pub struct SessionParts {
    pub floors: FloorRuntime,
    /// The node's peer index.
    pub peers: Resources,
    pub media: Media,
    pub metrics: Metrics,
    /// How long a captioner's text holds machine captions back (`cart_precedence_seconds`).
    pub caption_precedence: Duration,
}

/// Cheap to clone; all clones share one map.
#[derive(Clone)]
pub struct SessionRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    parts: SessionParts,
    map: RwLock<BTreeMap<SessionId, SessionHandle>>,
    /// Serializes writers so the database and the map change in the same order.
    writer: tokio::sync::Mutex<()>,
}

impl SessionRegistry {
    /// Upserts the declared sessions, then loads every session from the store and starts
    /// each one's floor now, so that turns granted before a restart keep their clock
    /// (warnings, timeouts) without waiting for a request.
    pub async fn load(
        store: Store,
        declared: &[SessionDecl],
        parts: SessionParts,
    ) -> Result<Self, SessionError> {
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
        let registry = SessionRegistry {
            inner: Arc::new(Inner {
                store,
                parts,
                map: RwLock::new(BTreeMap::new()),
                writer: tokio::sync::Mutex::new(()),
            }),
        };
        for info in rows.into_iter().filter_map(SessionInfo::from_row) {
            let handle = registry.open(info).await?;
            registry.write().insert(handle.info.id.clone(), handle);
        }
        Ok(registry)
    }

    /// The session's handle; `None` when there is no such session.
    pub fn get(&self, id: &SessionId) -> Option<SessionHandle> {
        self.read().get(id).cloned()
    }

    pub fn contains(&self, id: &SessionId) -> bool {
        self.read().contains_key(id)
    }

    pub fn info(&self, id: &SessionId) -> Option<SessionInfo> {
        self.read().get(id).map(|h| h.info.clone())
    }

    pub fn list(&self) -> Vec<SessionInfo> {
        self.read().values().map(|h| h.info.clone()).collect()
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

    /// Creates a session with its floor and captions; `id: None` picks a fresh id.
    pub async fn create(
        &self,
        id: Option<SessionId>,
        title: String,
    ) -> Result<SessionInfo, SessionError> {
        let title = title.trim().to_owned();
        if title.is_empty() || title.len() > crate::session::MAX_TITLE_LEN {
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
            let handle = match self.open(info.clone()).await {
                Ok(handle) => handle,
                Err(e) => {
                    // No floor, no session: take the row back so the table and the map agree.
                    self.remove_row(&id).await;
                    return Err(e);
                }
            };
            self.write().insert(id, handle);
            return Ok(info);
        }
        Err(SessionError::Exists(SessionId::generate()))
    }

    /// Creates the session unless it exists (dev mode's `demo`).
    pub async fn ensure(&self, id: SessionId, title: &str) -> Result<SessionInfo, SessionError> {
        if let Some(info) = self.info(&id) {
            return Ok(info);
        }
        match self.create(Some(id.clone()), title.to_owned()).await {
            Err(SessionError::Exists(_)) => self.info(&id).ok_or(SessionError::NotFound(id)),
            other => other,
        }
    }

    /// Deletes the session and everything it owns. Once it is out of the map no request
    /// finds it, so no new peer joins while its peers are closed.
    pub async fn delete(&self, id: &SessionId) -> Result<SessionInfo, SessionError> {
        let _writer = self.inner.writer.lock().await;
        if !self.contains(id) {
            return Err(SessionError::NotFound(id.clone()));
        }
        let key = id.as_str().to_owned();
        self.inner
            .store
            .blocking(move |conn| Store::delete_session(conn, &key))
            .await?;
        let handle = self
            .write()
            .remove(id)
            .ok_or_else(|| SessionError::NotFound(id.clone()))?;
        // Still under the writer lock: a session created again under this id must not see
        // its first peers closed with the old ones (the media engine knows sessions by id).
        self.close(&handle).await;
        Ok(handle.info)
    }

    /// A handle for a session whose row exists: starts its floor from its stored events.
    async fn open(&self, info: SessionInfo) -> Result<SessionHandle, SessionError> {
        let parts = &self.inner.parts;
        let floor = parts.floors.start(&info.id).await?;
        Ok(SessionHandle {
            captions: SessionCaptions::new(info.id.clone(), parts.caption_precedence),
            peers: parts.peers.of_session(&info.id),
            floor,
            info,
        })
    }

    /// Ends what a deleted session owned: its floor task (open event streams end), its
    /// captions, its peers in the index and in the media engine.
    async fn close(&self, handle: &SessionHandle) {
        let id = &handle.info.id;
        let parts = &self.inner.parts;
        handle.floor.stop();
        handle.captions.close();
        handle.peers.remove_all();
        parts.metrics.forget_floor_session(id);
        if let Some(engine) = parts.media.engine() {
            match reply_raw(engine.close_session(id.to_media())).await {
                Ok(Ok(())) => {}
                // The session is deleted either way; its peers then end by ICE timeout.
                Ok(Err(e)) => {
                    tracing::warn!(session = %id, error = %e, "closing the session's peers failed")
                }
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "closing the session's peers timed out")
                }
            }
        }
    }

    /// Best effort: a row whose session could not be opened.
    async fn remove_row(&self, id: &SessionId) {
        let key = id.as_str().to_owned();
        if let Err(e) = self
            .inner
            .store
            .blocking(move |conn| Store::delete_session(conn, &key))
            .await
        {
            tracing::error!(session = %id, error = %e, "removing a session that did not open failed");
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<SessionId, SessionHandle>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts
        // and removes), so a poisoned lock is still safe to use.
        self.inner.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<SessionId, SessionHandle>> {
        self.inner.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Machine captions arrive by session id: the feed finds the session's captions here.
impl CaptionSessions for SessionRegistry {
    fn captions(&self, session: &SessionId) -> Option<SessionCaptions> {
        self.read().get(session).map(|h| h.captions.clone())
    }
}

/// The parts of a node without a media engine, for unit tests of what sits on the registry.
#[cfg(test)]
pub(crate) fn test_parts(store: &Store) -> SessionParts {
    let media = Media::unavailable("no media engine in this test");
    let metrics = Metrics::new().expect("metrics");
    let peers = Resources::default();
    SessionParts {
        floors: FloorRuntime::new(store.clone(), media.clone(), peers.clone(), metrics.clone()),
        peers,
        media,
        metrics,
        caption_precedence: Duration::from_secs(5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_list_delete_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let declared = vec![SessionDecl {
            id: "plenary".into(),
            title: None,
        }];
        let store = Store::open(&path).unwrap();
        let reg = SessionRegistry::load(store.clone(), &declared, test_parts(&store))
            .await
            .unwrap();
        assert_eq!(
            reg.info(&SessionId::parse("plenary").unwrap())
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

        let store = Store::open(&path).unwrap();
        let reg = SessionRegistry::load(store.clone(), &[], test_parts(&store))
            .await
            .unwrap();
        let ids: Vec<_> = reg.ids().iter().map(|i| i.to_string()).collect();
        assert!(ids.contains(&generated.id.to_string()));
        assert!(ids.contains(&"plenary".to_string()));
        assert_eq!(ids.len(), 2);
    }

    /// Deleting is one call that ends everything the session owned: a handle kept by a
    /// request (an open event stream) sees its floor stopped and its streams closed.
    #[tokio::test]
    async fn delete_ends_the_floor_the_captions_and_the_peers() {
        use crate::peer_resources::{Resource, ResourceKind};
        use media::PeerId;

        let store = Store::open_in_memory().unwrap();
        let parts = test_parts(&store);
        let index = parts.peers.clone();
        let reg = SessionRegistry::load(store.clone(), &[], parts)
            .await
            .unwrap();
        let id = SessionId::parse("s1").unwrap();
        reg.create(Some(id.clone()), "One".into()).await.unwrap();
        let other = SessionId::parse("s2").unwrap();
        reg.create(Some(other.clone()), "Two".into()).await.unwrap();
        let handle = reg.get(&id).expect("created");
        let mut floor_events = handle.floor.subscribe().expect("a running floor");
        let mut captions = handle.captions.subscribe();
        for (peer, session) in [(1, &id), (2, &other)] {
            index.insert(
                PeerId(peer),
                Resource {
                    session: session.clone(),
                    kind: ResourceKind::Whep,
                    owner: "v".into(),
                    remote_ufrag: None,
                    hub: None,
                },
            );
        }
        assert!(reg.captions(&id).is_some());

        reg.delete(&id).await.unwrap();

        assert!(reg.get(&id).is_none() && reg.captions(&id).is_none());
        assert!(
            handle.peers.viewers().is_empty(),
            "its peers left the index"
        );
        assert_eq!(index.len(), 1, "another session's peer stays");
        let closed = tokio::time::timeout(Duration::from_secs(5), floor_events.recv()).await;
        assert!(
            matches!(
                closed,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed))
            ),
            "the floor's event stream ended: {closed:?}"
        );
        assert!(matches!(
            captions.recv().await,
            Err(tokio::sync::broadcast::error::RecvError::Closed)
        ));
        assert!(handle.floor.subscribe().is_err(), "the floor is stopped");
        assert!(matches!(
            handle.floor.inspect(|m, _| m.queue_len()).await,
            Err(crate::floor::runtime::RuntimeError::Stopped)
        ));
    }
}
