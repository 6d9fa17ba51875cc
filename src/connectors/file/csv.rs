//! CSV files: a header row (or `column1`, `column2`, … without one), the delimiter
//! set or detected from the first line, quotes, the encoding decoded first. Every
//! row must have the header's number of fields and every quote must close, else the
//! whole file is refused.

use axum::body::Bytes;
use serde_json::{Map, Value};

use super::text::{decode, typed};
use super::{EachRecord, FileError};
use crate::model::FileSettings;

/// Delimiters detection chooses from, the most frequent in the first line winning.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// A CSV file decoded to UTF-8, with how to split it.
pub struct CsvFile {
    text: Bytes,
    delimiter: u8,
    quote: u8,
    header: bool,
}

impl CsvFile {
    /// Decodes `bytes` and settles the delimiter; refuses an empty file and one that
    /// ends inside a quoted field.
    pub fn open(bytes: Bytes, settings: &FileSettings) -> Result<Self, FileError> {
        let text = match decode(&bytes, settings.encoding)? {
            std::borrow::Cow::Borrowed(text) => {
                let start = text.as_ptr() as usize - bytes.as_ptr() as usize;
                bytes.slice(start..start + text.len())
            }
            std::borrow::Cow::Owned(text) => Bytes::from(text.into_bytes()),
        };
        if text.iter().all(u8::is_ascii_whitespace) {
            return Err(FileError::Empty);
        }
        let quote = ascii(settings.quote.as_deref(), "quote")?.unwrap_or(b'"');
        let delimiter = match ascii(settings.delimiter.as_deref(), "delimiter")? {
            Some(delimiter) => delimiter,
            None => detect_delimiter(&text, quote),
        };
        if ends_in_quotes(&text, delimiter, quote) {
            return Err(FileError::Csv(
                "a quoted field is not closed before the end of the file".into(),
            ));
        }
        Ok(CsvFile {
            text,
            delimiter,
            quote,
            header: settings.has_header_row(),
        })
    }

    /// Hands every data row to `each`, as an object of its typed values.
    pub fn records(&self, each: EachRecord<'_>) -> Result<(), FileError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(self.delimiter)
            .quote(self.quote)
            .flexible(false)
            .from_reader(&self.text[..]);
        let mut names: Option<Vec<String>> = None;
        let mut row = csv::StringRecord::new();
        let mut index = 0;
        while reader.read_record(&mut row).map_err(csv_error)? {
            let names = match &names {
                Some(names) => names,
                None if self.header => {
                    names = Some(header_names(row.iter())?);
                    continue;
                }
                None => names.insert((1..=row.len()).map(|i| format!("column{i}")).collect()),
            };
            let object: Map<String, Value> = names
                .iter()
                .zip(row.iter())
                .map(|(name, value)| (name.clone(), typed(value)))
                .collect();
            each(object, names.first().map(String::as_str), index)?;
            index += 1;
        }
        Ok(())
    }
}

/// Column names from a header row: trimmed, an empty one named by its position; two
/// columns of one name are refused, since one would silently overwrite the other.
pub fn header_names<'a>(cells: impl Iterator<Item = &'a str>) -> Result<Vec<String>, FileError> {
    let mut names: Vec<String> = Vec::new();
    for (i, cell) in cells.enumerate() {
        let name = match cell.trim() {
            "" => format!("column{}", i + 1),
            name => name.to_owned(),
        };
        if names.contains(&name) {
            return Err(FileError::Records(format!(
                "the header names the column {name:?} twice"
            )));
        }
        names.push(name);
    }
    Ok(names)
}

/// A one-character setting as the byte the CSV reader needs.
fn ascii(setting: Option<&str>, name: &str) -> Result<Option<u8>, FileError> {
    let Some(text) = setting else {
        return Ok(None);
    };
    match text.as_bytes() {
        [byte] if byte.is_ascii() => Ok(Some(*byte)),
        _ => Err(FileError::Csv(format!(
            "settings.{name} must be an ASCII character"
        ))),
    }
}

/// The delimiter the first line uses most, outside quotes; a comma when it has none.
fn detect_delimiter(text: &[u8], quote: u8) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for &byte in text {
        if byte == quote {
            quoted = !quoted;
        } else if !quoted && (byte == b'\n' || byte == b'\r') {
            break;
        } else if !quoted {
            if let Some(i) = DELIMITERS.iter().position(|&d| d == byte) {
                counts[i] += 1;
            }
        }
    }
    let (best, count) = counts
        .iter()
        .enumerate()
        .max_by_key(|&(i, count)| (*count, usize::MAX - i))
        .unwrap_or((0, &0));
    if *count == 0 {
        b','
    } else {
        DELIMITERS[best]
    }
}

/// Whether the text ends inside a quoted field: the CSV reader would take the rest of
/// the file as that field's value instead of failing.
fn ends_in_quotes(text: &[u8], delimiter: u8, quote: u8) -> bool {
    let mut quoted = false;
    let mut field_start = true;
    let mut bytes = text.iter().peekable();
    while let Some(&byte) = bytes.next() {
        if quoted {
            if byte == quote {
                if bytes.peek() == Some(&&quote) {
                    bytes.next();
                } else {
                    quoted = false;
                }
            }
        } else if byte == quote && field_start {
            quoted = true;
        }
        field_start = !quoted && (byte == delimiter || byte == b'\n' || byte == b'\r');
    }
    quoted
}

/// A CSV reader's error, with the line it happened on.
fn csv_error(error: csv::Error) -> FileError {
    let line = error.position().map(|p| p.line());
    let message = match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("a row has {len} fields where the header has {expected_len}"),
        _ => error.to_string(),
    };
    match line {
        Some(line) => FileError::Csv(format!("line {line}: {message}")),
        None => FileError::Csv(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delimiter_is_the_first_lines_most_frequent() {
        assert_eq!(detect_delimiter(b"a;b;c\n1,5;2;3", b'"'), b';');
        assert_eq!(detect_delimiter(b"a\tb\n", b'"'), b'\t');
        assert_eq!(detect_delimiter(b"\"x;y\",b\n", b'"'), b',');
        assert_eq!(detect_delimiter(b"single\n1\n", b'"'), b',');
    }

    #[test]
    fn an_unclosed_quote_is_found_wherever_it_is() {
        assert!(!ends_in_quotes(b"a,b\n\"1\",\"x\"\"y\"\n", b',', b'"'));
        assert!(!ends_in_quotes(b"a,b\n1,5\" screen\n", b',', b'"'));
        assert!(ends_in_quotes(b"a,b\n1,\"open\n2,3\n", b',', b'"'));
        assert!(ends_in_quotes(b"a,b\n1,\"x\"\"\n", b',', b'"'));
    }
}
