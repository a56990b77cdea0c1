//! The live floor of every session: one task per session owns its [`FloorMachine`], runs its
//! clock (warnings, timeouts), stores every event before anyone hears of it, then broadcasts
//! it and acts on the media engine (a turn that ends closes the speaker's WHIP peer).
//!
//! Why one task per session: the machine needs no lock, commands of one session are applied
//! in one order, and requests that arrive together are stored in one SQLite transaction
//! (group commit), which is what lets a node take a storm of raised hands.
//!
//! A session's task lives as long as the session: the session registry starts it
//! ([`FloorRuntime::start`]) and stops it ([`SessionFloor::stop`]) when the session is
//! deleted; then its event stream closes, so open SSE streams end.
//!
//! Restart: [`FloorRuntime::start`] replays the session's stored events into a fresh machine,
//! so the queue order, the current grants (with their absolute end times) and the history
//! come back as they were; the clock then fires whatever fell due while the node was down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use media::PeerId;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::machine::FloorMachine;
use super::model::{Command, FloorError, FloorEvent, HandId, Millis, Turn};
use super::patch::QueuePatch;
use super::store::{self, StoredEvent};
use crate::media_engine::Media;
use crate::metrics::Metrics;
use crate::peer_resources::Resources;
use crate::session::SessionId;
use crate::store::{Store, StoreError};

/// Requests waiting for a session task; beyond this, callers wait (backpressure).
const REQUEST_QUEUE: usize = 4096;
/// Most requests applied and stored in one transaction.
const MAX_BATCH: usize = 512;
/// Events kept for slow SSE readers; a reader that falls further behind reads the rest from
/// the database (see `api::events`).
pub const BROADCAST_CAPACITY: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Floor(#[from] FloorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the floor of this session has stopped (was the session deleted?)")]
    Stopped,
}

/// Unix milliseconds now.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A stored event as it is announced: with how it moved hands in the queue and the turns
/// after it, so that listeners follow the floor without reading the queue (issue 17).
#[derive(Debug)]
pub struct LiveEvent {
    pub stored: StoredEvent,
    pub patch: QueuePatch,
    /// Who holds the floor once the event is applied.
    pub floor: Vec<Turn>,
    pub queue_length: usize,
    /// The part of the event every listener sees alike, rendered once by the first listener
    /// that needs it (the HTTP layer decides its shape).
    pub rendered: std::sync::OnceLock<Arc<str>>,
}

/// What a command did, as seen right after it was applied.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub events: Vec<Arc<LiveEvent>>,
    /// For a raise: the new hand's 0-based queue position.
    pub position: Option<usize>,
    /// For a grant or an extension: the turn as it is now.
    pub turn: Option<Turn>,
}

type Inspect = Box<dyn FnOnce(&FloorMachine, i64) + Send>;

enum Request {
    Command {
        cmd: Command,
        reply: oneshot::Sender<Result<Outcome, RuntimeError>>,
    },
    /// Runs a read-only closure on the machine (and the last stored event id) in the task.
    Inspect(Inspect),
    /// Links a speaker's WHIP peer to the hand of `sub` if `sub` holds the floor now.
    AttachSpeaker {
        sub: String,
        peer: PeerId,
        reply: oneshot::Sender<Option<HandId>>,
    },
}

/// A session's floor, as handlers see it. Cheap to clone.
#[derive(Clone)]
pub struct SessionFloor {
    requests: mpsc::Sender<Request>,
    /// Weak: the task holds the only sender, so its end closes every subscriber's stream
    /// (an SSE stream holds a `SessionFloor` and must not keep the channel open itself).
    events: broadcast::WeakSender<Arc<LiveEvent>>,
    /// Set once, by [`SessionFloor::stop`].
    stop: Arc<watch::Sender<bool>>,
}

