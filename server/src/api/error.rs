//! [`ApiError`]: the one error type handlers return, and the only place in the server that
//! chooses an HTTP status. Every domain error (`AuthError`, `SessionError`, `MediaError`,
//! extractor rejections) converts into it here, and it renders as
//! `{"error": "<code>", "message": "<what is wrong and what to do>"}`.
//!
//! Details of 5xx errors are not sent to the client: they ride in a response extension
//! ([`ErrorDetail`]) and the logging middleware in `layers` writes them to the log.

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use media::MediaError;
use serde::Serialize;

use crate::auth::AuthError;
use crate::floor::model::FloorError;
use crate::floor::runtime::RuntimeError;
use crate::ice_sdp::TrickleError;
use crate::live_captions::feed::CartError;
use crate::media_engine::{ReplyError, ReplyTimeout};
use crate::session::{InvalidSessionId, SessionError};
use crate::signal_limits::LimitRefusal;
use crate::store::StoreError;
use captions::cart::SeqError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// Sent as `Retry-After` (503, 429).
    pub retry_after: Option<Duration>,
    /// Logged, never sent (5xx only).
    pub detail: Option<String>,
    /// More fields for the JSON body beside `error` and `message` (e.g. CART's `last_seq`).
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The hidden cause of a 5xx response, for the logging middleware.
#[derive(Clone, Debug)]
pub struct ErrorDetail(pub String);

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            detail: None,
            extra: None,
        }
    }

    /// A 500 whose cause is logged but not shown.
    pub fn internal(detail: impl ToString) -> Self {
        ApiError {
            detail: Some(detail.to_string()),
            ..ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the server failed; the cause is in its log",
            )
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unsupported_media_type(expected: &str) -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the body with Content-Type: {expected}"),
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// 503: the node cannot serve this now; `retry` says when to try again.
    pub fn unavailable(
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
        retry: Duration,
    ) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message).retry_after(retry)
    }

    /// 403 for a token that may do this kind of thing, but not this one (a role's lack of a
    /// permission is [`AuthError`]'s).
    pub fn forbidden(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 405: the URL exists, the method does not.
    pub fn method_not_allowed() -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this URL does not accept this method",
        )
    }

    /// 412: an `If-Match` that names another version of the resource.
    pub fn precondition_failed(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            message,
        )
    }

    /// 422: a well-formed request this server does not support.
    pub fn unprocessable(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 429: a per-client limit; `retry` says when the client may try again.
    pub fn too_many_requests(
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
        retry: Duration,
    ) -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message).retry_after(retry)
    }

    fn retry_after(self, retry: Duration) -> Self {
        ApiError {
            retry_after: Some(retry),
            ..self
        }
    }

    /// 408: the client did not send its request in time.
    pub fn request_timeout(limit: Duration) -> Self {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} s; send it in one go",
                limit.as_secs()
            ),
        )
    }

    /// The one answer for a session id that is unknown or malformed. The id is quoted,
    /// escaped and cut short, so whatever a client put in the URL is safe in the body and
    /// in logs.
    pub fn session_not_found(raw_id: &str) -> Self {
        const SHOWN_CHARS: usize = 64;
        let mut shown: String = raw_id
            .chars()
            .take(SHOWN_CHARS)
            .flat_map(char::escape_default)
            .collect();
        if raw_id.chars().nth(SHOWN_CHARS).is_some() {
            shown.push('…');
        }
        ApiError::not_found(
            "session_not_found",
            format!(
                "there is no session \"{shown}\" (an id is 1 to 64 letters, digits, '_' or \
                 '-'); check the link, or create the session first"
            ),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.extra {
            None => serde_json::to_vec(&Body {
                error: self.code,
                message: &self.message,
            }),
            Some(extra) => {
                let mut fields = extra.clone();
                fields.insert("error".into(), self.code.into());
                fields.insert("message".into(), self.message.as_ref().into());
                serde_json::to_vec(&fields)
            }
        }
        .unwrap_or_default();
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(retry) = self.retry_after {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry.as_secs().max(1)),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: tell the client which scheme to use.
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(detail) = self.detail {
            response.extensions_mut().insert(ErrorDetail(detail));
        }
        response
    }
}

