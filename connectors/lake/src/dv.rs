//! Delta deletion vectors: the rows of a data file that a merge-on-read replica has
//! marked deleted, written and read in the format of the Delta protocol.
//!
//! A deletion vector (DV) is a set of row positions of one data file, serialized as a
//! 64-bit roaring bitmap in the "portable" `RoaringTreemap` layout (the `roaring` crate's
//! `serialize_into`, which delta-kernel also uses). binlake stores the DVs of one commit
//! together in one file, `deletion_vector_<uuid>.bin` at the table's root, laid out as
//! the protocol says:
//!
//! ```text
//! 1 byte    format version (1)
//! per DV:   4 bytes   size of what follows up to the checksum (big-endian)
//!           4 bytes   magic 1681511377 (little-endian)
//!           n bytes   the RoaringTreemap
//!           4 bytes   CRC-32 of magic and treemap (big-endian)
//! ```
//!
//! A file's descriptor (`storageType` `u`) names the file by its UUID in Z85 (20
//! characters), the offset of the DV's size field and the size without the checksum.
//! Reading checks the size, the magic and the checksum, so a damaged DV is an error, never
//! a wrong set of rows. Inline DVs (`i`) written by other tools are read too.
//!
//! Written here rather than through delta-kernel's writer because deltalake 1.1 does not
//! export the kernel, and the format is short; readers (delta-rs, DuckDB, Spark) check
//! what binlake writes in the integration tests.

use bytes::Bytes;
use deltalake::kernel::{DeletionVectorDescriptor, StorageType};
use roaring::RoaringTreemap;

use crate::{Error, Result};

const MAGIC: u32 = 1_681_511_377;
const VERSION: u8 = 1;

/// A DV file being built: the DVs of one commit.
#[derive(Debug)]
pub struct DvFile {
    uuid: uuid::Uuid,
    bytes: Vec<u8>,
}

impl Default for DvFile {
    fn default() -> Self {
        DvFile::new()
    }
}

impl DvFile {
    /// An empty DV file with a new name.
    pub fn new() -> DvFile {
        DvFile {
            uuid: uuid::Uuid::new_v4(),
            bytes: vec![VERSION],
        }
    }

    /// The file's path relative to the table root.
    pub fn path(&self) -> String {
        format!("deletion_vector_{}.bin", self.uuid.hyphenated())
    }

    /// Whether no DV was added.
    pub fn is_empty(&self) -> bool {
        self.bytes.len() == 1
    }

    /// Appends `rows` and returns its descriptor.
    pub fn push(&mut self, rows: &RoaringTreemap) -> Result<DeletionVectorDescriptor> {
        let offset = i32::try_from(self.bytes.len())
            .map_err(|_| Error::storage("write a deletion vector", "the DV file passed 2 GiB"))?;
        let mut data = Vec::with_capacity(4 + rows.serialized_size());
        data.extend_from_slice(&MAGIC.to_le_bytes());
        rows.serialize_into(&mut data)
            .map_err(|e| Error::storage("serialize a deletion vector", e))?;
        let size = i32::try_from(data.len())
            .map_err(|_| Error::storage("write a deletion vector", "a DV passed 2 GiB"))?;
        self.bytes.extend_from_slice(&(size as u32).to_be_bytes());
        self.bytes.extend_from_slice(&data);
        self.bytes
            .extend_from_slice(&crc32fast::hash(&data).to_be_bytes());
        Ok(DeletionVectorDescriptor {
            storage_type: StorageType::UuidRelativePath,
            path_or_inline_dv: z85::encode(self.uuid.as_bytes()),
            offset: Some(offset),
            size_in_bytes: size,
            cardinality: rows.len() as i64,
        })
    }

    /// The file's bytes.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from(self.bytes)
    }
}

/// Where a stored DV is: `None` for an inline one, else the path relative to the table
/// root and the byte range to read (size field to checksum).
pub fn location(d: &DeletionVectorDescriptor) -> Result<Option<(String, std::ops::Range<u64>)>> {
    let bad = |what: &str| Error::storage("read a deletion vector", format!("{what}: {d:?}"));
    let path = match d.storage_type {
        StorageType::Inline => return Ok(None),
        StorageType::AbsolutePath => {
            return Err(bad("absolute DV paths are not supported"));
        }
        StorageType::UuidRelativePath => {
            let s = &d.path_or_inline_dv;
            let split = s
                .len()
                .checked_sub(20)
                .ok_or_else(|| bad("the DV path is shorter than a UUID"))?;
            let (prefix, encoded) = s.split_at(split);
            let raw = z85::decode(encoded).map_err(|_| bad("the DV UUID is not Z85"))?;
            let uuid =
                uuid::Uuid::from_slice(&raw).map_err(|_| bad("the DV UUID is not 16 bytes"))?;
            match prefix.is_empty() {
                true => format!("deletion_vector_{}.bin", uuid.hyphenated()),
                false => format!("{prefix}/deletion_vector_{}.bin", uuid.hyphenated()),
            }
        }
    };
    let offset = d.offset.unwrap_or(1);
    let start = u64::try_from(offset).map_err(|_| bad("negative DV offset"))?;
    let size = u64::try_from(d.size_in_bytes).map_err(|_| bad("negative DV size"))?;
    Ok(Some((path, start..start + 4 + size + 4)))
}

