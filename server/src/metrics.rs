//! Every Prometheus metric of the server, defined once, named exactly as in DESIGN.md.
//!
//! The registry lives in app state (no globals), so two servers in one test process do not
//! share counters. Media counters are owned by the media engine (relaxed atomics its driver
//! bumps); they are copied into the registry at scrape time, under a mutex so that two
//! concurrent scrapes cannot both add the same delta.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use media::{Kind, MediaStats, ViewerLink};
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
    retransmitted: IntCounter,
    nacks_unanswered: IntCounter,
    resends_refused: IntCounter,
    app_egress_packets: IntCounter,
    video_pauses: IntCounter,
    video_resumes: IntCounter,
    video_paused_packets: IntCounter,
    plis: IntCounter,
    join_duration: Histogram,
    http_requests: IntCounterVec,
    floor_queue_length: IntGaugeVec,
    floor_wait: Histogram,
    floor_grants: IntCounterVec,
    queue_reads: IntCounterVec,
    caption_latency: HistogramVec,
    asr_rtf: GaugeVec,
    asr_dropped: Counter,
    hub_viewers: IntGaugeVec,
    viewers_by_link: IntGaugeVec,
    viewer_loss: GaugeVec,
    rtt: GaugeVec,
    jitter: GaugeVec,
    udp_send_drops: IntCounter,
    udp_gso_sends: IntCounter,
    udp_gso_segments: IntCounter,
    remote_candidates_ignored: IntCounter,
    draining: IntGauge,
    hostile: HostileMetrics,
    storage: StorageMetrics,
    asr_engines: AsrEngineMetrics,
    /// Held while copying media counters and encoding (see module doc).
    scrape: Mutex<()>,
}

const DIRECTIONS: [&str; 2] = ["in", "out"];
/// How a client got a whole floor queue.
pub const QUEUE_READS: [&str; 2] = ["get", "snapshot"];
const LINKS: [&str; 4] = ["good", "fair", "poor", "unknown"];
/// Hub label values per session; hubs beyond these (by name) are counted under `other`, so a
/// token minted with a made-up hub cannot grow the series without bound.
pub const MAX_HUB_LABELS: usize = 64;

