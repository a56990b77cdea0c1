//! whisper.cpp (through `whisper-rs`), behind the `whisper` feature: better recognition than
//! pocketsphinx and many languages, at more CPU. Whisper transcribes whole utterances, so
//! the caller's thread cuts speech with the [`Vad`] (cheap) and a worker thread owning the
//! model transcribes each utterance into one final caption. The queue between them is
//! bounded: an utterance that finds it full is dropped and counted.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

use crate::vad::{Utterance, Vad};
use crate::{CaptionEvent, Recognizer, RecognizerError, RecognizerStats, SAMPLE_RATE, Source};

/// Utterances waiting for the model (each at most 15 s).
const QUEUE: usize = 4;
const FINISH_WAIT: Duration = Duration::from_secs(30);

pub struct WhisperRecognizer {
    vad: Vad,
    utterances: Option<SyncSender<Utterance>>,
    events: Receiver<CaptionEvent>,
    worker: Option<JoinHandle<()>>,
    cpu_ns: Arc<Mutex<u64>>,
    samples_in: u64,
    samples_dropped: u64,
}

impl WhisperRecognizer {
    /// Loads the model (ggml file) and starts the worker.
    pub fn new(model: &Path, lang: &str) -> Result<Self, RecognizerError> {
        let ctx = WhisperContext::new_with_params(model, WhisperContextParameters::default())
            .map_err(|e| {
                RecognizerError::Unavailable(format!(
                    "whisper model {} did not load: {e}",
                    model.display()
                ))
            })?;
        let (utt_tx, utt_rx) = mpsc::sync_channel::<Utterance>(QUEUE);
        let (ev_tx, ev_rx) = mpsc::channel();
        let cpu_ns = Arc::new(Mutex::new(0));
        let primary = lang
            .split(['-', '_'])
            .next()
            .unwrap_or("en")
            .to_ascii_lowercase();
        let (worker_lang, cpu) = (lang.to_owned(), cpu_ns.clone());
        let worker = std::thread::Builder::new()
            .name("whisper".into())
            .spawn(move || {
                let Ok(mut state) = ctx.create_state() else {
                    tracing::error!("whisper: no decoding state");
                    return;
                };
                for (segment_id, u) in (1u64..).zip(utt_rx) {
                    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
                    params.set_language(Some(&primary));
                    params.set_print_progress(false);
                    params.set_print_realtime(false);
                    params.set_print_special(false);
                    params.set_print_timestamps(false);
                    params.set_single_segment(true);
                    params.set_no_context(true);
                    let audio: Vec<f32> = u.samples.iter().map(|&s| s as f32 / 32768.0).collect();
                    if let Err(e) = state.full(params, &audio) {
                        tracing::warn!(error = %e, "whisper failed on an utterance");
                        continue;
                    }
                    let text: String = state
                        .as_iter()
                        .filter_map(|s| s.to_str_lossy().ok().map(|t| t.into_owned()))
                        .collect::<Vec<_>>()
                        .join(" ");
                    if let Ok(mut c) = cpu.lock() {
                        *c = crate::pocketsphinx::thread_cpu_ns().unwrap_or(*c);
                    }
                    let text = text.trim();
                    if text.is_empty() {
                        continue;
                    }
                    let event = CaptionEvent {
                        segment_id,
                        text: text.to_owned(),
                        is_final: true,
                        start: u.start as f64 / SAMPLE_RATE as f64,
                        end: u.end as f64 / SAMPLE_RATE as f64,
                        lang: worker_lang.clone(),
                        source: Source::Asr,
                        confidence: None,
                    };
                    if ev_tx.send(event).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| RecognizerError::Unavailable(format!("whisper thread: {e}")))?;
        Ok(Self {
            vad: Vad::default(),
            utterances: Some(utt_tx),
            events: ev_rx,
            worker: Some(worker),
            cpu_ns,
            samples_in: 0,
            samples_dropped: 0,
        })
    }

    fn hand_over(&mut self, u: Utterance) {
        let Some(tx) = &self.utterances else { return };
        let len = u.samples.len() as u64;
        match tx.try_send(u) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.samples_dropped += len;
            }
        }
    }
}

impl Recognizer for WhisperRecognizer {
    fn push_pcm(&mut self, samples: &[i16]) -> Result<(), RecognizerError> {
        self.samples_in += samples.len() as u64;
        for u in self.vad.push(samples) {
            self.hand_over(u);
        }
        Ok(())
    }

    fn poll_events(&mut self) -> Vec<CaptionEvent> {
        self.events.try_iter().collect()
    }

    fn finish(&mut self) -> Vec<CaptionEvent> {
        if let Some(u) = self.vad.flush() {
            self.hand_over(u);
        }
        // Closing the queue ends the worker after the last utterance.
        self.utterances = None;
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + FINISH_WAIT;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(e) => out.push(e),
                Err(_) => break,
            }
        }
        if let Some(w) = self.worker.take()
            && w.is_finished()
        {
            let _ = w.join();
        }
        out
    }

    fn stats(&self) -> RecognizerStats {
        RecognizerStats {
            audio_seconds: self.samples_in as f64 / SAMPLE_RATE as f64,
            dropped_seconds: self.samples_dropped as f64 / SAMPLE_RATE as f64,
            cpu_seconds: self.cpu_ns.lock().map_or(0.0, |c| *c as f64 / 1e9),
        }
    }
}
