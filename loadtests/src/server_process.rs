//! Runs the real `floorcast` binary for integration tests: `serve` on ephemeral ports with a
//! temporary data dir and a known JWT secret, the two address lines read from stdout
//! (`floorcast listening on http://…`, `floorcast media on udp://…`), `/readyz` polled, and
//! the child killed on drop so a failing test never leaves a server behind.
//!
//! Both output pipes are drained by threads for the life of the child (a full pipe would
//! block the server's logging); the last lines of each are kept for failure messages.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};

use crate::token;

const KEEP_LINES: usize = 300;

/// Starting or talking to the server process failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("spawn {0}: {1}")]
    Spawn(PathBuf, std::io::Error),
    #[error("{what} not printed within {timeout:?}; output so far:\n{log}")]
    NoAddress {
        what: &'static str,
        timeout: Duration,
        log: String,
    },
    #[error("/readyz not 200 within {0:?}; log:\n{1}")]
    NotReady(Duration, String),
    #[error("tempdir: {0}")]
    TempDir(std::io::Error),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}: {1}")]
    Status(StatusCode, String),
}

/// A running `floorcast serve`; killed on drop.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    pub http_addr: SocketAddr,
    pub media_addr: SocketAddr,
    pub secret: String,
    log: Arc<Mutex<VecDeque<String>>>,
    _data_dir: Option<tempfile::TempDir>,
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub bin: PathBuf,
    pub secret: String,
    /// `None`: a fresh temporary directory, removed on drop.
    pub data_dir: Option<PathBuf>,
    pub extra_args: Vec<String>,
    /// Extra environment (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    pub startup_timeout: Duration,
}

impl ServerOptions {
    pub fn new(bin: impl Into<PathBuf>, secret: &str) -> Self {
        Self {
            bin: bin.into(),
            secret: secret.to_owned(),
            data_dir: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            startup_timeout: Duration::from_secs(20),
        }
    }
}

fn push_line(log: &Mutex<VecDeque<String>>, line: String) {
    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
    if l.len() == KEEP_LINES {
        l.pop_front();
    }
    l.push_back(line);
}

fn drain(
    reader: impl Read + Send + 'static,
    tag: &'static str,
    log: Arc<Mutex<VecDeque<String>>>,
    lines: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &lines {
                let _ = tx.send(line.clone());
            }
            push_line(&log, format!("[{tag}] {line}"));
        }
    });
}

/// Parses `floorcast listening on http://ADDR` / `floorcast media on udp://ADDR`.
pub fn parse_address_line(line: &str, prefix: &str) -> Option<SocketAddr> {
    line.trim()
        .strip_prefix(prefix)?
        .trim()
        .trim_end_matches('/')
        .parse()
        .ok()
}

impl ServerProcess {
    /// Spawns the server and waits for both address lines (not for readiness).
    pub fn spawn(opts: ServerOptions) -> Result<Self, ServerError> {
        let (data_dir, tmp) = match &opts.data_dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("floorcast-test-")
                    .tempdir()
                    .map_err(ServerError::TempDir)?;
                (t.path().join("data"), Some(t))
            }
        };
        let mut cmd = Command::new(&opts.bin);
        // Run beside the data dir so a developer's ./floorcast.toml is not read, and keep
        // their FLOORCAST_* variables out: the test decides the configuration.
        if let Some(parent) = data_dir.parent().filter(|p| p.is_dir()) {
            cmd.current_dir(parent);
        }
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FLOORCAST_") {
                cmd.env_remove(key);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        cmd.arg("serve")
            .args(["--http-addr", "127.0.0.1:0"])
            .args(["--media-udp-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--jwt-secret", &opts.secret])
            .args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        // The one FLOORCAST_* variable the tests pass on: run a whole suite with a given
        // number of media shards (`make test` runs the media tests with 1 and with 2).
        if let Some(n) = std::env::var_os("FLOORCAST_MEDIA_SHARDS")
            && !opts.extra_args.iter().any(|a| a == "--media-shards")
        {
            cmd.arg("--media-shards").arg(n);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ServerError::Spawn(opts.bin.clone(), e))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            drain(out, "stdout", Arc::clone(&log), Some(tx));
        }
        if let Some(err) = child.stderr.take() {
            drain(err, "stderr", Arc::clone(&log), None);
        }
        let mut server = Self {
            child,
            base_url: String::new(),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            media_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            secret: opts.secret.clone(),
            log,
            _data_dir: tmp,
        };
        let deadline = Instant::now() + opts.startup_timeout;
        let (mut http, mut media) = (None, None);
        while http.is_none() || media.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    http = http
                        .or_else(|| parse_address_line(&line, "floorcast listening on http://"));
                    media =
                        media.or_else(|| parse_address_line(&line, "floorcast media on udp://"));
                }
                Err(_) => {
                    return Err(ServerError::NoAddress {
                        what: if http.is_none() {
                            "listening line"
                        } else {
                            "media line"
                        },
                        timeout: opts.startup_timeout,
                        log: server.log_tail(),
                    });
                }
            }
        }
        let (http, media) = (
            http.expect("loop ends with both"),
            media.expect("loop ends with both"),
        );
        server.http_addr = http;
        server.media_addr = media;
        server.base_url = format!("http://{http}");
        Ok(server)
    }

    /// Spawns and waits for `/readyz` to answer 200.
    pub async fn start(opts: ServerOptions) -> Result<Self, ServerError> {
        let timeout = opts.startup_timeout;
        let server = Self::spawn(opts)?;
        server.wait_ready(timeout).await?;
        Ok(server)
    }

    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), ServerError> {
        let client = crate::whip::http_client();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ServerError::NotReady(timeout, self.log_tail()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A token signed with the server's secret.
    pub fn token(&self, role: &str, session: &str, name: &str) -> String {
        token::mint(&self.secret, role, session, name)
    }

    /// `POST /api/sessions {"id", "title"}` with an operator token; 201 expected.
    pub async fn create_session(&self, client: &Client, id: &str) -> Result<(), ServerError> {
        let resp = client
            .post(self.url("/api/sessions"))
            .bearer_auth(self.token("operator", "*", "test-operator"))
            .json(&serde_json::json!({ "id": id, "title": format!("test session {id}") }))
            .send()
            .await?;
        let status = resp.status();
        if status != StatusCode::CREATED && status != StatusCode::OK {
            let body = resp.text().await.unwrap_or_default();
            return Err(ServerError::Status(status, body));
        }
        Ok(())
    }

    /// The whole `/metrics` page, if the node answers.
    pub async fn metrics(&self) -> Option<String> {
        reqwest::get(self.url("/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// The value of one series on `/metrics` (its full name with labels, e.g.
    /// `floorcast_limit_refusals_total{limit="http_body_timeout"}`), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await?;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// The last lines of stdout/stderr.
    pub fn log_tail(&self) -> String {
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// The server's process id (for `/proc` figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn data_dir(&self) -> Option<&Path> {
        self._data_dir.as_ref().map(|d| d.path())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_lines() {
        assert_eq!(
            parse_address_line(
                "floorcast listening on http://127.0.0.1:4321",
                "floorcast listening on http://"
            ),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        assert_eq!(
            parse_address_line(
                "floorcast media on udp://127.0.0.1:40000\n",
                "floorcast media on udp://"
            ),
            Some("127.0.0.1:40000".parse().unwrap())
        );
        assert_eq!(
            parse_address_line("something else", "floorcast media on udp://"),
            None
        );
    }
}
