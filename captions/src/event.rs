//! The caption event every engine and the CART input produce, and viewers receive.

use serde::{Deserialize, Serialize};

/// Where a caption's text came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Machine speech recognition.
    Asr,
    /// A human real-time captioner.
    Cart,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Asr => "asr",
            Source::Cart => "cart",
        }
    }
}

/// One caption segment update. Interim events replace the text of the same segment; a final
/// event fixes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaptionEvent {
    /// Rises per segment within one recognizer (or CART feed).
    pub segment_id: u64,
    pub text: String,
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Seconds since the first sample the recognizer was given.
    pub start: f64,
    pub end: f64,
    /// BCP 47 tag, e.g. `en-US`.
    pub lang: String,
    pub source: Source,
    pub confidence: Option<f32>,
}
