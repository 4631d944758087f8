//! [`TableSink`]: one captured table's change log and replica, and how a batch of changes
//! lands in them exactly once.
//!
//! # Contract
//!
//! [`TableSink::apply`] writes a batch of changes (in source order) to the change log and
//! then to the replica, each in one Delta commit that also records the batch's
//! [`Progress`] (its `txn` actions, and in the commit info the position and source commit
//! time of its last change). Callers must pass only changes the sink does not hold yet:
//! [`TableSink::applied`] tells, per Delta table, what it holds, so after a crash the
//! caller replays from the older of the two and filters per table with
//! [`Applied::covers`]. The two commits are made concurrently (they are independent
//! Delta tables); a crash between them leaves one table a batch ahead of the other, which
//! the per-table filtering absorbs.
//!
//! # Replica layout
//!
//! The replica's files are buckets of the primary key (FNV-1a of Arrow's row encoding of
//! the key columns, modulo the bucket count fixed at creation in the table property
//! `binlake.buckets`). Applying a batch reduces it to the last change per key, then for
//! each touched bucket reads its file, drops the changed keys, appends the new rows and
//! writes one new file; the commit removes the old files. A TRUNCATE removes every file.
//! Buckets are rewritten in parallel (`spawn_blocking`), so a batch costs about one
//! rewrite of the touched buckets however many changes it holds: catching up makes big
//! batches and amortizes it; at a trickle, more buckets mean smaller rewrites.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::row::{RowConverter, SortField};
use binlake_core::{ChangeEvent, EventPosition, Op, TableSchema, TableSnapshot, Value};
use bytes::Bytes;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Remove, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::arrow_map::{ColumnBuilder, arrow_field, relabeled, replica_schema};
use crate::config::ReplicaMode;
use crate::store::{Lake, TableKind};
use crate::{Error, Result};

/// The change log's partition column.
pub const COMMIT_DATE: &str = "__commit_date";
/// The change log's sequence column: unique within a table's change log and increasing in
/// the order the changes happened (and were applied), so that one column orders every
/// change, including the delete and create of a key change, which share their binlog
/// position, and snapshot rows placed where streamed changes are. It is the change-log
/// commit version times 2^32 plus the change's index in the commit: commits land at
/// exactly the version they were built for (no commit retries), one writer per table.
pub const SEQ: &str = "__seq";
/// The change log's list of the columns a change's row image left out
/// (`binlog_row_image = MINIMAL` or `NOBLOB`): their names (`__before_<name>` for the
/// before-image columns), NULL when the image is whole. A column listed here is NULL in
/// the row because its value is not known, not because it is NULL.
pub const ABSENT: &str = "__absent";
/// The change log's columns before the table's own, in order.
const CHANGE_LOG_META: [&str; 10] = [
    "__op",
    "__commit_ts",
    "__binlog_file",
    "__binlog_pos",
    "__binlog_row",
    "__gtid",
    "__kafka_partition",
    "__kafka_offset",
    SEQ,
    ABSENT,
];
/// Commit-info key of binlake's freshness record.
pub const FRESHNESS_KEY: &str = "binlake";
const BUCKETS_PROPERTY: &str = "binlake.buckets";
/// Table property naming how the replica is written (`copy_on_write`, `merge_on_read`).
const MODE_PROPERTY: &str = "binlake.replica_mode";

mod compact;
mod mor;

/// One change and, when it came through Kafka, where from.
#[derive(Debug, Clone)]
pub struct Change {
    /// The change.
    pub event: ChangeEvent,
    /// Kafka partition and offset, when materialized from Kafka.
    pub kafka: Option<(i32, i64)>,
}

/// What a batch covers, recorded with it.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// `txn` actions: app id → version (the last Kafka offset of a topic-partition, or a
    /// `run` batch number).
    pub txns: Vec<(String, i64)>,
    /// A token unique to the batch's contents, used in change-log file names (e.g.
    /// `p3-o100-o250`), so a replay of the same batch writes the same file names.
    pub file_token: String,
    /// The resume position of the source after this batch, as text (recorded for `status`).
    pub resume: Option<String>,
    /// What the source's snapshot leaves of this table after the batch (`binlake run`),
    /// recorded with it: a restart that finds the batch here but not in the run
    /// checkpoint takes the table's snapshot progress from here.
    pub snapshot: Option<TableSnapshot>,
}

/// binlake's record in each commit: what the table is current to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Freshness {
    /// Position of the last change applied (`file:pos#row`).
    pub position: Option<String>,
    /// The same position, structured: binlog file.
    #[serde(default)]
    pub file: Option<String>,
    /// Byte position of the last change's event.
    #[serde(default)]
    pub pos: u64,
    /// Row index of the last change within its event.
    #[serde(default)]
    pub row: u32,
    /// Source commit time of the last change applied, µs since the epoch.
    pub source_ts_us: i64,
    /// The source resume position after the batch, when known.
    pub resume: Option<String>,
    /// When binlake committed, µs since the epoch.
    pub committed_at_us: i64,
    /// See [`Progress::snapshot`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<TableSnapshot>,
    /// The highest position of a *streamed* change (not a snapshot row) this Delta table
    /// holds, carried over batches without one: a replayed change at or before it is
    /// already here. (`position` may be a snapshot row's, placed at its chunk's high
    /// watermark, which streamed changes of the same event position can follow.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streamed: Option<StreamPosition>,
}

/// An [`binlake_core::EventPosition`] as stored in binlake's JSON records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamPosition {
    /// Binlog file name.
    pub file: String,
    /// Byte position of the event.
    pub pos: u64,
    /// Row index within the event.
    pub row: u32,
}

impl From<&binlake_core::EventPosition> for StreamPosition {
    fn from(p: &binlake_core::EventPosition) -> Self {
        StreamPosition {
            file: p.file.to_string(),
            pos: p.pos,
            row: p.row,
        }
    }
}

impl StreamPosition {
    /// The position, comparable with events'.
    pub fn event_position(&self) -> binlake_core::EventPosition {
        binlake_core::EventPosition {
            file: self.file.as_str().into(),
            pos: self.pos,
            row: self.row,
        }
    }
}

impl Freshness {
    /// The position of the last change applied.
    pub fn event_position(&self) -> Option<binlake_core::EventPosition> {
        Some(binlake_core::EventPosition {
            file: self.file.as_deref()?.into(),
            pos: self.pos,
            row: self.row,
        })
    }
}

/// What one Delta table holds: its `txn` versions and freshness.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// app id → version.
    pub txns: HashMap<String, i64>,
    /// The last freshness record.
    pub freshness: Option<Freshness>,
}

impl Applied {
    /// Whether the change at `app_id`/`version` (e.g. a topic-partition and offset) is
    /// already held.
    pub fn covers(&self, app_id: &str, version: i64) -> bool {
        self.txns.get(app_id).is_some_and(|v| *v >= version)
    }
}

/// A table's change log and replica.
#[derive(Debug)]
pub struct TableSink {
    name: String,
    changes: DeltaTable,
    replica: DeltaTable,
    changes_schema: SchemaRef,
    replica_schema: SchemaRef,
    key_names: Vec<String>,
    buckets: u32,
    before_images: bool,
    applied_changes: Applied,
    applied_replica: Applied,
    key_bound: KeyBound,
    staged: Staged,
    /// Whether values left NULL for want of their absent columns were reported.
    warned_absent: bool,
    /// The key index and deletion vectors of a merge-on-read replica; `None` for
    /// copy-on-write.
    mor: Option<mor::Mor>,
    /// Where and how a key index is kept, should the replica become merge-on-read.
    mor_settings: mor::Settings,
    /// The change-log merges running beside the batches (`compact.rs`).
    changes_merge: Option<compact::ChangesTask>,
}

/// The parts of a source transaction written to storage but not committed yet
/// ([`TableSink::stage`]): a transaction too large to hold in memory is written in parts
/// and committed in one Delta commit per table at its end ([`TableSink::apply`]), so
/// readers never see part of it. Files of parts that are never committed (a crash) are
/// not in either table; vacuum deletes them.
#[derive(Debug, Default)]
struct Staged {
    changes: StagedChanges,
    replica: StagedReplica,
    /// Highest position, highest streamed position and last source time of the parts.
    top: Option<EventPosition>,
    streamed_top: Option<EventPosition>,
    last_ts: i64,
}

/// The change-log half of [`Staged`].
#[derive(Debug, Default)]
struct StagedChanges {
    /// Files of the parts.
    adds: Vec<Action>,
    /// Changes the parts numbered (the next part's first `__seq` index).
    seq_next: i64,
}

/// The replica half of [`Staged`].
#[derive(Debug, Default)]
struct StagedReplica {
    /// Files by bucket as the parts left them, over the committed ones.
    buckets: HashMap<u32, Vec<(String, i64)>>,
    /// Committed files the parts replaced.
    removed: Vec<(String, i64)>,
    /// Files the parts wrote that are still current: path → (size, rows).
    added: HashMap<String, (i64, usize)>,
    /// What the parts did to a merge-on-read replica.
    mor: mor::StagedMor,
}

impl StagedReplica {
    fn is_empty(&self) -> bool {
        self.buckets.is_empty()
            && self.removed.is_empty()
            && self.added.is_empty()
            && self.mor.is_empty()
    }
}

impl Staged {
    fn has_changes(&self) -> bool {
        !self.changes.adds.is_empty()
    }

    fn has_replica(&self) -> bool {
        !self.replica.is_empty()
    }
}

/// An upper bound of the replica's primary keys (in Arrow's order-preserving row
/// encoding), kept while this sink is the table's only writer since it was last read:
/// a batch of inserts whose keys are all above it cannot meet a row already there, so its
/// rows are added as new files instead of rewriting the buckets they fall in. That turns
/// snapshots and insert-only tables from rewriting the whole table per batch into
/// appends. Unknown after (re)loading or a schema change; found then by reading the key
/// columns once. A commit by another writer in between makes ours fail (Delta's version
/// check), and the restart reloads.
#[derive(Debug, Clone, Default)]
enum KeyBound {
    #[default]
    Unknown,
    /// The replica has no rows.
    Empty,
    /// No key in the replica is above this one.
    Max(arrow::row::OwnedRow),
}

impl KeyBound {
    /// Raises the bound to cover `key`.
    fn cover(&mut self, key: arrow::row::Row<'_>) {
        match self {
            KeyBound::Unknown => {}
            KeyBound::Max(m) if m.row() >= key => {}
            _ => *self = KeyBound::Max(key.owned()),
        }
    }
}

/// Counters of one `apply`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyStats {
    /// Changes written to the change log.
    pub changes: u64,
    /// Keys changed in the replica after reduction.
    pub keys: u64,
    /// Bytes of Parquet written (both tables).
    pub bytes_written: u64,
    /// Replica rows rewritten (kept + new).
    pub rows_rewritten: u64,
    /// Buckets rewritten.
    pub buckets: u64,
    /// Delta commits made.
    pub commits: u64,
    /// Replica values left NULL because the row images left their columns out and
    /// nothing told them: an INSERT's columns without a known default, or an update of a
    /// key whose earlier row is gone (see [`ReplicaView::write`]).
    pub absent_unknown: u64,
}

impl ApplyStats {
    /// The sum of two.
    pub fn merge(self, o: ApplyStats) -> ApplyStats {
        ApplyStats {
            changes: self.changes + o.changes,
            keys: self.keys + o.keys,
            bytes_written: self.bytes_written + o.bytes_written,
            rows_rewritten: self.rows_rewritten + o.rows_rewritten,
            buckets: self.buckets + o.buckets,
            commits: self.commits + o.commits,
            absent_unknown: self.absent_unknown + o.absent_unknown,
        }
    }
}

fn change_log_schema(table: &TableSchema, before_images: bool) -> Schema {
    let mut fields = vec![
        Field::new("__op", DataType::Utf8, false),
        Field::new(
            "__commit_ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("__binlog_file", DataType::Utf8, true),
        Field::new("__binlog_pos", DataType::Int64, true),
        Field::new("__binlog_row", DataType::Int32, true),
        Field::new("__gtid", DataType::Utf8, true),
        Field::new("__kafka_partition", DataType::Int32, true),
        Field::new("__kafka_offset", DataType::Int64, true),
        // Nullable only because change logs written before it was added have none.
        Field::new(SEQ, DataType::Int64, true),
        absent_field(),
    ];
    debug_assert!(fields.iter().map(|f| f.name().as_str()).eq(CHANGE_LOG_META));
    for c in &table.columns {
        fields.push(arrow_field(&c.name, &c.ty));
    }
    if before_images {
        for c in &table.columns {
            fields.push(arrow_field(&format!("__before_{}", c.name), &c.ty));
        }
    }
    fields.push(Field::new(COMMIT_DATE, DataType::Date32, false));
    Schema::new(fields)
}

fn absent_field() -> Field {
    Field::new(
        ABSENT,
        DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))),
        true,
    )
}

/// FNV-1a, 64 bits: stable across versions and platforms (the bucket layout depends on it).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn arrow_to_delta(schema: &Schema) -> Result<StructType> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
    let s: StructType = schema
        .try_into_kernel()
        .map_err(|e| Error::delta("-", "map the schema", e, false))?;
    Ok(s)
}

