//! The floor's Server-Sent Events against the real `floorcast` binary: an id-less `snapshot`
//! first, then typed events with rising ids; a client that disconnects and comes back with
//! `Last-Event-ID` (or `?last_event_id=`) gets every event it missed exactly once, in order,
//! and then the live ones. The stream is parsed from raw bytes by `support/sse.rs`.

use std::time::Duration;

use floorcast_load::scenarios::hands;
use floorcast_load::server_process::{ServerOptions, ServerProcess};
use floorcast_load::token::{self, Claims};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

#[path = "support/sse.rs"]
mod sse;
use sse::{SseEvent, SseStream};

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "floor-sse-test-secret-0123456789abcdef";
const SESSION: &str = "keynote";
/// How long to wait for one event.
const EVENT_WAIT: Duration = Duration::from_secs(5);

struct Node {
    server: ServerProcess,
    client: Client,
}

impl Node {
    async fn start() -> Node {
        let server = ServerProcess::start(ServerOptions::new(BIN, SECRET))
            .await
            .expect("floorcast starts");
        let client = hands::client();
        server
            .create_session(&client, SESSION)
            .await
            .unwrap_or_else(|e| panic!("create session: {e}\n{}", server.log_tail()));
        Node { server, client }
    }

    fn events_url(&self) -> String {
        self.server.url(&format!("/api/sessions/{SESSION}/events"))
    }

    /// Raises one hand per name (one after the other); their ids in order.
    async fn raise(&self, names: &[String]) -> Vec<u64> {
        let mut ids = Vec::new();
        for name in names {
            let resp = self
                .client
                .post(self.server.url(&format!("/api/sessions/{SESSION}/hands")))
                .bearer_auth(token::mint(SECRET, "viewer", SESSION, name))
                .json(&json!({"topic": format!("from {name}")}))
                .send()
                .await
                .expect("raise");
            let status = resp.status();
            let body: Value = resp.json().await.expect("JSON answer");
            assert_eq!(status, StatusCode::CREATED, "{body}");
            ids.push(body["hand"]["id"].as_u64().expect("hand id"));
        }
        ids
    }
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Reads `n` `hand_raised` events; panics on any other event or a timeout.
async fn read_raised(s: &mut SseStream, n: usize) -> Vec<SseEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        let e = s.next(EVENT_WAIT).await.unwrap_or_else(|| {
            panic!(
                "only {} of {n} hand_raised events within {EVENT_WAIT:?}: {out:?}",
                out.len()
            )
        });
        assert_eq!(e.event, "hand_raised", "{e:?}");
        out.push(e);
    }
    out
}

fn assert_snapshot(e: &SseEvent) -> Value {
    assert_eq!(
        e.event, "snapshot",
        "the first event is the snapshot: {e:?}"
    );
    assert_eq!(e.id, None, "the snapshot carries no id: {e:?}");
    let v = e.json();
    assert!(v["hands"].is_array() && v["floor"].is_array(), "{v}");
    v
}

