//! A `text/event-stream` client for tests, parsed from raw bytes (`id:`, `event:`, `data:`,
//! comments, blank-line dispatch), independently of any SSE library.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::Value;

/// One dispatched SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<i64>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("data is not JSON ({e}): {self:?}"))
    }
}

/// Parses an `text/event-stream` response as its chunks arrive.
pub struct SseStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
    /// Fields of the event being assembled.
    id: Option<i64>,
    event: Option<String>,
    data: Vec<String>,
    /// Comment lines seen (keep-alives).
    pub comments: usize,
}

impl SseStream {
    pub async fn open(client: &Client, url: &str, token: &str, last_id: Option<i64>) -> SseStream {
        let mut req = client
            .get(url)
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.expect("GET events");
        assert_eq!(resp.status(), StatusCode::OK, "events: {resp:?}");
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(ct.starts_with("text/event-stream"), "content type {ct}");
        SseStream {
            resp,
            buf: Vec::new(),
            id: None,
            event: None,
            data: Vec::new(),
            comments: 0,
        }
    }

    /// The next event, or `None` if none arrives within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + wait;
        loop {
            while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line = String::from_utf8(line).expect("UTF-8 event stream");
                if let Some(e) = self.field(&line) {
                    return Some(e);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.extend_from_slice(&bytes),
                Ok(Ok(None)) => panic!("the server ended the event stream"),
                Ok(Err(e)) => panic!("event stream failed: {e}"),
                Err(_) => return None,
            }
        }
    }

    /// Handles one line; a blank line dispatches the event being assembled.
    fn field(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = self.event.take();
            let data = std::mem::take(&mut self.data);
            let id = self.id.take();
            if event.is_none() && data.is_empty() {
                return None;
            }
            return Some(SseEvent {
                id,
                event: event.unwrap_or_else(|| "message".into()),
                data: data.join("\n"),
            });
        }
        if line.starts_with(':') {
            self.comments += 1;
            return None;
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match name {
            "id" => {
                self.id = Some(
                    value
                        .parse()
                        .unwrap_or_else(|_| panic!("numeric id: {line:?}")),
                )
            }
            "event" => self.event = Some(value.to_owned()),
            "data" => self.data.push(value.to_owned()),
            "retry" => {}
            other => panic!("unknown SSE field {other:?} in {line:?}"),
        }
        None
    }
}