impl TableSink {
    /// Opens (or creates) the change log and replica of `table`, and evolves them to its
    /// schema.
    pub async fn open(lake: &Lake, table: &TableSchema) -> Result<TableSink> {
        let name = table.qualified_name();
        if table.primary_key.is_empty() {
            return Err(Error::NoKey { table: name });
        }
        let cfg = lake.config();
        let before_images = cfg.before_images;
        let changes_url = lake.table_url(&table.database, &table.table, TableKind::Changes)?;
        let replica_url = lake.table_url(&table.database, &table.table, TableKind::Replica)?;
        let key_names: Vec<String> = table.key_columns().map(|c| c.name.clone()).collect();

        let changes = match lake.load(&changes_url).await? {
            Some(t) => t,
            None => {
                create(
                    lake,
                    &changes_url,
                    &change_log_schema(table, before_images),
                    &[COMMIT_DATE],
                    &name,
                    &[("binlake.table", name.clone())],
                )
                .await?
            }
        };
        let replica = match lake.load(&replica_url).await? {
            Some(t) => t,
            None => {
                let mut props = vec![
                    ("binlake.table", name.clone()),
                    (BUCKETS_PROPERTY, cfg.buckets.to_string()),
                    ("binlake.primary_key", key_names.join(",")),
                    (MODE_PROPERTY, cfg.replica_mode.as_str().to_string()),
                ];
                if cfg.replica_mode == ReplicaMode::MergeOnRead {
                    // Reader 3 / writer 7 with the `deletionVectors` feature.
                    props.push(("delta.enableDeletionVectors", "true".to_string()));
                }
                create(
                    lake,
                    &replica_url,
                    &replica_schema(table),
                    &[],
                    &name,
                    &props,
                )
                .await?
            }
        };
        let mut replica = replica;
        if cfg.replica_mode == ReplicaMode::MergeOnRead
            && mode_of(&replica) == ReplicaMode::CopyOnWrite
        {
            // In place: one commit upgrades the protocol (deletionVectors) and marks the
            // mode; the bucket files stay, and the key index reads them once.
            replica = replica
                .set_tbl_properties()
                .with_properties(HashMap::from([
                    (
                        "delta.enableDeletionVectors".to_string(),
                        "true".to_string(),
                    ),
                    (MODE_PROPERTY.to_string(), "merge_on_read".to_string()),
                ]))
                .with_raise_if_not_exists(false)
                .await
                .map_err(|e| {
                    Error::delta(replica_url.as_str(), "switch to merge-on-read", e, true)
                })?;
            tracing::info!(table = %name, "replica switched to merge-on-read");
        }
        let table_config = replica
            .snapshot()
            .ok()
            .map(|s| s.metadata().configuration().clone())
            .unwrap_or_default();
        let mode = mode_of(&replica);
        if mode != cfg.replica_mode {
            tracing::warn!(table = %name, "the replica is merge-on-read and stays so ([lake] replica_mode = \"copy_on_write\" applies to new replicas; delete the replica's folder to have it snapshotted again as copy-on-write)");
        }
        let mor_settings = mor::Settings {
            dir: lake.index_dir(),
            writer: lake.writer().to_string(),
            cache_bytes: cfg.index_cache_mb << 20,
            max_deleted: cfg.max_deleted_fraction,
            budget: cfg.max_batch_bytes as u64,
        };
        let mor = match mode {
            ReplicaMode::CopyOnWrite => None,
            ReplicaMode::MergeOnRead => Some(mor::Mor::open(&mor_settings, &name, &replica).await?),
        };
        let buckets = table_config
            .get(BUCKETS_PROPERTY)
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|b| *b > 0)
            .unwrap_or(cfg.buckets);
        let mut sink = TableSink {
            name,
            changes_schema: Arc::new(Schema::empty()),
            replica_schema: Arc::new(Schema::empty()),
            changes,
            replica,
            key_names,
            buckets,
            before_images,
            applied_changes: Applied::default(),
            applied_replica: Applied::default(),
            key_bound: KeyBound::Unknown,
            staged: Staged::default(),
            warned_absent: false,
            mor,
            mor_settings,
            changes_merge: None,
        };
        sink.refresh_schemas()?;
        // A change log written before `__seq` or `__absent` existed: its older rows have
        // none (NULL).
        let missing: Vec<Field> = [Field::new(SEQ, DataType::Int64, true), absent_field()]
            .into_iter()
            .filter(|f| sink.changes_schema.field_with_name(f.name()).is_err())
            .collect();
        if !missing.is_empty() {
            let url = sink.changes.table_url().to_string();
            let names: Vec<String> = missing.iter().map(|f| f.name().clone()).collect();
            let fields = arrow_to_delta(&Schema::new(missing))?;
            sink.changes = sink
                .changes
                .clone()
                .add_columns()
                .with_fields(fields.fields().cloned().collect::<Vec<_>>())
                .await
                .map_err(|e| {
                    Error::delta(
                        &url,
                        &format!("add the {} columns", names.join(", ")),
                        e,
                        true,
                    )
                })?;
            tracing::info!(table = %sink.name, columns = %names.join(", "), "change log upgraded: columns added (NULL in older rows)");
            sink.refresh_schemas()?;
        }
        sink.evolve(table).await?;
        if row_count(&sink.replica) == Some(0) {
            sink.key_bound = KeyBound::Empty;
        }
        sink.applied_changes = read_applied(&sink.changes, &[]).await?;
        sink.applied_replica = read_applied(&sink.replica, &[]).await?;
        Ok(sink)
    }

    /// `db.table`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the change log holds.
    pub fn applied_changes(&self) -> &Applied {
        &self.applied_changes
    }

    /// What the replica holds.
    pub fn applied_replica(&self) -> &Applied {
        &self.applied_replica
    }

    /// Re-reads what both tables hold for `app_ids` (after a commit conflict or a
    /// rebalance).
    pub async fn reload(&mut self) -> Result<()> {
        for t in [&mut self.changes, &mut self.replica] {
            let url = t.table_url().to_string();
            t.update_incremental(None)
                .await
                .map_err(|e| Error::delta(&url, "reload", e, true))?;
        }
        self.refresh_schemas()?;
        let apps: Vec<String> = self
            .applied_changes
            .txns
            .keys()
            .chain(self.applied_replica.txns.keys())
            .cloned()
            .collect();
        self.applied_changes = read_applied(&self.changes, &apps).await?;
        self.applied_replica = read_applied(&self.replica, &apps).await?;
        if self.mor.is_none() && mode_of(&self.replica) == ReplicaMode::MergeOnRead {
            // Another writer switched the replica to merge-on-read.
            self.mor = Some(mor::Mor::open(&self.mor_settings, &self.name, &self.replica).await?);
        }
        Ok(())
    }

    /// Makes sure [`TableSink::applied_changes`] and [`TableSink::applied_replica`] know
    /// the `txn` versions of `app_ids` (reads them from the tables once).
    pub async fn watch(&mut self, app_ids: &[String]) -> Result<()> {
        for app in app_ids {
            if !self.applied_changes.txns.contains_key(app)
                && let Some(v) = txn_version(&self.changes, app).await?
            {
                self.applied_changes.txns.insert(app.clone(), v);
            }
            if !self.applied_replica.txns.contains_key(app)
                && let Some(v) = txn_version(&self.replica, app).await?
            {
                self.applied_replica.txns.insert(app.clone(), v);
            }
        }
        Ok(())
    }

    fn refresh_schemas(&mut self) -> Result<()> {
        self.changes_schema = arrow_schema_of(&self.changes)?;
        self.replica_schema = arrow_schema_of(&self.replica)?;
        // Re-read tables may hold keys this sink did not write; a schema change may
        // change the key encoding.
        self.key_bound = KeyBound::Unknown;
        Ok(())
    }

    /// Brings both tables' schemas to `table`'s: new columns are added (NULL in older
    /// rows); dropped columns stay (NULL from now on); a column whose Arrow type widened is
    /// rewritten; a column whose Arrow type changed otherwise is an
    /// [`Error::IncompatibleSchema`]. A column whose MySQL type changed without changing
    /// its Arrow type (MariaDB's `longtext` known as `json`, a longer VARCHAR) only gets
    /// the new field metadata, in a metadata-only commit.
    pub async fn evolve(&mut self, table: &TableSchema) -> Result<()> {
        let mut added_replica = Vec::new();
        let mut widened: Vec<(String, DataType)> = Vec::new();
        for c in &table.columns {
            let f = arrow_field(&c.name, &c.ty);
            match self.replica_schema.field_with_name(&c.name) {
                Ok(existing) if existing.data_type() == f.data_type() => {}
                Ok(existing) if widens(existing.data_type(), f.data_type()) => {
                    widened.push((c.name.clone(), f.data_type().clone()));
                }
                Ok(existing) => {
                    return Err(Error::IncompatibleSchema {
                        table: self.name.clone(),
                        reason: format!(
                            "column {} changed from {} to {} ({}), which does not hold every old value",
                            c.name,
                            existing.data_type(),
                            f.data_type(),
                            c.ty.sql_name()
                        ),
                        location: self
                            .replica
                            .table_url()
                            .join("..")
                            .map(|u| u.to_string())
                            .unwrap_or_default(),
                    });
                }
                Err(_) => added_replica.push(f),
            }
        }
        if !widened.is_empty() {
            let before: Vec<(String, DataType)> = widened
                .iter()
                .map(|(n, t)| (format!("__before_{n}"), t.clone()))
                .collect();
            let mut for_changes = widened.clone();
            for_changes.extend(before);
            rewrite_widened(&mut self.changes, &for_changes).await?;
            rewrite_widened(&mut self.replica, &widened).await?;
            tracing::info!(table = %self.name, columns = ?widened.iter().map(|w| &w.0).collect::<Vec<_>>(), "schema evolved: columns widened (files rewritten)");
            self.refresh_schemas()?;
        }
        if !added_replica.is_empty() {
            self.add_columns(added_replica).await?;
        }
        let mut relabeled = false;
        let schemas = [self.changes_schema.clone(), self.replica_schema.clone()];
        for (t, schema) in [&mut self.changes, &mut self.replica]
            .into_iter()
            .zip(schemas)
        {
            relabeled |= relabel(t, &schema, table).await?;
        }
        if relabeled {
            tracing::info!(table = %self.name, "schema evolved: column types renamed (field metadata only)");
            self.refresh_schemas()?;
        }
        Ok(())
    }

    async fn add_columns(&mut self, added_replica: Vec<Field>) -> Result<()> {
        let mut added_changes = added_replica.clone();
        if self.before_images {
            added_changes.extend(added_replica.iter().map(|f| {
                Field::new(
                    format!("__before_{}", f.name()),
                    f.data_type().clone(),
                    true,
                )
                .with_metadata(f.metadata().clone())
            }));
        }
        for (t, added) in [
            (&mut self.changes, added_changes),
            (&mut self.replica, added_replica),
        ] {
            let url = t.table_url().to_string();
            let fields = arrow_to_delta(&Schema::new(added))?;
            let new = t
                .clone()
                .add_columns()
                .with_fields(fields.fields().cloned().collect::<Vec<_>>())
                .await
                .map_err(|e| Error::delta(&url, "add columns", e, true))?;
            *t = new;
        }
        tracing::info!(table = %self.name, "schema evolved: columns added");
        self.refresh_schemas()
    }

    /// Table maintenance: merges the small files of change-log date partitions holding at
    /// least `min_files` of them (bounded merges, `compact.rs`) and a merge-on-read
    /// replica's files (`mor.rs`), both beside the batches, in `dataChange: false` commits
    /// (readers and change-data feeds see no change); merges a copy-on-write replica's
    /// appended buckets; then deletes files of both tables that are no longer part of
    /// them and older than `retention` (vacuum). Checkpoints are written by the commits
    /// themselves (delta-rs' post-commit hook, every 100 versions). Returns (merged files
    /// committed, files deleted).
    pub async fn maintain(
        &mut self,
        min_files: usize,
        retention: std::time::Duration,
    ) -> Result<(u64, u64)> {
        // Merges run beside the batches (`compact.rs`, `mor.rs`): what the last pass
        // started is committed if done, the next merges start, and the pass waits a
        // moment for them (small ones finish at once, so an idle table is merged now;
        // longer ones are committed between later batches).
        let mut compacted = self.commit_changes_merge().await?;
        compacted += match self.mor.is_some() {
            true => self.commit_finished_rewrite().await?,
            false => self.compact_replica(min_files).await?,
        };
        self.start_changes_merge(min_files, self.mor_settings.budget)?;
        self.start_rewrite(min_files).await?;
        let deadline = tokio::time::Instant::now() + MAINTENANCE_WAIT;
        while (self.changes_merge.is_some() || self.rewrite_running())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            compacted += self.commit_changes_merge().await?;
            compacted += self.commit_finished_rewrite().await?;
        }
        let mut deleted = 0u64;
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
        // Vacuum must not see a running merge's file before it is committed.
        let (merging, rewriting) = (self.changes_merge.is_some(), self.rewrite_running());
        let mut tables = Vec::new();
        if !merging {
            tables.push(&mut self.changes);
        }
        if !rewriting {
            tables.push(&mut self.replica);
        }
        for t in tables {
            let url = t.table_url().to_string();
            let (new, metrics) = t
                .clone()
                .vacuum()
                .with_retention_period(retention)
                .with_enforce_retention_duration(false)
                .await
                .map_err(|e| Error::delta(&url, "vacuum", e, true))?;
            deleted += metrics.files_deleted.len() as u64;
            *t = new;
        }
        Ok((compacted, deleted))
    }

    /// Merges the files of replica buckets that appends left in `min_files` or more files
    /// (rows unchanged, so readers and writers see no data change); returns how many.
    async fn compact_replica(&mut self, min_files: usize) -> Result<u64> {
        let mut files = files_by(&self.replica, bucket_of)?;
        files.retain(|_, f| f.len() >= min_files.max(2));
        if files.is_empty() {
            return Ok(0);
        }
        let schema = self.replica_schema.clone();
        let key_idx = self
            .key_names
            .iter()
            .map(|k| schema.index_of(k))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::storage("compact the replica", e))?;
        let key_fields: Vec<SortField> = key_idx
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect();
        let store = self.replica.log_store().object_store(None);
        let version = self.replica.version().unwrap_or(0) + 1;
        let now = now_us() / 1000;
        let mut actions = Vec::new();
        let n = files.len() as u64;
        for (b, old) in files {
            let r = BucketJob {
                bucket: b,
                old,
                keep_old: true,
                changed_keys: HashSet::new(),
                new_rows: RecordBatch::new_empty(schema.clone()),
                own: Vec::new(),
                key_idx: key_idx.clone(),
                key_fields: key_fields.clone(),
                schema: schema.clone(),
                path: bucket_file(b, version),
                store: store.clone(),
            }
            .run()
            .await?;
            actions.extend(r.actions(false, now));
        }
        commit_compaction(&mut self.replica, actions, &self.applied_replica).await?;
        Ok(n)
    }

    /// Writes `batch` (changes of this table, in source order, none already held by the
    /// tables they go to: filter with [`Applied::covers`]) to the change log and the
    /// replica (concurrently), recording `progress` with each.
    pub async fn apply(
        &mut self,
        batch: &[Change],
        progress: &Progress,
        to_changes: bool,
        to_replica: bool,
    ) -> Result<ApplyStats> {
        let stats = (self.write_batch(batch, progress, to_changes, to_replica, false)).await?;
        // A merge-on-read maintenance rewrite that finished beside the batches is
        // committed between them, as soon as it is done (never with parts staged: their
        // deletion vectors name the files it replaces). It changes no data: a failure
        // drops it (its file is left to vacuum) and the next maintenance pass tries again.
        if !self.has_staged() {
            if let Err(e) = self.commit_finished_rewrite().await {
                tracing::warn!(table = %self.name, error = %e, "maintenance rewrite not committed; the next maintenance pass starts another");
            }
            if let Err(e) = self.commit_changes_merge().await {
                tracing::warn!(table = %self.name, error = %e, "change-log merge not committed; the next maintenance pass starts another");
            }
        }
        Ok(stats)
    }

    /// Writes `batch` like [`TableSink::apply`] as a part of a source transaction, without
    /// committing it: the next `apply` commits it with its own changes in one Delta commit
    /// per table (see [`Staged`]).
    pub async fn stage(
        &mut self,
        batch: &[Change],
        progress: &Progress,
        to_changes: bool,
        to_replica: bool,
    ) -> Result<ApplyStats> {
        self.write_batch(batch, progress, to_changes, to_replica, true)
            .await
    }

    /// Whether parts are staged and not committed yet.
    pub fn has_staged(&self) -> bool {
        self.staged.has_changes() || self.staged.has_replica()
    }

    /// Forgets what was staged and not committed (the transaction is read again).
    pub fn discard_staged(&mut self) {
        if self.staged.has_changes() || self.staged.has_replica() {
            self.staged = Staged::default();
            self.key_bound = KeyBound::Unknown;
        }
    }

    async fn write_batch(
        &mut self,
        batch: &[Change],
        progress: &Progress,
        to_changes: bool,
        to_replica: bool,
        stage: bool,
    ) -> Result<ApplyStats> {
        let stats = ApplyStats::default();
        let pending =
            (to_changes && self.staged.has_changes()) || (to_replica && self.staged.has_replica());
        if batch.is_empty() && (stage || !pending) {
            return Ok(stats);
        }
        // An update that moves the primary key is a delete of the old key and a create
        // of the new one (as Debezium writes it), so that each key's history in the
        // change log is complete.
        let split;
        let batch = if batch.iter().any(moves_key) {
            split = batch.iter().flat_map(split_key_move).collect::<Vec<_>>();
            &split[..]
        } else {
            batch
        };
        // The highest position, not the last change's: snapshot rows are placed at their
        // chunk's high watermark, which may be below streamed changes before them. Parts
        // staged before count.
        let staged_top = self.staged.top.clone();
        let staged_streamed = self.staged.streamed_top.clone();
        let Some(top) = batch
            .iter()
            .map(|c| &c.event.source.position)
            .chain(staged_top.as_ref())
            .max()
            .cloned()
        else {
            return Ok(stats);
        };
        let streamed_top = batch
            .iter()
            .filter(|c| c.event.op != Op::Read)
            .map(|c| &c.event.source.position)
            .chain(staged_streamed.as_ref())
            .max()
            .cloned();
        let last_ts = batch
            .last()
            .map_or(self.staged.last_ts, |c| c.event.source.ts_us);
        let streamed_top = streamed_top.as_ref();
        let freshness = Freshness {
            position: Some(top.to_string()),
            file: Some(top.file.to_string()),
            pos: top.pos,
            row: top.row,
            source_ts_us: last_ts,
            resume: progress.resume.clone(),
            committed_at_us: 0,
            snapshot: progress.snapshot.clone(),
            streamed: None,
        };
        // Each Delta table carries its own highest streamed position forward.
        let with_streamed = |applied: &Applied| {
            let before = applied.freshness.as_ref().and_then(|f| f.streamed.clone());
            let streamed = match (before, streamed_top) {
                (Some(b), Some(t)) if b.event_position() >= *t => Some(b),
                (_, Some(t)) => Some(StreamPosition::from(t)),
                (b, None) => b,
            };
            Freshness {
                streamed,
                ..freshness.clone()
            }
        };
        let changes_freshness = with_streamed(&self.applied_changes);
        let replica_freshness = with_streamed(&self.applied_replica);
        if stage {
            self.staged.top = Some(top.clone());
            self.staged.streamed_top = streamed_top.cloned();
            self.staged.last_ts = last_ts;
        }
        // Evolve before writing rows of a newer schema (checked once per schema).
        let mut seen: Option<&Arc<TableSchema>> = None;
        for c in batch {
            if !seen.is_some_and(|s| Arc::ptr_eq(s, &c.event.table)) {
                seen = Some(&c.event.table);
                self.evolve(&c.event.table).await?;
            }
        }
        // The two tables are independent Delta tables, each recording what it holds:
        // write them at the same time, but commit the replica first, so that a change log
        // holding a batch means the replica holds it too (`run` relies on it: snapshot rows
        // read again after a crash may go to the replica twice, an upsert, but never to
        // the change log).
        let (replica_done, replica_committed) = match to_changes && to_replica && !stage {
            true => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let TableSink {
            name,
            changes,
            replica,
            changes_schema,
            replica_schema,
            key_names,
            buckets,
            before_images,
            applied_changes,
            applied_replica,
            key_bound,
            staged,
            warned_absent,
            mor,
            ..
        } = self;
        let Staged {
            changes: staged_changes,
            replica: staged_replica,
            ..
        } = staged;
        let mut cv = ChangesView {
            name,
            table: changes,
            schema: changes_schema,
            before_images: *before_images,
            applied: applied_changes,
        };
        let mut rv = ReplicaView {
            name,
            table: replica,
            schema: replica_schema,
            key_names,
            buckets: *buckets,
            applied: applied_replica,
            key_bound,
            warned_absent,
            mor: mor.as_mut(),
        };
        let (mut sc, mut sr) = (ApplyStats::default(), ApplyStats::default());
        let (a, b) = tokio::join!(
            async {
                let t = std::time::Instant::now();
                let r = match to_changes {
                    true => {
                        cv.write(
                            batch,
                            progress,
                            &changes_freshness,
                            &mut sc,
                            replica_committed,
                            (staged_changes, stage),
                        )
                        .await
                    }
                    false => Ok(()),
                };
                tracing::debug!(table = %name, rows = batch.len(), took = ?t.elapsed(), "change log written");
                r
            },
            async {
                let t = std::time::Instant::now();
                let r = match to_replica {
                    true => {
                        rv.write(
                            batch,
                            progress,
                            &replica_freshness,
                            &mut sr,
                            replica_done,
                            (staged_replica, stage),
                        )
                        .await
                    }
                    false => Ok(()),
                };
                tracing::debug!(table = %name, rows = batch.len(), took = ?t.elapsed(), "replica written");
                r
            }
        );
        // The replica's error first: the change log's may only say it waited in vain.
        b?;
        a?;
        if !self.staged.has_changes() && !self.staged.has_replica() {
            self.staged = Staged::default();
        }
        Ok(stats.merge(sc).merge(sr))
    }
}

