#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end benchmarks against the real services (`make bench` starts them): the real
//! `binlake` binary, MariaDB and Kafka on this machine.
//!
//! - `capture_catch_up`: 2,000,000 sysbench-shaped row changes (`id INT, k INT,
//!   c CHAR(120), pad CHAR(60)`: 1,000,000 inserts then 1,000,000 updates, in
//!   transactions of 1,000 rows) are written first; then `binlake capture` reads them from
//!   the binlog position before the workload, exactly-once on, into the local broker.
//!   Reported: rows/s until the committed position covers the last transaction, binlog
//!   MB/s, peak RSS. Run 3 times; medians.
//! - `capture_latency`: a steady 2,000 rows/s (transactions of 10 rows every 5 ms) for 30 s
//!   with default settings; each row carries its sequence number, the writer records when
//!   its COMMIT returned, a read_committed consumer when the row arrives: p50/p99 of the
//!   difference (primary commit → committed in Kafka).
//!
//! - `materialize_catch_up`: the same table with 1,000,000 inserts, 1,000,000 updates
//!   and 200,000 deletes (2,200,000 changes) is captured into Kafka first; then
//!   `binlake materialize` (a fresh lake folder and consumer group per run) reads the
//!   pre-filled topic (4 partitions) until the change log holds 2,200,000 rows and the
//!   replica 800,000. Reported: rows/s, and write amplification: bytes of Parquet + Delta
//!   log written (no vacuum) per byte of changed rows (188 bytes per row image: INT, INT,
//!   CHAR(120), CHAR(60)), for the change log and the replica.
//! - `run_freshness`: a table of N rows, `binlake run` with default lake settings and
//!   each replica mode (after its snapshot), then a steady rate of updates of random
//!   keys (2,000 rows/s: 10-row transactions every 5 ms, 30 s), each setting a sequence number;
//!   visible = the first Delta commit of the replica whose files hold that sequence number
//!   (its commit timestamp): p50/p99 of primary commit → visible in the replica, and the
//!   replica bytes written per updated row (files and log, no vacuum) against the row's
//!   size in the replica's Parquet. `BINLAKE_BENCH_FRESH_ROWS="1000000 10000000"` (default
//!   1,000,000), `BINLAKE_BENCH_FRESH_MODES="copy_on_write merge_on_read"` (default both),
//!   `BINLAKE_BENCH_FRESH_SECS` (default 30), `BINLAKE_BENCH_FRESH_RATES="2000 10000"`
//!   (updates/s, default 2,000; transactions of rate/200 rows every 5 ms, one rate after
//!   the other on the same process, the rate done is printed beside the one asked).
//!
//! - `snapshot`: a 5,000,000-row sysbench-shaped table (filled with `INSERT … SELECT`
//!   from MariaDB's sequence engine); then `binlake capture` with
//!   `snapshot.mode = "initial_only"` (snapshot, commit, exit 0) into Kafka (4 partitions),
//!   and `binlake run` with the same mode into a fresh lake folder, once per replica mode
//!   (`BINLAKE_BENCH_SNAP_MODES`, default both). Reported: rows/s from process start to
//!   its exit, peak RSS; the replica's row count is checked.
//!   `BINLAKE_BENCH_READERS="1 2 4"` repeats both for each number of chunk readers.
//!
//! - `run_large_transaction`: `binlake run` on an empty sysbench-shaped table, then one
//!   `INSERT … SELECT` of N rows (one source transaction) for N = 100,000, 1,000,000 and
//!   10,000,000 (`BINLAKE_BENCH_TXN_ROWS="…"` to choose): seconds from the INSERT until
//!   the replica holds every row, and the process's peak RSS. A transaction that fills
//!   `lake.max_batch_bytes` is committed in parts, so the peak must not grow with N the
//!   way the transaction does.
//!
//! - `verify`: a sysbench-shaped table of N rows (N = 100,000 and 1,000,000;
//!   `BINLAKE_BENCH_VERIFY_ROWS="…"` to choose, e.g. 10000000) kept by `binlake run`;
//!   while 1,000 rows/s of updates go on (10-row transactions every 10 ms), `binlake
//!   verify` (default settings) is run to its exit 3 times: rows/s (N / seconds from
//!   process start to exit, which must be 0: equal) and peak RSS; medians.
//!
//! Not criterion: one run takes tens of seconds and needs the services; the harness
//! prints medians of repeated runs instead.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use binlake_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use binlake_kafka::rdkafka::message::Message;
use binlake_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use mysql_async::prelude::Queryable;

