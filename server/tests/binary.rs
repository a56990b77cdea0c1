//! The real `floorcast` binary, started as a child process on port 0 with a temporary data
//! directory: the stdout contract lines, dev mode, `floorcast token`, ops endpoints, signals.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_floorcast");

/// The child is killed when the test ends, pass or fail.
struct Node {
    child: Child,
    http: SocketAddr,
    lines: Vec<String>,
    rx: mpsc::Receiver<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    // Run in the data dir's parent so no ./floorcast.toml of the developer is read, and
    // keep the developer's FLOORCAST_* variables out.
    cmd.current_dir(data_dir.parent().unwrap());
    for (key, _) in std::env::vars() {
        if key.starts_with("FLOORCAST_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

impl Node {
    fn start(data_dir: &Path, extra: &[&str]) -> Node {
        let mut child = command(data_dir)
            .args([
                "--http-addr",
                "127.0.0.1:0",
                "--media-udp-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start floorcast");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Keeps draining stdout for the child's whole life.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = Node {
            child,
            http: "0.0.0.0:0".parse().unwrap(),
            lines: Vec::new(),
            rx,
        };
        let line = node.wait_line("floorcast listening on http://", Duration::from_secs(30));
        node.http = line
            .trim_start_matches("floorcast listening on http://")
            .parse()
            .expect("address in the listening line");
        node
    }

    /// The first stdout line starting with `prefix` (earlier lines are kept).
    fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        if let Some(l) = self.lines.iter().find(|l| l.starts_with(prefix)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.lines.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!("no line {prefix:?} on stdout; got {:?}", self.lines),
            }
        }
    }

    fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        http(self.http, "GET", path, token)
    }

    /// Polls `path` until it answers 200 or `timeout` passes; the last answer.
    fn poll_ok(&self, path: &str, timeout: Duration) -> (u16, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.get(path, None);
            if answer.0 == 200 || Instant::now() > deadline {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A minimal HTTP/1.1 request (no client dependency for a few GETs).
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn token(data_dir: &Path, args: &[&str]) -> std::process::Output {
    command(data_dir)
        .arg("token")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run floorcast token")
}

#[test]
fn dev_mode_serves_prints_links_and_accepts_cli_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut node = Node::start(&data, &["--dev"]);

    let (status, _) = node.poll_ok("/healthz", Duration::from_secs(10));
    assert_eq!(status, 200);
    let (status, metrics) = node.get("/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("floorcast_sessions 1"),
        "dev creates demo:\n{metrics}"
    );
    assert!(metrics.contains("floorcast_build_info"));

    let base = format!("http://{}", node.http);
    let publish = node.wait_line("floorcast dev publish link: ", Duration::from_secs(5));
    assert!(
        publish.contains(&format!("{base}/publish/demo?token=")),
        "{publish}"
    );
    let watch = node.wait_line("floorcast dev watch link: ", Duration::from_secs(5));
    assert!(
        watch.contains(&format!("{base}/watch/demo?token=")),
        "{watch}"
    );
    node.wait_line("floorcast dev operator token: ", Duration::from_secs(5));
    let hint = node.wait_line("floorcast dev gstreamer: ", Duration::from_secs(5));
    assert!(hint.contains(&format!("{base}/whip/demo")), "{hint}");

    // The printed watch link's page loads.
    let path = watch.split_once(&base).unwrap().1;
    let (status, page) = node.get(path, None);
    assert_eq!(status, 200);
    assert!(page.contains("<html"));

    // The generated secret is private, and `floorcast token` from the same data dir uses it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("jwt_secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(data.join("floorcast.db").exists());

    let out = token(
        &data,
        &["--role", "operator", "--session", "*", "--name", "Ops"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let jwt = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "only the JWT: {stdout:?}");
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    let (status, body) = node.get("/api/sessions", Some(jwt));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"demo\""), "{body}");

    let out = token(
        &data,
        &[
            "--role",
            "viewer",
            "--session",
            "demo",
            "--name",
            "V",
            "--ttl-s",
            "60",
        ],
    );
    assert!(out.status.success());
    let viewer = String::from_utf8(out.stdout).unwrap();
    // Accepted, and scoped: a viewer of `demo` lists that session only.
    let (status, body) = node.get("/api/sessions", Some(viewer.trim()));
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(listed[0]["id"], "demo");
}

/// Needs the real media engine: `media::start` must succeed and its driver must answer.
/// (Without it the node still serves HTTP, but `/readyz` is 503 and the media line is missing.)
#[test]
fn readyz_once_the_media_engine_works() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(&tmp.path().join("data"), &["--dev"]);
    let media = node.wait_line("floorcast media on udp://", Duration::from_secs(5));
    let udp: SocketAddr = media
        .trim_start_matches("floorcast media on udp://")
        .parse()
        .unwrap();
    assert_ne!(udp.port(), 0, "the bound port is printed");
    let (status, body) = node.poll_ok("/readyz", Duration::from_secs(10));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn token_without_a_secret_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let out = token(
        &tmp.path().join("data"),
        &["--role", "viewer", "--session", "demo"],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dev") && err.contains("jwt_secret"), "{err}");
}

#[test]
fn invalid_config_fails_at_startup_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = command(&tmp.path().join("data"))
        .args(["--http-addr", "127.0.0.1:0", "--jwt-secret", "short"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("jwt_secret") && err.contains("32"), "{err}");

    std::fs::write(tmp.path().join("bad.toml"), "http_adr = \"127.0.0.1:1\"\n").unwrap();
    let out = command(&tmp.path().join("data"))
        .args(["serve", "--config", "bad.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http_adr"));
}

#[cfg(unix)]
#[test]
fn sigterm_stops_gracefully() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(
        &tmp.path().join("data"),
        &["--jwt-secret", "0123456789abcdef0123456789abcdef"],
    );
    assert_eq!(node.poll_ok("/healthz", Duration::from_secs(10)).0, 200);
    let pid = node.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
