//! The wire format of `occurred_at`: an RFC 3339 string in human-readable formats (JSON), whole
//! microseconds since the Unix epoch in compact ones (bincode). Sub-microsecond digits are truncated on
//! decode, so every event time Sluice stores is exact in microseconds, in both encodings.
//!
//! JSON accepts exactly RFC 3339 section 5.6 `date-time`: `T` or `t` between date and time, `Z`, `z`
//! or a numeric offset from `-23:59` to `+23:59` (`-00:00` is UTC), any number of fractional digits
//! (beyond six they are truncated). A leap second is accepted where RFC 3339 allows one, at 23:59:60
//! UTC (after applying the offset), and is stored as 23:59:59.999999 UTC of the same day, so that it
//! stays in its UTC day and hour; `:60` at any other minute is refused. A space instead of `T`, a
//! missing offset and out-of-range fields are refused.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

/// Serializes a UTC timestamp: RFC 3339 for JSON, `i64` microseconds for bincode. The JSON text is
/// what chrono's `to_rfc3339_opts(SecondsFormat::AutoSi, true)` writes (as many fraction digits as the
/// instant needs: none, 3, 6 or 9; then `Z`), built on the stack for the years 0–9999 instead of in a
/// new `String` per event; other years go through chrono.
pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        let mut buf = [0u8; RFC3339_MAX_LEN];
        match write_rfc3339(ts, &mut buf) {
            Some(len) => s.serialize_str(
                std::str::from_utf8(&buf[..len]).expect("write_rfc3339 writes ASCII only"),
            ),
            None => s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }
    } else {
        s.serialize_i64(ts.timestamp_micros())
    }
}

/// `YYYY-MM-DDTHH:MM:SS.fffffffffZ`, the longest text [`write_rfc3339`] writes.
const RFC3339_MAX_LEN: usize = 30;

/// Writes `ts` as chrono's `to_rfc3339_opts(SecondsFormat::AutoSi, true)` would into `buf` and returns
/// its length, or `None` for a year outside 0–9999 (chrono then writes a sign and more digits). A leap
/// second (chrono's nanosecond ≥ 10⁹) is written as second 60, as chrono does.
fn write_rfc3339(ts: &DateTime<Utc>, buf: &mut [u8; RFC3339_MAX_LEN]) -> Option<usize> {
    /// Writes `value` as `out.len()` decimal digits, zero-padded.
    fn digits(out: &mut [u8], mut value: u32) {
        for d in out.iter_mut().rev() {
            *d = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    let at = ts.naive_utc();
    let year = at.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (mut second, mut nano) = (at.second(), at.nanosecond());
    if nano >= 1_000_000_000 {
        second += 1;
        nano -= 1_000_000_000;
    }
    buf[..20].copy_from_slice(b"0000-00-00T00:00:00.");
    digits(&mut buf[0..4], year as u32);
    digits(&mut buf[5..7], at.month());
    digits(&mut buf[8..10], at.day());
    digits(&mut buf[11..13], at.hour());
    digits(&mut buf[14..16], at.minute());
    digits(&mut buf[17..19], second);
    let (width, fraction) = if nano == 0 {
        (0, 0)
    } else if nano % 1_000_000 == 0 {
        (3, nano / 1_000_000)
    } else if nano % 1_000 == 0 {
        (6, nano / 1_000)
    } else {
        (9, nano)
    };
    // Past the seconds: `.` and the fraction when there is one, then `Z`.
    let len = if width == 0 { 19 } else { 20 + width };
    digits(&mut buf[20..20 + width], fraction);
    buf[len] = b'Z';
    Some(len + 1)
}

/// Deserializes what [`serialize`] writes; JSON accepts any RFC 3339 offset and converts it to UTC.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    if d.is_human_readable() {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_rfc3339(&text).map_err(D::Error::custom)
    } else {
        let micros = i64::deserialize(d)?;
        DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| D::Error::custom(format_args!("occurred_at out of range: {micros} µs")))
    }
}

