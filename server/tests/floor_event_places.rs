//! Floor events carry what a page needs (issue 17): 200 watchers with a hand among 2,000
//! follow their own place and the current turn from the event stream alone, through raises,
//! withdrawals, pins, moves, grants, a policy change and the end of a turn; the server counts
//! no queue read but the 200 snapshots. The moderator's stream keeps the whole queue as its
//! page does, from the snapshot and each event's patch, and reads it only where an event says
//! most of it moved (the policy change). Real binary, raw SSE.
//!
//!   cargo test -p floorcast-server --test floor_event_places -- --nocapture

use std::time::{Duration, Instant};

use floorcast_load::scenarios::hands;
use floorcast_load::server_process::{ServerOptions, ServerProcess};
use floorcast_load::token;
use futures_util::{StreamExt, stream};
use reqwest::Client;
use serde_json::{Value, json};

#[path = "support/sse.rs"]
mod sse;
use sse::SseStream;

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "floor-event-places-secret-0123456789abcdef";
const SESSION: &str = "keynote";
const WATCHERS: usize = 200;
const CROWD: usize = 1_800;
/// The last change of the run: every stream reads until it sees it.
const LAST_PANEL_SIZE: u32 = 3;

struct Run {
    server: ServerProcess,
    client: Client,
    moderator: String,
}

impl Run {
    fn url(&self, path: &str) -> String {
        self.server.url(&format!("/api/sessions/{SESSION}{path}"))
    }

