//! Every route under a session goes through one extractor (`api::session_access`): an id
//! that is malformed or names no session gets the same 404 `session_not_found` on each of
//! them, and the message quotes the id escaped, never raw. Deleting a session (one call on
//! the session registry) ends its event streams and leaves no floor behind.

mod common;

use common::*;

/// Every route that names a session, with a method and a token that may use it.
fn routes() -> Vec<(Method, String, Role)> {
    let api = |method, tail: &str, role| (method, format!("/api/sessions/{{id}}{tail}"), role);
    vec![
        api(Method::GET, "", Role::Operator),
        api(Method::DELETE, "", Role::Operator),
        api(Method::POST, "/hands", Role::Viewer),
        api(Method::DELETE, "/hands/1", Role::Viewer),
        api(Method::DELETE, "/hands/1", Role::Moderator),
        api(Method::GET, "/queue", Role::Viewer),
        api(Method::PATCH, "/queue", Role::Moderator),
        api(Method::POST, "/floor", Role::Moderator),
        api(Method::PATCH, "/floor", Role::Moderator),
        api(Method::DELETE, "/floor", Role::Moderator),
        api(Method::DELETE, "/floor", Role::Viewer),
        api(Method::GET, "/events", Role::Viewer),
        api(Method::GET, "/floor-log", Role::Moderator),
        api(Method::GET, "/report", Role::Operator),
        api(Method::GET, "/viewers", Role::Venue),
        api(Method::GET, "/ice-servers", Role::Viewer),
        api(Method::GET, "/transcript.vtt", Role::Viewer),
        api(Method::GET, "/transcript.json", Role::Viewer),
        (Method::POST, "/cart/{id}?seq=1".into(), Role::Captioner),
        (Method::GET, "/cart/{id}/seq".into(), Role::Captioner),
        (Method::POST, "/whip/{id}".into(), Role::Venue),
        (Method::POST, "/whip/{id}".into(), Role::Viewer),
        (Method::POST, "/whep/{id}".into(), Role::Viewer),
        (
            Method::PATCH,
            "/whip/{id}/0000000000000001".into(),
            Role::Venue,
        ),
        (
            Method::DELETE,
            "/whep/{id}/0000000000000001".into(),
            Role::Viewer,
        ),
    ]
}

#[tokio::test]
async fn unknown_and_malformed_ids_get_one_answer_on_every_route() {
    let (t, _fake) = with_fake().await;
    // Unknown; too long; a space, a quote and a control character (percent-encoded).
    let long = "x".repeat(65);
    let ids = ["nosuch", long.as_str(), "bad%20id%22%0A"];
    for (method, template, role) in routes() {
        for id in ids {
            let uri = template.replace("{id}", id);
            let bearer = token(role, "*");
            // A body the route would accept, so only the id is wrong.
            let request = if uri.starts_with("/api/") && method != Method::GET {
                json_req(method.clone(), &uri, Some(&bearer), json!({}))
            } else {
                empty(method.clone(), &uri, Some(&bearer))
            };
            let r = call(&t.router, request).await;
            r.assert_error(StatusCode::NOT_FOUND, "session_not_found");
            let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
            assert!(
                message.starts_with("there is no session \""),
                "{method} {uri}: {message}"
            );
            assert!(!message.contains('\n'), "escaped: {message}");
        }
    }
}

#[tokio::test]
async fn the_message_names_the_id_escaped_and_cut_short() {
    let t = without_media().await;
    let op = token(Role::Operator, "*");
    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions/nosuch", Some(&op)),
    )
    .await;
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("\"nosuch\""), "{message}");
    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions/a%22b%0Ac", Some(&op)),
    )
    .await;
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains(r#""a\"b\nc""#), "{message}");
    let r = call(
        &t.router,
        empty(
            Method::GET,
            &format!("/api/sessions/{}", "y".repeat(500)),
            Some(&op),
        ),
    )
    .await;
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains(&format!("\"{}…\"", "y".repeat(64))),
        "{message}"
    );
}

#[tokio::test]
async fn the_role_is_checked_before_the_id_and_the_scope_before_the_lookup() {
    let t = without_media().await;
    // A viewer may not moderate, whatever the id.
    let r = call(
        &t.router,
        empty(
            Method::POST,
            "/api/sessions/bad%20id/floor",
            Some(&token(Role::Viewer, "*")),
        ),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    // A token for another session learns nothing about whether this one exists.
    for id in ["demo", "nosuch"] {
        let r = call(
            &t.router,
            empty(
                Method::GET,
                &format!("/api/sessions/{id}/queue"),
                Some(&token(Role::Viewer, "other")),
            ),
        )
        .await;
        r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    }
}

#[tokio::test]
async fn pages_answer_a_malformed_id_the_same_way() {
    let t = without_media().await;
    for page in ["watch", "moderate", "room", "publish"] {
        let r = call(
            &t.router,
            empty(Method::GET, &format!("/{page}/bad%20id"), None),
        )
        .await;
        r.assert_error(StatusCode::NOT_FOUND, "session_not_found");
        // Any well-formed id gets the page: the page reports an unknown session itself.
        let r = call(
            &t.router,
            empty(Method::GET, &format!("/{page}/nosuch"), None),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{page}");
    }
}

/// Deleting a session is one call that ends what it owned: an open event stream ends, and a
/// session created again under the same id starts with an empty floor.
#[tokio::test]
async fn deleting_a_session_ends_its_event_streams_and_its_floor() {
    let t = without_media().await;
    let operator = token(Role::Operator, "*");
    let viewer = token(Role::Viewer, "demo");
    let hands = "/api/sessions/demo/hands";
    let r = call(
        &t.router,
        json_req(Method::POST, hands, Some(&viewer), json!({})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let events = empty(Method::GET, "/api/sessions/demo/events", Some(&viewer));
    let res = t.router.clone().oneshot(events).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the snapshot in time")
        .expect("a frame")
        .expect("not an error");
    let first = String::from_utf8_lossy(first.data_ref().expect("data")).into_owned();
    assert!(first.starts_with("event: snapshot"), "{first}");

    let r = call(
        &t.router,
        empty(Method::DELETE, "/api/sessions/demo", Some(&operator)),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(frame) = body.frame().await {
            frame.expect("a frame, not an error");
        }
    })
    .await;
    assert!(ended.is_ok(), "the event stream ended with its session");

    let create = json!({"id": "demo", "title": "Again"});
    let r = call(
        &t.router,
        json_req(Method::POST, "/api/sessions", Some(&operator), create),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let q = call(
        &t.router,
        empty(Method::GET, "/api/sessions/demo/queue", Some(&viewer)),
    )
    .await;
    assert_eq!(q.status, StatusCode::OK);
    assert_eq!(q.json()["hands"], json!([]), "a fresh floor");
    assert!(q.json()["floor"].as_array().is_some_and(Vec::is_empty));
}
