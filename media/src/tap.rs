//! The audio tap: a copy of each session's current audio (the Opus RTP its viewers hear:
//! the floor feed, or the speaker holding the floor) for consumers off the media thread,
//! such as speech recognition.
//!
//! One copy per audio packet per session (50 a second), never per viewer, taken where the
//! forwarder has decided the packet is the session's audio source, so the tap hears exactly
//! what viewers hear. One channel for all sessions: the consumer routes by
//! [`TapPacket::session`], and the media loop needs no per-session subscription state.
//!
//! The channel is a bounded tokio `mpsc` written with `try_send`: the media thread never
//! waits, and the consumer (an async task) can `recv().await`. A consumer that falls behind
//! loses packets, counted in `MediaStats::tap_dropped`.
//!
//! Source changes travel in band: every packet names its `source`, so the first packet with
//! a new source marks the switch (speaker took the floor, or left and the floor feed is back)
//! exactly where it happens in the audio, with no second channel to order against. When no
//! source is left (or it stops sending) packets stop; `MediaEvent::Closed` for the last
//! source says it is gone for good, so a consumer can flush without waiting for silence.

use str0m::rtp::RtpPacket;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::ids::{PeerId, SessionId};
use crate::stats::MediaStats;

/// One audio packet as a publisher sent it.
#[derive(Clone, Debug)]
pub struct TapPacket {
    pub session: SessionId,
    /// The publisher it came from (a change means another speaker).
    pub source: PeerId,
    /// Extended RTP sequence number of `source`'s stream.
    pub seq: u64,
    pub timestamp: u32,
    /// The Opus payload.
    pub payload: Vec<u8>,
}

/// The sending end the media engine is configured with.
pub type AudioTap = mpsc::Sender<TapPacket>;

/// Copies one audio packet of `session`'s current source into the tap, if there is room.
pub(crate) fn offer(
    tap: &AudioTap,
    session: &SessionId,
    source: PeerId,
    pkt: &RtpPacket,
    stats: &MediaStats,
) {
    // Room first, so a full or closed channel costs no copy.
    let permit = match tap.try_reserve() {
        Ok(permit) => permit,
        Err(TrySendError::Full(())) => {
            stats.tap_dropped.add(1);
            return;
        }
        // Nobody listens any more (the server is stopping).
        Err(TrySendError::Closed(())) => return,
    };
    permit.send(TapPacket {
        session: session.clone(),
        source,
        seq: *pkt.seq_no,
        timestamp: pkt.header.timestamp,
        // An owned copy (about 100 bytes, 50 a second per session): the consumer keeps it
        // past the packet's life and hands it on to its decoder thread.
        payload: pkt.payload.to_vec(),
    });
}
