//! What `materialize`'s replicas hold everything up to: coverage records.
//!
//! A table's own commits say which changes it holds, not that nothing newer exists: an
//! idle table's last change may be hours old while the table is current. `run` knows
//! because it reads the source itself (its checkpoint). `materialize` learns it from
//! capture's position records (`<name>.offsets`), each committed in the same Kafka
//! transaction as the changes it covers:
//!
//! 1. The worker follows the committed position records. For the newest, `R`, it then
//!    asks the high watermark `H` (read_uncommitted) of each partition it holds. `R` was
//!    committed before the question, so each of its records in a partition was appended
//!    before it: below `H`.
//! 2. Once the worker's consumer position in a partition is at or past `H` (the position
//!    passes transaction markers and aborted records at the end of a partition) and the
//!    batches holding what it consumed below it are committed to the tables, the tables of
//!    that partition hold every change up to `R`. The worker writes that to its coverage
//!    record, `_binlake/materialize/<name>/coverage/<member>.json`.
//! 3. A table is covered up to `R` when every partition of its topic is (across the
//!    records of all workers: each holds a fact about the tables, which only grow, so the
//!    newest record of a partition wins whoever wrote it).
//!
//! What a covered table gains: `status` calls it current to `R`'s time (the heartbeat's,
//! when capture was idle, so an idle table is current to now), `applied_through` is `R`'s
//! position, and `binlake wait` / `/wait` answer from it. A table whose snapshot `R`
//! lists as unfinished is covered by position but current to no time, as under `run`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::store::Lake;

/// One partition's coverage: the tables of `topic` hold every change up to capture's
/// position record `resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionCoverage {
    /// The change topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// How many partitions the topic had.
    pub partitions: i32,
    /// Its table, `db.table`.
    pub table: String,
    /// Capture's resume position in the record (the form `binlake wait` compares).
    pub resume: String,
    /// Source commit time of the last transaction the record covers, µs since the epoch.
    pub source_ts_us: i64,
    /// The record was a heartbeat's: the source had nothing newer up to this time (µs
    /// since the epoch); 0 otherwise.
    #[serde(default)]
    pub caught_up_at_us: i64,
    /// When capture committed the record, µs since the epoch (orders records).
    pub committed_at_us: i64,
    /// The record lists the table as still being snapshotted.
    #[serde(default)]
    pub snapshot_pending: bool,
}

impl PartitionCoverage {
    /// The source time the partition's tables are current to (0: none).
    pub fn current_to_us(&self) -> i64 {
        if self.snapshot_pending {
            0
        } else {
            self.source_ts_us.max(self.caught_up_at_us)
        }
    }
}

/// A worker's coverage record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageFile {
    /// When the worker wrote it, µs since the epoch.
    pub written_at_us: i64,
    /// Its partitions.
    pub partitions: Vec<PartitionCoverage>,
}

fn folder(name: &str) -> String {
    format!("_binlake/materialize/{name}/coverage")
}

/// Writes worker `member`'s record.
pub async fn write(lake: &Lake, name: &str, member: &str, file: &CoverageFile) -> Result<()> {
    let v = serde_json::to_value(file).map_err(|e| crate::Error::storage("encode", e))?;
    lake.put_json(&format!("{}/{member}.json", folder(name)), &v)
        .await
}

/// Deletes the records of workers that wrote nothing for `max_age` (µs): workers gone
/// (a dynamic member's record has a name of its own per process). Their facts are old,
/// and live workers hold newer ones of the same partitions.
pub async fn remove_stale(lake: &Lake, name: &str, now_us: i64, max_age_us: i64) -> Result<()> {
    let dir = folder(name);
    for f in lake.list(&dir).await? {
        let path = format!("{dir}/{f}");
        if let Some(file) = lake.get_json::<CoverageFile>(&path).await?
            && now_us - file.written_at_us > max_age_us
        {
            lake.delete(&path).await?;
        }
    }
    Ok(())
}

/// The coverage every worker of `materialize` `name` recorded, merged.
pub async fn read_all(lake: &Lake, name: &str) -> Result<Coverage> {
    let dir = folder(name);
    let mut c = Coverage::default();
    for f in lake.list(&dir).await? {
        if let Some(file) = lake.get_json::<CoverageFile>(&format!("{dir}/{f}")).await? {
            c.merge(file.partitions);
        }
    }
    Ok(c)
}

/// Partitions' coverage, the newest of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    parts: HashMap<(String, i32), PartitionCoverage>,
}

impl Coverage {
    /// Takes `entries` where they are newer than what is known.
    pub fn merge(&mut self, entries: impl IntoIterator<Item = PartitionCoverage>) {
        for e in entries {
            let key = (e.topic.clone(), e.partition);
            match self.parts.get(&key) {
                Some(have) if have.committed_at_us >= e.committed_at_us => {}
                _ => {
                    self.parts.insert(key, e);
                }
            }
        }
    }

    /// What every partition of `table`'s topic is covered to: the oldest of them; `None`
    /// unless every partition of the topic has a record. (A table whose topic changed
    /// takes the topic of its newest record.)
    pub fn table(&self, table: &str) -> Option<&PartitionCoverage> {
        let newest = self
            .parts
            .values()
            .filter(|e| e.table == table)
            .max_by_key(|e| e.committed_at_us)?;
        let mut oldest = newest;
        for p in 0..newest.partitions {
            let e = self.parts.get(&(newest.topic.clone(), p))?;
            if e.committed_at_us < oldest.committed_at_us {
                oldest = e;
            }
        }
        Some(oldest)
    }

    /// The tables with a record.
    pub fn tables(&self) -> Vec<String> {
        let mut t: Vec<String> = self.parts.values().map(|e| e.table.clone()).collect();
        t.sort();
        t.dedup();
        t
    }

    /// Whether anything is recorded.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn part(topic: &str, p: i32, n: i32, at: i64) -> PartitionCoverage {
        PartitionCoverage {
            topic: topic.into(),
            partition: p,
            partitions: n,
            table: "db.t".into(),
            resume: format!("mariadb-gtid:0-1-{at}"),
            source_ts_us: at,
            caught_up_at_us: 0,
            committed_at_us: at,
            snapshot_pending: false,
        }
    }

    #[test]
    fn a_table_is_covered_to_its_oldest_partition_once_every_partition_is() {
        let mut c = Coverage::default();
        c.merge([part("x.db.t", 0, 3, 10), part("x.db.t", 1, 3, 20)]);
        assert_eq!(c.table("db.t"), None, "partition 2 has no record");
        c.merge([part("x.db.t", 2, 3, 30)]);
        assert_eq!(c.table("db.t").unwrap().committed_at_us, 10);
        // A newer record of a partition replaces it; an older one does not.
        c.merge([part("x.db.t", 0, 3, 40), part("x.db.t", 1, 3, 5)]);
        assert_eq!(c.table("db.t").unwrap().committed_at_us, 20);
        assert_eq!(c.table("db.other"), None);
    }

    #[test]
    fn a_table_still_being_snapshotted_is_current_to_no_time() {
        let mut p = part("x.db.t", 0, 1, 10);
        p.caught_up_at_us = 99;
        assert_eq!(p.current_to_us(), 99);
        p.snapshot_pending = true;
        assert_eq!(p.current_to_us(), 0);
    }
}
