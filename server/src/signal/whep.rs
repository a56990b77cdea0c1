//! WHEP (draft-ietf-wish-whep): `POST /whep/{session}` with an SDP offer creates a viewer
//! resource. Any role may watch a session its token is valid for. `?follow=floor` watches
//! the floor feed only, even while a remote speaker holds the floor (the venue screen's
//! picture-in-picture); the default, `?follow=current`, is what the session shows now.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use media::Follow;

use super::client_ip::ClientIp;
use super::sdp::SdpOffer;
use super::{Asker, SignalDeps, create_peer};
use crate::api::error::ApiError;
use crate::api::floor::record_viewer;
use crate::api::session_access::{self as access, SessionAccess};
use crate::peer_resources::ResourceKind;

pub async fn create(
    State(deps): State<SignalDeps>,
    SessionAccess { id, grant, .. }: SessionAccess<access::Subscribe>,
    RawQuery(query): RawQuery,
    ip: ClientIp,
    offer: Result<SdpOffer, ApiError>,
) -> Result<Response, ApiError> {
    let follow = follow_from_query(query.as_deref())?;
    let created = create_peer(
        &deps,
        ResourceKind::Whep,
        id,
        Asker { grant: &grant, ip },
        offer,
        |engine, session, offer| engine.subscribe(session, offer, follow),
    )
    .await?;
    // Who watched goes into the post-session report (hubs, remote participants).
    record_viewer(&deps.store, &created.session, &grant);
    Ok(created.response)
}

fn follow_from_query(query: Option<&str>) -> Result<Follow, ApiError> {
    let value = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "follow")
        .map(|(_, v)| v);
    match value.as_deref() {
        None | Some("current") => Ok(Follow::Current),
        Some("floor") => Ok(Follow::Floor),
        Some(other) => Err(ApiError::bad_request(
            "invalid_follow",
            format!("follow must be \"current\" or \"floor\", not {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_is_read_from_the_query() {
        assert_eq!(follow_from_query(None).unwrap(), Follow::Current);
        assert_eq!(follow_from_query(Some("")).unwrap(), Follow::Current);
        assert_eq!(
            follow_from_query(Some("token=x&follow=floor")).unwrap(),
            Follow::Floor
        );
        assert_eq!(
            follow_from_query(Some("follow=current")).unwrap(),
            Follow::Current
        );
        assert!(follow_from_query(Some("follow=speaker")).is_err());
    }
}
