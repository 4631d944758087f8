//! Binlog files read offline, as `mysqlbinlog` does: the magic header, then events.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::{BinlogFileHeader, EventStreamReader};

use super::decoder::{BinlogItem, DecodeError, Decoder};

/// Feeds every event of the binlog file at `path` to `decoder`. The decoder should have
/// been created with the file's name so that positions name it.
pub fn read_file(
    path: &Path,
    decoder: &mut Decoder,
    sink: &mut dyn FnMut(BinlogItem) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let shown = path.display().to_string();
    let fail = |pos: u64, reason: String| DecodeError {
        position: format!("{shown}:{pos}"),
        table: String::new(),
        reason,
    };
    let file = File::open(path).map_err(|e| fail(0, format!("cannot open: {e}")))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    BinlogFileHeader::read(&mut input)
        .map_err(|e| fail(0, format!("not a binlog file (no magic header): {e}")))?;
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    loop {
        match reader.read(&mut input) {
            Ok(Some(event)) => decoder.feed(&event, sink)?,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(fail(
                    0,
                    format!("cannot read event after {}: {e}", decoder.file()),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The MySQL 8 test-suite binlogs in `../shared/fixtures/binlogs` (skipped, with a
    //! message, when that folder is absent).
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use binlake_core::{Flavor, Op, Value};

    use super::*;
    use crate::binlog::Filter;
    use crate::schema_history::SchemaHistory;

    fn fixture(name: &str) -> Option<PathBuf> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/binlogs")
            .join(name);
        if p.exists() {
            Some(p)
        } else {
            eprintln!("skipped: fixture {} is not there", p.display());
            None
        }
    }

    /// A decoder of the MySQL file `name`, with a schema history for its DDL.
    fn mysql_decoder(name: &str) -> Decoder {
        Decoder::new(
            Flavor::Mysql,
            Filter::default().with_system_schemas(),
            Box::new(SchemaHistory::with_flavor(Flavor::Mysql)),
            name,
            None,
        )
    }

    /// The changes decoded before the first error, and that error.
    fn changes_until_error(
        name: &str,
    ) -> Option<(Vec<binlake_core::ChangeEvent>, Option<DecodeError>)> {
        let path = fixture(name)?;
        let mut d = mysql_decoder(name);
        let mut out = Vec::new();
        let r = read_file(&path, &mut d, &mut |item| {
            // Row changes only: each CREATE TABLE also gives its table a truncate.
            if let BinlogItem::Change(e) = item
                && e.op != Op::Truncate
            {
                out.push(e);
            }
            Ok(())
        });
        Some((out, r.err()))
    }

    fn changes(name: &str) -> Option<Result<Vec<binlake_core::ChangeEvent>, DecodeError>> {
        changes_until_error(name).map(|(out, err)| match err {
            Some(e) => Err(e),
            None => Ok(out),
        })
    }

    fn col<'a>(e: &'a binlake_core::ChangeEvent, name: &str) -> &'a Value {
        let i = e.table.column_index(name).unwrap();
        &e.after.as_ref().or(e.before.as_ref()).unwrap()[i]
    }

    #[test]
    fn enum_and_set_decode_to_their_strings() {
        let Some(r) = changes("mysql-enum-string-set.000001") else {
            return;
        };
        let ev = r.unwrap();
        assert_eq!(
            ev.iter().map(|e| e.op).collect::<Vec<_>>(),
            [Op::Create, Op::Update, Op::Delete]
        );
        assert_eq!(col(&ev[1], "f3"), &Value::Enum("variant2".into()));
        assert_eq!(col(&ev[1], "f4"), &Value::Set("two,four".into()));
        assert_eq!(col(&ev[1], "f1"), &Value::String("field1".into()));
    }

    #[test]
    fn bits_decode_to_their_value() {
        let Some(r) = changes("mysql_type_bit.000001") else {
            return;
        };
        let ev = r.unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(col(&ev[0], "a"), &Value::Bit(0b100));
        assert_eq!(col(&ev[0], "b"), &Value::String("foo".into()));
        assert_eq!(col(&ev[0], "c"), &Value::Bit(0b0010_0000));
    }

    #[test]
    fn invisible_columns_are_in_the_rows() {
        let Some(r) = changes("binlog-invisible-columns.000001") else {
            return;
        };
        let ev = r.unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].table.columns.len(), 6);
        assert_eq!(col(&ev[0], "f1"), &Value::UInt(1));
        assert_eq!(col(&ev[0], "f3"), &Value::Int(-3));
        assert_eq!(col(&ev[2], "f1"), &Value::UInt(111));
        assert_eq!(ev[2].op, Op::Update);
    }

    #[test]
    fn binary_json_decodes_with_the_schema_from_the_files_ddl() {
        // The file was written with binlog_row_image=MINIMAL part of the time: the rows
        // before that decode, then binlake stops with the setting to change.
        let Some((ev, err)) = changes_until_error("json.binlog.000001") else {
            return;
        };
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("binlog_row_image=FULL"), "{err}");
        assert!(ev.len() >= 2, "{}", ev.len());
        for e in &ev {
            match col(e, "json_col") {
                Value::Json(text) => {
                    serde_json::from_str::<serde_json::Value>(text).unwrap();
                }
                Value::Null => {}
                other => panic!("json_col decoded as {other:?}"),
            }
        }
    }

    #[test]
    fn tables_without_metadata_or_ddl_are_a_clear_error() {
        let Some(r) = changes("transaction_compression.000001") else {
            return;
        };
        let err = r.unwrap_err().to_string();
        assert!(err.contains("binlog_row_metadata"), "{err}");
    }

    /// The resume position of each commit; `without_previous_gtids` drops the file's
    /// Previous_gtids event, as when a stream starts in the middle of a file.
    fn commit_positions(name: &str, without_previous_gtids: bool) -> Option<Vec<String>> {
        let path = fixture(name)?;
        let mut d = mysql_decoder(name);
        let mut input = BufReader::new(File::open(path).unwrap());
        BinlogFileHeader::read(&mut input).unwrap();
        let mut reader = EventStreamReader::new(BinlogVersion::Version4);
        let mut out = Vec::new();
        while let Some(event) = reader.read(&mut input).unwrap() {
            if without_previous_gtids && event.header().event_type_raw() == 35 {
                continue;
            }
            let fed = d.feed(&event, &mut |item| {
                if let BinlogItem::Commit(c) = item {
                    out.push(c.resume().to_string());
                }
                Ok(())
            });
            if fed.is_err() {
                break;
            }
        }
        Some(out)
    }

    #[test]
    fn gtid_sets_are_positions_only_when_whole() {
        const UUID: &str = "006c2cf2-b1ea-11e4-9057-8c705a3d3e78";
        // From the file's start, Previous_gtids gives the set before it: each commit's
        // position is the whole executed set.
        let Some(whole) = commit_positions("binlog_transaction_with_GTID.000001", false) else {
            return;
        };
        assert!(whole.len() >= 3, "{whole:?}");
        for (i, p) in whole.iter().enumerate() {
            let want = match i {
                0 => format!("gtid:{UUID}:1"),
                _ => format!("gtid:{UUID}:1-{}", i + 1),
            };
            assert_eq!(p, &want);
        }
        // From the middle of a file, one GTID is not the executed set: file positions.
        let mid = commit_positions("binlog_transaction_with_GTID.000001", true).unwrap();
        assert_eq!(mid.len(), whole.len());
        assert!(mid.iter().all(|p| p.starts_with("file:")), "{mid:?}");
        // Anonymous transactions are in no GTID set: file positions after them.
        let anonymous = commit_positions("json.binlog.000001", false).unwrap();
        assert!(!anonymous.is_empty());
        assert!(
            anonymous.iter().all(|p| p.starts_with("file:")),
            "{anonymous:?}"
        );
    }
}
