//! The change-event model every binlake component speaks.
//!
//! - [`value`]: [`Value`], one lossless representation for every MySQL/MariaDB column value.
//! - [`schema`]: [`TableSchema`], the column types (with length, precision, charset, ENUM/SET
//!   members), nullability and the primary key of a captured table.
//! - [`position`]: where in the source an event comes from: GTIDs and GTID sets (MySQL),
//!   GTID positions (MariaDB), binlog file:pos, and [`EventPosition`], the total order of
//!   events within one source.
//! - [`event`]: [`ChangeEvent`], one row change with its full source position.
//! - [`debezium`]: the Debezium-compatible JSON codec for keys and envelopes, with or
//!   without Kafka Connect schemas. Pure: no I/O.
//!
//! - [`failpoint`]: named crash points for fault tests, inert unless armed by the environment.
//!
//! Architecture invariant: this crate depends on no connector, and does no I/O (the
//! failpoints read one environment variable).

#![warn(missing_docs)]

pub mod checkpoint;
pub mod config;
pub mod debezium;
pub mod error;
pub mod event;
pub mod failpoint;
pub mod masking;
pub mod position;
pub mod schema;
pub mod temporal;
pub mod value;

pub use checkpoint::{KeyRange, SnapshotProgress, TableSnapshot};
pub use config::{Problem, Problems, Secret};
pub use error::{Error, Result};
pub use event::{
    ChangeEvent, Op, Row, SchemaChange, SnapshotMarker, SourceInfo, TableChange, TableChangeKind,
    TransactionInfo,
};
pub use position::{
    BinlogFilePos, EventPosition, Gtid, MariaDbGtid, MariaDbGtidPos, MysqlGtid, MysqlGtidSet,
    ResumePosition,
};
pub use schema::{Column, ColumnDefault, ColumnType, Flavor, TableSchema};
pub use value::Value;
