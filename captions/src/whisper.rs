//! Whisper through CTranslate2 (`ct2rs`, CPU backend ruy, int8), behind the `whisper`
//! feature: the default engine where its models are present.
//!
//! One [`WhisperEngine`] per node: one loaded model (tiny.en for English, base for the other
//! languages, chosen by the node's caption language) and a fixed number of worker threads
//! that share it, fed by one bounded queue. Each session's [`WhisperRecognizer`] cuts its
//! audio into utterances with the voice-activity [`Segmenter`] on the caller's thread (cheap)
//! and hands each to the pool; an utterance that finds the queue full is dropped and counted,
//! so a node with more speech than cores loses captions, never memory or latency.
//!
//! Streaming: while someone speaks, the growing utterance is decoded again every 0.4 s when
//! a worker is free (interims never queue behind finals: they are only sent to an idle pool),
//! and a word is shown once two decodes in a row agree on it. The encoder is given the audio
//! and a little silence, not Whisper's whole 30 s window ([`Window`]): a decode then costs
//! what the utterance is long, so interims come within a second and finals sooner. The final comes at the pause,
//! or at the segmenter's forced cut after 8 s of unbroken speech. With several workers a
//! short utterance can finish before a longer one handed over earlier: finals go through a
//! [`Reorder`] buffer and leave in utterance order, and an interim is shown only when no
//! earlier final is still awaited.
//!
//! Whisper invents text on non-speech (silence, music, applause); three gates stand in its
//! way: the VAD (no utterance, no decode), the model's own no-speech probability, and a text
//! filter (sound-effect annotations, text repeated from the previous caption, runs of one
//! phrase).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ct2rs::Tokenizer as _;
use ct2rs::sys::{self, ComputeType, Config, Device, StorageView, WhisperOptions};
use ct2rs::tokenizers::hf;
use mel_spec::mel::{log_mel_spectrogram, mel};
use mel_spec::stft::Spectrogram;
use ndarray::Array2;

use crate::fallback::Load;
use crate::reorder::{Reorder, Ticket};
use crate::speech::{Segmenter, Utterance};
use crate::{
    CaptionEvent, EngineStatus, Recognizer, RecognizerError, RecognizerStats, SAMPLE_RATE, Source,
};

/// Whisper's input window: 30 s of audio, 3,000 frames of 10 ms.
const WINDOW_FRAMES: usize = 3000;
const N_FFT: usize = 400;
const HOP: usize = 160;
/// Above this no-speech probability an utterance is taken for noise (Whisper's own figure).
const NO_SPEECH: f32 = 0.6;
/// Finals: the utterance and 8 s of silence. On the LibriVox corpus as accurate as the full
/// 30 s window (WER 0.056 both) at 0.45 of its cost (`examples/whisper_window.rs`).
pub const FINAL_WINDOW: Window = Window::Fit { pad_ms: 8000 };
/// Interims: 1 s of silence after the audio, a fifth of the full window's cost at 1-2 s of
/// speech; a word it gets wrong is shown only if the next decode agrees, and the final
/// replaces it.
pub const INTERIM_WINDOW: Window = Window::Fit { pad_ms: 1000 };
/// Finished utterances a session may have in the pool at once; more are dropped.
const IN_FLIGHT: usize = 4;
/// The growing utterance is decoded again for interim text after this much more audio, or a
/// quarter of its length if that is more: a decode costs what the utterance is long, so the
/// first words come quickly (two decodes agreeing, 0.8 s into the utterance) and a long
/// utterance costs a bounded share of a core.
const INTERIM_EVERY: usize = SAMPLE_RATE as usize * 2 / 5;
/// How long `finish` waits for the utterances still being decoded.
const FINISH_WAIT: Duration = Duration::from_secs(30);

/// The model directory (under the node's whisper model root) for a BCP 47 language tag.
pub fn model_dir(root: &Path, lang: &str) -> PathBuf {
    if primary(lang) == "en" {
        root.join("tiny.en")
    } else {
        root.join("base")
    }
}

/// `en` of `en-US`, lower case: the language token Whisper knows.
fn primary(lang: &str) -> String {
    lang.split(['-', '_'])
        .next()
        .unwrap_or("en")
        .to_ascii_lowercase()
}

