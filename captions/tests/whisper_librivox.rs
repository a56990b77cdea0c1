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

use captions::corpus::{Clip, corpus_clips};
use captions::wer::{self, WerCount};
use captions::whisper::WhisperEngine;
use captions::{CaptionEvent, Recognizer, SAMPLE_RATE};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

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

/// The LibriVox clips, or `None` (skipped, or a failure under FLOORCAST_REQUIRE_WHISPER).
fn corpus() -> Option<Vec<Clip>> {
    corpus_clips().map_err(|why| skip(&why)).ok()
}

/// The clips, when the Whisper model `name` is installed in `root` too.
fn model_and_corpus(root: &Path, name: &str) -> Option<Vec<Clip>> {
    if !root.join(name).join("model.bin").is_file() {
        skip(&format!("no whisper {name} model in {}", root.display()));
        return None;
    }
    corpus()
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
    let Some(clips) = corpus() else { return };
    assert_eq!(clips.len(), 5, "the corpus has five clips");
    let _one = exclusive();
    let mut total = WerCount::default();
    let (mut audio, mut cpu, mut dropped, mut interims) = (0.0, 0.0, 0.0, 0);
    for clip in &clips {
        let (path, reference) = (&clip.wav, &clip.reference);
        // As the server runs it: Whisper, with pocketsphinx standing by.
        let mut asr = captions::hybrid::HybridRecognizer::new(
            engine.recognizer("en-US"),
            "en-US",
            captions::fallback::FallbackPolicy::default(),
        );
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
    let Some(clips) = model_and_corpus(&root, "base") else {
        return;
    };
    let _one = exclusive();
    let model = captions::whisper::WhisperModel::load(&root.join("base"), 1).expect("base loads");
    let last = &clips[clips.len() - 1];
    let (path, reference) = (&last.wav, &last.reference);
    let (_, samples) = captions::wav::read_pcm16_mono(path).expect("clip reads");
    let audio: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let started = std::time::Instant::now();
    let decoded = model
        .transcribe(&audio, "en-GB", captions::whisper::FINAL_WINDOW)
        .expect("decodes");
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

/// Whisper behind: sessions that find its one worker busy take pocketsphinx for their new
/// utterances, say so in their status, keep their captions in order, and go back to Whisper
/// once it has caught up.
#[test]
fn sessions_fall_back_to_pocketsphinx_while_whisper_is_behind() {
    use captions::fallback::FallbackPolicy;
    use captions::hybrid::HybridRecognizer;
    let root = models();
    let Some(clips) = model_and_corpus(&root, "tiny.en") else {
        return;
    };
    if captions::pocketsphinx::PocketsphinxRecognizer::new("en-US").is_err() {
        eprintln!("skipped: no pocketsphinx element");
        return;
    }
    let _one = exclusive();
    // Its own engine: one worker, one waiting utterance.
    let engine = WhisperEngine::start(&root, "en-US", 1, 1).expect("the model loads");
    let policy = FallbackPolicy {
        calm: std::time::Duration::from_secs(2),
        ..FallbackPolicy::default()
    };
    let mut sessions: Vec<HybridRecognizer> = (0..4)
        .map(|_| HybridRecognizer::new(engine.recognizer("en-US"), "en-US", policy))
        .collect();
    let (_, speech) = captions::wav::read_pcm16_mono(&clips[0].wav).expect("clip reads");
    let pause = vec![0i16; SAMPLE_RATE as usize];
    let mut events: Vec<Vec<CaptionEvent>> = vec![Vec::new(); sessions.len()];
    let mut fell_back = vec![false; sessions.len()];
    // Four sessions speak at once, three utterances each, at 4x real time: more than one
    // worker decodes.
    for _ in 0..3 {
        for chunk in speech.chunks(CHUNK).chain(pause.chunks(CHUNK)) {
            for (i, s) in sessions.iter_mut().enumerate() {
                s.push_pcm(chunk).expect("push");
                events[i].extend(s.poll_events());
                fell_back[i] |= s.status().fallback;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    assert!(fell_back.iter().any(|&f| f), "no session fell back");
    // Then silence in real time: Whisper catches up and every session goes back to it.
    let mut back = false;
    for _ in 0..(8 * 50) {
        for (i, s) in sessions.iter_mut().enumerate() {
            s.push_pcm(&pause[..CHUNK]).expect("push");
            events[i].extend(s.poll_events());
        }
        back = sessions.iter().all(|s| !s.status().fallback);
        if back {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(back, "still in fallback after 8 s of silence");
    // How many captions survive an overload depends on the machine; that they come in
    // order, and that some come, does not.
    for (i, s) in sessions.iter_mut().enumerate() {
        events[i].extend(s.finish());
        assert_eq!(s.status().engine, "whisper");
        let finals: Vec<&CaptionEvent> = events[i].iter().filter(|e| e.is_final).collect();
        println!(
            "session {i}: fell back {}, {} events, {} finals: {:?}",
            fell_back[i],
            events[i].len(),
            finals.len(),
            finals.iter().map(|e| e.text.as_str()).collect::<Vec<_>>()
        );
        check_order(&events[i]);
        for w in finals.windows(2) {
            assert!(w[0].start <= w[1].start, "{:?} then {:?}", w[0], w[1]);
        }
    }
    println!("whisper dropped {} utterances", engine.dropped_utterances());
    assert!(
        events.iter().flatten().any(|e| e.is_final),
        "no caption at all"
    );
}
