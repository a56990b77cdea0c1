//! Counters the server exports as Prometheus metrics. The driver thread is the only writer;
//! counters are relaxed atomics (one add per packet in, one per batch out), and the per-session
//! table is touched only when peers join or leave, never per packet.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::ids::{PeerId, Role, SessionId};

/// Media kind for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Video,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Audio => "audio",
            Kind::Video => "video",
        }
    }
}

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A level that goes up and down (open connections).
#[derive(Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// ICE-TCP ([`crate::tcp`]): connections, what the limits refused or closed, frames.
#[derive(Default)]
pub struct TcpStats {
    /// Open ICE-TCP connections.
    pub connections: Gauge,
    /// Connections refused at accept: the node's limit, or one address's.
    pub refused_total_limit: Counter,
    pub refused_per_ip_limit: Counter,
    /// Closed because no STUN request naming a peer came within the handshake timeout.
    pub handshake_timeouts: Counter,
    /// Closed because nothing came for the idle timeout (a connected client sends consent
    /// checks every few seconds).
    pub idle_timeouts: Counter,
    /// Closed because a frame was empty or larger than the largest accepted.
    pub bad_frames: Counter,
    /// Closed because the first frame did not prove a peer's ICE password.
    pub unauthenticated: Counter,
    /// Datagrams for a connection whose send queue was full (a slow or stalled client),
    /// dropped instead of waiting.
    pub dropped_datagrams: Counter,
    /// Frames received / sent.
    pub rx_frames: Counter,
    pub tx_frames: Counter,
}

/// Packet and byte counters for one direction, per kind.
#[derive(Default)]
pub struct DirectionCounters {
    pub audio_packets: Counter,
    pub audio_bytes: Counter,
    pub video_packets: Counter,
    pub video_bytes: Counter,
}

impl DirectionCounters {
    pub fn record(&self, kind: Kind, packets: u64, bytes: u64) {
        match kind {
            Kind::Audio => {
                self.audio_packets.add(packets);
                self.audio_bytes.add(bytes);
            }
            Kind::Video => {
                self.video_packets.add(packets);
                self.video_bytes.add(bytes);
            }
        }
    }
    pub fn packets(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Audio => self.audio_packets.get(),
            Kind::Video => self.video_packets.get(),
        }
    }
    pub fn bytes(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Audio => self.audio_bytes.get(),
            Kind::Video => self.video_bytes.get(),
        }
    }
}

/// Upper bounds of [`LatencyHistogram`]'s buckets, microseconds.
pub const FORWARD_LATENCY_BUCKETS_US: [u64; 11] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
];

/// A fixed-bucket latency histogram of relaxed atomics: one `observe` per media loop turn.
#[derive(Default)]
pub struct LatencyHistogram {
    /// Per bucket (not cumulative); the last one is above every bound.
    buckets: [AtomicU64; FORWARD_LATENCY_BUCKETS_US.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, d: std::time::Duration) {
        let us = d.as_micros() as u64;
        let i = FORWARD_LATENCY_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(FORWARD_LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u128::from(u64::MAX)) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Cumulative counts per bound of [`FORWARD_LATENCY_BUCKETS_US`], then the sum in
    /// seconds and the count (what a Prometheus histogram exposes).
    pub fn snapshot(&self) -> (Vec<u64>, f64, u64) {
        let mut total = 0;
        let cumulative = FORWARD_LATENCY_BUCKETS_US
            .iter()
            .enumerate()
            .map(|(i, _)| {
                total += self.buckets[i].load(Relaxed);
                total
            })
            .collect();
        (
            cumulative,
            self.sum_ns.load(Relaxed) as f64 / 1e9,
            self.count.load(Relaxed),
        )
    }
}

/// A viewer's link as its receiver reports describe it (updated about once a second).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ViewerLink {
    /// Fraction of packets lost in the last report interval, worst of its m-lines, 0..=1.
    pub loss: f32,
    /// Round-trip time, when a report allowed measuring it.
    pub rtt_ms: Option<u32>,
    /// RFC 3550 interarrival jitter the viewer reports, worst of its m-lines, seconds.
    pub jitter_s: Option<f32>,
}

/// Peers connected to one session right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounts {
    pub viewers: u64,
    pub floor_publishers: u64,
    pub speaker_publishers: u64,
    /// Whether the speaker holding the floor sends video (its camera replaces the floor
    /// feed's picture), once its media is negotiated.
    pub speaker_video: bool,
}

