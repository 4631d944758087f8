//! `binlake materialize`: Kafka change topics into the lake, exactly once.
//!
//! A consumer-group worker (`binlake_kafka::ChangeConsumer`); several workers with the
//! same group share the topics' partitions. Changes are buffered per table and applied
//! (`binlake_lake::TableSink`) when the batch reaches `lake.max_batch_rows` or
//! `lake.max_batch_bytes`, or `lake.flush_interval` after its first change. Each Delta
//! commit records, as `txn` actions, the last offset it holds of every topic-partition
//! (app id `kafka:<topic>:<partition>`).
//!
//! # Exactly once
//!
//! When a partition is assigned, the worker seeks it to the offset after the lower of what
//! the table's change log and replica record, and drops, per Delta table, messages the
//! table already holds. Buffered changes of a revoked partition are dropped (the new owner
//! reads them again). A commit that conflicts with another worker's (a rebalance race)
//! fails; the worker then restarts from what the tables record.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use binlake_core::Flavor;
use binlake_kafka::{Assignment, ChangeConsumer};
use binlake_lake::table::{Change, txn_version};
use binlake_lake::{Lake, Progress, TableSink};
use serde::Deserialize;
use tokio::sync::watch;

use crate::config::Config;

/// The `[materialize]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterializeConfig {
    /// The consumer group of the workers (default `binlake-materialize-<name>`). Workers
    /// with the same group share the partitions.
    #[serde(default)]
    pub group: Option<String>,
}

/// Why materialize stopped.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    /// From Kafka.
    #[error(transparent)]
    Kafka(#[from] binlake_kafka::Error),
    /// From the lake.
    #[error(transparent)]
    Lake(#[from] binlake_lake::Error),
    /// The configuration lacks something.
    #[error("{0}")]
    Config(String),
}

impl MaterializeError {
    fn is_transient(&self) -> bool {
        match self {
            MaterializeError::Kafka(e) => e.is_transient(),
            MaterializeError::Lake(e) => e.is_transient(),
            MaterializeError::Config(_) => false,
        }
    }
}

/// The `txn` app id of a topic-partition.
pub fn app_id(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}:{partition}")
}

/// Runs until `shutdown` turns true; restarts from what the tables record on transient
/// errors.
pub async fn run(
    cfg: &Config,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), MaterializeError> {
    let mut backoff = Duration::from_millis(500);
    loop {
        match run_once(cfg, &mut shutdown).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() && !*shutdown.borrow() => {
                crate::telemetry::error(true);
                tracing::warn!(error = %e, retry_in = ?backoff, "materialize interrupted, restarting from what the tables record");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => {
                crate::telemetry::error(false);
                return Err(e);
            }
        }
    }
}

/// What [`Worker::accept`] did with a message.
#[derive(Debug, PartialEq, Eq)]
enum Accepted {
    /// Buffered (or a tombstone, skipped).
    Taken,
    /// The partition was sought to where its tables end; the message was dropped.
    Seeked,
}

struct Worker {
    lake: Lake,
    name: String,
    consumer: ChangeConsumer,
    sinks: HashMap<Arc<str>, TableSink>,
    /// Partitions whose start was checked since they were assigned.
    started: HashSet<(Arc<str>, i32)>,
    buffer: HashMap<Arc<str>, Vec<Change>>,
    rows: usize,
    bytes: usize,
    first_at: Option<Instant>,
    applied_rows: u64,
    maintained: Instant,
}

