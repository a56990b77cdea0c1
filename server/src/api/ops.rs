//! Operations endpoints: `/healthz` (the process answers), `/readyz` (it can serve: media
//! engine answers, database takes a write), `/metrics` (Prometheus text). Open by design; bind the HTTP
//! port privately or filter these paths at the proxy in production.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::error::ApiError;
use crate::drain::Drain;
use crate::media_engine::Media;
use crate::metrics::{Metrics, ViewerSample};
use crate::peer_resources::Resources;
use crate::session_registry::SessionRegistry;
use crate::state::AppState;
use crate::store::Store;

const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(
    State(media): State<Media>,
    State(store): State<Store>,
    State(drain): State<Drain>,
) -> Result<Response, ApiError> {
    if drain.is_draining() {
        return Err(ApiError::unavailable(
            "draining",
            "this node is shutting down: it keeps its current viewers and takes no new ones",
            Duration::from_secs(10),
        ));
    }
    let (media, database) = tokio::join!(media.check(), async {
        match tokio::time::timeout(PROBE_TIMEOUT, store.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("does not answer".to_owned()),
        }
    });
    if media.is_ok() && database.is_ok() {
        return Ok(
            axum::Json(json!({"status": "ready", "media": "ok", "database": "ok"})).into_response(),
        );
    }
    let describe = |r: Result<(), String>| r.err().unwrap_or_else(|| "ok".to_owned());
    Err(ApiError::unavailable(
        "not_ready",
        format!(
            "media engine: {}; database: {}",
            describe(media),
            describe(database)
        ),
        Duration::from_secs(5),
    ))
}

async fn metrics(
    State(metrics): State<Metrics>,
    State(sessions): State<SessionRegistry>,
    State(media): State<Media>,
    State(resources): State<Resources>,
) -> Result<Response, ApiError> {
    let stats = media.engine().map(|e| e.stats());
    let links = stats
        .as_deref()
        .map(|s| s.viewer_links())
        .unwrap_or_default();
    let viewers = resources.viewers();
    let samples: Vec<ViewerSample<'_>> = viewers
        .iter()
        .map(|(peer, session, hub)| ViewerSample {
            session: session.as_str(),
            hub: hub.as_deref(),
            link: links.get(peer).copied(),
        })
        .collect();
    let text = metrics
        .render(&sessions.ids(), stats.as_deref(), &samples)
        .map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}
