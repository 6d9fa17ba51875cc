//! MySQL and MariaDB through sqlx: a read-only session (UTC, as sqlx sets it, so a
//! `TIMESTAMP` arrives as the instant it is), `DATETIME` read in the connector's zone.

use std::str::FromStr;

use serde_json::Value;
use sqlx::mysql::{
    MySql, MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlRow,
    MySqlTypeInfo,
};
use sqlx::query::Query;
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::types::BigDecimal;
use sqlx::{Column, ConnectOptions, Executor, Row, TypeInfo};

use super::params::{Param, Prepared};
use super::{
    bound, chrono_date, chrono_datetime, classify_sqlx, connect_within, get, json_or_null,
    run_sqlx, unbindable, undecodable, unmappable, values, Fetched, Limits, SqlError, Warnings,
};

/// The width of a `LONGTEXT` or `LONGBLOB` column (4 GiB less a byte), the type
/// MariaDB's `JSON` is; servers send every text and blob column as the same type and
/// tell them apart by this width only.
const LONG_COLUMN_WIDTH: u32 = u32::MAX;

/// Runs `prepared` on the database `url` names.
pub(super) async fn fetch(
    url: &str,
    prepared: &Prepared,
    limits: &Limits,
) -> Result<Fetched, SqlError> {
    let options =
        MySqlConnectOptions::from_str(url).map_err(|e| SqlError::Config(e.to_string()))?;
    let seconds = limits.timeout.as_secs();
    let conn = connect_within(limits, async {
        let mut conn = options.connect().await.map_err(|e| classify(e, seconds))?;
        conn.execute("SET SESSION TRANSACTION READ ONLY")
            .await
            .map_err(|e| classify(e, seconds))?;
        limit_statement_time(&mut conn, seconds).await;
        Ok(conn)
    })
    .await?;
    run_sqlx(conn, bound(prepared, bind)?, limits, value, |e| {
        classify(e, seconds)
    })
    .await
}

/// Asks the server to stop the query a second past the connector's timeout, since
/// MariaDB and MySQL keep running a query whose client has gone: MariaDB's
/// `max_statement_time` (seconds), else MySQL's `max_execution_time` (milliseconds).
async fn limit_statement_time(conn: &mut MySqlConnection, timeout_seconds: u64) {
    let seconds = timeout_seconds.saturating_add(1);
    let mariadb = format!("SET SESSION max_statement_time = {seconds}");
    if conn.execute(mariadb.as_str()).await.is_ok() {
        return;
    }
    let mysql = format!(
        "SET SESSION max_execution_time = {}",
        seconds.saturating_mul(1000)
    );
    if let Err(error) = conn.execute(mysql.as_str()).await {
        tracing::debug!(%error, "no server-side statement time limit; the connector's timeout still applies");
    }
}

/// Binds dates as `DATE` and `@now` as the connector zone's wall-clock `DATETIME`.
fn bind<'q>(
    query: Query<'q, MySql, MySqlArguments>,
    param: &Param,
) -> Result<Query<'q, MySql, MySqlArguments>, SqlError> {
    Ok(match *param {
        Param::Date(date) => query.bind(chrono_date(date).ok_or_else(unbindable)?),
        Param::Now(local, _) => query.bind(chrono_datetime(local).ok_or_else(unbindable)?),
    })
}

/// MySQL's and MariaDB's error numbers in the kinds the connector log tells apart.
fn classify(error: sqlx::Error, timeout_seconds: u64) -> SqlError {
    classify_sqlx(error, |db, message| {
        let number = db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number);
        match number {
            Some(1045 | 1698) => SqlError::Auth(message),
            Some(1044 | 1142 | 1143 | 1227 | 1370) => SqlError::Permission(message),
            Some(1064 | 1149) => SqlError::Syntax(message),
            Some(1969 | 3024) => SqlError::QueryTimeout(timeout_seconds),
            Some(1049) => SqlError::Connect(message),
            _ => SqlError::Query(message),
        }
    })
}

