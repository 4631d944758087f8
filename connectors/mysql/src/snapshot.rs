//! Snapshots: the rows that existed before capture began, read in chunks without locks,
//! merged into the change stream so that the result is exactly the primary's state.
//!
//! # Algorithm (watermarks, as in DBLog and Flink CDC's incremental snapshots)
//!
//! Streaming never pauses. Each table is read in primary-key order, one chunk at a time,
//! with keyset pagination (`WHERE (k1, k2) > (?, ?) ORDER BY k1, k2 LIMIT n`), so rows are
//! ordered by the server's collation, never re-sorted here. For each chunk:
//!
//! 1. **low** = the end of the binlog (`SHOW MASTER STATUS`);
//! 2. `SELECT` the chunk;
//! 3. **high** = the end of the binlog again.
//!
//! The chunk is handed to a [`Window`], which also sees every row change the stream
//! produces. A change of the same table at a binlog position after *low* whose key is in
//! the chunk removes that row from the chunk: the stream carries a newer version (or the
//! delete). When the stream reaches *high*, the remaining rows are emitted as `op = r`
//! events, right there in the stream.
//!
//! # Why this is correct
//!
//! For a row of the chunk, the `SELECT` saw its state at some moment between low and high.
//! - If no change of that key was logged in (low, high], its state at high is the one
//!   selected; emitting it at high places it exactly where that state held. Later changes
//!   come after it in the stream.
//! - If a change was logged in (low, high], the row is dropped, and the stream's events
//!   (full row images) describe the key from then on; an insert, update or delete in the
//!   window needs no snapshot row at all.
//!
//! Changes logged before low are already reflected by the `SELECT` and come before the
//! chunk in the stream, so the snapshot row, placed later, wins as it should. Rows inserted
//! in the window after the `SELECT` read past them are not in the chunk; the stream carries
//! them. No lock is taken and nothing is written to the primary.
//!
//! # Resumption
//!
//! After each emitted chunk the [`SnapshotProgress`] (the table being read and the last key
//! emitted, as the message key JSON) is recorded together with the stream position, in the
//! same exactly-once commit as the changes. A restart continues after the last recorded
//! chunk; at most the chunk in flight is read again.
//!
//! # Limits
//!
//! A table without a primary key (nor a NOT NULL unique key, which serves as one) cannot
//! be split into chunks, and a streamed change cannot be matched to a selected row: it is
//! read in one pass (`SELECT` of the whole table between the two watermarks, so memory
//! grows with the table; a warning says so), and the pass counts only if no change of the
//! table was logged between them, which makes the rows exactly the table at *high*.
//! Otherwise it is read again ([`Ready::Retry`]). Until that pass is emitted, capture holds
//! back the table's streamed changes: the pass reflects them, and without a key a consumer
//! could not tell a row it already has from the same row in the snapshot. (For the same
//! reason such tables are not snapshotted on demand.) One chunk is read at a time.
//!
//! # On demand
//!
//! `binlake snapshot --table db.t` asks a running capture (through its signal topic) to
//! snapshot tables again while it streams: the tables are appended to the progress and
//! read the same way, their rows marked `incremental`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use binlake_core::debezium::{DebeziumOptions, TableCodec};
use binlake_core::{
    BinlogFilePos, ChangeEvent, ColumnType, EventPosition, Flavor, Op, Row, SnapshotMarker,
    SourceInfo, TableSchema, Value,
};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use serde::{Deserialize, Serialize};

use crate::config::SourceConfig;
use crate::error::{Error, Result};
use crate::server::connect;
use crate::values::from_mysql;

fn default_chunk_size() -> usize {
    8_192
}

/// When to snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Snapshot the captured tables when there is no recorded position, then stream.
    #[default]
    Initial,
    /// Never snapshot: only changes from the start position on.
    Never,
    /// Snapshot (as `initial`), then stop: for one-off loads. A restart after a completed
    /// snapshot stops at once.
    InitialOnly,
    /// Like `initial`, and also when the recorded position is no longer in the primary's
    /// binlog (purged): then capture starts over at the end of the binlog with a new
    /// snapshot, instead of stopping.
    WhenNeeded,
}

