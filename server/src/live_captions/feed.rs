//! The caption feed of every session: where machine and human captions meet, are stored,
//! and go out to viewers.
//!
//! Order of work for a final caption: decide whether viewers see it ([`CaptionMerge`]),
//! announce it (SSE subscribers through a broadcast channel, WebRTC viewers through the media
//! engine's `captions` data channel), then store it. Viewers never wait for the disk, and a
//! database that cannot be written costs the transcript, not the live captions: such a
//! caption is counted in `floorcast_caption_store_failures_total`. Interim captions are
//! announced only.
//!
//! Each session's captions ([`SessionCaptions`]: its subscribers, the ASR/CART arbitration,
//! its CART streams) belong to the session's handle in the session registry, which creates
//! them with the session and closes them when it is deleted. [`CaptionFeed`] is the node's
//! work on them (store, media, metrics); machine captions, which arrive by session id, find
//! their session through [`CaptionSessions`] (the registry, given to the feed so that this
//! module does not import it).
//!
//! CART sequencing lives here, in memory, one [`CartStream`] per (captioner, language) of a
//! session, loaded from the store the first time a stream posts: the decision (new, retry,
//! stale, out of range) is taken under the session's lock, so two concurrent posts of one
//! stream are ordered, and it does not need the disk. The lock guards one session's state for
//! a few microseconds per caption; it is never held across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use captions::cart::{Accepted, CartStream, SeqError};
use captions::merge::CaptionMerge;
use captions::{CaptionEvent, Source};
use serde::Serialize;
use tokio::sync::broadcast;

use super::store::{self, NewSegment, StreamKey};
use crate::media_engine::Media;
use crate::metrics::Metrics;
use crate::session::SessionId;
use crate::store::{Store, StoreError};

/// Captions a slow SSE reader may fall behind by before it skips ahead (it loses interim
/// text, never the server's memory).
const SUBSCRIBER_BACKLOG: usize = 256;

/// CART streams (captioner × language) a session may have: a captioner token cannot grow
/// the server's memory by inventing languages.
pub const MAX_CART_STREAMS_PER_SESSION: usize = 32;

/// What a CART post did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CartOutcome {
    /// A new caption (or a clear) went out to viewers and was stored.
    Shown,
    /// A retry of the last caption: acknowledged, nothing changed.
    Repeat,
}

/// Why a CART post was refused. With `Store`, the caption did reach viewers.
#[derive(Debug, thiserror::Error)]
pub enum CartError {
    #[error(transparent)]
    Seq(#[from] SeqError),
    #[error(
        "this session already has {max} caption streams (one per captioner and language); \
         reuse a language tag or ask the operator"
    )]
    TooManyStreams { max: usize },
    #[error("the caption went out to viewers but was not stored: {0}")]
    Store(#[from] StoreError),
}

/// A caption as viewers receive it: the SSE `caption` event's data and the data channel
/// message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaptionMessage {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Identifies the segment: interim updates and the final of one segment share it.
    pub id: String,
    pub text: String,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub lang: String,
    pub source: Source,
    /// Unix milliseconds.
    pub start_ms: i64,
    pub end_ms: i64,
    pub confidence: Option<f32>,
    /// False for a machine caption held back while a captioner has precedence: it goes only
    /// to the session's event stream, for the moderator's caption monitor, never to viewers.
    pub shown: bool,
}

/// A machine caption with where it came from: the recognizer run (`stream`) and the wall
/// clock at that run's first sample, which turns stream seconds into Unix time.
#[derive(Clone, Debug)]
pub struct AsrCaption {
    pub session: SessionId,
    pub stream: u64,
    pub origin_ms: i64,
    pub event: CaptionEvent,
}

/// Where the feed finds a session's captions by id (machine captions arrive by id).
pub trait CaptionSessions: Send + Sync + 'static {
    /// `None`: no such session (it was deleted while its recognizer ran).
    fn captions(&self, session: &SessionId) -> Option<SessionCaptions>;
}

/// One session's live captions. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct SessionCaptions {
    session: SessionId,
    state: Arc<Mutex<CaptionState>>,
}

struct CaptionState {
    /// `None` once the session is deleted: later subscribers get a stream that has ended.
    tx: Option<broadcast::Sender<Arc<CaptionMessage>>>,
    merge: CaptionMerge,
    /// CART streams by (captioner, language).
    cart: CartStreams,
}

/// A session's CART streams by (captioner, language).
type CartStreams = HashMap<(String, String), LiveStream>;

struct LiveStream {
    stream: CartStream,
    tag: u64,
}

