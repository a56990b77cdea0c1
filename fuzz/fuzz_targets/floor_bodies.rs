//! The floor API's request bodies (`server::api::floor`) read by the server's own extractor
//! (`ApiJson`, axum's JSON extractor with our rejections), then the hand and floor bodies
//! handed to a `FloorMachine` as their handlers do.
//!
//! Input: a selector byte (low bits: which body; high bit: a Content-Type other than JSON),
//! then the body (for `EndQuery`, the query string of `DELETE …/floor`).
//!
//! Checked: a refusal is a 4xx with a code, rendered as `{"error": code, "message": …}`; a
//! non-JSON Content-Type is always 415; an accepted body is JSON; the machine answers what
//! a body asks with a success or a client error, never a 500; a raised hand's topic and
//! language obey the model's limits; a grant's turn ends after it starts.

#![no_main]

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequest, Query, Request};
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use server::api::error::ApiError;
use server::api::floor::{EndQuery, ExtendBody, GrantBody, QueuePatch, RaiseBody};
use server::api::json::ApiJson;
use server::floor::machine::{FloorMachine, MAX_TURN_MS};
use server::floor::model::{Command, FloorEvent, MAX_LANGUAGE_CHARS, MAX_TOPIC_CHARS, Participant};

const NOW_MS: u64 = 1_750_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let json = selector & 0x80 == 0;
    match (selector & 0x7F) % 5 {
        0 => {
            if let Some(b) = extract::<RaiseBody>(body, json) {
                raise(b);
            }
        }
        1 => {
            extract::<QueuePatch>(body, json);
        }
        2 => {
            if let Some(b) = extract::<GrantBody>(body, json) {
                let mut m = machine_with_hands();
                let limit_ms = b.limit_s.map(|s| s.saturating_mul(1000));
                let cmd = Command::Grant {
                    hand: b.hand,
                    limit_ms,
                };
                if let Some(events) = handle(&mut m, &cmd) {
                    for e in events {
                        if let FloorEvent::FloorGranted {
                            granted_at_ms,
                            ends_at_ms,
                            ..
                        } = e
                        {
                            let turn_ms = ends_at_ms - granted_at_ms;
                            assert!(turn_ms > 0 && turn_ms <= MAX_TURN_MS, "{turn_ms} ms");
                        }
                    }
                }
            }
        }
        3 => {
            if let Some(b) = extract::<ExtendBody>(body, json) {
                let mut m = machine_with_hands();
                handle(
                    &mut m,
                    &Command::Grant {
                        hand: Some(1),
                        limit_ms: None,
                    },
                );
                let by_ms = b.extend_s.saturating_mul(1000);
                handle(
                    &mut m,
                    &Command::Extend {
                        hand: b.hand,
                        by_ms,
                    },
                );
            }
        }
        _ => {
            let Ok(query) = std::str::from_utf8(body) else {
                return;
            };
            if let Ok(uri) = format!("/api/sessions/s/floor?{query}").parse::<Uri>() {
                let _ = Query::<EndQuery>::try_from_uri(&uri);
            }
        }
    }
});

/// The body through `ApiJson<T>`, as a handler receives it; checks what a refusal looks like.
fn extract<T: DeserializeOwned>(body: &[u8], json: bool) -> Option<T> {
    let content_type = if json {
        "application/json"
    } else {
        "text/plain"
    };
    let request = Request::builder()
        .method("POST")
        .uri("/api/sessions/s/floor")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_vec()))
        .expect("a valid request");
    let extracted = ApiJson::<T>::from_request(request, &())
        .now_or_never()
        .expect("a body in memory is read at once");
    match extracted {
        Ok(ApiJson(value)) => {
            assert!(json, "accepted a body that is not application/json");
            let v: serde_json::Value = serde_json::from_slice(body).expect("accepted JSON");
            assert!(v.is_object() || v.is_array(), "{v}");
            Some(value)
        }
        Err(e) => {
            if !json {
                assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            }
            assert_client_error(e);
            None
        }
    }
}

fn assert_client_error(e: ApiError) {
    assert!(
        e.status.is_client_error() || e.status == StatusCode::SERVICE_UNAVAILABLE,
        "{e:?}"
    );
    let code = e.code;
    assert!(!code.is_empty());
    let response = e.into_response();
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let bytes = to_bytes(response.into_body(), 1 << 20)
        .now_or_never()
        .expect("an error body is in memory")
        .expect("an error body is small");
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("an error body is JSON");
    assert_eq!(v["error"], code);
    assert!(v["message"].is_string());
}

fn person(sub: &str) -> Participant {
    Participant {
        sub: sub.into(),
        name: sub.to_uppercase(),
        hub: None,
        is_hub: false,
    }
}

/// A machine with hands 1 and 2 queued.
fn machine_with_hands() -> FloorMachine {
    let mut m = FloorMachine::new();
    for sub in ["ana", "ben"] {
        let raise = Command::Raise {
            who: person(sub),
            topic: "a question".into(),
            language: None,
            head_count: None,
        };
        m.handle(&raise, NOW_MS).expect("a plain raise");
    }
    m
}

fn handle(m: &mut FloorMachine, cmd: &Command) -> Option<Vec<FloorEvent>> {
    match m.handle(cmd, NOW_MS) {
        Ok(events) => Some(events),
        Err(e) => {
            assert_client_error(e.into());
            None
        }
    }
}

fn raise(b: RaiseBody) {
    let mut m = FloorMachine::new();
    let hub = Participant {
        hub: Some("Library".into()),
        is_hub: true,
        ..person("hub-library")
    };
    let cmd = Command::Raise {
        who: hub,
        topic: b.topic,
        language: b.language,
        head_count: b.head_count,
    };
    for e in handle(&mut m, &cmd).unwrap_or_default() {
        if let FloorEvent::HandRaised { hand } = e {
            assert!(hand.topic.chars().count() <= MAX_TOPIC_CHARS, "{hand:?}");
            assert!(
                hand.language
                    .as_ref()
                    .is_none_or(|l| l.len() <= MAX_LANGUAGE_CHARS)
            );
        }
    }
}
