//! Development mode's ready-made links and tokens, printed after the "listening" lines.
//! Each line starts with `floorcast dev <what>:` so scripts and tests can pick one out.

use std::time::{Duration, SystemTime};

use crate::auth::{AuthError, AuthKeys, Claims, Role, SessionScope};
use crate::session::SessionId;

/// The session `--dev` creates.
pub const DEMO_SESSION: &str = "demo";

/// Dev tokens last a week (or `max_token_ttl` if shorter): long enough for a rehearsal,
/// short enough to notice.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The banner for `base` (the public URL, no trailing slash).
pub fn banner(base: &str, keys: &AuthKeys, now: SystemTime) -> Result<String, AuthError> {
    let demo = SessionId::parse(DEMO_SESSION).expect("the demo session id is valid");
    let mint = |role, scope: SessionScope, name: &str| {
        let ttl = DEV_TOKEN_TTL.min(keys.policy().max_ttl);
        keys.mint(&Claims::new(role, scope, name, ttl, now))
    };
    let venue = mint(Role::Venue, SessionScope::One(demo.clone()), "Venue mixer")?;
    let viewer = mint(Role::Viewer, SessionScope::One(demo.clone()), "Dev viewer")?;
    let operator = mint(Role::Operator, SessionScope::Any, "Dev operator")?;
    let whip = format!("{base}/whip/{demo}");
    Ok([
        format!("floorcast dev publish link: {base}/publish/{demo}?token={venue}"),
        format!("floorcast dev watch link: {base}/watch/{demo}?token={viewer}"),
        format!("floorcast dev venue token: {venue}"),
        format!("floorcast dev viewer token: {viewer}"),
        format!("floorcast dev operator token: {operator}"),
        format!("floorcast dev whip endpoint: {whip}"),
        format!(
            "floorcast dev obs: Settings > Stream: Service \"WHIP\", Server {whip}, Bearer Token = the venue token"
        ),
        format!(
            "floorcast dev gstreamer: gst-launch-1.0 whipclientsink name=ws \
             signaller::whip-endpoint={whip} signaller::auth-token={venue} \
             videotestsrc is-live=true ! videoconvert ! ws. audiotestsrc is-live=true wave=ticks ! ws."
        ),
    ]
    .join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenPolicy;

    #[test]
    fn dev_tokens_fit_max_token_ttl() {
        let now = SystemTime::now();
        for (max_s, expected_s) in [(3600, 3600), (30 * 86_400, DEV_TOKEN_TTL.as_secs())] {
            let policy = TokenPolicy {
                max_ttl: Duration::from_secs(max_s),
                ..TokenPolicy::default()
            };
            let keys = AuthKeys::new(&[9; 32], policy, None);
            let banner = banner("http://127.0.0.1:8080", &keys, now).unwrap();
            let viewer = banner
                .lines()
                .find_map(|l| l.strip_prefix("floorcast dev viewer token: "))
                .unwrap();
            let claims = keys.verify(viewer, now).unwrap();
            assert_eq!(claims.exp - claims.iat.unwrap(), expected_s);
        }
    }
}
