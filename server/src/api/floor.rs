//! The floor's HTTP routes (contract: docs/CONTRACT.md, "Floor queue"). Handlers check the
//! token and the input, hand a [`Command`] to the session's task and render its outcome;
//! they never touch the machine themselves.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::api::error::ApiError;
use crate::api::json::ApiJson;
use crate::api::path::ApiPath;
use crate::api::session_access::{self as access, SessionAccess};
use crate::auth::{Grant, Permission, Role, StreamSlot, StreamSlots};
use crate::floor::log::{self, LogRow};
use crate::floor::machine::FloorMachine;
use crate::floor::model::{
    Command, FloorError, FloorEvent, Hand, HandId, Millis, Participant, Policy, QueueChange,
    Requester, Turn,
};
use crate::floor::patch::{self, OwnPlace};
use crate::floor::rate_limit::RateLimiter;
use crate::floor::report;
use crate::floor::runtime::{LiveEvent, RuntimeError, SessionFloor, now_ms};
use crate::floor::store::{self, ParticipantRow, StoredEvent};
use crate::live_captions::feed::CaptionMessage;
use crate::metrics::Metrics;
use crate::session::SessionId;
use crate::state::AppState;
use crate::store::Store;

/// Events read from the database per query while an SSE client catches up.
const CATCH_UP_PAGE: usize = 500;

/// What the floor handlers need from the app state.
#[derive(Clone)]
pub struct FloorDeps {
    pub store: Store,
    pub limiter: RateLimiter,
    pub streams: StreamSlots,
    pub metrics: Metrics,
}

