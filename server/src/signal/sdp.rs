//! The HTTP side of SDP bodies before an offer goes to the media engine (which does the real
//! parsing): content types, text bodies, the extractors. What is read from the SDP itself
//! (the offer's ICE ufrag, trickle ICE fragments) is `ice_sdp`, re-exported here.
//! Everything here reads untrusted input and never panics.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};

use crate::api::error::ApiError;
pub use crate::ice_sdp::{MAX_CANDIDATES_PER_PATCH, TrickleError, TrickleFragment, ice_ufrag};

pub const SDP: &str = "application/sdp";
pub const TRICKLE_ICE_SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// `Ok` when the Content-Type's media type is `expected` (parameters such as charset and
/// letter case ignored), else 415.
pub fn require_content_type(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let matches = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case(expected));
    if matches {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(expected))
    }
}

/// The body as non-empty UTF-8 text.
pub fn text_body(body: Result<Bytes, BytesRejection>, what: &str) -> Result<String, ApiError> {
    let bytes = body?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
        ApiError::bad_request("invalid_body", format!("the {what} is not UTF-8 text"))
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "empty_body",
            format!("the request body must contain the {what}"),
        ));
    }
    Ok(text)
}

/// A WHIP/WHEP POST body: `application/sdp` (else 415), non-empty UTF-8 (else 400).
/// Handlers take `Result<SdpOffer, ApiError>` so they can check the token and the session
/// first: a caller without rights learns nothing from body errors.
#[derive(Debug)]
pub struct SdpOffer(pub String);

/// A PATCH body: `application/trickle-ice-sdpfrag`, UTF-8 (may be empty of candidates).
#[derive(Debug)]
pub struct SdpFragment(pub String);

impl<S: Send + Sync> FromRequest<S> for SdpOffer {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // The body is read (bounded by the body limit) before the Content-Type is judged:
        // answering while the client is still sending makes the server close a socket with
        // unread bytes, which resets the connection, and the client never sees the 415.
        let content_type_ok = require_content_type(req.headers(), SDP);
        let body = Bytes::from_request(req, state).await;
        content_type_ok?;
        text_body(body, "SDP offer").map(SdpOffer)
    }
}

impl<S: Send + Sync> FromRequest<S> for SdpFragment {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Read first for the same reason as `SdpOffer`.
        let content_type_ok = require_content_type(req.headers(), TRICKLE_ICE_SDPFRAG);
        let body = Bytes::from_request(req, state).await;
        content_type_ok?;
        let bytes = body?;
        String::from_utf8(bytes.to_vec())
            .map(SdpFragment)
            .map_err(|_| {
                ApiError::bad_request("invalid_body", "the SDP fragment is not UTF-8 text")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(require_content_type(&h, SDP).is_err());
        for ok in [
            "application/sdp",
            "Application/SDP",
            "application/sdp; charset=utf-8",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(require_content_type(&h, SDP).is_ok(), "{ok}");
        }
        for bad in ["text/plain", "application/sdpx", "application/json"] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(bad));
            assert!(require_content_type(&h, SDP).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies() {
        assert!(text_body(Ok(Bytes::from_static(b"v=0\r\n")), "offer").is_ok());
        let empty = text_body(Ok(Bytes::from_static(b" \r\n")), "offer").unwrap_err();
        assert_eq!(empty.code, "empty_body");
        let binary = text_body(Ok(Bytes::from_static(&[0xff, 0xfe])), "offer").unwrap_err();
        assert_eq!(binary.code, "invalid_body");
    }

    #[test]
    fn trickle_fragment_and_restart() {
        let frag = "a=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
                    a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n\
                    a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0\r\n\
                    a=end-of-candidates\r\n";
        let f = TrickleFragment::parse(frag).unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.candidates.len(), 2);
        assert!(f.candidates[0].starts_with("a=candidate:1387637174"));
        assert!(f.end_of_candidates);
        assert!(!f.is_ice_restart(Some("EsAw")));
        assert!(f.is_ice_restart(Some("other")));
        assert!(
            !TrickleFragment::parse("a=candidate:1 1 udp 1 192.0.2.1 1 typ host")
                .unwrap()
                .is_ice_restart(Some("x"))
        );
    }

    #[test]
    fn offer_ufrag() {
        let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:abcd\r\na=ice-pwd:x\r\n";
        assert_eq!(ice_ufrag(offer).as_deref(), Some("abcd"));
        assert_eq!(ice_ufrag("v=0\r\n"), None);
    }

    /// How third-party WHIP/WHEP libraries trickle: session-level credentials, then one
    /// `m=` section per mid with its candidate (an mDNS host name from a browser), and a
    /// fragment whose candidate is empty.
    #[test]
    fn third_party_fragments() {
        let f = TrickleFragment::parse(
            "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
             m=audio 9 RTP/AVP 0\r\na=mid:0\r\n\
             a=candidate:2 1 udp 2113937151 5b7a3d2c-0e1f-4a2b-9c8d-7e6f5a4b3c2d.local 53210 typ host generation 0 ufrag EsAw network-cost 999\r\n",
        )
        .unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.candidates.len(), 1);
        assert!(!f.end_of_candidates);
        let f = TrickleFragment::parse(
            "a=ice-ufrag:EsAw\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:\r\n",
        )
        .unwrap();
        assert!(f.candidates.is_empty());
        assert!(f.end_of_candidates);
    }

    #[test]
    fn too_many_candidates() {
        let frag =
            "a=candidate:1 1 udp 1 192.0.2.1 1 typ host\n".repeat(MAX_CANDIDATES_PER_PATCH + 1);
        assert_eq!(
            ApiError::from(TrickleFragment::parse(&frag).unwrap_err()).code,
            "too_many_candidates"
        );
    }

    #[test]
    fn never_panics_on_junk() {
        for junk in [
            "",
            "a=",
            "a=candidate",
            "a=ice-ufrag",
            "a=ice-ufrag:",
            "\u{0}\r\r\n",
            "a=candidate:\u{fffd}",
        ] {
            let _ = TrickleFragment::parse(junk);
            let _ = ice_ufrag(junk);
        }
    }
}
