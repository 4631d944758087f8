//! Codec tests: golden messages in `schemas/examples/`, JSON Schema validation, and
//! property-tested round trips of every value type.
//!
//! Set `BINLAKE_BLESS=1` to (re)write the golden files after a deliberate format change,
//! then review the diff.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value as Json;

use super::*;
use crate::event::{SnapshotMarker, TransactionInfo};
use crate::position::{EventPosition, Gtid};
use crate::schema::StringKind;
use crate::temporal::{Date, DateTime};
use crate::{MariaDbGtid, Row};

const TS: i64 = 1_700_000_000_123_456;

fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn utf8(kind: StringKind, length: u32) -> ColumnType {
    ColumnType::String {
        kind,
        length,
        charset: "utf8mb4".into(),
        json: false,
    }
}

fn int(bits: u8, unsigned: bool) -> ColumnType {
    ColumnType::Integer { bits, unsigned }
}

/// A table with a column of every type; `id` is the primary key.
pub(crate) fn type_matrix() -> Arc<TableSchema> {
    let members = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cols = vec![
        Column::new("id", int(32, false), false),
        Column::new("c_tinyint", int(8, false), true),
        Column::new("c_tinyint_u", int(8, true), true),
        Column::new("c_smallint", int(16, false), true),
        Column::new("c_smallint_u", int(16, true), true),
        Column::new("c_mediumint", int(24, false), true),
        Column::new("c_mediumint_u", int(24, true), true),
        Column::new("c_int_u", int(32, true), true),
        Column::new("c_bigint", int(64, false), true),
        Column::new("c_bigint_u", int(64, true), true),
        Column::new("c_float", ColumnType::Float, true),
        Column::new("c_double", ColumnType::Double, true),
        Column::new(
            "c_decimal",
            ColumnType::Decimal {
                precision: 65,
                scale: 30,
            },
            true,
        ),
        Column::new(
            "c_decimal_5_2",
            ColumnType::Decimal {
                precision: 5,
                scale: 2,
            },
            true,
        ),
        Column::new("c_bit1", ColumnType::Bit { width: 1 }, true),
        Column::new("c_bit10", ColumnType::Bit { width: 10 }, true),
        Column::new("c_bit64", ColumnType::Bit { width: 64 }, true),
        Column::new("c_date", ColumnType::Date, true),
        Column::new("c_time", ColumnType::Time { fsp: 6 }, true),
        Column::new("c_datetime", ColumnType::DateTime { fsp: 0 }, true),
        Column::new("c_datetime3", ColumnType::DateTime { fsp: 3 }, true),
        Column::new("c_datetime6", ColumnType::DateTime { fsp: 6 }, true),
        Column::new("c_timestamp", ColumnType::Timestamp { fsp: 6 }, true),
        Column::new("c_year", ColumnType::Year, true),
        Column::new("c_char", utf8(StringKind::Char, 10), true),
        Column::new("c_varchar", utf8(StringKind::VarChar, 255), true),
        Column::new(
            "c_latin1",
            ColumnType::String {
                kind: StringKind::VarChar,
                length: 20,
                charset: "latin1".into(),
                json: false,
            },
            true,
        ),
        Column::new("c_text", utf8(StringKind::Text, 65_535), true),
        Column::new(
            "c_binary",
            ColumnType::Bytes {
                kind: StringKind::Char,
                length: 4,
            },
            true,
        ),
        Column::new(
            "c_varbinary",
            ColumnType::Bytes {
                kind: StringKind::VarChar,
                length: 16,
            },
            true,
        ),
        Column::new(
            "c_blob",
            ColumnType::Bytes {
                kind: StringKind::Text,
                length: 65_535,
            },
            true,
        ),
        Column::new(
            "c_enum",
            ColumnType::Enum {
                members: members(&["small", "medium", "large"]),
            },
            true,
        ),
        Column::new(
            "c_set",
            ColumnType::Set {
                members: members(&["a", "b", "c"]),
            },
            true,
        ),
        Column::new("c_json", ColumnType::Json, true),
        Column::new(
            "c_geometry",
            ColumnType::Geometry {
                kind: "geometry".into(),
            },
            true,
        ),
        Column::new("c_date_nn", ColumnType::Date, false),
        Column::new("c_datetime_nn", ColumnType::DateTime { fsp: 0 }, false),
    ];
    Arc::new(TableSchema {
        database: "inventory".into(),
        table: "type_matrix".into(),
        columns: cols,
        primary_key: vec![0],
    })
}

