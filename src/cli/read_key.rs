//! `datapool read-key …`: issue, list and revoke read keys for displays.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{AdminClient, ApiPath};
use super::connector::print_table;

/// Read key commands.
#[derive(Debug, Subcommand)]
pub enum ReadKeyCommand {
    /// Issue a read key (shown once)
    Create {
        /// What the key is for, e.g. the display it goes on
        #[arg(long)]
        name: String,
        /// A stream it may read; repeat for more; none means all streams
        #[arg(long = "stream")]
        streams: Vec<String>,
    },
    /// List read keys
    List,
    /// Revoke a read key; it stops working at once
    Delete {
        /// Read key id (r_…)
        id: String,
    },
}

/// The read keys' collection in the admin API.
const READ_KEYS: [&str; 3] = ["api", "admin", "read-keys"];

/// Columns of `read-key list`.
const COLUMNS: [(&str, &str); 5] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("STREAMS", "streams"),
    ("KEY ID", "keyId"),
    ("CREATED", "createdAt"),
];

/// Runs one read key command.
pub async fn run(client: AdminClient, command: ReadKeyCommand) -> anyhow::Result<()> {
    let (method, path, body) = match &command {
        ReadKeyCommand::Create { name, streams } => {
            let mut doc = json!({"name": name});
            if !streams.is_empty() {
                doc["streams"] = json!(streams);
            }
            (Method::POST, ApiPath::new(READ_KEYS), Some(doc))
        }
        ReadKeyCommand::List => (Method::GET, ApiPath::new(READ_KEYS), None),
        ReadKeyCommand::Delete { id } => {
            (Method::DELETE, ApiPath::new(READ_KEYS).segment(id), None)
        }
    };
    let answer = client.call(method, &path, body.as_ref()).await?;
    if client.json {
        if !answer.is_null() {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        return Ok(());
    }
    match command {
        ReadKeyCommand::Create { .. } => {
            let id = answer["readKey"]["id"].as_str().unwrap_or("?");
            let key = answer["key"].as_str().unwrap_or("?");
            println!("read key {id} issued\n\nkey (shown only now; store it safely): {key}");
        }
        ReadKeyCommand::List => {
            let keys = answer["readKeys"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let shown: Vec<Value> = keys
                .iter()
                .map(|k| {
                    let mut k = k.clone();
                    if let Some(streams) = k["streams"].as_array() {
                        let names: Vec<&str> = streams.iter().filter_map(Value::as_str).collect();
                        k["streams"] = json!(names.join(","));
                    } else {
                        k["streams"] = json!("all");
                    }
                    k
                })
                .collect();
            print_table(&COLUMNS, &shown);
        }
        ReadKeyCommand::Delete { id } => println!("deleted read key {id}"),
    }
    Ok(())
}
