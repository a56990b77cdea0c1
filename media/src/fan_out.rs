//! One publisher packet to one viewer: the keyframe gate, the rewrite, and the write —
//! through our own egress ([`crate::viewer_egress`]) once the viewer has one, else through
//! its str0m send stream. [`crate::sfu::Sfu`] calls it viewer by viewer for each turn.

use std::collections::VecDeque;
use std::time::Instant;

use str0m::media::MediaKind;
use str0m::rtp::{RtpWrite, SeqNo};

use crate::forward::rtp_head::HeadFields;
use crate::handle::MediaEvent;
use crate::ids::PeerId;
use crate::peer::{Peer, PeerKind, ViewerState};
use crate::sfu::{Transmit, push_capped};
use crate::shard::Relayed;
use crate::stats::Kind;

pub(crate) enum Written {
    /// Sent by our own egress: the datagram's length.
    Direct(usize),
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
}

impl FanOutTally {
    pub fn count(&mut self, p: &Relayed, written: &Written) {
        let t = match p.codec.kind() {
            Kind::Audio => &mut self.audio,
            Kind::Video => &mut self.video,
        };
        match written {
            Written::Direct(bytes) => {
                *t = (t.0 + 1, t.1 + p.payload.len() as u64);
                self.direct_datagrams += 1;
                self.direct_bytes += *bytes as u64;
            }
            Written::Str0m => *t = (t.0 + 1, t.1 + p.payload.len() as u64),
            Written::WaitsForKeyframe => {
                let source = p.source_peer();
                if !self.waiting.contains(&source) {
                    self.waiting.push(source);
                }
            }
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
        let fields = HeadFields {
            pt: *pt,
            marker: p.marker,
            seq: seq as u16,
            timestamp: ts,
        };
        let bytes = egress.send(&b.head, fields, *b.ssrc, seq, &p.payload, tx);
        b.tally.add(seq, ts, p.payload.len(), now);
        b.resends.earn();
        return Written::Direct(bytes);
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
