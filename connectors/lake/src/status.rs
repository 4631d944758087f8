//! Freshness of every replica: what `binlake status` prints and `/status` serves.

use std::collections::BTreeMap;

use serde::Serialize;

use binlake_core::SnapshotProgress;

use crate::Result;
use crate::store::{Lake, TableKind};
use crate::table::{read_applied, row_count};

/// Where the whole pipeline stood when it last confirmed it had everything up to a time,
/// recorded in `_binlake/` by `run` and `materialize`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Checkpoint {
    /// The source resume position everything up to which is in every table.
    pub resume: Option<String>,
    /// Source commit time of the last transaction covered, µs since the epoch.
    pub source_ts_us: i64,
    /// When the pipeline last saw nothing newer on the source (caught up), µs since the
    /// epoch; 0 when it was not caught up.
    pub caught_up_at_us: i64,
    /// The progress of the snapshot in flight, if any.
    #[serde(default)]
    pub state: Option<SnapshotProgress>,
    /// The batch number of the last batch whose commits all completed.
    #[serde(default)]
    pub batch: i64,
    /// Where the source's schema history as of `resume` is (a path under the lake root),
    /// when the writer keeps one. Each version is a new file, written before the
    /// checkpoint that names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_history: Option<String>,
    /// The last snapshot request (a file name in the run's signal folder) acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals_done: Option<String>,
    /// The highest position of a streamed change the checkpoint covers (carried over
    /// batches without one): a table whose own record is past it committed after the
    /// checkpoint (a crash between the two), and holds the replayed changes up to there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streamed: Option<crate::table::StreamPosition>,
    /// The `txn` app id the writer records in each table's commits, and per table
    /// (`db.table`) the last version of it whose replica commit the checkpoint covers: a
    /// replica whose own version is lower lacks commits the checkpoint counts on, so
    /// `status` does not call it current to the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// See [`Checkpoint::app_id`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, i64>,
}

impl Checkpoint {
    /// The tables (`db.table`) the snapshot in progress has left to read: incomplete, so
    /// current to no time.
    pub fn snapshot_pending(&self) -> Vec<String> {
        self.state
            .as_ref()
            .map(|s| s.tables.clone())
            .unwrap_or_default()
    }
}

/// One table's freshness.
#[derive(Debug, Clone, Serialize)]
pub struct TableStatus {
    /// `db.table`.
    pub table: String,
    /// Rows in the replica (from file statistics).
    pub rows: Option<u64>,
    /// Rows in the change log.
    pub changes: Option<u64>,
    /// Position of the last change applied to the replica.
    pub position: Option<String>,
    /// Source commit time of the last change applied, RFC 3339.
    pub last_commit: Option<String>,
    /// The replica holds every change up to this source time, RFC 3339.
    pub current_to: Option<String>,
    /// Seconds between now and `current_to`; `None` when unknown.
    pub lag_seconds: Option<f64>,
    /// The source position (GTIDs, as `binlake wait --gtid` takes them) the replica holds
    /// every transaction up to: the pipeline's checkpoint when it covers the table, else
    /// the table's own last batch (`binlake run`), or for `materialize` the capture
    /// position its workers confirmed the table holds everything up to.
    pub applied_through: Option<String>,
    /// A snapshot of the table is being read (the first one, one requested, or one after a
    /// DDL that changed its rows): the replica is incomplete, so it is current to no time
    /// (`current_to` and `lag_seconds` are `None`) until the snapshot is done.
    pub snapshot_pending: bool,
    /// The replica lacks commits the pipeline's checkpoint says it made: it is current
    /// only to its own last change, and something outside binlake changed it (a restored
    /// or rolled-back Delta log): rebuild it (`binlake snapshot --table`).
    pub behind_checkpoint: bool,
    /// The config no longer captures the table (`source.include` / `exclude`): its
    /// replica is what was kept before, current to no time.
    pub excluded: bool,
}

