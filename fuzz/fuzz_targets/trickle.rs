//! A trickle ICE PATCH body (RFC 8840 `application/trickle-ice-sdpfrag`) through the
//! server's `TrickleFragment::parse`: never panics, refuses only for too many candidates,
//! keeps whole single candidate lines, and reading back a fragment written from what it
//! found gives the same fragment.

#![no_main]

use libfuzzer_sys::fuzz_target;
use server::api::error::ApiError;
use server::signal::sdp::{MAX_CANDIDATES_PER_PATCH, TrickleFragment};

fuzz_target!(|frag: &str| {
    let parsed = match TrickleFragment::parse(frag) {
        Ok(f) => f,
        Err(e) => {
            // The only refusal, and the answer a client gets for it.
            let answer = ApiError::from(e);
            assert_eq!(answer.code, "too_many_candidates");
            assert_eq!(answer.status.as_u16(), 400);
            return;
        }
    };
    assert!(parsed.candidates.len() <= MAX_CANDIDATES_PER_PATCH);
    for c in &parsed.candidates {
        assert!(c.starts_with("a=candidate:"), "{c:?}");
        assert!(!c.contains('\n'), "{c:?}");
        assert!(frag.contains(c.as_str()));
    }
    for v in parsed.ufrag.iter().chain(&parsed.pwd) {
        assert!(!v.contains('\n') && v.trim() == v, "{v:?}");
    }
    if let Some(u) = &parsed.ufrag {
        assert!(
            !parsed.is_ice_restart(Some(u)),
            "the same ufrag is no restart"
        );
        assert!(parsed.is_ice_restart(None));
    }

    let mut written = String::new();
    for (name, v) in [("ice-ufrag", &parsed.ufrag), ("ice-pwd", &parsed.pwd)] {
        if let Some(v) = v {
            written.push_str(&format!("a={name}:{v}\r\n"));
        }
    }
    for c in &parsed.candidates {
        written.push_str(c);
        written.push_str("\r\n");
    }
    if parsed.end_of_candidates {
        written.push_str("a=end-of-candidates\r\n");
    }
    let again = TrickleFragment::parse(&written).expect("a fragment read once reads again");
    assert_eq!(again, parsed, "{written:?}");
});