/// The change-log half of a [`TableSink`], borrowed for one write.
struct ChangesView<'a> {
    name: &'a str,
    table: &'a mut DeltaTable,
    schema: &'a SchemaRef,
    before_images: bool,
    applied: &'a mut Applied,
}

impl ChangesView<'_> {
    async fn write(
        &mut self,
        batch: &[Change],
        progress: &Progress,
        freshness: &Freshness,
        stats: &mut ApplyStats,
        after: Option<tokio::sync::oneshot::Receiver<()>>,
        (staged, stage): (&mut StagedChanges, bool),
    ) -> Result<()> {
        let file_schema = without_columns(self.schema, &[COMMIT_DATE.to_string()]);
        // The commit lands at exactly this version or fails (no retries): see [`SEQ`].
        // Staged parts come first in it.
        let version = self.table.version().map_or(0, |v| v + 1);
        let seq_base = i64::try_from(version)
            .ok()
            .and_then(|v| v.checked_mul(1 << 32))
            .ok_or_else(|| {
                Error::storage(
                    format!("number the changes of {}", self.name),
                    format!("change-log version {version} is beyond the sequence range"),
                )
            })?;
        // Rows by commit date, in order, with their sequence numbers.
        let mut by_date: BTreeMap<i32, Vec<(i64, &Change)>> = BTreeMap::new();
        for (i, c) in batch.iter().enumerate() {
            let day = c.event.source.ts_us.div_euclid(86_400_000_000) as i32;
            by_date
                .entry(day)
                .or_default()
                .push((seq_base + staged.seq_next + i as i64, c));
        }
        let mut actions = Vec::new();
        let store = self.table.log_store().object_store(None);
        for (day, changes) in by_date {
            let rb = self.change_rows(&file_schema, &changes)?;
            let date = binlake_core::temporal::Date::from_epoch_days(day)
                .map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
                .unwrap_or_else(|| "1970-01-01".into());
            let rel = format!("{COMMIT_DATE}={date}/part-{}.parquet", progress.file_token);
            let meta = vec![(
                "binlake.progress".to_string(),
                serde_json::to_string(&progress.txns).unwrap_or_default(),
            )];
            let bytes = tokio::task::spawn_blocking(move || {
                encode_parquet(&rb, meta, Compression::ZSTD(Default::default()))
            })
            .await
            .map_err(|e| Error::storage("encode", e))??;
            let size = bytes.len() as i64;
            stats.bytes_written += size as u64;
            store
                .put(&Path::from(rel.as_str()), bytes.into())
                .await
                .map_err(|e| Error::storage(format!("write {rel}"), e))?;
            actions.push(Action::Add(add(
                rel,
                size,
                changes.len(),
                [(COMMIT_DATE, Some(date))],
            )));
        }
        stats.changes += batch.len() as u64;
        if stage {
            staged.adds.extend(actions);
            staged.seq_next += batch.len() as i64;
            return Ok(());
        }
        stats.commits += 1;
        if let Some(after) = after {
            after.await.map_err(|_| {
                Error::storage(
                    format!("commit the change log of {}", self.name),
                    "its replica was not committed",
                )
            })?;
        }
        let mut all = std::mem::take(&mut staged.adds);
        all.extend(actions);
        commit(self.table, all, progress, freshness, "append changes").await?;
        staged.seq_next = 0;
        apply_progress(self.applied, progress, freshness);
        Ok(())
    }

    /// The change-log columns `e`'s row images leave out, as one `__absent` entry.
    fn append_absent(
        &self,
        out: &mut arrow::array::ListBuilder<arrow::array::StringBuilder>,
        e: &ChangeEvent,
    ) {
        let absent = |r: &Option<binlake_core::Row>| {
            r.as_ref().is_some_and(|r| r.iter().any(Value::is_absent))
        };
        let image = if e.op == Op::Delete {
            &e.before
        } else {
            &e.after
        };
        let before = self.before_images && e.op != Op::Delete && absent(&e.before);
        if !absent(image) && !before {
            out.append_null();
            return;
        }
        let names = |r: &Option<binlake_core::Row>| {
            r.iter()
                .flat_map(|r| r.iter().enumerate())
                .filter(|(_, v)| v.is_absent())
                .map(|(i, _)| e.table.columns[i].name.as_str())
                .collect::<Vec<_>>()
        };
        for name in names(image) {
            out.values().append_value(name);
        }
        if before {
            for name in names(&e.before) {
                out.values().append_value(format!("__before_{name}"));
            }
        }
        out.append(true);
    }

    fn change_rows(&self, schema: &SchemaRef, changes: &[(i64, &Change)]) -> Result<RecordBatch> {
        let n = changes.len();
        let seq = arrow::array::Int64Array::from_iter_values(changes.iter().map(|(s, _)| *s));
        let mut op = arrow::array::StringBuilder::with_capacity(n, n);
        let mut ts =
            arrow::array::TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut file = arrow::array::StringBuilder::with_capacity(n, n * 16);
        let mut pos = arrow::array::Int64Builder::with_capacity(n);
        let mut row = arrow::array::Int32Builder::with_capacity(n);
        let mut gtid = arrow::array::StringBuilder::with_capacity(n, 0);
        let mut kp = arrow::array::Int32Builder::with_capacity(n);
        let mut ko = arrow::array::Int64Builder::with_capacity(n);
        // The list's item field as the table has it (Delta names it `element`).
        let mut absent = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
        if let Ok(f) = schema.field_with_name(ABSENT)
            && let DataType::List(item) = f.data_type()
        {
            absent = absent.with_field(item.clone());
        }
        // The rows of one transaction share its GTID: format it once.
        let mut last_gtid: Option<(&binlake_core::Gtid, String)> = None;
        for (_, c) in changes {
            let e = &c.event;
            op.append_value(e.op.code());
            ts.append_value(e.source.ts_us);
            file.append_value(&*e.source.position.file);
            pos.append_value(e.source.position.pos as i64);
            row.append_value(e.source.position.row as i32);
            match &e.source.gtid {
                Some(g) => {
                    if last_gtid.as_ref().is_none_or(|(l, _)| *l != g) {
                        last_gtid = Some((g, g.to_string()));
                    }
                    if let Some((_, text)) = &last_gtid {
                        gtid.append_value(text);
                    }
                }
                None => gtid.append_null(),
            }
            match c.kafka {
                Some((p, o)) => {
                    kp.append_value(p);
                    ko.append_value(o);
                }
                None => {
                    kp.append_null();
                    ko.append_null();
                }
            }
            self.append_absent(&mut absent, e);
        }
        let meta: [ArrayRef; 10] = [
            Arc::new(op.finish()),
            Arc::new(ts.finish()),
            Arc::new(file.finish()),
            Arc::new(pos.finish()),
            Arc::new(row.finish()),
            Arc::new(gtid.finish()),
            Arc::new(kp.finish()),
            Arc::new(ko.finish()),
            Arc::new(seq),
            Arc::new(absent.finish()),
        ];
        // By name: a change log written before `__seq` existed has it after the table's
        // columns.
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            if let Some(i) = CHANGE_LOG_META.iter().position(|m| m == field.name()) {
                columns.push(meta[i].clone());
                continue;
            }
            let (before, col_name) = match field.name().strip_prefix("__before_") {
                Some(rest) if self.before_images => (true, rest),
                _ => (false, field.name().as_str()),
            };
            let mut b = builder_for(field, n);
            // The column's index in each event's schema, looked up once per schema.
            let mut cached: Option<(*const TableSchema, Option<usize>)> = None;
            for (_, c) in changes {
                let e = &c.event;
                // After-image, or the before-image for deletes; `__before_` columns hold
                // the before-image of updates and deletes.
                let image = if before || e.op == Op::Delete {
                    e.before.as_ref()
                } else {
                    e.after.as_ref()
                };
                let ptr = Arc::as_ptr(&e.table);
                let idx = match cached {
                    Some((p, i)) if p == ptr => i,
                    _ => {
                        let i = e.table.column_index(col_name);
                        cached = Some((ptr, i));
                        i
                    }
                };
                match (image, idx) {
                    (Some(r), Some(i)) => b.append(&r[i]).map_err(|reason| Error::Value {
                        table: self.name.to_string(),
                        column: col_name.to_string(),
                        reason,
                    })?,
                    _ => b.append_null(),
                }
            }
            columns.push(b.finish());
        }
        RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| Error::storage("build the change-log batch", e))
    }
}