async fn run_once(
    cfg: &Config,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), MaterializeError> {
    let kafka = cfg.kafka.as_ref().ok_or_else(|| {
        MaterializeError::Config(
            "materialize needs a [kafka] section with bootstrap_servers".into(),
        )
    })?;
    let lake = Lake::open(&cfg.lake)?;
    let group = cfg
        .materialize
        .group
        .clone()
        .unwrap_or_else(|| format!("binlake-materialize-{}", cfg.name));
    let consumer = ChangeConsumer::open(
        kafka,
        &cfg.name,
        &group,
        cfg.encoding.options(&cfg.name, Flavor::Mysql),
    )?;
    tracing::info!(group = %group, root = %lake.root(), "materializing changes");
    crate::telemetry::set_ready(true);
    let mut w = Worker {
        lake,
        name: cfg.name.clone(),
        consumer,
        sinks: HashMap::new(),
        started: HashSet::new(),
        buffer: HashMap::new(),
        rows: 0,
        bytes: 0,
        first_at: None,
        applied_rows: 0,
        maintained: Instant::now(),
    };
    let lc = cfg.lake.clone();
    loop {
        let deadline = w.first_at.map(|t| t + lc.flush_interval);
        tokio::select! {
            // Shutting down may drop a recv_many in flight: the messages it held come
            // after everything buffered in their partitions, and nothing is committed
            // after this flush, so they are read again on the next start.
            _ = shutdown.changed() => {
                tracing::info!("shutting down: committing the batch in flight");
                w.flush().await?;
                tracing::info!(rows = w.applied_rows, "materialize stopped cleanly");
                return Ok(());
            }
            // Waits for messages until the batch's deadline (an empty answer then); the
            // deadline is not a competing branch: a dropped recv_many loses messages.
            ms = w.consumer.recv_many(8192, deadline.map(Into::into)) => {
                let revoked = w.handle_assignments();
                // Messages of a partition revoked meanwhile, or after a seek in this batch
                // (they came from before the seek), are not ours to apply.
                let mut skip: HashSet<(Arc<str>, i32)> = HashSet::new();
                for m in ms? {
                    let key = (m.topic.clone(), m.partition);
                    if skip.contains(&key) || revoked.contains(&(m.topic.to_string(), m.partition)) {
                        continue;
                    }
                    if w.accept(m).await? == Accepted::Seeked {
                        skip.insert(key);
                    }
                }
                let due = w.first_at.is_some_and(|t| t.elapsed() >= lc.flush_interval);
                if due || w.rows >= lc.max_batch_rows || w.bytes >= lc.max_batch_bytes {
                    w.flush().await?;
                }
            }
        }
    }
}

impl Worker {
    /// Applies rebalances; returns the partitions revoked (and not assigned again).
    fn handle_assignments(&mut self) -> HashSet<(String, i32)> {
        let mut revoked = HashSet::new();
        for a in self.consumer.take_assignments() {
            match a {
                Assignment::Assigned(tps) => {
                    for (t, p) in tps {
                        self.started
                            .retain(|(st, sp)| !(&**st == t.as_str() && *sp == p));
                        revoked.remove(&(t, p));
                    }
                }
                Assignment::Revoked(tps) => {
                    for (t, p) in tps {
                        revoked.insert((t.clone(), p));
                        self.started
                            .retain(|(st, sp)| !(&**st == t.as_str() && *sp == p));
                        if let Some(b) = self.buffer.get_mut(t.as_str()) {
                            let before = b.len();
                            b.retain(|c| c.kafka.map(|k| k.0) != Some(p));
                            self.rows -= before - b.len();
                        }
                        tracing::info!(topic = %t, partition = p, "partition revoked");
                    }
                }
            }
        }
        revoked
    }

