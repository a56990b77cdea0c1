//! `deploy/floorcast.example.toml` is the file operators copy, so it must load as shipped,
//! name every key, and still load with every example line switched on: a renamed or removed
//! key, or a wrong default in a comment, fails here rather than on someone's server. The
//! same file then starts the real binary with `--log-format json`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use figment::Jail;
use server::Config;
use server::config::{ENV_KEYS, Overrides};

const EXAMPLE: &str = include_str!("../../deploy/floorcast.example.toml");
const BIN: &str = env!("CARGO_BIN_EXE_floorcast");

/// A top-level `key = value` line of the example, set or shown commented out (`# key = value`).
struct Line<'a> {
    key: &'a str,
    commented: bool,
    text: &'a str,
}

/// The top-level assignments, in order. Lines after the first table header (`[[session]]`)
/// belong to that table and are not config keys.
fn assignments(text: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    for raw in text.lines() {
        let (commented, line) = match raw.strip_prefix("# ") {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        if line.starts_with('[') {
            break;
        }
        if let Some(key) = assigned_key(line) {
            lines.push(Line {
                key,
                commented,
                text: line,
            });
        }
    }
    lines
}

/// `key` of a `key = value` line; prose comments never start with a bare key and ` = `.
fn assigned_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once(" = ")?;
    let is_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    is_key.then_some(key)
}

/// The example with every commented-out assignment and table header switched on.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|raw| match raw.strip_prefix("# ") {
            Some(line) if line.starts_with('[') || assigned_key(line).is_some() => line,
            _ => raw,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads `toml` through the real loader, with no `FLOORCAST_*` variable of the developer's.
#[expect(
    clippy::result_large_err,
    reason = "Jail's closures must return figment's own (large) error type"
)]
fn load(toml: &str) -> Config {
    let mut config = None;
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("floorcast.toml", toml)?;
        let loaded = Config::load(Some(Path::new("floorcast.toml")), &Overrides::default())
            .map_err(|e| e.to_string())?;
        config = Some(loaded);
        Ok(())
    });
    config.expect("loaded")
}

#[test]
fn names_every_key_once() {
    let mut seen = BTreeMap::new();
    for line in assignments(EXAMPLE) {
        *seen.entry(line.key).or_insert(0) += 1;
    }
    for key in ENV_KEYS {
        assert_eq!(
            seen.get(key),
            Some(&1),
            "{key} must appear once in the example"
        );
    }
    for key in seen.keys() {
        assert!(ENV_KEYS.contains(key), "{key} is not a config key");
    }
}

#[test]
fn loads_as_shipped() {
    let c = load(EXAMPLE);
    assert!(c.public_url.is_some());
    assert!(
        c.jwt_secret.is_none(),
        "the secret belongs in the environment"
    );
    assert!(c.sessions.is_empty());
}

#[test]
fn loads_with_every_line_switched_on() {
    let c = load(&uncommented(EXAMPLE));
    assert!(c.jwt_secret.is_some() && !c.turn_urls.is_empty());
    assert_eq!(c.sessions.len(), 1);
}

/// A commented line says "this is the default": it must be, except where the default is
/// none and the line shows an example value instead.
#[test]
fn commented_values_are_the_defaults() {
    let commented: Vec<&str> = assignments(EXAMPLE)
        .iter()
        .filter(|line| line.commented)
        .map(|line| line.text)
        .collect();
    let loaded = serde_json::to_value(load(&commented.join("\n"))).unwrap();
    let defaults = serde_json::to_value(Config::default()).unwrap();
    for line in assignments(EXAMPLE).iter().filter(|line| line.commented) {
        let default = &defaults[line.key];
        if default.is_null() || default.as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        assert_eq!(
            &loaded[line.key], default,
            "`# {}` is not the default",
            line.text
        );
    }
}

/// The binary with a clean environment, run in `dir` so no developer's floorcast.toml is read.
fn floorcast(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("FLOORCAST_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "info");
    cmd
}

fn assert_json_lines(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["fields"].is_object(),
            "{line}"
        );
    }
}

#[test]
fn example_serves_with_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/floorcast.example.toml");
    let mut child = floorcast(dir.path())
        .arg("--config")
        .arg(&example)
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--media-udp-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--log-format", "json"])
        .env("FLOORCAST_JWT_SECRET", "0123456789abcdef0123456789abcdef")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start floorcast");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let listening = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let listening = listening.unwrap_or_else(|_| panic!("no listening line; stderr:\n{stderr}"));
    assert!(
        listening.starts_with("floorcast listening on http://"),
        "{listening}"
    );
    assert_json_lines(&stderr);
}

#[test]
fn log_format_from_the_environment_covers_errors_too() {
    let dir = tempfile::tempdir().unwrap();
    let output = floorcast(dir.path())
        .args(["token", "--role", "viewer", "--session", "s1"])
        .env("FLOORCAST_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_json_lines(&stderr);
    assert!(stderr.contains("no JWT secret"), "{stderr}");
}
