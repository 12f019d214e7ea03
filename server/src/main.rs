//! vitrine-server: configuration, logging, start-up and signals; the work is
//! in the library.

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::sync::Arc;
use vitrine_server::api::AppState;
use vitrine_server::config::{self, FlagOverrides};
use vitrine_server::registry::Registry;

#[derive(Parser, Debug)]
#[command(
    name = "vitrine-server",
    version,
    about = "Serve recommendations from model artifacts over HTTP"
)]
struct Cli {
    /// TOML configuration (every key: configs/vitrine.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of `<model>/<version>/model.vtr` (overrides models_dir).
    #[arg(long)]
    models: Option<PathBuf>,
    /// ADDRESS:PORT (overrides listen; default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<String>,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("vitrine-server: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let flags = FlagOverrides {
        listen: cli.listen.clone(),
        models_dir: cli.models.clone(),
    };
    let config = config::load(cli.config.as_deref(), &|k| std::env::var(k).ok(), &flags)?;
    init_logging(&config);
    vitrine_server::metrics::install();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.threads > 0 {
        runtime.worker_threads(config.threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let registry = Registry::load(&config);
        let local = listener.local_addr().context("listening address")?;
        tracing::info!(listen = %local, models = registry.all().len(), "vitrine-server ready");
        let state = Arc::new(AppState { config, registry });
        vitrine_server::http::serve(listener, state, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}

fn init_logging(config: &config::Config) {
    let level: tracing::Level = config.log_level.parse().unwrap_or(tracing::Level::INFO);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(level);
    if config.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
