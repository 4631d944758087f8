//! The Debezium-compatible JSON codec: message keys and change-event envelopes.
//!
//! binlake's messages are what Debezium's MySQL (or MariaDB) connector writes with the
//! Kafka Connect `JsonConverter`, so consumers built for Debezium read them unchanged.
//! [`TableCodec`] encodes and decodes one table's messages; it is pure (no I/O) and
//! precomputes everything that does not change per row (escaped field names, the Connect
//! schemas), so encoding a row is appending bytes to a buffer.
//!
//! # Message forms
//!
//! - Plain (`schemas = false`, the default): the key is `{"id":1}`, the value is the
//!   envelope `{"before":…,"after":…,"source":{…},"op":"c","ts_ms":…,…}`.
//! - With schemas (`schemas = true`, Connect's `schemas.enable=true`):
//!   `{"schema":{…Connect schema…},"payload":<the plain form>}`.
//!
//! # Type mapping
//!
//! Debezium's defaults for MySQL (`decimal.handling.mode=precise`,
//! `time.precision.mode=adaptive_time_microseconds`, `binary.handling.mode=bytes`):
//!
//! | MySQL | Connect type (semantic name) | JSON value |
//! | --- | --- | --- |
//! | TINYINT, SMALLINT, TINYINT UNSIGNED | `int16` | number |
//! | MEDIUMINT, INT, SMALLINT/MEDIUMINT UNSIGNED | `int32` | number |
//! | BIGINT, INT UNSIGNED | `int64` | number |
//! | BIGINT UNSIGNED | `precise`: `bytes` (`org.apache.kafka.connect.data.Decimal`, scale 0); `long`: `int64` | base64 / number |
//! | FLOAT, DOUBLE | `float`, `double` | number |
//! | DECIMAL(p,s) | `precise`: `bytes` (`org.apache.kafka.connect.data.Decimal`); `string`: `string`; `double`: `double` | base64 of the big-endian two's-complement unscaled value / `"1.50"` / number |
//! | BIT(1) | `boolean` | `true`/`false` |
//! | BIT(n>1) | `bytes` (`io.debezium.data.Bits`, `length`=n) | base64, little-endian |
//! | DATE | `int32` (`io.debezium.time.Date`) | days since epoch |
//! | TIME(fsp) | `int64` (`io.debezium.time.MicroTime`) | microseconds, may be negative or > 24 h |
//! | DATETIME(0–3) | `int64` (`io.debezium.time.Timestamp`) | milliseconds since epoch, wall clock read as UTC |
//! | DATETIME(4–6) | `int64` (`io.debezium.time.MicroTimestamp`) | microseconds since epoch |
//! | TIMESTAMP(fsp) | `string` (`io.debezium.time.ZonedTimestamp`) | `2024-05-01T12:00:00.250Z`, `fsp` fraction digits |
//! | YEAR | `int32` (`io.debezium.time.Year`) | number |
//! | CHAR, VARCHAR, TEXT | `string` | string |
//! | BINARY, VARBINARY, BLOB | `bytes` | base64 |
//! | ENUM | `string` (`io.debezium.data.Enum`, `allowed`) | the member |
//! | SET | `string` (`io.debezium.data.EnumSet`, `allowed`) | `a,c` |
//! | JSON | `string` (`io.debezium.data.Json`) | JSON text |
//! | GEOMETRY, POINT, … | `struct` (`io.debezium.data.geometry.Geometry`: `wkb` bytes, `srid` int32) | `{"wkb":…,"srid":…}` |
//!
//! # What is not lossless, and why
//!
//! Everything above round-trips exactly (property-tested), with two exceptions that are
//! Debezium's documented behaviour and that consumers rely on:
//! - zero and invalid dates (`'0000-00-00'`, `'2024-02-30'`) in DATE and DATETIME columns,
//!   and the zero TIMESTAMP (`'0000-00-00 00:00:00'`), become `null` when the column is
//!   nullable, and the epoch when it is `NOT NULL` (`0`, or `"1970-01-01T00:00:00Z"` for a
//!   TIMESTAMP), as Debezium's MySQL connector documents for zero values ("Temporal types":
//!   null when the column allows null, else the epoch); decoding gives back `NULL`, or the
//!   zero timestamp for a `NOT NULL` TIMESTAMP (the epoch is not a TIMESTAMP value);
//! - BIGINT UNSIGNED in `long` mode wraps values above 2^63-1 to negative numbers (the
//!   default here is `precise`, which is exact; Debezium's default is `long`).
//!
//! `decimal_handling = "double"` is lossy by its nature and only there for consumers that
//! need it.

