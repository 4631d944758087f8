//! Table maps to [`TableSchema`]s and per-column decoders.
//!
//! With `binlog_row_metadata=FULL` (MySQL ≥ 8.0.1, MariaDB ≥ 10.5) a table map carries
//! everything: column names, signedness, charsets, ENUM/SET members, geometry types and
//! the primary key. Without it, names, charsets and members come from a schema given by the
//! caller (read from `information_schema`), which must describe the same columns.

use std::sync::Arc;

use binlake_core::schema::StringKind;
use binlake_core::{Column, ColumnType, TableSchema};
use mysql_common::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_common::constants::ColumnType as MyType;

use super::charset::{Charset, charset_name_of_collation};
use super::rows::{ColumnDecoder, types};

/// A decoded table map: the table's schema and how to decode each column of its rows.
#[derive(Debug, Clone)]
pub struct TableDef {
    /// The table as binlake represents it (columns excluded by configuration removed).
    pub schema: Arc<TableSchema>,
    /// One decoder per column of the table map, in table order.
    pub decoders: Vec<ColumnDecoder>,
    /// For each table-map column, its index in `schema.columns`, or `None` when excluded.
    pub projection: Vec<Option<usize>>,
    /// Whether names came from the table map (`binlog_row_metadata=FULL`).
    pub full_metadata: bool,
}

