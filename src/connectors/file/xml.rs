//! XML files: `xmlPath` names the repeated element by its slash path from the root
//! (`/rows/row`); each one is an item whose attributes and child elements become
//! fields under their plain (namespace-free) names, nested children with dotted names
//! (`address.city`), a child's attributes under its name (`price.currency`), text typed
//! as CSV values are. A child repeated within one element gives an array.

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};
use serde_json::map::Entry;
use serde_json::{Map, Value};

use super::text::{decode, typed};
use super::{EachRecord, FileError};
use crate::model::FileSettings;

/// An XML file decoded to UTF-8, with the path of its repeated element.
pub struct XmlFile {
    text: String,
    path: Vec<String>,
}

impl XmlFile {
    /// Decodes `bytes` (UTF-8, or UTF-16 with a byte order mark).
    pub fn open(bytes: &[u8], settings: &FileSettings) -> Result<Self, FileError> {
        let text = decode(bytes, None)?.into_owned();
        if text.trim().is_empty() {
            return Err(FileError::Empty);
        }
        let path = settings
            .xml_path
            .as_deref()
            .unwrap_or("")
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(XmlFile { text, path })
    }

    /// Hands every element at the path to `each`; refuses a document that is not
    /// well-formed or does not hold the path's parent at all (a wrong path would
    /// otherwise read as an empty file and, mirrored, delete every item).
    pub fn records(&self, each: EachRecord<'_>) -> Result<(), FileError> {
        let mut reader = Reader::from_str(&self.text);
        let mut stack: Vec<String> = Vec::new();
        let mut record: Option<Element> = None;
        let mut parent_seen = self.path.len() < 2;
        let mut index = 0;
        loop {
            let event = reader
                .read_event()
                .map_err(|e| FileError::Xml(format!("at byte {}: {e}", reader.error_position())))?;
            let (start, end) = match &event {
                Event::Start(e) => (Some(e), false),
                Event::Empty(e) => (Some(e), true),
                Event::End(_) => (None, true),
                Event::Text(text) => {
                    if let Some(record) = &mut record {
                        record.text(&text.xml10_content());
                    }
                    (None, false)
                }
                Event::CData(data) => {
                    if let Some(record) = &mut record {
                        record.text(&data.xml10_content());
                    }
                    (None, false)
                }
                Event::GeneralRef(reference) => {
                    if let Some(record) = &mut record {
                        record.text(&resolve(reference)?);
                    }
                    (None, false)
                }
                Event::Eof => break,
                _ => (None, false),
            };
            if let Some(start) = start {
                let name = start.local_name().into_inner().to_owned();
                stack.push(name);
                let attributes = attributes(start)?;
                match &mut record {
                    Some(record) => record.open(&stack[stack.len() - 1], attributes),
                    None if stack == self.path => record = Some(Element::new(attributes)),
                    None => parent_seen |= stack[..] == self.path[..self.path.len() - 1],
                }
            }
            if end {
                if stack.len() == self.path.len() {
                    if let Some(done) = record.take() {
                        each(done.fields, done.first.as_deref(), index)?;
                        index += 1;
                    }
                } else if let Some(record) = &mut record {
                    record.close();
                }
                stack.pop();
            }
        }
        if let Some(open) = stack.last() {
            return Err(FileError::Xml(format!(
                "the document ends before <{open}> is closed"
            )));
        }
        if !parent_seen {
            return Err(FileError::Xml(format!(
                "the document has no /{} element for the xmlPath",
                self.path[..self.path.len() - 1].join("/")
            )));
        }
        Ok(())
    }
}

/// An item being read from its element.
#[derive(Default)]
struct Element {
    fields: Map<String, Value>,
    /// The first field's name, in document order: the item key unless set.
    first: Option<String>,
    /// The child elements open inside it, innermost last.
    open: Vec<Child>,
}

/// A child element being read: its dotted name, its text so far, whether it has
/// elements of its own (then its text is not a value).
struct Child {
    name: String,
    text: String,
    has_children: bool,
}

impl Element {
    fn new(attributes: Vec<(String, String)>) -> Self {
        let mut element = Element::default();
        for (name, value) in attributes {
            element.add(name, typed(&value));
        }
        element
    }

    /// A child element `local` opens, with its attributes.
    fn open(&mut self, local: &str, attributes: Vec<(String, String)>) {
        let name = match self.open.last_mut() {
            Some(parent) => {
                parent.has_children = true;
                format!("{}.{local}", parent.name)
            }
            None => local.to_owned(),
        };
        for (attribute, value) in attributes {
            self.add(format!("{name}.{attribute}"), typed(&value));
        }
        self.open.push(Child {
            name,
            text: String::new(),
            has_children: false,
        });
    }

    fn text(&mut self, text: &str) {
        if let Some(child) = self.open.last_mut() {
            child.text.push_str(text);
        }
    }

    /// The innermost open child closes: a leaf's text, without the whitespace around
    /// it, becomes its value.
    fn close(&mut self) {
        if let Some(child) = self.open.pop() {
            if !child.has_children {
                self.add(child.name, typed(child.text.trim()));
            }
        }
    }

    /// Adds a field; a name seen before in this element collects its values in an array.
    fn add(&mut self, name: String, value: Value) {
        if self.first.is_none() {
            self.first = Some(name.clone());
        }
        match self.fields.entry(name) {
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
            Entry::Occupied(mut slot) => match slot.get_mut() {
                Value::Array(values) => values.push(value),
                earlier => {
                    let earlier = earlier.take();
                    slot.insert(Value::Array(vec![earlier, value]));
                }
            },
        }
    }
}

/// An element's attributes by plain name, their values unescaped.
fn attributes(start: &BytesStart<'_>) -> Result<Vec<(String, String)>, FileError> {
    start
        .attributes()
        .map(|attribute| {
            let attribute = attribute.map_err(|e| FileError::Xml(e.to_string()))?;
            let name = attribute.key.local_name().into_inner();
            if attribute.key.as_namespace_binding().is_some() {
                return Ok(None);
            }
            let value = attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| FileError::Xml(e.to_string()))?;
            Ok(Some((name.to_owned(), value.into_owned())))
        })
        .filter_map(Result::transpose)
        .collect()
}

/// The text a character or predefined entity reference stands for.
fn resolve(reference: &quick_xml::events::BytesRef<'_>) -> Result<String, FileError> {
    let unknown = || FileError::Xml(format!("unknown entity &{};", &**reference));
    if let Some(c) = reference
        .resolve_char_ref()
        .map_err(|e| FileError::Xml(e.to_string()))?
    {
        return Ok(c.to_string());
    }
    quick_xml::escape::resolve_predefined_entity(reference)
        .map(str::to_owned)
        .ok_or_else(unknown)
}
