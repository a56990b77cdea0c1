//! Real-time figures for the embedded recognizer on the librivox clips of
//! `pocketsphinx-testdata`: each clip is fed as a live source would (a 20 ms frame every
//! 20 ms, then 1.5 s of silence), and we measure what a viewer waits for.
//!
//! - interim latency: speech onset (the first 20 ms frame louder than the clip's noise floor)
//!   → the first event with text, in wall-clock seconds from the moment that frame was pushed;
//! - final latency: speech end (the last loud frame) → the last final event;
//! - RTF: CPU seconds of the streaming thread (`stats().cpu_seconds`) / audio seconds;
//! - WER of the finals against the reference transcripts.
//!
//! Run: `cargo bench -p floorcast-captions --bench asr` (pocketsphinx), or with Whisper:
//! `ASR_BENCH_ENGINE=whisper cargo bench -p floorcast-captions --features whisper --bench asr`
//! (models in `$FLOORCAST_WHISPER_MODELS`, default `./data/whisper`; the RTF is then the CPU
//! time of the decoding worker, one thread). `ASR_BENCH_JSON=path` also writes the figures
//! as JSON. Goals: interim < 1 s, final < 1.5 s, RTF ≤ 0.3.
//!
//! Capacity: `ASR_BENCH_SESSIONS=N` runs N live sessions at once (each a thread feeding the
//! clips one after the other, starts staggered), sharing one engine of
//! `ASR_BENCH_WORKERS` decoding threads (default 1), and prints the same figures over all of
//! them: a node captions N sessions in real time while nothing is dropped and the final
//! latency stays within the goal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use captions::corpus::corpus_clips;
use captions::pocketsphinx::PocketsphinxRecognizer;
use captions::wer::{self, WerCount};
use captions::{CaptionEvent, Recognizer, SAMPLE_RATE};

const FRAME: usize = SAMPLE_RATE as usize / 50;
const FRAME_TIME: Duration = Duration::from_millis(20);
const TRAILING_SILENCE: Duration = Duration::from_millis(1500);
/// Events are polled this often between frames, so latencies are exact to about this.
const POLL_EVERY: Duration = Duration::from_millis(5);

const GOAL_INTERIM: f64 = 1.0;
const GOAL_FINAL: f64 = 1.5;
const GOAL_RTF: f64 = 0.3;

struct ClipResult {
    name: String,
    audio_seconds: f64,
    speech: (f64, f64),
    interim_latency: Option<f64>,
    final_latency: Option<f64>,
    rtf: f64,
    cpu_seconds: f64,
    dropped_seconds: f64,
    wer: WerCount,
    hypothesis: String,
}

fn main() {
    let clips = match corpus_clips() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("asr bench skipped: {e}");
            return;
        }
    };
    let sessions = env_number("ASR_BENCH_SESSIONS", 1).max(1);
    let outcome: Result<Vec<ClipResult>, String> = std::thread::scope(|scope| {
        let clips = &clips;
        let handles: Vec<_> = (0..sessions)
            .map(|i| {
                scope.spawn(move || {
                    // Sessions in lockstep would pause together; a room's speakers do not.
                    std::thread::sleep(Duration::from_millis(370 * i as u64));
                    run_session(clips)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| "a session thread panicked".to_owned())??,
            );
        }
        Ok(all)
    });
    match outcome {
        Ok(results) => report(&results, sessions),
        Err(e) => eprintln!("asr bench: {e}"),
    }
}

