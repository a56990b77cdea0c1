//! [`SessionAccess`]: the one extractor every session route goes through. It reads the
//! session id from the path, checks the token's grant on that session and finds the session,
//! so no handler repeats the check and every route answers a bad id the same way.
//!
//! The checks run in a fixed order, the one clients have always seen: token (401), role
//! (403), id (404), the token's session scope (403), the session exists (404). A malformed id
//! and an unknown one are the same answer, 404 `session_not_found`: an id that cannot exist
//! does not exist, and the client's fix (check the link) is the same.
//!
//! What a route needs is a type, [`Access`], so the handler's signature says it:
//! `SessionAccess<ModerateFloor>`. A few routes let two kinds of token in (an owner or a
//! moderator); their `Access` picks the permission from the token's role.

use std::marker::PhantomData;

use axum::extract::{FromRef, FromRequestParts, RawPathParams};
use axum::http::request::Parts;

use super::error::ApiError;
use crate::auth::{AuthKeys, Grant, Permission, Role};
use crate::session::SessionId;
use crate::session_registry::{SessionHandle, SessionRegistry};

/// The path parameters that may hold the session id (`/api/sessions/{id}/…`,
/// `/whip/{session}`, `/cart/{id}`).
const SESSION_PARAMS: [&str; 2] = ["id", "session"];

/// What a route asks of the token, given its role.
pub trait Access {
    fn permission(role: Role) -> Permission;
}

macro_rules! fixed_access {
    ($($(#[$doc:meta])* $name:ident => $permission:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl Access for $name {
            fn permission(_: Role) -> Permission {
                Permission::$permission
            }
        }
    )*};
}

fixed_access! {
    /// Any token of the session: watch, read the queue, events, transcripts.
    Subscribe => Subscribe;
    /// Raise one's own hand.
    RaiseHand => RaiseHand;
    /// Order the queue, grant, extend.
    ModerateFloor => ModerateFloor;
    ReadFloorLog => ReadFloorLog;
    PostCaptions => PostCaptions;
    ReadAudience => ReadAudience;
    ManageSessions => ManageSessions;
}

/// Withdrawing a hand: a moderator withdraws any, a raiser their own (the owner is checked
/// by the floor itself).
#[derive(Debug, Clone, Copy)]
pub struct WithdrawHand;

impl Access for WithdrawHand {
    fn permission(role: Role) -> Permission {
        if role.allows(Permission::ModerateFloor) {
            Permission::ModerateFloor
        } else {
            Permission::RaiseHand
        }
    }
}

/// Ending a turn: a moderator revokes any, any token of the session may end its own.
#[derive(Debug, Clone, Copy)]
pub struct EndTurn;

impl Access for EndTurn {
    fn permission(role: Role) -> Permission {
        if role.allows(Permission::ModerateFloor) {
            Permission::ModerateFloor
        } else {
            Permission::Subscribe
        }
    }
}

/// WHIP: the venue publishes the floor feed; any other token of the session may try to
/// publish as the speaker (the floor decides whether it holds the floor).
#[derive(Debug, Clone, Copy)]
pub struct Publish;

impl Access for Publish {
    fn permission(role: Role) -> Permission {
        if role == Role::Venue {
            Permission::PublishFloor
        } else {
            Permission::Subscribe
        }
    }
}

/// A session that exists, and a token allowed to do `A` on it: the handle is the session's
/// own state (floor, captions, peers), found once here.
#[derive(Clone)]
pub struct SessionAccess<A> {
    pub id: SessionId,
    pub grant: Grant,
    pub handle: SessionHandle,
    access: PhantomData<fn() -> A>,
}

impl<A: Access> SessionAccess<A> {
    /// The permission this request was let in with.
    pub fn permission(&self) -> Permission {
        A::permission(self.grant.claims.role)
    }
}

