//! MySQL types to Arrow (and Delta) types, and rows of [`Value`]s to Arrow arrays.
//!
//! | MySQL | Arrow | Delta |
//! | --- | --- | --- |
//! | TINYINT | Int8 | byte |
//! | TINYINT UNSIGNED, SMALLINT | Int16 | short |
//! | SMALLINT UNSIGNED, MEDIUMINT (±), INT | Int32 | integer |
//! | INT UNSIGNED, BIGINT | Int64 | long |
//! | BIGINT UNSIGNED | Decimal128(20, 0) | decimal(20,0) |
//! | FLOAT / DOUBLE | Float32 / Float64 | float / double |
//! | DECIMAL(p,s), p ≤ 38 | Decimal128(p, s) | decimal(p,s) |
//! | DECIMAL(p,s), p > 38 | Utf8, the exact decimal text | string |
//! | BIT(1) | Boolean | boolean |
//! | BIT(2..64) | Decimal128(20, 0), the bits as an unsigned number | decimal(20,0) |
//! | DATE | Date32 | date |
//! | TIME | Int64, signed microseconds | long |
//! | DATETIME | Timestamp(µs), no time zone | timestamp_ntz |
//! | TIMESTAMP | Timestamp(µs, UTC) | timestamp |
//! | YEAR | Int16 | short |
//! | CHAR/VARCHAR/TEXT, ENUM, SET, JSON | Utf8 | string |
//! | BINARY/VARBINARY/BLOB, GEOMETRY (SRID + WKB) | Binary | binary |
//!
//! Every value is kept exactly, with two documented exceptions forced by the targets:
//! Delta has no decimal wider than 38 digits (so DECIMAL(39..65) is its exact text) and no
//! TIME type (so TIME is microseconds). Zero and invalid dates (`0000-00-00`,
//! `2024-02-30` with `ALLOW_INVALID_DATES`) and the zero TIMESTAMP have no Arrow form and
//! become NULL, the same rule as Debezium's for nullable columns. Every column is nullable in Arrow: a dropped column stays, NULL
//! from then on. Each field's metadata holds the MySQL type (`binlake.mysql_type`): `json`
//! for MySQL's JSON and for MariaDB's (a LONGTEXT checked by `json_valid`, whose values are
//! the same text either way), whose fields also carry the Delta column comment `json`
//! (metadata key `comment`, what Spark's `DESCRIBE` shows). A table written before a
//! column's type name changed without changing its Arrow type (`longtext` becoming `json`,
//! `varchar(10)` becoming `varchar(20)`) gets the new metadata in a metadata-only commit
//! ([`relabeled`]).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    Float32Builder, Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use binlake_core::{ColumnType, TableSchema, Value};

/// Delta's widest decimal.
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// The Arrow type of a MySQL column type.
pub fn arrow_type(ty: &ColumnType) -> DataType {
    match ty {
        ColumnType::Integer { bits, unsigned } => match (bits, unsigned) {
            (8, false) => DataType::Int8,
            (8, true) | (16, false) => DataType::Int16,
            (16, true) | (24, _) | (32, false) => DataType::Int32,
            (32, true) | (64, false) => DataType::Int64,
            _ => DataType::Decimal128(20, 0),
        },
        ColumnType::Float => DataType::Float32,
        ColumnType::Double => DataType::Float64,
        ColumnType::Decimal { precision, scale } if *precision <= MAX_DECIMAL_PRECISION => {
            DataType::Decimal128(*precision, *scale as i8)
        }
        ColumnType::Decimal { .. } => DataType::Utf8,
        ColumnType::Bit { width: 1 } => DataType::Boolean,
        ColumnType::Bit { .. } => DataType::Decimal128(20, 0),
        ColumnType::Date => DataType::Date32,
        ColumnType::Time { .. } => DataType::Int64,
        ColumnType::DateTime { .. } => DataType::Timestamp(TimeUnit::Microsecond, None),
        ColumnType::Timestamp { .. } => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        ColumnType::Year => DataType::Int16,
        ColumnType::String { .. }
        | ColumnType::Enum { .. }
        | ColumnType::Set { .. }
        | ColumnType::Json => DataType::Utf8,
        ColumnType::Bytes { .. } | ColumnType::Geometry { .. } => DataType::Binary,
    }
}

/// Field-metadata key of a column's MySQL type.
pub const MYSQL_TYPE_KEY: &str = "binlake.mysql_type";
/// Field-metadata key that Delta readers show as the column's comment.
pub const COMMENT_KEY: &str = "comment";
/// The comment of JSON columns.
pub const JSON_COMMENT: &str = "json";

