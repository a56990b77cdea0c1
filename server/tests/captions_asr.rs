//! Machine captions on real speech, end to end: the five LibriVox clips of Debian's
//! `pocketsphinx-testdata` and sentences spoken by espeak-ng are encoded to Opus and
//! published into a session over WHIP by a webrtc-rs peer; the real `floorcast` binary taps
//! the floor audio, decodes it and runs its caption engine; a viewer reads the captions from
//! the session's event stream (SSE). Each clip and sentence must get a final caption, and the
//! corpus word error rate of the clips must stay ≤ 10 % with Whisper (a build with the
//! `whisper` feature and the models in `data/whisper`, as `make test` fetches them), ≤ 45 %
//! with the embedded pocketsphinx engine otherwise.
//!
//! Finals are matched to what was spoken by their time span (Unix ms, from the server's
//! stream clock): every item is followed by [`GAP`] of silence, longer than the engine needs
//! to close an utterance, so a final belongs to the last item that began before its middle.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use captions::wer;
use floorcast_load::server_process::{ServerOptions, ServerProcess};
use floorcast_load::{Kinds, Publisher, PublisherConfig};
use reqwest::Client;
use serde_json::Value;
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "captions-asr-test-secret-0123456789abcdef";
const SESSION: &str = "plenary";
const LIBRIVOX: &str = "/usr/share/pocketsphinx/test/data/librivox";
const RATE: usize = 16_000;
const FRAME: usize = RATE / 50;
const GAP: Duration = Duration::from_secs(2);
const ESPEAK: &[&str] = &[
    "the remote hub in nairobi has a question for the panel",
    "thank you chair we support the proposal",
    "please unmute your microphone",
];

struct Item {
    name: String,
    reference: String,
    /// When its speech begins and ends, from the start of the publisher's audio.
    begins: Duration,
    ends: Duration,
}

fn clips() -> Vec<(String, String, Vec<i16>)> {
    let transcription = std::fs::read_to_string(Path::new(LIBRIVOX).join("transcription"))
        .expect("pocketsphinx-testdata is installed (make deps-test)");
    transcription
        .lines()
        .filter_map(|line| {
            let (words, id) = line.rsplit_once(" (")?;
            let id = id.trim_end_matches(')');
            let words = words.replace("<s>", "").replace("</s>", "");
            let (rate, pcm) =
                captions::wav::read_pcm16_mono(Path::new(LIBRIVOX).join(format!("{id}.wav")))
                    .expect("clip");
            assert_eq!(rate as usize, RATE);
            Some((id.to_owned(), words.trim().to_owned(), pcm))
        })
        .collect()
}

fn espeak(text: &str, dir: &Path) -> Vec<i16> {
    let wav = dir.join("espeak.wav");
    let status = Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng is installed (make deps-test)");
    assert!(status.success());
    let (rate, pcm) = captions::wav::read_pcm16_mono(&wav).unwrap();
    resample(&pcm, rate as usize, RATE)
}

/// Linear interpolation: enough for speech going to a 16 kHz recognizer.
fn resample(pcm: &[i16], from: usize, to: usize) -> Vec<i16> {
    let n = pcm.len() * to / from;
    (0..n)
        .map(|i| {
            let pos = i as f64 * from as f64 / to as f64;
            let k = pos as usize;
            let frac = pos - k as f64;
            let a = pcm[k.min(pcm.len() - 1)] as f64;
            let b = pcm[(k + 1).min(pcm.len() - 1)] as f64;
            (a + (b - a) * frac) as i16
        })
        .collect()
}