/// POINT(1 2) with SRID 4326, in MySQL's internal form.
fn point() -> Vec<u8> {
    let mut g = 4326u32.to_le_bytes().to_vec();
    g.push(1); // little-endian WKB
    g.extend_from_slice(&1u32.to_le_bytes()); // wkbPoint
    g.extend_from_slice(&1.0f64.to_le_bytes());
    g.extend_from_slice(&2.0f64.to_le_bytes());
    g
}

/// A row of edge values, one per column of [`type_matrix`].
fn edge_row(id: i64) -> Row {
    let dt = |y, mo, d, h, mi, s, us| {
        Value::DateTime(DateTime {
            date: Date::new(y, mo, d),
            hour: h,
            minute: mi,
            second: s,
            micros: us,
        })
    };
    vec![
        Value::Int(id),
        Value::Int(-128),
        Value::UInt(255),
        Value::Int(-32_768),
        Value::UInt(65_535),
        Value::Int(-8_388_608),
        Value::UInt(16_777_215),
        Value::UInt(4_294_967_295),
        Value::Int(i64::MIN),
        Value::UInt(u64::MAX),
        Value::Float(3.4028235e38),
        Value::Double(-2.2250738585072014e-308),
        Value::Decimal(format!(
            "-{}.{}",
            "9".repeat(35),
            "123456789".repeat(3) + "012"
        )),
        Value::Decimal("-999.99".into()),
        Value::Bit(1),
        Value::Bit(0b10_0000_0001),
        Value::Bit(u64::MAX),
        Value::Date(Date::new(9999, 12, 31)),
        Value::Time(-(838 * 3600 + 59 * 60 + 59) * 1_000_000),
        dt(1000, 1, 1, 0, 0, 0, 0),
        dt(2024, 2, 29, 23, 59, 59, 999_000),
        dt(1969, 12, 31, 23, 59, 59, 999_999),
        Value::Timestamp(2_147_483_647_999_999),
        Value::Year(2155),
        Value::String("fixed".into()),
        Value::String("unicode: 日本語 🦀 \"quoted\" \\ \n tab\t".into()),
        Value::String("café".into()),
        Value::String("long text".into()),
        Value::Bytes(vec![0, 1, 254, 255]),
        Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef]),
        Value::Bytes(b"\x00blob\xff".to_vec()),
        Value::Enum("large".into()),
        Value::Set("a,c".into()),
        Value::Json(r#"{"a":[1,2.5,{"b":null}],"ü":"😀"}"#.into()),
        Value::Geometry(point()),
        Value::Date(Date::new(1970, 1, 2)),
        dt(2000, 1, 1, 12, 0, 0, 0),
    ]
}

fn null_row(id: i64) -> Row {
    let t = type_matrix();
    let mut row: Row = t.columns.iter().map(|_| Value::Null).collect();
    row[0] = Value::Int(id);
    let n = row.len();
    row[n - 2] = Value::Date(Date::new(2024, 1, 1));
    row[n - 1] = Value::DateTime(DateTime {
        date: Date::new(2024, 1, 1),
        hour: 0,
        minute: 0,
        second: 0,
        micros: 0,
    });
    row
}

fn source(row: u32) -> SourceInfo {
    SourceInfo {
        server_id: 1,
        gtid: Some("0-1-42".parse().unwrap()),
        position: EventPosition {
            file: "mariadb-bin.000003".into(),
            pos: 1234,
            row,
        },
        ts_us: 1_700_000_000_000_000,
        snapshot: SnapshotMarker::False,
        thread: Some(7),
        query: None,
    }
}

fn event(op: Op, before: Option<Row>, after: Option<Row>) -> ChangeEvent {
    ChangeEvent {
        op,
        table: type_matrix(),
        before,
        after,
        source: source(0),
        transaction: Some(TransactionInfo {
            id: "0-1-42".into(),
            total_order: 1,
            data_collection_order: 1,
        }),
    }
}

fn opts() -> DebeziumOptions {
    DebeziumOptions {
        version: "0.1.0".into(),
        ..DebeziumOptions::new("shop", Flavor::MariaDb)
    }
}

fn encode(codec: &TableCodec, e: &ChangeEvent) -> (Option<Json>, Json) {
    let mut k = Vec::new();
    let key = codec
        .encode_key(e, &mut k)
        .unwrap()
        .then(|| serde_json::from_slice(&k).unwrap());
    let mut v = Vec::new();
    codec.encode_value(e, TS, &mut v).unwrap();
    (
        key,
        serde_json::from_slice(&v).expect("encoder writes valid JSON"),
    )
}

