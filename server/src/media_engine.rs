//! The server's view of the media engine: the [`MediaEngine`] trait, implemented by the real
//! [`media::MediaHandle`], and [`Media`], the slot in the app state that may be empty.
//!
//! Why a trait: handler tests (and tests of WHIP/WHEP resource bookkeeping) run without UDP
//! sockets or a driver thread by plugging in a fake engine; `MediaHandle` cannot be built
//! outside its crate. Why an optional slot: when the engine fails to start (or is still being
//! written), the HTTP side stays up, `/readyz` says why it is not ready, and WHIP/WHEP answer
//! 503 instead of the whole node being unreachable.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use media::{
    Answer, Follow, MediaError, MediaEvent, MediaHandle, MediaStats, PeerId, Role, SessionId,
    Takeover,
};
use tokio::sync::broadcast;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long a request waits for the engine's reply before answering 503: a wedged driver
/// must not pile up HTTP requests.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the HTTP side asks of a media engine. Mirrors [`MediaHandle`].
pub trait MediaEngine: Send + Sync + 'static {
    fn publish(
        &self,
        session: SessionId,
        role: Role,
        offer: String,
        takeover: Takeover,
    ) -> BoxFuture<'_, Result<Answer, MediaError>>;
    fn subscribe(
        &self,
        session: SessionId,
        offer: String,
        follow: Follow,
    ) -> BoxFuture<'_, Result<Answer, MediaError>>;
    fn add_candidate(
        &self,
        peer: PeerId,
        candidate: String,
    ) -> BoxFuture<'_, Result<(), MediaError>>;
    fn close_peer(&self, peer: PeerId) -> BoxFuture<'_, Result<(), MediaError>>;
    fn close_session(&self, session: SessionId) -> BoxFuture<'_, Result<(), MediaError>>;
    /// Answers `Ok` when the engine's loop is alive and replying to commands.
    fn ping(&self) -> BoxFuture<'_, Result<(), MediaError>>;
    fn stats(&self) -> Arc<MediaStats>;
    fn events(&self) -> broadcast::Receiver<MediaEvent>;
    fn udp_addr(&self) -> SocketAddr;
    fn shutdown(&self);
    /// Sends a caption (JSON text) to the session's viewers that opened a `captions` data
    /// channel; false when it was dropped (engine busy). Engines without data channels
    /// (test fakes) send nothing.
    fn send_captions(&self, _session: SessionId, _text: Arc<str>) -> bool {
        false
    }
}

impl MediaEngine for MediaHandle {
    fn publish(
        &self,
        session: SessionId,
        role: Role,
        offer: String,
        takeover: Takeover,
    ) -> BoxFuture<'_, Result<Answer, MediaError>> {
        Box::pin(MediaHandle::publish(self, session, role, offer, takeover))
    }
    fn subscribe(
        &self,
        session: SessionId,
        offer: String,
        follow: Follow,
    ) -> BoxFuture<'_, Result<Answer, MediaError>> {
        Box::pin(MediaHandle::subscribe(self, session, offer, follow))
    }
    fn add_candidate(
        &self,
        peer: PeerId,
        candidate: String,
    ) -> BoxFuture<'_, Result<(), MediaError>> {
        Box::pin(MediaHandle::add_candidate(self, peer, candidate))
    }
    fn close_peer(&self, peer: PeerId) -> BoxFuture<'_, Result<(), MediaError>> {
        Box::pin(MediaHandle::close_peer(self, peer))
    }
    fn close_session(&self, session: SessionId) -> BoxFuture<'_, Result<(), MediaError>> {
        Box::pin(MediaHandle::close_session(self, session))
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), MediaError>> {
        // The handle has no ping command; closing a peer id that is never allocated is a
        // round trip through the driver's command loop with no effect. A live engine answers
        // PeerNotFound; a dead one Stopped.
        Box::pin(async move {
            match MediaHandle::close_peer(self, PeerId(u64::MAX)).await {
                Ok(()) | Err(MediaError::PeerNotFound(_)) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }
    fn stats(&self) -> Arc<MediaStats> {
        MediaHandle::stats(self).clone()
    }
    fn events(&self) -> broadcast::Receiver<MediaEvent> {
        MediaHandle::events(self)
    }
    fn udp_addr(&self) -> SocketAddr {
        MediaHandle::udp_addr(self)
    }
    fn send_captions(&self, session: SessionId, text: Arc<str>) -> bool {
        MediaHandle::send_captions(self, session, text)
    }
    fn shutdown(&self) {
        MediaHandle::shutdown(self)
    }
}

/// The engine, if it is running. Cheap to clone.
#[derive(Clone, Default)]
pub struct Media {
    engine: Option<Arc<dyn MediaEngine>>,
    /// Why there is no engine, for `/readyz` and the log.
    missing_reason: Option<Arc<str>>,
}

impl Media {
    pub fn running(engine: Arc<dyn MediaEngine>) -> Self {
        Media {
            engine: Some(engine),
            missing_reason: None,
        }
    }

    pub fn unavailable(reason: impl Into<Arc<str>>) -> Self {
        Media {
            engine: None,
            missing_reason: Some(reason.into()),
        }
    }

    pub fn engine(&self) -> Option<&Arc<dyn MediaEngine>> {
        self.engine.as_ref()
    }

    /// The engine, or [`MediaError::Stopped`] when there is none (a 503 for a request).
    pub fn get(&self) -> Result<&Arc<dyn MediaEngine>, MediaError> {
        self.engine.as_ref().ok_or(MediaError::Stopped)
    }

    /// `Ok` when the engine answers; otherwise why not, in words for `/readyz`.
    pub async fn check(&self) -> Result<(), String> {
        let Some(engine) = &self.engine else {
            return Err(format!(
                "not started: {}",
                self.missing_reason
                    .as_deref()
                    .unwrap_or("no engine configured")
            ));
        };
        match tokio::time::timeout(REPLY_TIMEOUT, engine.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("does not answer".into()),
        }
    }

    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.engine.as_ref().map(|e| e.udp_addr())
    }
}

/// The engine did not answer within [`REPLY_TIMEOUT`] (a 503 for a request, not a hung one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the media engine did not answer within {} s", REPLY_TIMEOUT.as_secs())]
pub struct ReplyTimeout;

/// Why an awaited engine reply brought no answer.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error(transparent)]
    Timeout(#[from] ReplyTimeout),
    #[error(transparent)]
    Engine(#[from] MediaError),
}

/// Awaits an engine reply, turning a wedged engine into [`ReplyTimeout`] instead of a hung
/// request.
pub async fn reply<T>(fut: impl Future<Output = Result<T, MediaError>>) -> Result<T, ReplyError> {
    Ok(reply_raw(fut).await??)
}

/// Like [`reply`], but leaves the engine's own error to the caller (only the timeout is
/// mapped), for callers that treat some engine errors as success.
pub async fn reply_raw<T>(
    fut: impl Future<Output = Result<T, MediaError>>,
) -> Result<Result<T, MediaError>, ReplyTimeout> {
    tokio::time::timeout(REPLY_TIMEOUT, fut)
        .await
        .map_err(|_| ReplyTimeout)
}
