//! The WHIP/WHEP resources this node created: peer id → session, kind, owner. It is the
//! node's one peer index: drain, `/metrics` and each session's [`SessionPeers`] (its handle's
//! view, for `/viewers`) read it, and deleting a session empties its part. A request on a
//! resource URL is checked against this table before anything reaches the media engine, so a
//! WHIP resource cannot be addressed through a WHEP URL (or another session's URL), and only
//! the token that created a resource (or an operator) can end it.
//!
//! Entries leave on DELETE, when the media engine reports the peer closed, when the engine
//! says it no longer knows the peer, and when their session is deleted. The table is bounded
//! by the engine's peer limit, and each owner (token `sub`) by `max_resources_per_token`: a
//! slot is reserved before the engine is asked, so concurrent offers of one token cannot
//! overshoot it. A std mutex is right here: each access is one or two map operations.

use std::collections::{HashMap, VecDeque};
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
    inner: Arc<Mutex<Table>>,
}

/// Resources whose peer closed by itself, remembered so that the client's own DELETE, which
/// often follows its closing the connection, still succeeds (oldest forgotten first).
const CLOSED_REMEMBERED: usize = 4096;

#[derive(Default)]
struct Table {
    by_peer: HashMap<PeerId, Resource>,
    /// Resources (and reservations) per owner; owners with none are removed.
    per_owner: HashMap<String, usize>,
    closed: HashMap<PeerId, Resource>,
    closed_order: VecDeque<PeerId>,
}

impl Table {
    fn release(&mut self, owner: &str) {
        if let Some(n) = self.per_owner.get_mut(owner) {
            *n -= 1;
            if *n == 0 {
                self.per_owner.remove(owner);
            }
        }
    }
}

/// A slot held for `owner` while its offer is in the media engine; given back on drop
/// unless [`Reservation::commit`] turned it into a resource.
pub struct Reservation {
    table: Resources,
    owner: Option<String>,
}

impl Reservation {
    pub fn commit(mut self, peer: PeerId, resource: Resource) {
        let owner = self.owner.take();
        let mut table = self.table.lock();
        if owner.as_deref() != Some(resource.owner.as_str()) {
            // Not the owner the slot was held for: count the resource under its own.
            if let Some(o) = &owner {
                table.release(o);
            }
            *table.per_owner.entry(resource.owner.clone()).or_default() += 1;
        }
        if let Some(old) = table.by_peer.insert(peer, resource) {
            table.release(&old.owner);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            self.table.lock().release(&owner);
        }
    }
}

impl Resources {
    /// Holds one of `owner`'s at most `max` slots, or says how many it holds already.
    pub fn reserve(&self, owner: &str, max: usize) -> Result<Reservation, usize> {
        let mut table = self.lock();
        let held = table.per_owner.get(owner).copied().unwrap_or(0);
        if held >= max {
            return Err(held);
        }
        *table.per_owner.entry(owner.to_owned()).or_default() += 1;
        Ok(Reservation {
            table: self.clone(),
            owner: Some(owner.to_owned()),
        })
    }

    /// Adds a resource without a reservation (counted under its owner all the same).
    pub fn insert(&self, peer: PeerId, resource: Resource) {
        let mut table = self.lock();
        *table.per_owner.entry(resource.owner.clone()).or_default() += 1;
        if let Some(old) = table.by_peer.insert(peer, resource) {
            table.release(&old.owner);
        }
    }

    pub fn get(&self, peer: PeerId) -> Option<Resource> {
        self.lock().by_peer.get(&peer).cloned()
    }

    pub fn remove(&self, peer: PeerId) -> Option<Resource> {
        let mut table = self.lock();
        let removed = table.by_peer.remove(&peer);
        if let Some(r) = &removed {
            table.release(&r.owner);
        }
        removed
    }

    /// Removes a resource whose peer the engine closed (the client left, or timed out), and
    /// remembers it for [`Resources::closed`].
    pub fn remove_closed(&self, peer: PeerId) -> Option<Resource> {
        let mut table = self.lock();
        let removed = table.by_peer.remove(&peer)?;
        table.release(&removed.owner);
        if table.closed_order.len() == CLOSED_REMEMBERED
            && let Some(oldest) = table.closed_order.pop_front()
        {
            table.closed.remove(&oldest);
        }
        table.closed.insert(peer, removed.clone());
        table.closed_order.push_back(peer);
        Some(removed)
    }

    /// A resource that [`Resources::remove_closed`] removed recently, if `allowed` accepts
    /// it; then it is forgotten (a DELETE is answered once).
    pub fn take_closed(&self, peer: PeerId, allowed: impl FnOnce(&Resource) -> bool) -> bool {
        let mut table = self.lock();
        if !table.closed.get(&peer).is_some_and(allowed) {
            return false;
        }
        table.closed.remove(&peer);
        table.closed_order.retain(|p| *p != peer);
        true
    }

