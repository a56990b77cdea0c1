//! `/api/sessions`: list, create, read and delete sessions (operator tokens).
//! An operator token for `*` manages every session; one for a single session may read and
//! delete that session, and create it under that id.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::error::ApiError;
use super::json::ApiJson;
use super::session_access::{self as access, SessionAccess};
use crate::auth::{AuthError, Grant, Permission, SessionScope};
use crate::floor::runtime::Floors;
use crate::live_captions::feed::CaptionFeed;
use crate::media_engine::{Media, reply_raw};
use crate::peer_resources::Resources;
use crate::session::{SessionId, SessionInfo, SessionRegistry};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/sessions", get(list).post(create))
        .route("/api/sessions/{id}", get(read).delete(delete))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Picked by the server when absent.
    #[serde(default)]
    pub id: Option<String>,
    pub title: String,
}

/// The sessions a token is for: every session for a `*` token, else its one session. Any
/// role may list (the home page shows people where they may go); only operators change.
async fn list(
    State(sessions): State<SessionRegistry>,
    grant: Grant,
) -> Result<ApiJson<Vec<SessionInfo>>, ApiError> {
    let list = match &grant.claims.session {
        SessionScope::Any => sessions.list(),
        SessionScope::One(id) => sessions.get(id).into_iter().collect(),
    };
    Ok(ApiJson(list))
}

async fn create(
    State(sessions): State<SessionRegistry>,
    grant: Grant,
    ApiJson(body): ApiJson<CreateSession>,
) -> Result<Response, ApiError> {
    grant.require_role(Permission::ManageSessions)?;
    let id = body.id.as_deref().map(SessionId::parse).transpose()?;
    match (&grant.claims.session, &id) {
        (SessionScope::Any, _) => {}
        (SessionScope::One(own), Some(id)) if own == id => {}
        (SessionScope::One(own), _) => {
            return Err(AuthError::Forbidden(format!(
                "this token may only create session {own}; creating others needs a token for `*`"
            ))
            .into());
        }
    }
    let info = sessions.create(id, body.title).await?;
    tracing::info!(session = %info.id, "session created");
    let location = format!("/api/sessions/{}", info.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        ApiJson(info),
    )
        .into_response())
}

async fn read(session: SessionAccess<access::ManageSessions>) -> ApiJson<SessionInfo> {
    ApiJson(session.info)
}

/// Deletes the session, then ends its peers: once it is gone from the registry no new peer
/// can join, so closing afterwards leaves nobody behind.
async fn delete(
    State(sessions): State<SessionRegistry>,
    State(media): State<Media>,
    State(resources): State<Resources>,
    State(floors): State<Floors>,
    State(captions): State<CaptionFeed>,
    SessionAccess { id, .. }: SessionAccess<access::ManageSessions>,
) -> Result<Response, ApiError> {
    sessions.delete(&id).await?;
    floors.remove(&id);
    captions.forget(&id);
    resources.remove_session(&id);
    if let Some(engine) = media.engine() {
        match reply_raw(engine.close_session(id.to_media())).await {
            Ok(Ok(())) => {}
            // The session is deleted either way; its peers then end by ICE timeout.
            Ok(Err(e)) => {
                tracing::warn!(session = %id, error = %e, "closing the session's peers failed")
            }
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "closing the session's peers timed out")
            }
        }
    }
    tracing::info!(session = %id, "session deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
