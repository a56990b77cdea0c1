//! How much of Whisper's 30 s window the encoder needs: the LibriVox clips cut into
//! utterances by the VAD, each decoded with the full window and with windows fitted to the
//! utterance (`Window::Fit`, several paddings), printing the corpus WER, the decode time per
//! utterance and per second of audio, and the decode time of a 1 s and a 2 s interim.
//!
//! Run: `cargo run --release -p floorcast-captions --features whisper --example whisper_window`
//! (models in `$FLOORCAST_WHISPER_MODELS`, default `./data/whisper`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use captions::SAMPLE_RATE;
use captions::corpus::corpus_clips;
use captions::speech::Segmenter;
use captions::wer::{self, WerCount};
use captions::whisper::{WhisperModel, Window, clean};

fn main() -> anyhow::Result<()> {
    let root = std::env::var_os("FLOORCAST_WHISPER_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("data/whisper"));
    let clips = corpus_clips().map_err(anyhow::Error::msg)?;
    let mut utterances = Vec::new();
    for clip in &clips {
        let (_, samples) = captions::wav::read_pcm16_mono(&clip.wav).context("clip")?;
        let mut seg = Segmenter::default();
        let mut us = seg.push(&samples);
        us.extend(seg.push(&vec![0; SAMPLE_RATE as usize]));
        us.extend(seg.flush());
        for u in &us {
            println!(
                "{}: utterance {:.2}-{:.2} s of {:.2} s",
                clip.wav.file_stem().and_then(|s| s.to_str()).unwrap_or("?"),
                u.start as f64 / f64::from(SAMPLE_RATE),
                u.end as f64 / f64::from(SAMPLE_RATE),
                samples.len() as f64 / f64::from(SAMPLE_RATE)
            );
        }
        let us: Vec<Vec<f32>> = us
            .into_iter()
            .map(|u| u.samples.iter().map(|&s| f32::from(s) / 32768.0).collect())
            .collect();
        utterances.push((clip.reference.clone(), us));
    }
    let n: usize = utterances.iter().map(|(_, u)| u.len()).sum();
    let audio: f64 = utterances
        .iter()
        .flat_map(|(_, u)| u)
        .map(|u| u.len() as f64 / f64::from(SAMPLE_RATE))
        .sum();
    println!("{n} utterances, {audio:.1} s of speech");
    let windows = [
        Window::Full,
        Window::Fit { pad_ms: 1000 },
        Window::Fit { pad_ms: 2000 },
        Window::Fit { pad_ms: 4000 },
        Window::Fit { pad_ms: 8000 },
    ];
    println!(
        "{:<22} {:>6} {:>12} {:>12} {:>10} {:>10}",
        "window", "WER", "per utt ms", "s per s", "1 s ms", "2 s ms"
    );
    let model = WhisperModel::load(&root.join("tiny.en"), 1).map_err(|e| anyhow::anyhow!("{e}"))?;
    for window in windows {
        let mut total = WerCount::default();
        let mut spent = 0.0;
        for (reference, us) in &utterances {
            let mut text = Vec::new();
            for u in us {
                let t = Instant::now();
                let d = model
                    .transcribe(u, "en", window)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                spent += t.elapsed().as_secs_f64();
                if std::env::var_os("VERBOSE").is_some() {
                    println!("  {window:?}: {}", d.text);
                }
                if d.no_speech_prob <= 0.6 {
                    text.extend(clean(&d.text));
                }
            }
            total += wer::count(reference, &text.join(" "));
        }
        let short = |secs: usize| -> anyhow::Result<f64> {
            let u = &utterances[0].1[0];
            let u = &u[..u.len().min(secs * SAMPLE_RATE as usize)];
            let t = Instant::now();
            for _ in 0..3 {
                model
                    .transcribe(u, "en", window)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            Ok(t.elapsed().as_secs_f64() / 3.0 * 1000.0)
        };
        println!(
            "{:<22} {:>6.3} {:>12.0} {:>12.3} {:>10.0} {:>10.0}",
            format!("{window:?}"),
            total.rate(),
            spent / n as f64 * 1000.0,
            spent / audio,
            short(1)?,
            short(2)?
        );
    }
    Ok(())
}
