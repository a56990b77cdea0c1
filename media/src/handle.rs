//! The async face of the media engine: the HTTP side sends a [`MediaCmd`] over a bounded
//! channel to the shard that owns the peer or session and awaits the reply. Nothing here
//! touches a peer directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::error::MediaError;
use crate::ids::{PeerId, Role, SessionId};
use crate::shard::{home_shard, shard_of_peer};
use crate::stats::MediaStats;

/// The SDP answer for a new peer and the id to address it later (PATCH/DELETE).
#[derive(Debug, Clone)]
pub struct Answer {
    pub peer: PeerId,
    pub sdp: String,
}

/// Whether a new floor publisher may replace the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takeover {
    Refuse,
    Replace,
}

/// Which publisher a viewer receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Follow {
    /// What the session shows now: the speaker holding the floor for the kinds it sends,
    /// else the floor feed. What every viewer wants.
    #[default]
    Current,
    /// The floor feed only, even while a speaker holds the floor: the venue screen's
    /// picture-in-picture of the room under a remote speaker.
    Floor,
}

/// Something the engine tells the server about, off the hot path.
#[derive(Clone, Debug)]
pub enum MediaEvent {
    /// ICE and DTLS completed for a peer.
    Connected {
        peer: PeerId,
        session: SessionId,
        role: Role,
    },
    /// A viewer received its first video keyframe (audio-only viewers: first audio packet),
    /// `join` after its offer reached the engine.
    FirstMedia {
        peer: PeerId,
        session: SessionId,
        join: Duration,
    },
    /// A peer is gone (closed by request, by the remote, or timed out).
    Closed {
        peer: PeerId,
        session: SessionId,
        role: Role,
    },
}

pub(crate) enum MediaCmd {
    Publish {
        session: SessionId,
        role: Role,
        offer: String,
        takeover: Takeover,
        reply: oneshot::Sender<Result<Answer, MediaError>>,
    },
    Subscribe {
        session: SessionId,
        offer: String,
        follow: Follow,
        reply: oneshot::Sender<Result<Answer, MediaError>>,
    },
    AddCandidate {
        peer: PeerId,
        candidate: String,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    ClosePeer {
        peer: PeerId,
        reply: oneshot::Sender<Result<(), MediaError>>,
    },
    CloseSession {
        session: SessionId,
        reply: oneshot::Sender<()>,
    },
    /// No reply: a caption is fire-and-forget (see [`MediaHandle::send_captions`]).
    SendCaptions {
        session: SessionId,
        text: Arc<str>,
    },
    Shutdown,
}

/// A cheap, cloneable handle to the running media engine.
#[derive(Clone)]
pub struct MediaHandle {
    /// Each shard's command queue, by shard index.
    pub(crate) shards: Arc<[mpsc::Sender<MediaCmd>]>,
    /// Round robin over shards for new viewers, so one session's viewers use every core.
    pub(crate) next_viewer_shard: Arc<AtomicUsize>,
    pub(crate) events: broadcast::Sender<MediaEvent>,
    pub(crate) stats: Arc<MediaStats>,
    pub(crate) udp_addr: SocketAddr,
    /// Where ICE-TCP listens, if it does.
    pub(crate) tcp_addr: Option<SocketAddr>,
}

impl MediaHandle {
    /// The bound UDP address all peers use.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound ICE-TCP address, when ICE-TCP is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    pub fn stats(&self) -> &Arc<MediaStats> {
        &self.stats
    }

    /// Media threads (shards) of the engine.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Joins, first-media and closes, for metrics and signalling cleanup. A slow receiver
    /// misses events (bounded channel), it never slows the media loop.
    pub fn events(&self) -> broadcast::Receiver<MediaEvent> {
        self.events.subscribe()
    }

    /// A publisher's SDP offer (WHIP) in, the SDP answer out.
    pub async fn publish(
        &self,
        session: SessionId,
        role: Role,
        offer: String,
        takeover: Takeover,
    ) -> Result<Answer, MediaError> {
        let shard = home_shard(&session, self.shards.len());
        self.call(shard, |reply| MediaCmd::Publish {
            session,
            role,
            offer,
            takeover,
            reply,
        })
        .await?
    }