/// The replica half of a [`TableSink`], borrowed for one write.
struct ReplicaView<'a> {
    name: &'a str,
    table: &'a mut DeltaTable,
    schema: &'a SchemaRef,
    key_names: &'a [String],
    buckets: u32,
    applied: &'a mut Applied,
    key_bound: &'a mut KeyBound,
    warned_absent: &'a mut bool,
    mor: Option<&'a mut mor::Mor>,
}

impl ReplicaView<'_> {
    async fn write(
        &mut self,
        batch: &[Change],
        progress: &Progress,
        freshness: &Freshness,
        stats: &mut ApplyStats,
        committed: Option<tokio::sync::oneshot::Sender<()>>,
        (staged, stage): (&mut StagedReplica, bool),
    ) -> Result<()> {
        let schema = self.schema.clone();
        let key_idx: Vec<usize> = self
            .key_names
            .iter()
            .map(|k| {
                schema.index_of(k).map_err(|_| Error::IncompatibleSchema {
                    table: self.name.to_string(),
                    reason: format!("primary-key column {k} is missing"),
                    location: self.table.table_url().to_string(),
                })
            })
            .collect::<Result<_>>()?;
        let key_fields: Vec<SortField> = key_idx
            .iter()
            .map(|i| SortField::new(schema.field(*i).data_type().clone()))
            .collect();
        let converter =
            RowConverter::new(key_fields.clone()).map_err(|e| Error::storage("key encoding", e))?;

        // Key rows of every change, in order: (key image, upsert?) pairs.
        let mut truncated = false;
        let mut ops: Vec<KeyOp<'_>> = Vec::new();
        // Per op, where an upsert's absent values come from (see `resolve_absent`).
        let mut origins: Vec<Origin> = Vec::new();
        // The deletes of the batch by source position: a key change split into a delete
        // and a create (`split_key_move`, or Debezium-style messages, which may come from
        // two partitions) has both halves at the same position.
        let mut deletes: HashMap<&EventPosition, usize> = HashMap::new();
        for c in batch {
            let e = &c.event;
            match (e.op, e.before.as_deref(), e.after.as_deref()) {
                (Op::Truncate, _, _) => {
                    truncated = true;
                    ops.clear();
                    origins.clear();
                    deletes.clear();
                }
                (Op::Delete, Some(b), _) => {
                    deletes.insert(&e.source.position, ops.len());
                    ops.push((b, &e.table, None));
                    origins.push(Origin::Same);
                }
                (Op::Update, Some(b), Some(a)) => {
                    let moved = e.table.primary_key.iter().any(|&i| b[i] != a[i]);
                    if moved {
                        ops.push((b, &e.table, None));
                        origins.push(Origin::Same);
                    }
                    ops.push((a, &e.table, Some(a)));
                    origins.push(match moved {
                        true => Origin::Moved(ops.len() - 2),
                        false => Origin::Same,
                    });
                }
                (op, _, Some(a)) => {
                    ops.push((a, &e.table, Some(a)));
                    // An INSERT's row did not exist before it: nothing stored holds what
                    // its image leaves out (the columns' defaults).
                    origins.push(match (op, deletes.get(&e.source.position)) {
                        (Op::Create, Some(&d)) => Origin::Moved(d),
                        (Op::Create, None) => Origin::New,
                        _ => Origin::Same,
                    });
                }
                _ => {}
            }
        }
        // For each schema in the batch (by address): replica field → column index in that
        // schema.
        let mut positions: HashMap<usize, Vec<Option<usize>>> = HashMap::new();
        for (_, table, _) in &ops {
            positions
                .entry(Arc::as_ptr(table) as usize)
                .or_insert_with(|| {
                    schema
                        .fields()
                        .iter()
                        .map(|f| table.column_index(f.name()))
                        .collect()
                });
        }
        let value_at = |table: &Arc<TableSchema>, field: usize| -> Option<usize> {
            positions
                .get(&(Arc::as_ptr(table) as usize))
                .and_then(|p| p[field])
        };
        // Encode the keys.
        let key_batch = {
            let mut builders: Vec<ColumnBuilder> = key_idx
                .iter()
                .map(|&i| builder_for(schema.field(i), ops.len()))
                .collect();
            for (row, table, _) in &ops {
                for ((b, name), &field) in
                    builders.iter_mut().zip(self.key_names.iter()).zip(&key_idx)
                {
                    let v = value_at(table, field)
                        .map(|i| &row[i])
                        .unwrap_or(&Value::Null);
                    b.append(v).map_err(|reason| Error::Value {
                        table: self.name.to_string(),
                        column: name.clone(),
                        reason,
                    })?;
                }
            }
            builders.iter_mut().map(|b| b.finish()).collect::<Vec<_>>()
        };
        let keys = converter
            .convert_columns(&key_batch)
            .map_err(|e| Error::storage("key encoding", e))?;
        // Row images that leave columns out (binlog_row_image = MINIMAL or NOBLOB): what
        // the batch itself tells of them, and which stored rows hold the rest.
        let has_absent = ops
            .iter()
            .any(|(_, _, u)| u.is_some_and(|r| r.iter().any(Value::is_absent)));
        let resolved = match has_absent {
            false => HashMap::new(),
            true => resolve_absent(
                &ops,
                &origins,
                &keys,
                schema.fields().len(),
                truncated,
                &value_at,
            ),
        };
        let mut last: KeyMap<&[u8], usize> =
            KeyMap::with_capacity_and_hasher(ops.len(), Default::default());
        for i in 0..ops.len() {
            last.insert(keys.row(i).data(), i);
        }
        stats.keys += last.len() as u64;
        let mut per_bucket: HashMap<u32, Vec<usize>> = HashMap::new();
        for (k, &i) in &last {
            per_bucket
                .entry((fnv1a(k) % self.buckets as u64) as u32)
                .or_default()
                .push(i);
        }
        // Only new keys, all above what the replica holds: the rows go into new files,
        // nothing is read or rewritten (see `KeyBound`).
        let inserts_only = !truncated && ops.iter().all(|(_, _, upsert)| upsert.is_some());
        if self.mor.is_some() {
            // Merge-on-read: keys above every stored one need no lookup (see `KeyBound`);
            // not while parts are staged, whose keys the bound may not know after a
            // TRUNCATE.
            let fresh = staged.is_empty();
            if inserts_only && fresh && matches!(self.key_bound, KeyBound::Unknown) {
                let types: Vec<DataType> = key_idx
                    .iter()
                    .map(|&i| schema.field(i).data_type().clone())
                    .collect();
                *self.key_bound = self.scan_key_bound(&key_fields, types, None).await?;
            }
            let append = inserts_only
                && fresh
                && match &*self.key_bound {
                    KeyBound::Empty => true,
                    KeyBound::Max(m) => last.values().all(|&i| keys.row(i) > m.row()),
                    KeyBound::Unknown => false,
                };
            let prepared = mor::Prepared {
                ops: &ops,
                keys: &keys,
                last: &last,
                resolved: &resolved,
                truncated,
                value_at: &value_at,
                key_idx: &key_idx,
                key_fields: &key_fields,
            };
            self.write_mor(
                prepared,
                append,
                progress,
                freshness,
                stats,
                committed,
                (staged, stage),
            )
            .await?;
            self.warn_absent(stats);
            self.cover_keys(truncated, &last, &ops, &keys);
            return Ok(());
        }
        // The files of each bucket: the committed ones, with what staged parts left.
        let mut files = files_by(self.table, bucket_of)?;
        for (b, fs) in &staged.buckets {
            files.insert(*b, fs.clone());
        }
        // The stored rows of other keys (key changes) that hold absent values of the
        // batch's last row per key; a key's own stored row is read by its bucket's
        // rewrite, which reads that bucket anyway.
        let wanted: HashSet<Vec<u8>> = last
            .values()
            .filter_map(|&i| {
                resolved
                    .get(&i)
                    .and_then(|(_, origin)| origin.clone())
                    .filter(|o| o.as_slice() != keys.row(i).data())
            })
            .collect();
        let stored = match wanted.is_empty() {
            true => None,
            false => Some(
                self.stored_rows(&files, &wanted, &key_idx, &key_fields)
                    .await?,
            ),
        };
        if inserts_only && matches!(self.key_bound, KeyBound::Unknown) {
            let types: Vec<DataType> = key_idx
                .iter()
                .map(|&i| schema.field(i).data_type().clone())
                .collect();
            let paths = match staged.is_empty() {
                true => None,
                false => Some(files.values().flatten().map(|(p, _)| p.clone()).collect()),
            };
            *self.key_bound = self.scan_key_bound(&key_fields, types, paths).await?;
        }
        let append = inserts_only
            && match &*self.key_bound {
                KeyBound::Empty => true,
                KeyBound::Max(m) => last.values().all(|&i| keys.row(i) > m.row()),
                KeyBound::Unknown => false,
            };
        let touched: Vec<u32> = if truncated {
            let mut all: HashSet<u32> = files.keys().copied().collect();
            all.extend(per_bucket.keys().copied());
            all.into_iter().collect()
        } else {
            per_bucket.keys().copied().collect()
        };
        let store = self.table.log_store().object_store(None);
        let version = self.table.version().unwrap_or(0) + 1;
        let mut jobs = Vec::new();
        // Each touched bucket's files after this write, but for the one it adds.
        let mut kept: HashMap<u32, Vec<(String, i64)>> = HashMap::new();
        for b in touched {
            let old = match append {
                true => {
                    kept.insert(b, files.remove(&b).unwrap_or_default());
                    Vec::new()
                }
                false => {
                    kept.insert(b, Vec::new());
                    files.remove(&b).unwrap_or_default()
                }
            };
            let mut changed: Vec<usize> = per_bucket.remove(&b).unwrap_or_default();
            changed.sort_unstable();
            // The new rows of this bucket, as an Arrow batch.
            let mut builders: Vec<ColumnBuilder> = schema
                .fields()
                .iter()
                .map(|f| builder_for(f, changed.len()))
                .collect();
            let mut changed_keys = HashSet::with_capacity(changed.len());
            // (row of `new_rows`, field, row of the stored rows) to take from there.
            let mut patches: Vec<(usize, usize, usize)> = Vec::new();
            // (row of `new_rows`, field): from the key's own row in this bucket's files.
            let mut own: Vec<(usize, usize)> = Vec::new();
            let mut row_no = 0;
            for &i in &changed {
                changed_keys.insert(keys.row(i).data().to_vec());
                let (_, table, upsert) = &ops[i];
                let Some(row) = upsert else { continue };
                let merged = resolved.get(&i);
                for (field, (b, f)) in builders.iter_mut().zip(schema.fields()).enumerate() {
                    let v = match merged {
                        Some((vals, _)) => &vals[field],
                        None => value_at(table, field)
                            .map(|i| &row[i])
                            .unwrap_or(&Value::Null),
                    };
                    if v.is_absent() {
                        let origin = merged.and_then(|(_, origin)| origin.as_deref());
                        let from =
                            origin.and_then(|k| stored.as_ref().and_then(|(_, at)| at.get(k)));
                        match (from, origin) {
                            (Some(&j), _) => patches.push((row_no, field, j)),
                            (None, Some(k)) if k == keys.row(i).data() && !append => {
                                own.push((row_no, field))
                            }
                            _ => stats.absent_unknown += 1,
                        }
                    }
                    b.append(v).map_err(|reason| Error::Value {
                        table: self.name.to_string(),
                        column: f.name().clone(),
                        reason,
                    })?;
                }
                row_no += 1;
            }
            let mut new_rows = RecordBatch::try_new(
                schema.clone(),
                builders.iter_mut().map(|b| b.finish()).collect(),
            )
            .map_err(|e| Error::storage("build the replica batch", e))?;
            if let (false, Some((rows, _))) = (patches.is_empty(), &stored) {
                new_rows = take_patches(&new_rows, rows, &patches)?;
            }
            jobs.push(BucketJob {
                bucket: b,
                old,
                keep_old: !truncated,
                changed_keys,
                new_rows,
                own,
                key_idx: key_idx.clone(),
                key_fields: key_fields.clone(),
                schema: schema.clone(),
                path: bucket_file(b, version),
                store: store.clone(),
            });
        }
        stats.buckets += jobs.len() as u64;
        let results: Vec<BucketResult> = futures::stream::iter(jobs.into_iter().map(|j| j.run()))
            .buffer_unordered(2)
            .try_collect()
            .await?;
        // Into the staged state: a staged file replaced again was never committed (it
        // stays out of the table); a committed one is removed at the commit.
        for r in results {
            stats.absent_unknown += r.absent_unknown;
            for (path, size) in r.removed {
                if staged.added.remove(&path).is_none() {
                    staged.removed.push((path, size));
                }
            }
            let mut now = kept.remove(&r.bucket).unwrap_or_default();
            if let Some((path, size, rows)) = r.added {
                stats.bytes_written += size as u64;
                stats.rows_rewritten += rows as u64;
                staged.added.insert(path.clone(), (size, rows));
                now.push((path, size));
            }
            staged.buckets.insert(r.bucket, now);
        }
        for (b, now) in kept {
            staged.buckets.insert(b, now);
        }
        self.warn_absent(stats);
        if !stage {
            let now = now_us() / 1000;
            let mut actions: Vec<Action> = std::mem::take(&mut staged.removed)
                .into_iter()
                .map(|(path, size)| {
                    Action::Remove(remove(path, size, Some(HashMap::new()), true, now))
                })
                .collect();
            for (path, (size, rows)) in std::mem::take(&mut staged.added) {
                actions.push(Action::Add(add(
                    path,
                    size,
                    rows,
                    std::iter::empty::<(&str, Option<String>)>(),
                )));
            }
            staged.buckets.clear();
            stats.commits += 1;
            commit(self.table, actions, progress, freshness, "apply changes").await?;
        }
        if !stage {
            binlake_core::failpoint::hit("lake.after_replica_commit");
            if let Some(c) = committed {
                let _ = c.send(());
            }
            apply_progress(self.applied, progress, freshness);
        }
        self.cover_keys(truncated, &last, &ops, &keys);
        Ok(())
    }

    /// Reports, once per sink, values left NULL for want of their absent columns.
    fn warn_absent(&mut self, stats: &ApplyStats) {
        if stats.absent_unknown > 0 && !*self.warned_absent {
            *self.warned_absent = true;
            tracing::warn!(
                table = %self.name,
                values = stats.absent_unknown,
                "replica values left NULL: the row images (binlog_row_image = MINIMAL or NOBLOB) left their columns out and no earlier row holds them (an INSERT's columns whose default binlake does not know exactly, e.g. CURRENT_TIMESTAMP); set binlog_row_image = FULL on the primary, or re-snapshot the table to correct them"
            );
        }
    }

    /// Raises the key bound over the batch's upserts (or forgets it after a TRUNCATE).
    fn cover_keys(
        &mut self,
        truncated: bool,
        last: &KeyMap<&[u8], usize>,
        ops: &[KeyOp<'_>],
        keys: &arrow::row::Rows,
    ) {
        if truncated {
            *self.key_bound = KeyBound::Unknown;
        } else {
            for &i in last.values() {
                if ops[i].2.is_some() {
                    self.key_bound.cover(keys.row(i));
                }
            }
        }
    }

    /// The stored rows (in `files`, before this batch) of the `wanted` keys, aligned to
    /// the replica's schema, and each key's row in them.
    async fn stored_rows(
        &self,
        files: &BTreeMap<u32, Vec<(String, i64)>>,
        wanted: &HashSet<Vec<u8>>,
        key_idx: &[usize],
        key_fields: &[SortField],
    ) -> Result<(RecordBatch, HashMap<Vec<u8>, usize>)> {
        let store = self.table.log_store().object_store(None);
        let buckets: BTreeMap<u32, ()> = wanted
            .iter()
            .map(|k| ((fnv1a(k) % self.buckets as u64) as u32, ()))
            .collect();
        let converter = RowConverter::new(key_fields.to_vec())
            .map_err(|e| Error::storage("key encoding", e))?;
        let mut parts = Vec::new();
        let mut at = HashMap::with_capacity(wanted.len());
        let mut n = 0;
        for b in buckets.keys() {
            for (path, _) in files.get(b).into_iter().flatten() {
                let bytes = read_object(&store, path).await?;
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .and_then(|r| r.with_batch_size(65536).build())
                    .map_err(|e| Error::storage(format!("read {path}"), e))?;
                for rb in reader {
                    let rb = rb.map_err(|e| Error::storage(format!("read {path}"), e))?;
                    let rb = align(&rb, self.schema)?;
                    let cols: Vec<ArrayRef> =
                        key_idx.iter().map(|&i| rb.column(i).clone()).collect();
                    let rows = converter
                        .convert_columns(&cols)
                        .map_err(|e| Error::storage("key encoding", e))?;
                    let mut keep = Vec::with_capacity(rb.num_rows());
                    for r in 0..rb.num_rows() {
                        let k = rows.row(r).data();
                        let hit = wanted.contains(k);
                        if hit {
                            at.insert(k.to_vec(), n);
                            n += 1;
                        }
                        keep.push(hit);
                    }
                    if n > 0 {
                        let kept = filter_record_batch(&rb, &keep.into())
                            .map_err(|e| Error::storage("filter", e))?;
                        if kept.num_rows() > 0 {
                            parts.push(kept);
                        }
                    }
                }
            }
        }
        let rows = arrow::compute::concat_batches(self.schema, &parts)
            .map_err(|e| Error::storage("concat", e))?;
        Ok((rows, at))
    }

    /// The largest key in the replica, read from its files' key columns.
    async fn scan_key_bound(
        &self,
        key_fields: &[SortField],
        key_types: Vec<DataType>,
        paths: Option<Vec<String>>,
    ) -> Result<KeyBound> {
        let paths: Vec<String> = match paths {
            Some(p) => p,
            None => self
                .table
                .snapshot()
                .map_err(|e| Error::delta(self.table.table_url().as_str(), "snapshot", e, true))?
                .log_data()
                .iter()
                .map(|f| f.path().to_string())
                .collect(),
        };
        let store = self.table.log_store().object_store(None);
        let mut bound = KeyBound::Empty;
        for p in paths {
            let bytes = read_object(&store, &p).await?;
            let names = self.key_names.to_vec();
            let fields = key_fields.to_vec();
            let types = key_types.clone();
            let max =
                tokio::task::spawn_blocking(move || -> Result<Option<arrow::row::OwnedRow>> {
                    let err = |e: &dyn std::fmt::Display| {
                        Error::storage(format!("read the keys of {p}"), e)
                    };
                    let builder =
                        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| err(&e))?;
                    let mask = parquet::arrow::ProjectionMask::columns(
                        builder.parquet_schema(),
                        names.iter().map(String::as_str),
                    );
                    let reader = builder.with_projection(mask).build().map_err(|e| err(&e))?;
                    let converter = RowConverter::new(fields.clone()).map_err(|e| err(&e))?;
                    let mut max: Option<arrow::row::OwnedRow> = None;
                    for rb in reader {
                        let rb = rb.map_err(|e| err(&e))?;
                        let cols = names
                            .iter()
                            .zip(&types)
                            .map(|(n, t)| {
                                let c = rb
                                    .column_by_name(n)
                                    .ok_or_else(|| err(&format!("no key column {n}")))?;
                                arrow::compute::cast(c, t).map_err(|e| err(&e))
                            })
                            .collect::<Result<Vec<_>>>()?;
                        let rows = converter.convert_columns(&cols).map_err(|e| err(&e))?;
                        for r in rows.iter() {
                            if max.as_ref().is_none_or(|m| r > m.row()) {
                                max = Some(r.owned());
                            }
                        }
                    }
                    Ok(max)
                })
                .await
                .map_err(|e| Error::storage("read keys", e))??;
            if let Some(m) = max {
                bound.cover(m.row());
            }
        }
        Ok(bound)
    }
}

