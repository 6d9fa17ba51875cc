//! Deliveries: one change notification on its way to one subscription, and the log
//! entry of each attempt (SPEC §6, §1.2).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Change, Connector, EventCode};

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting in the outbox for its next attempt.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Every attempt its retry policy allows failed, or the subscription stopped
    /// before it was delivered; it can be re-sent.
    Exhausted,
}

impl DeliveryState {
    /// The state as the delivery log and `/metrics` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Exhausted => "exhausted",
        }
    }
}

/// One change notification for one subscription, kept 30 days after its last attempt
/// so that it can be re-sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The change's sequence: unique per subscription, so it names the delivery.
    pub seq: u64,
    /// `wh-…`, the `webhook-id`: the same on every attempt and re-send, and the same
    /// again if a crash makes the change be applied anew.
    pub message_id: String,
    /// What happened.
    pub event: EventCode,
    /// The JSON body, built once when the change was applied.
    pub body: String,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// Attempts made so far, re-sends included.
    pub attempts: u32,
    /// Retries made since it was enqueued or last re-sent, against its policy's limit.
    pub retries: u32,
    /// Where it stands.
    pub state: DeliveryState,
    /// When it is next tried (pending) or was last tried.
    pub due: Timestamp,
}

impl Delivery {
    /// A pending delivery of `change`, due at once.
    pub fn of_change(change: &Change, message_id: String) -> Self {
        let event = EventCode::from(change.kind);
        Delivery {
            seq: change.seq,
            body: payload(change, event, &message_id).to_string(),
            message_id,
            event,
            created_at: change.at,
            attempts: 0,
            retries: 0,
            state: DeliveryState::Pending,
            due: change.at,
        }
    }

    /// A pending delivery, due at once, of `event` (`connector.error` or
    /// `connector.recovered`) of `connector` at `at`; `message` says what failed or
    /// that it works again. `seq` numbers connector events apart from changes.
    pub fn of_connector(
        seq: u64,
        message_id: String,
        event: EventCode,
        connector: &Connector,
        message: &str,
        at: Timestamp,
    ) -> Self {
        let state = if event == EventCode::ConnectorError {
            "error"
        } else {
            "active"
        };
        let inner = json!({
            "stream": connector.spec.stream.as_str(),
            "resourceId": connector.id,
            "path": path(&["api", "admin", "connectors", &connector.id]),
            "fields": {
                "name": connector.spec.name,
                "type": connector.spec.kind.as_str(),
                "state": state,
                "message": message,
            },
        });
        Delivery {
            seq,
            body: envelope(&message_id, event, at, inner).to_string(),
            message_id,
            event,
            created_at: at,
            attempts: 0,
            retries: 0,
            state: DeliveryState::Pending,
            due: at,
        }
    }

    /// The id the delivery log and the resend route use.
    pub fn id(&self) -> String {
        delivery_id(self.seq)
    }
}

/// `d_` and the sequence as 16 hex digits.
pub fn delivery_id(seq: u64) -> String {
    format!("d_{seq:016x}")
}

/// The sequence a [`delivery_id`] names, if `id` is one.
pub fn delivery_seq(id: &str) -> Option<u64> {
    let hex = id.strip_prefix("d_").filter(|hex| hex.len() == 16)?;
    u64::from_str_radix(hex, 16).ok()
}

/// A message id shaped like the senders' (`wh-` and a UUID's grouping) from the data
/// dir's random instance id and the change sequence: unique across datapool boxes,
/// and the same when a crash makes a change be applied again.
pub fn message_id(instance: [u8; 8], seq: u64) -> String {
    let hex = format!("{}{seq:016x}", hex::encode(instance));
    format!(
        "wh-{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The body of a change's delivery (SPEC §6). `item.deleted` has no `fields`.
fn payload(change: &Change, event: EventCode, message_id: &str) -> Value {
    let stream = change.stream.as_str();
    let mut inner = json!({
        "stream": stream,
        "resourceId": change.item_id,
        "path": path(&["api", "streams", stream, "items", &change.item_id]),
        "version": change.version,
    });
    if let Some(fields) = &change.fields {
        inner["fields"] = Value::Object(fields.clone());
    }
    envelope(message_id, event, change.at, inner)
}

/// What every delivery body says around its `payload`.
fn envelope(message_id: &str, event: EventCode, at: Timestamp, payload: Value) -> Value {
    json!({
        "messageId": message_id,
        "eventCode": event.as_str(),
        "eventName": event.name(),
        "timestamp": at,
        "payload": payload,
    })
}

/// An absolute path of `segments`, each percent-encoded (an item id may hold `/`).
fn path(segments: &[&str]) -> String {
    // A constant absolute URL always parses, and it can be a base.
    let mut url = url::Url::parse("http://localhost/").expect("a constant URL");
    if let Ok(mut path) = url.path_segments_mut() {
        path.clear().extend(segments);
    }
    url.path().to_owned()
}

/// One attempt in a subscription's delivery log (SPEC §1.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryEntry {
    /// The delivery's id (the same on each of its attempts), for resending it.
    pub id: String,
    /// The message id (`webhook-id`).
    pub message_id: String,
    /// What happened.
    pub event_code: EventCode,
    /// When the attempt started.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Its number, from 1.
    pub attempt: u32,
    /// The receiver's status; null on timeout or connection failure.
    pub status: Option<u16>,
    /// How long the receiver took.
    pub latency_ms: u64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `delivered`, `pending` (another attempt follows) or `exhausted`.
    pub outcome: DeliveryState,
    /// When the next attempt is due, for a pending one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangeKind, StreamName};

    #[test]
    fn payloads_follow_the_contract_and_ids_round_trip() {
        let change = Change {
            seq: 42,
            kind: ChangeKind::Deleted,
            stream: StreamName::try_from("sales".to_owned()).expect("name"),
            item_id: "a/b c".into(),
            version: 3,
            fields: None,
            at: Timestamp::UNIX_EPOCH,
        };
        let message = message_id([0xab; 8], 42);
        assert_eq!(message, "wh-abababab-abab-abab-0000-00000000002a");
        let delivery = Delivery::of_change(&change, message.clone());
        let body: Value = serde_json::from_str(&delivery.body).expect("json");
        assert_eq!(body["eventCode"], "item.deleted");
        assert_eq!(body["messageId"], message.as_str());
        assert_eq!(
            body["payload"]["path"],
            "/api/streams/sales/items/a%2Fb%20c"
        );
        assert!(body["payload"].get("fields").is_none());
        assert_eq!(delivery_seq(&delivery.id()), Some(42));
        assert_eq!(delivery_seq("d_xyz"), None);
    }
}
