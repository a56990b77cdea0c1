//! Machine captions of the floor: the media engine's audio tap (the Opus RTP viewers hear:
//! the floor feed, or the speaker holding the floor) → one recognizer thread per session →
//! the caption feed.
//!
//! Why a thread per session and not a task: recognizers are CPU-bound and some block inside
//! C code; they must never hold up the async runtime or the media loop. Each thread takes
//! packets from a bounded queue; when it falls behind, the router drops packets and counts
//! them as dropped audio, so memory stays bounded whatever the engine does.
//!
//! Recognition starts with the first audio packet of a session and stops when the session's
//! audio has been silent on the network for [`IDLE`] (the publisher left or stopped
//! sending): the recognizer then flushes its last segment.
//!
//! Which engine captions the session (and whether Whisper, behind, has handed its new
//! utterances to pocketsphinx) is read from the recognizer with its figures, every
//! [`STATS_EVERY`]: it goes to `floorcast_asr_engine` / `floorcast_asr_fallback` (which
//! `/ops` shows), and each change of engine is logged.

use std::collections::HashMap;
use std::sync::mpsc::{self as std_mpsc, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use captions::engine::EngineConfig;
use captions::opus_decode::OpusTap;
use captions::{EngineStatus, Recognizer, RecognizerStats};
use media::TapPacket;
use tokio::sync::mpsc;

use super::feed::{AsrCaption, CaptionFeed};
use crate::floor::runtime::now_ms;
use crate::metrics::Metrics;
use crate::session::SessionId;

/// No audio for this long ends a recognition run.
pub const IDLE: Duration = Duration::from_millis(1500);
/// A run started when a publisher connected waits this long for its first packet.
const FIRST_PACKET_WAIT: Duration = Duration::from_secs(20);
/// Packets (20 ms each) a session's recognizer may have waiting: 4 s of audio.
const PACKET_QUEUE: usize = 200;
/// Seconds of audio per Opus packet when the queue drops one (WebRTC's 20 ms frames).
const PACKET_SECONDS: f64 = 0.020;
/// Captions waiting to be stored and announced.
const CAPTION_QUEUE: usize = 1024;
/// How often a recognizer's real-time factor and dropped audio reach the metrics.
const STATS_EVERY: Duration = Duration::from_secs(2);

/// Packets (all sessions) the media engine may have queued for the router.
pub const TAP_QUEUE: usize = 1024;

/// The engine this node runs, from its config, resolved once (a missing whisper model is
/// reported here, once, and pocketsphinx used instead). `None`: machine captions are off.
pub fn engine_config(config: &crate::config::Config) -> Option<EngineConfig> {
    use crate::config::CaptionEngine;
    let lang = &config.caption_lang;
    match config.caption_engine {
        CaptionEngine::Off => None,
        CaptionEngine::Pocketsphinx => Some(EngineConfig::pocketsphinx(lang)),
        CaptionEngine::Whisper => {
            let workers = config.whisper_workers.max(1);
            let request = captions::engine::WhisperRequest {
                models: config
                    .whisper_models
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join("whisper")),
                workers,
                // One utterance waiting per worker: a deeper queue only makes captions later.
                queue: workers,
            };
            Some(EngineConfig::whisper(&request, lang))
        }
    }
}

/// Runs the router on the media engine's tap until the engine stops. A publisher that
/// connects starts its session's recognizer at once, so the model is loaded by the time its
/// audio flows (otherwise the first seconds would queue behind the load and arrive at the
/// engine in a burst it has to drop).
pub fn spawn(
    mut tap: mpsc::Receiver<TapPacket>,
    mut events: tokio::sync::broadcast::Receiver<media::MediaEvent>,
    engine: EngineConfig,
    feed: CaptionFeed,
    metrics: Metrics,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut router = Router::new(engine, feed, metrics);
        let mut reap = tokio::time::interval(IDLE);
        loop {
            tokio::select! {
                event = events.recv() => {
                    if let Ok(media::MediaEvent::Connected { session, role, .. }) = event
                        && matches!(role, media::Role::Floor | media::Role::Speaker)
                        && let Ok(session) = SessionId::parse(session.as_str())
                    {
                        router.warm(&session);
                    }
                }
                packet = tap.recv() => {
                    let Some(p) = packet else { break };
                    let Ok(session) = SessionId::parse(p.session.as_str()) else { continue };
                    router.route(session, p);
                }
                _ = reap.tick() => router.reap(),
            }
        }
    })
}