use std::fmt;
use std::io::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use num_bigint::{BigInt, Sign};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::error::{Error, Result};
use crate::event::{ChangeEvent, Op, SourceInfo};
use crate::schema::{Column, ColumnDefault, ColumnType, Flavor, TableSchema};
use crate::temporal;
use crate::value::Value;

/// How DECIMAL columns are represented (Debezium's `decimal.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecimalHandling {
    /// Connect `Decimal`: exact, base64 bytes in JSON.
    #[default]
    Precise,
    /// The decimal text, exact: `"-12.50"`.
    String,
    /// A JSON double; loses digits beyond ~15 significant ones.
    Double,
}

/// How BIGINT UNSIGNED columns are represented (Debezium's
/// `bigint.unsigned.handling.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BigintUnsignedHandling {
    /// Connect `Decimal` with scale 0: exact.
    #[default]
    Precise,
    /// `int64`: values above 2^63-1 wrap to negative numbers.
    Long,
}

/// The `[encoding]` section of the config: how messages are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodingConfig {
    /// DECIMAL representation: `precise` (Connect Decimal, default), `string` or `double`.
    #[serde(default)]
    pub decimal_handling: DecimalHandling,
    /// BIGINT UNSIGNED representation: `precise` (default, exact) or `long` (Debezium's
    /// default; wraps values above 2^63-1).
    #[serde(default)]
    pub bigint_unsigned_handling: BigintUnsignedHandling,
    /// Write Kafka Connect's `{"schema":…,"payload":…}` form (`schemas.enable=true`).
    #[serde(default)]
    pub schemas: bool,
}

impl EncodingConfig {
    /// The codec options for a source called `server_name`.
    pub fn options(&self, server_name: &str, flavor: Flavor) -> DebeziumOptions {
        DebeziumOptions {
            decimal_handling: self.decimal_handling,
            bigint_unsigned_handling: self.bigint_unsigned_handling,
            schemas: self.schemas,
            ..DebeziumOptions::new(server_name, flavor)
        }
    }
}

/// Settings of the codec, shared by every table of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebeziumOptions {
    /// The logical name of the source (Debezium's `topic.prefix`): `source.name`, and the
    /// prefix of topic and Connect schema names.
    pub server_name: String,
    /// MySQL or MariaDB: `source.connector` and the source schema's name.
    pub flavor: Flavor,
    /// DECIMAL representation.
    pub decimal_handling: DecimalHandling,
    /// BIGINT UNSIGNED representation.
    pub bigint_unsigned_handling: BigintUnsignedHandling,
    /// Whether to write `{"schema":…,"payload":…}` (Connect JSON with schemas).
    pub schemas: bool,
    /// `source.version`.
    pub version: String,
}

