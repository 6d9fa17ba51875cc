//! Database values as JSON, the same for every driver (SPEC §4.1): exact decimals as
//! numbers only when no digit is lost, bytes as base64, dates `YYYY-MM-DD`, times
//! `HH:MM:SS`, timestamps RFC 3339 with the offset of the connector's time zone.

use std::str::FromStr;

use base64::Engine;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::{Number, Value};
use sqlx::types::chrono::{DateTime as ChronoDateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use sqlx::types::BigDecimal;

/// A floating-point value; NaN and infinities, which JSON has no number for, become
/// the strings `NaN`, `inf`, `-inf`.
pub fn float(value: f64) -> Value {
    Number::from_f64(value).map_or_else(|| Value::String(value.to_string()), Value::Number)
}

/// An exact decimal written as text (`-12.50`, `1e3`): a JSON number when it survives
/// the trip through the f64 every JSON reader uses (integers that fit 64 bits stay
/// integers), else the exact text, so no digit is silently rounded away. Text that is
/// not a decimal at all (`NaN`, `Infinity`) stays text.
pub fn decimal(text: &str) -> Value {
    let Ok(exact) = BigDecimal::from_str(text) else {
        return Value::String(text.to_owned());
    };
    if exact.is_integer() {
        let digits = exact.with_scale(0).to_string();
        if let Ok(n) = digits.parse::<i64>() {
            return Value::from(n);
        }
        if let Ok(n) = digits.parse::<u64>() {
            return Value::from(n);
        }
    }
    let Ok(approx) = text.parse::<f64>() else {
        return Value::String(text.to_owned());
    };
    let round_trips = approx.is_finite()
        && BigDecimal::from_str(&approx.to_string()).is_ok_and(|back| back == exact);
    match Number::from_f64(approx) {
        Some(number) if round_trips => Value::Number(number),
        _ => Value::String(exact.normalized().to_plain_string()),
    }
}

/// Bytes as standard base64.
pub fn bytes(value: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(value))
}

/// A date as `YYYY-MM-DD`.
pub fn date(value: NaiveDate) -> Value {
    Value::String(value.format("%Y-%m-%d").to_string())
}

/// A time of day as `HH:MM:SS`, with a fraction only when it has one.
pub fn time(value: NaiveTime) -> Value {
    Value::String(value.format("%H:%M:%S%.f").to_string())
}

/// A timestamp with a zone (an instant), written with the connector zone's offset.
pub fn instant(value: ChronoDateTime<Utc>, zone: &TimeZone) -> Value {
    let seconds = value.timestamp();
    let nanos = i32::try_from(value.timestamp_subsec_nanos()).unwrap_or(0);
    match Timestamp::new(seconds, nanos) {
        Ok(at) => zoned_text(at, zone),
        Err(_) => Value::String(value.to_rfc3339()),
    }
}

/// A timestamp without a zone, read as wall-clock time in the connector's zone (the
/// earlier instant when a clock change makes it ambiguous).
pub fn local(value: NaiveDateTime, zone: &TimeZone) -> Value {
    let civil = civil_datetime(value);
    match civil.and_then(|c| zone.to_ambiguous_zoned(c).compatible().ok()) {
        Some(zoned) => zoned_text(zoned.timestamp(), zone),
        None => Value::String(value.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
    }
}

/// Zone-less date-time text as SQLite stores it (`YYYY-MM-DD HH:MM:SS[.fff]`, with `T`
/// or a space, optionally with an offset or `Z`), as RFC 3339; other text stays as it is.
pub fn datetime_text(text: &str, zone: &TimeZone) -> Value {
    if let Ok(at) = Timestamp::from_str(text) {
        return zoned_text(at, zone);
    }
    match DateTime::from_str(text) {
        Ok(civil) => match zone.to_ambiguous_zoned(civil).compatible() {
            Ok(zoned) => zoned_text(zoned.timestamp(), zone),
            Err(_) => Value::String(text.to_owned()),
        },
        Err(_) => Value::String(text.to_owned()),
    }
}

/// RFC 3339 with the offset `zone` has at that instant.
fn zoned_text(at: Timestamp, zone: &TimeZone) -> Value {
    let offset = zone.to_offset(at);
    Value::String(at.display_with_offset(offset).to_string())
}

/// The civil date-time a naive chrono value holds (read through its UTC reading,
/// which for a zone-less value changes nothing).
fn civil_datetime(value: NaiveDateTime) -> Option<DateTime> {
    let utc = value.and_utc();
    let nanos = i32::try_from(utc.timestamp_subsec_nanos() % 1_000_000_000).ok()?;
    let at = Timestamp::new(utc.timestamp(), nanos).ok()?;
    Some(at.to_zoned(TimeZone::UTC).datetime())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decimals_are_numbers_only_when_exact() {
        let cases = [
            ("12.50", json!(12.5)),
            ("-0.1", json!(-0.1)),
            ("100", json!(100)),
            ("100.000", json!(100)),
            ("-9223372036854775808", json!(i64::MIN)),
            ("18446744073709551615", json!(u64::MAX)),
            (
                "123456789012345678901234567890",
                json!("123456789012345678901234567890"),
            ),
            (
                "0.1000000000000000055511151231257827",
                json!("0.1000000000000000055511151231257827"),
            ),
            ("1234567890.123456789", json!("1234567890.123456789")),
            ("99999999999999.99", json!("99999999999999.99")),
            ("12345.6789", json!(12345.6789)),
            ("1e3", json!(1000)),
            ("NaN", json!("NaN")),
        ];
        for (text, expected) in cases {
            assert_eq!(decimal(text), expected, "{text}");
        }
    }

    #[test]
    fn floats_without_json_numbers_become_text() {
        assert_eq!(float(1.5), json!(1.5));
        assert_eq!(float(f64::NAN), json!("NaN"));
        assert_eq!(float(f64::INFINITY), json!("inf"));
    }

    #[test]
    fn timestamps_carry_the_zone_offset() {
        let zone = TimeZone::get("Europe/Berlin").expect("zone");
        let naive = NaiveDate::from_ymd_opt(2026, 7, 1)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .expect("valid");
        assert_eq!(local(naive, &zone), json!("2026-07-01T12:00:00+02:00"));
        assert_eq!(
            local(naive, &TimeZone::UTC),
            json!("2026-07-01T12:00:00+00:00")
        );
        assert_eq!(
            instant(naive.and_utc(), &zone),
            json!("2026-07-01T14:00:00+02:00")
        );
        assert_eq!(
            datetime_text("2026-01-01 08:30:00", &zone),
            json!("2026-01-01T08:30:00+01:00")
        );
        assert_eq!(
            datetime_text("2026-01-01T08:30:00Z", &zone),
            json!("2026-01-01T09:30:00+01:00")
        );
        assert_eq!(datetime_text("yesterday", &zone), json!("yesterday"));
    }

    #[test]
    fn dates_times_and_bytes() {
        let d = NaiveDate::from_ymd_opt(2026, 2, 3).expect("valid");
        assert_eq!(date(d), json!("2026-02-03"));
        let t = NaiveTime::from_hms_opt(7, 8, 9).expect("valid");
        assert_eq!(time(t), json!("07:08:09"));
        assert_eq!(bytes(b"\x00\xffhi"), json!("AP9oaQ=="));
    }
}