#[derive(Default)]
pub struct MediaStats {
    /// RTP received from publishers (media payload packets, RTX excluded).
    pub rtp_in: DirectionCounters,
    /// RTP written to viewers (one per viewer copy).
    pub rtp_out: DirectionCounters,
    /// NACKs received from viewers.
    pub nacks: Counter,
    /// RTP packets resent to viewers after their NACKs.
    pub retransmitted: Counter,
    /// NACKed packets not resent because the viewer stream's resend budget was spent (see
    /// `viewer_egress::ResendBudget`).
    pub resends_refused: Counter,
    /// Viewer packets sent by our own egress (the rest of `rtp_out` went through str0m's
    /// send streams).
    pub app_egress_packets: Counter,
    /// NACKed packets that could not be resent: no longer in their source's history (or the
    /// source changed since).
    pub nacks_unanswered: Counter,
    /// Viewers whose video was paused because their link could not carry it, and whose
    /// video came back ([`crate::forward::video_gate`]).
    pub video_pauses: Counter,
    pub video_resumes: Counter,
    /// Video packets held back from such viewers (one per viewer copy).
    pub video_paused_packets: Counter,
    /// Keyframe requests (PLI/FIR) sent to publishers.
    pub plis: Counter,
    /// Keyframe requests received from viewers (before rate limiting).
    pub viewer_keyframe_requests: Counter,
    /// Of those, the ones dropped because the same viewer asked too recently.
    pub viewer_keyframe_requests_dropped: Counter,
    /// Datagrams that could not be sent (socket buffer full).
    pub send_drops: Counter,
    /// Audio packets the tap's consumer was too slow to take.
    pub tap_dropped: Counter,
    /// Caption messages written to viewers' `captions` data channels (one per viewer copy).
    pub captions_sent: Counter,
    /// Caption copies a viewer's channel refused (send buffer full: the viewer does not read
    /// or its path is congested). Messages refused by a full command queue are not counted
    /// here: `MediaHandle::send_captions` returns false for those.
    pub captions_dropped: Counter,
    /// From the first datagram of a loop turn to the turn's sends handed to the kernel: how
    /// long the SFU holds what it forwards (once per turn that received media).
    pub forward_latency: LatencyHistogram,
    /// Media loop turns that left commands queued for the next turn (command flood).
    pub commands_deferred_turns: Counter,
    /// Datagrams that no peer accepted (garbage, stale, unknown sender).
    pub unroutable_datagrams: Counter,
    /// STUN requests naming a peer's ufrag from an unproven address without a valid
    /// MESSAGE-INTEGRITY (spoofing, or a client with the wrong password): dropped.
    pub stun_unauthenticated: Counter,
    /// Trickled candidates skipped because this node cannot use them (mDNS names, TCP, the
    /// other IP family).
    pub remote_candidates_ignored: Counter,
    /// All datagrams sent / bytes sent (media, RTCP, STUN, DTLS, retransmits).
    pub udp_tx_datagrams: Counter,
    pub udp_tx_bytes: Counter,
    pub udp_rx_datagrams: Counter,
    /// UDP GSO messages sent (several datagrams to one peer in one message) and the
    /// datagrams they carried; the rest went one per message.
    pub udp_gso_sends: Counter,
    pub udp_gso_segments: Counter,
    pub udp_rx_bytes: Counter,
    /// Datagrams that arrived on one shard's socket for a peer of another, passed on once.
    pub shard_datagrams_passed: Counter,
    /// Publisher packets sent from a session's home shard to another shard with viewers
    /// (one per packet per shard, never per viewer).
    pub shard_packets_relayed: Counter,
    /// Messages between shards dropped because the receiving shard's queue was full.
    pub shard_queue_drops: Counter,
    pub tcp: TcpStats,
    sessions: Mutex<HashMap<SessionId, SessionCounts>>,
    /// Peers on the node, all shards: kept with `sessions`, under its lock.
    peers: std::sync::atomic::AtomicUsize,
    /// Written once per viewer per stats interval, never per packet.
    links: Mutex<HashMap<PeerId, ViewerLink>>,
}

impl MediaStats {
    /// Counts a new peer if the node and its session have room; every shard admits through
    /// here, so the limits hold for the node, not per shard. Once per offer, never per packet.
    pub(crate) fn admit(
        &self,
        session: &SessionId,
        role: Role,
        max_peers: usize,
        max_per_session: usize,
    ) -> Result<(), crate::MediaError> {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if self.peers.load(Relaxed) >= max_peers {
            return Err(crate::MediaError::TooManyPeers(max_peers));
        }
        let in_session = map.get(session).map_or(0, |c| {
            (c.viewers + c.floor_publishers + c.speaker_publishers) as usize
        });
        if in_session >= max_per_session {
            return Err(crate::MediaError::SessionFull(
                session.clone(),
                max_per_session,
            ));
        }
        self.peers.fetch_add(1, Relaxed);
        Self::count_in(&mut map, session, role);
        Ok(())
    }

    /// Peers on the node (all shards).
    pub fn peers(&self) -> usize {
        self.peers.load(Relaxed)
    }

    fn count_in(map: &mut HashMap<SessionId, SessionCounts>, session: &SessionId, role: Role) {
        let c = map.entry(session.clone()).or_default();
        match role {
            Role::Viewer => c.viewers += 1,
            Role::Floor => c.floor_publishers += 1,
            Role::Speaker => c.speaker_publishers += 1,
        }
    }

    pub(crate) fn peer_removed(&self, session: &SessionId, role: Role) {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .peers
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
        if let Some(c) = map.get_mut(session) {
            match role {
                Role::Viewer => c.viewers = c.viewers.saturating_sub(1),
                Role::Floor => c.floor_publishers = c.floor_publishers.saturating_sub(1),
                Role::Speaker => {
                    c.speaker_publishers = c.speaker_publishers.saturating_sub(1);
                    c.speaker_video &= c.speaker_publishers > 0;
                }
            }
            if *c == SessionCounts::default() {
                map.remove(session);
            }
        }
    }

    pub(crate) fn set_speaker_video(&self, session: &SessionId, video: bool) {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get_mut(session) {
            c.speaker_video = video;
        }
    }

    pub(crate) fn viewer_link(&self, peer: PeerId, link: ViewerLink) {
        let mut map = self.links.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(peer, link);
    }

    pub(crate) fn forget_link(&self, peer: PeerId) {
        let mut map = self.links.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&peer);
    }

    /// The last reported link of every viewer that has sent a receiver report.
    pub fn viewer_links(&self) -> HashMap<PeerId, ViewerLink> {
        self.links.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Connected peers per session (sessions with no peer are absent).
    pub fn sessions(&self) -> Vec<(SessionId, SessionCounts)> {
        let map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}
