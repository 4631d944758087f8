//! Decoding keys and envelopes straight from the JSON text into [`Value`]s.
//!
//! The codec knows the table's schema, so it does not build a `serde_json::Value` tree
//! (a map per object, a `String` per key and per string) to then walk it: serde visitors
//! read each field into the column it names, borrowing strings from the message where
//! JSON has no escapes. Fields come in schema order from binlake and Debezium, so the
//! column is found by comparing the name with the next expected column first, and by a
//! lookup only when a writer ordered them differently. Unknown fields are skipped. A key
//! column named `payload` makes a key's `payload` field that column, not the Connect wrapper.
//! materialize decodes every message it reads, so this is its hottest loop.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use num_bigint::BigInt;
use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{BASE64, Decoded, Repr, TableCodec, format_decimal};
use crate::error::Result;
use crate::event::{ChangeEvent, Op, SnapshotMarker, SourceInfo, TransactionInfo};
use crate::position::{EventPosition, Gtid};
use crate::schema::ColumnType;
use crate::temporal::{self, Date, DateTime};
use crate::value::Value;

/// A JSON string, borrowed from the message unless it had escapes.
struct Str<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                v: &'de str,
            ) -> std::result::Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// One field's JSON value, as far as a column can hold it.
enum Field<'de> {
    Null,
    Bool(bool),
    Int(i64),
    /// A number that is not an `i64`.
    Float(f64),
    Str(Cow<'de, str>),
    /// `{"wkb":…,"srid":…}`, a geometry.
    Geometry {
        wkb: Option<Cow<'de, str>>,
        srid: Option<i64>,
    },
    /// Anything else (an array, another object, an unsigned beyond `i64`).
    Other,
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Null => f.write_str("null"),
            Field::Bool(b) => write!(f, "{b}"),
            Field::Int(n) => write!(f, "{n}"),
            Field::Float(n) => write!(f, "{n}"),
            Field::Str(s) => write!(f, "{s:?}"),
            Field::Geometry { .. } => f.write_str("an object"),
            Field::Other => f.write_str("an array, object or out-of-range number"),
        }
    }
}