impl DebeziumOptions {
    /// Options with Debezium's defaults (precise decimals) and binlake's lossless
    /// BIGINT UNSIGNED, without schemas.
    pub fn new(server_name: impl Into<String>, flavor: Flavor) -> Self {
        DebeziumOptions {
            server_name: server_name.into(),
            flavor,
            decimal_handling: DecimalHandling::default(),
            bigint_unsigned_handling: BigintUnsignedHandling::default(),
            schemas: false,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// A decoded envelope: the event and the envelope's `ts_ms`/`ts_us` (when the message was
/// produced).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The change event.
    pub event: ChangeEvent,
    /// When the producer processed the event, microseconds since the epoch.
    pub ts_us: i64,
}

/// How one column is written, decided once per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repr {
    Int,
    UIntAsInt,
    UIntPrecise,
    Float,
    Double,
    DecimalBytes { scale: u8 },
    DecimalString,
    DecimalDouble { scale: u8 },
    Bool,
    Bits { bytes: usize },
    Date,
    MicroTime,
    MilliTimestamp,
    MicroTimestamp,
    Zoned { fsp: u8 },
    Year,
    String,
    Bytes,
    Geometry,
}

/// Encoder and decoder of one table's keys and envelopes.
#[derive(Debug, Clone)]
pub struct TableCodec {
    table: Arc<TableSchema>,
    opts: Arc<DebeziumOptions>,
    reprs: Vec<Repr>,
    /// `"name":` for every column, JSON-escaped.
    field_prefixes: Vec<Vec<u8>>,
    /// The Connect schemas, serialized, used when `opts.schemas`.
    key_schema: String,
    value_schema: String,
    /// The envelope's schema for events with absent columns (see "Absent columns").
    partial_value_schema: String,
    /// `,"db":"…","table":"…"` pre-escaped, and the static start of `source`.
    source_head: Vec<u8>,
    source_tail: Vec<u8>,
    qualified: String,
}

impl TableCodec {
    /// A codec for `table`.
    pub fn new(table: Arc<TableSchema>, opts: Arc<DebeziumOptions>) -> Self {
        let reprs = table
            .columns
            .iter()
            .map(|c| repr_of(&c.ty, &opts))
            .collect::<Vec<_>>();
        let field_prefixes = table
            .columns
            .iter()
            .map(|c| {
                let mut b = json_string(&c.name);
                b.push(b':');
                b
            })
            .collect();
        let names = SchemaNames::new(&opts.server_name, &table);
        let key_schema = key_connect_schema(&table, &reprs, &names).to_string();
        let value_schema =
            envelope_connect_schema(&table, &reprs, &names, &opts, false).to_string();
        let partial_value_schema =
            envelope_connect_schema(&table, &reprs, &names, &opts, true).to_string();
        let mut source_head = Vec::new();
        source_head.extend_from_slice(b"\"source\":{\"version\":");
        source_head.extend(json_string(&opts.version));
        source_head.extend_from_slice(b",\"connector\":");
        source_head.extend(json_string(opts.flavor.connector_name()));
        source_head.extend_from_slice(b",\"name\":");
        source_head.extend(json_string(&opts.server_name));
        let mut source_tail = Vec::new();
        source_tail.extend_from_slice(b",\"db\":");
        source_tail.extend(json_string(&table.database));
        source_tail.extend_from_slice(b",\"sequence\":null,\"table\":");
        source_tail.extend(json_string(&table.table));
        let qualified = table.qualified_name();
        TableCodec {
            table,
            opts,
            reprs,
            field_prefixes,
            key_schema,
            value_schema,
            partial_value_schema,
            source_head,
            source_tail,
            qualified,
        }
    }

    /// The table this codec is for.
    pub fn table(&self) -> &Arc<TableSchema> {
        &self.table
    }

    /// The Connect schema of the key, as JSON text.
    pub fn key_schema(&self) -> &str {
        &self.key_schema
    }

    /// The Connect schema of the envelope, as JSON text.
    pub fn value_schema(&self) -> &str {
        &self.value_schema
    }

    /// Appends the message key of `event` to `buf`: the primary-key columns as a JSON object.
    /// Returns `false` (and appends nothing) when the event has no key: a TRUNCATE, or a
    /// table without a primary key (Debezium then writes a null key).
    pub fn encode_key(&self, event: &ChangeEvent, buf: &mut Vec<u8>) -> Result<bool> {
        if self.table.primary_key.is_empty() || event.op == Op::Truncate {
            return Ok(false);
        }
        let Some(row) = event.key_row() else {
            return Err(self.invalid_event("the event has neither a before nor an after row"));
        };
        self.check_row(row)?;
        if self.opts.schemas {
            buf.extend_from_slice(b"{\"schema\":");
            buf.extend_from_slice(self.key_schema.as_bytes());
            buf.extend_from_slice(b",\"payload\":");
        }
        buf.push(b'{');
        for (n, &i) in self.table.primary_key.iter().enumerate() {
            if n > 0 {
                buf.push(b',');
            }
            if row[i].is_absent() {
                return Err(self.invalid_event(&format!(
                    "primary-key column {} is not in the row image",
                    self.table.columns[i].name
                )));
            }
            buf.extend_from_slice(&self.field_prefixes[i]);
            self.write_value(i, &row[i], buf)?;
        }
        buf.push(b'}');
        if self.opts.schemas {
            buf.push(b'}');
        }
        Ok(true)
    }

