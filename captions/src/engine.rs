//! Which recognizer a session gets. The server resolves its configuration once at startup
//! ([`EngineConfig::resolve`]): a whisper engine whose model is missing (or a binary built
//! without the `whisper` feature) logs one clear error there and falls back to the embedded
//! pocketsphinx engine, so each recognition run can then [`open`] without repeating it.

use std::path::PathBuf;

use crate::pocketsphinx::PocketsphinxRecognizer;
use crate::{Recognizer, RecognizerError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    Pocketsphinx,
    Whisper { model: PathBuf },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    pub choice: EngineChoice,
    /// BCP 47 tag of the language spoken.
    pub lang: String,
}

impl EngineConfig {
    /// The engine that can actually run here, saying once (error log) why it differs from
    /// the one asked for.
    pub fn resolve(self) -> EngineConfig {
        match &self.choice {
            EngineChoice::Pocketsphinx => self,
            EngineChoice::Whisper { model } => match whisper_problem(model) {
                None => self,
                Some(problem) => {
                    tracing::error!(
                        model = %model.display(),
                        "{problem}; machine captions fall back to the embedded pocketsphinx engine"
                    );
                    EngineConfig {
                        choice: EngineChoice::Pocketsphinx,
                        lang: self.lang,
                    }
                }
            },
        }
    }
}

/// Why the whisper engine cannot run with `model`, if it cannot.
fn whisper_problem(model: &std::path::Path) -> Option<String> {
    if !cfg!(feature = "whisper") {
        return Some("this floorcast was built without the `whisper` feature".into());
    }
    match std::fs::metadata(model) {
        Ok(m) if m.is_file() => None,
        Ok(_) => Some(format!(
            "the whisper model {} is not a file",
            model.display()
        )),
        Err(e) => Some(format!(
            "the whisper model {} cannot be read: {e}",
            model.display()
        )),
    }
}

/// Starts a recognizer for one run.
pub fn open(config: &EngineConfig) -> Result<Box<dyn Recognizer>, RecognizerError> {
    match &config.choice {
        EngineChoice::Pocketsphinx => Ok(Box::new(PocketsphinxRecognizer::new(&config.lang)?)),
        #[cfg(feature = "whisper")]
        EngineChoice::Whisper { model } => Ok(Box::new(crate::whisper::WhisperRecognizer::new(
            model,
            &config.lang,
        )?)),
        #[cfg(not(feature = "whisper"))]
        EngineChoice::Whisper { .. } => Err(RecognizerError::Unavailable(
            "built without the `whisper` feature".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_whisper_model_falls_back_to_pocketsphinx() {
        let asked = EngineConfig {
            choice: EngineChoice::Whisper {
                model: "/nonexistent/ggml-base.en.bin".into(),
            },
            lang: "en-US".into(),
        };
        let resolved = asked.resolve();
        assert_eq!(resolved.choice, EngineChoice::Pocketsphinx);
        assert_eq!(resolved.lang, "en-US");
    }
}
