//! From a parsed body to the items it writes: flattening, item ids, the connector's
//! field mapping and source header (SPEC §1, §3.1–§3.4).

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::http::ApiError;
use crate::model::{flatten, item_id, map_fields, Connector, Fields, Upsert, MAX_ITEM_ID_BYTES};

/// The connector's and the request's rules for turning source objects into items.
pub(super) struct ItemRules<'a> {
    /// The field that identifies an item: `X-Item-Key`, else the connector's `itemKey`;
    /// without one, items are identified by position.
    key_field: Option<&'a str>,
    mapping: Option<&'a BTreeMap<String, String>>,
    /// The `sourceHeader` field and the request's value for it.
    source: Option<(&'a str, Value)>,
}

impl<'a> ItemRules<'a> {
    /// The rules for one request to `connector`.
    pub(super) fn new(connector: &'a Connector, headers: &'a HeaderMap) -> Result<Self, ApiError> {
        let header_key = match headers.get("x-item-key") {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ApiError::invalid_payload("X-Item-Key is not readable text"))?
                    .trim(),
            ),
            None => None,
        };
        let source = connector.spec.source_header.as_deref().and_then(|name| {
            let value = headers.get(name)?;
            let text = String::from_utf8_lossy(value.as_bytes()).trim().to_owned();
            Some((name, Value::String(text)))
        });
        Ok(ItemRules {
            key_field: header_key.or(connector.spec.item_key.as_deref()),
            mapping: connector.spec.field_mapping.as_ref(),
            source,
        })
    }

    /// The item for the source object at `index`, or why it cannot be one.
    pub(super) fn object(
        &self,
        index: usize,
        object: Map<String, Value>,
    ) -> Result<Upsert, String> {
        let fields = flatten(object).map_err(|e| e.to_string())?;
        let id = match self.key_field {
            Some(field) => fields.get(field).and_then(item_id).ok_or_else(|| {
                format!(
                    "no usable {field:?} field (a non-empty string or number identifies the item)"
                )
            })?,
            None => index.to_string(),
        };
        Ok(Upsert {
            id,
            fields: self.finish(fields),
        })
    }

    /// Applies the field mapping, then adds the source header's field.
    fn finish(&self, fields: Fields) -> Fields {
        let mut fields = match self.mapping {
            Some(mapping) => map_fields(fields, mapping),
            None => fields,
        };
        if let Some((name, value)) = &self.source {
            fields.insert((*name).to_owned(), value.clone());
        }
        fields
    }
}

/// A value of a bulk or webhook body as an item, or why not.
pub(super) fn value_item(rules: &ItemRules, index: usize, value: Value) -> Result<Upsert, String> {
    match value {
        Value::Object(object) => rules.object(index, object),
        _ => Err("not a JSON object".into()),
    }
}

/// One object or an array of objects, each with its id. Any bad item refuses the whole
/// request, naming the item's index.
pub(super) fn webhook_items(value: Value, rules: &ItemRules) -> Result<Vec<Upsert>, ApiError> {
    let values = match value {
        Value::Object(object) => vec![Value::Object(object)],
        Value::Array(values) => values,
        _ => {
            return Err(ApiError::invalid_payload(
                "the body must be a JSON object or an array of objects",
            ))
        }
    };
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            value_item(rules, index, value)
                .map_err(|e| ApiError::invalid_payload(format!("item {index}: {e}")))
        })
        .collect()
}

/// A Data Ingest API document (SPEC §3.2), checked.
pub(super) struct IngestDocument {
    /// The stream it names; must be the key's.
    pub stream: String,
    /// The items to upsert.
    pub upserts: Vec<Upsert>,
    /// The item ids to delete.
    pub deletes: Vec<String>,
}