    /// Appends the envelope of `event` to `buf`; `ts_us` is the processing time (the
    /// envelope's `ts_ms`/`ts_us`/`ts_ns`).
    pub fn encode_value(&self, event: &ChangeEvent, ts_us: i64, buf: &mut Vec<u8>) -> Result<()> {
        let absent =
            |r: &Option<Vec<Value>>| r.as_ref().is_some_and(|r| r.iter().any(Value::is_absent));
        let partial = absent(&event.before) || absent(&event.after);
        if self.opts.schemas {
            buf.extend_from_slice(b"{\"schema\":");
            buf.extend_from_slice(match partial {
                false => self.value_schema.as_bytes(),
                true => self.partial_value_schema.as_bytes(),
            });
            buf.extend_from_slice(b",\"payload\":");
        }
        buf.extend_from_slice(b"{\"before\":");
        self.write_row(event.before.as_ref(), buf)?;
        buf.extend_from_slice(b",\"after\":");
        self.write_row(event.after.as_ref(), buf)?;
        buf.push(b',');
        self.write_source(&event.source, buf);
        buf.extend_from_slice(b",\"op\":\"");
        buf.extend_from_slice(event.op.code().as_bytes());
        buf.push(b'"');
        write_ts(buf, ts_us);
        buf.extend_from_slice(b",\"transaction\":");
        match &event.transaction {
            None => buf.extend_from_slice(b"null"),
            Some(t) => {
                buf.extend_from_slice(b"{\"id\":");
                buf.extend(json_string(&t.id));
                let _ = write!(
                    buf,
                    ",\"total_order\":{},\"data_collection_order\":{}}}",
                    t.total_order, t.data_collection_order
                );
            }
        }
        if partial {
            buf.extend_from_slice(b",\"absent\":{\"before\":");
            self.write_absent(event.before.as_ref(), buf);
            buf.extend_from_slice(b",\"after\":");
            self.write_absent(event.after.as_ref(), buf);
            buf.push(b'}');
        }
        buf.push(b'}');
        if self.opts.schemas {
            buf.push(b'}');
        }
        Ok(())
    }

    fn write_source(&self, s: &SourceInfo, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.source_head);
        write_ts(buf, s.ts_us);
        buf.extend_from_slice(b",\"snapshot\":\"");
        buf.extend_from_slice(s.snapshot.as_str().as_bytes());
        buf.push(b'"');
        buf.extend_from_slice(&self.source_tail);
        let _ = write!(buf, ",\"server_id\":{},\"gtid\":", s.server_id);
        match &s.gtid {
            Some(g) => buf.extend(json_string(&g.to_string())),
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b",\"file\":");
        buf.extend(json_string(&s.position.file));
        let _ = write!(
            buf,
            ",\"pos\":{},\"row\":{},\"thread\":",
            s.position.pos, s.position.row
        );
        match s.thread {
            Some(t) => {
                let _ = write!(buf, "{t}");
            }
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b",\"query\":");
        match &s.query {
            Some(q) => buf.extend(json_string(q)),
            None => buf.extend_from_slice(b"null"),
        }
        buf.push(b'}');
    }

    /// Writes a row image; absent columns are left out (and named in `absent`).
    fn write_row(&self, row: Option<&Vec<Value>>, buf: &mut Vec<u8>) -> Result<()> {
        let Some(row) = row else {
            buf.extend_from_slice(b"null");
            return Ok(());
        };
        self.check_row(row)?;
        buf.push(b'{');
        let mut first = true;
        for (i, v) in row.iter().enumerate() {
            if v.is_absent() {
                continue;
            }
            if !first {
                buf.push(b',');
            }
            first = false;
            buf.extend_from_slice(&self.field_prefixes[i]);
            self.write_value(i, v, buf)?;
        }
        buf.push(b'}');
        Ok(())
    }

    /// The names of a row image's absent columns as a JSON array (`null` without an image).
    fn write_absent(&self, row: Option<&Vec<Value>>, buf: &mut Vec<u8>) {
        let Some(row) = row else {
            buf.extend_from_slice(b"null");
            return;
        };
        buf.push(b'[');
        let mut first = true;
        for (i, _) in row.iter().enumerate().filter(|(_, v)| v.is_absent()) {
            if !first {
                buf.push(b',');
            }
            first = false;
            buf.extend(json_string(&self.table.columns[i].name));
        }
        buf.push(b']');
    }

    fn check_row(&self, row: &[Value]) -> Result<()> {
        if row.len() == self.table.columns.len() {
            Ok(())
        } else {
            Err(self.invalid_event(&format!(
                "row has {} values but the table has {} columns",
                row.len(),
                self.table.columns.len()
            )))
        }
    }

    fn invalid_event(&self, reason: &str) -> Error {
        Error::InvalidValue {
            table: self.qualified.clone(),
            column: "*".into(),
            reason: reason.into(),
        }
    }

