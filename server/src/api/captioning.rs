//! HTTP routes of captions:
//! - CART input compatible with Zoom's closed-caption API: `POST /cart/{session}?token&seq&lang`
//!   (body `text/plain`, UTF-8; empty clears the line) and `GET /cart/{session}/seq?token&lang`
//!   (this captioner's last `seq` in that language, as text).
//! - Transcripts: `GET /api/sessions/{id}/transcript.{vtt,srt,txt,json}`.
//!
//! Live captions reach viewers on the session's event stream (`GET …/events`, SSE event
//! `caption`, see `api::floor`) and on the `captions` WebRTC data channel.

use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRef, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use captions::transcript::{Format, Segment, TextWriter};
use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::api::json::ApiJson;
use crate::api::session_access::{self as access, SessionAccess};
use crate::floor::runtime::now_ms;
use crate::language::check_language_tag;
use crate::live_captions::feed::{CaptionFeed, CartOutcome};
use crate::live_captions::speakers::Speakers;
use crate::live_captions::store::{self, StoredSegment};
use crate::state::AppState;
use crate::store::Store;

/// A caption is a line or two of text; stenography software sends one every second or so.
pub const CART_MAX_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub struct CaptionDeps {
    pub feed: CaptionFeed,
    pub store: Store,
    pub default_lang: String,
}

impl FromRef<AppState> for CaptionDeps {
    fn from_ref(state: &AppState) -> Self {
        CaptionDeps {
            feed: state.captions.clone(),
            store: state.store.clone(),
            default_lang: state.config.caption_lang.clone(),
        }
    }
}

impl CaptionDeps {
    /// The `lang` of a CART request, or the session's spoken language.
    fn lang(&self, lang: Option<String>) -> Result<String, ApiError> {
        match lang {
            Some(l) => valid_lang(l),
            None => Ok(self.default_lang.clone()),
        }
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
    /// False for a retry of the last caption (received already, not stored twice).
    stored: bool,
}

/// What a CART POST asks for, read from its query and body before any state is touched.
#[derive(Debug, PartialEq, Eq)]
pub struct CartPost {
    pub seq: u64,
    /// A language tag (`_` written as `-`), or the session's language when none was given.
    pub lang: String,
    /// Trimmed; empty clears the viewers' caption line.
    pub text: String,
}

impl CartPost {
    /// Checks in the order a client fixes them: `seq`, then `lang`, then the body.
    pub fn parse(
        q: CartQuery,
        body: Result<Bytes, BytesRejection>,
        default_lang: &str,
    ) -> Result<Self, ApiError> {
        let seq = q
            .seq
            .as_deref()
            .ok_or_else(|| {
                ApiError::bad_request("missing_seq", "the seq query parameter is required")
            })?
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("invalid_seq", "seq must be a whole number ≥ 0"))?;
        let lang = match q.lang {
            Some(l) => valid_lang(l)?,
            None => default_lang.to_owned(),
        };
        let body = body?;
        let text = std::str::from_utf8(&body).map_err(|e| {
            ApiError::bad_request("invalid_utf8", format!("the body is not UTF-8: {e}"))
        })?;
        // An empty (or blank) caption clears the viewers' line, as CART clients mean it.
        Ok(CartPost {
            seq,
            lang,
            text: text.trim().to_owned(),
        })
    }
}

/// Sequencing is per captioner (the token's `sub`) and language; see `captions::cart`.
async fn cart_post(
    State(deps): State<CaptionDeps>,
    q: Result<Query<CartQuery>, QueryRejection>,
    SessionAccess { grant, handle, .. }: SessionAccess<access::PostCaptions>,
    body: Result<Bytes, BytesRejection>,
) -> Result<ApiJson<CartAck>, ApiError> {
    let received = Instant::now();
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let post = CartPost::parse(q, body, &deps.default_lang)?;
    let outcome = deps
        .feed
        .cart(
            &handle.captions,
            &grant.claims.sub,
            post.seq,
            post.lang,
            post.text,
            received,
            now_ms() as i64,
        )
        .await?;
    Ok(ApiJson(CartAck {
        seq: post.seq,
        stored: outcome == CartOutcome::Shown,
    }))
}

