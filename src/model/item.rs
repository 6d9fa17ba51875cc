//! Items and the writes that change them: flattening pushed JSON into dotted field
//! names, item ids, field mapping, and the merge/replace rules (SPEC §1, §3.1).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{StreamName, UpsertMode, ValidationError};

/// An item's fields: dotted name → JSON value.
pub type Fields = Map<String, Value>;

/// Deepest nesting of objects and arrays an item may have (SPEC §1).
pub const MAX_DEPTH: usize = 32;
/// Most fields one item may have after flattening (SPEC §1).
pub const MAX_FIELDS: usize = 1000;
/// Longest item id, in bytes (SPEC §1).
pub const MAX_ITEM_ID_BYTES: usize = 256;

/// One record of a stream, as the store keeps it (the read API shows its
/// [`ItemView`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// The item id, unique within its stream.
    pub id: String,
    /// Its fields.
    pub fields: Fields,
    /// Grows by one on every change.
    pub version: u64,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// The connector that last wrote it.
    pub connector_id: String,
    /// When each field last changed, compactly: for each field in `fields`' order, the
    /// nanoseconds from that change to `updated_at` (0: changed in this version), or
    /// `None` where it is not known (the item was stored by a datapool that did not
    /// record it). Without names and mostly small numbers, it adds a few bytes per
    /// field; [`Item::fields_changed_at`] reads it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub field_ages: Vec<Option<i64>>,
}

/// An item as the read API shows it (SPEC §5), with when each field last changed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemView<'a> {
    id: &'a str,
    fields: &'a Fields,
    version: u64,
    updated_at: Timestamp,
    connector_id: &'a str,
    fields_changed_at: BTreeMap<&'a str, Timestamp>,
}

/// New data for one item, as a request or a poll delivers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Upsert {
    /// The item id.
    pub id: String,
    /// Its new fields (merged or replacing, per [`Write::mode`]).
    pub fields: Fields,
}

/// Bytes the field names of `upserts` hold. Flattening repeats a nested object's key in
/// every dotted name below it, so a write can hold far more than its body: this is what
/// it adds to the body's size in memory.
pub fn name_bytes(upserts: &[Upsert]) -> usize {
    upserts
        .iter()
        .flat_map(|upsert| upsert.fields.keys())
        .map(String::len)
        .sum()
}

/// Everything one accepted request (or poll) changes in one stream, applied as a unit
/// and in the order accepted. This is what the journal holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Write {
    /// The stream written to.
    pub stream: StreamName,
    /// The connector writing (or `admin` for deletes through the read API).
    pub connector_id: String,
    /// Merge into existing items, or replace them.
    pub mode: UpsertMode,
    /// Items to create or update.
    pub upserts: Vec<Upsert>,
    /// Item ids to delete.
    pub deletes: Vec<String>,
    /// Delete only those of `deletes` that this connector wrote last: a poll mirrors
    /// its own items, and another connector may have taken one over since the poll
    /// read the pool (SPEC §4.1: other connectors' items are never touched).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deletes_own_only: bool,
    /// When the write was accepted.
    pub accepted_at: Timestamp,
}

/// What kind of change happened to an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// The item did not exist before.
    #[serde(rename = "item.created")]
    Created,
    /// Some field of an existing item changed.
    #[serde(rename = "item.updated")]
    Updated,
    /// The item was removed.
    #[serde(rename = "item.deleted")]
    Deleted,
}

impl ChangeKind {
    /// The SSE event name and subscription event code.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "item.created",
            ChangeKind::Updated => "item.updated",
            ChangeKind::Deleted => "item.deleted",
        }
    }
}

/// One change to one item, numbered from one global sequence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Position in the global change sequence (the SSE `id:`).
    pub seq: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// The item's stream.
    pub stream: StreamName,
    /// The item's id.
    pub item_id: String,
    /// The item's version after the change (for a delete, the last version).
    pub version: u64,
    /// The item's full fields after the change; none for a delete.
    pub fields: Option<Fields>,
    /// When the change was applied.
    pub at: Timestamp,
}