/// One key's change in a replica write: the row whose key is changed, its schema, and the
/// new row unless it is a delete.
/// How long a maintenance pass waits for the merges it started before leaving them to
/// be committed between later batches.
const MAINTENANCE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A map keyed by primary-key bytes, with a fast seeded hasher (SipHash showed in the
/// write path's profile).
pub(crate) type KeyMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

type KeyOp<'a> = (&'a [Value], &'a Arc<TableSchema>, Option<&'a [Value]>);

/// Where an upsert's absent values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The key's earlier row (in the batch, else stored).
    Same,
    /// The earlier row of the key that op (a key change's delete) removed.
    Moved(usize),
    /// None: an INSERT's row did not exist before it.
    New,
}

/// An upsert's row in replica-field order, with what the batch tells of its absent values
/// filled in, and the key of the stored row that holds the ones still absent (`None`:
/// nothing does).
type Resolved = (Vec<Value>, Option<Vec<u8>>);

/// For a batch whose row images leave columns out: each upsert's row with its absent
/// values taken from the key's previous row image in the batch (an update leaves out what
/// it does not change; a key change carries the old key's row to the new key), and, for
/// what the batch does not tell, the stored row to take them from. A delete (or TRUNCATE)
/// leaves nothing to take from; neither does an INSERT.
fn resolve_absent(
    ops: &[KeyOp<'_>],
    origins: &[Origin],
    keys: &arrow::row::Rows,
    fields: usize,
    truncated: bool,
    value_at: &dyn Fn(&Arc<TableSchema>, usize) -> Option<usize>,
) -> HashMap<usize, Resolved> {
    let unknown = || (vec![Value::Absent; fields], None);
    let mut state: HashMap<&[u8], Resolved> = HashMap::new();
    // What the deletes of key changes removed, by op.
    let moved_from: HashSet<usize> = origins
        .iter()
        .filter_map(|o| match o {
            Origin::Moved(d) => Some(*d),
            _ => None,
        })
        .collect();
    let mut carried: HashMap<usize, Resolved> = HashMap::new();
    let mut out = HashMap::new();
    for (i, ((row, table, upsert), origin)) in ops.iter().zip(origins).enumerate() {
        let k = keys.row(i).data();
        let prior = match origin {
            Origin::New => unknown(),
            Origin::Moved(d) => carried.remove(d).unwrap_or_else(unknown),
            Origin::Same => state.get(k).cloned().unwrap_or_else(|| {
                (
                    vec![Value::Absent; fields],
                    (!truncated).then(|| k.to_vec()),
                )
            }),
        };
        // The row image over what came before it: a delete's before-image is the row it
        // removes (which a key change carries to the new key).
        let image = upsert.unwrap_or(row);
        let mut still_absent = false;
        let vals: Vec<Value> = (0..fields)
            .map(|f| {
                let v = value_at(table, f).map_or(Value::Null, |j| image[j].clone());
                let v = if v.is_absent() { prior.0[f].clone() } else { v };
                still_absent |= v.is_absent();
                v
            })
            .collect();
        let r = (vals, if still_absent { prior.1 } else { None });
        if upsert.is_none() {
            if moved_from.contains(&i) {
                carried.insert(i, r);
            }
            state.insert(k, unknown());
            continue;
        }
        state.insert(k, r.clone());
        out.insert(i, r);
    }
    out
}

/// `rows` with the values `patches` name, `(row, field, row of from)`, taken from `from`.
fn take_patches(
    rows: &RecordBatch,
    from: &RecordBatch,
    patches: &[(usize, usize, usize)],
) -> Result<RecordBatch> {
    let mut columns = rows.columns().to_vec();
    let mut fields: Vec<usize> = patches.iter().map(|p| p.1).collect();
    fields.sort_unstable();
    fields.dedup();
    for f in fields {
        let mut indices: Vec<(usize, usize)> = (0..rows.num_rows()).map(|r| (0, r)).collect();
        for &(r, _, j) in patches.iter().filter(|p| p.1 == f) {
            indices[r] = (1, j);
        }
        columns[f] = arrow::compute::interleave(
            &[rows.column(f).as_ref(), from.column(f).as_ref()],
            &indices,
        )
        .map_err(|e| Error::storage("merge absent values", e))?;
    }
    RecordBatch::try_new(rows.schema(), columns)
        .map_err(|e| Error::storage("merge absent values", e))
}

fn moves_key(c: &Change) -> bool {
    let e = &c.event;
    match (e.op, &e.before, &e.after) {
        (Op::Update, Some(b), Some(a)) => e.table.key_changed(b, a),
        _ => false,
    }
}

fn split_key_move(c: &Change) -> Vec<Change> {
    if !moves_key(c) {
        return vec![c.clone()];
    }
    let mut delete = c.clone();
    delete.event.op = Op::Delete;
    delete.event.after = None;
    let mut create = c.clone();
    create.event.op = Op::Create;
    create.event.before = None;
    vec![delete, create]
}

struct BucketJob {
    bucket: u32,
    old: Vec<(String, i64)>,
    keep_old: bool,
    changed_keys: HashSet<Vec<u8>>,
    new_rows: RecordBatch,
    /// (row of `new_rows`, field) absent there, to take from the key's row in `old`.
    own: Vec<(usize, usize)>,
    key_idx: Vec<usize>,
    key_fields: Vec<SortField>,
    schema: SchemaRef,
    path: String,
    store: Arc<dyn ObjectStore>,
}

struct BucketResult {
    bucket: u32,
    removed: Vec<(String, i64)>,
    added: Option<(String, i64, usize)>,
    /// Absent values no stored row held (see [`ApplyStats::absent_unknown`]).
    absent_unknown: u64,
}

impl BucketResult {
    /// The Delta actions of a bucket rewrite (`data_change` false for a merge that keeps
    /// the rows as they are).
    fn actions(self, data_change: bool, now_ms: i64) -> Vec<Action> {
        let mut actions: Vec<Action> = self
            .removed
            .into_iter()
            .map(|(path, size)| {
                Action::Remove(remove(
                    path,
                    size,
                    Some(HashMap::new()),
                    data_change,
                    now_ms,
                ))
            })
            .collect();
        if let Some((path, size, rows)) = self.added {
            let mut a = add(
                path,
                size,
                rows,
                std::iter::empty::<(&str, Option<String>)>(),
            );
            a.data_change = data_change;
            actions.push(Action::Add(a));
        }
        actions
    }
}

impl BucketJob {
    async fn run(self) -> Result<BucketResult> {
        let mut old_bytes = Vec::new();
        if self.keep_old {
            for (p, _) in &self.old {
                let b = read_object(&self.store, p).await?;
                old_bytes.push(b);
            }
        }
        let BucketJob {
            bucket,
            old,
            changed_keys,
            mut new_rows,
            own,
            key_idx,
            key_fields,
            schema,
            path,
            store,
            ..
        } = self;
        type Encoded = (Option<(Bytes, usize)>, u64);
        let (encoded, absent_unknown) = tokio::task::spawn_blocking(move || -> Result<Encoded> {
            let converter =
                RowConverter::new(key_fields).map_err(|e| Error::storage("key encoding", e))?;
            let key_rows = |rb: &RecordBatch| {
                let cols: Vec<ArrayRef> = key_idx.iter().map(|&i| rb.column(i).clone()).collect();
                converter
                    .convert_columns(&cols)
                    .map_err(|e| Error::storage("key encoding", e))
            };
            // The keys whose own stored row fills absent values of their new row.
            let mut wants: HashMap<Vec<u8>, Vec<(usize, usize)>> = HashMap::new();
            if !own.is_empty() {
                let new_keys = key_rows(&new_rows)?;
                for &(r, f) in &own {
                    wants
                        .entry(new_keys.row(r).data().to_vec())
                        .or_default()
                        .push((r, f));
                }
            }
            let (mut found, mut found_at, mut n_found) = (Vec::new(), HashMap::new(), 0);
            let mut parts = Vec::new();
            for bytes in old_bytes {
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .and_then(|b| b.with_batch_size(65536).build())
                    .map_err(|e| Error::storage(format!("read bucket {bucket}"), e))?;
                for rb in reader {
                    let rb = rb.map_err(|e| Error::storage(format!("read bucket {bucket}"), e))?;
                    let rb = align(&rb, &schema)?;
                    let rows = key_rows(&rb)?;
                    if !wants.is_empty() {
                        let hit: arrow::array::BooleanArray = (0..rb.num_rows())
                            .map(|i| {
                                let k = rows.row(i).data();
                                let w = wants.contains_key(k);
                                if w {
                                    found_at.insert(k.to_vec(), n_found);
                                    n_found += 1;
                                }
                                Some(w)
                            })
                            .collect();
                        if hit.true_count() > 0 {
                            found.push(
                                filter_record_batch(&rb, &hit)
                                    .map_err(|e| Error::storage("filter", e))?,
                            );
                        }
                    }
                    let keep: arrow::array::BooleanArray = (0..rb.num_rows())
                        .map(|i| Some(!changed_keys.contains(rows.row(i).data())))
                        .collect();
                    let kept =
                        filter_record_batch(&rb, &keep).map_err(|e| Error::storage("filter", e))?;
                    if kept.num_rows() > 0 {
                        parts.push(kept);
                    }
                }
            }
            let mut unknown = 0;
            let mut patches = Vec::new();
            for (k, at) in &wants {
                match found_at.get(k) {
                    Some(&j) => patches.extend(at.iter().map(|&(r, f)| (r, f, j))),
                    None => unknown += at.len() as u64,
                }
            }
            if !patches.is_empty() {
                let found = arrow::compute::concat_batches(&schema, &found)
                    .map_err(|e| Error::storage("concat", e))?;
                new_rows = take_patches(&new_rows, &found, &patches)?;
            }
            if new_rows.num_rows() > 0 {
                parts.push(new_rows);
            }
            let rows: usize = parts.iter().map(|p| p.num_rows()).sum();
            if rows == 0 {
                return Ok((None, unknown));
            }
            let all = arrow::compute::concat_batches(&schema, &parts)
                .map_err(|e| Error::storage("concat", e))?;
            Ok((
                Some((encode_parquet(&all, Vec::new(), Compression::SNAPPY)?, rows)),
                unknown,
            ))
        })
        .await
        .map_err(|e| Error::storage("rewrite bucket", e))??;
        let added = match encoded {
            Some((bytes, rows)) => {
                let size = bytes.len() as i64;
                store
                    .put(&Path::from(path.as_str()), bytes.into())
                    .await
                    .map_err(|e| Error::storage(format!("write {path}"), e))?;
                Some((path, size, rows))
            }
            None => None,
        };
        Ok(BucketResult {
            bucket,
            removed: old,
            added,
            absent_unknown,
        })
    }
}

/// Whether every value of `from` has the same value in `to` (MySQL's widening MODIFY
/// COLUMNs: a wider integer, FLOAT to DOUBLE, a DECIMAL with more digits on both sides).
fn widens(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let int_rank = |t: &DataType| match t {
        Int8 => Some(1),
        Int16 => Some(2),
        Int32 => Some(3),
        Int64 => Some(4),
        _ => None,
    };
    match (from, to) {
        (Float32, Float64) => true,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            s2 >= s1 && (*p2 as i16 - *s2 as i16) >= (*p1 as i16 - *s1 as i16)
        }
        (Int8 | Int16 | Int32 | Int64, Decimal128(p, 0)) => *p >= 20,
        _ => matches!((int_rank(from), int_rank(to)), (Some(a), Some(b)) if b > a),
    }
}