/// A CART `lang`: `en_US` is read as `en-US` (captioning software writes it so), then the
/// one language-tag rule applies.
fn valid_lang(lang: String) -> Result<String, ApiError> {
    let tag = lang.replace('_', "-");
    match check_language_tag(&tag) {
        Ok(()) => Ok(tag),
        Err(_) => Err(ApiError::bad_request(
            "invalid_lang",
            format!("lang {lang:?} is not a language tag such as en-US"),
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct SeqQuery {
    pub lang: Option<String>,
    #[allow(dead_code)]
    pub token: Option<String>,
}

/// The last `seq` of this captioner in `lang` (default: the session's language), as plain
/// text (what Zoom's API answers); 0 before the first.
async fn cart_seq(
    State(deps): State<CaptionDeps>,
    q: Result<Query<SeqQuery>, QueryRejection>,
    SessionAccess { grant, handle, .. }: SessionAccess<access::PostCaptions>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let lang = deps.lang(q.lang)?;
    let last = deps
        .feed
        .cart_last_seq(&handle.captions, &grant.claims.sub, &lang)
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        last.to_string(),
    )
        .into_response())
}

/// A segment of `transcript.json`, whose body is `{"session", "origin_ms" (Unix ms of time
/// 0 in the other formats), "segments": [...]}`.
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
    a: SessionAccess<access::Subscribe>,
) -> Result<Response, ApiError> {
    transcript_file(s, a, "vtt").await
}

async fn transcript_srt(
    s: State<CaptionDeps>,
    a: SessionAccess<access::Subscribe>,
) -> Result<Response, ApiError> {
    transcript_file(s, a, "srt").await
}

async fn transcript_txt(
    s: State<CaptionDeps>,
    a: SessionAccess<access::Subscribe>,
) -> Result<Response, ApiError> {
    transcript_file(s, a, "txt").await
}

async fn transcript_json(
    s: State<CaptionDeps>,
    a: SessionAccess<access::Subscribe>,
) -> Result<Response, ApiError> {
    transcript_file(s, a, "json").await
}

/// Segments read per page of a transcript export: a reader connection is held for one page
/// at a time, never for a whole download, so slow clients cannot pin the read pool and
/// memory stays bounded however long the session was.
const TRANSCRIPT_PAGE: usize = 1000;

/// The text formats hold what viewers saw; JSON also holds machine captions held back by a
/// human captioner (`shown: false`). The body is streamed page by page.
async fn transcript_file(
    State(deps): State<CaptionDeps>,
    SessionAccess { id: session, .. }: SessionAccess<access::Subscribe>,
    format: &'static str,
) -> Result<Response, ApiError> {
    let key = session.as_str().to_owned();
    let (origin_ms, log) = deps
        .store
        .read(move |c| {
            let origin = store::shown_origin(c, &key)?;
            let events = crate::floor::store::all(c, &key)?;
            Ok((origin.unwrap_or(0), crate::floor::log::entries(&events)))
        })
        .await?;
    let speakers = Speakers::from_log(&log, now_ms() as i64);
    let text = match format {
        "vtt" => Some(Format::Vtt),
        "srt" => Some(Format::Srt),
        "txt" => Some(Format::Txt),
        _ => None,
    };
    let export = Export {
        store: deps.store.clone(),
        session: session.as_str().to_owned(),
        after: None,
        stage: Stage::Head,
        render: Some(Render {
            speakers,
            origin_ms,
            text: text.map(TextWriter::new),
            first: true,
        }),
    };
    let body = Body::from_stream(futures_util::stream::unfold(export, |mut e| async move {
        let chunk = e.next_chunk().await?;
        Some((chunk, e))
    }));
    let content_type = match text {
        Some(Format::Vtt) => "text/vtt; charset=utf-8",
        Some(Format::Srt) => "application/x-subrip; charset=utf-8",
        Some(Format::Txt) => "text/plain; charset=utf-8",
        None => "application/json",
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if text.is_some() {
        let disposition = format!("inline; filename=\"transcript-{session}.{format}\"");
        if let Ok(v) = header::HeaderValue::from_str(&disposition) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(response)
}

enum Stage {
    Head,
    Pages,
    Tail,
    Done,
}

/// One transcript download in progress.
struct Export {
    store: Store,
    session: String,
    /// The (start_ms, id) of the last segment sent.
    after: Option<(i64, i64)>,
    stage: Stage,
    /// Moves into the blocking task that reads and renders a page, and back (None meanwhile).
    render: Option<Render>,
}

/// Turns stored segments into the bytes of the file. Pages are rendered on the blocking pool
/// beside their query, so ten exports of a long transcript keep the async workers free for
/// every other request.
struct Render {
    speakers: Speakers,
    origin_ms: i64,
    /// None: JSON.
    text: Option<TextWriter>,
    /// JSON: no segment sent yet (no comma before the next).
    first: bool,
}

impl Export {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        let render = self.render.as_mut()?;
        match self.stage {
            Stage::Head => {
                self.stage = Stage::Pages;
                let head = match &render.text {
                    Some(w) => w.start(),
                    None => format!(
                        "{{\"session\":{},\"origin_ms\":{},\"segments\":[",
                        serde_json::Value::from(self.session.as_str()),
                        render.origin_ms
                    ),
                };
                Some(Ok(Bytes::from(head)))
            }
            Stage::Pages => {
                let (session, after) = (self.session.clone(), self.after);
                let mut render = self.render.take()?;
                let page = self
                    .store
                    .read(move |c| {
                        let shown_only = render.text.is_some();
                        let page = store::page(c, &session, shown_only, after, TRANSCRIPT_PAGE);
                        let page = match page {
                            Ok(page) => page,
                            Err(e) => return Ok(Err(e)),
                        };
                        let chunk = render.page(&page);
                        let last = page.last().map(|s| (s.start_ms, s.id));
                        Ok(Ok((render, chunk, last, page.len())))
                    })
                    .await;
                let (render, chunk, last, len) = match page {
                    Ok(Ok(done)) => done,
                    Ok(Err(e)) | Err(e) => {
                        // The status line has gone out: the client sees a cut-short body.
                        tracing::warn!(session = %self.session, error = %e, "transcript export failed");
                        self.stage = Stage::Done;
                        return Some(Err(std::io::Error::other(e.to_string())));
                    }
                };
                self.render = Some(render);
                if len < TRANSCRIPT_PAGE {
                    self.stage = Stage::Tail;
                }
                if last.is_some() {
                    self.after = last;
                }
                Some(Ok(Bytes::from(chunk)))
            }
            Stage::Tail => {
                self.stage = Stage::Done;
                let mut tail = String::new();
                match &render.text {
                    Some(w) => w.finish(&mut tail),
                    None => tail.push_str("]}"),
                }
                Some(Ok(Bytes::from(tail)))
            }
            Stage::Done => None,
        }
    }
}

impl Render {
    fn page(&mut self, page: &[StoredSegment]) -> String {
        let mut out = String::new();
        let origin_ms = self.origin_ms;
        for s in page {
            let speaker = self.speakers.at(s.start_ms, s.end_ms);
            match &mut self.text {
                Some(w) => w.push(
                    &Segment {
                        start_ms: s.start_ms - origin_ms,
                        end_ms: s.end_ms - origin_ms,
                        speaker,
                        text: s.text.clone(),
                        source: s.source,
                        lang: s.lang.clone(),
                    },
                    &mut out,
                ),
                None => {
                    let row = JsonSegment {
                        stored: s,
                        speaker,
                        start_offset_ms: s.start_ms - origin_ms,
                        end_offset_ms: s.end_ms - origin_ms,
                    };
                    if let Ok(json) = serde_json::to_string(&row) {
                        if !self.first {
                            out.push(',');
                        }
                        self.first = false;
                        out.push_str(&json);
                    }
                }
            }
        }
        out
    }
}
