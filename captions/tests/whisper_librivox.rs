//! Whisper (CTranslate2) on real speech and on non-speech: the five LibriVox clips shipped
//! with `pocketsphinx-testdata` must come out with a corpus WER ≤ 0.10, and 20 s of silence
//! and 20 s of music (GStreamer `audiotestsrc`) with no caption at all.
//!
//! The models come from `tools/fetch_whisper_models.py` (run by `make test`), in
//! `$FLOORCAST_WHISPER_MODELS` or `./data/whisper` at the workspace root. Without them (or
//! without the corpus) the tests say so and pass, unless `FLOORCAST_REQUIRE_WHISPER=1`.
#![cfg(feature = "whisper")]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use captions::wer::{self, WerCount};
use captions::whisper::WhisperEngine;
use captions::{CaptionEvent, Recognizer, SAMPLE_RATE};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

const CORPUS: &str = "/usr/share/pocketsphinx/test/data/librivox";
const CHUNK: usize = SAMPLE_RATE as usize / 50; // 20 ms
const MAX_CORPUS_WER: f64 = 0.10;

/// One engine for the whole test binary (as on a node), used by one test at a time so the
/// real-time figures are not two tests sharing a core.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

fn models() -> PathBuf {
    std::env::var_os("FLOORCAST_WHISPER_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/whisper"))
}

fn skip(why: &str) -> Option<Arc<WhisperEngine>> {
    assert!(
        std::env::var("FLOORCAST_REQUIRE_WHISPER").as_deref() != Ok("1"),
        "FLOORCAST_REQUIRE_WHISPER=1 and {why}"
    );
    eprintln!("skipped: {why}");
    None
}

fn engine() -> Option<Arc<WhisperEngine>> {
    static ENGINE: OnceLock<Option<Arc<WhisperEngine>>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let root = models();
            if !root.join("tiny.en/model.bin").is_file() {
                return skip(&format!(
                    "no whisper model in {} (tools/fetch_whisper_models.py)",
                    root.display()
                ));
            }
            Some(WhisperEngine::start(&root, "en-US", 1, 2).expect("the model loads"))
        })
        .clone()
}

/// `(wav path, reference words)` for each line `<s> words </s> (fileid)`.
fn clips() -> Option<Vec<(PathBuf, String)>> {
    let transcription = std::fs::read_to_string(Path::new(CORPUS).join("transcription")).ok()?;
    Some(
        transcription
            .lines()
            .filter_map(|line| {
                let (text, id) = line.rsplit_once('(')?;
                let id = id.trim().trim_end_matches(')');
                let text = text.replace("<s>", "").replace("</s>", "");
                Some((
                    Path::new(CORPUS).join(format!("{id}.wav")),
                    text.trim().to_owned(),
                ))
            })
            .collect(),
    )
}

/// Pushes `samples` then 1 s of silence in 20 ms chunks, paced at `pace` times real time,
/// and returns every event.
fn run(asr: &mut dyn Recognizer, samples: &[i16], pace: u32) -> Vec<CaptionEvent> {
    let silence = vec![0i16; SAMPLE_RATE as usize];
    let mut events = Vec::new();
    for chunk in samples.chunks(CHUNK).chain(silence.chunks(CHUNK)) {
        asr.push_pcm(chunk).expect("push");
        events.extend(asr.poll_events());
        std::thread::sleep(std::time::Duration::from_millis(20 / u64::from(pace)));
    }
    events.extend(asr.finish());
    events
}

#[test]
fn librivox_clips_are_recognised() {
    let Some(engine) = engine() else { return };
    let Some(clips) = clips() else {
        skip(&format!("{CORPUS} not installed (pocketsphinx-testdata)"));
        return;
    };
    assert_eq!(clips.len(), 5, "the corpus has five clips");
    let _one = exclusive();
    let mut total = WerCount::default();
    let (mut audio, mut cpu, mut dropped, mut interims) = (0.0, 0.0, 0.0, 0);
    for (path, reference) in &clips {
        let mut asr = engine.recognizer("en-US");
        let (rate, samples) = captions::wav::read_pcm16_mono(path).expect("clip reads");
        assert_eq!(rate, SAMPLE_RATE);
        let events = run(&mut asr, &samples, 2);
        let stats = asr.stats();
        audio += stats.audio_seconds;
        cpu += stats.cpu_seconds;
        dropped += stats.dropped_seconds;
        assert!(events.iter().all(|e| !e.text.is_empty()));
        interims += events.iter().filter(|e| !e.is_final).count();
        check_order(&events);
        let hypothesis: Vec<&str> = events
            .iter()
            .filter(|e| e.is_final)
            .map(|e| e.text.as_str())
            .collect();
        let hypothesis = hypothesis.join(" ");
        let count = wer::count(reference, &hypothesis);
        total += count;
        println!(
            "{:<44} {:>4} words {:>5.1}%  {hypothesis}",
            path.file_stem().and_then(|s| s.to_str()).unwrap_or("?"),
            count.ref_words,
            100.0 * count.rate()
        );
    }
    println!(
        "corpus: {} words, WER {:.3}, real-time factor {:.3} (one thread, {model}), \
         {interims} interims, dropped {dropped:.1}s",
        total.ref_words,
        total.rate(),
        cpu / audio,
        model = engine.model_name()
    );
    assert!(total.ref_words > 50);
    assert_eq!(dropped, 0.0, "an utterance was dropped");
    assert!(
        total.rate() <= MAX_CORPUS_WER,
        "corpus WER {:.3} above {MAX_CORPUS_WER}",
        total.rate()
    );
}

