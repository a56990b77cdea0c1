//! The light-mode viewer: a real WebRTC peer (ICE, DTLS, SRTP keys, RTCP) on str0m's sans-I/O
//! API, cheap enough that one generator process holds a thousand of them.
//!
//! What makes it light: after the join (the first video keyframe, or the first audio packet
//! for an audio-only viewer, decrypted and seen by str0m), media datagrams are counted from
//! their RTP header, which SRTP leaves in the clear: packets, bytes, sequence gaps, RFC 3550
//! jitter, freezes. Only one packet in [`LightConfig::sample_every`] still goes through
//! str0m, which checks its SRTP authentication tag and decrypts it; the report gives how many
//! were checked and how many passed. The peer's own RTCP is not sent after the join (str0m,
//! seeing only the sample, would report the rest as lost and NACK it); ICE consent and DTLS
//! keep running.
//!
//! Each viewer has its own UDP socket (the server tells peers apart by address) and one tokio
//! task; the per-packet work is a `recv`, a header parse and one uncontended lock.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde::Serialize;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use crate::janus::{JanusError, JanusSession};
use crate::peer::{Kinds, OPUS_CLOCK, VP8_CLOCK};
use crate::rtp_header::{self, Datagram, PayloadKinds, SRTP_AUTH_TAG};
use crate::viewer::{KindState, PacketHeader, ViewerStats};
use crate::vp8;
use crate::whep;
use crate::whip::{Resource, SignalError};

#[derive(Debug, Clone)]
pub struct LightConfig {
    pub kinds: Kinds,
    pub bind: IpAddr,
    /// After the join, one media packet in this many goes through SRTP authentication and
    /// decryption (1: every packet, as the full mode does).
    pub sample_every: u32,
    pub connect_timeout: Duration,
    /// Open a `captions` data channel (Floorcast sends every caption on it).
    pub captions: bool,
}

/// Captions a viewer keeps arrival times for (a long soak drops the rest, counted).
const MAX_CAPTIONS: usize = 100_000;

impl Default for LightConfig {
    fn default() -> Self {
        Self {
            kinds: Kinds::BOTH,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sample_every: 64,
            connect_timeout: Duration::from_secs(10),
            captions: false,
        }
    }
}

