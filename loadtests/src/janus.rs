//! A viewer's signalling with Janus's Streaming plugin over its HTTP API (the protocol in
//! `../shared/anchors/janus/README.md`): create a session, attach the plugin, ask to `watch`
//! a mountpoint, long-poll until Janus's offer arrives, `start` with the answer, keep the
//! session alive, destroy it at the end. Media then flows as with any WebRTC peer: Janus is
//! ICE-controlling and DTLS-passive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};

/// Janus drops a session it has not heard from for 60 s; every 25 s is safe.
const KEEPALIVE: Duration = Duration::from_secs(25);

#[derive(Debug, thiserror::Error)]
pub enum JanusError {
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("janus answered {0}")]
    Refused(String),
    #[error("no offer from janus within {0:?}")]
    NoOffer(Duration),
}

static TRANSACTION: AtomicU64 = AtomicU64::new(1);

fn transaction() -> String {
    format!("fc{}", TRANSACTION.fetch_add(1, Ordering::Relaxed))
}

/// One Janus session with the Streaming plugin attached.
pub struct JanusSession {
    client: Client,
    /// `http://host:8088/janus`
    base: String,
    session: u64,
    handle: u64,
}

impl JanusSession {
    /// Creates the session, attaches the plugin and asks to watch `mountpoint`; returns the
    /// session and Janus's SDP offer.
    pub async fn watch(
        client: &Client,
        base: &str,
        mountpoint: u64,
        timeout: Duration,
    ) -> Result<(Self, String), JanusError> {
        let base = base.trim_end_matches('/').to_owned();
        let created = post(client, &base, json!({"janus": "create"})).await?;
        let session = data_id(&created)?;
        let attached = post(
            client,
            &format!("{base}/{session}"),
            json!({"janus": "attach", "plugin": "janus.plugin.streaming"}),
        )
        .await?;
        let handle = data_id(&attached)?;
        let s = JanusSession {
            client: client.clone(),
            base,
            session,
            handle,
        };
        s.message(json!({"request": "watch", "id": mountpoint}), None)
            .await?;
        let offer = s.wait_offer(timeout).await?;
        Ok((s, offer))
    }

    /// Sends the answer; media starts once ICE and DTLS are up.
    pub async fn start(&self, answer: &str) -> Result<(), JanusError> {
        self.message(
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer, "trickle": false})),
        )
        .await
    }

    /// Keeps the session alive until the returned task is aborted.
    pub fn keep_alive(&self) -> tokio::task::JoinHandle<()> {
        let (client, url) = (self.client.clone(), self.session_url());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(KEEPALIVE).await;
                let _ = post(&client, &url, json!({"janus": "keepalive"})).await;
            }
        })
    }

    /// Ends the session (Janus hangs up the PeerConnection); bounded by the client's timeout.
    pub async fn destroy(&self) {
        let _ = post(
            &self.client,
            &self.session_url(),
            json!({"janus": "destroy"}),
        )
        .await;
    }

    fn session_url(&self) -> String {
        format!("{}/{}", self.base, self.session)
    }

    async fn message(&self, body: Value, jsep: Option<Value>) -> Result<(), JanusError> {
        let mut msg = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            msg["jsep"] = jsep;
        }
        let url = format!("{}/{}", self.session_url(), self.handle);
        let reply = post(&self.client, &url, msg).await?;
        match reply["janus"].as_str() {
            Some("ack") | Some("success") => Ok(()),
            _ => Err(JanusError::Refused(reply.to_string())),
        }
    }

    /// Long-polls the session's events until one carries the offer, or the plugin refuses.
    async fn wait_offer(&self, timeout: Duration) -> Result<String, JanusError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let url = format!("{}?maxev=5", self.session_url());
            let events: Value = self.client.get(&url).send().await?.json().await?;
            let list = match events {
                Value::Array(v) => v,
                one => vec![one],
            };
            for e in list {
                if let Some(code) = e["plugindata"]["data"]["error_code"].as_i64() {
                    return Err(JanusError::Refused(format!(
                        "{code} {}",
                        e["plugindata"]["data"]["error"]
                    )));
                }
                if e["jsep"]["type"] == "offer"
                    && let Some(sdp) = e["jsep"]["sdp"].as_str()
                {
                    return Ok(sdp.to_owned());
                }
            }
        }
        Err(JanusError::NoOffer(timeout))
    }
}

async fn post(client: &Client, url: &str, mut body: Value) -> Result<Value, JanusError> {
    body["transaction"] = Value::from(transaction());
    let reply: Value = client.post(url).json(&body).send().await?.json().await?;
    if reply["janus"] == "error" {
        return Err(JanusError::Refused(reply["error"].to_string()));
    }
    Ok(reply)
}

fn data_id(reply: &Value) -> Result<u64, JanusError> {
    reply["data"]["id"]
        .as_u64()
        .ok_or_else(|| JanusError::Refused(reply.to_string()))
}
