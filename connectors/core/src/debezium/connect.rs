//! Kafka Connect's JSON form (`schemas.enable=true`) of the records binlake writes next to
//! the change events: the schema-change topic's and the heartbeat topic's keys and values,
//! shaped as Debezium's connectors shape them, so that one `JsonConverter` setting reads
//! every binlake topic. And [`conforms`], which checks a payload against a Connect schema
//! as Connect's `JsonConverter` reads it (used by the tests of every Connect-form record).

use serde_json::{Value as Json, json};

use super::DebeziumOptions;

/// `{"schema": schema, "payload": payload}`.
pub fn with_schema(schema: Json, payload: Json) -> Json {
    json!({ "schema": schema, "payload": payload })
}

/// The key schema of the heartbeat topic (`{"serverName": …}`).
pub fn heartbeat_key_schema() -> Json {
    json!({
        "type": "struct",
        "fields": [{"type": "string", "optional": false, "field": "serverName"}],
        "optional": false,
        "name": "io.debezium.connector.common.ServerNameKey"
    })
}

/// The value schema of the heartbeat topic (`{"ts_ms": …}`).
pub fn heartbeat_value_schema() -> Json {
    json!({
        "type": "struct",
        "fields": [{"type": "int64", "optional": false, "field": "ts_ms"}],
        "optional": false,
        "name": "io.debezium.connector.common.Heartbeat"
    })
}

/// The key schema of the schema-change topic (`{"databaseName": …}`).
pub fn schema_change_key_schema(opts: &DebeziumOptions) -> Json {
    json!({
        "type": "struct",
        "fields": [{"type": "string", "optional": false, "field": "databaseName"}],
        "optional": false,
        "name": format!("io.debezium.connector.{}.SchemaChangeKey", opts.flavor.connector_name()),
        "version": 1
    })
}

/// The value schema of the schema-change topic (see `schema_change_value`).
pub fn schema_change_value_schema(opts: &DebeziumOptions) -> Json {
    let s = |f: &str, optional: bool| json!({"type": "string", "optional": optional, "field": f});
    let i32f = |f: &str, optional: bool| json!({"type": "int32", "optional": optional, "field": f});
    let b = |f: &str| json!({"type": "boolean", "optional": true, "field": f});
    let strings = |f: &str| json!({"type": "array", "items": {"type": "string", "optional": false}, "optional": true, "field": f});
    let column = json!({
        "type": "struct",
        "fields": [
            s("name", false),
            i32f("jdbcType", false),
            i32f("nativeType", true),
            s("typeName", false),
            s("typeExpression", true),
            s("charsetName", true),
            i32f("length", true),
            i32f("scale", true),
            i32f("position", false),
            b("optional"),
            b("autoIncremented"),
            b("generated"),
            s("comment", true),
            s("defaultValueExpression", true),
            strings("enumValues"),
            b("hasDefaultValue")
        ],
        "optional": false,
        "name": "io.debezium.connector.schema.Column",
        "version": 1
    });
    let attribute = json!({
        "type": "struct",
        "fields": [s("name", false), s("value", true)],
        "optional": false,
        "name": "io.debezium.connector.schema.Attribute",
        "version": 1
    });
    let table = json!({
        "type": "struct",
        "fields": [
            s("defaultCharsetName", true),
            strings("primaryKeyColumnNames"),
            {"type": "array", "items": column, "optional": false, "field": "columns"},
            s("comment", true),
            {"type": "array", "items": attribute, "optional": true, "field": "attributes"}
        ],
        "optional": true,
        "name": "io.debezium.connector.schema.Table",
        "version": 1,
        "field": "table"
    });
    let change = json!({
        "type": "struct",
        "fields": [s("type", false), s("id", false), table],
        "optional": false,
        "name": "io.debezium.connector.schema.Change",
        "version": 1
    });
    json!({
        "type": "struct",
        "fields": [
            super::source_connect_schema(opts),
            {"type": "int64", "optional": false, "field": "ts_ms"},
            s("databaseName", true),
            s("schemaName", true),
            s("ddl", true),
            {"type": "array", "items": change, "optional": false, "field": "tableChanges"}
        ],
        "optional": false,
        "name": format!("io.debezium.connector.{}.SchemaChangeValue", opts.flavor.connector_name()),
        "version": 1
    })
}

