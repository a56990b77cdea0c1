//! Mints Floorcast JWTs (HS256, claims `{sub, name, exp, session, role, hub?}` per
//! docs/CONTRACT.md) so tests and the load generator need no server round trip for tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::{Deserialize, Serialize};

/// The claims Floorcast reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub name: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// A session id, or `*` for all.
    pub session: String,
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
}

impl Claims {
    /// Claims for `role` on `session`, valid for `ttl` from now.
    pub fn new(role: &str, session: &str, name: &str, ttl: Duration) -> Self {
        Self {
            sub: format!("{role}-{name}"),
            name: name.to_owned(),
            exp: unix_now() + ttl.as_secs(),
            session: session.to_owned(),
            role: role.to_owned(),
            hub: None,
        }
    }

    /// Claims that expired `ago` ago (for 401 tests).
    pub fn expired(role: &str, session: &str, ago: Duration) -> Self {
        let mut c = Self::new(role, session, "expired", Duration::ZERO);
        c.exp = unix_now().saturating_sub(ago.as_secs());
        c
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs `claims` with HS256 and `secret`.
pub fn sign(claims: &Claims, secret: &str) -> Result<String, jsonwebtoken::errors::Error> {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// A token for `role` on `session`, valid for an hour.
pub fn mint(secret: &str, role: &str, session: &str, name: &str) -> String {
    sign(
        &Claims::new(role, session, name, Duration::from_secs(3600)),
        secret,
    )
    .expect("HS256 signing with an in-memory key cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation, decode};

    #[test]
    fn round_trips_with_the_same_secret_only() {
        let t = mint("s3cret", "viewer", "s1", "alice");
        let mut v = Validation::new(Algorithm::HS256);
        v.validate_exp = true;
        let c = decode::<Claims>(&t, &DecodingKey::from_secret(b"s3cret"), &v)
            .unwrap()
            .claims;
        assert_eq!(c.role, "viewer");
        assert_eq!(c.session, "s1");
        assert!(c.exp > unix_now());
        assert!(decode::<Claims>(&t, &DecodingKey::from_secret(b"other"), &v).is_err());
        let json: serde_json::Value = serde_json::from_slice(&base64_part(&t)).unwrap();
        assert!(json.get("hub").is_none());
    }

    fn base64_part(t: &str) -> Vec<u8> {
        // Decode the payload segment (URL-safe base64, no padding) by hand.
        let seg = t.split('.').nth(1).unwrap();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in seg.bytes() {
            let v = alphabet.iter().position(|&a| a == c).unwrap() as u32;
            bits = (bits << 6) | v;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
                bits &= (1 << n) - 1;
            }
        }
        out
    }

    #[test]
    fn expired_claims_are_in_the_past() {
        let c = Claims::expired("viewer", "s1", Duration::from_secs(600));
        assert!(c.exp + 500 < unix_now());
    }
}
