//! Load scenarios run by the `floorcast-load` binary.
pub mod attack;
pub mod captions;
pub mod churn;
pub mod compare;
pub mod crowd;
pub mod fanout;
pub mod hands;
pub mod limit;