/// Routes tapped packets to per-session recognizer threads, starting them as needed.
pub struct Router {
    engine: EngineConfig,
    metrics: Metrics,
    captions: mpsc::Sender<AsrCaption>,
    workers: HashMap<SessionId, Worker>,
    next_stream: u64,
}

struct Worker {
    packets: SyncSender<TapPacket>,
    thread: JoinHandle<()>,
}

impl Router {
    /// Starts the task that stores and announces what the recognizers produce.
    pub fn new(engine: EngineConfig, feed: CaptionFeed, metrics: Metrics) -> Self {
        let (tx, mut rx) = mpsc::channel::<AsrCaption>(CAPTION_QUEUE);
        tokio::spawn(async move {
            while let Some(caption) = rx.recv().await {
                let session = caption.session.clone();
                let now = std::time::Instant::now();
                if let Err(e) = feed.asr(caption, now, now_ms() as i64).await {
                    tracing::warn!(%session, error = %e, "machine caption not stored");
                }
            }
        });
        Self {
            engine,
            metrics,
            captions: tx,
            workers: HashMap::new(),
            next_stream: 0,
        }
    }

    /// Hands a packet of `session` (the packet's own id, validated) to its recognizer;
    /// never blocks.
    pub fn route(&mut self, session: SessionId, packet: TapPacket) {
        let alive = self
            .workers
            .get(&session)
            .is_some_and(|w| !w.thread.is_finished());
        if !alive {
            self.workers.remove(&session);
            match self.start(&session) {
                Some(w) => {
                    self.workers.insert(session.clone(), w);
                }
                None => return,
            }
        }
        let Some(worker) = self.workers.get(&session) else {
            return;
        };
        match worker.packets.try_send(packet) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.metrics.add_asr_dropped_seconds(PACKET_SECONDS),
            Err(TrySendError::Disconnected(_)) => {
                self.workers.remove(&session);
            }
        }
    }

    /// Starts the session's recognizer ahead of its audio, if it is not running.
    pub fn warm(&mut self, session: &SessionId) {
        let alive = self
            .workers
            .get(session)
            .is_some_and(|w| !w.thread.is_finished());
        if !alive && let Some(w) = self.start(session) {
            self.workers.insert(session.clone(), w);
        }
    }

    /// Forgets threads that have ended (their session went quiet).
    pub fn reap(&mut self) {
        self.workers.retain(|_, w| !w.thread.is_finished());
    }

    pub fn running(&self) -> usize {
        self.workers.len()
    }

    fn start(&mut self, session: &SessionId) -> Option<Worker> {
        self.next_stream += 1;
        let (tx, rx) = std_mpsc::sync_channel(PACKET_QUEUE);
        let run = Run {
            session: session.clone(),
            stream: self.next_stream,
            // Stream time 0 is this packet's arrival, not the end of the engine's start-up
            // (loading a model takes a second; the packets wait in the queue meanwhile).
            origin_ms: now_ms() as i64,
            engine: self.engine.clone(),
            captions: self.captions.clone(),
            metrics: self.metrics.clone(),
        };
        match std::thread::Builder::new()
            .name(format!("asr-{session}"))
            .spawn(move || run.run(rx))
        {
            Ok(thread) => Some(Worker {
                packets: tx,
                thread,
            }),
            Err(e) => {
                tracing::error!(%session, error = %e, "could not start a recognizer thread");
                None
            }
        }
    }
}

