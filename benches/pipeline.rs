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
    Command::new(binlake_bin())
        .args(["capture", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "warn")
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

/// Writes the 2M-change workload; returns (start file:pos, end GTID position, binlog bytes).
async fn write_workload(db: &str) -> (String, String, u64) {
    let mut c = admin().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("CREATE TABLE sbtest1 (id INT NOT NULL PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL)")
        .await
        .unwrap();
    let (file, pos): (String, u64) = c
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| (r.get::<String, _>(0).unwrap(), r.get::<u64, _>(1).unwrap()))
        .unwrap();
    for chunk in 0..1000u64 {
        let lo = chunk * 1000 + 1;
        c.query_drop(format!(
            "INSERT INTO sbtest1 SELECT seq, seq % 100000, CONCAT(LPAD(seq, 11, '0'), '-', REPEAT('12345678901-', 9)), REPEAT('67847967377-', 5) FROM seq_{lo}_to_{}",
            lo + 999
        ))
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
    let (start, end_gtid, binlog_bytes) = write_workload(&db).await;
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
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("CREATE TABLE sbtest1 (id INT NOT NULL PRIMARY KEY, k INT NOT NULL, c CHAR(120) NOT NULL, pad CHAR(60) NOT NULL)")
        .await
        .unwrap();
    let cfg = config(&name, &db, None, "");
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
                        lat.push(now.duration_since(*t).as_secs_f64() * 1000.0);
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
}