/// The Arrow field of a column (always nullable), with its MySQL type in the metadata
/// (and the comment `json` on JSON columns).
pub fn arrow_field(name: &str, ty: &ColumnType) -> Field {
    Field::new(name, arrow_type(ty), true).with_metadata(relabeled(&HashMap::new(), ty))
}

/// `metadata` of a field with binlake's entries made those of `ty`: the MySQL type, and
/// the comment `json` on JSON columns (removed when a column stops being JSON; a comment
/// binlake did not write is left alone). Other entries are kept.
pub fn relabeled(metadata: &HashMap<String, String>, ty: &ColumnType) -> HashMap<String, String> {
    let mut m = metadata.clone();
    m.insert(MYSQL_TYPE_KEY.to_string(), ty.sql_name());
    if ty.is_json() {
        m.entry(COMMENT_KEY.to_string())
            .or_insert_with(|| JSON_COMMENT.to_string());
    } else if m.get(COMMENT_KEY).map(String::as_str) == Some(JSON_COMMENT) {
        m.remove(COMMENT_KEY);
    }
    m
}

/// The replica's schema: the table's columns, in table order.
pub fn replica_schema(table: &TableSchema) -> Schema {
    Schema::new(
        table
            .columns
            .iter()
            .map(|c| arrow_field(&c.name, &c.ty))
            .collect::<Vec<_>>(),
    )
}

/// A builder for one column's values.
#[derive(Debug)]
pub enum ColumnBuilder {
    /// Int8.
    I8(Int8Builder),
    /// Int16.
    I16(Int16Builder),
    /// Int32.
    I32(Int32Builder),
    /// Int64.
    I64(Int64Builder),
    /// Float32.
    F32(Float32Builder),
    /// Float64.
    F64(Float64Builder),
    /// Decimal128 with its scale.
    Dec(Decimal128Builder, u8),
    /// Boolean.
    Bool(BooleanBuilder),
    /// Date32.
    Date(Date32Builder),
    /// Timestamp(µs), with or without UTC.
    Ts(TimestampMicrosecondBuilder),
    /// Utf8.
    Str(StringBuilder),
    /// Binary.
    Bin(BinaryBuilder),
}

impl ColumnBuilder {
    /// A builder for values of `ty`.
    pub fn new(ty: &ColumnType, capacity: usize) -> Self {
        Self::for_arrow(&arrow_type(ty), capacity)
    }