/// Gives the fields of `t` (whose schema is `current`) that hold `table`'s columns (and
/// their `__before_` images) the metadata of the columns' types ([`relabeled`]): one
/// metadata-only commit, none when nothing differs. Returns whether it committed.
async fn relabel(t: &mut DeltaTable, current: &Schema, table: &TableSchema) -> Result<bool> {
    use deltalake::kernel::MetadataExt;
    let wanted = |f: &Field| {
        let column = table.column_index(f.name()).or_else(|| {
            f.name()
                .strip_prefix("__before_")
                .and_then(|n| table.column_index(n))
        })?;
        let metadata = relabeled(f.metadata(), &table.columns[column].ty);
        (&metadata != f.metadata()).then_some(metadata)
    };
    if !current.fields().iter().any(|f| wanted(f).is_some()) {
        return Ok(false);
    }
    let fields: Vec<Field> = current
        .fields()
        .iter()
        .map(|f| match wanted(f) {
            Some(metadata) => f.as_ref().clone().with_metadata(metadata),
            None => f.as_ref().clone(),
        })
        .collect();
    let url = t.table_url().to_string();
    let schema = arrow_to_delta(&Schema::new(fields))?;
    let snapshot = t
        .snapshot()
        .map_err(|e| Error::delta(&url, "snapshot", e, true))?;
    let metadata = snapshot
        .metadata()
        .clone()
        .with_schema(&schema)
        .map_err(|e| Error::delta(&url, "new schema", e, false))?;
    let op = DeltaOperation::UpdateFieldMetadata {
        fields: schema.fields().cloned().collect(),
    };
    let done = CommitBuilder::default()
        .with_actions(vec![Action::Metadata(metadata)])
        .with_max_retries(0)
        .build(Some(snapshot), t.log_store(), op)
        .await
        .map_err(|e| Error::delta(&url, "update field metadata", e, true))?;
    t.update_incremental(Some(done.version()))
        .await
        .map_err(|e| Error::delta(&url, "reload", e, true))?;
    Ok(true)
}