impl FromRef<AppState> for FloorDeps {
    fn from_ref(state: &AppState) -> Self {
        FloorDeps {
            store: state.store.clone(),
            limiter: state.floor_limiter.clone(),
            streams: state.event_streams.clone(),
            metrics: state.metrics.clone(),
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/sessions/{id}/hands", post(raise))
        .route("/api/sessions/{id}/hands/{hand}", delete(withdraw))
        .route("/api/sessions/{id}/queue", get(queue).patch(reorder))
        .route(
            "/api/sessions/{id}/floor",
            post(grant_floor).patch(extend).delete(end_floor),
        )
        .route("/api/sessions/{id}/events", get(events))
        .route("/api/sessions/{id}/floor-log", get(floor_log))
        .route("/api/sessions/{id}/report", get(session_report))
}

impl FloorDeps {
    /// Counts a raise or withdrawal of this token's holder; the time it was counted at, for
    /// [`FloorDeps::refund`].
    fn rate_limit(&self, session: &SessionId, grant: &Grant) -> Result<Millis, ApiError> {
        let now = now_ms();
        self.limiter
            .check(&rate_key(session, grant), now)
            .map_err(|retry| {
                ApiError::too_many_requests(
                    "rate_limited",
                    format!(
                        "too many raise/withdraw requests; try again in {} s",
                        retry.as_secs().max(1)
                    ),
                    retry,
                )
            })?;
        Ok(now)
    }

    fn refund(&self, session: &SessionId, grant: &Grant, at: Millis) {
        self.limiter.refund(&rate_key(session, grant), at);
    }
}

fn rate_key(session: &SessionId, grant: &Grant) -> String {
    format!("{session}/{}", grant.claims.sub)
}

/// A query string that does not parse is a JSON 400 like every other bad input.
fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

// ------------------------------------------------------------------ views

#[derive(Serialize)]
pub struct QueuedHand {
    pub position: usize,
    pub pinned: bool,
    #[serde(flatten)]
    pub hand: Hand,
}

#[derive(Serialize)]
pub struct TurnView {
    pub hand: Hand,
    pub granted_at_ms: Millis,
    pub ends_at_ms: Millis,
    pub remaining_ms: Millis,
    pub warned: bool,
}

impl TurnView {
    fn new(t: &Turn, now: Millis) -> Self {
        TurnView {
            hand: t.hand.clone(),
            granted_at_ms: t.granted_at_ms,
            ends_at_ms: t.ends_at_ms,
            remaining_ms: t.ends_at_ms.saturating_sub(now),
            warned: t.warned,
        }
    }
}

/// The whole queue, as `GET …/queue` and the SSE `snapshot` event show it.
#[derive(Serialize)]
pub struct QueueView {
    pub policy: Policy,
    pub panel_size: u32,
    pub default_limit_ms: Millis,
    pub pinned: Vec<HandId>,
    pub hands: Vec<QueuedHand>,
    pub floor: Vec<TurnView>,
    pub server_time_ms: Millis,
    /// The id of the last event this view reflects (SSE clients resume after it).
    pub last_event_id: i64,
}

impl QueueView {
    fn of(m: &FloorMachine, last_event_id: i64) -> Self {
        let now = now_ms();
        let pinned = m.pinned().to_vec();
        QueueView {
            policy: m.policy(),
            panel_size: m.panel_size(),
            default_limit_ms: m.default_limit_ms(),
            hands: m
                .queue()
                .into_iter()
                .enumerate()
                .map(|(position, h)| QueuedHand {
                    position,
                    pinned: pinned.contains(&h.id),
                    hand: h.clone(),
                })
                .collect(),
            pinned,
            floor: m.holders().iter().map(|t| TurnView::new(t, now)).collect(),
            server_time_ms: now,
            last_event_id,
        }
    }
}

// ------------------------------------------------------------------ hands

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaiseBody {
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub head_count: Option<u32>,
}

#[derive(Serialize)]
struct Raised {
    hand: Hand,
    position: Option<usize>,
}

/// The participant a token stands for. A hub token speaks for its hub (its `hub` claim, or
/// its name when the claim is absent).
pub(crate) fn participant(grant: &Grant) -> Participant {
    let c = &grant.claims;
    let name = if c.name.trim().is_empty() {
        c.sub.clone()
    } else {
        c.name.clone()
    };
    let is_hub = c.role == Role::Hub;
    let hub = match (&c.hub, is_hub) {
        (Some(h), _) => Some(h.clone()),
        (None, true) => Some(name.clone()),
        (None, false) => None,
    };
    Participant {
        sub: c.sub.clone(),
        name,
        hub,
        is_hub,
    }
}

async fn raise(
    State(deps): State<FloorDeps>,
    SessionAccess {
        id: session,
        grant,
        handle,
        ..
    }: SessionAccess<access::RaiseHand>,
    body: Result<ApiJson<RaiseBody>, ApiError>,
) -> Result<Response, ApiError> {
    let floor = handle.floor;
    let ApiJson(body) = body?;
    if body.head_count.is_some() && grant.claims.role != Role::Hub {
        return Err(ApiError::bad_request(
            "invalid",
            "head_count is reported by hub tokens only",
        ));
    }
    deps.rate_limit(&session, &grant)?;
    // The hand_raised event names its owner: the report counts raisers from the log, so no
    // second write per raise.
    let outcome = floor
        .command(Command::Raise {
            who: participant(&grant),
            topic: body.topic,
            language: body.language,
            head_count: body.head_count,
        })
        .await?;
    let hand = outcome
        .events
        .iter()
        .find_map(|e| match &e.stored.event {
            FloorEvent::HandRaised { hand } => Some(hand.clone()),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal("a raise produced no hand_raised event"))?;
    let location = format!("/api/sessions/{session}/hands/{}", hand.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        ApiJson(Raised {
            hand,
            position: outcome.position,
        }),
    )
        .into_response())
}

/// Remembers who watched, for the report. Off the request path: losing one sighting on a
/// database error costs a count, not the join.
fn record_participant(store: &Store, session: &SessionId, grant: &Grant, who: &Participant) {
    let now = now_ms();
    let row = ParticipantRow {
        sub: who.sub.clone(),
        name: who.name.clone(),
        role: grant.claims.role.as_str().to_owned(),
        hub: who.hub.clone(),
        first_seen_ms: now,
        last_seen_ms: now,
    };
    let store = store.clone();
    let session = session.as_str().to_owned();
    tokio::spawn(async move {
        if let Err(e) = store
            .blocking(move |c| store::touch_participant(c, &session, &row))
            .await
        {
            tracing::warn!(error = %e, "recording a participant failed");
        }
    });
}

/// Records a watcher (WHEP) for the report.
pub fn record_viewer(store: &Store, session: &SessionId, grant: &Grant) {
    record_participant(store, session, grant, &participant(grant));
}

#[derive(Serialize)]
struct Withdrawn {
    hand: HandId,
    ended_turn: bool,
}

async fn withdraw(
    State(deps): State<FloorDeps>,
    ApiPath((_, hand)): ApiPath<(String, HandId)>,
    access: SessionAccess<access::WithdrawHand>,
) -> Result<ApiJson<Withdrawn>, ApiError> {
    let moderator = access.permission() == Permission::ModerateFloor;
    let SessionAccess {
        id: session,
        grant,
        handle,
        ..
    } = access;
    let floor = handle.floor;
    // Whose hand it is is decided by the floor, in the same step as the withdrawal.
    let (by, counted_at) = if moderator {
        (Requester::Moderator, None)
    } else {
        let at = deps.rate_limit(&session, &grant)?;
        (Requester::Participant(grant.claims.sub.clone()), Some(at))
    };
    let outcome = match floor.command(Command::Withdraw { hand, by }).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // Someone else's hand, or none: not an action of this participant, so it does
            // not use up their limit.
            if let (
                Some(at),
                RuntimeError::Floor(FloorError::NotYourHand(_) | FloorError::HandNotFound(_)),
            ) = (counted_at, &e)
            {
                deps.refund(&session, &grant, at);
            }
            return Err(e.into());
        }
    };
    let ended_turn = outcome
        .events
        .iter()
        .any(|e| matches!(e.stored.event, FloorEvent::FloorEnded { .. }));
    Ok(ApiJson(Withdrawn { hand, ended_turn }))
}

