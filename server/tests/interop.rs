//! Interop with an independent WebRTC stack: the real `floorcast` binary against webrtc-rs
//! peers from `floorcast-load` (publisher over WHIP, viewers over WHEP, all on 127.0.0.1).
//!
//! - 50 viewers of one Opus+VP8 floor feed each receive ≥ 95 % of what was sent while they
//!   were connected, with continuous sequence numbers, and a join makes the SFU ask the
//!   publisher for a keyframe (the publisher only sends keyframes on request here).
//! - The floor publisher is replaced (new PeerConnection, new SSRCs): viewers keep their one
//!   track per kind, one SSRC, continuous sequence numbers, and no renegotiation.
//! - Signalling edges: an audio-only offer gets audio only; a viewer that joins before the
//!   publisher gets media once it starts; a second floor publisher gets 409 JSON.
//!
//! Every test has an overall timeout and the server is killed on drop. Tests take a global
//! lock so the heavy one does not share the two cores with another.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use floorcast_load::server_process::{ServerOptions, ServerProcess};
use floorcast_load::whip::{self, SignalError, http_client};
use floorcast_load::{
    Kinds, PeerError, Publisher, PublisherConfig, PublisherStats, Viewer, ViewerConfig, ViewerStats,
};
use reqwest::{Client, StatusCode};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "interop-test-secret-0123456789abcdef";
const VIEWERS: usize = 50;

static SERIAL: LazyLock<Mutex<()>> = LazyLock::new(|| Mutex::new(()));

async fn start_server(sessions: &[&str]) -> (ServerProcess, Client) {
    let server = ServerProcess::start(ServerOptions::new(BIN, SECRET))
        .await
        .expect("floorcast starts and becomes ready");
    let client = http_client();
    for s in sessions {
        if let Err(e) = server.create_session(&client, s).await {
            panic!("create session {s}: {e}\n{}", server.log_tail());
        }
    }
    (server, client)
}

fn publisher_cfg() -> PublisherConfig {
    // No periodic keyframes: a viewer can only get one if the SFU asks the publisher.
    PublisherConfig {
        keyframe_interval: 0,
        ..PublisherConfig::default()
    }
}

async fn publish(server: &ServerProcess, client: &Client, session: &str, name: &str) -> Publisher {
    let token = server.token("venue", session, name);
    match Publisher::whip(publisher_cfg(), client, &server.base_url, session, &token).await {
        Ok(p) => p,
        Err(e) => panic!("publish {name} to {session}: {e}\n{}", server.log_tail()),
    }
}

async fn view(
    server: &ServerProcess,
    client: &Client,
    session: &str,
    name: &str,
    kinds: Kinds,
) -> Result<Viewer, PeerError> {
    let token = server.token("viewer", session, name);
    let cfg = ViewerConfig {
        kinds,
        ..ViewerConfig::default()
    };
    Viewer::whep(cfg, client, &server.base_url, session, &token).await
}

/// Pause the publisher, wait until no viewer's count has moved for 300 ms (queues drained;
/// at most 5 s), read every counter, resume.
async fn quiet_snapshot(p: &Publisher, viewers: &[Viewer]) -> (PublisherStats, Vec<ViewerStats>) {
    p.set_paused(true);
    let paused_at = Instant::now();
    let total = || viewers.iter().map(|v| v.stats().packets()).sum::<u64>();
    let mut last = total();
    let mut last_change = Instant::now();
    while paused_at.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = total();
        if now != last {
            (last, last_change) = (now, Instant::now());
        } else if last_change.elapsed() >= Duration::from_millis(300) {
            break;
        }
    }
    let ps = p.stats();
    let vs = viewers.iter().map(Viewer::stats).collect();
    p.set_paused(false);
    (ps, vs)
}

