//! binlake's lake side: per captured table, an append-only change log and a replica of the
//! current state, both Delta Lake tables of Parquet files on object storage (a local folder
//! by default; S3, GCS and Azure by URL).
//!
//! Architecture invariant: only this crate writes data files.
//!
//! # Layout
//!
//! ```text
//! <root>/<db>/<table>/changes/   Delta table, append-only, partitioned by __commit_date
//! <root>/<db>/<table>/replica/   Delta table, the current rows: one file per key bucket
//!                                (copy-on-write), or appended files with deletion
//!                                vectors (merge-on-read, see `table/mor.rs`)
//! <root>/_binlake/               binlake's own state (the `run` checkpoint; the key
//!                                indexes of merge-on-read replicas of a local lake)
//! ```
//!
//! # Why binlake writes the Delta actions itself
//!
//! delta-rs' MERGE fails on two source rows for one target row, rewrites whole files and
//! has known memory and pruning problems on large tables. A replica needs only
//! "last change per key wins", so [`table::TableSink`] hashes the primary key into a fixed
//! number of buckets, keeps one Parquet file per bucket, and rewrites only the buckets a
//! batch touches (copy-on-write), committing the `remove`/`add` actions, the `txn`
//! actions of the positions it covers and binlake's freshness record in one Delta commit.
//! deltalake (delta-rs) does the protocol: table creation, snapshots, conflict-checked
//! commits (conditional puts on S3), checkpoints, vacuum and reading for `query`.
//!
//! # Delivery guarantee
//!
//! Every commit records what it covers: `txn` actions (app id per Kafka topic-partition
//! with the last offset as version, or the `run` batch number) and, in the commit info, the
//! source position and commit time of the last change. A writer resumes from what the
//! table records and skips what it already holds, so replaying after a crash neither
//! loses nor duplicates a change.

#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod arrow_map;
pub mod config;
pub mod coverage;
pub mod dv;
mod error;
pub mod key_index;
pub mod query;
pub mod status;
pub mod store;
pub mod table;
pub mod verify;

pub use config::{LakeConfig, ReplicaMode};
pub use error::{Error, Result};
pub use store::Lake;
pub use table::{Applied, Progress, TableSink};
