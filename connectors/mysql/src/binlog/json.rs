//! JSON columns: MySQL's binary JSON to text, and partial-update diffs applied to the
//! before-image so that the after-image is complete.

use mysql_common::binlog::jsonb;
use mysql_common::binlog::jsondiff::{JsonDiff, JsonDiffOperation};
use mysql_common::io::ParseBuf;
use serde_json::Value as Json;

/// Converts MySQL's binary JSON to compact JSON text. An empty value is JSON `null`.
pub fn jsonb_to_text(bytes: &[u8]) -> Result<String, String> {
    if bytes.is_empty() {
        return Ok("null".into());
    }
    Ok(jsonb_to_json(bytes)?.to_string())
}

fn jsonb_to_json(bytes: &[u8]) -> Result<Json, String> {
    let v: jsonb::Value<'_> = ParseBuf(bytes)
        .parse(())
        .map_err(|e| format!("invalid binary JSON: {e}"))?;
    dom_to_json(v)
}

fn dom_to_json(v: jsonb::Value<'_>) -> Result<Json, String> {
    let dom = v.parse().map_err(|e| format!("invalid binary JSON: {e}"))?;
    Ok(Json::from(dom))
}

/// Parses the diffs of a partial JSON update (PARTIAL_UPDATE_ROWS_EVENT) from the cell bytes.
pub fn parse_diffs(bytes: &[u8]) -> Result<Vec<JsonDiff<'_>>, String> {
    let mut buf = ParseBuf(bytes);
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(
            buf.parse(())
                .map_err(|e| format!("invalid JSON diff: {e}"))?,
        );
    }
    Ok(out)
}

/// Applies `diffs` to the JSON text `before` and returns the complete new document.
pub fn apply_diffs(before: &str, diffs: &[JsonDiff<'_>]) -> Result<String, String> {
    let mut doc: Json =
        serde_json::from_str(before).map_err(|e| format!("before-image is not JSON: {e}"))?;
    for d in diffs {
        let path = parse_path(&d.path_str())?;
        let value = match d.value() {
            Some(v) => Some(dom_to_json(v.clone())?),
            None => None,
        };
        apply(&mut doc, &path, d.operation(), value)
            .map_err(|e| format!("cannot apply JSON diff at {}: {e}", d.path_str()))?;
    }
    Ok(doc.to_string())
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses a MySQL JSON path as diffs write it: `$`, `.key`, `."quoted key"`, `[n]`.
fn parse_path(p: &str) -> Result<Vec<Step>, String> {
    let bad = || format!("unsupported JSON path `{p}`");
    let rest = p.strip_prefix('$').ok_or_else(bad)?;
    let b = rest.as_bytes();
    let mut i = 0;
    let mut steps = Vec::new();
    while i < b.len() {
        match b[i] {
            b'.' => {
                i += 1;
                if b.get(i) == Some(&b'"') {
                    // A quoted key with JSON string escapes.
                    let start = i;
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                    let quoted = rest.get(start..=i).ok_or_else(bad)?;
                    let key: String = serde_json::from_str(quoted).map_err(|_| bad())?;
                    steps.push(Step::Key(key));
                    i += 1;
                } else {
                    let start = i;
                    while i < b.len() && b[i] != b'.' && b[i] != b'[' {
                        i += 1;
                    }
                    steps.push(Step::Key(rest[start..i].to_string()));
                }
            }
            b'[' => {
                let end = rest[i..].find(']').ok_or_else(bad)? + i;
                let n = rest[i + 1..end].trim().parse().map_err(|_| bad())?;
                steps.push(Step::Index(n));
                i = end + 1;
            }
            _ => return Err(bad()),
        }
    }
    Ok(steps)
}

fn apply(
    doc: &mut Json,
    path: &[Step],
    op: JsonDiffOperation,
    value: Option<Json>,
) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        // The whole document.
        return match (op, value) {
            (JsonDiffOperation::REPLACE, Some(v)) => {
                *doc = v;
                Ok(())
            }
            _ => Err("only REPLACE can target the whole document".into()),
        };
    };
    let mut cur = doc;
    for s in parents {
        cur = match (s, cur) {
            (Step::Key(k), Json::Object(m)) => m.get_mut(k).ok_or("path not in document")?,
            (Step::Index(i), Json::Array(a)) => a.get_mut(*i).ok_or("index out of range")?,
            _ => return Err("path not in document".into()),
        };
    }
    match (op, last, cur) {
        (JsonDiffOperation::REMOVE, Step::Key(k), Json::Object(m)) => {
            m.remove(k);
        }
        (JsonDiffOperation::REMOVE, Step::Index(i), Json::Array(a)) if *i < a.len() => {
            a.remove(*i);
        }
        (JsonDiffOperation::REPLACE | JsonDiffOperation::INSERT, Step::Key(k), Json::Object(m)) => {
            m.insert(k.clone(), value.ok_or("diff without a value")?);
        }
        (JsonDiffOperation::REPLACE, Step::Index(i), Json::Array(a)) if *i < a.len() => {
            a[*i] = value.ok_or("diff without a value")?;
        }
        (JsonDiffOperation::INSERT, Step::Index(i), Json::Array(a)) => {
            let i = (*i).min(a.len());
            a.insert(i, value.ok_or("diff without a value")?);
        }
        _ => return Err("path does not fit the document".into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path(r#"$.a[2]."b c".d"#),
            Ok(vec![
                Step::Key("a".into()),
                Step::Index(2),
                Step::Key("b c".into()),
                Step::Key("d".into())
            ])
        );
        assert_eq!(parse_path("$"), Ok(vec![]));
        assert!(parse_path("a.b").is_err());
    }

    #[test]
    fn applying() {
        let mut doc: Json = serde_json::from_str(r#"{"a":[1,2],"b":{"c":1}}"#).expect("json");
        apply(
            &mut doc,
            &parse_path("$.a[1]").expect("p"),
            JsonDiffOperation::REPLACE,
            Some(Json::from(5)),
        )
        .expect("ok");
        apply(
            &mut doc,
            &parse_path("$.a[0]").expect("p"),
            JsonDiffOperation::INSERT,
            Some(Json::from(0)),
        )
        .expect("ok");
        apply(
            &mut doc,
            &parse_path("$.b.c").expect("p"),
            JsonDiffOperation::REMOVE,
            None,
        )
        .expect("ok");
        apply(
            &mut doc,
            &parse_path("$.d").expect("p"),
            JsonDiffOperation::INSERT,
            Some(Json::from("x")),
        )
        .expect("ok");
        assert_eq!(doc.to_string(), r#"{"a":[0,1,5],"b":{},"d":"x"}"#);
    }
}
