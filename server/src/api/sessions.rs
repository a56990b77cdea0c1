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
use crate::session::{SessionId, SessionInfo};
use crate::session_registry::SessionRegistry;
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
        SessionScope::One(id) => sessions.info(id).into_iter().collect(),
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
    ApiJson(session.handle.info)
}

/// One call ends the session and everything it owns (floor, captions, peers).
async fn delete(
    State(sessions): State<SessionRegistry>,
    SessionAccess { id, .. }: SessionAccess<access::ManageSessions>,
) -> Result<Response, ApiError> {
    sessions.delete(&id).await?;
    tracing::info!(session = %id, "session deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
