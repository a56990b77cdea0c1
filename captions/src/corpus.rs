//! The speech the engines are scored on: the five LibriVox clips of Debian's
//! `pocketsphinx-testdata`, with their reference transcripts. The engine tests and the ASR
//! bench read them through [`corpus_clips`], so the transcription format is parsed in one
//! place.

use std::path::{Path, PathBuf};

/// Where `pocketsphinx-testdata` installs the clips and their `transcription` file.
pub const CORPUS: &str = "/usr/share/pocketsphinx/test/data/librivox";

/// One clip: its 16 kHz mono WAV file and the words spoken in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clip {
    pub wav: PathBuf,
    pub reference: String,
}

/// The clips of [`CORPUS`], in the order of its transcription; an error saying what to
/// install when the corpus is absent.
pub fn corpus_clips() -> Result<Vec<Clip>, String> {
    let file = Path::new(CORPUS).join("transcription");
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("{} ({e}): install pocketsphinx-testdata", file.display()))?;
    Ok(parse_transcription(Path::new(CORPUS), &text))
}

/// Each line `<s> words </s> (fileid)` → `dir/fileid.wav` and its words; other lines are
/// skipped.
fn parse_transcription(dir: &Path, text: &str) -> Vec<Clip> {
    text.lines()
        .filter_map(|line| {
            let (words, id) = line.rsplit_once('(')?;
            let id = id.trim().trim_end_matches(')');
            let words = words.replace("<s>", "").replace("</s>", "");
            Some(Clip {
                wav: dir.join(format!("{id}.wav")),
                reference: words.trim().to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcription_line_gives_the_wav_and_its_words() {
        let clips = parse_transcription(
            Path::new("/c"),
            "<s> i had no time </s> (clip_0001)\nno id here\n",
        );
        assert_eq!(
            clips,
            [Clip {
                wav: "/c/clip_0001.wav".into(),
                reference: "i had no time".into()
            }]
        );
    }
}
