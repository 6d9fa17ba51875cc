//! `datapool connector …`: create, list, show, update, enable, disable, delete,
//! rotate-key, test and upload over the admin API.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{AdminClient, ApiPath, Usage, REQUEST_TIMEOUT};
use crate::model::{FileSettings, SqlSettings};

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
    /// Run a SQL connector's query, or fetch a file connector's URL or folder, once and show what it would store, writing nothing
    #[command(after_help = TEST_HELP)]
    Test {
        /// Connector id (c_…)
        id: String,
    },
    /// Upload a file to a file connector whose source is upload, and import it
    #[command(after_help = UPLOAD_HELP)]
    Upload {
        /// Connector id (c_…)
        id: String,
        /// The CSV, Excel, JSON or XML file
        file: PathBuf,
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
    let all = || ApiPath::new(CONNECTORS);
    let one = |id: &str| all().segment(id);
    let (method, path, body) = match &command {
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
            (Method::POST, all(), Some(doc))
        }
        ConnectorCommand::List => (Method::GET, all(), None),
        ConnectorCommand::Show { id } => (Method::GET, one(id), None),
        ConnectorCommand::Update { id, file } => {
            (Method::PATCH, one(id), Some(read_document(file)?))
        }
        ConnectorCommand::Upload { id, file } => {
            return upload(&client, one(id).segment("upload"), file).await;
        }
        ConnectorCommand::Enable { id } => (Method::POST, one(id).segment("enable"), None),
        ConnectorCommand::Disable { id } => (Method::POST, one(id).segment("disable"), None),
        ConnectorCommand::Delete { id } => (Method::DELETE, one(id), None),
        ConnectorCommand::RotateKey { id } => (Method::POST, one(id).segment("rotate-key"), None),
        ConnectorCommand::Test { id } => (Method::POST, one(id).segment("test"), None),
        ConnectorCommand::Logs { id, limit } => (
            Method::GET,
            one(id).segment("logs").query("limit", limit),
            None,
        ),
    };
    let wait = match &command {
        ConnectorCommand::Test { id } => test_wait(&client, &one(id)).await?,
        _ => REQUEST_TIMEOUT,
    };
    let answer = client
        .call_within(method, &path, body.as_ref(), wait)
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

/// Sends `file` to the upload endpoint `path` and prints what the import did.
async fn upload(client: &AdminClient, path: ApiPath, file: &Path) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(file).map_err(|e| Usage(format!("cannot read {}: {e}", file.display())))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let answer = client
        .post_bytes(&path.query("filename", &name), bytes, UPLOAD_TIMEOUT)
        .await?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let import = &answer["import"];
    println!(
        "imported {}: {} items, {} changed, {} deleted in {} ms",
        import["file"].as_str().unwrap_or(&name),
        import["items"],
        import["changed"],
        import["deleted"],
        import["durationMs"]
    );
    Ok(())
}

/// How long `connector upload` waits for the import: a 100 MiB file over a slow link,
/// then parsed and written on a busy box.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// What `connector upload --help` adds after the arguments.
const UPLOAD_HELP: &str = "\
Sends the file as it is (the connector's settings say how to read it: format, sheet,
delimiter, encoding, …) and waits until it is imported: every row or element becomes an
item, and with mirroring (the default) this connector's items the file no longer holds
are deleted. A malformed file (a ragged row, an unclosed quote, a truncated workbook,
invalid JSON or XML) is refused whole with the reason: nothing of it is stored and the
connector shows Error until a good file arrives. The file may be at most the
connector's maxBytes (default 100 MiB). --json prints the answer.";

/// How long `connector test` waits for the connector at `path`: past the longest run
/// its settings allow, so a slow database shows as the server's classified error
/// (connect timeout, query timeout), not as the client giving up first.
async fn test_wait(client: &AdminClient, path: &ApiPath) -> anyhow::Result<Duration> {
    let shown = client.call(Method::GET, path, None).await?;
    let settings = &shown["connector"]["settings"];
    let longest = match serde_json::from_value::<SqlSettings>(settings.clone()) {
        Ok(sql) => sql.longest_run(),
        Err(_) => serde_json::from_value::<FileSettings>(settings.clone())
            .map_or(Duration::ZERO, |file| Duration::from_secs(file.timeout())),
    };
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
timeoutSeconds (connecting, then the query) plus 30 s for the answer. A file connector
fetches its URL, or reads its watched folder's oldest file (leaving it there), and
parses it whole as an import would. --json prints the answer.";

/// Prints a test report: the summary, the fields as a table, the sample as JSON.
fn print_test(test: &Value) -> anyhow::Result<()> {
    if let Some(file) = test["file"].as_str() {
        println!("file: {file}");
    }
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

/// The JSON object in `file` (`-`: standard input); a [`Usage`] error when it cannot be
/// read or is not one.
pub fn read_document(file: &PathBuf) -> Result<Value, Usage> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Usage(format!("reading standard input: {e}")))?;
        text
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| Usage(format!("cannot read {}: {e}", file.display())))?
    };
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| Usage(format!("the document is not valid JSON: {e}")))?;
    if !doc.is_object() {
        return Err(Usage("the document must be a JSON object".into()));
    }
    Ok(doc)
}

/// The connectors' collection in the admin API.
const CONNECTORS: [&str; 3] = ["api", "admin", "connectors"];

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

/// The objects of a JSON array (none for anything else).
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