    /// The part of the index that is `session`'s.
    pub fn of_session(&self, session: &SessionId) -> SessionPeers {
        SessionPeers {
            session: session.clone(),
            index: self.clone(),
        }
    }

    /// Drops every resource of a deleted session.
    fn remove_session(&self, session: &SessionId) -> usize {
        let mut table = self.lock();
        let gone: Vec<PeerId> = table
            .by_peer
            .iter()
            .filter(|(_, r)| &r.session == session)
            .map(|(p, _)| *p)
            .collect();
        for peer in &gone {
            if let Some(r) = table.by_peer.remove(peer) {
                table.release(&r.owner);
            }
        }
        gone.len()
    }

    /// Resources `owner` holds (or has reserved) now.
    pub fn held_by(&self, owner: &str) -> usize {
        self.lock().per_owner.get(owner).copied().unwrap_or(0)
    }

    /// Every viewer (WHEP resource): its peer, session and hub.
    pub fn viewers(&self) -> Vec<(PeerId, SessionId, Option<String>)> {
        self.lock()
            .by_peer
            .iter()
            .filter(|(_, r)| r.kind == ResourceKind::Whep)
            .map(|(p, r)| (*p, r.session.clone(), r.hub.clone()))
            .collect()
    }

    fn viewers_of(&self, session: &SessionId) -> Vec<(PeerId, Option<String>)> {
        self.lock()
            .by_peer
            .iter()
            .filter(|(_, r)| r.kind == ResourceKind::Whep && &r.session == session)
            .map(|(p, r)| (*p, r.hub.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().by_peer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().by_peer.is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every critical section is a single map call, so a poisoned map is still whole.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One session's peers: its view of the node's index, held by the session's handle.
#[derive(Clone)]
pub struct SessionPeers {
    session: SessionId,
    index: Resources,
}

impl SessionPeers {
    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// The session's viewers (WHEP resources) and the hub each watches for.
    pub fn viewers(&self) -> Vec<(PeerId, Option<String>)> {
        self.index.viewers_of(&self.session)
    }

    /// Forgets every resource of the session (it was deleted); how many there were.
    pub fn remove_all(&self) -> usize {
        self.index.remove_session(&self.session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(owner: &str, session: &str) -> Resource {
        Resource {
            session: SessionId::parse(session).expect("valid id"),
            kind: ResourceKind::Whep,
            owner: owner.into(),
            remote_ufrag: None,
            hub: None,
        }
    }

    #[test]
    fn slots_per_owner_are_bounded_and_given_back() {
        let r = Resources::default();
        let a = r.reserve("alice", 2).expect("first slot");
        let b = r.reserve("alice", 2).expect("second slot");
        assert_eq!(r.reserve("alice", 2).err(), Some(2));
        assert!(r.reserve("bob", 2).is_ok(), "owners are independent");
        drop(b); // the engine refused that offer
        assert_eq!(r.held_by("alice"), 1);
        a.commit(PeerId(1), resource("alice", "s1"));
        let c = r
            .reserve("alice", 2)
            .expect("the refused offer's slot is free again");
        c.commit(PeerId(2), resource("alice", "s2"));
        assert_eq!(r.held_by("alice"), 2);
        r.remove(PeerId(1));
        assert_eq!(r.held_by("alice"), 1);
        let s2 = r.of_session(&SessionId::parse("s2").expect("id"));
        assert_eq!(s2.viewers().len(), 1);
        assert_eq!(s2.remove_all(), 1);
        assert!(s2.viewers().is_empty());
        assert_eq!(r.held_by("alice"), 0);
        assert!(r.lock().per_owner.is_empty(), "no owner entry left behind");
    }

    #[test]
    fn closed_resources_are_remembered_boundedly_and_taken_once() {
        let r = Resources::default();
        r.insert(PeerId(1), resource("alice", "s1"));
        assert!(r.remove_closed(PeerId(1)).is_some());
        assert_eq!(r.held_by("alice"), 0, "its slot is free");
        assert!(!r.take_closed(PeerId(1), |c| c.owner == "bob"));
        assert!(r.take_closed(PeerId(1), |c| c.owner == "alice"));
        assert!(!r.take_closed(PeerId(1), |_| true), "answered once");
        assert!(r.remove_closed(PeerId(2)).is_none(), "never was a resource");
        for i in 0..(CLOSED_REMEMBERED as u64 + 10) {
            r.insert(PeerId(100 + i), resource("carol", "s1"));
            r.remove_closed(PeerId(100 + i));
        }
        let t = r.lock();
        assert_eq!(t.closed.len(), CLOSED_REMEMBERED);
        assert_eq!(t.closed_order.len(), CLOSED_REMEMBERED);
        assert!(
            !t.closed.contains_key(&PeerId(100)),
            "the oldest went first"
        );
    }
}
