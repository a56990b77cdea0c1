//! HTTP routes of captions:
//! - CART input compatible with Zoom's closed-caption API: `POST /cart/{session}?token&seq&lang`
//!   (body `text/plain`, UTF-8) and `GET /cart/{session}/seq?token` (the last `seq`, as text).
//! - Transcripts: `GET /api/sessions/{id}/transcript.{vtt,srt,txt,json}`.
//!
//! Live captions reach viewers on the session's event stream (`GET …/events`, SSE event
//! `caption`, see `floor::api`) and on the `captions` WebRTC data channel.

use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRef, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use captions::transcript::{self, Segment};
use serde::{Deserialize, Serialize};

use super::feed::CaptionFeed;
use super::speakers::Speakers;
use super::store::{self, CartOutcome, StoredSegment};
use crate::api::error::ApiError;
use crate::api::json::ApiJson;
use crate::api::path::ApiPath;
use crate::auth::{Grant, Permission};
use crate::floor::runtime::now_ms;
use crate::session::{SessionId, SessionRegistry};
use crate::state::AppState;
use crate::store::Store;

/// A caption is a line or two of text; stenography software sends one every second or so.
pub const CART_MAX_BYTES: usize = 16 * 1024;
/// Longest language tag accepted (BCP 47 allows 35 characters in practice).
const MAX_LANG_LEN: usize = 35;

#[derive(Clone)]
pub struct CaptionDeps {
    pub sessions: SessionRegistry,
    pub feed: CaptionFeed,
    pub store: Store,
    pub default_lang: String,
}

impl FromRef<AppState> for CaptionDeps {
    fn from_ref(state: &AppState) -> Self {
        CaptionDeps {
            sessions: state.sessions.clone(),
            feed: state.captions.clone(),
            store: state.store.clone(),
            default_lang: state.config.caption_lang.clone(),
        }
    }
}

impl CaptionDeps {
    /// Role first (403), then the session (404), as every route of this server does.
    fn open(&self, grant: &Grant, permission: Permission, id: &str) -> Result<SessionId, ApiError> {
        grant.require_role(permission)?;
        let id = SessionId::parse(id).map_err(|_| ApiError::session_not_found("with this id"))?;
        grant.require(permission, &id)?;
        if !self.sessions.contains(&id) {
            return Err(ApiError::session_not_found(&id));
        }
        Ok(id)
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/cart/{id}",
            post(cart_post).layer(DefaultBodyLimit::max(CART_MAX_BYTES)),
        )
        .route("/cart/{id}/seq", get(cart_seq))
        .route("/api/sessions/{id}/transcript.vtt", get(transcript_vtt))
        .route("/api/sessions/{id}/transcript.srt", get(transcript_srt))
        .route("/api/sessions/{id}/transcript.txt", get(transcript_txt))
        .route("/api/sessions/{id}/transcript.json", get(transcript_json))
}

#[derive(Debug, Deserialize)]
pub struct CartQuery {
    pub seq: Option<String>,
    pub lang: Option<String>,
    #[allow(dead_code)]
    pub token: Option<String>,
}

#[derive(Serialize)]
struct CartAck {
    seq: u64,
    /// False for a retry of a caption already received.
    stored: bool,
}

async fn cart_post(
    State(deps): State<CaptionDeps>,
    ApiPath(id): ApiPath<String>,
    q: Result<Query<CartQuery>, QueryRejection>,
    grant: Grant,
    body: Result<Bytes, BytesRejection>,
) -> Result<ApiJson<CartAck>, ApiError> {
    let received = Instant::now();
    let session = deps.open(&grant, Permission::PostCaptions, &id)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let seq = q
        .seq
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("missing_seq", "the seq query parameter is required"))?
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request("invalid_seq", "seq must be a whole number ≥ 0"))?;
    let lang = match q.lang {
        Some(l) => valid_lang(l)?,
        None => deps.default_lang.clone(),
    };
    let body = body?;
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::bad_request("invalid_utf8", format!("the body is not UTF-8: {e}"))
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::bad_request(
            "empty_caption",
            "the caption text is empty",
        ));
    }
    let outcome = deps
        .feed
        .cart(
            &session,
            seq,
            lang,
            text.to_owned(),
            received,
            now_ms() as i64,
        )
        .await?;
    Ok(ApiJson(CartAck {
        seq,
        stored: matches!(outcome, CartOutcome::Stored { .. }),
    }))
}

