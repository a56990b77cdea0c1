//! The hot path: what happens to one publisher packet on its way to each viewer.
//! - [`rewrite`] keeps each viewer's outgoing SSRC/sequence/timestamp continuous when the
//!   source changes (publisher restarts, floor ↔ speaker).
//! - [`keyframe`] finds keyframes in VP8/H.264 payloads (a viewer's video starts on one) and
//!   rate-limits the keyframe requests we send to publishers.
//! - [`rtp_head`] writes a viewer stream's RTP header and [`history`] keeps recent source
//!   packets for retransmission, for our own egress ([`crate::viewer_egress`]).
//! - [`red`] adds the previous Opus packet to each (RFC 2198) for viewers on lossy links, and
//!   [`video_gate`] pauses a viewer's video while its link cannot carry it (issue 18).

pub(crate) mod history;
pub mod keyframe;
pub(crate) mod red;
pub mod rewrite;
pub(crate) mod rtp_head;
pub(crate) mod video_gate;