impl<'de> de::Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Field<'de>, E> {
                Ok(Field::Null)
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<Field<'de>, E> {
                Ok(Field::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Field<'de>, E> {
                Ok(Field::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Field<'de>, E> {
                Ok(Field::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Field<'de>, E> {
                Ok(i64::try_from(v).map_or(Field::Other, Field::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Field<'de>, E> {
                Ok(Field::Float(v))
            }
            fn visit_borrowed_str<E: de::Error>(
                self,
                v: &'de str,
            ) -> std::result::Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Field<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Field<'de>, A::Error> {
                let (mut wkb, mut srid, mut other) = (None, None, false);
                while let Some(k) = map.next_key::<Str<'de>>()? {
                    match &*k.0 {
                        "wkb" => wkb = map.next_value::<Option<Str<'de>>>()?.map(|s| s.0),
                        "srid" => srid = map.next_value::<Option<i64>>()?,
                        _ => {
                            other = true;
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(if other {
                    Field::Other
                } else {
                    Field::Geometry { wkb, srid }
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl TableCodec {
    /// Decodes a message key (either form) into the primary-key values, in key order.
    pub fn decode_key(&self, bytes: &[u8]) -> Result<Vec<Value>> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let key = KeySeed(self)
            .deserialize(&mut de)
            .and_then(|k| de.end().map(|()| k))
            .map_err(|e| self.decode_err(e))?;
        self.table
            .primary_key
            .iter()
            .zip(key)
            .map(|(&i, v)| {
                v.ok_or_else(|| {
                    self.decode_err(format!("key has no field `{}`", self.table.columns[i].name))
                })
            })
            .collect()
    }

    /// Decodes an envelope (either form).
    pub fn decode_value(&self, bytes: &[u8]) -> Result<Decoded> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let parts = EnvelopeSeed(self)
            .deserialize(&mut de)
            .and_then(|p| de.end().map(|()| p))
            .map_err(|e| self.decode_err(e))?;
        let op = match parts.op {
            Some(code) => Op::from_code(&code)
                .ok_or_else(|| self.decode_err(format!("unknown op `{code}`")))?,
            None => return Err(self.decode_err("envelope has no `op`")),
        };
        let source = parts
            .source
            .ok_or_else(|| self.decode_err("envelope has no `source` object"))?;
        let ts_us = parts.ts_us.unwrap_or(source.ts_us);
        let absent = parts.absent.unwrap_or_default();
        for (row, named) in [
            (&parts.before, &absent.before),
            (&parts.after, &absent.after),
        ] {
            let Some(row) = row else { continue };
            for (i, _) in row.iter().enumerate().filter(|(_, v)| v.is_absent()) {
                let name = &self.table.columns[i].name;
                if !named.as_ref().is_some_and(|n| n.iter().any(|a| a == name)) {
                    return Err(self.decode_err(format!("row has no field `{name}`")));
                }
            }
        }
        Ok(Decoded {
            event: ChangeEvent {
                op,
                table: self.table.clone(),
                before: parts.before,
                after: parts.after,
                source,
                transaction: parts.transaction,
            },
            ts_us,
        })
    }

    /// The column a row field names: the expected next one when it matches (fields come
    /// in schema order), else a lookup.
    fn column_named(&self, name: &str, expected: usize) -> Option<usize> {
        match self.table.columns.get(expected) {
            Some(c) if c.name == name => Some(expected),
            _ => self.table.column_index(name),
        }
    }

    /// The value of column `i` from its JSON field.
    fn read_field(&self, i: usize, v: Field<'_>) -> std::result::Result<Value, String> {
        if let Field::Null = v {
            return Ok(Value::Null);
        }
        let col = &self.table.columns[i];
        let bad = |v: &Field<'_>| {
            format!(
                "field `{}` ({}) has an unexpected value {v}",
                col.name,
                col.ty.sql_name()
            )
        };
        let int = |v: &Field<'_>| match v {
            Field::Int(n) => Ok(*n),
            _ => Err(bad(v)),
        };
        let float = |v: &Field<'_>| match v {
            Field::Int(n) => Ok(*n as f64),
            Field::Float(f) => Ok(*f),
            _ => Err(bad(v)),
        };
        let b64 = |v: &Field<'_>| match v {
            Field::Str(s) => BASE64.decode(s.as_bytes()).map_err(|_| bad(v)),
            _ => Err(bad(v)),
        };
        let text = |v: Field<'_>| match v {
            Field::Str(s) => Ok(s.into_owned()),
            v => Err(bad(&v)),
        };
        Ok(match (self.reprs[i], &col.ty) {
            (Repr::Int, _) => Value::Int(int(&v)?),
            (Repr::UIntAsInt, _) => Value::UInt(int(&v)? as u64),
            (Repr::UIntPrecise, _) => {
                let n = BigInt::from_signed_bytes_be(&b64(&v)?);
                Value::UInt(u64::try_from(n).map_err(|_| bad(&v))?)
            }
            (Repr::Float, _) => Value::Float(float(&v)? as f32),
            (Repr::Double, _) => Value::Double(float(&v)?),
            (Repr::DecimalBytes { scale }, _) => Value::Decimal(format_decimal(
                &BigInt::from_signed_bytes_be(&b64(&v)?),
                scale,
            )),
            (Repr::DecimalString, _) => Value::Decimal(text(v)?),
            (Repr::DecimalDouble { scale }, _) => {
                Value::Decimal(format!("{:.prec$}", float(&v)?, prec = usize::from(scale)))
            }
            (Repr::Bool, _) => match v {
                Field::Bool(b) => Value::Bit(u64::from(b)),
                v => return Err(bad(&v)),
            },
            (Repr::Bits { bytes }, _) => {
                let raw = b64(&v)?;
                if raw.len() > 8 || raw.len() > bytes {
                    return Err(bad(&v));
                }
                let mut le = [0u8; 8];
                le[..raw.len()].copy_from_slice(&raw);
                Value::Bit(u64::from_le_bytes(le))
            }
            (Repr::Date, _) => Value::Date(
                i32::try_from(int(&v)?)
                    .ok()
                    .and_then(Date::from_epoch_days)
                    .ok_or_else(|| bad(&v))?,
            ),
            (Repr::MicroTime, _) => Value::Time(int(&v)?),
            (Repr::MilliTimestamp, _) => Value::DateTime(
                int(&v)?
                    .checked_mul(1000)
                    .and_then(DateTime::from_epoch_micros)
                    .ok_or_else(|| bad(&v))?,
            ),
            (Repr::MicroTimestamp, _) => {
                Value::DateTime(DateTime::from_epoch_micros(int(&v)?).ok_or_else(|| bad(&v))?)
            }
            (Repr::Zoned { .. }, _) => match &v {
                Field::Str(s) => {
                    Value::Timestamp(temporal::parse_utc_timestamp(s).ok_or_else(|| bad(&v))?)
                }
                _ => return Err(bad(&v)),
            },
            (Repr::Year, _) => Value::Year(u16::try_from(int(&v)?).map_err(|_| bad(&v))?),
            (Repr::String, ColumnType::Enum { .. }) => Value::Enum(text(v)?),
            (Repr::String, ColumnType::Set { .. }) => Value::Set(text(v)?),
            (Repr::String, ColumnType::Json) => Value::Json(text(v)?),
            (Repr::String, _) => Value::String(text(v)?),
            (Repr::Bytes, _) => Value::Bytes(b64(&v)?),
            (Repr::Geometry, _) => match &v {
                Field::Geometry { wkb: Some(w), srid } => {
                    let wkb = BASE64.decode(w.as_bytes()).map_err(|_| bad(&v))?;
                    let mut g = (srid.unwrap_or(0) as u32).to_le_bytes().to_vec();
                    g.extend_from_slice(&wkb);
                    Value::Geometry(g)
                }
                _ => return Err(bad(&v)),
            },
        })
    }
}

/// The value of one column.
struct ColumnSeed<'c> {
    codec: &'c TableCodec,
    column: usize,
}

impl<'de> DeserializeSeed<'de> for ColumnSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        let field = Field::deserialize(d)?;
        self.codec
            .read_field(self.column, field)
            .map_err(de::Error::custom)
    }
}

