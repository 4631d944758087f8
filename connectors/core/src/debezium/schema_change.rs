//! Schema-change records: the value Debezium's MySQL connector writes to its schema-change
//! topic for each DDL statement.
//!
//! `{"source":{…},"ts_ms":…,"databaseName":"shop","schemaName":null,"ddl":"ALTER TABLE …",
//! "tableChanges":[{"type":"ALTER","id":"\"shop\".\"orders\"","table":{…}}]}`, where each
//! table is described as Debezium's `JsonTableChangeSerializer` does: default charset,
//! primary-key column names and, per column, `name`, `jdbcType` (`java.sql.Types`),
//! `typeName`, `typeExpression`, `charsetName`, `length`, `scale`, `position` (1-based),
//! `optional`, `enumValues`. What binlake's schema does not track is written as Debezium
//! writes an absent value: `autoIncremented` and `generated` are `false`, `comment` is
//! null; `hasDefaultValue`/`defaultValueExpression` are the default where binlake knows
//! it exactly (`NULL` or the literal, see [`ColumnDefault`]), else `false`/null. A dropped table has
//! `"table": null`.

use serde_json::{Value as Json, json};

use super::DebeziumOptions;
use crate::event::{SchemaChange, TableChange};
use crate::schema::{ColumnDefault, ColumnType, StringKind, TableSchema};

/// The record value for `change`, written at `now_ms`.
pub fn schema_change_value(opts: &DebeziumOptions, change: &SchemaChange, now_ms: i64) -> Json {
    json!({
        "source": {
            "version": opts.version,
            "connector": opts.flavor.connector_name(),
            "name": opts.server_name,
            "ts_ms": change.ts_us / 1000,
            "snapshot": "false",
            "db": change.database,
            "server_id": change.server_id,
            "gtid": change.gtid.as_ref().map(ToString::to_string),
            "file": change.position.file,
            "pos": change.position.pos,
            "row": 0,
        },
        "ts_ms": now_ms,
        "databaseName": change.database,
        "schemaName": null,
        "ddl": change.ddl,
        "tableChanges": change.tables.iter().map(table_change).collect::<Vec<_>>(),
    })
}

fn table_change(t: &TableChange) -> Json {
    json!({
        "type": t.kind.as_str(),
        "id": format!("\"{}\".\"{}\"", t.database, t.table),
        "table": t.schema.as_deref().map(|s| table(s, t.charset.as_deref())),
    })
}

fn table(s: &TableSchema, charset: Option<&str>) -> Json {
    json!({
        "defaultCharsetName": charset,
        "primaryKeyColumnNames": s.key_columns().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        "columns": s.columns.iter().enumerate().map(|(i, c)| {
            let (length, scale) = length_scale(&c.ty);
            let type_name = type_name(&c.ty);
            json!({
                "name": c.name,
                "jdbcType": jdbc_type(&c.ty),
                "nativeType": null,
                "typeName": type_name,
                "typeExpression": type_name,
                "charsetName": match &c.ty {
                    ColumnType::String { charset, .. } => Some(charset.as_str()),
                    _ => None,
                },
                "length": length,
                "scale": scale,
                "position": i + 1,
                "optional": c.nullable,
                "autoIncremented": false,
                "generated": false,
                "comment": null,
                "hasDefaultValue": !c.default.is_unknown(),
                "defaultValueExpression": match &c.default {
                    ColumnDefault::Literal(t) => Some(t.as_str()),
                    ColumnDefault::Null => Some("NULL"),
                    ColumnDefault::Unknown => None,
                },
                "enumValues": match &c.ty {
                    ColumnType::Enum { members } | ColumnType::Set { members } => {
                        Some(members.iter().map(|m| format!("'{}'", m.replace('\'', "''"))).collect::<Vec<_>>())
                    }
                    _ => None,
                },
            })
        }).collect::<Vec<_>>(),
        "attributes": [],
        "comment": null,
    })
}

/// The upper-case type name without its parameters, as Debezium's DDL parser reports it
/// (`INT UNSIGNED`, `VARCHAR`, `DECIMAL`, `ENUM`). MariaDB's JSON is `LONGTEXT`, the type
/// Debezium's MariaDB connector reads from the server's table definition.
fn type_name(ty: &ColumnType) -> String {
    let sql = ty.storage_sql_name().to_ascii_uppercase();
    let unsigned = sql.ends_with(" UNSIGNED");
    let base = sql
        .split('(')
        .next()
        .unwrap_or(&sql)
        .trim_end_matches(" UNSIGNED");
    if unsigned {
        format!("{base} UNSIGNED")
    } else {
        base.to_string()
    }
}

/// `(length, scale)` as Debezium reports them: precision and scale of DECIMAL, the
/// declared length of CHAR/VARCHAR/BINARY/VARBINARY/BIT, the fraction digits of temporal
/// types.
fn length_scale(ty: &ColumnType) -> (Option<u32>, Option<u32>) {
    match ty {
        ColumnType::Decimal { precision, scale } => {
            (Some(u32::from(*precision)), Some(u32::from(*scale)))
        }
        ColumnType::String {
            kind: StringKind::Char | StringKind::VarChar,
            length,
            ..
        }
        | ColumnType::Bytes {
            kind: StringKind::Char | StringKind::VarChar,
            length,
        } => (Some(*length), None),
        ColumnType::Bit { width } => (Some(u32::from(*width)), None),
        ColumnType::Time { fsp } | ColumnType::DateTime { fsp } | ColumnType::Timestamp { fsp }
            if *fsp > 0 =>
        {
            (Some(u32::from(*fsp)), None)
        }
        _ => (None, None),
    }
}

