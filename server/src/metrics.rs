//! Every Prometheus metric of the server, defined once, named exactly as in DESIGN.md.
//!
//! The registry lives in app state (no globals), so two servers in one test process do not
//! share counters. Media counters are owned by the media engine (relaxed atomics its driver
//! bumps); they are copied into the registry at scrape time, under a mutex so that two
//! concurrent scrapes cannot both add the same delta.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use media::{Kind, MediaStats};
use prometheus::core::{AtomicU64, GenericCounter};
use prometheus::{
    Counter, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::session::SessionId;

#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Cheap to clone; all clones share one registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    sessions: IntGauge,
    viewers: IntGaugeVec,
    publishers: IntGaugeVec,
    rtp_packets: IntCounterVec,
    rtp_bytes: IntCounterVec,
    nacks: IntCounter,
    plis: IntCounter,
    join_duration: Histogram,
    http_requests: IntCounterVec,
    floor_queue_length: IntGaugeVec,
    floor_wait: Histogram,
    floor_grants: IntCounterVec,
    caption_latency: HistogramVec,
    asr_rtf: GaugeVec,
    asr_dropped: Counter,
    /// Held while copying media counters and encoding (see module doc).
    scrape: Mutex<()>,
}

const DIRECTIONS: [&str; 2] = ["in", "out"];
const KINDS: [Kind; 2] = [Kind::Audio, Kind::Video];

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let sessions = IntGauge::new("floorcast_sessions", "Sessions this node serves.")?;
        let viewers = IntGaugeVec::new(
            Opts::new("floorcast_viewers", "Connected WebRTC viewers per session."),
            &["session"],
        )?;
        let publishers = IntGaugeVec::new(
            Opts::new(
                "floorcast_publishers",
                "Connected publishers per session and role.",
            ),
            &["session", "role"],
        )?;
        let rtp_packets = IntCounterVec::new(
            Opts::new(
                "floorcast_rtp_packets_total",
                "RTP media packets received from publishers (in) and sent to viewers (out).",
            ),
            &["direction", "kind"],
        )?;
        let rtp_bytes = IntCounterVec::new(
            Opts::new(
                "floorcast_rtp_bytes_total",
                "RTP media bytes received from publishers (in) and sent to viewers (out).",
            ),
            &["direction", "kind"],
        )?;
        let nacks = IntCounter::new("floorcast_nack_total", "NACKs received from viewers.")?;
        let plis = IntCounter::new(
            "floorcast_pli_total",
            "Keyframe requests (PLI/FIR) sent to publishers.",
        )?;
        let join_duration = Histogram::with_opts(
            HistogramOpts::new(
                "floorcast_join_duration_seconds",
                "Time from a viewer's offer to its first keyframe (audio-only: first packet).",
            )
            .buckets(vec![
                0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0,
            ]),
        )?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "floorcast_http_requests_total",
                "HTTP responses by route template and status.",
            ),
            &["route", "status"],
        )?;
        let floor_queue_length = IntGaugeVec::new(
            Opts::new(
                "floorcast_floor_queue_length",
                "Raised hands waiting for the floor, per session.",
            ),
            &["session"],
        )?;
        let floor_wait = Histogram::with_opts(
            HistogramOpts::new(
                "floorcast_floor_wait_seconds",
                "Time from raising a hand to being granted the floor.",
            )
            .buckets(vec![
                5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
            ]),
        )?;
        let floor_grants = IntCounterVec::new(
            Opts::new(
                "floorcast_floor_grants_total",
                "Floor turns that ended, by how they ended (revoked, timeout, done).",
            ),
            &["end"],
        )?;
        for end in ["revoked", "timeout", "done"] {
            floor_grants.with_label_values(&[end]);
        }
        let caption_latency = HistogramVec::new(
            HistogramOpts::new(
                "floorcast_caption_latency_seconds",
                "From the end of the words (machine) or the captioner's POST (human) to the \
                 final caption going out to viewers.",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 10.0,
            ]),
            &["source"],
        )?;
        for source in ["asr", "cart"] {
            caption_latency.with_label_values(&[source]);
        }
        let asr_rtf = GaugeVec::new(
            Opts::new(
                "floorcast_asr_real_time_factor",
                "CPU seconds the recognizer spends per second of audio, per session (above 1: \
                 it cannot keep up and audio is dropped).",
            ),
            &["session"],
        )?;
        let asr_dropped = Counter::new(
            "floorcast_asr_dropped_audio_seconds_total",
            "Seconds of floor audio not recognised because the recognizer was behind.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "floorcast_build_info",
                "Always 1; the version of this binary.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // Series exist from the start, so rate() works from the first scrape.
        for dir in DIRECTIONS {
            for kind in KINDS {
                rtp_packets.with_label_values(&[dir, kind.as_str()]);
                rtp_bytes.with_label_values(&[dir, kind.as_str()]);
            }
        }

        // process_cpu_seconds_total, process_resident_memory_bytes, open fds…: what a load
        // generator on another machine reads the server's CPU and memory from.
        registry.register(Box::new(crate::process_metrics::ProcessMetrics::new()?))?;
        registry.register(Box::new(sessions.clone()))?;
        registry.register(Box::new(viewers.clone()))?;
        registry.register(Box::new(publishers.clone()))?;
        registry.register(Box::new(rtp_packets.clone()))?;
        registry.register(Box::new(rtp_bytes.clone()))?;
        registry.register(Box::new(nacks.clone()))?;
        registry.register(Box::new(plis.clone()))?;
        registry.register(Box::new(join_duration.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(floor_queue_length.clone()))?;
        registry.register(Box::new(floor_wait.clone()))?;
        registry.register(Box::new(floor_grants.clone()))?;
        registry.register(Box::new(caption_latency.clone()))?;
        registry.register(Box::new(asr_rtf.clone()))?;
        registry.register(Box::new(asr_dropped.clone()))?;
        registry.register(Box::new(build_info))?;

        Ok(Metrics {
            inner: Arc::new(Inner {
                registry,
                sessions,
                viewers,
                publishers,
                rtp_packets,
                rtp_bytes,
                nacks,
                plis,
                join_duration,
                http_requests,
                floor_queue_length,
                floor_wait,
                floor_grants,
                caption_latency,
                asr_rtf,
                asr_dropped,
                scrape: Mutex::new(()),
            }),
        })
    }

    /// A viewer got its first media `join` after its offer.
    pub fn observe_join(&self, join: Duration) {
        self.inner.join_duration.observe(join.as_secs_f64());
    }

    /// The queue of `session` now holds `len` hands. Sessions are a bounded, operator-made
    /// list, so the label is bounded.
    pub fn set_floor_queue_length(&self, session: &SessionId, len: usize) {
        self.inner
            .floor_queue_length
            .with_label_values(&[session.as_str()])
            .set(len as i64);
    }

    /// A deleted session's series go away.
    pub fn forget_floor_session(&self, session: &SessionId) {
        let _ = self
            .inner
            .floor_queue_length
            .remove_label_values(&[session.as_str()]);
    }

    /// A hand waited `wait` before its grant.
    pub fn observe_floor_wait(&self, wait: Duration) {
        self.inner.floor_wait.observe(wait.as_secs_f64());
    }

    /// A turn ended; `end` is `revoked`, `timeout` or `done`.
    pub fn count_floor_end(&self, end: &'static str) {
        self.inner.floor_grants.with_label_values(&[end]).inc();
    }

    /// A final caption went out `latency` after its words ended (or its POST arrived).
    pub fn observe_caption_latency(&self, source: captions::Source, latency: Duration) {
        self.inner
            .caption_latency
            .with_label_values(&[source.as_str()])
            .observe(latency.as_secs_f64());
    }

    pub fn set_asr_real_time_factor(&self, session: &SessionId, rtf: f64) {
        self.inner
            .asr_rtf
            .with_label_values(&[session.as_str()])
            .set(rtf);
    }

    /// Recognition of `session` stopped: its gauge goes away.
    pub fn forget_asr_session(&self, session: &SessionId) {
        let _ = self.inner.asr_rtf.remove_label_values(&[session.as_str()]);
    }

    pub fn add_asr_dropped_seconds(&self, seconds: f64) {
        if seconds > 0.0 {
            self.inner.asr_dropped.inc_by(seconds);
        }
    }

    /// `route` must be a route template (bounded), never a raw path.
    pub fn record_http(&self, route: &str, status: u16) {
        self.inner
            .http_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
    }

    /// Copies the current session list and media counters in, then encodes everything in the
    /// Prometheus text format. Session labels come only from `sessions` (the registry), so
    /// label cardinality is bounded by the sessions an operator created.
    pub fn render(
        &self,
        sessions: &[SessionId],
        stats: Option<&MediaStats>,
    ) -> Result<String, MetricsError> {
        let inner = &*self.inner;
        let _scrape = inner.scrape.lock().unwrap_or_else(|e| e.into_inner());
        inner.sessions.set(sessions.len() as i64);

        inner.viewers.reset();
        inner.publishers.reset();
        for id in sessions {
            inner.viewers.with_label_values(&[id.as_str()]).set(0);
            for role in ["floor", "speaker"] {
                inner
                    .publishers
                    .with_label_values(&[id.as_str(), role])
                    .set(0);
            }
        }
        if let Some(stats) = stats {
            for (id, counts) in stats.sessions() {
                let Some(id) = sessions.iter().find(|s| s.as_str() == id.as_str()) else {
                    continue;
                };
                let id = id.as_str();
                inner
                    .viewers
                    .with_label_values(&[id])
                    .set(counts.viewers as i64);
                inner
                    .publishers
                    .with_label_values(&[id, "floor"])
                    .set(counts.floor_publishers as i64);
                inner
                    .publishers
                    .with_label_values(&[id, "speaker"])
                    .set(counts.speaker_publishers as i64);
            }
            for (dir, counters) in DIRECTIONS.iter().zip([&stats.rtp_in, &stats.rtp_out]) {
                for kind in KINDS {
                    let labels = [*dir, kind.as_str()];
                    advance(
                        &inner.rtp_packets.with_label_values(&labels),
                        counters.packets(kind),
                    );
                    advance(
                        &inner.rtp_bytes.with_label_values(&labels),
                        counters.bytes(kind),
                    );
                }
            }
            advance(&inner.nacks, stats.nacks.get());
            advance(&inner.plis, stats.plis.get());
        }

        let mut out = Vec::new();
        TextEncoder::new().encode(&inner.registry.gather(), &mut out)?;
        // The text encoder writes only UTF-8 (names, labels and numbers we control).
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// Moves a Prometheus counter up to the engine's absolute value. An engine restart (value
/// going down) leaves the counter where it is rather than breaking monotonicity.
fn advance(counter: &GenericCounter<AtomicU64>, target: u64) {
    let current = counter.get();
    if target > current {
        counter.inc_by(target - current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        let m = Metrics::new().unwrap();
        let stats = MediaStats::default();
        stats.rtp_in.record(Kind::Video, 3, 3000);
        stats.rtp_out.record(Kind::Audio, 10, 1000);
        stats.nacks.add(2);
        m.observe_join(Duration::from_millis(700));
        m.record_http("/whip/{session}", 201);
        let s1 = SessionId::parse("s1").unwrap();
        let text = m.render(std::slice::from_ref(&s1), Some(&stats)).unwrap();
        for needle in [
            "floorcast_sessions 1",
            "floorcast_viewers{session=\"s1\"} 0",
            "floorcast_publishers{role=\"floor\",session=\"s1\"} 0",
            "floorcast_rtp_packets_total{direction=\"in\",kind=\"video\"} 3",
            "floorcast_rtp_bytes_total{direction=\"out\",kind=\"audio\"} 1000",
            "floorcast_nack_total 2",
            "floorcast_pli_total 0",
            "floorcast_join_duration_seconds_bucket{le=\"0.75\"} 1",
            "floorcast_http_requests_total{route=\"/whip/{session}\",status=\"201\"} 1",
            "floorcast_build_info{version=\"",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }

        // A second scrape does not add the same delta twice.
        stats.rtp_in.record(Kind::Video, 1, 100);
        let text = m.render(&[], Some(&stats)).unwrap();
        assert!(text.contains("floorcast_rtp_packets_total{direction=\"in\",kind=\"video\"} 4"));
        assert!(text.contains("floorcast_sessions 0"));
        assert!(
            !text.contains("session=\"s1\""),
            "deleted sessions lose their series"
        );
    }
}