/// A row image (`before`/`after`): `null` or an object with every column but those the
/// envelope's `absent` block names.
struct RowSeed<'c>(&'c TableCodec);

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Option<Vec<Value>>;
    fn deserialize<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Option<Vec<Value>>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Option<Vec<Value>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a row object or null")
    }
    fn visit_none<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let codec = self.0;
        let n = codec.table.columns.len();
        let mut row = vec![Value::Null; n];
        // While fields come in schema order, `next` counts them; `seen` tracks them once
        // they do not.
        let mut next = 0;
        let mut seen: Option<Vec<bool>> = None;
        while let Some(k) = map.next_key::<Str<'de>>()? {
            let Some(i) = codec.column_named(&k.0, next) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            row[i] = map.next_value_seed(ColumnSeed { codec, column: i })?;
            match &mut seen {
                None if i == next => next += 1,
                None => {
                    let mut s = vec![false; n];
                    s[..next].iter_mut().for_each(|b| *b = true);
                    s[i] = true;
                    seen = Some(s);
                }
                Some(s) => s[i] = true,
            }
        }
        // A field the row leaves out is absent; the envelope's `absent` block must name it
        // (checked by `decode_value`).
        match &seen {
            None => row[next..].iter_mut().for_each(|v| *v = Value::Absent),
            Some(s) => row
                .iter_mut()
                .zip(s)
                .filter(|(_, seen)| !**seen)
                .for_each(|(v, _)| *v = Value::Absent),
        }
        Ok(Some(row))
    }
}

/// The parts of an envelope, checked by [`TableCodec::decode_value`].
#[derive(Default)]
struct Parts {
    op: Option<String>,
    before: Option<Vec<Value>>,
    after: Option<Vec<Value>>,
    source: Option<SourceInfo>,
    transaction: Option<TransactionInfo>,
    ts_us: Option<i64>,
    ts_ms: Option<i64>,
    absent: Option<Absent>,
}

/// The envelope's `absent` block: the columns each row image leaves out.
#[derive(Default, serde::Deserialize)]
struct Absent {
    #[serde(default)]
    before: Option<Vec<String>>,
    #[serde(default)]
    after: Option<Vec<String>>,
}

