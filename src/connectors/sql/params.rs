//! The named parameters a query may use (`@today @now @yesterday @startOfWeek
//! @startOfMonth`, SPEC §4.1): found outside string literals, quoted identifiers and
//! comments, replaced by the driver's placeholder, and bound as typed values so a date
//! is never spliced into SQL text.

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::model::SqlDriver;

/// The parameter names, as written after `@` (matched without regard to case).
const NAMES: [&str; 5] = ["today", "now", "yesterday", "startOfWeek", "startOfMonth"];

/// A value bound for one named parameter, in the connector's time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// A calendar day (`@today`, `@yesterday`, `@startOfWeek`, `@startOfMonth`).
    Date(Date),
    /// The wall-clock time now (`@now`), with its instant for drivers that bind one.
    Now(DateTime, Timestamp),
}

/// A query with its named parameters replaced, and the values to bind in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The SQL text the driver runs.
    pub sql: String,
    /// One value per placeholder, in placeholder order.
    pub params: Vec<Param>,
}

/// Rewrites `query` for `driver`: each named parameter outside literals and comments
/// becomes the driver's next placeholder (`$1`, `?`, `@P1`), its value taken at `now`
/// in `zone`. Other `@` words (SQL Server variables, MySQL user variables) stay.
pub fn prepare(query: &str, driver: SqlDriver, now: Timestamp, zone: &TimeZone) -> Prepared {
    let mut sql = String::with_capacity(query.len());
    let mut params = Vec::new();
    let mut rest = query;
    while let Some(c) = rest.chars().next() {
        let skipped = skip_len(rest, driver);
        if skipped > 0 {
            sql.push_str(&rest[..skipped]);
            rest = &rest[skipped..];
            continue;
        }
        if c == '@' && !sql.ends_with('@') {
            let word_len = rest[1..]
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len() - 1);
            let word = &rest[1..1 + word_len];
            if let Some(param) = value_of(word, now, zone) {
                params.push(param);
                sql.push_str(&placeholder(driver, params.len()));
                rest = &rest[1 + word_len..];
                continue;
            }
        }
        sql.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Prepared { sql, params }
}

/// The value of parameter `word` (without `@`), or None when it is not one of ours.
fn value_of(word: &str, now: Timestamp, zone: &TimeZone) -> Option<Param> {
    let name = NAMES.iter().find(|n| n.eq_ignore_ascii_case(word))?;
    let local = now.to_zoned(zone.clone()).datetime();
    let today = local.date();
    let date = match *name {
        "now" => return Some(Param::Now(local, now)),
        "today" => today,
        "yesterday" => today.yesterday().ok()?,
        "startOfWeek" => {
            let back = i64::from(today.weekday().since(Weekday::Monday));
            today.checked_sub(back.days()).ok()?
        }
        _ => today.first_of_month(),
    };
    Some(Param::Date(date))
}

/// The `n`th (1-based) placeholder in the driver's syntax.
fn placeholder(driver: SqlDriver, n: usize) -> String {
    match driver {
        SqlDriver::Postgres => format!("${n}"),
        SqlDriver::MySql | SqlDriver::Sqlite => "?".to_owned(),
        SqlDriver::SqlServer => format!("@P{n}"),
    }
}

/// Bytes at the start of `text` that are a literal, a quoted identifier or a comment
/// (copied unchanged), or 0.
fn skip_len(text: &str, driver: SqlDriver) -> usize {
    let bytes = text.as_bytes();
    let backslash_escapes = driver == SqlDriver::MySql;
    match bytes[0] {
        b'\'' => quoted_len(bytes, b'\'', backslash_escapes),
        b'"' => quoted_len(bytes, b'"', backslash_escapes),
        b'`' if driver == SqlDriver::MySql => quoted_len(bytes, b'`', false),
        b'[' if driver == SqlDriver::SqlServer => quoted_len(bytes, b']', false),
        b'-' if bytes.get(1) == Some(&b'-') => line_len(bytes),
        b'#' if driver == SqlDriver::MySql => line_len(bytes),
        b'/' if bytes.get(1) == Some(&b'*') => block_comment_len(bytes),
        b'$' if driver == SqlDriver::Postgres => dollar_quoted_len(text),
        _ => 0,
    }
}

/// Length of a literal opened by `quote`, where a doubled quote (and, for MySQL, a
/// backslash) escapes; an unterminated one runs to the end.
fn quoted_len(bytes: &[u8], quote: u8, backslash_escapes: bool) -> usize {
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash_escapes => i += 2,
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Length of a `--` (or MySQL `#`) comment up to and including its newline.
fn line_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| i + 1)
}