/// How much of Whisper's 30 s input window the encoder is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// All 30 s, the audio padded with silence as the model was trained: every decode costs
    /// the same, however short the utterance.
    Full,
    /// The audio and `pad_ms` of silence after it (CTranslate2 takes any length up to 30 s):
    /// the encoder's cost follows the utterance's length.
    Fit { pad_ms: u32 },
}

impl Window {
    /// Mel frames (10 ms) the encoder is given for `samples` of audio: even, ≥ 1 s, ≤ 30 s.
    pub fn frames(self, samples: usize) -> usize {
        match self {
            Window::Full => WINDOW_FRAMES,
            Window::Fit { pad_ms } => {
                let audio = samples.div_ceil(HOP) + pad_ms as usize / 10;
                audio.next_multiple_of(2).clamp(100, WINDOW_FRAMES)
            }
        }
    }
}

/// The most text tokens a decode of `samples` may produce: fast speech is ~4 words a second,
/// ~6 tokens in English and more in other scripts, so much more is Whisper looping on a
/// pause, which would cost a worker a second or more (224, Whisper's own limit, for 30 s).
fn max_tokens(samples: usize) -> usize {
    let seconds = samples.div_ceil(SAMPLE_RATE as usize);
    (16 + 10 * seconds).min(224)
}

/// CTranslate2's `max_length` for `tokens` of text: it bounds the whole sequence, prompt
/// included, and decodes at most half of it (`models/whisper.cc`).
fn ct2_max_length(tokens: usize) -> usize {
    2 * tokens
}

/// A loaded Whisper model, shared (read-only) by the pool's workers; CTranslate2 runs one
/// replica per worker over the same weights.
pub struct WhisperModel {
    whisper: sys::Whisper,
    tokenizer: hf::Tokenizer,
    filters: Array2<f64>,
    n_mels: usize,
    multilingual: bool,
    name: String,
}

/// What one decode gave.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub text: String,
    pub no_speech_prob: f32,
}

