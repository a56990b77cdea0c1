//! The embedded engine on real speech: the five librivox clips shipped with
//! `pocketsphinx-testdata`, with their reference transcripts. Skips (passing) when the test
//! data or the GStreamer element is not installed.

use std::sync::{Mutex, MutexGuard, PoisonError};

use captions::corpus::corpus_clips;
use captions::pocketsphinx::PocketsphinxRecognizer;
use captions::wer::{self, WerCount};
use captions::{CaptionEvent, Recognizer, RecognizerError, SAMPLE_RATE};

const CHUNK: usize = SAMPLE_RATE as usize / 50; // 20 ms
const MAX_CORPUS_WER: f64 = 0.45;

/// Each test runs a decoder that wants a whole core; on a small machine, tests running side
/// by side would make each other drop audio.
static ONE_ENGINE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    ONE_ENGINE_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn recognizer() -> Option<PocketsphinxRecognizer> {
    match PocketsphinxRecognizer::new("en-US") {
        Ok(r) => Some(r),
        Err(RecognizerError::Unavailable(why)) => {
            eprintln!("skipped: {why}");
            None
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The words of all finals, in order.
fn final_text(events: &[CaptionEvent]) -> String {
    let finals: Vec<&str> = events
        .iter()
        .filter(|e| e.is_final)
        .map(|e| e.text.as_str())
        .collect();
    finals.join(" ")
}

#[test]
fn librivox_clips_are_recognised() {
    let clips = match corpus_clips() {
        Ok(clips) => clips,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    assert_eq!(clips.len(), 5, "the corpus has five clips");
    let _engine = exclusive();
    let mut total = WerCount::default();
    let mut dropped = 0.0;
    let mut audio_total = 0.0;
    println!("{:<44} {:>6} {:>6}  hypothesis", "clip", "words", "WER");
    for clip in &clips {
        let (path, reference) = (&clip.wav, &clip.reference);
        let Some(mut asr) = recognizer() else { return };
        let (rate, samples) = captions::wav::read_pcm16_mono(path).expect("clip reads");
        assert_eq!(rate, SAMPLE_RATE);
        let mut events = Vec::new();
        let silence = vec![0i16; SAMPLE_RATE as usize];
        for chunk in samples.chunks(CHUNK).chain(silence.chunks(CHUNK)) {
            asr.push_pcm(chunk).expect("push");
            events.extend(asr.poll_events());
            // Paced at twice real time: faster than a live feed, slow enough for the decoder.
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        events.extend(asr.finish());
        let stats = asr.stats();
        let audio = (samples.len() + silence.len()) as f64 / f64::from(SAMPLE_RATE);
        assert!((stats.audio_seconds - audio).abs() < 1e-6);
        dropped += stats.dropped_seconds;
        audio_total += audio;
        assert!(
            stats.cpu_seconds > 0.0,
            "the streaming thread's CPU time is measured"
        );

        let finals: Vec<&CaptionEvent> = events.iter().filter(|e| e.is_final).collect();
        assert!(!finals.is_empty(), "{}: no final", path.display());
        check_event_order(&events, audio);
        let hypothesis = final_text(&events);
        let count = wer::count(reference, &hypothesis);
        total += count;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("?");
        println!(
            "{name:<44} {:>6} {:>5.1}%  {hypothesis}",
            count.ref_words,
            100.0 * count.rate()
        );
        for e in &events {
            println!(
                "    seg {} {} [{:.2}-{:.2}] {:?}",
                e.segment_id,
                if e.is_final { "final  " } else { "interim" },
                e.start,
                e.end,
                e.text
            );
        }
    }
    println!(
        "{:<44} {:>6} {:>5.1}%",
        "corpus",
        total.ref_words,
        100.0 * total.rate()
    );
    println!("dropped {dropped:.2}s of {audio_total:.2}s");
    assert!(total.ref_words > 50);
    // The decoder runs at 3-5x real time here; losing more than a trace of the audio means
    // the queue or its bound is broken (or the machine is badly overloaded).
    assert!(
        dropped <= 0.05 * audio_total,
        "dropped {dropped:.2}s of {audio_total:.2}s"
    );
    assert!(
        total.rate() <= MAX_CORPUS_WER,
        "corpus WER {:.1}% above {:.0}%",
        100.0 * total.rate(),
        100.0 * MAX_CORPUS_WER
    );
}

/// Segment ids rise, each final closes its segment, interims never repeat, times stay inside
/// the stream and never run backwards across segments.
fn check_event_order(events: &[CaptionEvent], audio_seconds: f64) {
    let mut last_final: Option<&CaptionEvent> = None;
    let mut last: Option<&CaptionEvent> = None;
    for e in events {
        assert!(!e.text.is_empty(), "empty caption: {e:?}");
        assert!(
            0.0 <= e.start && e.start <= e.end && e.end <= audio_seconds + 1e-6,
            "{e:?}"
        );
        assert_eq!(e.lang, "en-US");
        if let Some(f) = last_final {
            assert!(e.segment_id > f.segment_id, "{e:?} after final {f:?}");
            assert!(e.start >= f.end - 1e-9, "{e:?} starts before {f:?} ended");
        }
        if let Some(p) = last
            && !p.is_final
            && p.segment_id == e.segment_id
        {
            assert!(e.is_final || e.text != p.text, "repeated interim {e:?}");
            assert_eq!(e.start, p.start);
        }
        if e.is_final {
            last_final = Some(e);
        }
        last = Some(e);
    }
}

#[test]
fn silence_gives_no_captions_and_finish_is_bounded() {
    let _engine = exclusive();
    let Some(mut asr) = recognizer() else { return };
    let silence = vec![0i16; CHUNK];
    for _ in 0..150 {
        asr.push_pcm(&silence).expect("push");
    }
    let started = std::time::Instant::now();
    let mut events = asr.poll_events();
    events.extend(asr.finish());
    assert!(started.elapsed() < std::time::Duration::from_secs(6));
    assert!(events.is_empty(), "captions from silence: {events:?}");
    // After finish the recognizer takes no audio, without failing the caller.
    asr.push_pcm(&silence).expect("ignored after finish");
    assert!(asr.finish().is_empty());
    assert!((asr.stats().audio_seconds - 3.0).abs() < 1e-9);
}

#[test]
fn a_flood_of_audio_is_dropped_not_queued() {
    let _engine = exclusive();
    let Some(mut asr) = recognizer() else { return };
    let Ok(clips) = corpus_clips() else { return };
    let Ok((_, samples)) = captions::wav::read_pcm16_mono(&clips[0].wav) else {
        return;
    };
    // 20 copies of a 7 s clip pushed at once: far more than the decoder can take in time.
    let started = std::time::Instant::now();
    for _ in 0..20 {
        asr.push_pcm(&samples).expect("push");
    }
    let pushing = started.elapsed();
    let stats = asr.stats();
    let total = 20.0 * samples.len() as f64 / f64::from(SAMPLE_RATE);
    assert!(
        (stats.audio_seconds - total).abs() < 1e-6,
        "dropped audio still counts as time"
    );
    assert!(stats.dropped_seconds > total / 2.0, "{stats:?}");
    assert!(
        pushing < std::time::Duration::from_secs(2),
        "push_pcm blocked for {pushing:?}"
    );
    let events = asr.finish();
    for e in &events {
        assert!(e.end <= total + 1e-6);
    }
}
