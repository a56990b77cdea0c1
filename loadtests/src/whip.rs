//! WHIP (RFC 9725) client: POST an SDP offer with a bearer token, get `201 Created`, the
//! answer and a `Location` naming the session resource, and DELETE that resource to leave.
//! WHEP ([`crate::whep`]) has the same shape, so the exchange lives here once.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, LOCATION};
use reqwest::{Client, StatusCode};

/// A failed signalling exchange.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with a non-success status; `code` is its JSON `error` field.
    #[error("{status}: {code:?} {body}")]
    Status {
        status: StatusCode,
        code: Option<String>,
        body: String,
    },
    #[error("201 without a Location header")]
    NoLocation,
    #[error("bad Location {0:?}: {1}")]
    BadLocation(String, String),
}

impl SignalError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            SignalError::Status { status, .. } => Some(*status),
            SignalError::Http(e) => e.status(),
            _ => None,
        }
    }
}

/// A created WHIP/WHEP resource.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Absolute URL of the resource (from `Location`, resolved against the endpoint).
    pub url: reqwest::Url,
    pub etag: Option<String>,
    /// The SDP answer.
    pub answer: String,
    token: String,
    client: Client,
}

impl Resource {
    /// `DELETE` the resource; returns the status (200 expected).
    pub async fn delete(&self) -> Result<StatusCode, SignalError> {
        let resp = self
            .client
            .delete(self.url.clone())
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        Ok(resp.status())
    }
}

/// A client with sane timeouts, no proxy (tests talk to 127.0.0.1).
pub fn http_client() -> Client {
    Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .build()
        .expect("reqwest client with static settings")
}

/// Parses an error body `{"error": code, "message": …}`; `None` if it is not that shape.
pub fn error_code(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("error")?
        .as_str()
        .map(str::to_owned)
}

/// POSTs `offer` to a WHIP or WHEP endpoint (the full URL, e.g. `http://h/whip/s1`).
pub async fn post_offer(
    client: &Client,
    endpoint: &str,
    token: &str,
    offer: String,
) -> Result<Resource, SignalError> {
    let endpoint_url = reqwest::Url::parse(endpoint)
        .map_err(|e| SignalError::BadLocation(endpoint.into(), e.to_string()))?;
    let resp = client
        .post(endpoint_url.clone())
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/sdp")
        .body(offer)
        .send()
        .await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.text().await?;
    if status != StatusCode::CREATED {
        return Err(SignalError::Status {
            status,
            code: error_code(&body),
            body,
        });
    }
    let location = headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(SignalError::NoLocation)?;
    let url = endpoint_url
        .join(location)
        .map_err(|e| SignalError::BadLocation(location.into(), e.to_string()))?;
    Ok(Resource {
        url,
        etag: headers
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        answer: body,
        token: token.to_owned(),
        client: client.clone(),
    })
}

/// `POST {base}/whip/{session}`.
pub async fn publish(
    client: &Client,
    base: &str,
    session: &str,
    token: &str,
    offer: String,
) -> Result<Resource, SignalError> {
    let endpoint = format!("{}/whip/{session}", base.trim_end_matches('/'));
    post_offer(client, &endpoint, token, offer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_reads_the_contract_shape() {
        assert_eq!(
            error_code(r#"{"error":"floor_busy","message":"x"}"#).as_deref(),
            Some("floor_busy")
        );
        assert_eq!(error_code("not json"), None);
        assert_eq!(error_code(r#"{"message":"x"}"#), None);
    }
}
