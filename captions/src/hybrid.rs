//! A session's recognizer when the node runs Whisper: Whisper, and pocketsphinx for the
//! session's new utterances while Whisper's workers are behind ([`crate::fallback`]).
//!
//! The Whisper segmenter always hears the audio (it is cheap) so that changes of engine
//! happen at a pause: an utterance is never split between two engines. In fallback the audio
//! also goes to a pocketsphinx run started for the occasion, whose times are shifted to the
//! session's stream time; Whisper's finals handed over before the change still arrive, and
//! pocketsphinx's events wait behind them, so captions stay in the order spoken. Segment ids
//! are renumbered here, so the two engines' ids never collide within a run.

use std::collections::VecDeque;
use std::time::Instant;

use crate::fallback::{Fallback, FallbackPolicy, Mode};
use crate::pocketsphinx::PocketsphinxRecognizer;
use crate::whisper::WhisperRecognizer;
use crate::{
    CaptionEvent, EngineStatus, Recognizer, RecognizerError, RecognizerStats, SAMPLE_RATE,
};

/// Engine segments remembered for renumbering: more than a session has open at once.
const RECENT_SEGMENTS: usize = 64;

/// Which engine an event came from: Whisper, or the pocketsphinx run of one fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Whisper,
    Pocketsphinx(u64),
}

/// The pocketsphinx run of one stay in fallback.
struct Relief {
    recognizer: PocketsphinxRecognizer,
    /// Stream time (s) of its first sample.
    offset: f64,
    run: u64,
}

pub struct HybridRecognizer {
    whisper: WhisperRecognizer,
    decision: Fallback,
    relief: Option<Relief>,
    lang: String,
    samples_in: u64,
    runs: u64,
    /// Pocketsphinx could not start: stay on Whisper (said once).
    no_relief: bool,
    /// Pocketsphinx events waiting for Whisper's earlier finals.
    held: Vec<CaptionEvent>,
    /// (engine, engine segment id) → session segment id, most recent last.
    ids: VecDeque<((Origin, u64), u64)>,
    next_id: u64,
    /// Stats of the pocketsphinx runs that have ended.
    relief_stats: RecognizerStats,
}

impl HybridRecognizer {
    pub fn new(whisper: WhisperRecognizer, lang: &str, policy: FallbackPolicy) -> Self {
        Self {
            whisper,
            decision: Fallback::new(policy),
            relief: None,
            lang: lang.to_owned(),
            samples_in: 0,
            runs: 0,
            no_relief: false,
            held: Vec::new(),
            ids: VecDeque::with_capacity(RECENT_SEGMENTS),
            next_id: 1,
            relief_stats: RecognizerStats::default(),
        }
    }

    /// Applies the decision at a pause.
    fn switch(&mut self, wanted: Mode) -> Vec<CaptionEvent> {
        match (wanted, self.relief.is_some()) {
            (Mode::Fallback, false) if !self.no_relief => {
                match PocketsphinxRecognizer::new(&self.lang) {
                    Ok(recognizer) => {
                        self.runs += 1;
                        self.relief = Some(Relief {
                            recognizer,
                            offset: self.samples_in as f64 / f64::from(SAMPLE_RATE),
                            run: self.runs,
                        });
                        self.whisper.set_decoding(false);
                    }
                    Err(e) => {
                        self.no_relief = true;
                        tracing::error!(error = %e, "no pocketsphinx to relieve whisper");
                    }
                }
                Vec::new()
            }
            (Mode::Whisper, true) => {
                self.whisper.set_decoding(true);
                self.end_relief()
            }
            _ => Vec::new(),
        }
    }

    /// Finishes the pocketsphinx run (bounded wait) and returns its last events.
    fn end_relief(&mut self) -> Vec<CaptionEvent> {
        let Some(mut relief) = self.relief.take() else {
            return Vec::new();
        };
        let last = relief.recognizer.finish();
        let stats = relief.recognizer.stats();
        self.relief_stats.dropped_seconds += stats.dropped_seconds;
        self.relief_stats.cpu_seconds += stats.cpu_seconds;
        self.renumber_relief(&relief, last)
    }