    fn mismatch(&self, i: usize, v: &Value) -> Error {
        let col = &self.table.columns[i];
        Error::InvalidValue {
            table: self.qualified.clone(),
            column: col.name.clone(),
            reason: format!(
                "a {} value does not belong in a {} column",
                v.kind(),
                col.ty.sql_name()
            ),
        }
    }

    fn write_value(&self, i: usize, v: &Value, buf: &mut Vec<u8>) -> Result<()> {
        let col = &self.table.columns[i];
        if v.is_null() {
            if !col.nullable {
                return Err(Error::InvalidValue {
                    table: self.qualified.clone(),
                    column: col.name.clone(),
                    reason: "NULL in a NOT NULL column".into(),
                });
            }
            buf.extend_from_slice(b"null");
            return Ok(());
        }
        let zero_date = |buf: &mut Vec<u8>| {
            // Debezium: zero/invalid dates are null when allowed, else the epoch.
            buf.extend_from_slice(if col.nullable { b"null" } else { b"0" });
        };
        match (self.reprs[i], v) {
            (Repr::Int, Value::Int(n)) => {
                let _ = write!(buf, "{n}");
            }
            (Repr::UIntAsInt, Value::UInt(n)) => {
                let _ = write!(buf, "{}", *n as i64);
            }
            (Repr::UIntPrecise, Value::UInt(n)) => {
                write_base64(buf, &BigInt::from(*n).to_signed_bytes_be());
            }
            (Repr::Float, Value::Float(f)) if f.is_finite() => {
                let _ = write!(buf, "{f:?}");
            }
            (Repr::Double, Value::Double(f)) if f.is_finite() => {
                let _ = write!(buf, "{f:?}");
            }
            (Repr::DecimalBytes { scale }, Value::Decimal(text)) => {
                let unscaled =
                    parse_decimal(text, scale).ok_or_else(|| self.bad_decimal(i, text))?;
                write_base64(buf, &unscaled.to_signed_bytes_be());
            }
            (Repr::DecimalString, Value::Decimal(text)) => {
                buf.extend(json_string(text));
            }
            (Repr::DecimalDouble { .. }, Value::Decimal(text)) => {
                let f: f64 = text.parse().map_err(|_| self.bad_decimal(i, text))?;
                let _ = write!(buf, "{f:?}");
            }
            (Repr::Bool, Value::Bit(b)) => {
                buf.extend_from_slice(if *b != 0 { b"true" } else { b"false" });
            }
            (Repr::Bits { bytes }, Value::Bit(b)) => {
                write_base64(buf, &b.to_le_bytes()[..bytes]);
            }
            (Repr::Date, Value::Date(d)) => match d.to_epoch_days() {
                Some(days) => {
                    let _ = write!(buf, "{days}");
                }
                None => zero_date(buf),
            },
            (Repr::MicroTime, Value::Time(us)) => {
                let _ = write!(buf, "{us}");
            }
            (Repr::MilliTimestamp, Value::DateTime(dt)) => match dt.to_epoch_micros() {
                Some(us) => {
                    let _ = write!(buf, "{}", us.div_euclid(1000));
                }
                None => zero_date(buf),
            },
            (Repr::MicroTimestamp, Value::DateTime(dt)) => match dt.to_epoch_micros() {
                Some(us) => {
                    let _ = write!(buf, "{us}");
                }
                None => zero_date(buf),
            },
            (Repr::Zoned { .. }, Value::Timestamp(temporal::ZERO_TIMESTAMP)) if col.nullable => {
                buf.extend_from_slice(b"null");
            }
            (Repr::Zoned { fsp }, Value::Timestamp(us)) => {
                // A NOT NULL zero timestamp is 0 µs: the epoch, as Debezium writes it.
                let s = temporal::format_utc_timestamp(*us, fsp).ok_or_else(|| {
                    Error::InvalidValue {
                        table: self.qualified.clone(),
                        column: col.name.clone(),
                        reason: format!("timestamp {us} µs is out of range"),
                    }
                })?;
                buf.extend(json_string(&s));
            }
            (Repr::Year, Value::Year(y)) => {
                let _ = write!(buf, "{y}");
            }
            (Repr::String, Value::String(s) | Value::Enum(s) | Value::Set(s) | Value::Json(s)) => {
                buf.extend(json_string(s));
            }
            (Repr::Bytes, Value::Bytes(b)) => write_base64(buf, b),
            (Repr::Geometry, Value::Geometry(g)) => {
                if g.len() < 4 {
                    return Err(Error::InvalidValue {
                        table: self.qualified.clone(),
                        column: col.name.clone(),
                        reason: "geometry value shorter than its 4-byte SRID".into(),
                    });
                }
                let srid = u32::from_le_bytes([g[0], g[1], g[2], g[3]]);
                buf.extend_from_slice(b"{\"wkb\":");
                write_base64(buf, &g[4..]);
                let _ = write!(buf, ",\"srid\":{}}}", srid as i32);
            }
            _ => return Err(self.mismatch(i, v)),
        }
        Ok(())
    }