impl Item {
    /// Whether `upsert` in `mode` would change an item whose fields are `current` (None
    /// when it does not exist), without building the new item: the applier asks this of
    /// every upsert, having read only the item's fields.
    pub fn changed_by(current: Option<&Fields>, upsert: &Upsert, mode: UpsertMode) -> bool {
        match (current, mode) {
            (None, _) => true,
            (Some(fields), UpsertMode::Merge) => upsert
                .fields
                .iter()
                .any(|(name, value)| fields.get(name) != Some(value)),
            (Some(fields), UpsertMode::Replace) => *fields != upsert.fields,
        }
    }

    /// The item after `upsert` is applied to `current` (None when it does not exist),
    /// or None when nothing would change: an unchanged item keeps its version and emits
    /// no event.
    pub fn upserted(
        current: Option<&Item>,
        upsert: &Upsert,
        mode: UpsertMode,
        connector_id: &str,
        now: Timestamp,
    ) -> Option<Item> {
        if !Item::changed_by(current.map(|item| &item.fields), upsert, mode) {
            return None;
        }
        let fields = match (current, mode) {
            (Some(item), UpsertMode::Merge) => {
                let mut fields = item.fields.clone();
                fields.extend(upsert.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                fields
            }
            _ => upsert.fields.clone(),
        };
        let field_ages = field_ages(current, &fields, now);
        Some(Item {
            id: upsert.id.clone(),
            fields,
            version: current.map_or(1, |item| item.version + 1),
            updated_at: now,
            connector_id: connector_id.to_owned(),
            field_ages,
        })
    }

    /// The fields of `upsert` whose value it changes in `current` (all of them when the
    /// item is new), with their new values: what a stream with snapshots on records.
    pub fn changed_fields<'u>(
        current: Option<&'u Item>,
        upsert: &'u Upsert,
    ) -> impl Iterator<Item = (&'u String, &'u Value)> {
        let current = current.map(|item| &item.fields);
        upsert
            .fields
            .iter()
            .filter(move |(name, value)| current.and_then(|f| f.get(*name)) != Some(*value))
    }

    /// When each field last changed, for the fields where that is known.
    pub fn fields_changed_at(&self) -> BTreeMap<&str, Timestamp> {
        self.fields
            .keys()
            .zip(&self.field_ages)
            .filter_map(|(name, age)| {
                let at = self
                    .updated_at
                    .checked_sub(SignedDuration::from_nanos((*age)?))
                    .ok()?;
                Some((name.as_str(), at))
            })
            .collect()
    }

    /// The read API's view of this item.
    pub fn view(&self) -> ItemView<'_> {
        ItemView {
            id: &self.id,
            fields: &self.fields,
            version: self.version,
            updated_at: self.updated_at,
            connector_id: &self.connector_id,
            fields_changed_at: self.fields_changed_at(),
        }
    }
}

/// The [`Item::field_ages`] of `current` (None when it is new) changed at `now` to have
/// `fields`: 0 for a field that is new or has a new value, the field's age in `current`
/// moved on to `now` for the others. Both maps are ordered by name, so `current`'s ages
/// are found in one walk beside the new fields.
fn field_ages(current: Option<&Item>, fields: &Fields, now: Timestamp) -> Vec<Option<i64>> {
    let Some(current) = current else {
        return vec![Some(0); fields.len()];
    };
    let moved_on = nanos(now.duration_since(current.updated_at));
    let mut before = current
        .fields
        .iter()
        .zip(
            current
                .field_ages
                .iter()
                .copied()
                .chain(std::iter::repeat(None)),
        )
        .peekable();
    fields
        .iter()
        .map(|(name, value)| {
            while before.next_if(|((old, _), _)| *old < name).is_some() {}
            let old = before.next_if(|((old, _), _)| *old == name);
            match old {
                Some(((_, old_value), age)) if old_value == value => {
                    age.map(|age| age.saturating_add(moved_on))
                }
                _ => Some(0),
            }
        })
        .collect()
}

/// A duration in whole nanoseconds, saturating at the ends of `i64` (292 years).
fn nanos(duration: SignedDuration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(if duration.is_negative() {
        i64::MIN
    } else {
        i64::MAX
    })
}