    /// A builder for an Arrow type of the mapping (anything else builds Utf8).
    pub fn for_arrow(ty: &DataType, capacity: usize) -> Self {
        match ty.clone() {
            DataType::Int8 => ColumnBuilder::I8(Int8Builder::with_capacity(capacity)),
            DataType::Int16 => ColumnBuilder::I16(Int16Builder::with_capacity(capacity)),
            DataType::Int32 => ColumnBuilder::I32(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => ColumnBuilder::I64(Int64Builder::with_capacity(capacity)),
            DataType::Float32 => ColumnBuilder::F32(Float32Builder::with_capacity(capacity)),
            DataType::Float64 => ColumnBuilder::F64(Float64Builder::with_capacity(capacity)),
            DataType::Decimal128(p, s) => ColumnBuilder::Dec(
                Decimal128Builder::with_capacity(capacity)
                    .with_data_type(DataType::Decimal128(p, s)),
                s as u8,
            ),
            DataType::Boolean => ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            DataType::Date32 => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            DataType::Timestamp(_, tz) => ColumnBuilder::Ts(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone_opt(tz),
            ),
            DataType::Binary => ColumnBuilder::Bin(BinaryBuilder::with_capacity(capacity, 0)),
            _ => ColumnBuilder::Str(StringBuilder::with_capacity(capacity, 0)),
        }
    }

    /// Appends a NULL.
    pub fn append_null(&mut self) {
        match self {
            ColumnBuilder::I8(b) => b.append_null(),
            ColumnBuilder::I16(b) => b.append_null(),
            ColumnBuilder::I32(b) => b.append_null(),
            ColumnBuilder::I64(b) => b.append_null(),
            ColumnBuilder::F32(b) => b.append_null(),
            ColumnBuilder::F64(b) => b.append_null(),
            ColumnBuilder::Dec(b, _) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Ts(b) => b.append_null(),
            ColumnBuilder::Str(b) => b.append_null(),
            ColumnBuilder::Bin(b) => b.append_null(),
        }
    }

    /// Appends one value; a value of the wrong kind for the column is an error (the
    /// reason, without the column name).
    pub fn append(&mut self, v: &Value) -> Result<(), String> {
        fn int<T: TryFrom<i64>>(i: i64) -> Result<T, String> {
            T::try_from(i).map_err(|_| format!("{i} out of range"))
        }
        match (self, v) {
            // An absent value is written as null: the change log marks it in `__absent`, and
            // the replica merges it from the row it replaces before writing.
            (b, Value::Null | Value::Absent) => b.append_null(),
            (ColumnBuilder::I8(b), Value::Int(i)) => b.append_value(int(*i)?),
            (ColumnBuilder::I16(b), Value::Int(i)) => b.append_value(int(*i)?),
            (ColumnBuilder::I16(b), Value::UInt(u)) => b.append_value(int(*u as i64)?),
            (ColumnBuilder::I16(b), Value::Year(y)) => b.append_value(*y as i16),
            (ColumnBuilder::I32(b), Value::Int(i)) => b.append_value(int(*i)?),
            (ColumnBuilder::I32(b), Value::UInt(u)) => b.append_value(int(*u as i64)?),
            (ColumnBuilder::I64(b), Value::Int(i)) => b.append_value(*i),
            (ColumnBuilder::I64(b), Value::UInt(u)) => {
                b.append_value(i64::try_from(*u).map_err(|_| format!("{u} out of range"))?)
            }
            (ColumnBuilder::I64(b), Value::Time(t)) => b.append_value(*t),
            (ColumnBuilder::F32(b), Value::Float(f)) => b.append_value(*f),
            (ColumnBuilder::F64(b), Value::Double(f)) => b.append_value(*f),
            (ColumnBuilder::Dec(b, _), Value::UInt(u)) => b.append_value(*u as i128),
            (ColumnBuilder::Dec(b, _), Value::Bit(u)) => b.append_value(*u as i128),
            (ColumnBuilder::Dec(b, scale), Value::Decimal(text)) => {
                b.append_value(parse_decimal(text, *scale)?)
            }
            (ColumnBuilder::Bool(b), Value::Bit(u)) => b.append_value(*u != 0),
            (ColumnBuilder::Date(b), Value::Date(d)) => match d.to_epoch_days() {
                Some(days) => b.append_value(days),
                None => b.append_null(),
            },
            (ColumnBuilder::Ts(b), Value::DateTime(dt)) => match dt.to_epoch_micros() {
                Some(us) => b.append_value(us),
                None => b.append_null(),
            },
            // 0 µs is MySQL's zero TIMESTAMP, not the epoch (out of TIMESTAMP's range).
            (ColumnBuilder::Ts(b), Value::Timestamp(binlake_core::temporal::ZERO_TIMESTAMP)) => {
                b.append_null()
            }
            (ColumnBuilder::Ts(b), Value::Timestamp(us)) => b.append_value(*us),
            (
                ColumnBuilder::Str(b),
                Value::String(s)
                | Value::Enum(s)
                | Value::Set(s)
                | Value::Json(s)
                | Value::Decimal(s),
            ) => b.append_value(s),
            (ColumnBuilder::Bin(b), Value::Bytes(x) | Value::Geometry(x)) => b.append_value(x),
            (b, v) => return Err(format!("a {} value cannot go into {}", v.kind(), b.kind())),
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        match self {
            ColumnBuilder::I8(_) => "an Int8 column",
            ColumnBuilder::I16(_) => "an Int16 column",
            ColumnBuilder::I32(_) => "an Int32 column",
            ColumnBuilder::I64(_) => "an Int64 column",
            ColumnBuilder::F32(_) => "a Float32 column",
            ColumnBuilder::F64(_) => "a Float64 column",
            ColumnBuilder::Dec(..) => "a Decimal128 column",
            ColumnBuilder::Bool(_) => "a Boolean column",
            ColumnBuilder::Date(_) => "a Date32 column",
            ColumnBuilder::Ts(_) => "a Timestamp column",
            ColumnBuilder::Str(_) => "a Utf8 column",
            ColumnBuilder::Bin(_) => "a Binary column",
        }
    }

    /// The array built so far (the builder is reset).
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::I8(b) => Arc::new(b.finish()),
            ColumnBuilder::I16(b) => Arc::new(b.finish()),
            ColumnBuilder::I32(b) => Arc::new(b.finish()),
            ColumnBuilder::I64(b) => Arc::new(b.finish()),
            ColumnBuilder::F32(b) => Arc::new(b.finish()),
            ColumnBuilder::F64(b) => Arc::new(b.finish()),
            ColumnBuilder::Dec(b, _) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Ts(b) => Arc::new(b.finish()),
            ColumnBuilder::Str(b) => Arc::new(b.finish()),
            ColumnBuilder::Bin(b) => Arc::new(b.finish()),
        }
    }

