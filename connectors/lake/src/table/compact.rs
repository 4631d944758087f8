//! Change-log compaction in bounded memory, beside the batches.
//!
//! A change log gains a file per batch, so a long-lived table, or a large snapshot, leaves
//! its date partitions with thousands of small files. Maintenance merges them, within two
//! bounds: memory (a merge streams its inputs batch by batch into one Parquet encoder,
//! [`ParquetOut`], so it holds one decoded batch and the encoded output, never a whole
//! partition decoded: a 50M-row snapshot's partition decoded at once took 21 GB and
//! overflowed Arrow's 32-bit string offsets) and time (a task does the reading and
//! encoding while batches go on; the commit, between batches, only swaps files).
//!
//! A pass picks, per date partition, files smaller than [`SMALL_FILE_BYTES`] and groups
//! them into merges of at most [`MERGE_BYTES`], up to `budget` bytes in all. The change
//! log is append-only, so the picked files cannot change while the task runs; a file that
//! left the table meanwhile (another worker's compaction) drops its merge.

use super::*;

/// Change-log files smaller than this are merged.
const SMALL_FILE_BYTES: i64 = 32 << 20;
/// Bytes of input files (compressed) per merged file.
const MERGE_BYTES: i64 = 128 << 20;

/// A Parquet file encoded batch by batch into memory, with [`encode_parquet`]'s settings.
pub(super) struct ParquetOut {
    w: ArrowWriter<Vec<u8>>,
    rows: usize,
}

impl ParquetOut {
    pub(super) fn new(schema: SchemaRef, compression: Compression) -> Result<ParquetOut> {
        let w = ArrowWriter::try_new(
            Vec::with_capacity(1 << 20),
            schema,
            Some(writer_properties(Vec::new(), compression)),
        )
        .map_err(|e| Error::storage("encode Parquet", e))?;
        Ok(ParquetOut { w, rows: 0 })
    }

    pub(super) fn write(&mut self, rb: &RecordBatch) -> Result<()> {
        self.rows += rb.num_rows();
        self.w
            .write(rb)
            .map_err(|e| Error::storage("encode Parquet", e))
    }

    /// The file's bytes and row count.
    pub(super) fn finish(mut self) -> Result<(Bytes, usize)> {
        self.w
            .finish()
            .map_err(|e| Error::storage("encode Parquet", e))?;
        // Finished: the buffer holds the whole file.
        let buf = std::mem::take(self.w.inner_mut());
        Ok((Bytes::from(buf), self.rows))
    }
}

/// Reads the Parquet file `raw` (named `name`) batch by batch, aligned to `schema`.
pub(super) fn batches(
    raw: Bytes,
    name: &str,
    schema: &SchemaRef,
) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    let err = |e: &dyn std::fmt::Display| Error::storage(format!("read {name}"), e.to_string());
    let reader = ParquetRecordBatchReaderBuilder::try_new(raw)
        .and_then(|b| b.with_batch_size(65536).build())
        .map_err(|e| err(&e))?;
    let (schema, name) = (schema.clone(), name.to_string());
    Ok(reader.map(move |rb| {
        let rb = rb.map_err(|e| Error::storage(format!("read {name}"), e.to_string()))?;
        align(&rb, &schema)
    }))
}

/// One merge of the change log's files, written by the task and committed later.
#[derive(Debug)]
pub(super) struct ChangesMerge {
    /// The date partition's value.
    date: Option<String>,
    /// The merged file: path, size, rows.
    file: (String, i64, usize),
    /// The files it replaces: path, size.
    sources: Vec<(String, i64)>,
}

/// The change-log merges of one maintenance pass.
pub(super) type ChangesTask = tokio::task::JoinHandle<Result<Vec<ChangesMerge>>>;

impl TableSink {
    /// Starts merging the change log's small files (see the module docs), unless a merge
    /// is running.
    pub(super) fn start_changes_merge(&mut self, min_files: usize, budget: u64) -> Result<()> {
        if self.changes_merge.is_some() {
            return Ok(());
        }
        let by_part = files_by(&self.changes, |path| {
            Some(
                path.rsplit_once('/')
                    .map(|(d, _)| d.to_string())
                    .unwrap_or_default(),
            )
        })?;
        let groups = plan_merges(by_part, min_files, budget, SMALL_FILE_BYTES, MERGE_BYTES);
        if groups.is_empty() {
            return Ok(());
        }
        let store = self.changes.log_store().object_store(None);
        let schema = without_columns(&self.changes_schema, &[COMMIT_DATE.to_string()]);
        self.changes_merge = Some(tokio::spawn(merge_changes(store, schema, groups)));
        Ok(())
    }

    /// Commits the change-log merges if their task is done; how many merged files were
    /// committed.
    pub(super) async fn commit_changes_merge(&mut self) -> Result<u64> {
        let done = (self.changes_merge.as_ref()).is_some_and(tokio::task::JoinHandle::is_finished);
        if !done {
            return Ok(0);
        }
        let Some(task) = self.changes_merge.take() else {
            return Ok(0);
        };
        let merges = task
            .await
            .map_err(|e| Error::storage("compact the change log", e))??;
        let live: HashSet<String> = files_by(&self.changes, |_| Some(()))?
            .into_values()
            .flatten()
            .map(|(p, _)| p)
            .collect();
        let now = now_us() / 1000;
        let mut actions = Vec::new();
        let mut merged = 0u64;
        for m in merges {
            if m.sources.iter().any(|(p, _)| !live.contains(p)) {
                tracing::info!(table = %self.name, file = %m.file.0, "change-log merge dropped: a file it merged left the table");
                continue;
            }
            let (path, size, rows) = m.file;
            let mut a = add(path, size, rows, [(COMMIT_DATE, m.date.clone())]);
            a.data_change = false;
            actions.push(Action::Add(a));
            for (p, sz) in m.sources {
                actions.push(Action::Remove(remove(
                    p,
                    sz,
                    Some(HashMap::from([(COMMIT_DATE.to_string(), m.date.clone())])),
                    false,
                    now,
                )));
            }
            merged += 1;
        }
        if merged == 0 {
            return Ok(0);
        }
        commit_compaction(&mut self.changes, actions, &self.applied_changes).await?;
        Ok(merged)
    }
}

