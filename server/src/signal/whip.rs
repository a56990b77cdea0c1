//! WHIP (RFC 9725): `POST /whip/{session}` with an SDP offer creates a publisher resource.
//! Today the only WHIP publisher is the venue's floor feed; remote speakers will publish here
//! too once the floor queue grants them the floor.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use media::Takeover;

use super::resources::ResourceKind;
use super::sdp::SdpOffer;
use super::{SignalDeps, create_peer};
use crate::api::error::ApiError;
use crate::api::path::ApiPath;
use crate::auth::{Grant, Permission};
use crate::config::Config;

pub async fn create(
    State(config): State<Arc<Config>>,
    State(deps): State<SignalDeps>,
    ApiPath(session): ApiPath<String>,
    grant: Grant,
    offer: Result<SdpOffer, ApiError>,
) -> Result<Response, ApiError> {
    let takeover = if config.allow_takeover {
        Takeover::Replace
    } else {
        Takeover::Refuse
    };
    create_peer(
        &deps,
        ResourceKind::Whip,
        Permission::PublishFloor,
        &session,
        &grant,
        offer,
        |engine, session, offer| engine.publish(session, media::Role::Floor, offer, takeover),
    )
    .await
}
