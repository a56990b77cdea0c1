//! Utterances for Whisper, cut by a neural voice-activity detector (`earshot`, pure Rust,
//! 16 ms frames): speech starts after a few voiced frames, ends at a pause, and is cut by
//! force after [`MAX_UTTERANCE`] of unbroken speech so finals keep coming. Unlike an energy
//! threshold, the detector scores music, tones and applause low, so they reach no decoder;
//! and the utterance still growing is readable ([`Segmenter::current`]) for interim decodes.

use std::collections::VecDeque;

use crate::SAMPLE_RATE;

/// A finished utterance: its samples and where it lies in the stream (sample indices).
#[derive(Debug, PartialEq)]
pub struct Utterance {
    pub start: u64,
    pub end: u64,
    pub samples: Vec<i16>,
}

/// earshot's frame: 256 samples, 16 ms.
pub const FRAME: usize = 256;
/// Frames scoring above [`START_SCORE`] that open an utterance (48 ms).
const START_FRAMES: u32 = 3;
const START_SCORE: f32 = 0.5;
/// While in speech, frames scoring below [`KEEP_SCORE`] for this long end it (496 ms).
const END_FRAMES: u32 = 31;
const KEEP_SCORE: f32 = 0.3;
/// Quiet frames after which [`Segmenter::pausing`] says so (96 ms).
const PAUSING_FRAMES: u32 = 6;
/// Audio kept before the detected start, so first syllables are not clipped (~200 ms).
const PRE_ROLL: usize = 13 * FRAME;
/// The forced cut of a speaker who does not pause.
pub const MAX_UTTERANCE: usize = 8 * SAMPLE_RATE as usize;
/// An utterance shorter than this is a click or a cough, not words (~200 ms with pre-roll
/// and the trailing pause excluded).
const MIN_VOICED_FRAMES: u32 = 8;

/// A frame no louder than this (RMS, -70 dBFS) is silence, whatever the detector says.
const SILENCE_RMS: f64 = 10.0;

fn is_digital_silence(frame: &[i16]) -> bool {
    let energy: f64 = frame.iter().map(|&s| f64::from(s).powi(2)).sum();
    energy <= SILENCE_RMS * SILENCE_RMS * frame.len() as f64
}

pub struct Segmenter {
    detector: Box<earshot::Detector>,
    pending: Vec<i16>,
    position: u64,
    pre_roll: VecDeque<i16>,
    speech: Option<Vec<i16>>,
    start: u64,
    loud: u32,
    quiet: u32,
    voiced: u32,
}

impl Default for Segmenter {
    fn default() -> Self {
        Self {
            detector: earshot::Detector::default_boxed(),
            pending: Vec::with_capacity(FRAME),
            position: 0,
            pre_roll: VecDeque::with_capacity(PRE_ROLL + FRAME),
            speech: None,
            start: 0,
            loud: 0,
            quiet: 0,
            voiced: 0,
        }
    }
}

impl Segmenter {
    /// Feeds samples; returns the utterances they completed (at a pause, or cut by force).
    pub fn push(&mut self, samples: &[i16]) -> Vec<Utterance> {
        let mut done = Vec::new();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (FRAME - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == FRAME {
                let frame = std::mem::take(&mut self.pending);
                done.extend(self.frame(&frame));
                self.pending = frame;
                self.pending.clear();
            }
        }
        done
    }

    /// The speaker has been quiet for the last ~100 ms of the utterance still growing: a
    /// pause may be starting, and its end decides whether the utterance is over.
    pub fn pausing(&self) -> bool {
        self.speech.is_some() && self.quiet >= PAUSING_FRAMES
    }

    /// The utterance still growing, if speech is on: its start (sample index) and samples.
    pub fn current(&self) -> Option<(u64, &[i16])> {
        self.speech.as_deref().map(|s| (self.start, s))
    }

    /// End of stream: the utterance in progress, if any.
    pub fn flush(&mut self) -> Option<Utterance> {
        let mut speech = self.speech.take()?;
        speech.extend_from_slice(&self.pending);
        self.position += self.pending.len() as u64;
        self.pending.clear();
        self.finish(speech)
    }

