//! `binlake capture`: the binlog into Kafka, exactly once.
//!
//! A reader task turns the binlog into items and hands them over a bounded channel; the
//! writer loop puts whole source transactions into Kafka transactions together with the
//! position they end at (see `binlake_kafka::capture` for why that is exactly once).
//!
//! # Batching
//!
//! A Kafka transaction is committed at a source-transaction boundary when it holds
//! `capture.max_batch_rows` rows, or `capture.linger` has passed since it began
//! (`capture.catch_up_linger` while capture is behind the primary), or the reader has
//! nothing more right now. So catching up makes large batches (each commit stops producing
//! for a round trip to the transaction coordinator) and a steady trickle is committed
//! within milliseconds. A batch that carries no rows (only
//! filtered-out transactions moved the position) is committed with the next heartbeat.
//!
//! # Start
//!
//! With no recorded position, capture starts at `source.start` (or the end of the binlog)
//! and records that position at once, in its own Kafka transaction, so a crash before the
//! first batch cannot move the start past changes it has not written.
//!
//! # Errors and restarts
//!
//! A transient error (broker or primary unreachable, a lost connection, a failed
//! transaction) aborts the open Kafka transaction and restarts the pipeline from the last
//! committed position, with backoff. A definite one (bad grants, purged position, a
//! fenced producer, an undecodable event) stops capture with its message.
//!
//! # Shutdown
//!
//! On SIGTERM/SIGINT the loop reads on to the end of the source transaction it is in
//! (within the grace period), commits, and returns; if the grace period runs out first, it
//! aborts the Kafka transaction, which loses nothing: the next start resumes from the last
//! commit. A second signal exits at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use binlake_core::{ChangeEvent, Flavor, ResumePosition, SchemaChange};
use binlake_kafka::CaptureWriter;
use binlake_mysql::binlog::{BinlogItem, BinlogReader, StartFrom};
use binlake_mysql::schema_history::SchemaHistory;
use binlake_mysql::snapshot::{ChunkReader, KeyRange, SnapshotMode, SnapshotProgress, Snapshotter};
use binlake_mysql::{ServerInfo, connect};
use tokio::sync::{mpsc, watch};

use crate::config::Config;

