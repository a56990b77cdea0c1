//! The caption feed of every session: where machine and human captions meet, are stored,
//! and go out to viewers.
//!
//! Order of work for a final caption: decide whether viewers see it ([`CaptionMerge`]),
//! store it, then announce it (SSE subscribers through a broadcast channel, WebRTC viewers
//! through the media engine's `captions` data channel). Interim captions are announced only.
//! The lock guards the per-session merge state and channel for a few microseconds per
//! caption; it is never held across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use captions::merge::CaptionMerge;
use captions::{CaptionEvent, Source};
use serde::Serialize;
use tokio::sync::broadcast;

use super::store::{self, CartOutcome, NewSegment};
use crate::media_engine::Media;
use crate::metrics::Metrics;
use crate::session::SessionId;
use crate::store::{Store, StoreError};

/// Captions a slow SSE reader may fall behind by before it skips ahead (it loses interim
/// text, never the server's memory).
const SUBSCRIBER_BACKLOG: usize = 256;

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

#[derive(Clone)]
pub struct CaptionFeed {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: Mutex<HashMap<SessionId, SessionFeed>>,
    store: Store,
    media: Media,
    metrics: Metrics,
    precedence: Duration,
}

struct SessionFeed {
    tx: broadcast::Sender<Arc<CaptionMessage>>,
    merge: CaptionMerge,
}

impl CaptionFeed {
    pub fn new(store: Store, media: Media, metrics: Metrics, precedence: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions: Mutex::new(HashMap::new()),
                store,
                media,
                metrics,
                precedence,
            }),
        }
    }

    /// Captions of `session` from now on.
    pub fn subscribe(&self, session: &SessionId) -> broadcast::Receiver<Arc<CaptionMessage>> {
        self.with_session(session, |s| s.tx.subscribe())
    }

    /// A deleted session's feed goes away (subscribers see the channel close).
    pub fn forget(&self, session: &SessionId) {
        self.lock().remove(session);
    }

    /// A machine caption: stored when final, shown unless a captioner has precedence.
    pub async fn asr(&self, c: AsrCaption, now_ms: i64) -> Result<(), StoreError> {
        let shown = self.with_session(&c.session, |s| s.merge.shown(&c.event, Instant::now()));
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
        if c.event.is_final {
            let segment = NewSegment {
                source: Source::Asr,
                lang: &message.lang,
                start_ms: message.start_ms,
                end_ms: message.end_ms,
                text: &message.text,
                shown,
                confidence: message.confidence,
            };
            self.store_segment(&c.session, &segment).await?;
        }
        self.announce(&c.session, message);
        if c.event.is_final {
            let lag = (now_ms - at(c.event.end)).max(0) as u64;
            self.inner
                .metrics
                .observe_caption_latency(Source::Asr, Duration::from_millis(lag));
        }
        Ok(())
    }

    /// A human caption (CART). A repeated `seq` is acknowledged and changes nothing.
    pub async fn cart(
        &self,
        session: &SessionId,
        seq: u64,
        lang: String,
        text: String,
        received: Instant,
        now_ms: i64,
    ) -> Result<CartOutcome, StoreError> {
        let key = session.as_str().to_owned();
        let (lang2, text2) = (lang.clone(), text.clone());
        let outcome = self
            .inner
            .store
            .blocking(move |c| {
                let previous = store::last_cart_end(c, &key)?;
                let (start_ms, end_ms) = captions::cart::caption_span(previous, now_ms, &text2);
                let segment = NewSegment {
                    source: Source::Cart,
                    lang: &lang2,
                    start_ms,
                    end_ms,
                    text: &text2,
                    shown: true,
                    confidence: None,
                };
                let outcome = store::insert_cart(c, &key, seq, &segment)?;
                Ok((outcome, start_ms, end_ms))
            })
            .await?;
        let (outcome, start_ms, end_ms) = outcome;
        if outcome == CartOutcome::Repeat {
            return Ok(outcome);
        }
        self.with_session(session, |s| s.merge.on_cart(&lang, received));
        self.announce(
            session,
            CaptionMessage {
                kind: "caption",
                id: format!("cart-{seq}"),
                text,
                is_final: true,
                lang,
                source: Source::Cart,
                start_ms,
                end_ms,
                confidence: None,
                shown: true,
            },
        );
        self.inner
            .metrics
            .observe_caption_latency(Source::Cart, received.elapsed());
        Ok(outcome)
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
                    },
                )
            })
            .await?;
        Ok(())
    }

    fn announce(&self, session: &SessionId, message: CaptionMessage) {
        let json: Arc<str> = match serde_json::to_string(&message) {
            Ok(j) => j.into(),
            Err(e) => {
                tracing::warn!(error = %e, "caption not encodable");
                return;
            }
        };
        let shown = message.shown;
        // No SSE subscriber is fine.
        let _ = self.with_session(session, |s| s.tx.send(Arc::new(message)));
        if !shown {
            return;
        }
        if let Some(engine) = self.inner.media.engine() {
            engine.send_captions(session.to_media(), json);
        }
    }

    fn with_session<T>(&self, session: &SessionId, f: impl FnOnce(&mut SessionFeed) -> T) -> T {
        let mut sessions = self.lock();
        let feed = sessions
            .entry(session.clone())
            .or_insert_with(|| SessionFeed {
                tx: broadcast::channel(SUBSCRIBER_BACKLOG).0,
                merge: CaptionMerge::new(self.inner.precedence),
            });
        f(feed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, SessionFeed>> {
        // A panic elsewhere while holding the lock leaves the map usable.
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}