/// The `[snapshot]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// `initial` (default), `when_needed`, `initial_only` or `never`.
    #[serde(default)]
    pub mode: SnapshotMode,
    /// Rows per chunk; memory is bounded by one chunk.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            mode: SnapshotMode::default(),
            chunk_size: default_chunk_size(),
        }
    }
}

impl SnapshotConfig {
    /// Checks values serde cannot.
    pub fn validate(&self, path: &str, problems: &mut binlake_core::Problems) {
        if self.chunk_size == 0 {
            problems.push(path, "chunk_size", "must be > 0");
        }
    }
}

/// What remains of a snapshot; recorded with every commit while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// Tables still to read, `db.table`, the current one first.
    pub tables: Vec<String>,
    /// The key of the last row emitted of the current table, as message-key JSON; `None`
    /// before its first chunk.
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
    /// True when every table is done.
    pub fn is_done(&self) -> bool {
        self.tables.is_empty()
    }
}

/// One chunk read between two watermarks.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The table.
    pub table: Arc<TableSchema>,
    /// The selected rows, in key order.
    pub rows: Vec<Row>,
    /// Binlog end before the `SELECT`.
    pub low: BinlogFilePos,
    /// Binlog end after the `SELECT`.
    pub high: BinlogFilePos,
    /// Whether this is the table's last chunk (fewer rows than the chunk size).
    pub last_of_table: bool,
}

/// Reads chunks on its own connection.
pub struct ChunkReader {
    conn: Conn,
    cfg: SnapshotConfig,
    schemas: HashMap<String, Arc<TableSchema>>,
    /// The server's row-count estimate of each table (`information_schema.TABLES`).
    estimates: HashMap<String, u64>,
    opts: Arc<DebeziumOptions>,
    status_query: &'static str,
}

impl std::fmt::Debug for ChunkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader")
            .field("tables", &self.schemas.len())
            .finish_non_exhaustive()
    }
}

fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

