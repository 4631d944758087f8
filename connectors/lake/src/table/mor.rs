//! Merge-on-read replicas: a batch appends its keys' new rows as one new file and marks
//! the rows they supersede deleted with Delta deletion vectors ([`crate::dv`]), found
//! through the key index ([`crate::key_index`]). Nothing already written is read or
//! rewritten, so a batch costs what it changes, whatever the table's size.
//!
//! # One batch
//!
//! 1. The index catches up with the table: files of the snapshot it has not indexed (a
//!    commit whose index update a crash lost, another writer's, maintenance's) have their
//!    live rows indexed.
//! 2. Each changed key's current row is looked up (pending index changes of staged parts
//!    first, then the index); a location is believed only if its file is live and its row
//!    not deleted (index rule 1).
//! 3. Absent values of MINIMAL/NOBLOB images are read from the stored rows found, by
//!    position.
//! 4. The batch's upserts go to one new file; the superseded rows are added to their
//!    files' deletion vectors. A file whose every row is deleted is removed instead.
//! 5. Commit (unless staging a part of a transaction): the DVs of the commit in one DV
//!    file, then one Delta commit with, per changed file, a `remove` of its old
//!    descriptor and an `add` of the same path with the new one, the new files' `add`s,
//!    the `txn` actions and the freshness record. Exactly once as in copy-on-write: it
//!    all lands or none of it does.
//! 6. Then the index records the new locations (one redb transaction, which runs while
//!    the next batch is prepared; its first lookup waits for it).
//!
//! A TRUNCATE removes every file and empties the index.
//!
//! # Maintenance, beside the batches
//!
//! A maintenance pass picks files whose deleted fraction passed `max_deleted_fraction`,
//! then small files, and a task merges their live rows into one new file while batches
//! go on. The next pass commits it between two batches: the rows that batches marked
//! deleted in the picked files since the task read them are mapped to their positions in
//! the new file (offset of the file's kept rows plus the row's rank among them) and
//! become its deletion vector, in one commit (dataChange false) that removes the picked
//! files and adds the new one. If a picked file left the table meanwhile, the rewrite is
//! dropped. The index learns the new file's rows except those deleted meanwhile (their
//! keys' current rows are elsewhere, or gone).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};
use binlake_core::Value;
use deltalake::DeltaTable;
use deltalake::kernel::{Action, DeletionVectorDescriptor, Remove};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};
use parquet::basic::Compression;
use roaring::RoaringTreemap;

use super::*;
use crate::dv::{self, DvFile};
use crate::key_index::{IndexUpdate, KeyIndex};

/// A merge-on-read replica's state kept between batches.
#[derive(Debug)]
pub(super) struct Mor {
    pub(super) index: KeyIndex,
    /// Committed deletion vectors read or written: path → (descriptor id, rows).
    dvs: HashMap<String, (String, RoaringTreemap)>,
    /// Maintenance rewrites a file with more of its rows deleted than this.
    max_deleted: f64,
    /// Bytes of files one maintenance pass rewrites at most.
    budget: u64,
    /// The maintenance rewrite running beside the batches.
    rewrite: Option<tokio::task::JoinHandle<Result<Rewritten>>>,
    /// Rewrites committed since the table was opened: files replaced, and rows that
    /// batches deleted while they ran (carried into the new files' deletion vectors).
    pub(super) rewritten: (u64, u64),
}

/// Where and how a table's key index is kept (from `[lake]`).
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub dir: std::path::PathBuf,
    pub writer: String,
    pub cache_bytes: usize,
    pub max_deleted: f64,
    pub budget: u64,
}

impl Mor {
    /// Opens the key index of `replica` (table `name`).
    pub(super) async fn open(s: &Settings, name: &str, replica: &DeltaTable) -> Result<Mor> {
        let table_id = replica
            .snapshot()
            .map_err(|e| Error::delta(replica.table_url().as_str(), "snapshot", e, true))?
            .metadata()
            .id()
            .to_string();
        crate::key_index::sweep_dead(&s.dir, name);
        let path = crate::key_index::index_path(&s.dir, name, &s.writer);
        let cache = s.cache_bytes;
        let index = tokio::task::spawn_blocking(move || KeyIndex::open(&path, &table_id, cache))
            .await
            .map_err(|e| Error::storage("open the key index", e))??;
        Ok(Mor {
            index,
            dvs: HashMap::new(),
            max_deleted: s.max_deleted,
            budget: s.budget,
            rewrite: None,
            rewritten: (0, 0),
        })
    }
}

/// Files smaller than this, and of fewer than half [`REWRITE_ROWS`] rows, are merged by
/// maintenance (when there are `compact_min_files` of them).
const SMALL_FILE_BYTES: i64 = 32 << 20;
/// Rows one maintenance rewrite writes at most (more when a single file has more).
const REWRITE_ROWS: u64 = 1_000_000;

/// A maintenance rewrite of a merge-on-read replica, done beside the batches by a task
/// and committed between them ([`TableSink::finish_rewrite`]).
#[derive(Debug)]
pub(super) struct Rewritten {
    /// The new file (path and size); `None` when the rewritten files had no live row.
    file: Option<(String, i64)>,
    /// The key of each row of the new file, in order.
    keys: Vec<Vec<u8>>,
    /// The rewritten files: path, the deleted rows the rewrite left out, and the position
    /// of the file's first kept row in the new file.
    sources: Vec<(String, RoaringTreemap, u64)>,
}

impl TableSink {
    /// Commits the rewrite the last maintenance pass started if it is done (see
    /// [`TableSink::finish_rewrite`]); how many files it replaced.
    pub(super) async fn commit_finished_rewrite(&mut self) -> Result<u64> {
        let finished = self.mor.as_ref().is_some_and(|m| {
            m.rewrite
                .as_ref()
                .is_some_and(tokio::task::JoinHandle::is_finished)
        });
        match finished {
            true => Ok(self.finish_rewrite().await?.0),
            false => Ok(0),
        }
    }

    /// Whether a maintenance rewrite is running (its new file is not in the table yet, so
    /// vacuum must not run).
    pub(super) fn rewrite_running(&self) -> bool {
        self.mor.as_ref().is_some_and(|m| m.rewrite.is_some())
    }

