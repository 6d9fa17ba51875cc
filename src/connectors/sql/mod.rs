//! Running a `sql` connector's query (SPEC §4.1): one connection per poll, read-only
//! where the database allows it, the named parameters bound as typed values, the query
//! bounded by the connector's timeout and row cap, every value mapped to JSON.
//!
//! - [`params`]: `@today`-style parameters → driver placeholders and values;
//! - [`values`]: database values → JSON, shared by every driver;
//! - `postgres`, `mysql`, `sqlite` (sqlx) and `mssql` (tiberius): connecting, binding,
//!   mapping each driver's column types, and classifying its errors;
//! - `rows`: result rows → the items a poll writes.

mod mssql;
mod mysql;
pub mod params;
mod postgres;
mod rows;
mod sqlite;
pub mod values;

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::Value;

use crate::model::{SqlDriver, SqlSettings};
pub use rows::items;

/// Why a query produced no result, classified so the connector log says which kind of
/// failure it was; each variant carries the database's own message.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The connection string cannot be used as it is.
    #[error("invalid connection settings: {0}")]
    Config(String),
    /// The server could not be reached (refused, unknown host, TLS failure).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// No connection within the timeout.
    #[error("connect timeout: no connection within {0} s")]
    ConnectTimeout(u64),
    /// The server refused the credentials (wrong password, unknown user or role).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The query ran longer than the timeout.
    #[error("query timeout: the query ran longer than {0} s and was cancelled")]
    QueryTimeout(u64),
    /// The user may not read what the query reads.
    #[error("permission denied: {0}")]
    Permission(String),
    /// The database could not parse the query.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A column has a type this connector cannot turn into JSON.
    #[error("column {column:?} has type {type_name}, which cannot be mapped to JSON; cast it in the query (for example to text)")]
    Unmappable {
        /// The column's name.
        column: String,
        /// The database's name for its type.
        type_name: String,
    },
    /// The rows cannot become items (no usable item key, too deeply nested).
    #[error("the result cannot be stored: {0}")]
    Items(String),
    /// Any other failure the database reported.
    #[error("query failed: {0}")]
    Query(String),
}

impl SqlError {
    /// A short stable name of the kind of failure, for the test endpoint's answer.
    pub fn kind(&self) -> &'static str {
        match self {
            SqlError::Config(_) => "config",
            SqlError::Connect(_) => "connect",
            SqlError::ConnectTimeout(_) => "connectTimeout",
            SqlError::Auth(_) => "authFailed",
            SqlError::QueryTimeout(_) => "queryTimeout",
            SqlError::Permission(_) => "permissionDenied",
            SqlError::Syntax(_) => "syntaxError",
            SqlError::Unmappable { .. } => "unmappableType",
            SqlError::Items(_) => "invalidRows",
            SqlError::Query(_) => "queryFailed",
        }
    }
}

/// What one run of the query returned.
#[derive(Debug, Default)]
pub struct Fetched {
    /// Column names, in the query's order.
    pub columns: Vec<String>,
    /// Rows of JSON values, one per column.
    pub rows: Vec<Vec<Value>>,
    /// Whether more rows than the cap were available (only the first ones are here).
    pub truncated: bool,
    /// What was read as null instead of failing the run, for the connector log.
    pub warnings: Vec<String>,
}

/// Values a run read as null instead of failing it (MySQL's zero dates), one message
/// per column however many rows hold such values.
#[derive(Debug, Default)]
struct Warnings(BTreeSet<String>);

impl Warnings {
    /// Notes `message`, once.
    fn add(&mut self, message: String) {
        self.0.insert(message);
    }
}

/// How one run is bounded and read, from the connector's settings.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time allowed for connecting, and again for the query.
    pub timeout: Duration,
    /// Most rows kept.
    pub max_rows: usize,
    /// Zone of zone-less timestamps and of the named parameters.
    pub zone: TimeZone,
}

impl Limits {
    /// The limits `settings` ask for, with the defaults of SPEC §4.1.
    pub fn of(settings: &SqlSettings) -> Limits {
        let zone = settings
            .time_zone
            .as_deref()
            .and_then(|name| TimeZone::get(name).ok())
            .unwrap_or_else(TimeZone::system);
        Limits {
            timeout: Duration::from_secs(settings.timeout()),
            max_rows: usize::try_from(settings.row_cap()).unwrap_or(usize::MAX),
            zone,
        }
    }

