//! Result rows → the items a poll writes: each row an object of its columns, flattened
//! like pushed JSON (a JSON column's objects become dotted fields), its id taken from
//! the `itemKey` column (default the first), then the field mapping applied.

use serde_json::{Map, Value};

use super::{Fetched, SqlError};
use crate::connectors::record::{self, Key};
use crate::model::{ConnectorSpec, Upsert};

/// The rows of `fetched` as upserts for the connector `spec` describes.
pub fn items(fetched: Fetched, spec: &ConnectorSpec) -> Result<Vec<Upsert>, SqlError> {
    let Some(first) = fetched.columns.first() else {
        return Ok(Vec::new());
    };
    let key = spec.item_key.as_deref().unwrap_or(first).to_owned();
    if !fetched.columns.contains(&key) {
        return Err(SqlError::Items(format!(
            "the itemKey column {key:?} is not in the result (columns: {})",
            fetched.columns.join(", ")
        )));
    }
    fetched
        .rows
        .into_iter()
        .enumerate()
        .map(|(index, row)| {
            let object: Map<String, Value> = fetched.columns.iter().cloned().zip(row).collect();
            record::upsert(object, Key::Field(&key), spec, "row", index).map_err(SqlError::Items)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(extra: Value) -> ConnectorSpec {
        let mut doc = json!({"name": "s", "type": "sql", "stream": "s",
            "settings": {"connectionString": "sqlite:///tmp/x.db", "query": "select 1"}});
        if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
            doc.extend(extra);
        }
        ConnectorSpec::from_json(doc).expect("valid spec")
    }

    fn fetched() -> Fetched {
        Fetched {
            columns: vec!["region".into(), "sales".into(), "meta".into()],
            rows: vec![
                vec![json!("North"), json!(10), json!({"a": {"b": 1}})],
                vec![json!(7), json!(null), json!(null)],
            ],
            truncated: false,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn the_first_column_is_the_key_and_json_objects_flatten() {
        let items = items(fetched(), &spec(json!({}))).expect("items");
        assert_eq!(items[0].id, "North");
        assert_eq!(
            Value::Object(items[0].fields.clone()),
            json!({"region": "North", "sales": 10, "meta.a.b": 1})
        );
        assert_eq!(items[1].id, "7");
    }

    #[test]
    fn item_key_and_mapping_apply() {
        let spec = spec(json!({"itemKey": "sales", "fieldMapping": {"region": "area"}}));
        let error = items(fetched(), &spec).expect_err("row 2 has a null key");
        assert!(error.to_string().contains("row 2"), "{error}");
        let mut one = fetched();
        one.rows.truncate(1);
        let items = items(one, &spec).expect("items");
        assert_eq!(items[0].id, "10");
        assert_eq!(
            Value::Object(items[0].fields.clone()),
            json!({"area": "North"})
        );
        let missing = super::items(fetched(), &super::tests::spec(json!({"itemKey": "nope"})));
        assert!(missing
            .expect_err("no such column")
            .to_string()
            .contains("nope"));
    }
}