    fn renumber_relief(&mut self, relief: &Relief, events: Vec<CaptionEvent>) -> Vec<CaptionEvent> {
        events
            .into_iter()
            .map(|mut e| {
                e.start += relief.offset;
                e.end += relief.offset;
                e.segment_id = self.id(Origin::Pocketsphinx(relief.run), e.segment_id);
                e
            })
            .collect()
    }

    fn renumber_whisper(&mut self, events: Vec<CaptionEvent>) -> Vec<CaptionEvent> {
        events
            .into_iter()
            .map(|mut e| {
                e.segment_id = self.id(Origin::Whisper, e.segment_id);
                e
            })
            .collect()
    }

    /// The session's id of an engine's segment: a new one, in order of first sight.
    fn id(&mut self, from: Origin, segment: u64) -> u64 {
        if let Some((_, id)) = self.ids.iter().find(|(k, _)| *k == (from, segment)) {
            return *id;
        }
        let id = self.next_id;
        self.next_id += 1;
        if self.ids.len() == RECENT_SEGMENTS {
            self.ids.pop_front();
        }
        self.ids.push_back(((from, segment), id));
        id
    }

    /// Whisper's events, then pocketsphinx's once no earlier Whisper final is awaited.
    fn collect(
        &mut self,
        whisper: Vec<CaptionEvent>,
        relief: Vec<CaptionEvent>,
    ) -> Vec<CaptionEvent> {
        let mut out = self.renumber_whisper(whisper);
        self.held.extend(relief);
        if self.whisper.open_finals() == 0 {
            out.append(&mut self.held);
        }
        out
    }
}

impl Recognizer for HybridRecognizer {
    fn push_pcm(&mut self, samples: &[i16]) -> Result<(), RecognizerError> {
        let wanted = self.decision.observe(self.whisper.load(), Instant::now());
        // Back to Whisper only once everything pocketsphinx said has gone out, so that a new
        // Whisper final cannot overtake it.
        let settled = self.held.is_empty() && self.whisper.open_finals() == 0;
        if !self.whisper.in_speech()
            && wanted != self.mode()
            && (wanted == Mode::Fallback || settled)
        {
            let last = self.switch(wanted);
            self.held.extend(last);
        }
        self.samples_in += samples.len() as u64;
        self.whisper.push_pcm(samples)?;
        if let Some(relief) = &mut self.relief
            && let Err(e) = relief.recognizer.push_pcm(samples)
        {
            // Pocketsphinx failed: back to Whisper, behind or not.
            tracing::error!(error = %e, "pocketsphinx failed while relieving whisper");
            self.no_relief = true;
            self.whisper.set_decoding(true);
            let last = self.end_relief();
            self.held.extend(last);
        }
        Ok(())
    }

    fn poll_events(&mut self) -> Vec<CaptionEvent> {
        let whisper = self.whisper.poll_events();
        let relief = match self.relief.take() {
            Some(mut r) => {
                let events = r.recognizer.poll_events();
                let events = self.renumber_relief(&r, events);
                self.relief = Some(r);
                events
            }
            None => Vec::new(),
        };
        self.collect(whisper, relief)
    }

    fn finish(&mut self) -> Vec<CaptionEvent> {
        let whisper = self.whisper.finish();
        let relief = self.end_relief();
        let mut out = self.collect(whisper, relief);
        out.append(&mut self.held);
        out
    }

    fn stats(&self) -> RecognizerStats {
        let whisper = self.whisper.stats();
        let relief = self
            .relief
            .as_ref()
            .map(|r| r.recognizer.stats())
            .unwrap_or_default();
        RecognizerStats {
            audio_seconds: self.samples_in as f64 / f64::from(SAMPLE_RATE),
            dropped_seconds: whisper.dropped_seconds
                + self.relief_stats.dropped_seconds
                + relief.dropped_seconds,
            cpu_seconds: whisper.cpu_seconds + self.relief_stats.cpu_seconds + relief.cpu_seconds,
        }
    }

    fn status(&self) -> EngineStatus {
        match &self.relief {
            Some(r) => EngineStatus {
                fallback: true,
                ..r.recognizer.status()
            },
            None => self.whisper.status(),
        }
    }
}

impl HybridRecognizer {
    fn mode(&self) -> Mode {
        if self.relief.is_some() {
            Mode::Fallback
        } else {
            Mode::Whisper
        }
    }
}
