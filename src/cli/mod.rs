//! The command line: `serve` and `check-config` run on the server host; the other
//! commands drive a running server over its admin API.

mod backup;
mod client;
mod connector;
mod read_key;
mod serve;
mod stream;
mod subscription;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::backup::BackupError;
use crate::config::{Config, ServerOptions};
use client::{ApiFailure, Usage};

/// What `--version` prints after the name: the release and the git commit it was built
/// from ("unknown" when built outside a git checkout), to tell exactly what runs.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("DATAPOOL_GIT_HASH"),
    ")"
);

/// datapool: webhooks, an ingest API, SQL and file pollers into one live DataPool,
/// served to displays and dashboards. One binary, no other service needed.
#[derive(Debug, Parser)]
#[command(name = "datapool", version = VERSION, propagate_version = true, after_help = EXIT_HELP)]
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
    /// Admin token, for client commands; visible to other users in `ps`: prefer
    /// --token-file or DATAPOOL_TOKEN [default: the data dir's admin-token file]
    #[arg(long, global = true, env = "DATAPOOL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the admin token, for client commands (read before --token)
    #[arg(long, global = true, env = "DATAPOOL_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
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
The web UI is served at / on the same listeners (https://<host>:8443/): sign in with the
admin token for Data Sources, the new-connector wizard, the Explorer and Webhooks.

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
    /// Read and delete a running server's items, and set a stream's snapshots
    #[command(subcommand)]
    Stream(stream::StreamCommand),
    /// Write a backup of a running server (store, keys, certificate) to one file
    #[command(after_help = backup::BACKUP_HELP)]
    Backup {
        /// Where to write the backup
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a backup into the data dir (--data-dir) of a stopped server
    #[command(after_help = backup::RESTORE_HELP)]
    Restore {
        /// The backup file
        file: PathBuf,
        /// Replace what datapool keeps in a data dir that is not empty
        #[arg(long)]
        force: bool,
    },
    /// Manage subscriptions (change notifications pushed to other systems) on a running server
    #[command(subcommand)]
    Subscription(subscription::SubscriptionCommand),
}

/// What the top-level `--help` adds after the commands.
const EXIT_HELP: &str = "\
Exit status:
  0  success
  1  failure: the server failed (5xx), could not be reached, or a local step failed
     (a backup that is truncated or corrupt, a file that cannot be written)
  2  usage: bad flags or arguments, a document that is not a JSON object, no admin token
  3  not found: no such connector, read key, stream or item (404)
  4  refused: the server refused the request (400, 401, 403, 409, 413, 429, …), or the
     restore target is not empty or is in use
With --json, an error is printed on stderr as JSON too:
  {\"error\":{\"code\",\"message\",\"status\"?,\"requestId\"?}}";

/// Exit status of a failed command (see [`EXIT_HELP`]).
const EXIT_FAILURE: u8 = 1;
/// Exit status of a command used wrongly.
const EXIT_USAGE: u8 = 2;
/// Exit status of a command naming something the server does not have.
const EXIT_NOT_FOUND: u8 = 3;
/// Exit status of a command the server (or the restore target) refused.
const EXIT_REFUSED: u8 = 4;

/// Parses the command line, runs the command, and turns failure into the exit status
/// of its kind with the reason on stderr (as JSON under `--json`).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return parse_failure(&error),
    };
    let json = cli.global.json;
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
        Command::Stream(command) => client::run(&cli.global, |client| stream::run(client, command)),
        Command::Backup { out } => client::run(&cli.global, |client| backup::backup(client, out)),
        Command::Restore { file, force } => {
            Config::data_dir(cli.global.config.as_deref(), cli.global.data_dir.clone())
                .map_err(anyhow::Error::from)
                .and_then(|dir| backup::restore(&file, &dir, force, json))
        }
        Command::Subscription(command) => {
            client::run(&cli.global, |client| subscription::run(client, command))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let (status, code) = classify(&error);
            if json {
                eprintln!("{}", error_json(&error, code));
            } else {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(status)
        }
    }
}

/// The exit status and the `--json` error code of a failed command.
fn classify(error: &anyhow::Error) -> (u8, &'static str) {
    for cause in error.chain() {
        if let Some(failure) = cause.downcast_ref::<ApiFailure>() {
            return match failure.status().as_u16() {
                404 => (EXIT_NOT_FOUND, "NOT_FOUND"),
                400..=499 => (EXIT_REFUSED, "REFUSED"),
                _ => (EXIT_FAILURE, "SERVER_ERROR"),
            };
        }
        if cause.is::<Usage>() {
            return (EXIT_USAGE, "USAGE");
        }
        match cause.downcast_ref::<BackupError>() {
            Some(BackupError::Refused(_)) => return (EXIT_REFUSED, "REFUSED"),
            Some(BackupError::Truncated { .. } | BackupError::Corrupt { .. }) => {
                return (EXIT_FAILURE, "CORRUPT_BACKUP")
            }
            _ => {}
        }
        if cause.is::<reqwest::Error>() {
            return (EXIT_FAILURE, "UNREACHABLE");
        }
    }
    (EXIT_FAILURE, "FAILED")
}

/// The `--json` form of a failed command's error: the server's own error body when it
/// answered one, else `code` with the whole message.
fn error_json(error: &anyhow::Error, code: &str) -> Value {
    match error.chain().find_map(|c| c.downcast_ref::<ApiFailure>()) {
        Some(failure) => failure.to_json(),
        None => json!({"error": {"code": code, "message": format!("{error:#}")}}),
    }
}

/// Prints what clap says about a command line it cannot parse (as JSON when `--json` is
/// among the arguments) and exits 2; help and the version are printed as asked, exit 0.
fn parse_failure(error: &clap::Error) -> ExitCode {
    let status = u8::try_from(error.exit_code()).unwrap_or(EXIT_USAGE);
    if status != 0 && std::env::args_os().any(|arg| arg == "--json") {
        let message = error.render().to_string();
        let message = message.trim().trim_start_matches("error: ");
        eprintln!(
            "{}",
            json!({"error": {"code": "USAGE", "message": message}})
        );
    } else {
        let _ = error.print();
    }
    ExitCode::from(status)
}
