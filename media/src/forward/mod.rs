//! The hot path: what happens to one publisher packet on its way to each viewer.
//! - [`rewrite`] keeps each viewer's outgoing SSRC/sequence/timestamp continuous when the
//!   source changes (publisher restarts, floor ↔ speaker).
//! - [`keyframe`] finds keyframes in VP8/H.264 payloads (a viewer's video starts on one) and
//!   rate-limits the keyframe requests we send to publishers.
//! - [`rtp_head`] writes a viewer stream's RTP header and [`history`] keeps recent source
//!   packets for retransmission, for our own egress ([`crate::viewer_egress`]).

pub(crate) mod history;
pub mod keyframe;
pub mod rewrite;
pub(crate) mod rtp_head;
