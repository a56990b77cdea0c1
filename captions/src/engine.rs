//! Which recognizer a session gets. The server resolves its configuration once at startup
//! ([`EngineConfig::whisper`]): Whisper loads its model there, once for the whole node, and
//! a model that is missing or does not load (or a binary built without the `whisper`
//! feature) is reported in one clear error line, and the embedded pocketsphinx engine is used
//! instead; each recognition run can then [`open`] without repeating it. A Whisper run is a
//! [`HybridRecognizer`](crate::hybrid::HybridRecognizer): pocketsphinx stands in for the
//! session's new utterances while Whisper's workers are behind.

use std::path::{Path, PathBuf};

use crate::pocketsphinx::PocketsphinxRecognizer;
use crate::{Recognizer, RecognizerError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    Pocketsphinx,
    Whisper(WhisperHandle),
}

/// The node's loaded Whisper engine (shared by every session), or nothing in a build
/// without the `whisper` feature, where this type has no value.
#[derive(Clone, Debug)]
pub struct WhisperHandle {
    #[cfg(feature = "whisper")]
    engine: std::sync::Arc<crate::whisper::WhisperEngine>,
    #[cfg(not(feature = "whisper"))]
    never: std::convert::Infallible,
}

impl PartialEq for WhisperHandle {
    fn eq(&self, other: &Self) -> bool {
        #[cfg(feature = "whisper")]
        return std::sync::Arc::ptr_eq(&self.engine, &other.engine);
        #[cfg(not(feature = "whisper"))]
        match (self.never, other.never) {}
    }
}

impl Eq for WhisperHandle {}

impl WhisperHandle {
    #[cfg(feature = "whisper")]
    pub fn engine(&self) -> &std::sync::Arc<crate::whisper::WhisperEngine> {
        &self.engine
    }
}

/// What the node's configuration asks of Whisper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhisperRequest {
    /// The directory holding `tiny.en/` and `base/` (tools/fetch_whisper_models.py).
    pub models: PathBuf,
    /// Decoding threads (one core each), shared by all sessions.
    pub workers: usize,
    /// Utterances waiting for a worker; one more is dropped and counted.
    pub queue: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    pub choice: EngineChoice,
    /// BCP 47 tag of the language spoken.
    pub lang: String,
}

impl EngineConfig {
    pub fn pocketsphinx(lang: &str) -> Self {
        Self {
            choice: EngineChoice::Pocketsphinx,
            lang: lang.to_owned(),
        }
    }

    /// Whisper with the model for `lang` loaded, or pocketsphinx after one error line saying
    /// why Whisper cannot run.
    pub fn whisper(request: &WhisperRequest, lang: &str) -> Self {
        match load_whisper(request, lang) {
            Ok(handle) => Self {
                choice: EngineChoice::Whisper(handle),
                lang: lang.to_owned(),
            },
            Err(problem) => {
                tracing::error!(
                    "{problem}; machine captions fall back to the embedded pocketsphinx engine"
                );
                Self::pocketsphinx(lang)
            }
        }
    }
}

#[cfg(feature = "whisper")]
fn load_whisper(request: &WhisperRequest, lang: &str) -> Result<WhisperHandle, String> {
    let dir = crate::whisper::model_dir(&request.models, lang);
    if let Some(problem) = missing(&dir) {
        return Err(problem);
    }
    crate::whisper::WhisperEngine::start(&request.models, lang, request.workers, request.queue)
        .map(|engine| WhisperHandle { engine })
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "whisper"))]
fn load_whisper(request: &WhisperRequest, _lang: &str) -> Result<WhisperHandle, String> {
    Err(format!(
        "this floorcast was built without the `whisper` feature (models {})",
        request.models.display()
    ))
}

/// Why the model directory `dir` cannot be used, if it cannot (checked before loading, for
/// a message that says what to do).
#[cfg_attr(not(feature = "whisper"), allow(dead_code))]
fn missing(dir: &Path) -> Option<String> {
    let model = dir.join("model.bin");
    match std::fs::metadata(&model) {
        Ok(m) if m.is_file() => None,
        _ => Some(format!(
            "the whisper model {} is missing (tools/fetch_whisper_models.py fetches it)",
            model.display()
        )),
    }
}

/// Starts a recognizer for one run.
pub fn open(config: &EngineConfig) -> Result<Box<dyn Recognizer>, RecognizerError> {
    match &config.choice {
        EngineChoice::Pocketsphinx => Ok(Box::new(PocketsphinxRecognizer::new(&config.lang)?)),
        #[cfg(feature = "whisper")]
        EngineChoice::Whisper(handle) => Ok(Box::new(crate::hybrid::HybridRecognizer::new(
            handle.engine.recognizer(&config.lang),
            &config.lang,
            crate::fallback::FallbackPolicy::default(),
        ))),
        #[cfg(not(feature = "whisper"))]
        EngineChoice::Whisper(handle) => match handle.never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_whisper_model_falls_back_to_pocketsphinx() {
        let asked = WhisperRequest {
            models: "/nonexistent/whisper".into(),
            workers: 1,
            queue: 2,
        };
        let resolved = EngineConfig::whisper(&asked, "en-US");
        assert_eq!(resolved.choice, EngineChoice::Pocketsphinx);
        assert_eq!(resolved.lang, "en-US");
    }
}
