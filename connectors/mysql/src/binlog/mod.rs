//! Reading the binlog: events to [`ChangeEvent`](binlake_core::ChangeEvent)s.
//!
//! - [`decoder`]: the sans-I/O state machine from events to [`BinlogItem`]s.
//! - [`table`]: table maps to schemas and per-column decoders.
//! - [`rows`]: row images decoded straight into core values (and why not mysql_common's).
//! - [`charset`], [`json`]: text conversion, binary JSON and partial JSON updates.
//! - [`mariadb`]: MariaDB's own events (GTID, GTID list, annotate, compressed events).
//! - [`filter`]: which tables and columns are captured.
//! - [`statement`]: DML logged as statements (a session with `binlog_format=STATEMENT`).
//! - [`file`]: reading binlog files offline (`binlake binlog dump`), and the event framing
//!   that checks sizes before mysql_common sees the bytes; `guard` checks the counts inside
//!   events whose parsers allocate for them.

pub mod charset;
pub mod decoder;
pub mod file;
pub mod filter;
#[cfg(test)]
mod fuzz_tests;
mod guard;
pub mod json;
pub mod mariadb;
pub mod rows;
pub mod statement;
pub mod stream;
pub mod table;

pub use decoder::{BinlogItem, Commit, DecodeError, Decoder, NoLookup, SchemaLookup, TxnStart};
pub use filter::Filter;
pub use stream::{BinlogReader, StartFrom};
