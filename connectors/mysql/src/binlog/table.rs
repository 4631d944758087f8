//! Table maps to [`TableSchema`]s and per-column decoders.
//!
//! With `binlog_row_metadata=FULL` (MySQL ≥ 8.0.1, MariaDB ≥ 10.5) a table map carries
//! everything: column names, signedness, charsets, ENUM/SET members, geometry types and
//! the primary key. Without it, names, charsets and members come from a schema given by the
//! caller (read from `information_schema`), which must describe the same columns.
//!
//! # Which columns the charset list describes
//!
//! The optional metadata holds the character sets of "character columns" as one list,
//! either `COLUMN_CHARSET` (one collation per listed column) or `DEFAULT_CHARSET` (the most
//! used collation, then `(index, collation)` exceptions where the index counts *listed*
//! columns only). ENUM and SET columns have lists of their own
//! (`ENUM_AND_SET_DEFAULT_CHARSET` / `ENUM_AND_SET_COLUMN_CHARSET`). Both forms are read by
//! walking the table's columns in order and taking the next entry for each listed column,
//! so a reader must list exactly the columns the server listed: one column too many or too
//! few hands every later text column its neighbour's charset (a latin1 column decoded as
//! UTF-8, a text column taken for binary). The servers do not agree on the set, so
//! [`in_charset_list`] decides it per flavour, from the servers' sources:
//!
//! - MySQL 8.x, `sql/log_event.cc`: `init_metadata_fields` calls `init_charset_field`
//!   with `is_character_field`, which is `is_character_type(field->real_type())`: STRING
//!   (CHAR, BINARY), VAR_STRING, VARCHAR (VARCHAR, VARBINARY) and BLOB (every BLOB and TEXT
//!   size); MySQL 9 adds VECTOR. GEOMETRY and JSON have their own real types and are not
//!   listed. This is also what `mysql_common`'s `ColumnType::is_character_type` says.
//! - MariaDB 10.5+ (10.11 checked), `sql/log_event_server.cc`: `is_character_field` lists
//!   every column whose `Binlog_type_info` carries a charset and that is not ENUM/SET. Besides
//!   CHAR/VARCHAR/BINARY/VARBINARY/BLOB/TEXT (JSON is a LONGTEXT there) and the fixed-size
//!   binary types (UUID, INET4, INET6, logged as STRING with the binary charset), that is
//!   GEOMETRY: `Field_geom::binlog_type_info` (`sql/sql_type_geom.cc`) passes the field's
//!   charset (`binary`), being a BLOB underneath. MariaDB's own `mysqlbinlog`
//!   (`sql/log_event_client.cc`, `is_character_type`) counts `MYSQL_TYPE_GEOMETRY` for that
//!   reason ("Base class is blob for geom type"). BIT, DECIMAL, temporal and numeric
//!   columns carry no charset on either server.

use std::sync::Arc;

use binlake_core::schema::StringKind;
use binlake_core::{Column, ColumnType, Flavor, TableSchema};
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
    /// Per column of `schema`, its mask (`[source.masking]`); `None` when none is masked.
    pub masks: Option<Vec<Option<binlake_core::masking::Mask>>>,
}

/// Whether a `flavor` server lists a column of table-map type `ty` (ENUM and SET already
/// resolved from the metadata, as [`TableMapEvent::get_column_type`] does) in the
/// `DEFAULT_CHARSET` / `COLUMN_CHARSET` metadata. See the module docs for the sources.
pub fn in_charset_list(flavor: Flavor, ty: MyType) -> bool {
    match ty {
        // Table maps write every BLOB/TEXT size as MYSQL_TYPE_BLOB; the sized codes are
        // listed too in case a server ever writes them, as they carry a charset.
        MyType::MYSQL_TYPE_STRING
        | MyType::MYSQL_TYPE_VAR_STRING
        | MyType::MYSQL_TYPE_VARCHAR
        | MyType::MYSQL_TYPE_BLOB
        | MyType::MYSQL_TYPE_TINY_BLOB
        | MyType::MYSQL_TYPE_MEDIUM_BLOB
        | MyType::MYSQL_TYPE_LONG_BLOB => true,
        MyType::MYSQL_TYPE_GEOMETRY => flavor == Flavor::MariaDb,
        MyType::MYSQL_TYPE_VECTOR => flavor == Flavor::Mysql,
        _ => false,
    }
}