impl ChunkReader {
    /// Connects and loads the schemas of the tables `filter` includes. Returns the reader
    /// and the tables to snapshot, in name order (tables without a primary key are left
    /// out with a warning).
    pub async fn open(
        source: &SourceConfig,
        cfg: &SnapshotConfig,
        flavor: Flavor,
    ) -> Result<(ChunkReader, Vec<String>)> {
        let mut conn = connect(source).await?;
        let target = source.describe();
        conn.query_drop("SET time_zone = '+00:00', NAMES utf8mb4")
            .await
            .map_err(Error::query(&target, "SET time_zone"))?;
        let filter = source.filter();
        let history = crate::schema_history::load_from_information_schema(&mut conn, &|db, t| {
            filter.table_included(db, t)
        })
        .await?;
        let mut schemas = HashMap::new();
        let mut tables = Vec::new();
        for s in history.schemas() {
            let s = filter.project_schema(s.clone());
            let name = s.qualified_name();
            if s.primary_key.is_empty() {
                tracing::warn!(table = %name, "table has no primary key: it is snapshotted in one pass (memory grows with the table), read again until no change of it falls into the pass");
            }
            tables.push(name.clone());
            schemas.insert(name, Arc::new(s));
        }
        tables.sort();
        // Estimates only (InnoDB samples), for progress and ETA; none is not an error.
        let estimates: HashMap<String, u64> = conn
            .query::<(String, String, Option<u64>), _>(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE'",
            )
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(db, t, n)| {
                let name = format!("{db}.{t}");
                Some((name, n?)).filter(|(name, _)| schemas.contains_key(name))
            })
            .collect();
        let version: String = conn
            .query_first("SELECT VERSION()")
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let status_query = if flavor == Flavor::Mysql
            && !version.starts_with("5.")
            && !version.starts_with("8.0")
            && !version.starts_with("8.1")
        {
            "SHOW BINARY LOG STATUS"
        } else {
            "SHOW MASTER STATUS"
        };
        let opts = Arc::new(DebeziumOptions::new("snapshot", flavor));
        Ok((
            ChunkReader {
                conn,
                cfg: cfg.clone(),
                schemas,
                estimates,
                opts,
                status_query,
            },
            tables,
        ))
    }

    /// The server's estimate of a table's rows.
    pub fn estimated_rows(&self, table: &str) -> Option<u64> {
        self.estimates.get(table).copied()
    }

    /// The schema of a table being snapshotted.
    pub fn schema(&self, table: &str) -> Option<&Arc<TableSchema>> {
        self.schemas.get(table)
    }

    async fn binlog_end(&mut self) -> Result<BinlogFilePos> {
        let row: Option<mysql_async::Row> = self
            .conn
            .query_first(self.status_query)
            .await
            .map_err(Error::query("snapshot connection", self.status_query))?;
        let (file, pos) = row
            .and_then(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
            .ok_or_else(|| Error::Unexpected {
                target: "snapshot connection".into(),
                reason: format!("`{}` returned no position", self.status_query),
            })?;
        Ok(BinlogFilePos::new(file, pos))
    }

    /// Reads the next chunk of `table` after `after_key` (message-key JSON); a table
    /// without a key in one chunk.
    pub async fn read_chunk(&mut self, table: &str, after_key: Option<&str>) -> Result<Chunk> {
        let schema = self
            .schemas
            .get(table)
            .cloned()
            .ok_or_else(|| Error::Unexpected {
                target: "snapshot".into(),
                reason: format!("table {table} is not known to the snapshot reader"),
            })?;
        let key_cols: Vec<&str> = schema.key_columns().map(|c| c.name.as_str()).collect();
        let cols: Vec<String> = schema.columns.iter().map(|c| quote(&c.name)).collect();
        let key_list = key_cols
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!(
            "SELECT {} FROM {}.{}",
            cols.join(", "),
            quote(&schema.database),
            quote(&schema.table)
        );
        let mut params: Vec<mysql_async::Value> = Vec::new();
        if let Some(k) = after_key {
            let codec = TableCodec::new(schema.clone(), self.opts.clone());
            let values = codec
                .decode_key(k.as_bytes())
                .map_err(|e| Error::Unexpected {
                    target: "snapshot".into(),
                    reason: format!("recorded snapshot key of {table} cannot be read: {e}"),
                })?;
            let marks = vec!["?"; values.len()].join(", ");
            let _ = write!(sql, " WHERE ({key_list}) > ({marks})");
            for (v, c) in values.iter().zip(schema.key_columns()) {
                params.push(to_mysql(v, &c.ty));
            }
        }
        let keyless = schema.primary_key.is_empty();
        if !keyless {
            let _ = write!(sql, " ORDER BY {key_list} LIMIT {}", self.cfg.chunk_size);
        }
        let low = self.binlog_end().await?;
        let rows: Vec<mysql_async::Row> = self
            .conn
            .exec(&sql, params)
            .await
            .map_err(Error::query("snapshot connection", &sql))?;
        let high = self.binlog_end().await?;
        let n = rows.len();
        let mut out = Vec::with_capacity(n);
        for r in rows {
            let values = r.unwrap();
            let row = values
                .into_iter()
                .zip(&schema.columns)
                .map(|(v, c)| from_mysql(v, &c.ty).map_err(|e| format!("{table}.{}: {e}", c.name)))
                .collect::<std::result::Result<Row, _>>()
                .map_err(|reason| Error::Unexpected {
                    target: "snapshot".into(),
                    reason,
                })?;
            out.push(row);
        }
        Ok(Chunk {
            table: schema,
            rows: out,
            low,
            high,
            last_of_table: keyless || n < self.cfg.chunk_size,
        })
    }
}

/// A key as a comparable string (the values' exact debug form).
fn key_string(row: &Row, pk: &[usize]) -> String {
    let mut s = String::new();
    for &i in pk {
        let _ = write!(s, "{:?}\u{1f}", row.get(i));
    }
    s
}

/// Orders binlog positions: file sequence number, then byte position.
fn order(file: &str, pos: u64) -> (u64, u64) {
    (
        binlake_core::position::binlog_file_sequence(file).unwrap_or(0),
        pos,
    )
}

/// A chunk whose high watermark the stream has reached.
#[derive(Debug)]
pub enum Ready {
    /// The rows to emit (those whose key changed in the window are gone).
    Rows(Chunk, Vec<Row>),
    /// A keyless table's pass that a change fell into: read it again.
    Retry(Chunk),
}

