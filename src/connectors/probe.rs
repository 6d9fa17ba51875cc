//! `POST /api/admin/connectors/{id}/test` (SPEC §4.3): runs a connector's fetch once,
//! exactly as a poll would, and reports what it would store — without writing.

use std::time::Instant;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use super::sql::{self, SqlError};
use crate::model::{Connector, Fields, Settings};

/// Items a test shows; enough to check the mapping, small enough to read.
const SAMPLE_ITEMS: usize = 20;

/// Why a connector cannot be tested.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Only `sql` connectors fetch anything so far.
    #[error("connector {id} is of type {kind}: only sql connectors can be tested")]
    NotTestable {
        /// The connector's id.
        id: String,
        /// Its type.
        kind: &'static str,
    },
    /// The fetch failed; the reason is what a poll would log.
    #[error(transparent)]
    Sql(#[from] SqlError),
}

/// What a test found, as the admin API answers it under `"test"`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestReport {
    /// Always true: a failed test is an error answer instead.
    pub ok: bool,
    /// Rows the query returned (at most the row cap).
    pub row_count: usize,
    /// Whether more rows than `maxRows` were available.
    pub truncated: bool,
    /// Time to connect, run the query and map the rows.
    pub duration_ms: u64,
    /// Field names of the sample items with the JSON type of their first non-null value.
    pub fields: Vec<FieldType>,
    /// Up to 20 items as they would be stored.
    pub sample: Vec<SampleItem>,
    /// Values read as null instead of failing (MySQL zero dates), as a poll would log them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A field and the JSON type its values have.
#[derive(Debug, Serialize)]
pub struct FieldType {
    /// The field's name in the pool (after flattening and mapping).
    pub name: String,
    /// `string`, `number`, `boolean`, `array`, or `null` when every sample value is null.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// One item as a poll would store it.
#[derive(Debug, Serialize)]
pub struct SampleItem {
    /// Its item id.
    pub id: String,
    /// Its fields.
    pub fields: Fields,
}

/// Fetches once for `connector` (enabled or not) and reports; writes nothing.
pub async fn test(connector: &Connector) -> Result<TestReport, ProbeError> {
    let Some(Settings::Sql(settings)) = &connector.spec.settings else {
        return Err(ProbeError::NotTestable {
            id: connector.id.clone(),
            kind: connector.spec.kind.as_str(),
        });
    };
    let started = Instant::now();
    let mut fetched = sql::fetch(settings, Timestamp::now()).await?;
    let truncated = fetched.truncated;
    let warnings = std::mem::take(&mut fetched.warnings);
    let mut items = sql::items(fetched, &connector.spec)?;
    let row_count = items.len();
    items.truncate(SAMPLE_ITEMS);
    let sample: Vec<SampleItem> = items
        .into_iter()
        .map(|u| SampleItem {
            id: u.id,
            fields: u.fields,
        })
        .collect();
    Ok(TestReport {
        ok: true,
        row_count,
        truncated,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        fields: field_types(&sample),
        sample,
        warnings,
    })
}

/// Each field of the sample, in name order, typed by its first non-null value.
fn field_types(sample: &[SampleItem]) -> Vec<FieldType> {
    let mut types: std::collections::BTreeMap<&str, &'static str> = Default::default();
    for (name, value) in sample.iter().flat_map(|item| &item.fields) {
        let slot = types.entry(name).or_insert("null");
        if *slot == "null" {
            *slot = json_type(value);
        }
    }
    types
        .into_iter()
        .map(|(name, kind)| FieldType {
            name: name.to_owned(),
            kind,
        })
        .collect()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn field_types_come_from_the_first_non_null_value() {
        let item = |id: &str, fields: Value| SampleItem {
            id: id.into(),
            fields: fields.as_object().cloned().unwrap_or_default(),
        };
        let sample = [
            item("1", json!({"a": null, "b": 1, "c": null})),
            item("2", json!({"a": "x", "b": 2, "c": null, "d": [1]})),
        ];
        let types: Vec<(String, &str)> = field_types(&sample)
            .into_iter()
            .map(|f| (f.name, f.kind))
            .collect();
        assert_eq!(
            types,
            [
                ("a".into(), "string"),
                ("b".into(), "number"),
                ("c".into(), "null"),
                ("d".into(), "array")
            ]
        );
    }
}
