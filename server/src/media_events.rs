//! What the server does with the media engine's events: drop WHIP/WHEP resources of closed
//! peers and feed the join-time histogram. One task per node; it never blocks the engine
//! (the channel is a bounded broadcast, a slow reader just misses events).

use std::sync::Arc;

use media::MediaEvent;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::media_engine::MediaEngine;
use crate::metrics::Metrics;
use crate::peer_resources::Resources;

/// Subscribes now (so no event between this call and the task's start is lost) and spawns
/// the task; it ends when the engine stops.
pub fn spawn(
    engine: &Arc<dyn MediaEngine>,
    resources: Resources,
    metrics: Metrics,
) -> JoinHandle<()> {
    let mut events = engine.events();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => handle(event, &resources, &metrics),
                Err(RecvError::Lagged(missed)) => tracing::warn!(
                    missed,
                    "missed media events; stale resources are dropped when next addressed"
                ),
                Err(RecvError::Closed) => break,
            }
        }
    })
}

fn handle(event: MediaEvent, resources: &Resources, metrics: &Metrics) {
    match event {
        MediaEvent::Connected {
            peer,
            session,
            role,
        } => {
            tracing::info!(%session, %peer, role = role.as_str(), "peer connected");
        }
        MediaEvent::FirstMedia {
            peer,
            session,
            join,
        } => {
            tracing::debug!(%session, %peer, ?join, "first media");
            metrics.observe_join(join);
        }
        MediaEvent::Closed {
            peer,
            session,
            role,
        } => {
            resources.remove_closed(peer);
            tracing::info!(%session, %peer, role = role.as_str(), "peer closed");
        }
    }
}