/// One live session: the clips one after the other.
fn run_session(clips: &[captions::corpus::Clip]) -> Result<Vec<ClipResult>, String> {
    clips
        .iter()
        .map(|clip| {
            run_clip(&clip.wav, &clip.reference).map_err(|e| format!("{}: {e}", clip.wav.display()))
        })
        .collect()
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn engine_name() -> String {
    std::env::var("ASR_BENCH_ENGINE").unwrap_or_else(|_| "pocketsphinx".to_owned())
}

/// First and last 20 ms frame louder than four times the clip's noise floor (its 10th
/// percentile frame RMS), and at least RMS 300 so near-digital silence does not count.
fn speech_frames(samples: &[i16]) -> Option<(usize, usize)> {
    let rms: Vec<f64> = samples
        .chunks(FRAME)
        .map(|f| (f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len() as f64).sqrt())
        .collect();
    let mut sorted = rms.clone();
    sorted.sort_by(f64::total_cmp);
    let floor = sorted.get(sorted.len() / 10).copied()?;
    let threshold = (4.0 * floor).max(300.0);
    let first = rms.iter().position(|&r| r > threshold)?;
    let last = rms.iter().rposition(|&r| r > threshold)?;
    Some((first, last))
}

fn run_clip(path: &Path, reference: &str) -> Result<ClipResult, String> {
    let (rate, samples) = captions::wav::read_pcm16_mono(path).map_err(|e| e.to_string())?;
    if rate != SAMPLE_RATE {
        return Err(format!("{rate} Hz, want {SAMPLE_RATE}"));
    }
    let (onset_frame, end_frame) = speech_frames(&samples).ok_or("no speech found")?;
    let mut asr = recognizer()?;

    let silence = vec![0i16; (TRAILING_SILENCE.as_millis() as usize) * FRAME / 20];
    let frames: Vec<&[i16]> = samples.chunks(FRAME).chain(silence.chunks(FRAME)).collect();
    let mut events: Vec<(Instant, CaptionEvent)> = Vec::new();
    let mut pushed_at = vec![None; frames.len()];
    let start = Instant::now();
    for (i, frame) in frames.iter().enumerate() {
        // A live source hands over a frame once it has been fully captured.
        let due = start + FRAME_TIME * (i as u32 + 1);
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::sleep(POLL_EVERY.min(due - now));
            let polled = asr.poll_events();
            events.extend(polled.into_iter().map(|e| (Instant::now(), e)));
        }
        pushed_at[i] = Some(Instant::now());
        asr.push_pcm(frame).map_err(|e| e.to_string())?;
    }
    let polled = asr.poll_events();
    events.extend(polled.into_iter().map(|e| (Instant::now(), e)));
    let finished = asr.finish();
    events.extend(finished.into_iter().map(|e| (Instant::now(), e)));
    let stats = asr.stats();

    let since = |frame: usize, at: Instant| {
        pushed_at[frame].map(|pushed| at.saturating_duration_since(pushed).as_secs_f64())
    };
    let interim_latency = events
        .iter()
        .find(|(_, e)| !e.text.is_empty())
        .and_then(|(at, _)| since(onset_frame, *at));
    let final_latency = events
        .iter()
        .rev()
        .find(|(_, e)| e.is_final && !e.text.is_empty())
        .and_then(|(at, _)| since(end_frame, *at));
    let finals: Vec<&str> = events
        .iter()
        .filter(|(_, e)| e.is_final)
        .map(|(_, e)| e.text.as_str())
        .collect();
    let hypothesis = finals.join(" ");
    let frame_seconds = FRAME as f64 / f64::from(SAMPLE_RATE);
    Ok(ClipResult {
        name: path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_owned(),
        audio_seconds: stats.audio_seconds,
        speech: (
            onset_frame as f64 * frame_seconds,
            (end_frame + 1) as f64 * frame_seconds,
        ),
        interim_latency,
        final_latency,
        rtf: stats.cpu_seconds / stats.audio_seconds.max(f64::EPSILON),
        cpu_seconds: stats.cpu_seconds,
        dropped_seconds: stats.dropped_seconds,
        wer: wer::count(reference, &hypothesis),
        hypothesis,
    })
}

/// The engine `ASR_BENCH_ENGINE` names (`pocketsphinx`, the default, or `whisper`).
fn recognizer() -> Result<Box<dyn Recognizer>, String> {
    match std::env::var("ASR_BENCH_ENGINE").as_deref() {
        Err(_) | Ok("pocketsphinx") => PocketsphinxRecognizer::new("en-US")
            .map(|r| Box::new(r) as Box<dyn Recognizer>)
            .map_err(|e| e.to_string()),
        #[cfg(feature = "whisper")]
        Ok("whisper") => {
            use std::sync::{Arc, OnceLock};
            static ENGINE: OnceLock<Result<Arc<captions::whisper::WhisperEngine>, String>> =
                OnceLock::new();
            let engine = ENGINE.get_or_init(|| {
                let root = std::env::var_os("FLOORCAST_WHISPER_MODELS")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/whisper")
                    });
                let workers = env_number("ASR_BENCH_WORKERS", 1).max(1);
                captions::whisper::WhisperEngine::start(&root, "en-US", workers, 2 * workers)
                    .map_err(|e| e.to_string())
            });
            let engine = engine.as_ref().map_err(Clone::clone)?;
            Ok(Box::new(engine.recognizer("en-US")))
        }
        Ok(other) => Err(format!(
            "ASR_BENCH_ENGINE={other}: pocketsphinx, or whisper (built with --features whisper)"
        )),
    }
}