/// Rewrites every file of `t` with `columns` cast to their new types, and commits the new
/// schema with the files (a metadata-only change for readers: no data changes).
async fn rewrite_widened(t: &mut DeltaTable, columns: &[(String, DataType)]) -> Result<()> {
    use deltalake::kernel::MetadataExt;
    use deltalake::kernel::scalars::ScalarExt;
    let url = t.table_url().to_string();
    let old_schema = arrow_schema_of(t)?;
    let fields: Vec<Field> = old_schema
        .fields()
        .iter()
        .map(|f| match columns.iter().find(|(n, _)| n == f.name()) {
            Some((_, ty)) => {
                Field::new(f.name(), ty.clone(), true).with_metadata(f.metadata().clone())
            }
            None => f.as_ref().clone(),
        })
        .collect();
    let new_schema = Arc::new(Schema::new(fields));
    let snapshot = t
        .snapshot()
        .map_err(|e| Error::delta(&url, "snapshot", e, true))?;
    let partition_cols: Vec<String> = snapshot.metadata().partition_columns().to_vec();
    let file_schema = without_columns(&new_schema, &partition_cols);
    type PartitionValues = HashMap<String, Option<String>>;
    // A deletion vector stays with its file's rewrite: rows keep their positions.
    type Dv = Option<deltalake::kernel::DeletionVectorDescriptor>;
    let files: Vec<(String, i64, Option<PartitionValues>, Dv)> = snapshot
        .log_data()
        .iter()
        .map(|f| {
            let pv = f.partition_values().map(|pv| {
                pv.fields()
                    .iter()
                    .zip(pv.values())
                    .map(|(k, v)| {
                        let text = if v.is_null() {
                            None
                        } else {
                            Some(ScalarExt::serialize(v))
                        };
                        (k.name().to_string(), text)
                    })
                    .collect::<HashMap<_, _>>()
            });
            (
                f.path().to_string(),
                f.size(),
                pv,
                f.deletion_vector_descriptor(),
            )
        })
        .collect();
    let store = t.log_store().object_store(None);
    let now = now_us() / 1000;
    let next_version = snapshot.version() + 1;
    let mut actions = Vec::new();
    for (path, size, pv, dv) in files {
        let bytes = read_object(&store, &path).await?;
        let fs = file_schema.clone();
        let (encoded, rows) = tokio::task::spawn_blocking(move || -> Result<(Bytes, usize)> {
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.build())
                .map_err(|e| Error::storage("read for widening", e))?;
            // Streamed: one decoded batch at a time (see `compact.rs`).
            let mut out = compact::ParquetOut::new(fs.clone(), Compression::SNAPPY)?;
            for rb in reader {
                let rb = rb.map_err(|e| Error::storage("read for widening", e))?;
                let cols = fs
                    .fields()
                    .iter()
                    .map(|f| match rb.column_by_name(f.name()) {
                        Some(c) => arrow::compute::cast(c, f.data_type())
                            .map_err(|e| Error::storage("widen", e)),
                        None => Ok(new_null_array(f.data_type(), rb.num_rows())),
                    })
                    .collect::<Result<Vec<_>>>()?;
                out.write(
                    &RecordBatch::try_new(fs.clone(), cols)
                        .map_err(|e| Error::storage("widen", e))?,
                )?;
            }
            out.finish()
        })
        .await
        .map_err(|e| Error::storage("widen", e))??;
        let dir = path
            .rsplit_once('/')
            .map(|(d, _)| format!("{d}/"))
            .unwrap_or_default();
        // A replica file keeps its bucket in its name: applying changes finds a bucket's
        // rows by it (a file without one would keep its old rows beside their updates).
        let name = match bucket_of(&path) {
            Some(b) => bucket_file(b, next_version),
            None => format!("widened-{}.parquet", uuid::Uuid::new_v4().simple()),
        };
        let new_path = format!("{dir}{name}");
        let new_size = encoded.len() as i64;
        store
            .put(&Path::from(new_path.as_str()), encoded.into())
            .await
            .map_err(|e| Error::storage(format!("write {new_path}"), e))?;
        let mut a = add(
            new_path,
            new_size,
            rows,
            std::iter::empty::<(&str, Option<String>)>(),
        );
        a.partition_values = pv.clone().unwrap_or_default();
        a.data_change = false;
        a.deletion_vector = dv.clone();
        actions.push(Action::Add(a));
        let mut r = remove(path, size, pv, false, now);
        r.deletion_vector = dv;
        actions.push(Action::Remove(r));
    }
    let metadata = snapshot
        .metadata()
        .clone()
        .with_schema(&arrow_to_delta(&new_schema)?)
        .map_err(|e| Error::delta(&url, "new schema", e, false))?;
    actions.push(Action::Metadata(metadata));
    let op = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    let done = CommitBuilder::default()
        .with_actions(actions)
        .with_max_retries(0)
        .build(Some(snapshot), t.log_store(), op)
        .await
        .map_err(|e| Error::delta(&url, "widen columns", e, true))?;
    t.update_incremental(Some(done.version()))
        .await
        .map_err(|e| Error::delta(&url, "reload", e, true))?;
    Ok(())
}

fn remove(
    path: String,
    size: i64,
    partition_values: Option<HashMap<String, Option<String>>>,
    data_change: bool,
    now_ms: i64,
) -> Remove {
    Remove {
        path,
        data_change,
        deletion_timestamp: Some(now_ms),
        extended_file_metadata: Some(true),
        partition_values,
        size: Some(size),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
    }
}

/// The bytes of a file of a table.
async fn read_object(store: &Arc<dyn ObjectStore>, path: &str) -> Result<Bytes> {
    store
        .get(&Path::from(path))
        .await
        .map_err(|e| Error::storage(format!("read {path}"), e))?
        .bytes()
        .await
        .map_err(|e| Error::storage(format!("read {path}"), e))
}

/// `schema` without `columns`: what the data files of a partitioned table hold (Delta
/// keeps partition values in the log, not in the files).
fn without_columns(schema: &SchemaRef, columns: &[String]) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| !columns.contains(f.name()))
            .cloned()
            .collect::<Vec<_>>(),
    ))
}

/// The bucket of a replica file, from its name (`part-b00007-…`).
/// A table's live files (path, size) grouped by `key` of their path (files without one
/// are left out).
fn files_by<K: Ord>(
    t: &DeltaTable,
    key: impl Fn(&str) -> Option<K>,
) -> Result<BTreeMap<K, Vec<(String, i64)>>> {
    let snapshot = t
        .snapshot()
        .map_err(|e| Error::delta(t.table_url().as_str(), "snapshot", e, true))?;
    let mut files: BTreeMap<K, Vec<(String, i64)>> = BTreeMap::new();
    for f in snapshot.log_data().iter() {
        let path = f.path().to_string();
        if let Some(k) = key(&path) {
            files.entry(k).or_default().push((path, f.size()));
        }
    }
    Ok(files)
}

/// A new file name for bucket `b` written at table version `version` ([`bucket_of`]
/// reads the bucket back).
fn bucket_file(b: u32, version: u64) -> String {
    format!(
        "part-b{b:05}-v{version:012}-{}.parquet",
        uuid::Uuid::new_v4().simple()
    )
}

fn bucket_of(path: &str) -> Option<u32> {
    let name = path.rsplit('/').next()?;
    name.strip_prefix("part-b")?.get(..5)?.parse().ok()
}

/// `rb` with `schema`'s columns: missing ones (added later) are NULL.
fn align(rb: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if rb.schema().fields().len() == schema.fields().len() {
        return RecordBatch::try_new(schema.clone(), rb.columns().to_vec())
            .map_err(|e| Error::storage("align columns", e));
    }
    let cols = schema
        .fields()
        .iter()
        .map(|f| match rb.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => new_null_array(f.data_type(), rb.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), cols).map_err(|e| Error::storage("align columns", e))
}

fn builder_for(field: &Field, capacity: usize) -> ColumnBuilder {
    ColumnBuilder::for_arrow(field.data_type(), capacity)
}

fn writer_properties(meta: Vec<(String, String)>, compression: Compression) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(compression)
        .set_key_value_metadata(Some(
            meta.into_iter()
                .map(|(k, v)| parquet::file::metadata::KeyValue::new(k, v))
                .collect(),
        ))
        .build()
}

fn encode_parquet(
    rb: &RecordBatch,
    meta: Vec<(String, String)>,
    compression: Compression,
) -> Result<Bytes> {
    let props = writer_properties(meta, compression);
    let mut buf = Vec::with_capacity(1 << 20);
    let mut w = ArrowWriter::try_new(&mut buf, rb.schema(), Some(props))
        .map_err(|e| Error::storage("encode Parquet", e))?;
    w.write(rb)
        .map_err(|e| Error::storage("encode Parquet", e))?;
    w.close().map_err(|e| Error::storage("encode Parquet", e))?;
    Ok(Bytes::from(buf))
}

fn add<'a>(
    path: String,
    size: i64,
    rows: usize,
    partition: impl IntoIterator<Item = (&'a str, Option<String>)>,
) -> Add {
    Add {
        path,
        partition_values: partition
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        size,
        modification_time: now_us() / 1000,
        data_change: true,
        stats: Some(format!("{{\"numRecords\":{rows}}}")),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    }
}

async fn create(
    lake: &Lake,
    url: &url::Url,
    schema: &Schema,
    partitions: &[&str],
    name: &str,
    props: &[(&str, String)],
) -> Result<DeltaTable> {
    let fields = arrow_to_delta(schema)?;
    if let Ok(dir) = url.to_file_path() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::storage(format!("create {}", dir.display()), e))?;
    }
    let ops =
        DeltaTable::try_from_url_with_storage_options(url.clone(), lake.storage_options().clone())
            .await
            .map_err(|e| Error::delta(url.as_str(), "open", e, true))?;
    let mut b = ops
        .create()
        .with_columns(fields.fields().cloned())
        .with_partition_columns(partitions.iter().map(|s| s.to_string()))
        .with_table_name(name)
        .with_save_mode(SaveMode::Ignore)
        .with_raise_if_key_not_exists(false);
    b = b.with_configuration(props.iter().map(|(k, v)| (k.to_string(), Some(v.clone()))));
    b.await
        .map_err(|e| Error::delta(url.as_str(), "create", e, true))
}

/// How a replica is written, by its table property.
fn mode_of(t: &DeltaTable) -> ReplicaMode {
    let merge_on_read = t.snapshot().ok().is_some_and(|s| {
        s.metadata()
            .configuration()
            .get(MODE_PROPERTY)
            .is_some_and(|m| m == ReplicaMode::MergeOnRead.as_str())
    });
    match merge_on_read {
        true => ReplicaMode::MergeOnRead,
        false => ReplicaMode::CopyOnWrite,
    }
}

fn arrow_schema_of(t: &DeltaTable) -> Result<SchemaRef> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
    let snap = t
        .snapshot()
        .map_err(|e| Error::delta(t.table_url().as_str(), "snapshot", e, true))?;
    let s: Schema = snap
        .schema()
        .as_ref()
        .try_into_arrow()
        .map_err(|e| Error::delta(t.table_url().as_str(), "read the schema", e, false))?;
    Ok(Arc::new(s))
}

async fn commit(
    t: &mut DeltaTable,
    actions: Vec<Action>,
    progress: &Progress,
    freshness: &Freshness,
    what: &str,
) -> Result<()> {
    let op = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    commit_as(t, actions, progress, freshness, what, op).await
}

/// Commits a maintenance merge (`dataChange: false` actions) as an OPTIMIZE, with the
/// table's freshness record as it stands (a merge changes no data).
async fn commit_compaction(
    t: &mut DeltaTable,
    actions: Vec<Action>,
    applied: &Applied,
) -> Result<()> {
    let freshness = applied.freshness.clone().unwrap_or_default();
    let op = DeltaOperation::Optimize {
        predicate: None,
        target_size: 0,
    };
    commit_as(t, actions, &Progress::default(), &freshness, "compact", op).await
}

async fn commit_as(
    t: &mut DeltaTable,
    mut actions: Vec<Action>,
    progress: &Progress,
    freshness: &Freshness,
    what: &str,
    op: DeltaOperation,
) -> Result<()> {
    let url = t.table_url().to_string();
    let now = now_us();
    for (app, v) in &progress.txns {
        actions.push(Action::Txn(Transaction::new_with_last_update(
            app,
            *v,
            Some(now / 1000),
        )));
    }
    let mut f = freshness.clone();
    f.committed_at_us = now;
    let meta = HashMap::from([(
        FRESHNESS_KEY.to_string(),
        serde_json::to_value(&f).unwrap_or_default(),
    )]);
    let snapshot = t
        .snapshot()
        .map_err(|e| Error::delta(&url, "snapshot", e, true))?;
    let props = CommitProperties::default()
        .with_metadata(meta)
        .with_max_retries(0)
        .with_create_checkpoint(true);
    let done = CommitBuilder::from(props)
        .with_actions(actions)
        .build(Some(snapshot), t.log_store(), op)
        .await
        .map_err(|e| Error::delta(&url, what, e, true))?;
    let version = done.version();
    t.update_incremental(Some(version))
        .await
        .map_err(|e| Error::delta(&url, "reload", e, true))?;
    Ok(())
}

fn apply_progress(applied: &mut Applied, progress: &Progress, freshness: &Freshness) {
    for (app, v) in &progress.txns {
        applied.txns.insert(app.clone(), *v);
    }
    let mut f = freshness.clone();
    f.committed_at_us = now_us();
    applied.freshness = Some(f);
}

/// The `txn` version of `app_id` in a table (`None`: the table holds nothing of it).
pub async fn txn_version(t: &DeltaTable, app_id: &str) -> Result<Option<i64>> {
    let url = t.table_url().to_string();
    let snap = t
        .snapshot()
        .map_err(|e| Error::delta(&url, "snapshot", e, true))?;
    snap.transaction_version(t.log_store().as_ref(), app_id)
        .await
        .map_err(|e| Error::delta(&url, "read transactions", e, true))
}

