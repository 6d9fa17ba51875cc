//! One source record (a result row, a file's row or element) → the upsert a poll or an
//! import writes: flattened like pushed JSON, its id taken from the key field, then the
//! field mapping applied. Shared by the SQL and file connectors so both store alike.

use serde_json::{Map, Value};

use crate::model::{flatten, item_id, map_fields, ConnectorSpec, Upsert};

/// Where a record's item id comes from.
#[derive(Clone, Copy, Debug)]
pub enum Key<'a> {
    /// The value of this (flattened) field.
    Field(&'a str),
    /// The record's 0-based position in its source, as for webhook arrays without a key.
    Position,
}

/// The upsert of `object`, the `index`-th record (0-based) of its source; the error
/// names the record by its 1-based number as `record` (e.g. "row") calls it.
pub fn upsert(
    object: Map<String, Value>,
    key: Key<'_>,
    spec: &ConnectorSpec,
    record: &str,
    index: usize,
) -> Result<Upsert, String> {
    let number = index + 1;
    let fields = flatten(object).map_err(|e| format!("{record} {number}: {e}"))?;
    let id = match key {
        Key::Field(name) => fields.get(name).and_then(item_id).ok_or_else(|| {
            format!(
                "{record} {number}: the itemKey field {name:?} is not a non-empty string or number of at most 256 bytes"
            )
        })?,
        Key::Position => index.to_string(),
    };
    let fields = match &spec.field_mapping {
        Some(mapping) => map_fields(fields, mapping),
        None => fields,
    };
    Ok(Upsert { id, fields })
}