fn valid_lang(lang: String) -> Result<String, ApiError> {
    let ok = !lang.is_empty()
        && lang.len() <= MAX_LANG_LEN
        && lang
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && lang.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if ok {
        Ok(lang.replace('_', "-"))
    } else {
        Err(ApiError::bad_request(
            "invalid_lang",
            format!("lang {lang:?} is not a language tag such as en-US"),
        ))
    }
}

/// The last `seq` received, as plain text (what Zoom's API answers); 0 before the first.
async fn cart_seq(
    State(deps): State<CaptionDeps>,
    ApiPath(id): ApiPath<String>,
    grant: Grant,
) -> Result<Response, ApiError> {
    let session = deps.open(&grant, Permission::PostCaptions, &id)?;
    let key = session.as_str().to_owned();
    let last = deps
        .store
        .blocking(move |c| store::last_seq(c, &key))
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        last.unwrap_or(0).to_string(),
    )
        .into_response())
}

#[derive(Serialize)]
struct TranscriptJson<'a> {
    session: &'a str,
    /// Unix ms of time 0 in the other formats.
    origin_ms: i64,
    segments: Vec<JsonSegment<'a>>,
}

#[derive(Serialize)]
struct JsonSegment<'a> {
    #[serde(flatten)]
    stored: &'a StoredSegment,
    speaker: String,
    /// Relative to `origin_ms`, as in the WebVTT and SRT files.
    start_offset_ms: i64,
    end_offset_ms: i64,
}

async fn transcript_vtt(
    s: State<CaptionDeps>,
    p: ApiPath<String>,
    g: Grant,
) -> Result<Response, ApiError> {
    transcript_file(s, p, g, "vtt").await
}

async fn transcript_srt(
    s: State<CaptionDeps>,
    p: ApiPath<String>,
    g: Grant,
) -> Result<Response, ApiError> {
    transcript_file(s, p, g, "srt").await
}

async fn transcript_txt(
    s: State<CaptionDeps>,
    p: ApiPath<String>,
    g: Grant,
) -> Result<Response, ApiError> {
    transcript_file(s, p, g, "txt").await
}

async fn transcript_json(
    s: State<CaptionDeps>,
    p: ApiPath<String>,
    g: Grant,
) -> Result<Response, ApiError> {
    transcript_file(s, p, g, "json").await
}

/// The text formats hold what viewers saw; JSON also holds machine captions held back by a
/// human captioner (`shown: false`).
async fn transcript_file(
    State(deps): State<CaptionDeps>,
    ApiPath(id): ApiPath<String>,
    grant: Grant,
    format: &'static str,
) -> Result<Response, ApiError> {
    let session = deps.open(&grant, Permission::Subscribe, &id)?;
    let key = session.as_str().to_owned();
    let (segments, log) = deps
        .store
        .blocking(move |c| {
            let segments = store::all(c, &key)?;
            let events = crate::floor::store::all(c, &key)?;
            Ok((segments, crate::floor::log::entries(&events)))
        })
        .await?;
    let speakers = Speakers::from_log(&log, now_ms() as i64);
    let origin_ms = segments
        .iter()
        .filter(|s| s.shown)
        .map(|s| s.start_ms)
        .min()
        .unwrap_or(0);
    let name = format!("transcript-{session}.{format}");
    if format == "json" {
        let body = TranscriptJson {
            session: session.as_str(),
            origin_ms,
            segments: segments
                .iter()
                .map(|s| JsonSegment {
                    stored: s,
                    speaker: speakers.at(s.start_ms, s.end_ms),
                    start_offset_ms: s.start_ms - origin_ms,
                    end_offset_ms: s.end_ms - origin_ms,
                })
                .collect(),
        };
        return Ok(ApiJson(body).into_response());
    }
    let shown: Vec<Segment> = segments
        .iter()
        .filter(|s| s.shown)
        .map(|s| Segment {
            start_ms: s.start_ms - origin_ms,
            end_ms: s.end_ms - origin_ms,
            speaker: speakers.at(s.start_ms, s.end_ms),
            text: s.text.clone(),
            source: s.source,
            lang: s.lang.clone(),
        })
        .collect();
    let (body, content_type) = match format {
        "vtt" => (transcript::to_vtt(&shown), "text/vtt; charset=utf-8"),
        "srt" => (
            transcript::to_srt(&shown),
            "application/x-subrip; charset=utf-8",
        ),
        _ => (transcript::to_txt(&shown), "text/plain; charset=utf-8"),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}
