//! Handler tests: the real router (`server::app`) driven with `oneshot`, no socket. A fake
//! media engine stands in where a test needs WHIP/WHEP to succeed; the real engine is
//! exercised by the binary and interop tests.

mod common;

use common::*;

// ---------------------------------------------------------------- sessions

#[tokio::test]
async fn sessions_crud_with_operator_token() {
    let t = without_media().await;
    let op = token(Role::Operator, "*");

    let r = call(&t.router, empty(Method::GET, "/api/sessions", Some(&op))).await;
    assert_eq!(r.status, StatusCode::OK);
    let ids: Vec<_> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["demo", "other"]);

    let r = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions",
            Some(&op),
            json!({"id": "plenary-1", "title": "Opening plenary"}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.header(header::LOCATION), "/api/sessions/plenary-1");
    let created = r.json();
    assert_eq!(created["id"], "plenary-1");
    assert_eq!(created["title"], "Opening plenary");
    assert!(
        created["created_at"].as_str().unwrap().contains('T'),
        "RFC 3339: {created}"
    );

    let r = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions",
            Some(&op),
            json!({"id": "plenary-1", "title": "again"}),
        ),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "session_exists");

    let r = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions",
            Some(&op),
            json!({"title": "No id given"}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let generated = r.json()["id"].as_str().unwrap().to_owned();
    assert!(!generated.is_empty());

    let r = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions",
            Some(&op),
            json!({"id": "bad id!", "title": "x"}),
        ),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_session_id");
    let r = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions",
            Some(&op),
            json!({"id": "x".repeat(65), "title": "x"}),
        ),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_session_id");
    let r = call(
        &t.router,
        json_req(Method::POST, "/api/sessions", Some(&op), json!({"id": "t"})),
    )
    .await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_json");
    let r = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions",
            Some(&op),
            json!({"id": "t", "title": ""}),
        ),
    )
    .await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_title");
    let r = call(
        &t.router,
        req(Method::POST, "/api/sessions", Some(&op))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{not json"))
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    let r = call(
        &t.router,
        req(Method::POST, "/api/sessions", Some(&op))
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions/plenary-1", Some(&op)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["title"], "Opening plenary");

    let r = call(
        &t.router,
        empty(Method::DELETE, "/api/sessions/plenary-1", Some(&op)),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions/plenary-1", Some(&op)),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "session_not_found");
    let r = call(
        &t.router,
        empty(Method::DELETE, "/api/sessions/plenary-1", Some(&op)),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "session_not_found");
    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions/not%20valid", Some(&op)),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "session_not_found");

    let r = call(&t.router, empty(Method::GET, "/api/sessions", Some(&op))).await;
    assert_eq!(
        r.json().as_array().unwrap().len(),
        3,
        "demo, other, generated"
    );
}

#[tokio::test]
async fn session_scoped_operator() {
    let t = without_media().await;
    let op_demo = token(Role::Operator, "demo");
    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions", Some(&op_demo)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json().as_array().unwrap().len(),
        1,
        "sees only its session"
    );
    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions/demo", Some(&op_demo)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions/other", Some(&op_demo)),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let r = call(
        &t.router,
        empty(Method::DELETE, "/api/sessions/other", Some(&op_demo)),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let r = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions",
            Some(&op_demo),
            json!({"id": "new", "title": "x"}),
        ),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(
        t.state
            .sessions
            .get(&server::session::SessionId::parse("other").unwrap())
            .is_some()
    );
}

#[tokio::test]
async fn auth_errors() {
    let t = without_media().await;

    let r = call(&t.router, empty(Method::GET, "/api/sessions", None)).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "missing_token");
    assert_eq!(r.header(header::WWW_AUTHENTICATE), "Bearer");

    let forged = token_with(
        &AuthKeys::from_secret(b"some-other-secret-some-other-secret"),
        Role::Operator,
        "*",
        SystemTime::now(),
    );
    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions", Some(&forged)),
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");

    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions", Some("not-a-jwt")),
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");

    let r = call(
        &t.router,
        req(Method::GET, "/api/sessions", None)
            .header(header::AUTHORIZATION, "Basic Zm9vOmJhcg==")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "invalid_token");

    let expired = token_with(
        &AuthKeys::from_secret(SECRET.as_bytes()),
        Role::Operator,
        "*",
        SystemTime::now() - Duration::from_secs(3600),
    );
    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions", Some(&expired)),
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "expired_token");

    // Anyone may list the sessions their token is for; only operators change them.
    let ids = |r: &Reply| -> Vec<String> {
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let demo_viewer = token(Role::Viewer, "demo");
    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions", Some(&demo_viewer)),
    )
    .await;
    assert_eq!(ids(&r), ["demo"]);
    let viewer = token(Role::Viewer, "*");
    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions", Some(&viewer)),
    )
    .await;
    assert_eq!(ids(&r), ["demo", "other"]);
    let r = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions",
            Some(&viewer),
            json!({"title": "x"}),
        ),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");

    // ?token= works where a header cannot be set (page loads); here on the API.
    let op = token(Role::Operator, "*");
    let r = call(
        &t.router,
        empty(Method::GET, &format!("/api/sessions?token={op}"), None),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

// ---------------------------------------------------------------- WHIP / WHEP input checks

#[tokio::test]
async fn whip_rejects_bad_requests_before_media() {
    let t = without_media().await;
    let venue = token(Role::Venue, "demo");

    let r = call(
        &t.router,
        req(Method::POST, "/whip/demo", Some(&venue))
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(OFFER))
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    let r = call(
        &t.router,
        req(Method::POST, "/whip/demo", Some(&venue))
            .body(Body::from(OFFER))
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    let r = call(&t.router, sdp_req("/whip/demo", Some(&venue), "")).await;
    r.assert_error(StatusCode::BAD_REQUEST, "empty_body");

    let r = call(
        &t.router,
        req(Method::POST, "/whip/demo", Some(&venue))
            .header(header::CONTENT_TYPE, "application/sdp")
            .body(Body::from(vec![0xff_u8, 0xfe, 0x00]))
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_body");

    // 2 MB with a Content-Length header: refused before authentication.
    let big = "a".repeat(2 * 1024 * 1024);
    let r = call(&t.router, sdp_req("/whip/demo", Some(&venue), &big)).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let r = call(&t.router, sdp_req("/whip/demo", None, &big)).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // 2 MB streamed without Content-Length: the extractor's limit stops it.
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..32)
        .map(|_| Ok(Bytes::from(vec![b'a'; 64 * 1024])))
        .collect();
    let stream = Body::from_stream(futures_util::stream::iter(chunks));
    let r = call(
        &t.router,
        req(Method::POST, "/whip/demo", Some(&venue))
            .header(header::CONTENT_TYPE, "application/sdp")
            .body(stream)
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let r = call(
        &t.router,
        sdp_req("/whip/nosuch", Some(&token(Role::Venue, "*")), OFFER),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "session_not_found");

    let r = call(&t.router, sdp_req("/whip/demo", None, OFFER)).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "missing_token");

    let r = call(
        &t.router,
        sdp_req("/whip/demo", Some(&token(Role::Viewer, "demo")), OFFER),
    )
    .await;
    // A viewer publishes only while holding the floor (floor_api.rs covers the grant).
    r.assert_error(StatusCode::FORBIDDEN, "not_floor_holder");

    let r = call(
        &t.router,
        sdp_req("/whip/demo", Some(&token(Role::Venue, "other")), OFFER),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");

    let r = call(
        &t.router,
        empty(Method::DELETE, "/whip/demo/abc123", Some(&venue)),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "resource_not_found");
    let r = call(
        &t.router,
        empty(Method::DELETE, "/whep/demo/not-hex", Some(&venue)),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "resource_not_found");

    // Everything valid, but no engine: 503 with Retry-After, not a hang or a 500.
    let r = call(&t.router, sdp_req("/whip/demo", Some(&venue), OFFER)).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "media_unavailable");
    assert!(!r.header(header::RETRY_AFTER).is_empty());
    let r = call(
        &t.router,
        sdp_req("/whep/demo", Some(&token(Role::Viewer, "demo")), OFFER),
    )
    .await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "media_unavailable");
}

// ---------------------------------------------------------------- WHIP / WHEP with a fake engine

const FRAG: &str = "a=ice-ufrag:offr\r\na=ice-pwd:0123456789012345678901\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                    a=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host\r\na=end-of-candidates\r\n";

fn patch_req(uri: &str, token: &str) -> axum::http::request::Builder {
    req(Method::PATCH, uri, Some(token))
        .header(header::CONTENT_TYPE, "application/trickle-ice-sdpfrag")
}

#[tokio::test]
async fn whip_resource_lifecycle() {
    let (t, fake) = with_fake().await;
    let venue = token(Role::Venue, "demo");

    let r = call(&t.router, sdp_req("/whip/demo", Some(&venue), OFFER)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.header(header::CONTENT_TYPE), "application/sdp");
    let location = r.header(header::LOCATION).to_owned();
    assert!(location.starts_with("/whip/demo/"), "{location}");
    let peer = location.rsplit('/').next().unwrap().to_owned();
    assert_eq!(r.header(header::ETAG), format!("\"{peer}\""));
    assert!(String::from_utf8_lossy(&r.body).starts_with("v=0"));

    // A second floor publisher is refused (no takeover configured).
    let r = call(
        &t.router,
        sdp_req("/whip/demo", Some(&token(Role::Venue, "demo")), OFFER),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "publisher_exists");

    // Engine errors map to their statuses.
    let r = call(
        &t.router,
        sdp_req("/whip/other", Some(&token(Role::Venue, "other")), "v=0\r\n"),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_sdp");
    let r = call(
        &t.router,
        sdp_req(
            "/whip/other",
            Some(&token(Role::Venue, "other")),
            "v=0\r\nm=video 9 x 96\r\n",
        ),
    )
    .await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "no_supported_codec");

    // Trickle: candidates reach the engine; 204.
    let r = call(
        &t.router,
        patch_req(&location, &venue)
            .header(header::IF_MATCH, format!("\"{peer}\""))
            .body(Body::from(FRAG))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(fake.candidates.lock().unwrap().len(), 1);
    assert!(
        fake.candidates.lock().unwrap()[0]
            .1
            .starts_with("a=candidate:1 1 udp")
    );
    // Some WHIP/WHEP libraries send the entity tag in an `ETag` request header instead of
    // `If-Match`: tolerated (it is not a precondition), the candidates still go through.
    let r = call(
        &t.router,
        patch_req(&location, &venue)
            .header(header::ETAG, format!("\"{peer}\""))
            .body(Body::from(FRAG))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(fake.candidates.lock().unwrap().len(), 2);

    let r = call(
        &t.router,
        patch_req(&location, &venue)
            .body(Body::from("a=candidate:garbage"))
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_candidate");
    let r = call(
        &t.router,
        req(Method::PATCH, &location, Some(&venue))
            .header(header::CONTENT_TYPE, "application/sdp")
            .body(Body::from(FRAG))
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let r = call(
        &t.router,
        patch_req(&location, &venue)
            .header(header::IF_MATCH, "\"ffff\"")
            .body(Body::from(FRAG))
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::PRECONDITION_FAILED, "precondition_failed");

    // ICE restart: new credentials, or If-Match: *.
    let restart = FRAG.replace("ice-ufrag:offr", "ice-ufrag:newu");
    let r = call(
        &t.router,
        patch_req(&location, &venue)
            .body(Body::from(restart.clone()))
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "ice_restart_unsupported");
    let r = call(
        &t.router,
        patch_req(&location, &venue)
            .header(header::IF_MATCH, "*")
            .body(Body::from(FRAG))
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "ice_restart_unsupported");

    // Other methods on the resource: 405 JSON.
    let r = call(&t.router, empty(Method::GET, &location, Some(&venue))).await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");

    // The WHIP resource is not reachable through the WHEP path or another session's path.
    let r = call(
        &t.router,
        empty(Method::DELETE, &format!("/whep/demo/{peer}"), Some(&venue)),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "resource_not_found");
    let r = call(
        &t.router,
        empty(
            Method::DELETE,
            &format!("/whip/other/{peer}"),
            Some(&token(Role::Venue, "*")),
        ),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "resource_not_found");
    // A token for another session, or another holder's token, may not end it.
    let r = call(
        &t.router,
        empty(
            Method::DELETE,
            &location,
            Some(&token(Role::Venue, "other")),
        ),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let r = call(
        &t.router,
        empty(
            Method::DELETE,
            &location,
            Some(&token(Role::Viewer, "demo")),
        ),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");

    let r = call(&t.router, empty(Method::DELETE, &location, Some(&venue))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        fake.floor.lock().unwrap().is_empty(),
        "engine closed the publisher"
    );
    let r = call(&t.router, empty(Method::DELETE, &location, Some(&venue))).await;
    r.assert_error(StatusCode::NOT_FOUND, "resource_not_found");
    let r = call(
        &t.router,
        patch_req(&location, &venue).body(Body::from(FRAG)).unwrap(),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "resource_not_found");

    // The floor is free again.
    let r = call(&t.router, sdp_req("/whip/demo", Some(&venue), OFFER)).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

/// RFC 9725 §4.6: the answer names the node's ICE servers in `Link` headers, TURN with
/// credentials for this token, so encoders that never call `/ice-servers` can relay.
#[tokio::test]
async fn whip_and_whep_answers_carry_the_ice_servers() {
    let (t, _fake) = test_app_with_fake(|c| {
        c.turn_urls = vec![
            "stun:turn.example.net:3478".into(),
            "turn:turn.example.net:3478?transport=udp".into(),
        ];
        c.turn_secret = Some("0123456789abcdef0123456789abcdef".into());
    })
    .await;
    for (path, token) in [
        ("/whip/demo", token(Role::Venue, "demo")),
        ("/whep/demo", token(Role::Viewer, "demo")),
    ] {
        let r = call(&t.router, sdp_req(path, Some(&token), OFFER)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let links: Vec<&str> = r
            .headers
            .get_all(header::LINK)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(links.len(), 2, "{links:?}");
        assert_eq!(links[0], "<stun:turn.example.net:3478>; rel=\"ice-server\"");
        assert!(
            links[1].starts_with(
                "<turn:turn.example.net:3478?transport=udp>; rel=\"ice-server\"; username=\""
            ) && links[1].contains("credential=\"")
                && links[1].ends_with("credential-type=\"password\""),
            "{}",
            links[1]
        );
    }
    // Without TURN configured there is nothing to announce.
    let (t, _fake) = with_fake().await;
    let r = call(
        &t.router,
        sdp_req("/whep/demo", Some(&token(Role::Viewer, "demo")), OFFER),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.headers.get(header::LINK).is_none());
}

#[tokio::test]
async fn whep_follow_chooses_the_floor_feed_or_what_the_session_shows() {
    let (t, fake) = with_fake().await;
    let viewer = token(Role::Venue, "demo");
    for (query, want) in [
        ("", media::Follow::Current),
        ("?follow=floor", media::Follow::Floor),
        ("?follow=current", media::Follow::Current),
    ] {
        let r = call(
            &t.router,
            sdp_req(&format!("/whep/demo{query}"), Some(&viewer), OFFER),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{query}: {:?}", r.body);
        assert_eq!(fake.follows.lock().unwrap().last(), Some(&want), "{query}");
    }
    let before = fake.follows.lock().unwrap().len();
    let r = call(
        &t.router,
        sdp_req("/whep/demo?follow=speaker", Some(&viewer), OFFER),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_follow");
    assert_eq!(
        fake.follows.lock().unwrap().len(),
        before,
        "no viewer created"
    );
}

#[tokio::test]
async fn whep_any_role_of_the_session() {
    let (t, _fake) = with_fake().await;
    for role in [
        Role::Viewer,
        Role::Hub,
        Role::Speaker,
        Role::Moderator,
        Role::Captioner,
        Role::Venue,
        Role::Operator,
    ] {
        let r = call(
            &t.router,
            sdp_req("/whep/demo", Some(&token(role, "demo")), OFFER),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{role}: {:?}", r.body);
        assert!(r.header(header::LOCATION).starts_with("/whep/demo/"));
    }
    let r = call(
        &t.router,
        sdp_req("/whep/demo", Some(&token(Role::Viewer, "other")), OFFER),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let r = call(
        &t.router,
        sdp_req("/whep/nosuch", Some(&token(Role::Viewer, "*")), OFFER),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "session_not_found");

    // An operator may end someone else's viewer.
    let viewer = token(Role::Viewer, "demo");
    let r = call(
        &t.router,
        sdp_req(&format!("/whep/demo?token={viewer}"), None, OFFER),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let location = r.header(header::LOCATION).to_owned();
    let r = call(
        &t.router,
        empty(Method::DELETE, &location, Some(&token(Role::Operator, "*"))),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn closed_event_and_session_delete_drop_resources() {
    let (t, fake) = with_fake().await;
    let engine: Arc<dyn MediaEngine> = fake.clone();
    let task =
        server::media_events::spawn(&engine, t.state.resources.clone(), t.state.metrics.clone());

    let viewer = token(Role::Viewer, "demo");
    let r = call(&t.router, sdp_req("/whep/demo", Some(&viewer), OFFER)).await;
    let location = r.header(header::LOCATION).to_owned();
    let peer: PeerId = location.rsplit('/').next().unwrap().parse().unwrap();
    assert_eq!(t.state.resources.len(), 1);

    let events = fake.events.as_ref().unwrap();
    events
        .send(MediaEvent::FirstMedia {
            peer,
            session: MediaSessionId::new("demo"),
            join: Duration::from_millis(400),
        })
        .unwrap();
    events
        .send(MediaEvent::Closed {
            peer,
            session: MediaSessionId::new("demo"),
            role: MediaRole::Viewer,
        })
        .unwrap();
    for _ in 0..100 {
        if t.state.resources.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(t.state.resources.is_empty(), "Closed removed the resource");
    // Clients close their connection, then DELETE: the owner's DELETE still succeeds, once;
    // another token learns nothing.
    let stranger = token(Role::Viewer, "demo");
    let r = call(&t.router, empty(Method::DELETE, &location, Some(&stranger))).await;
    r.assert_error(StatusCode::NOT_FOUND, "resource_not_found");
    let r = call(
        &t.router,
        patch_req(&location, &viewer)
            .body(Body::from(FRAG))
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "resource_not_found");
    let r = call(&t.router, empty(Method::DELETE, &location, Some(&viewer))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = call(&t.router, empty(Method::DELETE, &location, Some(&viewer))).await;
    r.assert_error(StatusCode::NOT_FOUND, "resource_not_found");

    let r = call(&t.router, empty(Method::GET, "/metrics", None)).await;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        text.contains("floorcast_join_duration_seconds_count 1"),
        "{text}"
    );

    // Deleting the session closes its peers in the engine and forgets its resources.
    let r = call(&t.router, sdp_req("/whep/demo", Some(&viewer), OFFER)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(
        &t.router,
        empty(
            Method::DELETE,
            "/api/sessions/demo",
            Some(&token(Role::Operator, "*")),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(*fake.closed_sessions.lock().unwrap(), ["demo"]);
    assert!(t.state.resources.is_empty());
    let r = call(&t.router, sdp_req("/whep/demo", Some(&viewer), OFFER)).await;
    r.assert_error(StatusCode::NOT_FOUND, "session_not_found");
    task.abort();
}

// ---------------------------------------------------------------- CORS, ops, pages, fallbacks

#[tokio::test]
async fn cors_preflight_and_exposed_headers() {
    let (t, _fake) = with_fake().await;
    let r = call(
        &t.router,
        req(Method::OPTIONS, "/whip/demo", None)
            .header(header::ORIGIN, "https://event.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.status);
    assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    assert!(
        r.header(header::ACCESS_CONTROL_ALLOW_METHODS)
            .contains("POST")
    );
    assert!(
        r.header(header::ACCESS_CONTROL_ALLOW_HEADERS)
            .to_lowercase()
            .contains("authorization")
    );

    let r = call(
        &t.router,
        req(Method::OPTIONS, "/whep/demo/1", None)
            .header(header::ORIGIN, "https://event.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "PATCH")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.status);

    let mut post = sdp_req("/whep/demo", Some(&token(Role::Viewer, "demo")), OFFER);
    post.headers_mut()
        .insert(header::ORIGIN, "https://event.example".parse().unwrap());
    let r = call(&t.router, post).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let exposed = r
        .header(header::ACCESS_CONTROL_EXPOSE_HEADERS)
        .to_lowercase();
    for h in ["location", "etag", "link"] {
        assert!(exposed.contains(h), "{exposed}");
    }

    // Plain OPTIONS (not a preflight) is answered too.
    let r = call(&t.router, empty(Method::OPTIONS, "/whip/demo", None)).await;
    assert!(r.status.is_success(), "{}", r.status);
}

#[tokio::test]
async fn health_ready_metrics() {
    let t = without_media().await;
    let r = call(&t.router, empty(Method::GET, "/healthz", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(&t.router, empty(Method::GET, "/readyz", None)).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("media engine")
    );

    let (t, _fake) = with_fake().await;
    let r = call(&t.router, empty(Method::GET, "/readyz", None)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["status"], "ready");

    let _ = call(&t.router, empty(Method::GET, "/nowhere", None)).await;
    let r = call(&t.router, empty(Method::GET, "/metrics", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header(header::CONTENT_TYPE).starts_with("text/plain"));
    let text = String::from_utf8_lossy(&r.body).into_owned();
    for name in [
        "floorcast_sessions 2",
        "floorcast_viewers{session=\"demo\"} 0",
        "floorcast_publishers{role=\"floor\",session=\"demo\"} 0",
        "floorcast_rtp_packets_total{direction=\"out\",kind=\"video\"} 0",
        "floorcast_rtp_bytes_total",
        "floorcast_nack_total",
        "floorcast_pli_total",
        "floorcast_join_duration_seconds_bucket",
        "floorcast_http_requests_total{route=\"/readyz\",status=\"200\"} 1",
        "floorcast_http_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "floorcast_build_info{version=",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
}

#[tokio::test]
async fn pages_assets_and_fallbacks() {
    let t = without_media().await;
    let r = call(
        &t.router,
        empty(Method::GET, "/publish/demo?token=abc", None),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header(header::CONTENT_TYPE).starts_with("text/html"));
    assert_eq!(r.header(header::REFERRER_POLICY), "no-referrer");
    assert!(String::from_utf8_lossy(&r.body).contains("<html"));
    let r = call(&t.router, empty(Method::GET, "/watch/demo", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header(header::CONTENT_TYPE).starts_with("text/html"));

    for (file, ty) in [
        ("whip.js", "text/javascript"),
        ("whep.js", "text/javascript"),
        ("page.css", "text/css"),
    ] {
        let r = call(
            &t.router,
            empty(Method::GET, &format!("/assets/{file}"), None),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{file}");
        assert!(r.header(header::CONTENT_TYPE).starts_with(ty), "{file}");
        assert!(!r.body.is_empty());
    }
    let r = call(
        &t.router,
        empty(Method::GET, "/assets/..%2Fsrc%2Flib.rs", None),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found");
    let r = call(&t.router, empty(Method::GET, "/nowhere", None)).await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found");
    let r = call(&t.router, empty(Method::PUT, "/api/sessions", None)).await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let r = call(&t.router, empty(Method::GET, "/whip/demo", None)).await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn body_limit_applies_to_every_route() {
    let t = without_media().await;
    let big = vec![b'{'; 70 * 1024];
    let r = call(
        &t.router,
        req(
            Method::POST,
            "/api/sessions",
            Some(&token(Role::Operator, "*")),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(big.clone()))
        .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let r = call(
        &t.router,
        req(Method::GET, "/healthz", None)
            .body(Body::from(big))
            .unwrap(),
    )
    .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

// ---------------------------------------------------------------- audience (viewers by hub)

fn hub_token(hub: &str, sub: &str) -> String {
    let mut claims = Claims::new(
        Role::Hub,
        SessionScope::parse("demo").unwrap(),
        &format!("{hub} hub"),
        Duration::from_secs(600),
        SystemTime::now(),
    );
    claims.hub = Some(hub.to_owned());
    claims.sub = sub.to_owned();
    AuthKeys::from_secret(SECRET.as_bytes())
        .mint(&claims)
        .unwrap()
}

#[tokio::test]
async fn audience_groups_viewers_by_hub_for_staff_only() {
    let (t, _fake) = with_fake().await;
    let moderator = token(Role::Moderator, "demo");
    let mut locations = Vec::new();
    for viewer in [
        hub_token("Dakar", "dakar-1"),
        hub_token("Dakar", "dakar-2"),
        hub_token("Nairobi", "nairobi-1"),
        token(Role::Viewer, "demo"),
    ] {
        let r = call(&t.router, sdp_req("/whep/demo", Some(&viewer), OFFER)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        locations.push((r.header(header::LOCATION).to_owned(), viewer));
    }

    let r = call(
        &t.router,
        empty(Method::GET, "/api/sessions/demo/viewers", Some(&moderator)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let j = r.json();
    assert_eq!(j["viewers"], 4);
    assert_eq!(j["speaker_live"], false);
    let hubs: Vec<(Value, u64)> = j["hubs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["hub"].clone(), h["viewers"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        hubs,
        vec![
            (Value::from("Dakar"), 2),
            (Value::from("Nairobi"), 1),
            (Value::Null, 1)
        ]
    );
    // No receiver report has arrived from the fake engine's viewers.
    assert_eq!(j["hubs"][0]["link"], "unknown");

    // A viewer that leaves is no longer counted.
    let (location, owner) = &locations[2];
    let r = call(&t.router, empty(Method::DELETE, location, Some(owner))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let j = call(
        &t.router,
        empty(Method::GET, "/api/sessions/demo/viewers", Some(&moderator)),
    )
    .await
    .json();
    assert_eq!(j["viewers"], 3);
    assert_eq!(j["hubs"].as_array().unwrap().len(), 2);

    // The audience is not for the audience; unknown sessions are named.
    let r = call(
        &t.router,
        empty(
            Method::GET,
            "/api/sessions/demo/viewers",
            Some(&token(Role::Viewer, "demo")),
        ),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let r = call(
        &t.router,
        empty(
            Method::GET,
            "/api/sessions/nosuch/viewers",
            Some(&token(Role::Moderator, "*")),
        ),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "session_not_found");
    let r = call(
        &t.router,
        empty(
            Method::GET,
            "/api/sessions/demo/viewers",
            Some(&token(Role::Venue, "demo")),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

// ---------------------------------------------------------------- keep-alive after early errors

/// A client keeps its connection for the next request after an error the server decided
/// from the headers alone (a declared size over the limit, a wrong Content-Type). The
/// server reads (or drains) the body first, so it never closes a connection the client
/// still believes reusable, and the next request on it never fails with a reset.
#[tokio::test]
async fn early_errors_leave_the_connection_usable() {
    let (t, _fake) = with_fake().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = t.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let viewer = token(Role::Viewer, "demo");
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/whep/demo");
    let offer = "v=0\r\n".repeat(800);

    let mut failures = Vec::new();
    for round in 0..30 {
        let requests = [
            (vec![b'x'; 96 * 1024], "application/sdp", 413),
            (vec![b'x'; 8 << 20], "application/sdp", 413),
            (offer.clone().into_bytes(), "text/plain", 415),
            (offer.clone().into_bytes(), "application/json", 415),
        ];
        for (body, content_type, want) in requests {
            let reply = client
                .post(&url)
                .bearer_auth(&viewer)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body)
                .send()
                .await;
            match reply {
                Ok(r) if r.status().as_u16() == want => {}
                Ok(r) => failures.push(format!(
                    "round {round}: {want} expected, got {}",
                    r.status()
                )),
                Err(e) => failures.push(format!("round {round}, {want} expected: {e:?}")),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