    fn frame(&mut self, frame: &[i16]) -> Option<Utterance> {
        // The detector scores digital silence (a decoder's output between talk spurts, a
        // muted mixer) as it likes, sometimes high enough to hold an utterance open until
        // the next sound: nothing below the floor is speech. It still hears the frame, so
        // its memory (a few frames, a recurrent state) follows the stream.
        let score = self.detector.predict_i16(frame);
        let score = if is_digital_silence(frame) {
            0.0
        } else {
            score
        };
        self.position += FRAME as u64;
        match &mut self.speech {
            None => {
                self.pre_roll.extend(frame.iter().copied());
                while self.pre_roll.len() > PRE_ROLL {
                    self.pre_roll.pop_front();
                }
                self.loud = if score > START_SCORE {
                    self.loud + 1
                } else {
                    0
                };
                if self.loud >= START_FRAMES {
                    let speech: Vec<i16> = self.pre_roll.drain(..).collect();
                    self.start = self.position - speech.len() as u64;
                    self.speech = Some(speech);
                    self.quiet = 0;
                    self.voiced = self.loud;
                    self.loud = 0;
                }
                None
            }
            Some(speech) => {
                speech.extend_from_slice(frame);
                if score < KEEP_SCORE {
                    self.quiet += 1;
                } else {
                    self.quiet = 0;
                    self.voiced += 1;
                }
                if self.quiet >= END_FRAMES || speech.len() >= MAX_UTTERANCE {
                    let speech = self.speech.take().unwrap_or_default();
                    return self.finish(speech);
                }
                None
            }
        }
    }

    fn finish(&mut self, samples: Vec<i16>) -> Option<Utterance> {
        let voiced = std::mem::take(&mut self.voiced);
        self.quiet = 0;
        let start = self.start;
        let end = start + samples.len() as u64;
        (voiced >= MIN_VOICED_FRAMES).then_some(Utterance {
            start,
            end,
            samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A LibriVox clip of `pocketsphinx-testdata` (one sentence, 3.3 s), if installed.
    fn spoken_clip() -> Option<Vec<i16>> {
        let clip = std::path::Path::new(crate::corpus::CORPUS)
            .join("sense_and_sensibility_01_austen_64kb-0930.wav");
        crate::wav::read_pcm16_mono(clip).ok().map(|(_, s)| s)
    }

    #[test]
    fn silence_is_not_speech() {
        let mut s = Segmenter::default();
        assert!(s.push(&vec![0; 5 * SAMPLE_RATE as usize]).is_empty());
        assert!(s.current().is_none());
        assert!(s.flush().is_none());
    }

    #[test]
    fn a_spoken_clip_is_one_utterance_or_more_with_its_words() {
        let Some(samples) = spoken_clip() else {
            return; // pocketsphinx-testdata not installed
        };
        let mut s = Segmenter::default();
        let mut utterances = s.push(&samples);
        utterances.extend(s.push(&vec![0; SAMPLE_RATE as usize]));
        utterances.extend(s.flush());
        assert!(!utterances.is_empty());
        let voiced: usize = utterances.iter().map(|u| u.samples.len()).sum();
        assert!(voiced > samples.len() / 2, "{voiced} of {}", samples.len());
        for u in &utterances {
            assert_eq!(u.end - u.start, u.samples.len() as u64);
            assert!(u.samples.len() <= MAX_UTTERANCE);
        }
    }

    #[test]
    fn digital_silence_ends_an_utterance_at_the_pause() {
        let Some(samples) = spoken_clip() else {
            return; // pocketsphinx-testdata not installed
        };
        let mut s = Segmenter::default();
        let mut utterances = s.push(&samples);
        let second = SAMPLE_RATE as usize;
        utterances.extend(s.push(&vec![0; second]));
        let last = utterances.last().expect("cut within 1 s of silence");
        let past_the_clip = last.end as usize - samples.len();
        // The pause is END_FRAMES (≈ 0.5 s) of quiet, some of it the clip's own tail.
        assert!(past_the_clip <= second * 6 / 10, "{past_the_clip} samples");
    }

    #[test]
    fn odd_chunk_sizes_keep_stream_time() {
        let mut s = Segmenter::default();
        for _ in 0..100 {
            s.push(&[0; 333]);
        }
        assert_eq!(s.position + s.pending.len() as u64, 33_300);
    }
}
