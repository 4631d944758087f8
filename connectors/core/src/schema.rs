//! [`TableSchema`]: the shape of a captured table, as the source server defines it.

use serde::{Deserialize, Serialize};

/// Which server family a source is. Debezium names its connectors after it
/// (`source.connector` is `mysql` or `mariadb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Oracle MySQL (5.7, 8.x, 9.x) and compatible servers.
    Mysql,
    /// MariaDB 10.x / 11.x.
    MariaDb,
}

impl Flavor {
    /// Debezium's connector name for this flavour.
    pub fn connector_name(self) -> &'static str {
        match self {
            Flavor::Mysql => "mysql",
            Flavor::MariaDb => "mariadb",
        }
    }
}

/// The kind of a text column; its maximum length is in [`ColumnType::String`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StringKind {
    /// CHAR(n) or BINARY(n): fixed length.
    Char,
    /// VARCHAR(n) or VARBINARY(n).
    VarChar,
    /// TINYTEXT / TINYBLOB.
    Tiny,
    /// TEXT / BLOB.
    Text,
    /// MEDIUMTEXT / MEDIUMBLOB.
    Medium,
    /// LONGTEXT / LONGBLOB.
    Long,
}

/// A column's MySQL type with everything needed to decode and represent its values exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ColumnType {
    /// TINYINT (8), SMALLINT (16), MEDIUMINT (24), INT (32), BIGINT (64).
    Integer {
        /// Storage width in bits: 8, 16, 24, 32 or 64.
        bits: u8,
        /// UNSIGNED.
        unsigned: bool,
    },
    /// FLOAT (single precision).
    Float,
    /// DOUBLE / REAL.
    Double,
    /// DECIMAL(precision, scale), precision up to 65, scale up to 30.
    Decimal {
        /// Total number of digits, 1–65.
        precision: u8,
        /// Digits after the point, 0–30.
        scale: u8,
    },
    /// BIT(width), width 1–64.
    Bit {
        /// Number of bits.
        width: u8,
    },
    /// DATE.
    Date,
    /// TIME(fsp).
    Time {
        /// Fractional-seconds precision, 0–6.
        fsp: u8,
    },
    /// DATETIME(fsp).
    DateTime {
        /// Fractional-seconds precision, 0–6.
        fsp: u8,
    },
    /// TIMESTAMP(fsp), UTC.
    Timestamp {
        /// Fractional-seconds precision, 0–6.
        fsp: u8,
    },
    /// YEAR.
    Year,
    /// CHAR, VARCHAR, TINYTEXT … LONGTEXT in a character set.
    String {
        /// Which text type.
        kind: StringKind,
        /// Maximum length in characters (CHAR/VARCHAR), or in bytes for the TEXT types.
        length: u32,
        /// Character set name as the server reports it (`utf8mb4`, `latin1`, …).
        charset: String,
        /// MariaDB's JSON: a LONGTEXT whose column-level check is `json_valid(column)`
        /// (what `JSON` declares there). The values are text as for any LONGTEXT; the
        /// marker only says what the text holds (the lake's field metadata names the
        /// type `json`). Left out of the serialized form when false, so schemas without
        /// it serialize, and fingerprint, as they did before it existed.
        #[serde(default, skip_serializing_if = "is_false")]
        json: bool,
    },
    /// BINARY, VARBINARY, TINYBLOB … LONGBLOB.
    Bytes {
        /// Which binary type.
        kind: StringKind,
        /// Maximum length in bytes.
        length: u32,
    },
    /// ENUM('a','b',…).
    Enum {
        /// The members in definition order (index 1 is the first).
        members: Vec<String>,
    },
    /// SET('a','b',…).
    Set {
        /// The members in definition order (bit 0 is the first).
        members: Vec<String>,
    },
    /// MySQL's JSON (binary JSON in the binlog). MariaDB's JSON is a LONGTEXT with a
    /// `json_valid` check: a [`ColumnType::String`] with `json` set.
    Json,
    /// GEOMETRY, POINT, LINESTRING, POLYGON, MULTI…, GEOMETRYCOLLECTION.
    Geometry {
        /// The declared spatial type in lower case (`geometry`, `point`, …).
        kind: String,
    },
}

