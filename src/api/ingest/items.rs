//! From a parsed body to the items it writes: flattening, item ids, the connector's
//! field mapping and source header (SPEC §1, §3.1–§3.4).

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use crate::http::ApiError;
use crate::model::{flatten, item_id, map_fields, Connector, Fields, Upsert};

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

/// Parses `{"stream","items":[{"id","fields","name"?,"tags"?}],"delete":[…]}`: explicit
/// ids, nested fields flattened, `name` stored as the field `name` and `tags` as
/// `tags.<key>`. Unknown members are refused so a misspelt one is not silently ignored.
pub(super) fn ingest_document(value: Value, rules: &ItemRules) -> Result<IngestDocument, ApiError> {
    let Value::Object(mut document) = value else {
        return Err(ApiError::invalid_payload(
            "the body must be an object: {\"stream\", \"items\", \"delete\"}",
        ));
    };
    let stream = match document.remove("stream") {
        Some(Value::String(stream)) => stream,
        _ => return Err(ApiError::invalid_payload("\"stream\" must be a string")),
    };
    let items = array_member(&mut document, "items")?;
    let deletes = array_member(&mut document, "delete")?;
    if let Some(unknown) = document.keys().next() {
        return Err(ApiError::invalid_payload(format!(
            "unknown member {unknown:?}; a document has \"stream\", \"items\" and \"delete\""
        )));
    }
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
        .iter()
        .enumerate()
        .map(|(index, id)| {
            item_id(id).ok_or_else(|| {
                ApiError::invalid_payload(format!(
                    "delete[{index}]: an item id is a non-empty string or number of at most 256 bytes"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(IngestDocument {
        stream,
        upserts,
        deletes,
    })
}

/// An optional array member of the document (absent is empty).
fn array_member(document: &mut Map<String, Value>, name: &str) -> Result<Vec<Value>, ApiError> {
    match document.remove(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(values)) => Ok(values),
        Some(_) => Err(ApiError::invalid_payload(format!(
            "\"{name}\" must be an array"
        ))),
    }
}

/// One `{"id","fields"?,"name"?,"tags"?}` item.
fn ingest_item(item: Value, rules: &ItemRules) -> Result<Upsert, String> {
    let Value::Object(mut item) = item else {
        return Err("an item is an object with \"id\" and \"fields\"".into());
    };
    let id = item
        .remove("id")
        .as_ref()
        .and_then(item_id)
        .ok_or("\"id\" must be a non-empty string or number of at most 256 bytes")?;
    let mut source = match item.remove("fields") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(fields)) => fields,
        Some(_) => return Err("\"fields\" must be an object".into()),
    };
    if let Some(name) = item.remove("name") {
        source.insert("name".into(), name);
    }
    match item.remove("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(tags)) => {
            source.insert("tags".into(), Value::Object(tags));
        }
        Some(_) => return Err("\"tags\" must be an object".into()),
    }
    if let Some(unknown) = item.keys().next() {
        return Err(format!(
            "unknown member {unknown:?}; an item has \"id\", \"fields\", \"name\" and \"tags\""
        ));
    }
    let fields = flatten(source).map_err(|e| e.to_string())?;
    Ok(Upsert {
        id,
        fields: rules.finish(fields),
    })
}