fn admin_url() -> String {
    std::env::var("BINLAKE_TEST_MYSQL_ADMIN_URL")
        .unwrap_or_else(|_| "mysql://binlake_admin:binlake-admin@127.0.0.1:13306".into())
}

fn brokers() -> String {
    std::env::var("BINLAKE_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

fn binlake_bin() -> String {
    std::env::var("BINLAKE_BIN").unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        format!("{target}/release/binlake")
    })
}

fn stamp() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() % 1_000_000)
            .unwrap_or(0)
    )
}

fn config(name: &str, db: &str, start: Option<&str>, extra: &str) -> std::path::PathBuf {
    let start = start
        .map(|s| format!("start = \"{s}\"\n"))
        .unwrap_or_default();
    let text = format!(
        "name = \"{name}\"\n[source]\nhost = \"127.0.0.1\"\nport = 13306\nuser = \"binlake\"\npassword = \"binlake\"\nserver_id = {}\ninclude = [\"{db}.*\"]\n{start}[kafka]\nbootstrap_servers = \"{}\"\n{extra}\n",
        50_000 + std::process::id() % 10_000,
        brokers()
    );
    let path = std::env::temp_dir().join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn start_capture(cfg: &std::path::Path) -> Child {
    start_binlake("capture", cfg)
}

fn start_binlake(command: &str, cfg: &std::path::Path) -> Child {
    Command::new(binlake_bin())
        .args([command, "--config"])
        .arg(cfg)
        .env(
            "RUST_LOG",
            std::env::var("BINLAKE_BENCH_LOG").unwrap_or_else(|_| "warn,buoyant_kernel=off".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start binlake capture (build it with cargo build --release)")
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The sysbench-shaped table of the benchmarks: creates database `db` with an empty
/// `sbtest1` and makes it `c`'s current database.
async fn create_sbtest(c: &mut mysql_async::Conn, db: &str) {
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("CREATE TABLE sbtest1 (id INT NOT NULL PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL)")
        .await
        .unwrap();
}

/// Fills `sbtest1` with sysbench-shaped rows; completed with `FROM seq_<lo>_to_<hi>`.
const SBTEST_FILL: &str = "INSERT INTO sbtest1 SELECT seq, seq % 100000, CONCAT(LPAD(seq, 11, '0'), '-', REPEAT('12345678901-', 9)), REPEAT('67847967377-', 5)";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn admin() -> mysql_async::Conn {
    let opts = mysql_async::Opts::from_url(&admin_url()).expect("admin url");
    mysql_async::Conn::new(opts)
        .await
        .expect("MariaDB must be running: tests/services/all.sh start")
}

/// Writes the 2M-change workload (plus 200,000 deletes of every fifth row when
/// `deletes`); returns (start file:pos, end GTID position, binlog bytes).
async fn write_workload(db: &str, deletes: bool) -> (String, String, u64) {
    let mut c = admin().await;
    create_sbtest(&mut c, db).await;
    let (file, pos): (String, u64) = c
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| (r.get::<String, _>(0).unwrap(), r.get::<u64, _>(1).unwrap()))
        .unwrap();
    for chunk in 0..1000u64 {
        let lo = chunk * 1000 + 1;
        c.query_drop(format!("{SBTEST_FILL} FROM seq_{lo}_to_{}", lo + 999))
            .await
            .unwrap();
    }
    for chunk in 0..1000u64 {
        let lo = chunk * 1000 + 1;
        c.query_drop(format!(
            "UPDATE sbtest1 SET k = k + 1 WHERE id BETWEEN {lo} AND {}",
            lo + 999
        ))
        .await
        .unwrap();
    }
    if deletes {
        for chunk in 0..200u64 {
            let lo = chunk * 5000 + 1;
            c.query_drop(format!(
                "DELETE FROM sbtest1 WHERE id BETWEEN {lo} AND {} AND id % 5 = 0",
                lo + 4999
            ))
            .await
            .unwrap();
        }
    }
    let end: String = c
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    let (efile, epos): (String, u64) = c
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| (r.get::<String, _>(0).unwrap(), r.get::<u64, _>(1).unwrap()))
        .unwrap();
    // Bytes of binlog between the two positions, across rotations.
    let logs: Vec<(String, u64)> = c
        .query("SHOW BINARY LOGS")
        .await
        .unwrap()
        .into_iter()
        .map(|r: mysql_async::Row| (r.get::<String, _>(0).unwrap(), r.get::<u64, _>(1).unwrap()))
        .collect();
    let mut bytes = 0u64;
    for (name, size) in &logs {
        if *name < file || *name > efile {
            continue;
        }
        let from = if *name == file { pos } else { 0 };
        let to = if *name == efile { epos } else { *size };
        bytes += to.saturating_sub(from);
    }
    (format!("file:{file}:{pos}"), end, bytes)
}

/// The committed position of capture `name`, read from `<name>.offsets`.
fn committed_position(name: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let _enter = rt.enter();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("bench-{}", stamp()))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .ok()?;
    let topic = format!("{name}.offsets");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .ok()?;
    consumer.assign(&tpl).ok()?;
    rt.block_on(async {
        let mut last = None;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
                Ok(Ok(m)) => {
                    if let Some(p) = m.payload() {
                        let v: serde_json::Value = serde_json::from_slice(p).ok()?;
                        last = v["position"].as_str().map(str::to_string);
                    }
                }
                _ => return last,
            }
        }
    })
}

