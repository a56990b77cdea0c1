//! Moderator and owner actions that touch several things are one command to the floor
//! (issue 17): a queue PATCH happens whole or not at all, and who may withdraw a hand or end
//! a turn is decided by the floor in the same step as the action.

mod common;

use common::floor::{patch_queue, queue, raised};
use common::*;

fn viewer(name: &str) -> String {
    person(Role::Viewer, "demo", name, None)
}

#[tokio::test]
async fn a_queue_patch_happens_whole_or_not_at_all() {
    let t = without_media().await;
    let moderator = token(Role::Moderator, "demo");
    let a = raised(&t, &viewer("Ana")).await;
    let b = raised(&t, &viewer("Bo")).await;
    let before = queue(&t, &moderator).await;

    // A valid policy and pin, then a move of a hand that does not exist: nothing changes.
    patch_queue(
        &t,
        &moderator,
        json!({"policy": "least_spoken_first", "pin": b, "move": {"hand": 99, "position": 0}}),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "hand_not_found");
    let after = queue(&t, &moderator).await;
    assert_eq!(after["policy"], before["policy"]);
    assert_eq!(after["pinned"], before["pinned"]);
    assert_eq!(
        after["last_event_id"], before["last_event_id"],
        "no event stored"
    );

    // All valid: all applied, and the answer shows it.
    let r = patch_queue(
        &t,
        &moderator,
        json!({"policy": "least_spoken_first", "panel_size": 2, "pin": b, "move": {"hand": a, "position": 1}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let q = r.json();
    assert_eq!(q["policy"], "least_spoken_first");
    assert_eq!(q["panel_size"], 2);
    assert_eq!(q["pinned"], json!([b, a]));
}

#[tokio::test]
async fn only_the_owner_or_a_moderator_withdraws() {
    let t = without_media().await;
    let ana = viewer("Ana");
    let bo = viewer("Bo");
    let a = raised(&t, &ana).await;
    let withdraw = |token: String, hand: u64| {
        let router = t.router.clone();
        async move {
            call(
                &router,
                empty(
                    Method::DELETE,
                    &format!("/api/sessions/demo/hands/{hand}"),
                    Some(&token),
                ),
            )
            .await
        }
    };
    withdraw(bo.clone(), a)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    withdraw(bo.clone(), 99)
        .await
        .assert_error(StatusCode::NOT_FOUND, "hand_not_found");
    let r = withdraw(ana.clone(), a).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json(), json!({"hand": a, "ended_turn": false}));

    // A moderator's withdrawal of a granted hand ends the turn.
    let moderator = token(Role::Moderator, "demo");
    let b = raised(&t, &bo).await;
    let g = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions/demo/floor",
            Some(&moderator),
            json!({"hand": b}),
        ),
    )
    .await;
    assert_eq!(g.status, StatusCode::CREATED, "{:?}", g.body);
    let r = withdraw(moderator, b).await;
    assert_eq!(r.json(), json!({"hand": b, "ended_turn": true}));
}

#[tokio::test]
async fn a_holder_ends_only_their_own_turn() {
    let t = without_media().await;
    let moderator = token(Role::Moderator, "demo");
    let ana = viewer("Ana");
    let bo = viewer("Bo");
    let a = raised(&t, &ana).await;
    let b = raised(&t, &bo).await;
    let grant = call(
        &t.router,
        json_req(
            Method::POST,
            "/api/sessions/demo/floor",
            Some(&moderator),
            json!({"hand": a}),
        ),
    )
    .await;
    assert_eq!(grant.status, StatusCode::CREATED, "{:?}", grant.body);
    let end = |token: String, query: String| {
        let router = t.router.clone();
        async move {
            call(
                &router,
                empty(
                    Method::DELETE,
                    &format!("/api/sessions/demo/floor{query}"),
                    Some(&token),
                ),
            )
            .await
        }
    };
    // Bo holds nothing; Ana may not name another hand.
    end(bo.clone(), String::new())
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    end(ana.clone(), format!("?hand={b}"))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let r = end(ana.clone(), format!("?hand={a}")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json(), json!({"hand": a, "reason": "done"}));
    // Ended: a second try is refused like any non-holder's.
    end(ana, String::new())
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
}
