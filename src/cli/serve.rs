//! `datapool serve` and `datapool check-config`.

use std::io::IsTerminal;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use super::GlobalArgs;
use crate::app::Server;
use crate::config::{Config, LogFormat, ServerOptions};

fn load(global: &GlobalArgs, mut options: ServerOptions) -> anyhow::Result<Config> {
    options.data_dir = global.data_dir.clone();
    Ok(Config::load(global.config.as_deref(), options)?)
}

/// Prints the effective configuration, or why it is invalid.
pub fn check_config(global: &GlobalArgs, options: ServerOptions) -> anyhow::Result<()> {
    let config = load(global, options)?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&config)?);
    } else {
        println!("# effective configuration: defaults < config file < DATAPOOL_* < flags");
        print!("{}", config.to_toml());
    }
    Ok(())
}

/// Issues a new admin token into the data dir of a stopped server.
pub fn reset_admin_token(global: &GlobalArgs) -> anyhow::Result<()> {
    let data_dir = Config::data_dir(global.config.as_deref(), global.data_dir.clone())?;
    let path = crate::app::reset_admin_token(&data_dir)?;
    println!(
        "a new admin token is in {}; the previous one no longer works",
        path.display()
    );
    Ok(())
}

/// Runs the server until SIGTERM or SIGINT.
pub fn serve(global: &GlobalArgs, options: ServerOptions) -> anyhow::Result<()> {
    let config = load(global, options)?;
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        let shutdown = CancellationToken::new();
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let on_signal = shutdown.clone();
        let signals = tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = on_signal.cancelled() => {}
            }
            on_signal.cancel();
        });
        let result = server.run(shutdown.clone()).await;
        shutdown.cancel();
        let _ = signals.await;
        result.map_err(anyhow::Error::from)
    })
}

/// The log filter unless `RUST_LOG` sets one. rustls warns about every client that
/// sends an IP address as TLS server name (load tools, some devices): that is noise.
const DEFAULT_LOG_FILTER: &str = "info,rustls=error";

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}
