//! Crashes at every failpoint, and a primary restart, under a write workload: nothing lost,
//! nothing twice.
//!
//! Each test runs a sysbench-shaped workload (three tables; transactions of one to four
//! inserts, updates and deletes across them) on a private MariaDB, and crashes the real
//! `binlake` binary at each named failpoint in turn (`binlake_core::failpoint`: the gaps
//! between a durable write and its record), restarting it after each crash; twice, the
//! MariaDB server itself is restarted while binlake streams from it (during the snapshot,
//! and after it, when the binlog reader reconnects by itself). At the end:
//!
//! - each replica equals the primary's table, row for row;
//! - each change log (and, for capture, each Kafka topic) holds every change the binlog
//!   has for its table exactly once, by source position (`__binlog_file`,
//!   `__binlog_pos`, `__binlog_row`; the `binlake.position` header), with file names the
//!   binlog really has; each topic in the binlog's order. The binlog's changes are read back from the server after the
//!   workload, with the same reader.
//!
//! Every crash is checked to have happened at the failpoint asked for (the binary says so
//! on stderr before it aborts).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use binlake_core::{EventPosition, Op, ResumePosition};
use binlake_mysql::binlog::{BinlogItem, BinlogReader, Filter, NoLookup, StartFrom};
use mysql_async::prelude::Queryable;

use crate::alt_mariadb::AltMariaDb;
use crate::capture::CaptureProcess;
use crate::services::unique;

const TABLES: [&str; 3] = ["t1", "t2", "t3"];
const ROWS: u64 = 1500;