    fn seconds(&self) -> u64 {
        self.timeout.as_secs()
    }
}

/// Connects, runs the connector's query once and reads its rows. Writes nothing.
#[tracing::instrument(skip_all, fields(driver))]
pub async fn fetch(settings: &SqlSettings, now: Timestamp) -> Result<Fetched, SqlError> {
    let driver = settings
        .driver()
        .map_err(|e| SqlError::Config(e.to_string()))?;
    tracing::Span::current().record("driver", tracing::field::debug(driver));
    let limits = Limits::of(settings);
    let prepared = params::prepare(&settings.query, driver, now, &limits.zone);
    let url = settings.connection_string.expose();
    match driver {
        SqlDriver::Postgres => postgres::fetch(url, &prepared, &limits).await,
        SqlDriver::MySql => mysql::fetch(url, &prepared, &limits).await,
        SqlDriver::Sqlite => sqlite::fetch(url, &prepared, &limits).await,
        SqlDriver::SqlServer => mssql::fetch(url, &prepared, &limits).await,
    }
}

/// Runs `connect` within the timeout, a late answer being a connect timeout.
async fn connect_within<T>(
    limits: &Limits,
    connect: impl std::future::Future<Output = Result<T, SqlError>>,
) -> Result<T, SqlError> {
    tokio::time::timeout(limits.timeout, connect)
        .await
        .map_err(|_| SqlError::ConnectTimeout(limits.seconds()))?
}

/// Reads up to `max_rows` rows from `rows` within the timeout (a late answer being a
/// query timeout), mapping each with `map`; one more row marks the result truncated.
async fn collect<R, E>(
    limits: &Limits,
    rows: impl Stream<Item = Result<R, E>>,
    map: impl FnMut(&R) -> Result<Vec<Value>, SqlError>,
    classify: impl Fn(E) -> SqlError,
) -> Result<(Vec<Vec<Value>>, bool), SqlError> {
    within_query_timeout(limits, read_rows(limits, rows, map, classify)).await
}

/// Runs `query` within the timeout, a late answer being a query timeout. The future is
/// dropped then, and with it what it holds: a driver that cannot cancel on the server
/// closes the connection that way.
async fn within_query_timeout<T>(
    limits: &Limits,
    query: impl std::future::Future<Output = Result<T, SqlError>>,
) -> Result<T, SqlError> {
    tokio::time::timeout(limits.timeout, query)
        .await
        .map_err(|_| SqlError::QueryTimeout(limits.seconds()))?
}

/// Reads up to `max_rows` rows from `rows`, mapping each with `map`; one more row marks
/// the result truncated.
async fn read_rows<R, E>(
    limits: &Limits,
    rows: impl Stream<Item = Result<R, E>>,
    mut map: impl FnMut(&R) -> Result<Vec<Value>, SqlError>,
    classify: impl Fn(E) -> SqlError,
) -> Result<(Vec<Vec<Value>>, bool), SqlError> {
    let mut rows = std::pin::pin!(rows);
    let mut out = Vec::new();
    while let Some(row) = rows.next().await {
        let row = row.map_err(&classify)?;
        if out.len() == limits.max_rows {
            return Ok((out, true));
        }
        out.push(map(&row)?);
    }
    Ok((out, false))
}

/// The prepared query for sqlx with each named parameter bound by the driver's `bind`.
fn bound<'q, DB: sqlx::Database>(
    prepared: &'q params::Prepared,
    bind: impl Fn(SqlxQuery<'q, DB>, &params::Param) -> Result<SqlxQuery<'q, DB>, SqlError>,
) -> Result<SqlxQuery<'q, DB>, SqlError> {
    prepared
        .params
        .iter()
        .try_fold(sqlx::query(&prepared.sql), |query, param| {
            bind(query, param)
        })
}

/// An sqlx query with its driver's arguments.
type SqlxQuery<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>;

/// A driver's mapping of one column of a row to JSON, noting values it read as null.
type Mapper<R> = fn(&R, usize, &Limits, &mut Warnings) -> Result<Value, SqlError>;

