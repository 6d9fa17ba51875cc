//! `datapool subscription …`: create, list, get, update, activate, deactivate,
//! delete, rotate-secret, deliveries and resend over the admin API.

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{AdminClient, ApiPath};
use super::connector::{print_table, read_document, rows};

/// Subscription commands.
#[derive(Debug, Subcommand)]
pub enum SubscriptionCommand {
    /// Create a subscription (active) from flags, or from a whole document with --file
    #[command(after_help = CREATE_HELP)]
    Create {
        /// Display name, unique without regard to case
        #[arg(long, required_unless_present = "file")]
        name: Option<String>,
        /// The receiver's URL (http:// or https://); --url is the server's
        #[arg(
            long = "receiver",
            value_name = "URL",
            required_unless_present = "file"
        )]
        receiver: Option<String>,
        /// An event to send: item.created, item.updated, item.deleted, connector.error,
        /// connector.recovered; repeat for more
        #[arg(long = "event", required_unless_present = "file")]
        events: Vec<String>,
        /// Only changes of this stream; repeat for more; none means all streams
        #[arg(long = "stream")]
        streams: Vec<String>,
        /// Sign deliveries (Standard Webhooks) with a generated secret, shown once
        #[arg(long)]
        sign: bool,
        /// A subscription document (JSON, SPEC §1.1); - reads standard input
        #[arg(long, conflicts_with_all = ["name", "receiver", "events", "streams", "sign"])]
        file: Option<PathBuf>,
    },
    /// List subscriptions
    List,
    /// Show one subscription
    Get {
        /// Subscription id (s_…)
        id: String,
    },
    /// Change a subscription with a JSON Merge Patch document
    Update {
        /// Subscription id (s_…)
        id: String,
        /// The patch (JSON); - reads standard input
        #[arg(long)]
        file: PathBuf,
    },
    /// Activate a subscription: it gets events from now on
    Activate {
        /// Subscription id (s_…)
        id: String,
    },
    /// Deactivate a subscription: it gets nothing more; pending deliveries are listed as exhausted
    Deactivate {
        /// Subscription id (s_…)
        id: String,
    },
    /// Delete a subscription with its pending deliveries and log; the DataPool is untouched
    Delete {
        /// Subscription id (s_…)
        id: String,
    },
    /// Issue a new signing secret (shown once); the old one keeps signing for 24 hours
    RotateSecret {
        /// Subscription id (s_…)
        id: String,
    },
    /// Show a subscription's delivery log, newest first, one line per attempt
    Deliveries {
        /// Subscription id (s_…)
        id: String,
        /// Most entries to show
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Send a delivery again now, with its message id
    Resend {
        /// Subscription id (s_…)
        id: String,
        /// Delivery id (d_…), as the delivery log shows it
        delivery: String,
    },
}

/// What `subscription create --help` adds after the flags.
const CREATE_HELP: &str = "\
Flags cover the common case; --file takes the whole document: basicAuth
{\"username\",\"password\"}, \"secret\" (whsec_… or \"generate\"), legacySha1Header,
headers {\"X-Api-Key\": \"…\"}, timeoutSeconds (default 10, at most 60), and retry
{\"policy\": \"exponential\"|\"fixed\", \"maxRetries\", \"intervalSeconds\"}.
Link-local receivers (169.254.0.0/16, fe80::/10) are refused. connector.error is
sent when a connector starts failing, connector.recovered when it works again.";

/// The subscriptions' path in the admin API.
const SUBSCRIPTIONS: [&str; 3] = ["api", "admin", "subscriptions"];
/// Columns of `subscription list`.
const COLUMNS: [(&str, &str); 5] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("URL", "url"),
    ("EVENTS", "events"),
    ("ACTIVE", "active"),
];
/// Columns of `subscription deliveries`.
const DELIVERY_COLUMNS: [(&str, &str); 8] = [
    ("AT", "at"),
    ("DELIVERY", "id"),
    ("EVENT", "eventCode"),
    ("ATTEMPT", "attempt"),
    ("STATUS", "status"),
    ("MS", "latencyMs"),
    ("OUTCOME", "outcome"),
    ("ERROR", "error"),
];

/// Runs one subscription command.
pub async fn run(client: AdminClient, command: SubscriptionCommand) -> anyhow::Result<()> {
    let all = || ApiPath::new(SUBSCRIPTIONS);
    let one = |id: &str| all().segment(id);
    let (method, url, body) = match &command {
        SubscriptionCommand::Create {
            name,
            receiver,
            events,
            streams,
            sign,
            file,
        } => {
            let doc = match file {
                Some(file) => read_document(file)?,
                None => {
                    let mut doc = json!({"name": name, "url": receiver, "events": events});
                    if !streams.is_empty() {
                        doc["streams"] = json!(streams);
                    }
                    if *sign {
                        doc["secret"] = json!("generate");
                    }
                    doc
                }
            };
            (Method::POST, all(), Some(doc))
        }
        SubscriptionCommand::List => (Method::GET, all(), None),
        SubscriptionCommand::Get { id } => (Method::GET, one(id), None),
        SubscriptionCommand::Update { id, file } => {
            (Method::PATCH, one(id), Some(read_document(file)?))
        }
        SubscriptionCommand::Activate { id } => (Method::POST, one(id).segment("activate"), None),
        SubscriptionCommand::Deactivate { id } => {
            (Method::POST, one(id).segment("deactivate"), None)
        }
        SubscriptionCommand::Delete { id } => (Method::DELETE, one(id), None),
        SubscriptionCommand::RotateSecret { id } => {
            (Method::POST, one(id).segment("rotate-secret"), None)
        }
        SubscriptionCommand::Deliveries { id, limit } => (
            Method::GET,
            one(id).segment("deliveries").query("limit", limit),
            None,
        ),
        SubscriptionCommand::Resend { id, delivery } => (
            Method::POST,
            one(id)
                .segment("deliveries")
                .segment(delivery)
                .segment("resend"),
            None,
        ),
    };
    let answer = client.call(method, &url, body.as_ref()).await?;
    if client.json {
        if !answer.is_null() {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        return Ok(());
    }
    match command {
        SubscriptionCommand::List => {
            let shown: Vec<Value> = rows(&answer["subscriptions"])
                .iter()
                .map(|s| {
                    let mut s = s.clone();
                    let events: Vec<&str> = rows(&s["events"])
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    s["events"] = json!(events.join(","));
                    s
                })
                .collect();
            print_table(&COLUMNS, &shown);
        }
        SubscriptionCommand::Deliveries { .. } => {
            print_table(&DELIVERY_COLUMNS, rows(&answer["entries"]));
        }
        SubscriptionCommand::Delete { id } => println!("deleted subscription {id}"),
        SubscriptionCommand::Resend { delivery, .. } => {
            println!("delivery {delivery} queued to be sent again")
        }
        _ => {
            println!("{}", serde_json::to_string_pretty(&answer["subscription"])?);
            if let Some(secret) = answer["secret"].as_str() {
                println!("\nsigning secret (shown only now; give it to the receiver): {secret}");
            }
        }
    }
    Ok(())
}