/// One recognition run of one session, on its own thread.
struct Run {
    session: SessionId,
    stream: u64,
    origin_ms: i64,
    engine: EngineConfig,
    captions: mpsc::Sender<AsrCaption>,
    metrics: Metrics,
}

impl Run {
    fn run(self, packets: std_mpsc::Receiver<TapPacket>) {
        let session = &self.session;
        let mut recognizer = match captions::engine::open(&self.engine) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(%session, error = %e, "no machine captions for this run");
                return;
            }
        };
        let mut decoder = match OpusTap::new() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(%session, error = %e, "no Opus decoder: no machine captions");
                return;
            }
        };
        let mut status = self.watch(recognizer.as_ref(), None);
        tracing::info!(
            %session,
            stream = self.stream,
            engine = status.engine,
            model = %status.model,
            "recognition started"
        );
        let origin_ms = self.origin_ms;
        let mut pcm = Vec::with_capacity(1920);
        let mut reported = RecognizerStats::default();
        let mut next_report = Instant::now() + STATS_EVERY;
        let mut wait = FIRST_PACKET_WAIT;
        // Ends when the session's audio stops (or the router is gone).
        while let Ok(p) = packets.recv_timeout(wait) {
            wait = IDLE;
            pcm.clear();
            // A broken packet is concealed by the decoder: it costs its 20 ms.
            let _ = decoder.push(p.source.0, p.seq, p.timestamp, &p.payload, &mut pcm);
            if let Err(e) = recognizer.push_pcm(&pcm) {
                tracing::error!(%session, error = %e, "recognizer failed");
                break;
            }
            let events = recognizer.poll_events();
            if !self.send(origin_ms, events) {
                return;
            }
            if Instant::now() >= next_report {
                reported = self.report(recognizer.as_ref(), reported);
                status = self.watch(recognizer.as_ref(), Some(status));
                next_report = Instant::now() + STATS_EVERY;
            }
        }
        let last = recognizer.finish();
        self.send(origin_ms, last);
        self.report(recognizer.as_ref(), reported);
        self.metrics.forget_asr_session(session);
        self.metrics.forget_asr_engine(session, &status);
        tracing::info!(%session, stream = self.stream, "recognition stopped");
    }

    /// False when the feed is gone (the server is stopping).
    fn send(&self, origin_ms: i64, events: Vec<captions::CaptionEvent>) -> bool {
        for event in events {
            let caption = AsrCaption {
                session: self.session.clone(),
                stream: self.stream,
                origin_ms,
                event,
            };
            if self.captions.blocking_send(caption).is_err() {
                return false;
            }
        }
        true
    }

    /// The recognizer's engine now; a change from `before` reaches the metrics and the log.
    fn watch(&self, r: &dyn Recognizer, before: Option<EngineStatus>) -> EngineStatus {
        let now = r.status();
        if before.as_ref() == Some(&now) {
            return now;
        }
        let session = &self.session;
        match &before {
            Some(b) if now.fallback && !b.fallback => tracing::warn!(
                %session,
                engine = now.engine,
                model = %now.model,
                "whisper is behind: this session's new utterances are captioned by {}",
                now.engine
            ),
            Some(b) if b.fallback && !now.fallback => tracing::info!(
                %session,
                engine = now.engine,
                model = %now.model,
                "whisper has caught up: this session is captioned by whisper again"
            ),
            _ => {}
        }
        self.metrics.set_asr_engine(session, before.as_ref(), &now);
        now
    }

    fn report(&self, r: &dyn Recognizer, before: RecognizerStats) -> RecognizerStats {
        let now = r.stats();
        let audio = now.audio_seconds - before.audio_seconds;
        if audio > 0.0 {
            let rtf = (now.cpu_seconds - before.cpu_seconds) / audio;
            self.metrics.set_asr_real_time_factor(&self.session, rtf);
        }
        self.metrics
            .add_asr_dropped_seconds(now.dropped_seconds - before.dropped_seconds);
        now
    }
}
