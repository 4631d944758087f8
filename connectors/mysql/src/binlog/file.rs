//! Binlog files read offline, as `mysqlbinlog` does: the magic header, then events.
//!
//! # Hostile input
//!
//! A binlog file may be truncated (a copy cut short, a disk full) or corrupt, and
//! mysql_common's event reader trusts the sizes it reads: it allocates whatever an event
//! header claims and panics when the bytes are not there. So events are framed here
//! ([`EventFramer`]) before mysql_common sees them: the header's size is checked against
//! the smallest possible event, against [`MAX_EVENT_SIZE`] and against what is left of the
//! file, and the event's bytes are read in full before they are parsed. Any problem is a
//! [`DecodeError`] naming the file, the offset of the event and what is wrong; no input
//! panics (a property test feeds mutated binlog files through [`read_binlog`]:
//! `make fuzz` runs it longer). Files are streamed one event at a time, so memory is
//! bounded by the largest event, never by the file.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use mysql_common::binlog::consts::{BinlogChecksumAlg, BinlogVersion, EventType};
use mysql_common::binlog::events::Event;
use mysql_common::binlog::{BinlogFileHeader, EventStreamReader};

use super::decoder::{BinlogItem, DecodeError, Decoder};

/// The largest event binlake accepts. No server sends a larger one to a replica
/// (`max_allowed_packet` and `replica_max_allowed_packet` are at most 1 GiB), so a larger
/// size in a header means the bytes are corrupt.
pub const MAX_EVENT_SIZE: u64 = 1 << 30;

/// The fixed part of every event.
const HEADER_LEN: usize = 19;

/// Frames binlog events from a byte stream and checks their sizes before mysql_common
/// parses them (see the module docs).
#[derive(Debug)]
pub(crate) struct EventFramer {
    reader: EventStreamReader,
    /// Events inside a MySQL transaction payload: no checksums, no format description.
    inner: bool,
    /// Whether events after the last format description end in a CRC32.
    checksums: bool,
}

impl EventFramer {
    /// A framer of a binlog file's events (`inner`: of a transaction payload's).
    pub(crate) fn new(inner: bool) -> Self {
        EventFramer {
            reader: EventStreamReader::new(BinlogVersion::Version4),
            inner,
            checksums: false,
        }
    }

    /// The next event of `input`, `None` at its end. `left` is how many bytes `input`
    /// still holds, when known: an event larger than that is a truncated file, found
    /// before anything is allocated. Errors say what is wrong with the event.
    pub(crate) fn next(
        &mut self,
        input: &mut impl BufRead,
        left: Option<u64>,
    ) -> Result<Option<Event>, String> {
        let mut header = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match input.read(&mut header[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
        if got == 0 {
            return Ok(None);
        }
        if got < HEADER_LEN {
            return Err(format!(
                "the input ends inside an event header ({got} of {HEADER_LEN} bytes): the file is truncated"
            ));
        }
        let size = u64::from(u32::from_le_bytes([
            header[9], header[10], header[11], header[12],
        ]));
        let ty = header[4];
        let is_fde = ty == EventType::FORMAT_DESCRIPTION_EVENT as u8;
        if self.inner && is_fde {
            return Err("a format description event inside a transaction payload".into());
        }
        let min = HEADER_LEN as u64 + if self.checksums && !is_fde { 4 } else { 0 };
        if size < min {
            return Err(format!(
                "event size {size} is smaller than the smallest possible event ({min} bytes): the event is corrupt"
            ));
        }
        if size > MAX_EVENT_SIZE {
            return Err(format!(
                "event size {size} is larger than any server writes ({MAX_EVENT_SIZE} bytes): the event is corrupt"
            ));
        }
        if let Some(left) = left
            && size > left
        {
            return Err(format!(
                "the event is {size} bytes but only {left} are left: the file is truncated (or the event size is corrupt)"
            ));
        }
        // Grown as bytes arrive: a corrupt size in a stream of unknown length allocates
        // no more than the stream holds.
        let mut bytes = Vec::with_capacity(size.min(1 << 16) as usize);
        bytes.extend_from_slice(&header);
        let body = size - HEADER_LEN as u64;
        let read = input
            .take(body)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("read failed: {e}"))?;
        if (read as u64) < body {
            return Err(format!(
                "the input ends inside the event ({} of {size} bytes): the file is truncated",
                HEADER_LEN + read
            ));
        }
        let event = if self.inner {
            self.reader.read_decompressed(&bytes[..])
        } else {
            self.reader.read(&bytes[..])
        }
        .map_err(|e| format!("unreadable event (type {ty}): {e}"))?
        .ok_or_else(|| "the input ends before the event".to_string())?;
        if is_fde {
            let footer = event.footer();
            // mysql_common strips a checksum for any algorithm but OFF (unknown ones too).
            self.checksums = footer.get_checksum_enabled()
                && !matches!(
                    footer.get_checksum_alg(),
                    Ok(None | Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_OFF))
                );
        }
        Ok(Some(event))
    }
}

