//! Captions for Floorcast sessions (issue: live captions). So far this crate holds only the
//! contract the rest of the system builds against: the caption event and the recognizer trait.
//! Engines, CART ingest and transcripts are not built yet.

use serde::Serialize;

/// Where a caption's text came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Machine speech recognition.
    Asr,
    /// A human real-time captioner.
    Cart,
}

/// One caption segment update. Interim events replace the text of the same segment; a final
/// event fixes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaptionEvent {
    pub segment_id: u64,
    pub text: String,
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Seconds since the start of the session's audio.
    pub start: f64,
    pub end: f64,
    pub lang: String,
    pub source: Source,
    pub confidence: Option<f32>,
}

/// A speech recognizer: 16 kHz mono PCM in, caption events out.
pub trait Recognizer: Send {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Feeds samples that follow the previous ones without a gap.
    fn push_pcm(&mut self, samples: &[i16]) -> Result<(), Self::Error>;

    /// Takes the events produced so far.
    fn poll_events(&mut self) -> Vec<CaptionEvent>;
}
