//! The floor survives `kill -9`: 1,000 hands raised concurrently over HTTP, the first one
//! granted, the process killed with SIGKILL and started again on the same data directory.
//! The queue comes back in the same order, the grant with its remaining time (less the
//! time that really passed, down time included: a turn ends at an absolute time), the
//! history in the floor log and the report.
//!
//! Also the `floorcast-load hands` scenario at CI size: it raises, reads the queue back,
//! grants and revokes, and reports figures that must be plausible.

use std::path::Path;
use std::time::{Duration, Instant};

use floorcast_load::scenarios::hands::{self, HandsOptions};
use floorcast_load::server_process::{ServerOptions, ServerProcess};
use floorcast_load::token;
use reqwest::{Client, StatusCode};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "floor-restart-test-secret-0123456789abcdef";
const SESSION: &str = "assembly";
const HANDS: usize = 1_000;
/// How long the turn runs before the kill, and how long the node stays down: both longer
/// than the 2 s tolerance, so a timer that restarted or paused is caught.
const DOWNTIME: Duration = Duration::from_millis(2_500);

async fn start(data_dir: &Path) -> ServerProcess {
    let opts = ServerOptions {
        data_dir: Some(data_dir.to_path_buf()),
        ..ServerOptions::new(BIN, SECRET)
    };
    ServerProcess::start(opts).await.expect("floorcast starts")
}

async fn get_json(client: &Client, server: &ServerProcess, path: &str, token: &str) -> Value {
    let resp = client
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::OK, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
}