/// Why capture stopped.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// From the primary.
    #[error(transparent)]
    Mysql(#[from] binlake_mysql::Error),
    /// From Kafka.
    #[error(transparent)]
    Kafka(#[from] binlake_kafka::Error),
    /// From the lake (`run`).
    #[error(transparent)]
    Lake(#[from] binlake_lake::Error),
    /// The configuration lacks something capture needs.
    #[error("{0}")]
    Config(String),
}

impl CaptureError {
    fn is_transient(&self) -> bool {
        match self {
            CaptureError::Mysql(e) => e.is_transient(),
            CaptureError::Kafka(e) => e.is_transient(),
            CaptureError::Lake(e) => e.is_transient(),
            CaptureError::Config(_) => false,
        }
    }
}

/// Where captured changes go: Kafka (`capture`) or the lake (`run`). The pump hands it
/// whole source transactions and asks it to commit them, with the position they end at,
/// at transaction boundaries.
pub(crate) trait Sink {
    /// Writes one change of the open batch.
    async fn write_change(&mut self, e: &ChangeEvent) -> Result<(), CaptureError>;
    /// Writes a DDL statement.
    async fn write_schema_change(&mut self, s: &SchemaChange) -> Result<(), CaptureError>;
    /// Writes a BEGIN (`end` = None) or END marker of a source transaction.
    async fn write_transaction_marker(
        &mut self,
        id: &str,
        end: Option<(u64, &BTreeMap<String, u64>)>,
        ts_us: i64,
    ) -> Result<(), CaptureError>;
    /// Notes that the source was idle for a heartbeat interval.
    async fn write_heartbeat(&mut self) -> Result<(), CaptureError>;
    /// Makes the open batch durable together with the position it ends at.
    async fn commit(
        &mut self,
        position: &ResumePosition,
        file_pos: &str,
        ts_us: i64,
    ) -> Result<(), CaptureError>;
    /// Drops the open batch.
    async fn abort(&mut self);
    /// Whether a batch is open.
    fn in_transaction(&self) -> bool;
    /// Snapshot progress recorded with every following commit.
    fn set_snapshot_state(&mut self, state: Option<SnapshotProgress>);
    /// (changes written, commits).
    fn counts(&self) -> (u64, u64);
    /// The sink's name in metrics (`kafka`, `lake`).
    fn kind(&self) -> &'static str;
    /// Tables (or key ranges of them: `binlake verify --repair`) whose snapshot was
    /// requested while streaming (`binlake snapshot`) since the last call; the next
    /// commit records that they were taken.
    async fn snapshot_requests(&mut self) -> Result<Vec<KeyRange>, CaptureError> {
        Ok(Vec::new())
    }
    /// Writes the schema history (JSON) in the open batch, to be read back after a restart.
    async fn write_schema_history(&mut self, json: &str) -> Result<(), CaptureError> {
        let _ = json;
        Ok(())
    }
    /// Whether tables without a primary key are kept (and so worth snapshotting).
    fn keeps_keyless_tables(&self) -> bool {
        true
    }
    /// Whether the open batch holds as much as the sink keeps in memory: the batch is
    /// committed at the next transaction boundary, as when it holds `max_rows` rows.
    fn batch_full(&self) -> bool {
        false
    }
    /// Snapshot chunks per commit (or fewer, when the batch is full first): 1 (the
    /// default) records the progress after every chunk, so a restart reads again at most
    /// the chunks in flight, one per reader.
    fn snapshot_chunks_per_commit(&self) -> usize {
        1
    }
}

impl Sink for CaptureWriter {
    async fn write_change(&mut self, e: &ChangeEvent) -> Result<(), CaptureError> {
        Ok(CaptureWriter::write_change(self, e).await?)
    }
    async fn write_schema_change(&mut self, s: &SchemaChange) -> Result<(), CaptureError> {
        Ok(CaptureWriter::write_schema_change(self, s).await?)
    }
    async fn write_transaction_marker(
        &mut self,
        id: &str,
        end: Option<(u64, &BTreeMap<String, u64>)>,
        ts_us: i64,
    ) -> Result<(), CaptureError> {
        Ok(CaptureWriter::write_transaction_marker(self, id, end, ts_us).await?)
    }
    async fn write_heartbeat(&mut self) -> Result<(), CaptureError> {
        Ok(CaptureWriter::write_heartbeat(self).await?)
    }
    async fn commit(
        &mut self,
        position: &ResumePosition,
        file_pos: &str,
        ts_us: i64,
    ) -> Result<(), CaptureError> {
        let queued = self.queued_messages();
        let bytes = self.stats().bytes;
        let started = Instant::now();
        CaptureWriter::commit(self, position, file_pos, ts_us).await?;
        crate::telemetry::kafka_committed(started.elapsed(), queued, bytes);
        Ok(())
    }
    async fn abort(&mut self) {
        let open = CaptureWriter::in_transaction(self);
        CaptureWriter::abort(self).await;
        if open {
            crate::telemetry::kafka_aborted();
        }
    }
    fn in_transaction(&self) -> bool {
        CaptureWriter::in_transaction(self)
    }
    fn set_snapshot_state(&mut self, state: Option<SnapshotProgress>) {
        CaptureWriter::set_snapshot_state(self, state)
    }
    fn counts(&self) -> (u64, u64) {
        (self.stats().messages, self.stats().commits)
    }
    fn kind(&self) -> &'static str {
        "kafka"
    }
    async fn snapshot_requests(&mut self) -> Result<Vec<KeyRange>, CaptureError> {
        Ok(CaptureWriter::snapshot_requests(self).await?)
    }
    async fn write_schema_history(&mut self, json: &str) -> Result<(), CaptureError> {
        Ok(CaptureWriter::write_schema_history(self, json).await?)
    }
}

/// What a sink recorded last: where to resume.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) resume: ResumePosition,
    pub(crate) file_pos: String,
    pub(crate) ts_us: i64,
    pub(crate) snapshot: Option<SnapshotProgress>,
    /// The schema history stored with that position (JSON), if any.
    pub(crate) schema_history: Option<String>,
}

/// Opens a sink once the source's flavour is known, with what it recorded last.
pub(crate) trait SinkFactory {
    /// The sink.
    type Sink: Sink;
    /// Opens it.
    async fn open(&self, flavor: Flavor) -> Result<(Self::Sink, Option<Stored>), CaptureError>;
}

/// When the pump commits.
#[derive(Debug, Clone)]
pub(crate) struct Batching {
    pub(crate) max_rows: usize,
    pub(crate) linger: Duration,
    /// The linger while behind the primary.
    pub(crate) catch_up_linger: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) per_table_counts: bool,
    /// How long a shutdown may take to reach a transaction boundary and commit.
    pub(crate) grace: Duration,
}

impl Batching {
    fn linger_for(&self, caught_up: bool) -> Duration {
        if caught_up {
            self.linger
        } else {
            self.catch_up_linger
        }
    }
}

struct KafkaSinkFactory<'a>(&'a Config);

