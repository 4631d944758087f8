//! Where the lake lives: the root URL, object-store options, Delta tables under it.
//!
//! A plain path is a local folder (created when missing). `s3://`, `gs://` and `az://`
//! URLs use `object_store`'s clients; binlake registers them with delta-rs itself (with
//! delta-rs' default log store, whose commits are conditional puts, which S3, GCS and
//! Azure all support), instead of pulling in delta-rs' per-cloud crates and their SDKs.

use std::collections::HashMap;
use std::sync::{Arc, Once};

use deltalake::DeltaTable;
use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::config::LakeConfig;
use crate::{Error, Result};

/// The schemes binlake opens through `object_store` directly.
const CLOUD_SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "abfs", "abfss"];

/// The root location as a URL (a local path becomes `file://`, made absolute).
pub fn root_url(root: &str) -> Result<Url> {
    let err = |reason: String| Error::Config {
        location: root.to_string(),
        reason,
    };
    if root.contains("://") {
        let mut url = Url::parse(root).map_err(|e| err(format!("not a valid URL: {e}")))?;
        if url.scheme() != "file" && !CLOUD_SCHEMES.contains(&url.scheme()) {
            return Err(err(format!(
                "unsupported scheme {}: use a local folder, file://, s3://, gs:// or az://",
                url.scheme()
            )));
        }
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        Ok(url)
    } else {
        let path = std::path::Path::new(root);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| err(format!("cannot resolve a relative path: {e}")))?
                .join(path)
        };
        Url::from_directory_path(&abs).map_err(|_| err("not a usable folder path".into()))
    }
}

#[derive(Debug, Default)]
struct CloudFactory;

impl ObjectStoreFactory for CloudFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> deltalake::DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = object_store::parse_url_opts(url, &config.raw)?;
        Ok((Arc::from(store), path))
    }
}

impl LogStoreFactory for CloudFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_cloud_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let factory = Arc::new(CloudFactory);
        for scheme in CLOUD_SCHEMES {
            if let Ok(url) = Url::parse(&format!("{scheme}://")) {
                object_store_factories().insert(url.clone(), factory.clone());
                logstore_factories().insert(url, factory.clone());
            }
        }
    });
}

/// Which of a table's two Delta tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// The append-only change log.
    Changes,
    /// The current state.
    Replica,
}

impl TableKind {
    /// The folder name under the table's folder.
    pub fn dir(self) -> &'static str {
        match self {
            TableKind::Changes => "changes",
            TableKind::Replica => "replica",
        }
    }
}

/// The lake: a root location and how to reach it.
#[derive(Clone)]
pub struct Lake {
    root: Url,
    options: HashMap<String, String>,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    cfg: LakeConfig,
    writer: String,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("root", &self.root.as_str())
            .finish_non_exhaustive()
    }
}

impl Lake {
    /// Opens the lake at `cfg.root` (a local folder is created).
    pub fn open(cfg: &LakeConfig) -> Result<Lake> {
        register_cloud_stores();
        let root = root_url(&cfg.root)?;
        if root.scheme() == "file"
            && let Ok(p) = root.to_file_path()
        {
            {
                std::fs::create_dir_all(&p).map_err(|e| Error::Config {
                    location: cfg.root.clone(),
                    reason: format!("cannot create the folder: {e}"),
                })?;
            }
        }
        let options: HashMap<String, String> = cfg
            .storage
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect();
        let (store, prefix) =
            object_store::parse_url_opts(&root, &options).map_err(|e| Error::Config {
                location: cfg.root.clone(),
                reason: e.to_string(),
            })?;
        Ok(Lake {
            root,
            options,
            store: Arc::from(store),
            prefix,
            cfg: cfg.clone(),
            writer: "binlake".to_string(),
        })
    }

    /// The settings it was opened with.
    pub fn config(&self) -> &LakeConfig {
        &self.cfg
    }

    /// The root URL.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// This lake handle as used by `writer` (`run`, a materialize worker's instance id):
    /// names its key index files apart from other writers'.
    pub fn with_writer(mut self, writer: impl Into<String>) -> Lake {
        self.writer = writer.into();
        self
    }