fn validator(file: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_path(&format!("schemas/{file}"))).unwrap();
    let schema: Json = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

static ENVELOPE: std::sync::LazyLock<jsonschema::Validator> =
    std::sync::LazyLock::new(|| validator("envelope.schema.json"));

fn assert_valid(v: &jsonschema::Validator, doc: &Json, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what} does not validate: {errors:#?}");
}

/// Compares `actual` with the golden file, or writes it with BINLAKE_BLESS=1.
fn golden(name: &str, actual: &Json) {
    let path = repo_path(&format!("schemas/examples/{name}.json"));
    if std::env::var_os("BINLAKE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with BINLAKE_BLESS=1 to create it)",
            path.display()
        )
    });
    let expected: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(
        &expected,
        actual,
        "{name}: encoded message differs from {}; if the change is deliberate, rerun with BINLAKE_BLESS=1 and review the diff",
        path.display()
    );
}

fn message(key: Option<Json>, value: Json) -> Json {
    serde_json::json!({"key": key, "value": value})
}

#[test]
fn golden_messages_for_every_type() {
    let key_v = validator("key.schema.json");
    let env_v = validator("envelope.schema.json");
    let mut read = event(Op::Read, None, Some(edge_row(1)));
    read.source.snapshot = SnapshotMarker::First;
    read.transaction = None;
    let mut truncate = event(Op::Truncate, None, None);
    truncate.source.query = Some("TRUNCATE TABLE type_matrix".into());
    let cases = [
        (
            "type_matrix.create",
            event(Op::Create, None, Some(edge_row(1))),
        ),
        (
            "type_matrix.update",
            event(Op::Update, Some(edge_row(1)), Some(null_row(1))),
        ),
        (
            "type_matrix.delete",
            event(Op::Delete, Some(null_row(1)), None),
        ),
        ("type_matrix.read", read),
        ("type_matrix.truncate", truncate),
        ("type_matrix.update.minimal", minimal_update()),
    ];
    for schemas in [false, true] {
        let codec = TableCodec::new(
            type_matrix(),
            Arc::new(DebeziumOptions { schemas, ..opts() }),
        );
        for (name, e) in &cases {
            let (key, value) = encode(&codec, e);
            if let Some(k) = &key {
                assert_valid(&key_v, k, name);
            }
            assert_valid(&env_v, &value, name);
            let name = if schemas {
                format!("{name}.with-schema")
            } else {
                name.to_string()
            };
            // The with-schema form is long; an example of it (and of its form for absent
            // columns) is enough to read.
            if !schemas || name.starts_with("type_matrix.create") || name.contains("minimal") {
                golden(&name, &message(key, value));
            }
            // Every form decodes back to the same event.
            let mut v = Vec::new();
            codec.encode_value(e, TS, &mut v).unwrap();
            let d = codec.decode_value(&v).unwrap();
            assert_eq!(&d.event, e, "{name}");
            assert_eq!(d.ts_us, TS);
        }
    }
}

/// An update as `binlog_row_image = MINIMAL` writes it: the key in the before-image, the
/// changed columns in the after-image (the decoder takes the key from the before-image).
fn minimal_update() -> ChangeEvent {
    let full = edge_row(1);
    let mut before = vec![Value::Absent; full.len()];
    before[0] = full[0].clone();
    let mut after = before.clone();
    after[1] = Value::Int(-7);
    after[2] = Value::Null;
    event(Op::Update, Some(before), Some(after))
}