/// So `auth::Grant` can reject with its own error and still answer as [`ApiError`].
impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            AuthError::Missing => ApiError::new(StatusCode::UNAUTHORIZED, "missing_token", message),
            AuthError::Invalid(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", message)
            }
            AuthError::Expired => ApiError::new(StatusCode::UNAUTHORIZED, "expired_token", message),
            AuthError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            AuthError::Mint(_) => ApiError::internal(message),
            AuthError::NotYetValid { .. } => {
                ApiError::new(StatusCode::UNAUTHORIZED, "token_not_yet_valid", message)
            }
            AuthError::LifetimeTooLong { .. } => {
                ApiError::new(StatusCode::UNAUTHORIZED, "token_lifetime_too_long", message)
            }
            AuthError::WrongIssuer { .. } => {
                ApiError::new(StatusCode::UNAUTHORIZED, "wrong_issuer", message)
            }
            AuthError::WrongAudience { .. } => {
                ApiError::new(StatusCode::UNAUTHORIZED, "wrong_audience", message)
            }
        }
    }
}

impl From<crate::auth::TooManyStreams> for ApiError {
    fn from(e: crate::auth::TooManyStreams) -> Self {
        ApiError {
            // Slots free as soon as a stream closes; a few seconds is enough.
            retry_after: Some(Duration::from_secs(5)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_event_streams",
                e.to_string(),
            )
        }
    }
}

impl From<LimitRefusal> for ApiError {
    fn from(e: LimitRefusal) -> Self {
        ApiError::too_many_requests(e.code, e.to_string(), e.retry_after)
    }
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        let message = e.to_string();
        match e {
            MediaError::InvalidSdp(_) => ApiError::bad_request("invalid_sdp", message),
            MediaError::NoSupportedCodec => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_supported_codec",
                message,
            ),
            MediaError::PublisherExists(_) => ApiError::new(
                StatusCode::CONFLICT,
                "publisher_exists",
                format!(
                    "{message}; stop it first (DELETE its resource), or run the server with \
                     allow_takeover so a new publisher replaces it"
                ),
            ),
            MediaError::PeerNotFound(_) => ApiError::not_found(
                "resource_not_found",
                "this WHIP/WHEP resource does not exist (it ended or was never created)",
            ),
            MediaError::InvalidCandidate(_) => ApiError::bad_request("invalid_candidate", message),
            MediaError::TooManyPeers(_) => {
                ApiError::unavailable("too_many_peers", message, Duration::from_secs(10))
            }
            MediaError::SessionFull(..) => {
                ApiError::unavailable("session_full", message, Duration::from_secs(10))
            }
            MediaError::TooManyCandidates(_) => ApiError::too_many_requests(
                "too_many_candidates",
                format!("{message}; this peer's candidates are ignored from now on"),
                Duration::from_secs(60),
            ),
            MediaError::Overloaded => {
                ApiError::unavailable("overloaded", message, Duration::from_secs(1))
            }
            MediaError::Stopped => ApiError::unavailable(
                "media_unavailable",
                "the media engine is not running; the operator must check the server log",
                Duration::from_secs(5),
            ),
            MediaError::Bind { .. } => ApiError::internal(message),
        }
    }
}

impl From<ReplyTimeout> for ApiError {
    fn from(_: ReplyTimeout) -> Self {
        ApiError::unavailable(
            "media_timeout",
            "the media engine did not answer in time; retry shortly",
            Duration::from_secs(2),
        )
    }
}

impl From<ReplyError> for ApiError {
    fn from(e: ReplyError) -> Self {
        match e {
            ReplyError::Timeout(t) => t.into(),
            ReplyError::Engine(e) => e.into(),
        }
    }
}

