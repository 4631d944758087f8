//! Snapshots: the rows that existed before capture began, read in chunks without locks,
//! merged into the change stream so that the result is exactly the primary's state.
//!
//! # Algorithm (watermarks, as in DBLog and Flink CDC's incremental snapshots)
//!
//! Streaming never pauses. Each table's key space is read in chunks, each chunk a key
//! range `(after, upto]` read with `WHERE (k1, k2) > (?, ?) AND (k1, k2) <= (?, ?) ORDER
//! BY k1, k2 LIMIT n`, so rows are ordered by the server's collation, never re-sorted
//! here. For each chunk:
//!
//! 1. **low** = the end of the binlog (`SHOW MASTER STATUS`);
//! 2. `SELECT` the chunk;
//! 3. **high** = the end of the binlog again.
//!
//! On MariaDB the chunk is read in a `START TRANSACTION WITH CONSISTENT SNAPSHOT`, whose
//! binlog position the server names (`Binlog_snapshot_position`): the rows are the table
//! exactly at that position, so low = high = it. This closes a race of the plain
//! watermarks: the binlog end may already count a transaction that the engine has not
//! committed yet, whose change a `SELECT` right after then misses while the window takes
//! it as older than low. (MySQL names no such position; there the race stays, narrow.)
//! A TRUNCATE in the window drops the whole chunk; any change of a keyless table in it
//! (even of an empty one) has its pass read again.
//!
//! The chunk then waits in a window that also sees every row change the stream produces.
//! A change of the same table at a binlog position after *low* whose key is in the chunk
//! removes that row from the chunk: the stream carries a newer version (or the delete).
//! When the stream reaches *high*, the remaining rows are emitted as `op = r` events,
//! right there in the stream.
//!
//! # Why this is correct
//!
//! For a row of the chunk, the `SELECT` saw its state at some moment between low and high.
//! - If no change of that key was logged after low (up to where the stream is when the
//!   chunk is emitted), its state at that point is the one selected; emitting it there
//!   places it exactly where that state held. Later changes come after it in the stream.
//! - If a change was logged, the row is dropped, and the stream's events (full row
//!   images) describe the key from then on; an insert, update or delete in the window
//!   needs no snapshot row at all.
//!
//! - Unless every change logged is an update whose after-image leaves columns out
//!   (`binlog_row_image = MINIMAL` or `NOBLOB`) and keeps the key: the stream alone cannot
//!   describe the row then, so the row is emitted with the values those updates wrote laid
//!   over it. A column an update leaves out is one it did not change, so the `SELECT`'s
//!   value of it holds whether the `SELECT` ran before or after the update.
//!
//! Changes logged before low are already reflected by the `SELECT` and come before the
//! chunk in the stream, so the snapshot row, placed later, wins as it should. Rows inserted
//! in the window after the `SELECT` read past them are not in the chunk; the stream carries
//! them. No lock is taken and nothing is written to the primary.
//!
//! A reader's chunk may reach the window after the stream has passed its low watermark,
//! so the window remembers the changes of every table being read from the stream position
//! at which the reader took its range (its *floor*: low is the binlog end after it) and
//! forgets those older than every floor; once a chunk waits in the window only changes of
//! its own keys are kept. Memory is bounded by the chunks (see below) and by the changes
//! the stream carries while one chunk is read.
//!
//! # Parallel readers
//!
//! `snapshot.readers` readers, each on its own connection, read at once. The chunks of
//! one table have disjoint key ranges, so each is merged on its own and the order in which
//! they are emitted does not matter. The ranges left are kept in a plan the readers share:
//! a reader takes the first free range (beginning the next table when all ranges of the
//! begun ones are taken); when the range is open-ended and other readers exist, it first
//! asks the server for the key `chunk_size` rows on (`… ORDER BY k LIMIT 1 OFFSET n-1`,
//! an index-only scan) and cuts the range there, leaving the rest free for another
//! reader. A chunk that the `LIMIT` cut short leaves the rest of its range free too. A
//! semaphore with one place per reader, held by each chunk until it is emitted, bounds
//! memory by `chunk_size` × `readers` rows however far the stream lags.
//!
//! # Resumption
//!
//! After each emitted chunk the [`SnapshotProgress`] is recorded together with the
//! stream position, in the same exactly-once commit as the changes: the tables not
//! finished and, for the begun ones, the key ranges not emitted yet (those being read or
//! waiting in the window, and the rest of each table). The ranges' union is always exactly
//! what is not emitted, so a restart reads those ranges and nothing else: no row is
//! emitted twice, and the rows read again are at most those of the chunks in flight, one
//! per reader.
//!
//! # Limits
//!
//! A table without a primary key (nor a NOT NULL unique key, which serves as one) cannot
//! be split into chunks, and a streamed change cannot be matched to a selected row: it is
//! read in one pass (`SELECT` of the whole table between the two watermarks, so memory
//! grows with the table; a warning says so), and the pass counts only if no change of the
//! table was logged between them, which makes the rows exactly the table at *high*.
//! Otherwise it is read again. Until that pass is emitted, capture holds
//! back the table's streamed changes: the pass reflects them, and without a key a consumer
//! could not tell a row it already has from the same row in the snapshot. (For the same
//! reason such tables are not snapshotted on demand.) Other tables are read meanwhile.
//!
//! # Schema changes
//!
//! The readers read with schemas they share with the stream. When the stream passes a
//! DDL of a table ([`Snapshotter::schema_changed`]), the table's schema is replaced; a
//! chunk read with another schema than the current one when it is ready to go out (read
//! after the server ran the DDL but before the stream reached it, with the old columns)
//! is read again, so every snapshot row placed after a DDL has the columns it left. A read
//! that fails because a column or the table is gone, or because the table was recreated
//! (TRUNCATE, a copying ALTER) after the chunk's consistent snapshot began (errors 1054,
//! 1146, 1412: [`Error::is_schema_race`]; the stream has not reached the DDL yet) puts its
//! range back and is tried again after a pause.
//!
//! Some DDL changes the values of existing rows without row events (a column added with a
//! default, generated, `AUTO_INCREMENT` or `NOT NULL`; a type that converts values): the
//! schema history marks it (`TableChange::rewrites_rows`), and the table is then read
//! again from its start (everything planned, read or waiting of it is dropped), or added
//! to a new snapshot when none runs. The same holds when the key of a table being read
//! changes (the recorded ranges are in the old key). Chunks emitted before the DDL stand:
//! they were the table's rows at their place in the stream.
//!
//! # On demand
//!
//! `binlake snapshot --table db.t` asks a running capture (through its signal topic) to
//! snapshot tables again while it streams: the tables are appended to the progress and
//! read the same way, their rows marked `incremental`. A request may also name key
//! ranges of a table ([`Snapshotter::add_ranges`]; `binlake verify --repair` through
//! `run`'s signal folder): each is read as a range of a begun table. A range's `absent`
//! keys (rows a replica has and the primary may not) are looked up in the chunk's own
//! consistent read; those not found are emitted as deletes (the key columns set, the
//! rest absent: `Value::Absent`) at the chunk's high watermark, under the same window rule as its rows: a
//! key the stream changes from the low watermark on is left to the stream. That is
//! correct for the same reason as the rows: the key is absent from the table at that
//! point of the stream.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

