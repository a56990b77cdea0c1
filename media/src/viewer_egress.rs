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
        let header = head.render(fields);
        let mut datagram = tx.buffer();
        self.srtp
            .protect_rtp_into(&header[..head.len()], payload, ssrc, ext_seq, &mut datagram);
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
