//! The `[lake]` section: where replicas and change logs live and how they are written.

use std::collections::BTreeMap;
use std::time::Duration;

use binlake_core::{Problems, Secret};
use serde::Deserialize;

fn default_root() -> String {
    "./binlake-data".to_string()
}
fn default_buckets() -> u32 {
    16
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_max_batch_rows() -> usize {
    500_000
}
fn default_max_batch_bytes() -> usize {
    256 << 20
}
fn default_maintenance_interval() -> Duration {
    Duration::from_secs(600)
}
fn default_vacuum_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_compact_min_files() -> usize {
    32
}
fn default_index_cache_mb() -> usize {
    64
}
fn default_max_deleted_fraction() -> f64 {
    0.2
}

/// How a replica is written ([`LakeConfig::replica_mode`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaMode {
    /// A batch rewrites the key buckets it touches (every reader reads it).
    #[default]
    CopyOnWrite,
    /// A batch appends its new rows and marks the rows they replace deleted with Delta
    /// deletion vectors, found through a key index: a change costs the same whatever the
    /// table's size. Readers must support the `deletionVectors` table feature.
    MergeOnRead,
}

impl ReplicaMode {
    /// The name used in configs and table properties.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaMode::CopyOnWrite => "copy_on_write",
            ReplicaMode::MergeOnRead => "merge_on_read",
        }
    }
}

/// The `[lake]` section of the config.
///
/// ```toml
/// [lake]
/// root = "s3://analytics/binlake"    # or a local folder, gs://…, az://…
/// [lake.storage]                     # object_store options, passed through
/// aws_endpoint = "http://minio:9000"
/// aws_access_key_id = "${S3_KEY}"
/// aws_secret_access_key = "${S3_SECRET}"
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// Where the tables live: a local folder (the default, `./binlake-data`) or an
    /// object-store URL (`s3://bucket/prefix`, `gs://…`, `az://…`).
    #[serde(default = "default_root")]
    pub root: String,
    /// Object-store options (`aws_endpoint`, `aws_region`, `aws_access_key_id`,
    /// `aws_secret_access_key`, `aws_allow_http`, `google_service_account`,
    /// `azure_storage_account_name`, …), passed to the store unchanged. Values are treated
    /// as secrets.
    #[serde(default)]
    pub storage: BTreeMap<String, Secret>,
    /// Key buckets of a new replica: each bucket is one Parquet file, rewritten when a
    /// batch changes one of its keys. More buckets, less rewriting per small batch; fixed
    /// when the replica is created.
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// A batch is committed at most this long after its first change (freshness bound).
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// A batch is committed when it holds this many changes.
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// A batch is committed when its changes hold this many bytes (memory bound). `run`
    /// ends a batch at the first source transaction boundary after half of it, and
    /// commits a transaction that alone fills it in parts.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Whether change-log rows of updates also carry the before-image, as
    /// `__before_<column>` columns.
    #[serde(default)]
    pub before_images: bool,
    /// How often maintenance (compaction of the change log's small files, checkpoints,
    /// vacuum) runs; `0s` turns it off.
    #[serde(default = "default_maintenance_interval", with = "humantime_serde")]
    pub maintenance_interval: Duration,
    /// Files no longer in a table are deleted when older than this.
    #[serde(default = "default_vacuum_retention", with = "humantime_serde")]
    pub vacuum_retention: Duration,
    /// A change-log date partition is compacted when it has at least this many files.
    #[serde(default = "default_compact_min_files")]
    pub compact_min_files: usize,
    /// How replicas are written: `copy_on_write` (default) or `merge_on_read`, which
    /// also switches existing copy-on-write replicas in place; a merge-on-read replica
    /// stays so.
    #[serde(default)]
    pub replica_mode: ReplicaMode,
    /// Local folder of the key indexes of merge-on-read replicas (one file per table and
    /// writer; a cache, rebuilt from the table when missing). Default: `_binlake/index`
    /// under a local `root`, else `index` under binlake's cache folder
    /// (`$XDG_CACHE_HOME/binlake` or `~/.cache/binlake`).
    #[serde(default)]
    pub index_dir: Option<String>,
    /// Page cache of each key index, in MiB: what an index holds in memory, whatever the
    /// table's size.
    #[serde(default = "default_index_cache_mb")]
    pub index_cache_mb: usize,
    /// Merge-on-read maintenance rewrites a file (without its deleted rows) once more than
    /// this fraction of its rows is deleted, and merges small files; readers then never
    /// skip more than about this fraction of what they read. Each maintenance pass
    /// rewrites at most `max_batch_bytes` of files.
    #[serde(default = "default_max_deleted_fraction")]
    pub max_deleted_fraction: f64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        LakeConfig {
            root: default_root(),
            storage: BTreeMap::new(),
            buckets: default_buckets(),
            flush_interval: default_flush_interval(),
            max_batch_rows: default_max_batch_rows(),
            max_batch_bytes: default_max_batch_bytes(),
            before_images: false,
            maintenance_interval: default_maintenance_interval(),
            vacuum_retention: default_vacuum_retention(),
            compact_min_files: default_compact_min_files(),
            replica_mode: ReplicaMode::default(),
            index_dir: None,
            index_cache_mb: default_index_cache_mb(),
            max_deleted_fraction: default_max_deleted_fraction(),
        }
    }
}

impl std::fmt::Debug for LakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeConfig")
            .field("root", &self.root)
            .field("storage", &self.storage.keys().collect::<Vec<_>>())
            .field("buckets", &self.buckets)
            .field("flush_interval", &self.flush_interval)
            .field("max_batch_rows", &self.max_batch_rows)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("before_images", &self.before_images)
            .field("replica_mode", &self.replica_mode)
            .finish_non_exhaustive()
    }
}

impl LakeConfig {
    /// Checks values serde cannot, recording each problem under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        if self.root.trim().is_empty() {
            problems.push(path, "root", "must name a folder or an object-store URL");
        } else if let Err(e) = crate::store::root_url(&self.root) {
            problems.push(path, "root", e.to_string());
        }
        problems.check_range(path, "buckets", self.buckets, 1..=4096, "");
        problems.check_range(
            path,
            "max_batch_rows",
            self.max_batch_rows,
            1..=100_000_000,
            "",
        );
        problems.check_range(
            path,
            "max_batch_bytes",
            self.max_batch_bytes,
            1 << 20..=64 << 30,
            "1 MiB to 64 GiB",
        );
        problems.check_range(
            path,
            "flush_interval",
            self.flush_interval,
            Duration::from_millis(10)..=Duration::from_secs(3600),
            "",
        );
        if !self.maintenance_interval.is_zero() {
            problems.check_range(
                path,
                "maintenance_interval",
                self.maintenance_interval,
                Duration::from_secs(1)..=Duration::from_secs(30 * 86_400),
                "or 0s to turn maintenance off",
            );
        }
        problems.check_range(
            path,
            "vacuum_retention",
            self.vacuum_retention,
            Duration::ZERO..=Duration::from_secs(3650 * 86_400),
            "",
        );
        problems.check_range(path, "index_cache_mb", self.index_cache_mb, 1..=65_536, "");
        problems.check_range(
            path,
            "compact_min_files",
            self.compact_min_files,
            2..=100_000,
            "",
        );
    }
}
