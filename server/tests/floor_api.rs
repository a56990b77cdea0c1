//! The floor API through the real router (`oneshot`, in-memory SQLite, fake media engine):
//! a whole turn from raise to revoke, the floor log and report it leaves, speaker WHIP only
//! while holding the floor, and the abuse limit. Restart, SSE resume and real media are in
//! the `floor_*` tests that run the binary.

mod common;

use common::floor::raise;
use common::*;

#[tokio::test]
async fn a_turn_from_raise_to_revoke_with_log_and_report() {
    let (t, fake) = with_fake().await;
    let moderator = token(Role::Moderator, "demo");
    let ana = person(Role::Viewer, "demo", "Ana", None);
    let hub = person(Role::Hub, "demo", "Nairobi hub", Some("Nairobi"));

    let r = raise(&t, &ana, json!({"topic": "Access", "language": "en"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let ana_hand = r.json()["hand"]["id"].as_u64().unwrap();
    assert_eq!(r.json()["position"], 0);
    assert_eq!(r.json()["hand"]["topic"], "Access");
    raise(&t, &ana, json!({}))
        .await
        .assert_error(StatusCode::CONFLICT, "hand_already_open");

    let r = raise(&t, &hub, json!({"topic": "Youth", "head_count": 40})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["position"], 1);
    assert_eq!(r.json()["hand"]["hub"], "Nairobi");
    assert_eq!(r.json()["hand"]["is_hub"], true);
    // Individuals do not report head-counts.
    let bo = person(Role::Viewer, "demo", "Bo", None);
    raise(&t, &bo, json!({"head_count": 3}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid");
    raise(&t, &bo, json!({"topic": "x".repeat(201)}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid");

    // Anyone of the session reads the queue; the moderator pins the hub to the top.
    let q = call(
        &t.router,
        empty(Method::GET, "/api/sessions/demo/queue", Some(&ana)),
    )
    .await;
    assert_eq!(q.status, StatusCode::OK);
    assert_eq!(q.json()["hands"].as_array().unwrap().len(), 2);
    assert_eq!(q.json()["policy"], "fifo");
    let hub_hand = q.json()["hands"][1]["id"].as_u64().unwrap();
    let q = call(
        &t.router,
        json_req(
            Method::PATCH,
            "/api/sessions/demo/queue",
            Some(&moderator),
            json!({"pin": hub_hand}),
        ),
    )
    .await;
    assert_eq!(q.status, StatusCode::OK, "{:?}", q.body);
    assert_eq!(q.json()["hands"][0]["id"], hub_hand);
    assert_eq!(q.json()["hands"][0]["pinned"], true);
    call(
        &t.router,
        json_req(
            Method::PATCH,
            "/api/sessions/demo/queue",
            Some(&ana),
            json!({"pin": ana_hand}),
        ),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    call(
        &t.router,
        json_req(
            Method::PATCH,
            "/api/sessions/demo/queue",
            Some(&moderator),
            json!({}),
        ),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "nothing_to_change");

    // Ana cannot publish before her grant.
    call(&t.router, sdp_req("/whip/demo", Some(&ana), OFFER))
        .await
        .assert_error(StatusCode::FORBIDDEN, "not_floor_holder");

    // Grant Ana explicitly for 60 s.
    let g = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions/demo/floor",
            Some(&moderator),
            json!({"hand": ana_hand, "limit_s": 60}),
        ),
    )
    .await;
    assert_eq!(g.status, StatusCode::CREATED, "{:?}", g.body);
    let remaining = g.json()["remaining_ms"].as_u64().unwrap();
    assert!((58_000..=60_000).contains(&remaining), "{remaining}");
    // One holder at a time.
    call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions/demo/floor",
            Some(&moderator),
            json!({}),
        ),
    )
    .await
    .assert_error(StatusCode::CONFLICT, "floor_busy");

    // Now Ana publishes as the speaker; the hub (not holding) still cannot.
    let w = call(&t.router, sdp_req("/whip/demo", Some(&ana), OFFER)).await;
    assert_eq!(w.status, StatusCode::CREATED, "{:?}", w.body);
    let speaker_peer: u64 = w
        .header(header::LOCATION)
        .rsplit('/')
        .next()
        .unwrap()
        .parse::<PeerId>()
        .unwrap()
        .0;
    call(&t.router, sdp_req("/whip/demo", Some(&hub), OFFER))
        .await
        .assert_error(StatusCode::FORBIDDEN, "not_floor_holder");

    // Extend, then revoke: the speaker's peer is closed.
    let e = call(
        &t.router,
        json_req(
            Method::PATCH,
            "/api/sessions/demo/floor",
            Some(&moderator),
            json!({"extend_s": 30}),
        ),
    )
    .await;
    assert_eq!(e.status, StatusCode::OK, "{:?}", e.body);
    assert!(e.json()["remaining_ms"].as_u64().unwrap() > 80_000);
    let d = call(
        &t.router,
        empty(Method::DELETE, "/api/sessions/demo/floor", Some(&moderator)),
    )
    .await;
    assert_eq!(d.status, StatusCode::OK, "{:?}", d.body);
    assert_eq!(d.json()["reason"], "revoked");
    let mut closed = false;
    for _ in 0..100 {
        if !fake.peers.lock().unwrap().contains(&PeerId(speaker_peer)) {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed, "the speaker's peer is closed when the turn ends");
    call(&t.router, sdp_req("/whip/demo", Some(&ana), OFFER))
        .await
        .assert_error(StatusCode::FORBIDDEN, "not_floor_holder");

    // The hub is granted next (first in the queue), and ends its own turn.
    let g = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions/demo/floor",
            Some(&moderator),
            json!({}),
        ),
    )
    .await;
    assert_eq!(g.json()["hand"]["id"], hub_hand);
    call(
        &t.router,
        empty(Method::DELETE, "/api/sessions/demo/floor", Some(&ana)),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let d = call(
        &t.router,
        empty(Method::DELETE, "/api/sessions/demo/floor", Some(&hub)),
    )
    .await;
    assert_eq!(d.json()["reason"], "done");

    // The floor log, JSON and CSV, and the report.
    let log = call(
        &t.router,
        empty(
            Method::GET,
            "/api/sessions/demo/floor-log",
            Some(&moderator),
        ),
    )
    .await;
    assert_eq!(log.status, StatusCode::OK);
    let entries = log.json()["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["name"], "Ana");
    assert_eq!(entries[0]["end_reason"], "revoked");
    assert_eq!(entries[1]["hub"], "Nairobi");
    assert_eq!(entries[1]["end_reason"], "done");
    let csv = call(
        &t.router,
        empty(
            Method::GET,
            "/api/sessions/demo/floor-log?format=csv",
            Some(&moderator),
        ),
    )
    .await;
    assert!(csv.header(header::CONTENT_TYPE).starts_with("text/csv"));
    let text = String::from_utf8(csv.body.to_vec()).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.lines().nth(1).unwrap().contains(",Ana,"), "{text}");
    call(
        &t.router,
        empty(Method::GET, "/api/sessions/demo/floor-log", Some(&ana)),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");

    let report = call(
        &t.router,
        empty(Method::GET, "/api/sessions/demo/report", Some(&moderator)),
    )
    .await;
    assert_eq!(report.status, StatusCode::OK, "{:?}", report.body);
    let r = report.json();
    assert_eq!(r["hands"]["raised"], 2);
    assert_eq!(r["hands"]["granted"], 2);
    assert_eq!(r["hubs"], 1);
    assert_eq!(r["hub_head_count"], 40);
    assert_eq!(r["turns_ended"]["revoked"], 1);
    assert_eq!(r["speaking_by_hub"][0]["name"], "Nairobi");
    assert!(r["wait_s"]["p95"].as_f64().is_some());
}

#[tokio::test]
async fn withdraw_rules_and_the_abuse_limit() {
    let t = test_app_with(Media::unavailable("no media in this test"), |c| {
        c.floor_actions_per_minute = 3;
    })
    .await;
    let moderator = token(Role::Moderator, "demo");
    let ana = person(Role::Viewer, "demo", "Ana", None);
    let bo = person(Role::Viewer, "demo", "Bo", None);

    let hand = raise(&t, &ana, json!({})).await.json()["hand"]["id"]
        .as_u64()
        .unwrap();
    let uri = format!("/api/sessions/demo/hands/{hand}");
    call(&t.router, empty(Method::DELETE, &uri, Some(&bo)))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let w = call(&t.router, empty(Method::DELETE, &uri, Some(&ana))).await;
    assert_eq!(w.status, StatusCode::OK, "{:?}", w.body);
    assert_eq!(w.json()["ended_turn"], false);
    call(&t.router, empty(Method::DELETE, &uri, Some(&ana)))
        .await
        .assert_error(StatusCode::NOT_FOUND, "hand_not_found");

    // Third action in the minute is allowed, the fourth is not.
    let hand = raise(&t, &ana, json!({})).await.json()["hand"]["id"]
        .as_u64()
        .unwrap();
    let r = raise(&t, &ana, json!({})).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = r.header(header::RETRY_AFTER).parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Moderators are not rate-limited, and their withdrawal of a granted hand ends the turn.
    call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions/demo/floor",
            Some(&moderator),
            json!({}),
        ),
    )
    .await;
    let w = call(
        &t.router,
        empty(
            Method::DELETE,
            &format!("/api/sessions/demo/hands/{hand}"),
            Some(&moderator),
        ),
    )
    .await;
    assert_eq!(w.json()["ended_turn"], true, "{:?}", w.body);

    // Bad input says what is wrong.
    call(
        &t.router,
        req(Method::POST, "/api/sessions/demo/hands", Some(&bo))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{not json"))
            .unwrap(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    raise(&t, &bo, json!({"topic": "t", "colour": "red"}))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_json");
    call(
        &t.router,
        empty(
            Method::GET,
            "/api/sessions/nope/queue",
            Some(&token(Role::Viewer, "*")),
        ),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "session_not_found");
    // Staff roles do not raise hands.
    raise(&t, &moderator, json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
}
