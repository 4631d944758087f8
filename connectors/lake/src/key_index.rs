//! The key index of a merge-on-read replica: for each primary key, the data file and row
//! position of its current version, so that a batch finds the rows it supersedes without
//! reading the table.
//!
//! # Structure
//!
//! An embedded B-tree (redb: a pure-Rust, crash-safe key-value store with copy-on-write
//! pages and atomic commits) in a local file per table and writer. Keys are Arrow's
//! order-preserving row encoding of the primary key (the bytes the writer already
//! computes); values pack a file id (24 bits) and a row position (40 bits). A second
//! table maps file ids to paths. A lookup reads one root-to-leaf path of pages, so its
//! cost grows with the logarithm of the table, not with the table; memory is the page
//! cache, bounded by `[lake] index_cache_mb`, whatever the table's size. Per-bucket
//! index files would cost a read of a bucket (growing with the table) per miss, and an
//! LSM of sorted runs needs its own compaction; redb gives bounded memory and point
//! lookups with neither.
//!
//! # Why the index is always right
//!
//! The index is a cache of the table, never a source of truth, and is held to two rules:
//!
//! 1. **Entries are validated on use.** An entry is believed only if its file is in the
//!    table's current snapshot and its row is not in that file's deletion vector. A stale
//!    entry (its file compacted away, its row deleted by a commit the index missed, a
//!    TRUNCATE) therefore reads as "no current version here", never as a wrong one. File
//!    ids are never reused, so an id cannot come to mean another file.
//! 2. **Every live file is indexed before a batch looks anything up.** The index records
//!    which files it has indexed; the writer compares that with the snapshot before each
//!    batch and indexes the live rows of any file it has not seen (written by a commit
//!    whose index update a kill -9 lost, by another writer, by maintenance). Every key has
//!    exactly one live row among a replica's files, so files can be indexed in any order.
//!
//! The writer updates the index only after its Delta commit succeeded, in one redb
//! transaction. The transaction runs on a blocking thread while the writer prepares its
//! next batch ([`KeyIndex::apply`] returns at once); the next lookup, update or check of
//! indexed files waits for it first ([`KeyIndex::settle`]), and dropping the index waits
//! for it too, so the file is closed when the index is gone. A crash before the
//! transaction is durable leaves the index behind the table, which rule 2 repairs; the
//! index is never ahead of the table. A failed transaction is reported by the next call
//! that waits for it, and the in-memory view (files, ids) is read back from what is
//! durable. A missing,
//! damaged or foreign index file (another table's: the Delta table id is recorded) is
//! rebuilt from the table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::{Error, Result};

const KEYS: TableDefinition<'_, &[u8], u64> = TableDefinition::new("keys");
const FILES: TableDefinition<'_, u32, &str> = TableDefinition::new("files");
const META: TableDefinition<'_, &str, &str> = TableDefinition::new("meta");
const ROW_BITS: u32 = 40;
const MAX_FILE_ID: u32 = (1 << 24) - 1;

/// Where a key's current version is: a file (by id) and a row position in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// The file's id ([`KeyIndex::path_of`]).
    pub file: u32,
    /// The row's position in the file.
    pub row: u64,
}

impl Loc {
    fn pack(self) -> u64 {
        ((self.file as u64) << ROW_BITS) | self.row
    }
    fn unpack(v: u64) -> Loc {
        Loc {
            file: (v >> ROW_BITS) as u32,
            row: v & ((1 << ROW_BITS) - 1),
        }
    }
}

/// A file's live rows to index: (key, row position).
pub type FileRows = Vec<(Vec<u8>, u64)>;

/// The changes of one committed batch to the index.
#[derive(Debug, Default)]
pub struct IndexUpdate {
    /// The table was truncated before the rest: forget every entry.
    pub clear: bool,
    /// Keys that no longer have a row.
    pub removed: Vec<Vec<u8>>,
    /// Files to index: path and (key, row position) of its live rows.
    pub files: Vec<(String, FileRows)>,
    /// Files no longer in the table.
    pub dropped: Vec<String>,
}

