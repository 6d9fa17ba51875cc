//! JSON files: an array of objects, the array found at `jsonPointer` when set, each
//! object flattened as pushed JSON is. A single object stands for one item, as in a
//! webhook body.

use serde_json::Value;

use super::text::decode;
use super::{EachRecord, FileError};
use crate::model::FileSettings;

/// The objects of a JSON file, parsed.
pub struct JsonFile {
    elements: Vec<Value>,
}

impl JsonFile {
    /// Parses `bytes` (UTF-8, or UTF-16 with a byte order mark) and finds the array.
    pub fn open(bytes: &[u8], settings: &FileSettings) -> Result<Self, FileError> {
        let text = decode(bytes, None)?;
        let mut document: Value = serde_json::from_str(&text).map_err(|e| {
            if e.is_eof() && text.trim().is_empty() {
                FileError::Empty
            } else {
                FileError::Json(e.to_string())
            }
        })?;
        let pointer = settings.json_pointer.as_deref().unwrap_or("");
        let found = document
            .pointer_mut(pointer)
            .map(Value::take)
            .ok_or_else(|| FileError::Json(format!("nothing at the jsonPointer {pointer:?}")))?;
        let elements = match found {
            Value::Array(elements) => elements,
            object @ Value::Object(_) => vec![object],
            other => {
                return Err(FileError::Json(format!(
                    "expected an array of objects at {pointer:?}, found {}",
                    kind(&other)
                )))
            }
        };
        if let Some(index) = elements.iter().position(|e| !e.is_object()) {
            return Err(FileError::Json(format!(
                "element {} is not an object",
                index + 1
            )));
        }
        Ok(JsonFile { elements })
    }

    /// Hands every object to `each`; without an `itemKey` its position is its id.
    pub fn records(&self, each: EachRecord<'_>) -> Result<(), FileError> {
        for (index, element) in self.elements.iter().enumerate() {
            if let Value::Object(object) = element {
                each(object.clone(), None, index)?;
            }
        }
        Ok(())
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
