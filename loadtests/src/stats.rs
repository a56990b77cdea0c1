//! Figures a load run reports: percentile summaries and the JSON report of a fan-out run.
//! Nearest-rank percentiles over all samples (runs have at most a few thousand viewers, so
//! sorting a `Vec` beats a histogram for exactness and simplicity).

use serde::Serialize;

/// Nearest-rank percentile (`p` in 0..=100) of `samples`; `None` when empty. NaNs sort last.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(percentile_sorted(&sorted, p))
}

fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// min/mean/p50/p95/p99/max of a set of samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// All zeros (count 0) when `samples` is empty.
    pub fn of(samples: &[f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            count: sorted.len(),
            min: sorted[0],
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            p50: percentile_sorted(&sorted, 50.0),
            p95: percentile_sorted(&sorted, 95.0),
            p99: percentile_sorted(&sorted, 99.0),
            max: sorted[sorted.len() - 1],
        }
    }
}

/// Server-side resource use over the measurement window (from `/proc/<pid>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServerUsage {
    /// CPU seconds (user + system) per wall-clock second: 1.0 = one core busy.
    pub cpu_seconds_per_second: f64,
    /// `cpu_seconds_per_second` divided by the number of connected viewers.
    pub cpu_per_viewer: f64,
    /// Resident set size at the end of the window, bytes.
    pub rss_bytes: u64,
}

/// A soak's view of one interval of the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// End of the interval, seconds into the window.
    pub t_s: f64,
    pub packets_per_second: f64,
    pub loss_percent: f64,
    pub video_freezes: u64,
    pub server_cpu_seconds_per_second: Option<f64>,
    pub server_rss_bytes: Option<u64>,
}

/// The result of one `fanout` run, written with `--json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FanoutReport {
    /// `full` (webrtc-rs viewers, every packet decrypted) or `light` (str0m viewers).
    pub mode: String,
    /// `floorcast` or `janus`.
    pub target: String,
    pub url: String,
    pub session: String,
    /// Viewers asked for, and those that connected and received video (or audio if
    /// audio-only) before the measurement window began.
    pub viewers_requested: usize,
    pub viewers_connected: usize,
    pub audio_only_viewers: usize,
    pub viewers_failed: usize,
    pub duration_s: f64,
    /// Packets the publisher sent per second during the window.
    pub publisher_packets_per_second: f64,
    /// Sum over viewers of packets received per second during the window.
    pub packets_per_second_out: f64,
    pub bits_per_second_out: f64,
    /// Packets viewers received during the window (counted after the publisher paused and
    /// queues drained) over packets due to them (publisher's sent × viewers, per kind).
    /// `None` against a target whose feed is not ours (Janus).
    pub delivered_percent: Option<f64>,
    /// How long viewers kept receiving after the publisher paused: the queueing backlog.
    pub drain_ms: f64,
    /// Lost / expected over all viewers and kinds during the window, percent.
    pub loss_percent: f64,
    /// Per-viewer loss percent.
    pub viewer_loss_percent: Summary,
    /// Sequence discontinuities seen (should be 0).
    pub discontinuities: u64,
    /// POST → first video keyframe (audio-only viewers: first audio packet), milliseconds.
    pub join_ms: Summary,
    /// POST → answer received, milliseconds.
    pub answer_ms: Summary,
    /// POST → ICE+DTLS connected, milliseconds.
    pub connected_ms: Summary,
    /// Per-viewer RFC 3550 jitter of video (audio) at the end, milliseconds.
    pub video_jitter_ms: Summary,
    pub audio_jitter_ms: Summary,
    /// Per-viewer receive bitrate over the window (RTP payload), bits/s.
    pub viewer_bits_per_second: Summary,
    /// Video gaps longer than 500 ms during the window, over all viewers, and their total.
    pub video_freezes: u64,
    pub video_frozen_ms: f64,
    /// Light mode: packets whose SRTP authentication str0m checked, and how many passed.
    pub srtp_auth_sample: Option<crate::light::AuthSample>,
    /// PLI/FIR the publisher received during the whole run.
    pub publisher_keyframe_requests: u64,
    pub server: Option<ServerUsage>,
    /// Load generator's own CPU seconds per second (it can be the bottleneck), and per viewer.
    pub generator_cpu_seconds_per_second: f64,
    pub generator_cpu_per_viewer: f64,
    /// Soak: one point per interval of the window.
    pub timeline: Vec<TimelinePoint>,
    pub errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    }

    #[test]
    fn summary_of_unsorted_samples() {
        let s = Summary::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(s.count, 5);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 5.0);
        assert_eq!(s.p50, 3.0);
        assert_eq!(s.p95, 5.0);
        assert!((s.mean - 3.0).abs() < 1e-9);
        assert_eq!(Summary::of(&[]).count, 0);
    }

    #[test]
    fn report_serializes() {
        let r = FanoutReport {
            viewers_requested: 3,
            ..Default::default()
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["viewers_requested"], 3);
        assert!(json["join_ms"]["p95"].is_number());
    }
}
