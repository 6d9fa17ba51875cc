//! SQL Server through tiberius (TLS by rustls): an ADO.NET connection string, the
//! named parameters bound as `@P1…`, each TDS value mapped to JSON. SQL Server has no
//! read-only session switch; the login's permissions are what keep a poll read-only.

use serde_json::Value;
use sqlx::types::chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use tiberius::error::Error as TdsError;
use tiberius::time::DateTimeOffset;
use tiberius::{Client, ColumnData, Config, FromSql, ToSql};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

use super::params::{Param, Prepared};
use super::{
    chrono_date, chrono_datetime, connect_within, read_rows, unbindable, undecodable, values,
    within_query_timeout, Fetched, Limits, SqlError,
};

/// Runs `prepared` on the server the ADO.NET string `ado` names.
pub(super) async fn fetch(
    ado: &str,
    prepared: &Prepared,
    limits: &Limits,
) -> Result<Fetched, SqlError> {
    let config = Config::from_ado_string(ado).map_err(|e| SqlError::Config(e.to_string()))?;
    let mut client = connect_within(limits, async {
        let tcp = TcpStream::connect(config.get_addr())
            .await
            .map_err(|e| SqlError::Connect(format!("{}: {e}", config.get_addr())))?;
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY could not be set");
        }
        Client::connect(config, tcp.compat_write())
            .await
            .map_err(classify)
    })
    .await?;
    let bound = bind(&prepared.params)?;
    let refs: Vec<&dyn ToSql> = bound.iter().map(|b| b.as_ref()).collect();
    let mut columns = Vec::new();
    // tiberius cannot send SQL Server an attention (cancel): past the timeout this future
    // is dropped with the client, and the closed connection ends the query on the server.
    let (rows, truncated) = within_query_timeout(limits, async {
        let stream = client
            .query(prepared.sql.as_str(), &refs)
            .await
            .map_err(classify)?;
        read_rows(
            limits,
            stream.into_row_stream(),
            |row: &tiberius::Row| {
                if columns.is_empty() {
                    columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
                }
                row.cells()
                    .map(|(column, data)| value(column.name(), data, limits))
                    .collect()
            },
            classify,
        )
        .await
    })
    .await?;
    Ok(Fetched {
        columns,
        rows,
        truncated,
        warnings: Vec::new(),
    })
}

/// The parameters as values tiberius binds: dates as `date`, `@now` as the
/// connector zone's wall-clock `datetime2`.
fn bind(params: &[Param]) -> Result<Vec<Box<dyn ToSql>>, SqlError> {
    params
        .iter()
        .map(|param| -> Result<Box<dyn ToSql>, SqlError> {
            Ok(match *param {
                Param::Date(date) => Box::new(chrono_date(date).ok_or_else(unbindable)?),
                Param::Now(local, _) => Box::new(chrono_datetime(local).ok_or_else(unbindable)?),
            })
        })
        .collect()
}

/// SQL Server's error numbers in the kinds the connector log tells apart.
fn classify(error: TdsError) -> SqlError {
    match error {
        TdsError::Server(token) => {
            let message = token.message().to_owned();
            match token.code() {
                18456 | 18452 | 18486 | 18487 | 18488 => SqlError::Auth(message),
                229 | 230 | 262 | 297 | 300 => SqlError::Permission(message),
                102 | 105 | 156 | 170 => SqlError::Syntax(message),
                4060 => SqlError::Connect(message),
                _ => SqlError::Query(message),
            }
        }
        TdsError::Io { message, .. } => SqlError::Connect(message),
        TdsError::Tls(message) => SqlError::Connect(format!("TLS: {message}")),
        TdsError::Routing { host, port } => SqlError::Connect(format!(
            "the server redirects to {host}:{port}; use that address in the connection string"
        )),
        other => SqlError::Query(other.to_string()),
    }
}

/// One TDS value as JSON (SPEC §4.1); every type tiberius reads has a mapping.
pub(super) fn value(
    column: &str,
    data: &ColumnData<'static>,
    limits: &Limits,
) -> Result<Value, SqlError> {
    let zone = &limits.zone;
    Ok(match data {
        ColumnData::U8(v) => json(*v, Value::from),
        ColumnData::I16(v) => json(*v, Value::from),
        ColumnData::I32(v) => json(*v, Value::from),
        ColumnData::I64(v) => json(*v, Value::from),
        ColumnData::F32(v) => json(*v, |f| values::float(f64::from(f))),
        ColumnData::F64(v) => json(*v, values::float),
        ColumnData::Bit(v) => json(*v, Value::Bool),
        ColumnData::String(v) => json(v.as_ref(), |s| Value::String(s.to_string())),
        ColumnData::Guid(v) => json(*v, |g| Value::String(g.to_string())),
        ColumnData::Binary(v) => json(v.as_ref(), |b| values::bytes(b)),
        ColumnData::Numeric(v) => {
            json(*v, |n| values::decimal(&numeric_text(n.value(), n.scale())))
        }
        ColumnData::Xml(v) => json(v.as_ref(), |x| Value::String(x.to_string())),
        ColumnData::Date(_) => json(decode::<NaiveDate>(column, data)?, values::date),
        ColumnData::Time(_) => json(decode::<NaiveTime>(column, data)?, values::time),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            json(decode::<NaiveDateTime>(column, data)?, |v| {
                values::local(v, zone)
            })
        }
        ColumnData::DateTimeOffset(v) => {
            json(offset_instant(column, *v)?, |v| values::instant(v, zone))
        }
    })
}