/// Merges chunks into the stream. See the module docs.
#[derive(Debug, Default)]
pub struct Window {
    /// The table being snapshotted and the keys it changed since the last chunk, with the
    /// binlog position of each change.
    table: Option<String>,
    recent: Vec<(BinlogFilePos, String)>,
    chunk: Option<Chunk>,
    /// The keys of the waiting chunk: once it is here, only changes of these keys matter,
    /// which bounds `recent` by the chunk size however far the stream lags.
    chunk_keys: std::collections::HashSet<String>,
    /// The position the stream has reached (end of the last transaction or heartbeat).
    stream: Option<BinlogFilePos>,
}

impl Window {
    /// Starts watching `table` (the next chunk's table).
    pub fn watch(&mut self, table: &str) {
        if self.table.as_deref() != Some(table) {
            self.table = Some(table.to_string());
            self.recent.clear();
        }
    }

    /// Sees a streamed change.
    pub fn observe_change(&mut self, e: &ChangeEvent) {
        let Some(t) = &self.table else { return };
        if e.table.database.len() + 1 + e.table.table.len() != t.len()
            || e.table.qualified_name() != *t
        {
            return;
        }
        let at = BinlogFilePos::new(e.source.position.file.to_string(), e.source.position.pos);
        for row in [&e.before, &e.after].into_iter().flatten() {
            let key = key_string(row, &e.table.primary_key);
            if self.chunk.is_none() || self.chunk_keys.contains(&key) {
                self.recent.push((at.clone(), key));
            }
        }
    }

    /// Sees the stream reach `pos` (a commit or a heartbeat).
    pub fn observe_position(&mut self, pos: &BinlogFilePos) {
        self.stream = Some(pos.clone());
    }

    /// Hands over a chunk read while the stream went on.
    pub fn offer(&mut self, chunk: Chunk) {
        self.watch(&chunk.table.qualified_name());
        let pk = &chunk.table.primary_key;
        self.chunk_keys = chunk.rows.iter().map(|r| key_string(r, pk)).collect();
        let low = order(&chunk.low.file, chunk.low.pos);
        let keys = &self.chunk_keys;
        self.recent
            .retain(|(at, k)| order(&at.file, at.pos) >= low && keys.contains(k));
        self.chunk = Some(chunk);
    }

    /// True while a chunk waits for the stream to reach its high watermark.
    pub fn has_chunk(&self) -> bool {
        self.chunk.is_some()
    }

    /// The chunk's rows to emit, once the stream has reached its high watermark: rows
    /// whose key changed after the low watermark are dropped; a keyless table's pass that
    /// a change fell into is to be read again. `None` while waiting.
    pub fn ready(&mut self) -> Option<Ready> {
        let chunk = self.chunk.as_ref()?;
        let stream = self.stream.as_ref()?;
        let reached = order(&stream.file, stream.pos) >= order(&chunk.high.file, chunk.high.pos);
        if !reached {
            return None;
        }
        let chunk = self.chunk.take()?;
        self.chunk_keys.clear();
        let changed: std::collections::HashSet<&str> = self
            .recent
            .iter()
            .filter(|(at, _)| order(&at.file, at.pos) >= order(&chunk.low.file, chunk.low.pos))
            .map(|(_, k)| k.as_str())
            .collect();
        let pk = &chunk.table.primary_key;
        let retry = pk.is_empty() && !changed.is_empty();
        let rows: Vec<Row> = if retry {
            Vec::new()
        } else {
            chunk
                .rows
                .iter()
                .filter(|r| !changed.contains(key_string(r, pk).as_str()))
                .cloned()
                .collect()
        };
        // Changes before this chunk's high watermark can no longer matter.
        let high = chunk.high.clone();
        self.recent
            .retain(|(at, _)| order(&at.file, at.pos) > order(&high.file, high.pos));
        Some(if retry {
            Ready::Retry(chunk)
        } else {
            Ready::Rows(chunk, rows)
        })
    }
}