/// Builds the definition of the table in `tme`, written by a `flavor` server. `known` is
/// the schema binlake knows for the table (its schema history): it supplies what the table
/// map lacks without full metadata, and, with or without it, which LONGTEXT columns are
/// MariaDB's JSON (no table map says so: JSON is a LONGTEXT with a check there). `excluded`
/// says which column names to drop.
pub fn table_def(
    flavor: Flavor,
    tme: &TableMapEvent<'_>,
    known: Option<&TableSchema>,
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
    let fallback = match (full_metadata, known) {
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
                            .map(|s| s.value_raw().to_vec())
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
                            .map(|s| s.value_raw().to_vec())
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
        let collation = if in_charset_list(flavor, real) {
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
        let members = |from_map: Option<Vec<Vec<u8>>>| -> Result<Vec<String>, String> {
            // The member strings are in the column's charset (latin1 'ü' is one byte).
            let from_map = match from_map {
                // A binary ENUM has byte strings for members: shown as UTF-8, as before.
                Some(raw) if charset.as_deref() == Some("binary") => Some(
                    raw.iter()
                        .map(|m| String::from_utf8_lossy(m).into_owned())
                        .collect(),
                ),
                Some(raw) => {
                    let cs = charset.as_deref().unwrap_or("utf8mb4");
                    let conv = Charset::from_name(cs)
                        .ok_or_else(|| format!("character set {cs} is not supported by binlake"))?;
                    Some(
                        raw.iter()
                            .map(|m| conv.decode(m))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| format!("{qualified}.{name}: ENUM/SET member: {e}"))?,
                    )
                }
                None => None,
            };
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
        let mut ty = ty;
        if let (
            Some(k),
            ColumnType::String {
                kind: StringKind::Long,
                json,
                ..
            },
        ) = (known, &mut ty)
        {
            *json = k.columns.iter().any(|c| {
                c.name.eq_ignore_ascii_case(name)
                    && matches!(
                        c.ty,
                        ColumnType::String {
                            kind: StringKind::Long,
                            json: true,
                            ..
                        }
                    )
            });
        }
        let is_null = nullable.get(i).map(|b| *b).unwrap_or(true);
        // Table maps carry no defaults: the known schema's, for a column of the same name
        // and type (what fills an INSERT's columns a MINIMAL row image leaves out).
        let default = known
            .and_then(|k| {
                k.columns
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(name) && c.ty == ty)
            })
            .map(|c| c.default.clone())
            .unwrap_or_default();
        columns.push(Column::new(name.clone(), ty, is_null).with_default(default));
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
        masks: None,
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
                            json: false,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use mysql_common::binlog::consts::BinlogVersion;
    use mysql_common::binlog::events::{Event, EventData};
    use mysql_common::binlog::{BinlogFileHeader, EventStreamReader};

    use super::*;

    #[test]
    fn charset_list_membership_per_flavour() {
        for flavor in [Flavor::Mysql, Flavor::MariaDb] {
            for ty in [
                MyType::MYSQL_TYPE_STRING,
                MyType::MYSQL_TYPE_VARCHAR,
                MyType::MYSQL_TYPE_VAR_STRING,
                MyType::MYSQL_TYPE_BLOB,
            ] {
                assert!(in_charset_list(flavor, ty), "{flavor:?} {ty:?}");
            }
            for ty in [
                MyType::MYSQL_TYPE_ENUM,
                MyType::MYSQL_TYPE_SET,
                MyType::MYSQL_TYPE_BIT,
                MyType::MYSQL_TYPE_NEWDECIMAL,
                MyType::MYSQL_TYPE_TIMESTAMP2,
                MyType::MYSQL_TYPE_LONG,
                MyType::MYSQL_TYPE_JSON,
            ] {
                assert!(!in_charset_list(flavor, ty), "{flavor:?} {ty:?}");
            }
        }
        assert!(in_charset_list(
            Flavor::MariaDb,
            MyType::MYSQL_TYPE_GEOMETRY
        ));
        assert!(!in_charset_list(Flavor::Mysql, MyType::MYSQL_TYPE_GEOMETRY));
    }

    /// Every table map of the fixture files, with the flavour of the server that wrote it.
    fn fixture_table_maps() -> Vec<(String, Flavor, TableMapEvent<'static>)> {
        fn visit(ev: &Event, out: &mut Vec<TableMapEvent<'static>>) {
            match ev.read_data() {
                Ok(Some(EventData::TableMapEvent(t))) => out.push(t.into_owned()),
                Ok(Some(EventData::TransactionPayloadEvent(p))) => {
                    let mut r = p.decompressed().unwrap();
                    let mut inner = EventStreamReader::new(BinlogVersion::Version4);
                    while let Some(ev) = inner.read_decompressed(&mut r).unwrap() {
                        visit(&ev, out);
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        for entry in std::fs::read_dir(crate::fixture("")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            let flavor = if bytes.windows(7).any(|w| w == b"MariaDB") {
                Flavor::MariaDb
            } else {
                Flavor::Mysql
            };
            let mut input = &bytes[..];
            if BinlogFileHeader::read(&mut input).is_err() {
                continue;
            }
            let mut reader = EventStreamReader::new(BinlogVersion::Version4);
            let mut maps = Vec::new();
            // MariaDB-only events mysql_common cannot frame end a file early.
            while let Ok(Some(ev)) = reader.read(&mut input) {
                visit(&ev, &mut maps);
            }
            out.extend(maps.into_iter().map(|t| (name.clone(), flavor, t)));
        }
        out
    }

    /// A MariaDB table map with full metadata of `(id INT PRIMARY KEY, doc LONGTEXT,
    /// notes TEXT)` in utf8mb4, as the server writes one for `doc JSON`.
    fn longtext_table_map() -> TableMapEvent<'static> {
        use mysql_common::binlog::events::FormatDescriptionEvent;
        use mysql_common::proto::MySerialize;
        fn event(out: &mut Vec<u8>, ty: u8, body: &[u8]) {
            let size = 19 + body.len() as u32;
            let log_pos = out.len() as u32 + size;
            out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
            out.push(ty);
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&log_pos.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(body);
        }
        let mut fde = Vec::new();
        FormatDescriptionEvent::new(BinlogVersion::Version4)
            .with_server_version(b"10.11.6-MariaDB-log".to_vec())
            .serialize(&mut fde);
        fde.push(0); // checksum algorithm: off
        fde.extend_from_slice(&[0; 4]);
        let mut tm = Vec::new();
        tm.extend_from_slice(&42u64.to_le_bytes()[..6]);
        tm.extend_from_slice(&1u16.to_le_bytes());
        for name in ["shop", "docs"] {
            tm.push(name.len() as u8);
            tm.extend_from_slice(name.as_bytes());
            tm.push(0);
        }
        tm.push(3);
        tm.extend_from_slice(&[3, 252, 252]); // LONG, BLOB, BLOB
        tm.push(2);
        tm.extend_from_slice(&[4, 2]); // LONGTEXT, TEXT
        tm.push(0b110);
        let mut field = |ty: u8, value: &[u8]| {
            tm.push(ty);
            tm.push(value.len() as u8);
            tm.extend_from_slice(value);
        };
        field(1, &[0]); // signedness
        field(2, &[45]); // default charset utf8mb4_general_ci, no exceptions
        field(4, b"\x02id\x03doc\x05notes"); // column names
        field(8, &[0]); // primary key
        let mut file = Vec::new();
        event(&mut file, 15, &fde);
        event(&mut file, 19, &tm);
        let mut input = &file[..];
        let mut reader = EventStreamReader::new(BinlogVersion::Version4);
        loop {
            let ev = reader.read(&mut input).unwrap().expect("a table map");
            if let Some(EventData::TableMapEvent(t)) = ev.read_data().unwrap() {
                return t.into_owned();
            }
        }
    }

    /// No table map says which LONGTEXT is MariaDB's JSON: the known schema (the
    /// history) does, with full metadata too, by column name (case-insensitive); only a
    /// LONGTEXT takes the marker, and a known schema without it takes it away.
    #[test]
    fn json_marker_comes_from_the_known_schema() {
        let tme = longtext_table_map();
        let plain = table_def(Flavor::MariaDb, &tme, None, &|_| false).unwrap();
        assert!(plain.full_metadata);
        let names: Vec<_> = plain
            .schema
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["id", "doc", "notes"]);
        assert_eq!(plain.schema.columns[1].ty.sql_name(), "longtext");
        assert_eq!(plain.schema.columns[2].ty.sql_name(), "text");
        assert!(!plain.schema.columns.iter().any(|c| c.ty.is_json()));

        let mut known = (*plain.schema).clone();
        for c in &mut known.columns {
            c.name = c.name.to_uppercase();
            if let ColumnType::String { json, .. } = &mut c.ty {
                *json = true;
            }
        }
        let marked = table_def(Flavor::MariaDb, &tme, Some(&known), &|_| false).unwrap();
        let json: Vec<_> = marked
            .schema
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.ty.sql_name()))
            .collect();
        assert_eq!(
            json,
            [
                ("id", "int".into()),
                ("doc", "json".into()),
                ("notes", "text".into())
            ]
        );
        assert_eq!(
            marked.schema.columns[1].ty,
            ColumnType::String {
                kind: StringKind::Long,
                length: u32::MAX,
                charset: "utf8mb4".into(),
                json: true,
            }
        );
        let unmarked = table_def(Flavor::MariaDb, &tme, Some(&plain.schema), &|_| false).unwrap();
        assert_eq!(unmarked.schema, plain.schema);
    }

    /// The servers' own table maps list exactly the columns [`in_charset_list`] names:
    /// as many `COLUMN_CHARSET` entries, and `DEFAULT_CHARSET` exceptions only at indexes
    /// below that count (ENUM, SET, BIT, JSON and TEXT columns sit between text columns in
    /// these files).
    #[test]
    fn fixture_charset_lists_match_the_listed_columns() {
        let maps = fixture_table_maps();
        let mut checked = 0;
        for (file, flavor, tme) in &maps {
            let listed = (0..tme.columns_count() as usize)
                .filter(|&i| in_charset_list(*flavor, tme.get_column_type(i).unwrap().unwrap()))
                .count();
            let what = format!("{file}: {}.{}", tme.database_name(), tme.table_name());
            for field in tme.iter_optional_meta() {
                match field.unwrap() {
                    OptionalMetadataField::ColumnCharset(c) => {
                        assert_eq!(c.iter_charsets().count(), listed, "{what}");
                        checked += 1;
                    }
                    OptionalMetadataField::DefaultCharset(d) => {
                        for x in d.iter_non_default() {
                            let x = x.unwrap();
                            assert!((x.column_index() as usize) < listed, "{what}: {x:?}");
                        }
                        checked += 1;
                    }
                    _ => {}
                }
            }
        }
        assert!(checked > 0, "no fixture table map has charset metadata");
    }
}