impl WhisperModel {
    /// Loads a CTranslate2 Whisper model directory (model.bin, config.json, tokenizer.json,
    /// vocabulary) for `replicas` threads decoding at once, one core each.
    pub fn load(dir: &Path, replicas: usize) -> Result<Self, RecognizerError> {
        let unavailable = |e: anyhow::Error| {
            RecognizerError::Unavailable(format!("whisper model {}: {e:#}", dir.display()))
        };
        let config = Config {
            device: Device::CPU,
            compute_type: ComputeType::INT8,
            device_indices: vec![0; replicas.max(1)],
            num_threads_per_replica: 1,
            ..Config::default()
        };
        let whisper = sys::Whisper::new(dir, config).map_err(unavailable)?;
        let tokenizer = hf::Tokenizer::new(dir).map_err(unavailable)?;
        let n_mels = whisper.n_mels();
        Ok(Self {
            filters: mel(SAMPLE_RATE as f64, N_FFT, n_mels, None, None, false, true),
            multilingual: whisper.is_multilingual(),
            n_mels,
            whisper,
            tokenizer,
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whisper's log-mel features of up to 30 s of audio, padded with silence to `frames`
    /// (the window): `n_mels` rows of `frames`, row-major.
    fn features(&self, samples: &[f32], frames: usize) -> Vec<f32> {
        let samples = &samples[..samples.len().min(frames * HOP)];
        // Frames past the audio are digital silence: log10 of the floor, as Whisper pads.
        let mut logmel = vec![-10.0f64; self.n_mels * frames];
        let mut stft = Spectrogram::new(N_FFT, HOP);
        let mut frame = 0;
        for hop in samples.chunks(HOP) {
            if let Some(fft) = stft.add(hop) {
                let column = log_mel_spectrogram(&fft, &self.filters);
                for (m, v) in column.iter().enumerate().take(self.n_mels) {
                    logmel[m * frames + frame] = *v;
                }
                frame += 1;
                if frame == frames {
                    break;
                }
            }
        }
        // Normalised over the whole window (Whisper's rule): 8 decades of dynamic range.
        let max = logmel.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        logmel
            .into_iter()
            .map(|v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32)
            .collect()
    }

    /// Transcribes up to 30 s of 16 kHz audio in `[-1, 1]`, greedy, without timestamps, the
    /// encoder given `window`.
    pub fn transcribe(
        &self,
        samples: &[f32],
        lang: &str,
        window: Window,
    ) -> Result<Decoded, RecognizerError> {
        let failed = |e: anyhow::Error| RecognizerError::Failed(format!("whisper: {e:#}"));
        let frames = window.frames(samples.len());
        let mut features = self.features(samples, frames);
        let shape = [1, self.n_mels, frames];
        let view = StorageView::new(&shape, &mut features, Device::CPU).map_err(failed)?;
        let lang_token = format!("<|{}|>", primary(lang));
        let mut prompt = vec!["<|startoftranscript|>"];
        if self.multilingual {
            prompt.push(&lang_token);
            prompt.push("<|transcribe|>");
        }
        prompt.push("<|notimestamps|>");
        let options = WhisperOptions {
            beam_size: 1,
            return_no_speech_prob: true,
            max_length: ct2_max_length(max_tokens(samples.len())),
            ..WhisperOptions::default()
        };
        let result = self
            .whisper
            .generate(&view, &[prompt], &options)
            .map_err(failed)?;
        let Some(first) = result.into_iter().next() else {
            return Ok(Decoded {
                text: String::new(),
                no_speech_prob: 1.0,
            });
        };
        let tokens: Vec<String> = first
            .sequences
            .into_iter()
            .next()
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !(t.starts_with("<|") && t.ends_with("|>")))
            .collect();
        let text = self.tokenizer.decode(tokens).map_err(failed)?;
        Ok(Decoded {
            text: text.trim().to_owned(),
            no_speech_prob: first.no_speech_prob,
        })
    }
}

/// An utterance handed to the pool, and where its result goes.
struct Job {
    samples: Vec<f32>,
    lang: String,
    tag: Tag,
    reply: SyncSender<Reply>,
}

#[derive(Clone, Copy, Debug)]
struct Tag {
    segment_id: u64,
    start: u64,
    end: u64,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A decode of an utterance still growing.
    Interim,
    /// The decode of a finished utterance, with its place in the session's order.
    Final(Ticket),
}

impl Tag {
    fn is_final(&self) -> bool {
        matches!(self.kind, Kind::Final(_))
    }

    /// Samples of audio a final adds to the workers' backlog (interims add none: they are
    /// only sent to an idle pool).
    fn backlog(&self) -> u64 {
        if self.is_final() {
            self.end - self.start
        } else {
            0
        }
    }
}

struct Reply {
    tag: Tag,
    decoded: Result<Decoded, RecognizerError>,
    cpu_ns: u64,
}

/// The node's Whisper: one model, a bounded queue, a fixed pool of worker threads.
pub struct WhisperEngine {
    model: Arc<WhisperModel>,
    jobs: SyncSender<Job>,
    /// Jobs sent and not yet taken by a worker: interims go in only when it is zero, so a
    /// busy pool spends itself on finals.
    queued: Arc<AtomicUsize>,
    /// Samples of finished utterances (all sessions) sent and not decoded yet.
    backlog: Arc<AtomicU64>,
    dropped_utterances: AtomicU64,
}

impl std::fmt::Debug for WhisperEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperEngine")
            .field("model", &self.model.name)
            .finish_non_exhaustive()
    }
}

impl WhisperEngine {
    /// Loads the model for `lang` from `root` and starts `workers` decoding threads with a
    /// queue of `queue` utterances. The threads end when the engine is dropped.
    pub fn start(
        root: &Path,
        lang: &str,
        workers: usize,
        queue: usize,
    ) -> Result<Arc<Self>, RecognizerError> {
        let workers = workers.max(1);
        let model = Arc::new(WhisperModel::load(&model_dir(root, lang), workers)?);
        let (tx, rx) = mpsc::sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let queued = Arc::new(AtomicUsize::new(0));
        let backlog = Arc::new(AtomicU64::new(0));
        for i in 0..workers {
            let (model, rx) = (model.clone(), rx.clone());
            let (queued, backlog) = (queued.clone(), backlog.clone());
            std::thread::Builder::new()
                .name(format!("whisper-{i}"))
                .spawn(move || work(&model, &rx, &queued, &backlog))
                .map_err(|e| RecognizerError::Unavailable(format!("whisper thread: {e}")))?;
        }
        tracing::info!(model = model.name(), workers, queue, "whisper engine ready");
        Ok(Arc::new(Self {
            model,
            jobs: tx,
            queued,
            backlog,
            dropped_utterances: AtomicU64::new(0),
        }))
    }

