//! Energy-based voice activity detection over 20 ms frames of 16 kHz audio: it cuts speech
//! into utterances for engines that transcribe whole segments (whisper). An adaptive noise
//! floor makes it work in a quiet studio and a noisy hall alike; a maximum length forces a
//! cut in a speaker who never pauses, so captions keep coming and buffers stay bounded.

use crate::SAMPLE_RATE;

pub const FRAME: usize = SAMPLE_RATE as usize / 50;
/// Frames above the threshold before speech is declared (60 ms).
const START_FRAMES: u32 = 3;
/// Frames below it that end an utterance (500 ms).
const END_FRAMES: u32 = 25;
/// Audio kept before the detected start, so first syllables are not clipped (200 ms).
const PRE_ROLL_FRAMES: usize = 10;
/// An utterance is cut at this length (15 s).
pub const MAX_SEGMENT: usize = 15 * SAMPLE_RATE as usize;
/// Speech is this many times the noise floor's energy (about 9.5 dB).
const SPEECH_RATIO: f64 = 9.0;
/// Frames at the start that only teach the noise floor (500 ms).
const CALIBRATION_FRAMES: u64 = 25;
/// Energy below which any frame is silence, whatever the floor (about -66 dBFS).
const MIN_ENERGY: f64 = 250.0;

/// A finished utterance: its samples and where it lies in the stream (sample indices).
#[derive(Debug, PartialEq)]
pub struct Utterance {
    pub start: u64,
    pub end: u64,
    pub samples: Vec<i16>,
}

#[derive(Debug)]
pub struct Vad {
    noise: f64,
    position: u64,
    pending: Vec<i16>,
    pre_roll: std::collections::VecDeque<i16>,
    speech: Option<Vec<i16>>,
    speech_start: u64,
    loud: u32,
    quiet: u32,
}

impl Default for Vad {
    fn default() -> Self {
        Self {
            noise: MIN_ENERGY,
            position: 0,
            pending: Vec::with_capacity(FRAME),
            pre_roll: std::collections::VecDeque::with_capacity(PRE_ROLL_FRAMES * FRAME),
            speech: None,
            speech_start: 0,
            loud: 0,
            quiet: 0,
        }
    }
}

impl Vad {
    /// Feeds samples; returns the utterances they completed.
    pub fn push(&mut self, samples: &[i16]) -> Vec<Utterance> {
        let mut done = Vec::new();
        for &s in samples {
            self.pending.push(s);
            if self.pending.len() == FRAME {
                let frame = std::mem::take(&mut self.pending);
                done.extend(self.frame(&frame));
                self.pending = frame;
                self.pending.clear();
            }
        }
        done
    }

    /// The utterance in progress, if any (end of stream).
    pub fn flush(&mut self) -> Option<Utterance> {
        let samples = self.speech.take()?;
        Some(Utterance {
            start: self.speech_start,
            end: self.speech_start + samples.len() as u64,
            samples,
        })
    }

    fn frame(&mut self, frame: &[i16]) -> Option<Utterance> {
        let energy =
            frame.iter().map(|&s| (s as f64) * (s as f64)).sum::<f64>() / frame.len() as f64;
        let loud = energy > MIN_ENERGY && energy > self.noise * SPEECH_RATIO;
        let at = self.position;
        self.position += frame.len() as u64;
        match &mut self.speech {
            None => {
                // The floor follows quiet frames quickly and loud ones slowly, except while
                // it is being learnt.
                let calibrating = at < CALIBRATION_FRAMES * FRAME as u64;
                let rate = if calibrating || energy < self.noise {
                    0.2
                } else {
                    0.01
                };
                let loud = loud && !calibrating;
                self.noise = (self.noise + rate * (energy - self.noise)).max(MIN_ENERGY / 10.0);
                self.loud = if loud { self.loud + 1 } else { 0 };
                push_bounded(&mut self.pre_roll, frame, PRE_ROLL_FRAMES * FRAME);
                if self.loud >= START_FRAMES {
                    let samples: Vec<i16> = self.pre_roll.drain(..).collect();
                    self.speech_start = at + frame.len() as u64 - samples.len() as u64;
                    self.speech = Some(samples);
                    self.quiet = 0;
                }
                None
            }
            Some(speech) => {
                speech.extend_from_slice(frame);
                self.quiet = if loud { 0 } else { self.quiet + 1 };
                if self.quiet >= END_FRAMES || speech.len() >= MAX_SEGMENT {
                    self.loud = 0;
                    return self.flush();
                }
                None
            }
        }
    }
}

fn push_bounded(ring: &mut std::collections::VecDeque<i16>, frame: &[i16], cap: usize) {
    ring.extend(frame);
    while ring.len() > cap {
        ring.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(ms: usize, amp: f64) -> Vec<i16> {
        (0..ms * 16)
            .map(|i| {
                (amp * (i as f64 * 2.0 * std::f64::consts::PI * 300.0 / 16_000.0).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn a_burst_between_silences_is_one_utterance_with_pre_roll() {
        let mut vad = Vad::default();
        let mut out = vad.push(&tone(1_000, 20.0)); // quiet room
        out.extend(vad.push(&tone(2_000, 8_000.0)));
        assert!(out.is_empty(), "still speaking");
        out.extend(vad.push(&tone(1_000, 20.0)));
        assert_eq!(out.len(), 1);
        let u = &out[0];
        // Speech began at 1.0 s; the start includes up to 200 ms before detection.
        assert!((12_800..=16_000).contains(&u.start), "{}", u.start);
        // It ends 500 ms into the silence.
        assert!((56_000..=58_000).contains(&u.end), "{}", u.end);
        assert_eq!(u.samples.len() as u64, u.end - u.start);
    }

    #[test]
    fn silence_and_steady_noise_are_not_speech() {
        let mut vad = Vad::default();
        assert!(
            vad.push(&tone(3_000, 300.0)).is_empty(),
            "a hall's steady hum"
        );
        let mut vad = Vad::default();
        assert!(vad.push(&vec![0; 32_000]).is_empty(), "digital silence");
        assert!(vad.flush().is_none());
    }

    #[test]
    fn long_speech_is_cut_and_flush_returns_the_rest() {
        let mut vad = Vad::default();
        vad.push(&tone(1_000, 10.0));
        let out = vad.push(&tone(20_000, 8_000.0));
        assert_eq!(out.len(), 1);
        assert!(out[0].samples.len() >= MAX_SEGMENT);
        let rest = vad.flush().expect("the rest of the speech");
        assert!(!rest.samples.is_empty());
        assert_eq!(rest.start, out[0].end);
    }
}