// ------------------------------------------------------------------ queue

async fn queue(
    State(deps): State<FloorDeps>,
    session: SessionAccess<access::Subscribe>,
) -> Result<ApiJson<QueueView>, ApiError> {
    let floor = &session.handle.floor;
    deps.metrics.count_queue_read("get");
    Ok(ApiJson(floor.inspect(QueueView::of).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveTo {
    pub hand: HandId,
    pub position: usize,
}

/// Decided as one change (`QueueChange`): all of it happens, or none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuePatch {
    pub policy: Option<Policy>,
    pub panel_size: Option<u32>,
    pub default_limit_s: Option<u64>,
    pub unpin: Option<HandId>,
    pub pin: Option<HandId>,
    #[serde(rename = "move")]
    pub move_to: Option<MoveTo>,
}

async fn reorder(
    session: SessionAccess<access::ModerateFloor>,
    body: Result<ApiJson<QueuePatch>, ApiError>,
) -> Result<ApiJson<QueueView>, ApiError> {
    let floor = &session.handle.floor;
    let ApiJson(p) = body?;
    let change = QueueChange {
        policy: p.policy,
        panel_size: p.panel_size,
        default_limit_ms: p.default_limit_s.map(|s| s.saturating_mul(1000)),
        unpin: p.unpin,
        pin: p.pin,
        move_to: p.move_to.map(|m| (m.hand, m.position)),
    };
    if change.is_empty() {
        return Err(ApiError::bad_request(
            "nothing_to_change",
            "send at least one of policy, panel_size, default_limit_s, pin, unpin, move",
        ));
    }
    floor.command(Command::ChangeQueue(change)).await?;
    Ok(ApiJson(floor.inspect(QueueView::of).await?))
}

// ------------------------------------------------------------------ floor

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    pub hand: Option<HandId>,
    pub limit_s: Option<u64>,
}

async fn grant_floor(
    session: SessionAccess<access::ModerateFloor>,
    body: Result<ApiJson<GrantBody>, ApiError>,
) -> Result<Response, ApiError> {
    let floor = &session.handle.floor;
    let ApiJson(body) = body?;
    let outcome = floor
        .command(Command::Grant {
            hand: body.hand,
            limit_ms: body.limit_s.map(|s| s.saturating_mul(1000)),
        })
        .await?;
    let turn = outcome
        .turn
        .ok_or_else(|| ApiError::internal("a grant produced no turn"))?;
    Ok((StatusCode::CREATED, ApiJson(TurnView::new(&turn, now_ms()))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    pub hand: Option<HandId>,
    pub extend_s: u64,
}

async fn extend(
    session: SessionAccess<access::ModerateFloor>,
    body: Result<ApiJson<ExtendBody>, ApiError>,
) -> Result<ApiJson<TurnView>, ApiError> {
    let floor = &session.handle.floor;
    let ApiJson(body) = body?;
    let outcome = floor
        .command(Command::Extend {
            hand: body.hand,
            by_ms: body.extend_s.saturating_mul(1000),
        })
        .await?;
    let turn = outcome
        .turn
        .ok_or_else(|| ApiError::internal("an extension produced no turn"))?;
    Ok(ApiJson(TurnView::new(&turn, now_ms())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndQuery {
    pub hand: Option<HandId>,
    /// Accepted so pages can pass their token in the URL.
    #[allow(dead_code)]
    pub token: Option<String>,
}

#[derive(Serialize)]
struct Ended {
    hand: HandId,
    reason: &'static str,
}

/// A moderator revokes; the holder ends their own turn (`done`).
async fn end_floor(
    access: SessionAccess<access::EndTurn>,
    q: Result<Query<EndQuery>, QueryRejection>,
) -> Result<ApiJson<Ended>, ApiError> {
    let q = query(q)?;
    let moderator = access.permission() == Permission::ModerateFloor;
    let SessionAccess { grant, handle, .. } = access;
    let floor = handle.floor;
    // The holder's turn is found by the floor, in the same step as it ends.
    let (cmd, reason) = if moderator {
        (Command::Revoke { hand: q.hand }, "revoked")
    } else {
        let sub = grant.claims.sub;
        (Command::Done { sub, hand: q.hand }, "done")
    };
    let outcome = floor.command(cmd).await?;
    let hand = outcome
        .events
        .iter()
        .find_map(|e| match e.stored.event {
            FloorEvent::FloorEnded { hand, .. } => Some(hand),
            _ => None,
        })
        .ok_or_else(|| ApiError::internal("ending the floor produced no floor_ended event"))?;
    Ok(ApiJson(Ended { hand, reason }))
}

// ------------------------------------------------------------------ events (SSE)

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    pub last_event_id: Option<i64>,
    #[allow(dead_code)]
    pub token: Option<String>,
}

/// `snapshot` (no id) first, then every event after `Last-Event-ID` (header, or
/// `?last_event_id=`) or after the snapshot, each once, in id order. At most
/// `max_event_streams_per_token` per token at once (429 past it).
async fn events(
    State(deps): State<FloorDeps>,
    q: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
    SessionAccess {
        id: session,
        grant,
        handle,
        ..
    }: SessionAccess<access::Subscribe>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let q = query(q)?;
    let floor = handle.floor;
    // Held by the stream: freed when the response ends or the client goes away.
    let slot = deps.streams.acquire(&grant.claims)?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_last_event_id", "Last-Event-ID must be a number")
                })?,
        ),
        None => q.last_event_id,
    };
    // Subscribe before the snapshot: every event stored after it is then either reflected
    // in the snapshot or delivered live (duplicates are dropped by id).
    let rx = floor.subscribe()?;
    let captions = handle.captions.subscribe();
    let who = participant(&grant);
    let me = who.clone();
    let (view, place) = floor
        .inspect(move |m, last| (QueueView::of(m, last), m.own_place(&me)))
        .await?;
    deps.metrics.count_queue_read("snapshot");
    let snapshot = Event::default()
        .event("snapshot")
        .json_data(Snapshot {
            view: &view,
            you: &place,
        })
        .map_err(ApiError::internal)?;
    let state = EventStream {
        snapshot: Some(snapshot),
        backlog: VecDeque::new(),
        catch_up: resume.is_some(),
        last_sent: resume.unwrap_or(view.last_event_id),
        rx,
        captions,
        own: OwnFollow {
            who,
            place,
            upto: view.last_event_id,
            known: true,
        },
        floor,
        store: deps.store.clone(),
        session: session.as_str().to_owned(),
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        s.next().await.map(|event| (Ok(event), s))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The queue, and the stream's own hand and place in it.
#[derive(Serialize)]
struct Snapshot<'a> {
    #[serde(flatten)]
    view: &'a QueueView,
    you: &'a OwnPlace,
}

/// The part of a live event that is the same for every listener.
#[derive(Serialize)]
struct SharedView<'a> {
    #[serde(flatten)]
    stored: &'a StoredEvent,
    floor: Vec<TurnView>,
    queue_length: usize,
    /// How the event moved hands in the queue: a page that shows the whole queue (the
    /// moderator's) applies it instead of reading the queue again.
    patch: &'a patch::QueuePatch,
    server_time_ms: Millis,
}

/// One stream's own hand and place, kept from the live events' patches; read again from the
/// floor (one position search, never the queue) when a patch cannot say, or after events
/// that came without one (a catch-up from the database).
struct OwnFollow {
    who: Participant,
    place: OwnPlace,
    /// The id of the last event `place` reflects.
    upto: i64,
    /// False once an event after `upto` went by without a patch.
    known: bool,
}

impl OwnFollow {
    fn missed(&mut self, id: i64) {
        if id > self.upto {
            self.known = false;
        }
    }

    async fn follow(&mut self, e: &LiveEvent, floor: &SessionFloor) -> &OwnPlace {
        let id = e.stored.id;
        if id <= self.upto {
            return &self.place;
        }
        if self.known && self.place.follow(&self.who.sub, &e.stored.event, &e.patch) {
            self.upto = id;
            return &self.place;
        }
        let who = self.who.clone();
        // A stopped floor ends the stream on its next receive; the old place will do till then.
        if let Ok((place, last)) = floor
            .inspect(move |m, last| (m.own_place(&who), last))
            .await
        {
            self.place = place;
            self.upto = last;
            self.known = true;
        }
        &self.place
    }

    /// After events without patches (a catch-up): the place and the turns as they are now,
    /// as an id-less `you` event, so the page is right before the next live event comes.
    async fn refresh(&mut self, floor: &SessionFloor) -> Option<Event> {
        let who = self.who.clone();
        let (place, last, data) = floor
            .inspect(move |m, last| {
                let now = now_ms();
                let place = m.own_place(&who);
                let data = serde_json::json!({
                    "you": &place,
                    "floor": m.holders().iter().map(|t| TurnView::new(t, now)).collect::<Vec<_>>(),
                    "queue_length": m.queue_len(),
                    "server_time_ms": now,
                    "last_event_id": last,
                });
                (place, last, data)
            })
            .await
            .ok()?;
        self.place = place;
        self.upto = last;
        self.known = true;
        Some(Event::default().event("you").data(data.to_string()))
    }
}

struct EventStream {
    snapshot: Option<Event>,
    backlog: VecDeque<StoredEvent>,
    /// Events may be in the database that were not sent (a resume, or a lagged receiver).
    catch_up: bool,
    last_sent: i64,
    rx: broadcast::Receiver<Arc<LiveEvent>>,
    /// Live captions: sent as they come, without an id (they are not replayed on resume;
    /// the transcript keeps the finals).
    captions: broadcast::Receiver<Arc<CaptionMessage>>,
    own: OwnFollow,
    floor: SessionFloor,
    store: Store,
    session: String,
    /// This stream's place in `max_event_streams_per_token`.
    _slot: StreamSlot,
}

impl EventStream {
    /// The next event to send; `None` ends the stream (the session is gone, or the database
    /// failed: the client reconnects with its Last-Event-ID and loses nothing).
    async fn next(&mut self) -> Option<Event> {
        if let Some(s) = self.snapshot.take() {
            return Some(s);
        }
        loop {
            if let Some(e) = self.backlog.pop_front() {
                if e.id > self.last_sent {
                    self.last_sent = e.id;
                    self.own.missed(e.id);
                    return Some(sse_event(&e));
                }
                continue;
            }
            if self.catch_up {
                let (session, after) = (self.session.clone(), self.last_sent);
                let page = self
                    .store
                    .read(move |c| store::since(c, &session, after, CATCH_UP_PAGE))
                    .await;
                match page {
                    Ok(rows) => {
                        self.catch_up = rows.len() == CATCH_UP_PAGE;
                        self.backlog = rows.into();
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(session = %self.session, error = %e, "SSE catch-up failed");
                        return None;
                    }
                }
            }
            if !self.own.known
                && let Some(you) = self.own.refresh(&self.floor).await
            {
                return Some(you);
            }
            tokio::select! {
                floor = self.rx.recv() => match floor {
                    Ok(e) if e.stored.id > self.last_sent => {
                        self.last_sent = e.stored.id;
                        let you = self.own.follow(&e, &self.floor).await;
                        return Some(live_event(&e, you));
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up = true,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                caption = self.captions.recv() => match caption {
                    Ok(c) => return Some(caption_event(&c)),
                    // A reader too slow for live captions skips ahead.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}

/// A live floor event: the stored event, the turns after it and the queue's length (rendered
/// once for all streams), and this stream's own hand and place.
fn live_event(e: &LiveEvent, you: &OwnPlace) -> Event {
    let shared = e.rendered.get_or_init(|| {
        let now = now_ms();
        let view = SharedView {
            stored: &e.stored,
            floor: e.floor.iter().map(|t| TurnView::new(t, now)).collect(),
            queue_length: e.queue_length,
            patch: &e.patch,
            server_time_ms: now,
        };
        serde_json::to_string(&view)
            .unwrap_or_else(|_| "{}".into())
            .into()
    });
    let you = serde_json::to_string(you).unwrap_or_else(|_| "null".into());
    // `shared` is one JSON object: `you` goes in before its closing brace.
    let data = match shared.strip_suffix('}') {
        Some(open) if open.len() > 1 => format!("{open},\"you\":{you}}}"),
        _ => format!("{{\"you\":{you}}}"),
    };
    Event::default()
        .event(e.stored.event.kind())
        .id(e.stored.id.to_string())
        .data(data)
}

fn caption_event(c: &CaptionMessage) -> Event {
    let data = serde_json::to_string(c).unwrap_or_else(|_| "{}".into());
    Event::default().event("caption").data(data)
}

fn sse_event(e: &StoredEvent) -> Event {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    Event::default()
        .event(e.event.kind())
        .id(e.id.to_string())
        .data(data)
}

// ------------------------------------------------------------------ log and report

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    pub format: Option<String>,
    #[allow(dead_code)]
    pub token: Option<String>,
}

#[derive(Serialize)]
struct LogBody<'a> {
    session: &'a str,
    entries: Vec<LogRow<'a>>,
}

async fn floor_log(
    State(deps): State<FloorDeps>,
    q: Result<Query<LogQuery>, QueryRejection>,
    SessionAccess { id: session, .. }: SessionAccess<access::ReadFloorLog>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let key = session.as_str().to_owned();
    let events = deps.store.read(move |c| store::all(c, &key)).await?;
    let entries = log::entries(&events);
    match q.format.as_deref() {
        None | Some("json") => Ok(ApiJson(LogBody {
            session: session.as_str(),
            entries: entries.iter().map(LogRow::from).collect(),
        })
        .into_response()),
        Some("csv") => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"floor-log-{session}.csv\""),
                ),
            ],
            log::to_csv(&entries),
        )
            .into_response()),
        Some(other) => Err(ApiError::bad_request(
            "invalid_format",
            format!("format {other:?} is not json or csv"),
        )),
    }
}

#[derive(Serialize)]
struct ReportBody {
    session: SessionId,
    title: String,
    generated_at: String,
    #[serde(flatten)]
    report: report::Report,
}

async fn session_report(
    State(deps): State<FloorDeps>,
    SessionAccess {
        id: session,
        handle,
        ..
    }: SessionAccess<access::ReadFloorLog>,
) -> Result<ApiJson<ReportBody>, ApiError> {
    let key = session.as_str().to_owned();
    let (events, participants) = deps
        .store
        .read(move |c| Ok((store::all(c, &key)?, store::participants(c, &key)?)))
        .await?;
    let now = now_ms();
    Ok(ApiJson(ReportBody {
        session,
        title: handle.info.title,
        generated_at: log::rfc3339(now),
        report: report::build(&events, &participants, now),
    }))
}