    /// Rows appended so far.
    pub fn len(&self) -> usize {
        match self {
            ColumnBuilder::I8(b) => b.len(),
            ColumnBuilder::I16(b) => b.len(),
            ColumnBuilder::I32(b) => b.len(),
            ColumnBuilder::I64(b) => b.len(),
            ColumnBuilder::F32(b) => b.len(),
            ColumnBuilder::F64(b) => b.len(),
            ColumnBuilder::Dec(b, _) => b.len(),
            ColumnBuilder::Bool(b) => b.len(),
            ColumnBuilder::Date(b) => b.len(),
            ColumnBuilder::Ts(b) => b.len(),
            ColumnBuilder::Str(b) => b.len(),
            ColumnBuilder::Bin(b) => b.len(),
        }
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Canonical decimal text (`-12.50`) to its unscaled integer at `scale`.
pub fn parse_decimal(text: &str, scale: u8) -> Result<i128, String> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.len() > scale as usize
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        || int.is_empty()
    {
        return Err(format!("{text:?} is not a decimal with scale {scale}"));
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((b - b'0') as i128))
            .ok_or_else(|| format!("{text} does not fit 38 digits"))?;
    }
    for _ in frac.len()..scale as usize {
        v = v
            .checked_mul(10)
            .ok_or_else(|| format!("{text} does not fit 38 digits"))?;
    }
    Ok(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use binlake_core::temporal::{Date, DateTime};

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal("-12.50", 2), Ok(-1250));
        assert_eq!(parse_decimal("0.001", 5), Ok(100));
        assert_eq!(
            parse_decimal("99999999999999999999999999999999999999", 0),
            Ok(99999999999999999999999999999999999999)
        );
        assert!(parse_decimal("1.234", 2).is_err());
        assert!(parse_decimal("1e5", 0).is_err());
    }

    #[test]
    fn values_land_in_their_arrow_types() {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::{Decimal128Type, Int64Type, TimestampMicrosecondType};
        let mut b = ColumnBuilder::new(
            &ColumnType::Integer {
                bits: 64,
                unsigned: true,
            },
            2,
        );
        b.append(&Value::UInt(u64::MAX)).unwrap();
        b.append(&Value::Null).unwrap();
        let a = b.finish();
        assert_eq!(
            a.as_primitive::<Decimal128Type>().value(0),
            u64::MAX as i128
        );
        assert!(a.is_null(1));

        let mut b = ColumnBuilder::new(&ColumnType::Time { fsp: 6 }, 1);
        b.append(&Value::Time(-3_020_399_000_000)).unwrap();
        assert_eq!(
            b.finish().as_primitive::<Int64Type>().value(0),
            -3_020_399_000_000
        );

        let mut b = ColumnBuilder::new(&ColumnType::DateTime { fsp: 0 }, 2);
        let zero = DateTime {
            date: Date {
                year: 0,
                month: 0,
                day: 0,
            },
            hour: 0,
            minute: 0,
            second: 0,
            micros: 0,
        };
        b.append(&Value::DateTime(zero)).unwrap();
        assert!(b.finish().is_null(0), "a zero date has no Arrow form: NULL");

        let mut b = ColumnBuilder::new(&ColumnType::Timestamp { fsp: 0 }, 2);
        b.append(&Value::Timestamp(binlake_core::temporal::ZERO_TIMESTAMP))
            .unwrap();
        b.append(&Value::Timestamp(1_000_000)).unwrap();
        let a = b.finish();
        assert!(a.is_null(0), "the zero timestamp has no Arrow form: NULL");
        assert_eq!(
            a.as_primitive::<TimestampMicrosecondType>().value(1),
            1_000_000
        );

        let mut b = ColumnBuilder::new(
            &ColumnType::Integer {
                bits: 8,
                unsigned: false,
            },
            1,
        );
        assert!(b.append(&Value::String("x".into())).is_err());
        assert!(b.append(&Value::Int(1000)).is_err());
    }
}