/// Feeds every event of the binlog file at `path` to `decoder`. The decoder should have
/// been created with the file's name so that positions name it.
pub fn read_file(
    path: &Path,
    decoder: &mut Decoder,
    sink: &mut dyn FnMut(BinlogItem) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    read_file_skipping(path, decoder, sink, None)
}

/// [`read_file`], going on after an event that does not decode when `skipped` is given
/// (it is told each such event's error). A file whose framing is broken (an event cut
/// short, an impossible size) still ends there: no next event can be found.
pub fn read_file_skipping(
    path: &Path,
    decoder: &mut Decoder,
    sink: &mut dyn FnMut(BinlogItem) -> Result<(), DecodeError>,
    skipped: Option<&mut dyn FnMut(DecodeError)>,
) -> Result<(), DecodeError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|e| DecodeError {
        position: format!("{shown}:0"),
        table: String::new(),
        reason: format!("cannot open: {e}"),
    })?;
    let len = file.metadata().ok().map(|m| m.len());
    read_binlog_skipping(
        BufReader::with_capacity(1 << 20, file),
        len,
        &shown,
        decoder,
        sink,
        skipped,
    )
}

/// Feeds every event of the binlog in `input` (a whole file: magic header, then events)
/// to `decoder`; `len` is the input's length when known, `shown` names it in errors.
pub fn read_binlog(
    input: impl BufRead,
    len: Option<u64>,
    shown: &str,
    decoder: &mut Decoder,
    sink: &mut dyn FnMut(BinlogItem) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    read_binlog_skipping(input, len, shown, decoder, sink, None)
}

