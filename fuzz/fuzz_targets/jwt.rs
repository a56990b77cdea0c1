//! Token verification (`server::auth::AuthKeys::verify`, HS256) on arbitrary tokens, with a
//! fixed secret and clock: never panics, and never accepts a token whose signature is not
//! HMAC-SHA256 of its first two parts under the secret (checked here with aws-lc, not
//! with the server's JWT library), whose header names another algorithm, or whose claims
//! break the policy (expiry, not-before, issuer, audience) by more than the leeway.
//!
//! Input: a mode byte, then
//! - mode 0: the token as text;
//! - mode 1: a claims payload, signed here under the standard HS256 header;
//! - mode 2: a header and a payload separated by `\n`, signed here as they are.
//!
//! Modes 1 and 2 sign with the server's secret, or with another key when the mode byte's
//! high bit is set: such a token must be refused.

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use libfuzzer_sys::fuzz_target;
use server::auth::{AuthKeys, TokenPolicy};

const SECRET: &[u8] = b"fuzz-secret-not-for-production-0123456789";
const OTHER_SECRET: &[u8] = b"fuzz-secret-not-for-production-0123456788";
/// 2025-06-15T08:26:40Z: the seeds' tokens are valid at this instant.
const NOW_S: u64 = 1_750_000_000;
const LEEWAY_S: u64 = 30;
const HS256_HEADER: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

/// Whatever base64url a JWT library might accept, so a valid signature is never missed here.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn signed(header: &[u8], payload: &[u8], secret: &[u8]) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(tag));
    token
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let forged = mode & 0x80 != 0;
    let secret = if forged { OTHER_SECRET } else { SECRET };
    let token = match (mode & 0x7F) % 3 {
        0 => match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        },
        1 => signed(HS256_HEADER, rest, secret),
        _ => {
            let (header, payload) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b""[..]),
            };
            signed(header, payload, secret)
        }
    };

    let now = UNIX_EPOCH + Duration::from_secs(NOW_S);
    let lenient = AuthKeys::from_secret(SECRET);
    let strict = AuthKeys::new(
        SECRET,
        TokenPolicy {
            max_ttl: Duration::from_secs(3600),
            issuer: Some("floorcast-fuzz".into()),
            audience: Some("hall-a".into()),
        },
        None,
    );
    for (keys, is_strict) in [(&lenient, false), (&strict, true)] {
        let Ok(claims) = keys.verify(&token, now) else {
            continue;
        };
        assert!(
            (mode & 0x7F) % 3 == 0 || !forged,
            "accepted a token signed with another key"
        );
        assert_signed_with_secret(&token);
        assert!(
            claims.exp.saturating_add(LEEWAY_S) >= NOW_S,
            "expired: {claims:?}"
        );
        assert!(
            claims.nbf.is_none_or(|nbf| nbf <= NOW_S + LEEWAY_S),
            "{claims:?}"
        );
        if is_strict {
            assert_eq!(claims.iss.as_deref(), Some("floorcast-fuzz"));
            assert!(claims.aud.as_ref().is_some_and(|a| a.names("hall-a")));
            assert!(
                strict
                    .verify(&token, now + Duration::from_secs(2 * 3600))
                    .is_err()
            );
        }
    }
});

fn assert_signed_with_secret(token: &str) {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("accepted a token without three parts: {token:?}");
    };
    let signature = LENIENT
        .decode(signature)
        .unwrap_or_else(|e| panic!("accepted a signature that is not base64url ({e}): {token:?}"));
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
    let message = format!("{header}.{payload}");
    assert!(
        hmac::verify(&key, message.as_bytes(), &signature).is_ok(),
        "accepted a token not signed with the secret: {token:?}"
    );
    let header = LENIENT
        .decode(header)
        .expect("an accepted header is base64url");
    let header: serde_json::Value = serde_json::from_slice(&header).expect("a JSON header");
    assert_eq!(
        header["alg"], "HS256",
        "accepted another algorithm: {header}"
    );
}
