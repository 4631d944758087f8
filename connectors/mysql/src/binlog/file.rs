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
