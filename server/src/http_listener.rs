//! How the node accepts HTTP connections: our own accept loop in front of hyper, because a
//! node on the open internet must bound what a client can hold without sending a request.
//!
//! - **Connections** are capped overall and per IP address. Past a cap, the new connection
//!   gets a fixed `503` with `Retry-After` (written without waiting) and is closed: it never
//!   reaches hyper, so it costs no task, no buffer and no file descriptor beyond the accept.
//! - **Headers** must arrive within `http_header_timeout_seconds`, and the same timer closes
//!   an idle keep-alive connection (hyper starts it whenever it waits for a request head).
//! - **Bodies** have their own deadline, in the body-reading middleware (`layers`).
//! - A failing `accept` (out of file descriptors) pauses the loop briefly instead of
//!   spinning, and says so in the log at most once a second.
//!
//! - **TLS** (when `tls_cert`/`tls_key` are set): the handshake runs on the connection's own
//!   task under the header timeout, so a client that stalls in it holds no more than one that
//!   stalls before its request head; a connection over a cap is closed without an answer (a
//!   plaintext 503 means nothing to a TLS client).
//!
//! HTTP/1.1 only, also over TLS (ALPN says so): the API's requests are small and few.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::config::Config;
use crate::metrics::{Limit, Metrics};

/// The accept loop's limits, from the config.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_timeout: Duration,
}

impl HttpLimits {
    pub fn from_config(config: &Config) -> Self {
        HttpLimits {
            max_connections: config.max_http_connections,
            max_connections_per_ip: config.max_http_connections_per_ip,
            header_timeout: Duration::from_secs(config.http_header_timeout_seconds.into()),
        }
    }
}

/// Pause after a failed accept (EMFILE, ENFILE, ENOBUFS): the condition lasts a while.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The answer to a connection over a cap, sent as is.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 5\r\n\
connection: close\r\n\
content-length: 142\r\n\
\r\n\
{\"error\":\"too_many_connections\",\"message\":\"this server has too many open connections (or too many from your address); retry in a few seconds\"}";

/// Serves `router` on `listener` until `shutdown` resolves; then asks every connection to
/// finish its request in flight and returns when all have closed (the caller bounds that
/// wait: event streams never finish on their own).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: HttpLimits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let open = Connections::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut last_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, "accepting an HTTP connection failed");
                        last_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let slot = match open.admit(peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(limit) => {
                metrics.limit_hit(limit);
                if tls.is_none() {
                    // Best effort, never waiting: a fresh socket's send buffer is empty.
                    let _ = stream.try_write(REFUSAL);
                }
                continue;
            }
        };
        metrics.set_http_connections(open.count());
        tokio::spawn(connection(
            stream,
            tls.clone(),
            peer,
            router.clone(),
            limits.header_timeout,
            slot,
            stop_rx.clone(),
            metrics.clone(),
        ));
    }
    let _ = stop_tx.send(true);
    open.wait_closed().await;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    slot: Slot,
    stop: watch::Receiver<bool>,
    metrics: Metrics,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_connection(stream, peer, router, header_timeout, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    serve_connection(stream, peer, router, header_timeout, stop).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
    let open = slot.open.clone();
    drop(slot);
    metrics.set_http_connections(open.count());
}

/// HTTP/1.1 on one connection, plain or TLS, until it ends or the node stops.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        // Handlers that rate-limit by address read it from here (`signal::client_ip::ClientIp`).
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = async { drop(stop.wait_for(|stop| *stop).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and malformed requests: the client's problem, not ours.
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}

/// Open connections, overall and per address. Cheap to clone.
#[derive(Clone, Default)]
struct Connections {
    inner: Arc<ConnectionsInner>,
}

#[derive(Default)]
struct ConnectionsInner {
    table: Mutex<Table>,
    closed: Notify,
}

#[derive(Default)]
struct Table {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Connections {
    fn admit(&self, ip: IpAddr, limits: &HttpLimits) -> Result<Slot, Limit> {
        let mut t = self.lock();
        if t.total >= limits.max_connections {
            return Err(Limit::HttpConnections);
        }
        let from_ip = t.per_ip.entry(ip).or_default();
        if *from_ip >= limits.max_connections_per_ip {
            return Err(Limit::HttpConnectionsPerIp);
        }
        *from_ip += 1;
        t.total += 1;
        Ok(Slot {
            open: self.clone(),
            ip,
        })
    }

    fn count(&self) -> usize {
        self.lock().total
    }

    async fn wait_closed(&self) {
        loop {
            let closed = self.inner.closed.notified();
            if self.count() == 0 {
                return;
            }
            closed.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Each critical section is a counter update: a poisoned table is still whole.
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One admitted connection; gives its place back when dropped.
struct Slot {
    open: Connections,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.open.lock();
        t.total -= 1;
        if let Some(n) = t.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.per_ip.remove(&self.ip);
            }
        }
        let total = t.total;
        drop(t);
        if total == 0 {
            self.open.inner.closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> HttpLimits {
        HttpLimits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            header_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn caps_overall_and_per_address() {
        let open = Connections::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let l = limits(3, 2);
        let a1 = open.admit(a, &l).expect("first from a");
        let _a2 = open.admit(a, &l).expect("second from a");
        assert_eq!(open.admit(a, &l).err(), Some(Limit::HttpConnectionsPerIp));
        let _b1 = open.admit(b, &l).expect("b is not a");
        assert_eq!(open.admit(b, &l).err(), Some(Limit::HttpConnections));
        drop(a1);
        assert_eq!(open.count(), 2);
        assert!(open.admit(a, &l).is_ok(), "a's closed slot is free again");
    }

    #[test]
    fn refusal_is_a_complete_response() {
        let text = std::str::from_utf8(REFUSAL).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        assert_eq!(declared, body.len());
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(json["error"], "too_many_connections");
    }
}
