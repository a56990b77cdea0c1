//! [`ApiPath`]: `axum::extract::Path` whose rejections are our JSON errors.

use axum::extract::FromRequestParts;
use axum::extract::rejection::PathRejection;

use super::error::ApiError;

#[derive(Debug, Clone, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        if rejection.status().is_server_error() {
            ApiError::internal(rejection.body_text())
        } else {
            ApiError::bad_request("invalid_path", rejection.body_text())
        }
    }
}
