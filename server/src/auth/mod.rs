//! Who may do what. A token (HS256 JWT, [`jwt`]) names a role and a session; the role
//! decides the permissions ([`grant`]). Handlers never look at headers themselves: they take
//! a [`Grant`] extractor and ask it for a permission on a session. A valid signature is not
//! all: the [`TokenPolicy`] bounds times and lifetime and checks issuer and audience, and
//! [`streams`] bounds what one token may hold open.

pub mod grant;
pub mod jwt;
pub mod streams;

pub use grant::{Grant, Permission, Role};
pub use jwt::{AuthKeys, Claims, SessionScope, TokenPolicy};
pub use streams::{StreamSlot, StreamSlots, TooManyStreams};

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
    #[error(
        "the token is not valid yet (its nbf is {in_s} s from now); wait, or check the clock \
         of the machine that minted it"
    )]
    NotYetValid { in_s: u64 },
    #[error(
        "the token would stay valid for {lifetime_s} s, longer than this server accepts \
         (max_token_ttl = {max_s} s); ask for a shorter-lived one"
    )]
    LifetimeTooLong { lifetime_s: u64, max_s: u64 },
    #[error("the token was not issued for this server: its `iss` claim must be {expected:?}")]
    WrongIssuer { expected: String },
    #[error("the token is not meant for this server: its `aud` claim must name {expected:?}")]
    WrongAudience { expected: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("could not create a token: {0}")]
    Mint(String),
}

impl AuthError {
    /// Every value of [`AuthError::reason`] for a refused token (metric labels).
    pub const REFUSALS: [&'static str; 7] = [
        "missing",
        "invalid",
        "expired",
        "not_yet_valid",
        "lifetime_too_long",
        "wrong_issuer",
        "wrong_audience",
    ];

    /// Why a token was refused, as a bounded label; `None` for errors that are not about
    /// the token itself (a permission, minting).
    pub fn refusal(&self) -> Option<&'static str> {
        Some(match self {
            AuthError::Missing => "missing",
            AuthError::Invalid(_) => "invalid",
            AuthError::Expired => "expired",
            AuthError::NotYetValid { .. } => "not_yet_valid",
            AuthError::LifetimeTooLong { .. } => "lifetime_too_long",
            AuthError::WrongIssuer { .. } => "wrong_issuer",
            AuthError::WrongAudience { .. } => "wrong_audience",
            AuthError::Forbidden(_) | AuthError::Mint(_) => return None,
        })
    }
}