/// Interims come before the final of their segment, with the final's start; segments rise.
fn check_order(events: &[CaptionEvent]) {
    let mut closed = 0;
    for (i, e) in events.iter().enumerate() {
        assert!(e.segment_id > closed, "{e:?} after the final of {closed}");
        if e.is_final {
            closed = e.segment_id;
        } else if let Some(f) = events[i..]
            .iter()
            .find(|f| f.is_final && f.segment_id == e.segment_id)
        {
            assert_eq!(f.start, e.start, "{e:?} / {f:?}");
        }
    }
}

/// 16 kHz mono PCM from a GStreamer source description ending in an audio source.
fn gstreamer_pcm(source: &str, seconds: u32) -> Vec<i16> {
    gst::init().expect("GStreamer");
    let description = format!(
        "{source} ! audioconvert ! audioresample \
         ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&description)
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let want = (seconds * SAMPLE_RATE) as usize;
    let mut pcm = Vec::with_capacity(want);
    while pcm.len() < want {
        let Ok(sample) = sink.pull_sample() else {
            break;
        };
        let Some(buffer) = sample.buffer() else {
            continue;
        };
        let Ok(map) = buffer.map_readable() else {
            continue;
        };
        pcm.extend(
            map.chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
    }
    let _ = pipeline.set_state(gst::State::Null);
    pcm.truncate(want);
    assert_eq!(pcm.len(), want, "{source}: short");
    pcm
}

#[test]
fn twenty_seconds_of_silence_give_no_caption() {
    let Some(engine) = engine() else { return };
    let silence = gstreamer_pcm("audiotestsrc wave=silence num-buffers=900", 20);
    let _one = exclusive();
    let mut asr = engine.recognizer("en-US");
    let events = run(&mut asr, &silence, 20);
    assert!(events.is_empty(), "captions from silence: {events:?}");
}

#[test]
fn twenty_seconds_of_music_give_no_caption() {
    let Some(engine) = engine() else { return };
    // A chord over a pulsing bass and soft noise: tonal, rhythmic, loud enough for the VAD.
    let music = gstreamer_pcm(
        "audiotestsrc wave=sine freq=261.63 volume=0.2 num-buffers=900 ! mix. \
         audiotestsrc wave=sine freq=329.63 volume=0.15 num-buffers=900 ! mix. \
         audiotestsrc wave=sine freq=392.0 volume=0.15 num-buffers=900 ! mix. \
         audiotestsrc wave=square freq=65.4 volume=0.1 num-buffers=900 ! mix. \
         audiotestsrc wave=pink-noise volume=0.05 num-buffers=900 ! mix. \
         audiomixer name=mix",
        20,
    );
    let _one = exclusive();
    let mut asr = engine.recognizer("en-US");
    let events = run(&mut asr, &music, 20);
    assert!(events.is_empty(), "captions from music: {events:?}");
}

#[test]
fn the_multilingual_model_transcribes_with_the_language_given() {
    let root = models();
    if !root.join("base/model.bin").is_file() {
        skip(&format!("no whisper base model in {}", root.display()));
        return;
    }
    let Some(clips) = clips() else {
        skip(&format!("{CORPUS} not installed (pocketsphinx-testdata)"));
        return;
    };
    let _one = exclusive();
    let model = captions::whisper::WhisperModel::load(&root.join("base"), 1).expect("base loads");
    let (path, reference) = &clips[clips.len() - 1];
    let (_, samples) = captions::wav::read_pcm16_mono(path).expect("clip reads");
    let audio: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let started = std::time::Instant::now();
    let decoded = model.transcribe(&audio, "en-GB").expect("decodes");
    println!(
        "base: {:?} (no-speech {:.2}) in {:.2}s for {:.2}s of audio",
        decoded.text,
        decoded.no_speech_prob,
        started.elapsed().as_secs_f64(),
        audio.len() as f64 / f64::from(SAMPLE_RATE)
    );
    assert!(
        wer::count(reference, &decoded.text).rate() <= 0.2,
        "{decoded:?}"
    );
}
