//! The command line: `serve` and `check-config` run on the server host; the other
//! commands drive a running server over its admin API.

mod client;
mod connector;
mod read_key;
mod serve;
mod subscription;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::ServerOptions;

/// datapool: webhooks, an ingest API, SQL and file pollers into one live DataPool,
/// served to displays and dashboards. One binary, no other service needed.
#[derive(Debug, Parser)]
#[command(name = "datapool", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes, before or after the subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML config file [default: /etc/datapool/datapool.toml when it exists]
    #[arg(long, global = true, env = "DATAPOOL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data dir of the store; client commands read its admin-token and TLS certificate
    /// [default: ./datapool-data]
    #[arg(long, global = true, env = "DATAPOOL_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Base URL of the server, for client commands
    #[arg(
        long,
        global = true,
        env = "DATAPOOL_URL",
        default_value = "https://127.0.0.1:8443"
    )]
    url: String,
    /// Admin token, for client commands [default: the data dir's admin-token file]
    #[arg(long, global = true, env = "DATAPOOL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Trust this PEM certificate (or CA) for the server, besides the data dir's own
    #[arg(long, global = true, env = "DATAPOOL_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Skip verifying the server's certificate
    #[arg(long, global = true)]
    insecure: bool,
    /// Print JSON instead of tables, for scripts
    #[arg(long, global = true)]
    json: bool,
}

/// What `serve --help` adds after the flags.
const SERVE_HELP: &str = "\
Settings, lowest precedence first: built-in defaults, the TOML config file (keys named
like the flags with underscores: listen, http_listen, data_dir, tls_cert, tls_key,
log_format, shutdown_timeout_seconds), the DATAPOOL_* variables shown above, flags.

On first start the server creates in the data dir: admin-token (0600; the admin API's
bearer token), secret.key (0600; seals stored secrets), tls/cert.pem and tls/key.pem
(a self-signed certificate, unless --tls-cert/--tls-key are given), journal/ (accepted
requests, synced before each 202, deleted once applied) and db/ (the store).
SIGTERM or SIGINT: stop accepting, finish requests in flight, flush, exit 0.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (HTTPS on 0.0.0.0:8443 unless configured)
    #[command(after_help = SERVE_HELP)]
    Serve(ServerOptions),
    /// Validate the configuration and print the effective settings
    CheckConfig(ServerOptions),
    /// Replace the admin token of a stopped server (writes <data-dir>/admin-token)
    ResetAdminToken,
    /// Manage connectors on a running server
    #[command(subcommand)]
    Connector(connector::ConnectorCommand),
    /// Manage read keys (read-only access for displays) on a running server
    #[command(subcommand)]
    ReadKey(read_key::ReadKeyCommand),
    /// Manage subscriptions (change notifications pushed to other systems) on a running server
    #[command(subcommand)]
    Subscription(subscription::SubscriptionCommand),
}

/// Parses the command line, runs the command, and turns failure into exit status 1
/// with the reason on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(options) => serve::serve(&cli.global, options),
        Command::CheckConfig(options) => serve::check_config(&cli.global, options),
        Command::ResetAdminToken => serve::reset_admin_token(&cli.global),
        Command::Connector(command) => {
            client::run(&cli.global, |client| connector::run(client, command))
        }
        Command::ReadKey(command) => {
            client::run(&cli.global, |client| read_key::run(client, command))
        }
        Command::Subscription(command) => {
            client::run(&cli.global, |client| subscription::run(client, command))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