    /// The writer named by [`Lake::with_writer`].
    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// The local folder of merge-on-read key indexes ([`LakeConfig::index_dir`]).
    pub fn index_dir(&self) -> std::path::PathBuf {
        if let Some(d) = &self.cfg.index_dir {
            return std::path::PathBuf::from(d);
        }
        if self.root.scheme() == "file"
            && let Ok(p) = self.root.to_file_path()
        {
            return p.join("_binlake").join("index");
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache"))
            })
            .unwrap_or_else(std::env::temp_dir);
        // One folder per lake root, named by a hash of its URL.
        let h = self
            .root
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
        cache
            .join("binlake")
            .join("index")
            .join(format!("{h:016x}"))
    }

    /// Object-store options for delta-rs and DataFusion.
    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// The URL of one of a table's Delta tables.
    pub fn table_url(&self, db: &str, table: &str, kind: TableKind) -> Result<Url> {
        self.root
            .join(&format!("{}/{}/{}/", enc(db), enc(table), kind.dir()))
            .map_err(|e| Error::Config {
                location: self.root.to_string(),
                reason: e.to_string(),
            })
    }

    /// A Delta table handle for `url` (not loaded).
    pub fn delta(&self, url: &Url) -> Result<DeltaTable> {
        deltalake::DeltaTableBuilder::from_url(url.clone())
            .map(|b| b.with_storage_options(self.options.clone()))
            .and_then(|b| b.build())
            .map_err(|e| Error::delta(url.as_str(), "open", e, false))
    }

    /// Loads the Delta table at `url`; `None` when there is none yet.
    pub async fn load(&self, url: &Url) -> Result<Option<DeltaTable>> {
        let log = Path::from_url_path(url.path())
            .map_err(|e| Error::storage(format!("path of {url}"), e))?
            .clone()
            .join("_delta_log");
        let listed = self
            .store
            .list_with_delimiter(Some(&log))
            .await
            .map_err(|e| Error::storage(format!("list {log}"), e))?;
        if listed.objects.is_empty() {
            return Ok(None);
        }
        let mut t = self.delta(url)?;
        match t.load().await {
            Ok(()) => Ok(Some(t)),
            Err(deltalake::DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(Error::delta(url.as_str(), "load", e, true)),
        }
    }

    /// Reads a JSON document under the root as a `T` (`None` when absent; an error naming
    /// the object when it is not a `T`).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, rel: &str) -> Result<Option<T>> {
        let path = self.path(rel);
        match self.store.get(&path).await {
            Ok(r) => {
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| Error::storage(format!("read {path}"), e))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| Error::Corrupt {
                        path: path.to_string(),
                        reason: e.to_string(),
                    })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::storage(format!("read {path}"), e)),
        }
    }

    /// The names of the objects directly under `rel` (a folder under the root), sorted.
    pub async fn list(&self, rel: &str) -> Result<Vec<String>> {
        let dir = self.path(rel);
        let listed = self
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| Error::storage(format!("list {dir}"), e))?;
        let mut names: Vec<String> = listed
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes an object under the root (gone already is fine).
    pub async fn delete(&self, rel: &str) -> Result<()> {
        let path = self.path(rel);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::storage(format!("delete {path}"), e)),
        }
    }

    /// Writes a JSON document under the root (replacing it).
    pub async fn put_json(&self, rel: &str, v: &serde_json::Value) -> Result<()> {
        let path = self.path(rel);
        let bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::storage("encode", e))?;
        self.store
            .put(&path, bytes.into())
            .await
            .map_err(|e| Error::storage(format!("write {path}"), e))?;
        Ok(())
    }

    fn path(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// Every `(db, table)` that has a replica or a change log, sorted.
    pub async fn tables(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let dbs = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| Error::storage(format!("list {}", self.root), e))?;
        for db in dbs.common_prefixes {
            let Some(db_name) = db.filename().map(dec) else {
                continue;
            };
            if db_name.starts_with('_') {
                continue;
            }
            let tables = self
                .store
                .list_with_delimiter(Some(&db))
                .await
                .map_err(|e| Error::storage(format!("list {db}"), e))?;
            for t in tables.common_prefixes {
                if let Some(name) = t.filename() {
                    out.push((db_name.clone(), dec(name)));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Database and table names as path segments: `/` and `%` escaped, everything else kept
/// (so folders read like the tables they hold).
fn enc(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

fn dec(seg: &str) -> String {
    seg.replace("%2F", "/").replace("%25", "%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_resolve() {
        assert_eq!(root_url("s3://b/p").unwrap().as_str(), "s3://b/p/");
        assert!(root_url("ftp://x/").is_err());
        assert!(
            root_url("/tmp/x")
                .unwrap()
                .as_str()
                .starts_with("file:///tmp/x")
        );
    }
}