impl SessionCaptions {
    /// `precedence`: how long a captioner's text holds machine captions back.
    pub fn new(session: SessionId, precedence: Duration) -> Self {
        SessionCaptions {
            session,
            state: Arc::new(Mutex::new(CaptionState {
                tx: Some(broadcast::channel(SUBSCRIBER_BACKLOG).0),
                merge: CaptionMerge::new(precedence),
                cart: HashMap::new(),
            })),
        }
    }

    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// Captions from now on; a stream that has ended once the session is deleted.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CaptionMessage>> {
        match &self.lock().tx {
            Some(tx) => tx.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    /// The session was deleted: subscribers see their stream end, nothing more goes out.
    pub fn close(&self) {
        let mut state = self.lock();
        state.tx = None;
        state.cart.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CaptionState> {
        // A panic elsewhere while holding the lock leaves the state usable: every change
        // under it is one map or merge call.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The node's caption work: stores, announces and counts the captions of every session.
#[derive(Clone)]
pub struct CaptionFeed {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: Arc<dyn CaptionSessions>,
    /// Numbers CART streams and their runs, for caption ids (`cart-<tag>-<seq>`).
    next_tag: AtomicU64,
    store: Store,
    media: Media,
    metrics: Metrics,
}

impl CaptionFeed {
    pub fn new(
        store: Store,
        media: Media,
        metrics: Metrics,
        sessions: Arc<dyn CaptionSessions>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions,
                next_tag: AtomicU64::new(1),
                store,
                media,
                metrics,
            }),
        }
    }

    /// A machine caption: stored when final, shown unless a captioner has precedence.
    /// A caption of a session that no longer exists is dropped. `now` and `now_ms` are the
    /// same moment on the monotonic and the wall clock (the caller's, so this stays testable).
    pub async fn asr(&self, c: AsrCaption, now: Instant, now_ms: i64) -> Result<(), StoreError> {
        let Some(captions) = self.inner.sessions.captions(&c.session) else {
            tracing::debug!(session = %c.session, "machine caption of a deleted session dropped");
            return Ok(());
        };
        let shown = captions.lock().merge.shown(&c.event, now);
        let at = |secs: f64| c.origin_ms + (secs * 1000.0).round() as i64;
        let message = CaptionMessage {
            kind: "caption",
            id: format!("asr-{}-{}", c.stream, c.event.segment_id),
            text: c.event.text.clone(),
            is_final: c.event.is_final,
            lang: c.event.lang.clone(),
            source: Source::Asr,
            start_ms: at(c.event.start),
            end_ms: at(c.event.end),
            confidence: c.event.confidence,
            shown,
        };
        self.announce(&captions, message.clone());
        if !c.event.is_final {
            return Ok(());
        }
        let lag = (now_ms - at(c.event.end)).max(0) as u64;
        self.inner
            .metrics
            .observe_caption_latency(Source::Asr, Duration::from_millis(lag));
        let segment = NewSegment {
            source: Source::Asr,
            lang: &message.lang,
            start_ms: message.start_ms,
            end_ms: message.end_ms,
            text: &message.text,
            shown,
            confidence: message.confidence,
            captioner: None,
        };
        self.store_segment(&c.session, &segment)
            .await
            .inspect_err(|_| self.inner.metrics.count_caption_store_failure(Source::Asr))
    }

    /// A human caption (CART) from `captioner` (the token's `sub`); empty `text` clears the
    /// line. A retry of the last caption is acknowledged and changes nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn cart(
        &self,
        captions: &SessionCaptions,
        captioner: &str,
        seq: u64,
        lang: String,
        text: String,
        received: Instant,
        now_ms: i64,
    ) -> Result<CartOutcome, CartError> {
        let key = StreamKey {
            session: captions.session.as_str().to_owned(),
            captioner: captioner.to_owned(),
            lang: lang.clone(),
        };
        self.load_stream(captions, &key).await?;
        let decided = {
            let mut state = captions.lock();
            let streams = &mut state.cart;
            let stream_key = (key.captioner.clone(), key.lang.clone());
            if !streams.contains_key(&stream_key) && streams.len() >= MAX_CART_STREAMS_PER_SESSION {
                self.inner.metrics.count_cart_refused("too_many_streams");
                return Err(CartError::TooManyStreams {
                    max: MAX_CART_STREAMS_PER_SESSION,
                });
            }
            let tag = &self.inner.next_tag;
            let live = streams
                .entry(stream_key.clone())
                .or_insert_with(|| LiveStream {
                    stream: CartStream::new(),
                    tag: tag.fetch_add(1, Ordering::Relaxed),
                });
            match live.stream.caption(seq, &text, now_ms) {
                Ok(Accepted::Repeat) => return Ok(CartOutcome::Repeat),
                Ok(accepted) => {
                    if matches!(
                        accepted,
                        Accepted::Caption { new_run: true, .. }
                            | Accepted::Clear { new_run: true, .. }
                    ) {
                        live.tag = tag.fetch_add(1, Ordering::Relaxed);
                    }
                    let snapshot = live
                        .stream
                        .snapshot()
                        .expect("a stream that accepted a caption has a state");
                    (accepted, snapshot, live.tag)
                }
                Err(e) => {
                    // A stream refused at its first post takes no place among the session's.
                    if live.stream.snapshot().is_none() {
                        streams.remove(&stream_key);
                    }
                    self.inner.metrics.count_cart_refused(match e {
                        SeqError::Stale { .. } => "stale_seq",
                        SeqError::TooFarAhead { .. } => "seq_out_of_range",
                    });
                    return Err(e.into());
                }
            }
        };
        let (accepted, snapshot, tag) = decided;
        let (start_ms, end_ms) = match accepted {
            Accepted::Caption {
                start_ms, end_ms, ..
            } => (start_ms, end_ms),
            Accepted::Clear { at_ms, .. } => (at_ms, at_ms),
            Accepted::Repeat => unreachable!("answered above"),
        };
        captions.lock().merge.on_cart(&lang, received);
        self.announce(
            captions,
            CaptionMessage {
                kind: "caption",
                id: format!("cart-{tag}-{seq}"),
                text: text.clone(),
                is_final: true,
                lang: lang.clone(),
                source: Source::Cart,
                start_ms,
                end_ms,
                confidence: None,
                shown: true,
            },
        );
        if !text.is_empty() {
            self.inner
                .metrics
                .observe_caption_latency(Source::Cart, received.elapsed());
        }
        let captioner = captioner.to_owned();
        let is_caption = !text.is_empty();
        let saved = self
            .inner
            .store
            .blocking(move |c| {
                let segment = NewSegment {
                    source: Source::Cart,
                    lang: &lang,
                    start_ms,
                    end_ms,
                    text: &text,
                    shown: true,
                    confidence: None,
                    captioner: Some(&captioner),
                };
                let segment = (!text.is_empty()).then_some(&segment);
                store::save_cart(c, &key, &snapshot, segment)
            })
            .await;
        match saved {
            Ok(_) => Ok(CartOutcome::Shown),
            Err(e) => {
                if is_caption {
                    self.inner.metrics.count_caption_store_failure(Source::Cart);
                }
                Err(e.into())
            }
        }
    }

