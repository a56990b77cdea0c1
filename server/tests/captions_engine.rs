//! The caption engine's configuration on the real binary: a whisper engine whose model is
//! missing (or a build without the `whisper` feature) must not stop the service; it starts,
//! says once and clearly what is missing, and uses the embedded engine.

use std::time::Duration;

use floorcast_load::server_process::{ServerOptions, ServerProcess};

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");
const SECRET: &str = "captions-engine-test-secret-0123456789abcdef";

#[tokio::test]
async fn a_missing_whisper_model_is_reported_once_and_the_service_runs() {
    let mut opts = ServerOptions::new(BIN, SECRET);
    opts.env = vec![
        ("FLOORCAST_CAPTION_ENGINE".into(), "whisper".into()),
        (
            "FLOORCAST_WHISPER_MODELS".into(),
            "/nonexistent/whisper".into(),
        ),
    ];
    let server = ServerProcess::start(opts)
        .await
        .expect("the service starts");
    let ready = floorcast_load::scenarios::hands::client()
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert!(ready.status().is_success(), "{}", server.log_tail());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log_tail();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/nonexistent/whisper"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line naming the model: {log}");
    assert!(lines[0].contains("ERROR"), "{}", lines[0]);
    assert!(
        lines[0].contains("pocketsphinx"),
        "says what it uses instead: {}",
        lines[0]
    );
}