    /// The offset after the last one both tables of `topic` hold for `partition` (`None`:
    /// neither holds any).
    async fn resume_offset(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, MaterializeError> {
        let app = app_id(topic, partition);
        if let Some(sink) = self.sinks.get_mut(topic) {
            sink.reload().await?;
            sink.watch(std::slice::from_ref(&app)).await?;
            let c = sink.applied_changes().txns.get(&app).copied();
            let r = sink.applied_replica().txns.get(&app).copied();
            return Ok(match (c, r) {
                (Some(c), Some(r)) => Some(c.min(r) + 1),
                _ => None,
            });
        }
        let Some((db, table)) = ChangeConsumer::table_of(&self.name, topic) else {
            return Ok(None);
        };
        let mut versions = Vec::new();
        for kind in [
            binlake_lake::store::TableKind::Changes,
            binlake_lake::store::TableKind::Replica,
        ] {
            let url = self.lake.table_url(db, table, kind)?;
            match self.lake.load(&url).await? {
                Some(t) => versions.push(txn_version(&t, &app).await?),
                None => versions.push(None),
            }
        }
        Ok(match (versions[0], versions[1]) {
            (Some(c), Some(r)) => Some(c.min(r) + 1),
            _ => None,
        })
    }

    async fn accept(&mut self, m: binlake_kafka::Consumed) -> Result<Accepted, MaterializeError> {
        let key = (m.topic.clone(), m.partition);
        if !self.started.contains(&key) {
            let want = self.resume_offset(&m.topic, m.partition).await?;
            self.started.insert(key);
            match want {
                Some(o) if o != m.offset => {
                    tracing::info!(topic = %m.topic, partition = m.partition, offset = o, "resuming the partition where the tables end");
                    self.consumer.seek(&m.topic, m.partition, Some(o))?;
                    return Ok(Accepted::Seeked);
                }
                None if m.offset > 0 => {
                    tracing::info!(topic = %m.topic, partition = m.partition, "the tables hold nothing of this partition: reading it from the start");
                    self.consumer.seek(&m.topic, m.partition, None)?;
                    return Ok(Accepted::Seeked);
                }
                _ => {}
            }
        }
        let Some(event) = m.event else {
            return Ok(Accepted::Taken);
        };
        self.first_at.get_or_insert_with(Instant::now);
        self.rows += 1;
        self.bytes += m.bytes;
        self.buffer.entry(m.topic).or_default().push(Change {
            event,
            kafka: Some((m.partition, m.offset)),
        });
        Ok(Accepted::Taken)
    }

    async fn flush(&mut self) -> Result<(), MaterializeError> {
        let buffer = std::mem::take(&mut self.buffer);
        self.rows = 0;
        self.bytes = 0;
        self.first_at = None;
        let mut committed = Vec::new();
        for (topic, changes) in buffer {
            if changes.is_empty() {
                continue;
            }
            if !self.sinks.contains_key(&topic) {
                let sink = TableSink::open(&self.lake, &changes[0].event.table).await?;
                self.sinks.insert(topic.clone(), sink);
            }
            let Some(sink) = self.sinks.get_mut(&topic) else {
                continue;
            };
            let apps: Vec<String> = changes
                .iter()
                .filter_map(|c| c.kafka.map(|(p, _)| app_id(&topic, p)))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            sink.watch(&apps).await?;
            // Per Delta table, only what it does not hold yet.
            let holds = |a: &binlake_lake::Applied, c: &Change| {
                c.kafka
                    .is_some_and(|(p, o)| a.covers(&app_id(&topic, p), o))
            };
            let for_changes: Vec<Change> = changes
                .iter()
                .filter(|c| !holds(sink.applied_changes(), c))
                .cloned()
                .collect();
            let for_replica: Vec<Change> = changes
                .iter()
                .filter(|c| !holds(sink.applied_replica(), c))
                .cloned()
                .collect();
            let mut last: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
            for c in &changes {
                if let Some((p, o)) = c.kafka {
                    let e = last.entry(p).or_insert((o, o));
                    e.0 = e.0.min(o);
                    e.1 = e.1.max(o);
                }
            }
            let token: Vec<String> = last
                .iter()
                .map(|(p, (a, b))| format!("p{p}-o{a}-o{b}"))
                .collect();
            let mut token = token.join("_");
            if token.len() > 120 {
                token = format!("h{:016x}-{}", fnv(&token), last.len());
            }
            let progress = Progress {
                txns: last
                    .iter()
                    .map(|(p, (_, b))| (app_id(&topic, *p), *b))
                    .collect(),
                file_token: token,
                resume: None,
            };
            let same = for_changes.len() == for_replica.len()
                && for_changes
                    .iter()
                    .zip(&for_replica)
                    .all(|(a, b)| a.kafka == b.kafka);
            let stats = if same {
                sink.apply(&for_changes, &progress, true, true).await?
            } else {
                let a = sink.apply(&for_changes, &progress, true, false).await?;
                let b = sink.apply(&for_replica, &progress, false, true).await?;
                a.merge(b)
            };
            crate::telemetry::applied(sink.name(), &stats);
            crate::telemetry::count(
                "binlake_kafka_messages_consumed_total",
                &[],
                changes.len() as f64,
            );
            if let Some(ts) = changes.last().map(|c| c.event.source.ts_us) {
                crate::telemetry::committed("lake", ts, false);
            }
            self.applied_rows += changes.len() as u64;
            committed.extend(
                last.iter()
                    .map(|(p, (_, b))| (topic.to_string(), *p, b + 1)),
            );
        }
        if !committed.is_empty() {
            self.consumer.commit_offsets(&committed);
        }
        let cfg = self.lake.config();
        if !cfg.maintenance_interval.is_zero()
            && self.maintained.elapsed() >= cfg.maintenance_interval
        {
            let (min_files, retention) = (cfg.compact_min_files, cfg.vacuum_retention);
            for (topic, sink) in self.sinks.iter_mut() {
                let (compacted, deleted) = sink.maintain(min_files, retention).await?;
                crate::telemetry::maintained(sink.name(), compacted, deleted);
                tracing::info!(topic = %topic, compacted, deleted, "maintenance done");
            }
            self.maintained = Instant::now();
        }
        Ok(())
    }
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
