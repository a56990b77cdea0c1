//! Our own egress for forwarded RTP (issue 15): the packets a viewer receives from a
//! publisher are written, protected and handed to the socket here, without passing through
//! the viewer's str0m send stream.
//!
//! Through str0m, every viewer-packet cost a stream lookup, a send queue and pacer round,
//! an RTX cache entry (a per-viewer copy of the packet's bookkeeping), a poll cycle of the
//! viewer's `Rtc` and a fresh allocation for the datagram; the profile put that at about half
//! of a media thread (loadtests/RESULTS.md). Here a viewer-packet is a header stamped from a
//! template, one SRTP seal into a recycled buffer, and a push into the send batch.
//!
//! str0m still owns everything else of the peer: ICE, DTLS (whose keys we get through the
//! vendored patch's `take_app_srtp_tx`), RTCP, the data channel. It is told what we sent
//! (`SendTally`, for true sender reports, which receivers need to synchronise audio with
//! video) and hands us the NACKs it receives, which we answer from the shard's per-source
//! [`History`](crate::forward::history::History) — retransmitted on the original SSRC and
//! sequence number, which every receiver accepts as the late packet.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::media::Frequency;
use str0m::net::Protocol;
use str0m::rtp::{AppSrtpTx, SeqNo, StreamTx};

use crate::forward::rtp_head::{HeadFields, HeadTemplate};
use crate::sfu::Transmit;

/// The payload of a padding packet: the most padding one packet carries, its last byte the
/// count (RFC 3550 §5.1).
pub(crate) const PADDING: [u8; 255] = {
    let mut p = [0u8; 255];
    p[254] = 255;
    p
};

/// A viewer's SRTP context and where its media goes (the nominated ICE pair).
pub(crate) struct ViewerEgress {
    srtp: AppSrtpTx,
    proto: Protocol,
    dest: SocketAddr,
}

impl ViewerEgress {
    pub fn new(srtp: AppSrtpTx, proto: Protocol, dest: SocketAddr) -> Self {
        Self { srtp, proto, dest }
    }

    /// ICE may nominate another pair (a NAT rebinding, TCP after UDP): follow it.
    pub fn set_route(&mut self, proto: Protocol, dest: SocketAddr) {
        self.proto = proto;
        self.dest = dest;
    }

    /// Protects one packet and hands it to `tx`. Returns the datagram's length.
    pub fn send(
        &mut self,
        head: &HeadTemplate,
        fields: HeadFields,
        ssrc: u32,
        ext_seq: u64,
        payload: &[u8],
        tx: &mut dyn Transmit,
    ) -> usize {
        self.seal(&head.render(fields), head.len(), ssrc, ext_seq, payload, tx)
    }

    /// One RTP padding packet, as a bandwidth probe ([`crate::forward::video_gate`]).
    pub fn send_padding(
        &mut self,
        head: &HeadTemplate,
        fields: HeadFields,
        ssrc: u32,
        ext_seq: u64,
        tx: &mut dyn Transmit,
    ) -> usize {
        let header = head.render_padding(fields);
        self.seal(&header, head.len(), ssrc, ext_seq, &PADDING, tx)
    }

    fn seal(
        &mut self,
        header: &[u8],
        header_len: usize,
        ssrc: u32,
        ext_seq: u64,
        payload: &[u8],
        tx: &mut dyn Transmit,
    ) -> usize {
        let mut datagram = tx.buffer();
        self.srtp
            .protect_rtp_into(&header[..header_len], payload, ssrc, ext_seq, &mut datagram);
        let len = datagram.len();
        match self.proto {
            Protocol::Udp => tx.send(self.dest, datagram),
            // ICE-TCP (RFC 4571 framing is the connection writer's) and anything else str0m
            // might nominate travel the way str0m's own output for that protocol does.
            _ => tx.send_tcp(self.dest, datagram),
        }
        len
    }
}

/// Resends one viewer stream may cost: a NACK names up to 17 packets per 4 bytes, so
/// without a budget one viewer's RTCP could make the node send many times what it forwards
/// (an amplifier). Each forwarded packet earns `RESEND_RATIO` of a resend (str0m's own cap
/// was 15 % of the stream too), saved up to `RESEND_BURST` (a lost keyframe's packets).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ResendBudget {
    tokens: f32,
}

const RESEND_RATIO: f32 = 0.15;
const RESEND_BURST: f32 = 48.0;

impl Default for ResendBudget {
    fn default() -> Self {
        Self {
            tokens: RESEND_BURST,
        }
    }
}

impl ResendBudget {
    pub fn earn(&mut self) {
        self.tokens = (self.tokens + RESEND_RATIO).min(RESEND_BURST);
    }

    /// Whether one more resend is allowed now (and spends it).
    pub fn spend(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What was sent on one outgoing stream since str0m last heard of it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SendTally {
    packets: u64,
    payload_bytes: u64,
    last: Option<(u64, u32, Instant)>,
}

impl SendTally {
    pub fn add(&mut self, ext_seq: u64, timestamp: u32, payload_bytes: usize, now: Instant) {
        self.packets += 1;
        self.payload_bytes += payload_bytes as u64;
        // A retransmission is older than what was sent: the RTP/wallclock pair stays the
        // newest packet's.
        if self.last.is_none_or(|(s, _, _)| ext_seq > s) {
            self.last = Some((ext_seq, timestamp, now));
        }
    }

    /// Tells the viewer's str0m send stream, and starts counting afresh.
    pub fn hand_to(&mut self, stream: &mut StreamTx, clock_rate: u32) {
        let Some((seq, ts, at)) = self.last else {
            return;
        };
        let clock = if clock_rate == 48_000 {
            Frequency::FORTY_EIGHT_KHZ
        } else {
            Frequency::NINETY_KHZ
        };
        stream.note_app_sends(
            self.packets,
            self.payload_bytes,
            SeqNo::from(seq),
            ts,
            at,
            clock,
        );
        *self = SendTally {
            last: self.last,
            ..SendTally::default()
        };
    }

    pub fn is_pending(&self) -> bool {
        self.packets > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resends_are_held_to_a_burst_then_to_a_share_of_what_is_forwarded() {
        let mut b = ResendBudget::default();
        let burst = (0..1000).take_while(|_| b.spend()).count();
        assert_eq!(burst, RESEND_BURST as usize);
        let mut resent = 0;
        for _ in 0..1000 {
            b.earn();
            if b.spend() {
                resent += 1;
            }
        }
        assert!((140..=150).contains(&resent), "{resent} of 1000 forwarded");
        for _ in 0..10_000 {
            b.earn();
        }
        let saved = (0..1000).take_while(|_| b.spend()).count();
        assert_eq!(saved, RESEND_BURST as usize, "savings are capped");
    }

    #[test]
    fn the_tally_keeps_the_newest_packet_for_the_sender_report() {
        let now = Instant::now();
        let mut t = SendTally::default();
        assert!(!t.is_pending());
        t.add(10, 900, 100, now);
        t.add(12, 1800, 100, now);
        // A retransmission of 11 after 12.
        t.add(11, 1350, 100, now + std::time::Duration::from_millis(5));
        assert!(t.is_pending());
        assert_eq!((t.packets, t.payload_bytes), (3, 300));
        assert_eq!(t.last.map(|(s, ts, _)| (s, ts)), Some((12, 1800)));
    }
}