/// Where the viewer gets its media.
#[derive(Debug, Clone)]
pub enum Target {
    /// Floorcast over WHEP (`POST {url}/whep/{session}`).
    Whep {
        url: String,
        session: String,
        token: String,
    },
    /// Janus's Streaming plugin (`{url}` is the HTTP API root, e.g. `…:8088/janus`).
    Janus { url: String, mountpoint: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum LightError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("webrtc: {0}")]
    Rtc(#[from] str0m::RtcError),
    #[error("sdp: {0}")]
    Sdp(String),
    #[error("whep: {0}")]
    Whep(#[from] SignalError),
    #[error("janus: {0}")]
    Janus(#[from] JanusError),
    #[error("not connected within {0:?}")]
    ConnectTimeout(Duration),
    #[error("audio-only viewers are not supported against janus (its offer carries video)")]
    AudioOnlyJanus,
}

/// SRTP authentication on the sampled packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AuthSample {
    /// Media packets given to str0m (every one until the join, then the sample).
    pub checked: u64,
    /// Of those, packets str0m authenticated and decrypted.
    pub passed: u64,
}

struct State {
    t0: Instant,
    audio: KindState,
    video: KindState,
    first_keyframe: Option<Duration>,
    answer_after: Option<Duration>,
    connected_after: Option<Duration>,
    auth: AuthSample,
    state: &'static str,
    /// CART captions received on the data channel: (seq, arrival).
    captions: Vec<(u64, Instant)>,
    captions_dropped: u64,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A light-mode viewer; see the module doc.
pub struct LightViewer {
    state: Arc<Mutex<State>>,
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
    resource: Option<Resource>,
    janus: Option<(JanusSession, tokio::task::JoinHandle<()>)>,
}

impl LightViewer {
    /// Connects to `target` and starts receiving; returns once ICE and DTLS are up.
    pub async fn connect(
        cfg: LightConfig,
        client: &Client,
        target: &Target,
    ) -> Result<Self, LightError> {
        let socket = UdpSocket::bind(SocketAddr::new(cfg.bind, 0)).await?;
        let local = socket.local_addr()?;
        let now = Instant::now();
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| LightError::Sdp(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let state = Arc::new(Mutex::new(State {
            t0: now,
            audio: KindState::new(OPUS_CLOCK),
            video: KindState::new(VP8_CLOCK),
            first_keyframe: None,
            answer_after: None,
            connected_after: None,
            auth: AuthSample::default(),
            state: "new",
            captions: Vec::new(),
            captions_dropped: 0,
        }));
        let (remote_sdp, resource, janus) = match target {
            Target::Whep {
                url,
                session,
                token,
            } => {
                let mut api = rtc.sdp_api();
                if cfg.kinds.audio {
                    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
                }
                if cfg.kinds.video {
                    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
                }
                if cfg.captions {
                    api.add_channel("captions".into());
                }
                let (offer, pending) = api
                    .apply()
                    .ok_or_else(|| LightError::Sdp("nothing to offer".into()))?;
                lock(&state).t0 = Instant::now();
                let resource =
                    whep::subscribe(client, url, session, token, offer.to_sdp_string()).await?;
                let answer = SdpAnswer::from_sdp_string(&resource.answer)
                    .map_err(|e| LightError::Sdp(e.to_string()))?;
                rtc.sdp_api().accept_answer(pending, answer)?;
                let sdp = resource.answer.clone();
                (sdp, Some(resource), None)
            }
            Target::Janus { url, mountpoint } => {
                if !cfg.kinds.video {
                    return Err(LightError::AudioOnlyJanus);
                }
                lock(&state).t0 = Instant::now();
                let (janus, offer_sdp) =
                    JanusSession::watch(client, url, *mountpoint, cfg.connect_timeout).await?;
                let offer = SdpOffer::from_sdp_string(&offer_sdp)
                    .map_err(|e| LightError::Sdp(e.to_string()))?;
                let answer = rtc.sdp_api().accept_offer(offer)?;
                janus.start(&answer.to_sdp_string()).await?;
                let keepalive = janus.keep_alive();
                (offer_sdp, None, Some((janus, keepalive)))
            }
        };
        {
            let mut s = lock(&state);
            s.answer_after = Some(s.t0.elapsed());
            s.state = "connecting";
        }
        let driver = Driver {
            rtc,
            socket,
            local,
            kinds: PayloadKinds::from_sdp(&remote_sdp),
            joined_on_audio: !cfg.kinds.video,
            sample_every: cfg.sample_every.max(1),
            counter: 0,
            joined: false,
            state: Arc::clone(&state),
        };
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(driver.run(Arc::clone(&stop)));
        let mut viewer = LightViewer {
            state,
            stop,
            task,
            resource,
            janus,
        };
        let deadline = Instant::now() + cfg.connect_timeout;
        loop {
            if lock(&viewer.state).connected_after.is_some() {
                return Ok(viewer);
            }
            if Instant::now() >= deadline || viewer.task.is_finished() {
                viewer.shutdown().await;
                return Err(LightError::ConnectTimeout(cfg.connect_timeout));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stats(&self) -> ViewerStats {
        let s = lock(&self.state);
        ViewerStats {
            audio: s.audio.snapshot(),
            video: s.video.snapshot(),
            first_keyframe_after: s.first_keyframe,
            answer_after: s.answer_after,
            connected_after: s.connected_after,
            state: s.state.to_owned(),
        }
    }

    /// The human (CART) captions received so far: their `seq` and when each arrived.
    pub fn caption_arrivals(&self) -> Vec<(u64, Instant)> {
        lock(&self.state).captions.clone()
    }

    pub fn auth(&self) -> AuthSample {
        lock(&self.state).auth
    }

    /// Forgets the last arrivals: the scenario paused the publisher, that was no freeze.
    pub fn forget_gaps(&self) {
        let mut s = lock(&self.state);
        s.audio.forget_gap();
        s.video.forget_gap();
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

    /// Leaves: DELETE (WHEP) or destroy (Janus), then stops the driver; bounded.
    pub async fn close(mut self) {
        if let Some(r) = &self.resource {
            let _ = r.delete().await;
        }
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some((janus, keepalive)) = self.janus.take() {
            keepalive.abort();
            janus.destroy().await;
        }
        self.stop.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.task).await;
        self.task.abort();
    }
}

/// Owns the peer and its socket; runs until stopped or the peer dies.
struct Driver {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    kinds: PayloadKinds,
    /// An audio-only viewer has joined at its first audio packet.
    joined_on_audio: bool,
    sample_every: u32,
    counter: u32,
    /// The join is done: media is counted from headers, str0m sees a sample, no RTCP out.
    joined: bool,
    state: Arc<Mutex<State>>,
}

impl Driver {
    async fn run(mut self, stop: Arc<Notify>) {
        let mut buf = vec![0u8; 2048];
        while let Some(deadline) = self.drain() {
            let wait = deadline.saturating_duration_since(Instant::now());
            tokio::select! {
                _ = stop.notified() => break,
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.on_datagram(&buf[..n], from),
                    Err(_) => continue,
                },
                _ = tokio::time::sleep(wait) => {
                    if self.rtc.handle_input(Input::Timeout(Instant::now())).is_err() {
                        break;
                    }
                }
            }
        }
        self.rtc.disconnect();
        lock(&self.state).state = "closed";
    }

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr) {
        if rtp_header::classify(data) == Datagram::Rtp
            && let Some(h) = rtp_header::parse(data)
        {
            let is_audio = self.kinds.is_audio(h.payload_type);
            if is_audio || self.kinds.is_video(h.payload_type) {
                let payload = data.len().saturating_sub(h.header_len + SRTP_AUTH_TAG);
                {
                    let mut s = lock(&self.state);
                    let since = s.t0.elapsed();
                    let kind = if is_audio { &mut s.audio } else { &mut s.video };
                    kind.record(
                        since,
                        PacketHeader {
                            sequence: h.sequence,
                            timestamp: h.timestamp,
                            ssrc: h.ssrc,
                            // Known only for packets str0m decrypts (below).
                            keyframe: false,
                        },
                        payload,
                    );
                }
                if self.joined {
                    self.counter = self.counter.wrapping_add(1);
                    if !self.counter.is_multiple_of(self.sample_every) {
                        return;
                    }
                }
                lock(&self.state).auth.checked += 1;
            }
        }
        let Ok(receive) = Receive::new(Protocol::Udp, from, self.local, data) else {
            return;
        };
        let _ = self
            .rtc
            .handle_input(Input::Receive(Instant::now(), receive));
    }

    /// Sends what str0m wants sent and handles its events; returns when it wants the next
    /// timeout, or `None` once the peer is dead.
    fn drain(&mut self) -> Option<Instant> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) => {
                    if self.joined && rtp_header::classify(&t.contents) == Datagram::Rtcp {
                        continue;
                    }
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(e)) => self.on_event(e),
                Err(_) => return None,
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        let mut s = lock(&self.state);
        match e {
            Event::Connected => {
                let at = s.t0.elapsed();
                s.connected_after.get_or_insert(at);
                s.state = "connected";
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                s.state = "disconnected";
            }
            Event::ChannelData(d) => {
                if let Some(seq) = cart_seq(&d.data) {
                    if s.captions.len() < MAX_CAPTIONS {
                        s.captions.push((seq, Instant::now()));
                    } else {
                        s.captions_dropped += 1;
                    }
                }
            }
            Event::RtpPacket(p) => {
                s.auth.passed += 1;
                let pt = *p.header.payload_type;
                let at = s.t0.elapsed();
                if self.kinds.is_video(pt) && vp8::is_keyframe_start(&p.payload) {
                    s.video.stats.keyframes += 1;
                    s.first_keyframe.get_or_insert(at);
                    self.joined = true;
                }
                if self.joined_on_audio && self.kinds.is_audio(pt) {
                    self.joined = true;
                }
            }
            _ => {}
        }
    }
}

/// The `seq` of a CART caption message (`{"id":"cart-<stream>-<seq>",…}`, or `cart-<seq>`
/// from servers before per-captioner sequencing); `None` for anything else.
fn cart_seq(data: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    let rest = v["id"].as_str()?.strip_prefix("cart-")?;
    rest.rsplit('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_seq_of_cart_captions_only() {
        assert_eq!(
            cart_seq(br#"{"type":"caption","id":"cart-42","text":"x"}"#),
            Some(42)
        );
        assert_eq!(
            cart_seq(br#"{"type":"caption","id":"cart-3-42","text":"x"}"#),
            Some(42)
        );
        assert_eq!(
            cart_seq(br#"{"type":"caption","id":"asr-1-2","text":"x"}"#),
            None
        );
        assert_eq!(cart_seq(b"not json"), None);
    }
}