impl SinkFactory for KafkaSinkFactory<'_> {
    type Sink = CaptureWriter;
    async fn open(&self, flavor: Flavor) -> Result<(CaptureWriter, Option<Stored>), CaptureError> {
        let cfg = self.0;
        let kafka = cfg.kafka.as_ref().ok_or_else(|| {
            CaptureError::Config("capture needs a [kafka] section with bootstrap_servers".into())
        })?;
        let (mut writer, stored) = CaptureWriter::open(
            kafka,
            &cfg.capture,
            &cfg.name,
            cfg.encoding.options(&cfg.name, flavor),
        )
        .await?;
        let stored = match stored {
            Some(s) => Some(Stored {
                resume: s.resume()?,
                file_pos: s.file_pos.clone(),
                ts_us: s.source_ts_ms * 1000,
                snapshot: s.snapshot.clone(),
                schema_history: writer.take_stored_history(),
            }),
            None => None,
        };
        Ok((writer, stored))
    }
}

/// Runs capture into Kafka until `shutdown` turns true. Restarts on transient errors.
pub async fn run(cfg: &Config, shutdown: watch::Receiver<bool>) -> Result<(), CaptureError> {
    if cfg.kafka.is_none() {
        return Err(CaptureError::Config(
            "capture needs a [kafka] section with bootstrap_servers".into(),
        ));
    }
    let batching = Batching {
        max_rows: cfg.capture.max_batch_rows,
        linger: cfg.capture.linger,
        catch_up_linger: cfg.capture.catch_up_linger,
        heartbeat: cfg.capture.heartbeat_interval,
        per_table_counts: cfg.capture.transaction_topic,
        grace: cfg.shutdown_grace,
    };
    run_with(cfg, &KafkaSinkFactory(cfg), &batching, shutdown).await
}

