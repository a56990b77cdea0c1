//! The recognizer trait: 16 kHz mono PCM in, caption events out.

use crate::CaptionEvent;

#[derive(Debug, thiserror::Error)]
pub enum RecognizerError {
    /// The engine could not be built (missing GStreamer element, model file, ...).
    #[error("speech engine unavailable: {0}")]
    Unavailable(String),
    /// The engine stopped while running (its pipeline posted an error).
    #[error("speech engine failed: {0}")]
    Failed(String),
}

/// What an engine has done so far; the server turns it into metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RecognizerStats {
    /// Seconds of audio given to `push_pcm`, dropped or not.
    pub audio_seconds: f64,
    /// Seconds of audio dropped because the engine was behind.
    pub dropped_seconds: f64,
    /// CPU seconds the engine spent recognising (for the real-time factor).
    pub cpu_seconds: f64,
}

/// Which engine captions a session's new utterances now, for the node's metrics and `/ops`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineStatus {
    /// `whisper` or `pocketsphinx`.
    pub engine: &'static str,
    /// The model: `tiny.en`, `base` (Whisper), `en-us` (pocketsphinx).
    pub model: String,
    /// Pocketsphinx stands in because Whisper is behind.
    pub fallback: bool,
}

/// A streaming speech recognizer. It runs off the caller's thread; `push_pcm` never blocks
/// for long: when the engine is behind, the audio is dropped and counted, and stream time
/// still advances, so later event times stay true.
pub trait Recognizer: Send {
    /// Feeds samples that follow the previous ones without a gap.
    fn push_pcm(&mut self, samples: &[i16]) -> Result<(), RecognizerError>;

    /// Takes the events produced so far, oldest first.
    fn poll_events(&mut self) -> Vec<CaptionEvent>;

    /// End of stream: waits (bounded) for the last segment's final event and returns what is
    /// left. The recognizer takes no audio afterwards.
    fn finish(&mut self) -> Vec<CaptionEvent>;

    fn stats(&self) -> RecognizerStats;

    fn status(&self) -> EngineStatus;
}
