//! Calendar dates, datetimes and times as MySQL stores them, zero dates included.
//!
//! MySQL allows values no calendar library accepts: `'0000-00-00'`, `'2024-00-15'`,
//! `'2024-02-00'`, and TIME values from `-838:59:59.000000` to `838:59:59.000000`. These types
//! keep them exactly; conversion to days or microseconds since the epoch is explicit and
//! fails (returns `None`) for dates that are not on the calendar.

use std::fmt;

/// A DATE: year 0–9999, month 0–12, day 0–31, where zeros are MySQL's zero-date parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year, 0–9999.
    pub year: u16,
    /// Month, 1–12, or 0 in a zero date.
    pub month: u8,
    /// Day of month, 1–31, or 0 in a zero date.
    pub day: u8,
}

impl Date {
    /// A date from its parts (not checked against the calendar).
    pub const fn new(year: u16, month: u8, day: u8) -> Self {
        Date { year, month, day }
    }

    /// True when this is not a calendar date: `'0000-00-00'` or a date with a zero month
    /// or day, or a day past the end of its month.
    pub fn is_zero_or_invalid(&self) -> bool {
        self.month == 0
            || self.month > 12
            || self.day == 0
            || self.day > days_in_month(self.year, self.month)
    }

    /// Days since 1970-01-01 (proleptic Gregorian), or `None` for a zero or invalid date.
    pub fn to_epoch_days(&self) -> Option<i32> {
        if self.is_zero_or_invalid() {
            return None;
        }
        Some(days_from_civil(
            i64::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        ) as i32)
    }

    /// The date `days` after 1970-01-01.
    pub fn from_epoch_days(days: i32) -> Option<Self> {
        let (y, m, d) = civil_from_days(i64::from(days));
        let year = u16::try_from(y).ok().filter(|y| *y <= 9999)?;
        Some(Date::new(year, m as u8, d as u8))
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A DATETIME(fsp): a date and a wall-clock time without time zone, microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    /// The date part (may be a zero date).
    pub date: Date,
    /// Hour, 0–23.
    pub hour: u8,
    /// Minute, 0–59.
    pub minute: u8,
    /// Second, 0–59.
    pub second: u8,
    /// Microseconds, 0–999999.
    pub micros: u32,
}

impl DateTime {
    /// Microseconds since 1970-01-01 00:00:00, reading the wall-clock time as UTC (as
    /// Debezium does); `None` for a zero or invalid date.
    pub fn to_epoch_micros(&self) -> Option<i64> {
        let days = i64::from(self.date.to_epoch_days()?);
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        Some(secs * 1_000_000 + i64::from(self.micros))
    }

