//! The embedded recognizer: GStreamer's `pocketsphinx` element (Debian
//! `gstreamer1.0-pocketsphinx` with `pocketsphinx-en-us`): offline, nothing to download.
//!
//! `appsrc → audioconvert → audioresample → pocketsphinx → fakesink`. The element decodes on
//! appsrc's streaming thread, so `push_pcm` only gathers audio into 100 ms buffers and
//! queues them. When that queue holds more than [`MAX_QUEUED_SAMPLES`] the engine is behind:
//! new audio is dropped and counted, and its time still passes (buffer timestamps come from
//! the sample count), so later segments keep true times.
//!
//! The element posts `pocketsphinx` messages: interim hypotheses stamped with the stream time
//! of the buffer they were made at, and, when its voice activity detection sees the utterance
//! end (or at EOS), a final one with no time. A bus sync handler turns them into events on
//! the streaming thread itself, at the moment they are posted, so the pad probe's record of
//! the buffer being decoded is the true "now" of the decoder. The handler also keeps the
//! bus from queueing messages: memory stays bounded even if nobody polls for a while.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::{
    CaptionEvent, EngineStatus, Recognizer, RecognizerError, RecognizerStats, SAMPLE_RATE, Source,
};

/// Audio that may wait for the decoder before new audio is dropped (2 s).
pub const MAX_QUEUED_SAMPLES: u64 = 2 * SAMPLE_RATE as u64;
/// `push_pcm` gathers audio into buffers of this many samples (100 ms) before queueing it.
/// The element computes a partial hypothesis on every buffer (see [`FIRST_WORD_LEAD`]): on
/// the 20 ms frames the SFU delivers, that costs about 15 % more CPU (RTF 0.23-0.26 against
/// 0.20-0.21 on the librivox clips, `benches/asr.rs`) and sends viewers up to 50 interim
/// events a second. 100 ms buffers add at most 80 ms of latency (interim p50 0.15 → 0.25 s)
/// against goals of 1 s (interim) and 2.5 s (final).
const BUFFER_SAMPLES: usize = SAMPLE_RATE as usize / 10;
/// How long `finish` waits for the last final.
const FINISH_WAIT: Duration = Duration::from_secs(5);
/// How long `new` waits for the pipeline to reach PLAYING (the model loads before that).
const START_WAIT: Duration = Duration::from_secs(10);
/// Events not yet polled; beyond this the oldest are dropped (and counted).
const MAX_PENDING_EVENTS: usize = 256;

/// The element's first partial result is stamped this long after speech began: its VAD needs
/// 100 ms of speech to switch on and the search a few frames more to commit to a word.
/// Measured on the librivox clips: speech onset by frame energy at 0.26-0.34 s; first partial
/// stamped 0.40-0.48 s with 20 ms buffers, 0.40 s (the start of its buffer) with ours.
/// (The element asks for a partial result on every buffer: its "every 100 ms" check
/// compares nanoseconds against 1 ms.)
const FIRST_WORD_LEAD: f64 = 0.15;
/// A VAD-ended utterance is declared this long after the speech stopped (pocketsphinx's
/// `vad_postspeech`, 50 frames of 10 ms); a final caused by EOS has no such lag. On the
/// librivox clips the resulting ends lie 0.06 s before to 0.55 s after the last loud frame.
const END_OF_SPEECH_LAG: f64 = 0.5;
/// pocketsphinx scores are logarithms in base 1.0001 (its `-logbase` default).
const LOG_BASE: f64 = 1.0001;
/// Search limits, chosen on the librivox clips (`captions/tests/pocketsphinx_librivox.rs`),
/// run through `gst-launch-1.0` in 128 ms buffers: the defaults (30000 HMMs per frame, a
/// second flat-lexicon pass) cost about 0.45 s of CPU per second of audio; these cost about
/// 0.17, with a slightly lower WER there (33.8 % vs 36.6 %). WER stays flat from 4000 to 8000 HMMs and rises below 3000. Skipping the flat
/// pass also shortens the wait for each final, as that pass runs at the utterance's end.
const MAX_HMMS_PER_FRAME: i32 = 5000;
const FLAT_LEXICON_PASS: bool = false;

const NS_PER_SECOND: u64 = 1_000_000_000;