    pub fn model_name(&self) -> &str {
        self.model.name()
    }

    /// Audio of finished utterances (all sessions) waiting for a worker or being decoded.
    pub fn backlog(&self) -> Duration {
        let samples = self.backlog.load(Ordering::Acquire);
        Duration::from_secs_f64(samples as f64 / f64::from(SAMPLE_RATE))
    }

    /// Utterances dropped so far because the queue was full (all sessions).
    pub fn dropped_utterances(&self) -> u64 {
        self.dropped_utterances.load(Ordering::Relaxed)
    }

    /// A recognizer for one run of one session.
    pub fn recognizer(self: &Arc<Self>, lang: &str) -> WhisperRecognizer {
        // Room for every reply a session can have outstanding: IN_FLIGHT finals + 1 interim.
        let (tx, rx) = mpsc::sync_channel(IN_FLIGHT + 1);
        WhisperRecognizer {
            engine: self.clone(),
            segmenter: Segmenter::default(),
            lang: lang.to_owned(),
            replies_tx: tx,
            replies: rx,
            finals: Reorder::default(),
            interim_in_flight: false,
            decoding: true,
            refused: false,
            next_segment: 1,
            open: None,
            last_text: None,
            samples_in: 0,
            samples_dropped: 0,
            cpu_ns: 0,
        }
    }

    fn submit(&self, job: Job) -> bool {
        let backlog = job.tag.backlog();
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.backlog.fetch_add(backlog, Ordering::AcqRel);
        if self.jobs.try_send(job).is_ok() {
            return true;
        }
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.backlog.fetch_sub(backlog, Ordering::AcqRel);
        false
    }
}

fn work(
    model: &WhisperModel,
    jobs: &Mutex<Receiver<Job>>,
    queued: &AtomicUsize,
    backlog: &AtomicU64,
) {
    loop {
        // The lock is held only while waiting for a job, so one idle worker takes the next.
        let job = match jobs.lock().unwrap_or_else(PoisonError::into_inner).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        queued.fetch_sub(1, Ordering::AcqRel);
        // CTranslate2 computes on its replica's own thread while this one waits, so this
        // thread's CPU clock would miss the work: the decode's wall time is its cost (one
        // replica is one thread, so it is an upper bound of the CPU time).
        let started = Instant::now();
        let window = if job.tag.is_final() {
            FINAL_WINDOW
        } else {
            INTERIM_WINDOW
        };
        let decoded = model.transcribe(&job.samples, &job.lang, window);
        let cpu_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        backlog.fetch_sub(job.tag.backlog(), Ordering::AcqRel);
        // Room is reserved by the session's in-flight limits; a full or closed channel means
        // the session is gone, and its result with it.
        let _ = job.reply.try_send(Reply {
            tag: job.tag,
            decoded,
            cpu_ns,
        });
    }
}

/// The utterance being spoken: its segment and what the interim decodes agreed on.
struct Open {
    segment_id: u64,
    start: u64,
    /// Samples of the utterance when its last interim decode was sent.
    decoded_len: usize,
    /// The words of the last interim decode.
    previous: Vec<String>,
    /// Words already shown (agreed by two decodes in a row).
    shown: usize,
}

/// One session's view of the engine: VAD on the caller's thread, decoding in the pool.
pub struct WhisperRecognizer {
    engine: Arc<WhisperEngine>,
    segmenter: Segmenter,
    lang: String,
    replies_tx: SyncSender<Reply>,
    replies: Receiver<Reply>,
    /// Finals handed over and not delivered yet, released in utterance order.
    finals: Reorder<(Tag, Decoded)>,
    interim_in_flight: bool,
    /// False while the session's utterances go to another engine (Whisper is behind): the
    /// segmenter still runs, for the pauses, but nothing is decoded.
    decoding: bool,
    /// An utterance found the pool's queue full since the last [`WhisperRecognizer::load`].
    refused: bool,
    next_segment: u64,
    open: Option<Open>,
    /// The last caption given, to suppress a repeat (Whisper's loop on non-speech).
    last_text: Option<String>,
    samples_in: u64,
    samples_dropped: u64,
    cpu_ns: u64,
}