/// Runs the binlog (and snapshot) into the sink `factory` opens, until `shutdown` turns
/// true. Restarts on transient errors.
pub(crate) async fn run_with<F: SinkFactory>(
    cfg: &Config,
    factory: &F,
    batching: &Batching,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), CaptureError> {
    let mut backoff = Duration::from_millis(500);
    let mut resnapshot = false;
    loop {
        match run_once(cfg, factory, batching, &mut shutdown, resnapshot).await {
            Ok(()) => return Ok(()),
            Err(CaptureError::Mysql(e @ binlake_mysql::Error::PositionPurged { .. }))
                if cfg.snapshot.mode == SnapshotMode::WhenNeeded && !resnapshot =>
            {
                tracing::warn!(error = %e, "the recorded position is gone: starting over at the end of the binlog with a new snapshot (snapshot.mode = when_needed)");
                resnapshot = true;
            }
            Err(e) if e.is_transient() && !*shutdown.borrow() => {
                crate::telemetry::error(true);
                tracing::warn!(error = %e, retry_in = ?backoff, "capture interrupted, restarting from the last committed position");
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

#[derive(Clone)]
struct Pending {
    position: ResumePosition,
    file_pos: String,
    ts_us: i64,
}

async fn run_once<F: SinkFactory>(
    cfg: &Config,
    factory: &F,
    batching: &Batching,
    shutdown: &mut watch::Receiver<bool>,
    resnapshot: bool,
) -> Result<(), CaptureError> {
    // A schema history, kept current by the binlog's DDL: without binlog_row_metadata=FULL,
    // table maps carry no column names and rows are decoded with it; with FULL it still
    // gives each schema change its tables' new schemas (`tableChanges`). It is stored with
    // every DDL (and at the first start), so a restart continues with the schemas of the
    // resume position; without a stored one it is loaded from information_schema.
    let mut conn = connect(&cfg.source).await?;
    let info = ServerInfo::probe(&mut conn, &cfg.source).await?;
    let flavor = info.flavor;
    let full = info
        .binlog_row_metadata
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case("FULL"));
    tracing::info!(source = %cfg.source.describe(), flavor = ?flavor, "connected to the primary");
    let (mut writer, stored) = factory.open(flavor).await?;
    // After a purged position (snapshot.mode = when_needed) the record is ignored: start
    // over at the end of the binlog, with a new snapshot.
    let stored = if resnapshot {
        writer.set_snapshot_state(None);
        None
    } else {
        stored
    };
    let restored = stored
        .as_ref()
        .and_then(|s| s.schema_history.as_deref())
        .and_then(|json| match SchemaHistory::from_json(json) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "the stored schema history cannot be read: loading today's schemas instead");
                None
            }
        });
    let history = match restored {
        Some(mut h) => {
            tracing::info!(
                tables = h.len(),
                "schema history restored as of the resume position"
            );
            if flavor == Flavor::MariaDb && !h.marks_json() {
                // Recorded before binlake marked MariaDB's JSON columns: take the markers
                // from today's schemas, so that streamed rows say what snapshots say.
                let filter = cfg.source.filter();
                let today = binlake_mysql::schema_history::load_from_information_schema(
                    &mut conn,
                    &|db, t| filter.table_included(db, t),
                )
                .await?;
                let marked = h.adopt_json_markers(&today);
                tracing::info!(
                    columns = marked,
                    "schema history from before JSON markers: MariaDB JSON columns marked from information_schema"
                );
            }
            h
        }
        None => {
            if !full {
                tracing::warn!(
                    "binlog_row_metadata is not FULL and no schema history is stored yet: schemas come from information_schema (today's) and the binlog's DDL; set it to FULL for exact schemas whatever happens"
                );
            }
            let filter = cfg.source.filter();
            binlake_mysql::schema_history::load_from_information_schema(&mut conn, &|db, t| {
                filter.table_included(db, t)
            })
            .await?
        }
    };
    let _ = conn.disconnect().await;
    if stored.is_none() {
        // Kept with the first commit: the schemas at the start position.
        writer.write_schema_history(&history.to_json()).await?;
    }
    let lookup: Box<dyn binlake_mysql::binlog::SchemaLookup> = Box::new(history);
    let start_position = if resnapshot {
        None
    } else {
        cfg.source.start_position()
    };
    let start = match (&stored, start_position) {
        (Some(s), _) => StartFrom::Position(s.resume.clone()),
        (None, Some(p)) => {
            tracing::info!(position = %p, "no recorded position: starting at source.start");
            StartFrom::Position(p)
        }
        (None, None) => {
            if cfg.snapshot.mode == SnapshotMode::Never {
                tracing::warn!(
                    name = %cfg.name,
                    "no recorded position and snapshot.mode = never: starting at the current end of the binlog; rows that exist now are not captured"
                );
            } else {
                tracing::info!(name = %cfg.name, "no recorded position: starting at the current end of the binlog and snapshotting existing rows");
            }
            StartFrom::End
        }
    };
    let reader = BinlogReader::open(&cfg.source, start, cfg.source.filter(), lookup).await?;
    let mut last = match &stored {
        Some(s) => Some(Pending {
            position: s.resume.clone(),
            file_pos: s.file_pos.clone(),
            ts_us: s.ts_us,
        }),
        None => Some(Pending {
            position: reader.resume_position().clone(),
            file_pos: reader.resume_position().to_string(),
            ts_us: 0,
        }),
    };
    let stored_progress = stored.as_ref().and_then(|s| s.snapshot.clone());
    let snapshot = match (&stored, stored_progress) {
        (Some(_), Some(p)) if !p.is_done() => Some(p),
        (None, _) if cfg.snapshot.mode != SnapshotMode::Never => {
            Some(SnapshotProgress::new(Vec::new(), false))
        }
        _ => None,
    };
    // Tables whose rows consumers hold from before a purged position: emptied (a
    // truncate) in the first commit, before the new snapshot fills them again, so rows
    // deleted while binlake could not read the binlog do not stay.
    let mut stale: Vec<std::sync::Arc<binlake_core::TableSchema>> = Vec::new();
    let snapshot = match snapshot {
        None => None,
        Some(mut progress) => {
            let (chunk_reader, tables) =
                ChunkReader::open(&cfg.source, &cfg.snapshot, flavor).await?;
            if stored.is_none() {
                progress.tables = tables
                    .iter()
                    .filter(|t| {
                        writer.keeps_keyless_tables()
                            || chunk_reader
                                .schema(t)
                                .is_some_and(|s| !s.primary_key.is_empty())
                    })
                    .cloned()
                    .collect();
            }
            if resnapshot {
                stale = progress
                    .tables
                    .iter()
                    .filter_map(|t| chunk_reader.schema(t))
                    .collect();
            }
            tracing::info!(
                tables = progress.tables.len(),
                done_chunks = progress.chunks,
                "snapshot: reading existing rows while streaming"
            );
            let mut run =
                Some(SnapshotRun::start(chunk_reader, &cfg.source, &tables, progress).await?);
            // None when nothing (is left) to read, e.g. the tables were dropped.
            record_snapshot_state(&mut run, &mut writer);
            run
        }
    };
    if stored.is_none() {
        // Record where this capture starts before anything else, so that a crash or a
        // restart before the first batch resumes here instead of at a later "end".
        let start = reader.resume_position().clone();
        if let Some(at) = info.binlog_position.as_ref().filter(|_| !stale.is_empty()) {
            tracing::warn!(
                tables = stale.len(),
                "re-snapshot after a purged position: the tables' earlier rows are truncated first"
            );
            for table in stale {
                writer
                    .write_change(&truncate_before_resnapshot(table, at))
                    .await?;
            }
        }
        writer.commit(&start, &start.to_string(), 0).await?;
    }
    tracing::info!(position = %reader.resume_position(), name = %cfg.name, "streaming changes");
    crate::telemetry::set_ready(true);
    let result = pump(
        cfg,
        flavor,
        batching,
        reader,
        &mut writer,
        shutdown,
        &mut last,
        snapshot,
    )
    .await;
    if result.is_err() {
        writer.abort().await;
    }
    result
}

