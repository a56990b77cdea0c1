//! Roles, the permissions each role grants, and the [`Grant`] extractor that turns a
//! request's token into verified claims (or a 401 before the handler runs).

use std::fmt;
use std::time::SystemTime;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use super::AuthError;
use super::jwt::{AuthKeys, Claims, SessionScope};
use crate::session::SessionId;

/// The role claim of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Hub,
    Speaker,
    Moderator,
    Captioner,
    /// Publishes the floor feed (the venue mixer, OBS, GStreamer).
    Venue,
    /// Manages sessions.
    Operator,
}

impl Role {
    /// Every role, in the order `--help` lists them.
    pub const ALL: [Role; 7] = [
        Role::Viewer,
        Role::Hub,
        Role::Speaker,
        Role::Moderator,
        Role::Captioner,
        Role::Venue,
        Role::Operator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Hub => "hub",
            Role::Speaker => "speaker",
            Role::Moderator => "moderator",
            Role::Captioner => "captioner",
            Role::Venue => "venue",
            Role::Operator => "operator",
        }
    }

    /// The one table of who may do what.
    pub fn allows(self, permission: Permission) -> bool {
        match permission {
            // Everyone with a token for the session may watch it.
            Permission::Subscribe => true,
            Permission::PublishFloor => self == Role::Venue,
            Permission::ManageSessions => self == Role::Operator,
            // People and hubs in the audience ask to speak; staff roles do not.
            Permission::RaiseHand => matches!(self, Role::Viewer | Role::Hub | Role::Speaker),
            Permission::ModerateFloor => self == Role::Moderator,
            Permission::ReadFloorLog => matches!(self, Role::Moderator | Role::Operator),
            Permission::PostCaptions => self == Role::Captioner,
            // Who watches from where: for the chair and the people running the room.
            Permission::ReadAudience => {
                matches!(self, Role::Moderator | Role::Operator | Role::Venue)
            }
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a request wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// WHEP: receive the session's media.
    Subscribe,
    /// WHIP: publish the session's floor feed.
    PublishFloor,
    /// Create, list, delete sessions.
    ManageSessions,
    /// Raise and withdraw one's own hand.
    RaiseHand,
    /// Order the queue, grant, extend and revoke the floor, withdraw any hand.
    ModerateFloor,
    /// Read the floor log and the post-session report.
    ReadFloorLog,
    /// Send live captions (CART).
    PostCaptions,
    /// See the session's viewers by hub with their link quality, and who is publishing.
    ReadAudience,
}

impl Permission {
    fn describe(self) -> &'static str {
        match self {
            Permission::Subscribe => "watch a session",
            Permission::PublishFloor => "publish the floor feed (needs a venue token)",
            Permission::ManageSessions => "manage sessions (needs an operator token)",
            Permission::RaiseHand => "raise a hand (needs a viewer, hub or speaker token)",
            Permission::ModerateFloor => "moderate the floor (needs a moderator token)",
            Permission::ReadFloorLog => {
                "read the floor log or report (needs a moderator or operator token)"
            }
            Permission::PostCaptions => "send captions (needs a captioner token)",
            Permission::ReadAudience => {
                "see the audience (needs a moderator, operator or venue token)"
            }
        }
    }
}

/// The verified claims of the request's token.
#[derive(Clone, Debug)]
pub struct Grant {
    pub claims: Claims,
}

impl Grant {
    /// The role must allow `permission` and the token must be valid for `session`.
    pub fn require(&self, permission: Permission, session: &SessionId) -> Result<(), AuthError> {
        self.require_role(permission)?;
        if !self.claims.session.covers(session) {
            return Err(AuthError::Forbidden(format!(
                "this token is for session {}, not {session}",
                self.claims.session
            )));
        }
        Ok(())
    }

    /// The role must allow `permission` on every session (`session` claim `*`).
    pub fn require_everywhere(&self, permission: Permission) -> Result<(), AuthError> {
        self.require_role(permission)?;
        if self.claims.session != SessionScope::Any {
            return Err(AuthError::Forbidden(format!(
                "this token is for session {} only; this needs a token for session `*`",
                self.claims.session
            )));
        }
        Ok(())
    }