/// [`read_binlog`], with [`read_file_skipping`]'s `skipped`.
fn read_binlog_skipping(
    mut input: impl BufRead,
    len: Option<u64>,
    shown: &str,
    decoder: &mut Decoder,
    sink: &mut dyn FnMut(BinlogItem) -> Result<(), DecodeError>,
    mut skipped: Option<&mut dyn FnMut(DecodeError)>,
) -> Result<(), DecodeError> {
    let fail = |pos: u64, reason: String| DecodeError {
        position: format!("{shown}:{pos}"),
        table: String::new(),
        reason,
    };
    BinlogFileHeader::read(&mut input)
        .map_err(|e| fail(0, format!("not a binlog file (no magic header): {e}")))?;
    let mut offset = BinlogFileHeader::LEN as u64;
    let mut framer = EventFramer::new(false);
    loop {
        let left = len.map(|l| l.saturating_sub(offset));
        match framer.next(&mut input, left) {
            Ok(Some(event)) => {
                // Named by where the event is in this file: a corrupt event's own
                // position fields (or a rotation's name) may say anything.
                let fed = decoder.feed(&event, sink).map_err(|e| DecodeError {
                    position: format!("{shown}:{offset}"),
                    ..e
                });
                match (fed, skipped.as_mut()) {
                    (Ok(()), _) => {}
                    (Err(e), Some(skip)) => skip(e),
                    (Err(e), None) => return Err(e),
                }
                offset += u64::from(event.header().event_size());
            }
            Ok(None) => return Ok(()),
            Err(reason) => return Err(fail(offset, reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The MySQL 8 test-suite binlogs in `../shared/fixtures/binlogs` (required).
    #![allow(clippy::unwrap_used)]

    use binlake_core::{Flavor, Op, Value};

    use super::*;
    use crate::binlog::Filter;
    use crate::schema_history::SchemaHistory;

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
    fn changes_until_error(name: &str) -> (Vec<binlake_core::ChangeEvent>, Option<DecodeError>) {
        let path = crate::fixture(name);
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
        (out, r.err())
    }

    fn changes(name: &str) -> Result<Vec<binlake_core::ChangeEvent>, DecodeError> {
        match changes_until_error(name) {
            (_, Some(e)) => Err(e),
            (out, None) => Ok(out),
        }
    }

    fn col<'a>(e: &'a binlake_core::ChangeEvent, name: &str) -> &'a Value {
        let i = e.table.column_index(name).unwrap();
        &e.after.as_ref().or(e.before.as_ref()).unwrap()[i]
    }

    #[test]
    fn enum_and_set_decode_to_their_strings() {
        let r = changes("mysql-enum-string-set.000001");
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
        let r = changes("mysql_type_bit.000001");
        let ev = r.unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(col(&ev[0], "a"), &Value::Bit(0b100));
        assert_eq!(col(&ev[0], "b"), &Value::String("foo".into()));
        assert_eq!(col(&ev[0], "c"), &Value::Bit(0b0010_0000));
    }

    #[test]
    fn invisible_columns_are_in_the_rows() {
        let r = changes("binlog-invisible-columns.000001");
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
        // The file was written with binlog_row_image=MINIMAL part of the time: its first
        // MINIMAL rows are partial JSON updates against a before-image without the JSON
        // column, which nothing can apply: a clear error after the rows before them.
        let (ev, err) = changes_until_error("json.binlog.000001");
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("binlog_row_value_options"), "{err}");
        assert!(ev.len() >= 2, "{}", ev.len());
        for e in &ev {
            match col(e, "json_col") {
                Value::Json(text) => {
                    serde_json::from_str::<serde_json::Value>(text).unwrap();
                }
                Value::Null | Value::Absent => {}
                other => panic!("json_col decoded as {other:?}"),
            }
            for image in [&e.before, &e.after].into_iter().flatten() {
                for &k in &e.table.primary_key {
                    assert!(!image[k].is_absent(), "key absent in {e:?}");
                }
            }
        }
    }

    #[test]
    fn tables_without_metadata_or_ddl_are_a_clear_error() {
        let r = changes("transaction_compression.000001");
        let err = r.unwrap_err().to_string();
        assert!(err.contains("binlog_row_metadata"), "{err}");
    }

    #[test]
    fn statement_based_inserts_of_captured_tables_stop_the_stream() {
        // MySQL 5.6 wrote this file with binlog_format=STATEMENT: its INSERT is a QUERY.
        let r = changes("binlog_transaction_with_GTID.000001");
        let err = r.unwrap_err().to_string();
        assert!(err.contains("(table test.t1)"), "{err}");
        assert!(err.contains("an INSERT statement writing test.t1"), "{err}");
        assert!(err.contains("SET GLOBAL binlog_format='ROW'"), "{err}");
        // Not captured: passes.
        let path = crate::fixture("binlog_transaction_with_GTID.000001");
        let mut d = Decoder::new(
            Flavor::Mysql,
            Filter::new(&[], &["test.*".into()], &[]).unwrap(),
            Box::new(SchemaHistory::with_flavor(Flavor::Mysql)),
            "binlog_transaction_with_GTID.000001",
            None,
        );
        read_file(&path, &mut d, &mut |_| Ok(())).unwrap();
    }

    /// The resume position of each commit; `without_previous_gtids` drops the file's
    /// Previous_gtids event, as when a stream starts in the middle of a file. The file's
    /// statement-based INSERTs are of `test.*`, left out here.
    fn commit_positions(name: &str, without_previous_gtids: bool) -> Vec<String> {
        let path = crate::fixture(name);
        let mut d = Decoder::new(
            Flavor::Mysql,
            Filter::new(&[], &["test.*".into()], &[]).unwrap(),
            Box::new(SchemaHistory::with_flavor(Flavor::Mysql)),
            name,
            None,
        );
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
        out
    }

    #[test]
    fn gtid_sets_are_positions_only_when_whole() {
        const UUID: &str = "006c2cf2-b1ea-11e4-9057-8c705a3d3e78";
        // From the file's start, Previous_gtids gives the set before it: each commit's
        // position is the whole executed set.
        let whole = commit_positions("binlog_transaction_with_GTID.000001", false);
        assert!(whole.len() >= 3, "{whole:?}");
        for (i, p) in whole.iter().enumerate() {
            let want = match i {
                0 => format!("gtid:{UUID}:1"),
                _ => format!("gtid:{UUID}:1-{}", i + 1),
            };
            assert_eq!(p, &want);
        }
        // From the middle of a file, one GTID is not the executed set: file positions.
        let mid = commit_positions("binlog_transaction_with_GTID.000001", true);
        assert_eq!(mid.len(), whole.len());
        assert!(mid.iter().all(|p| p.starts_with("file:")), "{mid:?}");
        // Anonymous transactions are in no GTID set: file positions after them.
        let anonymous = commit_positions("json.binlog.000001", false);
        assert!(!anonymous.is_empty());
        assert!(
            anonymous.iter().all(|p| p.starts_with("file:")),
            "{anonymous:?}"
        );
    }
}
