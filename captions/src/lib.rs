//! Captions for Floorcast sessions: speech recognition engines behind one trait, the audio
//! tap that feeds them, CART (human captioner) sequencing, the precedence of human over
//! machine captions, and transcript files.
//!
//! Everything here is either pure logic with the clock passed in (precedence, CART sequence,
//! transcripts, WER) or an engine that owns its own thread; the server wires them to HTTP,
//! the media engine and the database.

pub mod cart;
pub mod corpus;
pub mod engine;
mod event;
pub mod fallback;
#[cfg(feature = "whisper")]
pub mod hybrid;
pub mod merge;
pub mod opus_decode;
pub mod pocketsphinx;
mod recognizer;
pub mod reorder;
#[cfg(feature = "whisper")]
pub mod speech;
pub mod transcript;
pub mod wav;
pub mod wer;
#[cfg(feature = "whisper")]
pub mod whisper;

pub use event::{CaptionEvent, Source};
pub use recognizer::{EngineStatus, Recognizer, RecognizerError, RecognizerStats};

/// The sample rate every recognizer takes: 16 kHz mono, signed 16-bit.
pub const SAMPLE_RATE: u32 = 16_000;
