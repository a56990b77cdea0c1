use crate::ids::{PeerId, SessionId};

/// Why the SFU refused or failed a request. Callers map these to protocol errors (HTTP 4xx/5xx).
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the SDP offer could not be parsed: {0}")]
    InvalidSdp(String),
    #[error("the SDP offer has no media with a codec the SFU forwards (Opus, VP8, H.264)")]
    NoSupportedCodec,
    #[error("session {0} already has a floor publisher")]
    PublisherExists(SessionId),
    #[error("no peer {0}")]
    PeerNotFound(PeerId),
    #[error("invalid ICE candidate: {0}")]
    InvalidCandidate(String),
    #[error("the media node is at its peer limit ({0} peers)")]
    TooManyPeers(usize),
    #[error("session {0} is at its peer limit ({1} peers)")]
    SessionFull(SessionId, usize),
    #[error("this peer already has {0} remote ICE candidates, the most one peer may send")]
    TooManyCandidates(usize),
    #[error("the media engine is overloaded; retry shortly")]
    Overloaded,
    #[error("the media engine has stopped")]
    Stopped,
    #[error("could not bind the media socket {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}