    fn bad_decimal(&self, i: usize, text: &str) -> Error {
        Error::InvalidValue {
            table: self.qualified.clone(),
            column: self.table.columns[i].name.clone(),
            reason: format!(
                "`{text}` is not a decimal of type {}",
                self.table.columns[i].ty.sql_name()
            ),
        }
    }

    fn decode_err(&self, reason: impl fmt::Display) -> Error {
        Error::Decode {
            table: self.qualified.clone(),
            reason: reason.to_string(),
        }
    }
}

fn write_ts(buf: &mut Vec<u8>, ts_us: i64) {
    let _ = write!(
        buf,
        ",\"ts_ms\":{},\"ts_us\":{},\"ts_ns\":{}",
        ts_us.div_euclid(1000),
        ts_us,
        ts_us.saturating_mul(1000)
    );
}

fn json_string(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, s);
    out
}

fn write_base64(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.push(b'"');
    let start = buf.len();
    buf.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let n = BASE64
        .encode_slice(bytes, &mut buf[start..])
        .unwrap_or_default();
    buf.truncate(start + n);
    buf.push(b'"');
}

/// Parses canonical decimal text with exactly `scale` fraction digits into its unscaled
/// integer (`-1.50`, scale 2 → -150).
pub fn parse_decimal(text: &str, scale: u8) -> Option<BigInt> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty()
        || frac.len() != usize::from(scale)
        || body.contains('.') != (scale > 0)
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let n = BigInt::parse_bytes(digits.as_bytes(), 10)?;
    Some(if neg { -n } else { n })
}

/// Formats an unscaled integer as canonical decimal text with `scale` fraction digits.
pub fn format_decimal(unscaled: &BigInt, scale: u8) -> String {
    let digits = unscaled.magnitude().to_string();
    let scale = usize::from(scale);
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - scale);
    let sign = if unscaled.sign() == Sign::Minus {
        "-"
    } else {
        ""
    };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

fn repr_of(ty: &ColumnType, opts: &DebeziumOptions) -> Repr {
    match ty {
        ColumnType::Integer {
            bits: 64,
            unsigned: true,
        } => match opts.bigint_unsigned_handling {
            BigintUnsignedHandling::Precise => Repr::UIntPrecise,
            BigintUnsignedHandling::Long => Repr::UIntAsInt,
        },
        ColumnType::Integer { unsigned: true, .. } => Repr::UIntAsInt,
        ColumnType::Integer { .. } => Repr::Int,
        ColumnType::Float => Repr::Float,
        ColumnType::Double => Repr::Double,
        ColumnType::Decimal { scale, .. } => match opts.decimal_handling {
            DecimalHandling::Precise => Repr::DecimalBytes { scale: *scale },
            DecimalHandling::String => Repr::DecimalString,
            DecimalHandling::Double => Repr::DecimalDouble { scale: *scale },
        },
        ColumnType::Bit { width: 1 } => Repr::Bool,
        ColumnType::Bit { width } => Repr::Bits {
            bytes: usize::from(*width).div_ceil(8),
        },
        ColumnType::Date => Repr::Date,
        ColumnType::Time { .. } => Repr::MicroTime,
        ColumnType::DateTime { fsp } if *fsp <= 3 => Repr::MilliTimestamp,
        ColumnType::DateTime { .. } => Repr::MicroTimestamp,
        ColumnType::Timestamp { fsp } => Repr::Zoned { fsp: *fsp },
        ColumnType::Year => Repr::Year,
        ColumnType::String { .. }
        | ColumnType::Enum { .. }
        | ColumnType::Set { .. }
        | ColumnType::Json => Repr::String,
        ColumnType::Bytes { .. } => Repr::Bytes,
        ColumnType::Geometry { .. } => Repr::Geometry,
    }
}