/// The whole programme as 20 ms Opus packets, and where each item lies in it.
fn programme(items: Vec<(String, String, Vec<i16>)>) -> (Vec<Bytes>, Vec<Item>) {
    let mut pcm = vec![0i16; RATE]; // a second of room tone first
    let mut placed = Vec::new();
    for (name, reference, speech) in items {
        let begins = Duration::from_secs_f64(pcm.len() as f64 / RATE as f64);
        pcm.extend_from_slice(&speech);
        let ends = Duration::from_secs_f64(pcm.len() as f64 / RATE as f64);
        pcm.extend(std::iter::repeat_n(
            0,
            GAP.as_millis() as usize * RATE / 1000,
        ));
        placed.push(Item {
            name,
            reference,
            begins,
            ends,
        });
    }
    pcm.resize(pcm.len().div_ceil(FRAME) * FRAME, 0);
    // A room is never digitally silent: a floor microphone hears air conditioning and
    // people. Low white noise (about -60 dBFS) under everything.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for s in &mut pcm {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let noise = (seed % 61) as i32 - 30;
        *s = (*s as i32 + noise).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
    }
    let mut enc =
        opus::Encoder::new(RATE as u32, opus::Channels::Mono, opus::Application::Voip).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(32_000)).unwrap();
    let packets = pcm
        .chunks(FRAME)
        .map(|f| Bytes::from(enc.encode_vec(f, 1500).unwrap()))
        .collect();
    (packets, placed)
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Final captions from the session's event stream, with when they arrived.
async fn read_captions(client: Client, url: String, tx: mpsc::UnboundedSender<(Instant, Value)>) {
    let mut resp = client.get(url).send().await.expect("events");
    assert!(resp.status().is_success());
    let mut buf = String::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if !block.lines().any(|l| l == "event: caption") {
                continue;
            }
            let data: String = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            let v: Value = serde_json::from_str(&data).unwrap();
            if v["final"] == true && tx.send((Instant::now(), v)).is_err() {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_published_over_whip_gets_final_captions_with_bounded_wer() {
    let dir = tempfile::tempdir().unwrap();
    let mut items = clips();
    assert_eq!(items.len(), 5, "five LibriVox clips");
    let clip_count = items.len();
    for s in ESPEAK {
        items.push((
            format!("espeak: {s}"),
            (*s).to_owned(),
            espeak(s, dir.path()),
        ));
    }
    let (packets, items) = programme(items);
    let length = Duration::from_millis(packets.len() as u64 * 20);

    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/whisper");
    let whisper = cfg!(feature = "whisper") && models.join("tiny.en/model.bin").is_file();
    let mut opts = ServerOptions::new(BIN, SECRET);
    opts.env = if whisper {
        vec![(
            "FLOORCAST_WHISPER_MODELS".into(),
            models.display().to_string(),
        )]
    } else {
        vec![("FLOORCAST_CAPTION_ENGINE".into(), "pocketsphinx".into())]
    };
    let max_wer = if whisper { 0.10 } else { 0.45 };
    println!(
        "engine: {}",
        if whisper { "whisper" } else { "pocketsphinx" }
    );
    let server = ServerProcess::start(opts).await.expect("server");
    let client = floorcast_load::scenarios::hands::client();
    server.create_session(&client, SESSION).await.unwrap();
    let viewer = server.token("viewer", SESSION, "reader");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let events = server.url(&format!("/api/sessions/{SESSION}/events?token={viewer}"));
    // Its own client: the event stream outlives the 30 s request timeout of `client`.
    let sse = Client::builder().no_proxy().build().unwrap();
    tokio::spawn(read_captions(sse, events, tx));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let venue = server.token("venue", SESSION, "room-mixer");
    let cfg = PublisherConfig {
        kinds: Kinds::AUDIO_ONLY,
        audio_script: Some(Arc::from(packets)),
        ..PublisherConfig::default()
    };
    let publisher = Publisher::whip(cfg, &client, &server.base_url, SESSION, &venue)
        .await
        .expect("WHIP publish");
    let started = Instant::now();
    let started_ms = unix_ms();

    let mut finals: Vec<(Duration, Value)> = Vec::new();
    let deadline = started + length + Duration::from_secs(10);
    let mut engine_seen = false;
    while let Ok(Some((at, v))) = tokio::time::timeout_at(deadline.into(), rx.recv()).await {
        finals.push((at - started, v));
        if !engine_seen {
            // While the recognizer runs, the node says which engine captions the session.
            engine_seen = true;
            let metrics = server.metrics().await.expect("/metrics");
            let engine = if whisper {
                "engine=\"whisper\",model=\"tiny.en\""
            } else {
                "engine=\"pocketsphinx\""
            };
            assert!(
                metrics
                    .lines()
                    .any(|l| l.starts_with("floorcast_asr_engine{")
                        && l.contains(engine)
                        && l.contains(&format!("session=\"{SESSION}\""))
                        && l.ends_with(" 1")),
                "no floorcast_asr_engine line with {engine}:\n{metrics}"
            );
            assert!(
                metrics
                    .lines()
                    .any(|l| l == format!("floorcast_asr_fallback{{session=\"{SESSION}\"}} 0")),
                "{metrics}"
            );
        }
        let last = items.last().unwrap();
        if finals.iter().any(|(at, _)| *at > last.begins) && at - started > length {
            break;
        }
    }
    publisher.close().await;

    let mut heard: Vec<Vec<String>> = vec![Vec::new(); items.len()];
    let mut latency: Vec<Option<Duration>> = vec![None; items.len()];
    for (at, v) in &finals {
        // Where the caption lies in the programme: the middle of its span.
        let mid = (v["start_ms"].as_i64().unwrap() + v["end_ms"].as_i64().unwrap()) / 2;
        let mid = Duration::from_millis((mid - started_ms).max(0) as u64);
        println!(
            "final at {:>6.2}s, spans around {:>6.2}s: {}",
            at.as_secs_f64(),
            mid.as_secs_f64(),
            v["text"]
        );
        let Some(i) = items.iter().rposition(|it| it.begins <= mid) else {
            continue;
        };
        heard[i].push(v["text"].as_str().unwrap_or("").to_owned());
        latency[i].get_or_insert(at.saturating_sub(items[i].ends));
    }
    let mut total = wer::WerCount {
        errors: 0,
        ref_words: 0,
    };
    println!(
        "{:<46} {:>6} {:>10}  hypothesis",
        "item", "WER", "final lag"
    );
    for (i, item) in items.iter().enumerate() {
        let hyp = heard[i].join(" ");
        let c = wer::count(&item.reference, &hyp);
        if i < clip_count {
            total.errors += c.errors;
            total.ref_words += c.ref_words;
        }
        println!(
            "{:<46} {:>5.1}% {:>9.2}s  {hyp}",
            item.name.chars().take(46).collect::<String>(),
            c.rate() * 100.0,
            latency[i].map_or(f64::NAN, |d| d.as_secs_f64()),
        );
    }
    println!("corpus WER (LibriVox clips): {:.1} %", total.rate() * 100.0);
    for (i, item) in items.iter().enumerate() {
        assert!(
            !heard[i].is_empty(),
            "no final caption for {}; finals: {finals:?}\n{}",
            item.name,
            server.log_tail()
        );
    }
    assert!(
        total.rate() <= max_wer,
        "corpus WER {:.1} % above {:.0} %",
        total.rate() * 100.0,
        max_wer * 100.0
    );

    // The finals are the transcript, and the latency metric counted them.
    let transcript = client
        .get(server.url(&format!(
            "/api/sessions/{SESSION}/transcript.json?token={viewer}"
        )))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let stored = transcript["segments"].as_array().unwrap();
    assert_eq!(stored.len(), finals.len());
    assert!(
        stored
            .iter()
            .all(|s| s["speaker"] == "Floor" && s["source"] == "asr")
    );
    let metrics = server.metrics().await.expect("/metrics");
    for line in metrics.lines().filter(|l| l.starts_with("floorcast_asr")) {
        println!("{line}");
    }
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("floorcast_caption_latency_seconds_count{source=\"asr\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(counted, Some(finals.len() as u64), "{metrics}");
}
