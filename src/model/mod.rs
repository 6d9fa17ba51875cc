//! The DataPool's nouns and the JSON documents that describe them: stream names,
//! items and the writes and changes that touch them, connectors (with validation of
//! the whole §1.1 document), subscriptions and their deliveries, and JSON Merge Patch.

mod activity;
pub mod bulk;
mod connector;
mod delivery;
mod item;
mod merge_patch;
mod read_key;
mod secret;
mod stream;
mod subscription;
mod view;

pub use activity::{ActivitySummary, LogEntry, LogLevel, DEFAULT_PUSH_IDLE_SECONDS};
pub use connector::{
    AfterProcessing, Connector, ConnectorSpec, ConnectorState, ConnectorType, ConnectorView, Dedup,
    FileFormat, FileSettings, FileSource, FolderSource, HmacAlgorithm, PushAuth, RateLimit,
    SecretHeader, Settings, SignatureEncoding, SignedContent, Signing, SigningScheme, SqlDriver,
    SqlSettings, TextEncoding, UpsertMode, UrlAuth, UrlSource,
};
pub use delivery::{delivery_id, delivery_seq, message_id, Delivery, DeliveryEntry, DeliveryState};
pub use item::{
    flatten, item_id, map_fields, name_bytes, Change, ChangeKind, Fields, Item, ItemView, Upsert,
    Write, MAX_ITEM_ID_BYTES,
};
pub use merge_patch::{merge_patch, patch_members};
pub use read_key::{ReadKey, ReadKeySpec};
pub use secret::Secret;
pub use stream::{Snapshots, StreamName, MAX_RETENTION_DAYS};
pub use subscription::{
    generate_secret, signing_key, BasicAuth, EventCode, Filter, RetryKind, RetryPolicy,
    Subscription, SubscriptionSpec, SubscriptionView,
};

/// Why a document or value was refused; the message names the field and the rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ValidationError(pub String);

impl ValidationError {
    /// An error about the field at `path` (dotted, as the client wrote it).
    pub fn field(path: &str, message: impl std::fmt::Display) -> Self {
        ValidationError(format!("{path}: {message}"))
    }
}

/// Reads an admin document (`what`: "a connector", "a subscription") into `T`, naming
/// the field a refusal is about; validating it is the caller's. Only a JSON object is
/// one: serde would also read a struct from an array of its members' values.
pub fn read_document<T: serde::de::DeserializeOwned>(
    document: serde_json::Value,
    what: &str,
) -> Result<T, ValidationError> {
    if !document.is_object() {
        return Err(ValidationError(format!("{what} document is a JSON object")));
    }
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." => ValidationError(e.into_inner().to_string()),
            _ => ValidationError::field(&path, e.into_inner()),
        }
    })
}
