//! One WebRTC peer of the SFU: its str0m `Rtc` (RTP mode), its role, and the per-track state
//! the forwarder needs (incoming track kinds for publishers, outgoing bindings for viewers).

use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::Ssrc;

use crate::forward::keyframe::{KeyframeLimiter, VideoCodec};
use crate::forward::red::PrevOpus;
use crate::forward::rewrite::Rewriter;
use crate::forward::rtp_head::HeadTemplate;
use crate::forward::video_gate::{GateChange, VideoGate};
use crate::handle::Follow;
use crate::ids::{PeerId, Role, SessionId};
use crate::stats::Kind;
use crate::viewer_egress::{ResendBudget, SendTally, ViewerEgress};

/// The codecs we forward, as a small index for per-binding payload-type tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FwdCodec {
    Opus = 0,
    Vp8 = 1,
    H264 = 2,
}

impl FwdCodec {
    pub fn from_str0m(c: Codec) -> Option<Self> {
        match c {
            Codec::Opus => Some(Self::Opus),
            Codec::Vp8 => Some(Self::Vp8),
            Codec::H264 => Some(Self::H264),
            _ => None,
        }
    }

    pub fn video(self) -> Option<VideoCodec> {
        match self {
            Self::Opus => None,
            Self::Vp8 => Some(VideoCodec::Vp8),
            Self::H264 => Some(VideoCodec::H264),
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Self::Opus => Kind::Audio,
            Self::Vp8 | Self::H264 => Kind::Video,
        }
    }
}

pub(crate) struct Peer {
    pub id: PeerId,
    pub session: SessionId,
    pub role: Role,
    pub rtc: Rtc,
    pub span: tracing::Span,
    pub created: Instant,
    pub connected: bool,
    /// Remote ICE candidates trickled so far (bounded by the config).
    pub remote_candidates: usize,
    /// The deadline this peer is registered under in the SFU's timer set.
    pub deadline: Option<Instant>,
    pub kind: PeerKind,
}

// Most peers are viewers, and the fan-out touches every viewer's state for every packet:
// boxing the larger variant would add a pointer chase there to save memory on publishers.
#[allow(clippy::large_enum_variant)]
pub(crate) enum PeerKind {
    Publisher(PublisherState),
    Viewer(ViewerState),
}

impl Peer {
    pub fn publisher(&mut self) -> Option<&mut PublisherState> {
        match &mut self.kind {
            PeerKind::Publisher(p) => Some(p),
            PeerKind::Viewer(_) => None,
        }
    }

    pub fn viewer(&mut self) -> Option<&mut ViewerState> {
        match &mut self.kind {
            PeerKind::Viewer(v) => Some(v),
            PeerKind::Publisher(_) => None,
        }
    }

    /// The codec of an incoming payload type, per the negotiated config.
    pub fn codec_of(&self, pt: Pt) -> Option<FwdCodec> {
        self.rtc
            .codec_config()
            .find(|p| p.pt() == pt)
            .and_then(|p| FwdCodec::from_str0m(p.spec().codec))
    }
}

pub(crate) struct PublisherState {
    /// The m-lines this publisher sends on, once its offer is applied; `None` when its offer
    /// has no sendable m-line of that kind.
    pub audio_mid: Option<Mid>,
    pub video_mid: Option<Mid>,
    pub keyframes: KeyframeLimiter,
    /// The last Opus packet forwarded, for the next one's RED block.
    pub last_opus: Option<PrevOpus>,
}

impl PublisherState {
    pub fn new(keyframe_interval: Duration) -> Self {
        Self {
            audio_mid: None,
            video_mid: None,
            keyframes: KeyframeLimiter::new(keyframe_interval),
            last_opus: None,
        }
    }
}

/// A viewer's outgoing stream for one kind.
pub(crate) struct OutBinding {
    pub ssrc: Ssrc,
    /// The viewer's payload type for each forwarded codec (index: `FwdCodec as usize`).
    pub pts: [Option<Pt>; 3],
    /// Audio: the viewer's RED payload type, when it negotiated RED over Opus.
    pub red_pt: Option<Pt>,
    pub rewriter: Rewriter,
    /// Video starts (and restarts after a source change) on a keyframe.
    pub waiting_keyframe: bool,
    /// The publisher (peer id) this binding last received video from.
    pub video_source: Option<u64>,
    /// Packets forwarded on this binding; str0m's count of packets sent on the stream less
    /// this is what it retransmitted (NACK → RTX).
    pub forwarded: u64,
    /// RTP clock rate of the stream.
    pub clock: u32,
    /// The stream's RTP header, for our own egress.
    pub head: HeadTemplate,
    /// What our own egress sent since str0m last heard of it.
    pub tally: SendTally,
    /// What NACKs may still make our own egress resend.
    pub resends: ResendBudget,
}

