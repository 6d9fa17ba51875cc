//! `datapool connector …`: create, list, show, update, enable, disable, delete,
//! rotate-key and test over the admin API.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{AdminClient, REQUEST_TIMEOUT};
use crate::model::SqlSettings;

/// Connector commands.
#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// Create a connector from flags, or from a whole document with --file
    Create {
        /// Display name, unique
        #[arg(long, required_unless_present = "file")]
        name: Option<String>,
        /// webhook, api, sql or file
        #[arg(long = "type", required_unless_present = "file")]
        kind: Option<String>,
        /// The stream it writes to
        #[arg(long, required_unless_present = "file")]
        stream: Option<String>,
        /// The source field that identifies an item
        #[arg(long)]
        item_key: Option<String>,
        /// A connector document (JSON, SPEC §1.1); - reads standard input
        #[arg(long, conflicts_with_all = ["name", "kind", "stream", "item_key"])]
        file: Option<PathBuf>,
    },
    /// List connectors
    List,
    /// Show one connector
    Show {
        /// Connector id (c_…)
        id: String,
    },
    /// Change a connector with a JSON Merge Patch document (signing, sender options, limits)
    Update {
        /// Connector id (c_…)
        id: String,
        /// The patch (JSON); - reads standard input
        #[arg(long)]
        file: PathBuf,
    },
    /// Enable a connector
    Enable {
        /// Connector id (c_…)
        id: String,
    },
    /// Disable a connector: pushes get 403, polls stop
    Disable {
        /// Connector id (c_…)
        id: String,
    },
    /// Delete a connector; its ingest key stops working
    Delete {
        /// Connector id (c_…)
        id: String,
    },
    /// Issue a new ingest key; the old one stops working at once
    RotateKey {
        /// Connector id (c_…)
        id: String,
    },
    /// Run a SQL connector's query once and show what it would store, writing nothing
    #[command(after_help = TEST_HELP)]
    Test {
        /// Connector id (c_…)
        id: String,
    },
    /// Show a connector's log, newest first
    Logs {
        /// Connector id (c_…)
        id: String,
        /// Most entries to show
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// Runs one connector command.
pub async fn run(client: AdminClient, command: ConnectorCommand) -> anyhow::Result<()> {
    let path = |id: &str, action: &str| format!("/api/admin/connectors/{id}{action}");
    let (method, url, body) = match &command {
        ConnectorCommand::Create {
            name,
            kind,
            stream,
            item_key,
            file,
        } => {
            let doc = match file {
                Some(file) => read_document(file)?,
                None => {
                    let mut doc = json!({"name": name, "type": kind, "stream": stream});
                    if let Some(key) = item_key {
                        doc["itemKey"] = json!(key);
                    }
                    doc
                }
            };
            (Method::POST, "/api/admin/connectors".to_owned(), Some(doc))
        }
        ConnectorCommand::List => (Method::GET, "/api/admin/connectors".to_owned(), None),
        ConnectorCommand::Show { id } => (Method::GET, path(id, ""), None),
        ConnectorCommand::Update { id, file } => {
            (Method::PATCH, path(id, ""), Some(read_document(file)?))
        }
        ConnectorCommand::Enable { id } => (Method::POST, path(id, "/enable"), None),
        ConnectorCommand::Disable { id } => (Method::POST, path(id, "/disable"), None),
        ConnectorCommand::Delete { id } => (Method::DELETE, path(id, ""), None),
        ConnectorCommand::RotateKey { id } => (Method::POST, path(id, "/rotate-key"), None),
        ConnectorCommand::Test { id } => (Method::POST, path(id, "/test"), None),
        ConnectorCommand::Logs { id, limit } => {
            (Method::GET, path(id, &format!("/logs?limit={limit}")), None)
        }
    };
    let wait = match &command {
        ConnectorCommand::Test { id } => test_wait(&client, &path(id, "")).await?,
        _ => REQUEST_TIMEOUT,
    };
    let answer = client
        .call_within(method, &url, body.as_ref(), wait)
        .await?;
    if client.json {
        if !answer.is_null() {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        return Ok(());
    }
    match command {
        ConnectorCommand::List => print_table(&CONNECTOR_COLUMNS, rows(&answer["connectors"])),
        ConnectorCommand::Logs { .. } => print_table(&LOG_COLUMNS, rows(&answer["entries"])),
        ConnectorCommand::Delete { id } => println!("deleted connector {id}"),
        ConnectorCommand::Test { .. } => print_test(&answer["test"])?,
        _ => {
            println!("{}", serde_json::to_string_pretty(&answer["connector"])?);
            if let Some(key) = answer["ingestKey"].as_str() {
                println!("\ningest key (shown only now; store it safely): {key}");
            }
        }
    }
    Ok(())
}

/// How long `connector test` waits for the connector at `path`: past the longest run
/// its settings allow, so a slow database shows as the server's classified error
/// (connect timeout, query timeout), not as the client giving up first.
async fn test_wait(client: &AdminClient, path: &str) -> anyhow::Result<Duration> {
    let shown = client.call(Method::GET, path, None).await?;
    let longest = serde_json::from_value::<SqlSettings>(shown["connector"]["settings"].clone())
        .map_or(Duration::ZERO, |settings| settings.longest_run());
    Ok(longest + REQUEST_TIMEOUT)
}

/// What `connector test --help` adds after the arguments.
const TEST_HELP: &str = "\
Connects with the connector's settings (also when it is disabled), runs its query with
the named parameters bound, and prints the row count, the time taken, each field with
the JSON type of its values, and up to 20 items exactly as a poll would store them.
Nothing is written. A failure prints the reason (cannot connect, connect timeout,
authentication failed, query timeout, permission denied, syntax error, a column type
that cannot be mapped) with the database's own message. It waits twice the connector's
timeoutSeconds (connecting, then the query) plus 30 s for the answer. --json prints
the answer.";

/// Prints a test report: the summary, the fields as a table, the sample as JSON.
fn print_test(test: &Value) -> anyhow::Result<()> {
    println!(
        "ok: {} rows in {} ms{}",
        test["rowCount"],
        test["durationMs"],
        if test["truncated"] == true {
            " (cut at maxRows)"
        } else {
            ""
        }
    );
    println!();
    print_table(&FIELD_COLUMNS, rows(&test["fields"]));
    println!("\nsample items:");
    println!("{}", serde_json::to_string_pretty(&test["sample"])?);
    for warning in rows(&test["warnings"]).iter().filter_map(Value::as_str) {
        println!("warning: {warning}");
    }
    Ok(())
}

/// A JSON object document from `file`, or standard input for `-`.
pub fn read_document(file: &PathBuf) -> anyhow::Result<Value> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let doc: Value = serde_json::from_str(&text).context("the document is not valid JSON")?;
    if !doc.is_object() {
        bail!("the document must be a JSON object");
    }
    Ok(doc)
}

/// Columns of `connector list`: title and field.
const CONNECTOR_COLUMNS: [(&str, &str); 6] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("TYPE", "type"),
    ("STREAM", "stream"),
    ("STATE", "state"),
    ("KEY ID", "keyId"),
];
/// Columns of the fields `connector test` found.
const FIELD_COLUMNS: [(&str, &str); 2] = [("FIELD", "name"), ("TYPE", "type")];
/// Columns of `connector logs`.
const LOG_COLUMNS: [(&str, &str); 5] = [
    ("AT", "at"),
    ("LEVEL", "level"),
    ("EVENT", "event"),
    ("ITEMS", "items"),
    ("MESSAGE", "message"),
];

/// The elements of a JSON array, none for anything else.
pub fn rows(list: &Value) -> &[Value] {
    list.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Prints JSON objects as aligned columns of the given fields; absent ones show `-`.
pub fn print_table(columns: &[(&str, &str)], objects: &[Value]) {
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = objects
        .iter()
        .map(|o| columns.iter().map(|(_, field)| cell(&o[*field])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (title, _))| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|(title, _)| *title).collect());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}