#[test]
fn absent_columns_are_left_out_named_and_decoded_back() {
    for schemas in [false, true] {
        let codec = TableCodec::new(
            type_matrix(),
            Arc::new(DebeziumOptions { schemas, ..opts() }),
        );
        let e = minimal_update();
        let (_, value) = encode(&codec, &e);
        let payload = if schemas { &value["payload"] } else { &value };
        let after = payload["after"].as_object().unwrap();
        // The changed columns, a NULL among them, and the key; nothing else.
        let mut keys = after.keys().collect::<Vec<_>>();
        keys.sort();
        assert_eq!(keys, ["c_tinyint", "c_tinyint_u", "id"]);
        assert!(after["c_tinyint_u"].is_null());
        let absent_after = payload["absent"]["after"].as_array().unwrap();
        assert_eq!(absent_after.len(), type_matrix().columns.len() - 3);
        assert!(!absent_after.contains(&Json::from("c_tinyint_u")));
        assert_eq!(
            payload["absent"]["before"].as_array().unwrap().len(),
            absent_after.len() + 2
        );
        if schemas {
            // Connect's JsonConverter needs every left-out field optional.
            let fields = value["schema"]["fields"][1]["fields"].as_array().unwrap();
            assert!(fields.iter().all(|f| f["optional"] == Json::Bool(true)));
            assert_eq!(value["schema"]["fields"][8]["field"], "absent");
        }
        let mut v = Vec::new();
        codec.encode_value(&e, TS, &mut v).unwrap();
        assert_eq!(codec.decode_value(&v).unwrap().event, e);
        // Full images keep the schema and shape they always had.
        let full = event(Op::Update, Some(edge_row(1)), Some(edge_row(1)));
        let (_, value) = encode(&codec, &full);
        let payload = if schemas { &value["payload"] } else { &value };
        assert!(payload.get("absent").is_none());
        // A field left out without `absent` naming it is an error, as before.
        let mut tree: Json = serde_json::from_slice(&v).unwrap();
        let p = if schemas {
            &mut tree["payload"]
        } else {
            &mut tree
        };
        p["absent"]["after"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n != "c_double");
        let err = codec
            .decode_value(&serde_json::to_vec(&tree).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("c_double"), "{err}");
        // A key must be there.
        let mut no_key = minimal_update();
        if let Some(a) = no_key.after.as_mut() {
            a[0] = Value::Absent;
        }
        no_key.before = None;
        no_key.op = Op::Create;
        let err = codec
            .encode_key(&no_key, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("primary-key column id"), "{err}");
    }
}

#[test]
fn known_defaults_are_declared_in_the_connect_schema() {
    let t = TableSchema {
        database: "shop".into(),
        table: "t".into(),
        columns: vec![
            Column::new("id", int(32, false), false),
            Column::new("n", int(32, false), false)
                .with_default(ColumnDefault::Literal("7".into())),
            Column::new("s", utf8(StringKind::VarChar, 9), true)
                .with_default(ColumnDefault::Literal("it's".into())),
            Column::new("u", int(64, true), true).with_default(ColumnDefault::Literal("5".into())),
            Column::new("z", utf8(StringKind::VarChar, 9), true).with_default(ColumnDefault::Null),
        ],
        primary_key: vec![0],
    };
    let codec = TableCodec::new(
        Arc::new(t),
        Arc::new(DebeziumOptions {
            schemas: true,
            ..opts()
        }),
    );
    let schema: Json = serde_json::from_str(codec.value_schema()).unwrap();
    let fields = &schema["fields"][1]["fields"];
    assert_eq!(fields[1]["default"], 7);
    assert_eq!(fields[2]["default"], "it's");
    // Not plain in Connect (BIGINT UNSIGNED is a Decimal), or nothing to declare.
    assert!(fields[3].get("default").is_none());
    assert!(fields[4].get("default").is_none());
    assert!(fields[0].get("default").is_none());
}

#[test]
fn golden_string_decimals_and_long_unsigned() {
    let o = DebeziumOptions {
        decimal_handling: DecimalHandling::String,
        bigint_unsigned_handling: BigintUnsignedHandling::Long,
        ..opts()
    };
    let codec = TableCodec::new(type_matrix(), Arc::new(o));
    let e = event(Op::Create, None, Some(edge_row(2)));
    let (key, value) = encode(&codec, &e);
    assert_valid(
        &validator("envelope.schema.json"),
        &value,
        "string decimals",
    );
    assert_eq!(value["after"]["c_decimal_5_2"], "-999.99");
    assert_eq!(
        value["after"]["c_bigint_u"], -1,
        "long mode wraps like Debezium"
    );
    golden("type_matrix.create.decimal-string", &message(key, value));
    let mut v = Vec::new();
    codec.encode_value(&e, TS, &mut v).unwrap();
    assert_eq!(
        codec.decode_value(&v).unwrap().event,
        e,
        "binlake decodes long mode back exactly"
    );
}

