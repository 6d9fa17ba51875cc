//! MySQL and MariaDB through sqlx: a read-only session (UTC, as sqlx sets it, so a
//! `TIMESTAMP` arrives as the instant it is), `DATETIME` read in the connector's zone.

use std::str::FromStr;

use serde_json::Value;
use sqlx::mysql::{
    MySql, MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlRow,
};
use sqlx::query::Query;
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::types::BigDecimal;
use sqlx::{Column, ConnectOptions, Executor, Row, TypeInfo};

use super::params::{Param, Prepared};
use super::{
    bound, chrono_date, chrono_datetime, classify_sqlx, connect_within, get, json_or_null,
    run_sqlx, unbindable, unmappable, values, Fetched, Limits, SqlError,
};

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

/// One column's value, by its MySQL type (SPEC §4.1): `TINYINT(1)` is a boolean.
fn value(row: &MySqlRow, i: usize, limits: &Limits) -> Result<Value, SqlError> {
    let column = row.column(i);
    let name = column.name();
    Ok(match column.type_info().name() {
        "BOOLEAN" => json_or_null(get::<_, bool>(row, i, name)?, Value::Bool),
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
            json_or_null(get::<_, Vec<u8>>(row, i, name)?, |v| values::bytes(&v))
        }
        "JSON" => get::<_, Value>(row, i, name)?.unwrap_or(Value::Null),
        "DATE" => json_or_null(get::<_, NaiveDate>(row, i, name)?, values::date),
        "TIME" => json_or_null(get::<_, NaiveTime>(row, i, name)?, values::time),
        "DATETIME" => json_or_null(get::<_, NaiveDateTime>(row, i, name)?, |v| {
            values::local(v, &limits.zone)
        }),
        "TIMESTAMP" => json_or_null(get::<_, DateTime<Utc>>(row, i, name)?, |v| {
            values::instant(v, &limits.zone)
        }),
        "NULL" => Value::Null,
        other => return Err(unmappable(name, other)),
    })
}
