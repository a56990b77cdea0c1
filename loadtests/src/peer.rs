//! What publishers and viewers share about a webrtc-crate `PeerConnection`: the codecs we
//! offer (Opus and VP8 only, fixed payload types), the interceptor chain (NACK and RTCP
//! reports like a browser, no TWCC to stay cheap), an event handler that turns callbacks into
//! `watch` channels (so a state change that happened before we looked is never missed), and
//! the interceptor that hands PLI/FIR up to the application.
//!
//! Peers bind one UDP socket on a concrete address (127.0.0.1 by default), so their offer
//! carries exactly one host candidate and gathering finishes at once; we wait for it and send
//! the complete SDP (no trickle).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports,
};
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use tokio::sync::watch;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
};

use crate::whip::SignalError;

/// Payload types we offer. Fixed so logs and captures are easy to read.
pub const OPUS_PT: u8 = 111;
pub const VP8_PT: u8 = 96;
pub const OPUS_CLOCK: u32 = 48_000;
pub const VP8_CLOCK: u32 = 90_000;

/// Errors of a test peer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    #[error("signalling: {0}")]
    Signal(#[from] SignalError),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("peer connection {0}")]
    State(String),
    #[error("{0}")]
    Other(String),
}

/// Media kinds of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    pub audio: bool,
    pub video: bool,
}

impl Kinds {
    pub const BOTH: Kinds = Kinds {
        audio: true,
        video: true,
    };
    pub const AUDIO_ONLY: Kinds = Kinds {
        audio: true,
        video: false,
    };
}

pub(crate) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: OPUS_CLOCK,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

pub(crate) fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: VP8_CLOCK,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// Called for each remote track as it opens.
pub(crate) type OnTrack = Box<dyn Fn(Arc<dyn TrackRemote>) + Send + Sync>;

/// Handler state as `watch` channels plus an optional track callback.
pub(crate) struct PeerEvents {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    on_track: Option<OnTrack>,
}

impl PeerEvents {
    pub(crate) fn new(on_track: Option<OnTrack>) -> Self {
        Self {
            gathered: watch::Sender::new(false),
            state: watch::Sender::new(RTCPeerConnectionState::New),
            on_track,
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerEvents {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if let Some(cb) = &self.on_track {
            cb(track);
        }
    }
}

/// A built connection and the channels its handler feeds.
pub(crate) struct Conn {
    pub pc: Arc<dyn PeerConnection>,
    pub gathered: watch::Receiver<bool>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
}

pub(crate) struct ConnOptions {
    pub kinds: Kinds,
    pub bind: IpAddr,
    /// Send NACKs for lost packets / answer NACKs (like a browser).
    pub nack: bool,
    /// Deliver inbound PLI/FIR to the application (publishers).
    pub keyframe_requests: bool,
}

pub(crate) async fn build(opts: ConnOptions, events: PeerEvents) -> Result<Conn, PeerError> {
    let mut media = MediaEngine::default();
    if opts.kinds.audio {
        media.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PT,
            },
            RtpCodecKind::Audio,
        )?;
    }
    if opts.kinds.video {
        media.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: vp8_codec(),
                payload_type: VP8_PT,
            },
            RtpCodecKind::Video,
        )?;
        media.register_feedback(
            RTCPFeedback {
                typ: "ccm".to_owned(),
                parameter: "fir".to_owned(),
            },
            RtpCodecKind::Video,
        );
        if !opts.nack {
            // configure_nack registers these; without NACK we still want PLI.
            media.register_feedback(
                RTCPFeedback {
                    typ: "nack".to_owned(),
                    parameter: "pli".to_owned(),
                },
                RtpCodecKind::Video,
            );
        }
    }
    let mut registry = Registry::new();
    if opts.nack {
        registry = configure_nack(registry, &mut media);
    }
    registry = configure_rtcp_reports(registry);
    if opts.keyframe_requests {
        // Application-most, so the other interceptors have seen all inbound RTCP first.
        registry = registry.with(Slot::from(14_000), KeyframeRequestForwarder::default());
    }

    let gathered = events.gathered.subscribe();
    let state = events.state.subscribe();
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(events))
        .with_udp_addrs(vec![std::net::SocketAddr::new(opts.bind, 0)])
        .build()
        .await?;
    Ok(Conn {
        pc: Arc::new(pc),
        gathered,
        state,
    })
}

impl Conn {
    /// Creates an offer, sets it locally and returns it once ICE gathering has completed.
    pub async fn offer_complete(&mut self, wait: Duration) -> Result<String, PeerError> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        self.local_after_gathering(wait).await
    }

    /// Applies a remote offer and returns the complete answer (loopback tests).
    pub async fn answer_complete(
        &mut self,
        offer: String,
        wait: Duration,
    ) -> Result<String, PeerError> {
        self.pc
            .set_remote_description(RTCSessionDescription::offer(offer)?)
            .await?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        self.local_after_gathering(wait).await
    }

    pub async fn apply_answer(&self, answer: String) -> Result<(), PeerError> {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(answer)?)
            .await?;
        Ok(())
    }

    async fn local_after_gathering(&mut self, wait: Duration) -> Result<String, PeerError> {
        tokio::time::timeout(wait, self.gathered.wait_for(|g| *g))
            .await
            .map_err(|_| PeerError::Timeout("ICE gathering"))?
            .map_err(|_| PeerError::State("closed while gathering".into()))?;
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| PeerError::Other("no local description after gathering".into()))
    }

    /// Waits for `Connected`; fails early on `Failed`/`Closed`.
    pub async fn wait_connected(&mut self, wait: Duration) -> Result<(), PeerError> {
        let r = tokio::time::timeout(
            wait,
            self.state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Closed
                )
            }),
        )
        .await
        .map_err(|_| PeerError::Timeout("connection"))?
        .map_err(|_| PeerError::State("handler dropped".into()))?;
        match *r {
            RTCPeerConnectionState::Connected => Ok(()),
            s => Err(PeerError::State(s.to_string())),
        }
    }
}

/// Closes a connection without waiting forever on a stuck driver.
pub(crate) async fn close_bounded(pc: &Arc<dyn PeerConnection>) {
    let _ = tokio::time::timeout(Duration::from_secs(3), pc.close()).await;
}

/// Passes inbound PLI and FIR to the application (marked `DeliverToApplication`) and lets
/// all other inbound RTCP end at the chain as usual: the publisher counts keyframe requests
/// and answers them with a keyframe, which only the application can do.
#[derive(Default)]
pub(crate) struct KeyframeRequestForwarder {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| {
                    let any = p.as_any();
                    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                })
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
