//! Graceful drain: a node being replaced (a rolling upgrade, a machine going down) stops
//! taking new viewers and publishers but lets the current ones finish — a session in progress
//! is not cut off. On the first SIGTERM `/readyz` turns 503 (load balancers stop sending
//! people here), new WHIP/WHEP requests get 503 with `Retry-After`, and the node stops when
//! its last peer leaves or the drain timeout passes. A second SIGTERM stops it at once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::metrics::Metrics;
use crate::peer_resources::Resources;

/// How often the drain looks whether the last peer has left.
const POLL: Duration = Duration::from_millis(250);

/// Whether this node is draining; cheap to clone, shared by every handler.
#[derive(Clone, Default)]
pub struct Drain {
    draining: Arc<AtomicBool>,
}

impl Drain {
    pub fn start(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Why the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// Every viewer and publisher had left.
    Empty,
    Timeout,
    /// Asked again (a second SIGTERM).
    Forced,
}

/// Waits for `first` (the first SIGTERM), drains, and returns when the node may stop: when
/// no WHIP/WHEP resource is left, after `timeout`, or when `again` resolves.
pub async fn run(
    drain: Drain,
    resources: Resources,
    metrics: Metrics,
    timeout: Duration,
    first: impl Future<Output = ()>,
    again: impl Future<Output = ()>,
) -> DrainEnd {
    first.await;
    drain.start();
    metrics.set_draining(true);
    tracing::info!(
        peers = resources.len(),
        timeout_s = timeout.as_secs(),
        "draining: no new viewers or publishers; stopping when the last one leaves \
         (send SIGTERM again to stop now)"
    );
    let deadline = tokio::time::Instant::now() + timeout;
    tokio::pin!(again);
    let end = loop {
        if resources.is_empty() {
            break DrainEnd::Empty;
        }
        tokio::select! {
            () = &mut again => break DrainEnd::Forced,
            () = tokio::time::sleep_until(deadline) => break DrainEnd::Timeout,
            () = tokio::time::sleep(POLL) => {}
        }
    };
    match end {
        DrainEnd::Empty => tracing::info!("drained: the last peer left"),
        DrainEnd::Timeout => tracing::warn!(
            peers = resources.len(),
            "drain timeout: stopping with peers still connected"
        ),
        DrainEnd::Forced => tracing::warn!(
            peers = resources.len(),
            "stopping now (asked again during the drain)"
        ),
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer_resources::{Resource, ResourceKind};
    use crate::session::SessionId;
    use media::PeerId;

    fn viewer() -> Resource {
        Resource {
            session: SessionId::parse("s1").unwrap(),
            kind: ResourceKind::Whep,
            owner: "v".into(),
            remote_ufrag: None,
            hub: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ends_when_the_last_peer_leaves() {
        let (drain, resources) = (Drain::default(), Resources::default());
        resources.insert(PeerId(1), viewer());
        let metrics = Metrics::new().unwrap();
        let leaver = resources.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            leaver.remove(PeerId(1));
        });
        let started = tokio::time::Instant::now();
        let end = run(
            drain.clone(),
            resources,
            metrics,
            Duration::from_secs(600),
            async {},
            std::future::pending(),
        )
        .await;
        assert_eq!(end, DrainEnd::Empty);
        assert!(drain.is_draining());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_or_a_second_signal_ends_it_with_peers_left() {
        let resources = Resources::default();
        resources.insert(PeerId(1), viewer());
        let metrics = Metrics::new().unwrap();
        let end = run(
            Drain::default(),
            resources.clone(),
            metrics.clone(),
            Duration::from_secs(5),
            async {},
            std::future::pending(),
        )
        .await;
        assert_eq!(end, DrainEnd::Timeout);
        let end = run(
            Drain::default(),
            resources,
            metrics,
            Duration::from_secs(600),
            async {},
            tokio::time::sleep(Duration::from_secs(2)),
        )
        .await;
        assert_eq!(end, DrainEnd::Forced);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_happens_before_the_first_signal() {
        let drain = Drain::default();
        let run = run(
            drain.clone(),
            Resources::default(),
            Metrics::new().unwrap(),
            Duration::from_secs(1),
            std::future::pending(),
            std::future::pending(),
        );
        let r = tokio::time::timeout(Duration::from_secs(3600), run).await;
        assert!(r.is_err(), "the drain waited for its signal");
        assert!(!drain.is_draining());
    }
}