    pub fn require_role(&self, permission: Permission) -> Result<(), AuthError> {
        if self.claims.role.allows(permission) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "a {} token may not {}",
                self.claims.role,
                permission.describe()
            )))
        }
    }
}

impl<S> FromRequestParts<S> for Grant
where
    AuthKeys: FromRef<S>,
    S: Send + Sync,
{
    /// Answered as `api::error` maps it (the one place statuses are chosen).
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let keys = AuthKeys::from_ref(state);
        let claims = token_of(parts)
            .and_then(|token| keys.verify(&token, SystemTime::now()))
            .inspect_err(|e| keys.count_refusal(e))?;
        Ok(Grant { claims })
    }
}

/// `Authorization: Bearer …` wins; browser pages may pass `?token=` instead (they cannot
/// set headers on a page load, and WHIP/WHEP JS reuses the page's token).
fn token_of(parts: &Parts) -> Result<String, AuthError> {
    if let Some(value) = parts.headers.get(AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| AuthError::Invalid("the Authorization header is not ASCII".into()))?;
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Invalid(
                "the Authorization header must be `Bearer <token>`".into(),
            ));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        return Ok(token.to_owned());
    }
    let query = parts.uri.query().unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(uri: &str, auth: Option<&str>) -> Parts {
        let mut b = Request::builder().uri(uri);
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn token_sources() {
        assert_eq!(token_of(&parts("/x", Some("Bearer abc"))).unwrap(), "abc");
        assert_eq!(token_of(&parts("/x", Some("bearer  abc "))).unwrap(), "abc");
        assert_eq!(token_of(&parts("/x?a=1&token=q%2Bz", None)).unwrap(), "q+z");
        assert_eq!(
            token_of(&parts("/x?token=q", Some("Bearer h"))).unwrap(),
            "h",
            "header wins"
        );
        assert_eq!(token_of(&parts("/x", None)), Err(AuthError::Missing));
        assert_eq!(token_of(&parts("/x?token=", None)), Err(AuthError::Missing));
        assert_eq!(
            token_of(&parts("/x", Some("Bearer"))),
            Err(AuthError::Missing)
        );
        assert!(matches!(
            token_of(&parts("/x", Some("Basic dXNlcjpwYXNz"))),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn role_table() {
        use Permission::*;
        for role in [
            Role::Viewer,
            Role::Hub,
            Role::Speaker,
            Role::Moderator,
            Role::Captioner,
            Role::Venue,
            Role::Operator,
        ] {
            assert!(role.allows(Subscribe));
            assert_eq!(role.allows(PublishFloor), role == Role::Venue);
            assert_eq!(role.allows(ManageSessions), role == Role::Operator);
            assert_eq!(
                role.allows(RaiseHand),
                matches!(role, Role::Viewer | Role::Hub | Role::Speaker)
            );
            assert_eq!(role.allows(ModerateFloor), role == Role::Moderator);
            assert_eq!(
                role.allows(ReadFloorLog),
                matches!(role, Role::Moderator | Role::Operator)
            );
        }
    }

    #[test]
    fn session_scope() {
        let s1 = SessionId::parse("s1").unwrap();
        let s2 = SessionId::parse("s2").unwrap();
        let grant = |role, scope: &str| Grant {
            claims: Claims {
                sub: "x".into(),
                name: String::new(),
                exp: 0,
                session: SessionScope::parse(scope).unwrap(),
                role,
                hub: None,
                iat: None,
                nbf: None,
                iss: None,
                aud: None,
            },
        };
        assert!(
            grant(Role::Viewer, "s1")
                .require(Permission::Subscribe, &s1)
                .is_ok()
        );
        assert!(
            grant(Role::Viewer, "s1")
                .require(Permission::Subscribe, &s2)
                .is_err()
        );
        assert!(
            grant(Role::Viewer, "*")
                .require(Permission::Subscribe, &s2)
                .is_ok()
        );
        assert!(
            grant(Role::Viewer, "*")
                .require(Permission::PublishFloor, &s2)
                .is_err()
        );
        assert!(
            grant(Role::Operator, "*")
                .require_everywhere(Permission::ManageSessions)
                .is_ok()
        );
        assert!(
            grant(Role::Operator, "s1")
                .require_everywhere(Permission::ManageSessions)
                .is_err()
        );
    }
}
