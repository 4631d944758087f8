//! Values read with `SELECT` (snapshots, checks) converted to core [`Value`]s, so that a
//! snapshot row and a binlog row of the same data are equal.
//!
//! The session must use `time_zone = '+00:00'` so TIMESTAMP columns come back in UTC.

use binlake_core::temporal::{Date, DateTime};
use binlake_core::{ColumnType, Value};
use mysql_async::Value as My;

use crate::binlog::charset::Charset;

/// Converts one `SELECT` result value of a column of type `ty`.
pub fn from_mysql(v: My, ty: &ColumnType) -> Result<Value, String> {
    let bad = |v: &My| format!("unexpected {v:?} for a {} column", ty.sql_name());
    let text = |b: Vec<u8>| String::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"));
    Ok(match (ty, v) {
        (_, My::NULL) => Value::Null,
        (
            ColumnType::Integer {
                unsigned: false, ..
            },
            My::Int(i),
        ) => Value::Int(i),
        (ColumnType::Integer { unsigned: true, .. }, My::UInt(u)) => Value::UInt(u),
        (ColumnType::Integer { unsigned: true, .. }, My::Int(i)) if i >= 0 => Value::UInt(i as u64),
        (ColumnType::Integer { unsigned, .. }, My::Bytes(b)) => {
            let s = text(b)?;
            if *unsigned {
                Value::UInt(
                    s.parse()
                        .map_err(|_| format!("`{s}` is not an unsigned integer"))?,
                )
            } else {
                Value::Int(s.parse().map_err(|_| format!("`{s}` is not an integer"))?)
            }
        }
        (ColumnType::Float, My::Float(f)) => Value::Float(f),
        (ColumnType::Float, My::Double(f)) => Value::Float(f as f32),
        (ColumnType::Float, My::Bytes(b)) => {
            Value::Float(text(b)?.parse().map_err(|e| format!("{e}"))?)
        }
        (ColumnType::Double, My::Double(f)) => Value::Double(f),
        (ColumnType::Double, My::Float(f)) => Value::Double(f64::from(f)),
        (ColumnType::Double, My::Bytes(b)) => {
            Value::Double(text(b)?.parse().map_err(|e| format!("{e}"))?)
        }
        (ColumnType::Decimal { .. }, My::Bytes(b)) => Value::Decimal(text(b)?),
        (ColumnType::Bit { .. }, My::Bytes(b)) => {
            Value::Bit(b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
        }
        (ColumnType::Bit { .. }, My::Int(i)) => Value::Bit(i as u64),
        (ColumnType::Bit { .. }, My::UInt(u)) => Value::Bit(u),
        (ColumnType::Year, My::Int(y)) => Value::Year(y as u16),
        (ColumnType::Year, My::UInt(y)) => Value::Year(y as u16),
        (ColumnType::Year, My::Bytes(b)) => {
            Value::Year(text(b)?.parse().map_err(|e| format!("{e}"))?)
        }
        (ColumnType::Date, My::Date(y, m, d, ..)) => Value::Date(Date::new(y, m, d)),
        (ColumnType::Date, My::Bytes(b)) => Value::Date(parse_date(&text(b)?)?),
        (ColumnType::DateTime { .. }, My::Date(y, mo, d, h, mi, s, us)) => {
            Value::DateTime(DateTime {
                date: Date::new(y, mo, d),
                hour: h,
                minute: mi,
                second: s,
                micros: us,
            })
        }
        (ColumnType::DateTime { .. }, My::Bytes(b)) => Value::DateTime(parse_datetime(&text(b)?)?),
        (ColumnType::Timestamp { .. }, My::Date(y, mo, d, h, mi, s, us)) => {
            let dt = DateTime {
                date: Date::new(y, mo, d),
                hour: h,
                minute: mi,
                second: s,
                micros: us,
            };
            Value::Timestamp(if dt.date.year == 0 {
                binlake_core::temporal::ZERO_TIMESTAMP
            } else {
                dt.to_epoch_micros()
                    .ok_or_else(|| format!("invalid timestamp {dt:?}"))?
            })
        }
        (ColumnType::Timestamp { .. }, My::Bytes(b)) => {
            let dt = parse_datetime(&text(b)?)?;
            Value::Timestamp(if dt.date.year == 0 {
                binlake_core::temporal::ZERO_TIMESTAMP
            } else {
                dt.to_epoch_micros().ok_or("invalid timestamp")?
            })
        }
        (ColumnType::Time { .. }, My::Time(neg, days, h, m, s, us)) => {
            let t =
                ((i64::from(days) * 24 + i64::from(h)) * 3600 + i64::from(m) * 60 + i64::from(s))
                    * 1_000_000
                    + i64::from(us);
            Value::Time(if neg { -t } else { t })
        }
        (ColumnType::Time { .. }, My::Bytes(b)) => Value::Time(parse_time(&text(b)?)?),
        (ColumnType::String { charset, .. }, My::Bytes(b)) => {
            // The connection's character set is utf8mb4, so the server already converted.
            let _ = Charset::from_name(charset);
            Value::String(text(b)?)
        }
        (ColumnType::Bytes { .. }, My::Bytes(b)) => Value::Bytes(b),
        (ColumnType::Enum { .. }, My::Bytes(b)) => Value::Enum(text(b)?),
        (ColumnType::Set { .. }, My::Bytes(b)) => Value::Set(text(b)?),
        (ColumnType::Json, My::Bytes(b)) => Value::Json(text(b)?),
        (ColumnType::Geometry { .. }, My::Bytes(b)) => Value::Geometry(b),
        (_, v) => return Err(bad(&v)),
    })
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not a valid {what}"))
}

fn parse_date(s: &str) -> Result<Date, String> {
    let mut p = s.splitn(3, '-');
    Ok(Date::new(
        num(p.next().unwrap_or_default(), "year")?,
        num(p.next().unwrap_or_default(), "month")?,
        num(p.next().unwrap_or_default(), "day")?,
    ))
}

fn parse_datetime(s: &str) -> Result<DateTime, String> {
    let (d, t) = s.split_once(' ').unwrap_or((s, "00:00:00"));
    let date = parse_date(d)?;
    let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
    let mut p = hms.splitn(3, ':');
    Ok(DateTime {
        date,
        hour: num(p.next().unwrap_or_default(), "hour")?,
        minute: num(p.next().unwrap_or_default(), "minute")?,
        second: num(p.next().unwrap_or_default(), "second")?,
        micros: fraction_micros(frac)?,
    })
}

fn fraction_micros(frac: &str) -> Result<u32, String> {
    if frac.is_empty() {
        return Ok(0);
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    num(&digits, "fraction")
}

fn parse_time(s: &str) -> Result<i64, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (hms, frac) = body.split_once('.').unwrap_or((body, ""));
    let mut p = hms.splitn(3, ':');
    let h: i64 = num(p.next().unwrap_or_default(), "hour")?;
    let m: i64 = num(p.next().unwrap_or_default(), "minute")?;
    let sec: i64 = num(p.next().unwrap_or_default(), "second")?;
    let t = (h * 3600 + m * 60 + sec) * 1_000_000 + i64::from(fraction_micros(frac)?);
    Ok(if neg { -t } else { t })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms() {
        assert_eq!(
            parse_time("-838:59:59.000000"),
            Ok(-(838 * 3600 + 59 * 60 + 59) * 1_000_000)
        );
        assert_eq!(parse_time("00:00:01.5"), Ok(1_500_000));
        assert_eq!(parse_date("0000-00-00"), Ok(Date::new(0, 0, 0)));
        assert_eq!(
            parse_datetime("2024-02-29 23:59:59.999").map(|d| d.micros),
            Ok(999_000)
        );
    }
}