    /// Merge-on-read maintenance, beside the batches: picks files whose deleted fraction
    /// passed `max_deleted_fraction`, then small files (at most `budget` bytes and
    /// [`REWRITE_ROWS`] rows), and starts a task that merges their live rows into one new
    /// file while batches go on. The first `apply` after it is done, or the maintenance
    /// pass waiting for it, commits it ([`TableSink::finish_rewrite`]).
    pub(super) async fn start_rewrite(&mut self, min_files: usize) -> Result<()> {
        let Some(mor) = self.mor.as_mut() else {
            return Ok(());
        };
        if mor.rewrite.is_some() {
            return Ok(());
        }
        let live = live_files(&self.replica)?;
        let store = self.replica.log_store().object_store(None);
        let mut heavy: Vec<(f64, &String)> = Vec::new();
        let mut small: Vec<(i64, &String)> = Vec::new();
        for (path, l) in &live {
            let deleted = l.dv.as_ref().map_or(0, |d| d.cardinality) as f64;
            let fraction = deleted / l.rows.max(1) as f64;
            if fraction > mor.max_deleted {
                heavy.push((fraction, path));
            } else if l.remove.size.unwrap_or_default() < SMALL_FILE_BYTES
                && l.rows < REWRITE_ROWS / 2
            {
                small.push((l.remove.size.unwrap_or_default(), path));
            }
        }
        heavy.sort_by(|a, b| b.0.total_cmp(&a.0));
        small.sort();
        if small.len() < min_files.max(2) {
            small.clear();
        }
        // Bounded by bytes read and by rows written (the rows' keys are held for the
        // index): a merged file holds at most REWRITE_ROWS rows, so it is not small.
        let mut picked: Vec<&String> = Vec::new();
        let (mut bytes, mut rows) = (0u64, 0u64);
        for path in heavy.iter().map(|h| h.1).chain(small.iter().map(|s| s.1)) {
            let l = &live[path];
            let size = l.remove.size.unwrap_or_default() as u64;
            let kept = l
                .rows
                .saturating_sub(l.dv.as_ref().map_or(0, |d| d.cardinality.max(0) as u64));
            if !picked.is_empty() && (bytes + size > mor.budget || rows + kept > REWRITE_ROWS) {
                break;
            }
            bytes += size;
            rows += kept;
            picked.push(path);
        }
        if picked.is_empty() || (picked.len() == 1 && heavy.is_empty()) {
            return Ok(());
        }
        let mut sources = Vec::new();
        for path in picked {
            let folded = committed_dv(mor, &store, path, &live[path]).await?.clone();
            sources.push((path.clone(), folded));
        }
        let schema = self.replica_schema.clone();
        let key_idx: Vec<usize> = self
            .key_names
            .iter()
            .map(|k| schema.index_of(k))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::storage("compact the replica", e))?;
        let path = mor_file(self.replica.version().unwrap_or(0) + 1);
        mor.rewrite = Some(tokio::spawn(rewrite(store, schema, key_idx, sources, path)));
        Ok(())
    }

    /// Waits for the running maintenance rewrite and commits it, between batches: one
    /// commit (dataChange false) removes the rewritten files and adds the new one, with a
    /// deletion vector of the rows that batches marked deleted in the rewritten files
    /// since the rewrite read them; the index learns the new file's live rows. A rewrite
    /// whose files left the table meanwhile (a TRUNCATE, another writer's maintenance) is
    /// dropped (vacuum deletes its file). Returns (files replaced, rows deleted meanwhile).
    pub(super) async fn finish_rewrite(&mut self) -> Result<(u64, u64)> {
        let Some(mor) = self.mor.as_mut() else {
            return Ok((0, 0));
        };
        let Some(task) = mor.rewrite.take() else {
            return Ok((0, 0));
        };
        let r = task
            .await
            .map_err(|e| Error::storage("compact the replica", e))??;
        let live = live_files(&self.replica)?;
        let store = self.replica.log_store().object_store(None);
        // The rows batches deleted meanwhile, as positions in the new file: a kept row's
        // position is its offset plus its position among its file's kept rows.
        let mut since = RoaringTreemap::new();
        for (path, folded, offset) in &r.sources {
            let Some(l) = live.get(path) else {
                tracing::info!(table = %self.name, file = %path, "maintenance rewrite dropped: a file it rewrote left the table");
                return Ok((0, 0));
            };
            let now = committed_dv(mor, &store, path, l).await?;
            if !folded.is_subset(now) {
                tracing::warn!(table = %self.name, file = %path, "maintenance rewrite dropped: the file's deletion vector lost rows");
                return Ok((0, 0));
            }
            for p in now.iter().filter(|p| !folded.contains(*p)) {
                since.insert(offset + p - folded.rank(p));
            }
        }
        let rows = r.keys.len();
        let mut actions = Vec::new();
        let mut new_file = None;
        if let Some((path, size)) = &r.file
            && since.len() < rows as u64
        {
            let mut a = add(
                path.clone(),
                *size,
                rows,
                std::iter::empty::<(&str, Option<String>)>(),
            );
            a.data_change = false;
            if !since.is_empty() {
                let mut dv_file = DvFile::new();
                let d = dv_file.push(&since)?;
                let dv_path = dv_file.path();
                store
                    .put(&Path::from(dv_path.as_str()), dv_file.into_bytes().into())
                    .await
                    .map_err(|e| Error::storage(format!("write {dv_path}"), e))?;
                mor.dvs.insert(path.clone(), (dv_id(&d), since.clone()));
                a.deletion_vector = Some(d);
            }
            actions.push(Action::Add(a));
            new_file = Some(path.clone());
        }
        for (path, _, _) in &r.sources {
            let mut rm = live[path].remove.clone();
            rm.data_change = false;
            actions.push(Action::Remove(rm));
        }
        commit_compaction(&mut self.replica, actions, &self.applied_replica).await?;
        let dropped: Vec<String> = r.sources.iter().map(|s| s.0.clone()).collect();
        for p in &dropped {
            mor.dvs.remove(p);
        }
        // Keys whose row was deleted meanwhile have their current row elsewhere (or none):
        // their entries stay as the batches left them.
        let files = new_file
            .map(|path| {
                let rows = (r.keys.into_iter().enumerate())
                    .filter(|(i, _)| !since.contains(*i as u64))
                    .map(|(i, k)| (k, i as u64))
                    .collect();
                vec![(path, rows)]
            })
            .unwrap_or_default();
        mor.index
            .apply(IndexUpdate {
                files,
                dropped,
                ..Default::default()
            })
            .await?;
        let done = (r.sources.len() as u64, since.len());
        mor.rewritten = (mor.rewritten.0 + done.0, mor.rewritten.1 + done.1);
        tracing::info!(table = %self.name, files = done.0, deleted_meanwhile = done.1, "maintenance rewrite committed");
        Ok(done)
    }
}