/// The private instance's admin connection, retried while the server restarts.
async fn admin(port: u16) -> mysql_async::Conn {
    let url = format!("mysql://binlake_admin:binlake-admin@127.0.0.1:{port}");
    let opts = mysql_async::Opts::from_url(&url).expect("valid admin URL");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match mysql_async::Conn::new(opts.clone()).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("{url}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Creates the database and its tables with `ROWS` rows each; returns the binlog
/// position after that (where capture starts).
async fn prepare(port: u16, db: &str) -> (String, u64) {
    let mut c = admin(port).await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    for t in TABLES {
        c.query_drop(format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL, KEY (k))"
        ))
        .await
        .unwrap();
        for from in (0..ROWS).step_by(500) {
            let values: Vec<String> = (from..from + 500)
                .map(|i| format!("({i}, {}, 'c-{i}-{t}', 'pad')", i % 97))
                .collect();
            c.query_drop(format!("INSERT INTO {t} VALUES {}", values.join(",")))
                .await
                .unwrap();
        }
    }
    c.query_drop("CREATE TABLE marker (id INT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| (r.get(0).unwrap(), r.get(1).unwrap()))
        .unwrap()
}

/// A write workload running until stopped: transactions of 1–4 changes across the
/// tables. It rides out a server restart (a transaction that fails is simply not
/// there, on the primary as in the replicas).
struct Workload {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Workload {
    fn start(port: u16, db: &str, seed: u64) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let db = db.to_string();
        let task = tokio::spawn(async move {
            let mut rng = seed | 1;
            let mut rnd = move |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % n
            };
            let mut committed = 0u64;
            let mut conn: Option<mysql_async::Conn> = None;
            while !s.load(Ordering::Relaxed) {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => {
                        conn = Some(admin(port).await);
                        let c = conn.as_mut().unwrap();
                        if c.query_drop(format!("USE {db}")).await.is_err() {
                            conn = None;
                        }
                        continue;
                    }
                };
                let mut sql = vec!["BEGIN".to_string()];
                for _ in 0..1 + rnd(4) {
                    let t = TABLES[rnd(3) as usize];
                    let id = rnd(ROWS + 300);
                    sql.push(match rnd(10) {
                        0..=3 => format!(
                            "INSERT INTO {t} VALUES ({id}, {}, 'ins-{id}', 'p') ON DUPLICATE KEY UPDATE k = k + 1",
                            rnd(100)
                        ),
                        4..=6 => format!("UPDATE {t} SET k = k + 1, c = 'upd-{}' WHERE id = {id}", rnd(1000)),
                        7 => format!("UPDATE {t} SET pad = 'range' WHERE id BETWEEN {id} AND {}", id + 4),
                        _ => format!("DELETE FROM {t} WHERE id = {id}"),
                    });
                }
                sql.push("COMMIT".into());
                let mut ok = true;
                for q in &sql {
                    if c.query_drop(q).await.is_err() {
                        ok = false;
                        break;
                    }
                }
                if ok {
                    committed += 1;
                } else {
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(2 + rnd(8))).await;
            }
            committed
        });
        Workload { stop, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// A config for `db.*` on the private instance at `port`, Kafka and a local lake, starting
/// at `start` (so the binlog's changes from there are the ones to find downstream).
fn config(name: &str, db: &str, port: u16, root: &Path, start: &(String, u64)) -> PathBuf {
    let cfg = crate::lake::lake_config(
        name,
        db,
        root,
        "[snapshot]\nchunk_size = 200\n[capture]\nlinger = \"5ms\"\n",
    );
    crate::capture::use_port(&cfg, port);
    let include = format!("include = [\"{db}.*\"]");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &include,
        &format!("{include}\nstart = \"file:{}:{}\"", start.0, start.1),
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Starts `binlake <command>` armed to crash at `failpoint`, waits for the crash, and
/// checks it happened there.
async fn crash_at(command: &str, cfg: &Path, failpoint: &str) {
    let (command, cfg, failpoint) = (
        command.to_string(),
        cfg.to_path_buf(),
        failpoint.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let p = CaptureProcess::start_command_env(
            &command,
            &cfg,
            &[(binlake_core::failpoint::ENV, failpoint.as_str())],
        );
        let (code, log) = p.wait_exit(Duration::from_secs(120));
        let name = failpoint.split('=').next().unwrap_or_default();
        assert!(
            log.contains(&format!("binlake failpoint {name} hit: crashing")),
            "`binlake {command}` did not crash at {failpoint} (exit {code:?}):\n{}",
            tail(&log)
        );
    })
    .await
    .unwrap();
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Starts `binlake <command>` unarmed and waits until it streams (or materializes).
async fn start(command: &str, cfg: &Path) -> CaptureProcess {
    let (command, cfg) = (command.to_string(), cfg.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let mut p = CaptureProcess::start_command(&command, &cfg);
        let needle = match command.as_str() {
            "materialize" => "materializing changes",
            _ => "streaming changes",
        };
        p.wait_for(needle, Duration::from_secs(120));
        p
    })
    .await
    .unwrap()
}

/// Restarts the primary while `command` streams from it, waits until it streams again,
/// then kills it. With `reconnect`, the snapshot is over and the binlog reader must ride
/// out the restart by itself (reconnecting as if it started afresh at its last commit);
/// else (a snapshot running) the pipeline may also restart as a whole.
async fn restart_primary_under(command: &str, cfg: &Path, db: &AltMariaDb, reconnect: bool) {
    let mut p = start(command, cfg).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    tokio::task::block_in_place(|| db.stop());
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| db.start_again());
    p = tokio::task::spawn_blocking(move || {
        let needles: &[&str] = match reconnect {
            true => &["binlog stream reconnected"],
            false => &[
                "binlog stream reconnected",
                "restarting from the last committed position",
            ],
        };
        if p.wait_for_any(needles, Duration::from_secs(120)) != needles[0] {
            p.wait_for("streaming changes", Duration::from_secs(120));
        }
        p
    })
    .await
    .unwrap();
    // Let it carry changes written after the restart (positions in the new binlog file).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::spawn_blocking(move || p.kill9())
        .await
        .unwrap();
}

/// Runs `command` until the snapshot it has left is over, then kills it.
async fn finish_snapshot(command: &str, cfg: &Path) {
    let mut p = start(command, cfg).await;
    let left = p
        .log()
        .iter()
        .find_map(|l| {
            let rest = l
                .split("snapshot: reading existing rows while streaming tables=")
                .nth(1)?;
            rest.split_whitespace().next()?.parse::<usize>().ok()
        })
        .unwrap_or(0);
    tokio::task::spawn_blocking(move || {
        for _ in 0..left {
            p.wait_for("snapshot: table done", Duration::from_secs(120));
        }
        p.kill9();
    })
    .await
    .unwrap();
}

/// Inserts a marker row; returns every change the binlog has for `db` from `start` up to
/// it, as (table, position) pairs.
async fn binlog_changes(
    alt: &AltMariaDb,
    db: &str,
    start: &(String, u64),
) -> BTreeMap<String, Vec<String>> {
    let mut c = admin(alt.port()).await;
    c.query_drop(format!("INSERT INTO {db}.marker VALUES (1)"))
        .await
        .unwrap();
    let filter = Filter::new(&[format!("{db}.*")], &[], &[]).unwrap();
    let mut source = alt.capture_source();
    source.server_id = 4390 + alt.port() as u32 % 10;
    let mut r = BinlogReader::open(
        &source,
        StartFrom::Position(ResumePosition::File(binlake_core::BinlogFilePos::new(
            start.0.clone(),
            start.1,
        ))),
        filter,
        Box::new(NoLookup),
    )
    .await
    .expect("open the binlog at the start position");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let item = tokio::time::timeout_at(deadline, r.next())
            .await
            .expect("the marker row within 60 s")
            .expect("binlog item");
        if let BinlogItem::Change(e) = item {
            if e.table.table == "marker" {
                return out;
            }
            assert_ne!(e.op, Op::Read);
            out.entry(e.table.table.clone())
                .or_default()
                .push(e.source.position.to_string());
        }
    }
}