/// Decodes a DV from what [`location`] names: `stored` is the byte range it gave, or
/// `None` for an inline DV.
pub fn decode(d: &DeletionVectorDescriptor, stored: Option<&[u8]>) -> Result<RoaringTreemap> {
    let bad = |what: String| Error::storage("read a deletion vector", format!("{what}: {d:?}"));
    let inline;
    let data: &[u8] = match stored {
        None => {
            inline = z85::decode(&d.path_or_inline_dv)
                .map_err(|_| bad("the inline DV is not Z85".into()))?;
            inline
                .get(..usize::try_from(d.size_in_bytes).unwrap_or(usize::MAX))
                .ok_or_else(|| bad("the inline DV is shorter than its size".into()))?
        }
        Some(b) => {
            let size = b
                .get(..4)
                .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
                .ok_or_else(|| bad("the DV file is truncated".into()))?;
            if size as i64 != d.size_in_bytes as i64 || b.len() != 4 + size + 4 {
                return Err(bad(format!(
                    "the DV file gives size {size} where the log says {}",
                    d.size_in_bytes
                )));
            }
            let (data, crc) = b[4..].split_at(size);
            let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
            if crc32fast::hash(data) != crc {
                return Err(bad("the DV's checksum does not match".into()));
            }
            data
        }
    };
    if data.len() < 4 || u32::from_le_bytes([data[0], data[1], data[2], data[3]]) != MAGIC {
        return Err(bad(
            "the DV does not start with the portable roaring magic".into()
        ));
    }
    let rows = RoaringTreemap::deserialize_from(&data[4..])
        .map_err(|e| bad(format!("the DV's bitmap does not decode ({e})")))?;
    if rows.len() as i64 != d.cardinality {
        return Err(bad(format!(
            "the DV holds {} rows where the log says {}",
            rows.len(),
            d.cardinality
        )));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(file: &[u8], d: &DeletionVectorDescriptor) -> Result<RoaringTreemap> {
        let (_, range) = location(d)?.unwrap();
        decode(d, Some(&file[range.start as usize..range.end as usize]))
    }

    #[test]
    fn dvs_round_trip_through_one_file() {
        let a: RoaringTreemap = [0u64, 5, 10, 70_000].into_iter().collect();
        let b: RoaringTreemap = (1u64..=3).chain([(1 << 32) + 7]).collect();
        let mut f = DvFile::new();
        let da = f.push(&a).unwrap();
        let db = f.push(&b).unwrap();
        let path = f.path();
        let bytes = f.into_bytes();
        assert_eq!(bytes[0], 1, "version byte");
        assert_eq!(
            da.offset,
            Some(1),
            "the first DV starts after the version byte"
        );
        assert_eq!(da.cardinality, 4);
        assert_eq!(location(&da).unwrap().unwrap().0, path);
        assert_eq!(read(&bytes, &da).unwrap(), a);
        assert_eq!(read(&bytes, &db).unwrap(), b);
    }

    #[test]
    fn the_layout_is_the_protocols() {
        // Size (BE) = magic + bitmap; magic LE; CRC-32 (BE) of magic + bitmap.
        let rows: RoaringTreemap = [3u64].into_iter().collect();
        let mut f = DvFile::new();
        let d = f.push(&rows).unwrap();
        let b = f.into_bytes();
        let size = u32::from_be_bytes(b[1..5].try_into().unwrap()) as usize;
        assert_eq!(size as i32, d.size_in_bytes);
        assert_eq!(&b[5..9], &1_681_511_377u32.to_le_bytes());
        // RoaringTreemap portable: u64 count of bitmaps (LE), then per bitmap its u32 key.
        assert_eq!(&b[9..17], &1u64.to_le_bytes());
        assert_eq!(&b[17..21], &0u32.to_le_bytes());
        let crc = crc32fast::hash(&b[5..5 + size]);
        assert_eq!(&b[5 + size..], &crc.to_be_bytes());
    }

    #[test]
    fn a_damaged_dv_is_an_error() {
        let rows: RoaringTreemap = [1u64, 2].into_iter().collect();
        let mut f = DvFile::new();
        let d = f.push(&rows).unwrap();
        let mut b = f.into_bytes().to_vec();
        let last = b.len() - 6;
        b[last] ^= 0xff;
        let e = read(&b, &d).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        let mut wrong = d.clone();
        wrong.cardinality = 3;
        let good = {
            let mut f = DvFile::new();
            f.push(&rows).unwrap();
            f.into_bytes()
        };
        let e = read(&good, &wrong).unwrap_err().to_string();
        assert!(e.contains("holds 2 rows"), "{e}");
    }

    #[test]
    fn inline_dvs_are_read() {
        let rows: RoaringTreemap = [9u64].into_iter().collect();
        let mut data = MAGIC.to_le_bytes().to_vec();
        rows.serialize_into(&mut data).unwrap();
        let size = data.len();
        while !data.len().is_multiple_of(4) {
            data.push(0);
        }
        let d = DeletionVectorDescriptor {
            storage_type: StorageType::Inline,
            path_or_inline_dv: z85::encode(&data),
            offset: None,
            size_in_bytes: size as i32,
            cardinality: 1,
        };
        assert!(location(&d).unwrap().is_none());
        assert_eq!(decode(&d, None).unwrap(), rows);
    }
}
