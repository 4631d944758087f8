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
//!
//! # Coverage
//!
//! A worker also records which capture position its tables hold everything up to
//! ([`crate::coverage`]): the applier gives back, with each committed batch, the consumer
//! positions at the moment the batch was taken, and when nothing is buffered or in flight
//! the current positions hold. That is what lets `status` call an idle table current and
//! `binlake wait` / `/wait` answer for these replicas.
//!
//! # Error handling
//!
//! One table's problem never stops the others: changes of a table without a primary key
//! (and no `[source] key_columns`), which a replica cannot keep, are skipped, counted in
//! `binlake_changes_skipped_total` and reported once with the setting that fixes it.
//! Transient errors restart the worker from what the tables record; others stop it.

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
    /// Static group membership (Kafka's `group.instance.id`), unique per worker, e.g.
    /// `"${POD_NAME}"`: a worker restarted with the same id (a crashed container in the
    /// same pod) gets its partitions back at once, instead of after the group's session
    /// timeout (45 s by default). A static member does not leave the group when it stops,
    /// so a worker that is not coming back (a pod replaced by a rolling update) holds its
    /// partitions until the session timeout. Unset (default): dynamic membership; a
    /// worker leaves the group when it stops (SIGTERM) and its partitions move at once.
    #[serde(default)]
    pub instance_id: Option<String>,
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
    crate::wait::serve_waiters();
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

/// The receiving half of a worker: the consumer and the batch being gathered.
struct Gatherer {
    consumer: ChangeConsumer,
    /// Partitions whose start was checked since they were assigned.
    started: HashSet<(Arc<str>, i32)>,
    buffer: HashMap<Arc<str>, Vec<Change>>,
    rows: usize,
    bytes: usize,
    first_at: Option<Instant>,
    /// Partitions assigned or revoked since the loop last looked.
    reassigned: Vec<(String, i32)>,
}

/// The writing half of a worker: the lake and the table sinks. While it applies one batch
/// (on its own task), the [`Gatherer`] receives and decodes the next.
struct Applier {
    lake: Lake,
    sinks: HashMap<Arc<str>, TableSink>,
    applied_rows: u64,
    maintained: Instant,
    /// Tables without a key whose changes are skipped (each reported once).
    keyless: HashSet<String>,
    /// The consumer positions of the last batch committed (taken with it, see the module
    /// docs), until the loop takes them.
    settled: Vec<(String, i32, i64)>,
}

/// A batch being applied: gives back the applier and the next offsets to record in the
/// consumer group.
type InFlight = tokio::task::JoinHandle<(
    Box<Applier>,
    Result<Vec<(String, i32, i64)>, MaterializeError>,
)>;

/// The applier, idle or applying a batch.
enum Slot {
    Idle(Box<Applier>),
    Busy(InFlight),
    /// Only while changing between the two.
    Empty,
}

impl Slot {
    /// Waits for the batch in flight, if any (recording its offsets in the group), and
    /// returns the idle applier.
    async fn idle(&mut self, consumer: &ChangeConsumer) -> Result<&mut Applier, MaterializeError> {
        if let Slot::Busy(_) = self {
            let Slot::Busy(h) = std::mem::replace(self, Slot::Empty) else {
                unreachable!("checked above")
            };
            let (applier, result) = h
                .await
                .map_err(|e| MaterializeError::Config(format!("the apply task failed: {e}")))?;
            *self = Slot::Idle(applier);
            let offsets = result?;
            binlake_core::failpoint::hit("materialize.before_offsets");
            consumer.commit_offsets(&offsets);
        }
        match self {
            Slot::Idle(a) => Ok(a),
            _ => Err(MaterializeError::Config(
                "the apply task did not give the table sinks back".into(),
            )),
        }
    }