/// The streamed changes (not snapshot rows) of each table's change log, as positions.
async fn change_log_positions(root: &Path, db: &str) -> BTreeMap<String, Vec<String>> {
    let lake = crate::lake::lake_at(root);
    let mut out = BTreeMap::new();
    for t in TABLES {
        let rows = crate::lake::query_rows_or_empty(
            &lake,
            &format!(
                "SELECT concat(__binlog_file, ':', CAST(__binlog_pos AS VARCHAR), '#', CAST(__binlog_row AS VARCHAR)) AS p FROM \"{db}\".\"{t}__changes\" WHERE __op <> 'r'"
            ),
            &["p"],
        )
        .await;
        out.insert(
            t.to_string(),
            rows.into_iter().map(|mut r| r.remove(0)).collect(),
        );
    }
    out
}

/// Asserts that `got` holds each of `want`'s positions exactly once per table.
fn assert_exactly_once(
    what: &str,
    want: &BTreeMap<String, Vec<String>>,
    got: &BTreeMap<String, Vec<String>>,
) {
    for t in TABLES {
        let mut w = want.get(t).cloned().unwrap_or_default();
        let mut g = got.get(t).cloned().unwrap_or_default();
        w.sort();
        g.sort();
        let mut count: BTreeMap<&str, i64> = BTreeMap::new();
        for p in &w {
            *count.entry(p).or_default() += 1;
        }
        for p in &g {
            *count.entry(p).or_default() -= 1;
        }
        let missing: Vec<_> = count
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(p, _)| *p)
            .collect();
        let extra: Vec<_> = count
            .iter()
            .filter(|(_, n)| **n < 0)
            .map(|(p, n)| (*p, -n))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{what} of {t}: {} changes in the binlog, {} held; {} missing (first: {:?}), {} extra or twice (first: {:?})",
            w.len(),
            g.len(),
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>(),
            extra.len(),
            extra.iter().take(5).collect::<Vec<_>>(),
        );
    }
}