/// (hand ids in queue order, the one turn) of a queue JSON.
fn order_and_turn(q: &Value) -> (Vec<u64>, Value) {
    let floor = q["floor"].as_array().expect("floor array");
    assert_eq!(floor.len(), 1, "one holder: {}", q["floor"]);
    (hands::queue_ids(q), floor[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_and_grant_survive_kill_9() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let server = start(&data).await;
        let client = hands::client();
        server
            .create_session(&client, SESSION)
            .await
            .unwrap_or_else(|e| panic!("create session: {e}\n{}", server.log_tail()));
        let moderator = token::mint(SECRET, "moderator", SESSION, "chair");

        // 1,000 distinct participants, 64 requests in flight.
        let tokens: Vec<String> = (0..HANDS)
            .map(|i| token::mint(SECRET, "viewer", SESSION, &format!("delegate-{i}")))
            .collect();
        let raised =
            hands::raise_all(&server.base_url, SESSION, &tokens, 64, r#"{"topic":"t"}"#).await;
        assert!(
            raised.errors.is_empty() && raised.hands.len() == HANDS,
            "{} raised, failures {:?}\n{}",
            raised.hands.len(),
            raised.errors,
            server.log_tail()
        );
        let secs = raised.wall.as_secs_f64();
        println!(
            "{HANDS} raises in {:.2} s ({:.0}/s, debug build)",
            secs,
            HANDS as f64 / secs
        );
        let mut ids: Vec<u64> = raised.hands.iter().map(|h| h.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), HANDS, "every raise got its own hand id");

        let queue_path = format!("/api/sessions/{SESSION}/queue");
        let before = get_json(&client, &server, &queue_path, &moderator).await;
        let order = hands::queue_ids(&before);
        assert_eq!(order.len(), HANDS);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ids, "the queue holds exactly the raised hands");
        let first = order[0];
        let turn = hands::grant(
            &client,
            &server.base_url,
            SESSION,
            &moderator,
            None,
            Some(120),
        )
        .await
        .unwrap_or_else(|e| panic!("grant: {e}\n{}", server.log_tail()));
        assert_eq!(
            turn["hand"]["id"], first,
            "the first hand is granted: {turn}"
        );

        // Let the turn run a while: a restart that restarted the timer at the full limit
        // would now be 2.5 s off.
        tokio::time::sleep(DOWNTIME).await;
        let before = get_json(&client, &server, &queue_path, &moderator).await;
        let read_before = Instant::now();
        let (order_before, turn_before) = order_and_turn(&before);
        assert_eq!(order_before.len(), HANDS - 1);
        assert_eq!(order_before[..], order[1..], "the rest keep their order");
        let remaining_before = turn_before["remaining_ms"].as_u64().expect("remaining_ms");
        assert!(
            (110_000..=118_000).contains(&remaining_before),
            "{turn_before}"
        );

        // SIGKILL (Child::kill) and wait: no shutdown code runs. The node stays down a
        // while: the turn's clock runs on meanwhile (its end is absolute).
        drop(server);
        tokio::time::sleep(DOWNTIME).await;
        let server = start(&data).await;
        let after = get_json(&client, &server, &queue_path, &moderator).await;
        let elapsed = read_before.elapsed();
        let (order_after, turn_after) = order_and_turn(&after);
        assert_eq!(order_after.len(), HANDS - 1, "every queued hand is back");
        if let Some(i) = (0..order_before.len()).find(|&i| order_after[i] != order_before[i]) {
            panic!(
                "the order changed at position {i}: {:?} before, {:?} after",
                &order_before[i..(i + 5).min(order_before.len())],
                &order_after[i..(i + 5).min(order_after.len())]
            );
        }
        assert_eq!(turn_after["hand"], turn_before["hand"], "same holder");
        assert_eq!(turn_after["granted_at_ms"], turn_before["granted_at_ms"]);
        let remaining_after = turn_after["remaining_ms"].as_u64().expect("remaining_ms");
        let expected = remaining_before as i64 - elapsed.as_millis() as i64;
        let diff = remaining_after as i64 - expected;
        println!(
            "restart: {:.0} ms between the reads; remaining {remaining_before} → \
             {remaining_after} ms (expected {expected}, off by {diff} ms)",
            elapsed.as_secs_f64() * 1000.0
        );
        assert!(
            diff.abs() <= 2_000,
            "remaining time after the restart {remaining_after} ms, expected {expected} ± 2000 ms"
        );

        // History: the open turn is in the floor log, the raises in the report.
        let log = get_json(
            &client,
            &server,
            &format!("/api/sessions/{SESSION}/floor-log"),
            &moderator,
        )
        .await;
        let entries = log["entries"].as_array().cloned().unwrap_or_default();
        assert_eq!(entries.len(), 1, "{log}");
        assert_eq!(entries[0]["hand"], first);
        assert!(
            entries[0]["end"].is_null(),
            "the turn is still open: {}",
            entries[0]
        );
        let report = get_json(
            &client,
            &server,
            &format!("/api/sessions/{SESSION}/report"),
            &moderator,
        )
        .await;
        assert_eq!(report["hands"]["raised"], HANDS, "{}", report["hands"]);
        assert_eq!(report["hands"]["granted"], 1, "{}", report["hands"]);

        // The restarted node works on: the holder's turn can end and the next raise queues last.
        hands::revoke(&client, &server.base_url, SESSION, &moderator)
            .await
            .expect("revoke after the restart");
        let late = [token::mint(SECRET, "viewer", SESSION, "latecomer")];
        let r = hands::raise_all(&server.base_url, SESSION, &late, 1, "{}").await;
        assert_eq!(r.hands.len(), 1, "{:?}", r.errors);
        assert!(
            r.hands[0].id > *ids.last().unwrap(),
            "ids keep rising across the restart"
        );
        let q = get_json(&client, &server, &queue_path, &moderator).await;
        assert_eq!(hands::queue_ids(&q).last(), Some(&r.hands[0].id));
    })
    .await
    .expect("finished within its time limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hands_scenario_at_ci_size() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let server = ServerProcess::start(ServerOptions::new(BIN, SECRET))
            .await
            .expect("floorcast starts");
        let client = hands::client();
        server
            .create_session(&client, "bench")
            .await
            .expect("session");
        let mut opts = HandsOptions::new(&server.base_url, "bench", SECRET);
        opts.hands = 500;
        opts.concurrency = 32;
        opts.server_pid = Some(server.pid());
        let report = hands::run(opts)
            .await
            .unwrap_or_else(|e| panic!("hands: {e}\n{}", server.log_tail()));
        print!("{}", hands::render_table(&report));
        assert_eq!(report.raised, 500, "{:?}", report.errors);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(report.raises_per_second > 0.0);
        assert!(report.raise_ms.p50 > 0.0 && report.raise_ms.p99 >= report.raise_ms.p50);
        assert_eq!(report.raise_ms.count, 500);
        assert_eq!(report.queue_length, 500);
        assert!(report.all_raised_in_queue);
        assert!(report.grant_ms.is_some_and(|g| g > 0.0));
        assert!(report.server_cpu_seconds_per_second.is_some());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["raise_ms"]["count"], 500);
        // The scenario revoked its grant: nobody holds the floor, 499 wait.
        let q = hands::queue(
            &client,
            &server.base_url,
            "bench",
            &server.token("moderator", "bench", "m"),
        )
        .await
        .expect("queue");
        assert_eq!(
            q["floor"].as_array().map(Vec::len),
            Some(0),
            "{}",
            q["floor"]
        );
        assert_eq!(hands::queue_ids(&q).len(), 499);
    })
    .await
    .expect("finished within its time limit");
}
