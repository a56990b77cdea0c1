//! The JSON HTTP API. Handlers return `Result<_, ApiError>` ([`error`]), read JSON through
//! [`json::ApiJson`] and path segments through [`path::ApiPath`], so every failure a client
//! sees has the same `{"error","message"}` shape. Every route under a session takes
//! [`session_access::SessionAccess`], the one place that checks the token against the
//! session and finds it. One file per resource.

pub mod captioning;
pub mod error;
pub mod floor;
pub mod json;
pub mod ops;
pub mod path;
pub mod session_access;
pub mod sessions;
pub mod viewers;

use axum::Router;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(sessions::routes())
        .merge(ops::routes())
        .merge(floor::routes())
        .merge(captioning::routes())
}