impl SessionFloor {
    pub async fn command(&self, cmd: Command) -> Result<Outcome, RuntimeError> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Request::Command { cmd, reply })
            .await
            .map_err(|_| RuntimeError::Stopped)?;
        rx.await.map_err(|_| RuntimeError::Stopped)?
    }

    /// Reads the machine in its task: `f` gets the machine and the id of the last stored
    /// event it reflects.
    pub async fn inspect<T, F>(&self, f: F) -> Result<T, RuntimeError>
    where
        T: Send + 'static,
        F: FnOnce(&FloorMachine, i64) -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Inspect = Box::new(move |m, last| {
            let _ = tx.send(f(m, last));
        });
        self.requests
            .send(Request::Inspect(job))
            .await
            .map_err(|_| RuntimeError::Stopped)?;
        rx.await.map_err(|_| RuntimeError::Stopped)
    }

    /// The hand through which `sub` holds the floor now, if any.
    pub async fn holder_hand(&self, sub: &str) -> Result<Option<HandId>, RuntimeError> {
        let sub = sub.to_owned();
        self.inspect(move |m, _| m.holder_by_sub(&sub).map(|t| t.hand.id))
            .await
    }

    /// Links `peer` (a WHIP speaker peer) to `sub`'s turn, so the turn's end closes it.
    /// `None` when `sub` does not hold the floor (any more): the caller closes the peer.
    pub async fn attach_speaker(
        &self,
        sub: &str,
        peer: PeerId,
    ) -> Result<Option<HandId>, RuntimeError> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Request::AttachSpeaker {
                sub: sub.to_owned(),
                peer,
                reply,
            })
            .await
            .map_err(|_| RuntimeError::Stopped)?;
        rx.await.map_err(|_| RuntimeError::Stopped)
    }

    /// Live events from now on.
    pub fn subscribe(&self) -> Result<broadcast::Receiver<Arc<LiveEvent>>, RuntimeError> {
        self.events
            .upgrade()
            .map(|tx| tx.subscribe())
            .ok_or(RuntimeError::Stopped)
    }

    /// Ends the task (the session was deleted): requests already queued are dropped
    /// unanswered (their callers see [`RuntimeError::Stopped`]), subscribers' streams close.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// What a session task needs besides its machine.
#[derive(Clone)]
struct Deps {
    store: Store,
    media: Media,
    resources: Resources,
    metrics: Metrics,
}

/// Starts session floors: what every session task needs besides its machine. Cheap to
/// clone; it keeps no session (the session registry does).
#[derive(Clone)]
pub struct FloorRuntime {
    deps: Deps,
}

impl FloorRuntime {
    pub fn new(store: Store, media: Media, resources: Resources, metrics: Metrics) -> Self {
        FloorRuntime {
            deps: Deps {
                store,
                media,
                resources,
                metrics,
            },
        }
    }

    /// Starts the task of `session` from its stored events. The caller (the registry)
    /// starts one per session and keeps it.
    pub async fn start(&self, session: &SessionId) -> Result<SessionFloor, StoreError> {
        let key = session.as_str().to_owned();
        let stored = self
            .deps
            .store
            .blocking(move |conn| store::all(conn, &key))
            .await?;
        Ok(spawn(session.clone(), stored, self.deps.clone()))
    }
}

fn spawn(session: SessionId, stored: Vec<StoredEvent>, deps: Deps) -> SessionFloor {
    let mut machine = FloorMachine::new();
    let mut last_id = 0;
    for e in &stored {
        machine.apply(&e.event);
        last_id = e.id;
    }
    tracing::info!(
        %session,
        events = stored.len(),
        queued = machine.queue().len(),
        holders = machine.holders().len(),
        "floor loaded"
    );
    let (requests, rx) = mpsc::channel(REQUEST_QUEUE);
    let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
    let (stop, stopped) = watch::channel(false);
    let weak = events.downgrade();
    let task = SessionTask {
        session,
        machine,
        last_id,
        speakers: HashMap::new(),
        events,
        deps,
    };
    tokio::spawn(task.run(rx, stopped));
    SessionFloor {
        requests,
        events: weak,
        stop: Arc::new(stop),
    }
}

struct SessionTask {
    session: SessionId,
    machine: FloorMachine,
    /// The id of the last stored event the machine reflects.
    last_id: i64,
    /// WHIP speaker peers by the hand whose turn they belong to.
    speakers: HashMap<HandId, PeerId>,
    events: broadcast::Sender<Arc<LiveEvent>>,
    deps: Deps,
}

/// An event applied to the machine and not stored yet, with what will be announced with it.
struct Applied {
    event: FloorEvent,
    patch: QueuePatch,
    floor: Vec<Turn>,
    queue_length: usize,
}

