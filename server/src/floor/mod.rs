//! Remote interventions: hands raised by remote people and hubs, an ordered and fair queue,
//! timed grants of the floor, all persisted before they are announced.
//!
//! - [`model`]: the vocabulary (hands, commands, events, errors).
//! - [`machine`]: the pure state machine (clock passed in, no I/O), with its policies in
//!   [`policy`]; [`patch`]: how each event moves hands in the queue, so clients keep their
//!   own place from the events.
//! - [`store`]: the SQLite event log of every session.
//! - [`runtime`]: one task per session that owns a machine, runs its clock, persists events,
//!   then broadcasts them and tells the media engine when a turn ends.
//! - [`log`] and [`report`] derive the floor log and the post-session report from stored
//!   events. The HTTP routes, SSE included, are `api::floor`: nothing here knows HTTP.

pub mod log;
pub mod machine;
pub mod model;
pub mod patch;
pub mod policy;
pub mod rate_limit;
pub mod report;
pub mod runtime;
pub mod store;
