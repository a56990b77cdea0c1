//! One publisher packet to one viewer: the keyframe gate, the rewrite, and the write —
//! through our own egress ([`crate::viewer_egress`]) once the viewer has one, else through
//! its str0m send stream. [`crate::sfu::Sfu`] calls it viewer by viewer for each turn.

use std::collections::VecDeque;
use std::time::Instant;

use str0m::media::MediaKind;
use str0m::rtp::{RtpWrite, SeqNo};
use tracing::info;

use crate::forward::rtp_head::HeadFields;
use crate::forward::video_gate::{GateChange, VideoGate};
use crate::handle::MediaEvent;
use crate::ids::PeerId;
use crate::peer::{OutBinding, Peer, PeerKind, ViewerState};
use crate::sfu::{Transmit, push_capped};
use crate::shard::Relayed;
use crate::stats::{Kind, MediaStats};
use crate::viewer_egress::ViewerEgress;

pub(crate) enum Written {
    /// Sent by our own egress: datagrams (the packet and any probe padding after it) and
    /// their length.
    Direct {
        datagrams: u64,
        bytes: usize,
    },
    /// Video the viewer's link cannot carry now ([`crate::forward::video_gate`]).
    Paused,
    /// Written to the viewer's str0m send stream, which sends it when polled.
    Str0m,
    /// The viewer's video waits for a keyframe and this packet does not start one.
    WaitsForKeyframe,
    Nothing,
}

/// What one session's fan-out of a turn did, for the counters.
#[derive(Default)]
pub(crate) struct FanOutTally {
    /// (packets, payload bytes) written per kind.
    pub audio: (u64, u64),
    pub video: (u64, u64),
    pub direct_datagrams: u64,
    pub direct_bytes: u64,
    /// Publishers whose keyframe some viewer waits for.
    pub waiting: Vec<PeerId>,
    /// Video packets held back from viewers whose link cannot carry them.
    pub paused: u64,
}

impl FanOutTally {
    pub fn count(&mut self, p: &Relayed, written: &Written) {
        let t = match p.codec.kind() {
            Kind::Audio => &mut self.audio,
            Kind::Video => &mut self.video,
        };
        match written {
            Written::Direct { datagrams, bytes } => {
                *t = (t.0 + 1, t.1 + p.payload.len() as u64);
                self.direct_datagrams += datagrams;
                self.direct_bytes += *bytes as u64;
            }
            Written::Str0m => *t = (t.0 + 1, t.1 + p.payload.len() as u64),
            Written::WaitsForKeyframe => {
                let source = p.source_peer();
                if !self.waiting.contains(&source) {
                    self.waiting.push(source);
                }
            }
            Written::Paused => self.paused += 1,
            Written::Nothing => {}
        }
    }
}