    /// A viewer's SDP offer (WHEP) in, the SDP answer out.
    pub async fn subscribe(
        &self,
        session: SessionId,
        offer: String,
        follow: Follow,
    ) -> Result<Answer, MediaError> {
        let shard = self.next_viewer_shard.fetch_add(1, Relaxed) % self.shards.len();
        self.call(shard, |reply| MediaCmd::Subscribe {
            session,
            offer,
            follow,
            reply,
        })
        .await?
    }

    /// A trickled ICE candidate (`candidate:…` attribute value, with or without `a=`).
    pub async fn add_candidate(&self, peer: PeerId, candidate: String) -> Result<(), MediaError> {
        self.call(self.owner(peer)?, |reply| MediaCmd::AddCandidate {
            peer,
            candidate,
            reply,
        })
        .await?
    }

    pub async fn close_peer(&self, peer: PeerId) -> Result<(), MediaError> {
        self.call(self.owner(peer)?, |reply| MediaCmd::ClosePeer {
            peer,
            reply,
        })
        .await?
    }

    /// Closes every peer of a session (the session was deleted), on every shard.
    pub async fn close_session(&self, session: SessionId) -> Result<(), MediaError> {
        for shard in 0..self.shards.len() {
            let session = session.clone();
            self.call(shard, |reply| MediaCmd::CloseSession { session, reply })
                .await?;
        }
        Ok(())
    }

    /// Sends a caption message (text, typically JSON) to every connected viewer of `session`
    /// that opened a data channel labelled `captions`. Never waits: when the engine's command
    /// queue is full the message is dropped and this returns false (a late caption is worth
    /// less than a prompt answer to the next request). A viewer whose channel cannot take it
    /// misses it (`MediaStats::captions_dropped`).
    /// With several shards it goes to each (their viewers); false if any could not take it.
    pub fn send_captions(&self, session: SessionId, text: Arc<str>) -> bool {
        let mut all = true;
        for cmds in self.shards.iter() {
            all &= cmds
                .try_send(MediaCmd::SendCaptions {
                    session: session.clone(),
                    text: text.clone(),
                })
                .is_ok();
        }
        all
    }

    /// Stops the engine; peers are dropped without goodbye.
    pub fn shutdown(&self) {
        for cmds in self.shards.iter() {
            let _ = cmds.try_send(MediaCmd::Shutdown);
        }
    }

    /// The shard owning a peer; an id naming no shard was never ours.
    fn owner(&self, peer: PeerId) -> Result<usize, MediaError> {
        let shard = shard_of_peer(peer);
        if shard < self.shards.len() {
            Ok(shard)
        } else {
            Err(MediaError::PeerNotFound(peer))
        }
    }

    async fn call<T>(
        &self,
        shard: usize,
        make: impl FnOnce(oneshot::Sender<T>) -> MediaCmd,
    ) -> Result<T, MediaError> {
        let (tx, rx) = oneshot::channel();
        let cmds = self.shards.get(shard).ok_or(MediaError::Stopped)?;
        cmds.try_send(make(tx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => MediaError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => MediaError::Stopped,
        })?;
        rx.await.map_err(|_| MediaError::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caption never waits for a busy engine: with the command queue full it is dropped
    /// and the caller told so, at once.
    #[test]
    fn captions_are_dropped_when_the_command_queue_is_full() {
        let (cmds, mut rx) = mpsc::channel(1);
        let handle = MediaHandle {
            shards: Arc::from([cmds]),
            next_viewer_shard: Arc::default(),
            events: broadcast::channel(1).0,
            stats: Arc::default(),
            udp_addr: SocketAddr::from(([127, 0, 0, 1], 40000)),
            tcp_addr: None,
        };
        let session = SessionId::new("s1");
        assert!(handle.send_captions(session.clone(), Arc::from("first")));
        assert!(!handle.send_captions(session.clone(), Arc::from("second")));
        assert!(matches!(
            rx.try_recv(),
            Ok(MediaCmd::SendCaptions { session: s, text }) if s == session && &*text == "first"
        ));
        assert!(handle.send_captions(session, Arc::from("third")));
        drop(rx);
        assert!(!handle.send_captions(SessionId::new("s1"), Arc::from("stopped")));
    }
}