/// Connect schema names of a table: `<server>.<db>.<table>.{Key,Value,Envelope}`.
struct SchemaNames {
    base: String,
}

impl SchemaNames {
    fn new(server: &str, t: &TableSchema) -> Self {
        SchemaNames {
            base: format!("{server}.{}.{}", t.database, t.table),
        }
    }
    fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.base)
    }
}

fn field_schema(col: &Column, repr: Repr) -> Json {
    let mut s = Map::new();
    let (ty, name, params): (&str, Option<&str>, Option<Json>) = match (repr, &col.ty) {
        (Repr::Int, ColumnType::Integer { bits, .. }) => (
            match bits {
                8 | 16 => "int16",
                24 | 32 => "int32",
                _ => "int64",
            },
            None,
            None,
        ),
        (Repr::UIntAsInt, ColumnType::Integer { bits, .. }) => (
            match bits {
                8 => "int16",
                16 | 24 => "int32",
                _ => "int64",
            },
            None,
            None,
        ),
        (Repr::UIntPrecise, _) => (
            "bytes",
            Some("org.apache.kafka.connect.data.Decimal"),
            Some(json!({"scale": "0", "connect.decimal.precision": "20"})),
        ),
        (Repr::Float, _) => ("float", None, None),
        (Repr::Double, _) => ("double", None, None),
        (Repr::DecimalBytes { .. }, ColumnType::Decimal { precision, scale }) => (
            "bytes",
            Some("org.apache.kafka.connect.data.Decimal"),
            Some(
                json!({"scale": scale.to_string(), "connect.decimal.precision": precision.to_string()}),
            ),
        ),
        (Repr::DecimalString, _) => ("string", None, None),
        (Repr::DecimalDouble { .. }, _) => ("double", None, None),
        (Repr::Bool, _) => ("boolean", None, None),
        (Repr::Bits { .. }, ColumnType::Bit { width }) => (
            "bytes",
            Some("io.debezium.data.Bits"),
            Some(json!({"length": width.to_string()})),
        ),
        (Repr::Date, _) => ("int32", Some("io.debezium.time.Date"), None),
        (Repr::MicroTime, _) => ("int64", Some("io.debezium.time.MicroTime"), None),
        (Repr::MilliTimestamp, _) => ("int64", Some("io.debezium.time.Timestamp"), None),
        (Repr::MicroTimestamp, _) => ("int64", Some("io.debezium.time.MicroTimestamp"), None),
        (Repr::Zoned { .. }, _) => ("string", Some("io.debezium.time.ZonedTimestamp"), None),
        (Repr::Year, _) => ("int32", Some("io.debezium.time.Year"), None),
        (Repr::String, ColumnType::Enum { members }) => (
            "string",
            Some("io.debezium.data.Enum"),
            Some(json!({"allowed": members.join(",")})),
        ),
        (Repr::String, ColumnType::Set { members }) => (
            "string",
            Some("io.debezium.data.EnumSet"),
            Some(json!({"allowed": members.join(",")})),
        ),
        (Repr::String, ColumnType::Json) => ("string", Some("io.debezium.data.Json"), None),
        (Repr::String, _) => ("string", None, None),
        (Repr::Bytes, _) => ("bytes", None, None),
        (Repr::Geometry, _) => {
            s.insert("type".into(), json!("struct"));
            s.insert(
                "fields".into(),
                json!([
                    {"type": "bytes", "optional": false, "field": "wkb"},
                    {"type": "int32", "optional": true, "field": "srid"}
                ]),
            );
            s.insert("optional".into(), json!(col.nullable));
            s.insert("name".into(), json!("io.debezium.data.geometry.Geometry"));
            s.insert("version".into(), json!(1));
            s.insert("field".into(), json!(col.name));
            return Json::Object(s);
        }
        // repr_of never pairs another representation with these types.
        (_, ty) => (
            match ty {
                ColumnType::Integer { .. } => "int64",
                _ => "string",
            },
            None,
            None,
        ),
    };
    s.insert("type".into(), json!(ty));
    s.insert("optional".into(), json!(col.nullable));
    // The default, as Debezium declares it (Connect sinks need it to add a NOT NULL
    // column), where binlake knows it exactly and the representation is plain.
    if let ColumnDefault::Literal(text) = &col.default {
        let default = match repr {
            Repr::Int => text.parse::<i64>().ok().map(Json::from),
            Repr::UIntAsInt => text.parse::<u64>().ok().map(|u| Json::from(u as i64)),
            Repr::String => Some(Json::from(text.as_str())),
            _ => None,
        };
        if let Some(d) = default {
            s.insert("default".into(), d);
        }
    }
    if let Some(name) = name {
        s.insert("name".into(), json!(name));
        s.insert("version".into(), json!(1));
    }
    if let Some(p) = params {
        s.insert("parameters".into(), p);
    }
    s.insert("field".into(), json!(col.name));
    Json::Object(s)
}