/// Per viewer: the share of the packets sent between two quiet snapshots that it received,
/// per kind. Panics with details when a viewer is below `min_share`.
fn assert_delivery(
    what: &str,
    server: &ServerProcess,
    (p0, v0): &(PublisherStats, Vec<ViewerStats>),
    (p1, v1): &(PublisherStats, Vec<ViewerStats>),
    min_share: f64,
) -> (f64, f64) {
    let sent_audio = p1.audio_packets - p0.audio_packets;
    let sent_video = p1.video_packets - p0.video_packets;
    assert!(
        sent_audio > 50 && sent_video > 100,
        "{what}: publisher sent too little: {p0:?} → {p1:?}"
    );
    let mut worst = (1.0f64, 1.0f64);
    let mut failures = Vec::new();
    for (i, (a, b)) in v0.iter().zip(v1).enumerate() {
        let got_audio = b.audio.packets - a.audio.packets;
        let got_video = b.video.packets - a.video.packets;
        let sa = got_audio as f64 / sent_audio as f64;
        let sv = got_video as f64 / sent_video as f64;
        worst = (worst.0.min(sa), worst.1.min(sv));
        if sa < min_share || sv < min_share {
            failures.push(format!(
                "viewer {i}: audio {got_audio}/{sent_audio}, video {got_video}/{sent_video}; {b:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {} of {} viewers got < {:.0} % of the packets sent:\n{}\nserver log:\n{}",
        failures.len(),
        v1.len(),
        min_share * 100.0,
        failures.join("\n"),
        server.log_tail()
    );
    worst
}

/// Each viewer: one track per kind, one SSRC, no sequence jumps.
fn assert_continuity(what: &str, viewers: &[ViewerStats]) {
    for (i, v) in viewers.iter().enumerate() {
        for (kind, k) in [("audio", &v.audio), ("video", &v.video)] {
            assert_eq!(
                k.tracks, 1,
                "{what}: viewer {i} {kind} tracks (renegotiated?): {v:?}"
            );
            assert_eq!(
                k.ssrc_changes, 0,
                "{what}: viewer {i} {kind} SSRC changed: {v:?}"
            );
            assert_eq!(
                k.seq.discontinuities, 0,
                "{what}: viewer {i} {kind} sequence numbers jumped: {v:?}"
            );
        }
    }
}

async fn wait_all(
    viewers: &[Viewer],
    timeout: Duration,
    pred: impl Fn(&ViewerStats) -> bool + Copy,
) -> Vec<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let missing: Vec<usize> = viewers
            .iter()
            .enumerate()
            .filter(|(_, v)| !pred(&v.stats()))
            .map(|(i, _)| i)
            .collect();
        if missing.is_empty() || Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_viewers_and_a_publisher_restart() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(150), fifty_viewers_body())
        .await
        .expect("interop test finished within its time limit");
}

async fn fifty_viewers_body() {
    let started = Instant::now();
    let session = "interop";
    let (server, client) = start_server(&[session]).await;
    let p1 = publish(&server, &client, session, "venue-1").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        p1.stats().video_packets > 0,
        "publisher sends: {:?}",
        p1.stats()
    );

    // First viewer: the only way it gets a keyframe is a PLI/FIR from the SFU.
    let kr_before = p1.stats().keyframe_requests();
    let first = view(&server, &client, session, "viewer-0", Kinds::BOTH)
        .await
        .unwrap_or_else(|e| panic!("first viewer: {e}\n{}", server.log_tail()));
    let got_key = first
        .wait_until(Duration::from_secs(5), |s| s.first_keyframe_after.is_some())
        .await;
    let kr_after = p1.stats().keyframe_requests();
    assert!(
        kr_after > kr_before,
        "the SFU asked the publisher for a keyframe when a viewer joined (PLI/FIR {kr_before} → {kr_after}); viewer: {:?}\n{}",
        first.stats(),
        server.log_tail()
    );
    assert!(got_key, "first viewer got a keyframe: {:?}", first.stats());
    let fs = first.stats();
    println!(
        "first viewer after POST: answer {:?}, connected {:?}, first audio {:?}, first video {:?}, keyframe {:?}; publisher PLI {} FIR {}",
        fs.answer_after,
        fs.connected_after,
        fs.audio.first_packet_after,
        fs.video.first_packet_after,
        fs.first_keyframe_after,
        p1.stats().pli,
        p1.stats().fir
    );

    // The other 49, ten handshakes at a time.
    let mut joins = JoinSet::new();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(10));
    let base = server.base_url.clone();
    for i in 1..VIEWERS {
        let client = client.clone();
        let gate = gate.clone();
        let token = server.token("viewer", session, &format!("viewer-{i}"));
        let base = base.clone();
        joins.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let v = Viewer::whep(ViewerConfig::default(), &client, &base, session, &token).await;
            (i, v)
        });
    }
    let mut viewers = vec![first];
    let mut errors = Vec::new();
    while let Some(r) = joins.join_next().await {
        match r.expect("join task") {
            (_, Ok(v)) => viewers.push(v),
            (i, Err(e)) => errors.push(format!("viewer {i}: {e}")),
        }
    }
    assert!(
        errors.is_empty(),
        "joins failed:\n{}\n{}",
        errors.join("\n"),
        server.log_tail()
    );
    let missing = wait_all(&viewers, Duration::from_secs(10), |s| {
        s.first_keyframe_after.is_some()
    })
    .await;
    assert!(
        missing.is_empty(),
        "viewers without a keyframe 10 s after joining: {missing:?}; e.g. {:?}\n{}",
        viewers[missing[0]].stats(),
        server.log_tail()
    );
    let joins_ms: Vec<f64> = viewers
        .iter()
        .filter_map(|v| v.stats().first_keyframe_after)
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    let js = floorcast_load::stats::Summary::of(&joins_ms);
    println!(
        "{VIEWERS} viewers joined in {:.1}s; join (POST → keyframe) p50 {:.0} ms p95 {:.0} ms max {:.0} ms; keyframe requests {}",
        started.elapsed().as_secs_f64(),
        js.p50,
        js.p95,
        js.max,
        p1.stats().keyframe_requests()
    );

    // Delivery over a 4 s window with all 50 connected.
    let a = quiet_snapshot(&p1, &viewers).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let b = quiet_snapshot(&p1, &viewers).await;
    let worst = assert_delivery("steady state", &server, &a, &b, 0.95);
    assert_continuity("steady state", &b.1);
    let loss: Vec<f64> = b.1.iter().map(|v| v.video.seq.loss_percent()).collect();
    println!(
        "steady state: worst viewer got {:.1} % audio, {:.1} % video; video loss since join max {:.2} %",
        worst.0 * 100.0,
        worst.1 * 100.0,
        loss.iter().cloned().fold(0.0, f64::max)
    );
    for (i, v) in b.1.iter().enumerate() {
        assert!(
            v.video.seq.loss_percent() < 5.0 && v.audio.seq.loss_percent() < 5.0,
            "viewer {i} lost too much since joining: {v:?}"
        );
    }

    // Replace the publisher: new PeerConnection, new SSRCs.
    let old_ssrcs = p1.ssrcs();
    let before_switch: Vec<ViewerStats> = viewers.iter().map(Viewer::stats).collect();
    let deleted = p1.close().await;
    assert_eq!(deleted, Some(StatusCode::OK), "DELETE of the WHIP resource");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let p2 = publish(&server, &client, session, "venue-2").await;
    assert_ne!(p2.ssrcs(), old_ssrcs, "the new publisher uses new SSRCs");
    let kf_before: Vec<u64> = before_switch.iter().map(|v| v.video.keyframes).collect();
    let missing = wait_all(&viewers, Duration::from_secs(10), |s| s.video.packets > 0).await;
    assert!(missing.is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lagging: Vec<usize> = (0..viewers.len()).collect();
    while !lagging.is_empty() && Instant::now() < deadline {
        lagging.retain(|&i| viewers[i].stats().video.keyframes <= kf_before[i]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        lagging.is_empty(),
        "viewers with no keyframe from the new publisher: {lagging:?}; e.g. {:?}\n{}",
        viewers[lagging[0]].stats(),
        server.log_tail()
    );
    let c = quiet_snapshot(&p2, &viewers).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = quiet_snapshot(&p2, &viewers).await;
    let worst = assert_delivery("after publisher restart", &server, &c, &d, 0.95);
    assert_continuity("after publisher restart", &d.1);
    // Across the switch the numbering continues: what the viewers count as lost between
    // the last snapshot before and now is packets dropped while the SFU waited for the
    // new publisher's keyframe at most, never a jump.
    for (i, (x, y)) in before_switch.iter().zip(&d.1).enumerate() {
        for (kind, kx, ky) in [("audio", &x.audio, &y.audio), ("video", &x.video, &y.video)] {
            let lost = ky.seq.lost - kx.seq.lost.min(ky.seq.lost);
            let got = ky.seq.received - kx.seq.received;
            assert!(
                lost * 20 <= got,
                "viewer {i} {kind}: {lost} missing vs {got} received across the publisher switch: {x:?} → {y:?}"
            );
            assert_eq!(
                ky.ssrc, kx.ssrc,
                "viewer {i} {kind} SSRC is stable across the switch"
            );
        }
    }
    println!(
        "after restart: worst viewer got {:.1} % audio, {:.1} % video; keyframe requests at new publisher {}",
        worst.0 * 100.0,
        worst.1 * 100.0,
        p2.stats().keyframe_requests()
    );

    // Leave cleanly.
    let mut statuses = Vec::new();
    for v in viewers {
        statuses.push(v.close().await);
    }
    assert!(
        statuses.iter().all(|s| *s == Some(StatusCode::OK)),
        "DELETE of WHEP resources: {statuses:?}"
    );
    p2.close().await;
    println!("interop test took {:.1}s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalling_edges() {
    let _serial = SERIAL.lock().await;
    tokio::time::timeout(Duration::from_secs(90), signalling_edges_body())
        .await
        .expect("finished within its time limit");
}

async fn signalling_edges_body() {
    let (server, client) = start_server(&["early", "edges"]).await;

    // A viewer that joins before the publisher gets media once the publisher starts.
    let early = view(&server, &client, "early", "early-bird", Kinds::BOTH)
        .await
        .unwrap_or_else(|e| panic!("viewer before publisher: {e}\n{}", server.log_tail()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(early.stats().packets(), 0);
    let p_early = publish(&server, &client, "early", "venue-early").await;
    assert!(
        early
            .wait_until(Duration::from_secs(10), |s| s
                .first_keyframe_after
                .is_some()
                && s.audio.packets > 10)
            .await,
        "early viewer gets audio and a keyframe once the publisher starts: {:?}\n{}",
        early.stats(),
        server.log_tail()
    );
    assert_continuity("early viewer", &[early.stats()]);
    early.close().await;
    p_early.close().await;

    // An offer with only audio gets an answer with only audio, and only audio flows.
    let p = publish(&server, &client, "edges", "venue-edges").await;
    let audio_only = view(&server, &client, "edges", "ears-only", Kinds::AUDIO_ONLY)
        .await
        .unwrap_or_else(|e| panic!("audio-only viewer: {e}\n{}", server.log_tail()));
    let answer = audio_only.resource().expect("WHEP resource").answer.clone();
    let m_lines: Vec<&str> = answer.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(m_lines.len(), 1, "one m-line in the answer: {answer}");
    assert!(m_lines[0].starts_with("m=audio"), "{answer}");
    assert!(
        audio_only
            .wait_until(Duration::from_secs(10), |s| s.audio.packets > 50)
            .await,
        "audio flows: {:?}",
        audio_only.stats()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = audio_only.stats();
    assert_eq!((s.video.packets, s.video.tracks), (0, 0), "no video: {s:?}");
    assert_eq!(s.audio.seq.discontinuities, 0);

    // A second floor publisher is refused with 409 and a JSON error.
    let mut second = Publisher::new(publisher_cfg())
        .await
        .expect("second publisher peer");
    let offer = second.offer().await.expect("offer");
    let token = server.token("venue", "edges", "venue-intruder");
    match whip::publish(&client, &server.base_url, "edges", &token, offer).await {
        Err(SignalError::Status { status, code, body }) => {
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            assert!(
                code.as_deref().is_some_and(|c| !c.is_empty()),
                "JSON error field: {body}"
            );
            println!("second publisher: {status} {code:?}");
        }
        Ok(r) => panic!("second floor publisher accepted: {}", r.url),
        Err(e) => panic!("second floor publisher: {e}"),
    }
    second.close().await;
    // The first publisher is unaffected.
    let before = audio_only.stats().audio.packets;
    assert!(
        audio_only
            .wait_until(Duration::from_secs(3), |s| s.audio.packets > before + 25)
            .await
    );
    audio_only.close().await;
    p.close().await;
}
