//! Who may do what. A token (HS256 JWT, [`jwt`]) names a role and a session; the role
//! decides the permissions ([`grant`]). Handlers never look at headers themselves: they take
//! a [`Grant`] extractor and ask it for a permission on a session.

pub mod grant;
pub mod jwt;

pub use grant::{Grant, Permission, Role};
pub use jwt::{AuthKeys, Claims, SessionScope};

/// Why a request is not allowed. Mapped to 401/403 in `api::error`, the only place that
/// chooses a status.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("this request needs a token: send `Authorization: Bearer <token>` or `?token=`")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token has expired; ask for a new one")]
    Expired,
    #[error("{0}")]
    Forbidden(String),
    #[error("could not create a token: {0}")]
    Mint(String),
}
