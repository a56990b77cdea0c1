//! A WHEP viewer built on the webrtc crate: recvonly audio+video (or audio only), counting
//! what arrives per kind — packets, payload bytes, sequence continuity ([`SeqTracker`]),
//! RFC 3550 jitter, SSRC changes, extra tracks — and when the first packet and the first
//! VP8 keyframe arrived after the offer was POSTed.
//!
//! Cheap on purpose (50 of them run in one test process): one socket and one driver task
//! per viewer, one reader task per track, a short uncontended lock per packet, no decoding.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde::Serialize;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};

use crate::jitter::JitterEstimator;
use crate::peer::{self, Conn, ConnOptions, Kinds, OPUS_CLOCK, PeerError, PeerEvents, VP8_CLOCK};
use crate::sequence::{SeqStats, SeqTracker};
use crate::vp8;
use crate::whep;
use crate::whip::Resource;

/// How a viewer connects.
#[derive(Debug, Clone)]
pub struct ViewerConfig {
    /// What the offer asks for (`Kinds::AUDIO_ONLY` offers a single audio m-line).
    pub kinds: Kinds,
    pub bind: IpAddr,
    pub connect_timeout: Duration,
    /// Send NACKs for missing packets, like a browser.
    pub nack: bool,
}

impl Default for ViewerConfig {
    fn default() -> Self {
        Self {
            kinds: Kinds::BOTH,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            connect_timeout: Duration::from_secs(10),
            nack: true,
        }
    }
}

/// What one kind (audio or video) looked like at the receiver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct KindStats {
    /// RTP packets delivered (duplicates included).
    pub packets: u64,
    /// RTP payload bytes.
    pub bytes: u64,
    pub seq: SeqStats,
    /// RFC 3550 interarrival jitter, milliseconds.
    pub jitter_ms: f64,
    /// The SSRC of the latest packet.
    pub ssrc: Option<u32>,
    /// Times the SSRC changed between consecutive packets (an SFU should hide publisher
    /// restarts behind one SSRC per viewer stream).
    pub ssrc_changes: u64,
    /// Remote tracks of this kind that opened (1 expected; more means the server made the
    /// client set up a new track, e.g. a new SSRC or renegotiation).
    pub tracks: u32,
    /// First packets of VP8 keyframes (video only).
    pub keyframes: u64,
    /// First packet of this kind, after the offer was posted.
    pub first_packet_after: Option<Duration>,
    /// Gaps between packets longer than [`FREEZE_GAP`] (for video: a picture that stood
    /// still), and their total length in milliseconds.
    pub freezes: u64,
    pub frozen_ms: f64,
}

/// A gap in arrivals that a person sees as a freeze (or hears as a dropout).
pub const FREEZE_GAP: Duration = Duration::from_millis(500);

/// A viewer's snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ViewerStats {
    pub audio: KindStats,
    pub video: KindStats,
    /// First VP8 keyframe after the offer was posted (the join time a user sees).
    pub first_keyframe_after: Option<Duration>,
    /// The WHEP answer arrived (HTTP + SFU offer/answer time), after the offer was posted.
    pub answer_after: Option<Duration>,
    /// ICE + DTLS completed, after the offer was posted.
    pub connected_after: Option<Duration>,
    pub state: String,
}

impl ViewerStats {
    pub fn packets(&self) -> u64 {
        self.audio.packets + self.video.packets
    }
}

/// Per-kind accounting shared by the full and light viewers: one call per packet.
pub(crate) struct KindState {
    pub stats: KindStats,
    seq: SeqTracker,
    jitter: JitterEstimator,
    last_arrival: Option<Duration>,
}

impl KindState {
    pub fn new(clock: u32) -> Self {
        Self {
            stats: KindStats::default(),
            seq: SeqTracker::new(),
            jitter: JitterEstimator::new(clock),
            last_arrival: None,
        }
    }

    /// One packet, `since` the join clock's start (a fixed origin for jitter).
    pub fn record(&mut self, since: Duration, header: PacketHeader, payload_len: usize) {
        let s = &mut self.stats;
        s.packets += 1;
        s.bytes += payload_len as u64;
        if s.ssrc.is_some_and(|x| x != header.ssrc) {
            s.ssrc_changes += 1;
        }
        s.ssrc = Some(header.ssrc);
        s.first_packet_after.get_or_insert(since);
        if header.keyframe {
            s.keyframes += 1;
        }
        if let Some(last) = self.last_arrival {
            let gap = since.saturating_sub(last);
            if gap > FREEZE_GAP {
                s.freezes += 1;
                s.frozen_ms += gap.as_secs_f64() * 1000.0;
            }
        }
        self.last_arrival = Some(since);
        self.seq.record(header.sequence);
        self.jitter.record(since, header.timestamp);
    }

