//! The middleware every route gets, in one place: request tracing (route template, never
//! the raw URI, which may carry `?token=`), per-route HTTP metrics, logging of hidden 5xx
//! causes, the body limit, and JSON answers for unknown routes and methods.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower_http::trace::TraceLayer;

use crate::api::error::{ApiError, ErrorDetail};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::AppState;

/// Adds fallbacks and layers to a router whose routes are all registered (axum applies
/// `layer` only to routes that exist when it is called).
pub fn wrap(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost: extractors stop reading a chunked body past the limit.
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            (state.config.clone(), state.metrics.clone()),
            read_body_first,
        ))
        .layer(middleware::from_fn_with_state(
            state.config.clone(),
            limit_declared_body,
        ))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            observe,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .unwrap_or("unmatched");
            tracing::info_span!("http", method = %req.method(), route)
        }))
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "there is nothing at this URL")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Refuses a body whose declared length is over the limit before anything reads it (and
/// before authentication, so a large unauthenticated upload costs nothing).
async fn limit_declared_body(
    State(config): State<Arc<Config>>,
    req: Request,
    next: Next,
) -> Response {
    // The header, or what the body itself knows (hyper's incoming body reports its
    // Content-Length; an in-process body its exact size).
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| Some(req.body().size_hint().lower()));
    match declared {
        Some(len) if len > config.max_body_bytes as u64 => {
            drain_briefly(req.into_body()).await;
            // What was not drained is still coming: tell the client not to reuse this
            // connection, which the server closes after answering.
            let mut response = ApiError::payload_too_large(config.max_body_bytes).into_response();
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            response
        }
        _ => next.run(req).await,
    }
}

/// How much of a refused oversized body is read and dropped, and for how long, so that a
/// client which sent a moderately large body still gets to read the 413.
const DRAIN_MAX_BYTES: usize = 1024 * 1024;
const DRAIN_DEADLINE: Duration = Duration::from_secs(1);

/// Reads the whole body (it is under the limit here) before any handler or extractor can
/// answer. hyper closes a connection whose request body was left unread, and closing a
/// socket with unread bytes in it sends a reset that destroys the response in flight: a
/// client would see "connection reset" instead of its 401 or 415 with a JSON reason.
///
/// The body must arrive within `http_body_timeout_seconds`: a client trickling a body
/// byte by byte would otherwise hold its buffer (up to `max_body_bytes`) for ever.
async fn read_body_first(
    State((config, metrics)): State<(Arc<Config>, Metrics)>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let deadline = Duration::from_secs(config.http_body_timeout_seconds.into());
    let read = Limited::new(body, config.max_body_bytes).collect();
    let Ok(read) = tokio::time::timeout(deadline, read).await else {
        metrics.limit_hit(crate::metrics::Limit::HttpBodyTimeout);
        let mut response = ApiError::request_timeout(deadline).into_response();
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    };
    match read {
        Ok(collected) => {
            next.run(Request::from_parts(parts, Body::from(collected.to_bytes())))
                .await
        }
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            ApiError::payload_too_large(config.max_body_bytes).into_response()
        }
        Err(e) => ApiError::bad_request(
            "invalid_body",
            format!("the request body could not be read: {e}"),
        )
        .into_response(),
    }
}

/// Reads and drops up to `DRAIN_MAX_BYTES` of a body nobody will use, giving up at
/// `DRAIN_DEADLINE`; a body larger than that still gets its connection closed under it.
async fn drain_briefly(body: Body) {
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_DEADLINE, async {
        while read < DRAIN_MAX_BYTES {
            match stream.next().await {
                Some(Ok(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
    })
    .await;
}

/// Counts the response under its route template and logs what a 5xx hid from the client.
async fn observe(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status();
    metrics.record_http(route.as_deref().unwrap_or("unmatched"), status.as_u16());
    if status.is_server_error() {
        match response.extensions().get::<ErrorDetail>() {
            Some(ErrorDetail(detail)) => tracing::error!(%status, %detail, "request failed"),
            None => tracing::warn!(%status, "request failed"),
        }
    }
    response
}