/// The `java.sql.Types` code Debezium's MySQL DDL parser gives the type.
fn jdbc_type(ty: &ColumnType) -> i32 {
    match ty {
        ColumnType::Integer { bits: 8, .. } => -6,
        ColumnType::Integer { bits: 16, .. } => 5,
        ColumnType::Integer { bits: 24 | 32, .. } => 4,
        ColumnType::Integer { .. } => -5,
        ColumnType::Float => 6,
        ColumnType::Double => 8,
        ColumnType::Decimal { .. } => 3,
        ColumnType::Bit { .. } => -7,
        ColumnType::Date => 91,
        ColumnType::Time { .. } => 92,
        ColumnType::DateTime { .. } => 93,
        ColumnType::Timestamp { .. } => 2014,
        ColumnType::Year => 4,
        ColumnType::String {
            kind: StringKind::Char,
            ..
        }
        | ColumnType::Enum { .. }
        | ColumnType::Set { .. } => 1,
        ColumnType::String { .. } => 12,
        ColumnType::Bytes {
            kind: StringKind::Char,
            ..
        } => -2,
        ColumnType::Bytes {
            kind: StringKind::VarChar,
            ..
        } => -3,
        ColumnType::Bytes { .. } => 2004,
        ColumnType::Json | ColumnType::Geometry { .. } => 1111,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::event::TableChangeKind;
    use crate::position::BinlogFilePos;
    use crate::schema::{Column, Flavor};

    /// An ALTER of `shop.orders` (four columns) and a DROP of `shop.old`.
    fn example() -> SchemaChange {
        let schema = TableSchema {
            database: "shop".into(),
            table: "orders".into(),
            columns: vec![
                Column::new(
                    "id",
                    ColumnType::Integer {
                        bits: 64,
                        unsigned: true,
                    },
                    false,
                ),
                Column::new(
                    "price",
                    ColumnType::Decimal {
                        precision: 10,
                        scale: 2,
                    },
                    true,
                ),
                Column::new(
                    "state",
                    ColumnType::Enum {
                        members: vec!["new".into(), "it's".into()],
                    },
                    false,
                )
                .with_default(crate::ColumnDefault::Literal("new".into())),
                Column::new(
                    "note",
                    ColumnType::String {
                        kind: StringKind::VarChar,
                        length: 40,
                        charset: "latin1".into(),
                        json: false,
                    },
                    true,
                ),
            ],
            primary_key: vec![0],
        };
        SchemaChange {
            database: "shop".into(),
            ddl: "ALTER TABLE orders ADD note VARCHAR(40); DROP TABLE old".into(),
            gtid: None,
            position: BinlogFilePos::new("mariadb-bin.000001".to_string(), 4),
            server_id: 1,
            ts_us: 1_700_000_000_000_000,
            tables: vec![
                TableChange {
                    kind: TableChangeKind::Alter,
                    database: "shop".into(),
                    table: "orders".into(),
                    schema: Some(Arc::new(schema)),
                    charset: Some("utf8mb4".into()),
                    rewrites_rows: false,
                    replaced: false,
                },
                TableChange {
                    kind: TableChangeKind::Drop,
                    database: "shop".into(),
                    table: "old".into(),
                    schema: None,
                    charset: None,
                    rewrites_rows: false,
                    replaced: false,
                },
            ],
            history: None,
        }
    }

    #[test]
    fn alter_and_drop_are_described_as_debezium_does() {
        let change = example();
        let opts = DebeziumOptions::new("cdc", Flavor::MariaDb);
        let v = schema_change_value(&opts, &change, 1);
        assert_eq!(v["source"]["name"], "cdc");
        assert_eq!(v["databaseName"], "shop");
        let t = &v["tableChanges"][0];
        assert_eq!(t["type"], "ALTER");
        assert_eq!(t["id"], "\"shop\".\"orders\"");
        assert_eq!(t["table"]["defaultCharsetName"], "utf8mb4");
        let state = &t["table"]["columns"][2];
        assert_eq!(
            (&state["hasDefaultValue"], &state["defaultValueExpression"]),
            (&json!(true), &json!("new"))
        );
        assert_eq!(t["table"]["columns"][3]["hasDefaultValue"], false);
        assert_eq!(t["table"]["primaryKeyColumnNames"], json!(["id"]));
        let cols = &t["table"]["columns"];
        assert_eq!(cols[0]["typeName"], "BIGINT UNSIGNED");
        assert_eq!(cols[0]["jdbcType"], -5);
        assert_eq!(cols[0]["optional"], false);
        assert_eq!(cols[1]["typeName"], "DECIMAL");
        assert_eq!(
            (cols[1]["length"].clone(), cols[1]["scale"].clone()),
            (json!(10), json!(2))
        );
        assert_eq!(cols[2]["enumValues"], json!(["'new'", "'it''s'"]));
        assert_eq!(cols[3]["charsetName"], "latin1");
        assert_eq!(cols[3]["length"], 40);
        assert_eq!(cols[3]["position"], 4);
        assert_eq!(
            v["tableChanges"][1],
            json!({"type": "DROP", "id": "\"shop\".\"old\"", "table": null})
        );
    }

    #[test]
    fn schema_changes_conform_to_their_connect_schema() {
        let change = example();
        for flavor in [Flavor::MariaDb, Flavor::Mysql] {
            let opts = DebeziumOptions::new("cdc", flavor);
            let v = schema_change_value(&opts, &change, 1);
            let schema = super::super::connect::schema_change_value_schema(&opts);
            super::super::connect::conforms(&schema, &v).unwrap_or_else(|e| panic!("{e}"));
            // What the schema requires of the source is there.
            assert_eq!(
                (
                    &v["source"]["server_id"],
                    &v["source"]["row"],
                    &v["source"]["snapshot"]
                ),
                (&json!(1), &json!(0), &json!("false"))
            );
        }
    }
}