impl WhisperRecognizer {
    /// The segment of the utterance starting at `start`: the open one, or a new one.
    fn segment_for(&mut self, start: u64) -> u64 {
        match &self.open {
            Some(o) if o.start == start => o.segment_id,
            _ => {
                let id = self.next_segment;
                self.next_segment += 1;
                self.open = Some(Open {
                    segment_id: id,
                    start,
                    decoded_len: 0,
                    previous: Vec::new(),
                    shown: 0,
                });
                id
            }
        }
    }

    fn hand_over(&mut self, u: Utterance) {
        if !self.decoding {
            // Another engine captions it.
            self.open = None;
            return;
        }
        let segment_id = self.segment_for(u.start);
        // The final closes the segment: late interims of it are ignored.
        self.open = None;
        let len = u.samples.len() as u64;
        let sent = self.finals.open() < IN_FLIGHT && {
            let ticket = self.finals.issue();
            let tag = Tag {
                segment_id,
                start: u.start,
                end: u.end,
                kind: Kind::Final(ticket),
            };
            let sent = self.send(&u.samples, tag);
            if !sent {
                self.finals.complete(ticket, None);
            }
            sent
        };
        if !sent {
            self.samples_dropped += len;
            self.refused = true;
            self.engine
                .dropped_utterances
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                seconds = len as f64 / SAMPLE_RATE as f64,
                "whisper queue full: utterance dropped"
            );
        }
    }

    /// The workers' load as this session sees it; clears the `refused` mark.
    pub fn load(&mut self) -> Load {
        Load {
            backlog: self.engine.backlog(),
            refused: std::mem::take(&mut self.refused),
        }
    }

    /// Someone is speaking (an utterance is growing).
    pub fn in_speech(&self) -> bool {
        self.segmenter.current().is_some()
    }

    /// Finals handed over and not delivered yet.
    pub fn open_finals(&self) -> usize {
        self.finals.open()
    }

    /// Whether finished utterances are decoded (true) or left to another engine. Takes
    /// effect from the next utterance; finals already handed over still arrive.
    pub fn set_decoding(&mut self, on: bool) {
        self.decoding = on;
    }

    pub fn model_name(&self) -> &str {
        self.engine.model_name()
    }

    fn send(&self, samples: &[i16], tag: Tag) -> bool {
        self.engine.submit(Job {
            samples: samples.iter().map(|&s| f32::from(s) / 32768.0).collect(),
            lang: self.lang.clone(),
            tag,
            reply: self.replies_tx.clone(),
        })
    }

    /// Sends the growing utterance for an interim decode when it has grown enough since the
    /// last one, none of this session's is pending, and no other job waits for a worker.
    fn maybe_interim(&mut self) {
        // Interims are what a busy pool sheds first: none while any session's final waits
        // for a worker or is being decoded.
        // Nor on a pause: its final comes soon, and a decode of trailing silence is where
        // Whisper loops.
        if !self.decoding
            || self.interim_in_flight
            || self.segmenter.pausing()
            || self.engine.queued.load(Ordering::Acquire) > 0
            || self.engine.backlog.load(Ordering::Acquire) > 0
        {
            return;
        }
        let Some((start, len)) = self.segmenter.current().map(|(at, s)| (at, s.len())) else {
            return;
        };
        let segment_id = self.segment_for(start);
        let Some(open) = &mut self.open else { return };
        if len < open.decoded_len + INTERIM_EVERY.max(open.decoded_len / 4) {
            return;
        }
        open.decoded_len = len;
        let Some((_, samples)) = self.segmenter.current() else {
            return;
        };
        let tag = Tag {
            segment_id,
            start,
            end: start + len as u64,
            kind: Kind::Interim,
        };
        self.interim_in_flight = self.send(samples, tag);
    }

    /// Takes a worker's reply; returns the events it releases: finals in utterance order,
    /// or an interim when no earlier final is awaited.
    fn take(&mut self, reply: Reply) -> Vec<CaptionEvent> {
        self.cpu_ns += reply.cpu_ns;
        let tag = reply.tag;
        let decoded = match reply.decoded {
            Ok(d) if d.no_speech_prob > NO_SPEECH => None,
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(error = %e, "whisper failed on an utterance");
                None
            }
        };
        match tag.kind {
            Kind::Final(ticket) => {
                self.finals.complete(ticket, decoded.map(|d| (tag, d)));
                let mut out = Vec::new();
                while let Some((tag, decoded)) = self.finals.pop() {
                    out.extend(self.final_event(tag, decoded));
                }
                out
            }
            Kind::Interim => {
                self.interim_in_flight = false;
                decoded
                    .and_then(|d| self.interim_event(tag, d))
                    .into_iter()
                    .collect()
            }
        }
    }

    fn final_event(&mut self, tag: Tag, decoded: Decoded) -> Option<CaptionEvent> {
        let text = clean(&decoded.text)?;
        if self.last_text.as_deref() == Some(text.as_str()) {
            return None;
        }
        self.last_text = Some(text.clone());
        Some(self.caption(tag, text, &decoded))
    }

    fn interim_event(&mut self, tag: Tag, decoded: Decoded) -> Option<CaptionEvent> {
        let text = clean(&decoded.text)?;
        let held = self.finals.open() > 0;
        let open = self
            .open
            .as_mut()
            .filter(|o| o.segment_id == tag.segment_id)?;
        let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        let agreed = words
            .iter()
            .zip(&open.previous)
            .take_while(|(a, b)| same_word(a, b))
            .count();
        open.previous = words;
        // An earlier utterance's final is still awaited: this later segment's text waits
        // for the next interim, so segments reach viewers in order.
        if held || agreed <= open.shown {
            return None;
        }
        open.shown = agreed;
        let text = open.previous[..agreed].join(" ");
        Some(self.caption(tag, text, &decoded))
    }

    fn caption(&self, tag: Tag, text: String, decoded: &Decoded) -> CaptionEvent {
        CaptionEvent {
            segment_id: tag.segment_id,
            text,
            is_final: tag.is_final(),
            start: tag.start as f64 / SAMPLE_RATE as f64,
            end: tag.end as f64 / SAMPLE_RATE as f64,
            lang: self.lang.clone(),
            source: Source::Asr,
            confidence: Some(1.0 - decoded.no_speech_prob),
        }
    }
}

