//! Internals the fuzz targets (`fuzz/`, its own workspace) drive directly. Not an API: it
//! may change with every commit.

pub use crate::demux::{Demux, Route};
