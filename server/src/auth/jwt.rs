//! Minting and verifying HS256 tokens. The key comes from config and lives in state
//! ([`AuthKeys`]), never in a global, so two servers with different keys can run in one test.
//!
//! Every time check (`exp`, `nbf`, the lifetime bound) runs here against a `now` the caller
//! passes, not the JWT library's clock, so tests can verify them without sleeping. The
//! [`TokenPolicy`] (from config) bounds what a valid signature is not enough for: a token
//! may not live longer than `max_token_ttl` (a leaked token must stop working), and when
//! `jwt_issuer` / `jwt_audience` are set, tokens minted for another service with the same
//! secret are refused.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::AuthError;
use super::grant::Role;
use crate::config::Config;
use crate::metrics::AuthMetrics;
use crate::session::SessionId;

/// Accepted difference between the minting and the verifying clock (`exp`, `nbf`, and the
/// lifetime of a token without `iat`).
pub const LEEWAY: Duration = Duration::from_secs(30);

/// The default of `max_token_ttl` (defined with the config, which auth reads).
pub use crate::config::DEFAULT_MAX_TTL;

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
    /// Issued at, Unix seconds: the start of the lifetime `max_token_ttl` bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before, Unix seconds (RFC 7519 §4.1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issuer; checked when `jwt_issuer` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience; checked when `jwt_audience` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// The `aud` claim: one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn names(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }
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
        let iat = unix_s(now);
        Claims {
            sub: format!("{}-{:016x}", role.as_str(), rand::rng().random::<u64>()),
            name: name.to_owned(),
            exp: iat.saturating_add(ttl.as_secs()),
            session,
            role,
            hub: None,
            iat: Some(iat),
            nbf: None,
            iss: None,
            aud: None,
        }
    }
}

fn unix_s(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What a correctly signed token must also satisfy (config `max_token_ttl`, `jwt_issuer`,
/// `jwt_audience`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPolicy {
    /// The longest lifetime accepted: `exp − iat`, or `exp − now` for a token without `iat`
    /// (or with an `iat` in the future, which must not stretch the lifetime).
    pub max_ttl: Duration,
    /// Required `iss`; minted tokens carry it.
    pub issuer: Option<String>,
    /// Required in `aud`; minted tokens carry it.
    pub audience: Option<String>,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            max_ttl: DEFAULT_MAX_TTL,
            issuer: None,
            audience: None,
        }
    }
}

impl TokenPolicy {
    pub fn from_config(config: &Config) -> Self {
        TokenPolicy {
            max_ttl: Duration::from_secs(config.max_token_ttl),
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        }
    }

    /// The checks after the signature, at `now` (Unix seconds): issuer, audience, expiry,
    /// not-before, lifetime. Pure.
    pub fn check(&self, claims: &Claims, now: u64) -> Result<(), AuthError> {
        if let Some(expected) = &self.issuer
            && claims.iss.as_deref() != Some(expected.as_str())
        {
            return Err(AuthError::WrongIssuer {
                expected: expected.clone(),
            });
        }
        if let Some(expected) = &self.audience
            && !claims.aud.as_ref().is_some_and(|a| a.names(expected))
        {
            return Err(AuthError::WrongAudience {
                expected: expected.clone(),
            });
        }
        let leeway = LEEWAY.as_secs();
        if claims.exp.saturating_add(leeway) < now {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = claims.nbf
            && nbf > now.saturating_add(leeway)
        {
            return Err(AuthError::NotYetValid { in_s: nbf - now });
        }
        let max_s = self.max_ttl.as_secs();
        let lifetime_s = match claims.iat {
            // The minter's own clock on both ends: no leeway needed.
            Some(iat) if iat <= now => claims.exp.saturating_sub(iat),
            // Measured on our clock: the minter's may be a little ahead.
            _ => claims.exp.saturating_sub(now).saturating_sub(leeway),
        };
        if lifetime_s > max_s {
            return Err(AuthError::LifetimeTooLong { lifetime_s, max_s });
        }
        Ok(())
    }
}

/// The HS256 key pair derived from the configured secret, and the [`TokenPolicy`]. Cheap
/// to clone.
#[derive(Clone)]
pub struct AuthKeys {
    inner: Arc<Keys>,
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    policy: TokenPolicy,
    /// Refused tokens are counted here (the server's keys; not those of `floorcast token`).
    metrics: Option<AuthMetrics>,
}

impl AuthKeys {
    /// Keys with the default policy (no issuer or audience, the default `max_token_ttl`).
    pub fn from_secret(secret: &[u8]) -> Self {
        Self::new(secret, TokenPolicy::default(), None)
    }

    pub fn new(secret: &[u8], policy: TokenPolicy, metrics: Option<AuthMetrics>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Times, issuer and audience are checked by `TokenPolicy::check` (see module doc).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = ["exp".to_owned()].into_iter().collect();
        AuthKeys {
            inner: Arc::new(Keys {
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                validation,
                policy,
                metrics,
            }),
        }
    }

    pub fn policy(&self) -> &TokenPolicy {
        &self.inner.policy
    }

