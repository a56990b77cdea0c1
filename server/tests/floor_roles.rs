//! The floor API's role checks and input validation against the real `floorcast` binary
//! (docs/CONTRACT.md, "Floor queue"): who may raise, withdraw, grant, extend, end and read
//! the log; one open hand per person and per hub; JSON errors for bad input; the per-
//! participant rate limit on raise/withdraw; the floor log (JSON and CSV) and the report.
//!
//! Each test starts its own server (port 0, temporary data dir) and talks plain HTTP.

use std::time::Duration;

use floorcast_load::server_process::{ServerOptions, ServerProcess};
use floorcast_load::token::{self, Claims};
use floorcast_load::whip::error_code;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "floor-roles-test-secret-0123456789abcdef";
const SESSION: &str = "plenary";
const OTHER: &str = "side-room";
/// The default of `floor_actions_per_minute` (server/src/config.rs).
const ACTIONS_PER_MINUTE: usize = 20;
const LIMIT: Duration = Duration::from_secs(30);

struct Node {
    server: ServerProcess,
    client: Client,
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    fn code(&self) -> Option<String> {
        error_code(&self.text)
    }

    /// Asserts the status and, for errors, a JSON body `{"error": code, "message": …}`.
    fn expect(self, what: &str, status: StatusCode, code: Option<&str>) -> Self {
        assert_eq!(self.status, status, "{what}: {}", self.text);
        if !status.is_success() {
            let body = self.json();
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{what}: error without a message: {}",
                self.text
            );
            let got = self.code();
            assert!(got.is_some(), "{what}: no `error` field: {}", self.text);
            if let Some(want) = code {
                assert_eq!(got.as_deref(), Some(want), "{what}: {}", self.text);
            }
        }
        self
    }
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

impl Node {
    async fn start() -> Node {
        let server = ServerProcess::start(ServerOptions::new(BIN, SECRET))
            .await
            .expect("floorcast starts");
        let client = floorcast_load::scenarios::hands::client();
        for s in [SESSION, OTHER] {
            if let Err(e) = server.create_session(&client, s).await {
                panic!("create {s}: {e}\n{}", server.log_tail());
            }
        }
        Node { server, client }
    }

    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Body) -> Reply {
        let mut req = self.client.request(method, self.server.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(ct, bytes) => req.header(CONTENT_TYPE, ct).body(bytes),
        };
        let resp = req.send().await.expect("request reaches the server");
        Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            text: resp.text().await.unwrap_or_default(),
        }
    }

    async fn raise(&self, session: &str, token: &str, body: Value) -> Reply {
        self.call(
            Method::POST,
            &format!("/api/sessions/{session}/hands"),
            Some(token),
            Body::Json(body),
        )
        .await
    }

    async fn withdraw(&self, session: &str, hand: u64, token: &str) -> Reply {
        self.call(
            Method::DELETE,
            &format!("/api/sessions/{session}/hands/{hand}"),
            Some(token),
            Body::None,
        )
        .await
    }

    async fn grant(&self, token: Option<&str>, body: Value) -> Reply {
        self.call(
            Method::POST,
            &format!("/api/sessions/{SESSION}/floor"),
            token,
            Body::Json(body),
        )
        .await
    }

    fn log_tail(&self) -> String {
        self.server.log_tail()
    }
}

fn tok(role: &str, session: &str, name: &str) -> String {
    token::mint(SECRET, role, session, name)
}

fn hub_tok(sub: &str, hub: &str) -> String {
    let mut c = Claims::new("hub", SESSION, sub, Duration::from_secs(3600));
    c.hub = Some(hub.to_owned());
    token::sign(&c, SECRET).unwrap()
}

fn expired(role: &str, session: &str) -> String {
    token::sign(
        &Claims::expired(role, session, Duration::from_secs(600)),
        SECRET,
    )
    .unwrap()
}

