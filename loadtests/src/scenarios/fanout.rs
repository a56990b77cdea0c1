//! Fan-out: one synthetic floor publisher, N WHEP viewers joined at a fixed rate, then a
//! measurement window. Reports what viewers received (packets/s, bits/s, loss, sequence
//! discontinuities, jitter), how long joins took (POST → first keyframe; audio-only viewers:
//! first audio packet), and — given the server's pid — its CPU per viewer and RSS.
//!
//! Counts in the window are differences of snapshots taken at its start and end, so joins
//! and teardown never pollute the figures.
//!
//! Viewers run in one of two modes ([`Mode`]): `full` (webrtc-rs, every packet decrypted) or
//! `light` (str0m, media counted from the clear RTP header; see [`crate::light`]). The target
//! is Floorcast (WHEP, with our synthetic publisher) or Janus's Streaming plugin (its own
//! feed; no publisher here, so no pause-and-drain: loss comes from sequence gaps alone).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::crowd::{JOINS_IN_FLIGHT, Joined, close_all, floor_publisher, ramp};
pub use super::crowd::{Mode, ServerTarget};
use crate::light::AuthSample;
use crate::peer::PeerError;
use crate::process_usage::{self, cpu_rate};
use crate::publisher::{Publisher, PublisherStats};
use crate::stats::{FanoutReport, ServerUsage, Summary, TimelinePoint};
use crate::viewer::ViewerStats;

/// What to run.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// Server base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    pub session: String,
    pub viewers: usize,
    /// Joins started per second.
    pub ramp_per_second: f64,
    /// Measurement window after the ramp.
    pub duration: Duration,
    /// Share of viewers (0..=1) that offer audio only.
    pub audio_only_share: f64,
    pub viewer_token: String,
    /// When set, each viewer joins with a token of its own (`sub` `viewer-load-viewer-N`),
    /// minted with this secret, as real viewers do: the server limits what one token may
    /// hold. Without it every viewer shares `viewer_token`.
    pub viewer_secret: Option<String>,
    /// Viewers joined so far (names the per-viewer tokens).
    pub joins: Arc<AtomicU64>,
    pub publish_token: String,
    pub server_pid: Option<u32>,
    pub video_bitrate_bps: u32,
    /// Per-join limit: POST to first media.
    pub join_timeout: Duration,
    /// Print progress lines to stderr.
    pub verbose: bool,
    pub mode: Mode,
    pub target: ServerTarget,
    /// Light mode: one packet in this many is authenticated and decrypted after the join.
    pub sample_every: u32,
    /// Record a timeline point (server CPU and RSS, loss, packets/s) this often (soak).
    pub timeline_every: Option<Duration>,
    /// Light mode: viewers open the `captions` data channel.
    pub captions: bool,
}

impl FanoutOptions {
    /// The token the next viewer joins with (see `viewer_secret`).
    pub fn next_viewer_token(&self) -> String {
        match &self.viewer_secret {
            Some(secret) => {
                let n = self.joins.fetch_add(1, Ordering::Relaxed);
                crate::token::mint(secret, "viewer", &self.session, &format!("load-viewer-{n}"))
            }
            None => self.viewer_token.clone(),
        }
    }

    pub fn new(url: &str, session: &str, viewer_token: &str, publish_token: &str) -> Self {
        Self {
            url: url.to_owned(),
            session: session.to_owned(),
            viewers: 10,
            ramp_per_second: 10.0,
            duration: Duration::from_secs(10),
            audio_only_share: 0.0,
            viewer_token: viewer_token.to_owned(),
            viewer_secret: None,
            joins: Arc::default(),
            publish_token: publish_token.to_owned(),
            server_pid: None,
            video_bitrate_bps: 1_000_000,
            join_timeout: Duration::from_secs(15),
            verbose: false,
            mode: Mode::Full,
            target: ServerTarget::Floorcast,
            sample_every: 64,
            timeline_every: None,
            captions: false,
        }
    }
}

/// One point of a soak's timeline: the interval that just ended.
fn timeline_point(
    at: Duration,
    interval: Duration,
    server: (
        &Option<process_usage::Sample>,
        &Option<process_usage::Sample>,
    ),
    viewers: (&[ViewerStats], &[ViewerStats]),
) -> TimelinePoint {
    let (mut lost, mut expected, mut packets, mut freezes) = (0u64, 0u64, 0u64, 0u64);
    for (a, b) in viewers.0.iter().zip(viewers.1) {
        let (l, e) = window_loss(a, b);
        lost += l;
        expected += e;
        packets += b.packets() - a.packets();
        freezes += b.video.freezes - a.video.freezes;
    }
    let secs = interval.as_secs_f64().max(1e-3);
    TimelinePoint {
        t_s: at.as_secs_f64(),
        packets_per_second: packets as f64 / secs,
        loss_percent: if expected == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / expected as f64
        },
        video_freezes: freezes,
        server_cpu_seconds_per_second: match server {
            (Some(a), Some(b)) => Some(cpu_rate(a, b)),
            _ => None,
        },
        server_rss_bytes: server.1.as_ref().map(|s| s.rss_bytes),
    }
}

