//! What can be done to an existing WHIP/WHEP resource: trickle ICE candidates (PATCH) and
//! end it (DELETE). Both first find the resource in the table under the exact URL kind and
//! session it was created with, so `/whep/s/{id}` never reaches a WHIP publisher.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use media::{MediaError, PeerId};

use super::SignalDeps;
use super::sdp::{SdpFragment, TrickleFragment};
use crate::api::error::ApiError;
use crate::api::path::ApiPath;
use crate::api::session_access::{self as access, SessionAccess};
use crate::auth::{AuthError, Role};
use crate::media_engine::reply_raw;
use crate::peer_resources::{Resource, ResourceKind};

type ResourcePath = ApiPath<(String, String)>;
/// Any token of the session may reach a resource URL; [`find`] then checks it owns it.
type Session = SessionAccess<access::Subscribe>;

pub async fn patch_whip(
    State(deps): State<SignalDeps>,
    ApiPath((_, peer)): ResourcePath,
    session: SessionAccess<access::Subscribe>,
    headers: HeaderMap,
    frag: Result<SdpFragment, ApiError>,
) -> Result<Response, ApiError> {
    patch(&deps, ResourceKind::Whip, &session, &peer, &headers, frag).await
}

pub async fn patch_whep(
    State(deps): State<SignalDeps>,
    ApiPath((_, peer)): ResourcePath,
    session: SessionAccess<access::Subscribe>,
    headers: HeaderMap,
    frag: Result<SdpFragment, ApiError>,
) -> Result<Response, ApiError> {
    patch(&deps, ResourceKind::Whep, &session, &peer, &headers, frag).await
}

pub async fn delete_whip(
    State(deps): State<SignalDeps>,
    ApiPath((_, peer)): ResourcePath,
    session: SessionAccess<access::Subscribe>,
) -> Result<Response, ApiError> {
    delete(&deps, ResourceKind::Whip, &session, &peer).await
}

pub async fn delete_whep(
    State(deps): State<SignalDeps>,
    ApiPath((_, peer)): ResourcePath,
    session: SessionAccess<access::Subscribe>,
) -> Result<Response, ApiError> {
    delete(&deps, ResourceKind::Whep, &session, &peer).await
}

fn resource_not_found() -> ApiError {
    ApiError::not_found(
        "resource_not_found",
        "this WHIP/WHEP resource does not exist (it ended or was never created)",
    )
}

fn ice_restart_unsupported() -> ApiError {
    ApiError::unprocessable(
        "ice_restart_unsupported",
        "ICE restart is not supported yet; DELETE this resource and POST a new offer",
    )
}

/// Whether this URL names a resource whose peer closed by itself lately, and the token may
/// act on it (the same checks as [`find`]).
fn closed_by_itself(deps: &SignalDeps, kind: ResourceKind, session: &Session, peer: &str) -> bool {
    let Ok(peer) = peer.parse::<PeerId>() else {
        return false;
    };
    let grant = &session.grant;
    deps.resources.take_closed(peer, |r| {
        r.kind == kind
            && r.session == session.id
            && (r.owner == grant.claims.sub || grant.claims.role == Role::Operator)
    })
}

/// The resource at this URL, if the token may act on it. The session and the token's scope
/// on it were checked by [`SessionAccess`].
fn find(
    deps: &SignalDeps,
    kind: ResourceKind,
    session: &Session,
    peer: &str,
) -> Result<(PeerId, Resource), ApiError> {
    let grant = &session.grant;
    let peer: PeerId = peer.parse().map_err(|_| resource_not_found())?;
    let resource = deps
        .resources
        .get(peer)
        .filter(|r| r.kind == kind && r.session == session.id)
        .ok_or_else(resource_not_found)?;
    // Peer ids are not secret, so a URL alone must not let one viewer end another's stream
    // (or the floor feed): only the creating token's holder or an operator may.
    if resource.owner != grant.claims.sub && grant.claims.role != Role::Operator {
        return Err(AuthError::Forbidden(
            "only the token that created this resource (or an operator) may change it".into(),
        )
        .into());
    }
    Ok((peer, resource))
}

async fn patch(
    deps: &SignalDeps,
    kind: ResourceKind,
    session: &Session,
    peer: &str,
    headers: &HeaderMap,
    frag: Result<SdpFragment, ApiError>,
) -> Result<Response, ApiError> {
    let (peer, resource) = find(deps, kind, session, peer)?;
    deps.limits.patch(peer)?;
    // RFC 9725 §4.3: `If-Match: *` announces an ICE restart; any other value must be the
    // current entity tag.
    if let Some(tag) = headers.get(header::IF_MATCH) {
        let tag = tag.to_str().unwrap_or_default().trim();
        if tag == "*" {
            return Err(ice_restart_unsupported());
        }
        if tag != Resource::etag(peer) {
            return Err(ApiError::precondition_failed(
                "If-Match does not name this resource's current ETag",
            ));
        }
    }
    let SdpFragment(frag) = frag?;
    let frag = TrickleFragment::parse(&frag)?;
    if frag.is_ice_restart(resource.remote_ufrag.as_deref()) {
        return Err(ice_restart_unsupported());
    }
    if !frag.candidates.is_empty() {
        let engine = deps.media.get()?;
        for candidate in frag.candidates {
            match reply_raw(engine.add_candidate(peer, candidate)).await? {
                Ok(()) => {}
                Err(MediaError::PeerNotFound(_)) => {
                    // The engine dropped the peer and we missed its Closed event.
                    deps.resources.remove(peer);
                    return Err(resource_not_found());
                }
                Err(e @ MediaError::TooManyCandidates(_)) => {
                    deps.limits.count(crate::metrics::Limit::RemoteCandidates);
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete(
    deps: &SignalDeps,
    kind: ResourceKind,
    session: &Session,
    peer: &str,
) -> Result<Response, ApiError> {
    if closed_by_itself(deps, kind, session, peer) {
        // Clients close their peer connection and then DELETE; by then the engine may have
        // seen the peer go. What they asked for is done.
        tracing::info!(session = %session.id, %peer, %kind, "resource deleted after its peer closed");
        return Ok(StatusCode::OK.into_response());
    }
    let (peer, resource) = find(deps, kind, session, peer)?;
    if let Some(engine) = deps.media.engine() {
        match reply_raw(engine.close_peer(peer)).await? {
            // Already gone is what the client wanted.
            Ok(()) | Err(MediaError::PeerNotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    deps.resources.remove(peer);
    tracing::info!(session = %resource.session, %peer, %kind, "resource deleted");
    Ok(StatusCode::OK.into_response())
}