/// Files of a date partition (path, size).
type PartFiles = Vec<(String, i64)>;

/// The merges of one pass: per partition with at least `min_files` files under `small`
/// bytes, groups of at least two of them holding at most `merge` bytes each, and about
/// `budget` bytes in all (the group being filled when the budget runs out is left).
fn plan_merges(
    by_part: BTreeMap<String, PartFiles>,
    min_files: usize,
    budget: u64,
    small: i64,
    merge: i64,
) -> Vec<(String, PartFiles)> {
    let mut groups: Vec<(String, Vec<(String, i64)>)> = Vec::new();
    let mut total = 0u64;
    'parts: for (part, files) in by_part {
        let mut picked: Vec<(String, i64)> = files
            .into_iter()
            .filter(|(_, size)| *size < small)
            .collect();
        if picked.len() < min_files.max(2) {
            continue;
        }
        picked.sort();
        let mut group: Vec<(String, i64)> = Vec::new();
        let mut bytes = 0i64;
        for f in picked {
            if !group.is_empty() && bytes + f.1 > merge {
                if group.len() >= 2 {
                    groups.push((part.clone(), std::mem::take(&mut group)));
                }
                group.clear();
                bytes = 0;
            }
            if total + f.1 as u64 > budget && !groups.is_empty() {
                break 'parts;
            }
            total += f.1 as u64;
            bytes += f.1;
            group.push(f);
        }
        if group.len() >= 2 {
            groups.push((part, group));
        }
    }
    groups
}

/// The task: each group's files streamed into one new file of its partition.
async fn merge_changes(
    store: Arc<dyn ObjectStore>,
    schema: SchemaRef,
    groups: Vec<(String, Vec<(String, i64)>)>,
) -> Result<Vec<ChangesMerge>> {
    let mut out = Vec::new();
    for (part, files) in groups {
        let mut enc = Some(ParquetOut::new(
            schema.clone(),
            Compression::ZSTD(Default::default()),
        )?);
        for (p, _) in &files {
            let raw = read_object(&store, p).await?;
            let (schema, name, mut w) = (schema.clone(), p.clone(), enc.take());
            enc = tokio::task::spawn_blocking(move || -> Result<Option<ParquetOut>> {
                if let Some(w) = w.as_mut() {
                    for rb in batches(raw, &name, &schema)? {
                        w.write(&rb?)?;
                    }
                }
                Ok(w)
            })
            .await
            .map_err(|e| Error::storage("compact the change log", e))??;
        }
        let Some(w) = enc else {
            continue;
        };
        let (bytes, rows) = tokio::task::spawn_blocking(move || w.finish())
            .await
            .map_err(|e| Error::storage("compact the change log", e))??;
        let path = format!("{part}/compacted-{}.parquet", uuid::Uuid::new_v4().simple());
        let size = bytes.len() as i64;
        store
            .put(&Path::from(path.as_str()), bytes.into())
            .await
            .map_err(|e| Error::storage(format!("write {path}"), e))?;
        out.push(ChangesMerge {
            date: part
                .strip_prefix(&format!("{COMMIT_DATE}="))
                .map(str::to_string),
            file: (path, size, rows),
            sources: files,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};

    use super::*;

    /// A partition of many small files (a large snapshot's change log) is merged in
    /// groups of at most `merge` bytes, within the pass's budget, never whole; large files
    /// stay as they are.
    #[test]
    fn merges_are_bounded_per_file_and_per_pass() {
        let files: PartFiles = (0..100)
            .map(|i| (format!("d=1/f{i:03}.parquet"), 10))
            .chain([("d=1/big.parquet".to_string(), 1000)])
            .collect();
        let by_part = BTreeMap::from([("d=1".to_string(), files)]);
        let groups = plan_merges(by_part, 3, 400, 100, 40);
        let sizes: Vec<i64> = groups
            .iter()
            .map(|(_, g)| g.iter().map(|f| f.1).sum())
            .collect();
        assert_eq!(sizes, vec![40; 10], "{groups:?}");
        assert!(
            groups
                .iter()
                .flat_map(|g| &g.1)
                .all(|f| f.0 != "d=1/big.parquet")
        );
    }

    /// Batches written one by one come back as one file with every row, in order.
    #[test]
    fn a_streamed_file_holds_every_batch_in_order() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let mut out = ParquetOut::new(schema.clone(), Compression::SNAPPY).unwrap();
        for b in 0..3i64 {
            let ids: Vec<i64> = (b * 1000..(b + 1) * 1000).collect();
            let s: Vec<Option<String>> = ids.iter().map(|i| Some(format!("v{i}"))).collect();
            let rb = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(s)),
                ],
            )
            .unwrap();
            out.write(&rb).unwrap();
        }
        let (bytes, rows) = out.finish().unwrap();
        assert_eq!(rows, 3000);
        let mut ids = Vec::new();
        for rb in batches(bytes, "t.parquet", &schema).unwrap() {
            let rb = rb.unwrap();
            let col = rb.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            ids.extend(col.values().iter().copied());
        }
        assert_eq!(ids, (0..3000).collect::<Vec<i64>>());
    }
}
