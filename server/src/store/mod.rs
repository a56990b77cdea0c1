//! Durable state of a node. SQLite (WAL) is the default: one file under `data_dir`, nothing
//! else to run. Callers reach it through [`Store`], whose blocking work runs on tokio's
//! blocking pool so no async worker ever waits on disk.

mod sqlite;

pub use sqlite::{SessionRow, Store, StoreError};