    /// Starts applying `buffer` on its own task (after the batch in flight); `positions`
    /// are the consumer's when the batch was taken: once it is committed, everything
    /// consumed below them is in the tables.
    async fn start(
        &mut self,
        consumer: &ChangeConsumer,
        buffer: HashMap<Arc<str>, Vec<Change>>,
        gathered: Option<Duration>,
        positions: Vec<(String, i32, i64)>,
    ) -> Result<(), MaterializeError> {
        self.idle(consumer).await?;
        let Slot::Idle(mut applier) = std::mem::replace(self, Slot::Empty) else {
            unreachable!("idle() returned the applier")
        };
        *self = Slot::Busy(tokio::spawn(async move {
            let r = applier.flush(buffer, gathered).await;
            if r.is_ok() {
                applier.settled = positions;
            }
            (applier, r)
        }));
        Ok(())
    }
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
    // Merge-on-read key indexes are per writer: a static member keeps its own across
    // restarts; a dynamic one is named by its process (see `key_index::sweep_dead`).
    let lake = Lake::open(&cfg.lake)?.with_writer(match &cfg.materialize.instance_id {
        Some(id) => format!("materialize-{id}"),
        None => format!("materialize-pid{}", std::process::id()),
    });
    let group = cfg
        .materialize
        .group
        .clone()
        .unwrap_or_else(|| format!("binlake-materialize-{}", cfg.name));
    let consumer = ChangeConsumer::open(
        kafka,
        &cfg.name,
        &group,
        cfg.materialize.instance_id.as_deref(),
        cfg.encoding.options(&cfg.name, Flavor::Mysql),
    )?;
    let member = cfg.materialize.instance_id.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        )
    });
    let mut claims = crate::coverage::Claims::start(kafka, &lake, &cfg.name, &member).await?;
    let claims_lake = lake.clone();
    tracing::info!(group = %group, instance_id = cfg.materialize.instance_id.as_deref().unwrap_or("(dynamic)"), root = %lake.root(), "materializing changes");
    crate::telemetry::set_ready(true);
    let mut g = Gatherer {
        consumer,
        started: HashSet::new(),
        buffer: HashMap::new(),
        rows: 0,
        bytes: 0,
        first_at: None,
        reassigned: Vec::new(),
    };
    let mut slot = Slot::Idle(Box::new(Applier {
        lake,
        sinks: HashMap::new(),
        applied_rows: 0,
        maintained: Instant::now(),
        keyless: HashSet::new(),
        settled: Vec::new(),
    }));
    let lc = cfg.lake.clone();
    let result: Result<(), MaterializeError> = async {
        loop {
            // While a batch is in flight, wake up often enough to see it finish (its
            // error, or the group offsets to record) even when no message comes.
            let deadline = match (&slot, g.first_at.map(|t| t + lc.flush_interval)) {
                (Slot::Busy(_), d) => {
                    let soon = Instant::now() + Duration::from_millis(50);
                    Some(d.map_or(soon, |d| d.min(soon)))
                }
                (_, d) => d,
            };
            // Coverage claims are looked at even when no message comes.
            let tick = Instant::now() + crate::coverage::TICK;
            let deadline = Some(deadline.map_or(tick, |d| d.min(tick)));
            tokio::select! {
                // Shutting down may drop a recv_many in flight: the messages it held come
                // after everything buffered in their partitions, and nothing is committed
                // after this flush, so they are read again on the next start.
                _ = shutdown.changed() => {
                    tracing::info!("shutting down: committing the batches in flight");
                    let gathered = g.first_at.map(|t| t.elapsed());
                    let buffer = g.take();
                    let finish = async {
                        let a = slot.idle(&g.consumer).await?;
                        let committed = a.flush(buffer, gathered).await?;
                        g.consumer.commit_offsets(&committed);
                        Ok::<_, MaterializeError>(a.applied_rows)
                    };
                    // Past the grace period nothing more is committed: what a table did
                    // not commit is read again on the next start (each table records
                    // what it holds), so stopping here loses and repeats nothing.
                    match tokio::time::timeout(cfg.shutdown_grace, finish).await {
                        Ok(rows) => tracing::info!(rows = rows?, "materialize stopped cleanly"),
                        Err(_) => tracing::warn!(
                            grace = ?cfg.shutdown_grace,
                            "grace period over before the batch in flight was committed: it is read again on the next start"
                        ),
                    }
                    return Ok(());
                }
                // Waits for messages until the batch's deadline (an empty answer then); the
                // deadline is not a competing branch: a dropped recv_many loses messages.
                ms = g.consumer.recv_many(8192, deadline.map(Into::into)) => {
                    let mut revoked = g.handle_assignments();
                    // Messages of a partition revoked meanwhile, or after a seek in this batch
                    // (they came from before the seek), are not ours to apply.
                    let mut skip: HashSet<(Arc<str>, i32)> = HashSet::new();
                    for m in ms? {
                        let key = (m.topic.clone(), m.partition);
                        if skip.contains(&key) || revoked.contains(&(m.topic.to_string(), m.partition)) {
                            continue;
                        }
                        if !g.started.contains(&key) {
                            // Where the tables end, once the batch in flight is in them.
                            let table = g.consumer.table_of(&m.topic).await?;
                            let applier = slot.idle(&g.consumer).await?;
                            let want = applier.resume_offset(&m.topic, m.partition, table).await?;
                            // A rebalance may have taken the partition meanwhile.
                            revoked.extend(g.handle_assignments());
                            if revoked.contains(&(m.topic.to_string(), m.partition)) {
                                continue;
                            }
                            g.started.insert(key.clone());
                            if g.seek_to(&m, want)? {
                                skip.insert(key);
                                continue;
                            }
                        }
                        g.accept(m);
                    }
                    if matches!(&slot, Slot::Busy(h) if h.is_finished()) {
                        slot.idle(&g.consumer).await?;
                    }
                    let due = g.first_at.is_some_and(|t| t.elapsed() >= lc.flush_interval);
                    if due || g.rows >= lc.max_batch_rows || g.bytes >= lc.max_batch_bytes {
                        let gathered = g.first_at.map(|t| t.elapsed());
                        let buffer = g.take();
                        let positions = g.consumer.positions()?;
                        slot.start(&g.consumer, buffer, gathered, positions).await?;
                    }
                    for (t, p) in g.reassigned.drain(..) {
                        claims.revoked(&t, p);
                    }
                    if let Slot::Idle(a) = &mut slot {
                        claims.settled(std::mem::take(&mut a.settled));
                        if g.buffer.is_empty() {
                            claims.settled(g.consumer.positions()?);
                        }
                    }
                    claims.step(&mut g.consumer, &claims_lake).await?;
                }
            }
        }
    }
    .await;
    // A batch still in flight must not commit next to the restarted worker's. (Shutting
    // down, the grace period is over: the process ends and so does the batch.)
    if let Slot::Busy(h) = slot
        && !*shutdown.borrow()
    {
        let _ = h.await;
    }
    result
}