/// Parses an RFC 3339 `date-time` (see the module documentation) into a UTC instant in whole
/// microseconds; the error names the field and says why.
pub fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    // The value is echoed in the detail, cut to 64 characters (a record may carry kilobytes here), and
    // only on the error paths: this runs once per event.
    let shown = || text.chars().take(64).collect::<String>();
    // chrono also takes a space as the separator (RFC 3339's prose allows it by agreement); the
    // grammar, and the JSON Schema `date-time` format, do not.
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't')) {
        return Err(format!(
            "occurred_at is not RFC 3339 (date and time must be separated by T): {:?}",
            shown()
        ));
    }
    let parsed = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("occurred_at is not RFC 3339 ({e}): {:?}", shown()))?;
    let utc = parsed.with_timezone(&Utc);
    // chrono keeps a parsed second 60 as a nanosecond count of one second or more.
    if utc.nanosecond() >= 1_000_000_000 {
        if (utc.hour(), utc.minute()) != (23, 59) {
            return Err(format!(
                "occurred_at has second 60 outside 23:59:60 UTC, the only place RFC 3339 allows a leap second: {:?}",
                shown()
            ));
        }
        return Ok(utc
            .with_nanosecond(999_999_000)
            .expect("999,999,000 ns is a valid nanosecond"));
    }
    Ok(truncate_to_micros(utc))
}

/// Drops sub-microsecond digits so that JSON and bincode carry the same instant.
pub fn truncate_to_micros(ts: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(ts.timestamp_micros()).unwrap_or(ts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeDelta};

    fn ours(ts: &DateTime<Utc>) -> Option<String> {
        let mut buf = [0u8; RFC3339_MAX_LEN];
        write_rfc3339(ts, &mut buf).map(|len| String::from_utf8(buf[..len].to_vec()).unwrap())
    }

    fn chrono_text(ts: &DateTime<Utc>) -> String {
        ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    #[test]
    fn the_stack_text_is_chronos_text() {
        let at = |y, mo, d, h, mi, s, nano| {
            NaiveDate::from_ymd_opt(y, mo, d)
                .unwrap()
                .and_hms_nano_opt(h, mi, s, nano)
                .unwrap()
                .and_utc()
        };
        let mut cases = vec![
            at(2026, 12, 5, 10, 30, 0, 0),
            at(2026, 12, 5, 10, 30, 0, 120_000_000),
            at(2026, 12, 5, 10, 30, 0, 123_456_000),
            at(2026, 12, 5, 10, 30, 0, 123_456_789),
            at(2026, 12, 5, 10, 30, 0, 1_000),
            at(2026, 12, 5, 10, 30, 0, 1),
            at(2016, 12, 31, 23, 59, 59, 1_500_000_000), // a leap second
            at(2016, 12, 31, 23, 59, 59, 1_000_000_000),
            at(0, 1, 1, 0, 0, 0, 0),
            at(9999, 12, 31, 23, 59, 59, 999_999_999),
            at(1970, 1, 1, 0, 0, 0, 0),
        ];
        // A spread of instants with every fraction shape: a fixed linear congruential walk over
        // 1900–2100, so the run is the same each time.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let base = at(1900, 1, 1, 0, 0, 0, 0);
        for i in 0..20_000u64 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let secs = (x >> 11) % (200 * 366 * 86_400);
            let nano = match i % 4 {
                0 => 0,
                1 => (x % 1_000) as u32 * 1_000_000,
                2 => (x % 1_000_000) as u32 * 1_000,
                _ => (x % 1_000_000_000) as u32,
            };
            cases
                .push(base + TimeDelta::seconds(secs as i64) + TimeDelta::nanoseconds(nano as i64));
        }
        for ts in &cases {
            assert_eq!(
                ours(ts).as_deref(),
                Some(chrono_text(ts).as_str()),
                "{ts:?}"
            );
        }
    }

    #[test]
    fn years_beyond_four_digits_are_left_to_chrono() {
        for y in [-1, 10_000] {
            let ts = NaiveDate::from_ymd_opt(y, 6, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc();
            assert_eq!(ours(&ts), None);
            let json = serde_json::to_string(&Wrapped(ts)).unwrap();
            assert_eq!(json, format!("\"{}\"", chrono_text(&ts)));
        }
    }

    #[derive(serde::Serialize)]
    struct Wrapped(#[serde(with = "crate::time")] DateTime<Utc>);
}
