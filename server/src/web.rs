//! The browser pages and their assets, embedded in the binary at build time so a node is one
//! file to deploy. The list is fixed: a URL that is not in it is a 404, never a file-system
//! lookup.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::error::ApiError;
use crate::api::path::ApiPath;
use crate::session::SessionId;
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

async fn publish_page(ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    page(&id, PUBLISH_PAGE)
}

async fn watch_page(ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    page(&id, WATCH_PAGE)
}

async fn home_page() -> Response {
    html_response(HOME_PAGE)
}

async fn ops_page() -> Response {
    html_response(OPS_PAGE)
}

async fn moderate_page(ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    page(&id, MODERATE_PAGE)
}

async fn room_page(ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    page(&id, ROOM_PAGE)
}

/// Serves a page for any well-formed session id: the page itself reports an unknown session
/// when its WHIP/WHEP request gets a 404, with the token it was given.
fn page(id: &str, html: &'static str) -> Result<Response, ApiError> {
    SessionId::parse(id).map_err(|_| ApiError::session_not_found("with this id"))?;
    Ok(html_response(html))
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
