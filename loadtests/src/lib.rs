//! Floorcast's independent WebRTC test peers and load generator.
//!
//! The peers are built on the `webrtc` crate (webrtc-rs 0.21, an async layer over the
//! sans-I/O `rtc` core) — a different stack from the SFU's str0m, so interop bugs show up
//! here rather than cancelling out. A [`publisher::Publisher`] sends synthetic Opus and VP8 over
//! WHIP and answers PLI/FIR with keyframes; a [`viewer::Viewer`] subscribes over WHEP and
//! measures what arrives (loss, sequence continuity, jitter, join time). Everything is
//! bounded by timeouts: a test using these peers fails, it never hangs.
//!
//! - [`whip`], [`whep`]: HTTP signalling (bearer token, `application/sdp`, `Location`, DELETE).
//! - [`vp8`], [`synthetic`]: the payloads (RFC 7741 descriptor, keyframe bit).
//! - [`sequence`], [`jitter`], [`stats`]: pure measurement code with unit tests.
//! - [`server_process`], [`token`], [`process_usage`]: running and measuring the real binary.
//! - [`light`]: the light-mode viewer on str0m (ICE, DTLS, RTCP; media counted from the clear
//!   RTP header, SRTP authentication checked on a sample), [`rtp_header`], and [`janus`] (the
//!   Janus Streaming plugin's signalling, for side-by-side figures).
//! - [`hostile`]: garbage and forged datagrams for the media port.
//! - [`scenarios`]: what the `floorcast-load` binary runs.

pub mod hostile;
pub mod janus;
pub mod jitter;
pub mod light;
pub mod peer;
pub mod process_usage;
pub mod publisher;
pub mod rtp_header;
pub mod scenarios;
pub mod sequence;
pub mod server_process;
pub mod stats;
pub mod synthetic;
pub mod token;
pub mod viewer;
pub mod vp8;
pub mod whep;
pub mod whip;

pub use peer::{Kinds, PeerError};
pub use publisher::{Publisher, PublisherConfig, PublisherStats};
pub use viewer::{Viewer, ViewerConfig, ViewerStats};