pub(crate) fn write_to_viewer(
    viewer: &mut Peer,
    p: &Relayed,
    now: Instant,
    tx: &mut dyn Transmit,
    events: &mut VecDeque<MediaEvent>,
) -> Written {
    let vid = viewer.id;
    let Peer { rtc, kind, .. } = viewer;
    let PeerKind::Viewer(v) = kind else {
        return Written::Nothing;
    };
    let ViewerState {
        audio,
        video,
        egress,
        first_media_sent,
        offered_at,
        gate,
        gate_notice,
        ..
    } = v;
    let audio_only = video.is_none();
    let media_kind = match p.codec.kind() {
        Kind::Audio => MediaKind::Audio,
        Kind::Video => MediaKind::Video,
    };
    let binding = match media_kind {
        MediaKind::Audio => audio.as_mut(),
        MediaKind::Video => video.as_mut(),
    };
    let Some(b) = binding else {
        return Written::Nothing;
    };
    let from = p.source.peer;
    if media_kind == MediaKind::Video && b.video_source != Some(from) {
        // A new video source (or the first): its pictures make sense from a keyframe on.
        b.video_source = Some(from);
        b.waiting_keyframe = true;
    }
    if egress.is_some() && video.is_some() {
        if media_kind == MediaKind::Video {
            gate.on_video_offered(now, p.payload.len());
        }
        match gate.tick(now) {
            Some(GateChange::Paused) => {
                if let Some(video) = video.as_mut() {
                    video.rewriter.restart();
                }
                *gate_notice = Some(GateChange::Paused);
            }
            Some(GateChange::Resumed) => {
                if let Some(video) = video.as_mut() {
                    video.waiting_keyframe = true;
                }
                *gate_notice = Some(GateChange::Resumed);
            }
            None => {}
        }
    }
    // Re-borrowed: the gate above may have touched the video binding.
    let b = match media_kind {
        MediaKind::Audio => audio.as_mut(),
        MediaKind::Video => video.as_mut(),
    }
    .expect("binding checked above");
    if media_kind == MediaKind::Video && !gate.video_on() {
        return Written::Paused;
    }
    if b.waiting_keyframe {
        if !p.keyframe {
            return Written::WaitsForKeyframe;
        }
        b.waiting_keyframe = false;
    }
    let Some(pt) = b.pts[p.codec as usize] else {
        return Written::Nothing;
    };
    let Some((seq, ts)) = b.rewriter.rewrite(p.source, p.seq, p.timestamp, now) else {
        return Written::Nothing;
    };
    b.forwarded += 1;
    if !*first_media_sent && (media_kind == MediaKind::Video || audio_only) {
        *first_media_sent = true;
        push_capped(
            events,
            MediaEvent::FirstMedia {
                peer: vid,
                session: p.session.clone(),
                join: now.saturating_duration_since(*offered_at),
            },
        );
    }
    if let Some(egress) = egress {
        let (pt, payload) = match (b.red_pt, &p.red) {
            (Some(red_pt), Some(red)) => (red_pt, red),
            _ => (pt, &p.payload),
        };
        let fields = HeadFields {
            pt: *pt,
            marker: p.marker,
            seq: seq as u16,
            timestamp: ts,
        };
        let bytes = egress.send(&b.head, fields, *b.ssrc, seq, payload, tx);
        b.tally.add(seq, ts, payload.len(), now);
        b.resends.earn();
        let (mut datagrams, mut bytes) = (1, bytes);
        if media_kind == MediaKind::Video {
            gate.on_video_sent();
        } else if let Some(video) = video.as_mut() {
            // Probes are paced by the audio, which keeps flowing while video is paused.
            let (probes, probe_bytes) = send_probe(gate, video, egress, now, tx);
            datagrams += probes;
            bytes += probe_bytes;
        }
        return Written::Direct { datagrams, bytes };
    }
    match rtc.direct_api().stream_tx(&b.ssrc) {
        Some(stream) => {
            stream.write_rtp(
                RtpWrite::new(pt, SeqNo::from(seq), ts, now, p.payload.clone())
                    .marker(p.marker)
                    .nackable(true),
            );
            Written::Str0m
        }
        None => Written::Nothing,
    }
}

/// The padding a probing viewer's gate owes now, on its video stream. Returns the datagrams
/// and bytes sent.
fn send_probe(
    gate: &mut VideoGate,
    video: &mut OutBinding,
    egress: &mut ViewerEgress,
    now: Instant,
    tx: &mut dyn Transmit,
) -> (u64, usize) {
    let due = gate.padding_due(now);
    let Some(pt) = video.pts.iter().flatten().next().copied() else {
        return (0, 0);
    };
    let (mut datagrams, mut bytes) = (0, 0);
    for _ in 0..due {
        let Some((seq, ts)) = video.rewriter.pad() else {
            break;
        };
        let fields = HeadFields {
            pt: *pt,
            marker: false,
            seq: seq as u16,
            timestamp: ts,
        };
        bytes += egress.send_padding(&video.head, fields, *video.ssrc, seq, tx);
        datagrams += 1;
        gate.on_padding_sent(seq);
    }
    (datagrams, bytes)
}

/// Tells a viewer (on its `captions` data channel, which the watch page reads) that its video
/// was paused for its weak link, or came back. Returns whether a message was queued.
pub(crate) fn tell_viewer_of_gate(
    viewer: &mut Peer,
    change: GateChange,
    stats: &MediaStats,
) -> bool {
    let message = match change {
        GateChange::Paused => {
            stats.video_pauses.add(1);
            r#"{"type":"link","video":"paused","reason":"weak_connection"}"#
        }
        GateChange::Resumed => {
            stats.video_resumes.add(1);
            r#"{"type":"link","video":"on"}"#
        }
    };
    viewer.span.in_scope(|| info!(?change, "video gate"));
    let Peer { rtc, kind, .. } = viewer;
    let PeerKind::Viewer(v) = kind else {
        return false;
    };
    let Some(mut channel) = v.captions.and_then(|id| rtc.channel(id)) else {
        return false;
    };
    matches!(channel.write(false, message.as_bytes()), Ok(true))
}