pub use binlake_core::checkpoint::{KeyRange, SnapshotProgress, TableSnapshot};
use binlake_core::debezium::{DebeziumOptions, TableCodec};
use binlake_core::{
    BinlogFilePos, ChangeEvent, ColumnType, EventPosition, Flavor, Op, Row, SnapshotMarker,
    SourceInfo, TableChange, TableSchema, Value,
};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use serde::Deserialize;

use crate::config::SourceConfig;
use crate::error::{Error, Result};
use crate::server::connect;
use crate::values::from_mysql;

fn default_chunk_size() -> usize {
    8_192
}

fn default_readers() -> usize {
    1
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
    /// Rows per chunk; memory is bounded by `chunk_size` × `readers` rows.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    /// Chunk readers, each on its own connection to the source. One reader already reads
    /// the next chunk while the last one is emitted; more pay off when the primary has
    /// idle cores and sits across a network (each extra reader of one table costs an
    /// index scan to find where its chunk begins).
    #[serde(default = "default_readers")]
    pub readers: usize,
    /// Read a table again (an incremental snapshot, rows marked `incremental`) after a DDL
    /// changes the values of its existing rows without row events: a column added with a
    /// non-NULL default, `NOT NULL`, generated or `AUTO_INCREMENT`; a column's type or
    /// nullability changed. Without it the replica keeps NULL (or the old values) for
    /// those rows. Default true.
    #[serde(default = "default_true")]
    pub reread_on_schema_change: bool,
}

fn default_true() -> bool {
    true
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            mode: SnapshotMode::default(),
            chunk_size: default_chunk_size(),
            readers: default_readers(),
            reread_on_schema_change: true,
        }
    }
}

impl SnapshotConfig {
    /// Checks values serde cannot.
    pub fn validate(&self, path: &str, problems: &mut binlake_core::Problems) {
        problems.check_range(
            path,
            "chunk_size",
            self.chunk_size,
            1..=1_000_000,
            "memory holds chunk_size × readers rows",
        );
        problems.check_range(path, "readers", self.readers, 1..=64, "");
    }
}

