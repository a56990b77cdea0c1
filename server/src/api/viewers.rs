//! `GET /api/sessions/{id}/viewers`: the [`viewers_report`](crate::viewers_report) of a
//! session, for staff tokens (moderator, operator, venue).

use axum::extract::State;

use crate::api::error::ApiError;
use crate::api::json::ApiJson;
use crate::api::session_access::{self as access, SessionAccess};
use crate::media_engine::Media;
use crate::viewers_report::{self, Audience};

pub async fn viewers(
    State(media): State<Media>,
    SessionAccess { handle, .. }: SessionAccess<access::ReadAudience>,
) -> Result<ApiJson<Audience>, ApiError> {
    Ok(ApiJson(viewers_report::report(&handle.peers, &media)))
}
