//! The browser pages and their assets, embedded in the binary at build time so a node is one
//! file to deploy. The list is fixed: a URL that is not in it is a 404, never a file-system
//! lookup.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::error::ApiError;
use crate::api::path::ApiPath;
use crate::api::session_access::SessionIdPath;
use crate::state::AppState;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const PUBLISH_PAGE: &str = include_str!("../assets/publish.html");
const WATCH_PAGE: &str = include_str!("../assets/watch.html");
const HOME_PAGE: &str = include_str!("../assets/index.html");
const OPS_PAGE: &str = include_str!("../assets/ops.html");
const MODERATE_PAGE: &str = include_str!("../assets/moderate.html");
const ROOM_PAGE: &str = include_str!("../assets/room.html");

/// Everything served under `/assets/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "whip.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/whip.js"),
    },
    Asset {
        name: "whep.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/whep.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/api.js"),
    },
    Asset {
        name: "speak.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/speak.js"),
    },
    Asset {
        name: "page.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/page.css"),
    },
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home_page))
        .route("/ops", get(ops_page))
        .route("/publish/{id}", get(publish_page))
        .route("/watch/{id}", get(watch_page))
        .route("/moderate/{id}", get(moderate_page))
        .route("/room/{id}", get(room_page))
        .route("/assets/{file}", get(asset))
}

/// Pages are served for any well-formed session id, without a token check: the page itself
/// reports an unknown session when its first request gets a 404, with the token it was given.
async fn publish_page(_: SessionIdPath) -> Response {
    html_response(PUBLISH_PAGE)
}

async fn watch_page(_: SessionIdPath) -> Response {
    html_response(WATCH_PAGE)
}

async fn home_page() -> Response {
    html_response(HOME_PAGE)
}

async fn ops_page() -> Response {
    html_response(OPS_PAGE)
}

async fn moderate_page(_: SessionIdPath) -> Response {
    html_response(MODERATE_PAGE)
}

async fn room_page(_: SessionIdPath) -> Response {
    html_response(ROOM_PAGE)
}

fn html_response(html: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let headers = response.headers_mut();
    // The page URL carries `?token=`: never leak it to other sites through Referer.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Camera and microphone only for this origin, for the publish page.
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=(self)"),
    );
    response
}

async fn asset(ApiPath(file): ApiPath<String>) -> Result<Response, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == file)
        .ok_or_else(|| ApiError::not_found("not_found", "there is no such asset"))?;
    Ok((
        [
            (header::CONTENT_TYPE, asset.content_type),
            // Names are not content-hashed, so browsers must revalidate after an upgrade.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        asset.body,
    )
        .into_response())
}