/// Hand ids of `hand_raised` events; ids strictly rising and above `after`.
fn check_ids(events: &[SseEvent], after: i64) -> Vec<u64> {
    let mut last = after;
    for e in events {
        let id = e.id.unwrap_or_else(|| panic!("event without id: {e:?}"));
        assert!(id > last, "ids rise: {last} then {id} in {events:?}");
        last = id;
        let v = e.json();
        assert_eq!(v["type"], "hand_raised", "{v}");
        assert_eq!(v["id"], id, "the data repeats the event id: {v}");
    }
    events
        .iter()
        .map(|e| e.json()["hand"]["id"].as_u64().expect("hand id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_last_event_id_delivers_every_missed_event_once() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let n = Node::start().await;
        let watcher = token::mint(SECRET, "viewer", SESSION, "watcher");

        let mut s = SseStream::open(&n.client, &n.events_url(), &watcher, None).await;
        let snap = s.next(EVENT_WAIT).await.expect("snapshot");
        let v = assert_snapshot(&snap);
        assert_eq!(v["hands"].as_array().map(Vec::len), Some(0), "{v}");

        let first = n.raise(&names("early", 3)).await;
        let seen = read_raised(&mut s, 3).await;
        assert_eq!(check_ids(&seen, 0), first, "live events in raise order");
        let last = seen.last().and_then(|e| e.id).expect("id");
        // The data is the stored event: the full hand.
        let hand = &seen[0].json()["hand"];
        assert_eq!(hand["sub"], "viewer-early-0", "{hand}");
        assert_eq!(hand["topic"], "from early-0", "{hand}");
        drop(s);

        // Missed while away.
        let missed = n.raise(&names("late", 20)).await;

        let mut s = SseStream::open(&n.client, &n.events_url(), &watcher, Some(last)).await;
        let snap = s.next(EVENT_WAIT).await.expect("snapshot on reconnect");
        let v = assert_snapshot(&snap);
        assert_eq!(v["hands"].as_array().map(Vec::len), Some(23), "{v}");
        let got = read_raised(&mut s, 20).await;
        assert_eq!(
            check_ids(&got, last),
            missed,
            "every missed event, once, in order"
        );
        // Nothing more: no duplicate of the missed ones, no replay of the early ones.
        if let Some(extra) = s.next(Duration::from_millis(700)).await {
            panic!("unexpected event after the missed ones: {extra:?}");
        }
        // And the stream goes on live.
        let live = n.raise(&names("live", 1)).await;
        let e = read_raised(&mut s, 1).await;
        let resumed_last = got.last().and_then(|e| e.id).expect("id");
        assert_eq!(check_ids(&e, resumed_last), live);

        // The same resume through the query parameter (for EventSource, which cannot set
        // headers on its first request).
        let url = format!("{}?last_event_id={last}", n.events_url());
        let mut q = SseStream::open(&n.client, &url, &watcher, None).await;
        assert_snapshot(&q.next(EVENT_WAIT).await.expect("snapshot"));
        let again = read_raised(&mut q, 21).await;
        let mut want = missed.clone();
        want.extend(&live);
        assert_eq!(check_ids(&again, last), want);
        assert!(q.next(Duration::from_millis(300)).await.is_none());
    })
    .await
    .expect("finished within its time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_events_are_typed_and_ordered() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let n = Node::start().await;
        let watcher = token::mint(SECRET, "hub", SESSION, "watching-hub");
        let moderator = token::mint(SECRET, "moderator", SESSION, "mod");
        let mut s = SseStream::open(&n.client, &n.events_url(), &watcher, None).await;
        assert_snapshot(&s.next(EVENT_WAIT).await.expect("snapshot"));
        let ids = n.raise(&names("p", 2)).await;
        let base = &n.server.base_url;
        hands::grant(&n.client, base, SESSION, &moderator, Some(ids[1]), Some(60))
            .await
            .expect("grant");
        let r = n
            .client
            .delete(
                n.server
                    .url(&format!("/api/sessions/{SESSION}/hands/{}", ids[0])),
            )
            .bearer_auth(&moderator)
            .send()
            .await
            .expect("withdraw");
        assert_eq!(r.status(), StatusCode::OK);
        hands::revoke(&n.client, base, SESSION, &moderator)
            .await
            .expect("revoke");

        let mut kinds = Vec::new();
        let mut last = 0;
        while kinds.len() < 5 {
            let e = s
                .next(EVENT_WAIT)
                .await
                .unwrap_or_else(|| panic!("events so far: {kinds:?}"));
            let id = e.id.expect("id");
            assert!(id > last, "ids rise");
            last = id;
            let v = e.json();
            assert_eq!(v["type"], e.event, "the data's type is the event name: {v}");
            kinds.push((e.event.clone(), v));
        }
        let names: Vec<&str> = kinds.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "hand_raised",
                "hand_raised",
                "floor_granted",
                "hand_withdrawn",
                "floor_ended"
            ]
        );
        let granted = &kinds[2].1;
        assert_eq!(granted["hand"], ids[1], "{granted}");
        let g = granted["granted_at_ms"].as_u64().expect("granted_at_ms");
        assert_eq!(
            granted["ends_at_ms"].as_u64(),
            Some(g + 60_000),
            "{granted}"
        );
        assert_eq!(kinds[3].1["hand"], ids[0]);
        assert_eq!(kinds[4].1["hand"], ids[1]);
        assert_eq!(kinds[4].1["reason"], "revoked");
    })
    .await
    .expect("finished within its time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_need_a_valid_token_of_the_session() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let n = Node::start().await;
        let url = n.events_url();
        let expired = token::sign(
            &Claims::expired("viewer", SESSION, Duration::from_secs(600)),
            SECRET,
        )
        .unwrap();
        let cases = [
            (Some(expired), StatusCode::UNAUTHORIZED, "expired_token"),
            (None, StatusCode::UNAUTHORIZED, "missing_token"),
            (
                Some(token::mint(SECRET, "viewer", "elsewhere", "x")),
                StatusCode::FORBIDDEN,
                "forbidden",
            ),
        ];
        for (token, status, code) in cases {
            let mut req = n.client.get(&url);
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.expect("GET events");
            let got = resp.status();
            let body = resp.text().await.unwrap_or_default();
            assert_eq!(got, status, "{body}");
            assert_eq!(
                floorcast_load::whip::error_code(&body).as_deref(),
                Some(code),
                "{body}"
            );
        }
        // The token may also come in the query string (EventSource cannot set headers).
        let t = token::mint(SECRET, "viewer", SESSION, "browser");
        let resp = n
            .client
            .get(format!("{url}?token={t}"))
            .send()
            .await
            .expect("GET events ?token=");
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = n
            .client
            .get(&url)
            .bearer_auth(&t)
            .header("last-event-id", "yesterday")
            .send()
            .await
            .expect("GET events");
        assert_eq!(
            resp.status(),
            StatusCode::BAD_REQUEST,
            "non-numeric Last-Event-ID"
        );
    })
    .await
    .expect("finished within its time limit");
}