/// Runs a bound query on an open sqlx connection: reads the rows within the limits,
/// mapping each column with `value`, and closes the connection (a failed goodbye
/// changes nothing).
async fn run_sqlx<'q, C, A>(
    mut conn: C,
    query: sqlx::query::Query<'q, C::Database, A>,
    limits: &Limits,
    value: Mapper<<C::Database as sqlx::Database>::Row>,
    classify: impl Fn(sqlx::Error) -> SqlError,
) -> Result<Fetched, SqlError>
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    A: sqlx::IntoArguments<'q, C::Database> + 'q,
    usize: sqlx::ColumnIndex<<C::Database as sqlx::Database>::Row>,
{
    use sqlx::Row;
    let mut columns = Vec::new();
    let mut warnings = Warnings::default();
    let (rows, truncated) = collect(
        limits,
        query.fetch(&mut conn),
        |row| {
            if columns.is_empty() {
                columns = sqlx_columns(row);
            }
            (0..row.len())
                .map(|i| value(row, i, limits, &mut warnings))
                .collect()
        },
        classify,
    )
    .await?;
    if let Err(error) = conn.close().await {
        tracing::debug!(%error, "closing the database connection failed");
    }
    Ok(Fetched {
        columns,
        rows,
        truncated,
        warnings: warnings.0.into_iter().collect(),
    })
}

/// Classifies an sqlx error; `database` classifies a database's own error by its code.
fn classify_sqlx(
    error: sqlx::Error,
    database: impl Fn(&dyn sqlx::error::DatabaseError, String) -> SqlError,
) -> SqlError {
    match error {
        sqlx::Error::Database(db) => {
            let message = db.message().to_owned();
            database(db.as_ref(), message)
        }
        sqlx::Error::Configuration(e) => SqlError::Config(e.to_string()),
        sqlx::Error::Io(e) => SqlError::Connect(e.to_string()),
        sqlx::Error::Tls(e) => SqlError::Connect(format!("TLS: {e}")),
        other => SqlError::Query(other.to_string()),
    }
}

/// One column of an sqlx row, typed, NULL as None.
fn get<'r, R, T>(row: &'r R, index: usize, column: &str) -> Result<Option<T>, SqlError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    row.try_get::<Option<T>, usize>(index)
        .map_err(|e| undecodable(column, e))
}

/// `Some(value)` through `f`, `None` as JSON null.
fn json_or_null<T>(value: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    value.map_or(Value::Null, f)
}

/// The names of an sqlx row's columns.
fn sqlx_columns<R: sqlx::Row>(row: &R) -> Vec<String> {
    use sqlx::Column;
    row.columns().iter().map(|c| c.name().to_owned()).collect()
}

/// Chrono's date for a parameter's civil date.
fn chrono_date(date: jiff::civil::Date) -> Option<sqlx::types::chrono::NaiveDate> {
    sqlx::types::chrono::NaiveDate::from_ymd_opt(
        i32::from(date.year()),
        u32::try_from(date.month()).ok()?,
        u32::try_from(date.day()).ok()?,
    )
}

/// Chrono's wall-clock time for a parameter's civil date-time.
fn chrono_datetime(at: jiff::civil::DateTime) -> Option<sqlx::types::chrono::NaiveDateTime> {
    let time = sqlx::types::chrono::NaiveTime::from_hms_nano_opt(
        u32::try_from(at.hour()).ok()?,
        u32::try_from(at.minute()).ok()?,
        u32::try_from(at.second()).ok()?,
        u32::try_from(at.subsec_nanosecond()).ok()?,
    )?;
    Some(chrono_date(at.date())?.and_time(time))
}

/// A parameter whose value is outside what the driver's types hold (dates past 9999).
fn unbindable() -> SqlError {
    SqlError::Query("a named parameter's value cannot be represented for this database".into())
}

/// A column whose type a driver cannot map.
fn unmappable(column: &str, type_name: &str) -> SqlError {
    SqlError::Unmappable {
        column: column.to_owned(),
        type_name: type_name.to_owned(),
    }
}

/// A value of a column that failed to decode as its declared type.
fn undecodable(column: &str, error: impl std::fmt::Display) -> SqlError {
    SqlError::Query(format!("column {column:?} could not be read: {error}"))
}
