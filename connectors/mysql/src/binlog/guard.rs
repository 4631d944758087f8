//! Length checks on event bodies before mysql_common parses them.
//!
//! mysql_common trusts the counts inside some events: it allocates for them up front
//! (`Vec::with_capacity(count)`): a corrupt count in a PREVIOUS_GTIDS event or in the
//! ENUM/SET strings of a table map's optional metadata asks for exabytes, and the process
//! aborts (an allocation failure is not even a panic); it unwraps a TRANSACTION_PAYLOAD's
//! compression type and the type of an unknown field into a byte, and skips unknown fields
//! unchecked. [`check`] walks those structures
//! with bounds-checked reads and refuses a count that the bytes cannot hold, so the
//! decoder reports a corrupt event instead. The event framing (sizes, truncation) is
//! checked earlier, in [`super::file::EventFramer`].

use super::rows::{Cursor, RowError};

const TABLE_MAP_EVENT: u8 = 19;
const PREVIOUS_GTIDS_EVENT: u8 = 35;
const TRANSACTION_PAYLOAD_EVENT: u8 = 40;
/// Optional-metadata field types holding ENUM/SET member strings.
const SET_STR_VALUE: u8 = 5;
const ENUM_STR_VALUE: u8 = 6;

/// Checks the counts in `body` (the event without header and checksum) of an event of
/// type `ty` against its length; the error says what is inconsistent.
pub(crate) fn check(ty: u8, body: &[u8]) -> Result<(), String> {
    let r = match ty {
        PREVIOUS_GTIDS_EVENT => previous_gtids(body),
        TABLE_MAP_EVENT => table_map(body),
        TRANSACTION_PAYLOAD_EVENT => transaction_payload(body),
        _ => Ok(()),
    };
    r.map_err(|e| format!("corrupt event: {}", e.0))
}

fn too_many(what: &str, n: u64, left: usize) -> RowError {
    RowError(format!(
        "{what} count {n} cannot fit in the {left} bytes left"
    ))
}

/// MySQL's PREVIOUS_GTIDS: a header (count of sources, and a format byte for tagged
/// GTIDs), then per source a UUID, a tag when tagged, and a counted list of intervals.
fn previous_gtids(body: &[u8]) -> Result<(), RowError> {
    let mut c = Cursor::new(body);
    let header = c.uint_le(8)?;
    let tagged = (header >> 56) != 0;
    let n_sids = if tagged {
        (header >> 8) & ((1 << 48) - 1)
    } else {
        header & ((1 << 56) - 1)
    };
    // The smallest source: a UUID and an interval count.
    if n_sids > (c.remaining() / 24) as u64 {
        return Err(too_many("GTID source", n_sids, c.remaining()));
    }
    for _ in 0..n_sids {
        c.take(16)?;
        if tagged {
            let len = varlen_uint(&mut c)?;
            let len = usize::try_from(len).map_err(|_| too_many("tag byte", len, 0))?;
            c.take(len)?;
        }
        let n = c.uint_le(8)?;
        if n > (c.remaining() / 16) as u64 {
            return Err(too_many("GTID interval", n, c.remaining()));
        }
        c.take(n as usize * 16)?;
    }
    Ok(())
}

/// MySQL 8's TRANSACTION_PAYLOAD header: typed fields up to an end mark. mysql_common
/// unwraps the compression type and skips unknown fields unchecked.
fn transaction_payload(body: &[u8]) -> Result<(), RowError> {
    let mut c = Cursor::new(body);
    while c.remaining() > 0 {
        match c.lenenc()? {
            0 => break,
            1 | 3 => {
                c.lenenc()?;
                c.lenenc()?;
            }
            2 => {
                c.lenenc()?;
                let algorithm = c.lenenc()?;
                // ZSTD (0) or NONE (255)
                if algorithm != 0 && algorithm != 255 {
                    return Err(RowError(format!(
                        "unknown transaction payload compression type {algorithm}"
                    )));
                }
            }
            // mysql_common skips an unknown field, but unwraps its type into a byte.
            t if t > u64::from(u8::MAX) => {
                return Err(RowError(format!(
                    "unknown transaction payload field type {t}"
                )));
            }
            _ => {
                let n = c.lenenc()?;
                c.take(usize::try_from(n).map_err(|_| too_many("field byte", n, 0))?)?;
            }
        }
    }
    Ok(())
}