impl From<TrickleError> for ApiError {
    fn from(e: TrickleError) -> Self {
        match e {
            TrickleError::TooManyCandidates => {
                ApiError::bad_request("too_many_candidates", e.to_string())
            }
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Exists(id) => ApiError::new(
                StatusCode::CONFLICT,
                "session_exists",
                format!("session {id} already exists; pick another id"),
            ),
            SessionError::NotFound(id) => ApiError::session_not_found(id.as_str()),
            SessionError::InvalidTitle => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_title",
                SessionError::InvalidTitle.to_string(),
            ),
            SessionError::Store(e) => e.into(),
        }
    }
}

impl From<FloorError> for ApiError {
    fn from(e: FloorError) -> Self {
        let (status, code) = match &e {
            FloorError::HandNotFound(_) => (StatusCode::NOT_FOUND, "hand_not_found"),
            FloorError::HandAlreadyOpen(..) => (StatusCode::CONFLICT, "hand_already_open"),
            FloorError::QueueFull => (StatusCode::SERVICE_UNAVAILABLE, "queue_full"),
            FloorError::QueueEmpty => (StatusCode::CONFLICT, "queue_empty"),
            FloorError::FloorBusy(..) => (StatusCode::CONFLICT, "floor_busy"),
            FloorError::AlreadyGranted(_) => (StatusCode::CONFLICT, "already_granted"),
            FloorError::NotHolding(_) => (StatusCode::CONFLICT, "not_holding"),
            FloorError::NoHolder => (StatusCode::CONFLICT, "no_holder"),
            FloorError::AmbiguousHolder(_) => (StatusCode::BAD_REQUEST, "hand_required"),
            FloorError::NotYourHand(_) | FloorError::NotYourTurn => {
                (StatusCode::FORBIDDEN, "forbidden")
            }
            FloorError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Floor(e) => e.into(),
            RuntimeError::Store(e) => e.into(),
            RuntimeError::Stopped => ApiError::unavailable(
                "floor_stopped",
                "the floor of this session is not running (the session may have been deleted)",
                Duration::from_secs(5),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if !e.is_unavailable() {
            return ApiError::internal(e);
        }
        ApiError {
            detail: Some(e.to_string()),
            ..ApiError::unavailable(
                "storage_unavailable",
                "the database is unavailable right now (disk full, read-only, locked or \
                 failing); retry later, the operator must check the server log",
                Duration::from_secs(5),
            )
        }
    }
}

impl From<CartError> for ApiError {
    fn from(e: CartError) -> Self {
        let message = e.to_string();
        let with_last = |status, code, last: u64| ApiError {
            extra: Some(serde_json::Map::from_iter([(
                "last_seq".into(),
                last.into(),
            )])),
            ..ApiError::new(status, code, message.clone())
        };
        match e {
            CartError::Seq(SeqError::Stale { last, .. }) => {
                with_last(StatusCode::CONFLICT, "stale_seq", last)
            }
            CartError::Seq(SeqError::TooFarAhead { last, .. }) => {
                with_last(StatusCode::BAD_REQUEST, "seq_out_of_range", last)
            }
            CartError::TooManyStreams { .. } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_cart_streams",
                message,
            ),
            CartError::Store(e) => e.into(),
        }
    }
}

impl From<InvalidSessionId> for ApiError {
    fn from(e: InvalidSessionId) -> Self {
        ApiError::bad_request("invalid_session_id", e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let message = rejection.body_text();
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::unsupported_media_type("application/json")
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_json", message)
            }
            status if status.is_client_error() => ApiError::bad_request("invalid_json", message),
            _ => ApiError::internal(message),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let message = rejection.body_text();
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            status if status.is_client_error() => ApiError::bad_request("invalid_body", message),
            _ => ApiError::internal(message),
        }
    }
}