/// Only the en-US acoustic model and dictionary are packaged.
fn supports(lang: &str) -> bool {
    let lang = lang.trim().replace('_', "-");
    lang.eq_ignore_ascii_case("en") || lang.eq_ignore_ascii_case("en-US")
}

/// A streaming recognizer on GStreamer's pocketsphinx element. See the module docs.
pub struct PocketsphinxRecognizer {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    shared: Arc<Shared>,
    /// Audio not yet queued: less than one buffer.
    gathered: Vec<i16>,
    /// Samples given to `push_pcm` (for stats).
    samples_in: u64,
    /// Samples turned into buffers or dropped: the stream time of the next buffer.
    samples_out: u64,
    samples_dropped: u64,
    finished: bool,
    failure_logged: bool,
}

impl std::fmt::Debug for PocketsphinxRecognizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PocketsphinxRecognizer")
            .field("samples_in", &self.samples_in)
            .field("samples_dropped", &self.samples_dropped)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// What the streaming thread and the caller share.
struct Shared {
    /// Stream time (ns) decoded so far: the end of the latest buffer the element took.
    processed_ns: AtomicU64,
    /// Set when EOS reached the element: its last final is not a VAD decision.
    eos_reached: AtomicBool,
    cpu: Mutex<CpuClock>,
    output: Mutex<Output>,
    /// Signalled when the pipeline posts EOS or an error.
    done: Condvar,
}

struct Output {
    segments: SegmentTracker,
    pending: VecDeque<CaptionEvent>,
    /// The interim the caller saw last, as (segment, text): coalescing may bring the same
    /// text back after a change that was never delivered, and it must not be repeated.
    delivered_interim: Option<(u64, String)>,
    dropped_events: u64,
    error: Option<String>,
    eos: bool,
}

/// CPU time spent by the streaming thread(s), sampled on those threads.
#[derive(Default)]
struct CpuClock {
    thread: Option<ThreadId>,
    last_ns: u64,
    total_ns: u64,
}

impl CpuClock {
    /// Called on a streaming thread: adds what it used since the last call. A thread not seen
    /// before only sets the baseline: GStreamer's task pool reuses threads, so its clock may
    /// include another pipeline's work.
    fn sample(&mut self) {
        let Some(now) = thread_cpu_ns() else { return };
        let me = std::thread::current().id();
        if self.thread == Some(me) {
            self.total_ns += now.saturating_sub(self.last_ns);
        } else {
            self.thread = Some(me);
        }
        self.last_ns = now;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing holding these locks can leave the data half-updated in a way that matters
    // more than losing captions, so a panic elsewhere does not stop recognition.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn processed(&self) -> f64 {
        ns_to_seconds(self.processed_ns.load(Ordering::Acquire))
    }

    fn sample_cpu(&self) {
        lock(&self.cpu).sample();
    }

    /// The bus sync handler: runs on the thread that posts, which for the element's own
    /// messages is the streaming thread. Every message is consumed here.
    fn on_message(&self, msg: &gst::Message) -> gst::BusSyncReply {
        match msg.view() {
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name() == "pocketsphinx") {
                    // Decoding happened on this thread just before the post (the final's
                    // search especially): count it now.
                    self.sample_cpu();
                    let hyp = Hypothesis::from_structure(s);
                    let processed = self.processed();
                    let at_eos = self.eos_reached.load(Ordering::Acquire);
                    let mut out = lock(&self.output);
                    if let Some(event) = out.segments.on_hypothesis(&hyp, processed, at_eos) {
                        out.push(event);
                    }
                }
            }
            gst::MessageView::Error(e) => {
                let text = match e.debug() {
                    Some(debug) => format!("{} ({debug})", e.error()),
                    None => e.error().to_string(),
                };
                let mut out = lock(&self.output);
                out.error.get_or_insert(text);
                self.done.notify_all();
            }
            gst::MessageView::Warning(w) => {
                tracing::warn!(warning = %w.error(), "pocketsphinx pipeline warning");
            }
            gst::MessageView::Eos(_) => {
                lock(&self.output).eos = true;
                self.done.notify_all();
            }
            _ => {}
        }
        gst::BusSyncReply::Drop
    }
}