/// Whether `value` is what Connect's `JsonConverter` reads as a value of `schema`: every
/// field of a struct present (or null when optional or defaulted) with a value of its
/// type, no field the schema does not declare, arrays of the item schema. The error names
/// the path of the first mismatch.
pub fn conforms(schema: &Json, value: &Json) -> Result<(), String> {
    check(schema, value, "$")
}

fn check(schema: &Json, value: &Json, path: &str) -> Result<(), String> {
    let optional = schema["optional"].as_bool().unwrap_or(false) || schema.get("default").is_some();
    if value.is_null() {
        return match optional {
            true => Ok(()),
            false => Err(format!("{path}: null for a required {}", schema["type"])),
        };
    }
    let ty = schema["type"].as_str().unwrap_or_default();
    let ok = match ty {
        "struct" => {
            let Some(obj) = value.as_object() else {
                return Err(format!("{path}: not an object"));
            };
            let fields = schema["fields"].as_array().cloned().unwrap_or_default();
            for f in &fields {
                let name = f["field"].as_str().unwrap_or_default();
                check(
                    f,
                    obj.get(name).unwrap_or(&Json::Null),
                    &format!("{path}.{name}"),
                )?;
            }
            if let Some(extra) = obj
                .keys()
                .find(|k| !fields.iter().any(|f| f["field"] == k.as_str()))
            {
                return Err(format!("{path}.{extra}: not in the schema"));
            }
            true
        }
        "array" => {
            let Some(items) = value.as_array() else {
                return Err(format!("{path}: not an array"));
            };
            for (i, v) in items.iter().enumerate() {
                check(&schema["items"], v, &format!("{path}[{i}]"))?;
            }
            true
        }
        "string" | "bytes" => value.is_string(),
        "boolean" => value.is_boolean(),
        "int8" | "int16" | "int32" | "int64" => value.is_i64() || value.is_u64(),
        "float" | "float32" | "double" | "float64" => value.is_number(),
        "map" => value.is_object(),
        other => return Err(format!("{path}: unknown Connect type {other:?}")),
    };
    match ok {
        true => Ok(()),
        false => Err(format!("{path}: {value} is not a {ty}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::schema::Flavor;

    #[test]
    fn the_golden_connect_messages_conform_to_their_schemas() {
        for (name, text) in [
            (
                "create",
                include_str!("../../../../schemas/examples/type_matrix.create.with-schema.json"),
            ),
            (
                "update.minimal",
                include_str!(
                    "../../../../schemas/examples/type_matrix.update.minimal.with-schema.json"
                ),
            ),
        ] {
            let v: Json = serde_json::from_str(text).unwrap();
            for part in ["key", "value"] {
                conforms(&v[part]["schema"], &v[part]["payload"])
                    .unwrap_or_else(|e| panic!("{name} {part}: {e}"));
            }
        }
    }

    #[test]
    fn heartbeats_conform_and_mismatches_are_named() {
        conforms(&heartbeat_key_schema(), &json!({"serverName": "cdc"})).unwrap();
        conforms(
            &heartbeat_value_schema(),
            &json!({"ts_ms": 1_700_000_000_000i64}),
        )
        .unwrap();
        let e = conforms(&heartbeat_value_schema(), &json!({"ts_ms": "soon"})).unwrap_err();
        assert!(e.contains("$.ts_ms"), "{e}");
        let e = conforms(&heartbeat_value_schema(), &json!({})).unwrap_err();
        assert!(e.contains("null for a required"), "{e}");
        let e = conforms(&heartbeat_value_schema(), &json!({"ts_ms": 1, "x": 2})).unwrap_err();
        assert!(e.contains("$.x: not in the schema"), "{e}");
        let opts = DebeziumOptions::new("cdc", Flavor::MariaDb);
        conforms(
            &schema_change_key_schema(&opts),
            &json!({"databaseName": "shop"}),
        )
        .unwrap();
    }
}
