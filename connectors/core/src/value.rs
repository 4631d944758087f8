//! [`Value`]: one column value, lossless for every MySQL/MariaDB type.
//!
//! The representation follows what the server stores, not what a target system can hold:
//! converting to Debezium, Arrow or Delta types is the codec's and the lake's business, and
//! every lossy step there is explicit and documented.

use crate::temporal::{Date, DateTime};

/// One column value. Which variant a column holds is fixed by its
/// [`ColumnType`](crate::ColumnType):
///
/// | MySQL type | variant |
/// | --- | --- |
/// | TINYINT … BIGINT (signed) | [`Value::Int`] |
/// | TINYINT … BIGINT UNSIGNED | [`Value::UInt`] |
/// | FLOAT / DOUBLE | [`Value::Float`] / [`Value::Double`] |
/// | DECIMAL(p,s) | [`Value::Decimal`]: the exact decimal text with `s` fraction digits |
/// | BIT(n) | [`Value::Bit`]: the bits as an integer |
/// | DATE / DATETIME / TIMESTAMP / TIME / YEAR | [`Value::Date`] / [`Value::DateTime`] / [`Value::Timestamp`] / [`Value::Time`] / [`Value::Year`] |
/// | CHAR / VARCHAR / TEXT | [`Value::String`], converted from the column charset to UTF-8 |
/// | BINARY / VARBINARY / BLOB | [`Value::Bytes`] |
/// | ENUM / SET | [`Value::Enum`] / [`Value::Set`]: the member string(s), as `SELECT` shows them |
/// | JSON | [`Value::Json`]: JSON text |
/// | GEOMETRY and its subtypes | [`Value::Geometry`]: MySQL's internal form, 4-byte SRID (LE) + WKB |
///
/// Any column may also be [`Value::Absent`]: the server did not write it into the row
/// image (`binlog_row_image = MINIMAL` or `NOBLOB`), which is not the same as NULL.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A signed integer.
    Int(i64),
    /// An unsigned integer, up to BIGINT UNSIGNED's 18446744073709551615.
    UInt(u64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// DECIMAL: canonical decimal text, an optional `-`, at least one integer digit, and
    /// exactly the column's scale in fraction digits (e.g. `-12.50` for DECIMAL(5,2)).
    Decimal(String),
    /// BIT(n): the n bits, the first bit of the column the most significant.
    Bit(u64),
    /// DATE, zero dates included.
    Date(Date),
    /// TIME: signed microseconds, -838:59:59 to 838:59:59.
    Time(i64),
    /// DATETIME(fsp), zero dates included.
    DateTime(DateTime),
    /// TIMESTAMP(fsp): microseconds since the epoch, UTC. MySQL's zero timestamp is 0
    /// ([`crate::temporal::ZERO_TIMESTAMP`]), which no real TIMESTAMP can be.
    Timestamp(i64),
    /// YEAR: 1901–2155, or 0.
    Year(u16),
    /// Text (CHAR, VARCHAR, TEXT), in UTF-8.
    String(String),
    /// Binary strings (BINARY, VARBINARY, BLOB).
    Bytes(Vec<u8>),
    /// ENUM: the member string ("" for MySQL's invalid-value index 0).
    Enum(String),
    /// SET: the members, comma-separated in definition order, as `SELECT` shows them.
    Set(String),
    /// JSON, as JSON text.
    Json(String),
    /// GEOMETRY: MySQL's internal form, the SRID as 4 little-endian bytes, then WKB.
    Geometry(Vec<u8>),
    /// Not in the row image: the server left the column out (`binlog_row_image = MINIMAL`
    /// or `NOBLOB`), so its value is not known from this event. In an update's after-image
    /// it means "unchanged" (taken from the before-image when that has it); in an insert,
    /// the column's default when the schema does not tell it.
    Absent,
}

impl Value {
    /// The bytes this value holds in memory, itself and what it points to (an estimate
    /// for memory bounds, not an exact allocation size).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Value>()
            + match self {
                Value::Decimal(s)
                | Value::String(s)
                | Value::Enum(s)
                | Value::Set(s)
                | Value::Json(s) => s.capacity(),
                Value::Bytes(b) | Value::Geometry(b) => b.capacity(),
                _ => 0,
            }
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// True for [`Value::Absent`].
    pub fn is_absent(&self) -> bool {
        matches!(self, Value::Absent)
    }

    /// The variant's name, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int(_) => "int",
            Value::UInt(_) => "uint",
            Value::Float(_) => "float",
            Value::Double(_) => "double",
            Value::Decimal(_) => "decimal",
            Value::Bit(_) => "bit",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::DateTime(_) => "datetime",
            Value::Timestamp(_) => "timestamp",
            Value::Year(_) => "year",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Enum(_) => "enum",
            Value::Set(_) => "set",
            Value::Json(_) => "json",
            Value::Geometry(_) => "geometry",
            Value::Absent => "absent",
        }
    }
}
