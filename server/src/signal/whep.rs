//! WHEP (draft-ietf-wish-whep): `POST /whep/{session}` with an SDP offer creates a viewer
//! resource. Any role may watch a session its token is valid for.

use axum::extract::State;
use axum::response::Response;

use super::resources::ResourceKind;
use super::sdp::SdpOffer;
use super::{SignalDeps, create_peer};
use crate::api::error::ApiError;
use crate::api::path::ApiPath;
use crate::auth::{Grant, Permission};
use crate::floor::api::record_viewer;

pub async fn create(
    State(deps): State<SignalDeps>,
    ApiPath(session): ApiPath<String>,
    grant: Grant,
    offer: Result<SdpOffer, ApiError>,
) -> Result<Response, ApiError> {
    let created = create_peer(
        &deps,
        ResourceKind::Whep,
        Permission::Subscribe,
        &session,
        &grant,
        offer,
        |engine, session, offer| engine.subscribe(session, offer),
    )
    .await?;
    // Who watched goes into the post-session report (hubs, remote participants).
    record_viewer(&deps.store, &created.session, &grant);
    Ok(created.response)
}
