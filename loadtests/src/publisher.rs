//! A floor publisher built on the webrtc crate: synthetic Opus (50 packets/s, 20 ms) and VP8
//! (about 30 fps at a configurable bitrate) written as ready-made RTP through
//! `TrackLocalStaticRTP`, so we control every header bit the SFU looks at.
//!
//! It behaves like a browser encoder in the ways an SFU depends on: the first frame is a
//! keyframe, a keyframe follows every received PLI/FIR (counted, see
//! [`PublisherStats::keyframe_requests`]), periodic keyframes are optional, and RTP
//! timestamps follow the wall clock so a stalled sender does not compress time.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::{Client, StatusCode};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::PeerConnection;

use crate::peer::{self, Conn, ConnOptions, Kinds, PeerError, PeerEvents, VP8_CLOCK};
use crate::synthetic::{FrameSizes, SplitMix64, opus_packet, vp8_frame};
use crate::vp8::Vp8Packetizer;
use crate::whip::{self, Resource};

/// How a publisher sends.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub kinds: Kinds,
    /// Video bitrate target, bits/s (≈ 1 Mbps like a 360p–720p webcam).
    pub video_bitrate_bps: u32,
    pub fps: u32,
    /// A keyframe every this many frames besides the first and requested ones (0 = never).
    pub keyframe_interval: u32,
    /// Opus packet size range, bytes (inclusive).
    pub audio_payload: (usize, usize),
    /// RTP payload budget per packet.
    pub max_payload: usize,
    /// VP8 descriptor with a 15-bit PictureID (as browsers send) instead of the 1-byte form.
    pub vp8_picture_id: bool,
    pub bind: IpAddr,
    pub connect_timeout: Duration,
    /// Real Opus packets (20 ms each) to send instead of synthetic ones, in order; audio
    /// stops after the last (captions tests publish speech this way).
    pub audio_script: Option<Arc<[Bytes]>>,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            kinds: Kinds::BOTH,
            video_bitrate_bps: 1_000_000,
            fps: 30,
            keyframe_interval: 0,
            audio_payload: (100, 160),
            max_payload: 1200,
            vp8_picture_id: true,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            connect_timeout: Duration::from_secs(10),
            audio_script: None,
        }
    }
}

/// What a publisher has sent and received so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PublisherStats {
    pub audio_packets: u64,
    pub audio_bytes: u64,
    pub video_packets: u64,
    pub video_bytes: u64,
    pub video_frames: u64,
    pub keyframes: u64,
    pub pli: u64,
    pub fir: u64,
    /// `write_rtp` failures (e.g. the connection closed under us).
    pub send_errors: u64,
}

impl PublisherStats {
    pub fn keyframe_requests(&self) -> u64 {
        self.pli + self.fir
    }

    pub fn packets(&self) -> u64 {
        self.audio_packets + self.video_packets
    }
}

#[derive(Default)]
struct Counters {
    audio_packets: AtomicU64,
    audio_bytes: AtomicU64,
    video_packets: AtomicU64,
    video_bytes: AtomicU64,
    video_frames: AtomicU64,
    keyframes: AtomicU64,
    pli: AtomicU64,
    fir: AtomicU64,
    send_errors: AtomicU64,
    force_keyframe: AtomicBool,
    paused: AtomicBool,
}

struct LocalTrack {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    kind: RtpCodecKind,
}

/// A running (or about to run) publisher; see the module doc.
pub struct Publisher {
    conn: Conn,
    cfg: PublisherConfig,
    tracks: Vec<LocalTrack>,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    resource: Option<Resource>,
}