    /// The last `seq` of a CART stream; 0 before its first caption.
    pub async fn cart_last_seq(
        &self,
        captions: &SessionCaptions,
        captioner: &str,
        lang: &str,
    ) -> Result<u64, StoreError> {
        let stream_key = (captioner.to_owned(), lang.to_owned());
        if let Some(live) = captions.lock().cart.get(&stream_key) {
            return Ok(live.stream.last_seq());
        }
        let key = StreamKey {
            session: captions.session.as_str().to_owned(),
            captioner: stream_key.0,
            lang: stream_key.1,
        };
        let stored = self
            .inner
            .store
            .read(move |c| store::load_stream(c, &key))
            .await?;
        Ok(stored.map_or(0, |s| s.last_seq))
    }

    /// Brings a stream's stored state into memory, unless it is there already.
    async fn load_stream(
        &self,
        captions: &SessionCaptions,
        key: &StreamKey,
    ) -> Result<(), StoreError> {
        let stream_key = (key.captioner.clone(), key.lang.clone());
        let present = captions.lock().cart.contains_key(&stream_key);
        if present {
            return Ok(());
        }
        let read_key = key.clone();
        let Some(stored) = self
            .inner
            .store
            .read(move |c| store::load_stream(c, &read_key))
            .await?
        else {
            return Ok(());
        };
        let mut state = captions.lock();
        let streams = &mut state.cart;
        if streams.len() < MAX_CART_STREAMS_PER_SESSION {
            // Another post of the stream may have loaded it meanwhile: keep that one.
            streams.entry(stream_key).or_insert_with(|| LiveStream {
                stream: CartStream::restore(stored),
                tag: self.inner.next_tag.fetch_add(1, Ordering::Relaxed),
            });
        }
        Ok(())
    }

    async fn store_segment(
        &self,
        session: &SessionId,
        segment: &NewSegment<'_>,
    ) -> Result<(), StoreError> {
        let key = session.as_str().to_owned();
        let owned = (
            segment.lang.to_owned(),
            segment.text.to_owned(),
            segment.start_ms,
            segment.end_ms,
            segment.shown,
            segment.confidence,
            segment.source,
        );
        self.inner
            .store
            .blocking(move |c| {
                let (lang, text, start_ms, end_ms, shown, confidence, source) = owned;
                store::insert(
                    c,
                    &key,
                    &NewSegment {
                        source,
                        lang: &lang,
                        start_ms,
                        end_ms,
                        text: &text,
                        shown,
                        confidence,
                        captioner: None,
                    },
                )
            })
            .await?;
        Ok(())
    }

    fn announce(&self, captions: &SessionCaptions, message: CaptionMessage) {
        let json: Arc<str> = match serde_json::to_string(&message) {
            Ok(j) => j.into(),
            Err(e) => {
                tracing::warn!(error = %e, "caption not encodable");
                return;
            }
        };
        let shown = message.shown;
        let open = match &captions.lock().tx {
            Some(tx) => {
                // No SSE subscriber is fine.
                let _ = tx.send(Arc::new(message));
                true
            }
            None => false,
        };
        // A deleted session's viewers are being closed: nothing more goes out.
        if !shown || !open {
            return;
        }
        if let Some(engine) = self.inner.media.engine() {
            engine.send_captions(captions.session.to_media(), json);
        }
    }
}