/// An envelope, or `{"schema":…,"payload":<envelope>}`.
struct EnvelopeSeed<'c>(&'c TableCodec);

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = Parts;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Parts, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = Parts;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an envelope object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Parts, A::Error> {
        let mut p = Parts::default();
        let mut payload = None;
        while let Some(k) = map.next_key::<Str<'de>>()? {
            match &*k.0 {
                "before" => p.before = map.next_value_seed(RowSeed(self.0))?,
                "after" => p.after = map.next_value_seed(RowSeed(self.0))?,
                "op" => {
                    p.op = map
                        .next_value::<Option<Str<'de>>>()?
                        .map(|s| s.0.into_owned())
                }
                "source" => p.source = Some(map.next_value_seed(SourceSeed)?),
                "transaction" => p.transaction = map.next_value_seed(TransactionSeed)?,
                "ts_us" => p.ts_us = map.next_value()?,
                "ts_ms" => p.ts_ms = map.next_value()?,
                "absent" => p.absent = map.next_value()?,
                // The Connect form wraps the envelope; an envelope has no such field.
                "payload" => payload = Some(map.next_value_seed(EnvelopeSeed(self.0))?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let mut p = payload.unwrap_or(p);
        p.ts_us = p.ts_us.or(p.ts_ms.map(|ms| ms * 1000));
        Ok(p)
    }
}

/// The `source` block.
struct SourceSeed;

impl<'de> DeserializeSeed<'de> for SourceSeed {
    type Value = SourceInfo;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<SourceInfo, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SourceSeed {
    type Value = SourceInfo;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a source object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<SourceInfo, A::Error> {
        let err = |m: String| de::Error::custom(m);
        let (mut gtid, mut snapshot, mut file, mut query) = (None, None, None, None);
        let (mut server_id, mut pos, mut row, mut thread, mut ts_ms, mut ts_us) =
            (None, None, None, None, None, None);
        while let Some(k) = map.next_key::<Str<'de>>()? {
            let name = k.0;
            let int = |map: &mut A| -> std::result::Result<Option<i64>, A::Error> {
                map.next_value::<Option<i64>>()
                    .map_err(|_| err(format!("source.{name} is not an integer")))
            };
            match &*name {
                "gtid" => gtid = map.next_value::<Option<Str<'de>>>()?,
                "snapshot" => snapshot = map.next_value::<Option<Str<'de>>>()?,
                "file" => file = map.next_value::<Option<Str<'de>>>()?,
                "query" => query = map.next_value::<Option<Str<'de>>>()?,
                "server_id" => server_id = int(&mut map)?,
                "pos" => pos = int(&mut map)?,
                "row" => row = int(&mut map)?,
                "thread" => thread = int(&mut map)?,
                "ts_ms" => ts_ms = int(&mut map)?,
                "ts_us" => ts_us = int(&mut map)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let required =
            |name: &str, v: Option<i64>| v.ok_or_else(|| err(format!("source.{name} is missing")));
        let gtid = gtid
            .map(|g| g.0.parse::<Gtid>())
            .transpose()
            .map_err(|e| err(e.to_string()))?;
        let snapshot = match snapshot {
            None => SnapshotMarker::False,
            Some(s) => SnapshotMarker::parse(&s.0)
                .ok_or_else(|| err(format!("unknown source.snapshot `{}`", s.0)))?,
        };
        let server_id = required("server_id", server_id)?;
        let pos = required("pos", pos)?;
        Ok(SourceInfo {
            server_id: u32::try_from(server_id)
                .map_err(|_| err("source.server_id out of range".into()))?,
            gtid,
            position: EventPosition {
                file: file
                    .ok_or_else(|| err("source.file is missing".into()))?
                    .0
                    .into(),
                pos: u64::try_from(pos).map_err(|_| err("source.pos is negative".into()))?,
                row: u32::try_from(row.unwrap_or(0))
                    .map_err(|_| err("source.row out of range".into()))?,
            },
            ts_us: ts_us
                .or(ts_ms.map(|ms| ms * 1000))
                .ok_or_else(|| err("source.ts_ms is missing".into()))?,
            snapshot,
            thread: thread
                .map(u32::try_from)
                .transpose()
                .map_err(|_| err("source.thread out of range".into()))?,
            query: query.map(|q| q.0.into()),
        })
    }
}

/// The `transaction` block, or `null`.
struct TransactionSeed;

impl<'de> DeserializeSeed<'de> for TransactionSeed {
    type Value = Option<TransactionInfo>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        #[derive(serde::Deserialize)]
        struct T {
            id: Option<String>,
            total_order: Option<u64>,
            data_collection_order: Option<u64>,
        }
        let Some(t) = Option::<T>::deserialize(d)? else {
            return Ok(None);
        };
        let missing = |name: &str| de::Error::custom(format!("transaction.{name} is missing"));
        Ok(Some(TransactionInfo {
            id: t.id.ok_or_else(|| missing("id"))?.into(),
            total_order: t.total_order.ok_or_else(|| missing("total_order"))?,
            data_collection_order: t
                .data_collection_order
                .ok_or_else(|| missing("data_collection_order"))?,
        }))
    }
}

/// A key, or `{"schema":…,"payload":<key>}`: the key columns' values in key order.
struct KeySeed<'c>(&'c TableCodec);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Vec<Option<Value>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Vec<Option<Value>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key object")
    }
    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let codec = self.0;
        let pk = &codec.table.primary_key;
        let mut key: Vec<Option<Value>> = vec![None; pk.len()];
        let mut payload = None;
        // `payload` is the Connect form's wrapper, unless a key column has that name.
        let wrapped = codec
            .table
            .column_index("payload")
            .is_none_or(|c| !pk.contains(&c));
        while let Some(k) = map.next_key::<Str<'de>>()? {
            if wrapped && &*k.0 == "payload" {
                payload = Some(map.next_value_seed(KeySeed(codec))?);
                continue;
            }
            let slot = codec
                .table
                .column_index(&k.0)
                .and_then(|c| pk.iter().position(|&p| p == c).map(|s| (s, c)));
            match slot {
                Some((s, c)) => {
                    key[s] = Some(map.next_value_seed(ColumnSeed { codec, column: c })?)
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(payload.unwrap_or(key))
    }
}