impl Gatherer {
    /// Applies rebalances; returns the partitions revoked (and not assigned again). A
    /// batch in flight keeps the changes of a revoked partition: its commit then races
    /// the new owner's, and Delta's conflict check on the partition's `txn` app id lets
    /// only one of them commit.
    fn handle_assignments(&mut self) -> HashSet<(String, i32)> {
        let mut revoked = HashSet::new();
        for a in self.consumer.take_assignments() {
            match a {
                Assignment::Assigned(tps) => {
                    for (t, p) in tps {
                        self.started
                            .retain(|(st, sp)| !(&**st == t.as_str() && *sp == p));
                        self.reassigned.push((t.clone(), p));
                        revoked.remove(&(t, p));
                    }
                }
                Assignment::Revoked(tps) => {
                    for (t, p) in tps {
                        self.reassigned.push((t.clone(), p));
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

    /// Seeks the first message's partition to `want` (the offset after what its tables
    /// hold) unless it is already there; true when the message is to be dropped (the
    /// partition was sought, or is not this member's any more).
    fn seek_to(
        &self,
        m: &binlake_kafka::Consumed,
        want: Option<i64>,
    ) -> Result<bool, MaterializeError> {
        match want {
            Some(o) if o != m.offset => {
                tracing::info!(topic = %m.topic, partition = m.partition, offset = o, "resuming the partition where the tables end");
                self.consumer.seek(&m.topic, m.partition, Some(o))?;
                Ok(true)
            }
            None if m.offset > 0 => {
                tracing::info!(topic = %m.topic, partition = m.partition, "the tables hold nothing of this partition: reading it from the start");
                self.consumer.seek(&m.topic, m.partition, None)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Buffers a message's change (a tombstone is skipped).
    fn accept(&mut self, m: binlake_kafka::Consumed) {
        let Some(event) = m.event else {
            return;
        };
        self.first_at.get_or_insert_with(Instant::now);
        self.rows += 1;
        self.bytes += m.bytes;
        self.buffer.entry(m.topic).or_default().push(Change {
            event,
            kafka: Some((m.partition, m.offset)),
        });
    }

    /// Takes the gathered batch.
    fn take(&mut self) -> HashMap<Arc<str>, Vec<Change>> {
        self.rows = 0;
        self.bytes = 0;
        self.first_at = None;
        std::mem::take(&mut self.buffer)
    }
}

impl Applier {
    /// The offset after the last one both tables of `topic` (whose table is `table`, when
    /// known) hold for `partition` (`None`: neither holds any).
    async fn resume_offset(
        &mut self,
        topic: &str,
        partition: i32,
        table: Option<(String, String)>,
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
        let Some((db, table)) = table else {
            return Ok(None);
        };
        let mut versions = Vec::new();
        for kind in [
            binlake_lake::store::TableKind::Changes,
            binlake_lake::store::TableKind::Replica,
        ] {
            let url = self.lake.table_url(&db, &table, kind)?;
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

    /// Applies a batch to every table it touches; returns the next offsets of its
    /// partitions (for the consumer group).
    async fn flush(
        &mut self,
        buffer: HashMap<Arc<str>, Vec<Change>>,
        gathered: Option<Duration>,
    ) -> Result<Vec<(String, i32, i64)>, MaterializeError> {
        let started = Instant::now();
        let mut committed = Vec::new();
        let mut rows = 0;
        for (topic, mut changes) in buffer {
            // The consumer group moves past every change of the batch, skipped ones too.
            let mut next: BTreeMap<i32, i64> = BTreeMap::new();
            for (p, o) in changes.iter().filter_map(|c| c.kafka) {
                let e = next.entry(p).or_insert(o + 1);
                *e = (*e).max(o + 1);
            }
            if !self.sinks.contains_key(&topic) {
                changes.retain(|c| {
                    let keyless = c.event.table.primary_key.is_empty();
                    if keyless {
                        self.skip_keyless(&c.event.table.qualified_name());
                    }
                    !keyless
                });
            }
            if changes.is_empty() {
                committed.extend(next.iter().map(|(p, o)| (topic.to_string(), *p, *o)));
                continue;
            }
            rows += changes.len();
            if !self.sinks.contains_key(&topic) {
                let sink = TableSink::open(&self.lake, &changes[0].event.table).await?;
                self.sinks.insert(topic.clone(), sink);
            }
            let Some(sink) = self.sinks.get_mut(&topic) else {
                continue;
            };
            // First and last offset of each partition in the batch.
            let mut last: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
            for c in &changes {
                if let Some((p, o)) = c.kafka {
                    let e = last.entry(p).or_insert((o, o));
                    e.0 = e.0.min(o);
                    e.1 = e.1.max(o);
                }
            }
            let apps: HashMap<i32, String> = last.keys().map(|&p| (p, app_id(&topic, p))).collect();
            sink.watch(&apps.values().cloned().collect::<Vec<_>>())
                .await?;
            // Per Delta table, only what it does not hold yet (something after a restart
            // or a rebalance; nothing in the steady state).
            let held = |a: &binlake_lake::Applied| -> Option<HashMap<i32, i64>> {
                let held: HashMap<i32, i64> = apps
                    .iter()
                    .filter_map(|(p, app)| a.txns.get(app).map(|&v| (*p, v)))
                    .filter(|(p, v)| last.get(p).is_some_and(|(first, _)| first <= v))
                    .collect();
                (!held.is_empty()).then_some(held)
            };
            let not_held = |held: &HashMap<i32, i64>| -> Vec<Change> {
                changes
                    .iter()
                    .filter(|c| {
                        c.kafka
                            .is_none_or(|(p, o)| held.get(&p).is_none_or(|&v| o > v))
                    })
                    .cloned()
                    .collect()
            };
            let progress = Progress {
                txns: last
                    .iter()
                    .map(|(p, (_, b))| (apps[p].clone(), *b))
                    .collect(),
                file_token: file_token(&last),
                resume: None,
                snapshot: None,
            };
            binlake_core::failpoint::hit("materialize.before_table_commit");
            let stats = match (held(sink.applied_changes()), held(sink.applied_replica())) {
                (None, None) => sink.apply(&changes, &progress, true, true).await?,
                (hc, hr) => {
                    let for_changes = hc.map(|h| not_held(&h));
                    let for_replica = hr.map(|h| not_held(&h));
                    let a = sink
                        .apply(
                            for_changes.as_deref().unwrap_or(&changes),
                            &progress,
                            true,
                            false,
                        )
                        .await?;
                    let b = sink
                        .apply(
                            for_replica.as_deref().unwrap_or(&changes),
                            &progress,
                            false,
                            true,
                        )
                        .await?;
                    a.merge(b)
                }
            };
            crate::telemetry::applied(sink.name(), &stats);
            binlake_core::failpoint::hit("materialize.after_table_commit");
            crate::telemetry::count(
                "binlake_kafka_messages_consumed_total",
                &[],
                changes.len() as f64,
            );
            if let Some(ts) = changes.last().map(|c| c.event.source.ts_us) {
                crate::telemetry::committed("lake", ts, false);
            }
            self.applied_rows += changes.len() as u64;
            committed.extend(next.iter().map(|(p, o)| (topic.to_string(), *p, *o)));
        }
        if rows > 0 {
            tracing::debug!(rows, gathered = ?gathered, applied_in = ?started.elapsed(), "batch applied");
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
        Ok(committed)
    }
}

impl Applier {
    /// Counts a change of a table without a key, and says once what to do about it.
    fn skip_keyless(&mut self, table: &str) {
        crate::telemetry::count("binlake_changes_skipped_total", &[("table", table)], 1.0);
        if self.keyless.insert(table.to_string()) {
            let why = binlake_lake::Error::NoKey {
                table: table.to_string(),
            };
            tracing::warn!(table, error = %why, "table without a key skipped");
        }
    }
}

/// The change-log file token of a batch: its partitions' offset ranges, so a rerun of the
/// same batch writes the same file names (hashed when long).
fn file_token(last: &BTreeMap<i32, (i64, i64)>) -> String {
    let token: Vec<String> = last
        .iter()
        .map(|(p, (a, b))| format!("p{p}-o{a}-o{b}"))
        .collect();
    let token = token.join("_");
    if token.len() > 120 {
        format!("h{:016x}-{}", fnv(&token), last.len())
    } else {
        token
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
