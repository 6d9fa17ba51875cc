//! `POST /api/admin/connectors/{id}/test` (SPEC §4.3): runs a connector's fetch once,
//! exactly as a poll or an import would (a query, a URL, a watched folder's oldest
//! file, or the file sent for an upload connector), and reports what it would store —
//! without writing.

use std::time::Instant;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::file::{self, Fetched, FileError};
use super::sql::{self, SqlError};
use crate::model::{Connector, Fields, FileSettings, Settings, SqlSettings, Upsert};

/// Items a test shows; enough to check the mapping, small enough to read.
const SAMPLE_ITEMS: usize = 20;

/// Why a connector cannot be tested.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Push connectors fetch nothing.
    #[error("connector {id} is of type {kind}: only sql and file connectors can be tested")]
    NotTestable {
        /// The connector's id.
        id: String,
        /// Its type.
        kind: &'static str,
    },
    /// The fetch failed; the reason is what a poll would log.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The file could not be fetched or read; the reason is what an import would log.
    #[error(transparent)]
    File(#[from] FileError),
    /// An upload connector was tested without a file to read.
    #[error("an upload connector is tested with a file: send it as the body, as for an upload")]
    NoFile,
}

/// What a test found, as the admin API answers it under `"test"`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestReport {
    /// Always true: a failed test is an error answer instead.
    pub ok: bool,
    /// Rows the query returned (at most the row cap), or records the file holds.
    pub row_count: usize,
    /// The file tested, for a file connector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
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
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldType {
    /// The field's name in the pool (after flattening and mapping).
    pub name: String,
    /// `string`, `number`, `boolean`, `array`, or `null` when every sample value is null.
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^(string|number|boolean|array|object|null)$")]
    pub kind: &'static str,
}

/// One item as a poll would store it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SampleItem {
    /// Its item id.
    pub id: String,
    /// Its fields: free-form, as the source holds them (flattened, mapped).
    #[schema(value_type = Object)]
    pub fields: Fields,
}

/// Fetches once for `connector` (enabled or not) and reports; writes nothing. An
/// upload connector reads `upload` instead, the file a user would upload.
pub async fn test(
    connector: &Connector,
    upload: Option<Fetched>,
) -> Result<TestReport, ProbeError> {
    let started = Instant::now();
    let mut report = match &connector.spec.settings {
        Some(Settings::Sql(settings)) => test_sql(connector, settings).await?,
        Some(Settings::File(settings)) => test_file(connector, settings, upload).await?,
        None => {
            return Err(ProbeError::NotTestable {
                id: connector.id.clone(),
                kind: connector.spec.kind.as_str(),
            })
        }
    };
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

async fn test_sql(connector: &Connector, settings: &SqlSettings) -> Result<TestReport, ProbeError> {
    let mut fetched = sql::fetch(settings, Timestamp::now()).await?;
    let truncated = fetched.truncated;
    let warnings = std::mem::take(&mut fetched.warnings);
    let mut items = sql::items(fetched, &connector.spec)?;
    let row_count = items.len();
    items.truncate(SAMPLE_ITEMS);
    Ok(report(row_count, items, truncated, None, warnings))
}

async fn test_file(
    connector: &Connector,
    settings: &FileSettings,
    upload: Option<Fetched>,
) -> Result<TestReport, ProbeError> {
    let fetched = match file::fetch_now(settings).await? {
        Some(fetched) => fetched,
        None => upload.ok_or(ProbeError::NoFile)?,
    };
    let name = fetched.name.clone();
    let sample = file::sample(connector, settings, fetched, SAMPLE_ITEMS).await?;
    Ok(report(
        sample.items,
        sample.upserts,
        false,
        Some(name),
        Vec::new(),
    ))
}

/// The report of a fetch of `row_count` records whose first items are `items`.
fn report(
    row_count: usize,
    items: Vec<Upsert>,
    truncated: bool,
    file: Option<String>,
    warnings: Vec<String>,
) -> TestReport {
    let sample: Vec<SampleItem> = items
        .into_iter()
        .map(|u| SampleItem {
            id: u.id,
            fields: u.fields,
        })
        .collect();
    TestReport {
        ok: true,
        row_count,
        file,
        truncated,
        duration_ms: 0,
        fields: field_types(&sample),
        sample,
        warnings,
    }
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