fn gtid_seq(position: &str) -> u64 {
    position
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn catch_up(runs: usize) {
    let db = format!("bench_cap_{}", stamp());
    eprintln!("writing 2,000,000 row changes into {db} ...");
    let t = Instant::now();
    let (start, end_gtid, binlog_bytes) = write_workload(&db, false).await;
    eprintln!(
        "  written in {:.1} s; binlog {:.1} MB; end {end_gtid}",
        t.elapsed().as_secs_f64(),
        binlog_bytes as f64 / 1e6
    );
    let target = gtid_seq(&end_gtid);
    let (mut rates, mut mbs, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let name = format!("benchcap{run}_{}", stamp());
        let cfg = config(&name, &db, Some(&start), "[snapshot]\nmode = \"never\"\n");
        let t0 = Instant::now();
        let mut child = start_capture(&cfg);
        let pid = child.id();
        let mut peak = 0.0f64;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            peak = peak.max(peak_rss_mb(pid));
            let n = name.clone();
            let pos = tokio::task::spawn_blocking(move || committed_position(&n))
                .await
                .ok()
                .flatten();
            if pos.as_deref().is_some_and(|p| gtid_seq(p) >= target) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(600) {
                panic!("capture did not catch up within 10 minutes (last position {pos:?})");
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        peak = peak.max(peak_rss_mb(pid));
        let _ = child.kill();
        let _ = child.wait();
        let rate = 2_000_000.0 / secs;
        eprintln!(
            "  run {run}: {secs:.2} s, {rate:.0} rows/s, {:.1} MB/s of binlog, peak RSS {peak:.0} MB",
            binlog_bytes as f64 / 1e6 / secs
        );
        rates.push(rate);
        mbs.push(binlog_bytes as f64 / 1e6 / secs);
        rss.push(peak);
    }
    println!(
        "capture_catch_up: median {:.0} rows/s, {:.1} MB/s binlog, peak RSS {:.0} MB ({runs} runs; includes process start and offsets polling at 0.5 s)",
        median(rates),
        median(mbs),
        median(rss)
    );
    let mut c = admin().await;
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

async fn latency() {
    let db = format!("bench_lat_{}", stamp());
    let name = format!("benchlat_{}", stamp());
    let mut c = admin().await;
    create_sbtest(&mut c, &db).await;
    let extra = std::env::var("BINLAKE_BENCH_EXTRA").unwrap_or_default();
    let cfg = config(&name, &db, None, &extra);
    let mut child = start_capture(&cfg);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let committed: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let topic = format!("{name}.{db}.sbtest1");
    // The consumer: read_committed, from the start of the topic (created by the first row).
    let seen = committed.clone();
    let reader = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let _enter = rt.enter();
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", format!("bench-lat-{}", stamp()))
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "5")
            .set("topic.metadata.refresh.interval.ms", "500")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
        let mut lat = Vec::new();
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
            while lat.len() < 60_000 && Instant::now() < deadline {
                if let Ok(Ok(m)) =
                    tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await
                {
                    let now = Instant::now();
                    let Some(p) = m.payload() else { continue };
                    let v: serde_json::Value = serde_json::from_slice(p).expect("json");
                    let id = v["after"]["id"].as_i64().unwrap_or(-1);
                    if let Some(t) = seen.lock().expect("lock").get(&id) {
                        let ms = now.duration_since(*t).as_secs_f64() * 1000.0;
                        if ms > 100.0 && std::env::var_os("BINLAKE_BENCH_LOG").is_some() {
                            eprintln!(
                                "slow: id {id} {ms:.1} ms, seen at {:?}",
                                std::time::SystemTime::now()
                            );
                        }
                        lat.push(ms);
                    }
                }
            }
        });
        lat
    });
    // The workload: 10-row transactions every 5 ms for 30 s = 2,000 rows/s.
    let mut id = 0i64;
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while t0.elapsed() < Duration::from_secs(30) {
        tick.tick().await;
        let values: Vec<String> = (0..10)
            .map(|i| {
                format!(
                    "({}, {}, REPEAT('c', 119), REPEAT('p', 59))",
                    id + i,
                    id + i
                )
            })
            .collect();
        c.query_drop(format!("INSERT INTO sbtest1 VALUES {}", values.join(",")))
            .await
            .unwrap();
        let now = Instant::now();
        let mut m = committed.lock().expect("lock");
        for i in 0..10 {
            m.insert(id + i, now);
        }
        id += 10;
    }
    let mut lat = reader.join().expect("reader");
    let _ = child.kill();
    let _ = child.wait();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "capture_latency: {} rows at 2,000 rows/s: primary commit → committed in Kafka p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without
    // it, and must not start minutes of load next to the tests.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/pipeline.rs: run it with `make bench` (cargo bench --bench pipeline)");
        return;
    }
    // A filter word selects one benchmark.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |n: &str| args.is_empty() || args.iter().any(|a| n.contains(a.as_str()));
    if want("capture_latency") {
        latency().await;
    }
    if want("capture_catch_up") {
        catch_up(3).await;
    }
    if want("materialize_catch_up") {
        let runs = std::env::var("BINLAKE_BENCH_RUNS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(3);
        materialize_catch_up(runs).await;
    }
    if want("run_freshness") {
        run_freshness().await;
    }
    if want("snapshot") {
        snapshot().await;
    }
    if want("run_large_transaction") {
        run_large_transaction().await;
    }
    if want("verify") {
        verify().await;
    }
}

