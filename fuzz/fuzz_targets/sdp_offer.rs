//! A WHIP/WHEP offer body as the media engine reads it: `media::sdp_check::check_offer`,
//! then str0m's `SdpOffer::from_sdp_string`, on arbitrary text. Neither may panic (both run
//! on the media thread); an offer `check_offer` accepts has an m-line and an active audio or
//! video section, and one str0m parses survives its own serialisation.

#![no_main]

use libfuzzer_sys::fuzz_target;
use media::sdp_check::check_offer;
use str0m::change::SdpOffer;

fuzz_target!(|sdp: &str| {
    if let Ok(found) = check_offer(sdp) {
        assert!(found.audio || found.video);
        assert!(sdp.trim_start().starts_with("v=0"));
        assert!(sdp.lines().any(|l| l.starts_with("m=")));
    }
    if let Ok(offer) = SdpOffer::from_sdp_string(sdp) {
        let text = offer.to_sdp_string();
        let _ = SdpOffer::from_sdp_string(&text);
    }
});
