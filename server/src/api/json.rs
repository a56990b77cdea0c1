//! [`ApiJson`]: `axum::Json` whose rejections (bad syntax, wrong type, missing
//! Content-Type, body too large) come out as our JSON errors instead of plain text.

use axum::extract::FromRequest;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
