//! WHIP (RFC 9725): `POST /whip/{session}` with an SDP offer creates a publisher resource.
//!
//! Two publishers use it: the venue's floor feed (a `venue` token), and a remote speaker
//! while they hold the floor (their own token, whatever its role). Viewers receive the
//! speaker on the tracks they already have: the engine switches each kind (audio, video) to
//! the speaker when the speaker sends it, and back to the floor feed when the turn ends, so
//! no viewer renegotiates. The turn's end closes the speaker's peer (`floor::runtime`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use media::Takeover;

use super::client_ip::ClientIp;
use super::sdp::SdpOffer;
use super::{Asker, SignalDeps, create_peer};
use crate::api::error::ApiError;
use crate::api::session_access::{self as access, SessionAccess};
use crate::auth::{Grant, Role};
use crate::config::Config;
use crate::floor::runtime::SessionFloor;
use crate::media_engine::reply_raw;
use crate::peer_resources::ResourceKind;
use crate::session::SessionId;

pub async fn create(
    State(config): State<Arc<Config>>,
    State(deps): State<SignalDeps>,
    SessionAccess {
        id, grant, handle, ..
    }: SessionAccess<access::Publish>,
    ip: ClientIp,
    offer: Result<SdpOffer, ApiError>,
) -> Result<Response, ApiError> {
    if grant.claims.role != Role::Venue {
        return create_speaker(deps, id, handle.floor, grant, ip, offer).await;
    }
    let takeover = if config.allow_takeover {
        Takeover::Replace
    } else {
        Takeover::Refuse
    };
    let created = create_peer(
        &deps,
        ResourceKind::Whip,
        id,
        Asker { grant: &grant, ip },
        offer,
        |engine, session, offer| engine.publish(session, media::Role::Floor, offer, takeover),
    )
    .await?;
    Ok(created.response)
}

fn not_floor_holder() -> ApiError {
    ApiError::forbidden(
        "not_floor_holder",
        "you do not hold the floor: raise your hand and publish once a moderator grants it \
         (the floor feed itself needs a venue token)",
    )
}

/// The floor holder's own token publishes as the session's speaker; anyone else gets 403.
async fn create_speaker(
    deps: SignalDeps,
    id: SessionId,
    floor: SessionFloor,
    grant: Grant,
    ip: ClientIp,
    offer: Result<SdpOffer, ApiError>,
) -> Result<Response, ApiError> {
    if floor.holder_hand(&grant.claims.sub).await?.is_none() {
        return Err(not_floor_holder());
    }
    // A speaker who publishes again (a reload) replaces their earlier peer.
    let created = create_peer(
        &deps,
        ResourceKind::Whip,
        id.clone(),
        Asker { grant: &grant, ip },
        offer,
        |engine, session, offer| {
            engine.publish(session, media::Role::Speaker, offer, Takeover::Replace)
        },
    )
    .await?;
    // The turn may have ended while the engine answered: then the peer goes at once.
    if floor
        .attach_speaker(&grant.claims.sub, created.peer)
        .await?
        .is_none()
    {
        deps.resources.remove(created.peer);
        if let Ok(engine) = deps.media.get() {
            let _ = reply_raw(engine.close_peer(created.peer)).await;
        }
        return Err(not_floor_holder());
    }
    tracing::info!(session = %id, peer = %created.peer, sub = %grant.claims.sub, "speaker publishing");
    Ok(created.response)
}
