//! The floor queue of session `demo` through the router: raise a hand, read the queue,
//! change it.

use super::*;

const HANDS: &str = "/api/sessions/demo/hands";
const QUEUE: &str = "/api/sessions/demo/queue";

/// `POST …/hands` with `body`, as it answers.
pub async fn raise(t: &TestApp, token: &str, body: Value) -> Reply {
    call(&t.router, json_req(Method::POST, HANDS, Some(token), body)).await
}

/// Raises a hand with no details; its id.
pub async fn raised(t: &TestApp, token: &str) -> u64 {
    let r = raise(t, token, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.json()["hand"]["id"].as_u64().unwrap()
}

pub async fn queue(t: &TestApp, token: &str) -> Value {
    call(&t.router, empty(Method::GET, QUEUE, Some(token)))
        .await
        .json()
}

pub async fn patch_queue(t: &TestApp, token: &str, body: Value) -> Reply {
    call(&t.router, json_req(Method::PATCH, QUEUE, Some(token), body)).await
}