fn hand_id(r: &Reply) -> u64 {
    r.json()["hand"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no hand id: {}", r.text))
}

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("test finished within its time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_moderator_of_the_session_controls_the_floor() {
    bounded(async {
        let n = Node::start().await;
        let moderator = tok("moderator", SESSION, "mod");
        // An empty queue: nothing to grant.
        n.grant(Some(&moderator), json!({})).await.expect(
            "grant, empty queue",
            StatusCode::CONFLICT,
            Some("queue_empty"),
        );
        let speaker = tok("viewer", SESSION, "alice");
        let raised = n
            .raise(SESSION, &speaker, json!({"topic": "budget"}))
            .await
            .expect("raise", StatusCode::CREATED, None);
        let hand = hand_id(&raised);
        assert_eq!(raised.json()["position"], 0, "{}", raised.text);

        // Every other role of the session is forbidden; so is a moderator of another one.
        for role in ["viewer", "hub", "speaker", "captioner", "venue", "operator"] {
            n.grant(Some(&tok(role, SESSION, "x")), json!({"hand": hand}))
                .await
                .expect(
                    &format!("grant by {role}"),
                    StatusCode::FORBIDDEN,
                    Some("forbidden"),
                );
        }
        n.grant(
            Some(&tok("moderator", OTHER, "other-mod")),
            json!({"hand": hand}),
        )
        .await
        .expect(
            "grant by another session's moderator",
            StatusCode::FORBIDDEN,
            Some("forbidden"),
        );
        n.grant(Some(&expired("moderator", SESSION)), json!({"hand": hand}))
            .await
            .expect(
                "grant with an expired token",
                StatusCode::UNAUTHORIZED,
                Some("expired_token"),
            );
        n.grant(None, json!({"hand": hand})).await.expect(
            "grant without a token",
            StatusCode::UNAUTHORIZED,
            Some("missing_token"),
        );
        let forged = token::mint(
            "another-secret-0123456789abcdef-0123",
            "moderator",
            SESSION,
            "m",
        );
        n.grant(Some(&forged), json!({"hand": hand})).await.expect(
            "grant with a token of another key",
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        );
        n.grant(Some(&moderator), json!({"hand": 999_999}))
            .await
            .expect(
                "grant of an unknown hand",
                StatusCode::NOT_FOUND,
                Some("hand_not_found"),
            );
        // Reads: any token of the session; not another session's, not an expired one.
        let queue = format!("/api/sessions/{SESSION}/queue");
        n.call(
            Method::GET,
            &queue,
            Some(&tok("captioner", SESSION, "c")),
            Body::None,
        )
        .await
        .expect("queue by a captioner", StatusCode::OK, None);
        n.call(
            Method::GET,
            &queue,
            Some(&tok("viewer", OTHER, "v")),
            Body::None,
        )
        .await
        .expect(
            "queue with another session's token",
            StatusCode::FORBIDDEN,
            Some("forbidden"),
        );
        n.call(
            Method::GET,
            &queue,
            Some(&expired("viewer", SESSION)),
            Body::None,
        )
        .await
        .expect(
            "queue, expired token",
            StatusCode::UNAUTHORIZED,
            Some("expired_token"),
        );
        n.call(
            Method::PATCH,
            &queue,
            Some(&speaker),
            Body::Json(json!({"pin": hand})),
        )
        .await
        .expect(
            "queue PATCH by a viewer",
            StatusCode::FORBIDDEN,
            Some("forbidden"),
        );

        // The moderator grants, with a per-grant limit.
        let turn = n
            .grant(Some(&moderator), json!({"hand": hand, "limit_s": 60}))
            .await
            .expect("grant by the moderator", StatusCode::CREATED, None)
            .json();
        assert_eq!(turn["hand"]["id"], hand, "{turn}");
        let granted = turn["granted_at_ms"].as_u64().expect("granted_at_ms");
        let ends = turn["ends_at_ms"].as_u64().expect("ends_at_ms");
        assert_eq!(ends - granted, 60_000, "limit_s 60: {turn}");
        let remaining = turn["remaining_ms"].as_u64().expect("remaining_ms");
        assert!((55_000..=60_000).contains(&remaining), "{turn}");
        let other = n
            .raise(SESSION, &tok("viewer", SESSION, "bob"), json!({}))
            .await
            .expect("raise while someone speaks", StatusCode::CREATED, None);
        n.grant(Some(&moderator), json!({"hand": hand_id(&other)}))
            .await
            .expect("second grant", StatusCode::CONFLICT, Some("floor_busy"));

        // Extending: moderator only.
        let floor = format!("/api/sessions/{SESSION}/floor");
        n.call(
            Method::PATCH,
            &floor,
            Some(&speaker),
            Body::Json(json!({"extend_s": 600})),
        )
        .await
        .expect(
            "extend by the holder",
            StatusCode::FORBIDDEN,
            Some("forbidden"),
        );
        let extended = n
            .call(
                Method::PATCH,
                &floor,
                Some(&moderator),
                Body::Json(json!({"extend_s": 30})),
            )
            .await
            .expect("extend by the moderator", StatusCode::OK, None)
            .json();
        assert_eq!(extended["ends_at_ms"].as_u64(), Some(ends + 30_000));

        // Ending: someone else's turn is not a viewer's to end; the holder may end theirs.
        n.call(
            Method::DELETE,
            &floor,
            Some(&tok("viewer", SESSION, "bob")),
            Body::None,
        )
        .await
        .expect(
            "end by a viewer who does not hold the floor",
            StatusCode::FORBIDDEN,
            Some("forbidden"),
        );
        n.call(
            Method::DELETE,
            &floor,
            Some(&tok("moderator", OTHER, "other-mod")),
            Body::None,
        )
        .await
        .expect(
            "end by another session's moderator",
            StatusCode::FORBIDDEN,
            Some("forbidden"),
        );
        let done = n
            .call(
                Method::DELETE,
                &format!("{floor}?hand={hand}"),
                Some(&speaker),
                Body::None,
            )
            .await
            .expect("end by the holder", StatusCode::OK, None);
        let q = n
            .call(Method::GET, &queue, Some(&speaker), Body::None)
            .await
            .expect("queue", StatusCode::OK, None)
            .json();
        assert_eq!(
            q["floor"].as_array().map(Vec::len),
            Some(0),
            "{q}\n{done:?}",
            done = done.text
        );
        assert_eq!(
            floorcast_load::scenarios::hands::queue_ids(&q),
            vec![hand_id(&other)],
            "{q}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_open_hand_per_person_and_per_hub() {
    bounded(async {
        let n = Node::start().await;
        let alice = tok("viewer", SESSION, "alice");
        let first = n
            .raise(
                SESSION,
                &alice,
                json!({"topic": "a question", "language": "fr"}),
            )
            .await
            .expect("raise", StatusCode::CREATED, None);
        let hand = first.json()["hand"].clone();
        assert_eq!(hand["topic"], "a question");
        assert_eq!(hand["language"], "fr");
        assert_eq!(hand["is_hub"], false);
        assert!(hand["raised_at_ms"].as_u64().is_some(), "{hand}");
        let alice_hand = hand_id(&first);
        n.raise(SESSION, &alice, json!({})).await.expect(
            "second raise",
            StatusCode::CONFLICT,
            Some("hand_already_open"),
        );

        // A hub raises for the hub; a second desk of the same hub cannot open another hand.
        let lyon = n
            .raise(
                SESSION,
                &hub_tok("lyon-desk-1", "lyon"),
                json!({"head_count": 12}),
            )
            .await
            .expect("hub raise", StatusCode::CREATED, None);
        let h = lyon.json()["hand"].clone();
        assert_eq!(
            (h["is_hub"].clone(), h["hub"].clone()),
            (json!(true), json!("lyon")),
            "{h}"
        );
        assert_eq!(h["head_count"], 12, "{h}");
        assert_eq!(lyon.json()["position"], 1, "{}", lyon.text);
        n.raise(
            SESSION,
            &hub_tok("lyon-desk-2", "lyon"),
            json!({"head_count": 3}),
        )
        .await
        .expect(
            "second hub token of the same hub",
            StatusCode::CONFLICT,
            Some("hand_already_open"),
        );
        n.raise(SESSION, &hub_tok("porto-desk", "porto"), json!({}))
            .await
            .expect("another hub", StatusCode::CREATED, None);
        // A person watching from the hub still has a hand of their own.
        let mut c = Claims::new("viewer", SESSION, "carol", Duration::from_secs(3600));
        c.hub = Some("lyon".into());
        let carol = token::sign(&c, SECRET).unwrap();
        let carol_hand = n.raise(SESSION, &carol, json!({})).await.expect(
            "a viewer in a hub",
            StatusCode::CREATED,
            None,
        );
        assert_eq!(carol_hand.json()["hand"]["is_hub"], false);
        n.raise(SESSION, &tok("speaker", SESSION, "sam"), json!({}))
            .await
            .expect("speaker role raises", StatusCode::CREATED, None);

        // Staff roles do not raise hands; nor do tokens of another session or expired ones.
        for role in ["moderator", "captioner", "venue", "operator"] {
            n.raise(SESSION, &tok(role, SESSION, "staff"), json!({}))
                .await
                .expect(
                    &format!("raise by {role}"),
                    StatusCode::FORBIDDEN,
                    Some("forbidden"),
                );
        }
        n.raise(SESSION, &tok("viewer", OTHER, "dave"), json!({}))
            .await
            .expect(
                "raise with another session's token",
                StatusCode::FORBIDDEN,
                Some("forbidden"),
            );
        n.raise(SESSION, &expired("viewer", SESSION), json!({}))
            .await
            .expect(
                "raise, expired token",
                StatusCode::UNAUTHORIZED,
                Some("expired_token"),
            );
        n.raise("no-such-session", &tok("viewer", "*", "eve"), json!({}))
            .await
            .expect("raise in an unknown session", StatusCode::NOT_FOUND, None);

        // Withdrawing: the owner or a moderator of the session, nobody else.
        let bob = tok("viewer", SESSION, "bob");
        n.withdraw(SESSION, alice_hand, &bob).await.expect(
            "withdraw someone else's hand",
            StatusCode::FORBIDDEN,
            Some("forbidden"),
        );
        n.withdraw(SESSION, alice_hand, &tok("moderator", OTHER, "m2"))
            .await
            .expect(
                "withdraw by another session's moderator",
                StatusCode::FORBIDDEN,
                Some("forbidden"),
            );
        let w = n
            .withdraw(SESSION, alice_hand, &alice)
            .await
            .expect("owner withdraws", StatusCode::OK, None)
            .json();
        assert_eq!(w, json!({"hand": alice_hand, "ended_turn": false}));
        n.withdraw(SESSION, alice_hand, &alice).await.expect(
            "withdraw twice",
            StatusCode::NOT_FOUND,
            Some("hand_not_found"),
        );
        let lyon_hand = hand_id(&lyon);
        let w = n
            .withdraw(SESSION, lyon_hand, &tok("moderator", SESSION, "mod"))
            .await
            .expect("moderator withdraws a hub's hand", StatusCode::OK, None)
            .json();
        assert_eq!(w["hand"], lyon_hand);
        // Once withdrawn, a hand may be raised again (with a new id).
        let again = n
            .raise(SESSION, &hub_tok("lyon-desk-2", "lyon"), json!({}))
            .await
            .expect(
                "hub raises again after the withdrawal",
                StatusCode::CREATED,
                None,
            );
        assert!(
            hand_id(&again) > hand_id(&carol_hand),
            "ids rise: {}",
            again.text
        );
        let again = n.raise(SESSION, &alice, json!({})).await.expect(
            "alice raises again",
            StatusCode::CREATED,
            None,
        );

        // The owner withdrawing a granted hand ends the turn.
        let moderator = tok("moderator", SESSION, "mod");
        n.grant(Some(&moderator), json!({"hand": hand_id(&again)}))
            .await
            .expect("grant", StatusCode::CREATED, None);
        let w = n
            .withdraw(SESSION, hand_id(&again), &alice)
            .await
            .expect("holder withdraws", StatusCode::OK, None)
            .json();
        assert_eq!(w["ended_turn"], true, "{w}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_are_validated_with_json_errors() {
    bounded(async {
        let n = Node::start().await;
        let hands = format!("/api/sessions/{SESSION}/hands");
        let long: String = "x".repeat(201);
        n.raise(
            SESSION,
            &tok("viewer", SESSION, "a"),
            json!({"topic": long}),
        )
        .await
        .expect("topic of 201 characters", StatusCode::BAD_REQUEST, None);
        // The limit counts characters, not bytes: 200 two-byte characters pass.
        let accented: String = "é".repeat(200);
        let r = n
            .raise(
                SESSION,
                &tok("viewer", SESSION, "b"),
                json!({"topic": accented}),
            )
            .await
            .expect(
                "topic of 200 characters (400 bytes)",
                StatusCode::CREATED,
                None,
            );
        assert_eq!(
            r.json()["hand"]["topic"]
                .as_str()
                .map(|t| t.chars().count()),
            Some(200)
        );
        n.call(
            Method::POST,
            &hands,
            Some(&tok("viewer", SESSION, "c")),
            Body::Raw("application/json", br#"{"topic": "unterminated"#.to_vec()),
        )
        .await
        .expect("malformed JSON", StatusCode::BAD_REQUEST, None);
        let wrong_type = n
            .raise(SESSION, &tok("viewer", SESSION, "d"), json!({"topic": 42}))
            .await;
        assert!(
            matches!(
                wrong_type.status,
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
            ) && wrong_type.code().is_some(),
            "topic of the wrong type: {} {}",
            wrong_type.status,
            wrong_type.text
        );
        n.raise(
            SESSION,
            &tok("viewer", SESSION, "e"),
            json!({"language": "x".repeat(100)}),
        )
        .await
        .expect(
            "language tag of 100 characters",
            StatusCode::BAD_REQUEST,
            None,
        );
        n.call(
            Method::POST,
            &hands,
            Some(&tok("viewer", SESSION, "f")),
            Body::Raw("text/plain", b"{}".to_vec()),
        )
        .await
        .expect(
            "not JSON content type",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        );
        let huge = format!(r#"{{"topic":"{}"}}"#, "y".repeat(70 * 1024));
        // On a connection of its own: the server answers 413 without reading the body and
        // closes that connection, which a pooled client could otherwise reuse for the next
        // request (and fail with an incomplete message).
        let alone = Node {
            server: n.server,
            client: Client::builder().no_proxy().build().unwrap(),
        };
        alone
            .call(
                Method::POST,
                &hands,
                Some(&tok("viewer", SESSION, "g")),
                Body::Raw("application/json", huge.into_bytes()),
            )
            .await
            .expect("body over 64 KiB", StatusCode::PAYLOAD_TOO_LARGE, None);
        let n = Node {
            server: alone.server,
            client: n.client,
        };
        let moderator = tok("moderator", SESSION, "mod");
        let bad_policy = n
            .call(
                Method::PATCH,
                &format!("/api/sessions/{SESSION}/queue"),
                Some(&moderator),
                Body::Json(json!({"policy": "loudest_first"})),
            )
            .await;
        assert!(
            bad_policy.status.is_client_error() && bad_policy.code().is_some(),
            "unknown policy: {} {}",
            bad_policy.status,
            bad_policy.text
        );
        n.call(
            Method::DELETE,
            &format!("/api/sessions/{SESSION}/hands/not-a-number"),
            Some(&moderator),
            Body::None,
        )
        .await
        .expect(
            "hand id that is not a number",
            StatusCode::BAD_REQUEST,
            None,
        );
        // Nothing above left a hand behind except the valid one.
        let q = n
            .call(
                Method::GET,
                &format!("/api/sessions/{SESSION}/queue"),
                Some(&moderator),
                Body::None,
            )
            .await
            .expect("queue", StatusCode::OK, None)
            .json();
        assert_eq!(
            q["hands"].as_array().map(Vec::len),
            Some(1),
            "{q}\n{}",
            n.log_tail()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raise_and_withdraw_are_rate_limited_per_participant() {
    bounded(async {
        let n = Node::start().await;
        let eager = tok("viewer", SESSION, "eager");
        // Raise and withdraw, alternating: N actions pass.
        let mut last = None;
        for i in 0..ACTIONS_PER_MINUTE {
            let r = if i % 2 == 0 {
                let r = n.raise(SESSION, &eager, json!({})).await.expect(
                    &format!("action {i} (raise)"),
                    StatusCode::CREATED,
                    None,
                );
                last = Some(hand_id(&r));
                r
            } else {
                n.withdraw(SESSION, last.take().unwrap(), &eager)
                    .await
                    .expect(&format!("action {i} (withdraw)"), StatusCode::OK, None)
            };
            assert!(r.headers.get(RETRY_AFTER).is_none());
        }
        // The next one within the minute is refused, with a Retry-After in seconds.
        let r = n.raise(SESSION, &eager, json!({})).await.expect(
            "action N+1",
            StatusCode::TOO_MANY_REQUESTS,
            Some("rate_limited"),
        );
        let retry: u64 = r
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("Retry-After in seconds: {:?}", r.headers));
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        // Refused raises did not open a hand.
        let moderator = tok("moderator", SESSION, "mod");
        let q = n
            .call(
                Method::GET,
                &format!("/api/sessions/{SESSION}/queue"),
                Some(&moderator),
                Body::None,
            )
            .await
            .expect("queue", StatusCode::OK, None)
            .json();
        assert_eq!(q["hands"].as_array().map(Vec::len), Some(0), "{q}");
        // Others are not affected, and a moderator's withdrawals are not limited.
        let calm = tok("viewer", SESSION, "calm");
        let r = n.raise(SESSION, &calm, json!({})).await.expect(
            "another participant",
            StatusCode::CREATED,
            None,
        );
        n.withdraw(SESSION, hand_id(&r), &moderator).await.expect(
            "moderator withdraws",
            StatusCode::OK,
            None,
        );
        // The same person in another session has a budget of their own.
        let elsewhere = token::mint(SECRET, "viewer", OTHER, "eager");
        n.raise(OTHER, &elsewhere, json!({})).await.expect(
            "same sub, other session",
            StatusCode::CREATED,
            None,
        );
        n.raise(SESSION, &eager, json!({})).await.expect(
            "still limited",
            StatusCode::TOO_MANY_REQUESTS,
            Some("rate_limited"),
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_log_and_report_for_moderators() {
    bounded(async {
        let n = Node::start().await;
        let moderator = tok("moderator", SESSION, "mod");
        let people: Vec<String> = ["ann", "ben", "cat"]
            .iter()
            .map(|p| tok("viewer", SESSION, p))
            .collect();
        let mut ids = Vec::new();
        for (i, t) in people.iter().enumerate() {
            let topic = if i == 0 {
                "=cmd|' /C calc'!A0, \"quoted\""
            } else {
                "plain"
            };
            let r = n
                .raise(SESSION, t, json!({"topic": topic, "language": "en"}))
                .await
                .expect("raise", StatusCode::CREATED, None);
            ids.push(hand_id(&r));
        }
        let floor = format!("/api/sessions/{SESSION}/floor");
        // ann: granted, ends her turn (done). ben: granted, revoked. cat: withdraws.
        n.grant(Some(&moderator), json!({"hand": ids[0]}))
            .await
            .expect("grant ann", StatusCode::CREATED, None);
        n.call(Method::DELETE, &floor, Some(&people[0]), Body::None)
            .await
            .expect("ann is done", StatusCode::OK, None);
        n.grant(Some(&moderator), json!({"hand": ids[1]}))
            .await
            .expect("grant ben", StatusCode::CREATED, None);
        let revoked = n
            .call(Method::DELETE, &floor, Some(&moderator), Body::None)
            .await
            .expect("revoke ben", StatusCode::OK, None)
            .json();
        assert_eq!(revoked["hand"], ids[1], "{revoked}");
        n.withdraw(SESSION, ids[2], &people[2])
            .await
            .expect("cat withdraws", StatusCode::OK, None);

        // Only moderators and operators read the log and the report.
        let log = format!("/api/sessions/{SESSION}/floor-log");
        let report = format!("/api/sessions/{SESSION}/report");
        for path in [&log, &report] {
            n.call(Method::GET, path, Some(&people[0]), Body::None)
                .await
                .expect(
                    &format!("{path} by a viewer"),
                    StatusCode::FORBIDDEN,
                    Some("forbidden"),
                );
            n.call(
                Method::GET,
                path,
                Some(&tok("moderator", OTHER, "m")),
                Body::None,
            )
            .await
            .expect(
                &format!("{path} by another session's moderator"),
                StatusCode::FORBIDDEN,
                Some("forbidden"),
            );
        }
        let entries = n
            .call(
                Method::GET,
                &log,
                Some(&tok("operator", "*", "ops")),
                Body::None,
            )
            .await
            .expect("floor log by an operator", StatusCode::OK, None)
            .json();
        let entries = entries["entries"].as_array().cloned().unwrap_or_default();
        assert_eq!(entries.len(), 2, "a row per turn: {entries:?}");
        assert_eq!(entries[0]["hand"], ids[0]);
        assert_eq!(entries[0]["sub"], "viewer-ann");
        assert_eq!(entries[0]["name"], "ann");
        assert_eq!(entries[0]["language"], "en");
        assert_eq!(entries[0]["end_reason"], "done");
        assert_eq!(entries[1]["end_reason"], "revoked");
        for e in &entries {
            for key in ["start", "end"] {
                let t = e[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("{key} as text: {e}"));
                assert!(
                    t.len() >= 20 && t.as_bytes()[10] == b'T',
                    "RFC 3339 {key}: {t}"
                );
            }
            assert!(e["duration_s"].as_f64().is_some_and(|d| d >= 0.0), "{e}");
        }

        let csv = n
            .call(
                Method::GET,
                &format!("{log}?format=csv"),
                Some(&moderator),
                Body::None,
            )
            .await
            .expect("floor log CSV", StatusCode::OK, None);
        let ct = csv
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(ct.starts_with("text/csv"), "content type {ct}");
        let lines: Vec<&str> = csv.text.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines.len(),
            3,
            "header + a row per ended turn:\n{}",
            csv.text
        );
        let header: Vec<&str> = lines[0].split(',').collect();
        for col in [
            "hand",
            "sub",
            "name",
            "hub",
            "topic",
            "language",
            "start",
            "end",
            "duration_s",
            "end_reason",
        ] {
            assert!(header.contains(&col), "CSV header has {col}: {}", lines[0]);
        }
        assert!(
            lines[1].starts_with(&format!("{},", ids[0])),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with(",done"), "{}", lines[1]);
        assert!(lines[2].ends_with(",revoked"), "{}", lines[2]);
        // The topic is quoted (comma, quotes) and cannot run as a spreadsheet formula.
        assert!(
            !lines[1].contains(",=cmd") && !lines[1].contains(",\"=cmd"),
            "formula escaped: {}",
            lines[1]
        );
        assert!(
            lines[1].contains("\"\"quoted\"\""),
            "quotes doubled: {}",
            lines[1]
        );

        let r = n
            .call(Method::GET, &report, Some(&moderator), Body::None)
            .await
            .expect("report", StatusCode::OK, None)
            .json();
        assert_eq!(r["hands"]["raised"], 3, "{r}");
        assert_eq!(r["hands"]["granted"], 2, "{r}");
        assert_eq!(r["hands"]["withdrawn"], 1, "{r}");
        assert_eq!(r["hands"]["open"], 0, "{r}");
        assert_eq!(r["turns_ended"]["done"], 1, "{r}");
        assert_eq!(r["turns_ended"]["revoked"], 1, "{r}");
        let people_speaking = r["speaking_by_person"].as_array().map(Vec::len);
        assert_eq!(people_speaking, Some(2), "{r}");
        n.call(
            Method::GET,
            &format!("{log}?format=xml"),
            Some(&moderator),
            Body::None,
        )
        .await
        .expect("unknown log format", StatusCode::BAD_REQUEST, None);
    })
    .await;
}