/// Window loss of one viewer: (lost, expected) over both kinds.
fn window_loss(a: &ViewerStats, b: &ViewerStats) -> (u64, u64) {
    let mut lost = 0;
    let mut expected = 0;
    for (x, y) in [(&a.audio, &b.audio), (&a.video, &b.video)] {
        lost += y.seq.lost.saturating_sub(x.seq.lost);
        expected += y.seq.expected.saturating_sub(x.seq.expected);
    }
    (lost, expected)
}

/// Pauses the publisher, waits until no viewer's count moves for 300 ms (at most 5 s),
/// reads every counter, resumes. Returns the time the backlog took to drain. Without a
/// publisher of ours (a Janus target), it only reads the counters.
async fn quiet_snapshot(
    publisher: Option<&Publisher>,
    viewers: &[Joined],
) -> (PublisherStats, Vec<ViewerStats>, Duration) {
    let Some(publisher) = publisher else {
        let v = viewers.iter().map(|j| j.viewer.stats()).collect();
        return (PublisherStats::default(), v, Duration::ZERO);
    };
    publisher.set_paused(true);
    let paused_at = Instant::now();
    let total = || {
        viewers
            .iter()
            .map(|j| j.viewer.stats().packets())
            .sum::<u64>()
    };
    let mut last = total();
    let mut last_change = Instant::now();
    while paused_at.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = total();
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= Duration::from_millis(300) {
            break;
        }
    }
    let drained = last_change.saturating_duration_since(paused_at);
    let p = publisher.stats();
    let v = viewers.iter().map(|j| j.viewer.stats()).collect();
    for j in viewers {
        j.viewer.forget_gaps();
    }
    publisher.set_paused(false);
    (p, v, drained)
}

