//! `datapool stream …`: list streams, page through a stream's items, show and delete
//! one item, over the read API with the admin token; show and set a stream's snapshot
//! switch over the admin API.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{AdminClient, ApiPath};
use super::connector::{print_table, rows};
use crate::model::MAX_RETENTION_DAYS;

/// Stream commands.
#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// List streams with their item counts
    List,
    /// List a stream's items in id order, a page at a time
    Items {
        /// The stream
        stream: String,
        /// Items per page (the server caps it at 1000)
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this cursor (the nextCursor of the page before)
        #[arg(long, conflicts_with = "all")]
        cursor: Option<String>,
        /// Follow the cursors and list every item
        #[arg(long)]
        all: bool,
    },
    /// Show one item with its fields
    Get {
        /// The stream
        stream: String,
        /// The item id (any text; it is percent-encoded in the URL)
        id: String,
    },
    /// Delete one item; it is gone once the command returns
    Delete {
        /// The stream
        stream: String,
        /// The item id
        id: String,
    },
    /// Show a stream's snapshot switch (its fields' history), or turn it on or off and
    /// set how long points are kept; without flags it only shows
    #[command(after_help = SNAPSHOTS_HELP)]
    Snapshots {
        /// The stream (it must have had items)
        stream: String,
        /// Record every change of a field of its items from now on
        #[arg(long, conflicts_with = "off")]
        on: bool,
        /// Stop recording; points recorded so far stay readable until they age out
        #[arg(long)]
        off: bool,
        /// Days a point is kept (1-3650; 30 unless set)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RETENTION_DAYS)))]
        retention_days: Option<u32>,
    },
}

/// What `stream snapshots --help` adds after the flags.
const SNAPSHOTS_HELP: &str = "\
While snapshots are on, each change of a field of the stream's items records a point
(the time the write was accepted, the field's new value), read with
GET /api/streams/{stream}/items/{id}/history?field=<name>. Points older than the
retention go, and so do a field's points beyond its newest 10,000; both are swept in
the background. Every item also shows when each field last changed (fieldsChangedAt),
snapshots on or off.";

/// Columns of `stream list`.
const STREAM_COLUMNS: [(&str, &str); 3] = [
    ("STREAM", "name"),
    ("ITEMS", "itemCount"),
    ("UPDATED", "updatedAt"),
];
/// Columns of `stream items`.
const ITEM_COLUMNS: [(&str, &str); 5] = [
    ("ID", "id"),
    ("VERSION", "version"),
    ("UPDATED", "updatedAt"),
    ("CONNECTOR", "connectorId"),
    ("FIELDS", "fields"),
];

fn streams() -> ApiPath {
    ApiPath::new(["api", "streams"])
}

fn items(stream: &str) -> ApiPath {
    streams().segment(stream).segment("items")
}

fn admin_stream(stream: &str) -> ApiPath {
    ApiPath::new(["api", "admin", "streams", stream])
}

/// Runs one stream command.
pub async fn run(client: AdminClient, command: StreamCommand) -> anyhow::Result<()> {
    match command {
        StreamCommand::List => {
            let answer = client.call(Method::GET, &streams(), None).await?;
            show(&client, &answer, |a| {
                print_table(&STREAM_COLUMNS, rows(&a["streams"]))
            })
        }
        StreamCommand::Items {
            stream,
            limit,
            cursor,
            all,
        } => {
            let answer = list_items(&client, &stream, limit, cursor, all).await?;
            show(&client, &answer, |a| {
                print_table(&ITEM_COLUMNS, rows(&a["items"]));
                if let Some(next) = a["nextCursor"].as_str() {
                    println!("\nmore: --cursor {next}");
                }
            })
        }
        StreamCommand::Get { stream, id } => {
            let item = items(&stream).segment(&id);
            let answer = client.call(Method::GET, &item, None).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
        StreamCommand::Delete { stream, id } => {
            let item = items(&stream).segment(&id);
            client.call(Method::DELETE, &item, None).await?;
            if !client.json {
                println!("deleted item {id:?} of stream {stream}");
            }
            Ok(())
        }
        StreamCommand::Snapshots {
            stream,
            on,
            off,
            retention_days,
        } => {
            let mut patch = serde_json::Map::new();
            if on || off {
                patch.insert("enabled".into(), json!(on));
            }
            if let Some(days) = retention_days {
                patch.insert("retentionDays".into(), json!(days));
            }
            let path = admin_stream(&stream);
            let answer = if patch.is_empty() {
                client.call(Method::GET, &path, None).await?
            } else {
                let body = json!({ "snapshots": patch });
                client.call(Method::PATCH, &path, Some(&body)).await?
            };
            show(&client, &answer, |a| {
                let snapshots = &a["stream"]["snapshots"];
                let state = if snapshots["enabled"] == json!(true) {
                    "on"
                } else {
                    "off"
                };
                println!(
                    "stream {stream}: snapshots {state}, kept {} days",
                    snapshots["retentionDays"]
                );
            })
        }
    }
}

/// One page of a stream's items from `cursor`, or with `all` every page joined, as
/// `{"items","nextCursor"}`.
async fn list_items(
    client: &AdminClient,
    stream: &str,
    limit: usize,
    mut cursor: Option<String>,
    all: bool,
) -> anyhow::Result<Value> {
    let mut collected = Vec::new();
    loop {
        let mut page = items(stream).query("limit", limit);
        if let Some(cursor) = &cursor {
            page = page.query("cursor", cursor);
        }
        let mut answer = client.call(Method::GET, &page, None).await?;
        if let Value::Array(list) = answer["items"].take() {
            collected.extend(list);
        }
        cursor = answer["nextCursor"].as_str().map(str::to_owned);
        if !all || cursor.is_none() {
            return Ok(json!({"items": collected, "nextCursor": cursor}));
        }
    }
}

/// Prints `answer` as JSON under `--json`, else with `table`.
fn show(client: &AdminClient, answer: &Value, table: impl FnOnce(&Value)) -> anyhow::Result<()> {
    if client.json {
        println!("{}", serde_json::to_string_pretty(answer)?);
    } else {
        table(answer);
    }
    Ok(())
}
