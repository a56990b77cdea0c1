//! The `floorcast` binary: parse the command line, set up logging, and either serve or mint a
//! token. The library does the work; this file only wires it to the process (stdout lines,
//! signals, exit code).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Parser;
use server::auth::{AuthKeys, TokenPolicy};
use server::cli::{Cli, Command, LogFormat, ServeArgs, TokenArgs};
use server::{Config, Server, drain, secret};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let command = Cli::parse().into_command();
    let log_format = command.config_args().log_format;
    init_logging(log_format);
    let result = match command {
        Command::Serve(args) => tokio::runtime::Runtime::new()
            .context("starting the async runtime")
            .and_then(|rt| rt.block_on(serve(args))),
        Command::Token(args) => token(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match log_format {
                LogFormat::Text => eprintln!("floorcast: error: {e:#}"),
                // A log shipper expecting one JSON object per line would drop a bare line.
                LogFormat::Json => tracing::error!(error = format!("{e:#}"), "floorcast failed"),
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr: stdout carries only the lines scripts read (addresses, tokens). The
/// format comes from the command line or the environment, not the config file, because the
/// config is loaded (and its errors logged) after this.
fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match format {
        // Colour codes only for a terminal, not for journald or a log file.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // The enclosing spans ride along, so a line can be found by its session or peer id.
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.common.config.as_deref(), &args.overrides())?;
    let listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_addr))?;
    let server = Server::new(config, listener).await?;

    let mut out = std::io::stdout().lock();
    let scheme = if server.state().config.serves_https() {
        "https"
    } else {
        "http"
    };
    writeln!(
        out,
        "floorcast listening on {scheme}://{}",
        server.http_addr()
    )?;
    if let Some(addr) = server.media_addr() {
        writeln!(out, "floorcast media on udp://{addr}")?;
    }
    if let Some(banner) = server.dev_banner()? {
        writeln!(out, "{banner}")?;
    }
    // Tests and scripts wait for these lines; a pipe must not hold them back.
    out.flush()?;
    drop(out);

    let state = server.state();
    let (first, again) = signals();
    let stop = drain::run(
        state.drain.clone(),
        state.resources.clone(),
        state.metrics.clone(),
        Duration::from_secs(state.config.drain_timeout_seconds.into()),
        async {
            let _ = first.await;
        },
        async {
            let _ = again.await;
        },
    );
    server
        .serve(async move {
            stop.await;
        })
        .await?;
    Ok(())
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let config = Config::load(args.common.config.as_deref(), &args.overrides())?;
    let secret = secret::resolve(&config, false)?;
    // The server's policy: its issuer and audience go in, and a lifetime it would refuse
    // is refused here already.
    let keys = AuthKeys::new(secret.as_bytes(), TokenPolicy::from_config(&config), None);
    let jwt = keys.mint(&args.claims(SystemTime::now(), keys.policy()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{jwt}")?;
    out.flush()?;
    Ok(())
}

/// Ctrl-C or SIGTERM (systemd, Kubernetes): the first starts the drain (see `drain`), the
/// second stops the node at once. A listener that cannot be installed is logged and never
/// fires.
fn signals() -> (oneshot::Receiver<()>, oneshot::Receiver<()>) {
    let (first_tx, first_rx) = oneshot::channel();
    let (again_tx, again_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    None
                }
            };
        let next = async |term: &mut Option<tokio::signal::unix::Signal>| {
            let sigterm = async {
                match term {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                r = tokio::signal::ctrl_c() => {
                    if r.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                () = sigterm => {}
            }
        };
        next(&mut term).await;
        let _ = first_tx.send(());
        next(&mut term).await;
        let _ = again_tx.send(());
    });
    (first_rx, again_rx)
}
