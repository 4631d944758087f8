//! `binlake verify`: compares every captured table's replica with the primary, row by
//! row through chunked digests, while writes go on and without locks on the primary.
//!
//! # What is compared
//!
//! The columns the lake holds (the table as capture projects it: columns excluded by the
//! config are not compared), keyed by the primary key. Both sides are turned into the
//! same representation by the same code (`binlake_lake::verify`): primary rows as the
//! snapshot reads them (core `Value`s) go through the lake's own Value → Arrow builders,
//! replica rows are read back as Arrow; each row is hashed from Arrow's row format. So no
//! canonical text of DECIMAL, temporal, unsigned, binary, JSON or zero-date values has to
//! agree between SQL and Rust; what is checked is that the replica holds exactly what
//! binlake would write for the primary's rows now.
//!
//! # Algorithm
//!
//! For each table:
//!
//! 1. Load the replica at its current version **V**; the run's `txn` version in it names
//!    the last batch it holds, **B** (for a replica `materialize` keeps: the `txn` of each
//!    partition of its topic names the last Kafka offset it holds).
//! 2. Read the primary in chunks of key ranges (the snapshot's `ChunkReader`: rows whose
//!    key is after the last chunk's, in key order, `LIMIT n`), each in its own
//!    `START TRANSACTION WITH CONSISTENT SNAPSHOT`, whose binlog position **Pᵢ** MariaDB
//!    names (`Binlog_snapshot_file` / `_position`): chunk i is exactly the range at Pᵢ.
//!    No lock is taken; a read view is held for one chunk only. Each chunk keeps only its
//!    digest (row count, sum of 128-bit row hashes) and its bounds.
//! 3. Wait until `binlake run`'s checkpoint (or, for `materialize`, the table's coverage
//!    record: `binlake_lake::coverage`) covers the primary's GTID position read after the
//!    last chunk (≥ every Pᵢ), and the table is past any snapshot in progress.
//! 4. Read the change log's entries that V lacks, in change-log order: those of its
//!    commits after the one of batch B (each batch is committed to the replica and the
//!    change log with the same `txn`, and `__seq` carries the change-log commit version,
//!    so the cut is exact; re-applying changes V already has would hide a replica edited
//!    behind binlake's back). For `materialize`, the entries after each partition's offset
//!    V holds (`__kafka_partition`, `__kafka_offset`): exact too, each batch's commits to
//!    both tables record the same offsets, and a key's changes are in one partition, in
//!    order. Without a `txn` to go by, the entries at or after the
//!    replica's last applied position. For a key k of chunk i, the replica's state at
//!    Pᵢ is: the row of the last of k's logged changes at or before Pᵢ (none if it is a
//!    delete), or, when k has no such change, its row in V. This *redoes* the log from V
//!    forward rather than undoing it backward, which needs no before images: every change
//!    logged carries the full row after it. A change counts at Pᵢ when it precedes Pᵢ in the
//!    binlog (a snapshot row, placed at its chunk's high watermark and equal to the table
//!    there, when that watermark is at or before Pᵢ).
//! 5. Scan V once (streamed), place each row in its chunk by key, add it (or, for keys
//!    redone, the redone row) to the chunk's replica digest, and compare digests.
//! 6. The chunks whose digests differ are read again (primary at new positions, the
//!    replica the same way at those positions), this time keeping one hash per key, and
//!    every key missing from the replica, extra in it, or different is listed.
//!
//! Why this is right: the replica is exactly the change log's changes applied in order
//! (the lake's contract), so V plus the changes after B in order is the replica's state
//! at any later position the change log has reached; the checkpoint covering Pᵢ says
//! that it has. For the primary, chunk i is the range at Pᵢ exactly. Both are therefore
//! the same range at the same source position; a difference is a real one.
//!
//! # MySQL
//!
//! MySQL names no binlog position for a consistent snapshot: a chunk is read between two
//! binlog ends (low, high), at some point in between, and is compared at high. A key
//! changed between low and high may then differ for that reason alone; the second pass
//! reads it again, and only a key that differs there too is reported. On a busy table,
//! verify on MySQL can report a key changed at the very moment of its read (weaker than
//! on MariaDB, where a difference is always real). MySQL is not tested here (no server).
//!
//! # Memory
//!
//! One chunk of primary rows at a time; one digest per chunk; the replica streamed batch
//! by batch; the changes logged after batch B (those made while verify runs, so memory grows
//! with the write rate times the run's length); in the second pass one hash per key of at
//! most 64 differing chunks at a time.
//!
//! # Repair
//!
//! `--repair` asks the run (its signal folder, as `binlake snapshot` does), or for
//! replicas `materialize` keeps capture (its `<name>.signals` topic), to snapshot exactly
//! the differing keys again: one key range per differing key, from the primary key
//! before it to it, and for keys the primary does not have (extra in the replica) the
//! request names them so that the snapshot deletes them when its read of the range does
//! not find them. The rows arrive through the on-demand snapshot path, merged into the
//! stream with its watermarks, so the replica converges without a full re-snapshot.
//!
//! # Limits
//!
//! Tables without a primary key, and tables whose key has a text (collation-ordered)
//! column, are not verified (reported, exit 1). A TRUNCATE or a DDL of the table
//! while it is verified makes that table's result unreliable: it is reported as an error.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use binlake_core::position::{ResumePosition, binlog_file_sequence};
use binlake_core::{BinlogFilePos, Row, TableSchema};
use binlake_lake::Lake;
use binlake_lake::status::Checkpoint;
use binlake_lake::store::TableKind;
use binlake_lake::verify::{Digest, LoggedChange, RowCodec, Since};
use binlake_mysql::snapshot::{ChunkReader, KeyRange, SnapshotConfig, key_json};
use clap::Args;
use serde::Serialize;

