//! The `floorcast` binary: parse the command line, set up logging, and either serve or mint a
//! token. The library does the work; this file only wires it to the process (stdout lines,
//! signals, exit code).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::Parser;
use server::auth::AuthKeys;
use server::cli::{Cli, Command, ServeArgs, TokenArgs};
use server::{Config, Server, secret};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr: stdout carries only the lines scripts read (addresses, tokens).
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not for journald or a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match cli.into_command() {
        Command::Serve(args) => tokio::runtime::Runtime::new()
            .context("starting the async runtime")
            .and_then(|rt| rt.block_on(serve(args))),
        Command::Token(args) => token(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floorcast: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.common.config.as_deref(), &args.overrides())?;
    let listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_addr))?;
    let server = Server::new(config, listener).await?;

    let mut out = std::io::stdout().lock();
    writeln!(out, "floorcast listening on http://{}", server.http_addr())?;
    if let Some(addr) = server.media_addr() {
        writeln!(out, "floorcast media on udp://{addr}")?;
    }
    if let Some(banner) = server.dev_banner()? {
        writeln!(out, "{banner}")?;
    }
    // Tests and scripts wait for these lines; a pipe must not hold them back.
    out.flush()?;
    drop(out);

    server.serve(shutdown_signal()).await?;
    Ok(())
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let config = Config::load(args.common.config.as_deref(), &args.overrides())?;
    let secret = secret::resolve(&config, false)?;
    let jwt = AuthKeys::from_secret(secret.as_bytes()).mint(&args.claims(SystemTime::now()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{jwt}")?;
    out.flush()?;
    Ok(())
}

/// Ctrl-C or SIGTERM (systemd, Kubernetes) starts a graceful shutdown.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
