//! The ICE attributes the server reads from SDP before the media engine sees it: an offer's
//! `a=ice-ufrag`, and trickle ICE fragments (RFC 8840) of WHIP/WHEP PATCH bodies. Pure
//! functions of untrusted text that never panic; their HTTP answers are `api::error`'s.

/// Candidates accepted in one PATCH; a browser sends a handful per gathering round.
pub const MAX_CANDIDATES_PER_PATCH: usize = 64;

fn attribute<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.strip_prefix("a=")?
        .strip_prefix(name)?
        .strip_prefix(':')
        .map(str::trim)
}

fn lines(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.lines().map(|l| l.trim_end_matches('\r').trim())
}

/// The first `a=ice-ufrag:` of an offer (session or media level; with BUNDLE they agree).
pub fn ice_ufrag(sdp: &str) -> Option<String> {
    lines(sdp)
        .find_map(|l| attribute(l, "ice-ufrag"))
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
}

/// What a trickle ICE PATCH body carries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TrickleFragment {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    /// Whole `a=candidate:…` lines.
    pub candidates: Vec<String>,
    pub end_of_candidates: bool,
}

/// Why a trickle fragment is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrickleError {
    #[error("send at most {MAX_CANDIDATES_PER_PATCH} candidates per PATCH")]
    TooManyCandidates,
}

impl TrickleFragment {
    pub fn parse(frag: &str) -> Result<Self, TrickleError> {
        let mut out = TrickleFragment::default();
        for line in lines(frag) {
            if let Some(u) = attribute(line, "ice-ufrag") {
                out.ufrag.get_or_insert_with(|| u.to_owned());
            } else if let Some(p) = attribute(line, "ice-pwd") {
                out.pwd.get_or_insert_with(|| p.to_owned());
            } else if let Some(c) = attribute(line, "candidate") {
                // A browser's last `icecandidate` event of an m-line carries an empty
                // candidate; clients that forward it verbatim mean end-of-candidates.
                if c.is_empty() {
                    out.end_of_candidates = true;
                    continue;
                }
                if out.candidates.len() == MAX_CANDIDATES_PER_PATCH {
                    return Err(TrickleError::TooManyCandidates);
                }
                out.candidates.push(line.to_owned());
            } else if line == "a=end-of-candidates" {
                out.end_of_candidates = true;
            }
            // m=, a=mid:, a=group:, a=ice-options: only frame the candidates; with BUNDLE
            // every candidate belongs to the one transport.
        }
        Ok(out)
    }

    /// New ICE credentials (different from the offer's) mean an ICE restart.
    pub fn is_ice_restart(&self, offer_ufrag: Option<&str>) -> bool {
        match (&self.ufrag, offer_ufrag) {
            (Some(new), Some(old)) => new != old,
            // Credentials in a PATCH for a peer whose offer had none: cannot be a continuation.
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}