async fn verify() {
    let sizes =
        std::env::var("BINLAKE_BENCH_VERIFY_ROWS").unwrap_or_else(|_| "100000 1000000".into());
    for rows in sizes
        .split_whitespace()
        .filter_map(|n| n.parse::<u64>().ok())
    {
        let db = format!("bench_verify_{}", stamp());
        let mut c = admin().await;
        create_sbtest(&mut c, &db).await;
        eprintln!("filling {db}.sbtest1 with {rows} rows ...");
        let mut lo = 1;
        while lo <= rows {
            let hi = (lo + 99_999).min(rows);
            c.query_drop(format!("{SBTEST_FILL} FROM seq_{lo}_to_{hi}"))
                .await
                .unwrap();
            lo = hi + 1;
        }
        let root = std::env::temp_dir().join(format!("bench-verify-lake-{}", stamp()));
        let name = format!("benchverify_{}", stamp());
        let cfg = lake_config(&name, &db, &root, "");
        let mut run = start_binlake("run", &cfg);
        let replica = root.join(&db).join("sbtest1").join("replica");
        let t = Instant::now();
        while !replica.join("_delta_log").exists() || delta_rows(&replica) < rows {
            assert!(
                t.elapsed() < Duration::from_secs(1800),
                "run did not snapshot the table"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        eprintln!(
            "  replica holds {rows} rows after {:.1} s",
            t.elapsed().as_secs_f64()
        );
        // 1,000 rows/s of updates: 10-row transactions every 10 ms.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (db, stop) = (db.clone(), stop.clone());
            tokio::spawn(async move {
                let mut w = admin().await;
                w.query_drop(format!("USE {db}")).await.unwrap();
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let mut i: u64 = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tick.tick().await;
                    let ids: Vec<String> = (0..10)
                        .map(|j| (((i * 10 + j) * 7_919) % rows + 1).to_string())
                        .collect();
                    w.query_drop(format!(
                        "UPDATE sbtest1 SET k = k + 1 WHERE id IN ({})",
                        ids.join(",")
                    ))
                    .await
                    .unwrap();
                    i += 1;
                }
                i * 10
            })
        };
        let mut rates = Vec::new();
        let mut peaks = Vec::new();
        for _ in 0..3 {
            let (secs, rss) = run_to_exit("verify", &cfg, Duration::from_secs(1800));
            rates.push(rows as f64 / secs);
            peaks.push(rss);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = writer.await.unwrap();
        let _ = run.kill();
        let _ = run.wait();
        println!(
            "verify: {rows} rows, median {:.0} rows/s (runs: {}), median peak RSS {:.0} MB, with {written} rows updated meanwhile (binlake verify, default settings, from process start to exit 0)",
            median(rates.clone()),
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            median(peaks)
        );
        c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
        let _ = std::fs::remove_dir_all(&root);
    }
}

async fn run_large_transaction() {
    let sizes = std::env::var("BINLAKE_BENCH_TXN_ROWS")
        .unwrap_or_else(|_| "100000 1000000 10000000".into());
    for rows in sizes.split_whitespace().map(|n| n.parse::<u64>().unwrap()) {
        let db = format!("bench_txn_{}", stamp());
        let mut c = admin().await;
        create_sbtest(&mut c, &db).await;
        let root = std::env::temp_dir().join(format!("bench-txn-lake-{}", stamp()));
        let name = format!("benchtxn_{}", stamp());
        let cfg = config(
            &name,
            &db,
            None,
            &format!("[lake]\nroot = \"{}\"\n", root.display()),
        );
        let mut child = start_binlake("run", &cfg);
        let pid = child.id();
        // Started when its first checkpoint (the empty table's snapshot) is written.
        let replica = root.join(&db).join("sbtest1").join("replica");
        let checkpoint = root
            .join("_binlake")
            .join("run")
            .join(format!("{name}.json"));
        let t0 = Instant::now();
        while !checkpoint.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "binlake run did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let t = Instant::now();
        c.query_drop(format!("{SBTEST_FILL} FROM seq_1_to_{rows}"))
            .await
            .unwrap();
        let mut peak = 0.0f64;
        while delta_rows(&replica) < rows {
            peak = peak.max(peak_rss_mb(pid));
            assert!(
                t.elapsed() < Duration::from_secs(1800),
                "the replica did not catch up"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let secs = t.elapsed().as_secs_f64();
        peak = peak.max(peak_rss_mb(pid));
        let _ = child.kill();
        let _ = child.wait();
        println!(
            "run_large_transaction: one INSERT of {rows} rows in {secs:.1} s (INSERT to every row in the replica), peak RSS {peak:.0} MB"
        );
        let _ = std::fs::remove_dir_all(&root);
        c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
    }
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            n += if md.is_dir() {
                dir_bytes(&e.path())
            } else {
                md.len()
            };
        }
    }
    n
}

/// Row count of a Delta table from its log (sum of numRecords of the live files).
fn delta_rows(table: &std::path::Path) -> u64 {
    let mut live: HashMap<String, u64> = HashMap::new();
    let mut logs: Vec<_> = std::fs::read_dir(table.join("_delta_log"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    for l in logs {
        let Ok(text) = std::fs::read_to_string(&l) else {
            continue;
        };
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(a) = v.get("add") {
                let rows = a["stats"]
                    .as_str()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                    .and_then(|s| s["numRecords"].as_u64())
                    .unwrap_or(0);
                live.insert(a["path"].as_str().unwrap_or_default().to_string(), rows);
            } else if let Some(r) = v.get("remove") {
                live.remove(r["path"].as_str().unwrap_or_default());
            }
        }
    }
    live.values().sum()
}

fn lake_config(name: &str, db: &str, root: &std::path::Path, extra: &str) -> std::path::PathBuf {
    config(
        name,
        db,
        None,
        &format!(
            "[capture]\npartitions = 4\n[lake]\nroot = \"{}\"\n{extra}",
            root.display()
        ),
    )
}

async fn materialize_catch_up(runs: usize) {
    // BINLAKE_BENCH_REUSE="<name> <db> <start>" (printed by an earlier run) reuses topics
    // pre-filled before, to try a change to materialize without minutes of set-up;
    // BINLAKE_BENCH_LAKE appends settings to the `[lake]` section.
    let reuse = std::env::var("BINLAKE_BENCH_REUSE").ok();
    let (name, db, start) = match reuse.as_deref().map(|r| r.split(' ').collect::<Vec<_>>()) {
        Some(v) if v.len() == 3 => (v[0].to_string(), v[1].to_string(), v[2].to_string()),
        _ => {
            let db = format!("bench_mat_{}", stamp());
            eprintln!("writing 2,200,000 row changes into {db} ...");
            let (start, end_gtid, _) = write_workload(&db, true).await;
            let target = gtid_seq(&end_gtid);
            // Pre-fill the topic: capture from before the workload until it has committed
            // all.
            let name = format!("benchmat_{}", stamp());
            let cfg = config(
                &name,
                &db,
                Some(&start),
                "[snapshot]\nmode = \"never\"\n[capture]\npartitions = 4\n",
            );
            let t0 = Instant::now();
            let mut cap = start_capture(&cfg);
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let n = name.clone();
                let pos = tokio::task::spawn_blocking(move || committed_position(&n))
                    .await
                    .ok()
                    .flatten();
                if pos.as_deref().is_some_and(|p| gtid_seq(p) >= target) {
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(900),
                    "capture did not catch up"
                );
            }
            let _ = cap.kill();
            let _ = cap.wait();
            eprintln!("  topics pre-filled in {:.1} s", t0.elapsed().as_secs_f64());
            eprintln!("  to reuse them: BINLAKE_BENCH_REUSE=\"{name} {db} {start}\"");
            (name, db, start)
        }
    };
    let lake_extra = std::env::var("BINLAKE_BENCH_LAKE").unwrap_or_default();
    let row_bytes = 2_200_000f64 * 188.0;
    let (mut rates, mut amp_c, mut amp_r, mut rss) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let root = std::env::temp_dir().join(format!("bench-lake-{run}-{}", stamp()));
        let mcfg = config(
            &name,
            &db,
            Some(&start),
            &format!(
                "[lake]\nroot = \"{}\"\n{lake_extra}\n[materialize]\ngroup = \"bench-{run}-{}\"\n",
                root.display(),
                stamp()
            ),
        );
        let t0 = Instant::now();
        let mut child = start_binlake("materialize", &mcfg);
        let pid = child.id();
        let (changes, replica) = (
            root.join(&db).join("sbtest1").join("changes"),
            root.join(&db).join("sbtest1").join("replica"),
        );
        let mut peak = 0.0f64;
        loop {
            std::thread::sleep(Duration::from_millis(250));
            peak = peak.max(peak_rss_mb(pid));
            if delta_rows(&changes) >= 2_200_000 && delta_rows(&replica) == 800_000 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(900),
                "materialize did not catch up"
            );
        }
        let secs = t0.elapsed().as_secs_f64();
        let _ = child.kill();
        let _ = child.wait();
        let (bc, br) = (dir_bytes(&changes), dir_bytes(&replica));
        let rate = 2_200_000.0 / secs;
        eprintln!(
            "  run {run}: {secs:.2} s, {rate:.0} rows/s into change log and replica; written: change log {:.0} MB ({:.2}x), replica {:.0} MB ({:.2}x); peak RSS {peak:.0} MB",
            bc as f64 / 1e6,
            bc as f64 / row_bytes,
            br as f64 / 1e6,
            br as f64 / row_bytes
        );
        rates.push(rate);
        amp_c.push(bc as f64 / row_bytes);
        amp_r.push(br as f64 / row_bytes);
        rss.push(peak);
        let _ = std::fs::remove_dir_all(&root);
    }
    println!(
        "materialize_catch_up: median {:.0} rows/s (change log and replica both complete), write amplification change log {:.2}x, replica {:.2}x, peak RSS {:.0} MB ({runs} runs; includes process start and 0.25 s polling)",
        median(rates),
        median(amp_c),
        median(amp_r),
        median(rss)
    );
    let mut c = admin().await;
    c.query_drop(format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .unwrap();
}