/// Nearest-rank percentile of the values present; `None` if there are none.
fn percentile(values: &[Option<f64>], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v.get(rank - 1).copied()
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn report(results: &[ClipResult], sessions: usize) {
    if sessions > 1 {
        println!(
            "{sessions} sessions at once, {} decoding workers",
            env_number("ASR_BENCH_WORKERS", 1).max(1)
        );
    }
    println!(
        "{:<40} {:>6} {:>11} {:>8} {:>8} {:>5} {:>6}  hypothesis",
        "clip", "audio", "speech", "interim", "final", "RTF", "WER"
    );
    for r in results.iter().filter(|_| sessions == 1) {
        println!(
            "{:<40} {:>5.2}s {:>5.2}-{:<5.2} {:>7}s {:>7}s {:>5.2} {:>5.1}%  {}",
            r.name,
            r.audio_seconds,
            r.speech.0,
            r.speech.1,
            secs(r.interim_latency),
            secs(r.final_latency),
            r.rtf,
            100.0 * r.wer.rate(),
            r.hypothesis
        );
    }
    let wer = results
        .iter()
        .fold(WerCount::default(), |acc, r| acc + r.wer);
    let audio: f64 = results.iter().map(|r| r.audio_seconds).sum();
    let cpu: f64 = results.iter().map(|r| r.cpu_seconds).sum();
    let dropped: f64 = results.iter().map(|r| r.dropped_seconds).sum();
    let rtf = cpu / audio.max(f64::EPSILON);
    let interim: Vec<Option<f64>> = results.iter().map(|r| r.interim_latency).collect();
    let finals: Vec<Option<f64>> = results.iter().map(|r| r.final_latency).collect();
    let (interim_p50, interim_max) = (percentile(&interim, 50.0), percentile(&interim, 100.0));
    let (final_p50, final_max) = (percentile(&finals, 50.0), percentile(&finals, 100.0));
    let final_p95 = percentile(&finals, 95.0);
    println!(
        "corpus: WER {:.1}% ({}/{} words) | interim latency p50 {}s max {}s (goal < {GOAL_INTERIM} s) \
         | final latency p50 {}s p95 {}s max {}s (goal < {GOAL_FINAL} s) | RTF {rtf:.3} (goal ≤ {GOAL_RTF}) \
         | dropped {dropped:.2}s",
        100.0 * wer.rate(),
        wer.errors,
        wer.ref_words,
        secs(interim_p50),
        secs(interim_max),
        secs(final_p50),
        secs(final_p95),
        secs(final_max),
    );
    println!(
        "command: ASR_BENCH_ENGINE={} ASR_BENCH_SESSIONS={sessions} cargo bench -p floorcast-captions --features whisper --bench asr",
        engine_name()
    );

    let Some(path) = std::env::var_os("ASR_BENCH_JSON") else {
        return;
    };
    let clips: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            serde_json::json!({
                "clip": r.name,
                "audio_seconds": r.audio_seconds,
                "speech_start": r.speech.0,
                "speech_end": r.speech.1,
                "interim_latency_seconds": r.interim_latency,
                "final_latency_seconds": r.final_latency,
                "rtf": r.rtf,
                "dropped_seconds": r.dropped_seconds,
                "wer": r.wer.rate(),
                "wer_errors": r.wer.errors,
                "ref_words": r.wer.ref_words,
                "hypothesis": r.hypothesis,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "engine": engine_name(),
        "sessions": sessions,
        "command": "cargo bench -p floorcast-captions --features whisper --bench asr",
        "clips": clips,
        "corpus": {
            "wer": wer.rate(),
            "wer_errors": wer.errors,
            "ref_words": wer.ref_words,
            "interim_latency_p50": interim_p50,
            "interim_latency_max": interim_max,
            "final_latency_p50": final_p50,
            "final_latency_p95": final_p95,
            "final_latency_max": final_max,
            "rtf": rtf,
            "dropped_seconds": dropped,
        },
        "goals": { "interim_latency": GOAL_INTERIM, "final_latency": GOAL_FINAL, "rtf": GOAL_RTF },
    });
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    if let Err(e) = std::fs::write(&path, text + "\n") {
        eprintln!("cannot write {}: {e}", Path::new(&path).display());
    }
}
