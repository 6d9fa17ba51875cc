//! PostgreSQL through sqlx: a read-only session in the connector's time zone, with a
//! server-side statement timeout just past the connector's own, so an abandoned query
//! stops on the server too.

use std::str::FromStr;

use serde_json::Value;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgRow, Postgres};
use sqlx::query::Query;
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::types::{BigDecimal, Uuid};
use sqlx::{Column, ConnectOptions, Row, TypeInfo};

use super::params::{Param, Prepared};
use super::{
    bound, chrono_date, classify_sqlx, connect_within, get, json_or_null, run_sqlx, unbindable,
    unmappable, values, Fetched, Limits, SqlError, Warnings,
};

/// Runs `prepared` on the database `url` names.
pub(super) async fn fetch(
    url: &str,
    prepared: &Prepared,
    limits: &Limits,
) -> Result<Fetched, SqlError> {
    let options = session_options(url, limits)?;
    let seconds = limits.timeout.as_secs();
    let conn = connect_within(limits, async {
        options.connect().await.map_err(|e| classify(e, seconds))
    })
    .await?;
    run_sqlx(conn, bound(prepared, bind)?, limits, value, |e| {
        classify(e, seconds)
    })
    .await
}

/// Binds dates as `date` and `@now` as `timestamptz`.
fn bind<'q>(
    query: Query<'q, Postgres, PgArguments>,
    param: &Param,
) -> Result<Query<'q, Postgres, PgArguments>, SqlError> {
    Ok(match *param {
        Param::Date(date) => query.bind(chrono_date(date).ok_or_else(unbindable)?),
        Param::Now(_, at) => query.bind(
            DateTime::<Utc>::from_timestamp(at.as_second(), at.subsec_nanosecond().unsigned_abs())
                .ok_or_else(unbindable)?,
        ),
    })
}

/// The connection string's options plus a read-only session, the statement timeout,
/// the connector's time zone (so `now()::date` agrees with `@today`) and a name that
/// shows in `pg_stat_activity`.
fn session_options(url: &str, limits: &Limits) -> Result<PgConnectOptions, SqlError> {
    let statement_timeout_ms = (limits.timeout.as_millis() + 1000).to_string();
    let mut settings = vec![
        ("default_transaction_read_only", "on".to_owned()),
        ("statement_timeout", statement_timeout_ms),
    ];
    if let Some(zone) = limits.zone.iana_name() {
        settings.push(("TimeZone", zone.to_owned()));
    }
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| SqlError::Config(e.to_string()))?
        .application_name("datapool")
        .options(settings);
    Ok(options)
}

/// PostgreSQL's error codes (SQLSTATE) in the kinds the connector log tells apart.
fn classify(error: sqlx::Error, timeout_seconds: u64) -> SqlError {
    classify_sqlx(error, |db, message| match db.code().as_deref() {
        Some("28P01" | "28000") => SqlError::Auth(message),
        Some("42501") => SqlError::Permission(message),
        Some("42601") => SqlError::Syntax(message),
        Some("57014") => SqlError::QueryTimeout(timeout_seconds),
        Some("3D000") => SqlError::Connect(message),
        _ => SqlError::Query(message),
    })
}

/// One column's value, by its PostgreSQL type (SPEC §4.1).
fn value(row: &PgRow, i: usize, limits: &Limits, _: &mut Warnings) -> Result<Value, SqlError> {
    let column = row.column(i);
    let name = column.name();
    let zone = &limits.zone;
    Ok(match column.type_info().name() {
        "BOOL" => json_or_null(get::<_, bool>(row, i, name)?, Value::Bool),
        "INT2" => json_or_null(get::<_, i16>(row, i, name)?, Value::from),
        "INT4" => json_or_null(get::<_, i32>(row, i, name)?, Value::from),
        "INT8" => json_or_null(get::<_, i64>(row, i, name)?, Value::from),
        "FLOAT4" => json_or_null(get::<_, f32>(row, i, name)?, |v| {
            values::float(f64::from(v))
        }),
        "FLOAT8" => json_or_null(get::<_, f64>(row, i, name)?, values::float),
        "NUMERIC" => json_or_null(get::<_, BigDecimal>(row, i, name)?, |v| {
            values::decimal(&v.to_string())
        }),
        "TEXT" | "VARCHAR" | "CHAR" | "BPCHAR" | "NAME" | "CITEXT" => {
            json_or_null(get::<_, String>(row, i, name)?, Value::String)
        }
        "UUID" => json_or_null(get::<_, Uuid>(row, i, name)?, |v| {
            Value::String(v.to_string())
        }),
        "JSON" | "JSONB" => get::<_, Value>(row, i, name)?.unwrap_or(Value::Null),
        "BYTEA" => json_or_null(get::<_, Vec<u8>>(row, i, name)?, |v| values::bytes(&v)),
        "DATE" => json_or_null(get::<_, NaiveDate>(row, i, name)?, values::date),
        "TIME" => json_or_null(get::<_, NaiveTime>(row, i, name)?, values::time),
        "TIMESTAMP" => json_or_null(get::<_, NaiveDateTime>(row, i, name)?, |v| {
            values::local(v, zone)
        }),
        "TIMESTAMPTZ" => json_or_null(get::<_, DateTime<Utc>>(row, i, name)?, |v| {
            values::instant(v, zone)
        }),
        "TEXT[]" | "VARCHAR[]" => {
            array(get::<_, Vec<Option<String>>>(row, i, name)?, Value::String)
        }
        "INT4[]" => array(get::<_, Vec<Option<i32>>>(row, i, name)?, Value::from),
        "INT8[]" => array(get::<_, Vec<Option<i64>>>(row, i, name)?, Value::from),
        "FLOAT8[]" => array(get::<_, Vec<Option<f64>>>(row, i, name)?, values::float),
        "BOOL[]" => array(get::<_, Vec<Option<bool>>>(row, i, name)?, Value::Bool),
        other => return Err(unmappable(name, other)),
    })
}

/// A PostgreSQL array as a JSON array, NULL elements as null.
fn array<T>(value: Option<Vec<Option<T>>>, f: impl Fn(T) -> Value) -> Value {
    json_or_null(value, |items| {
        Value::Array(items.into_iter().map(|v| json_or_null(v, &f)).collect())
    })
}