impl Publisher {
    /// Builds the connection and its send-only tracks (fresh random SSRCs).
    pub async fn new(cfg: PublisherConfig) -> Result<Self, PeerError> {
        let conn = peer::build(
            ConnOptions {
                kinds: cfg.kinds,
                bind: cfg.bind,
                nack: true,
                keyframe_requests: true,
            },
            PeerEvents::new(None),
        )
        .await?;
        let mut rng = SplitMix64::from_entropy();
        let mut tracks = Vec::new();
        let stream_id = format!("floorcast-load-{:08x}", rng.next_u32());
        let wanted = [
            (cfg.kinds.audio, RtpCodecKind::Audio, peer::opus_codec()),
            (cfg.kinds.video, RtpCodecKind::Video, peer::vp8_codec()),
        ];
        for (on, kind, codec) in wanted {
            if !on {
                continue;
            }
            let ssrc = rng.next_u32();
            let track = Arc::new(TrackLocalStaticRTP::new(media_track(
                &stream_id, kind, codec, ssrc,
            )));
            conn.pc
                .add_transceiver_from_track(
                    Arc::clone(&track) as Arc<dyn TrackLocal>,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await?;
            tracks.push(LocalTrack { track, ssrc, kind });
        }
        Ok(Self {
            conn,
            cfg,
            tracks,
            counters: Arc::default(),
            stop: watch::Sender::new(false),
            tasks: Vec::new(),
            resource: None,
        })
    }

    /// Publishes over WHIP: offer, POST, answer, wait for the connection, start sending.
    pub async fn whip(
        cfg: PublisherConfig,
        client: &Client,
        base: &str,
        session: &str,
        token: &str,
    ) -> Result<Self, PeerError> {
        let mut p = Self::new(cfg).await?;
        let offer = p.offer().await?;
        let resource = match whip::publish(client, base, session, token, offer).await {
            Ok(r) => r,
            Err(e) => {
                p.close_connection().await;
                return Err(e.into());
            }
        };
        let answer = resource.answer.clone();
        p.resource = Some(resource);
        if let Err(e) = p.accept_answer(answer).await {
            p.close().await;
            return Err(e);
        }
        if let Err(e) = p.start().await {
            p.close().await;
            return Err(e);
        }
        Ok(p)
    }

    /// The complete SDP offer (after ICE gathering).
    pub async fn offer(&mut self) -> Result<String, PeerError> {
        self.conn.offer_complete(self.cfg.connect_timeout).await
    }

    pub async fn accept_answer(&self, answer: String) -> Result<(), PeerError> {
        self.conn.apply_answer(answer).await
    }

    /// Waits for the connection and starts the media and RTCP tasks.
    pub async fn start(&mut self) -> Result<(), PeerError> {
        self.conn.wait_connected(self.cfg.connect_timeout).await?;
        let senders = self.conn.pc.get_senders().await;
        for t in &self.tracks {
            let mut pt = None;
            for s in &senders {
                let params = s.get_parameters().await?;
                let same_kind = params
                    .rtp_parameters
                    .codecs
                    .first()
                    .is_some_and(|c| kind_of(&c.rtp_codec) == t.kind);
                let has_ssrc = params
                    .encodings
                    .iter()
                    .any(|e| e.rtp_coding_parameters.ssrc == Some(t.ssrc));
                if same_kind && has_ssrc {
                    pt = params.rtp_parameters.codecs.first().map(|c| c.payload_type);
                }
            }
            let pt = pt.ok_or_else(|| PeerError::Other(format!("{} not negotiated", t.kind)))?;
            let task = match t.kind {
                RtpCodecKind::Video => tokio::spawn(send_video(
                    Arc::clone(&t.track),
                    t.ssrc,
                    pt,
                    self.cfg.clone(),
                    Arc::clone(&self.counters),
                    self.stop.subscribe(),
                )),
                _ => tokio::spawn(send_audio(
                    Arc::clone(&t.track),
                    t.ssrc,
                    pt,
                    self.cfg.clone(),
                    Arc::clone(&self.counters),
                    self.stop.subscribe(),
                )),
            };
            self.tasks.push(task);
            self.tasks.push(tokio::spawn(read_feedback(
                Arc::clone(&t.track),
                Arc::clone(&self.counters),
                self.stop.subscribe(),
            )));
        }
        Ok(())
    }

    pub fn stats(&self) -> PublisherStats {
        let c = &self.counters;
        PublisherStats {
            audio_packets: c.audio_packets.load(Ordering::Relaxed),
            audio_bytes: c.audio_bytes.load(Ordering::Relaxed),
            video_packets: c.video_packets.load(Ordering::Relaxed),
            video_bytes: c.video_bytes.load(Ordering::Relaxed),
            video_frames: c.video_frames.load(Ordering::Relaxed),
            keyframes: c.keyframes.load(Ordering::Relaxed),
            pli: c.pli.load(Ordering::Relaxed),
            fir: c.fir.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
        }
    }

    /// SSRCs of (audio, video) as sent on the wire.
    pub fn ssrcs(&self) -> (Option<u32>, Option<u32>) {
        let find = |k| self.tracks.iter().find(|t| t.kind == k).map(|t| t.ssrc);
        (find(RtpCodecKind::Audio), find(RtpCodecKind::Video))
    }

    /// Pauses/resumes sending (timestamps keep following the clock), e.g. to read sent and
    /// received counts with nothing in flight.
    pub fn set_paused(&self, paused: bool) {
        self.counters.paused.store(paused, Ordering::Relaxed);
    }

    /// Makes the next video frame a keyframe.
    pub fn request_keyframe(&self) {
        self.counters.force_keyframe.store(true, Ordering::Relaxed);
    }

    /// The WHIP resource, when published through [`Publisher::whip`].
    pub fn resource(&self) -> Option<&Resource> {
        self.resource.as_ref()
    }

    pub fn peer_connection(&self) -> &Arc<dyn PeerConnection> {
        &self.conn.pc
    }

    async fn close_connection(&mut self) {
        self.stop.send_replace(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        peer::close_bounded(&self.conn.pc).await;
    }

    /// Stops sending, DELETEs the WHIP resource (returns its status) and closes the
    /// connection. Bounded: never waits more than a few seconds.
    pub async fn close(mut self) -> Option<StatusCode> {
        self.stop.send_replace(true);
        let status = match &self.resource {
            Some(r) => r.delete().await.ok(),
            None => None,
        };
        self.close_connection().await;
        status
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn kind_of(codec: &RTCRtpCodec) -> RtpCodecKind {
    if codec.mime_type.to_ascii_lowercase().starts_with("audio/") {
        RtpCodecKind::Audio
    } else {
        RtpCodecKind::Video
    }
}

fn media_track(
    stream_id: &str,
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
    ssrc: u32,
) -> MediaStreamTrack {
    MediaStreamTrack::new(
        stream_id.to_owned(),
        format!("{stream_id}-{kind}"),
        format!("synthetic {kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )
}

fn header(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool) -> rtp::header::Header {
    rtp::header::Header {
        version: 2,
        marker,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        ..Default::default()
    }
}

/// RTP timestamp for `elapsed` at `clock` Hz from `base`.
fn rtp_ts(base: u32, elapsed: Duration, clock: u32) -> u32 {
    base.wrapping_add((elapsed.as_secs_f64() * f64::from(clock)) as u64 as u32)
}

async fn send_audio(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    pt: u8,
    cfg: PublisherConfig,
    c: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = SplitMix64::from_entropy();
    let mut seq = rng.next_u32() as u16;
    let ts_base = rng.next_u32();
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut first = true;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if c.paused.load(Ordering::Relaxed) {
            continue;
        }
        // Whole 20 ms frames since start, so timestamps stay on the 960-sample grid.
        let frames = (start.elapsed().as_millis() / 20) as u32;
        let ts = ts_base.wrapping_add(frames.wrapping_mul(960));
        let payload = match &cfg.audio_script {
            Some(script) => match script.get(frames as usize) {
                Some(p) => p.clone(),
                None => break,
            },
            None => {
                let size = rng.range(cfg.audio_payload.0, cfg.audio_payload.1);
                Bytes::from(opus_packet(&mut rng, size))
            }
        };
        let len = payload.len() as u64;
        let pkt = rtp::Packet {
            header: header(pt, seq, ts, ssrc, first),
            payload,
        };
        match track.write_rtp(pkt).await {
            Ok(()) => {
                c.audio_packets.fetch_add(1, Ordering::Relaxed);
                c.audio_bytes.fetch_add(len, Ordering::Relaxed);
            }
            Err(_) => {
                c.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        seq = seq.wrapping_add(1);
        first = false;
    }
}

async fn send_video(
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    pt: u8,
    cfg: PublisherConfig,
    c: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = SplitMix64::from_entropy();
    let mut seq = rng.next_u32() as u16;
    let ts_base = rng.next_u32();
    let fps = cfg.fps.max(1);
    let sizes = FrameSizes::for_bitrate(cfg.video_bitrate_bps, fps, cfg.keyframe_interval);
    let pid = cfg.vp8_picture_id.then(|| rng.next_u32() as u16);
    let mut packetizer = Vp8Packetizer::new(cfg.max_payload, pid);
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / u64::from(fps)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut frame_no: u64 = 0;
    let mut need_first_keyframe = true;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        if c.paused.load(Ordering::Relaxed) {
            continue;
        }
        let periodic =
            cfg.keyframe_interval > 0 && frame_no.is_multiple_of(u64::from(cfg.keyframe_interval));
        let requested = c.force_keyframe.swap(false, Ordering::Relaxed);
        let key = need_first_keyframe || periodic || requested;
        need_first_keyframe = false;
        // Jitter sizes ±10 % so packet counts per frame vary a little, like a real encoder.
        let base = if key {
            sizes.keyframe
        } else {
            sizes.interframe
        };
        let size = rng.range(base * 9 / 10, base * 11 / 10);
        let frame = vp8_frame(&mut rng, key, size);
        let ts = rtp_ts(ts_base, start.elapsed(), VP8_CLOCK);
        let payloads = packetizer.packetize(&frame);
        let last = payloads.len() - 1;
        for (i, payload) in payloads.into_iter().enumerate() {
            let len = payload.len() as u64;
            let pkt = rtp::Packet {
                header: header(pt, seq, ts, ssrc, i == last),
                payload,
            };
            seq = seq.wrapping_add(1);
            match track.write_rtp(pkt).await {
                Ok(()) => {
                    c.video_packets.fetch_add(1, Ordering::Relaxed);
                    c.video_bytes.fetch_add(len, Ordering::Relaxed);
                }
                Err(_) => {
                    c.send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        c.video_frames.fetch_add(1, Ordering::Relaxed);
        if key {
            c.keyframes.fetch_add(1, Ordering::Relaxed);
        }
        frame_no += 1;
    }
}

/// Counts PLI/FIR delivered to this track and turns each into a keyframe request.
async fn read_feedback(
    track: Arc<TrackLocalStaticRTP>,
    c: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = track.poll() => e,
            _ = stop.wait_for(|s| *s) => return,
        };
        match event {
            Some(TrackLocalEvent::OnRtcpPacket(packets)) => {
                for p in &packets {
                    let any = p.as_any();
                    if any.is::<PictureLossIndication>() {
                        c.pli.fetch_add(1, Ordering::Relaxed);
                        c.force_keyframe.store(true, Ordering::Relaxed);
                    } else if any.is::<FullIntraRequest>() {
                        c.fir.fetch_add(1, Ordering::Relaxed);
                        c.force_keyframe.store(true, Ordering::Relaxed);
                    }
                }
            }
            Some(_) => {}
            // Not bound yet (or unbound): look again shortly; `stop` ends the loop.
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::OPUS_CLOCK;

    #[test]
    fn timestamps_follow_the_clock_and_wrap() {
        assert_eq!(rtp_ts(0, Duration::from_secs(1), VP8_CLOCK), 90_000);
        assert_eq!(rtp_ts(u32::MAX, Duration::from_millis(20), OPUS_CLOCK), 959);
    }
}
