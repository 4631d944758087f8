//! `materialize`'s side of coverage: claims on capture's position records, settled when
//! the worker's committed tables hold what the records cover (the protocol and its
//! argument are in `binlake_lake::coverage`).
//!
//! The worker loop calls [`Claims::step`] after every round of messages (and at least
//! every [`TICK`] when idle), giving it the positions below which everything consumed is
//! committed to the tables ([`Claims::settled`]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use binlake_kafka::capture::PositionFollower;
use binlake_kafka::{ChangeConsumer, StoredPosition};
use binlake_lake::Lake;
use binlake_lake::coverage::{Coverage, CoverageFile, PartitionCoverage};

use crate::materialize::MaterializeError;

/// How often an idle worker looks at its claims.
pub const TICK: Duration = Duration::from_millis(200);

/// How often a worker writes its coverage record at most (object stores bill writes).
const WRITE_EVERY: Duration = Duration::from_secs(1);

/// Records of workers silent this long are removed when a worker starts.
const STALE_US: i64 = 3_600_000_000;

type Part = (String, i32);

/// A position record and the high watermark (with the topic's partition count) of each
/// partition the worker held when it saw the record.
struct Claim {
    record: StoredPosition,
    ends: HashMap<Part, (i64, i32)>,
}

/// The claims of one worker.
pub struct Claims {
    follower: PositionFollower,
    name: String,
    member: String,
    /// `committed_ms` of the newest record claimed.
    claimed_ms: i64,
    /// When the last claim was made: at most one per [`TICK`] (each asks the brokers for
    /// high watermarks, while capture may commit many records a second).
    claimed_at: Instant,
    pending: VecDeque<Claim>,
    /// Per partition, the offset below which everything consumed is in the tables.
    settled: HashMap<Part, i64>,
    /// What this worker found its partitions' tables hold.
    mine: HashMap<Part, PartitionCoverage>,
    tables: HashMap<String, Option<String>>,
    dirty: bool,
    written: Instant,
    /// Everything known (this worker's and the others' records), for `/wait`.
    merged: Coverage,
    read_others: Instant,
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Claims {
    /// Starts following capture `name`'s position records; removes the records of
    /// workers long gone.
    pub async fn start(
        kafka: &binlake_kafka::KafkaConfig,
        lake: &Lake,
        name: &str,
        member: &str,
    ) -> Result<Claims, MaterializeError> {
        binlake_lake::coverage::remove_stale(lake, name, now_us(), STALE_US).await?;
        Ok(Claims {
            follower: PositionFollower::new(kafka, name)?,
            name: name.to_string(),
            member: member.to_string(),
            claimed_ms: 0,
            claimed_at: Instant::now() - TICK,
            pending: VecDeque::new(),
            settled: HashMap::new(),
            mine: HashMap::new(),
            tables: HashMap::new(),
            dirty: false,
            written: Instant::now(),
            merged: Coverage::default(),
            read_others: Instant::now() - Duration::from_secs(60),
        })
    }

    /// Everything consumed below these offsets is committed to the tables.
    pub fn settled(&mut self, positions: impl IntoIterator<Item = (String, i32, i64)>) {
        for (t, p, o) in positions {
            let e = self.settled.entry((t, p)).or_insert(o);
            *e = (*e).max(o);
        }
    }

    /// A partition is not this worker's any more: what it consumed there is not its to
    /// claim (the facts already recorded stay true).
    pub fn revoked(&mut self, topic: &str, partition: i32) {
        self.settled.remove(&(topic.to_string(), partition));
        for c in &mut self.pending {
            c.ends.remove(&(topic.to_string(), partition));
        }
    }

    /// Claims the newest position record, settles what the tables now hold, and writes
    /// the worker's record when it changed.
    pub async fn step(
        &mut self,
        consumer: &mut ChangeConsumer,
        lake: &Lake,
    ) -> Result<(), MaterializeError> {
        let newest = self.follower.latest()?.cloned();
        if let Some(record) = newest
            .filter(|r| r.committed_ms > self.claimed_ms)
            .filter(|_| self.claimed_at.elapsed() >= TICK)
        {
            // Read the record first, then the ends: every record of its transaction was
            // appended before it was committed, so it lies below the ends asked now.
            let parts: Vec<Part> = consumer
                .positions()?
                .into_iter()
                .map(|(t, p, _)| (t, p))
                .collect();
            if !parts.is_empty() {
                let ends = consumer.end_offsets(&parts).await?;
                self.claimed_ms = record.committed_ms;
                self.claimed_at = Instant::now();
                self.pending.push_back(Claim { record, ends });
                // Newer claims cover more; the oldest go first when too many wait.
                while self.pending.len() > 8 {
                    self.pending.pop_front();
                }
            }
        }
        let mut settled_now: Vec<(Part, i32, StoredPosition)> = Vec::new();
        for claim in &mut self.pending {
            claim.ends.retain(|part, (end, partitions)| {
                let done = self.settled.get(part).is_some_and(|s| s >= end);
                if done {
                    settled_now.push((part.clone(), *partitions, claim.record.clone()));
                }
                !done
            });
        }
        while self.pending.front().is_some_and(|c| c.ends.is_empty()) {
            self.pending.pop_front();
        }
        let mut changed = false;
        for (part, partitions, record) in settled_now {
            let Some(table) = self.table_of(consumer, &part.0).await? else {
                continue;
            };
            let pending = record
                .snapshot
                .as_ref()
                .is_some_and(|s| s.tables.contains(&table));
            let entry = PartitionCoverage {
                topic: part.0.clone(),
                partition: part.1,
                partitions,
                table,
                resume: record.position.clone(),
                source_ts_us: record.source_ts_ms * 1000,
                caught_up_at_us: record.caught_up_ms.unwrap_or(0) * 1000,
                committed_at_us: record.committed_ms * 1000,
                snapshot_pending: pending,
            };
            if self
                .mine
                .get(&part)
                .is_none_or(|m| m.committed_at_us < entry.committed_at_us)
            {
                self.mine.insert(part, entry);
                self.dirty = true;
                changed = true;
            }
        }
        if changed {
            // This process's waiters learn at once; the record (for other processes and
            // `status`) is written at most once a second.
            self.merged.merge(self.mine.values().cloned());
            crate::wait::coverage_changed(&self.merged);
        }
        if self.dirty && self.written.elapsed() >= WRITE_EVERY {
            let file = CoverageFile {
                written_at_us: now_us(),
                partitions: self.mine.values().cloned().collect(),
            };
            binlake_lake::coverage::write(lake, &self.name, &self.member, &file).await?;
            self.dirty = false;
            self.written = Instant::now();
        }
        // Other workers' records, for `/wait` on tables whose partitions they hold: read
        // only while a request waits (a listing and a read per worker on an object store).
        if crate::wait::has_waiters() && self.read_others.elapsed() >= Duration::from_secs(1) {
            let mut all = binlake_lake::coverage::read_all(lake, &self.name).await?;
            all.merge(self.mine.values().cloned());
            if all != self.merged {
                self.merged = all;
                crate::wait::coverage_changed(&self.merged);
            }
            self.read_others = Instant::now();
        }
        Ok(())
    }

    async fn table_of(
        &mut self,
        consumer: &mut ChangeConsumer,
        topic: &str,
    ) -> Result<Option<String>, MaterializeError> {
        if let Some(t) = self.tables.get(topic) {
            return Ok(t.clone());
        }
        let t = consumer
            .table_of(topic)
            .await?
            .map(|(db, table)| format!("{db}.{table}"));
        self.tables.insert(topic.to_string(), t.clone());
        Ok(t)
    }
}