/// A maintenance rewrite's task: streams the live rows of `sources` (path, rows deleted)
/// into one new file at `path` (one decoded batch in memory at a time), with the key of
/// each row.
async fn rewrite(
    store: Arc<dyn ObjectStore>,
    schema: SchemaRef,
    key_idx: Vec<usize>,
    sources: Vec<(String, RoaringTreemap)>,
    path: String,
) -> Result<Rewritten> {
    let key_fields: Vec<SortField> = key_idx
        .iter()
        .map(|&i| SortField::new(schema.field(i).data_type().clone()))
        .collect();
    let converter =
        Arc::new(RowConverter::new(key_fields).map_err(|e| Error::storage("key encoding", e))?);
    let mut out = Some(compact::ParquetOut::new(
        schema.clone(),
        Compression::SNAPPY,
    )?);
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut placed = Vec::new();
    for (p, folded) in sources {
        let raw = read_object(&store, &p).await?;
        let (schema, deleted, name) = (schema.clone(), folded.clone(), p.clone());
        let (key_idx, converter, mut w) = (key_idx.clone(), converter.clone(), out.take());
        let (w, file_keys) = tokio::task::spawn_blocking(
            move || -> Result<(Option<compact::ParquetOut>, Vec<Vec<u8>>)> {
                let mut file_keys = Vec::new();
                let mut at = 0u64;
                for rb in compact::batches(raw, &name, &schema)? {
                    let rb = rb?;
                    let keep: arrow::array::BooleanArray = (0..rb.num_rows() as u64)
                        .map(|i| Some(!deleted.contains(at + i)))
                        .collect();
                    at += rb.num_rows() as u64;
                    let rb = filter_record_batch(&rb, &keep)
                        .map_err(|e| Error::storage(format!("read {name}"), e))?;
                    let cols: Vec<ArrayRef> =
                        key_idx.iter().map(|&i| rb.column(i).clone()).collect();
                    let rows = converter
                        .convert_columns(&cols)
                        .map_err(|e| Error::storage("key encoding", e))?;
                    file_keys.extend(rows.iter().map(|k| k.data().to_vec()));
                    if let Some(w) = w.as_mut() {
                        w.write(&rb)?;
                    }
                }
                Ok((w, file_keys))
            },
        )
        .await
        .map_err(|e| Error::storage("compact the replica", e))??;
        out = w;
        placed.push((p, folded, keys.len() as u64));
        keys.extend(file_keys);
    }
    let mut file = None;
    if let Some(w) = out
        && !keys.is_empty()
    {
        let (encoded, _) = tokio::task::spawn_blocking(move || w.finish())
            .await
            .map_err(|e| Error::storage("compact the replica", e))??;
        let size = encoded.len() as i64;
        store
            .put(&Path::from(path.as_str()), encoded.into())
            .await
            .map_err(|e| Error::storage(format!("write {path}"), e))?;
        file = Some((path, size));
    }
    Ok(Rewritten {
        file,
        keys,
        sources: placed,
    })
}

/// What the staged parts of a transaction did to a merge-on-read replica.
#[derive(Debug, Default)]
pub(super) struct StagedMor {
    /// Rows of committed or staged files the parts marked deleted.
    deleted: HashMap<Arc<str>, RoaringTreemap>,
    /// The parts' index changes: key → its new (file, row), or `None` when deleted.
    overlay: KeyMap<Vec<u8>, Option<(Arc<str>, u64)>>,
    /// A TRUNCATE among the parts: every committed file goes.
    truncated: bool,
}

impl StagedMor {
    pub(super) fn is_empty(&self) -> bool {
        self.deleted.is_empty() && self.overlay.is_empty() && !self.truncated
    }
}

/// A live file of the replica.
struct Live {
    rows: u64,
    dv: Option<DeletionVectorDescriptor>,
    remove: Remove,
}

fn dv_id(d: &DeletionVectorDescriptor) -> String {
    format!("{}{}@{:?}", d.storage_type, d.path_or_inline_dv, d.offset)
}

fn live_files(t: &DeltaTable) -> Result<HashMap<String, Live>> {
    let snapshot = t
        .snapshot()
        .map_err(|e| Error::delta(t.table_url().as_str(), "snapshot", e, true))?;
    Ok(snapshot
        .log_data()
        .iter()
        .map(|f| {
            (
                f.path().to_string(),
                Live {
                    rows: f.num_records().map_or(u64::MAX, |n| n as u64),
                    dv: f.deletion_vector_descriptor(),
                    remove: f.remove_action(true),
                },
            )
        })
        .collect())
}

async fn read_dv(
    store: &Arc<dyn ObjectStore>,
    d: &DeletionVectorDescriptor,
) -> Result<RoaringTreemap> {
    match dv::location(d)? {
        None => dv::decode(d, None),
        Some((path, range)) => {
            let bytes = store
                .get_range(&Path::from(path.as_str()), range)
                .await
                .map_err(|e| Error::storage(format!("read the deletion vector {path}"), e))?;
            dv::decode(d, Some(&bytes))
        }
    }
}

/// The deleted rows of a committed file, from the cache or its DV.
async fn committed_dv<'m>(
    mor: &'m mut Mor,
    store: &Arc<dyn ObjectStore>,
    path: &str,
    live: &Live,
) -> Result<&'m RoaringTreemap> {
    let want = live.dv.as_ref().map(dv_id).unwrap_or_default();
    let fresh = mor.dvs.get(path).is_some_and(|(id, _)| *id == want);
    if !fresh {
        let rows = match &live.dv {
            Some(d) => read_dv(store, d).await?,
            None => RoaringTreemap::new(),
        };
        mor.dvs.insert(path.to_string(), (want, rows));
    }
    mor.dvs
        .get(path)
        .map(|(_, r)| r)
        .ok_or_else(|| Error::storage("deletion vector cache", path.to_string()))
}

/// The key rows of a file's columns `key_idx` of `schema`, read from `bytes`.
fn file_keys(
    bytes: Bytes,
    path: &str,
    schema: &SchemaRef,
    key_idx: &[usize],
    key_fields: &[SortField],
) -> Result<Vec<Vec<u8>>> {
    let err = |e: &dyn std::fmt::Display| Error::storage(format!("read {path}"), e.to_string());
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| err(&e))?;
    let names: Vec<&str> = key_idx
        .iter()
        .map(|&i| schema.field(i).name().as_str())
        .collect();
    let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(65536)
        .build()
        .map_err(|e| err(&e))?;
    let converter =
        RowConverter::new(key_fields.to_vec()).map_err(|e| Error::storage("key encoding", e))?;
    let mut out = Vec::new();
    for rb in reader {
        let rb = rb.map_err(|e| err(&e))?;
        let cols: Vec<ArrayRef> = key_idx
            .iter()
            .map(|&i| {
                let f = schema.field(i);
                let c = rb
                    .column_by_name(f.name())
                    .ok_or_else(|| err(&format!("the key column {} is missing", f.name())))?;
                arrow::compute::cast(c, f.data_type()).map_err(|e| err(&e))
            })
            .collect::<Result<_>>()?;
        let rows = converter
            .convert_columns(&cols)
            .map_err(|e| Error::storage("key encoding", e))?;
        out.extend(rows.iter().map(|r| r.data().to_vec()));
    }
    Ok(out)
}

