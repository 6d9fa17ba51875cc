//! SQLite through sqlx (the library is bundled): the file opened read-only and never
//! created. SQLite types values, not columns, so a value maps by what it holds, refined
//! by the column's declared type (`BOOLEAN` integers are booleans, `DATETIME` text is a
//! timestamp in the connector's zone).

use std::str::FromStr;
use std::time::Instant;

use serde_json::Value;
use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Column, ConnectOptions, Row, TypeInfo, ValueRef};

use super::params::{Param, Prepared};
use super::{
    bound, classify_sqlx, connect_within, run_sqlx, undecodable, unmappable, values, Fetched,
    Limits, SqlError, Warnings,
};

/// SQLite virtual-machine instructions between two looks at the clock: a few
/// microseconds of work, so a query stops within a millisecond of its deadline while
/// the check costs next to nothing.
const INSTRUCTIONS_PER_CHECK: i32 = 10_000;

/// Runs `prepared` on the file `url` names.
pub(super) async fn fetch(
    url: &str,
    prepared: &Prepared,
    limits: &Limits,
) -> Result<Fetched, SqlError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| SqlError::Config(e.to_string()))?
        .read_only(true)
        .create_if_missing(false);
    let seconds = limits.timeout.as_secs();
    let classified = |e| classify(e, seconds);
    let mut conn = connect_within(limits, async {
        options.connect().await.map_err(classified)
    })
    .await?;
    interrupt_at(&mut conn, Instant::now() + limits.timeout)
        .await
        .map_err(classified)?;
    run_sqlx(conn, bound(prepared, bind)?, limits, value, classified).await
}

/// Makes SQLite stop the query at `deadline`. SQLite runs a query on the connection's
/// own thread, which giving up on the answer does not stop: the query would run on,
/// holding the file's read lock (so the application writing it gets "database is
/// locked") and a core, while each retry started another.
async fn interrupt_at(conn: &mut SqliteConnection, deadline: Instant) -> Result<(), sqlx::Error> {
    conn.lock_handle()
        .await?
        .set_progress_handler(INSTRUCTIONS_PER_CHECK, move || Instant::now() < deadline);
    Ok(())
}

/// Binds dates as `YYYY-MM-DD` text and `@now` as `YYYY-MM-DD HH:MM:SS` wall-clock
/// text in the connector's zone, the forms SQLite's date functions use.
fn bind<'q>(
    query: Query<'q, Sqlite, SqliteArguments<'q>>,
    param: &Param,
) -> Result<Query<'q, Sqlite, SqliteArguments<'q>>, SqlError> {
    Ok(match *param {
        Param::Date(date) => query.bind(date.to_string()),
        Param::Now(local, _) => query.bind(local.strftime("%Y-%m-%d %H:%M:%S").to_string()),
    })
}

/// SQLite's result codes in the kinds the connector log tells apart; an interrupt is
/// the deadline [`interrupt_at`] set.
fn classify(error: sqlx::Error, timeout_seconds: u64) -> SqlError {
    classify_sqlx(error, |db, message| match db.code().as_deref() {
        _ if message.contains("syntax error") => SqlError::Syntax(message),
        Some("9") => SqlError::QueryTimeout(timeout_seconds),
        Some("8" | "23") => SqlError::Permission(message),
        Some("14" | "26") => SqlError::Connect(message),
        _ => SqlError::Query(message),
    })
}

/// One column's value, by the storage class of the value and the declared type.
fn value(row: &SqliteRow, i: usize, limits: &Limits, _: &mut Warnings) -> Result<Value, SqlError> {
    let column = row.column(i);
    let name = column.name();
    let raw = row.try_get_raw(i).map_err(|e| undecodable(name, e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let stored = raw.type_info().name().to_owned();
    let declared = column.type_info().name();
    Ok(match (stored.as_str(), declared) {
        ("INTEGER", "BOOLEAN") => Value::Bool(get::<i64>(row, i, name)? != 0),
        ("INTEGER", _) => Value::from(get::<i64>(row, i, name)?),
        ("REAL", _) => values::float(get::<f64>(row, i, name)?),
        ("TEXT", "DATETIME") => values::datetime_text(&get::<String>(row, i, name)?, &limits.zone),
        ("TEXT", _) => Value::String(get::<String>(row, i, name)?),
        ("BLOB", _) => values::bytes(&get::<Vec<u8>>(row, i, name)?),
        (other, _) => return Err(unmappable(name, other)),
    })
}

/// A non-null value decoded as the storage class it has (SQLite converts freely).
fn get<'r, T>(row: &'r SqliteRow, i: usize, column: &str) -> Result<T, SqlError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get_unchecked::<T, usize>(i)
        .map_err(|e| undecodable(column, e))
}