impl ColumnType {
    /// The type as MySQL would write it in a column definition, e.g. `decimal(65,30)`,
    /// `bigint unsigned`, `enum('a','b')`; `json` for MySQL's JSON and for MariaDB's
    /// (a LONGTEXT marked `json`, see [`ColumnType::storage_sql_name`]).
    pub fn sql_name(&self) -> String {
        fn quoted(members: &[String]) -> String {
            members
                .iter()
                .map(|m| format!("'{}'", m.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(",")
        }
        let unsigned = |u: bool| if u { " unsigned" } else { "" };
        match self {
            ColumnType::Integer { bits, unsigned: u } => {
                let name = match bits {
                    8 => "tinyint",
                    16 => "smallint",
                    24 => "mediumint",
                    32 => "int",
                    _ => "bigint",
                };
                format!("{name}{}", unsigned(*u))
            }
            ColumnType::Float => "float".into(),
            ColumnType::Double => "double".into(),
            ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            ColumnType::Bit { width } => format!("bit({width})"),
            ColumnType::Date => "date".into(),
            ColumnType::Time { fsp } => with_fsp("time", *fsp),
            ColumnType::DateTime { fsp } => with_fsp("datetime", *fsp),
            ColumnType::Timestamp { fsp } => with_fsp("timestamp", *fsp),
            ColumnType::Year => "year".into(),
            ColumnType::String { json: true, .. } => "json".into(),
            ColumnType::String { kind, length, .. } => match kind {
                StringKind::Char => format!("char({length})"),
                StringKind::VarChar => format!("varchar({length})"),
                StringKind::Tiny => "tinytext".into(),
                StringKind::Text => "text".into(),
                StringKind::Medium => "mediumtext".into(),
                StringKind::Long => "longtext".into(),
            },
            ColumnType::Bytes { kind, length } => match kind {
                StringKind::Char => format!("binary({length})"),
                StringKind::VarChar => format!("varbinary({length})"),
                StringKind::Tiny => "tinyblob".into(),
                StringKind::Text => "blob".into(),
                StringKind::Medium => "mediumblob".into(),
                StringKind::Long => "longblob".into(),
            },
            ColumnType::Enum { members } => format!("enum({})", quoted(members)),
            ColumnType::Set { members } => format!("set({})", quoted(members)),
            ColumnType::Json => "json".into(),
            ColumnType::Geometry { kind } => kind.clone(),
        }
    }
}

impl ColumnType {
    /// Whether the column holds JSON documents: MySQL's JSON or MariaDB's (LONGTEXT marked
    /// `json`).
    pub fn is_json(&self) -> bool {
        matches!(
            self,
            ColumnType::Json | ColumnType::String { json: true, .. }
        )
    }

    /// The type as the server reports it in `information_schema.COLUMNS.COLUMN_TYPE`:
    /// [`ColumnType::sql_name`], except `longtext` for MariaDB's JSON (what Debezium's
    /// MariaDB connector reads from the server, too).
    pub fn storage_sql_name(&self) -> String {
        match self {
            ColumnType::String {
                kind,
                length,
                charset,
                json: true,
            } => ColumnType::String {
                kind: *kind,
                length: *length,
                charset: charset.clone(),
                json: false,
            }
            .sql_name(),
            other => other.sql_name(),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn with_fsp(name: &str, fsp: u8) -> String {
    if fsp == 0 {
        name.to_string()
    } else {
        format!("{name}({fsp})")
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Column {
    /// Column name, as the server spells it.
    pub name: String,
    /// The column's type.
    #[serde(flatten)]
    pub ty: ColumnType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// What an `INSERT` that does not name the column stores in it, as far as binlake
    /// knows it: row images written with `binlog_row_image = MINIMAL` leave such columns
    /// out.
    #[serde(default, skip_serializing_if = "ColumnDefault::is_unknown")]
    pub default: ColumnDefault,
}

/// A column's default value (`DEFAULT`), when binlake knows it exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnDefault {
    /// Not known: an expression (`CURRENT_TIMESTAMP`, `uuid()`), a generated or
    /// `AUTO_INCREMENT` column, the implicit default of a `NOT NULL` column, a type whose
    /// literal binlake does not convert, or a schema from before defaults were tracked.
    #[default]
    Unknown,
    /// NULL (`DEFAULT NULL`, or a nullable column without `DEFAULT`).
    Null,
    /// A constant, as the server's text protocol shows the value (`7`, `abc`, `a,b`).
    Literal(String),
}

impl ColumnDefault {
    /// True for [`ColumnDefault::Unknown`].
    pub fn is_unknown(&self) -> bool {
        matches!(self, ColumnDefault::Unknown)
    }
}

impl Column {
    /// A column from its parts, its default unknown.
    pub fn new(name: impl Into<String>, ty: ColumnType, nullable: bool) -> Self {
        Column {
            name: name.into(),
            ty,
            nullable,
            default: ColumnDefault::Unknown,
        }
    }

    /// The column with `default` as its default.
    pub fn with_default(self, default: ColumnDefault) -> Self {
        Column { default, ..self }
    }
}

/// A captured table: its columns in table order and its primary key.
///
/// Rows ([`Row`](crate::Row)) hold one [`Value`](crate::Value) per column, in this order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableSchema {
    /// Database (schema) name.
    pub database: String,
    /// Table name.
    pub table: String,
    /// Columns in table order.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary-key columns, in key order. Empty for a table
    /// without a primary key.
    pub primary_key: Vec<usize>,
}

impl TableSchema {
    /// `db.table`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    /// The index of the column called `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The primary-key columns, in key order.
    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.primary_key.iter().map(|&i| &self.columns[i])
    }

    /// A stable identifier of this exact schema: FNV-1a (64-bit, hex) of its JSON form.
    /// Messages name their table's schema by it (header `binlake.schema`); the schema
    /// itself is in the `<name>.schemas` topic under this key.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut h: u64 = 0xcbf29ce484222325;
        for b in json {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        format!("{h:016x}")
    }

    /// Whether an update from `before` to `after` changes the primary key.
    pub fn key_changed(&self, before: &[crate::Value], after: &[crate::Value]) -> bool {
        self.primary_key
            .iter()
            .any(|&i| before.get(i) != after.get(i))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn longtext(json: bool) -> ColumnType {
        ColumnType::String {
            kind: StringKind::Long,
            length: u32::MAX,
            charset: "utf8mb4".into(),
            json,
        }
    }

    /// Schemas recorded before the `json` marker existed (schema histories, the
    /// `<name>.schemas` topic) read back unmarked, and unmarked schemas serialize, and so
    /// fingerprint, exactly as before.
    #[test]
    fn json_marker_is_optional_in_the_serialized_form() {
        let old = r#"{"name":"doc","type":"string","kind":"long","length":4294967295,"charset":"utf8mb4","nullable":true}"#;
        let c: Column = serde_json::from_str(old).unwrap();
        assert_eq!(c, Column::new("doc", longtext(false), true));
        assert_eq!(serde_json::to_string(&c).unwrap(), old);
        let marked = serde_json::to_string(&Column::new("doc", longtext(true), true)).unwrap();
        assert!(marked.contains(r#""json":true"#), "{marked}");
        let back: Column = serde_json::from_str(&marked).unwrap();
        assert_eq!(back.ty, longtext(true));
        assert!(back.ty.is_json() && ColumnType::Json.is_json() && !longtext(false).is_json());
        assert_eq!(back.ty.sql_name(), "json");
        assert_eq!(back.ty.storage_sql_name(), "longtext");
    }
}