/// Runs the scenario; `Err` only when the publisher cannot start.
pub async fn run(opts: FanoutOptions) -> Result<FanoutReport, PeerError> {
    let opts = Arc::new(opts);
    let client = crate::whip::http_client();
    let mut report = FanoutReport {
        url: opts.url.clone(),
        session: opts.session.clone(),
        viewers_requested: opts.viewers,
        duration_s: opts.duration.as_secs_f64(),
        ..Default::default()
    };
    report.mode = opts.mode.as_str().to_owned();
    report.target = match opts.target {
        ServerTarget::Floorcast => "floorcast".to_owned(),
        ServerTarget::Janus { .. } => "janus".to_owned(),
    };
    let publisher = match opts.target {
        ServerTarget::Floorcast => Some(floor_publisher(&client, &opts).await?),
        ServerTarget::Janus { .. } => None,
    };

    let gate = Arc::new(Semaphore::new(JOINS_IN_FLIGHT));
    let ramp_start = Instant::now();
    let (viewers, join_ms, errors) = ramp(&client, &opts, &gate).await;
    report.errors.extend(errors);
    report.viewers_connected = viewers.len();
    report.viewers_failed = opts.viewers - viewers.len();
    report.audio_only_viewers = viewers.iter().filter(|v| v.audio_only).count();
    report.join_ms = Summary::of(&join_ms);
    let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    let answer: Vec<f64> = viewers
        .iter()
        .filter_map(|j| ms(j.viewer.stats().answer_after))
        .collect();
    let connected: Vec<f64> = viewers
        .iter()
        .filter_map(|j| ms(j.viewer.stats().connected_after))
        .collect();
    report.answer_ms = Summary::of(&answer);
    report.connected_ms = Summary::of(&connected);
    if opts.verbose {
        eprintln!(
            "ramp done in {:.1}s: {} connected, {} failed",
            ramp_start.elapsed().as_secs_f64(),
            report.viewers_connected,
            report.viewers_failed
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Measurement window.
    // The server's CPU and memory: from /proc when it runs here (its pid), else from its
    // /metrics (Floorcast exports the process metrics; Janus does not).
    let pid = opts.server_pid.map(|p| p.to_string());
    let scrape = pid.is_none() && opts.target == ServerTarget::Floorcast;
    let server_sample = || async {
        match (&pid, scrape) {
            (Some(pid), _) => process_usage::sample(pid),
            (None, true) => process_usage::scrape(&client, &opts.url).await,
            (None, false) => None,
        }
    };
    let server_a = server_sample().await;
    let self_a = process_usage::sample("self");
    let (pub_a, view_a, _) = quiet_snapshot(publisher.as_ref(), &viewers).await;
    let t_a = Instant::now();
    let end = t_a + opts.duration;
    let step = opts.timeline_every.unwrap_or(Duration::from_secs(5));
    let mut last = (Instant::now(), server_a, view_a.clone());
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(step)).await;
        let now_stats: Vec<ViewerStats> = viewers.iter().map(|j| j.viewer.stats()).collect();
        if opts.timeline_every.is_some() {
            let server_now = server_sample().await;
            report.timeline.push(timeline_point(
                t_a.elapsed(),
                last.0.elapsed(),
                (&last.1, &server_now),
                (&last.2, &now_stats),
            ));
            last = (Instant::now(), server_now, now_stats.clone());
        }
        if opts.verbose {
            let pkts: u64 = now_stats.iter().map(|s| s.packets()).sum();
            eprintln!(
                "t+{:.0}s: {pkts} packets received in total",
                t_a.elapsed().as_secs_f64()
            );
        }
    }
    let wall = t_a.elapsed().as_secs_f64();
    let view_b: Vec<ViewerStats> = viewers.iter().map(|j| j.viewer.stats()).collect();
    let pub_b = publisher.as_ref().map(|p| p.stats()).unwrap_or_default();
    let server_b = server_sample().await;
    let self_b = process_usage::sample("self");
    // Then stop sending and let queues drain: the exact delivered share, and how long the
    // backlog took to clear (a server or generator that falls behind shows up here, while
    // sequence numbers alone would call late packets "not yet expected").
    let (pub_c, view_c, drain) = quiet_snapshot(publisher.as_ref(), &viewers).await;
    report.drain_ms = drain.as_secs_f64() * 1000.0;
    if publisher.is_some() {
        let (mut delivered, mut due) = (0u64, 0u64);
        for ((a, c), j) in view_a.iter().zip(&view_c).zip(&viewers) {
            delivered += c.audio.packets - a.audio.packets;
            due += pub_c.audio_packets - pub_a.audio_packets;
            if !j.audio_only {
                delivered += c.video.packets - a.video.packets;
                due += pub_c.video_packets - pub_a.video_packets;
            }
        }
        report.delivered_percent = Some(if due == 0 {
            0.0
        } else {
            delivered as f64 * 100.0 / due as f64
        });
    }

    let mut pkts = 0u64;
    let mut bytes = 0u64;
    let (mut lost, mut expected) = (0u64, 0u64);
    let mut per_viewer_loss = Vec::new();
    let mut jitter = Vec::new();
    let mut audio_jitter = Vec::new();
    let mut per_viewer_bps = Vec::new();
    for (((a, b), c), j) in view_a.iter().zip(&view_b).zip(&view_c).zip(&viewers) {
        pkts += b.packets() - a.packets();
        bytes += (b.audio.bytes + b.video.bytes) - (a.audio.bytes + a.video.bytes);
        let (l, e) = window_loss(a, c);
        lost += l;
        expected += e;
        per_viewer_loss.push(if e == 0 {
            100.0
        } else {
            l as f64 * 100.0 / e as f64
        });
        report.discontinuities += c.audio.seq.discontinuities + c.video.seq.discontinuities;
        if !j.audio_only {
            jitter.push(b.video.jitter_ms);
            report.video_freezes += b.video.freezes - a.video.freezes;
            report.video_frozen_ms += b.video.frozen_ms - a.video.frozen_ms;
        }
        audio_jitter.push(b.audio.jitter_ms);
        per_viewer_bps.push(
            ((b.audio.bytes + b.video.bytes) - (a.audio.bytes + a.video.bytes)) as f64 * 8.0 / wall,
        );
    }
    report.audio_jitter_ms = Summary::of(&audio_jitter);
    report.viewer_bits_per_second = Summary::of(&per_viewer_bps);
    for j in &viewers {
        if let Some(a) = j.viewer.auth() {
            let s = report
                .srtp_auth_sample
                .get_or_insert_with(AuthSample::default);
            s.checked += a.checked;
            s.passed += a.passed;
        }
    }
    report.packets_per_second_out = pkts as f64 / wall;
    report.bits_per_second_out = bytes as f64 * 8.0 / wall;
    report.publisher_packets_per_second = (pub_b.packets() - pub_a.packets()) as f64 / wall;
    report.loss_percent = if expected == 0 {
        if viewers.is_empty() { 100.0 } else { 0.0 }
    } else {
        lost as f64 * 100.0 / expected as f64
    };
    report.viewer_loss_percent = Summary::of(&per_viewer_loss);
    report.video_jitter_ms = Summary::of(&jitter);
    report.publisher_keyframe_requests = pub_b.keyframe_requests();
    report.generator_cpu_per_viewer = 0.0;
    if let (Some(a), Some(b)) = (server_a, server_b) {
        let cpu = cpu_rate(&a, &b);
        report.server = Some(ServerUsage {
            cpu_seconds_per_second: cpu,
            cpu_per_viewer: if viewers.is_empty() {
                0.0
            } else {
                cpu / viewers.len() as f64
            },
            rss_bytes: b.rss_bytes,
        });
    }
    if let (Some(a), Some(b)) = (self_a, self_b) {
        report.generator_cpu_seconds_per_second = cpu_rate(&a, &b);
        if !viewers.is_empty() {
            report.generator_cpu_per_viewer =
                report.generator_cpu_seconds_per_second / viewers.len() as f64;
        }
    }

    close_all(viewers, &gate).await;
    if let Some(publisher) = publisher {
        publisher.close().await;
    }
    Ok(report)
}