    /// Signs `claims`, adding the configured issuer and audience when they have none.
    /// Refuses a lifetime (`exp − iat`) above `max_token_ttl`: this server would not accept
    /// the token.
    pub fn mint(&self, claims: &Claims) -> Result<String, AuthError> {
        let policy = &self.inner.policy;
        if let Some(iat) = claims.iat {
            let lifetime_s = claims.exp.saturating_sub(iat);
            let max_s = policy.max_ttl.as_secs();
            if lifetime_s > max_s {
                return Err(AuthError::Mint(format!(
                    "a lifetime of {lifetime_s} s is longer than max_token_ttl ({max_s} s); \
                     ask for less, or raise max_token_ttl in the server's config"
                )));
            }
        }
        let mut claims = claims.clone();
        if claims.iss.is_none() {
            claims.iss.clone_from(&policy.issuer);
        }
        if claims.aud.is_none() {
            claims.aud = policy.audience.clone().map(Audience::One);
        }
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.inner.encoding,
        )
        .map_err(|e| AuthError::Mint(e.to_string()))
    }

    /// Checks signature, algorithm, shape, then the policy (times, issuer, audience).
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
        self.inner.policy.check(&data.claims, unix_s(now))?;
        Ok(data.claims)
    }

    /// Counts a refused request in `floorcast_tokens_refused_total{reason}`.
    pub fn count_refusal(&self, e: &AuthError) {
        if let (Some(metrics), Some(reason)) = (&self.inner.metrics, e.refusal()) {
            metrics.count_token_refused(reason);
        }
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

    fn now_s() -> u64 {
        unix_s(SystemTime::now())
    }

    /// Keys with the same secret as `keys()` and a stricter policy.
    fn strict(max_ttl_s: u64, issuer: Option<&str>, audience: Option<&str>) -> AuthKeys {
        AuthKeys::new(
            b"0123456789abcdef0123456789abcdef",
            TokenPolicy {
                max_ttl: Duration::from_secs(max_ttl_s),
                issuer: issuer.map(str::to_owned),
                audience: audience.map(str::to_owned),
            },
            None,
        )
    }

    #[test]
    fn not_before_on_the_callers_clock() {
        let k = keys();
        let now = SystemTime::now();
        let mut c = claims(3600);
        c.nbf = Some(now_s() + 120);
        let token = k.mint(&c).unwrap();
        assert!(matches!(
            k.verify(&token, now),
            Err(AuthError::NotYetValid { in_s }) if (118..=120).contains(&in_s)
        ));
        assert!(k.verify(&token, now + Duration::from_secs(120)).is_ok());
        // A minting clock a little ahead is tolerated.
        let within_leeway = now + Duration::from_secs(120) - LEEWAY;
        assert!(k.verify(&token, within_leeway).is_ok());
        c.nbf = Some(now_s().saturating_sub(10));
        assert!(k.verify(&k.mint(&c).unwrap(), now).is_ok());
    }

    #[test]
    fn lifetime_is_bounded() {
        let strict = strict(3600, None, None);
        let now = SystemTime::now();
        // Minting refuses what verifying would refuse.
        assert!(strict.mint(&claims(3600)).is_ok());
        assert!(matches!(
            strict.mint(&claims(3601)),
            Err(AuthError::Mint(m)) if m.contains("max_token_ttl")
        ));
        // exp − iat, whatever is left of it now.
        let long = keys().mint(&claims(3601)).unwrap();
        assert_eq!(
            strict.verify(&long, now),
            Err(AuthError::LifetimeTooLong {
                lifetime_s: 3601,
                max_s: 3600
            })
        );
        assert!(
            strict
                .verify(&long, now + Duration::from_secs(3000))
                .is_err(),
            "an old long-lived token stays refused"
        );
        // Without iat: exp − now (with the leeway for the minter's clock).
        let mut c = claims(0);
        c.iat = None;
        c.exp = now_s() + 3600;
        assert!(strict.verify(&keys().mint(&c).unwrap(), now).is_ok());
        c.exp = now_s() + 3600 + LEEWAY.as_secs() + 5;
        assert!(matches!(
            strict.verify(&keys().mint(&c).unwrap(), now),
            Err(AuthError::LifetimeTooLong { .. })
        ));
        // An iat in the future does not stretch the lifetime.
        c.iat = Some(now_s() + 100_000);
        c.exp = now_s() + 100_000 + 60;
        assert!(matches!(
            strict.verify(&keys().mint(&c).unwrap(), now),
            Err(AuthError::LifetimeTooLong { .. })
        ));
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let strict = strict(3600, Some("floorcast.example.org"), Some("igf-2026"));
        let now = SystemTime::now();
        // Minted by the server's keys: both claims are stamped, and accepted.
        let token = strict.mint(&claims(60)).unwrap();
        let c = strict.verify(&token, now).unwrap();
        assert_eq!(c.iss.as_deref(), Some("floorcast.example.org"));
        assert_eq!(c.aud, Some(Audience::One("igf-2026".into())));
        // The same secret without them (another service, or an old token): refused.
        let plain = keys().mint(&claims(60)).unwrap();
        assert!(matches!(
            strict.verify(&plain, now),
            Err(AuthError::WrongIssuer { .. })
        ));
        let mut c = claims(60);
        c.iss = Some("floorcast.example.org".into());
        c.aud = Some(Audience::Many(vec!["other".into(), "igf-2026".into()]));
        assert!(strict.verify(&keys().mint(&c).unwrap(), now).is_ok());
        c.aud = Some(Audience::Many(vec!["other".into()]));
        assert!(matches!(
            strict.verify(&keys().mint(&c).unwrap(), now),
            Err(AuthError::WrongAudience { .. })
        ));
        c.iss = Some("evil.example.org".into());
        assert!(matches!(
            strict.verify(&keys().mint(&c).unwrap(), now),
            Err(AuthError::WrongIssuer { .. })
        ));
        // Unconfigured: whatever the token says is ignored.
        assert!(keys().verify(&keys().mint(&c).unwrap(), now).is_ok());
    }

    #[test]
    fn policy_from_config_and_its_bounds() {
        let config = Config::default();
        assert_eq!(TokenPolicy::from_config(&config), TokenPolicy::default());
        assert_eq!(config.max_token_ttl, 7 * 24 * 3600);
        assert_eq!(config.max_event_streams_per_token, 8);
        let set = Config {
            max_token_ttl: 3600,
            jwt_issuer: Some("fc".into()),
            jwt_audience: Some("conf".into()),
            ..Config::default()
        };
        assert!(set.validate().is_ok());
        let p = TokenPolicy::from_config(&set);
        assert_eq!(p.max_ttl, Duration::from_secs(3600));
        assert_eq!(
            (p.issuer.as_deref(), p.audience.as_deref()),
            (Some("fc"), Some("conf"))
        );
        for (bad, key) in [
            (
                Config {
                    max_token_ttl: 10,
                    ..Config::default()
                },
                "max_token_ttl",
            ),
            (
                Config {
                    max_token_ttl: 400 * 86_400,
                    ..Config::default()
                },
                "max_token_ttl",
            ),
            (
                Config {
                    jwt_issuer: Some(String::new()),
                    ..Config::default()
                },
                "jwt_issuer",
            ),
            (
                Config {
                    jwt_audience: Some("x".repeat(300)),
                    ..Config::default()
                },
                "jwt_audience",
            ),
            (
                Config {
                    max_event_streams_per_token: 0,
                    ..Config::default()
                },
                "max_event_streams_per_token",
            ),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    // Jail's closures must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn keys_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("FLOORCAST_MAX_TOKEN_TTL", "3600");
            jail.set_env("FLOORCAST_JWT_ISSUER", "floorcast.example.org");
            // A numeric-looking audience stays a string.
            jail.set_env("FLOORCAST_JWT_AUDIENCE", "2026");
            jail.set_env("FLOORCAST_MAX_EVENT_STREAMS_PER_TOKEN", "3");
            let c = Config::load(None, &crate::config::Overrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(c.max_token_ttl, 3600);
            assert_eq!(c.jwt_issuer.as_deref(), Some("floorcast.example.org"));
            assert_eq!(c.jwt_audience.as_deref(), Some("2026"));
            assert_eq!(c.max_event_streams_per_token, 3);
            Ok(())
        });
    }

    #[test]
    fn every_refusal_has_a_bounded_label() {
        for e in [
            AuthError::Missing,
            AuthError::Invalid(String::new()),
            AuthError::Expired,
            AuthError::NotYetValid { in_s: 1 },
            AuthError::LifetimeTooLong {
                lifetime_s: 2,
                max_s: 1,
            },
            AuthError::WrongIssuer {
                expected: String::new(),
            },
            AuthError::WrongAudience {
                expected: String::new(),
            },
        ] {
            assert!(AuthError::REFUSALS.contains(&e.refusal().unwrap()), "{e:?}");
        }
        assert_eq!(AuthError::Forbidden(String::new()).refusal(), None);
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

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Tokens come from the network: no input panics, and only a signed token passes.
            #[test]
            fn verify_never_panics(
                junk in ".{0,400}",
                claims in proptest::collection::btree_map(
                    "(sub|exp|nbf|iat|iss|aud|session|role|hub|name|[a-z]{1,4})",
                    prop_oneof![
                        any::<i64>().prop_map(serde_json::Value::from),
                        any::<u64>().prop_map(serde_json::Value::from),
                        any::<f64>().prop_map(serde_json::Value::from),
                        ".{0,20}".prop_map(serde_json::Value::from),
                        proptest::collection::vec(".{0,8}", 0..3).prop_map(serde_json::Value::from),
                    ],
                    0..8,
                ),
            ) {
                let strict = strict(3600, Some("fc"), Some("conf"));
                let now = SystemTime::now();
                prop_assert!(keys().verify(&junk, now).is_err());
                // Any claims, correctly signed: accepted or refused, never a panic.
                let key = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
                let token = jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap();
                let _ = keys().verify(&token, now);
                let _ = strict.verify(&token, now);
            }
        }
    }
}