use crate::config::Config;

/// Arguments of `binlake verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The TOML config file (the run's).
    #[arg(long, short)]
    pub config: std::path::PathBuf,
    /// A table to verify, `db.table`; repeatable. Default: every captured table the lake
    /// holds.
    #[arg(long = "table", short)]
    pub tables: Vec<String>,
    /// Ask the run to snapshot the differing keys again (see the README).
    #[arg(long)]
    pub repair: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// How many keys of each kind of difference to list per table.
    #[arg(long, default_value_t = 20)]
    pub sample: usize,
    /// Rows per chunk read from the primary.
    #[arg(long, default_value_t = 10_000)]
    pub chunk_size: usize,
    /// How long to wait for the replicas to pass the positions compared at.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Keys of one kind of difference: how many, and the first few.
#[derive(Debug, Default, Serialize)]
pub struct Keys {
    /// How many.
    pub count: u64,
    /// Up to `--sample` of them (`col=value, …`).
    pub sample: Vec<String>,
}

impl Keys {
    fn push(&mut self, key: String, limit: usize) {
        self.count += 1;
        if self.sample.len() < limit {
            self.sample.push(key);
        }
    }
}

/// One table's result.
#[derive(Debug, Default, Serialize)]
pub struct TableReport {
    /// `db.table`.
    pub table: String,
    /// Whether the replica equals the primary.
    pub equal: bool,
    /// Rows read from the primary (first pass).
    pub rows: u64,
    /// Rows in the replica at the compared positions (first pass).
    pub replica_rows: u64,
    /// Chunks compared.
    pub chunks: u64,
    /// Chunks whose digests differed.
    pub chunks_differing: u64,
    /// Keys the primary has and the replica lacks.
    pub missing: Keys,
    /// Keys the replica has and the primary does not.
    pub extra: Keys,
    /// Keys whose rows differ.
    pub different: Keys,
    /// The source positions compared at (first and last chunk).
    pub positions: Vec<String>,
    /// Why the table could not be verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `--repair`: the key ranges asked to be read again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair_ranges: Option<usize>,
    /// Who was asked: `the run`, or `capture` (for replicas that materialize keeps).
    #[serde(skip)]
    pub repair_by: &'static str,
}

/// A key range of a chunk, with its bounds as key bytes (`binlake_lake::verify`) and as
/// the snapshot's key JSON.
#[derive(Debug, Clone)]
struct Bounds {
    after: Option<String>,
    after_key: Option<Vec<u8>>,
    upto: Option<String>,
    upto_key: Option<Vec<u8>>,
}

