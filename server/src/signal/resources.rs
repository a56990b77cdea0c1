//! The WHIP/WHEP resources this node created: peer id → session, kind, owner. A request on a
//! resource URL is checked against this table before anything reaches the media engine, so a
//! WHIP resource cannot be addressed through a WHEP URL (or another session's URL), and only
//! the token that created a resource (or an operator) can end it.
//!
//! Entries leave on DELETE, when the media engine reports the peer closed, when the engine
//! says it no longer knows the peer, and when their session is deleted. The table is bounded
//! by the engine's peer limit. A std mutex is right here: each access is one map operation.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use media::PeerId;

use crate::session::SessionId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    /// A publisher (`/whip/…`).
    Whip,
    /// A viewer (`/whep/…`).
    Whep,
}

impl ResourceKind {
    pub fn path_prefix(self) -> &'static str {
        match self {
            ResourceKind::Whip => "whip",
            ResourceKind::Whep => "whep",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path_prefix())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub session: SessionId,
    pub kind: ResourceKind,
    /// `sub` of the token that created it.
    pub owner: String,
    /// The client's ICE username fragment from its offer: a PATCH with another one is an
    /// ICE restart.
    pub remote_ufrag: Option<String>,
    /// The hub the token watches for (its `hub` claim, or a hub token's name); none for
    /// individuals.
    pub hub: Option<String>,
}

impl Resource {
    /// The resource URL path (the `Location` header).
    pub fn location(&self, peer: PeerId) -> String {
        format!("/{}/{}/{}", self.kind.path_prefix(), self.session, peer)
    }

    /// The entity tag of the resource's current ICE session.
    pub fn etag(peer: PeerId) -> String {
        format!("\"{peer}\"")
    }
}

/// Cheap to clone; all clones share one table.
#[derive(Clone, Default)]
pub struct Resources {
    inner: Arc<Mutex<HashMap<PeerId, Resource>>>,
}

impl Resources {
    pub fn insert(&self, peer: PeerId, resource: Resource) {
        self.lock().insert(peer, resource);
    }

    pub fn get(&self, peer: PeerId) -> Option<Resource> {
        self.lock().get(&peer).cloned()
    }

    pub fn remove(&self, peer: PeerId) -> Option<Resource> {
        self.lock().remove(&peer)
    }

    /// Drops every resource of a deleted session.
    pub fn remove_session(&self, session: &SessionId) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, r| &r.session != session);
        before - map.len()
    }

    /// Every viewer (WHEP resource): its peer, session and hub.
    pub fn viewers(&self) -> Vec<(PeerId, SessionId, Option<String>)> {
        self.lock()
            .iter()
            .filter(|(_, r)| r.kind == ResourceKind::Whep)
            .map(|(p, r)| (*p, r.session.clone(), r.hub.clone()))
            .collect()
    }

    /// The viewers (WHEP resources) of one session and the hub each watches for.
    pub fn viewers_of(&self, session: &SessionId) -> Vec<(PeerId, Option<String>)> {
        self.lock()
            .iter()
            .filter(|(_, r)| r.kind == ResourceKind::Whep && &r.session == session)
            .map(|(p, r)| (*p, r.hub.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PeerId, Resource>> {
        // Every critical section is a single map call, so a poisoned map is still whole.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