/// Builds the definition of the table in `tme`. `fallback` supplies what the table map
/// lacks without full metadata; `excluded` says which column names to drop.
pub fn table_def(
    tme: &TableMapEvent<'_>,
    fallback: Option<&TableSchema>,
    excluded: &dyn Fn(&str) -> bool,
) -> Result<TableDef, String> {
    let n = tme.columns_count() as usize;
    let db = tme.database_name().into_owned();
    let table = tme.table_name().into_owned();
    let qualified = format!("{db}.{table}");
    let meta = OptionalMetaExtractor::new(tme.iter_optional_meta())
        .map_err(|e| format!("{qualified}: invalid table-map metadata: {e}"))?;

    let mut names: Vec<String> = meta
        .iter_column_name()
        .map(|r| r.map(|c| c.name().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{qualified}: invalid column names in table map: {e}"))?;
    let full_metadata = names.len() == n;
    let fallback = match (full_metadata, fallback) {
        (true, _) => None,
        (false, Some(f)) if f.columns.len() == n => Some(f),
        (false, Some(f)) => {
            return Err(format!(
                "{qualified}: the binlog has {n} columns but the schema binlake knows has {}; \
                 set binlog_row_metadata=FULL on the server so table maps carry the schema",
                f.columns.len()
            ));
        }
        (false, None) => {
            return Err(format!(
                "{qualified}: the table map has no column names (binlog_row_metadata is not FULL) and no schema is known for the table"
            ));
        }
    };
    if let Some(f) = fallback {
        names = f.columns.iter().map(|c| c.name.clone()).collect();
    }

    let mut enums = Vec::new();
    let mut sets = Vec::new();
    let mut geometry = Vec::new();
    for field in tme.iter_optional_meta() {
        match field.map_err(|e| format!("{qualified}: invalid table-map metadata: {e}"))? {
            OptionalMetadataField::EnumStrValue(v) => {
                for e in v.iter_values() {
                    let e = e.map_err(|e| format!("{qualified}: invalid ENUM metadata: {e}"))?;
                    enums.push(
                        e.values()
                            .iter()
                            .map(|s| s.value().into_owned())
                            .collect::<Vec<_>>(),
                    );
                }
            }
            OptionalMetadataField::SetStrValue(v) => {
                for s in v.iter_values() {
                    let s = s.map_err(|e| format!("{qualified}: invalid SET metadata: {e}"))?;
                    sets.push(
                        s.values()
                            .iter()
                            .map(|s| s.value().into_owned())
                            .collect::<Vec<_>>(),
                    );
                }
            }
            OptionalMetadataField::GeometryType(g) => {
                for t in g.iter_geometry_types() {
                    let t =
                        t.map_err(|e| format!("{qualified}: invalid geometry metadata: {e}"))?;
                    // mysql_common names them GEOM_POINT, …; binlake uses `point`, ….
                    let name = format!("{t:?}").to_ascii_lowercase();
                    geometry.push(name.strip_prefix("geom_").unwrap_or(&name).to_string());
                }
            }
            _ => {}
        }
    }
    let (mut enums, mut sets, mut geometry) =
        (enums.into_iter(), sets.into_iter(), geometry.into_iter());
    let mut signedness = meta.iter_signedness();
    let mut charsets = meta.iter_charset();
    let mut enum_charsets = meta.iter_enum_and_set_charset();
    let pk_from_map: Vec<usize> = meta
        .iter_primary_key()
        .map(|r| r.map(|i| i as usize))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{qualified}: invalid primary-key metadata: {e}"))?;
    let nullable = tme.null_bitmask();

    let mut columns = Vec::with_capacity(n);
    let mut decoders = Vec::with_capacity(n);
    for (i, name) in names.iter().enumerate() {
        let real = tme
            .get_column_type(i)
            .map_err(|e| format!("{qualified}: column {i}: {e}"))?
            .ok_or_else(|| format!("{qualified}: column {i} has no type"))?;
        let meta_bytes = tme.get_column_metadata(i).unwrap_or(&[]);
        let fb = fallback.map(|f| &f.columns[i]);
        let unsigned = if real.is_numeric_type() {
            signedness.next().unwrap_or(false)
                || matches!(
                    fb.map(|c| &c.ty),
                    Some(ColumnType::Integer { unsigned: true, .. })
                )
        } else {
            false
        };
        let collation = if real.is_character_type() {
            charsets
                .next()
                .transpose()
                .map_err(|e| format!("{qualified}: {e}"))?
        } else if real.is_enum_or_set_type() {
            enum_charsets
                .next()
                .transpose()
                .map_err(|e| format!("{qualified}: {e}"))?
        } else {
            None
        };
        let charset = match collation {
            Some(id) => Some(
                charset_name_of_collation(id)
                    .ok_or_else(|| format!("{qualified}.{}: unknown collation id {id}", name))?,
            ),
            None => match fb.map(|c| &c.ty) {
                Some(ColumnType::String { charset, .. }) => Some(charset.clone()),
                Some(ColumnType::Bytes { .. }) => Some("binary".into()),
                _ => None,
            },
        };
        let members = |from_map: Option<Vec<String>>| -> Result<Vec<String>, String> {
            from_map
                .or_else(|| match fb.map(|c| &c.ty) {
                    Some(ColumnType::Enum { members } | ColumnType::Set { members }) => {
                        Some(members.clone())
                    }
                    _ => None,
                })
                .ok_or_else(|| format!("{qualified}.{}: ENUM/SET members unknown", name))
        };
        let (ty, dec) = column(
            real,
            meta_bytes,
            unsigned,
            charset.as_deref(),
            &mut || {
                members(match real {
                    MyType::MYSQL_TYPE_ENUM => enums.next(),
                    _ => sets.next(),
                })
            },
            &mut || geometry.next(),
        )
        .map_err(|e| format!("{qualified}.{}: {e}", name))?;
        let is_null = nullable.get(i).map(|b| *b).unwrap_or(true);
        columns.push(Column::new(name.clone(), ty, is_null));
        decoders.push(dec);
    }

    let primary_key = if full_metadata {
        pk_from_map
    } else {
        fallback.map(|f| f.primary_key.clone()).unwrap_or_default()
    };
    // Drop excluded columns (never from the key: the key identifies the row).
    let mut projection = Vec::with_capacity(n);
    let mut kept = Vec::with_capacity(n);
    let mut new_index = vec![None; n];
    for (i, c) in columns.into_iter().enumerate() {
        if excluded(&c.name) && !primary_key.contains(&i) {
            projection.push(None);
        } else {
            new_index[i] = Some(kept.len());
            projection.push(Some(kept.len()));
            kept.push(c);
        }
    }
    let primary_key = primary_key
        .iter()
        .filter_map(|&i| new_index.get(i).copied().flatten())
        .collect();
    Ok(TableDef {
        schema: Arc::new(TableSchema {
            database: db,
            table,
            columns: kept,
            primary_key,
        }),
        decoders,
        projection,
        full_metadata,
    })
}

/// The core type and the decoder of one column.
fn column(
    real: MyType,
    meta: &[u8],
    unsigned: bool,
    charset: Option<&str>,
    members: &mut dyn FnMut() -> Result<Vec<String>, String>,
    geometry: &mut dyn FnMut() -> Option<String>,
) -> Result<(ColumnType, ColumnDecoder), String> {
    let m0 = meta.first().copied().unwrap_or(0);
    let m1 = meta.get(1).copied().unwrap_or(0);
    let m16 = u16::from_le_bytes([m0, m1]);
    let int = |bits: u8, bytes: u8| {
        (
            ColumnType::Integer { bits, unsigned },
            ColumnDecoder::Int { bytes, unsigned },
        )
    };
    let text_or_bytes =
        |kind: StringKind, length: u32, len_bytes: u8, pad: bool| -> Result<_, String> {
            match charset {
                Some("binary") | None => Ok((
                    ColumnType::Bytes { kind, length },
                    ColumnDecoder::Binary {
                        len_bytes,
                        pad_to: pad.then_some(length),
                    },
                )),
                Some(cs) => {
                    let conv = Charset::from_name(cs)
                        .ok_or_else(|| format!("character set {cs} is not supported by binlake"))?;
                    Ok((
                        ColumnType::String {
                            kind,
                            length,
                            charset: cs.to_string(),
                        },
                        ColumnDecoder::Text {
                            len_bytes,
                            charset: conv,
                        },
                    ))
                }
            }
        };
    let t = real as u8;
    Ok(match t {
        types::TINY => int(8, 1),
        types::SHORT => int(16, 2),
        types::INT24 => int(24, 3),
        types::LONG => int(32, 4),
        types::LONGLONG => int(64, 8),
        types::FLOAT => (ColumnType::Float, ColumnDecoder::Float),
        types::DOUBLE => (ColumnType::Double, ColumnDecoder::Double),
        types::NEWDECIMAL if m0 == 0 || m0 > 65 || m1 > 30 || m1 > m0 => {
            return Err(format!(
                "DECIMAL({m0},{m1}) is not a valid type: the table map is corrupt"
            ));
        }
        types::NEWDECIMAL => (
            ColumnType::Decimal {
                precision: m0,
                scale: m1,
            },
            ColumnDecoder::Decimal {
                precision: m0,
                scale: m1,
            },
        ),
        types::YEAR => (ColumnType::Year, ColumnDecoder::Year),
        types::DATE | types::NEWDATE => (ColumnType::Date, ColumnDecoder::Date),
        types::TIME => (ColumnType::Time { fsp: 0 }, ColumnDecoder::TimeOld),
        types::TIME2 => (
            ColumnType::Time { fsp: m0 },
            ColumnDecoder::Time2 { fsp: m0 },
        ),
        types::DATETIME => (ColumnType::DateTime { fsp: 0 }, ColumnDecoder::DateTimeOld),
        types::DATETIME2 => (
            ColumnType::DateTime { fsp: m0 },
            ColumnDecoder::DateTime2 { fsp: m0 },
        ),
        types::TIMESTAMP => (
            ColumnType::Timestamp { fsp: 0 },
            ColumnDecoder::TimestampOld,
        ),
        types::TIMESTAMP2 => (
            ColumnType::Timestamp { fsp: m0 },
            ColumnDecoder::Timestamp2 { fsp: m0 },
        ),
        types::BIT if m0 > 7 || m1 > 8 || u16::from(m1) * 8 + u16::from(m0) > 64 => {
            return Err(format!(
                "BIT metadata ({m0} bits, {m1} bytes) is not a valid type: the table map is corrupt"
            ));
        }
        types::BIT => {
            // meta: bits % 8, whole bytes.
            let width = u16::from(m1) * 8 + u16::from(m0);
            let bytes = m1 + u8::from(m0 > 0);
            (
                ColumnType::Bit {
                    width: width.min(64) as u8,
                },
                ColumnDecoder::Bit { bytes },
            )
        }
        types::VARCHAR | types::VAR_STRING => {
            let max = u32::from(m16);
            let len_bytes = if max < 256 { 1 } else { 2 };
            let chars = max / max_bytes_per_char(charset);
            text_or_bytes(StringKind::VarChar, chars, len_bytes, false)?
        }
        types::STRING => {
            // CHAR/BINARY: meta byte 0 is the real type (with bits of the length folded in).
            let len = u32::from(m1) | ((u32::from(m0 & 0x30) ^ 0x30) << 4);
            let len_bytes = if len < 256 { 1 } else { 2 };
            let chars = len / max_bytes_per_char(charset);
            text_or_bytes(StringKind::Char, chars, len_bytes, true)?
        }
        types::ENUM => {
            let members: Arc<[String]> = members()?.into();
            (
                ColumnType::Enum {
                    members: members.to_vec(),
                },
                ColumnDecoder::Enum {
                    bytes: m1.max(1),
                    members,
                },
            )
        }
        types::SET => {
            let members: Arc<[String]> = members()?.into();
            (
                ColumnType::Set {
                    members: members.to_vec(),
                },
                ColumnDecoder::Set {
                    bytes: m1.max(1),
                    members,
                },
            )
        }
        types::BLOB | types::TINY_BLOB | types::MEDIUM_BLOB | types::LONG_BLOB => {
            let (kind, length) = match m0 {
                1 => (StringKind::Tiny, 255),
                2 => (StringKind::Text, 65_535),
                3 => (StringKind::Medium, 16_777_215),
                _ => (StringKind::Long, u32::MAX),
            };
            text_or_bytes(kind, length, m0.clamp(1, 4), false)?
        }
        types::JSON => (
            ColumnType::Json,
            ColumnDecoder::Json {
                len_bytes: m0.clamp(1, 4),
            },
        ),
        types::GEOMETRY => (
            ColumnType::Geometry {
                kind: geometry().unwrap_or_else(|| "geometry".into()),
            },
            ColumnDecoder::Geometry {
                len_bytes: m0.clamp(1, 4),
            },
        ),
        other => return Err(format!("column type {other} ({real:?}) is not supported")),
    })
}

/// The longest character of a charset in bytes, to turn byte lengths into characters.
fn max_bytes_per_char(charset: Option<&str>) -> u32 {
    match charset {
        Some("utf8mb4" | "utf16" | "utf16le" | "utf32" | "gb18030") => 4,
        Some("utf8mb3" | "utf8" | "ujis" | "eucjpms") => 3,
        Some("ucs2" | "gbk" | "gb2312" | "big5" | "sjis" | "cp932" | "euckr") => 2,
        _ => 1,
    }
}