/// One chunk read between two watermarks.
#[derive(Debug)]
pub struct Chunk {
    /// The table.
    pub table: Arc<TableSchema>,
    /// The selected rows, in key order.
    pub rows: Vec<Row>,
    /// Binlog end before the `SELECT`.
    pub low: BinlogFilePos,
    /// Binlog end after the `SELECT`.
    pub high: BinlogFilePos,
    /// The key of the last row when the chunk size cut the range short (the rest of the
    /// range is still to read); `None` when the chunk holds all of its range.
    pub cut_at: Option<String>,
    /// Rows (only their key columns set, the rest absent) of the range's `absent` keys that the primary
    /// does not have, read in the same consistent read: emitted as deletes.
    pub deletes: Vec<Row>,
    /// The plan slot this chunk reads (see [`Snapshotter`]).
    slot: u64,
    /// Holds one of the readers' places until the chunk is emitted: memory stays bounded
    /// by chunk size × readers however far the stream lags.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The schemas the readers read tables with, by `db.table`; the stream replaces a
/// table's entry when it passes a DDL of it (see [`Snapshotter::schema_changed`]).
type Schemas = Arc<std::sync::RwLock<HashMap<String, Arc<TableSchema>>>>;

fn read_lock(
    s: &std::sync::RwLock<HashMap<String, Arc<TableSchema>>>,
) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<TableSchema>>> {
    s.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock(
    s: &std::sync::RwLock<HashMap<String, Arc<TableSchema>>>,
) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<TableSchema>>> {
    s.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads chunks on its own connection.
pub struct ChunkReader {
    conn: Conn,
    cfg: SnapshotConfig,
    schemas: Schemas,
    /// The server's row-count estimate of each table (`information_schema.TABLES`).
    estimates: Arc<HashMap<String, u64>>,
    opts: Arc<DebeziumOptions>,
    status_query: &'static str,
    flavor: Flavor,
    /// The source's filter: its column masks apply to the rows read.
    filter: Arc<crate::binlog::Filter>,
}

impl std::fmt::Debug for ChunkReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReader")
            .field("tables", &read_lock(&self.schemas).len())
            .finish_non_exhaustive()
    }
}

fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

async fn snapshot_connection(source: &SourceConfig) -> Result<Conn> {
    let mut conn = connect(source).await?;
    conn.query_drop("SET time_zone = '+00:00', NAMES utf8mb4")
        .await
        .map_err(Error::query(&source.describe(), "SET time_zone"))?;
    // Consistent snapshots need it (the server's default may be READ COMMITTED).
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(Error::query(
            &source.describe(),
            "SET TRANSACTION ISOLATION LEVEL",
        ))?;
    Ok(conn)
}

impl ChunkReader {
    /// Connects and loads the schemas of the tables `filter` includes. Returns the reader
    /// and the tables to snapshot, in name order (a table without a primary key gets a
    /// warning: it is read in one pass).
    pub async fn open(
        source: &SourceConfig,
        cfg: &SnapshotConfig,
        flavor: Flavor,
    ) -> Result<(ChunkReader, Vec<String>)> {
        let mut conn = snapshot_connection(source).await?;
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
            if filter.has_key_columns(&s.database, &s.table) {
                check_configured_key(&mut conn, &s).await?;
            }
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
                schemas: Arc::new(std::sync::RwLock::new(schemas)),
                estimates: Arc::new(estimates),
                opts,
                status_query,
                flavor,
                filter: Arc::new(filter),
            },
            tables,
        ))
    }

    /// Another reader of the same tables, on a connection of its own.
    pub async fn another(&self, source: &SourceConfig) -> Result<ChunkReader> {
        Ok(ChunkReader {
            conn: snapshot_connection(source).await?,
            cfg: self.cfg.clone(),
            schemas: self.schemas.clone(),
            estimates: self.estimates.clone(),
            opts: self.opts.clone(),
            status_query: self.status_query,
            flavor: self.flavor,
            filter: self.filter.clone(),
        })
    }

    /// The server's estimate of a table's rows.
    pub fn estimated_rows(&self, table: &str) -> Option<u64> {
        self.estimates.get(table).copied()
    }

    /// The schema of a table being snapshotted.
    pub fn schema(&self, table: &str) -> Option<Arc<TableSchema>> {
        read_lock(&self.schemas).get(table).cloned()
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

    /// The binlog position of the open consistent snapshot (MariaDB).
    async fn snapshot_position(&mut self) -> Result<BinlogFilePos> {
        let status: Vec<(String, String)> = self
            .conn
            .query("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
            .await
            .map_err(Error::query("snapshot connection", "SHOW STATUS"))?;
        let get = |name: &str| {
            status
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        match (
            get("Binlog_snapshot_file"),
            get("Binlog_snapshot_position").and_then(|p| p.parse::<u64>().ok()),
        ) {
            (Some(file), Some(pos)) if !file.is_empty() => Ok(BinlogFilePos::new(file, pos)),
            _ => Err(Error::Unexpected {
                target: "snapshot connection".into(),
                reason: "the server names no binlog position for the consistent snapshot (Binlog_snapshot_file)".into(),
            }),
        }
    }

    fn table(&self, table: &str) -> Result<Arc<TableSchema>> {
        self.schema(table).ok_or_else(|| Error::Unexpected {
            target: "snapshot".into(),
            reason: format!("table {table} is not known to the snapshot reader"),
        })
    }

    /// `SELECT <columns> FROM <table> WHERE <key in range>` and its parameters.
    fn select(
        &self,
        schema: &Arc<TableSchema>,
        columns: &str,
        range: &KeyRange,
    ) -> Result<(String, Vec<mysql_async::Value>)> {
        let key_list = schema
            .key_columns()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!(
            "SELECT {columns} FROM {}.{}",
            quote(&schema.database),
            quote(&schema.table)
        );
        let mut params: Vec<mysql_async::Value> = Vec::new();
        let bounds = [(&range.after, ">"), (&range.upto, "<=")];
        for (i, (key, op)) in bounds
            .into_iter()
            .filter_map(|(k, op)| Some((k.as_deref()?, op)))
            .enumerate()
        {
            let codec = TableCodec::new(schema.clone(), self.opts.clone());
            let values = codec
                .decode_key(key.as_bytes())
                .map_err(|e| Error::Unexpected {
                    target: "snapshot".into(),
                    reason: format!(
                        "recorded snapshot key of {} cannot be read: {e}",
                        range.table
                    ),
                })?;
            let marks = vec!["?"; values.len()].join(", ");
            let verb = if i == 0 { "WHERE" } else { "AND" };
            let _ = write!(sql, " {verb} ({key_list}) {op} ({marks})");
            for (v, c) in values.iter().zip(schema.key_columns()) {
                params.push(to_mysql(v, &c.ty));
            }
        }
        if !schema.primary_key.is_empty() {
            let _ = write!(sql, " ORDER BY {key_list}");
        }
        Ok((sql, params))
    }

    /// The key `chunk_size` rows after `range.after`: where to cut the range so that its
    /// first chunk can be read while another reader goes on after it. `None` when fewer
    /// rows remain.
    pub async fn boundary(&mut self, range: &KeyRange) -> Result<Option<String>> {
        let schema = self.table(&range.table)?;
        if schema.primary_key.is_empty() {
            return Ok(None);
        }
        let key_cols: Vec<String> = schema.key_columns().map(|c| quote(&c.name)).collect();
        let (mut sql, params) = self.select(&schema, &key_cols.join(", "), range)?;
        let _ = write!(sql, " LIMIT 1 OFFSET {}", self.cfg.chunk_size - 1);
        let row: Option<mysql_async::Row> = self
            .conn
            .exec_first(&sql, params)
            .await
            .map_err(Error::query("snapshot connection", &sql))?;
        let Some(row) = row else { return Ok(None) };
        let mut full: Row = vec![Value::Null; schema.columns.len()];
        for (v, &i) in row.unwrap().into_iter().zip(&schema.primary_key) {
            full[i] = from_mysql(v, &schema.columns[i].ty).map_err(|reason| Error::Unexpected {
                target: "snapshot".into(),
                reason: format!("{}: {reason}", range.table),
            })?;
        }
        Ok(key_json(&schema, &full))
    }

    /// The `absent` keys of `range` the table does not have, as rows with only their key
    /// columns set (one point lookup each, in the caller's read).
    async fn absent_keys(
        &mut self,
        schema: &Arc<TableSchema>,
        range: &KeyRange,
    ) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        if range.absent.is_empty() || schema.primary_key.is_empty() {
            return Ok(out);
        }
        let key_list = schema
            .key_columns()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let marks = vec!["?"; schema.primary_key.len()].join(", ");
        let sql = format!(
            "SELECT 1 FROM {}.{} WHERE ({key_list}) = ({marks})",
            quote(&schema.database),
            quote(&schema.table)
        );
        let codec = TableCodec::new(schema.clone(), self.opts.clone());
        for key in &range.absent {
            let values = codec
                .decode_key(key.as_bytes())
                .map_err(|e| Error::Unexpected {
                    target: "snapshot".into(),
                    reason: format!("requested key {key} of {} cannot be read: {e}", range.table),
                })?;
            let params: Vec<mysql_async::Value> = values
                .iter()
                .zip(schema.key_columns())
                .map(|(v, c)| to_mysql(v, &c.ty))
                .collect();
            let found: Option<u8> = self
                .conn
                .exec_first(&sql, params)
                .await
                .map_err(Error::query("snapshot connection", &sql))?;
            if found.is_none() {
                // Only the key is known: the other columns are absent (not NULL).
                let mut row: Row = vec![Value::Absent; schema.columns.len()];
                for (v, &i) in values.into_iter().zip(&schema.primary_key) {
                    row[i] = v;
                }
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Reads the first chunk of `table` after `after_key` (message-key JSON); a table
    /// without a key in one chunk.
    pub async fn read_chunk(&mut self, table: &str, after_key: Option<&str>) -> Result<Chunk> {
        let range = KeyRange {
            table: table.to_string(),
            after: after_key.map(str::to_string),
            upto: None,
            absent: Vec::new(),
        };
        self.read_range(&range).await
    }

    /// Reads the first chunk of `range` between two watermarks (all of it for a table
    /// without a key).
    pub async fn read_range(&mut self, range: &KeyRange) -> Result<Chunk> {
        let schema = self.table(&range.table)?;
        let cols: Vec<String> = schema.columns.iter().map(|c| quote(&c.name)).collect();
        let (mut sql, params) = self.select(&schema, &cols.join(", "), range)?;
        let keyless = schema.primary_key.is_empty();
        if !keyless {
            let _ = write!(sql, " LIMIT {}", self.cfg.chunk_size);
        }
        let (low, rows, deletes, high) = if self.flavor == Flavor::MariaDb {
            // MariaDB names the binlog position of a consistent snapshot exactly: the
            // chunk is the table at that point, so both watermarks are it. (The binlog end
            // before a SELECT may count a transaction the engine has not committed yet,
            // whose change the SELECT then misses while the window takes it as seen.)
            self.conn
                .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await
                .map_err(Error::query("snapshot connection", "START TRANSACTION"))?;
            let at = self.snapshot_position().await?;
            let rows: Vec<mysql_async::Row> = match self.conn.exec(&sql, params).await {
                Ok(rows) => rows,
                Err(e) => {
                    // The chunk is read again in a new transaction; this one must not
                    // hold its read view meanwhile (a failed connection is replaced).
                    let _ = self.conn.query_drop("ROLLBACK").await;
                    return Err(Error::query("snapshot connection", &sql)(e));
                }
            };
            let deletes = match self.absent_keys(&schema, range).await {
                Ok(d) => d,
                Err(e) => {
                    let _ = self.conn.query_drop("ROLLBACK").await;
                    return Err(e);
                }
            };
            self.conn
                .query_drop("COMMIT")
                .await
                .map_err(Error::query("snapshot connection", "COMMIT"))?;
            (at.clone(), rows, deletes, at)
        } else {
            let low = self.binlog_end().await?;
            let rows: Vec<mysql_async::Row> = self
                .conn
                .exec(&sql, params)
                .await
                .map_err(Error::query("snapshot connection", &sql))?;
            let deletes = self.absent_keys(&schema, range).await?;
            (low, rows, deletes, self.binlog_end().await?)
        };
        let n = rows.len();
        let mut out = Vec::with_capacity(n);
        for r in rows {
            let values = r.unwrap();
            let row = values
                .into_iter()
                .zip(&schema.columns)
                .map(|(v, c)| {
                    from_mysql(v, &c.ty).map_err(|e| format!("{}.{}: {e}", range.table, c.name))
                })
                .collect::<std::result::Result<Row, _>>()
                .map_err(|reason| Error::Unexpected {
                    target: "snapshot".into(),
                    reason,
                })?;
            out.push(row);
        }
        let masks = self
            .filter
            .masks_for(&schema)
            .map_err(|reason| Error::Unexpected {
                target: "snapshot".into(),
                reason,
            })?;
        if let Some(masks) = &masks {
            for row in &mut out {
                binlake_core::masking::apply(masks, row);
            }
        }
        let cut_at = if !keyless && n == self.cfg.chunk_size {
            out.last()
                .and_then(|r| key_json(&schema, r))
                .filter(|k| range.upto.as_ref() != Some(k))
        } else {
            None
        };
        Ok(Chunk {
            table: schema,
            rows: out,
            low,
            high,
            cut_at,
            deletes,
            slot: 0,
            _permit: None,
        })
    }
}

/// Warns when a table's configured key columns are not a unique index: rows sharing a key
/// would be one row downstream, and chunks could skip rows whose key equals a chunk's
/// last.
async fn check_configured_key(conn: &mut Conn, s: &TableSchema) -> Result<()> {
    let key: Vec<&str> = s.key_columns().map(|c| c.name.as_str()).collect();
    let unique: Vec<String> = conn
        .exec(
            "SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX SEPARATOR '\u{1f}') FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 GROUP BY INDEX_NAME",
            (&s.database, &s.table),
        )
        .await
        .map_err(Error::query("snapshot connection", "information_schema.STATISTICS"))?;
    let mut sorted = key.clone();
    sorted.sort_unstable();
    let is_unique = unique.iter().any(|cols| {
        let mut cols: Vec<&str> = cols.split('\u{1f}').collect();
        cols.sort_unstable();
        cols == sorted
    });
    if !is_unique {
        tracing::warn!(table = %s.qualified_name(), key = ?key, "the configured key columns are not a unique index: rows that share a key become one row downstream, and the snapshot may skip rows whose key repeats across a chunk boundary");
    }
    Ok(())
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
fn order(p: &BinlogFilePos) -> (u64, u64) {
    (
        binlake_core::position::binlog_file_sequence(&p.file).unwrap_or(0),
        p.pos,
    )
}

/// One piece of a table's key space, read by one reader at a time.
#[derive(Debug)]
struct Slot {
    id: u64,
    range: KeyRange,
    taken: bool,
}

/// What the readers and the stream share: the ranges left and the stream's position.
#[derive(Debug, Default)]
struct Plan {
    /// Tables not finished, in reading order.
    tables: Vec<String>,
    /// Ranges not emitted of the tables begun (a begun table has at least one until it
    /// is finished).
    slots: Vec<Slot>,
    next_id: u64,
    /// Where the stream is (its last transaction end or heartbeat).
    stream: (u64, u64),
    /// Per slot being read (taken, its chunk not handed to the window yet): its table and
    /// the stream position when it was taken. Its low watermark is the binlog end after
    /// that, so changes from there on must be remembered for it.
    floors: HashMap<u64, (String, (u64, u64))>,
    /// Tables whose key ranges may be read by several readers at once.
    split: bool,
}

impl Plan {
    /// Hands out the next range to read: the first free slot, in table order, beginning
    /// the next table when every range of the begun ones is taken. With it, whether the
    /// reader should cut the range's first chunk off to leave the rest to another reader:
    /// when the range is open-ended and no table is left to begin (another reader would
    /// rather begin one than pay for finding the cut).
    fn take(&mut self) -> Option<(u64, KeyRange, bool)> {
        let job = self.next_range()?;
        let unbegun = self
            .tables
            .iter()
            .any(|t| !self.slots.iter().any(|s| s.range.table == *t));
        let split = self.split && job.1.upto.is_none() && !unbegun;
        Some((job.0, job.1, split))
    }

    fn next_range(&mut self) -> Option<(u64, KeyRange)> {
        for t in &self.tables {
            if let Some(s) = self
                .slots
                .iter_mut()
                .find(|s| !s.taken && s.range.table == *t)
            {
                s.taken = true;
                let (id, range) = (s.id, s.range.clone());
                self.floors.insert(id, (t.clone(), self.stream));
                return Some((id, range));
            }
            if !self.slots.iter().any(|s| s.range.table == *t) {
                let id = self.next_id;
                self.next_id += 1;
                self.slots.push(Slot {
                    id,
                    range: KeyRange::whole(t),
                    taken: true,
                });
                self.floors.insert(id, (t.clone(), self.stream));
                return Some((id, KeyRange::whole(t)));
            }
        }
        None
    }

    /// Cuts slot `id` at `key`: it keeps the range up to the key; the rest becomes a new
    /// free slot.
    fn cut(&mut self, id: u64, key: String) {
        let Some(i) = self.slots.iter().position(|s| s.id == id) else {
            return;
        };
        // The absent keys were looked up with the first part's read.
        let rest = KeyRange {
            table: self.slots[i].range.table.clone(),
            after: Some(key.clone()),
            upto: self.slots[i].range.upto.take(),
            absent: Vec::new(),
        };
        self.slots[i].range.upto = Some(key);
        let id = self.next_id;
        self.next_id += 1;
        self.slots.insert(
            i + 1,
            Slot {
                id,
                range: rest,
                taken: false,
            },
        );
    }

    /// The recordable state.
    fn ranges(&self) -> Vec<KeyRange> {
        self.slots.iter().map(|s| s.range.clone()).collect()
    }
}

/// A chunk handed to the window, waiting for the stream to reach its high watermark.
#[derive(Debug)]
struct Waiting {
    chunk: Chunk,
    /// The chunk's watermarks, ordered (see [`order`]).
    low: (u64, u64),
    high: (u64, u64),
    name: String,
    keys: HashSet<String>,
    /// Keys changed at or after the low watermark: the stream has newer versions.
    changed: HashMap<String, Seen>,
}

/// What the window saw of a key of a chunk.
#[derive(Debug, Clone)]
enum Seen {
    /// A change with whole row images (or a delete, insert, key change, TRUNCATE): the
    /// stream describes the key from then on; the chunk's row is dropped.
    Whole,
    /// Only updates whose after-images leave columns out (`binlog_row_image = MINIMAL`
    /// or `NOBLOB`): the stream cannot describe the row alone, so the chunk's row is
    /// emitted with the values those updates wrote laid over it (the columns they leave
    /// out are unchanged by them, so the `SELECT`'s values hold whenever it ran).
    Partial(Row),
}

impl Seen {
    /// What a change with after-image `partial` (`Some` for an update that leaves
    /// columns out and keeps its key) makes of what was seen before.
    fn then(self, partial: Option<&Row>) -> Seen {
        match (self, partial) {
            (Seen::Partial(mut row), Some(after)) if row.len() == after.len() => {
                for (v, a) in row.iter_mut().zip(after) {
                    if !a.is_absent() {
                        *v = a.clone();
                    }
                }
                Seen::Partial(row)
            }
            _ => Seen::Whole,
        }
    }

    fn of(partial: Option<&Row>) -> Seen {
        match partial {
            Some(after) => Seen::Partial(after.clone()),
            None => Seen::Whole,
        }
    }
}

/// A chunk's rows as they are emitted, given what the window saw of their keys: a row
/// whose key the stream describes is dropped, one that only partial updates touched gets
/// their values (see the module docs).
fn settle(rows: Vec<Row>, changed: &HashMap<String, Seen>, pk: &[usize]) -> Vec<Row> {
    if changed.contains_key(ALL_ROWS) {
        return Vec::new();
    }
    rows.into_iter()
        .filter_map(|mut r| match changed.get(&key_string(&r, pk)) {
            None => Some(r),
            Some(Seen::Partial(over)) if over.len() == r.len() => {
                for (v, o) in r.iter_mut().zip(over) {
                    if !o.is_absent() {
                        *v = o.clone();
                    }
                }
                Some(r)
            }
            Some(_) => None,
        })
        .collect()
}

/// The after-image of `e` when it is an update that leaves columns out and keeps its key.
fn partial_after(e: &ChangeEvent) -> Option<&Row> {
    match (e.op, &e.before, &e.after) {
        (Op::Update, Some(b), Some(a))
            if a.iter().any(Value::is_absent) && !e.table.key_changed(b, a) =>
        {
            Some(a)
        }
        _ => None,
    }
}

/// A change the window remembers: its position, table, key, and the after-image of an
/// update that leaves columns out.
type Recent = ((u64, u64), String, String, Option<Row>);

/// Merges chunks into the stream. See the module docs.
#[derive(Debug, Default)]
struct Window {
    /// Changes of tables being read since the earliest floor.
    recent: Vec<Recent>,
    waiting: Vec<Waiting>,
    /// Where the stream is.
    stream: (u64, u64),
}

/// A chunk's rows, ready to be emitted (see [`Snapshotter::ready`]).
#[derive(Debug)]
pub struct Emit {
    /// The rows as `op = r` events at the chunk's high watermark.
    pub events: Vec<ChangeEvent>,
    /// `db.table`.
    pub table: String,
    /// The table's last chunk: it is done.
    pub table_done: bool,
}

/// A snapshot in progress: readers on their own connections read chunks of the remaining
/// ranges in parallel, and the stream merges them in (see the module docs). Driven by
/// the streaming loop: it shows the snapshotter every change and position, takes the
/// chunks it reads ([`Snapshotter::next_chunk`]), and emits what is ready.
pub struct Snapshotter {
    plan: Arc<std::sync::Mutex<Plan>>,
    wake: Arc<tokio::sync::Notify>,
    chunks: tokio::sync::mpsc::Receiver<Result<Chunk>>,
    window: Window,
    /// Every table its readers know (captured), and whether it has a primary key.
    known: HashMap<String, bool>,
    /// The schemas the readers read with (shared with them).
    schemas: Schemas,
    estimates: HashMap<String, u64>,
    /// Tables with a chunk emitted (for Debezium's `first` marker).
    begun: HashSet<String>,
    chunks_done: u64,
    rows_done: u64,
    incremental: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotter")
            .field("readers", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Snapshotter {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock(plan: &std::sync::Mutex<Plan>) -> std::sync::MutexGuard<'_, Plan> {
    plan.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Snapshotter {
    /// Starts `cfg.readers` readers (`first` and more connections like it) on what
    /// `progress` leaves to read; `known`: the tables `first` can read.
    pub async fn start(
        first: ChunkReader,
        source: &SourceConfig,
        known: &[String],
        mut progress: SnapshotProgress,
    ) -> Result<Snapshotter> {
        let readers = first.cfg.readers.max(1);
        let schemas = first.schemas.clone();
        let known: HashMap<String, bool> = known
            .iter()
            .map(|t| {
                let keyed = first.schema(t).is_some_and(|s| !s.primary_key.is_empty());
                (t.clone(), keyed)
            })
            .collect();
        let estimates = known
            .keys()
            .filter_map(|t| Some((t.clone(), first.estimated_rows(t)?)))
            .collect();
        if let (Some(after), Some(t)) = (progress.after_key.take(), progress.tables.first())
            && !progress.ranges.iter().any(|r| r.table == *t)
        {
            progress.ranges.push(KeyRange {
                table: t.clone(),
                after: Some(after),
                upto: None,
                absent: Vec::new(),
            });
        }
        // A table dropped (or no longer captured) since the snapshot began has nothing left
        // to read; reading it would fail on every start.
        progress.tables.retain(|t| {
            let present = known.contains_key(t);
            if !present {
                tracing::warn!(table = %t, "snapshot: the table no longer exists or is no longer captured: skipped");
            }
            present
        });
        progress
            .ranges
            .retain(|r| progress.tables.contains(&r.table));
        let begun = progress.ranges.iter().map(|r| r.table.clone()).collect();
        let mut plan = Plan {
            tables: progress.tables,
            split: readers > 1,
            ..Plan::default()
        };
        for range in progress.ranges {
            plan.slots.push(Slot {
                id: plan.next_id,
                range,
                taken: false,
            });
            plan.next_id += 1;
        }
        let plan = Arc::new(std::sync::Mutex::new(plan));
        let wake = Arc::new(tokio::sync::Notify::new());
        let places = Arc::new(tokio::sync::Semaphore::new(readers));
        let (tx, rx) = tokio::sync::mpsc::channel(readers);
        let mut all = Vec::with_capacity(readers);
        for _ in 1..readers {
            all.push(first.another(source).await?);
        }
        all.push(first);
        let tasks = all
            .into_iter()
            .map(|reader| {
                tokio::spawn(read_chunks(
                    reader,
                    plan.clone(),
                    wake.clone(),
                    places.clone(),
                    tx.clone(),
                ))
            })
            .collect();
        Ok(Snapshotter {
            plan,
            wake,
            chunks: rx,
            window: Window::default(),
            known,
            schemas,
            estimates,
            begun,
            chunks_done: progress.chunks,
            rows_done: progress.rows,
            incremental: progress.incremental,
            tasks,
        })
    }

    /// The server's row estimate of each table, for progress reports.
    pub fn estimates(&self) -> &HashMap<String, u64> {
        &self.estimates
    }

    /// What remains, to record with the next commit.
    pub fn progress(&self) -> SnapshotProgress {
        let plan = lock(&self.plan);
        SnapshotProgress {
            tables: plan.tables.clone(),
            ranges: plan.ranges(),
            after_key: None,
            chunks: self.chunks_done,
            rows: self.rows_done,
            incremental: self.incremental,
        }
    }

    /// True when every table is done.
    pub fn is_done(&self) -> bool {
        lock(&self.plan).tables.is_empty()
    }

    /// Adds tables requested while streaming. Tables the readers do not know (not
    /// captured, or created after this snapshot began) and tables without a primary key
    /// are refused, each with a warning.
    pub fn add_tables(&mut self, tables: Vec<String>) {
        let mut plan = lock(&self.plan);
        for t in tables {
            match self.known.get(&t) {
                Some(false) => {
                    tracing::warn!(table = %t, "snapshot request skipped: the table has no primary key, so its snapshot rows could not be told from rows consumers already have");
                }
                None => {
                    tracing::warn!(table = %t, "snapshot request skipped: the table is not captured, or was created after the snapshot in progress began (request it again when that one is done)");
                }
                Some(true) if !plan.tables.contains(&t) => {
                    tracing::info!(table = %t, "snapshot: table added on request");
                    self.begun.remove(&t);
                    plan.tables.push(t);
                }
                Some(true) => {}
            }
        }
        drop(plan);
        self.wake.notify_waiters();
    }

    /// Adds key ranges requested while streaming (`binlake verify --repair`): each is
    /// read like a range of a begun table, its rows marked `incremental`. A whole range
    /// ([`KeyRange::whole`]) is a table request ([`Snapshotter::add_tables`]); ranges of a
    /// table not begun yet (to be read whole) add nothing. The same tables are refused.
    pub fn add_ranges(&mut self, ranges: Vec<KeyRange>) {
        let (whole, parts): (Vec<KeyRange>, Vec<KeyRange>) = ranges
            .into_iter()
            .partition(|r| r.after.is_none() && r.upto.is_none() && r.absent.is_empty());
        let mut plan = lock(&self.plan);
        for r in parts {
            if self.known.get(&r.table) != Some(&true) {
                tracing::warn!(table = %r.table, "snapshot request of a key range skipped: the table is not captured, has no primary key, or was created after the snapshot in progress began");
                continue;
            }
            let begun = plan.slots.iter().any(|s| s.range.table == r.table);
            if plan.tables.contains(&r.table) && !begun {
                continue;
            }
            if !plan.tables.contains(&r.table) {
                plan.tables.push(r.table.clone());
            }
            let id = plan.next_id;
            plan.next_id += 1;
            plan.slots.push(Slot {
                id,
                range: r,
                taken: false,
            });
        }
        drop(plan);
        self.add_tables(whole.into_iter().map(|r| r.table).collect());
    }

    /// Sees the tables a DDL in the stream changed, in stream order (see the module docs,
    /// "Schema changes"): readers read them with their new schema from now on; with
    /// `reread`, a table whose existing rows the DDL changed is read again from its start
    /// (added when not in this snapshot; one without a key only after a truncate, as a
    /// RENAME target gets); a table whose key changed is too; a dropped table is
    /// forgotten. True when what remains changed: record the progress with the
    /// DDL's commit.
    pub fn schema_changed(&mut self, changes: &[TableChange], reread: bool) -> bool {
        let mut replanned = false;
        for change in changes {
            let name = format!("{}.{}", change.database, change.table);
            let Some(schema) = &change.schema else {
                let was_known = self.known.remove(&name).is_some();
                write_lock(&self.schemas).remove(&name);
                if was_known && self.forget_table(&name, false) {
                    tracing::info!(table = %name, "snapshot: the table was dropped: not read further");
                    replanned = true;
                }
                continue;
            };
            let keyed = !schema.primary_key.is_empty();
            let old = write_lock(&self.schemas).insert(name.clone(), schema.clone());
            self.known.insert(name.clone(), keyed);
            let key_changed = old.as_ref().is_some_and(|o| {
                !o.key_columns()
                    .map(|c| &c.name)
                    .eq(schema.key_columns().map(|c| &c.name))
            });
            let planned = lock(&self.plan).tables.contains(&name);
            // The recorded ranges are in the old key: read the table from its start.
            let again = if planned && key_changed {
                true
            } else if (reread || change.replaced) && change.rewrites_rows {
                // A table without a key is read again only right after a truncate (a
                // RENAME target): consumers then hold none of its rows to confuse.
                if !keyed && !change.replaced {
                    tracing::warn!(table = %name, "a DDL changed existing rows of a table without a primary key: they are not read again (a consumer could not tell them from rows it has); rebuild its replica if those values matter");
                }
                keyed || change.replaced
            } else {
                false
            };
            if again {
                tracing::info!(table = %name, "snapshot: a DDL changed the table's existing rows or its key: reading it again from its start");
                self.forget_table(&name, true);
                replanned = true;
            }
        }
        if replanned {
            self.wake.notify_waiters();
        }
        replanned
    }

    /// Drops what is planned, read or waiting of `table`; with `again`, plans it anew from
    /// its start (at the end when it was not planned). True when it was planned.
    fn forget_table(&mut self, table: &str, again: bool) -> bool {
        let mut plan = lock(&self.plan);
        let planned = plan.tables.iter().any(|t| t == table);
        let ids: Vec<u64> = plan
            .slots
            .iter()
            .filter(|s| s.range.table == table)
            .map(|s| s.id)
            .collect();
        plan.slots.retain(|s| s.range.table != table);
        for id in ids {
            plan.floors.remove(&id);
        }
        if !again {
            plan.tables.retain(|t| t != table);
        } else if !planned {
            plan.tables.push(table.to_string());
        }
        drop(plan);
        self.window.waiting.retain(|c| c.name != table);
        self.begun.remove(table);
        planned
    }

    /// Whether a streamed change is held back: a table without a key whose one-pass read
    /// is still to come. That read sees the table after the change (any change between
    /// its watermarks makes it read again), and a consumer could not tell a row it already
    /// has from the same row in the snapshot.
    pub fn holds_back(&self, e: &ChangeEvent) -> bool {
        e.table.primary_key.is_empty()
            && lock(&self.plan)
                .tables
                .iter()
                .any(|t| is_table(t, &e.table))
    }

    /// The next chunk a reader finished; it waits in the window for its high watermark.
    /// Pending while none is ready.
    pub async fn next_chunk(&mut self) -> Result<()> {
        match self.chunks.recv().await {
            Some(chunk) => {
                let chunk = chunk?;
                {
                    let mut plan = lock(&self.plan);
                    if !plan.slots.iter().any(|s| s.id == chunk.slot) {
                        // Its table was dropped or is read again from the start (a DDL).
                        plan.floors.remove(&chunk.slot);
                        return Ok(());
                    }
                }
                let name = chunk.table.qualified_name();
                let low = order(&chunk.low);
                let pk = &chunk.table.primary_key;
                let keys: HashSet<String> = chunk
                    .rows
                    .iter()
                    .chain(&chunk.deletes)
                    .map(|r| key_string(r, pk))
                    .collect();
                let mut changed: HashMap<String, Seen> = HashMap::new();
                for (_, _, k, partial) in
                    self.window.recent.iter().filter(|(at, t, k, _)| {
                        *at >= low && *t == name && touches(&chunk, &keys, k)
                    })
                {
                    let seen = match changed.remove(k) {
                        Some(s) => s.then(partial.as_ref()),
                        None => Seen::of(partial.as_ref()),
                    };
                    changed.insert(k.clone(), seen);
                }
                lock(&self.plan).floors.remove(&chunk.slot);
                self.window.waiting.push(Waiting {
                    low,
                    high: order(&chunk.high),
                    chunk,
                    name,
                    keys,
                    changed,
                });
                Ok(())
            }
            None => std::future::pending().await,
        }
    }

    /// Sees a streamed change.
    pub fn observe_change(&mut self, e: &ChangeEvent) {
        let w = &mut self.window;
        let waiting = w.waiting.iter().any(|c| is_table(&c.name, &e.table));
        let remember = {
            let plan = lock(&self.plan);
            plan.floors.values().any(|(t, _)| is_table(t, &e.table))
        };
        if !waiting && !remember {
            return;
        }
        let at = (
            binlake_core::position::binlog_file_sequence(&e.source.position.file).unwrap_or(0),
            e.source.position.pos,
        );
        let keys: Vec<String> = match e.op {
            Op::Truncate => vec![ALL_ROWS.to_string()],
            _ => [&e.before, &e.after]
                .into_iter()
                .flatten()
                .map(|row| key_string(row, &e.table.primary_key))
                .collect(),
        };
        let partial = partial_after(e);
        for key in keys {
            for c in w.waiting.iter_mut() {
                if at >= c.low && is_table(&c.name, &e.table) && touches(&c.chunk, &c.keys, &key) {
                    let seen = match c.changed.remove(&key) {
                        Some(s) => s.then(partial),
                        None => Seen::of(partial),
                    };
                    c.changed.insert(key.clone(), seen);
                }
            }
            if remember {
                w.recent
                    .push((at, e.table.qualified_name(), key, partial.cloned()));
            }
        }
    }

    /// Sees the stream reach `pos` (a commit or a heartbeat).
    pub fn observe_position(&mut self, pos: &BinlogFilePos) {
        let at = order(pos);
        let mut plan = lock(&self.plan);
        plan.stream = at;
        // Changes before every floor can matter to no chunk still to come.
        match plan.floors.values().map(|(_, f)| *f).min() {
            Some(floor) => self.window.recent.retain(|(at, _, _, _)| *at >= floor),
            None => self.window.recent.clear(),
        }
        drop(plan);
        self.window.stream = at;
    }

    /// The next chunk whose high watermark the stream has reached, as events to emit at
    /// that watermark; the snapshot then counts it as emitted (the caller records
    /// [`Snapshotter::progress`] with the events). Rows whose key changed from the low
    /// watermark on are left out: the stream carries them. A keyless table's pass that a
    /// change fell into goes back to be read again. `None` while no chunk is ready.
    pub fn ready(&mut self, ts_us: i64) -> Option<Emit> {
        loop {
            let stream = self.window.stream;
            let i = self.window.waiting.iter().position(|c| c.high <= stream)?;
            let Waiting {
                chunk,
                name,
                changed,
                ..
            } = self.window.waiting.swap_remove(i);
            let table = chunk.table.clone();
            let current = read_lock(&self.schemas).get(&name).cloned();
            let mut plan = lock(&self.plan);
            // Read with the table's schema before a DDL the stream has passed since: its
            // rows would go out with columns the table no longer has (or without new ones).
            let stale = current.is_some_and(|c| !Arc::ptr_eq(&c, &table));
            let keyless_changed = table.primary_key.is_empty() && !changed.is_empty();
            if stale || keyless_changed {
                if stale {
                    tracing::info!(table = %name, "snapshot: the table's schema changed while a chunk of it was read: reading that range again");
                } else {
                    tracing::warn!(table = %name, "snapshot: the table (no primary key) changed while it was read in one pass: reading it again");
                }
                if let Some(s) = plan.slots.iter_mut().find(|s| s.id == chunk.slot) {
                    s.taken = false;
                }
                drop(plan);
                self.wake.notify_waiters();
                continue;
            }
            plan.slots.retain(|s| s.id != chunk.slot);
            let table_done = !plan.slots.iter().any(|s| s.range.table == name);
            if table_done {
                plan.tables.retain(|t| *t != name);
            }
            drop(plan);
            let first = self.begun.insert(name.clone());
            let pk = &table.primary_key;
            let rows = settle(chunk.rows, &changed, pk);
            // A delete of a key the stream changed in the window is the stream's to tell.
            let deletes: Vec<Row> = match changed.contains_key(ALL_ROWS) {
                true => Vec::new(),
                false => chunk
                    .deletes
                    .into_iter()
                    .filter(|r| !changed.contains_key(&key_string(r, pk)))
                    .collect(),
            };
            let mut events = read_events(
                &table,
                rows,
                &chunk.high,
                (first, table_done, self.incremental),
                ts_us,
            );
            let n = events.len() as u32;
            events.extend(deletes.into_iter().enumerate().map(|(i, row)| {
                let mut e =
                    read_events(&table, vec![row], &chunk.high, (false, false, true), ts_us)
                        .swap_remove(0);
                e.op = Op::Delete;
                e.before = e.after.take();
                e.source.position.row = n + i as u32;
                e
            }));
            self.chunks_done += 1;
            self.rows_done += events.len() as u64;
            return Some(Emit {
                events,
                table: name,
                table_done,
            });
        }
    }
}

/// The key a TRUNCATE stands for in the window: every row of its table.
const ALL_ROWS: &str = "\u{0}all rows";

/// Whether a change of `key` makes rows of a chunk (with `keys`) out of date: a change of
/// one of its keys, a TRUNCATE, or any change of a keyless table (whose pass, even an
/// empty one, must then be read again).
fn touches(chunk: &Chunk, keys: &HashSet<String>, key: &str) -> bool {
    key == ALL_ROWS || chunk.table.primary_key.is_empty() || keys.contains(key)
}

/// Whether `name` (`db.table`) names `t`, without building its name.
fn is_table(name: &str, t: &TableSchema) -> bool {
    name.len() == t.database.len() + 1 + t.table.len()
        && name.starts_with(t.database.as_str())
        && name.as_bytes()[t.database.len()] == b'.'
        && name.ends_with(t.table.as_str())
}

/// One reader: takes a range, cuts off its first chunk when others may read the rest,
/// reads the chunk between watermarks, and hands it over, until the snapshotter is
/// dropped or a read fails.
async fn read_chunks(
    mut reader: ChunkReader,
    plan: Arc<std::sync::Mutex<Plan>>,
    wake: Arc<tokio::sync::Notify>,
    places: Arc<tokio::sync::Semaphore>,
    tx: tokio::sync::mpsc::Sender<Result<Chunk>>,
) {
    // Reads failed in a row because the table changed under the reader (about 30 s).
    let mut races = 0;
    loop {
        let Ok(permit) = places.clone().acquire_owned().await else {
            return;
        };
        let (id, mut range, split) = loop {
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(job) = lock(&plan).take() {
                break job;
            }
            notified.await;
        };
        let read: Result<Chunk> = async {
            if split && let Some(b) = reader.boundary(&range).await? {
                lock(&plan).cut(id, b.clone());
                wake.notify_waiters();
                range.upto = Some(b);
            }
            let mut chunk = reader.read_range(&range).await?;
            binlake_core::failpoint::hit("snapshot.after_chunk_read");
            if let Some(k) = &chunk.cut_at {
                lock(&plan).cut(id, k.clone());
                wake.notify_waiters();
            }
            chunk.slot = id;
            chunk._permit = Some(permit);
            Ok(chunk)
        }
        .await;
        if let Err(e) = &read
            && e.is_schema_race()
            && races < 120
        {
            // The table (or a column of it) changed on the server before the stream
            // reached the DDL: the stream brings the new schema soon (or drops the table
            // from the plan). The range goes back, to be read again after a pause.
            races += 1;
            if races == 1 {
                tracing::info!(error = %e, "snapshot: the table changed under the reader (a DDL the stream has not reached yet): trying again");
            }
            {
                let mut plan = lock(&plan);
                plan.floors.remove(&id);
                if let Some(s) = plan.slots.iter_mut().find(|s| s.id == id) {
                    s.taken = false;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            wake.notify_waiters();
            continue;
        }
        races = 0;
        let failed = read.is_err();
        if tx.send(read).await.is_err() || failed {
            return;
        }
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
        // Keys read from the lake or a snapshot are never absent.
        Value::Null | Value::Absent => My::NULL,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn plan(tables: &[&str]) -> Plan {
        Plan {
            tables: tables.iter().map(|t| t.to_string()).collect(),
            split: true,
            ..Plan::default()
        }
    }

    #[test]
    fn readers_share_a_table_then_begin_the_next() {
        let mut p = plan(&["d.a", "d.b"]);
        // d.b waits to be begun: no point in cutting d.a for another reader.
        let (a0, r, split) = p.take().unwrap();
        assert_eq!((r, split), (KeyRange::whole("d.a"), false));
        // Its chunk was cut short by the LIMIT: the rest of d.a is free again, before d.b.
        p.cut(a0, "1".into());
        let (a1, r, split) = p.take().unwrap();
        assert_eq!((r.after.as_deref(), r.upto.as_deref()), (Some("1"), None));
        assert!(!split);
        // Every range of d.a is taken: the next reader begins d.b, the last table, which is
        // worth cutting.
        let (_, r, split) = p.take().unwrap();
        assert_eq!((r, split), (KeyRange::whole("d.b"), true));
        assert!(p.take().is_none());
        p.cut(a1, "2".into());
        let (_, r, split) = p.take().unwrap();
        assert_eq!((r.after.as_deref(), r.upto.as_deref()), (Some("2"), None));
        assert!(split);
        // Floors: one per range taken, at the stream position when it was taken.
        assert_eq!(p.floors.len(), 4);
    }

    #[test]
    fn recorded_ranges_are_exactly_what_is_not_emitted() {
        let mut p = plan(&["d.a"]);
        let (a0, _, _) = p.take().unwrap();
        p.cut(a0, "10".into());
        let (a1, _, _) = p.take().unwrap();
        p.cut(a1, "20".into());
        // The first chunk is emitted: its range leaves the record.
        p.slots.retain(|s| s.id != a0);
        let ranges = p.ranges();
        let bounds: Vec<(Option<&str>, Option<&str>)> = ranges
            .iter()
            .map(|r| (r.after.as_deref(), r.upto.as_deref()))
            .collect();
        assert_eq!(bounds, [(Some("10"), Some("20")), (Some("20"), None)]);
        // A restart gets those ranges back, free, and reads nothing else.
        let progress = SnapshotProgress {
            ranges,
            ..SnapshotProgress::new(vec!["d.a".into()], false)
        };
        let json = serde_json::to_value(&progress).unwrap();
        let back: SnapshotProgress = serde_json::from_value(json).unwrap();
        assert_eq!(back, progress);
    }

    #[test]
    fn rows_only_partial_updates_touched_in_the_window_are_emitted_with_their_values() {
        let row =
            |id: i64, v: i64, w: &str| vec![Value::Int(id), Value::Int(v), Value::String(w.into())];
        let partial = |id: i64, v: Option<i64>, w: Option<&str>| {
            vec![
                Value::Int(id),
                v.map_or(Value::Absent, Value::Int),
                w.map_or(Value::Absent, |w| Value::String(w.into())),
            ]
        };
        let pk = [0];
        let mut changed: HashMap<String, Seen> = HashMap::new();
        // Key 1: two MINIMAL updates of different columns; key 2: a MINIMAL update, then
        // a whole one; key 3: a whole one, then a MINIMAL one; key 4 untouched.
        let k = |id: i64| key_string(&row(id, 0, ""), &pk);
        let seen = |changed: &mut HashMap<String, Seen>, id: i64, partial: Option<Row>| {
            let s = match changed.remove(&k(id)) {
                Some(s) => s.then(partial.as_ref()),
                None => Seen::of(partial.as_ref()),
            };
            changed.insert(k(id), s);
        };
        seen(&mut changed, 1, Some(partial(1, Some(10), None)));
        seen(&mut changed, 1, Some(partial(1, None, Some("x"))));
        seen(&mut changed, 2, Some(partial(2, Some(20), None)));
        seen(&mut changed, 2, None);
        seen(&mut changed, 3, None);
        seen(&mut changed, 3, Some(partial(3, Some(30), None)));
        let rows = vec![
            row(1, 1, "a"),
            row(2, 2, "b"),
            row(3, 3, "c"),
            row(4, 4, "d"),
        ];
        assert_eq!(
            settle(rows.clone(), &changed, &pk),
            vec![row(1, 10, "x"), row(4, 4, "d")]
        );
        changed.insert(ALL_ROWS.into(), Seen::Whole);
        assert!(settle(rows, &changed, &pk).is_empty());
    }

    #[test]
    fn is_table_matches_the_qualified_name_only() {
        let t = TableSchema {
            database: "db".into(),
            table: "t".into(),
            columns: Vec::new(),
            primary_key: Vec::new(),
        };
        assert!(is_table("db.t", &t));
        assert!(!is_table("dbxt", &t));
        assert!(!is_table("db.u", &t));
        assert!(!is_table("d.bt", &t));
    }
}