impl Bounds {
    fn holds(&self, key: &[u8]) -> bool {
        self.after_key.as_deref().is_none_or(|a| key > a)
            && self.upto_key.as_deref().is_none_or(|u| key <= u)
    }
}

/// One side of a chunk: a digest, or (second pass) one hash per key.
#[derive(Debug, Default)]
struct Side {
    digest: Digest,
    keys: BTreeMap<Vec<u8>, u128>,
}

impl Side {
    fn add(&mut self, key: &[u8], hash: u128, detail: bool) {
        self.digest.add(hash);
        if detail {
            self.keys.insert(key.to_vec(), hash);
        }
    }
}

/// A chunk read from the primary.
#[derive(Debug)]
struct ChunkState {
    bounds: Bounds,
    at: BinlogFilePos,
    primary: Side,
    /// Second pass: key bytes → key JSON of the primary's rows (for repair ranges).
    primary_json: BTreeMap<Vec<u8>, String>,
    replica: Side,
}

/// What tells the changes a replica version lacks: the run's app id (its `txn` in both
/// the replica and the change log), or for `materialize` the Kafka offset of each
/// partition the replica holds, else the replica's last applied position.
#[derive(Debug)]
struct Lacks {
    app: Option<String>,
    offsets: Option<Vec<(i32, Option<i64>)>>,
    position: Option<(String, u64)>,
}

/// Which writer keeps the replicas: what tells verify they have passed a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// `binlake run`: its checkpoint.
    Run,
    /// `binlake materialize`: its workers' coverage records.
    Materialize,
}

/// Per table: what verify needs of it.
struct Target<'a> {
    name: String,
    codec: RowCodec,
    schema: Arc<TableSchema>,
    lake: &'a Lake,
    cfg: &'a Config,
    writer: Writer,
}

/// Runs `binlake verify`; `Ok(true)` when every table is equal.
pub async fn verify(cfg: &Config, args: &VerifyArgs) -> anyhow::Result<bool> {
    // A local lake folder that does not exist holds no run (and is not created here).
    let absent = binlake_lake::store::root_url(&cfg.lake.root)
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok())
        .is_some_and(|p| !p.exists());
    let lake = match absent {
        true => None,
        false => Some(Lake::open(&cfg.lake)?),
    };
    let mut writer = None;
    if let Some(lake) = &lake {
        if lake
            .get_json::<Checkpoint>(&crate::run::checkpoint_path(&cfg.name))
            .await?
            .is_some()
        {
            writer = Some(Writer::Run);
        } else if !binlake_lake::coverage::read_all(lake, &cfg.name)
            .await?
            .is_empty()
        {
            writer = Some(Writer::Materialize);
        }
    }
    let (lake, writer) = match (lake, writer) {
        (Some(lake), Some(w)) => (lake, w),
        _ => anyhow::bail!(
            "the lake at {} holds neither a checkpoint of a `binlake run` named `{}` nor the coverage records of a `binlake materialize` of it: verify compares the replicas run or materialize keep (their records tell when the replicas have passed a position); start one of them with this config first",
            cfg.lake.root,
            cfg.name
        ),
    };
    if args.repair && writer == Writer::Materialize && cfg.kafka.is_none() {
        anyhow::bail!(
            "--repair asks capture to read the differing keys again through `<name>.signals`: the config needs its [kafka] section"
        );
    }
    let info = probe(cfg).await?;
    let snap_cfg = SnapshotConfig {
        chunk_size: args.chunk_size.max(1),
        readers: 1,
        ..cfg.snapshot.clone()
    };
    let (mut reader, known) = ChunkReader::open(&cfg.source, &snap_cfg, info.flavor).await?;
    let in_lake: Vec<String> = lake
        .tables()
        .await?
        .into_iter()
        .map(|(d, t)| format!("{d}.{t}"))
        .collect();
    let tables: Vec<String> = match args.tables.is_empty() {
        true => known
            .iter()
            .filter(|t| in_lake.contains(t))
            .cloned()
            .collect(),
        false => args.tables.clone(),
    };
    let mut reports = Vec::new();
    for name in tables {
        let mut report = TableReport {
            table: name.clone(),
            ..TableReport::default()
        };
        let outcome = match reader.schema(&name) {
            None => Err(anyhow::anyhow!(
                "the table does not exist on the primary (or is not captured)"
            )),
            Some(schema) => match RowCodec::new(schema.clone()) {
                Err(e) => Err(anyhow::anyhow!(e)),
                Ok(codec) => {
                    let t = Target {
                        name: name.clone(),
                        codec,
                        schema,
                        lake: &lake,
                        cfg,
                        writer,
                    };
                    verify_table(&t, &mut reader, args, &mut report).await
                }
            },
        };
        if let Err(e) = outcome {
            report.error = Some(format!("{e:#}"));
            report.equal = false;
        }
        print_report(&report, args.json);
        reports.push(report);
    }
    let equal = reports.iter().all(|r| r.equal);
    if args.json {
        out!(
            "{}",
            serde_json::json!({ "equal": equal, "tables": reports.len() })
        );
    }
    Ok(equal)
}

