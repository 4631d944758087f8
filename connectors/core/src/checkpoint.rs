//! The state binlake persists about a snapshot in progress, typed.
//!
//! A snapshot's progress is recorded with every commit while it runs, in three places:
//! the `snapshot` field of capture's position records (`<name>.offsets`), the `state` of
//! `run`'s checkpoint (`_binlake/run/<name>.json`), and, per table, the `snapshot` of the
//! freshness record in each Delta commit `run` makes ([`TableSnapshot`]). A restart
//! resumes the snapshot from it.
//!
//! # Serialization invariant
//!
//! These types are the records' format (serde JSON); there is no other schema.
//! - Fields are only ever added, each with `#[serde(default)]`, so a record written by an
//!   older binlake reads the same; a field is never renamed, and a removed one is still
//!   read (as `after_key` is) until no supported version writes it.
//! - Every place that reads a record parses it as these types and fails (with the place
//!   named) when it does not parse. A record that cannot be read is never taken for "no
//!   snapshot pending": that would end a snapshot in progress with rows never read, and
//!   the replica would look complete.

use serde::{Deserialize, Serialize};

/// A key range of a table that is not emitted yet: the rows whose key is after `after`
/// (from the table's start when `None`) and up to and including `upto` (to its end when
/// `None`). Keys are message-key JSON, compared by the server in its collation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    /// `db.table`.
    pub table: String,
    /// Exclusive lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Inclusive upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upto: Option<String>,
    /// Keys (message-key JSON) to delete when the primary does not have them, looked up
    /// in the same consistent read as the range (`binlake verify --repair`: rows the
    /// replica has and the primary does not). Emitted as deletes at the chunk's high
    /// watermark, unless the stream changes the key in the window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<String>,
}

impl KeyRange {
    /// All of `table`.
    pub fn whole(table: &str) -> KeyRange {
        KeyRange {
            table: table.to_string(),
            after: None,
            upto: None,
            absent: Vec::new(),
        }
    }
}

/// What remains of a snapshot; recorded with every commit while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// Tables not finished yet, `db.table`, in reading order.
    pub tables: Vec<String>,
    /// The key ranges not emitted yet of the tables already begun (chunks being read or
    /// waiting for their high watermark, and the rest of each table). A table of `tables`
    /// with no range here has not begun: all of it remains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<KeyRange>,
    /// Older records (one reader): the key of the last row emitted of `tables[0]`. Read as
    /// the range after it, never written.
    #[serde(default, skip_serializing)]
    pub after_key: Option<String>,
    /// Chunks emitted so far.
    pub chunks: u64,
    /// Rows emitted so far.
    pub rows: u64,
    /// Requested while streaming (`binlake snapshot`): rows are marked `incremental`, as
    /// Debezium marks the rows of its incremental snapshots.
    #[serde(default)]
    pub incremental: bool,
}

impl SnapshotProgress {
    /// Nothing read yet of `tables`.
    pub fn new(tables: Vec<String>, incremental: bool) -> SnapshotProgress {
        SnapshotProgress {
            tables,
            ranges: Vec::new(),
            after_key: None,
            chunks: 0,
            rows: 0,
            incremental,
        }
    }

    /// True when every table is done.
    pub fn is_done(&self) -> bool {
        self.tables.is_empty()
    }
}

/// One table's part of a [`SnapshotProgress`], kept by a sink with the table's own data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSnapshot {
    /// The table is still to be read (wholly, when it has no ranges).
    pub pending: bool,
    /// Its key ranges not emitted yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<KeyRange>,
}

impl SnapshotProgress {
    /// What is left of `table`.
    pub fn of_table(&self, table: &str) -> TableSnapshot {
        TableSnapshot {
            pending: self.tables.iter().any(|t| t == table),
            ranges: self
                .ranges
                .iter()
                .filter(|r| r.table == table)
                .cloned()
                .collect(),
        }
    }

    /// Replaces what is left of `table` (a pending table keeps its place in the order).
    pub fn set_table(&mut self, table: &str, left: TableSnapshot) {
        self.ranges.retain(|r| r.table != table);
        if left.pending {
            self.ranges.extend(left.ranges);
        } else {
            self.tables.retain(|t| t != table);
        }
    }
}