    /// Forgets the last arrival, so that a pause the scenario made is not a freeze.
    pub fn forget_gap(&mut self) {
        self.last_arrival = None;
    }

    pub fn snapshot(&self) -> KindStats {
        KindStats {
            seq: self.seq.stats(),
            jitter_ms: self.jitter.jitter_ms(),
            ..self.stats
        }
    }
}

/// What [`KindState::record`] needs from a packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacketHeader {
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub keyframe: bool,
}

struct Shared {
    /// When the offer left (WHEP POST, or the loopback answer).
    t0: Mutex<Instant>,
    audio: Mutex<KindState>,
    video: Mutex<KindState>,
    first_keyframe: Mutex<Option<Duration>>,
    /// (answer, connected) after `t0`.
    milestones: Mutex<(Option<Duration>, Option<Duration>)>,
    /// The latest video track, to send PLI on.
    video_track: Mutex<Option<Arc<dyn TrackRemote>>>,
}

impl Shared {
    fn kind(&self, kind: RtpCodecKind) -> &Mutex<KindState> {
        if kind == RtpCodecKind::Audio {
            &self.audio
        } else {
            &self.video
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking reader task must not take the stats down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A WHEP (or loopback) viewer; see the module doc.
pub struct Viewer {
    conn: Conn,
    cfg: ViewerConfig,
    shared: Arc<Shared>,
    resource: Option<Resource>,
    closed: bool,
}

impl Viewer {
    async fn build(cfg: ViewerConfig, add_transceivers: bool) -> Result<Self, PeerError> {
        let shared = Arc::new(Shared {
            t0: Mutex::new(Instant::now()),
            audio: Mutex::new(KindState::new(OPUS_CLOCK)),
            video: Mutex::new(KindState::new(VP8_CLOCK)),
            first_keyframe: Mutex::new(None),
            milestones: Mutex::new((None, None)),
            video_track: Mutex::new(None),
        });
        let on_track = {
            let shared = Arc::clone(&shared);
            Box::new(move |track: Arc<dyn TrackRemote>| {
                tokio::spawn(read_track(track, Arc::clone(&shared)));
            }) as peer::OnTrack
        };
        let conn = peer::build(
            ConnOptions {
                kinds: cfg.kinds,
                bind: cfg.bind,
                nack: cfg.nack,
                keyframe_requests: false,
            },
            PeerEvents::new(Some(on_track)),
        )
        .await?;
        if add_transceivers {
            let mut kinds = Vec::new();
            if cfg.kinds.audio {
                kinds.push(RtpCodecKind::Audio);
            }
            if cfg.kinds.video {
                kinds.push(RtpCodecKind::Video);
            }
            for kind in kinds {
                conn.pc
                    .add_transceiver_from_kind(
                        kind,
                        Some(RTCRtpTransceiverInit {
                            direction: RTCRtpTransceiverDirection::Recvonly,
                            streams: vec![],
                            send_encodings: vec![],
                        }),
                    )
                    .await?;
            }
        }
        Ok(Self {
            conn,
            cfg,
            shared,
            resource: None,
            closed: false,
        })
    }

    /// A viewer that will make a recvonly offer.
    pub async fn new(cfg: ViewerConfig) -> Result<Self, PeerError> {
        Self::build(cfg, true).await
    }

    /// A viewer answering `offer` (loopback tests without a server). Returns the answer.
    pub async fn answering(cfg: ViewerConfig, offer: String) -> Result<(Self, String), PeerError> {
        let mut v = Self::build(cfg, false).await?;
        v.mark_start();
        let timeout = v.cfg.connect_timeout;
        let answer = v.conn.answer_complete(offer, timeout).await?;
        Ok((v, answer))
    }

    /// Subscribes over WHEP: offer, POST (the join clock starts here), answer, connected.
    pub async fn whep(
        cfg: ViewerConfig,
        client: &Client,
        base: &str,
        session: &str,
        token: &str,
    ) -> Result<Self, PeerError> {
        let mut v = Self::new(cfg).await?;
        let offer = v.offer().await?;
        v.mark_start();
        let resource = match whep::subscribe(client, base, session, token, offer).await {
            Ok(r) => r,
            Err(e) => {
                v.close().await;
                return Err(e.into());
            }
        };
        let answer = resource.answer.clone();
        v.resource = Some(resource);
        let answered = v.since_start();
        lock(&v.shared.milestones).0 = Some(answered);
        let connected = async {
            v.accept_answer(answer).await?;
            v.wait_connected().await?;
            let connected = v.since_start();
            lock(&v.shared.milestones).1 = Some(connected);
            Ok(())
        }
        .await;
        if let Err(e) = connected {
            v.close().await;
            return Err(e);
        }
        Ok(v)
    }

    /// The complete recvonly offer (after ICE gathering).
    pub async fn offer(&mut self) -> Result<String, PeerError> {
        let timeout = self.cfg.connect_timeout;
        self.conn.offer_complete(timeout).await
    }

    fn since_start(&self) -> Duration {
        lock(&self.shared.t0).elapsed()
    }

    /// Restarts the join clock (call right before sending the offer).
    pub fn mark_start(&self) {
        *lock(&self.shared.t0) = Instant::now();
    }

    pub async fn accept_answer(&self, answer: String) -> Result<(), PeerError> {
        self.conn.apply_answer(answer).await
    }

    pub async fn wait_connected(&mut self) -> Result<(), PeerError> {
        let timeout = self.cfg.connect_timeout;
        self.conn.wait_connected(timeout).await
    }

    pub fn stats(&self) -> ViewerStats {
        // One guard per statement: two temporaries of the same mutex would deadlock.
        let (answer_after, connected_after) = *lock(&self.shared.milestones);
        let audio = lock(&self.shared.audio).snapshot();
        let video = lock(&self.shared.video).snapshot();
        let first_keyframe_after = *lock(&self.shared.first_keyframe);
        ViewerStats {
            audio,
            video,
            first_keyframe_after,
            answer_after,
            connected_after,
            state: self.state().to_string(),
        }
    }

    pub fn state(&self) -> RTCPeerConnectionState {
        *self.conn.state.borrow()
    }

    /// Waits until `pred(stats)` holds, polling every 50 ms; `false` on timeout.
    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&ViewerStats) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.stats()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Forgets the last arrivals: the scenario paused the publisher, that was no freeze.
    pub fn forget_gaps(&self) {
        lock(&self.shared.audio).forget_gap();
        lock(&self.shared.video).forget_gap();
    }

    pub fn resource(&self) -> Option<&Resource> {
        self.resource.as_ref()
    }

    /// Sends a PLI for the video stream, as a browser does after loss. `false` when no video
    /// track or packet has arrived yet.
    pub async fn send_pli(&self) -> bool {
        let track = lock(&self.shared.video_track).clone();
        let media_ssrc = lock(&self.shared.video).stats.ssrc;
        let (Some(track), Some(media_ssrc)) = (track, media_ssrc) else {
            return false;
        };
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        track.write_rtcp(vec![Box::new(pli)]).await.is_ok()
    }

    pub fn peer_connection(&self) -> &Arc<dyn PeerConnection> {
        &self.conn.pc
    }

    /// DELETEs the WHEP resource (returns its status) and closes the connection; bounded.
    pub async fn close(mut self) -> Option<StatusCode> {
        self.closed = true;
        let status = match &self.resource {
            Some(r) => r.delete().await.ok(),
            None => None,
        };
        peer::close_bounded(&self.conn.pc).await;
        status
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let pc = Arc::clone(&self.conn.pc);
            rt.spawn(async move { peer::close_bounded(&pc).await });
        }
    }
}

async fn read_track(track: Arc<dyn TrackRemote>, shared: Arc<Shared>) {
    let kind = track.kind().await;
    lock(shared.kind(kind)).stats.tracks += 1;
    if kind == RtpCodecKind::Video {
        *lock(&shared.video_track) = Some(Arc::clone(&track));
    }
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(pkt) => {
                let now = Instant::now();
                let since = now.saturating_duration_since(*lock(&shared.t0));
                let keyframe = kind == RtpCodecKind::Video && vp8::is_keyframe_start(&pkt.payload);
                lock(shared.kind(kind)).record(
                    since,
                    PacketHeader {
                        sequence: pkt.header.sequence_number,
                        timestamp: pkt.header.timestamp,
                        ssrc: pkt.header.ssrc,
                        keyframe,
                    },
                    pkt.payload.len(),
                );
                if keyframe {
                    lock(&shared.first_keyframe).get_or_insert(since);
                }
            }
            TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError => break,
            _ => {}
        }
    }
}