#[test]
fn zero_dates_follow_debeziums_rule() {
    let codec = TableCodec::new(type_matrix(), Arc::new(opts()));
    let mut row = null_row(3);
    let n = row.len();
    let zero = Date::new(0, 0, 0);
    row[17] = Value::Date(zero); // c_date, nullable
    row[n - 2] = Value::Date(Date::new(2023, 2, 30)); // c_date_nn, invalid
    row[n - 1] = Value::DateTime(DateTime {
        date: zero,
        hour: 0,
        minute: 0,
        second: 0,
        micros: 0,
    });
    let (_, value) = encode(&codec, &event(Op::Create, None, Some(row)));
    assert_eq!(
        value["after"]["c_date"],
        Json::Null,
        "nullable zero date → null"
    );
    assert_eq!(
        value["after"]["c_date_nn"], 0,
        "NOT NULL invalid date → epoch"
    );
    assert_eq!(
        value["after"]["c_datetime_nn"], 0,
        "NOT NULL zero datetime → epoch"
    );
    golden("type_matrix.zero-dates", &value);
}

#[test]
fn zero_timestamps_follow_debeziums_rule() {
    let table = Arc::new(TableSchema {
        database: "db".into(),
        table: "zt".into(),
        columns: vec![
            Column::new("id", int(32, false), false),
            Column::new("ts", ColumnType::Timestamp { fsp: 0 }, true),
            Column::new("ts_nn", ColumnType::Timestamp { fsp: 3 }, false),
        ],
        primary_key: vec![0],
    });
    let codec = TableCodec::new(table.clone(), Arc::new(opts()));
    let row = vec![
        Value::Int(1),
        Value::Timestamp(temporal::ZERO_TIMESTAMP),
        Value::Timestamp(temporal::ZERO_TIMESTAMP),
    ];
    let mut e = event(Op::Create, None, Some(row));
    e.table = table;
    let (_, value) = encode(&codec, &e);
    assert_eq!(
        value["after"]["ts"],
        Json::Null,
        "nullable zero timestamp → null"
    );
    assert_eq!(
        value["after"]["ts_nn"], "1970-01-01T00:00:00.000Z",
        "NOT NULL zero timestamp → the epoch"
    );
    // Back: NULL, and the zero timestamp (the epoch is not a TIMESTAMP value).
    let mut v = Vec::new();
    codec.encode_value(&e, TS, &mut v).unwrap();
    let back = codec.decode_value(&v).unwrap().event;
    assert_eq!(
        back.after.unwrap()[1..],
        [Value::Null, Value::Timestamp(temporal::ZERO_TIMESTAMP)]
    );
}