impl TableStatus {
    /// Marks the table as not captured by the config: current to no time.
    pub fn mark_excluded(&mut self) {
        self.excluded = true;
        self.current_to = None;
        self.lag_seconds = None;
        self.applied_through = None;
    }
}

fn rfc3339(us: i64) -> Option<String> {
    binlake_core::temporal::format_utc_timestamp(us, 3)
}

/// Every table's status. `checkpoint` is the pipeline's, when there is one; `coverage`
/// what `materialize` workers recorded (see [`crate::coverage`]).
pub async fn status(
    lake: &Lake,
    checkpoint: Option<&Checkpoint>,
    coverage: Option<&crate::coverage::Coverage>,
) -> Result<Vec<TableStatus>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let mut out = Vec::new();
    for (db, table) in lake.tables().await? {
        let replica = match lake
            .load(&lake.table_url(&db, &table, TableKind::Replica)?)
            .await?
        {
            Some(t) => t,
            None => continue,
        };
        let changes = lake
            .load(&lake.table_url(&db, &table, TableKind::Changes)?)
            .await?;
        let name = format!("{db}.{table}");
        let covered = checkpoint.and_then(|cp| Some((cp.app_id.clone()?, *cp.tables.get(&name)?)));
        let apps: Vec<String> = covered.iter().map(|(a, _)| a.clone()).collect();
        let applied = read_applied(&replica, &apps).await?;
        // The replica lacks a commit the checkpoint counts on (its Delta log was rolled
        // back or restored, or a write was lost): it is current only to its own last change.
        let behind_checkpoint = covered
            .as_ref()
            .is_some_and(|(app, v)| applied.txns.get(app).is_none_or(|have| have < v));
        let f = applied.freshness.unwrap_or_default();
        // Pending as the checkpoint lists it (a table's own record is written only with
        // its changes, so a last chunk with no rows would leave it pending for good); the
        // table's own last commit without a checkpoint.
        let snapshot_pending = match checkpoint {
            Some(cp) => cp.snapshot_pending().contains(&name),
            None => f.snapshot.as_ref().is_some_and(|s| s.pending),
        };
        // The table is current to its last change, or to the pipeline's checkpoint when
        // the pipeline covered it (every table holds everything before the checkpoint).
        let mut current = f.source_ts_us;
        if let Some(cp) = checkpoint.filter(|_| !behind_checkpoint) {
            current = current.max(cp.source_ts_us);
            if cp.caught_up_at_us > 0 {
                current = current.max(cp.caught_up_at_us);
            }
        }
        // `materialize`: the table holds everything up to the capture position its
        // workers confirmed (an idle table is then current to the heartbeat's time).
        let covered = coverage.and_then(|c| c.table(&name));
        if let Some(c) = covered {
            current = current.max(c.current_to_us());
        }
        if snapshot_pending {
            current = 0;
        }
        let applied_through =
            match checkpoint.filter(|_| !behind_checkpoint && !snapshot_pending) {
                Some(cp) => cp.resume.clone().or(f.resume.clone()),
                None if snapshot_pending => None,
                None => f.resume.clone(),
            }
            .or_else(|| {
                covered
                    .filter(|c| !snapshot_pending && !c.snapshot_pending)
                    .map(|c| c.resume.clone())
            });
        out.push(TableStatus {
            table: name,
            rows: row_count(&replica),
            changes: changes.as_ref().and_then(row_count),
            position: f.position,
            last_commit: (f.source_ts_us > 0)
                .then(|| rfc3339(f.source_ts_us))
                .flatten(),
            current_to: (current > 0).then(|| rfc3339(current)).flatten(),
            lag_seconds: (current > 0).then(|| ((now - current).max(0) as f64) / 1e6),
            applied_through,
            snapshot_pending,
            behind_checkpoint,
            excluded: false,
        });
    }
    Ok(out)
}