fn print_report(r: &TableReport, json: bool) {
    if json {
        out!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    let verdict = match (&r.error, r.equal) {
        (Some(_), _) => "NOT VERIFIED",
        (None, true) => "equal",
        (None, false) => "DIFFERENT",
    };
    out!("{}: {verdict}", r.table);
    if let Some(e) = &r.error {
        out!("  error: {e}");
        return;
    }
    out!(
        "  rows: primary {}, replica {}; chunks {} ({} differing); compared at {}",
        r.rows,
        r.replica_rows,
        r.chunks,
        r.chunks_differing,
        r.positions.join(" … ")
    );
    for (what, keys) in [
        ("missing from the replica", &r.missing),
        ("extra in the replica", &r.extra),
        ("different", &r.different),
    ] {
        if keys.count > 0 {
            let more = match keys.count as usize > keys.sample.len() {
                true => ", …",
                false => "",
            };
            out!(
                "  {what} ({}): {}{more}",
                keys.count,
                keys.sample.join("; ")
            );
        }
    }
    if let Some(n) = r.repair_ranges {
        out!(
            "  repair: asked {} to read {n} key ranges again",
            r.repair_by
        );
    }
}

async fn verify_table(
    t: &Target<'_>,
    reader: &mut ChunkReader,
    args: &VerifyArgs,
    report: &mut TableReport,
) -> anyhow::Result<()> {
    let (db, table) = t
        .name
        .split_once('.')
        .ok_or_else(|| anyhow::anyhow!("`{}` is not `database.table`", t.name))?;
    let url = t.lake.table_url(db, table, TableKind::Replica)?;
    // The position first, then the table: the version loaded holds at least that.
    let first = t.lake.load(&url).await?.ok_or_else(|| {
        anyhow::anyhow!("the lake has no replica of the table (yet): nothing to compare")
    })?;
    let q = binlake_lake::verify::replica_position(&first).await?;
    let replica = t
        .lake
        .load(&url)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the replica disappeared"))?;
    let (app, offsets) = match t.writer {
        Writer::Run => (
            t.lake
                .get_json::<Checkpoint>(&crate::run::checkpoint_path(&t.cfg.name))
                .await?
                .and_then(|cp| cp.app_id),
            None,
        ),
        // The offsets of the topic's partitions the version holds (`txn` per partition).
        Writer::Materialize => {
            // A worker confirms a table once it has claimed a position record after
            // consuming the table's topic (within a capture heartbeat of that).
            let deadline = Instant::now() + args.timeout;
            let c = loop {
                let coverage = binlake_lake::coverage::read_all(t.lake, &t.cfg.name).await?;
                if let Some(c) = coverage.table(&t.name) {
                    break c.clone();
                }
                if Instant::now() > deadline {
                    anyhow::bail!(
                        "no materialize worker has confirmed a position of this table within {}: are capture and materialize running? (--timeout to wait longer)",
                        humantime::format_duration(args.timeout)
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let mut offsets = Vec::new();
            for p in 0..c.partitions {
                let app = crate::materialize::app_id(&c.topic, p);
                offsets.push((p, binlake_lake::table::txn_version(&replica, &app).await?));
            }
            (None, Some(offsets))
        }
    };
    let q = Lacks {
        app,
        offsets,
        position: q,
    };

    // First pass: digests per chunk over the whole table.
    let whole = Bounds {
        after: None,
        after_key: None,
        upto: None,
        upto_key: None,
    };
    let mut chunks = read_primary(t, reader, vec![whole], false).await?;
    report.chunks = chunks.len() as u64;
    report.rows = chunks.iter().map(|c| c.primary.digest.rows).sum();
    report.positions = match (chunks.first(), chunks.last()) {
        (Some(a), Some(b)) if chunks.len() > 1 => vec![a.at.to_string(), b.at.to_string()],
        (Some(a), _) => vec![a.at.to_string()],
        _ => Vec::new(),
    };
    replica_side(t, &replica, &q, &mut chunks, false, args).await?;
    report.replica_rows = chunks.iter().map(|c| c.replica.digest.rows).sum();
    let differing: Vec<Bounds> = chunks
        .iter()
        .filter(|c| c.primary.digest != c.replica.digest)
        .map(|c| c.bounds.clone())
        .collect();
    report.chunks_differing = differing.len() as u64;
    drop(chunks);

    // Second pass: the differing chunks, key by key, 64 chunks per replica scan.
    let mut ranges: Vec<KeyRange> = Vec::new();
    for group in differing.chunks(64) {
        let mut chunks = read_primary(t, reader, group.to_vec(), true).await?;
        replica_side(t, &replica, &q, &mut chunks, true, args).await?;
        for c in &chunks {
            diff_chunk(t, c, args.sample, report, &mut ranges);
        }
    }
    report.equal = report.missing.count + report.extra.count + report.different.count == 0;
    if args.repair && !ranges.is_empty() {
        report.repair_ranges = Some(ranges.len());
        report.repair_by = match t.writer {
            Writer::Run => "the run",
            Writer::Materialize => "capture",
        };
        match (t.writer, &t.cfg.kafka) {
            (Writer::Materialize, Some(kafka)) => {
                binlake_kafka::signals::request_ranges(
                    kafka,
                    &t.cfg.name,
                    &ranges,
                    t.cfg.capture.replication_factor,
                )
                .await?
            }
            _ => crate::run::request_ranges(t.lake, &t.cfg.name, &ranges).await?,
        }
    }
    Ok(())
}

/// Lists a second-pass chunk's differences, and the key ranges that would repair them.
fn diff_chunk(
    t: &Target<'_>,
    c: &ChunkState,
    sample: usize,
    report: &mut TableReport,
    ranges: &mut Vec<KeyRange>,
) {
    let range = |upto: Option<String>, after: Option<String>, absent: Vec<String>| KeyRange {
        table: t.name.clone(),
        after,
        upto,
        absent,
    };
    // The key JSON of the primary's key before `k` in this chunk, else the chunk's start.
    let before = |k: &[u8]| {
        c.primary_json
            .range(..k.to_vec())
            .next_back()
            .map(|(_, j)| j.clone())
            .or_else(|| c.bounds.after.clone())
    };
    for (k, h) in &c.primary.keys {
        match c.replica.keys.get(k) {
            Some(r) if r == h => continue,
            Some(_) => report.different.push(t.codec.describe_key(k), sample),
            None => report.missing.push(t.codec.describe_key(k), sample),
        }
        ranges.push(range(c.primary_json.get(k).cloned(), before(k), Vec::new()));
    }
    for k in c.replica.keys.keys() {
        if c.primary.keys.contains_key(k) {
            continue;
        }
        report.extra.push(t.codec.describe_key(k), sample);
        // Up to the key itself when it can be named, else to the chunk's end.
        let json = t.codec.key_row(k).and_then(|row| key_json(&t.schema, &row));
        match json {
            Some(j) => ranges.push(range(Some(j.clone()), before(k), vec![j])),
            None => {
                tracing::warn!(table = %t.name, key = %t.codec.describe_key(k), "verify: this key type cannot be named in a repair request; the extra row stays");
            }
        }
    }
}

/// Reads `ranges` of the primary chunk by chunk, each at its consistent snapshot.
async fn read_primary(
    t: &Target<'_>,
    reader: &mut ChunkReader,
    ranges: Vec<Bounds>,
    detail: bool,
) -> anyhow::Result<Vec<ChunkState>> {
    let mut out = Vec::new();
    for mut b in ranges {
        loop {
            let range = KeyRange {
                table: t.name.clone(),
                after: b.after.clone(),
                upto: b.upto.clone(),
                absent: Vec::new(),
            };
            let chunk = reader.read_range(&range).await?;
            if !Arc::ptr_eq(&chunk.table, &t.schema) && *chunk.table != *t.schema {
                anyhow::bail!("the table's schema changed while it was verified: verify it again");
            }
            let rows: &[Row] = &chunk.rows;
            let mut state = ChunkState {
                bounds: b.clone(),
                at: chunk.high.clone(),
                primary: Side::default(),
                primary_json: BTreeMap::new(),
                replica: Side::default(),
            };
            let mut last_key: Option<Vec<u8>> = None;
            t.codec.each_row(rows, |k, h, i| {
                state.primary.add(k, h, detail);
                if detail && let Some(j) = key_json(&t.schema, &rows[i]) {
                    state.primary_json.insert(k.to_vec(), j);
                }
                last_key = Some(k.to_vec());
            })?;
            match &chunk.cut_at {
                Some(cut) => {
                    state.bounds.upto = Some(cut.clone());
                    state.bounds.upto_key = last_key.clone();
                    out.push(state);
                    b.after = Some(cut.clone());
                    b.after_key = last_key;
                }
                None => {
                    out.push(state);
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// Whether a logged change is part of the table at binlog position `at`: a streamed
/// change logged before it; a snapshot row (at its chunk's high watermark, equal to the
/// table there) at or before it.
fn counts_at(c: &LoggedChange, at: &BinlogFilePos) -> bool {
    let seq = |f: &str| binlog_file_sequence(f).unwrap_or(0);
    let mine = (seq(&c.file), c.pos);
    let there = (seq(&at.file), at.pos);
    match c.op {
        'r' => mine <= there,
        _ => mine < there,
    }
}

/// The replica's side of `chunks` at their positions: waits for the run to pass them,
/// replays the change log since `q` onto the replica version loaded, and fills each
/// chunk's replica side.
#[allow(clippy::too_many_arguments)]
async fn replica_side(
    t: &Target<'_>,
    replica: &binlake_lake::verify::DeltaTable,
    q: &Lacks,
    chunks: &mut [ChunkState],
    detail: bool,
    args: &VerifyArgs,
) -> anyhow::Result<()> {
    // Every chunk's position is before the primary's GTID position now.
    let info = probe(t.cfg).await?;
    let target = info.gtid_position.ok_or_else(|| {
        anyhow::anyhow!("the primary reports no GTID position (MySQL: gtid_mode=ON is needed)")
    })?;
    wait_for_replicas(t, &target, args.timeout).await?;
    let (db, table) = t.name.split_once('.').unwrap_or((&t.name, ""));
    let changes_url = t.lake.table_url(db, table, TableKind::Changes)?;
    let changes = match t.lake.load(&changes_url).await? {
        Some(cl) => {
            let since = match &q.app {
                Some(app) => {
                    binlake_lake::verify::replica_batch_in_changes(replica, &cl, app).await?
                }
                None => None,
            };
            let since = match (since, &q.offsets, &q.position) {
                (Some(v), _, _) => Since::Version(v),
                (None, Some(offsets), _) => Since::Offsets(offsets.clone()),
                (None, None, Some((file, pos))) => Since::Position(file.clone(), *pos),
                (None, None, None) => Since::All,
            };
            binlake_lake::verify::changes_since(&cl, &t.codec, &since).await?
        }
        None => Vec::new(),
    };
    if changes.iter().any(|c| c.op == 't') {
        anyhow::bail!("the table was truncated while it was verified: verify it again");
    }
    let by_key = binlake_lake::verify::by_key(&changes);
    // The chunk of a key: the first whose end is at or after it, if it holds it.
    let find = |chunks: &[ChunkState], k: &[u8]| -> Option<usize> {
        let i = chunks.partition_point(|c| c.bounds.upto_key.as_deref().is_some_and(|u| u < k));
        (i < chunks.len() && chunks[i].bounds.holds(k)).then_some(i)
    };
    // The last change of a key that counts at `at`.
    let redone = |idx: &[usize], at: &BinlogFilePos| -> Option<&LoggedChange> {
        idx.iter().map(|&i| &changes[i]).rfind(|c| counts_at(c, at))
    };
    binlake_lake::verify::scan_replica(replica, &t.codec, |k, h| {
        let Some(i) = find(chunks, k) else { return };
        if let Some(idx) = by_key.get(k)
            && redone(idx, &chunks[i].at).is_some()
        {
            return;
        }
        chunks[i].replica.add(k, h, detail);
    })
    .await?;
    let mut redo: HashMap<usize, Vec<(Vec<u8>, u128)>> = HashMap::new();
    let mut partial = 0;
    for (k, idx) in &by_key {
        let Some(i) = find(chunks, k) else { continue };
        let Some(c) = redone(idx, &chunks[i].at) else {
            continue;
        };
        if c.partial {
            partial += 1;
        } else if let Some(h) = c.hash {
            redo.entry(i).or_default().push((k.clone(), h));
        }
    }
    if partial > 0 {
        anyhow::bail!(
            "{partial} keys changed while the table was verified with row images that leave columns out (binlog_row_image = MINIMAL or NOBLOB): the change log does not hold their whole rows, so their state at the chunks' positions is unknown; verify the table while it is quiet, or run the primary with binlog_row_image = FULL"
        );
    }
    for (i, rows) in redo {
        for (k, h) in rows {
            chunks[i].replica.add(&k, h, detail);
        }
    }
    Ok(())
}

/// The primary's flavour, binlog end and GTID position, on a connection of its own.
async fn probe(cfg: &Config) -> anyhow::Result<binlake_mysql::ServerInfo> {
    let mut conn = binlake_mysql::connect(&cfg.source).await?;
    Ok(binlake_mysql::ServerInfo::probe(&mut conn, &cfg.source).await?)
}

/// Waits until the replicas' writer has confirmed that the table holds everything up to
/// `target` and is past its snapshot: `binlake run`'s checkpoint, or for `materialize` the
/// table's coverage record (`binlake_lake::coverage`).
async fn wait_for_replicas(
    t: &Target<'_>,
    target: &ResumePosition,
    timeout: Duration,
) -> anyhow::Result<()> {
    let want = match target {
        ResumePosition::MariaDbGtids(p) => crate::wait::Target::MariaDb(p.clone()),
        ResumePosition::MysqlGtids(s) => crate::wait::Target::Mysql(s.clone()),
        ResumePosition::File(_) => anyhow::bail!("the primary reports no GTID position"),
    };
    let deadline = Instant::now() + timeout;
    loop {
        // Where the writer says the table is: its position (empty: none yet) and whether
        // its snapshot is still in progress.
        let (resume, pending) = match t.writer {
            Writer::Run => {
                let cp: Option<Checkpoint> = t
                    .lake
                    .get_json(&crate::run::checkpoint_path(&t.cfg.name))
                    .await?;
                (
                    cp.as_ref()
                        .and_then(|c| c.resume.clone())
                        .unwrap_or_default(),
                    cp.as_ref()
                        .is_some_and(|c| c.snapshot_pending().contains(&t.name)),
                )
            }
            Writer::Materialize => {
                let coverage = binlake_lake::coverage::read_all(t.lake, &t.cfg.name).await?;
                coverage
                    .table(&t.name)
                    .map(|c| (c.resume.clone(), c.snapshot_pending))
                    .unwrap_or_default()
            }
        };
        if !resume.is_empty() && !pending {
            match crate::wait::covers(&resume, &want) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => anyhow::bail!(e),
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{} did not reach the primary's position {target} within {} (it is at {}{}): {} (--timeout to wait longer)",
                match t.writer {
                    Writer::Run => format!("the run `{}`", t.cfg.name),
                    Writer::Materialize => format!(
                        "the table's replica, as the materialize workers of `{}` confirmed it,",
                        t.cfg.name
                    ),
                },
                humantime::format_duration(timeout),
                match resume.is_empty() {
                    true => "no position",
                    false => resume.as_str(),
                },
                match pending {
                    true => ", the table's snapshot still in progress",
                    false => "",
                },
                match t.writer {
                    Writer::Run => "is `binlake run` running and caught up?",
                    Writer::Materialize => "are capture and materialize running and caught up?",
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