/// MariaDB's JSON (LONGTEXT marked `json`) is in messages what Debezium's MariaDB
/// connector makes of a LONGTEXT: a plain string, no `io.debezium.data.Json` name; the
/// marker survives a decode through the schema, not through the message.
#[test]
fn mariadb_json_is_a_plain_string_in_messages() {
    let longtext = |json: bool| ColumnType::String {
        kind: StringKind::Long,
        length: u32::MAX,
        charset: "utf8mb4".into(),
        json,
    };
    let table = |json: bool| {
        Arc::new(TableSchema {
            database: "shop".into(),
            table: "docs".into(),
            columns: vec![
                Column::new("id", int(32, false), false),
                Column::new("doc", longtext(json), true),
            ],
            primary_key: vec![0],
        })
    };
    let row = vec![Value::Int(1), Value::String(r#"{"a": [1, 2]}"#.into())];
    let mut out = Vec::new();
    for json in [false, true] {
        let e = ChangeEvent {
            table: table(json),
            ..event(Op::Create, None, Some(row.clone()))
        };
        let opts = DebeziumOptions {
            schemas: true,
            ..opts()
        };
        let codec = TableCodec::new(table(json), Arc::new(opts));
        let (_, value) = encode(&codec, &e);
        let mut v = Vec::new();
        codec.encode_value(&e, TS, &mut v).unwrap();
        assert_eq!(
            codec.decode_value(&v).unwrap().event.after,
            Some(row.clone())
        );
        out.push(value);
    }
    assert_eq!(
        out[0], out[1],
        "the json marker changes nothing in the message"
    );
    assert_eq!(out[1]["payload"]["after"]["doc"], r#"{"a": [1, 2]}"#);
    let after = &out[1]["schema"]["fields"][1]["fields"];
    assert_eq!(
        after[1],
        serde_json::json!({"type": "string", "optional": true, "field": "doc"}),
        "{after}"
    );
    assert_eq!(table(true).columns[1].ty.sql_name(), "json");
    assert_eq!(table(true).columns[1].ty.storage_sql_name(), "longtext");
}

#[test]
fn mismatched_values_are_errors_that_name_the_column() {
    let codec = TableCodec::new(type_matrix(), Arc::new(opts()));
    let mut row = edge_row(4);
    row[12] = Value::Decimal("1.5".into()); // DECIMAL(65,30) needs 30 fraction digits
    let err = codec
        .encode_value(&event(Op::Create, None, Some(row)), TS, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("inventory.type_matrix.c_decimal"), "{err}");
    let mut row = edge_row(4);
    row[1] = Value::String("x".into());
    let err = codec
        .encode_value(&event(Op::Create, None, Some(row)), TS, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("c_tinyint") && err.contains("string"), "{err}");
    let mut row = edge_row(4);
    row[0] = Value::Null;
    assert!(
        codec
            .encode_value(&event(Op::Create, None, Some(row)), TS, &mut Vec::new())
            .is_err()
    );
}

#[test]
fn decoding_takes_fields_in_any_order_skips_unknown_ones_and_names_missing_ones() {
    let codec = TableCodec::new(type_matrix(), Arc::new(opts()));
    let mut row = edge_row(5);
    let before = row.clone();
    row[1] = Value::Int(-7);
    let e = event(Op::Update, Some(before), Some(row));
    let mut v = Vec::new();
    codec.encode_value(&e, TS, &mut v).unwrap();
    // Through a JSON tree: object keys come out sorted, not in schema order.
    let mut tree: Json = serde_json::from_slice(&v).unwrap();
    tree["after"]["zz_unknown"] = serde_json::json!({"nested": [1, 2]});
    tree["source"]["extra"] = Json::from("x");
    tree["future_field"] = Json::from(1);
    let reordered = serde_json::to_vec(&tree).unwrap();
    assert_eq!(codec.decode_value(&reordered).unwrap().event, e);
    let mut k = Vec::new();
    codec.encode_key(&e, &mut k).unwrap();
    assert_eq!(codec.decode_key(&k).unwrap(), vec![Value::Int(5)]);
    // A missing column is an error naming it.
    tree["after"].as_object_mut().unwrap().remove("c_tinyint");
    let err = codec
        .decode_value(&serde_json::to_vec(&tree).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("c_tinyint"), "{err}");
    // Trailing bytes after the object are an error, not ignored.
    let mut trailing = v.clone();
    trailing.extend_from_slice(b" {}");
    assert!(codec.decode_value(&trailing).is_err());
}

#[test]
fn decimals_convert_exactly() {
    for (text, scale) in [
        ("0.00", 2),
        ("-0.01", 2),
        ("12345", 0),
        ("-1.000000000000000000000000000001", 30),
    ] {
        let n = parse_decimal(text, scale).unwrap();
        assert_eq!(format_decimal(&n, scale), text);
    }
    for (text, scale) in [
        ("1.5", 2),
        ("1", 2),
        (".5", 1),
        ("1.", 0),
        ("1e5", 0),
        ("", 0),
    ] {
        assert!(parse_decimal(text, scale).is_none(), "{text}");
    }
}

// ---- property tests: every value type round-trips through both message forms ----

fn arb_type() -> impl Strategy<Value = ColumnType> {
    let members = prop::collection::vec("[a-z][a-z0-9 ]{0,6}", 1..5).prop_map(|mut v| {
        v.sort();
        v.dedup();
        v
    });
    prop_oneof![
        (
            prop::sample::select(vec![8u8, 16, 24, 32, 64]),
            any::<bool>()
        )
            .prop_map(|(bits, unsigned)| int(bits, unsigned)),
        Just(ColumnType::Float),
        Just(ColumnType::Double),
        (1u8..=65)
            .prop_flat_map(|p| (Just(p), 0..=p.min(30)))
            .prop_map(|(precision, scale)| ColumnType::Decimal { precision, scale }),
        (1u8..=64).prop_map(|width| ColumnType::Bit { width }),
        Just(ColumnType::Date),
        (0u8..=6).prop_map(|fsp| ColumnType::Time { fsp }),
        (0u8..=6).prop_map(|fsp| ColumnType::DateTime { fsp }),
        (0u8..=6).prop_map(|fsp| ColumnType::Timestamp { fsp }),
        Just(ColumnType::Year),
        Just(utf8(StringKind::VarChar, 64)),
        Just(ColumnType::Bytes {
            kind: StringKind::Text,
            length: 65_535
        }),
        members
            .clone()
            .prop_map(|members| ColumnType::Enum { members }),
        members.prop_map(|members| ColumnType::Set { members }),
        Just(ColumnType::Json),
        Just(ColumnType::String {
            kind: StringKind::Long,
            length: u32::MAX,
            charset: "utf8mb4".into(),
            json: true,
        }),
        Just(ColumnType::Geometry {
            kind: "geometry".into()
        }),
    ]
}

fn micros_for_fsp(fsp: u8) -> impl Strategy<Value = u32> {
    let step = 10u32.pow(6 - u32::from(fsp));
    (0..1_000_000 / step).prop_map(move |n| n * step)
}

fn arb_value(ty: &ColumnType) -> BoxedStrategy<Value> {
    let calendar_date = (0u16..=9999, 1u8..=12, 1u8..=28).prop_map(|(y, m, d)| Date::new(y, m, d));
    match ty.clone() {
        ColumnType::Integer {
            bits,
            unsigned: false,
        } => {
            let max = if bits == 64 {
                i64::MAX
            } else {
                (1i64 << (bits - 1)) - 1
            };
            (-max - 1..=max).prop_map(Value::Int).boxed()
        }
        ColumnType::Integer {
            bits,
            unsigned: true,
        } => {
            let max = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            (0..=max).prop_map(Value::UInt).boxed()
        }
        ColumnType::Float => any::<f32>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float)
            .boxed(),
        ColumnType::Double => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Double)
            .boxed(),
        ColumnType::Decimal { precision, scale } => {
            let int_digits = usize::from(precision - scale);
            let frac = "[0-9]".repeat(usize::from(scale));
            let int = if int_digits == 0 {
                "0".to_string()
            } else {
                format!("[1-9][0-9]{{0,{}}}|0", int_digits - 1)
            };
            (
                any::<bool>(),
                proptest::string::string_regex(&format!("({int})")).unwrap(),
                proptest::string::string_regex(&frac).unwrap(),
            )
                .prop_map(move |(neg, i, f)| {
                    let body = if scale == 0 { i } else { format!("{i}.{f}") };
                    let zero = body.bytes().all(|b| b == b'0' || b == b'.');
                    Value::Decimal(if neg && !zero {
                        format!("-{body}")
                    } else {
                        body
                    })
                })
                .boxed()
        }
        ColumnType::Bit { width } => {
            let max = if width == 64 {
                u64::MAX
            } else {
                (1u64 << width) - 1
            };
            (0..=max).prop_map(Value::Bit).boxed()
        }
        ColumnType::Date => calendar_date.prop_map(Value::Date).boxed(),
        ColumnType::Time { fsp } => (-838i64 * 3600..=838 * 3600, micros_for_fsp(fsp))
            .prop_map(|(s, us)| {
                let us = i64::from(us);
                Value::Time(if s < 0 {
                    s * 1_000_000 - us
                } else {
                    s * 1_000_000 + us
                })
            })
            .boxed(),
        ColumnType::DateTime { fsp } => (
            calendar_date,
            0u8..24,
            0u8..60,
            0u8..60,
            micros_for_fsp(fsp),
        )
            .prop_map(|(date, hour, minute, second, micros)| {
                Value::DateTime(DateTime {
                    date,
                    hour,
                    minute,
                    second,
                    micros,
                })
            })
            .boxed(),
        // From TIMESTAMP's first second: 0 is the zero timestamp, tested on its own.
        ColumnType::Timestamp { fsp } => (1i64..=2_147_483_647, micros_for_fsp(fsp))
            .prop_map(|(s, us)| Value::Timestamp(s * 1_000_000 + i64::from(us)))
            .boxed(),
        ColumnType::Year => prop_oneof![Just(0u16), 1901u16..=2155]
            .prop_map(Value::Year)
            .boxed(),
        ColumnType::String { .. } => any::<String>().prop_map(Value::String).boxed(),
        ColumnType::Bytes { .. } => prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(Value::Bytes)
            .boxed(),
        ColumnType::Enum { members } => prop::sample::select(members).prop_map(Value::Enum).boxed(),
        ColumnType::Set { members } => {
            prop::sample::subsequence(members.clone(), 0..=members.len())
                .prop_map(|m| Value::Set(m.join(",")))
                .boxed()
        }
        ColumnType::Json => any::<(String, i32, bool)>()
            .prop_map(|(s, n, b)| {
                Value::Json(serde_json::json!({"s": s, "n": n, "b": [b, null]}).to_string())
            })
            .boxed(),
        ColumnType::Geometry { .. } => (any::<u32>(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(srid, wkb)| {
                let mut g = srid.to_le_bytes().to_vec();
                g.extend(wkb);
                Value::Geometry(g)
            })
            .boxed(),
    }
}

fn arb_table() -> impl Strategy<Value = Arc<TableSchema>> {
    prop::collection::vec((arb_type(), any::<bool>()), 1..8).prop_map(|cols| {
        let mut columns = vec![Column::new("pk", int(64, true), false)];
        columns.extend(
            cols.into_iter()
                .enumerate()
                .map(|(i, (ty, nullable))| Column::new(format!("c{i} \"x\""), ty, nullable)),
        );
        Arc::new(TableSchema {
            database: "db".into(),
            table: "t".into(),
            columns,
            primary_key: vec![0, 1],
        })
    })
}

fn arb_row(t: &TableSchema) -> BoxedStrategy<Row> {
    t.columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let v = arb_value(&c.ty);
            // Key columns are never NULL nor absent; other columns may be left out of
            // the row image (binlog_row_image = MINIMAL or NOBLOB).
            if c.nullable && i > 1 {
                prop_oneof![1 => Just(Value::Null), 1 => Just(Value::Absent), 4 => v].boxed()
            } else if i > 1 {
                prop_oneof![1 => Just(Value::Absent), 5 => v].boxed()
            } else {
                v
            }
        })
        .collect::<Vec<_>>()
        .boxed()
}