    /// The datetime `micros` after 1970-01-01 00:00:00.
    pub fn from_epoch_micros(micros: i64) -> Option<Self> {
        let secs = micros.div_euclid(1_000_000);
        let frac = micros.rem_euclid(1_000_000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let date = Date::from_epoch_days(i32::try_from(days).ok()?)?;
        Some(DateTime {
            date,
            hour: (sod / 3600) as u8,
            minute: ((sod / 60) % 60) as u8,
            second: (sod % 60) as u8,
            micros: frac,
        })
    }

    /// Formats as `YYYY-MM-DD hh:mm:ss[.ffffff]` with exactly `fsp` fractional digits.
    pub fn format(&self, fsp: u8, sep: char) -> String {
        let mut s = format!(
            "{}{sep}{:02}:{:02}:{:02}",
            self.date, self.hour, self.minute, self.second
        );
        push_fraction(&mut s, self.micros, fsp);
        s
    }
}

/// Appends `.` and the first `fsp` digits of `micros` (nothing when `fsp` is 0).
pub fn push_fraction(s: &mut String, micros: u32, fsp: u8) {
    if fsp == 0 {
        return;
    }
    let digits = format!("{micros:06}");
    s.push('.');
    s.push_str(&digits[..usize::from(fsp.min(6))]);
}

/// Formats a TIME value given in signed microseconds as `[-]hhh:mm:ss[.ffffff]`.
pub fn format_time(micros: i64, fsp: u8) -> String {
    let neg = micros < 0;
    let abs = micros.unsigned_abs();
    let secs = abs / 1_000_000;
    let mut s = format!(
        "{}{:02}:{:02}:{:02}",
        if neg { "-" } else { "" },
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    push_fraction(&mut s, (abs % 1_000_000) as u32, fsp);
    s
}

/// MySQL's zero TIMESTAMP (`'0000-00-00 00:00:00'`, allowed without `NO_ZERO_DATE`) as a
/// [`crate::Value::Timestamp`]: 0 µs. Unambiguous because TIMESTAMP's range starts at
/// `'1970-01-01 00:00:01'` UTC, so no real timestamp is 0 (or within its first second);
/// the binlog itself writes the zero timestamp as 0 seconds. Consumers treat it as they
/// treat zero dates: NULL in the lake, Debezium's rule in the codec.
pub const ZERO_TIMESTAMP: i64 = 0;

/// Formats microseconds since the epoch as ISO-8601 UTC, `YYYY-MM-DDThh:mm:ss[.f]Z`, with
/// exactly `fsp` fractional digits.
pub fn format_utc_timestamp(micros: i64, fsp: u8) -> Option<String> {
    let dt = DateTime::from_epoch_micros(micros)?;
    let mut s = dt.format(fsp, 'T');
    s.push('Z');
    Some(s)
}

/// Parses what [`format_utc_timestamp`] writes (any number of fractional digits up to 9,
/// and an offset of `Z` or `+00:00`) back to microseconds since the epoch.
pub fn parse_utc_timestamp(s: &str) -> Option<i64> {
    let body = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    parse_naive(body, 'T')
}

/// Parses an RFC 3339 date-time (`2026-11-26T10:00:00Z`, `2026-11-26 15:30:00.5+05:30`;
/// `T`/`t`/space between date and time, offset `Z`/`z` or `±HH:MM`) to microseconds since
/// the epoch (digits past the microsecond are cut).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let (body, offset_us) = if let Some(b) = s.strip_suffix(['Z', 'z']) {
        (b, 0)
    } else {
        let at = s.len().checked_sub(6)?;
        let (body, off) = (s.get(..at)?, s.get(at..)?);
        let sign = match off.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (h, m) = off[1..].split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        if h > 23 || m > 59 {
            return None;
        }
        (body, sign * (h * 3600 + m * 60) * 1_000_000)
    };
    let sep = body.get(10..11)?.chars().next()?;
    if !matches!(sep, 'T' | 't' | ' ') {
        return None;
    }
    parse_naive(body, sep)?.checked_sub(offset_us)
}

/// `YYYY-MM-DD<sep>HH:MM:SS[.fraction]` as UTC.
fn parse_naive(body: &str, sep: char) -> Option<i64> {
    let (date, time) = body.split_once(sep)?;
    let mut dp = date.splitn(3, '-');
    let year: u16 = dp.next()?.parse().ok()?;
    let month: u8 = dp.next()?.parse().ok()?;
    let day: u8 = dp.next()?.parse().ok()?;
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (time, ""),
    };
    let mut tp = hms.splitn(3, ':');
    let hour: u8 = tp.next()?.parse().ok()?;
    let minute: u8 = tp.next()?.parse().ok()?;
    let second: u8 = tp.next()?.parse().ok()?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut micros: u32 = 0;
    for (i, b) in frac.bytes().take(6).enumerate() {
        micros += u32::from(b - b'0') * 10u32.pow(5 - i as u32);
    }
    DateTime {
        date: Date::new(year, month, day),
        hour,
        minute,
        second,
        micros,
    }
    .to_epoch_micros()
}

/// Number of days in `month` of `year` (Gregorian), 0 for month 0 or > 12.
pub fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (public-domain algorithms).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_days_round_trip() {
        for days in [-719_528, -1, 0, 1, 19_000, 2_932_896] {
            let d = Date::from_epoch_days(days).expect("in range");
            assert_eq!(d.to_epoch_days(), Some(days), "{d}");
        }
        assert_eq!(Date::new(1970, 1, 1).to_epoch_days(), Some(0));
        assert_eq!(Date::new(2000, 3, 1).to_epoch_days(), Some(11_017));
        assert_eq!(Date::new(0, 1, 1).to_epoch_days(), Some(-719_528));
        assert_eq!(Date::new(0, 0, 0).to_epoch_days(), None);
        assert_eq!(Date::new(2023, 2, 29).to_epoch_days(), None);
    }

    #[test]
    fn time_and_timestamp_formatting() {
        assert_eq!(
            format_time(-(838 * 3600 + 59 * 60 + 59) * 1_000_000, 0),
            "-838:59:59"
        );
        assert_eq!(format_time(1_500_000, 3), "00:00:01.500");
        assert_eq!(
            format_utc_timestamp(1_500_000, 6).as_deref(),
            Some("1970-01-01T00:00:01.500000Z")
        );
        assert_eq!(
            parse_utc_timestamp("1970-01-01T00:00:01.5Z"),
            Some(1_500_000)
        );
        assert_eq!(
            parse_utc_timestamp("2038-01-19T03:14:07Z"),
            Some(2_147_483_647_000_000)
        );
    }

    #[test]
    fn rfc3339_with_offsets() {
        let utc = parse_rfc3339("2026-11-26T10:00:00Z").expect("a UTC time");
        assert_eq!(parse_rfc3339("2026-11-26T10:00:00z"), Some(utc));
        assert_eq!(parse_rfc3339("2026-11-26t10:00:00+00:00"), Some(utc));
        assert_eq!(parse_rfc3339("2026-11-26 15:30:00+05:30"), Some(utc));
        assert_eq!(parse_rfc3339("2026-11-26T02:00:00-08:00"), Some(utc));
        assert_eq!(
            parse_rfc3339("2026-11-26T15:30:00.25+05:30"),
            Some(utc + 250_000)
        );
        for bad in [
            "2026-11-26T10:00:00",
            "2026-11-26T10:00:00+5:30",
            "2026-11-26T10:00:00+24:00",
            "2026-11-26X10:00:00Z",
            "2026-11-26",
            "",
            "tomorrow",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