/// The human table printed by the binary.
pub fn render_table(r: &FanoutReport) -> String {
    let mut out = String::new();
    let mut row = |k: &str, v: String| out.push_str(&format!("{k:<28} {v}\n"));
    row("target / mode", format!("{} / {}", r.target, r.mode));
    row(
        "viewers",
        format!(
            "{} connected / {} requested ({} audio-only, {} failed)",
            r.viewers_connected, r.viewers_requested, r.audio_only_viewers, r.viewers_failed
        ),
    );
    row(
        "publisher packets/s",
        format!("{:.0}", r.publisher_packets_per_second),
    );
    row(
        "packets/s out (received)",
        format!(
            "{:.0}  ({:.1} Mbit/s)",
            r.packets_per_second_out,
            r.bits_per_second_out / 1e6
        ),
    );
    match &r.server {
        Some(s) => {
            row("server CPU s/s", format!("{:.3}", s.cpu_seconds_per_second));
            row(
                "server CPU per viewer",
                format!("{:.5} s/s", s.cpu_per_viewer),
            );
            row(
                "server RSS",
                format!("{:.1} MiB", s.rss_bytes as f64 / 1_048_576.0),
            );
        }
        None => row("server CPU", "n/a (no --server-pid)".into()),
    }
    row(
        "generator CPU s/s",
        format!(
            "{:.3}  ({:.2} ms/s per viewer)",
            r.generator_cpu_seconds_per_second,
            r.generator_cpu_per_viewer * 1000.0
        ),
    );
    if let Some(d) = r.delivered_percent {
        row(
            "delivered (after drain)",
            format!("{d:.2} %  (backlog drained in {:.0} ms)", r.drain_ms),
        );
    }
    row(
        "loss",
        format!(
            "{:.3} %  (worst viewer {:.3} %, discontinuities {})",
            r.loss_percent, r.viewer_loss_percent.max, r.discontinuities
        ),
    );
    row(
        "join p50 / p95 / max",
        format!(
            "{:.0} / {:.0} / {:.0} ms",
            r.join_ms.p50, r.join_ms.p95, r.join_ms.max
        ),
    );
    row(
        "  of which answer / connected",
        format!("p50 {:.0} / {:.0} ms", r.answer_ms.p50, r.connected_ms.p50),
    );
    row(
        "video jitter p50 / p95",
        format!(
            "{:.2} / {:.2} ms",
            r.video_jitter_ms.p50, r.video_jitter_ms.p95
        ),
    );
    row(
        "audio jitter p50 / p95",
        format!(
            "{:.2} / {:.2} ms",
            r.audio_jitter_ms.p50, r.audio_jitter_ms.p95
        ),
    );
    row(
        "receive rate per viewer",
        format!(
            "p50 {:.2} / min {:.2} Mbit/s",
            r.viewer_bits_per_second.p50 / 1e6,
            r.viewer_bits_per_second.min / 1e6
        ),
    );
    row(
        "video freezes (> 500 ms)",
        format!("{} ({:.0} ms in all)", r.video_freezes, r.video_frozen_ms),
    );
    if let Some(a) = r.srtp_auth_sample {
        row(
            "SRTP auth sample",
            format!("{} of {} packets authenticated", a.passed, a.checked),
        );
    }
    row(
        "keyframe requests at pub",
        r.publisher_keyframe_requests.to_string(),
    );
    if !r.errors.is_empty() {
        row(
            "errors",
            format!("{} (first: {})", r.errors.len(), r.errors[0]),
        );
    }
    out
}
