//! Load scenarios run by the `floorcast-load` binary.
pub mod fanout;
pub mod hands;