/// One column's value, by its MySQL type (SPEC §4.1): `TINYINT(1)` and `BIT(1)` are
/// booleans; what the server flags binary is read by [`binary_value`]; a zero date is
/// null.
fn value(
    row: &MySqlRow,
    i: usize,
    limits: &Limits,
    warnings: &mut Warnings,
) -> Result<Value, SqlError> {
    let column = row.column(i);
    let name = column.name();
    Ok(match column.type_info().name() {
        "BOOLEAN" => json_or_null(get::<_, bool>(row, i, name)?, Value::Bool),
        "BIT" if declared_width(column.type_info()) == Some(1) => {
            json_or_null(get::<_, bool>(row, i, name)?, Value::Bool)
        }
        "TINYINT" => json_or_null(get::<_, i8>(row, i, name)?, Value::from),
        "SMALLINT" => json_or_null(get::<_, i16>(row, i, name)?, Value::from),
        "MEDIUMINT" | "INT" => json_or_null(get::<_, i32>(row, i, name)?, Value::from),
        "BIGINT" => json_or_null(get::<_, i64>(row, i, name)?, Value::from),
        "TINYINT UNSIGNED" => json_or_null(get::<_, u8>(row, i, name)?, Value::from),
        "SMALLINT UNSIGNED" | "YEAR" => json_or_null(get::<_, u16>(row, i, name)?, Value::from),
        "MEDIUMINT UNSIGNED" | "INT UNSIGNED" => {
            json_or_null(get::<_, u32>(row, i, name)?, Value::from)
        }
        "BIGINT UNSIGNED" | "BIT" => json_or_null(get::<_, u64>(row, i, name)?, Value::from),
        "FLOAT" => json_or_null(get::<_, f32>(row, i, name)?, |v| {
            values::float(f64::from(v))
        }),
        "DOUBLE" => json_or_null(get::<_, f64>(row, i, name)?, values::float),
        "DECIMAL" => json_or_null(get::<_, BigDecimal>(row, i, name)?, |v| {
            values::decimal(&v.to_string())
        }),
        "CHAR" | "VARCHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            json_or_null(get::<_, String>(row, i, name)?, Value::String)
        }
        "BINARY" | "VARBINARY" | "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            let json_text = declared_width(column.type_info()) == Some(LONG_COLUMN_WIDTH);
            json_or_null(get::<_, Vec<u8>>(row, i, name)?, |v| {
                binary_value(v, json_text)
            })
        }
        "JSON" => get::<_, Value>(row, i, name)?.unwrap_or(Value::Null),
        "DATE" => date_value::<NaiveDate>(row, i, warnings, values::date)?,
        "TIME" => json_or_null(get::<_, NaiveTime>(row, i, name)?, values::time),
        "DATETIME" => {
            date_value::<NaiveDateTime>(row, i, warnings, |v| values::local(v, &limits.zone))?
        }
        "TIMESTAMP" => {
            date_value::<DateTime<Utc>>(row, i, warnings, |v| values::instant(v, &limits.zone))?
        }
        "NULL" => Value::Null,
        other => return Err(unmappable(name, other)),
    })
}

/// A column's declared width: `BIT(M)`'s M, a text or blob column's most bytes. sqlx
/// keeps it private; the type's `Debug` form shows it as `max_size`.
fn declared_width(type_info: &MySqlTypeInfo) -> Option<u32> {
    let debug = format!("{type_info:?}");
    let (_, rest) = debug.split_once("max_size: Some(")?;
    rest.split(')').next()?.parse().ok()
}

/// A value of a column MySQL flags binary. MariaDB and MySQL flag text with a `_bin`
/// collation (MariaDB's `JSON` type among it) exactly as they flag bytes, and sqlx does
/// not pass on the character set that tells them apart, so the value decides: UTF-8
/// text without control characters (other than tab and line breaks) is text, anything
/// else is bytes, as base64. With `json_text` (a `LONGTEXT`/`LONGBLOB` column, how
/// MariaDB stores `JSON`), text that is a JSON object or array is that JSON value.
fn binary_value(bytes: Vec<u8>, json_text: bool) -> Value {
    let text = match String::from_utf8(bytes) {
        Ok(text) if is_plain_text(&text) => text,
        Ok(text) => return values::bytes(text.as_bytes()),
        Err(error) => return values::bytes(error.as_bytes()),
    };
    if json_text {
        if let Some(document) = json_document(&text) {
            return document;
        }
    }
    Value::String(text)
}