/// The rows at `positions` (ascending) of a file, aligned to `schema`.
fn rows_at(bytes: Bytes, path: &str, schema: &SchemaRef, positions: &[u64]) -> Result<RecordBatch> {
    let err = |e: &dyn std::fmt::Display| Error::storage(format!("read {path}"), e.to_string());
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| err(&e))?;
    let total = builder.metadata().file_metadata().num_rows() as usize;
    let ranges = positions.iter().map(|&p| p as usize..p as usize + 1);
    let selection = RowSelection::from_consecutive_ranges(ranges, total);
    let reader = builder
        .with_row_selection(selection)
        .build()
        .map_err(|e| err(&e))?;
    let mut parts = Vec::new();
    for rb in reader {
        parts.push(align(&rb.map_err(|e| err(&e))?, schema)?);
    }
    arrow::compute::concat_batches(schema, &parts).map_err(|e| err(&e))
}

/// A new merge-on-read data file's name (`part-m-…`: no bucket, see [`bucket_of`]).
fn mor_file(version: u64) -> String {
    format!(
        "part-m-v{version:012}-{}.parquet",
        uuid::Uuid::new_v4().simple()
    )
}

/// The batch as [`ReplicaView::write`] prepared it.
pub(super) struct Prepared<'b, 'o> {
    pub ops: &'b [KeyOp<'o>],
    pub keys: &'b Rows,
    pub last: &'b KeyMap<&'b [u8], usize>,
    pub resolved: &'b HashMap<usize, Resolved>,
    pub truncated: bool,
    pub value_at: &'b (dyn Fn(&Arc<TableSchema>, usize) -> Option<usize> + Sync),
    pub key_idx: &'b [usize],
    pub key_fields: &'b [SortField],
}

