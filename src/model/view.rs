//! The schema of a document as the admin API shows it: a connector or subscription
//! read replaces each write-only secret with a `…Set` flag and adds what the server
//! assigned. The read's schema is derived from the document's own (derived) schema
//! with the same table of secrets the read uses, so the two cannot drift apart.

use serde_json::{json, Map, Value};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

/// Where component schemas are referenced from.
const COMPONENTS: &str = "#/components/schemas/";

/// A member a read adds to the document: its name, schema and whether it is always
/// there.
pub type Added = (&'static str, Value, bool);

/// The schema of `T`'s document as a read shows it, described by `description`: each
/// `(parent, field, flag)` of `write_only` (`parent` a JSON pointer to the object
/// holding the secret `field`) becomes the boolean `flag`, and the `added` members join
/// the top level.
pub fn read_view<T: ToSchema>(
    description: &str,
    write_only: &[(&str, &str, &str)],
    added: Vec<Added>,
) -> RefOr<Schema> {
    let mut referenced = Vec::new();
    T::schemas(&mut referenced);
    let definitions: Map<String, Value> = referenced
        .into_iter()
        .filter_map(|(name, schema)| Some((name, serde_json::to_value(schema).ok()?)))
        .collect();
    let mut view = serde_json::to_value(T::schema()).unwrap_or_default();
    for (parent, field, flag) in write_only {
        let path: Vec<&str> = parent.split('/').filter(|s| !s.is_empty()).collect();
        visit(&mut view, &path, &definitions, &mut |object| {
            replace_with_flag(object, field, flag)
        });
    }
    visit(&mut view, &[], &definitions, &mut |object| {
        object.insert("description".into(), json!(description));
        for (name, schema, required) in &added {
            add_member(object, name, schema.clone(), *required);
        }
    });
    // The document's schema came from a derive and was changed only by the code above,
    // member by member: it still reads as a schema.
    serde_json::from_value(view).expect("a changed derived schema is still a schema")
}

/// The object schemas at `path` below `node` (through references and `oneOf`, `anyOf`,
/// `allOf` alternatives), each handed to `change`. A referenced schema on the way is
/// copied in place first, so the component itself (the request's schema) is unchanged.
fn visit(
    node: &mut Value,
    path: &[&str],
    definitions: &Map<String, Value>,
    change: &mut dyn FnMut(&mut Map<String, Value>),
) {
    let referenced = node
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix(COMPONENTS))
        .and_then(|name| definitions.get(name));
    if let Some(definition) = referenced {
        *node = definition.clone();
    }
    for alternatives in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(items)) = node.get_mut(alternatives) {
            for item in items {
                visit(item, path, definitions, change);
            }
        }
    }
    match path.split_first() {
        None => {
            if let Some(object) = node
                .as_object_mut()
                .filter(|o| o.contains_key("properties"))
            {
                change(object);
            }
        }
        Some((member, rest)) => {
            if let Some(child) = node.pointer_mut(&format!("/properties/{member}")) {
                visit(child, rest, definitions, change);
            }
        }
    }
}

/// Replaces the property `field` of an object schema with the boolean `flag`, which is
/// required where the secret was.
fn replace_with_flag(object: &mut Map<String, Value>, field: &str, flag: &str) {
    let removed = object
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .and_then(|properties| properties.remove(field));
    if removed.is_none() {
        return;
    }
    let required = match object.get_mut("required") {
        Some(Value::Array(names)) => {
            let before = names.len();
            names.retain(|name| name != field);
            names.len() != before
        }
        _ => false,
    };
    let flag_schema = json!({
        "type": "boolean",
        "description": format!("Present (true) when `{field}` is set: a read never shows the secret itself")
    });
    add_member(object, flag, flag_schema, required);
}

/// Adds the property `name` to an object schema, required or not.
fn add_member(object: &mut Map<String, Value>, name: &str, schema: Value, required: bool) {
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        properties.insert(name.to_owned(), schema);
    }
    if required {
        match object.get_mut("required") {
            Some(Value::Array(names)) => names.push(json!(name)),
            _ => {
                object.insert("required".into(), json!([name]));
            }
        }
    }
}