/// Two decodes agree on a word whatever its case and punctuation ("Hello," / "hello").
fn same_word(a: &str, b: &str) -> bool {
    let norm = |w: &str| {
        w.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    norm(a) == norm(b)
}

/// The caption text of a decode, or `None` when it is not speech: empty, only a sound
/// annotation (`[Music]`, `(applause)`, `♪`), or no letter at all. A phrase Whisper repeats
/// in a loop is cut to its first three occurrences.
pub fn clean(text: &str) -> Option<String> {
    let mut kept = String::with_capacity(text.len());
    let (mut depth, mut starred) = (0u32, false);
    for c in text.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth = depth.saturating_sub(1),
            '*' => starred = !starred,
            '♪' | '♫' => {}
            _ if depth == 0 && !starred => kept.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = kept.split_whitespace().collect();
    if !words.iter().any(|w| w.chars().any(char::is_alphanumeric)) {
        return None;
    }
    Some(collapse_loops(&words, 3).join(" "))
}

/// `words` with any run of one n-gram (n ≤ 4) longer than `keep` repetitions cut to `keep`.
fn collapse_loops<'a>(words: &[&'a str], keep: usize) -> Vec<&'a str> {
    let norm = |w: &str| {
        w.trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase()
    };
    let mut out: Vec<&'a str> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let mut skipped = false;
        for n in 1..=4 {
            if out.len() < n * keep {
                continue;
            }
            let tail = out.len() - n * keep;
            let gram = &out[out.len() - n..];
            let looping = (0..keep).all(|k| {
                out[tail + k * n..tail + (k + 1) * n]
                    .iter()
                    .zip(gram)
                    .all(|(a, b)| norm(a) == norm(b))
            });
            if looping
                && i + n <= words.len()
                && words[i..i + n]
                    .iter()
                    .zip(gram)
                    .all(|(a, b)| norm(a) == norm(b))
            {
                i += n;
                skipped = true;
                break;
            }
        }
        if !skipped {
            out.push(words[i]);
            i += 1;
        }
    }
    out
}