impl ReplicaView<'_> {
    /// Index rule 2: indexes the live rows of every live file the index has not seen, and
    /// forgets files that left the table.
    async fn catch_up(
        &mut self,
        live: &HashMap<String, Live>,
        store: &Arc<dyn ObjectStore>,
        key_idx: &[usize],
        key_fields: &[SortField],
    ) -> Result<()> {
        let Some(mor) = self.mor.as_deref_mut() else {
            return Ok(());
        };
        mor.index.settle().await?;
        let dropped: Vec<String> = mor
            .index
            .indexed_files()
            .filter(|p| !live.contains_key(*p))
            .map(str::to_string)
            .collect();
        let missing: Vec<&String> = live.keys().filter(|p| !mor.index.has_file(p)).collect();
        if missing.is_empty() && dropped.is_empty() {
            return Ok(());
        }
        let files = missing.len();
        // Files that left the table first, then one file per index transaction: memory
        // holds one file's keys, not the table's, when the index is built anew.
        mor.index
            .apply(IndexUpdate {
                dropped,
                ..Default::default()
            })
            .await?;
        for path in missing {
            let l = &live[path];
            let deleted = committed_dv(mor, store, path, l).await?.clone();
            let bytes = read_object(store, path).await?;
            let (schema, key_idx, key_fields, p) = (
                self.schema.clone(),
                key_idx.to_vec(),
                key_fields.to_vec(),
                path.clone(),
            );
            let keys = tokio::task::spawn_blocking(move || {
                file_keys(bytes, &p, &schema, &key_idx, &key_fields)
            })
            .await
            .map_err(|e| Error::storage("index a file", e))??;
            let rows = keys
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !deleted.contains(*i as u64))
                .map(|(i, k)| (k, i as u64))
                .collect();
            mor.index
                .apply(IndexUpdate {
                    files: vec![(path.clone(), rows)],
                    ..Default::default()
                })
                .await?;
        }
        tracing::info!(table = %self.name, files, "key index caught up with the replica");
        Ok(())
    }

    /// Writes a batch to a merge-on-read replica (see the module docs).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write_mor(
        &mut self,
        p: Prepared<'_, '_>,
        append: bool,
        progress: &Progress,
        freshness: &Freshness,
        stats: &mut ApplyStats,
        committed: Option<tokio::sync::oneshot::Sender<()>>,
        (staged, stage): (&mut StagedReplica, bool),
    ) -> Result<()> {
        let schema = self.schema.clone();
        let store = self.table.log_store().object_store(None);
        let live = live_files(self.table)?;
        if staged.mor.is_empty() && staged.added.is_empty() {
            self.catch_up(&live, &store, p.key_idx, p.key_fields)
                .await?;
        }
        let Some(mor) = self.mor.as_deref_mut() else {
            return Err(Error::storage("merge-on-read write", "no key index"));
        };
        let sm = &mut staged.mor;
        if p.truncated {
            // Files of earlier parts are never committed; vacuum deletes them.
            sm.truncated = true;
            sm.deleted.clear();
            sm.overlay.clear();
            staged.added.clear();
        }

        // Where each key's current row is, before this batch: the parts' changes first,
        // then the index, validated (index rule 1).
        let mut wanted: Vec<&[u8]> = Vec::new();
        if !append {
            wanted.extend(p.last.keys().copied());
        }
        // Keys whose stored row fills absent values (their own, or a key change's old key).
        for &i in p.last.values() {
            if let Some((_, Some(origin))) = p.resolved.get(&i) {
                wanted.push(origin.as_slice());
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        let from_index: Vec<&[u8]> = wanted
            .iter()
            .copied()
            .filter(|k| !sm.overlay.contains_key(*k) && !sm.truncated)
            .collect();
        let found = mor
            .index
            .get_many(from_index.iter().map(|k| k.to_vec()).collect())
            .await?;
        // Paths are shared (`Arc<str>`): a batch names a handful of files for many rows.
        let mut at: KeyMap<&[u8], (Arc<str>, u64)> = KeyMap::default();
        for &k in &wanted {
            if let Some(Some(l)) = sm.overlay.get(k) {
                at.insert(k, l.clone());
            }
        }
        for (&k, loc) in from_index.iter().zip(found) {
            let Some(loc) = loc else { continue };
            let Some(path) = mor.index.path_of(loc.file).cloned() else {
                continue;
            };
            let Some(l) = live.get(&*path) else { continue };
            if committed_dv(mor, &store, &path, l).await?.contains(loc.row)
                || sm.deleted.get(&path).is_some_and(|d| d.contains(loc.row))
            {
                continue;
            }
            at.insert(k, (path, loc.row));
        }

        // Stored rows for absent values, read by position.
        let mut stored_at: KeyMap<Vec<u8>, usize> = KeyMap::default();
        let mut stored_parts = Vec::new();
        let mut by_file: BTreeMap<&str, Vec<(u64, &[u8])>> = BTreeMap::new();
        for &i in p.last.values() {
            if let Some((_, Some(origin))) = p.resolved.get(&i)
                && let Some((path, row)) = at.get(origin.as_slice())
            {
                by_file
                    .entry(&**path)
                    .or_default()
                    .push((*row, origin.as_slice()));
            }
        }
        let mut n = 0;
        for (path, mut rows) in by_file {
            rows.sort_unstable();
            rows.dedup();
            let bytes = read_object(&store, path).await?;
            let positions: Vec<u64> = rows.iter().map(|r| r.0).collect();
            let rb = rows_at(bytes, path, &schema, &positions)?;
            for (_, k) in &rows {
                stored_at.insert(k.to_vec(), n);
                n += 1;
            }
            stored_parts.push(rb);
        }
        let stored = arrow::compute::concat_batches(&schema, &stored_parts)
            .map_err(|e| Error::storage("concat", e))?;

        // The new rows: each upsert's last image, absent values patched from stored rows.
        let mut changed: Vec<usize> = p.last.values().copied().collect();
        changed.sort_unstable();
        let mut builders: Vec<ColumnBuilder> = schema
            .fields()
            .iter()
            .map(|f| builder_for(f, changed.len()))
            .collect();
        let mut patches: Vec<(usize, usize, usize)> = Vec::new();
        let mut new_keys: Vec<&[u8]> = Vec::new();
        let mut gone: Vec<&[u8]> = Vec::new();
        for &i in &changed {
            let k = p.keys.row(i).data();
            let (_, table, upsert) = &p.ops[i];
            let Some(row) = upsert else {
                gone.push(k);
                continue;
            };
            let merged = p.resolved.get(&i);
            let row_no = new_keys.len();
            for (field, (b, f)) in builders.iter_mut().zip(schema.fields()).enumerate() {
                let v = match merged {
                    Some((vals, _)) => &vals[field],
                    None => (p.value_at)(table, field)
                        .map(|i| &row[i])
                        .unwrap_or(&Value::Null),
                };
                if v.is_absent() {
                    match merged
                        .and_then(|(_, o)| o.as_ref())
                        .and_then(|o| stored_at.get(o))
                    {
                        Some(&j) => patches.push((row_no, field, j)),
                        None => stats.absent_unknown += 1,
                    }
                }
                b.append(v).map_err(|reason| Error::Value {
                    table: self.name.to_string(),
                    column: f.name().clone(),
                    reason,
                })?;
            }
            new_keys.push(k);
        }
        let mut new_rows = RecordBatch::try_new(
            schema.clone(),
            builders.iter_mut().map(|b| b.finish()).collect(),
        )
        .map_err(|e| Error::storage("build the replica batch", e))?;
        if !patches.is_empty() {
            new_rows = take_patches(&new_rows, &stored, &patches)?;
        }

        // Mark what the batch supersedes, and note the new locations.
        for k in new_keys.iter().chain(&gone) {
            if let Some((path, row)) = at.get(k) {
                sm.deleted.entry(path.clone()).or_default().insert(*row);
            }
        }
        // A batch that commits now, with no staged parts before it, hands its index
        // changes to the update directly: there is no overlay to merge them with.
        let direct = !stage && sm.overlay.is_empty();
        let mut direct_update = IndexUpdate::default();
        for k in &gone {
            if direct {
                direct_update.removed.push(k.to_vec());
            } else {
                sm.overlay.insert(k.to_vec(), None);
            }
        }
        if !new_keys.is_empty() {
            let version = self.table.version().unwrap_or(0) + 1;
            let path: Arc<str> = mor_file(version).into();
            let rows = new_rows.num_rows();
            let bytes = tokio::task::spawn_blocking(move || {
                encode_parquet(&new_rows, Vec::new(), Compression::SNAPPY)
            })
            .await
            .map_err(|e| Error::storage("encode Parquet", e))??;
            let size = bytes.len() as i64;
            store
                .put(&Path::from(&*path), bytes.into())
                .await
                .map_err(|e| Error::storage(format!("write {path}"), e))?;
            stats.bytes_written += size as u64;
            stats.rows_rewritten += rows as u64;
            if direct {
                let rows = (new_keys.iter().enumerate())
                    .map(|(row, k)| (k.to_vec(), row as u64))
                    .collect();
                direct_update.files.push((path.to_string(), rows));
            } else {
                sm.overlay.reserve(new_keys.len());
                for (row, k) in new_keys.iter().enumerate() {
                    sm.overlay
                        .insert(k.to_vec(), Some((path.clone(), row as u64)));
                }
            }
            staged.added.insert(path.to_string(), (size, rows));
        }
        stats.buckets += 1;
        if stage {
            return Ok(());
        }

        // The commit: deletion vectors, removes and adds, in one Delta commit. The staged
        // state is taken first: after a failed commit nothing of it is left to mislead
        // the next batch (the caller reads the batch again).
        let overlay = std::mem::take(&mut sm.overlay);
        let truncated = std::mem::take(&mut sm.truncated);
        let mut actions: Vec<Action> = Vec::new();
        let mut dv_file = DvFile::new();
        let mut new_dvs: Vec<(String, DeletionVectorDescriptor, RoaringTreemap)> = Vec::new();
        let mut dropped: Vec<String> = Vec::new();
        if truncated {
            for (path, l) in &live {
                actions.push(Action::Remove(l.remove.clone()));
                dropped.push(path.clone());
            }
        }
        let mut adds: HashMap<String, (Add, usize)> = std::mem::take(&mut staged.added)
            .into_iter()
            .map(|(path, (size, rows))| {
                let a = add(
                    path.clone(),
                    size,
                    rows,
                    std::iter::empty::<(&str, Option<String>)>(),
                );
                (path, (a, rows))
            })
            .collect();
        let deleted = std::mem::take(&mut sm.deleted);
        let mut deleted: Vec<(Arc<str>, RoaringTreemap)> = deleted.into_iter().collect();
        deleted.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, rows) in deleted {
            let path = path.to_string();
            if let Some((a, total)) = adds.get_mut(&path) {
                // A file of this transaction: it is added with its DV.
                if rows.len() >= *total as u64 {
                    adds.remove(&path);
                    dropped.push(path);
                    continue;
                }
                let d = dv_file.push(&rows)?;
                a.deletion_vector = Some(d.clone());
                new_dvs.push((path, d, rows));
                continue;
            }
            let Some(l) = live.get(&path) else { continue };
            if truncated {
                continue;
            }
            let all = committed_dv(mor, &store, &path, l).await? | &rows;
            actions.push(Action::Remove(l.remove.clone()));
            if all.len() >= l.rows {
                dropped.push(path);
                continue;
            }
            let d = dv_file.push(&all)?;
            let mut a = add(
                path.clone(),
                l.remove.size.unwrap_or_default(),
                l.rows as usize,
                std::iter::empty::<(&str, Option<String>)>(),
            );
            a.deletion_vector = Some(d.clone());
            actions.push(Action::Add(a));
            new_dvs.push((path, d, all));
        }
        let added_paths: HashSet<String> = adds.keys().cloned().collect();
        actions.extend(adds.into_values().map(|(a, _)| Action::Add(a)));
        if !dv_file.is_empty() {
            let path = dv_file.path();
            let bytes = dv_file.into_bytes();
            stats.bytes_written += bytes.len() as u64;
            store
                .put(&Path::from(path.as_str()), bytes.into())
                .await
                .map_err(|e| Error::storage(format!("write {path}"), e))?;
        }
        stats.commits += 1;
        commit(self.table, actions, progress, freshness, "apply changes").await?;
        binlake_core::failpoint::hit("lake.after_replica_commit");
        if let Some(c) = committed {
            let _ = c.send(());
        }
        apply_progress(self.applied, progress, freshness);

        // The index follows the commit (a crash before this is repaired by `catch_up`).
        let mut update = IndexUpdate {
            clear: truncated,
            dropped,
            removed: direct_update.removed,
            ..Default::default()
        };
        // Grouped by file: a batch adds a file per part, so a short list, found by the
        // shared path's pointer (hashing each row's path showed in the profile).
        let mut files: Vec<(Arc<str>, crate::key_index::FileRows)> = Vec::new();
        for (k, l) in overlay {
            let Some((path, row)) = l else {
                update.removed.push(k);
                continue;
            };
            match files
                .iter_mut()
                .find(|(p, _)| Arc::ptr_eq(p, &path) || *p == path)
            {
                Some((_, rows)) => rows.push((k, row)),
                None => files.push((path, vec![(k, row)])),
            }
        }
        update.files = files
            .into_iter()
            .map(|(path, rows)| (path.to_string(), rows))
            .chain(direct_update.files)
            .filter(|(path, _)| added_paths.contains(path))
            .collect();
        for (path, d, rows) in new_dvs {
            mor.dvs.insert(path, (dv_id(&d), rows));
        }
        mor.index.apply(update).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::array::{Array, StringArray};
    use binlake_core::schema::StringKind;
    use binlake_core::{Column, ColumnType, Op, TableSchema, Value};

    use super::*;
    use crate::LakeConfig;
    use crate::config::ReplicaMode;
    use crate::table::tests::change;

    fn table() -> Arc<TableSchema> {
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
                    "v",
                    ColumnType::String {
                        kind: StringKind::Text,
                        length: 255,
                        charset: "utf8mb4".into(),
                        json: false,
                    },
                    true,
                ),
            ],
            primary_key: vec![0],
        })
    }

    fn row(id: i64, v: &Option<String>) -> Vec<Value> {
        vec![Value::Int(id), v.clone().map_or(Value::Null, Value::String)]
    }

    /// An update of key `k` from `old` to `new`, with full images.
    fn update(
        t: &Arc<TableSchema>,
        k: i64,
        old: &Option<String>,
        new: &Option<String>,
        pos: u64,
    ) -> crate::table::Change {
        change(t, Op::Update, Some(row(k, old)), Some(row(k, new)), pos)
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    async fn replica_rows(lake: &Lake) -> BTreeMap<i64, Option<String>> {
        let ctx = crate::query::session(lake, None).await.unwrap();
        let batches = crate::query::run(&ctx, "SELECT CAST(id AS VARCHAR) AS id, v FROM d.t")
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for b in batches {
            let id = arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
            let v = arrow::compute::cast(b.column(1), &DataType::Utf8).unwrap();
            let id = id.as_any().downcast_ref::<StringArray>().unwrap();
            let v = v.as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..b.num_rows() {
                let k: i64 = id.value(i).parse().unwrap();
                let val = (!v.is_null(i)).then(|| v.value(i).to_string());
                assert!(out.insert(k, val).is_none(), "key {k} twice in the replica");
            }
        }
        out
    }

    /// Random batches of inserts, updates (some with the value left out, as MINIMAL
    /// images do), deletes, key changes and TRUNCATEs, some in staged parts, with the
    /// index losing its last update (a kill -9 between the Delta commit and the index
    /// commit) or disappearing, and maintenance every ten batches: after every batch the
    /// merge-on-read replica, read through its deletion vectors, equals a model of the
    /// table.
    #[tokio::test]
    async fn a_merge_on_read_replica_equals_the_model_through_lost_index_updates() {
        let dir = std::env::temp_dir().join(format!("binlake-mor-{}", uuid::Uuid::new_v4()));
        let lake = Lake::open(&LakeConfig {
            root: dir.display().to_string(),
            replica_mode: ReplicaMode::MergeOnRead,
            ..Default::default()
        })
        .unwrap()
        .with_writer("test");
        let t = table();
        let index_file = crate::key_index::index_path(&lake.index_dir(), "d.t", "test");
        let mut sink = TableSink::open(&lake, &t).await.unwrap();
        assert!(sink.mor.is_some(), "the replica is merge-on-read");
        // Checkpoints every few commits: deletion vectors must survive them (reopening
        // the sink and reading the replica load the latest checkpoint).
        sink.replica = sink
            .replica
            .clone()
            .set_tbl_properties()
            .with_properties(HashMap::from([(
                "delta.checkpointInterval".to_string(),
                "7".to_string(),
            )]))
            .await
            .unwrap();
        let mut model: BTreeMap<i64, Option<String>> = BTreeMap::new();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut pos = 4;
        let mut txn = 0;
        let mut deletes = 0;
        let mut maintained = 0;
        let mut saw_dv = false;
        // The running rewrite: files past the threshold and the file count when it
        // started, whether the writer restarted since.
        let (mut heavy, mut files_before) = (Vec::<String>::new(), 0);
        let (mut reopened, mut carried, mut rewritten_before) = (false, 0u64, (0, 0));
        let mut beside = 0;
        for round in 0..80 {
            let mut batch = Vec::new();
            let mut truncated = false;
            for _ in 0..1 + rng.below(25) {
                pos += 1;
                let free = |rng: &mut Rng, m: &BTreeMap<i64, Option<String>>| loop {
                    let k = rng.below(1000) as i64;
                    if !m.contains_key(&k) {
                        break k;
                    }
                };
                let existing = |rng: &mut Rng, m: &BTreeMap<i64, Option<String>>| {
                    let n = m.len() as u64;
                    (n > 0).then(|| *m.keys().nth(rng.below(n) as usize).unwrap_or(&0))
                };
                let val = |rng: &mut Rng| match rng.below(5) {
                    0 => None,
                    _ => Some(format!("v{}", rng.below(1000))),
                };
                let dice = rng.below(100);
                if dice < 2 && round % 7 == 3 {
                    batch.push(change(&t, Op::Truncate, None, None, pos));
                    model.clear();
                    truncated = true;
                } else if (dice < 45 && model.len() < 400) || model.is_empty() {
                    let k = free(&mut rng, &model);
                    let v = val(&mut rng);
                    batch.push(change(&t, Op::Create, None, Some(row(k, &v)), pos));
                    model.insert(k, v);
                } else if dice < 75 {
                    let k = existing(&mut rng, &model).unwrap_or_default();
                    let old = model[&k].clone();
                    if rng.below(3) == 0 {
                        // The image leaves `v` out: the stored value stays.
                        let after = vec![Value::Int(k), Value::Absent];
                        batch.push(change(
                            &t,
                            Op::Update,
                            Some(after.clone()),
                            Some(after),
                            pos,
                        ));
                    } else {
                        let v = val(&mut rng);
                        batch.push(update(&t, k, &old, &v, pos));
                        model.insert(k, v);
                    }
                } else if dice < 90 {
                    let k = existing(&mut rng, &model).unwrap_or_default();
                    let old = model.remove(&k).unwrap_or_default();
                    batch.push(change(&t, Op::Delete, Some(row(k, &old)), None, pos));
                    deletes += 1;
                } else {
                    // A key change.
                    let k = existing(&mut rng, &model).unwrap_or_default();
                    let old = model.remove(&k).unwrap_or_default();
                    let to = free(&mut rng, &model);
                    batch.push(change(
                        &t,
                        Op::Update,
                        Some(row(k, &old)),
                        Some(row(to, &old)),
                        pos,
                    ));
                    model.insert(to, old);
                }
            }
            let lose_index_update = round % 5 == 2;
            let saved = lose_index_update.then(|| std::fs::read(&index_file).unwrap());
            let progress = |n: i64| Progress {
                txns: vec![("test".into(), n)],
                file_token: format!("b{n}"),
                ..Progress::default()
            };
            txn += 1;
            if round % 4 == 1 && batch.len() > 2 {
                // A transaction committed in parts.
                let (a, b) = batch.split_at(batch.len() / 2);
                sink.stage(a, &progress(txn), false, true).await.unwrap();
                sink.apply(b, &progress(txn), false, true).await.unwrap();
            } else {
                sink.apply(&batch, &progress(txn), false, true)
                    .await
                    .unwrap();
            }
            if let Some(saved) = saved {
                // kill -9 after the Delta commit, before the index's: the index as it was.
                drop(sink);
                std::fs::write(&index_file, saved).unwrap();
                sink = TableSink::open(&lake, &t).await.unwrap();
                reopened = true;
            } else if round % 11 == 6 {
                drop(sink);
                std::fs::remove_file(&index_file).unwrap();
                sink = TableSink::open(&lake, &t).await.unwrap();
                reopened = true;
            }
            saw_dv |= live_files(&sink.replica)
                .unwrap()
                .values()
                .any(|l| l.dv.is_some());
            let heavy_files = |sink: &TableSink| -> Vec<String> {
                (live_files(&sink.replica).unwrap().into_iter())
                    .filter(|(_, l)| {
                        l.dv.as_ref().map_or(0, |d| d.cardinality) as f64 / l.rows as f64 > 0.2
                    })
                    .map(|(p, _)| p)
                    .collect()
            };
            if round % 20 == 9 {
                // A maintenance pass: its rewrite of these few rows is done within the
                // pass and committed by it.
                let (before, heavy) =
                    (live_files(&sink.replica).unwrap().len(), heavy_files(&sink));
                let rewritten = sink.maintain(2, std::time::Duration::ZERO).await.unwrap().0;
                let after = live_files(&sink.replica).unwrap();
                assert!(
                    rewritten > 0 && after.len() < before && !sink.rewrite_running(),
                    "{before} files → {}",
                    after.len()
                );
                for p in &heavy {
                    assert!(!after.contains_key(p), "{p} was not rewritten");
                }
                maintained += 1;
            } else if round % 20 == 19 {
                // A rewrite that runs beside the next round's batch, committed after it.
                (heavy, files_before) =
                    (heavy_files(&sink), live_files(&sink.replica).unwrap().len());
                sink.start_rewrite(2).await.unwrap();
                assert!(sink.rewrite_running(), "maintenance started no rewrite");
                rewritten_before = sink.mor.as_ref().map(|m| m.rewritten).unwrap_or_default();
                reopened = false;
            } else if round % 20 == 0 && round > 0 {
                // Committed after that batch (by the batch, when the rewrite was done by
                // then): its deletions in the rewritten files carry over as the new
                // file's deletion vector.
                sink.finish_rewrite().await.unwrap();
                let mor = sink.mor.as_ref().map(|m| m.rewritten).unwrap_or_default();
                let (rewritten, since) = (
                    mor.0.saturating_sub(rewritten_before.0),
                    mor.1.saturating_sub(rewritten_before.1),
                );
                let after = live_files(&sink.replica).unwrap();
                if reopened || truncated {
                    // The writer restarted (the rewrite is lost) or its files are gone.
                    assert_eq!(rewritten, 0);
                } else {
                    assert!(
                        rewritten > 0 && after.len() < files_before,
                        "{files_before} files → {}",
                        after.len()
                    );
                    for p in &heavy {
                        assert!(!after.contains_key(p), "{p} was not rewritten");
                    }
                    beside += 1;
                    carried += since;
                }
            }
            assert_eq!(replica_rows(&lake).await, model, "after round {round}");
            assert_eq!(
                row_count(&sink.replica),
                Some(model.len() as u64),
                "row count after round {round}"
            );
        }
        assert!(deletes > 20, "the test deleted rows ({deletes})");
        assert!(maintained >= 4, "{maintained} rewrites committed");
        assert!(beside >= 3, "{beside} rewrites committed beside a batch");
        // Rows deleted during a rewrite were carried into the new file's deletion vector.
        assert!(carried > 0, "no batch deleted rows while a rewrite ran");
        // Deletion vectors were written (updates superseded rows in earlier files).
        assert!(saw_dv, "no file ever carried a deletion vector");
        let checkpoints = std::fs::read_dir(dir.join("d/t/replica/_delta_log"))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .ends_with(".checkpoint.parquet")
            })
            .count();
        assert!(checkpoints >= 5, "{checkpoints} checkpoints");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A copy-on-write replica switched to merge-on-read in place (the config changed):
    /// one commit upgrades the protocol, the bucket files stay and are indexed, and the
    /// rows stay the primary's. A writer that opened it before the switch cannot commit
    /// a bucket rewrite over it, and writes merge-on-read after reloading.
    #[tokio::test]
    async fn a_copy_on_write_replica_switches_to_merge_on_read_in_place() {
        let dir = std::env::temp_dir().join(format!("binlake-mor-{}", uuid::Uuid::new_v4()));
        let cfg = |mode| LakeConfig {
            root: dir.display().to_string(),
            replica_mode: mode,
            buckets: 4,
            ..Default::default()
        };
        let cow_lake = Lake::open(&cfg(ReplicaMode::CopyOnWrite))
            .unwrap()
            .with_writer("old");
        let mor_lake = Lake::open(&cfg(ReplicaMode::MergeOnRead))
            .unwrap()
            .with_writer("new");
        let t = table();
        let progress = |n: i64| Progress {
            txns: vec![("test".into(), n)],
            file_token: format!("b{n}"),
            ..Progress::default()
        };
        let v = |s: &str| Some(s.to_string());
        let mut model = BTreeMap::new();
        let mut old = TableSink::open(&cow_lake, &t).await.unwrap();
        let batch: Vec<Change> = (0..40)
            .map(|k| change(&t, Op::Create, None, Some(row(k, &v("a"))), 10 + k as u64))
            .collect();
        model.extend((0..40).map(|k| (k, v("a"))));
        old.apply(&batch, &progress(1), false, true).await.unwrap();
        assert!(old.mor.is_none());

        let mut new = TableSink::open(&mor_lake, &t).await.unwrap();
        assert!(new.mor.is_some(), "switched to merge-on-read");
        let log = std::fs::read_dir(dir.join("d/t/replica/_delta_log"))
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect::<String>();
        assert!(
            log.contains("\"readerFeatures\":[\"deletionVectors\"]"),
            "{log}"
        );
        let batch = vec![
            change(
                &t,
                Op::Update,
                Some(row(3, &v("a"))),
                Some(row(3, &v("b"))),
                100,
            ),
            change(&t, Op::Delete, Some(row(7, &v("a"))), None, 101),
            change(&t, Op::Create, None, Some(row(99, &v("c"))), 102),
        ];
        model.insert(3, v("b"));
        model.remove(&7);
        model.insert(99, v("c"));
        new.apply(&batch, &progress(2), false, true).await.unwrap();
        assert_eq!(replica_rows(&mor_lake).await, model);
        drop(new);

        // The writer opened before the switch: its bucket rewrite, which would ignore the
        // deletion vectors, is built on the old table version and cannot commit.
        let batch = vec![change(
            &t,
            Op::Update,
            Some(row(5, &v("a"))),
            Some(row(5, &v("d"))),
            103,
        )];
        assert!(old.apply(&batch, &progress(3), false, true).await.is_err());
        assert_eq!(replica_rows(&mor_lake).await, model);
        old.reload().await.unwrap();
        assert!(old.mor.is_some(), "the reload sees the switch");
        old.apply(&batch, &progress(3), false, true).await.unwrap();
        model.insert(5, v("d"));
        assert_eq!(replica_rows(&mor_lake).await, model);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two writers of one merge-on-read table (materialize workers sharing a topic's
    /// partitions), each with its own key index, committing in turn: a writer whose
    /// snapshot is behind cannot commit (Delta's version check), reloads, catches its
    /// index up with the other's files, and writes again; the replica stays the model's.
    #[tokio::test]
    async fn two_writers_take_turns_on_one_merge_on_read_table() {
        let dir = std::env::temp_dir().join(format!("binlake-mor-{}", uuid::Uuid::new_v4()));
        let cfg = LakeConfig {
            root: dir.display().to_string(),
            replica_mode: ReplicaMode::MergeOnRead,
            ..Default::default()
        };
        let lake_a = Lake::open(&cfg).unwrap().with_writer("a");
        let lake_b = Lake::open(&cfg).unwrap().with_writer("b");
        let t = table();
        let mut a = TableSink::open(&lake_a, &t).await.unwrap();
        let mut b = TableSink::open(&lake_b, &t).await.unwrap();
        let mut model: BTreeMap<i64, Option<String>> = BTreeMap::new();
        let mut rng = Rng(42);
        let mut pos = 10;
        let (mut va, mut vb) = (0i64, 0i64);
        let mut conflicts = 0;
        for round in 0..24 {
            let mut batch = Vec::new();
            for _ in 0..20 {
                pos += 1;
                let k = rng.below(60) as i64;
                let old = model.get(&k).cloned();
                match (old, rng.below(4)) {
                    (Some(old), 0) => {
                        batch.push(change(&t, Op::Delete, Some(row(k, &old)), None, pos));
                        model.remove(&k);
                    }
                    (Some(old), _) => {
                        let v = Some(format!("r{round}"));
                        batch.push(update(&t, k, &old, &v, pos));
                        model.insert(k, v);
                    }
                    (None, _) => {
                        let v = Some(format!("i{round}"));
                        batch.push(change(&t, Op::Create, None, Some(row(k, &v)), pos));
                        model.insert(k, v);
                    }
                }
            }
            // Alternate writers, with runs of two so some commits find their own
            // snapshot current.
            let (sink, app, v) = match round % 5 < 2 {
                true => (&mut a, "a", &mut va),
                false => (&mut b, "b", &mut vb),
            };
            *v += 1;
            let progress = Progress {
                txns: vec![(app.to_string(), *v)],
                file_token: format!("{app}{v}"),
                ..Progress::default()
            };
            if sink.apply(&batch, &progress, false, true).await.is_err() {
                conflicts += 1;
                sink.reload().await.unwrap();
                sink.apply(&batch, &progress, false, true).await.unwrap();
            }
            assert_eq!(replica_rows(&lake_a).await, model, "after round {round}");
        }
        assert!(conflicts >= 8, "{conflicts} conflicting commits");
        drop((a, b));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