/// Whether `text` has no control characters but tabs and line breaks, as text does and
/// bytes rarely do.
fn is_plain_text(text: &str) -> bool {
    !text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// `text` as a JSON value when it is a JSON object or array.
fn json_document(text: &str) -> Option<Value> {
    if !text.trim_start().starts_with(['{', '[']) {
        return None;
    }
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(|value| value.is_object() || value.is_array())
}

/// A `DATE`, `DATETIME` or `TIMESTAMP` value through `f`. A zero date (`0000-00-00`, or
/// a zero month or day, which MySQL and MariaDB store outside strict mode and no
/// calendar has) is null, noted in `warnings`, instead of failing the poll.
fn date_value<'r, T>(
    row: &'r MySqlRow,
    i: usize,
    warnings: &mut Warnings,
    f: impl FnOnce(T) -> Value,
) -> Result<Value, SqlError>
where
    T: sqlx::Decode<'r, MySql> + sqlx::Type<MySql>,
{
    let name = row.column(i).name();
    match row.try_get::<Option<T>, usize>(i) {
        Ok(value) => Ok(json_or_null(value, f)),
        Err(error) => {
            let raw = row.try_get_unchecked::<&[u8], usize>(i).unwrap_or_default();
            if !is_zero_date(raw) {
                return Err(undecodable(name, error));
            }
            warnings.add(format!(
                "column {name:?} holds zero dates (such as 0000-00-00), which no calendar has; they are stored as null"
            ));
            Ok(Value::Null)
        }
    }
}

/// Whether raw date bytes hold a zero month or day: in the binary protocol a length
/// byte (0 for an all-zero date) then year, month and day; in the text protocol
/// `YYYY-MM-DD…`.
fn is_zero_date(raw: &[u8]) -> bool {
    match raw {
        [] | [0, ..] => true,
        [len, _, _, month, day, ..] if *len < b'0' => *month == 0 || *day == 0,
        text => text.get(5..7) == Some(b"00") || text.get(8..10) == Some(b"00"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn zero_dates_are_told_in_both_protocols() {
        assert!(is_zero_date(&[0]));
        assert!(is_zero_date(&[4, 0xe8, 0x07, 0, 15]));
        assert!(!is_zero_date(&[4, 0xe8, 0x07, 1, 15]));
        assert!(is_zero_date(b"0000-00-00 00:00:00"));
        assert!(is_zero_date(b"2024-05-00"));
        assert!(!is_zero_date(b"2024-05-01"));
    }

    #[test]
    fn the_declared_width_is_read_from_sqlx_type_info() {
        use sqlx::Type;
        assert_eq!(declared_width(&<bool as Type<MySql>>::type_info()), Some(1));
        assert_eq!(declared_width(&<String as Type<MySql>>::type_info()), None);
    }

    #[test]
    fn binary_values_are_text_json_or_bytes() {
        let cases = [
            (&b"Z\xc3\xbcrich"[..], false, json!("Zürich")),
            (b"{\"a\":1}", true, json!({"a": 1})),
            (b"{\"a\":1}", false, json!("{\"a\":1}")),
            (b"[1, 2", true, json!("[1, 2")),
            (b"\"text\"", true, json!("\"text\"")),
            (b"\x00\xff", false, json!("AP8=")),
            (b"a\x00b", false, json!("YQBi")),
            (b"", false, json!("")),
        ];
        for (bytes, json_text, expected) in cases {
            assert_eq!(
                binary_value(bytes.to_vec(), json_text),
                expected,
                "{bytes:?}"
            );
        }
    }
}