fn arb_event() -> impl Strategy<Value = (ChangeEvent, DebeziumOptions)> {
    arb_table()
        .prop_flat_map(|t| {
            let row = arb_row(&t);
            (
                Just(t),
                prop::sample::select(vec![Op::Create, Op::Update, Op::Delete, Op::Read]),
                row.clone(),
                row,
                any::<(bool, bool, bool, bool)>(),
                "[a-z0-9-]{1,20}\\.[0-9]{6}",
                any::<(u32, u32, u64, u32, Option<u32>)>(),
            )
        })
        .prop_map(
            |(
                table,
                op,
                r1,
                r2,
                (schemas, dec_string, long, txn),
                file,
                (server_id, domain, seq, row, thread),
            )| {
                let (before, after) = match op {
                    Op::Create | Op::Read => (None, Some(r1)),
                    Op::Update => (Some(r1), Some(r2)),
                    _ => (Some(r1), None),
                };
                let opts = DebeziumOptions {
                    schemas,
                    decimal_handling: if dec_string {
                        DecimalHandling::String
                    } else {
                        DecimalHandling::Precise
                    },
                    bigint_unsigned_handling: if long {
                        BigintUnsignedHandling::Long
                    } else {
                        BigintUnsignedHandling::Precise
                    },
                    ..opts()
                };
                let event = ChangeEvent {
                    op,
                    table,
                    before,
                    after,
                    source: SourceInfo {
                        server_id,
                        gtid: Some(Gtid::MariaDb(MariaDbGtid {
                            domain,
                            server: server_id,
                            seq,
                        })),
                        position: EventPosition {
                            file: file.into(),
                            pos: seq >> 1,
                            row,
                        },
                        ts_us: i64::from(domain) * 1_000_000,
                        snapshot: if op == Op::Read {
                            SnapshotMarker::True
                        } else {
                            SnapshotMarker::False
                        },
                        thread,
                        query: thread.map(|t| format!("UPDATE t SET x = {t}").into()),
                    },
                    transaction: txn.then(|| TransactionInfo {
                        id: format!("{domain}-{server_id}-{seq}").into(),
                        total_order: u64::from(row) + 1,
                        data_collection_order: 1,
                    }),
                };
                (event, opts)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_value_round_trips((event, opts) in arb_event()) {
        let codec = TableCodec::new(event.table.clone(), Arc::new(opts));
        let mut v = Vec::new();
        codec.encode_value(&event, TS, &mut v).unwrap();
        let decoded = codec.decode_value(&v).unwrap();
        prop_assert_eq!(&decoded.event, &event);
        let mut k = Vec::new();
        prop_assert!(codec.encode_key(&event, &mut k).unwrap());
        let key = codec.decode_key(&k).unwrap();
        let row = event.key_row().unwrap();
        prop_assert_eq!(key, vec![row[0].clone(), row[1].clone()]);
        let json: Json = serde_json::from_slice(&v).unwrap();
        prop_assert!(ENVELOPE.is_valid(&json), "{}", json);
    }
}