impl<S, A> FromRequestParts<S> for SessionAccess<A>
where
    A: Access,
    AuthKeys: FromRef<S>,
    SessionRegistry: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let grant = Grant::from_request_parts(parts, state).await?;
        let permission = A::permission(grant.claims.role);
        grant.require_role(permission)?;
        let raw = session_param(parts, state).await?;
        let id = SessionId::parse(&raw).map_err(|_| ApiError::session_not_found(&raw))?;
        grant.require(permission, &id)?;
        let handle = SessionRegistry::from_ref(state)
            .get(&id)
            .ok_or_else(|| ApiError::session_not_found(id.as_str()))?;
        Ok(SessionAccess {
            id,
            grant,
            handle,
            access: PhantomData,
        })
    }
}

/// A well-formed session id from the path, without a token or a look-up: the pages, which
/// load before their script knows whether the token is good, report an unknown session
/// themselves. A malformed id is the same 404 as everywhere else.
#[derive(Debug, Clone)]
pub struct SessionIdPath(pub SessionId);

impl<S: Send + Sync> FromRequestParts<S> for SessionIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = session_param(parts, state).await?;
        SessionId::parse(&raw)
            .map(SessionIdPath)
            .map_err(|_| ApiError::session_not_found(&raw))
    }
}

async fn session_param<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<String, ApiError> {
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))?;
    params
        .iter()
        .find(|(name, _)| SESSION_PARAMS.contains(name))
        .map(|(_, value)| value.to_owned())
        .ok_or_else(|| ApiError::internal("a session route without an {id} or {session} segment"))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::auth::{Claims, SessionScope, TokenPolicy};
    use crate::store::Store;

    #[derive(Clone, axum::extract::FromRef)]
    struct TestState {
        auth: AuthKeys,
        sessions: SessionRegistry,
    }

    async fn state() -> TestState {
        let store = Store::open_in_memory().expect("in-memory store");
        let parts = crate::session_registry::test_parts(&store);
        let sessions = SessionRegistry::load(store, &[], parts)
            .await
            .expect("registry");
        sessions
            .create(Some(SessionId::parse("s1").unwrap()), "One".into())
            .await
            .unwrap();
        TestState {
            auth: AuthKeys::new(b"secret-for-tests", TokenPolicy::default(), None),
            sessions,
        }
    }

    fn token(state: &TestState, role: Role, session: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        state
            .auth
            .mint(&Claims {
                sub: "u".into(),
                name: "U".into(),
                exp: now + 600,
                session: SessionScope::parse(session).unwrap(),
                role,
                hub: None,
                iat: Some(now),
                nbf: None,
                iss: None,
                aud: None,
            })
            .unwrap()
    }

    async fn status(state: &TestState, uri: &str, token: &str) -> (StatusCode, String) {
        async fn moderate(s: SessionAccess<ModerateFloor>) -> String {
            s.handle.info.title
        }
        let app = Router::new()
            .route("/s/{id}/x/{n}", get(moderate))
            .with_state(state.clone());
        let response = app
            .oneshot(
                Request::get(uri)
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn checks_role_then_id_then_scope_then_existence() {
        let s = state().await;
        let moderator = token(&s, Role::Moderator, "*");
        assert_eq!(
            status(&s, "/s/s1/x/1", &moderator).await,
            (StatusCode::OK, "One".into())
        );
        let viewer = token(&s, Role::Viewer, "*");
        let (code, body) = status(&s, "/s/bad%20id/x/1", &viewer).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "role first: {body}");
        for uri in ["/s/bad%20id/x/1", "/s/nosuch/x/1"] {
            let (code, body) = status(&s, uri, &moderator).await;
            assert_eq!(code, StatusCode::NOT_FOUND, "{uri}");
            assert!(body.contains("\"session_not_found\""), "{body}");
        }
        let other = token(&s, Role::Moderator, "s2");
        assert_eq!(
            status(&s, "/s/s1/x/1", &other).await.0,
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn dynamic_access_follows_the_role() {
        assert_eq!(
            WithdrawHand::permission(Role::Moderator),
            Permission::ModerateFloor
        );
        assert_eq!(WithdrawHand::permission(Role::Hub), Permission::RaiseHand);
        assert_eq!(EndTurn::permission(Role::Viewer), Permission::Subscribe);
        assert_eq!(Publish::permission(Role::Venue), Permission::PublishFloor);
        assert_eq!(Publish::permission(Role::Speaker), Permission::Subscribe);
    }
}