/// The instant a `datetimeoffset` holds. TDS sends its date and time already in UTC
/// beside the offset the value was written with, so the date and time part alone is
/// the instant; tiberius' `DateTime<Utc>` conversion takes the offset off a second
/// time, and its `DateTime<FixedOffset>` one panics on an offset beyond a day.
fn offset_instant(
    column: &str,
    value: Option<DateTimeOffset>,
) -> Result<Option<DateTime<Utc>>, SqlError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let utc = ColumnData::DateTime2(Some(value.datetime2()));
    Ok(decode::<NaiveDateTime>(column, &utc)?.map(|naive| naive.and_utc()))
}

/// A date or time value through tiberius' chrono conversions.
fn decode<'a, T: FromSql<'a>>(
    column: &str,
    data: &'a ColumnData<'static>,
) -> Result<Option<T>, SqlError> {
    T::from_sql(data).map_err(|e| undecodable(column, e))
}

fn json<T>(value: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    value.map_or(Value::Null, f)
}

/// The exact decimal text of a TDS numeric: `value` × 10^-`scale`.
fn numeric_text(value: i128, scale: u8) -> String {
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    let scale = usize::from(scale);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use jiff::tz::TimeZone;
    use serde_json::json;
    use tiberius::numeric::Numeric;
    use tiberius::time::{Date, DateTime2, Time};

    use super::*;

    fn limits() -> Limits {
        Limits {
            timeout: std::time::Duration::from_secs(30),
            max_rows: 10,
            zone: TimeZone::get("Europe/Berlin").expect("zone"),
        }
    }

    #[test]
    fn numerics_keep_every_digit() {
        assert_eq!(numeric_text(1250, 2), "12.50");
        assert_eq!(numeric_text(-5, 1), "-0.5");
        assert_eq!(numeric_text(-5, 3), "-0.005");
        assert_eq!(numeric_text(42, 0), "42");
    }

    #[test]
    fn every_tds_type_maps_to_json() {
        // 2026-07-01 is day 739,797 since 0001-01-01; 12:00 is 432,000,000,000 ticks of 100 ns.
        let date = Date::new(739_797);
        let noon = Time::new(432_000_000_000, 7);
        let cases: Vec<(ColumnData<'static>, Value)> = vec![
            (ColumnData::U8(Some(255)), json!(255)),
            (ColumnData::I16(Some(-2)), json!(-2)),
            (ColumnData::I32(Some(7)), json!(7)),
            (ColumnData::I64(Some(i64::MAX)), json!(i64::MAX)),
            (ColumnData::F32(Some(1.5)), json!(1.5)),
            (ColumnData::F64(Some(-0.25)), json!(-0.25)),
            (ColumnData::Bit(Some(true)), json!(true)),
            (
                ColumnData::String(Some(Cow::from("Zürich"))),
                json!("Zürich"),
            ),
            (
                ColumnData::Guid(Some(tiberius::Uuid::nil())),
                json!("00000000-0000-0000-0000-000000000000"),
            ),
            (
                ColumnData::Binary(Some(Cow::from(vec![0u8, 255]))),
                json!("AP8="),
            ),
            (
                ColumnData::Numeric(Some(Numeric::new_with_scale(1250, 2))),
                json!(12.5),
            ),
            (
                ColumnData::Numeric(Some(Numeric::new_with_scale(12_345_678_901_234_567_891, 1))),
                json!("1234567890123456789.1"),
            ),
            (ColumnData::Date(Some(date)), json!("2026-07-01")),
            (ColumnData::Time(Some(noon)), json!("12:00:00")),
            (
                ColumnData::DateTime2(Some(DateTime2::new(date, noon))),
                json!("2026-07-01T12:00:00+02:00"),
            ),
            // '2026-07-01 13:00 +01:00' travels as 12:00 UTC with offset +60 minutes:
            // the instant 12:00Z, which Berlin's summer time (+02:00) shows as 14:00.
            (
                ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
                    DateTime2::new(date, noon),
                    60,
                ))),
                json!("2026-07-01T14:00:00+02:00"),
            ),
            // The same instant written at -05:00 ('07:00 -05:00') reads the same.
            (
                ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
                    DateTime2::new(date, noon),
                    -300,
                ))),
                json!("2026-07-01T14:00:00+02:00"),
            ),
            (ColumnData::DateTimeOffset(None), Value::Null),
            (ColumnData::I32(None), Value::Null),
            (ColumnData::DateTime2(None), Value::Null),
        ];
        for (data, expected) in cases {
            assert_eq!(
                value("c", &data, &limits()).expect("maps"),
                expected,
                "{data:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_a_clean_connect_error() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let ado = format!(
            "server=tcp:127.0.0.1,{port};user id=sa;password=secret;TrustServerCertificate=true"
        );
        let prepared = super::super::params::prepare(
            "select 1",
            crate::model::SqlDriver::SqlServer,
            jiff::Timestamp::now(),
            &TimeZone::UTC,
        );
        let error = fetch(&ado, &prepared, &limits())
            .await
            .expect_err("nothing listens");
        assert!(matches!(error, SqlError::Connect(_)), "{error:?}");
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