/// Snapshot rows as read events at `at` (the chunk's high watermark); `incremental`: of a
/// snapshot requested while streaming (every row marked `incremental`).
pub fn read_events(
    table: &Arc<TableSchema>,
    rows: Vec<Row>,
    at: &BinlogFilePos,
    (first, last, incremental): (bool, bool, bool),
    ts_us: i64,
) -> Vec<ChangeEvent> {
    let n = rows.len();
    let file: Arc<str> = at.file.as_str().into();
    rows.into_iter()
        .enumerate()
        .map(|(i, row)| ChangeEvent {
            op: Op::Read,
            table: table.clone(),
            before: None,
            after: Some(row),
            source: SourceInfo {
                server_id: 0,
                gtid: None,
                position: EventPosition {
                    file: file.clone(),
                    pos: at.pos,
                    row: i as u32,
                },
                ts_us,
                snapshot: if incremental {
                    SnapshotMarker::Incremental
                } else if first && i == 0 {
                    SnapshotMarker::FirstInDataCollection
                } else if last && i + 1 == n {
                    SnapshotMarker::LastInDataCollection
                } else {
                    SnapshotMarker::True
                },
                thread: None,
                query: None,
            },
            transaction: None,
        })
        .collect()
}

/// The message-key JSON of a row (for [`SnapshotProgress::after_key`]).
pub fn key_json(table: &Arc<TableSchema>, row: &Row) -> Option<String> {
    let codec = TableCodec::new(
        table.clone(),
        Arc::new(DebeziumOptions::new("snapshot", Flavor::Mysql)),
    );
    let e = ChangeEvent {
        op: Op::Read,
        table: table.clone(),
        before: None,
        after: Some(row.clone()),
        source: SourceInfo {
            server_id: 0,
            gtid: None,
            position: EventPosition {
                file: "".into(),
                pos: 0,
                row: 0,
            },
            ts_us: 0,
            snapshot: SnapshotMarker::True,
            thread: None,
            query: None,
        },
        transaction: None,
    };
    let mut buf = Vec::new();
    codec
        .encode_key(&e, &mut buf)
        .ok()?
        .then(|| String::from_utf8(buf).ok())?
}

/// A key value as a statement parameter.
fn to_mysql(v: &Value, ty: &ColumnType) -> mysql_async::Value {
    use mysql_async::Value as My;
    match v {
        Value::Null => My::NULL,
        Value::Int(i) => My::Int(*i),
        Value::UInt(u) => My::UInt(*u),
        Value::Float(f) => My::Float(*f),
        Value::Double(f) => My::Double(*f),
        Value::Decimal(s) | Value::String(s) | Value::Enum(s) | Value::Set(s) | Value::Json(s) => {
            My::Bytes(s.clone().into_bytes())
        }
        Value::Bit(b) => {
            let width = match ty {
                ColumnType::Bit { width } => usize::from(*width).div_ceil(8),
                _ => 8,
            };
            My::Bytes(b.to_be_bytes()[8 - width..].to_vec())
        }
        Value::Date(d) => My::Date(d.year, d.month, d.day, 0, 0, 0, 0),
        Value::DateTime(dt) => My::Date(
            dt.date.year,
            dt.date.month,
            dt.date.day,
            dt.hour,
            dt.minute,
            dt.second,
            dt.micros,
        ),
        Value::Timestamp(us) => match binlake_core::temporal::DateTime::from_epoch_micros(*us) {
            Some(dt) => My::Date(
                dt.date.year,
                dt.date.month,
                dt.date.day,
                dt.hour,
                dt.minute,
                dt.second,
                dt.micros,
            ),
            None => My::NULL,
        },
        Value::Time(us) => {
            let neg = *us < 0;
            let a = us.unsigned_abs();
            let secs = a / 1_000_000;
            My::Time(
                neg,
                (secs / 86_400) as u32,
                ((secs / 3600) % 24) as u8,
                ((secs / 60) % 60) as u8,
                (secs % 60) as u8,
                (a % 1_000_000) as u32,
            )
        }
        Value::Year(y) => My::UInt(u64::from(*y)),
        Value::Bytes(b) | Value::Geometry(b) => My::Bytes(b.clone()),
    }
}
