//! Text in files: decoding bytes to UTF-8 by the connector's encoding (a byte order
//! mark wins over the setting), and typing the values of CSV cells and XML text.

use std::borrow::Cow;

use serde_json::Value;

use super::FileError;
use crate::connectors::sql::values;
use crate::model::TextEncoding;

/// `bytes` as text: a UTF-8 or UTF-16 byte order mark is honoured (and removed)
/// whatever `encoding` says; without one, `encoding` (default UTF-8) decides. UTF-8
/// must be valid: a file in another encoding fails with a hint rather than importing
/// replacement characters.
pub fn decode(bytes: &[u8], encoding: Option<TextEncoding>) -> Result<Cow<'_, str>, FileError> {
    if let Some((bom, length)) = encoding_rs::Encoding::for_bom(bytes) {
        return Ok(bom.decode_without_bom_handling(&bytes[length..]).0);
    }
    match encoding.unwrap_or(TextEncoding::Utf8) {
        TextEncoding::Utf8 => std::str::from_utf8(bytes).map(Cow::Borrowed).map_err(|e| {
            FileError::Text(format!(
                "the file is not valid UTF-8 (at byte {}); set settings.encoding to the file's encoding",
                e.valid_up_to()
            ))
        }),
        TextEncoding::Windows1252 => {
            Ok(encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes).0)
        }
        // Every byte is the code point of the same number; encoding_rs would read the
        // label as Windows-1252, which differs at 0x80-0x9f.
        TextEncoding::Iso8859_1 => Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())),
        // Without a byte order mark, little-endian: what Windows writes.
        TextEncoding::Utf16 => Ok(encoding_rs::UTF_16LE.decode_without_bom_handling(bytes).0),
    }
}

/// A text value typed as SPEC §4.2 says: empty → null, `true`/`false` (any case) →
/// boolean, a decimal number → number, anything else the text as it is. A number with
/// a leading zero (`007`, a postcode or an article number) stays text, so no digit is
/// lost.
pub fn typed(text: &str) -> Value {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Value::Null;
    }
    if trimmed.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if trimmed.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    number(trimmed).unwrap_or_else(|| Value::String(text.to_owned()))
}

/// `text` as a JSON number when it is one in plain decimal notation (an optional
/// minus, digits without a leading zero, an optional fraction and exponent) and no
/// digit is lost on the way, as for SQL decimals; else None, and it stays text.
fn number(text: &str) -> Option<Value> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let mantissa_end = digits.find(['e', 'E']).unwrap_or(digits.len());
    let (whole, fraction) = match digits[..mantissa_end].split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (&digits[..mantissa_end], None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = match digits.get(mantissa_end + 1..) {
        None => true,
        Some(exponent) => all_digits(exponent.strip_prefix(['+', '-']).unwrap_or(exponent)),
    };
    let plain = all_digits(whole)
        && (whole == "0" || !whole.starts_with('0'))
        && fraction.is_none_or(all_digits)
        && exponent_ok;
    if !plain {
        return None;
    }
    if let Ok(integer) = text.parse::<i64>() {
        return Some(Value::Number(integer.into()));
    }
    match values::decimal(text) {
        number @ Value::Number(_) => Some(number),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_typed_without_losing_digits() {
        let cases = [
            ("", json!(null)),
            ("  ", json!(null)),
            ("TRUE", json!(true)),
            ("false", json!(false)),
            ("42", json!(42)),
            ("-7", json!(-7)),
            ("0", json!(0)),
            ("3.25", json!(3.25)),
            ("-0.5", json!(-0.5)),
            ("1e3", json!(1000)),
            ("007", json!("007")),
            ("1.", json!("1.")),
            (".5", json!(".5")),
            ("inf", json!("inf")),
            ("NaN", json!("NaN")),
            ("12 apples", json!("12 apples")),
            ("18446744073709551615", json!(u64::MAX)),
            (
                "123456789012345678901234567890",
                json!("123456789012345678901234567890"),
            ),
            (
                "0.1000000000000000000001",
                json!("0.1000000000000000000001"),
            ),
            ("1,5", json!("1,5")),
        ];
        for (text, value) in cases {
            assert_eq!(typed(text), value, "{text:?}");
        }
    }

    #[test]
    fn a_byte_order_mark_wins_over_the_setting() {
        let utf16: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain("a;ü".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(
            decode(&utf16, Some(TextEncoding::Windows1252)).expect("text"),
            "a;ü"
        );
        assert_eq!(decode(b"\xef\xbb\xbfx", None).expect("text"), "x");
        assert_eq!(
            decode(b"M\xfcller \x80", Some(TextEncoding::Windows1252)).expect("text"),
            "Müller €"
        );
        assert_eq!(
            decode(b"M\xfcller", Some(TextEncoding::Iso8859_1)).expect("text"),
            "Müller"
        );
        assert!(decode(b"M\xfcller", None).is_err());
    }
}