/// Waits until each replica equals the primary's table.
async fn wait_replicas_equal(port: u16, root: &Path, db: &str, timeout: Duration) {
    let lake = crate::lake::lake_at(root);
    let mut c = admin(port).await;
    let deadline = Instant::now() + timeout;
    for t in TABLES {
        let want: Vec<Vec<String>> = c
            .query_map(
                format!("SELECT id, k, c, pad FROM {db}.{t} ORDER BY id"),
                |(id, k, cc, pad): (i64, i64, String, String)| {
                    vec![id.to_string(), k.to_string(), cc, pad]
                },
            )
            .await
            .unwrap();
        loop {
            let got = crate::lake::query_rows_or_empty(
                &lake,
                &format!("SELECT id, k, c, pad FROM \"{db}\".\"{t}\" ORDER BY id"),
                &["id", "k", "c", "pad"],
            )
            .await;
            if got == want {
                break;
            }
            if Instant::now() > deadline {
                let diff: Vec<_> = want
                    .iter()
                    .zip(got.iter())
                    .filter(|(a, b)| a != b)
                    .take(3)
                    .collect();
                panic!(
                    "replica of {db}.{t} differs from the primary after {timeout:?}: {} rows vs {} (first differences: {diff:?})",
                    got.len(),
                    want.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Waits until each table's change log holds at least as many streamed changes as the
/// binlog has for it (the comparison then says whether they are the right ones).
async fn wait_change_logs(root: &Path, db: &str, want: &BTreeMap<String, Vec<String>>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = change_log_positions(root, db).await;
        let done = TABLES
            .iter()
            .all(|t| got.get(*t).map_or(0, Vec::len) >= want.get(*t).map_or(0, Vec::len));
        if done || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_crashed_at_every_failpoint_and_a_primary_restart_loses_and_repeats_nothing() {
    const PORT: u16 = 13320;
    let alt = tokio::task::spawn_blocking(|| AltMariaDb::start("faults-run", PORT, ""))
        .await
        .unwrap();
    let db = unique("it_faults_run");
    let start_at = prepare(PORT, &db).await;
    let root = std::env::temp_dir().join(unique("binlake-faults-run"));
    let cfg = config(&unique("itfaultsrun"), &db, PORT, &root, &start_at);
    let workload = Workload::start(PORT, &db, 0x5eed ^ std::process::id() as u64);

    crash_at("run", &cfg, "snapshot.after_chunk_read=4").await;
    restart_primary_under("run", &cfg, &alt, false).await;
    finish_snapshot("run", &cfg).await;
    for fp in [
        "run.after_table_commit=1",
        "run.after_table_commit=2",
        "lake.after_replica_commit=2",
        "run.before_checkpoint=3",
        "run.after_checkpoint=2",
        "run.after_table_commit=5",
    ] {
        crash_at("run", &cfg, fp).await;
    }
    // A DDL: the schema history goes to a file of its own before the checkpoint names it.
    let ddl = {
        let db = db.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let mut c = admin(PORT).await;
            c.query_drop(format!("ALTER TABLE {db}.t3 ADD COLUMN extra INT"))
                .await
                .unwrap();
        })
    };
    crash_at("run", &cfg, "run.after_schema_history=1").await;
    ddl.await.unwrap();
    restart_primary_under("run", &cfg, &alt, true).await;
    for fp in [
        "run.after_table_commit=3",
        "lake.after_replica_commit=1",
        "run.after_table_commit=2",
    ] {
        crash_at("run", &cfg, fp).await;
    }
    let p = start("run", &cfg).await;
    let committed = workload.stop().await;
    assert!(
        committed > 50,
        "the workload committed {committed} transactions"
    );
    let want = binlog_changes(&alt, &db, &start_at).await;
    wait_replicas_equal(PORT, &root, &db, Duration::from_secs(120)).await;
    wait_change_logs(&root, &db, &want).await;
    let got = change_log_positions(&root, &db).await;
    assert_exactly_once("the change log", &want, &got);
    // `binlake verify` proves it too (the tables and the marker table).
    let cfg2 = cfg.clone();
    tokio::task::spawn_blocking(move || crate::verify::assert_verified(&cfg2, TABLES.len() + 1))
        .await
        .unwrap();
    drop(p);
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_and_materialize_crashed_at_every_failpoint_and_a_primary_restart_lose_and_repeat_nothing()
 {
    const PORT: u16 = 13321;
    let alt = tokio::task::spawn_blocking(|| AltMariaDb::start("faults-kafka", PORT, ""))
        .await
        .unwrap();
    let db = unique("it_faults_kafka");
    let start_at = prepare(PORT, &db).await;
    let root = std::env::temp_dir().join(unique("binlake-faults-kafka"));
    let name = unique("itfaultskafka");
    let cfg = config(&name, &db, PORT, &root, &start_at);
    let workload = Workload::start(PORT, &db, 0xfa17 ^ std::process::id() as u64);

    crash_at("capture", &cfg, "snapshot.after_chunk_read=3").await;
    restart_primary_under("capture", &cfg, &alt, false).await;
    finish_snapshot("capture", &cfg).await;
    for fp in [
        "kafka.before_commit=2",
        "kafka.after_commit=3",
        "kafka.before_commit=6",
    ] {
        crash_at("capture", &cfg, fp).await;
    }
    restart_primary_under("capture", &cfg, &alt, true).await;
    crash_at("capture", &cfg, "kafka.after_commit=2").await;
    let capture = start("capture", &cfg).await;
    for fp in [
        "materialize.after_table_commit=1",
        "lake.after_replica_commit=2",
        "materialize.after_table_commit=4",
        "materialize.before_offsets=2",
        "lake.after_replica_commit=5",
    ] {
        crash_at("materialize", &cfg, fp).await;
    }
    let materialize = start("materialize", &cfg).await;
    let committed = workload.stop().await;
    assert!(
        committed > 50,
        "the workload committed {committed} transactions"
    );
    let want = binlog_changes(&alt, &db, &start_at).await;

    // Kafka: each topic holds every change once, with the file name the binlog has.
    for t in TABLES {
        let topic = format!("{name}.{db}.{t}");
        let n = want.get(t).map_or(0, Vec::len);
        let deadline = Instant::now() + Duration::from_secs(120);
        let got = loop {
            let msgs = crate::capture::wait_for_messages(&topic, 0, 0).await;
            let positions: Vec<(String, String)> = msgs
                .iter()
                .filter(|(_, v, _, _)| v.is_some())
                .filter_map(|(_, v, h, _)| {
                    let p = h.get("binlake.position")?;
                    if p.starts_with("snapshot:") {
                        return None;
                    }
                    let file = v.as_ref()?["source"]["file"].as_str()?.to_string();
                    Some((p.clone(), file))
                })
                .collect();
            if positions.len() >= n || Instant::now() > deadline {
                break positions;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        for (p, file) in &got {
            assert!(
                p.starts_with(&format!("{file}:")),
                "{topic}: message at {p} says source.file {file:?}"
            );
        }
        // One partition: offsets follow the source's order.
        let order: Vec<EventPosition> = got.iter().map(|(p, _)| parse_position(p)).collect();
        if let Some(w) = order.windows(2).find(|w| w[0] >= w[1]) {
            panic!("{topic}: {} comes after {} in the topic", w[1], w[0]);
        }
        let got = BTreeMap::from([(t.to_string(), got.into_iter().map(|(p, _)| p).collect())]);
        let want_t = BTreeMap::from([(t.to_string(), want.get(t).cloned().unwrap_or_default())]);
        assert_exactly_once(&format!("topic {topic}"), &want_t, &got);
    }

    wait_replicas_equal(PORT, &root, &db, Duration::from_secs(180)).await;
    wait_change_logs(&root, &db, &want).await;
    let got = change_log_positions(&root, &db).await;
    assert_exactly_once("the change log", &want, &got);
    // `binlake verify` proves it too (the tables and the marker table).
    let cfg2 = cfg.clone();
    tokio::task::spawn_blocking(move || crate::verify::assert_verified(&cfg2, TABLES.len() + 1))
        .await
        .unwrap();
    drop(materialize);
    drop(capture);
}

/// `binlake status` never calls a replica current to the run checkpoint when the replica
/// lacks a commit the checkpoint counts on (here: its last Delta commit removed behind
/// binlake's back, as a restore of an older copy would), nor a table the config does not
/// capture.
#[tokio::test(flavor = "multi_thread")]
async fn status_does_not_call_a_replica_behind_the_checkpoint_or_not_captured_current() {
    let db = unique("it_behind");
    let name = unique("itbehind");
    let root = std::env::temp_dir().join(unique("binlake-behind"));
    let mut c = crate::capture::setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)"],
    )
    .await;
    c.query_drop("INSERT INTO t VALUES (1, 1)").await.unwrap();
    let cfg = crate::lake::lake_config(&name, &db, &root, "");
    let p = start("run", &cfg).await;
    let lake = crate::lake::lake_at(&root);
    let wait_rows = |n: usize| {
        let lake = lake.clone();
        let db = db.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while crate::lake::query_rows_or_empty(
                &lake,
                &format!("SELECT id FROM \"{db}\".\"t\""),
                &["id"],
            )
            .await
            .len()
                != n
            {
                assert!(Instant::now() < deadline, "the replica never had {n} rows");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait_rows(1).await;
    c.query_drop("INSERT INTO t VALUES (2, 2)").await.unwrap();
    wait_rows(2).await;
    let (code, log) = tokio::task::spawn_blocking(move || p.terminate(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    let v = crate::lake::status_json(&cfg);
    assert_eq!(v["tables"][0]["behind_checkpoint"], false, "{v}");
    // Remove the replica's last commit: it no longer holds row 2, which the checkpoint
    // covers.
    let log_dir = root.join(&db).join("t").join("replica").join("_delta_log");
    let mut commits: Vec<PathBuf> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    commits.sort();
    std::fs::remove_file(commits.last().unwrap()).unwrap();
    let _ = std::fs::remove_file(log_dir.join("_last_checkpoint"));
    let v = crate::lake::status_json(&cfg);
    let t = &v["tables"][0];
    assert_eq!(t["behind_checkpoint"], true, "{v}");
    assert_eq!(t["current_to"], t["last_commit"], "{v}");
    assert_eq!(t["excluded"], false, "{v}");

    // A table the config no longer captures is current to no time.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("include = [\"{db}.*\"]"),
        &format!("include = [\"{db}.*\"]\nexclude = [\"{db}.t\"]"),
    );
    std::fs::write(&cfg, text).unwrap();
    let v = crate::lake::status_json(&cfg);
    let t = &v["tables"][0];
    assert_eq!(t["excluded"], true, "{v}");
    assert!(
        t["current_to"].is_null() && t["lag_seconds"].is_null(),
        "{v}"
    );
}

/// A materialize worker stopped with SIGTERM leaves the group, so the next one gets the
/// partitions at once; a worker killed with kill -9 and restarted as the same static
/// member (`[materialize] instance_id`) gets them back at once too. (Without either, the
/// new member waits for the group's session timeout, 45 s.)
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_materialize_worker_gets_its_partitions_at_once() {
    let db = unique("it_mat_rejoin");
    let name = unique("itmatrejoin");
    let root = std::env::temp_dir().join(unique("binlake-rejoin"));
    let mut c = crate::capture::setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)"],
    )
    .await;
    c.query_drop("INSERT INTO t VALUES (1, 1)").await.unwrap();
    let dynamic = crate::lake::lake_config(&name, &db, &root, "");
    let capture = start("capture", &dynamic).await;
    let assigned = |cfg: PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            let mut p = CaptureProcess::start_command("materialize", &cfg);
            p.wait_for("materializing changes", Duration::from_secs(60));
            let t = Instant::now();
            p.wait_for("partitions assigned", Duration::from_secs(90));
            (p, t.elapsed())
        })
        .await
        .unwrap()
    };
    let (p, _) = assigned(dynamic.clone()).await;
    let (code, log) = tokio::task::spawn_blocking(move || p.terminate(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    let (p, took) = assigned(dynamic.clone()).await;
    assert!(
        took < Duration::from_secs(15),
        "after a SIGTERM the next worker waited {took:?} for its partitions"
    );
    drop(p);

    // Static membership: a crash, then the same member again.
    let group = unique("itmatrejoin-static");
    let static_cfg = crate::lake::lake_config(
        &name,
        &db,
        &root,
        &format!("[materialize]\ngroup = \"{group}\"\ninstance_id = \"worker-0\"\n"),
    );
    let (p, _) = assigned(static_cfg.clone()).await;
    tokio::task::spawn_blocking(move || p.kill9())
        .await
        .unwrap();
    let (p, took) = assigned(static_cfg.clone()).await;
    assert!(
        took < Duration::from_secs(15),
        "after kill -9 the same static member waited {took:?} for its partitions"
    );
    drop(p);
    drop(capture);
}

/// `file:pos#row` back into a position.
fn parse_position(p: &str) -> EventPosition {
    let (file, rest) = p.rsplit_once(':').expect("file:pos#row");
    let (pos, row) = rest.split_once('#').expect("pos#row");
    EventPosition {
        file: file.into(),
        pos: pos.parse().expect("pos"),
        row: row.parse().expect("row"),
    }
}