pub(crate) struct ViewerState {
    pub audio: Option<OutBinding>,
    pub video: Option<OutBinding>,
    pub offered_at: Instant,
    pub first_media_sent: bool,
    /// What each m-line's egress stats last said (at most one entry per m-line).
    pub reports: Vec<MidReport>,
    /// The data channel the viewer opened for captions (label `captions`), once open.
    pub captions: Option<ChannelId>,
    pub follow: Follow,
    /// When this viewer last caused a keyframe request (see `viewer_keyframe_interval`).
    pub last_keyframe_request: Option<Instant>,
    /// Our own egress for forwarded media, from the moment the viewer is connected (and
    /// when `MediaConfig::app_egress` is on).
    pub egress: Option<ViewerEgress>,
    /// Whether the viewer's link carries the video now (our own egress only: it probes with
    /// padding str0m's send streams cannot write).
    pub gate: VideoGate,
    /// A change of the gate the viewer has not been told of yet.
    pub gate_notice: Option<GateChange>,
}

impl ViewerState {
    pub fn new(offered_at: Instant, follow: Follow) -> Self {
        Self {
            follow,
            audio: None,
            video: None,
            offered_at,
            first_media_sent: false,
            reports: Vec::new(),
            captions: None,
            last_keyframe_request: None,
            egress: None,
            gate: VideoGate::new(offered_at),
            gate_notice: None,
        }
    }

    pub fn binding(&mut self, kind: MediaKind) -> Option<&mut OutBinding> {
        match kind {
            MediaKind::Audio => self.audio.as_mut(),
            MediaKind::Video => self.video.as_mut(),
        }
    }

    fn report(&mut self, mid: Mid) -> &mut MidReport {
        let i = match self.reports.iter().position(|r| r.mid == mid) {
            Some(i) => i,
            None => {
                self.reports.push(MidReport {
                    mid,
                    nacks_seen: 0,
                    loss: 0.0,
                    jitter_s: 0.0,
                    rtx_seen: 0,
                });
                self.reports.len() - 1
            }
        };
        &mut self.reports[i]
    }

    /// Records one m-line's reported loss and returns the worst of its m-lines.
    pub fn worst_loss(&mut self, mid: Mid, loss: f32) -> f32 {
        self.report(mid).loss = loss;
        self.reports.iter().map(|r| r.loss).fold(0.0, f32::max)
    }

    /// str0m sent `sent` packets on the m-line of `kind`, retransmissions included: returns
    /// how many more retransmissions that makes.
    pub fn rtx_delta(&mut self, mid: Mid, kind: MediaKind, sent: u64) -> u64 {
        let forwarded = self.binding(kind).map_or(0, |b| b.forwarded);
        let rtx = sent.saturating_sub(forwarded);
        let r = self.report(mid);
        let d = rtx.saturating_sub(r.rtx_seen);
        r.rtx_seen = r.rtx_seen.max(rtx);
        d
    }

    /// Records one m-line's reported jitter (seconds) and returns the worst of its m-lines.
    pub fn worst_jitter(&mut self, mid: Mid, jitter_s: f32) -> f32 {
        self.report(mid).jitter_s = jitter_s;
        self.reports.iter().map(|r| r.jitter_s).fold(0.0, f32::max)
    }

    /// Returns how many new NACKs this report adds (str0m's counts are cumulative).
    pub fn nack_delta(&mut self, mid: Mid, total: u64) -> u64 {
        let r = self.report(mid);
        let d = total.saturating_sub(r.nacks_seen);
        r.nacks_seen = total;
        d
    }
}

/// One m-line's egress stats as last reported.
pub(crate) struct MidReport {
    pub mid: Mid,
    /// Cumulative NACK count, to count deltas.
    pub nacks_seen: u64,
    /// Fraction lost per the viewer's receiver reports, 0..=1.
    pub loss: f32,
    /// Interarrival jitter per the viewer's receiver reports, seconds.
    pub jitter_s: f32,
    /// Retransmissions counted so far on this m-line.
    pub rtx_seen: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmissions_are_what_str0m_sent_beyond_what_was_forwarded() {
        let mut v = ViewerState::new(Instant::now(), Follow::Current);
        v.video = Some(OutBinding {
            ssrc: 7.into(),
            pts: [None; 3],
            red_pt: None,
            rewriter: Rewriter::new(90_000),
            waiting_keyframe: false,
            video_source: None,
            forwarded: 100,
            clock: 90_000,
            head: HeadTemplate::new(7, None),
            tally: SendTally::default(),
            resends: ResendBudget::default(),
        });
        let mid = Mid::from("1");
        // str0m sent exactly what was forwarded: no retransmission.
        assert_eq!(v.rtx_delta(mid, MediaKind::Video, 100), 0);
        // Three more sent than forwarded: three resent packets, counted once.
        assert_eq!(v.rtx_delta(mid, MediaKind::Video, 103), 3);
        assert_eq!(v.rtx_delta(mid, MediaKind::Video, 103), 0);
        v.video.as_mut().unwrap().forwarded = 150;
        assert_eq!(v.rtx_delta(mid, MediaKind::Video, 155), 2);
        // A report that lags the forwarding never counts negative.
        assert_eq!(v.rtx_delta(mid, MediaKind::Video, 120), 0);
        // No binding of that kind: everything sent is counted against zero forwarded.
        assert_eq!(v.rtx_delta(Mid::from("0"), MediaKind::Audio, 0), 0);
    }
}