/// For every sequence number in the replica's files: the timestamp (ms) of the first
/// Delta commit that made it visible.
fn first_visible(table: &std::path::Path) -> HashMap<i64, i64> {
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut out = HashMap::new();
    let mut logs: Vec<_> = std::fs::read_dir(table.join("_delta_log"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    logs.sort();
    // A file's rows are all there from the first commit that adds it; later adds of the
    // same path (a merge-on-read deletion vector) are skipped.
    let mut seen = std::collections::HashSet::new();
    for l in logs {
        let text = std::fs::read_to_string(&l).unwrap_or_default();
        let mut ts = 0i64;
        let mut adds = Vec::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            if let Some(ci) = v.get("commitInfo") {
                ts = ci["timestamp"].as_i64().unwrap_or(0);
            }
            if let Some(a) = v.get("add") {
                let path = a["path"].as_str().unwrap_or_default().to_string();
                if seen.insert(path.clone()) {
                    adds.push(path);
                }
            }
        }
        for a in adds {
            let Ok(f) = std::fs::File::open(table.join(&a)) else {
                continue;
            };
            let b = ParquetRecordBatchReaderBuilder::try_new(f).expect("parquet");
            let idx = b.schema().index_of("seq").expect("seq column");
            let mask = ProjectionMask::roots(b.parquet_schema(), [idx]);
            for rb in b.with_projection(mask).build().expect("reader") {
                let rb = rb.expect("batch");
                let col = rb
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .expect("int64");
                for v in col.iter().flatten() {
                    if v >= 0 {
                        out.entry(v).or_insert(ts);
                    }
                }
            }
        }
    }
    out
}

async fn run_freshness() {
    let sizes: Vec<u64> = std::env::var("BINLAKE_BENCH_FRESH_ROWS")
        .unwrap_or_else(|_| "1000000".into())
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let modes = std::env::var("BINLAKE_BENCH_FRESH_MODES")
        .unwrap_or_else(|_| "copy_on_write merge_on_read".into());
    let secs: u64 = std::env::var("BINLAKE_BENCH_FRESH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let rates: Vec<u64> = std::env::var("BINLAKE_BENCH_FRESH_RATES")
        .unwrap_or_else(|_| "2000".into())
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .filter(|r| *r >= 200)
        .collect();
    for rows in sizes {
        for mode in modes.split_whitespace() {
            run_freshness_at(rows, mode, secs, &rates).await;
        }
    }
}

async fn run_freshness_at(rows: u64, mode: &str, secs: u64, rates: &[u64]) {
    let db = format!("bench_fresh_{}", stamp());
    let name = format!("benchfresh_{}", stamp());
    let mut c = admin().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("CREATE TABLE sbtest1 (id INT NOT NULL PRIMARY KEY, seq BIGINT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL)")
        .await
        .unwrap();
    let mut lo = 1;
    while lo <= rows {
        let hi = (lo + 99_999).min(rows);
        c.query_drop(format!(
            "INSERT INTO sbtest1 SELECT seq, -1, REPEAT('c', 120), REPEAT('p', 60) FROM seq_{lo}_to_{hi}"
        ))
        .await
        .unwrap();
        lo = hi + 1;
    }
    let root = std::env::temp_dir().join(format!("bench-fresh-{}", stamp()));
    let cfg = lake_config(&name, &db, &root, &format!("replica_mode = \"{mode}\""));
    let mut child = start_binlake("run", &cfg);
    let replica = root.join(&db).join("sbtest1").join("replica");
    let t0 = Instant::now();
    while delta_rows(&replica) < rows {
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            t0.elapsed() < Duration::from_secs(3 * 3600),
            "snapshot did not finish"
        );
    }
    let snap = t0.elapsed().as_secs_f64();
    eprintln!(
        "  {mode}: snapshot of {rows} rows in the replica after {snap:.1} s ({:.0} rows/s, polled every 0.5 s)",
        rows as f64 / snap
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let row_bytes = dir_bytes(&replica) as f64 / rows as f64;
    // Per rate: transactions of rate/200 rows every 5 ms (10 rows at 2,000 rows/s), each
    // update setting the next sequence number; then 15 s for the replica to catch up.
    let mut committed: HashMap<i64, i64> = HashMap::new();
    let mut phases = Vec::new();
    let mut seq = 0i64;
    let mut x = 12345u64;
    for &rate in rates {
        let per_txn = (rate / 200) as i64;
        let (first, bytes_before) = (seq, dir_bytes(&replica));
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        while t0.elapsed() < Duration::from_secs(secs) {
            tick.tick().await;
            let mut sql = String::from("BEGIN;");
            for _ in 0..per_txn {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let id = (x >> 33) % rows + 1;
                sql.push_str(&format!("UPDATE sbtest1 SET seq = {seq} WHERE id = {id};"));
                seq += 1;
            }
            sql.push_str("COMMIT;");
            c.query_drop(sql).await.unwrap();
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            for s in seq - per_txn..seq {
                committed.insert(s, now_ms);
            }
        }
        let achieved = (seq - first) as f64 / t0.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(15)).await;
        let written = dir_bytes(&replica).saturating_sub(bytes_before);
        phases.push((rate, achieved, first..seq, written));
    }
    let peak = peak_rss_mb(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let visible = first_visible(&replica);
    for (rate, achieved, seqs, written) in phases {
        let n = (seqs.end - seqs.start).max(1);
        let mut lat: Vec<f64> = seqs
            .filter_map(|s| Some((visible.get(&s)? - committed.get(&s)?) as f64))
            .collect();
        lat.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        let per_row = written as f64 / n as f64;
        println!(
            "run_freshness {mode} {rows} rows, {rate} rows/s asked ({achieved:.0} done) for {secs} s: {} of {n} updates seen in the replica (the rest were superseded within a batch): primary commit → visible in the replica p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; replica bytes written per updated row {:.0} ({:.1}× the row's {:.0} bytes in the replica); peak RSS {:.0} MB (whole run); snapshot {:.0} rows/s",
            lat.len(),
            pct(0.5),
            pct(0.99),
            lat.last().copied().unwrap_or(f64::NAN),
            per_row,
            per_row / row_bytes,
            row_bytes,
            peak,
            rows as f64 / snap,
        );
    }
    let _ = std::fs::remove_dir_all(&root);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// Runs `binlake <command>` to its exit; (seconds, peak RSS MB).
fn run_to_exit(command: &str, cfg: &std::path::Path, limit: Duration) -> (f64, f64) {
    let t0 = Instant::now();
    let mut child = start_binlake(command, cfg);
    let pid = child.id();
    let mut peak = 0.0f64;
    loop {
        peak = peak.max(peak_rss_mb(pid));
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "binlake {command} failed: {status}");
            return (t0.elapsed().as_secs_f64(), peak);
        }
        assert!(t0.elapsed() < limit, "binlake {command} did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn snapshot() {
    const ROWS: u64 = 5_000_000;
    let db = format!("bench_snap_{}", stamp());
    let mut c = admin().await;
    create_sbtest(&mut c, &db).await;
    eprintln!("filling {db}.sbtest1 with {ROWS} rows ...");
    let t = Instant::now();
    for chunk in 0..ROWS / 100_000 {
        let lo = chunk * 100_000 + 1;
        c.query_drop(format!("{SBTEST_FILL} FROM seq_{lo}_to_{}", lo + 99_999))
            .await
            .unwrap();
    }
    eprintln!("  filled in {:.1} s", t.elapsed().as_secs_f64());
    // BINLAKE_BENCH_READERS="1 2 4" measures each number of chunk readers on the same
    // table; the default is the configured default.
    let readers = std::env::var("BINLAKE_BENCH_READERS").unwrap_or_default();
    // BINLAKE_BENCH_SNAP_MODES="copy_on_write merge_on_read" (the default) chooses the
    // replica modes of the `binlake run` part.
    let replica_modes = std::env::var("BINLAKE_BENCH_SNAP_MODES")
        .unwrap_or_else(|_| "copy_on_write merge_on_read".into());
    let readers: Vec<&str> = match readers.split_whitespace().collect::<Vec<_>>() {
        r if r.is_empty() => vec![""],
        r => r,
    };
    for n in readers {
        let setting = if n.is_empty() {
            String::new()
        } else {
            format!("readers = {n}\n")
        };
        let label = if n.is_empty() {
            "default readers".to_string()
        } else {
            format!("readers = {n}")
        };
        let mode = format!("[snapshot]\nmode = \"initial_only\"\n{setting}");
        let name = format!("benchsnap_{}", stamp());
        let cfg = config(
            &name,
            &db,
            None,
            &format!("{mode}[capture]\npartitions = 4\n"),
        );
        let (secs, rss) = run_to_exit("capture", &cfg, Duration::from_secs(900));
        println!(
            "snapshot into Kafka ({label}): {ROWS} rows in {secs:.1} s, {:.0} rows/s, peak RSS {rss:.0} MB (binlake capture, snapshot.mode = initial_only, from process start to exit)",
            ROWS as f64 / secs
        );
        for replica in replica_modes.split_whitespace() {
            let root = std::env::temp_dir().join(format!("bench-snap-lake-{}", stamp()));
            let name = format!("benchsnaprun_{}", stamp());
            let cfg = config(
                &name,
                &db,
                None,
                &format!(
                    "{mode}[lake]\nroot = \"{}\"\nreplica_mode = \"{replica}\"\n",
                    root.display()
                ),
            );
            let (secs, rss) = run_to_exit("run", &cfg, Duration::from_secs(900));
            let rows = delta_rows(&root.join(&db).join("sbtest1").join("replica"));
            assert_eq!(rows, ROWS, "replica rows after the snapshot");
            println!(
                "snapshot into the replica ({label}, {replica}): {ROWS} rows in {secs:.1} s, {:.0} rows/s, peak RSS {rss:.0} MB (binlake run, snapshot.mode = initial_only, change log and replica, from process start to exit)",
                ROWS as f64 / secs
            );
            let _ = std::fs::remove_dir_all(&root);
        }
    }
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