impl Output {
    fn new(lang: &str) -> Output {
        Output {
            segments: SegmentTracker::new(lang),
            pending: VecDeque::new(),
            delivered_interim: None,
            dropped_events: 0,
            error: None,
            eos: false,
        }
    }

    fn push(&mut self, event: CaptionEvent) {
        // Only the newest interim of a segment matters to whoever polls late.
        if !event.is_final
            && let Some(last) = self.pending.back_mut()
            && !last.is_final
            && last.segment_id == event.segment_id
        {
            let seen = self
                .delivered_interim
                .as_ref()
                .is_some_and(|(id, text)| *id == event.segment_id && *text == event.text);
            if seen {
                self.pending.pop_back();
            } else {
                *last = event;
            }
            return;
        }
        if self.pending.len() >= MAX_PENDING_EVENTS {
            self.pending.pop_front();
            self.dropped_events += 1;
        }
        self.pending.push_back(event);
    }

    /// Hands the pending events over.
    fn drain(&mut self) -> Vec<CaptionEvent> {
        let events: Vec<CaptionEvent> = self.pending.drain(..).collect();
        if let Some(last) = events.last() {
            self.delivered_interim = (!last.is_final).then(|| (last.segment_id, last.text.clone()));
        }
        events
    }
}

impl PocketsphinxRecognizer {
    /// Builds and starts the pipeline. The acoustic model loads here (about a second).
    /// `lang` must be `en-US` (or `en`): only that model is packaged.
    pub fn new(lang: &str) -> Result<Self, RecognizerError> {
        if !supports(lang) {
            return Err(RecognizerError::Unavailable(format!(
                "pocketsphinx has only an en-US model (pocketsphinx-en-us); {lang:?} is not \
                 supported: use the whisper engine for other languages"
            )));
        }
        gst::init().map_err(|e| RecognizerError::Unavailable(format!("GStreamer: {e}")))?;
        let unavailable = |what: String| RecognizerError::Unavailable(what);
        let make = |factory: &str, package: &str| {
            gst::ElementFactory::make(factory).build().map_err(|_| {
                unavailable(format!(
                    "the GStreamer element {factory} is missing: install {package}"
                ))
            })
        };
        let asr = make(
            "pocketsphinx",
            "gstreamer1.0-pocketsphinx and pocketsphinx-en-us",
        )?;
        asr.set_property("maxhmmpf", MAX_HMMS_PER_FRAME);
        asr.set_property("fwdflat", FLAT_LEXICON_PASS);
        let convert = make("audioconvert", "gstreamer1.0-plugins-base")?;
        let resample = make("audioresample", "gstreamer1.0-plugins-base")?;
        let sink = make("fakesink", "gstreamer1.0 (coreelements)")?;
        // Text comes from bus messages; the sink only swallows, as fast as it can.
        sink.set_property("sync", false);
        // In a live pipeline a sink completes PLAYING only with its first buffer: without
        // this, `new` would wait START_WAIT for audio that cannot come until it returns.
        sink.set_property("async", false);

        let caps = gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("layout", "interleaved")
            .field("rate", SAMPLE_RATE as i32)
            .field("channels", 1i32)
            .build();
        let src = gst_app::AppSrc::builder()
            .caps(&caps)
            .format(gst::Format::Time)
            .is_live(true)
            .block(false)
            .max_bytes(MAX_QUEUED_SAMPLES * 2)
            .build();

        let pipeline = gst::Pipeline::new();
        pipeline
            .add_many([src.upcast_ref(), &convert, &resample, &asr, &sink])
            .map_err(|e| unavailable(format!("pipeline: {e}")))?;
        gst::Element::link_many([src.upcast_ref(), &convert, &resample, &asr, &sink])
            .map_err(|e| unavailable(format!("pipeline: {e}")))?;

        let shared = Arc::new(Shared {
            processed_ns: AtomicU64::new(0),
            eos_reached: AtomicBool::new(false),
            cpu: Mutex::new(CpuClock::default()),
            output: Mutex::new(Output::new(lang)),
            done: Condvar::new(),
        });
        install_probes(&asr, &shared)?;
        let bus = pipeline
            .bus()
            .ok_or_else(|| unavailable("pipeline without a bus".into()))?;
        let handler = Arc::clone(&shared);
        bus.set_sync_handler(move |_, msg| handler.on_message(msg));

        let started = pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| ())
            .and_then(|_| {
                let (result, _, _) =
                    pipeline.state(gst::ClockTime::from_nseconds(START_WAIT.as_nanos() as u64));
                result.map(|_| ()).map_err(|_| ())
            });
        if started.is_err() {
            let why = lock(&shared.output)
                .error
                .take()
                .unwrap_or_else(|| "no error message".into());
            let _ = pipeline.set_state(gst::State::Null);
            return Err(unavailable(format!(
                "pocketsphinx pipeline did not start: {why}"
            )));
        }
        Ok(PocketsphinxRecognizer {
            pipeline,
            src,
            shared,
            gathered: Vec::with_capacity(BUFFER_SAMPLES),
            samples_in: 0,
            samples_out: 0,
            samples_dropped: 0,
            finished: false,
            failure_logged: false,
        })
    }

    fn failure(&self) -> Option<String> {
        lock(&self.shared.output).error.clone()
    }

    fn take_events(&mut self) -> Vec<CaptionEvent> {
        let (events, error, dropped) = {
            let mut out = lock(&self.shared.output);
            let dropped = std::mem::take(&mut out.dropped_events);
            (out.drain(), out.error.clone(), dropped)
        };
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "caption events dropped: poll_events is called too rarely"
            );
        }
        if let Some(error) = error
            && !self.failure_logged
        {
            self.failure_logged = true;
            tracing::error!(%error, "pocketsphinx pipeline failed");
        }
        events
    }

    /// Queues the gathered audio as one buffer (or drops it).
    fn flush(&mut self) -> Result<(), RecognizerError> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        let gathered = std::mem::take(&mut self.gathered);
        let result = self.push_chunk(&gathered);
        self.gathered = gathered;
        self.gathered.clear();
        result
    }

    fn push_chunk(&mut self, samples: &[i16]) -> Result<(), RecognizerError> {
        let pts = samples_to_ns(self.samples_out);
        self.samples_out += samples.len() as u64;
        let duration = samples_to_ns(self.samples_out) - pts;
        let queued = self.src.current_level_bytes() / 2;
        if queued + samples.len() as u64 > MAX_QUEUED_SAMPLES {
            self.samples_dropped += samples.len() as u64;
            return Ok(());
        }
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut buffer = gst::Buffer::from_slice(bytes);
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(gst::ClockTime::from_nseconds(duration));
        }
        self.src
            .push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| RecognizerError::Failed(format!("appsrc refused audio: {e:?}")))
    }
}

