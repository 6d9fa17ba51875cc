//! Excel workbooks, xlsx and xls, read with calamine: one sheet (by name, else the
//! first), a header row (or `column1`, `column2`, … without one), each cell as its
//! type says. Dates become `YYYY-MM-DD`, date-times RFC 3339 in the connector's time
//! zone (a workbook carries none), times `HH:MM:SS`.

use std::io::Cursor;

use axum::body::Bytes;
use calamine::{Data, ExcelDateTime, Range, Reader};
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use serde_json::{Map, Number, Value};

use super::csv::header_names;
use super::{EachRecord, FileError};
use crate::model::FileSettings;

/// Largest integer an f64 holds exactly: whole numbers up to it are written as integers.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// The chosen sheet of a workbook, read whole.
pub struct Sheet {
    cells: Range<Data>,
    header: bool,
    zone: TimeZone,
}

impl Sheet {
    /// Opens the workbook (xlsx or xls, told by its content) and reads the sheet.
    pub fn open(bytes: Bytes, settings: &FileSettings) -> Result<Self, FileError> {
        let mut workbook = calamine::open_workbook_auto_from_rs(Cursor::new(bytes))
            .map_err(|e| FileError::Excel(format!("not a readable xlsx or xls workbook: {e}")))?;
        let cells = match &settings.sheet {
            Some(name) => {
                let names = workbook.sheet_names();
                if !names.contains(name) {
                    return Err(FileError::Excel(format!(
                        "the workbook has no sheet {name:?} (sheets: {})",
                        names.join(", ")
                    )));
                }
                workbook.worksheet_range(name)
            }
            None => workbook
                .worksheet_range_at(0)
                .ok_or_else(|| FileError::Excel("the workbook has no sheet".into()))?,
        }
        .map_err(|e| FileError::Excel(format!("the sheet cannot be read: {e}")))?;
        let zone = settings
            .time_zone
            .as_deref()
            .and_then(|name| TimeZone::get(name).ok())
            .unwrap_or_else(TimeZone::system);
        Ok(Sheet {
            cells,
            header: settings.has_header_row(),
            zone,
        })
    }

    /// Hands every non-empty row below the header to `each`, as an object of its cells.
    pub fn records(&self, each: EachRecord<'_>) -> Result<(), FileError> {
        let mut rows = self
            .cells
            .rows()
            .filter(|row| row.iter().any(|cell| *cell != Data::Empty));
        let names = if self.header {
            match rows.next() {
                Some(row) => {
                    let texts: Vec<String> = row.iter().map(header_text).collect();
                    header_names(texts.iter().map(String::as_str))?
                }
                None => return Ok(()),
            }
        } else {
            (1..=self.cells.width())
                .map(|i| format!("column{i}"))
                .collect()
        };
        for (index, row) in rows.enumerate() {
            let object: Map<String, Value> = names
                .iter()
                .zip(row.iter().map(|cell| self.value(cell)))
                .map(|(name, value)| (name.clone(), value))
                .collect();
            each(object, names.first().map(String::as_str), index)?;
        }
        Ok(())
    }

    /// A cell as JSON: numbers (whole ones as integers), text, booleans, dates and
    /// times as text; empty and error cells as null.
    fn value(&self, cell: &Data) -> Value {
        match cell {
            Data::Int(n) => Value::from(*n),
            Data::Float(f) => float(*f),
            Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => {
                Value::String(s.clone())
            }
            Data::Bool(b) => Value::Bool(*b),
            Data::DateTime(at) => Value::String(self.date_time(at)),
            Data::Error(_) | Data::Empty => Value::Null,
        }
    }

    /// An Excel date-time as text: `YYYY-MM-DD` at midnight, `HH:MM:SS` for a time of
    /// day or a duration, else RFC 3339 with the zone's offset at that time.
    fn date_time(&self, at: &ExcelDateTime) -> String {
        let (year, month, day, hour, minute, second, milli) = at.to_ymd_hms_milli();
        if at.is_duration() {
            let seconds = (at.as_f64() * 86_400.0).round() as i64;
            return format!(
                "{:02}:{:02}:{:02}",
                seconds / 3600,
                seconds / 60 % 60,
                seconds % 60
            );
        }
        let time = Time::new(
            hour as i8,
            minute as i8,
            second as i8,
            i32::from(milli) * 1_000_000,
        )
        .unwrap_or(Time::midnight());
        if at.as_f64() < 1.0 {
            return time.strftime("%H:%M:%S%.f").to_string();
        }
        let Ok(date) = Date::new(year as i16, month as i8, day as i8) else {
            return format!("{year:04}-{month:02}-{day:02}");
        };
        if time == Time::midnight() {
            return date.to_string();
        }
        let civil = DateTime::from_parts(date, time);
        match self.zone.to_ambiguous_zoned(civil).compatible() {
            Ok(zoned) => zoned.strftime("%Y-%m-%dT%H:%M:%S%.f%:z").to_string(),
            Err(_) => civil.to_string(),
        }
    }
}

/// A header cell as a column name.
fn header_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < MAX_EXACT_INTEGER => {
            format!("{}", *f as i64)
        }
        other => other.to_string(),
    }
}

/// An Excel number: Excel keeps every number as a float, so whole ones are written as
/// integers (`3`, not `3.0`).
fn float(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < MAX_EXACT_INTEGER {
        return Value::from(f as i64);
    }
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}