/// The `txn` versions of `app_ids` and the latest freshness record of a table.
pub async fn read_applied(t: &DeltaTable, app_ids: &[String]) -> Result<Applied> {
    let url = t.table_url().to_string();
    let mut applied = Applied::default();
    for app in app_ids {
        if let Some(v) = txn_version(t, app).await? {
            applied.txns.insert(app.clone(), v);
        }
    }
    let mut history = t.history(Some(10));
    while let Some(ci) = history.next().await {
        let infos = ci.map_err(|e| Error::delta(&url, "read history", e, true))?;
        if let Some(v) = infos.info.get(FRESHNESS_KEY) {
            applied.freshness =
                Some(
                    serde_json::from_value(v.clone()).map_err(|e| Error::Corrupt {
                        path: format!("{url}: binlake's record in its last commit"),
                        reason: e.to_string(),
                    })?,
                );
            break;
        }
    }
    Ok(applied)
}

/// Row count of a Delta table, from its files' statistics less their deletion vectors.
pub fn row_count(t: &DeltaTable) -> Option<u64> {
    let snap = t.snapshot().ok()?;
    let mut n = 0u64;
    for f in snap.log_data().iter() {
        let stats: serde_json::Value = serde_json::from_str(&f.stats()?).ok()?;
        let deleted = f
            .deletion_vector_descriptor()
            .map_or(0, |d| d.cardinality as u64);
        n += stats.get("numRecords")?.as_u64()?.saturating_sub(deleted);
    }
    Some(n)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn bucket_names_round_trip() {
        assert_eq!(bucket_of("part-b00007-v000000000012-abc.parquet"), Some(7));
        assert_eq!(bucket_of("x/part-b00100-v1.parquet"), Some(100));
        assert_eq!(bucket_of("part-foo.parquet"), None);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn absent_values_come_from_the_batch_then_from_the_stored_row() {
        use binlake_core::{Column, ColumnType};
        let t = Arc::new(TableSchema {
            database: "d".into(),
            table: "t".into(),
            columns: vec![
                Column::new(
                    "id",
                    ColumnType::Integer {
                        bits: 32,
                        unsigned: false,
                    },
                    false,
                ),
                Column::new(
                    "a",
                    ColumnType::Integer {
                        bits: 32,
                        unsigned: false,
                    },
                    true,
                ),
                Column::new(
                    "b",
                    ColumnType::Integer {
                        bits: 32,
                        unsigned: false,
                    },
                    true,
                ),
            ],
            primary_key: vec![0],
        });
        let (i, x) = (Value::Int, Value::Absent);
        let rows: Vec<Vec<Value>> = vec![
            vec![i(1), i(10), i(11)], // 0: delete of key 1 (a key change's first half)
            vec![i(3), i(30), x.clone()], // 1: update of key 3, b left out
            vec![i(3), x.clone(), i(31)], // 2: update of key 3, a left out
            vec![i(9), i(90), x.clone()], // 3: update of key 9, b left out
            vec![i(5), x.clone(), x.clone()], // 4: create of key 5, the key change's second half
            vec![i(6), x.clone(), i(61)], // 5: an INSERT that left a out
        ];
        let ops: Vec<KeyOp<'_>> = rows
            .iter()
            .enumerate()
            .map(|(n, r)| (&r[..], &t, (n != 0).then_some(&r[..])))
            .collect();
        let origins = [
            Origin::Same,
            Origin::Same,
            Origin::Same,
            Origin::Same,
            Origin::Moved(0),
            Origin::New,
        ];
        let converter = RowConverter::new(vec![SortField::new(DataType::Int32)]).unwrap();
        let ids: ArrayRef = Arc::new(arrow::array::Int32Array::from(vec![1, 3, 3, 9, 5, 6]));
        let keys = converter.convert_columns(&[ids]).unwrap();
        let r = resolve_absent(&ops, &origins, &keys, 3, false, &|_, f| Some(f));
        // Key 3: the second update takes a from the first, so nothing is left to read.
        assert_eq!(r[&2], (vec![i(3), i(30), i(31)], None));
        // Key 9: b from the stored row of key 9.
        assert_eq!(
            r[&3],
            (
                vec![i(9), i(90), x.clone()],
                Some(keys.row(3).data().to_vec())
            )
        );
        // Key 5: the old key's row, as the delete's before-image has it.
        assert_eq!(r[&4], (vec![i(5), i(10), i(11)], None));
        // With a MINIMAL delete (the key only), the stored row of the old key completes it.
        let minimal_delete = [i(1), x.clone(), x.clone()];
        let mut ops2 = ops.clone();
        ops2[0] = (&minimal_delete[..], &t, None);
        let r2 = resolve_absent(&ops2, &origins, &keys, 3, false, &|_, f| Some(f));
        assert_eq!(
            r2[&4],
            (
                vec![i(5), x.clone(), x.clone()],
                Some(keys.row(0).data().to_vec())
            )
        );
        // An INSERT: nothing holds its left-out column.
        assert_eq!(r[&5], (vec![i(6), x.clone(), i(61)], None));
        // After a TRUNCATE nothing is stored.
        let r = resolve_absent(&ops, &origins, &keys, 3, true, &|_, f| Some(f));
        assert_eq!(r[&3].1, None);
    }

    /// A change of `table` at `pos` of `bin.000001`, as the unit tests build them.
    pub(super) fn change(
        table: &Arc<TableSchema>,
        op: Op,
        before: Option<Vec<Value>>,
        after: Option<Vec<Value>>,
        pos: u64,
    ) -> Change {
        use binlake_core::{ChangeEvent, EventPosition, SourceInfo};
        Change {
            event: ChangeEvent {
                op,
                table: table.clone(),
                before,
                after,
                source: SourceInfo {
                    server_id: 1,
                    gtid: None,
                    position: EventPosition {
                        file: "bin.000001".into(),
                        pos,
                        row: 0,
                    },
                    ts_us: 1_700_000_000_000_000,
                    snapshot: Default::default(),
                    thread: None,
                    query: None,
                },
                transaction: None,
            },
            kafka: None,
        }
    }

    fn insert(table: &Arc<TableSchema>, id: i64, pos: u64) -> Change {
        change(table, Op::Create, None, Some(vec![Value::Int(id)]), pos)
    }

    /// A change log written before `__seq` existed gets the column when opened; its old
    /// rows keep NULL, new ones are numbered (commit version × 2^32 + index).
    #[tokio::test]
    async fn a_change_log_from_before_seq_gets_the_column() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("binlake-seq-{}", uuid::Uuid::new_v4()));
        let lake = Lake::open(&crate::LakeConfig {
            root: dir.display().to_string(),
            ..Default::default()
        })?;
        let ty = binlake_core::ColumnType::Integer {
            bits: 32,
            unsigned: false,
        };
        let table = Arc::new(TableSchema {
            database: "d".into(),
            table: "t".into(),
            columns: vec![binlake_core::Column::new("id", ty, false)],
            primary_key: vec![0],
        });
        let progress = |n: i64| Progress {
            txns: vec![("test".into(), n)],
            file_token: format!("b{n}"),
            resume: None,
            snapshot: None,
        };
        // The change log and one batch as binlake wrote them before `__seq`.
        let full = change_log_schema(&table, false);
        let old: Vec<Field> = full
            .fields()
            .iter()
            .filter(|f| f.name() != SEQ)
            .map(|f| f.as_ref().clone())
            .collect();
        let url = lake.table_url("d", "t", TableKind::Changes)?;
        let mut changes =
            create(&lake, &url, &Schema::new(old), &[COMMIT_DATE], "d.t", &[]).await?;
        let old_schema = arrow_schema_of(&changes)?;
        let mut applied = Applied::default();
        ChangesView {
            name: "d.t",
            table: &mut changes,
            schema: &old_schema,
            before_images: false,
            applied: &mut applied,
        }
        .write(
            &[insert(&table, 1, 100)],
            &progress(1),
            &Freshness::default(),
            &mut ApplyStats::default(),
            None,
            (&mut StagedChanges::default(), false),
        )
        .await?;
        let mut sink = TableSink::open(&lake, &table).await?;
        assert!(sink.changes_schema.field_with_name(SEQ).is_ok());
        sink.apply(
            &[insert(&table, 2, 200), insert(&table, 3, 300)],
            &progress(2),
            true,
            true,
        )
        .await?;
        let ctx = crate::query::session(&lake, None).await?;
        let rows =
            crate::query::run(&ctx, "SELECT id, __seq FROM d.t__changes ORDER BY id").await?;
        let text = arrow::util::pretty::pretty_format_batches(&rows)
            .map_err(|e| Error::storage("format", e))?
            .to_string();
        // Versions: 0 create, 1 the old batch, 2 the added column, 3 the new batch.
        let v3 = 3i64 << 32;
        for (id, seq) in [
            ("1", String::new()),
            ("2", v3.to_string()),
            ("3", (v3 + 1).to_string()),
        ] {
            assert!(
                text.lines()
                    .any(|l| l.split('|').map(str::trim).collect::<Vec<_>>() == ["", id, &seq, ""]),
                "row {id} with __seq {seq:?}:\n{text}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// A LONGTEXT that becomes known as MariaDB's JSON (a schema recorded before the
    /// marker existed, then one with it) is the same Utf8 column: no error and no rewrite,
    /// only its field metadata changes, in one metadata-only commit per table, and back.
    #[tokio::test]
    async fn a_longtext_that_becomes_json_gets_new_field_metadata_only() -> Result<()> {
        use binlake_core::{Column, ColumnType, Value, schema::StringKind};
        let dir = std::env::temp_dir().join(format!("binlake-json-{}", uuid::Uuid::new_v4()));
        let lake = Lake::open(&crate::LakeConfig {
            root: dir.display().to_string(),
            before_images: true,
            ..Default::default()
        })?;
        let schema = |json: bool| {
            Arc::new(TableSchema {
                database: "d".into(),
                table: "t".into(),
                columns: vec![
                    Column::new(
                        "id",
                        ColumnType::Integer {
                            bits: 32,
                            unsigned: false,
                        },
                        false,
                    ),
                    Column::new(
                        "doc",
                        ColumnType::String {
                            kind: StringKind::Long,
                            length: u32::MAX,
                            charset: "utf8mb4".into(),
                            json,
                        },
                        true,
                    ),
                ],
                primary_key: vec![0],
            })
        };
        let progress = |n: i64| Progress {
            txns: vec![("test".into(), n)],
            file_token: format!("b{n}"),
            ..Progress::default()
        };
        let row = |table: &Arc<TableSchema>, id: i64, doc: &str| {
            let mut c = insert(table, id, id as u64 * 100);
            c.event.after = Some(vec![Value::Int(id), Value::String(doc.into())]);
            c
        };
        let labels = |sink: &TableSink| -> Vec<(String, Option<String>, Option<String>)> {
            [
                &sink.replica_schema,
                &sink.changes_schema,
                &sink.changes_schema,
            ]
            .iter()
            .zip(["doc", "doc", "__before_doc"])
            .map(|(s, f)| {
                let m = s
                    .field_with_name(f)
                    .map(|f| f.metadata().clone())
                    .unwrap_or_default();
                (
                    f.to_string(),
                    m.get(crate::arrow_map::MYSQL_TYPE_KEY).cloned(),
                    m.get(crate::arrow_map::COMMENT_KEY).cloned(),
                )
            })
            .collect()
        };
        let expect = |ty: &str, comment: Option<&str>| {
            ["doc", "doc", "__before_doc"]
                .map(|f| {
                    (
                        f.to_string(),
                        Some(ty.to_string()),
                        comment.map(str::to_string),
                    )
                })
                .to_vec()
        };
        let versions = |sink: &TableSink| (sink.changes.version(), sink.replica.version());

        let plain = schema(false);
        let mut sink = TableSink::open(&lake, &plain).await?;
        sink.apply(&[row(&plain, 1, r#"{"a": 1}"#)], &progress(1), true, true)
            .await?;
        assert_eq!(labels(&sink), expect("longtext", None));
        let before = versions(&sink);

        let json = schema(true);
        let mut sink = TableSink::open(&lake, &json).await?;
        assert_eq!(labels(&sink), expect("json", Some("json")));
        let after = versions(&sink);
        assert_eq!(
            (after.0.map(|v| v - 1), after.1.map(|v| v - 1)),
            before,
            "one metadata commit per table"
        );
        sink.apply(&[row(&json, 2, "[true]")], &progress(2), true, true)
            .await?;
        let again = TableSink::open(&lake, &json).await?;
        assert_eq!(versions(&again), versions(&sink), "nothing left to relabel");
        let ctx = crate::query::session(&lake, None).await?;
        let rows = crate::query::run(&ctx, "SELECT id, doc FROM d.t ORDER BY id").await?;
        let text = arrow::util::pretty::pretty_format_batches(&rows)
            .map_err(|e| Error::storage("format", e))?
            .to_string();
        assert!(text.contains(r#"| 1  | {"a": 1} |"#), "{text}");
        assert!(text.contains(r#"| 2  | [true]   |"#), "{text}");

        // A JSON column made a plain LONGTEXT again loses the comment binlake gave it.
        let sink = TableSink::open(&lake, &plain).await?;
        assert_eq!(labels(&sink), expect("longtext", None));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
