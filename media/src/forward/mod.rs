//! The hot path: what happens to one publisher packet on its way to each viewer.
//! - [`rewrite`] keeps each viewer's outgoing SSRC/sequence/timestamp continuous when the
//!   source changes (publisher restarts, floor ↔ speaker).
//! - [`keyframe`] finds keyframes in VP8/H.264 payloads (a viewer's video starts on one) and
//!   rate-limits the keyframe requests we send to publishers.

pub mod keyframe;
pub mod rewrite;