/// What a command did before its events are stored: events, raise position, turn.
type Decided = (Vec<Applied>, Option<usize>, Option<Turn>);

/// A command applied to the machine whose events are not stored yet.
struct Pending {
    reply: Option<oneshot::Sender<Result<Outcome, RuntimeError>>>,
    result: Result<Decided, FloorError>,
}

impl SessionTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>, mut stopped: watch::Receiver<bool>) {
        self.publish_gauges();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let deadline = self.machine.next_deadline();
            let sleep = deadline.map(|d| Duration::from_millis(d.saturating_sub(now_ms())));
            tokio::select! {
                // First: a deleted session takes no more commands, even in a storm.
                biased;
                // Only ever set to true; an error means every handle is gone: stop as well.
                _ = stopped.changed() => break,
                n = rx.recv_many(&mut batch, MAX_BATCH) => {
                    if n == 0 {
                        break; // every handle dropped: the session is gone
                    }
                    self.handle_batch(&mut batch).await;
                }
                _ = tokio::time::sleep(sleep.unwrap_or(Duration::MAX)), if sleep.is_some() => {
                    self.handle_clock().await;
                }
            }
        }
        tracing::info!(session = %self.session, "floor stopped");
    }

    /// Applies every command of the batch in order, stores all their events in one
    /// transaction, then replies, broadcasts and acts on media.
    async fn handle_batch(&mut self, batch: &mut Vec<Request>) {
        let now = now_ms();
        let mut after: Vec<Request> = Vec::new();
        // The clock first: a command at `now` must see turns that ended before `now`.
        let mut pending: Vec<Pending> = self.apply_due(now).into_iter().collect();
        for request in batch.drain(..) {
            match request {
                Request::Command { cmd, reply } => {
                    let result = match self.machine.decide(&cmd, now) {
                        Ok(events) => {
                            let applied = self.apply_all(events);
                            let position = applied.iter().find_map(|a| match &a.event {
                                FloorEvent::HandRaised { hand } => self.machine.position(hand.id),
                                _ => None,
                            });
                            let turn = applied.iter().find_map(|a| match &a.event {
                                FloorEvent::FloorGranted { hand, .. }
                                | FloorEvent::FloorExtended { hand, .. } => self
                                    .machine
                                    .holders()
                                    .iter()
                                    .find(|t| t.hand.id == *hand)
                                    .cloned(),
                                _ => None,
                            });
                            Ok((applied, position, turn))
                        }
                        Err(e) => Err(e),
                    };
                    pending.push(Pending {
                        reply: Some(reply),
                        result,
                    });
                }
                // Reads and speaker links wait until this batch is stored, so they never
                // see state that could still be rolled back.
                other => after.push(other),
            }
        }
        self.commit(now, pending).await;
        for request in after {
            match request {
                Request::Inspect(f) => f(&self.machine, self.last_id),
                Request::AttachSpeaker { sub, peer, reply } => {
                    let hand = self.machine.holder_by_sub(&sub).map(|t| t.hand.id);
                    if let Some(hand) = hand
                        && let Some(old) = self.speakers.insert(hand, peer)
                        && old != peer
                    {
                        self.close_peer(old);
                    }
                    let _ = reply.send(hand);
                }
                Request::Command { .. } => unreachable!("commands are handled above"),
            }
        }
    }

    async fn handle_clock(&mut self) {
        let now = now_ms();
        if let Some(due) = self.apply_due(now) {
            self.commit(now, vec![due]).await;
        }
    }

    /// Applies the warnings and timeouts due at `now`, as a pending change with no caller.
    fn apply_due(&mut self, now: Millis) -> Option<Pending> {
        let due = self.machine.tick(now);
        if due.is_empty() {
            return None;
        }
        Some(Pending {
            reply: None,
            result: Ok((self.apply_all(due), None, None)),
        })
    }

    /// Applies decided events one by one, noting after each what listeners will be told.
    fn apply_all(&mut self, events: Vec<FloorEvent>) -> Vec<Applied> {
        events
            .into_iter()
            .map(|event| {
                let patch = self.machine.apply_tracked(&event);
                Applied {
                    event,
                    patch,
                    floor: self.machine.holders().to_vec(),
                    queue_length: self.machine.queue_len(),
                }
            })
            .collect()
    }

    /// Stores the events of `pending`; on success announces them, on failure rebuilds the
    /// machine from the database (the applied events never happened) and says so.
    async fn commit(&mut self, now: Millis, pending: Vec<Pending>) {
        let events: Vec<FloorEvent> = pending
            .iter()
            .filter_map(|p| p.result.as_ref().ok())
            .flat_map(|(applied, _, _)| applied.iter().map(|a| a.event.clone()))
            .collect();
        let stored = if events.is_empty() {
            Ok(Vec::new())
        } else {
            let key = self.session.as_str().to_owned();
            self.deps
                .store
                .blocking(move |conn| store::append(conn, &key, now, events))
                .await
        };
        let stored = match stored {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(session = %self.session, error = %e, "storing floor events failed; reloading");
                self.reload().await;
                for p in pending {
                    if let Some(reply) = p.reply {
                        let _ = reply.send(Err(RuntimeError::Store(e.duplicate())));
                    }
                }
                return;
            }
        };
        let mut stored = stored.into_iter();
        for p in pending {
            let result = match p.result {
                Ok((applied, position, turn)) => {
                    // `applied` first: zip stops on it without taking the next command's
                    // stored event.
                    let mine: Vec<Arc<LiveEvent>> = applied
                        .into_iter()
                        .zip(stored.by_ref())
                        .map(|(a, stored)| {
                            Arc::new(LiveEvent {
                                stored,
                                patch: a.patch,
                                floor: a.floor,
                                queue_length: a.queue_length,
                                rendered: std::sync::OnceLock::new(),
                            })
                        })
                        .collect();
                    for e in &mine {
                        self.last_id = self.last_id.max(e.stored.id);
                        self.on_stored(&e.stored);
                        // No receivers is normal (nobody listens to the stream).
                        let _ = self.events.send(e.clone());
                    }
                    Ok(Outcome {
                        events: mine,
                        position,
                        turn,
                    })
                }
                Err(e) => Err(RuntimeError::Floor(e)),
            };
            if let Some(reply) = p.reply {
                let _ = reply.send(result);
            }
        }
        self.publish_gauges();
    }

    /// Side effects of a stored event: media and metrics.
    fn on_stored(&mut self, e: &StoredEvent) {
        match &e.event {
            FloorEvent::FloorEnded { hand, reason, .. } => {
                self.deps.metrics.count_floor_end(reason.as_str());
                if let Some(peer) = self.speakers.remove(hand) {
                    self.close_peer(peer);
                }
            }
            FloorEvent::FloorGranted {
                hand,
                granted_at_ms,
                ..
            } => {
                if let Some(h) = self.machine.hand(*hand) {
                    let wait = granted_at_ms.saturating_sub(h.raised_at_ms);
                    self.deps
                        .metrics
                        .observe_floor_wait(Duration::from_millis(wait));
                }
            }
            _ => {}
        }
    }

    /// Ends a speaker's media: the engine stops forwarding it at once (the driver drops the
    /// peer on its next turn) and its WHIP resource goes away.
    fn close_peer(&self, peer: PeerId) {
        // The speaker's client may still DELETE its resource: that succeeds.
        self.deps.resources.remove_closed(peer);
        let Some(engine) = self.deps.media.engine().cloned() else {
            return;
        };
        let session = self.session.clone();
        tokio::spawn(async move {
            match engine.close_peer(peer).await {
                Ok(()) => tracing::info!(%session, %peer, "speaker media closed: the turn ended"),
                // Already gone: the speaker hung up first.
                Err(media::MediaError::PeerNotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(%session, %peer, error = %e, "closing speaker media failed")
                }
            }
        });
    }

    async fn reload(&mut self) {
        let key = self.session.as_str().to_owned();
        match self
            .deps
            .store
            .blocking(move |conn| store::all(conn, &key))
            .await
        {
            Ok(stored) => {
                let mut machine = FloorMachine::new();
                for e in &stored {
                    machine.apply(&e.event);
                }
                self.machine = machine;
                self.last_id = stored.last().map_or(0, |e| e.id);
            }
            Err(e) => {
                tracing::error!(session = %self.session, error = %e, "reloading the floor failed; keeping memory state")
            }
        }
    }

    fn publish_gauges(&self) {
        self.deps
            .metrics
            .set_floor_queue_length(&self.session, self.machine.queue_len());
    }
}