/// mysql_common's `read_varlen_uint` (MySQL's serialization library format): the number
/// of trailing one bits of the first byte gives the length.
fn varlen_uint(c: &mut Cursor<'_>) -> Result<u64, RowError> {
    let first = c.take(1)?[0];
    let ones = first.trailing_ones() as usize;
    if ones == 8 {
        return c.uint_le(8);
    }
    let rest = c.uint_le(ones)?;
    Ok(((rest << 8) | u64::from(first)) >> (ones + 1))
}

/// A table map: its fixed part, then the optional metadata, whose ENUM/SET string lists
/// are counted.
fn table_map(body: &[u8]) -> Result<(), RowError> {
    let mut c = Cursor::new(body);
    c.take(6 + 2)?; // table id, flags
    for _ in 0..2 {
        // database and table names: length, bytes, NUL
        let n = c.uint_le(1)? as usize;
        c.take(n + 1)?;
    }
    let columns = c.lenenc()?;
    if columns > c.remaining() as u64 {
        return Err(too_many("column", columns, c.remaining()));
    }
    c.take(columns as usize)?;
    let meta = c.lenenc()?;
    if meta > c.remaining() as u64 {
        return Err(too_many("metadata byte", meta, c.remaining()));
    }
    c.take(meta as usize)?;
    c.take((columns as usize).div_ceil(8))?;
    while c.remaining() > 0 {
        let ty = c.uint_le(1)? as u8;
        let len = c.lenenc()?;
        if len > c.remaining() as u64 {
            // mysql_common reports a short field itself.
            return Ok(());
        }
        let value = c.take(len as usize)?;
        if matches!(ty, SET_STR_VALUE | ENUM_STR_VALUE) {
            let mut v = Cursor::new(value);
            while v.remaining() > 0 {
                let members = v.lenenc()?;
                if members > v.remaining() as u64 {
                    return Err(too_many("ENUM/SET member", members, v.remaining()));
                }
                for _ in 0..members {
                    let n = v.lenenc()?;
                    v.take(usize::try_from(n).map_err(|_| too_many("string byte", n, 0))?)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn huge_counts_are_refused() {
        let mut gtids = 0x00ff_ffff_ffff_ffffu64.to_le_bytes().to_vec();
        gtids.extend_from_slice(&[0; 24]);
        assert!(check(PREVIOUS_GTIDS_EVENT, &gtids).is_err());
        let mut ok = 1u64.to_le_bytes().to_vec();
        ok.extend_from_slice(&[7; 16]);
        ok.extend_from_slice(&1u64.to_le_bytes());
        ok.extend_from_slice(&[1; 16]);
        assert_eq!(check(PREVIOUS_GTIDS_EVENT, &ok), Ok(()));
    }

    /// Found by `make fuzz`: a field type that does not fit a byte made mysql_common
    /// panic (`TryFromIntError`) instead of failing.
    #[test]
    fn a_transaction_payload_field_type_beyond_a_byte_is_refused() {
        // lenenc 0xfd: a 3-byte integer, here 0x390100 (far beyond 255), then a length.
        let body = [0xfd, 0x00, 0x01, 0x39, 0x01, 0x00];
        let e = check(TRANSACTION_PAYLOAD_EVENT, &body).unwrap_err();
        assert!(e.contains("unknown transaction payload field type"), "{e}");
        // An unknown type that fits a byte is skipped, as mysql_common does.
        assert_eq!(check(TRANSACTION_PAYLOAD_EVENT, &[9, 1, 0xaa, 0]), Ok(()));
    }

    #[test]
    fn varlen_uints_decode_as_mysql_common_does() {
        // One byte: value << 1; two bytes: value << 2 | 0b01.
        assert_eq!(varlen_uint(&mut Cursor::new(&[5 << 1])).ok(), Some(5));
        let v: u16 = (300 << 2) | 0b01;
        assert_eq!(
            varlen_uint(&mut Cursor::new(&v.to_le_bytes())).ok(),
            Some(300)
        );
    }
}