/// The truncate that empties `table` before a re-snapshot (its rows are read again): just
/// before `at`, the end of the binlog when capture started over, so that it comes before
/// every change it streams, even one starting at `at`.
fn truncate_before_resnapshot(
    table: std::sync::Arc<binlake_core::TableSchema>,
    at: &binlake_core::BinlogFilePos,
) -> ChangeEvent {
    ChangeEvent {
        op: binlake_core::Op::Truncate,
        table,
        before: None,
        after: None,
        source: binlake_core::SourceInfo {
            server_id: 0,
            gtid: None,
            position: binlake_core::EventPosition {
                file: at.file.as_str().into(),
                pos: at.pos.saturating_sub(1),
                row: 0,
            },
            ts_us: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64),
            snapshot: binlake_core::SnapshotMarker::False,
            thread: None,
            query: Some("binlake: re-snapshot after a purged position".into()),
        },
        transaction: None,
    }
}

#[allow(clippy::too_many_arguments)]
async fn pump<S: Sink>(
    cfg: &Config,
    flavor: Flavor,
    cc: &Batching,
    mut reader: BinlogReader,
    writer: &mut S,
    shutdown: &mut watch::Receiver<bool>,
    last: &mut Option<Pending>,
    mut snapshot: Option<SnapshotRun>,
) -> Result<(), CaptureError> {
    let nothing_to_snapshot = snapshot.as_ref().is_none_or(|s| s.snap.is_done());
    if cfg.snapshot.mode == SnapshotMode::InitialOnly && nothing_to_snapshot {
        tracing::info!("snapshot.mode = initial_only and nothing (more) to snapshot: stopping");
        return Ok(());
    }
    // Readiness follows the replication connection while the reader reconnects.
    let connected = reader.connection_state();
    let _health = AbortOnDrop(tokio::spawn(async move {
        loop {
            crate::telemetry::set_ready(connected.load(std::sync::atomic::Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }));
    // Items go over in batches (the rows of one binlog event, at most 64): a hand-over
    // per row cost a task wake-up per row. The channel must still hold many source
    // transactions: "the reader has nothing more" (commit now) is also seen when a slow
    // sink (a lake commit) let the reader fill the channel, so each commit then carries
    // only what fit in it, and a small channel makes lags grow (run_freshness: p99 17 s
    // with 64 batches, 0.5 s with 1024).
    let (tx, mut rx) = mpsc::channel::<Result<Vec<BinlogItem>, binlake_mysql::Error>>(1024);
    let reader_task = tokio::spawn(async move {
        loop {
            let items = reader.next_many(64).await;
            let failed = items.is_err();
            if tx.send(items).await.is_err() || failed {
                break;
            }
        }
    });
    let _guard = AbortOnDrop(reader_task);

    let mut batch = Batch::default();
    let mut pending: Option<Pending> = None;
    let mut in_source_txn = false;
    let mut per_table: BTreeMap<String, u64> = BTreeMap::new();
    let mut txn_events = 0u64;
    let mut stopping: Option<Instant> = None;
    let mut caught_up = false;
    let mut read_counts = ReadCounts::default();
    // Tables a DDL of the open source transaction changed the rows of, to read again
    // when no snapshot runs; and whether the snapshot's plan changed with the DDL.
    let mut reread: Vec<binlake_core::TableChange> = Vec::new();
    let mut replanned = false;
    // Snapshot requests (`binlake snapshot`) are looked for this often.
    let mut signals = tokio::time::interval(Duration::from_secs(2));
    signals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        // When to wake up without an item: the linger of a batch that could be
        // committed, the heartbeat, or the end of the grace period.
        let deadline = match (&pending, batch.started, stopping) {
            (_, _, Some(s)) => s + cc.grace,
            (Some(_), Some(b), None) if batch.rows > 0 => b + cc.linger_for(caught_up),
            _ => batch.last_commit + cc.heartbeat,
        };
        tokio::select! {
            _ = shutdown.changed(), if stopping.is_none() => {
                tracing::info!("shutting down: finishing the transaction in flight");
                stopping = Some(Instant::now());
                if !in_source_txn {
                    return finish(writer, &mut pending, last).await;
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                if stopping.is_some() {
                    tracing::warn!("grace period over inside a source transaction: aborting the open batch (it is re-read on the next start)");
                    writer.abort().await;
                    return Ok(());
                }
                if pending.is_some() && !in_source_txn {
                    commit(writer, &mut pending, last).await?;
                    batch.committed();
                } else if !in_source_txn && !writer.in_transaction() {
                    writer.write_heartbeat().await?;
                    if let Some(p) = last.as_ref() {
                        let (pos, fp, ts) = (p.position.clone(), p.file_pos.clone(), p.ts_us);
                        writer.commit(&pos, &fp, ts).await?;
                        crate::telemetry::committed(writer.kind(), ts, true);
                    }
                    batch.last_commit = Instant::now();
                }
            }
            _ = signals.tick(), if stopping.is_none() && !in_source_txn => {
                let tables = writer.snapshot_requests().await?;
                if !tables.is_empty() {
                    add_requested(cfg, flavor, &mut snapshot, writer, tables).await?;
                    // Record the request taken, with the tables it adds, before any of
                    // their rows: `run` commits tables before its checkpoint, and only
                    // tables the checkpoint lists as pending can go on from their own
                    // record after a crash in between.
                    if pending.is_none() {
                        pending = last.clone();
                    }
                    commit(writer, &mut pending, last).await?;
                    batch.committed();
                }
            }
            chunk = next_chunk(&mut snapshot) => {
                chunk?;
                if !in_source_txn
                    && flush_chunks(&mut snapshot, writer, &mut pending, last, &mut batch, cc.max_rows).await?
                    && cfg.snapshot.mode == SnapshotMode::InitialOnly
                {
                    return finish(writer, &mut pending, last).await;
                }
            }
            items = rx.recv() => {
                let items = match items {
                    Some(Ok(items)) => items,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(binlake_mysql::Error::Connect {
                        target: cfg.source.describe(),
                        reason: "the binlog reader stopped".into(),
                    }.into()),
                };
                let mut items = items.into_iter().peekable();
                while let Some(item) = items.next() {
                    match item {
                        BinlogItem::Begin(t) => {
                            in_source_txn = true;
                            per_table.clear();
                            txn_events = 0;
                            batch.started.get_or_insert_with(Instant::now);
                            writer.write_transaction_marker(&t.id, None, t.ts_us).await?;
                        }
                        BinlogItem::Position(p) => {
                            if let Some(s) = snapshot.as_mut() {
                                s.snap.observe_position(&p);
                            }
                            if !in_source_txn
                                && flush_chunks(&mut snapshot, writer, &mut pending, last, &mut batch, cc.max_rows).await?
                                && cfg.snapshot.mode == SnapshotMode::InitialOnly
                            {
                                return finish(writer, &mut pending, last).await;
                            }
                        }
                        BinlogItem::Change(e) => {
                            read_counts.add(&e);
                            if let Some(s) = snapshot.as_mut() {
                                s.snap.observe_change(&e);
                                if s.snap.holds_back(&e) {
                                    continue;
                                }
                            }
                            writer.write_change(&e).await?;
                            batch.rows += 1;
                            txn_events += 1;
                            if cc.per_table_counts {
                                *per_table.entry(e.table.qualified_name()).or_default() += 1;
                            }
                        }
                        BinlogItem::SchemaChange(s) => {
                            writer.write_schema_change(&s).await?;
                            match snapshot.as_mut() {
                                Some(run) => {
                                    replanned |= run.snap.schema_changed(&s.tables, cfg.snapshot.reread_on_schema_change);
                                }
                                // A replaced table (truncated at the statement) is read again
                                // whatever the setting says: else it would stay empty.
                                None => {
                                    let flag = cfg.snapshot.reread_on_schema_change;
                                    reread.extend(s.tables.iter().filter(|t| t.rewrites_rows && (flag || t.replaced)).cloned());
                                }
                            }
                        }
                        BinlogItem::SchemaHistory(h) => writer.write_schema_history(&h).await?,
                        BinlogItem::Commit(c) => {
                            in_source_txn = false;
                            read_counts.flush(c.ts_us);
                            if txn_events > 0 {
                                writer.write_transaction_marker(&c.id, Some((txn_events, &per_table)), c.ts_us).await?;
                            }
                            pending = Some(Pending {
                                position: c.resume(),
                                file_pos: c.file_pos.to_string(),
                                ts_us: c.ts_us,
                            });
                            if let Some(s) = snapshot.as_mut() {
                                s.snap.observe_position(&c.file_pos);
                            }
                            if !reread.is_empty() || replanned {
                                reread_after_ddl(cfg, flavor, &mut snapshot, writer, std::mem::take(&mut reread)).await?;
                                replanned = false;
                                // Recorded with the DDL's position, before any of the rows.
                                commit(writer, &mut pending, last).await?;
                                batch.committed();
                                if snapshot.is_none() && cfg.snapshot.mode == SnapshotMode::InitialOnly {
                                    // The DDL dropped the last table left to read.
                                    return finish(writer, &mut pending, last).await;
                                }
                            }
                            if stopping.is_some() {
                                return finish(writer, &mut pending, last).await;
                            }
                            if snapshot.is_some()
                                && flush_chunks(&mut snapshot, writer, &mut pending, last, &mut batch, cc.max_rows).await?
                                && cfg.snapshot.mode == SnapshotMode::InitialOnly
                            {
                                return finish(writer, &mut pending, last).await;
                            }
                            let idle = items.peek().is_none() && rx.is_empty();
                            let due = batch.rows >= cc.max_rows
                                || writer.batch_full()
                                || batch.started.is_some_and(|b| b.elapsed() >= cc.linger_for(caught_up))
                                || (idle && batch.rows > 0);
                            if due {
                                commit(writer, &mut pending, last).await?;
                                batch.committed();
                            }
                            let lag_s = (now_us() - c.ts_us) / 1_000_000;
                            if idle && !caught_up && lag_s <= 2 {
                                caught_up = true;
                                tracing::info!(position = %c.resume(), "caught up with the primary");
                            } else if caught_up && lag_s > 10 && !idle {
                                caught_up = false;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The batch being filled.
struct Batch {
    /// Rows in it.
    rows: usize,
    /// Snapshot chunks in it.
    chunks: usize,
    /// When its first row came.
    started: Option<Instant>,
    /// When the last commit (or heartbeat) was.
    last_commit: Instant,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            rows: 0,
            chunks: 0,
            started: None,
            last_commit: Instant::now(),
        }
    }
}

impl Batch {
    fn committed(&mut self) {
        self.rows = 0;
        self.chunks = 0;
        self.started = None;
        self.last_commit = Instant::now();
    }
}

/// Changes read per table and op, flushed into the metrics once per source transaction.
#[derive(Default)]
struct ReadCounts(
    std::collections::HashMap<usize, (std::sync::Arc<binlake_core::TableSchema>, [u64; 5])>,
);

impl ReadCounts {
    fn add(&mut self, e: &ChangeEvent) {
        let i = match e.op {
            binlake_core::Op::Create => 0,
            binlake_core::Op::Update => 1,
            binlake_core::Op::Delete => 2,
            binlake_core::Op::Read => 3,
            binlake_core::Op::Truncate => 4,
        };
        self.0
            .entry(std::sync::Arc::as_ptr(&e.table) as usize)
            .or_insert_with(|| (e.table.clone(), [0; 5]))
            .1[i] += 1;
    }

    /// At the end of a source transaction committed at `ts_us`.
    fn flush(&mut self, ts_us: i64) {
        for (_, (table, n)) in self.0.drain() {
            let name = table.qualified_name();
            crate::telemetry::table_read(&name, n.iter().sum(), ts_us);
            for (op, v) in ["c", "u", "d", "r", "t"].iter().zip(n) {
                if v > 0 {
                    crate::telemetry::count(
                        "binlake_changes_read_total",
                        &[("table", &name), ("op", op)],
                        v as f64,
                    );
                }
            }
        }
    }
}

/// A snapshot in progress and its progress report.
struct SnapshotRun {
    snap: Snapshotter,
    report: crate::progress::SnapshotReport,
}

impl SnapshotRun {
    async fn start(
        reader: ChunkReader,
        source: &binlake_mysql::SourceConfig,
        known: &[String],
        progress: SnapshotProgress,
    ) -> Result<SnapshotRun, CaptureError> {
        let snap = Snapshotter::start(reader, source, known, progress).await?;
        let report = crate::progress::SnapshotReport::new(&snap.progress(), snap.estimates());
        Ok(SnapshotRun { snap, report })
    }
}

/// Adds tables requested while streaming to the snapshot in progress, or starts one
/// (rows marked `incremental`); see [`Snapshotter::add_tables`] for those skipped.
async fn add_requested<S: Sink>(
    cfg: &Config,
    flavor: Flavor,
    snapshot: &mut Option<SnapshotRun>,
    writer: &mut S,
    tables: Vec<KeyRange>,
) -> Result<(), CaptureError> {
    let run = match snapshot {
        Some(run) => run,
        None => {
            let (reader, known) = ChunkReader::open(&cfg.source, &cfg.snapshot, flavor).await?;
            let progress = SnapshotProgress::new(Vec::new(), true);
            snapshot.insert(SnapshotRun::start(reader, &cfg.source, &known, progress).await?)
        }
    };
    run.snap.add_ranges(tables);
    record_snapshot_state(snapshot, writer);
    Ok(())
}

/// Hands what the snapshot has left to the sink, to record with the next commit; a done
/// snapshot ends.
fn record_snapshot_state<S: Sink>(snapshot: &mut Option<SnapshotRun>, writer: &mut S) {
    match snapshot {
        Some(run) if !run.snap.is_done() => {
            writer.set_snapshot_state(Some(run.snap.progress()));
        }
        _ => {
            writer.set_snapshot_state(None);
            *snapshot = None;
        }
    }
}

/// After a DDL: when no snapshot runs, starts one (rows marked `incremental`) for the
/// tables whose existing rows it changed (`changes`; see
/// [`Snapshotter::schema_changed`]), and records what the snapshot has left with the
/// DDL's commit.
async fn reread_after_ddl<S: Sink>(
    cfg: &Config,
    flavor: Flavor,
    snapshot: &mut Option<SnapshotRun>,
    writer: &mut S,
    changes: Vec<binlake_core::TableChange>,
) -> Result<(), CaptureError> {
    if !changes.is_empty() {
        if snapshot.is_none() {
            let (reader, known) = ChunkReader::open(&cfg.source, &cfg.snapshot, flavor).await?;
            let progress = SnapshotProgress::new(Vec::new(), true);
            *snapshot = Some(SnapshotRun::start(reader, &cfg.source, &known, progress).await?);
        }
        if let Some(run) = snapshot.as_mut() {
            run.snap.schema_changed(&changes, true);
        }
    }
    record_snapshot_state(snapshot, writer);
    Ok(())
}

async fn next_chunk(s: &mut Option<SnapshotRun>) -> Result<(), CaptureError> {
    match s {
        Some(run) => Ok(run.snap.next_chunk().await?),
        None => std::future::pending().await,
    }
}

/// Emits the chunks whose high watermark the stream has reached into the batch, with the
/// progress they leave; commits when the batch holds the sink's chunks per commit,
/// `max_rows` rows or all the memory the sink keeps (else at the batch's linger, as
/// streamed rows). True when that
/// completed the snapshot (then always committed).
async fn flush_chunks<S: Sink>(
    snapshot: &mut Option<SnapshotRun>,
    writer: &mut S,
    pending: &mut Option<Pending>,
    last: &mut Option<Pending>,
    batch: &mut Batch,
    max_rows: usize,
) -> Result<bool, CaptureError> {
    let Some(run) = snapshot.as_mut() else {
        return Ok(false);
    };
    while let Some(emit) = run.snap.ready(now_us()) {
        for e in &emit.events {
            writer.write_change(e).await?;
        }
        let emitted = emit.events.len() as u64;
        crate::telemetry::count("binlake_snapshot_chunks_total", &[], 1.0);
        crate::telemetry::count("binlake_snapshot_rows_total", &[], emitted as f64);
        let progress = run.snap.progress();
        if emit.table_done {
            tracing::info!(table = %emit.table, rows = progress.rows, chunks = progress.chunks, "snapshot: table done");
        }
        run.report
            .chunk(&progress, &emit.table, emitted, emit.table_done);
        writer.set_snapshot_state((!progress.is_done()).then(|| progress.clone()));
        if pending.is_none() {
            *pending = last.clone();
        }
        batch.rows += emit.events.len();
        batch.chunks += 1;
        batch.started.get_or_insert_with(Instant::now);
        if batch.chunks >= writer.snapshot_chunks_per_commit()
            || batch.rows >= max_rows
            || writer.batch_full()
            || progress.is_done()
        {
            commit(writer, pending, last).await?;
            batch.committed();
        }
        if progress.is_done() {
            run.report.finish();
            tracing::info!(
                rows = progress.rows,
                chunks = progress.chunks,
                "snapshot complete"
            );
            *snapshot = None;
            return Ok(true);
        }
    }
    Ok(false)
}

async fn commit<S: Sink>(
    writer: &mut S,
    pending: &mut Option<Pending>,
    last: &mut Option<Pending>,
) -> Result<(), CaptureError> {
    if let Some(p) = pending.take() {
        writer.commit(&p.position, &p.file_pos, p.ts_us).await?;
        crate::telemetry::committed(writer.kind(), p.ts_us, false);
        crate::telemetry::binlog_position(&p.file_pos);
        *last = Some(p);
    }
    Ok(())
}

async fn finish<S: Sink>(
    writer: &mut S,
    pending: &mut Option<Pending>,
    last: &mut Option<Pending>,
) -> Result<(), CaptureError> {
    if pending.is_some() {
        commit(writer, pending, last).await?;
    } else if writer.in_transaction() {
        writer.abort().await;
    }
    let (messages, commits) = writer.counts();
    tracing::info!(messages, commits, "capture stopped cleanly");
    Ok(())
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