/// Flattens a JSON object: nested objects become dotted names, arrays and scalars stay
/// values, empty objects add nothing. Refuses nesting deeper than `MAX_DEPTH` (32) and
/// more than `MAX_FIELDS` (1,000) fields.
pub fn flatten(object: Map<String, Value>) -> Result<Fields, ValidationError> {
    let mut out = Fields::new();
    flatten_into(&mut out, "", object, 1)?;
    Ok(out)
}

/// Moves `object`'s leaves into `out` (taking the values, not copying them).
fn flatten_into(
    out: &mut Fields,
    prefix: &str,
    object: Map<String, Value>,
    depth: usize,
) -> Result<(), ValidationError> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    for (key, value) in object {
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) => flatten_into(out, &name, inner, depth + 1)?,
            other => {
                if depth + nesting(&other) > MAX_DEPTH {
                    return Err(too_deep());
                }
                out.insert(name, other);
                if out.len() > MAX_FIELDS {
                    return Err(ValidationError(format!(
                        "an item has more than {MAX_FIELDS} fields"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn too_deep() -> ValidationError {
    ValidationError(format!("an item is nested deeper than {MAX_DEPTH} levels"))
}

/// How many levels of arrays and objects a value adds below its field.
fn nesting(value: &Value) -> usize {
    match value {
        Value::Array(values) => 1 + values.iter().map(nesting).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// An item id from a key field's value: a non-empty string or a number, at most
/// `MAX_ITEM_ID_BYTES` (256) bytes.
pub fn item_id(value: &Value) -> Option<String> {
    let id = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!id.is_empty() && id.len() <= MAX_ITEM_ID_BYTES).then_some(id)
}

/// Keeps only mapped fields, renamed (SPEC §1 `fieldMapping`).
pub fn map_fields(fields: Fields, mapping: &std::collections::BTreeMap<String, String>) -> Fields {
    let mut fields = fields;
    mapping
        .iter()
        .filter_map(|(from, to)| fields.remove(from).map(|value| (to.clone(), value)))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("an object"),
        }
    }

    #[test]
    fn flattens_nested_objects_with_dots_and_keeps_arrays() {
        let flat = flatten(object(json!({
            "location": {"city": "London", "country": "UK"},
            "metrics": {"footfall": 1250, "dwell_time": 3.5},
            "tags": ["a", {"b": 1}], "empty": {}, "none": null
        })))
        .expect("valid");
        assert_eq!(
            Value::Object(flat),
            json!({"location.city": "London", "location.country": "UK", "metrics.footfall": 1250,
                   "metrics.dwell_time": 3.5, "tags": ["a", {"b": 1}], "none": null})
        );
    }

    #[test]
    fn refuses_too_deep_and_too_many_fields() {
        let mut deep = json!(1);
        for _ in 0..=MAX_DEPTH {
            deep = json!({ "a": deep });
        }
        assert!(flatten(object(deep.clone())).is_err());
        let ok = deep["a"].clone();
        assert!(
            flatten(object(ok)).is_ok(),
            "exactly {MAX_DEPTH} levels are fine"
        );
        let mut deep_array = json!(1);
        for _ in 0..MAX_DEPTH {
            deep_array = json!([deep_array]);
        }
        assert!(flatten(object(json!({ "a": deep_array }))).is_err());
        let many: Map<String, Value> = (0..=MAX_FIELDS)
            .map(|i| (format!("f{i}"), json!(i)))
            .collect();
        assert!(flatten(many).is_err());
    }

    #[test]
    fn merge_keeps_other_fields_replace_does_not_and_no_change_is_no_version() {
        let now = Timestamp::now();
        let first = Upsert {
            id: "n".into(),
            fields: object(json!({"a": 1, "b": 2})),
        };
        let item = Item::upserted(None, &first, UpsertMode::Merge, "c_1", now).expect("created");
        assert_eq!(item.version, 1);
        let second = Upsert {
            id: "n".into(),
            fields: object(json!({"b": 3})),
        };
        let merged =
            Item::upserted(Some(&item), &second, UpsertMode::Merge, "c_1", now).expect("changed");
        assert_eq!(
            (Value::Object(merged.fields.clone()), merged.version),
            (json!({"a": 1, "b": 3}), 2)
        );
        let replaced = Item::upserted(Some(&merged), &second, UpsertMode::Replace, "c_1", now)
            .expect("changed");
        assert_eq!(Value::Object(replaced.fields.clone()), json!({"b": 3}));
        assert!(Item::upserted(Some(&replaced), &second, UpsertMode::Merge, "c_1", now).is_none());

        // Fields the item already has, with the same values, change it only in replace
        // mode, where its other fields would go.
        let subset = Upsert {
            id: "n".into(),
            fields: object(json!({"a": 1})),
        };
        assert!(!Item::changed_by(
            Some(&merged.fields),
            &subset,
            UpsertMode::Merge
        ));
        assert!(Item::changed_by(
            Some(&merged.fields),
            &subset,
            UpsertMode::Replace
        ));
        assert!(Item::changed_by(None, &subset, UpsertMode::Merge));
        let other_value = Upsert {
            id: "n".into(),
            fields: object(json!({"a": 2})),
        };
        assert!(Item::changed_by(
            Some(&merged.fields),
            &other_value,
            UpsertMode::Merge
        ));
    }

    #[test]
    fn each_field_keeps_the_time_it_last_changed() {
        let t0: Timestamp = "2026-12-05T08:00:00Z".parse().expect("time");
        let t1 = t0 + SignedDuration::from_secs(60);
        let t2 = t1 + SignedDuration::from_millis(1500);
        let upsert = |fields: Value| Upsert {
            id: "n".into(),
            fields: object(fields),
        };
        let first = Item::upserted(
            None,
            &upsert(json!({"a": 1, "b": 2})),
            UpsertMode::Merge,
            "c",
            t0,
        )
        .expect("created");
        let second = Item::upserted(
            Some(&first),
            &upsert(json!({"b": 3, "c": 4, "a": 1})),
            UpsertMode::Merge,
            "c",
            t1,
        )
        .expect("changed");
        assert_eq!(
            second.fields_changed_at(),
            BTreeMap::from([("a", t0), ("b", t1), ("c", t1)])
        );
        let third = Item::upserted(
            Some(&second),
            &upsert(json!({"a": 1, "c": 5})),
            UpsertMode::Replace,
            "c",
            t2,
        )
        .expect("changed");
        assert_eq!(
            third.fields_changed_at(),
            BTreeMap::from([("a", t0), ("c", t2)])
        );
        let changing = upsert(json!({"a": 1, "c": 5, "d": null}));
        let changed: Vec<&String> = Item::changed_fields(Some(&second), &changing)
            .map(|(name, _)| name)
            .collect();
        assert_eq!(changed, ["c", "d"]);

        // An item stored before field times were kept: its fields' times are unknown
        // until they change.
        let old = Item {
            field_ages: Vec::new(),
            ..first
        };
        let next = Item::upserted(
            Some(&old),
            &upsert(json!({"b": 9})),
            UpsertMode::Merge,
            "c",
            t1,
        )
        .expect("changed");
        assert_eq!(next.fields_changed_at(), BTreeMap::from([("b", t1)]));
        let view = serde_json::to_value(next.view()).expect("view");
        assert_eq!(
            view["fieldsChangedAt"],
            json!({"b": "2026-12-05T08:01:00Z"})
        );
        assert!(view.get("fieldAges").is_none(), "{view}");
    }

    #[test]
    fn ids_come_from_strings_and_numbers_only() {
        assert_eq!(item_id(&json!("North")), Some("North".into()));
        assert_eq!(item_id(&json!(42)), Some("42".into()));
        assert_eq!(item_id(&json!(1.5)), Some("1.5".into()));
        for bad in [
            json!(""),
            json!(null),
            json!(true),
            json!([1]),
            json!("x".repeat(257)),
        ] {
            assert_eq!(item_id(&bad), None, "{bad}");
        }
    }
}