    async fn send(&self, method: reqwest::Method, path: &str, token: &str, body: Value) -> Value {
        let resp = self
            .client
            .request(method.clone(), self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    /// Raises one hand per token, `parallel` at a time; their ids in token order.
    async fn raise_all(&self, tokens: &[String], parallel: usize) -> Vec<u64> {
        stream::iter(tokens)
            .map(|t| async move {
                self.send(reqwest::Method::POST, "/hands", t, json!({}))
                    .await["hand"]["id"]
                    .as_u64()
                    .expect("hand id")
            })
            .buffered(parallel)
            .collect()
            .await
    }

    async fn metric(&self, via: &str) -> f64 {
        self.server
            .metric(&format!("floorcast_queue_reads_total{{via=\"{via}\"}}"))
            .await
            .unwrap_or(-1.0)
    }
}

/// Waits for a counter to reach `value` (the moderator's snapshot comes from its own task).
async fn until_metric(run: &Run, via: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while run.metric(via).await < value {
        assert!(Instant::now() < deadline, "{via} never reached {value}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn viewer(name: &str) -> String {
    token::mint(SECRET, "viewer", SESSION, name)
}

/// What one watcher knows at the end, from its events alone.
#[derive(Debug, Default)]
struct Seen {
    sub: String,
    hand: Option<u64>,
    position: Option<u64>,
    floor: Vec<u64>,
    events: usize,
    you_events: usize,
}

/// Reads one stream from its snapshot until the run's last change.
async fn follow(mut s: SseStream, sub: String) -> Seen {
    let mut seen = Seen {
        sub,
        ..Seen::default()
    };
    let holders = |floor: &Value| -> Vec<u64> {
        floor
            .as_array()
            .map(|f| f.iter().filter_map(|t| t["hand"]["id"].as_u64()).collect())
            .unwrap_or_default()
    };
    loop {
        let e = s
            .next(Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("{} waited a minute for an event", seen.sub));
        if e.event == "caption" {
            continue;
        }
        let data = e.json();
        seen.events += 1;
        if e.event == "you" {
            seen.you_events += 1;
        }
        if let Some(you) = data.get("you") {
            seen.hand = you["hand"].as_u64();
            seen.position = you["position"].as_u64();
        }
        if let Some(floor) = data.get("floor") {
            seen.floor = holders(floor);
        }
        if e.event == "panel_changed" && data["size"] == LAST_PANEL_SIZE {
            return seen;
        }
    }
}

/// What the moderator page keeps: the whole queue, hand ids in order.
#[derive(Debug, Default)]
struct QueueFollow {
    hands: Vec<u64>,
    /// Queue reads: after a `reordered` patch, or a `you` event (events replayed from the
    /// database come without patches).
    reads: usize,
    patched: usize,
}

fn hand_ids(view: &Value) -> Vec<u64> {
    view["hands"]
        .as_array()
        .expect("hands")
        .iter()
        .map(|h| h["id"].as_u64().expect("hand id"))
        .collect()
}

/// Follows the whole queue from one stream as the moderator page does (`applyQueueEvent`).
async fn follow_queue(
    mut s: SseStream,
    client: Client,
    queue: String,
    token: String,
) -> QueueFollow {
    let snapshot = s.next(Duration::from_secs(10)).await.expect("snapshot");
    assert_eq!(snapshot.event, "snapshot");
    let view = snapshot.json();
    let mut upto = view["last_event_id"].as_i64().expect("last_event_id");
    let mut seen = QueueFollow {
        hands: hand_ids(&view),
        ..QueueFollow::default()
    };
    loop {
        let e = s
            .next(Duration::from_secs(60))
            .await
            .expect("the moderator waited a minute for an event");
        if e.event == "caption" {
            continue;
        }
        let data = e.json();
        // A read may already hold the last change: the stream still ends on it.
        let last = e.event == "panel_changed" && data["size"] == LAST_PANEL_SIZE;
        let patch = &data["patch"];
        if e.id.is_some_and(|id| id <= upto) {
            // Already in the queue read last.
        } else if e.event != "you" && patch["kind"] == "moved" {
            for p in patch["removed"].as_array().expect("removed") {
                let at = p["at"].as_u64().expect("at") as usize;
                assert_eq!(seen.hands.get(at), p["hand"].as_u64().as_ref(), "{e:?}");
                seen.hands.remove(at);
            }
            for p in patch["inserted"].as_array().expect("inserted") {
                let at = p["at"].as_u64().expect("at") as usize;
                assert!(at <= seen.hands.len(), "{e:?}");
                seen.hands.insert(at, p["hand"].as_u64().expect("hand"));
            }
            assert_eq!(
                Some(seen.hands.len() as u64),
                data["queue_length"].as_u64(),
                "{e:?}"
            );
            seen.patched += 1;
        } else {
            let view: Value = client
                .get(&queue)
                .bearer_auth(&token)
                .send()
                .await
                .expect("queue")
                .json()
                .await
                .expect("queue JSON");
            seen.hands = hand_ids(&view);
            upto = view["last_event_id"].as_i64().expect("last_event_id");
            seen.reads += 1;
        }
        if last {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_pages_follow_two_thousand_hands_without_reading_the_queue() {
    let mut options = ServerOptions::new(BIN, SECRET);
    options.extra_args = vec!["--max-event-streams-per-token".into(), "8".into()];
    let server = ServerProcess::start(options)
        .await
        .expect("floorcast starts");
    let client = hands::client();
    server
        .create_session(&client, SESSION)
        .await
        .unwrap_or_else(|e| panic!("create session: {e}\n{}", server.log_tail()));
    let run = Run {
        moderator: token::mint(SECRET, "moderator", SESSION, "chair"),
        server,
        client,
    };
    let started = Instant::now();

    // 200 watch pages open their stream; each reads its snapshot.
    let watchers: Vec<String> = (0..WATCHERS).map(|i| format!("watcher-{i}")).collect();
    let watcher_tokens: Vec<String> = watchers.iter().map(|n| viewer(n)).collect();
    let mut readers = Vec::new();
    for (name, t) in watchers.iter().zip(&watcher_tokens) {
        let mut s = SseStream::open(&run.client, &run.url("/events"), t, None).await;
        let snapshot = s.next(Duration::from_secs(10)).await.expect("snapshot");
        assert_eq!(snapshot.event, "snapshot");
        assert_eq!(
            snapshot.json()["you"],
            json!({"hand": null, "position": null})
        );
        readers.push(tokio::spawn(follow(s, format!("viewer-{name}"))));
    }
    let stream = SseStream::open(&run.client, &run.url("/events"), &run.moderator, None).await;
    let moderator = tokio::spawn(follow_queue(
        stream,
        run.client.clone(),
        run.url("/queue"),
        run.moderator.clone(),
    ));
    until_metric(&run, "snapshot", WATCHERS as f64 + 1.0).await;
    assert_eq!(run.metric("get").await, 0.0);

    // 2,000 hands: a crowd before and after the watchers, raised 16 at a time.
    let crowd: Vec<String> = (0..CROWD).map(|i| viewer(&format!("crowd-{i}"))).collect();
    let early = run.raise_all(&crowd[..CROWD / 2], 16).await;
    let mine = run.raise_all(&watcher_tokens, 16).await;
    run.raise_all(&crowd[CROWD / 2..], 16).await;

    // The head of the queue leaves, some watchers withdraw, the chair pins and moves.
    let del = reqwest::Method::DELETE;
    let patch = reqwest::Method::PATCH;
    for hand in &early[..50] {
        run.send(
            del.clone(),
            &format!("/hands/{hand}"),
            &run.moderator,
            json!({}),
        )
        .await;
    }
    for (i, hand) in mine.iter().enumerate().filter(|(i, _)| i % 10 == 3) {
        run.send(
            del.clone(),
            &format!("/hands/{hand}"),
            &watcher_tokens[i],
            json!({}),
        )
        .await;
    }
    run.send(
        patch.clone(),
        "/queue",
        &run.moderator,
        json!({"pin": mine[7]}),
    )
    .await;
    run.send(
        patch.clone(),
        "/queue",
        &run.moderator,
        json!({"pin": mine[150], "move": {"hand": mine[151], "position": 1}}),
    )
    .await;
    // A grant from the top (watcher 150, pinned first), and one to a watcher in the middle.
    run.send(reqwest::Method::POST, "/floor", &run.moderator, json!({}))
        .await;
    run.send(
        patch.clone(),
        "/queue",
        &run.moderator,
        json!({"panel_size": 2}),
    )
    .await;
    run.send(
        reqwest::Method::POST,
        "/floor",
        &run.moderator,
        json!({"hand": mine[100]}),
    )
    .await;
    // A policy change reorders everything: each stream reads its own place once.
    run.send(
        patch.clone(),
        "/queue",
        &run.moderator,
        json!({"policy": "least_spoken_first"}),
    )
    .await;
    // The first speaker ends their own turn; more raises after it.
    run.send(del.clone(), "/floor", &watcher_tokens[150], json!({}))
        .await;
    run.raise_all(&crowd[..20], 4).await;
    run.send(
        patch.clone(),
        "/queue",
        &run.moderator,
        json!({"panel_size": LAST_PANEL_SIZE}),
    )
    .await;

    let mut seen = Vec::new();
    for r in readers {
        seen.push(r.await.expect("a reader"));
    }
    let moderator = moderator.await.expect("the moderator's reader");
    let followed = started.elapsed();
    // Not one queue read since the snapshots but the moderator's: once, for the policy change.
    assert!(moderator.reads >= 1, "{moderator:?}");
    assert_eq!(
        run.metric("get").await,
        moderator.reads as f64,
        "queue GETs after the snapshots"
    );
    assert_eq!(run.metric("snapshot").await, WATCHERS as f64 + 1.0);

    // Only now read the queue, as the truth to compare with.
    let truth = run
        .client
        .get(run.url("/queue"))
        .bearer_auth(&run.moderator)
        .send()
        .await
        .expect("queue")
        .json::<Value>()
        .await
        .expect("queue JSON");
    let hands = truth["hands"].as_array().expect("hands");
    let floor: Vec<u64> = truth["floor"]
        .as_array()
        .expect("floor")
        .iter()
        .map(|t| t["hand"]["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(floor, [mine[100]], "one turn left: {truth}");
    assert_eq!(
        moderator.hands,
        hand_ids(&truth),
        "the moderator's queue from the patches"
    );
    let mut with_hand = 0;
    for s in &seen {
        let queued = hands.iter().find(|h| h["sub"] == s.sub.as_str());
        let holding = truth["floor"]
            .as_array()
            .expect("floor")
            .iter()
            .find(|t| t["hand"]["sub"] == s.sub.as_str());
        let hand = queued
            .map(|h| h["id"].as_u64())
            .or(holding.map(|t| t["hand"]["id"].as_u64()))
            .flatten();
        let position = queued.and_then(|h| h["position"].as_u64());
        assert_eq!((s.hand, s.position), (hand, position), "{}", s.sub);
        assert_eq!(s.floor, floor, "{}", s.sub);
        with_hand += usize::from(hand.is_some());
    }
    assert_eq!(with_hand, WATCHERS - WATCHERS / 10 - 1);
    let events: usize = seen.iter().map(|s| s.events).sum();
    let you_events: usize = seen.iter().map(|s| s.you_events).sum();
    println!(
        "{}",
        json!({
            "hands": CROWD + WATCHERS,
            "streams": WATCHERS,
            "events_per_stream": events / WATCHERS,
            "lag_refreshes": you_events,
            "queue_gets_after_snapshot": moderator.reads,
            "moderator_patched_events": moderator.patched,
            "followed_s": followed.as_secs_f64(),
        })
    );
}
