//! Minting and verifying HS256 tokens. The key comes from config and lives in state
//! ([`AuthKeys`]), never in a global, so two servers with different keys can run in one test.
//!
//! Expiry is checked here against a `now` the caller passes, not by the JWT library's clock,
//! so tests can verify expiry without sleeping.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::AuthError;
use super::grant::Role;
use crate::session::SessionId;

/// Accepted difference between the minting and the verifying clock.
const LEEWAY: Duration = Duration::from_secs(30);

/// Tokens longer than this are refused before any parsing (they come from the network).
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The session a token is valid for: one session, or `*` (every session).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionScope {
    Any,
    One(SessionId),
}

impl SessionScope {
    pub fn covers(&self, session: &SessionId) -> bool {
        match self {
            SessionScope::Any => true,
            SessionScope::One(id) => id == session,
        }
    }

    pub fn parse(s: &str) -> Result<Self, crate::session::InvalidSessionId> {
        if s == "*" {
            Ok(SessionScope::Any)
        } else {
            SessionId::parse(s).map(SessionScope::One)
        }
    }
}

impl fmt::Display for SessionScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionScope::Any => f.write_str("*"),
            SessionScope::One(id) => write!(f, "{id}"),
        }
    }
}

impl Serialize for SessionScope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SessionScope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SessionScope::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The claims of a Floorcast token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// A stable id of the holder (a person, a hub screen, an encoder).
    pub sub: String,
    /// Display name, shown to moderators.
    #[serde(default)]
    pub name: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    pub session: SessionScope,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
}

impl Claims {
    /// Claims valid for `ttl` from `now`, with a fresh random `sub`.
    pub fn new(
        role: Role,
        session: SessionScope,
        name: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Self {
        use rand::Rng;
        let exp = now
            .checked_add(ttl)
            .unwrap_or(now)
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Claims {
            sub: format!("{}-{:016x}", role.as_str(), rand::rng().random::<u64>()),
            name: name.to_owned(),
            exp,
            session,
            role,
            hub: None,
        }
    }
}

/// The HS256 key pair derived from the configured secret. Cheap to clone.
#[derive(Clone)]
pub struct AuthKeys {
    inner: Arc<Keys>,
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl AuthKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked in `verify` against the caller's clock (see module doc).
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims = ["exp".to_owned()].into_iter().collect();
        AuthKeys {
            inner: Arc::new(Keys {
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                validation,
            }),
        }
    }

    pub fn mint(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.inner.encoding)
            .map_err(|e| AuthError::Mint(e.to_string()))
    }

    /// Checks signature, algorithm, shape and expiry.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid("it is too long".into()));
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &self.inner.validation)
                .map_err(|e| AuthError::Invalid(describe(&e)))?;
        let claims = data.claims;
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        if claims.exp.saturating_add(LEEWAY.as_secs()) < now.as_secs() {
            return Err(AuthError::Expired);
        }
        Ok(claims)
    }
}

/// A reason the client can act on, without echoing the token.
fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => "the signature does not match this server's key".into(),
        ErrorKind::InvalidAlgorithm => "only HS256 tokens are accepted".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the claim `{c}` is missing"),
        ErrorKind::Json(_) => "its claims are malformed (need sub, exp, session, role)".into(),
        _ => "it is not a well-formed JWT".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> AuthKeys {
        AuthKeys::from_secret(b"0123456789abcdef0123456789abcdef")
    }

    fn claims(ttl: u64) -> Claims {
        Claims::new(
            Role::Viewer,
            SessionScope::parse("s1").unwrap(),
            "Ada",
            Duration::from_secs(ttl),
            SystemTime::now(),
        )
    }

    #[test]
    fn round_trip() {
        let k = keys();
        let c = claims(60);
        let token = k.mint(&c).unwrap();
        assert_eq!(k.verify(&token, SystemTime::now()).unwrap(), c);
    }

    #[test]
    fn expiry_on_the_callers_clock() {
        let k = keys();
        let token = k.mint(&claims(60)).unwrap();
        let later = SystemTime::now() + Duration::from_secs(60) + LEEWAY + Duration::from_secs(2);
        assert_eq!(k.verify(&token, later), Err(AuthError::Expired));
        let within_leeway = SystemTime::now() + Duration::from_secs(70);
        assert!(k.verify(&token, within_leeway).is_ok());
    }

    #[test]
    fn forged_and_garbage_tokens() {
        let token = AuthKeys::from_secret(b"another-secret-another-secret-xx")
            .mint(&claims(60))
            .unwrap();
        assert!(matches!(
            keys().verify(&token, SystemTime::now()),
            Err(AuthError::Invalid(_))
        ));
        for junk in ["x", "a.b.c", "....", "eyJ.eyJ.sig", &"a".repeat(10_000)] {
            assert!(matches!(
                keys().verify(junk, SystemTime::now()),
                Err(AuthError::Invalid(_))
            ));
        }
        assert_eq!(
            keys().verify("", SystemTime::now()),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn unknown_role_or_bad_session_is_invalid() {
        #[derive(Serialize)]
        struct Raw<'a> {
            sub: &'a str,
            exp: u64,
            session: &'a str,
            role: &'a str,
        }
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        let key = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        for (session, role) in [("s1", "admin"), ("bad id", "viewer")] {
            let raw = Raw {
                sub: "x",
                exp,
                session,
                role,
            };
            let token = jsonwebtoken::encode(&Header::default(), &raw, &key).unwrap();
            assert!(matches!(
                keys().verify(&token, SystemTime::now()),
                Err(AuthError::Invalid(_))
            ));
        }
    }
}