/// A Data Ingest API request body (SPEC §3.2) as sent: explicit ids, nested fields.
/// Unknown members are refused so a misspelt one is not silently ignored.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestBody {
    /// The stream to write; it must be the ingest key's connector's.
    stream: String,
    /// Items to upsert.
    #[serde(default)]
    items: Option<Vec<IngestItem>>,
    /// Ids of items to delete.
    #[serde(default)]
    delete: Option<Vec<RequestedId>>,
}

/// One item of an [`IngestBody`].
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestItem {
    /// The item id.
    id: RequestedId,
    /// Its fields: free-form, nested objects are flattened to dotted names.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    fields: Option<Map<String, Value>>,
    /// Stored as the field `name`.
    #[serde(default, deserialize_with = "present")]
    name: Option<Value>,
    /// Stored as the fields `tags.<key>`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    tags: Option<Map<String, Value>>,
}

/// An item id as a request carries it: a non-empty string or a number, at most 256
/// bytes.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum RequestedId {
    /// A string id.
    Text(String),
    /// A number, whose text is the id.
    Number(serde_json::Number),
}

impl PartialSchema for RequestedId {
    /// The two forms; a number keeps its digits (a float its shortest text).
    fn schema() -> RefOr<Schema> {
        let text = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_ITEM_ID_BYTES));
        let number = ObjectBuilder::new().schema_type(Type::Number);
        OneOfBuilder::new()
            .item(text)
            .item(number)
            .description(Some(
                "An item id: a non-empty string or a number, at most 256 bytes",
            ))
            .into()
    }
}

impl ToSchema for RequestedId {}

impl RequestedId {
    /// The id, or `None` when it is empty or too long.
    fn checked(self) -> Option<String> {
        item_id(&match self {
            RequestedId::Text(text) => Value::String(text),
            RequestedId::Number(number) => Value::Number(number),
        })
    }
}

/// A member that is present, even as `null` (which `Option` alone reads as absent).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Parses `{"stream","items":[{"id","fields","name"?,"tags"?}],"delete":[…]}`: explicit
/// ids, nested fields flattened, `name` stored as the field `name` and `tags` as
/// `tags.<key>`.
pub(super) fn ingest_document(value: Value, rules: &ItemRules) -> Result<IngestDocument, ApiError> {
    if !value.is_object() {
        return Err(ApiError::invalid_payload(
            "the body must be an object: {\"stream\", \"items\", \"delete\"}",
        ));
    }
    let body: IngestBody = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::invalid_payload(match path.as_str() {
            "." => e.into_inner().to_string(),
            _ => format!("{path}: {}", e.into_inner()),
        })
    })?;
    let items = body.items.unwrap_or_default();
    let deletes = body.delete.unwrap_or_default();
    if items.is_empty() && deletes.is_empty() {
        return Err(ApiError::invalid_payload(
            "nothing to do: \"items\" and \"delete\" are both empty",
        ));
    }
    let upserts = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            ingest_item(item, rules)
                .map_err(|e| ApiError::invalid_payload(format!("items[{index}]: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let deletes = deletes
        .into_iter()
        .enumerate()
        .map(|(index, id)| {
            id.checked().ok_or_else(|| {
                ApiError::invalid_payload(format!(
                    "delete[{index}]: an item id is a non-empty string or number of at most 256 bytes"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(IngestDocument {
        stream: body.stream,
        upserts,
        deletes,
    })
}

/// One `{"id","fields"?,"name"?,"tags"?}` item as the upsert it asks for.
fn ingest_item(item: IngestItem, rules: &ItemRules) -> Result<Upsert, String> {
    let id = item
        .id
        .checked()
        .ok_or("\"id\" must be a non-empty string or number of at most 256 bytes")?;
    let mut source = item.fields.unwrap_or_default();
    if let Some(name) = item.name {
        source.insert("name".into(), name);
    }
    if let Some(tags) = item.tags {
        source.insert("tags".into(), Value::Object(tags));
    }
    let fields = flatten(source).map_err(|e| e.to_string())?;
    Ok(Upsert {
        id,
        fields: rules.finish(fields),
    })
}