fn key_connect_schema(t: &TableSchema, reprs: &[Repr], names: &SchemaNames) -> Json {
    let fields: Vec<Json> = t
        .primary_key
        .iter()
        .map(|&i| field_schema(&t.columns[i], reprs[i]))
        .collect();
    json!({"type": "struct", "fields": fields, "optional": false, "name": names.name("Key")})
}

/// A row image's schema; with `partial`, every field is optional (absent columns are left
/// out of the image).
fn row_connect_schema(
    t: &TableSchema,
    reprs: &[Repr],
    names: &SchemaNames,
    field: &str,
    partial: bool,
) -> Json {
    let fields: Vec<Json> = t
        .columns
        .iter()
        .zip(reprs)
        .map(|(c, r)| match partial {
            false => field_schema(c, *r),
            true => field_schema(
                &Column {
                    nullable: true,
                    ..c.clone()
                },
                *r,
            ),
        })
        .collect();
    json!({"type": "struct", "fields": fields, "optional": true, "name": names.name("Value"), "field": field})
}

fn source_connect_schema(opts: &DebeziumOptions) -> Json {
    let s = |f: &str, optional: bool| json!({"type": "string", "optional": optional, "field": f});
    let i64f = |f: &str, optional: bool| json!({"type": "int64", "optional": optional, "field": f});
    json!({
        "type": "struct",
        "fields": [
            s("version", false),
            s("connector", false),
            s("name", false),
            i64f("ts_ms", false),
            {
                "type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
                "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},
                "default": "false", "field": "snapshot"
            },
            s("db", false),
            s("sequence", true),
            i64f("ts_us", true),
            i64f("ts_ns", true),
            s("table", true),
            i64f("server_id", false),
            s("gtid", true),
            s("file", false),
            i64f("pos", false),
            {"type": "int32", "optional": false, "field": "row"},
            i64f("thread", true),
            s("query", true)
        ],
        "optional": false,
        "name": format!("io.debezium.connector.{}.Source", opts.flavor.connector_name()),
        "field": "source"
    })
}

/// The envelope's schema; `partial` for events with absent columns: every row field is
/// optional and the `absent` block follows `transaction`.
fn envelope_connect_schema(
    t: &TableSchema,
    reprs: &[Repr],
    names: &SchemaNames,
    opts: &DebeziumOptions,
    partial: bool,
) -> Json {
    let mut schema = json!({
        "type": "struct",
        "fields": [
            row_connect_schema(t, reprs, names, "before", partial),
            row_connect_schema(t, reprs, names, "after", partial),
            source_connect_schema(opts),
            {"type": "string", "optional": false, "field": "op"},
            {"type": "int64", "optional": true, "field": "ts_ms"},
            {"type": "int64", "optional": true, "field": "ts_us"},
            {"type": "int64", "optional": true, "field": "ts_ns"},
            {
                "type": "struct",
                "fields": [
                    {"type": "string", "optional": false, "field": "id"},
                    {"type": "int64", "optional": false, "field": "total_order"},
                    {"type": "int64", "optional": false, "field": "data_collection_order"}
                ],
                "optional": true, "name": "event.block", "version": 1, "field": "transaction"
            }
        ],
        "optional": false,
        "name": names.name("Envelope"),
        "version": 2
    });
    if partial && let Some(Json::Array(fields)) = schema.get_mut("fields") {
        let names = |f: &str| json!({"type": "array", "items": {"type": "string", "optional": false}, "optional": true, "field": f});
        fields.push(json!({
            "type": "struct",
            "fields": [names("before"), names("after")],
            "optional": true, "name": "binlake.absent", "version": 1, "field": "absent"
        }));
    }
    schema
}

pub mod connect;
mod decode;
mod schema_change;

pub use schema_change::schema_change_value;

#[cfg(test)]
mod tests;