/// A replica's key index (see the module docs).
pub struct KeyIndex {
    db: Arc<Database>,
    path: PathBuf,
    /// Indexed files still believed live: path → id.
    files: HashMap<String, u32>,
    /// Id → path of the same files (shared with the writer's per-row maps).
    paths: HashMap<u32, Arc<str>>,
    next_id: u32,
    /// The last update's transaction, still running on a blocking thread.
    pending: Option<Pending>,
}

/// The transaction's task, and a channel its thread closes on letting go of the
/// database (in a mutex only to make the index `Sync`).
type Pending = (
    tokio::task::JoinHandle<Result<()>>,
    std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
);

impl Drop for KeyIndex {
    /// Waits for a running update (milliseconds; it cannot be awaited here), so that the
    /// file is closed and can be opened again when the index is gone.
    fn drop(&mut self) {
        if let Some((_, closed)) = self.pending.take()
            && let Ok(closed) = closed.into_inner()
        {
            let _ = closed.recv();
        }
    }
}

impl std::fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIndex")
            .field("path", &self.path)
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

fn ierr(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::storage(
        format!("{what} the key index {}", path.display()),
        e.to_string(),
    )
}

impl KeyIndex {
    /// Opens the index at `path` for the Delta table `table_id` (creating it, or starting
    /// it over when it belongs to another table or cannot be read), with a page cache of
    /// `cache_bytes`.
    pub fn open(path: &Path, table_id: &str, cache_bytes: usize) -> Result<KeyIndex> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ierr(path, "create the folder of", e))?;
        }
        let open = || -> Result<(Database, bool)> {
            let db = Database::builder()
                .set_cache_size(cache_bytes)
                .create(path)
                .map_err(|e| match e {
                    // Two writers with one index file: a setup mistake, not a transient
                    // error, so it stops the writer.
                    redb::DatabaseError::DatabaseAlreadyOpen => Error::Config {
                        location: path.display().to_string(),
                        reason: "another binlake process has this key index open; give each writer of a table its own [lake] index_dir or materialize instance_id".into(),
                    },
                    e => ierr(path, "open", e),
                })?;
            let r = db.begin_read().map_err(|e| ierr(path, "read", e))?;
            let same = match r.open_table(META) {
                Ok(t) => t
                    .get("table_id")
                    .map_err(|e| ierr(path, "read", e))?
                    .is_some_and(|v| v.value() == table_id),
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(e) => return Err(ierr(path, "read", e)),
            };
            drop(r);
            Ok((db, same))
        };
        let (db, same) = match open() {
            Ok(x) => x,
            Err(e @ Error::Config { .. }) => return Err(e),
            Err(e) if path.exists() => {
                tracing::warn!(index = %path.display(), error = %e, "key index unreadable: rebuilding it from the table");
                std::fs::remove_file(path).map_err(|e| ierr(path, "remove", e))?;
                open()?
            }
            Err(e) => return Err(e),
        };
        let mut index = KeyIndex {
            db: Arc::new(db),
            path: path.to_path_buf(),
            files: HashMap::new(),
            paths: HashMap::new(),
            next_id: 0,
            pending: None,
        };
        if !same {
            index.reset(table_id)?;
        }
        index.load()?;
        Ok(index)
    }

    /// Reads the indexed files and the next free id from the file.
    fn load(&mut self) -> Result<()> {
        let path = &self.path;
        let r = self.db.begin_read().map_err(|e| ierr(path, "read", e))?;
        let files = r.open_table(FILES).map_err(|e| ierr(path, "read", e))?;
        self.files.clear();
        self.paths.clear();
        for entry in files.iter().map_err(|e| ierr(path, "read", e))? {
            let (id, p) = entry.map_err(|e| ierr(path, "read", e))?;
            self.files.insert(p.value().to_string(), id.value());
            self.paths.insert(id.value(), p.value().into());
        }
        let meta = r.open_table(META).map_err(|e| ierr(path, "read", e))?;
        self.next_id = meta
            .get("next_id")
            .map_err(|e| ierr(path, "read", e))?
            .and_then(|v| v.value().parse().ok())
            .unwrap_or(0);
        Ok(())
    }

    /// Waits for the last update's transaction; when it failed, reads the in-memory view
    /// back from the file and returns the error.
    pub async fn settle(&mut self) -> Result<()> {
        if let Some((write, _)) = self.pending.take() {
            let done = match write.await {
                Ok(r) => r,
                Err(e) => Err(ierr(&self.path, "write", e)),
            };
            if let Err(e) = done {
                self.load()?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Empties the index and records `table_id`.
    fn reset(&mut self, table_id: &str) -> Result<()> {
        let path = self.path.clone();
        let w = self.db.begin_write().map_err(|e| ierr(&path, "write", e))?;
        w.delete_table(KEYS).map_err(|e| ierr(&path, "write", e))?;
        w.delete_table(FILES).map_err(|e| ierr(&path, "write", e))?;
        {
            let mut meta = w.open_table(META).map_err(|e| ierr(&path, "write", e))?;
            meta.insert("table_id", table_id)
                .map_err(|e| ierr(&path, "write", e))?;
            meta.insert("next_id", "0")
                .map_err(|e| ierr(&path, "write", e))?;
            w.open_table(KEYS).map_err(|e| ierr(&path, "write", e))?;
            w.open_table(FILES).map_err(|e| ierr(&path, "write", e))?;
        }
        w.commit().map_err(|e| ierr(&path, "write", e))?;
        self.files.clear();
        self.paths.clear();
        self.next_id = 0;
        Ok(())
    }

    /// Whether `path` has been indexed (by an update that may still be running: call
    /// [`KeyIndex::settle`] first to know it is durable).
    pub fn has_file(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// The indexed files.
    pub fn indexed_files(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The path of file `id`, if it is still indexed.
    pub fn path_of(&self, id: u32) -> Option<&Arc<str>> {
        self.paths.get(&id)
    }

    /// Where each of `keys` was last indexed (to be validated by the caller), after the
    /// last update; reads on a blocking thread.
    pub async fn get_many(&mut self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<Loc>>> {
        self.settle().await?;
        let (db, path) = (self.db.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || {
            let r = db.begin_read().map_err(|e| ierr(&path, "read", e))?;
            let t = r.open_table(KEYS).map_err(|e| ierr(&path, "read", e))?;
            keys.iter()
                .map(|k| {
                    Ok(t.get(k.as_slice())
                        .map_err(|e| ierr(&path, "read", e))?
                        .map(|v| Loc::unpack(v.value())))
                })
                .collect()
        })
        .await
        .map_err(|e| ierr(&self.path, "read", e))?
    }

    /// Applies a committed batch's changes in one transaction, on a blocking thread,
    /// after the previous one: returns once the in-memory view is updated, while the
    /// transaction runs (see the module docs).
    pub async fn apply(&mut self, u: IndexUpdate) -> Result<()> {
        self.settle().await?;
        let first_id = self.next_id;
        let next_id = first_id as u64 + u.files.len() as u64;
        if next_id > MAX_FILE_ID as u64 + 1 {
            return Err(ierr(
                &self.path,
                "write",
                "it has numbered 16M files; delete it to have it rebuilt",
            ));
        }
        let dropped_ids: Vec<u32> = u
            .dropped
            .iter()
            .filter_map(|p| self.files.get(p).copied())
            .collect();
        if u.clear {
            self.files.clear();
            self.paths.clear();
        }
        for p in &u.dropped {
            if let Some(id) = self.files.remove(p) {
                self.paths.remove(&id);
            }
        }
        for (id, (p, _)) in (first_id..).zip(&u.files) {
            self.paths.insert(id, p.as_str().into());
            self.files.insert(p.clone(), id);
        }
        self.next_id = next_id as u32;
        let (db, path) = (self.db.clone(), self.path.clone());
        let (closed_tx, closed) = std::sync::mpsc::sync_channel(0);
        let write = tokio::task::spawn_blocking(move || {
            let r = write_update(&db, &path, &u, &dropped_ids, first_id);
            drop(db);
            drop(closed_tx);
            r
        });
        self.pending = Some((write, std::sync::Mutex::new(closed)));
        Ok(())
    }
}

/// Writes `u` in one transaction, numbering its files from `next_id` (checked by the
/// caller to fit).
fn write_update(
    db: &Database,
    path: &Path,
    u: &IndexUpdate,
    dropped_ids: &[u32],
    mut next_id: u32,
) -> Result<()> {
    let werr = |e: &dyn std::fmt::Display| ierr(path, "write", e.to_string());
    let w = db.begin_write().map_err(|e| werr(&e))?;
    {
        let mut keys = w.open_table(KEYS).map_err(|e| werr(&e))?;
        let mut files = w.open_table(FILES).map_err(|e| werr(&e))?;
        if u.clear {
            keys.retain(|_, _| false).map_err(|e| werr(&e))?;
            files.retain(|_, _| false).map_err(|e| werr(&e))?;
        }
        for k in &u.removed {
            keys.remove(k.as_slice()).map_err(|e| werr(&e))?;
        }
        for id in dropped_ids {
            files.remove(*id).map_err(|e| werr(&e))?;
        }
        for (p, rows) in &u.files {
            let id = next_id;
            next_id += 1;
            files.insert(id, p.as_str()).map_err(|e| werr(&e))?;
            for (k, row) in rows {
                keys.insert(
                    k.as_slice(),
                    Loc {
                        file: id,
                        row: *row,
                    }
                    .pack(),
                )
                .map_err(|e| werr(&e))?;
            }
        }
        let mut meta = w.open_table(META).map_err(|e| werr(&e))?;
        meta.insert("next_id", next_id.to_string().as_str())
            .map_err(|e| werr(&e))?;
    }
    w.commit().map_err(|e| werr(&e))?;
    Ok(())
}

/// The index file of a table's replica for `writer` under `dir`.
pub fn index_path(dir: &Path, table: &str, writer: &str) -> PathBuf {
    dir.join(format!("{}.{}.redb", file_safe(table), file_safe(writer)))
}

/// `s` with every character but letters, digits, `.`, `_` and `-` turned into `_`.
fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect()
}

/// Removes the index files of `table` under `dir` left by writers named by a process id
/// (`…-pid<N>`) whose process is gone (Linux: no `/proc/<N>`).
pub fn sweep_dead(dir: &Path, table: &str) {
    let prefix = format!("{}.", file_safe(table));
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let pid = name
            .strip_prefix(&prefix)
            .and_then(|w| w.strip_suffix(".redb"))
            .and_then(|w| w.rsplit_once("-pid"))
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && Path::new("/proc/self").exists()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rows<'a> = Vec<(&'a [u8], u64)>;

    fn upd(files: Vec<(&str, Rows<'_>)>) -> IndexUpdate {
        IndexUpdate {
            files: files
                .into_iter()
                .map(|(p, rows)| {
                    (
                        p.to_string(),
                        rows.into_iter().map(|(k, r)| (k.to_vec(), r)).collect(),
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn entries_survive_reopening_and_a_foreign_index_starts_over() {
        let dir = std::env::temp_dir().join(format!("binlake-ki-{}", uuid::Uuid::new_v4()));
        let path = index_path(&dir, "db.t", "run");
        {
            let mut ix = KeyIndex::open(&path, "table-1", 1 << 20).unwrap();
            ix.apply(upd(vec![("a.parquet", vec![(b"k1", 0), (b"k2", 1)])]))
                .await
                .unwrap();
            ix.apply(upd(vec![("b.parquet", vec![(b"k2", 0)])]))
                .await
                .unwrap();
            ix.apply(IndexUpdate {
                removed: vec![b"k1".to_vec()],
                dropped: vec!["a.parquet".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let mut ix = KeyIndex::open(&path, "table-1", 1 << 20).unwrap();
        let keys = ["k1", "k2", "k3"].map(|k| k.as_bytes().to_vec()).to_vec();
        let got = ix.get_many(keys).await.unwrap();
        assert_eq!(got[0], None);
        let k2 = got[1].unwrap();
        assert_eq!(
            (ix.path_of(k2.file).map(|p| &**p), k2.row),
            (Some("b.parquet"), 0)
        );
        assert_eq!(got[2], None);
        assert!(ix.has_file("b.parquet") && !ix.has_file("a.parquet"));
        drop(ix);
        let mut ix = KeyIndex::open(&path, "table-2", 1 << 20).unwrap();
        assert_eq!(ix.get_many(vec![b"k2".to_vec()]).await.unwrap()[0], None);
        assert_eq!(ix.indexed_files().count(), 0);
        drop(ix);
        // A damaged file is rebuilt, not trusted.
        std::fs::write(&path, b"not a redb file").unwrap();
        let ix = KeyIndex::open(&path, "table-2", 1 << 20).unwrap();
        assert_eq!(ix.indexed_files().count(), 0);
        drop(ix);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_index_dropped_while_its_update_runs_can_be_opened_again_with_the_update() {
        let dir = std::env::temp_dir().join(format!("binlake-ki-{}", uuid::Uuid::new_v4()));
        let path = index_path(&dir, "db.t", "run");
        let keys: Vec<Vec<u8>> = (0..200_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        for round in 0..3u64 {
            let mut ix = KeyIndex::open(&path, "t", 1 << 20).unwrap();
            let rows = keys.iter().map(|k| (k.clone(), round)).collect();
            ix.apply(IndexUpdate {
                files: vec![(format!("f{round}.parquet"), rows)],
                ..Default::default()
            })
            .await
            .unwrap();
            // Dropped with the transaction running; opening it again must find it done.
            drop(ix);
            let mut ix = KeyIndex::open(&path, "t", 1 << 20).unwrap();
            let got = ix.get_many(vec![keys[199_999].clone()]).await.unwrap()[0].unwrap();
            assert_eq!(
                (ix.path_of(got.file).map(|p| p.to_string()), got.row),
                (Some(format!("f{round}.parquet")), round)
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_writer_on_the_same_file_is_told_what_to_do() {
        let dir = std::env::temp_dir().join(format!("binlake-ki-{}", uuid::Uuid::new_v4()));
        let path = index_path(&dir, "db.t", "run");
        let _a = KeyIndex::open(&path, "t", 1 << 20).unwrap();
        let e = KeyIndex::open(&path, "t", 1 << 20).unwrap_err().to_string();
        assert!(e.contains("index_dir"), "{e}");
    }

    #[test]
    fn locations_pack_and_unpack() {
        let l = Loc {
            file: MAX_FILE_ID,
            row: (1 << ROW_BITS) - 1,
        };
        assert_eq!(Loc::unpack(l.pack()), l);
    }

    #[test]
    fn indexes_of_writers_whose_process_is_gone_are_swept() {
        let dir = std::env::temp_dir().join(format!("binlake-ki-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let me = format!("materialize-pid{}", std::process::id());
        // Above the kernel's pid_max: no such process.
        let files = [
            index_path(&dir, "db.t", "materialize-pid4999999"),
            index_path(&dir, "db.t", &me),
            index_path(&dir, "db.t", "run"),
            index_path(&dir, "db.other", "materialize-pid4999999"),
        ];
        for f in &files {
            std::fs::write(f, b"").unwrap();
        }
        sweep_dead(&dir, "db.t");
        let left: Vec<bool> = files.iter().map(|f| f.exists()).collect();
        assert_eq!(left, [false, true, true, true]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