/// Records, on the element's sink pad, the stream time reaching the decoder and the CPU time
/// of the thread decoding; on its src pad, the CPU spent finishing the last utterance at EOS.
fn install_probes(asr: &gst::Element, shared: &Arc<Shared>) -> Result<(), RecognizerError> {
    let pad = |name: &str| {
        asr.static_pad(name)
            .ok_or_else(|| RecognizerError::Unavailable(format!("pocketsphinx has no {name} pad")))
    };
    let probe = Arc::clone(shared);
    pad("sink")?.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(buffer)) => {
                    if let Some(pts) = buffer.pts() {
                        let end = pts + buffer.duration().unwrap_or_default();
                        probe.processed_ns.store(end.nseconds(), Ordering::Release);
                    }
                    probe.sample_cpu();
                }
                Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos => {
                    probe.eos_reached.store(true, Ordering::Release);
                    probe.sample_cpu();
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    let probe = Arc::clone(shared);
    pad("src")?.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if matches!(&info.data, Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos)
        {
            probe.sample_cpu();
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

impl Recognizer for PocketsphinxRecognizer {
    fn push_pcm(&mut self, samples: &[i16]) -> Result<(), RecognizerError> {
        if self.finished {
            return Ok(());
        }
        if let Some(error) = self.failure() {
            return Err(RecognizerError::Failed(error));
        }
        self.samples_in += samples.len() as u64;
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (BUFFER_SAMPLES - self.gathered.len()).min(rest.len());
            self.gathered.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.gathered.len() == BUFFER_SAMPLES {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn poll_events(&mut self) -> Vec<CaptionEvent> {
        self.take_events()
    }

    fn finish(&mut self) -> Vec<CaptionEvent> {
        if self.finished {
            return self.take_events();
        }
        self.finished = true;
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "pocketsphinx: last audio not queued");
        }
        if self.src.end_of_stream().is_ok() {
            let deadline = Instant::now() + FINISH_WAIT;
            let mut out = lock(&self.shared.output);
            while !out.eos && out.error.is_none() {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    tracing::warn!("pocketsphinx did not finish within {FINISH_WAIT:?}");
                    break;
                };
                out = self
                    .shared
                    .done
                    .wait_timeout(out, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        self.take_events()
    }

    fn stats(&self) -> RecognizerStats {
        RecognizerStats {
            audio_seconds: self.samples_in as f64 / f64::from(SAMPLE_RATE),
            dropped_seconds: self.samples_dropped as f64 / f64::from(SAMPLE_RATE),
            cpu_seconds: ns_to_seconds(lock(&self.shared.cpu).total_ns),
        }
    }

    fn status(&self) -> EngineStatus {
        EngineStatus {
            engine: "pocketsphinx",
            model: "en-us".to_owned(),
            fallback: false,
        }
    }
}

impl Drop for PocketsphinxRecognizer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// One `pocketsphinx` element message.
#[derive(Clone, Debug, PartialEq)]
struct Hypothesis {
    text: String,
    is_final: bool,
    /// Stream time of the buffer it was made at; finals have none.
    at: Option<f64>,
    /// The log-probability (base [`LOG_BASE`]) of the whole hypothesis, if it has one.
    log_prob: Option<i32>,
}

impl Hypothesis {
    fn from_structure(s: &gst::StructureRef) -> Hypothesis {
        let text = s
            .get::<Option<&str>>("hypothesis")
            .ok()
            .flatten()
            .unwrap_or("")
            .trim()
            .to_owned();
        let is_final = s.get::<bool>("final").unwrap_or(false);
        let at = s
            .get::<u64>("timestamp")
            .ok()
            .filter(|&t| t != u64::MAX)
            .map(ns_to_seconds);
        // The element passes a 32-bit score where it declares a glong, so only the low 32
        // bits are meaningful. Zero means "no posterior computed" (partials).
        let log_prob = s
            .get::<gst::glib::ILong>("confidence")
            .ok()
            .map(|v| v.0 as u32 as i32)
            .filter(|&v| v != 0);
        Hypothesis {
            text,
            is_final,
            at,
            log_prob,
        }
    }
}

/// Turns the element's hypotheses into caption segments: ids, times, no repeats.
#[derive(Debug)]
struct SegmentTracker {
    lang: String,
    next_id: u64,
    open: Option<OpenSegment>,
    /// Where the previous final ended: a segment never starts before it.
    last_end: f64,
}

#[derive(Debug)]
struct OpenSegment {
    id: u64,
    start: f64,
    last_text: String,
}

impl SegmentTracker {
    fn new(lang: &str) -> SegmentTracker {
        SegmentTracker {
            lang: lang.to_owned(),
            next_id: 1,
            open: None,
            last_end: 0.0,
        }
    }

    /// `processed`: stream time the decoder has reached; `at_eos`: the stream has ended, so
    /// a final is not a VAD decision taken after trailing silence.
    fn on_hypothesis(
        &mut self,
        hyp: &Hypothesis,
        processed: f64,
        at_eos: bool,
    ) -> Option<CaptionEvent> {
        if hyp.text.is_empty() {
            if hyp.is_final {
                // Silence or noise: nothing to fix. The id is kept, so a next utterance
                // replaces whatever interim was shown.
                if let Some(open) = self.open.take() {
                    self.next_id = open.id;
                }
            }
            return None;
        }
        let first_seen = hyp.at.unwrap_or(processed);
        let last_end = self.last_end;
        let next_id = &mut self.next_id;
        let open = self.open.get_or_insert_with(|| {
            let id = *next_id;
            *next_id += 1;
            OpenSegment {
                id,
                start: (first_seen - FIRST_WORD_LEAD).max(last_end).max(0.0),
                last_text: String::new(),
            }
        });
        if !hyp.is_final {
            if open.last_text == hyp.text {
                return None;
            }
            open.last_text.clone_from(&hyp.text);
            return Some(self.event(hyp, processed.max(first_seen)));
        }
        let lag = if at_eos { 0.0 } else { END_OF_SPEECH_LAG };
        let end = processed - lag;
        let event = self.event(hyp, end);
        self.last_end = event.end;
        self.open = None;
        Some(event)
    }

    fn event(&self, hyp: &Hypothesis, end: f64) -> CaptionEvent {
        let (id, start) = self
            .open
            .as_ref()
            .map_or((self.next_id, 0.0), |o| (o.id, o.start));
        CaptionEvent {
            segment_id: id,
            text: hyp.text.clone(),
            is_final: hyp.is_final,
            start,
            end: end.max(start),
            lang: self.lang.clone(),
            source: Source::Asr,
            confidence: if hyp.is_final { confidence(hyp) } else { None },
        }
    }
}

/// The hypothesis' posterior as a per-word probability (geometric mean): the posterior of a
/// whole utterance shrinks with its length, which would make long captions look unsure.
fn confidence(hyp: &Hypothesis) -> Option<f32> {
    let log_prob = hyp.log_prob?;
    let words = hyp.text.split_whitespace().count().max(1);
    let per_word = f64::from(log_prob) * LOG_BASE.ln() / words as f64;
    Some(per_word.exp().clamp(0.0, 1.0) as f32)
}

fn samples_to_ns(samples: u64) -> u64 {
    samples.saturating_mul(NS_PER_SECOND) / u64::from(SAMPLE_RATE)
}

fn ns_to_seconds(ns: u64) -> f64 {
    Duration::from_nanos(ns).as_secs_f64()
}

/// CPU time the calling thread has used, in ns; `None` if the clock is unavailable.
pub(crate) fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call, which only writes it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(u64::try_from(ts.tv_sec).ok()? * NS_PER_SECOND + u64::try_from(ts.tv_nsec).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyp(text: &str, is_final: bool, at: Option<f64>) -> Hypothesis {
        Hypothesis {
            text: text.into(),
            is_final,
            at,
            log_prob: if is_final { Some(-20_000) } else { None },
        }
    }

    #[test]
    fn languages() {
        assert!(supports("en-US"));
        assert!(supports("en_us"));
        assert!(supports("en"));
        assert!(!supports("en-GB"));
        assert!(!supports("fr-FR"));
        assert!(!supports(""));
    }

    #[test]
    fn interims_then_final_make_one_segment() {
        let mut t = SegmentTracker::new("en-US");
        let a = t
            .on_hypothesis(&hyp("he", false, Some(1.0)), 1.02, false)
            .expect("interim");
        assert_eq!(
            (a.segment_id, a.is_final, a.text.as_str()),
            (1, false, "he")
        );
        assert!((a.start - (1.0 - FIRST_WORD_LEAD)).abs() < 1e-9);
        assert!((a.end - 1.02).abs() < 1e-9);
        assert_eq!(a.confidence, None);
        // Same text again: no event.
        assert!(
            t.on_hypothesis(&hyp("he", false, Some(1.12)), 1.14, false)
                .is_none()
        );
        let b = t
            .on_hypothesis(&hyp("he was", false, Some(1.24)), 1.26, false)
            .expect("interim");
        assert_eq!((b.segment_id, b.start), (1, a.start));
        let f = t
            .on_hypothesis(&hyp("he was not", true, None), 2.6, false)
            .expect("final");
        assert_eq!((f.segment_id, f.is_final), (1, true));
        assert_eq!(f.start, a.start);
        assert!((f.end - (2.6 - END_OF_SPEECH_LAG)).abs() < 1e-9);
        let c = f.confidence.expect("final has a confidence");
        assert!(c > 0.0 && c < 1.0);

        // The next utterance is segment 2 and starts after segment 1 ended.
        let n = t
            .on_hypothesis(&hyp("young", false, Some(2.2)), 2.7, false)
            .expect("interim");
        assert_eq!(n.segment_id, 2);
        assert!((n.start - f.end).abs() < 1e-9, "{} vs {}", n.start, f.end);
        // The same text as the previous segment's last interim is still news here.
        let m = t
            .on_hypothesis(&hyp("young man", true, None), 3.5, true)
            .expect("final");
        assert_eq!(m.segment_id, 2);
        assert!((m.end - 3.5).abs() < 1e-9, "no VAD lag at EOS");
    }

    #[test]
    fn empty_finals_produce_nothing_and_keep_the_id() {
        let mut t = SegmentTracker::new("en-US");
        assert!(t.on_hypothesis(&hyp("", true, None), 1.0, false).is_none());
        assert!(
            t.on_hypothesis(&hyp("uh", false, Some(1.5)), 1.5, false)
                .is_some()
        );
        assert!(t.on_hypothesis(&hyp("", true, None), 2.0, false).is_none());
        let e = t
            .on_hypothesis(&hyp("hello", false, Some(3.0)), 3.0, false)
            .expect("interim");
        assert_eq!(e.segment_id, 1, "replaces the abandoned interim");
        let f = t
            .on_hypothesis(&hyp("hello", true, None), 4.0, false)
            .expect("final");
        assert_eq!(f.segment_id, 1);
        let g = t
            .on_hypothesis(&hyp("again", true, None), 5.0, true)
            .expect("final");
        assert_eq!(g.segment_id, 2);
    }

    #[test]
    fn times_never_go_negative_or_backwards() {
        let mut t = SegmentTracker::new("en-US");
        let a = t
            .on_hypothesis(&hyp("hi", false, Some(0.1)), 0.12, false)
            .expect("interim");
        assert_eq!(a.start, 0.0);
        // A final right away: the VAD lag would put the end before the start.
        let f = t
            .on_hypothesis(&hyp("hi", true, None), 0.2, false)
            .expect("final");
        assert_eq!(f.end, f.start);
    }

    #[test]
    fn confidence_is_a_per_word_probability() {
        let two_words = Hypothesis {
            text: "a b".into(),
            is_final: true,
            at: None,
            log_prob: Some(-13_863), // ln(0.25) / ln(1.0001)
        };
        let c = confidence(&two_words).expect("has a score");
        assert!((c - 0.5).abs() < 1e-3, "{c}");
        assert_eq!(
            confidence(&Hypothesis {
                log_prob: None,
                ..two_words
            }),
            None
        );
    }

    #[test]
    fn pending_interims_coalesce_and_the_queue_is_bounded() {
        let mut out = Output::new("en-US");
        let ev = |id, text: &str, is_final| CaptionEvent {
            segment_id: id,
            text: text.into(),
            is_final,
            start: 0.0,
            end: 0.0,
            lang: "en-US".into(),
            source: Source::Asr,
            confidence: None,
        };
        out.push(ev(1, "a", false));
        out.push(ev(1, "a b", false));
        assert_eq!(out.pending.len(), 1);
        assert_eq!(out.pending[0].text, "a b");
        out.push(ev(1, "a b c", true));
        out.push(ev(2, "d", false));
        assert_eq!(out.pending.len(), 3);
        for id in 3..(3 + MAX_PENDING_EVENTS as u64) {
            out.push(ev(id, "x", true));
        }
        assert_eq!(out.pending.len(), MAX_PENDING_EVENTS);
        assert_eq!(out.dropped_events, 3);
    }

    #[test]
    fn coalescing_never_repeats_a_delivered_interim() {
        let mut out = Output::new("en-US");
        let ev = |text: &str| CaptionEvent {
            segment_id: 1,
            text: text.into(),
            is_final: false,
            start: 0.0,
            end: 0.0,
            lang: "en-US".into(),
            source: Source::Asr,
            confidence: None,
        };
        out.push(ev("a"));
        assert_eq!(out.drain().len(), 1);
        // "a b" then back to "a" before the next poll: nothing new to show.
        out.push(ev("a b"));
        out.push(ev("a"));
        assert!(out.drain().is_empty());
        out.push(ev("a c"));
        let got = out.drain();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].text, "a c");
    }

    #[test]
    fn thread_cpu_clock_advances() {
        let before = thread_cpu_ns().expect("CLOCK_THREAD_CPUTIME_ID works on Linux");
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = thread_cpu_ns().expect("clock");
        assert!(after > before);
    }

    #[test]
    fn other_languages_are_unavailable() {
        let err = PocketsphinxRecognizer::new("de-DE").expect_err("no German model");
        assert!(matches!(err, RecognizerError::Unavailable(m) if m.contains("en-US")));
    }
}