/// One connected viewer as `/metrics` sees it.
pub struct ViewerSample<'a> {
    pub session: &'a str,
    pub hub: Option<&'a str>,
    pub link: Option<ViewerLink>,
}
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
        let retransmitted = IntCounter::new(
            "floorcast_rtp_retransmitted_packets_total",
            "RTP packets resent to viewers after their NACKs (RTX).",
        )?;
        registry.register(Box::new(retransmitted.clone()))?;
        let nacks_unanswered = IntCounter::new(
            "floorcast_rtp_nacks_unanswered_total",
            "NACKed packets that could not be resent: gone from their source's history.",
        )?;
        registry.register(Box::new(nacks_unanswered.clone()))?;
        let resends_refused = IntCounter::new(
            "floorcast_rtp_resends_refused_total",
            "NACKed packets not resent: the viewer stream's resend budget (a burst, then 15 % \
             of what it is forwarded) was spent.",
        )?;
        registry.register(Box::new(resends_refused.clone()))?;
        let app_egress_packets = IntCounter::new(
            "floorcast_rtp_app_egress_packets_total",
            "RTP packets to viewers sent by Floorcast's own egress (the rest of \
             floorcast_rtp_packets_total{direction=\"out\"} went through str0m's send streams).",
        )?;
        registry.register(Box::new(app_egress_packets.clone()))?;
        let video_pauses = IntCounter::new(
            "floorcast_viewer_video_pauses_total",
            "Times a viewer's video was paused because its link lost too much (audio and \
             captions go on; the viewer is told).",
        )?;
        registry.register(Box::new(video_pauses.clone()))?;
        let video_resumes = IntCounter::new(
            "floorcast_viewer_video_resumes_total",
            "Times a paused viewer's video came back after probes showed its link carries it.",
        )?;
        registry.register(Box::new(video_resumes.clone()))?;
        let video_paused_packets = IntCounter::new(
            "floorcast_rtp_video_paused_packets_total",
            "Video packets not sent to viewers whose video is paused (one per viewer copy).",
        )?;
        registry.register(Box::new(video_paused_packets.clone()))?;
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
        let queue_reads = IntCounterVec::new(
            Opts::new(
                "floorcast_queue_reads_total",
                "Whole floor queues built for a client: `get` (GET …/queue) or `snapshot` (the \
                 first event of a stream). Pages follow the events and read it once per stream.",
            ),
            &["via"],
        )?;
        for via in QUEUE_READS {
            queue_reads.with_label_values(&[via]);
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
        registry.register(Box::new(queue_reads.clone()))?;
        registry.register(Box::new(caption_latency.clone()))?;

        registry.register(Box::new(asr_rtf.clone()))?;
        registry.register(Box::new(asr_dropped.clone()))?;
        let hub_viewers = IntGaugeVec::new(
            Opts::new(
                "floorcast_hub_viewers",
                "Connected viewers per session and hub (hubs past the first 64 by name: other).",
            ),
            &["session", "hub"],
        )?;
        let viewers_by_link = IntGaugeVec::new(
            Opts::new(
                "floorcast_viewers_by_link",
                "Connected viewers per session by link quality from their RTCP receiver reports \
                 (good < 1 % loss, fair < 5 %, poor, unknown before the first report).",
            ),
            &["session", "link"],
        )?;
        let viewer_loss = GaugeVec::new(
            Opts::new(
                "floorcast_viewer_loss_ratio",
                "Fraction of packets lost as viewers report it (RTCP), quantile over a \
                 session's viewers (1: the worst viewer).",
            ),
            &["session", "quantile"],
        )?;
        let rtt = GaugeVec::new(
            Opts::new(
                "floorcast_rtt_seconds",
                "Round-trip time to viewers (RTCP), quantile over a session's viewers.",
            ),
            &["session", "quantile"],
        )?;
        let jitter = GaugeVec::new(
            Opts::new(
                "floorcast_jitter_seconds",
                "RFC 3550 interarrival jitter viewers report (RTCP), quantile over a session's \
                 viewers.",
            ),
            &["session", "quantile"],
        )?;
        let udp_send_drops = IntCounter::new(
            "floorcast_udp_send_drops_total",
            "Datagrams the media socket could not send (its buffer was full).",
        )?;
        let udp_gso_sends = IntCounter::new(
            "floorcast_udp_gso_sends_total",
            "UDP GSO messages sent: several datagrams to one peer handed to the kernel at once.",
        )?;
        let udp_gso_segments = IntCounter::new(
            "floorcast_udp_gso_segments_total",
            "Datagrams sent inside UDP GSO messages (the rest went one per message).",
        )?;
        let remote_candidates_ignored = IntCounter::new(
            "floorcast_remote_candidates_ignored_total",
            "Trickled ICE candidates skipped because this node cannot use them (mDNS names, TCP, \
             the other IP family).",
        )?;
        let draining = IntGauge::new(
            "floorcast_draining",
            "1 while the node drains after SIGTERM (no new viewers or publishers).",
        )?;
        for c in [&hub_viewers, &viewers_by_link] {
            registry.register(Box::new(c.clone()))?;
        }
        for c in [&viewer_loss, &rtt, &jitter] {
            registry.register(Box::new(c.clone()))?;
        }
        for c in [
            &udp_send_drops,
            &udp_gso_sends,
            &udp_gso_segments,
            &remote_candidates_ignored,
        ] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(draining.clone()))?;
        registry.register(Box::new(build_info))?;
        let hostile = HostileMetrics::new(&registry)?;
        let storage = StorageMetrics::register(&registry)?;
        let asr_engines = AsrEngineMetrics::register(&registry)?;

        Ok(Metrics {
            inner: Arc::new(Inner {
                registry,
                sessions,
                viewers,
                publishers,
                rtp_packets,
                rtp_bytes,
                nacks,
                retransmitted,
                nacks_unanswered,
                resends_refused,
                app_egress_packets,
                video_pauses,
                video_resumes,
                video_paused_packets,
                plis,
                join_duration,
                http_requests,
                floor_queue_length,
                floor_wait,
                floor_grants,
                queue_reads,
                caption_latency,
                asr_rtf,
                asr_dropped,
                hub_viewers,
                viewers_by_link,
                viewer_loss,
                rtt,
                jitter,
                udp_send_drops,
                udp_gso_sends,
                udp_gso_segments,
                remote_candidates_ignored,
                draining,
                hostile,
                storage,
                asr_engines,
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

    /// A whole queue was built for a client; `via` is one of [`QUEUE_READS`].
    pub fn count_queue_read(&self, via: &'static str) {
        self.inner.queue_reads.with_label_values(&[via]).inc();
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
    /// A request or connection refused by a limit (see [`Limit`]).
    pub fn limit_hit(&self, limit: Limit) {
        self.inner.hostile.limit_hit(limit);
    }

    /// Open HTTP connections (the accept loop's count).
    pub fn set_http_connections(&self, open: usize) {
        self.inner.hostile.http_connections.set(open as i64);
    }

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
        viewers: &[ViewerSample<'_>],
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
            advance(&inner.retransmitted, stats.retransmitted.get());
            advance(&inner.nacks_unanswered, stats.nacks_unanswered.get());
            advance(&inner.resends_refused, stats.resends_refused.get());
            advance(&inner.app_egress_packets, stats.app_egress_packets.get());
            advance(&inner.video_pauses, stats.video_pauses.get());
            advance(&inner.video_resumes, stats.video_resumes.get());
            advance(
                &inner.video_paused_packets,
                stats.video_paused_packets.get(),
            );
            advance(&inner.plis, stats.plis.get());
            advance(&inner.udp_send_drops, stats.send_drops.get());
            advance(&inner.udp_gso_sends, stats.udp_gso_sends.get());
            advance(&inner.udp_gso_segments, stats.udp_gso_segments.get());
            advance(
                &inner.remote_candidates_ignored,
                stats.remote_candidates_ignored.get(),
            );
            inner.hostile.copy_media(stats);
        }
        self.render_audience(sessions, viewers);

        let mut out = Vec::new();
        let mut families = inner.registry.gather();
        if let Some(stats) = stats {
            families.push(forward_latency_family(&stats.forward_latency));
        }
        TextEncoder::new().encode(&families, &mut out)?;
        // The text encoder writes only UTF-8 (names, labels and numbers we control).
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

impl Metrics {
    pub fn set_draining(&self, draining: bool) {
        self.inner.draining.set(i64::from(draining));
    }

    /// Hubs, link quality, loss and RTT per session, from the viewers connected now.
    fn render_audience(&self, sessions: &[SessionId], viewers: &[ViewerSample<'_>]) {
        let inner = &*self.inner;
        for g in [&inner.hub_viewers, &inner.viewers_by_link] {
            g.reset();
        }
        for g in [&inner.viewer_loss, &inner.rtt, &inner.jitter] {
            g.reset();
        }
        for id in sessions {
            let id = id.as_str();
            let mine: Vec<&ViewerSample<'_>> = viewers.iter().filter(|v| v.session == id).collect();
            for link in LINKS {
                inner.viewers_by_link.with_label_values(&[id, link]).set(0);
            }
            let mut hubs: Vec<&str> = mine.iter().filter_map(|v| v.hub).collect();
            hubs.sort_unstable();
            hubs.dedup();
            let named: &[&str] = &hubs[..hubs.len().min(MAX_HUB_LABELS)];
            let (mut losses, mut rtts, mut jitters) = (Vec::new(), Vec::new(), Vec::new());
            for v in &mine {
                if let Some(hub) = v.hub {
                    let label = if named.binary_search(&hub).is_ok() {
                        hub
                    } else {
                        "other"
                    };
                    inner.hub_viewers.with_label_values(&[id, label]).inc();
                }
                let link = match v.link {
                    Some(l) => {
                        // f32 from RTCP's 8-bit fraction: six decimals say all it knows.
                        losses.push((f64::from(l.loss) * 1e6).round() / 1e6);
                        if let Some(ms) = l.rtt_ms {
                            rtts.push(f64::from(ms) / 1000.0);
                        }
                        if let Some(j) = l.jitter_s {
                            jitters.push((f64::from(j) * 1e6).round() / 1e6);
                        }
                        crate::viewers_report::quality(l.loss)
                    }
                    None => "unknown",
                };
                inner.viewers_by_link.with_label_values(&[id, link]).inc();
            }
            for (q, p) in [("0.5", 0.5), ("0.95", 0.95), ("1", 1.0)] {
                if let Some(x) = quantile(&mut losses, p) {
                    inner.viewer_loss.with_label_values(&[id, q]).set(x);
                }
            }
            for (q, p) in [("0.5", 0.5), ("0.95", 0.95)] {
                if let Some(x) = quantile(&mut rtts, p) {
                    inner.rtt.with_label_values(&[id, q]).set(x);
                }
                if let Some(x) = quantile(&mut jitters, p) {
                    inner.jitter.with_label_values(&[id, q]).set(x);
                }
            }
        }
    }
}

// ------------------------------------------------------------------ tokens and per-token limits

/// The token checks and per-token limits (issue 16): refused tokens by reason, and the SSE
/// streams open and refused by `max_event_streams_per_token`. Registered once per registry
/// by [`Metrics::register_auth`]; cheap to clone.
#[derive(Clone)]
pub struct AuthMetrics {
    tokens_refused: IntCounterVec,
    event_streams: IntGauge,
    event_streams_refused: IntCounter,
}

impl Metrics {
    /// Creates and registers the [`AuthMetrics`], with a zero for each of `refusal_reasons`
    /// (the auth module's bounded list, given so that metrics need not know auth's errors);
    /// a second call on the same registry fails.
    pub fn register_auth(
        &self,
        refusal_reasons: &[&'static str],
    ) -> Result<AuthMetrics, MetricsError> {
        let tokens_refused = IntCounterVec::new(
            Opts::new(
                "floorcast_tokens_refused_total",
                "Requests refused for their token, by reason (missing, invalid, expired, \
                 not_yet_valid, lifetime_too_long, wrong_issuer, wrong_audience).",
            ),
            &["reason"],
        )?;
        for reason in refusal_reasons {
            tokens_refused.with_label_values(&[*reason]);
        }
        let event_streams = IntGauge::new(
            "floorcast_event_streams",
            "Open event streams (SSE) of all sessions.",
        )?;
        let event_streams_refused = IntCounter::new(
            "floorcast_event_streams_refused_total",
            "Event streams refused because their token had max_event_streams_per_token open.",
        )?;
        let registry = &self.inner.registry;
        registry.register(Box::new(tokens_refused.clone()))?;
        registry.register(Box::new(event_streams.clone()))?;
        registry.register(Box::new(event_streams_refused.clone()))?;
        Ok(AuthMetrics {
            tokens_refused,
            event_streams,
            event_streams_refused,
        })
    }
}

impl AuthMetrics {
    pub fn count_token_refused(&self, reason: &'static str) {
        self.tokens_refused.with_label_values(&[reason]).inc();
    }
    pub fn event_stream_opened(&self) {
        self.event_streams.inc();
    }
    pub fn event_stream_closed(&self) {
        self.event_streams.dec();
    }
    pub fn count_event_stream_refused(&self) {
        self.event_streams_refused.inc();
    }
}

/// `floorcast_forward_latency_seconds`: the media engine keeps its own fixed-bucket
/// histogram (atomics, no prometheus in the media crate); it is exposed as one here.
fn forward_latency_family(h: &media::LatencyHistogram) -> prometheus::proto::MetricFamily {
    use prometheus::proto;
    let (cumulative, sum, count) = h.snapshot();
    let mut hist = proto::Histogram::default();
    let buckets = media::FORWARD_LATENCY_BUCKETS_US
        .iter()
        .zip(cumulative)
        .map(|(bound_us, n)| {
            let mut b = proto::Bucket::default();
            b.set_upper_bound(*bound_us as f64 / 1e6);
            b.set_cumulative_count(n);
            b
        })
        .collect();
    hist.set_bucket(buckets);
    hist.set_sample_sum(sum);
    hist.set_sample_count(count);
    let mut m = proto::Metric::default();
    m.set_histogram(hist);
    let mut f = proto::MetricFamily::default();
    f.set_name("floorcast_forward_latency_seconds".into());
    f.set_help(
        "Time the SFU holds forwarded media: from a loop turn's first received datagram to \
         its copies handed to the kernel."
            .into(),
    );
    f.set_field_type(proto::MetricType::HISTOGRAM);
    f.set_metric(vec![m]);
    f
}

/// Nearest-rank quantile (sorts in place); `None` for no samples.
fn quantile(samples: &mut [f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable_by(f64::total_cmp);
    let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    Some(samples[rank - 1])
}

/// Moves a Prometheus counter up to the engine's absolute value. An engine restart (value
/// going down) leaves the counter where it is rather than breaking monotonicity.
fn advance(counter: &GenericCounter<AtomicU64>, target: u64) {
    let current = counter.get();
    if target > current {
        counter.inc_by(target - current);
    }
}

// ------------------------------------------------- storage and CART (issue 16, items 5–7)

/// Captions that went out live but could not be stored, and CART posts refused by sequencing.
struct StorageMetrics {
    caption_store_failures: IntCounterVec,
    cart_refused: IntCounterVec,
}

/// Why a CART post is refused (bounded label values).
pub const CART_REFUSALS: [&str; 3] = ["stale_seq", "seq_out_of_range", "too_many_streams"];

impl StorageMetrics {
    fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let caption_store_failures = IntCounterVec::new(
            Opts::new(
                "floorcast_caption_store_failures_total",
                "Final captions delivered to viewers live but not stored (missing from the \
                 transcript) because the database could not be written.",
            ),
            &["source"],
        )?;
        let cart_refused = IntCounterVec::new(
            Opts::new(
                "floorcast_cart_refused_total",
                "CART posts refused: stale_seq (409), seq_out_of_range (400), \
                 too_many_streams (429).",
            ),
            &["reason"],
        )?;
        for source in [captions::Source::Asr, captions::Source::Cart] {
            caption_store_failures.with_label_values(&[source.as_str()]);
        }
        for reason in CART_REFUSALS {
            cart_refused.with_label_values(&[reason]);
        }
        registry.register(Box::new(caption_store_failures.clone()))?;
        registry.register(Box::new(cart_refused.clone()))?;
        Ok(StorageMetrics {
            caption_store_failures,
            cart_refused,
        })
    }
}

impl Metrics {
    /// A final caption reached viewers but could not be stored.
    pub fn count_caption_store_failure(&self, source: captions::Source) {
        self.inner
            .storage
            .caption_store_failures
            .with_label_values(&[source.as_str()])
            .inc();
    }

    /// A CART post was refused; `reason` is one of [`CART_REFUSALS`].
    pub fn count_cart_refused(&self, reason: &'static str) {
        self.inner
            .storage
            .cart_refused
            .with_label_values(&[reason])
            .inc();
    }
}

// ------------------------------------------------- caption engines (issue 21, Must 3)

/// Which engine and model caption each session, and whether it is in fallback (Whisper
/// behind, pocketsphinx captioning its new utterances).
struct AsrEngineMetrics {
    engine: IntGaugeVec,
    fallback: IntGaugeVec,
    fallbacks: IntCounter,
}

impl AsrEngineMetrics {
    fn register(registry: &Registry) -> Result<Self, MetricsError> {
        let engine = IntGaugeVec::new(
            Opts::new(
                "floorcast_asr_engine",
                "1 for the engine and model captioning each session's new utterances now.",
            ),
            &["session", "engine", "model"],
        )?;
        let fallback = IntGaugeVec::new(
            Opts::new(
                "floorcast_asr_fallback",
                "1 while a session is captioned by pocketsphinx because Whisper is behind.",
            ),
            &["session"],
        )?;
        let fallbacks = IntCounter::new(
            "floorcast_asr_fallbacks_total",
            "Times a session fell back to pocketsphinx because Whisper was behind.",
        )?;
        registry.register(Box::new(engine.clone()))?;
        registry.register(Box::new(fallback.clone()))?;
        registry.register(Box::new(fallbacks.clone()))?;
        Ok(Self {
            engine,
            fallback,
            fallbacks,
        })
    }
}

impl Metrics {
    /// The engine of `session` is now `status` (it was `before`, if known).
    pub fn set_asr_engine(
        &self,
        session: &SessionId,
        before: Option<&captions::EngineStatus>,
        status: &captions::EngineStatus,
    ) {
        let m = &self.inner.asr_engines;
        if let Some(b) = before {
            let _ = m
                .engine
                .remove_label_values(&[session.as_str(), b.engine, &b.model]);
            if status.fallback && !b.fallback {
                m.fallbacks.inc();
            }
        }
        m.engine
            .with_label_values(&[session.as_str(), status.engine, &status.model])
            .set(1);
        m.fallback
            .with_label_values(&[session.as_str()])
            .set(i64::from(status.fallback));
    }

    /// Recognition of `session` stopped: its engine series go away.
    pub fn forget_asr_engine(&self, session: &SessionId, last: &captions::EngineStatus) {
        let m = &self.inner.asr_engines;
        let _ = m
            .engine
            .remove_label_values(&[session.as_str(), last.engine, &last.model]);
        let _ = m.fallback.remove_label_values(&[session.as_str()]);
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
        stats.retransmitted.add(3);
        stats.nacks_unanswered.add(4);
        stats.resends_refused.add(5);
        stats.app_egress_packets.add(9);
        stats.forward_latency.observe(Duration::from_micros(80));
        stats.forward_latency.observe(Duration::from_millis(3));
        m.observe_join(Duration::from_millis(700));
        m.record_http("/whip/{session}", 201);
        let s1 = SessionId::parse("s1").unwrap();
        let text = m
            .render(std::slice::from_ref(&s1), Some(&stats), &[])
            .unwrap();
        for needle in [
            "floorcast_sessions 1",
            "floorcast_viewers{session=\"s1\"} 0",
            "floorcast_publishers{role=\"floor\",session=\"s1\"} 0",
            "floorcast_rtp_packets_total{direction=\"in\",kind=\"video\"} 3",
            "floorcast_rtp_bytes_total{direction=\"out\",kind=\"audio\"} 1000",
            "floorcast_nack_total 2",
            "floorcast_rtp_retransmitted_packets_total 3",
            "floorcast_rtp_nacks_unanswered_total 4",
            "floorcast_rtp_resends_refused_total 5",
            "floorcast_rtp_app_egress_packets_total 9",
            "floorcast_forward_latency_seconds_bucket{le=\"0.0001\"} 1",
            "floorcast_forward_latency_seconds_count 2",
            "floorcast_pli_total 0",
            "floorcast_join_duration_seconds_bucket{le=\"0.75\"} 1",
            "floorcast_http_requests_total{route=\"/whip/{session}\",status=\"201\"} 1",
            "floorcast_build_info{version=\"",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }

        // A second scrape does not add the same delta twice.
        stats.rtp_in.record(Kind::Video, 1, 100);
        let text = m.render(&[], Some(&stats), &[]).unwrap();
        assert!(text.contains("floorcast_rtp_packets_total{direction=\"in\",kind=\"video\"} 4"));
        assert!(text.contains("floorcast_sessions 0"));
        assert!(
            !text.contains("session=\"s1\""),
            "deleted sessions lose their series"
        );
    }

    #[test]
    fn audience_by_hub_link_loss_and_rtt_with_bounded_hub_labels() {
        let m = Metrics::new().unwrap();
        let s1 = SessionId::parse("s1").unwrap();
        let link = |loss: f32, rtt: u32| {
            Some(ViewerLink {
                loss,
                rtt_ms: Some(rtt),
                jitter_s: Some(rtt as f32 / 10_000.0),
            })
        };
        let hubs: Vec<String> = (0..MAX_HUB_LABELS + 2)
            .map(|i| format!("hub{i:03}"))
            .collect();
        let mut viewers: Vec<ViewerSample<'_>> = hubs
            .iter()
            .map(|h| ViewerSample {
                session: "s1",
                hub: Some(h.as_str()),
                link: None,
            })
            .collect();
        viewers.push(ViewerSample {
            session: "s1",
            hub: Some("hub000"),
            link: link(0.0, 20),
        });
        viewers.push(ViewerSample {
            session: "s1",
            hub: None,
            link: link(0.10, 200),
        });
        viewers.push(ViewerSample {
            session: "s1",
            hub: None,
            link: link(0.02, 40),
        });
        // A viewer of a session the node does not serve is not counted.
        viewers.push(ViewerSample {
            session: "gone",
            hub: Some("x"),
            link: None,
        });
        m.set_draining(true);
        let text = m.render(std::slice::from_ref(&s1), None, &viewers).unwrap();
        for needle in [
            "floorcast_hub_viewers{hub=\"hub000\",session=\"s1\"} 2",
            "floorcast_hub_viewers{hub=\"hub063\",session=\"s1\"} 1",
            "floorcast_hub_viewers{hub=\"other\",session=\"s1\"} 2",
            "floorcast_viewers_by_link{link=\"unknown\",session=\"s1\"} 66",
            "floorcast_viewers_by_link{link=\"good\",session=\"s1\"} 1",
            "floorcast_viewers_by_link{link=\"fair\",session=\"s1\"} 1",
            "floorcast_viewers_by_link{link=\"poor\",session=\"s1\"} 1",
            "floorcast_viewer_loss_ratio{quantile=\"0.5\",session=\"s1\"} 0.02",
            "floorcast_viewer_loss_ratio{quantile=\"1\",session=\"s1\"} 0.1",
            "floorcast_rtt_seconds{quantile=\"0.95\",session=\"s1\"} 0.2",
            "floorcast_jitter_seconds{quantile=\"0.5\",session=\"s1\"} 0.004",
            "floorcast_draining 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(!text.contains("hub064"), "hub labels are bounded");
        assert!(!text.contains("session=\"gone\""));
    }
}

/// The limits a client can run into, as the `limit` label of
/// `floorcast_limit_refusals_total`: a fixed list, so the series are bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    HttpConnections,
    HttpConnectionsPerIp,
    HttpBodyTimeout,
    CreationsPerToken,
    CreationsPerIp,
    ResourcesPerToken,
    PatchesPerResource,
    RemoteCandidates,
    PeersPerSession,
    PeersPerNode,
}

impl Limit {
    pub const ALL: [Limit; 10] = [
        Limit::HttpConnections,
        Limit::HttpConnectionsPerIp,
        Limit::HttpBodyTimeout,
        Limit::CreationsPerToken,
        Limit::CreationsPerIp,
        Limit::ResourcesPerToken,
        Limit::PatchesPerResource,
        Limit::RemoteCandidates,
        Limit::PeersPerSession,
        Limit::PeersPerNode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Limit::HttpConnections => "http_connections",
            Limit::HttpConnectionsPerIp => "http_connections_per_ip",
            Limit::HttpBodyTimeout => "http_body_timeout",
            Limit::CreationsPerToken => "creations_per_token",
            Limit::CreationsPerIp => "creations_per_ip",
            Limit::ResourcesPerToken => "resources_per_token",
            Limit::PatchesPerResource => "patches_per_resource",
            Limit::RemoteCandidates => "remote_candidates",
            Limit::PeersPerSession => "peers_per_session",
            Limit::PeersPerNode => "peers_per_node",
        }
    }
}

/// What the hostile-input defences count: refusals by limit, open connections, and what the
/// media engine dropped as spoofed or excessive.
struct HostileMetrics {
    refusals: IntCounterVec,
    http_connections: IntGauge,
    stun_unauthenticated: IntCounter,
    keyframe_requests_dropped: IntCounter,
    media_commands_deferred: IntCounter,
    /// Between media shards: datagrams passed to their owner, packets relayed, and what a
    /// full shard queue dropped.
    shard_datagrams_passed: IntCounter,
    shard_packets_relayed: IntCounter,
    shard_queue_drops: IntCounter,
    tcp: TcpMetrics,
}

/// ICE-TCP: open connections, what its limits refused or closed, frames and drops.
struct TcpMetrics {
    connections: IntGauge,
    refused: IntCounterVec,
    closed: IntCounterVec,
    dropped: IntCounter,
    frames: IntCounterVec,
}

impl TcpMetrics {
    fn new(registry: &Registry) -> Result<Self, MetricsError> {
        let connections = IntGauge::new(
            "floorcast_tcp_connections",
            "Open ICE-TCP connections (capped by the engine's TCP limits).",
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "floorcast_tcp_refused_total",
                "ICE-TCP connections refused at accept, by limit (node total, per IP).",
            ),
            &["limit"],
        )?;
        let closed = IntCounterVec::new(
            Opts::new(
                "floorcast_tcp_closed_total",
                "ICE-TCP connections closed by a defence: no STUN request naming a peer in \
                 time, silent too long, a bad frame, or a first request without the peer's \
                 password.",
            ),
            &["reason"],
        )?;
        let dropped = IntCounter::new(
            "floorcast_tcp_dropped_datagrams_total",
            "Datagrams for an ICE-TCP connection whose send queue was full, dropped.",
        )?;
        let frames = IntCounterVec::new(
            Opts::new(
                "floorcast_tcp_frames_total",
                "ICE-TCP frames, by direction.",
            ),
            &["direction"],
        )?;
        for limit in ["total", "per_ip"] {
            refused.with_label_values(&[limit]);
        }
        for reason in TCP_CLOSE_REASONS {
            closed.with_label_values(&[reason]);
        }
        for direction in DIRECTIONS {
            frames.with_label_values(&[direction]);
        }
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(closed.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(frames.clone()))?;
        Ok(Self {
            connections,
            refused,
            closed,
            dropped,
            frames,
        })
    }

    fn copy(&self, t: &media::stats::TcpStats) {
        self.connections.set(t.connections.get() as i64);
        advance(
            &self.refused.with_label_values(&["total"]),
            t.refused_total_limit.get(),
        );
        advance(
            &self.refused.with_label_values(&["per_ip"]),
            t.refused_per_ip_limit.get(),
        );
        let closed = [
            t.handshake_timeouts.get(),
            t.idle_timeouts.get(),
            t.bad_frames.get(),
            t.unauthenticated.get(),
        ];
        for (reason, n) in TCP_CLOSE_REASONS.into_iter().zip(closed) {
            advance(&self.closed.with_label_values(&[reason]), n);
        }
        advance(&self.dropped, t.dropped_datagrams.get());
        advance(&self.frames.with_label_values(&["in"]), t.rx_frames.get());
        advance(&self.frames.with_label_values(&["out"]), t.tx_frames.get());
    }
}

const TCP_CLOSE_REASONS: [&str; 4] = [
    "handshake_timeout",
    "idle_timeout",
    "bad_frame",
    "unauthenticated",
];

impl HostileMetrics {
    fn new(registry: &Registry) -> Result<Self, MetricsError> {
        let refusals = IntCounterVec::new(
            Opts::new(
                "floorcast_limit_refusals_total",
                "Requests or connections refused because a limit was reached, by limit.",
            ),
            &["limit"],
        )?;
        for limit in Limit::ALL {
            refusals.with_label_values(&[limit.as_str()]);
        }
        let http_connections = IntGauge::new(
            "floorcast_http_connections",
            "Open HTTP connections (capped by max_http_connections).",
        )?;
        let stun_unauthenticated = IntCounter::new(
            "floorcast_stun_unauthenticated_total",
            "STUN requests from an unproven address without a valid MESSAGE-INTEGRITY \
             (spoofing attempts), dropped.",
        )?;
        let keyframe_requests_dropped = IntCounter::new(
            "floorcast_viewer_keyframe_requests_dropped_total",
            "Viewer PLI/FIR dropped because the same viewer asked too recently.",
        )?;
        let media_commands_deferred = IntCounter::new(
            "floorcast_media_commands_deferred_total",
            "Media loop turns that left commands (offers, candidates) for the next turn.",
        )?;
        registry.register(Box::new(refusals.clone()))?;
        registry.register(Box::new(http_connections.clone()))?;
        registry.register(Box::new(stun_unauthenticated.clone()))?;
        registry.register(Box::new(keyframe_requests_dropped.clone()))?;
        registry.register(Box::new(media_commands_deferred.clone()))?;
        let shard_datagrams_passed = IntCounter::new(
            "floorcast_media_shard_datagrams_passed_total",
            "Datagrams received on one media shard's socket for a peer of another, passed on.",
        )?;
        let shard_packets_relayed = IntCounter::new(
            "floorcast_media_shard_packets_relayed_total",
            "Publisher packets relayed from a session's home shard to another shard with viewers.",
        )?;
        let shard_queue_drops = IntCounter::new(
            "floorcast_media_shard_queue_drops_total",
            "Messages between media shards dropped because the receiving queue was full.",
        )?;
        registry.register(Box::new(shard_datagrams_passed.clone()))?;
        registry.register(Box::new(shard_packets_relayed.clone()))?;
        registry.register(Box::new(shard_queue_drops.clone()))?;
        Ok(HostileMetrics {
            tcp: TcpMetrics::new(registry)?,
            shard_datagrams_passed,
            shard_packets_relayed,
            shard_queue_drops,
            refusals,
            http_connections,
            stun_unauthenticated,
            keyframe_requests_dropped,
            media_commands_deferred,
        })
    }

    fn limit_hit(&self, limit: Limit) {
        self.refusals.with_label_values(&[limit.as_str()]).inc();
    }

    fn copy_media(&self, stats: &MediaStats) {
        advance(&self.stun_unauthenticated, stats.stun_unauthenticated.get());
        advance(
            &self.keyframe_requests_dropped,
            stats.viewer_keyframe_requests_dropped.get(),
        );
        advance(
            &self.media_commands_deferred,
            stats.commands_deferred_turns.get(),
        );
        advance(
            &self.shard_datagrams_passed,
            stats.shard_datagrams_passed.get(),
        );
        advance(
            &self.shard_packets_relayed,
            stats.shard_packets_relayed.get(),
        );
        advance(&self.shard_queue_drops, stats.shard_queue_drops.get());
        self.tcp.copy(&stats.tcp);
    }
}