/// Length of a `/* */` comment; nested ones count (PostgreSQL and SQL Server nest them).
fn block_comment_len(bytes: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut i = 0;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Length of a PostgreSQL dollar-quoted string (`$$…$$`, `$tag$…$tag$`), or 0 when
/// the `$` opens none (a positional parameter such as `$1`).
fn dollar_quoted_len(text: &str) -> usize {
    let Some(end) = text[1..].find('$') else {
        return 0;
    };
    let tag = &text[..end + 2];
    let is_tag = tag[1..tag.len() - 1]
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_')
        && !tag[1..].starts_with(|c: char| c.is_ascii_digit());
    if !is_tag {
        return 0;
    }
    text[tag.len()..]
        .find(tag)
        .map_or(text.len(), |i| tag.len() + i + tag.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").expect("zone")
    }

    #[test]
    fn placeholders_follow_each_driver() {
        let now = at("2026-03-04T10:00:00Z");
        let query = "select * from t where d >= @startOfMonth and d < @today";
        let cases = [
            (
                SqlDriver::Postgres,
                "select * from t where d >= $1 and d < $2",
            ),
            (SqlDriver::MySql, "select * from t where d >= ? and d < ?"),
            (SqlDriver::Sqlite, "select * from t where d >= ? and d < ?"),
            (
                SqlDriver::SqlServer,
                "select * from t where d >= @P1 and d < @P2",
            ),
        ];
        for (driver, sql) in cases {
            let prepared = prepare(query, driver, now, &TimeZone::UTC);
            assert_eq!(prepared.sql, sql, "{driver:?}");
            assert_eq!(
                prepared.params,
                vec![
                    Param::Date(jiff::civil::date(2026, 3, 1)),
                    Param::Date(jiff::civil::date(2026, 3, 4))
                ]
            );
        }
    }

    #[test]
    fn values_are_taken_in_the_connector_zone() {
        // 23:30 UTC on Sunday 8 March is already Monday 9 March in Berlin.
        let now = at("2026-03-08T23:30:00Z");
        let query = "@today @yesterday @startOfWeek @startOfMonth @NOW";
        let prepared = prepare(query, SqlDriver::Postgres, now, &berlin());
        assert_eq!(prepared.sql, "$1 $2 $3 $4 $5");
        let d = jiff::civil::date;
        assert_eq!(
            prepared.params,
            vec![
                Param::Date(d(2026, 3, 9)),
                Param::Date(d(2026, 3, 8)),
                Param::Date(d(2026, 3, 9)),
                Param::Date(d(2026, 3, 1)),
                Param::Now(d(2026, 3, 9).at(0, 30, 0, 0), now),
            ]
        );
        let utc = prepare("@startOfWeek", SqlDriver::MySql, now, &TimeZone::UTC);
        assert_eq!(utc.params, vec![Param::Date(d(2026, 3, 2))]);
    }

    #[test]
    fn literals_identifiers_comments_and_other_variables_stay() {
        let now = at("2026-03-04T10:00:00Z");
        let cases = [
            (SqlDriver::Postgres, "select '@today', \"@today\" -- @today\n, /* @now /* nested */ @now */ $x$ @today $x$, $$@now$$, @today", "select '@today', \"@today\" -- @today\n, /* @now /* nested */ @now */ $x$ @today $x$, $$@now$$, $1"),
            (SqlDriver::MySql, "select 'it''s \\' @today', `@today` # @today\n, @@session.time_zone, @todays, @today", "select 'it''s \\' @today', `@today` # @today\n, @@session.time_zone, @todays, ?"),
            (SqlDriver::SqlServer, "declare @x int; select [@today], @x, @@ROWCOUNT, @Today", "declare @x int; select [@today], @x, @@ROWCOUNT, @P1"),
            (SqlDriver::Sqlite, "select 'unterminated @today", "select 'unterminated @today"),
            (SqlDriver::Postgres, "select $1, a[1] from t where x = @now", "select $1, a[1] from t where x = $1"),
        ];
        for (driver, query, sql) in cases {
            assert_eq!(
                prepare(query, driver, now, &TimeZone::UTC).sql,
                sql,
                "{query}"
            );
        }
    }

    #[test]
    fn multibyte_text_passes_through() {
        let now = at("2026-03-04T10:00:00Z");
        let prepared = prepare(
            "select 'Zürich' as ort, @today",
            SqlDriver::Sqlite,
            now,
            &TimeZone::UTC,
        );
        assert_eq!(prepared.sql, "select 'Zürich' as ort, ?");
    }
}