impl Recognizer for WhisperRecognizer {
    fn push_pcm(&mut self, samples: &[i16]) -> Result<(), RecognizerError> {
        self.samples_in += samples.len() as u64;
        for u in self.segmenter.push(samples) {
            self.hand_over(u);
        }
        self.maybe_interim();
        Ok(())
    }

    fn poll_events(&mut self) -> Vec<CaptionEvent> {
        let replies: Vec<Reply> = self.replies.try_iter().collect();
        replies.into_iter().flat_map(|r| self.take(r)).collect()
    }

    fn finish(&mut self) -> Vec<CaptionEvent> {
        if let Some(u) = self.segmenter.flush() {
            self.hand_over(u);
        }
        self.open = None;
        let mut out = Vec::new();
        let deadline = Instant::now() + FINISH_WAIT;
        while self.finals.open() > 0 || self.interim_in_flight {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.replies.recv_timeout(left) {
                Ok(r) => out.extend(self.take(r)),
                Err(_) => break,
            }
        }
        out
    }

    fn stats(&self) -> RecognizerStats {
        RecognizerStats {
            audio_seconds: self.samples_in as f64 / SAMPLE_RATE as f64,
            dropped_seconds: self.samples_dropped as f64 / SAMPLE_RATE as f64,
            cpu_seconds: self.cpu_ns as f64 / 1e9,
        }
    }

    fn status(&self) -> EngineStatus {
        EngineStatus {
            engine: "whisper",
            model: self.engine.model_name().to_owned(),
            fallback: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sound_annotations_are_not_captions() {
        for noise in [
            "",
            "[Music]",
            "(upbeat music)",
            "♪ ♪",
            " [BLANK_AUDIO] ",
            "...",
            "*applause*",
        ] {
            assert_eq!(clean(noise), None, "{noise:?}");
        }
        assert_eq!(clean(" Hello there. ").as_deref(), Some("Hello there."));
        assert_eq!(
            clean("[Music] We begin now.").as_deref(),
            Some("We begin now.")
        );
    }

    #[test]
    fn a_looping_phrase_is_cut_to_three() {
        let looped = "thank you. thank you. thank you. thank you. thank you. thank you.";
        assert_eq!(
            clean(looped).as_deref(),
            Some("thank you. thank you. thank you.")
        );
        assert_eq!(clean("no no no no no").as_deref(), Some("no no no"));
        let normal = "the cat sat on the mat and the cat slept";
        assert_eq!(clean(normal).as_deref(), Some(normal));
    }

    #[test]
    fn a_fitted_window_follows_the_audio_within_whispers_bounds() {
        let second = SAMPLE_RATE as usize;
        assert_eq!(Window::Full.frames(second), WINDOW_FRAMES);
        let fit = Window::Fit { pad_ms: 1000 };
        // 2 s of audio and 1 s of silence: 300 frames of 10 ms.
        assert_eq!(fit.frames(2 * second), 300);
        // Never below 1 s, never above Whisper's 30 s, always even (the stride-2 conv).
        assert_eq!(Window::Fit { pad_ms: 0 }.frames(10), 100);
        assert_eq!(fit.frames(40 * second), WINDOW_FRAMES);
        assert_eq!(fit.frames(2 * second + 1) % 2, 0);
    }

    #[test]
    fn an_eight_second_cut_may_hold_fast_speech_in_any_script() {
        let eight_seconds = crate::speech::MAX_UTTERANCE;
        // 4 words a second, 2.5 tokens a word (Cyrillic, Arabic in Whisper's BPE).
        let tokens = max_tokens(eight_seconds);
        assert!(tokens >= 80, "{tokens}");
        // What CTranslate2 then decodes at most, after a prompt of up to 4 tokens.
        let total = ct2_max_length(tokens);
        assert!((total / 2).min(total - 4) >= tokens, "{total}");
        assert_eq!(max_tokens(40 * SAMPLE_RATE as usize), 224);
    }

    #[test]
    fn the_model_follows_the_language() {
        let root = Path::new("/m");
        assert_eq!(model_dir(root, "en-US"), root.join("tiny.en"));
        assert_eq!(model_dir(root, "EN"), root.join("tiny.en"));
        assert_eq!(model_dir(root, "fr-FR"), root.join("base"));
    }
}
