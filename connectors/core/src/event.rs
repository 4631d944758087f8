//! [`ChangeEvent`]: one row change, with the full source position it comes from.

use std::sync::Arc;

use crate::position::{BinlogFilePos, EventPosition, Gtid};
use crate::schema::TableSchema;
use crate::value::Value;

/// A row: one value per column of its [`TableSchema`], in column order.
pub type Row = Vec<Value>;

/// What happened to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// INSERT (`c`).
    Create,
    /// UPDATE (`u`).
    Update,
    /// DELETE (`d`).
    Delete,
    /// A row read by a snapshot (`r`).
    Read,
    /// TRUNCATE TABLE (`t`).
    Truncate,
}

impl Op {
    /// Debezium's one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }

    /// The op for a Debezium code.
    pub fn from_code(code: &str) -> Option<Op> {
        Some(match code {
            "c" => Op::Create,
            "u" => Op::Update,
            "d" => Op::Delete,
            "r" => Op::Read,
            "t" => Op::Truncate,
            _ => return None,
        })
    }
}

/// Debezium's `source.snapshot` marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SnapshotMarker {
    /// A streamed (binlog) event.
    #[default]
    False,
    /// A row of an initial snapshot.
    True,
    /// The first row of an initial snapshot.
    First,
    /// The first row of a table within an initial snapshot.
    FirstInDataCollection,
    /// The last row of a table within an initial snapshot.
    LastInDataCollection,
    /// The last row of an initial snapshot.
    Last,
    /// A row of an incremental (on-demand, watermark-based) snapshot.
    Incremental,
}

impl SnapshotMarker {
    /// Debezium's string for the marker.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotMarker::False => "false",
            SnapshotMarker::True => "true",
            SnapshotMarker::First => "first",
            SnapshotMarker::FirstInDataCollection => "first_in_data_collection",
            SnapshotMarker::LastInDataCollection => "last_in_data_collection",
            SnapshotMarker::Last => "last",
            SnapshotMarker::Incremental => "incremental",
        }
    }

    /// The marker for a Debezium string.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "false" => SnapshotMarker::False,
            "true" => SnapshotMarker::True,
            "first" => SnapshotMarker::First,
            "first_in_data_collection" => SnapshotMarker::FirstInDataCollection,
            "last_in_data_collection" => SnapshotMarker::LastInDataCollection,
            "last" => SnapshotMarker::Last,
            "incremental" => SnapshotMarker::Incremental,
            _ => return None,
        })
    }
}

/// Where an event comes from: Debezium's `source` block, minus what the table schema says.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// `server_id` of the server that wrote the event (from the binlog event header).
    pub server_id: u32,
    /// The GTID of the transaction, when GTIDs are on.
    pub gtid: Option<Gtid>,
    /// Binlog file, row index within the rows event, and the event's byte position.
    pub position: EventPosition,
    /// Commit time on the source in microseconds since the epoch (binlog timestamps have
    /// second precision; snapshot rows carry the time they were read).
    pub ts_us: i64,
    /// Snapshot marker (`false` for streamed events).
    pub snapshot: SnapshotMarker,
    /// Id of the session (connection) that made the change, when known.
    pub thread: Option<u32>,
    /// The statement that made the change, when known (`binlog_annotate_row_events` /
    /// `binlog_rows_query_log_events`).
    pub query: Option<Arc<str>>,
}

/// Debezium's `transaction` block: which transaction an event belongs to and its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionInfo {
    /// Transaction id: the GTID, or `file:pos` of its BEGIN when GTIDs are off.
    pub id: Arc<str>,
    /// 1-based order of this event among all events of the transaction.
    pub total_order: u64,
    /// 1-based order of this event among the transaction's events on the same table.
    pub data_collection_order: u64,
}

/// One change of one row (or a TRUNCATE of a table).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEvent {
    /// What happened.
    pub op: Op,
    /// The table, as it was when the change was made.
    pub table: Arc<TableSchema>,
    /// The row before the change (update, delete).
    pub before: Option<Row>,
    /// The row after the change (create, update, read).
    pub after: Option<Row>,
    /// Where the change comes from.
    pub source: SourceInfo,
    /// The transaction it belongs to, when transaction metadata is on.
    pub transaction: Option<TransactionInfo>,
}

impl ChangeEvent {
    /// The row whose primary key identifies the message: `after`, or `before` for deletes.
    pub fn key_row(&self) -> Option<&Row> {
        self.after.as_ref().or(self.before.as_ref())
    }

    /// The bytes this event holds in memory (an estimate for memory bounds: its row
    /// images; the schema and source strings are shared).
    pub fn memory_bytes(&self) -> usize {
        let row = |r: &Option<Row>| {
            r.as_ref()
                .map_or(0, |r| r.iter().map(Value::memory_bytes).sum::<usize>())
        };
        std::mem::size_of::<ChangeEvent>() + row(&self.before) + row(&self.after)
    }
}

/// A statement that changed a schema (CREATE/ALTER/DROP/RENAME/TRUNCATE of tables or
/// databases), in binlog order with the row changes.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaChange {
    /// Default database of the statement.
    pub database: String,
    /// The statement text.
    pub ddl: String,
    /// The transaction's GTID, when GTIDs are on.
    pub gtid: Option<Gtid>,
    /// Where the statement is in the binlog.
    pub position: BinlogFilePos,
    /// The server that wrote the statement (its event header's `server_id`).
    pub server_id: u32,
    /// Commit time on the source, µs since the epoch.
    pub ts_us: i64,
    /// The captured tables the statement created, altered or dropped, with their schema
    /// after it (Debezium's `tableChanges`). Empty when no schema history is kept or the
    /// statement touched no captured table.
    pub tables: Vec<TableChange>,
    /// The whole schema history after the statement (JSON), when one is kept: capture
    /// stores it with the statement, so that a restart decodes later events with the
    /// schemas of their time rather than today's.
    pub history: Option<Arc<str>>,
}

/// What a schema change did to one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableChangeKind {
    /// The table is new (`CREATE TABLE`, or the new name of a `RENAME`).
    Create,
    /// The table's columns or key changed.
    Alter,
    /// The table is gone (`DROP TABLE`, or the old name of a `RENAME`).
    Drop,
}

impl TableChangeKind {
    /// Debezium's name of the change: `CREATE`, `ALTER` or `DROP`.
    pub fn as_str(self) -> &'static str {
        match self {
            TableChangeKind::Create => "CREATE",
            TableChangeKind::Alter => "ALTER",
            TableChangeKind::Drop => "DROP",
        }
    }
}

/// One table touched by a schema change.
#[derive(Debug, Clone, PartialEq)]
pub struct TableChange {
    /// Created, altered or dropped.
    pub kind: TableChangeKind,
    /// Database of the table.
    pub database: String,
    /// Name of the table.
    pub table: String,
    /// The schema after the statement (`None` for a drop).
    pub schema: Option<Arc<TableSchema>>,
    /// The table's default character set, when known.
    pub charset: Option<String>,
    /// The statement changed values of rows already in the table, which the binlog does
    /// not carry as row changes: a column added with a value (a non-NULL `DEFAULT`,
    /// `NOT NULL`, generated, `AUTO_INCREMENT`), or a column's type or nullability
    /// changed; or the name now holds another table's rows (`replaced`). A replica must
    /// read the table again to match the primary.
    pub rewrites_rows: bool,
    /// The name now holds another table's rows: it is the target of a `RENAME` (as online
    /// schema change tools swap a rebuilt copy in), or a `CREATE OR REPLACE` replaced the
    /// table. Its rows before the statement are gone from it.
    pub replaced: bool,
}
