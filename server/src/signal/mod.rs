//! WHIP and WHEP signalling: an HTTP POST with an SDP offer creates a peer in the media
//! engine and a resource URL (`Location`) through which the client trickles candidates
//! (PATCH) and ends the peer (DELETE).
//!
//! The checks before the engine is asked, in order: token (401), role (403), session id and
//! token scope (404/403), session exists (404) — all in `api::session_access` — then
//! draining (503), body type and content (415/400). Body size is
//! limited for every route by the layers in `layers` (413).

pub mod client_ip;
mod lifecycle;
pub mod sdp;
mod whep;
mod whip;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use media::{Answer, MediaError};
use tower_http::cors::{Any, CorsLayer};

use crate::api::error::ApiError;
use crate::api::floor::participant;
use crate::auth::Grant;
use crate::config::Config;
use crate::drain::Drain;
use crate::media_engine::{BoxFuture, Media, MediaEngine, reply_raw};
use crate::metrics::Limit;
use crate::peer_resources::{Resource, ResourceKind, Resources};
use crate::session::SessionId;
use crate::signal_limits::SignalLimits;
use crate::state::AppState;
use crate::store::Store;
use client_ip::ClientIp;
use sdp::SdpOffer;

/// What the signalling handlers need from the app state.
#[derive(Clone)]
pub struct SignalDeps {
    pub media: Media,
    pub resources: Resources,
    pub store: Store,
    pub drain: Drain,
    pub limits: SignalLimits,
    /// For the ICE servers announced in `Link` headers.
    pub config: Arc<Config>,
}

impl FromRef<AppState> for SignalDeps {
    fn from_ref(state: &AppState) -> Self {
        SignalDeps {
            media: state.media.clone(),
            resources: state.resources.clone(),
            store: state.store.clone(),
            drain: state.drain.clone(),
            limits: state.signal_limits.clone(),
            config: state.config.clone(),
        }
    }
}

pub fn routes() -> Router<AppState> {
    // Publishing and watching pages may be served from another origin (an event website);
    // tokens travel in the Authorization header, not cookies, so any origin is safe.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([header::LOCATION, header::ETAG, header::LINK])
        .max_age(Duration::from_secs(600));
    Router::new()
        .route("/whip/{session}", post(whip::create).options(options))
        .route(
            "/whip/{session}/{peer}",
            patch(lifecycle::patch_whip)
                .delete(lifecycle::delete_whip)
                .options(options),
        )
        .route("/whep/{session}", post(whep::create).options(options))
        .route(
            "/api/sessions/{id}/viewers",
            get(crate::api::viewers::viewers),
        )
        .route(
            "/whep/{session}/{peer}",
            patch(lifecycle::patch_whep)
                .delete(lifecycle::delete_whep)
                .options(options),
        )
        // Every route has an explicit OPTIONS handler: the CORS layer wraps handlers, and
        // the app-wide 405 fallback (set later, in `layers`) would otherwise answer preflights.
        .layer(cors)
}

/// Only routes OPTIONS to the CORS layer: tower-http's `CorsLayer` answers every OPTIONS
/// request itself (preflight or not, with the allowed methods and headers), so this body is
/// not reached while the layer is in place.
async fn options() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// A peer the engine accepted, with the 201 response to send.
struct Created {
    peer: media::PeerId,
    session: SessionId,
    response: Response,
}

/// Who asks for a new WHIP/WHEP resource: their token, and the address it came from.
struct Asker<'a> {
    grant: &'a Grant,
    ip: ClientIp,
}

/// The shared body of WHIP and WHEP POST: checks, engine call, resource bookkeeping, 201.
async fn create_peer<F>(
    deps: &SignalDeps,
    kind: ResourceKind,
    id: SessionId,
    Asker {
        grant,
        ip: ClientIp(ip),
    }: Asker<'_>,
    offer: Result<SdpOffer, ApiError>,
    call: F,
) -> Result<Created, ApiError>
where
    F: for<'a> FnOnce(
        &'a dyn MediaEngine,
        media::SessionId,
        String,
    ) -> BoxFuture<'a, Result<Answer, MediaError>>,
{
    if deps.drain.is_draining() {
        return Err(ApiError::unavailable(
            "draining",
            "this node is shutting down and takes no new viewers or publishers: try again \
             (a load balancer sends you to another node)",
            Duration::from_secs(5),
        ));
    }
    let SdpOffer(offer) = offer?;
    let owner = &grant.claims.sub;
    let slot = deps
        .resources
        .reserve(owner, deps.limits.max_resources_per_token)
        .map_err(|held| {
            deps.limits.count(Limit::ResourcesPerToken);
            ApiError::too_many_requests(
                "too_many_resources",
                format!(
                    "this token already holds {held} WHIP/WHEP sessions, the most it may; \
                     end one (DELETE its resource URL) first"
                ),
                Duration::from_secs(10),
            )
        })?;
    deps.limits.creation(owner, ip)?;
    let engine = deps.media.get()?;
    let remote_ufrag = sdp::ice_ufrag(&offer);
    let answer = match reply_raw(call(engine.as_ref(), id.to_media(), offer)).await? {
        Ok(answer) => answer,
        Err(e) => {
            match e {
                MediaError::TooManyPeers(_) => deps.limits.count(Limit::PeersPerNode),
                MediaError::SessionFull(..) => deps.limits.count(Limit::PeersPerSession),
                _ => {}
            }
            return Err(e.into());
        }
    };

    let resource = Resource {
        session: id,
        kind,
        owner: grant.claims.sub.clone(),
        remote_ufrag,
        hub: participant(grant).hub,
    };
    let location = resource.location(answer.peer);
    tracing::info!(
        session = %resource.session,
        peer = %answer.peer,
        %kind,
        role = %grant.claims.role,
        "resource created"
    );
    let session = resource.session.clone();
    slot.commit(answer.peer, resource);
    let mut response = (
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (header::ETAG, Resource::etag(answer.peer)),
            (header::CONTENT_TYPE, sdp::SDP.to_owned()),
        ],
        answer.sdp,
    )
        .into_response();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let servers = crate::turn_credentials::ice_servers(&deps.config, owner, now, grant.claims.exp);
    for link in crate::turn_credentials::link_headers(&servers) {
        response.headers_mut().append(header::LINK, link);
    }
    Ok(Created {
        peer: answer.peer,
        session,
        response,
    })
}
