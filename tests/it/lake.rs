//! The lake end to end, as users run it (the real binary): `binlake run` and `binlake
//! materialize` against the real MariaDB and Kafka. After catch-up each replica equals
//! `SELECT * FROM` the primary's table (every type of the type matrix), the change log
//! holds every change exactly once, kill -9 at random moments loses and duplicates
//! nothing, and the files are readable by DuckDB and pyarrow.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use binlake_core::{Flavor, TableSchema};
use binlake_lake::arrow_map::{ColumnBuilder, replica_schema};
use binlake_lake::{Lake, LakeConfig};
use binlake_mysql::snapshot::{ChunkReader, SnapshotConfig};
use mysql_async::prelude::Queryable;

use crate::capture::{CaptureProcess, setup_db};
use crate::services::{capture_source, kafka_brokers, unique};

/// A config for `db.*` with the lake in the local folder `root`.
pub fn lake_config(name: &str, db: &str, root: &Path, extra: &str) -> PathBuf {
    lake_config_at(name, db, &root.display().to_string(), extra)
}

/// A config for `db.*` with the lake at `root` (a folder or a URL).
pub fn lake_config_at(name: &str, db: &str, root: &str, extra: &str) -> PathBuf {
    let port = std::env::var("BINLAKE_MARIADB_PORT").unwrap_or_else(|_| "13306".into());
    let server_id = capture_source().server_id;
    let brokers = kafka_brokers();
    // Few buckets, so that small tests exercise files shared by several keys.
    let buckets = match extra.contains("buckets =") {
        true => "",
        false => "buckets = 4",
    };
    let text = format!(
        r#"
name = "{name}"
[source]
host = "127.0.0.1"
port = {port}
user = "binlake"
password = "${{BINLAKE_IT_MYSQL_PASSWORD}}"
server_id = {server_id}
include = ["{db}.*"]
[kafka]
bootstrap_servers = "{brokers}"
request_timeout = "20s"
[lake]
root = "{root}"
flush_interval = "200ms"
{buckets}
{extra}
"#,
    );
    let dir = std::env::temp_dir().join(unique("binlake-it-lake"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("binlake.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn lake_at(root: &Path) -> Lake {
    Lake::open(&LakeConfig {
        root: root.display().to_string(),
        ..LakeConfig::default()
    })
    .unwrap()
}

/// Rows of a batch as strings, one Vec per row, columns in `names` order.
fn render(batches: &[RecordBatch], names: &[String]) -> Vec<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let fmts: Vec<ArrayFormatter<'_>> = names
            .iter()
            .map(|n| {
                let col = b
                    .column_by_name(n)
                    .unwrap_or_else(|| panic!("column {n} missing"));
                ArrayFormatter::try_new(col.as_ref(), &opts).unwrap()
            })
            .collect();
        for i in 0..b.num_rows() {
            out.push(fmts.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    out
}

/// `SELECT * FROM db.table` on the primary, as the replica's Arrow types would render it,
/// ordered by the primary key, and the table's schema.
async fn primary_rows(db: &str, table: &str) -> (Arc<TableSchema>, Vec<Vec<String>>) {
    let mut source = capture_source();
    source.include = vec![format!("{db}.{table}")];
    let cfg = SnapshotConfig {
        chunk_size: 1_000_000,
        ..SnapshotConfig::default()
    };
    let (mut reader, _) = ChunkReader::open(&source, &cfg, Flavor::MariaDb)
        .await
        .unwrap();
    let name = format!("{db}.{table}");
    let schema = reader.schema(&name).unwrap().clone();
    let chunk = reader.read_chunk(&name, None).await.unwrap();
    let arrow_schema = Arc::new(replica_schema(&schema));
    let cols = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut b = ColumnBuilder::new(&c.ty, chunk.rows.len());
            for r in &chunk.rows {
                b.append(&r[i]).unwrap();
            }
            b.finish()
        })
        .collect();
    let batch = RecordBatch::try_new(arrow_schema, cols).unwrap();
    let names: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
    (schema, render(&[batch], &names))
}

/// The replica's rows via `binlake query`'s engine, ordered by `order`.
async fn replica_rows(
    lake: &Lake,
    db: &str,
    table: &str,
    names: &[String],
    order: &str,
) -> Vec<Vec<String>> {
    // Until the replica's first commit there is no table to query: no rows yet.
    let Ok(ctx) = binlake_lake::query::session(lake, None).await else {
        return Vec::new();
    };
    match binlake_lake::query::run(
        &ctx,
        &format!("SELECT * FROM \"{db}\".\"{table}\" ORDER BY {order}"),
    )
    .await
    {
        // A column the replica has not got yet (a schema change on its way): not equal yet.
        Ok(batches)
            if batches
                .iter()
                .all(|b| names.iter().all(|n| b.column_by_name(n).is_some())) =>
        {
            render(&batches, names)
        }
        _ => Vec::new(),
    }
}

/// The rows of `sql`'s result as strings (columns `names`); none while the tables do not
/// exist yet or `sql` fails.
pub(crate) async fn query_rows_or_empty(
    lake: &Lake,
    sql: &str,
    names: &[&str],
) -> Vec<Vec<String>> {
    let Ok(ctx) = binlake_lake::query::session(lake, None).await else {
        return Vec::new();
    };
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    match binlake_lake::query::run(&ctx, sql).await {
        Ok(batches) => render(&batches, &names),
        Err(_) => Vec::new(),
    }
}

async fn query(lake: &Lake, sql: &str) -> Vec<RecordBatch> {
    let ctx = binlake_lake::query::session(lake, None).await.unwrap();
    binlake_lake::query::run(&ctx, sql).await.unwrap()
}

/// Asserts that no two rows of `from` (a table, optionally with a `WHERE`) share the
/// values of the columns `columns`.
async fn assert_once(lake: &Lake, from: &str, columns: &str, what: &str) {
    let twice = query(
        lake,
        &format!(
            "SELECT count(*) AS n FROM (SELECT {columns} FROM {from} GROUP BY {columns} HAVING count(*) > 1)"
        ),
    )
    .await;
    assert_eq!(
        render(&twice, &["n".into()]),
        vec![vec!["0".to_string()]],
        "{what}"
    );
}

/// Waits until the replica equals the primary's table.
pub(crate) async fn wait_equal(
    lake: &Lake,
    db: &str,
    table: &str,
    order: &str,
    timeout: Duration,
) -> Vec<Vec<String>> {
    let (schema, want) = primary_rows(db, table).await;
    assert!(
        !want.is_empty(),
        "{db}.{table} is empty on the primary: nothing to compare"
    );
    let names: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let ready = lake
            .tables()
            .await
            .unwrap()
            .contains(&(db.to_string(), table.to_string()));
        let got = if ready {
            replica_rows(lake, db, table, &names, order).await
        } else {
            Vec::new()
        };
        if got == want {
            return got;
        }
        if Instant::now() > deadline {
            let diff: Vec<_> = want
                .iter()
                .zip(got.iter())
                .filter(|(a, b)| a != b)
                .take(3)
                .collect();
            panic!(
                "replica of {db}.{table} differs from the primary after {timeout:?}: {} rows vs {} (first differences: {diff:#?})",
                got.len(),
                want.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `binlake status --json` of `config`.
pub(crate) fn status_json(config: &Path) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_binlake"))
        .args(["status", "--json", "--config"])
        .arg(config)
        .env("BINLAKE_IT_MYSQL_PASSWORD", "binlake")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    serde_json::from_str(last.unwrap_or_default())
        .unwrap_or_else(|e| panic!("python printed no JSON last ({e}):\n{stdout}"))
}

pub(crate) fn start(command: &str, config: &Path) -> CaptureProcess {
    let mut p = CaptureProcess::start_command(command, config);
    let needle = if command == "materialize" {
        "materializing changes"
    } else {
        "streaming changes"
    };
    p.wait_for(needle, Duration::from_secs(60));
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn run_replicates_every_type_exactly_and_logs_every_change_once() {
    let db = unique("it_lake");
    let name = unique("itlake");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(&db, &[crate::binlog::TYPE_MATRIX]).await;
    c.query_drop("SET SESSION sql_mode = ''").await.unwrap();
    // Rows before the start come through the snapshot.
    c.query_drop(format!(
        "INSERT INTO type_matrix VALUES {}",
        crate::binlog::ROWS[0]
    ))
    .await
    .unwrap();
    let cfg = lake_config(&name, &db, &root, "");
    let p = start("run", &cfg);
    // The rest through the binlog: inserts, updates (one moves its primary key), deletes.
    for r in &crate::binlog::ROWS[1..] {
        c.query_drop(format!("INSERT INTO type_matrix VALUES {r}"))
            .await
            .unwrap();
    }
    c.query_drop("UPDATE type_matrix SET c_varchar = 'updated', c_int = c_int + 1 WHERE id = 2")
        .await
        .unwrap();
    c.query_drop("UPDATE type_matrix SET id = 40 WHERE id = 4")
        .await
        .unwrap();
    c.query_drop("DELETE FROM type_matrix WHERE id = 3")
        .await
        .unwrap();
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "type_matrix", "id", Duration::from_secs(60)).await;

    // The change log: one row per change, in order: c(2) c(3) c(4) u(2), the key
    // move 4→40 as c(40) + d(4) at one position (as Debezium writes it), d(3).
    let rows = query(
        &lake,
        &format!("SELECT __op, id FROM \"{db}\".\"type_matrix__changes\" ORDER BY __binlog_file, __binlog_pos, __binlog_row, __op"),
    )
    .await;
    let mut got = render(&rows, &["__op".into(), "id".into()]);
    // Snapshot rows sit at their chunk's high watermark, wherever that fell among the
    // streamed changes. Row 1 is there exactly once; rows inserted before the chunk's
    // SELECT may be in it too (then as well as their insert), at most once each.
    let mut snapshot_rows: Vec<_> = got
        .iter()
        .filter(|r| r[0] == "r")
        .map(|r| r[1].clone())
        .collect();
    snapshot_rows.sort();
    let before_dedup = snapshot_rows.len();
    snapshot_rows.dedup();
    assert_eq!(
        before_dedup,
        snapshot_rows.len(),
        "a snapshot row twice: {got:?}"
    );
    assert!(snapshot_rows.contains(&"1".to_string()), "{got:?}");
    assert!(
        snapshot_rows
            .iter()
            .all(|id| ["1", "2", "3", "4"].contains(&id.as_str())),
        "{got:?}"
    );
    got.retain(|r| r[0] != "r");
    let want: Vec<Vec<String>> = [
        ("c", "2"),
        ("c", "3"),
        ("c", "4"),
        ("u", "2"),
        ("c", "40"),
        ("d", "4"),
        ("d", "3"),
    ]
    .iter()
    .map(|(o, i)| vec![o.to_string(), i.to_string()])
    .collect();
    assert_eq!(got, want);

    // Truncate empties the replica; the change log records it.
    c.query_drop("TRUNCATE TABLE type_matrix").await.unwrap();
    c.query_drop("INSERT INTO type_matrix (id, c_int) VALUES (7, 7)")
        .await
        .unwrap();
    wait_equal(&lake, &db, "type_matrix", "id", Duration::from_secs(30)).await;

    let (code, log) = p.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "SIGTERM exits 0:\n{log}");

    // `binlake status` names the table, its rows and its freshness.
    let v = status_json(&cfg);
    let t = &v["tables"][0];
    assert_eq!(t["snapshot_pending"], false, "{v}");
    assert_eq!(t["table"], format!("{db}.type_matrix"));
    assert_eq!(t["rows"], 1);
    assert!(t["lag_seconds"].as_f64().unwrap() < 600.0, "{v}");
    assert!(t["position"].as_str().unwrap().contains('#'), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_survives_kill_9_at_random_moments() {
    kill_9_run("").await;
}

/// `run` with `[lake] extra` killed (-9) ten times under random writes, then caught up:
/// the replica equals the primary (and `binlake verify` says so) and the change log
/// holds each change once. Returns the database and the lake's root.
async fn kill_9_run(extra: &str) -> (String, PathBuf) {
    let db = unique("it_lake_kill");
    let name = unique("itlakekill");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(40))"],
    )
    .await;
    for i in 0..200 {
        c.query_drop(format!("INSERT INTO t VALUES ({i}, 0, 'seed')"))
            .await
            .unwrap();
    }
    let cfg = lake_config(&name, &db, &root, extra);
    let mut writes = 200u64;
    let mut seed = std::process::id() as u64;
    let mut rnd = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for cycle in 0..10 {
        let p = start("run", &cfg);
        let n = 20 + rnd(60);
        for _ in 0..n {
            let id = rnd(260);
            match rnd(10) {
                0..=5 => c
                    .query_drop(format!(
                        "INSERT INTO t VALUES ({id}, 1, 'ins') ON DUPLICATE KEY UPDATE v = v + 1"
                    ))
                    .await
                    .unwrap(),
                6..=7 => c
                    .query_drop(format!(
                        "UPDATE t SET v = v + 1, s = 'upd{cycle}' WHERE id = {id}"
                    ))
                    .await
                    .unwrap(),
                _ => c
                    .query_drop(format!("DELETE FROM t WHERE id = {id}"))
                    .await
                    .unwrap(),
            }
            writes += 1;
        }
        tokio::time::sleep(Duration::from_millis(rnd(1500))).await;
        p.kill9();
    }
    let p = start("run", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    // No change twice in the change log: (file, pos, row, op) is unique.
    assert_once(
        &lake,
        &format!("\"{db}\".\"t__changes\" WHERE __op <> 'r'"),
        "__binlog_file, __binlog_pos, __binlog_row, __op, id",
        "duplicate changes in the change log",
    )
    .await;
    // Across crashes and restarts, every change keeps a sequence number of its own.
    assert_once(
        &lake,
        &format!("\"{db}\".\"t__changes\""),
        "__seq",
        "two changes share a __seq",
    )
    .await;
    let cfg2 = cfg.clone();
    tokio::task::spawn_blocking(move || crate::verify::assert_verified(&cfg2, 1))
        .await
        .unwrap();
    let _ = writes;
    drop(p);
    (db, root)
}

/// A merge-on-read replica (deletion vectors and a key index) through ten kill -9s:
/// every change once, `binlake verify` equal, and DuckDB's `delta_scan`, the
/// `deltalake` Python package (its `QueryBuilder`), polars' `read_delta` and Apache Spark
/// with delta-spark read exactly the primary's rows through its deletion vectors.
#[tokio::test(flavor = "multi_thread")]
async fn merge_on_read_run_survives_kill_9_and_five_readers_read_it() {
    let (db, root) = kill_9_run(r#"replica_mode = "merge_on_read""#).await;
    let replica = root.join(&db).join("t").join("replica");
    // The replica is merge-on-read: its protocol has the feature and its files carry
    // deletion vectors.
    let log = delta_log_text(&replica);
    assert!(
        log.contains("\"readerFeatures\":[\"deletionVectors\"]"),
        "protocol: {}",
        log.lines().next().unwrap_or_default()
    );
    assert!(
        log.contains("\"deletionVector\":{"),
        "no deletion vector was written"
    );
    let (_, want) = primary_rows(&db, "t").await;
    let script = format!(
        r#"
import duckdb, deltalake, json, polars, pyarrow
# deltalake's DataFusion engine applies deletion vectors (its pyarrow dataset refuses
# tables that have them).
t = deltalake.DeltaTable("{replica}")
q = deltalake.QueryBuilder().register("t", t).execute("SELECT id, v, s FROM t ORDER BY id")
rows = pyarrow.table(q.read_all()).to_pylist()
con = duckdb.connect()
ext = "{ext}"
if ext:
    con.execute(f"SET extension_directory = '{{ext}}'")
d = con.execute("SELECT id, v, s FROM delta_scan('{replica}') ORDER BY id").fetchall()
p = polars.read_delta("{replica}").sort("id").select(["id", "v", "s"]).rows()
cell = lambda x: "NULL" if x is None else str(x)
print(json.dumps({{"deltalake": [[cell(r["id"]), cell(r["v"]), cell(r["s"])] for r in rows],
                  "duckdb": [[cell(x) for x in r] for r in d],
                  "polars": [[cell(x) for x in r] for r in p]}}))
"#,
        replica = replica.display(),
        ext = std::env::var("BINLAKE_DUCKDB_EXTENSION_DIR").unwrap_or_default(),
    );
    let v = python_json(&script);
    let want = serde_json::json!(want);
    assert_eq!(v["deltalake"], want, "the deltalake package's read");
    assert_eq!(v["duckdb"], want, "DuckDB delta_scan's read");
    assert_eq!(v["polars"], want, "polars read_delta's read");
    // Apache Spark with Delta Lake (delta-spark), Delta's jars from the venv's Ivy cache.
    let script = format!(
        r#"
import json
from pyspark.sql import SparkSession
from delta import configure_spark_with_delta_pip
b = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
     .config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "1")
     .config("spark.databricks.delta.snapshotPartitions", "1")
     .config("spark.jars.ivy", "{ivy}")
     .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
     .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"))
spark = configure_spark_with_delta_pip(b).getOrCreate()
rows = spark.read.format("delta").load("{replica}").orderBy("id").collect()
cell = lambda x: "NULL" if x is None else str(x)
print(json.dumps({{"spark": [[cell(r["id"]), cell(r["v"]), cell(r["s"])] for r in rows]}}))
spark.stop()
"#,
        replica = replica.display(),
        ivy = spark_ivy(),
    );
    let v = python_json(&script);
    assert_eq!(v["spark"], want, "Spark's read (delta-spark)");
}

/// Spark's Ivy home, where tests/services/python.sh fetched Delta's jars.
fn spark_ivy() -> String {
    std::env::var("BINLAKE_SPARK_IVY").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/binlake/ivy")
    })
}

/// Starts `binlake run` with `failpoint` armed; returns once it streams.
fn start_armed(cfg: &Path, failpoint: &str) -> CaptureProcess {
    let mut p =
        CaptureProcess::start_command_env("run", cfg, &[(binlake_core::failpoint::ENV, failpoint)]);
    p.wait_for("streaming changes", Duration::from_secs(60));
    p
}

/// Waits until `p` crashed at `failpoint`.
fn crashed_at(p: CaptureProcess, failpoint: &str) {
    let (code, log) = p.wait_exit(Duration::from_secs(120));
    let name = failpoint.split('=').next().unwrap_or_default();
    assert!(
        log.contains(&format!("binlake failpoint {name} hit: crashing")),
        "`binlake run` did not crash at {failpoint} (exit {code:?}):\n{log}"
    );
}

/// `binlake wait --config cfg args…`: exit code and stderr.
fn wait_cli(cfg: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_binlake"))
        .args(["wait", "--config"])
        .arg(cfg)
        .args(args)
        .env("BINLAKE_IT_MYSQL_PASSWORD", "binlake")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `GET path` from the HTTP endpoint at `addr`, off the async threads.
fn http_get(addr: String, path: String) -> tokio::task::JoinHandle<(u16, String)> {
    tokio::task::spawn_blocking(move || crate::http::get(&addr, &path))
}

/// `binlake wait --gtid` and `GET /wait?gtid=`: return once the replicas hold the GTID of
/// a commit (the row is then in the replica), time out (exit 1, 408) on a GTID not
/// reached, and refuse a table the config does not capture or a malformed GTID (exit 2,
/// 400).
#[tokio::test(flavor = "multi_thread")]
async fn wait_returns_once_the_replica_holds_a_commit() {
    let db = unique("it_lake_wait");
    let name = unique("itlakewait");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(&db, &["CREATE TABLE t (id INT PRIMARY KEY, v INT)"]).await;
    // A free port (the other HTTP tests take theirs the same way or from 19300–19799).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = lake_config(&name, &db, &root, &format!("[http]\nlisten = \"{addr}\""));
    let p = start("run", &cfg);
    let lake = lake_at(&root);
    let wait = |args: &[&str]| wait_cli(&cfg, args);
    let get = |path: String| http_get(addr.clone(), path);
    let table = format!("{db}.t");
    for i in 1..=6 {
        c.query_drop(format!("INSERT INTO t VALUES ({i}, {i})"))
            .await
            .unwrap();
        let gtid: String = c.query_first("SELECT @@last_gtid").await.unwrap().unwrap();
        if i <= 3 {
            let (code, err) = wait(&["--gtid", &gtid, "--table", &table, "--timeout", "30s"]);
            assert_eq!(code, Some(0), "{err}");
        } else {
            // Over HTTP, woken by the run's checkpoints.
            let path = format!("/wait?gtid={gtid}&tables={table}&timeout=30s");
            let (code, body) = get(path).await.unwrap();
            assert_eq!(code, 200, "{body}");
        }
        // Read-your-writes: the row is there when the wait returns.
        let rows = render(
            &query(
                &lake,
                &format!("SELECT id FROM \"{db}\".\"t\" WHERE id = {i}"),
            )
            .await,
            &["id".into()],
        );
        assert_eq!(rows, vec![vec![i.to_string()]], "after {gtid}");
    }
    let gtid: String = c.query_first("SELECT @@last_gtid").await.unwrap().unwrap();
    // `status --json` names the position each replica holds everything up to.
    let st = status_json(&cfg);
    let through = st["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table.as_str())
        .and_then(|t| t["applied_through"].as_str())
        .unwrap_or_else(|| panic!("no applied_through: {st}"))
        .to_string();
    assert!(through.starts_with("mariadb-gtid:"), "{through}");
    let held = through.trim_start_matches("mariadb-gtid:");
    let (code, err) = wait(&["--gtid", held, "--timeout", "1s"]);
    assert_eq!(code, Some(0), "{held}: {err}");
    let (domain, rest) = gtid.split_once('-').unwrap();
    let (server, seq) = rest.split_once('-').unwrap();
    // Far ahead: the other tests share the server and write thousands of transactions.
    let ahead = format!(
        "{domain}-{server}-{}",
        seq.parse::<u64>().unwrap() + 1_000_000_000
    );
    let (code, err) = wait(&["--gtid", &ahead, "--timeout", "1s"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("timed out after 1s: the replicas are at"),
        "{err}"
    );
    let (code, body) = get(format!("/wait?gtid={ahead}&timeout=1s")).await.unwrap();
    assert_eq!(code, 408, "{body}");
    let (code, err) = wait(&["--gtid", &gtid, "--table", "other.t"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = wait(&["--gtid", "soon"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, body) = get("/wait?gtid=soon".into()).await.unwrap();
    assert_eq!(code, 400, "{body}");
    drop(p);
}

/// MariaDB's INVISIBLE columns (left out of `SELECT *`, but in the binlog's rows): the
/// snapshot reads them by name and the stream decodes them, so the replica holds them.
#[tokio::test(flavor = "multi_thread")]
async fn run_keeps_invisible_columns() {
    let db = unique("it_lake_invisible");
    let name = unique("itlakeinvisible");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10), secret INT INVISIBLE DEFAULT 7)"],
    )
    .await;
    c.query_drop("INSERT INTO t (id, v, secret) VALUES (1, 'a', 10), (2, 'b', 20)")
        .await
        .unwrap();
    let cfg = lake_config(&name, &db, &root, "");
    let p = start("run", &cfg);
    let lake = lake_at(&root);
    c.query_drop("INSERT INTO t (id, v) VALUES (3, 'c')")
        .await
        .unwrap();
    c.query_drop("UPDATE t SET secret = 21 WHERE id = 2")
        .await
        .unwrap();
    let want: Vec<Vec<String>> = c
        .query_map(
            format!("SELECT id, v, secret FROM {db}.t ORDER BY id"),
            |(id, v, secret): (i64, String, i64)| vec![id.to_string(), v, secret.to_string()],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = query_rows_or_empty(
            &lake,
            &format!("SELECT id, v, secret FROM \"{db}\".\"t\" ORDER BY id"),
            &["id", "v", "secret"],
        )
        .await;
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica {got:?} vs primary {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(p);
}

/// A source transaction larger than the batch's memory (`max_batch_bytes`) is written to
/// the lake in parts and committed at its end: a crash between the parts leaves none of
/// it visible, and the restart loses and repeats nothing.
#[tokio::test(flavor = "multi_thread")]
async fn run_commits_a_large_transaction_in_parts_exactly_once_across_crashes() {
    large_transaction_in_parts("").await;
}

/// The same in a merge-on-read replica (parts stage deletion vectors and index changes),
/// then a crash between a replica commit and its key index update: the restart's index
/// catches up from the table and the replica stays equal to the primary.
#[tokio::test(flavor = "multi_thread")]
async fn merge_on_read_commits_parts_once_and_survives_a_crash_before_the_index_update() {
    let (db, cfg, root, mut c) =
        large_transaction_in_parts(r#"replica_mode = "merge_on_read""#).await;
    let fp = "lake.after_replica_commit=1";
    let armed = start_armed(&cfg, fp);
    c.query_drop("UPDATE t SET v = v + 1 WHERE id % 7 = 0")
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || crashed_at(armed, fp))
        .await
        .unwrap();
    let p = start("run", &cfg);
    c.query_drop("UPDATE t SET v = v * 2 WHERE id % 5 = 0")
        .await
        .unwrap();
    c.query_drop("DELETE FROM t WHERE id % 11 = 0")
        .await
        .unwrap();
    wait_equal(&lake_at(&root), &db, "t", "id", Duration::from_secs(60)).await;
    tokio::task::spawn_blocking(move || crate::verify::assert_verified(&cfg, 1))
        .await
        .unwrap();
    drop(p);
}

/// A 10,000-row insert and update each committed in parts across crashes, with `[lake]
/// extra`; returns the database, config, lake root and a connection.
async fn large_transaction_in_parts(extra: &str) -> (String, PathBuf, PathBuf, mysql_async::Conn) {
    let db = unique("it_lake_bigtxn");
    let name = unique("itlakebigtxn");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)"],
    )
    .await;
    // 1 MiB: a part about every 2,000 changes of this table.
    let cfg = lake_config(
        &name,
        &db,
        &root,
        &format!("max_batch_bytes = 1048576\n{extra}"),
    );
    let lake = lake_at(&root);
    let count = |sql: String| {
        let lake = &lake;
        async move {
            let rows = query_rows_or_empty(lake, &sql, &["n"]).await;
            rows.first().map_or(0, |r| r[0].parse::<u64>().unwrap())
        }
    };
    // One transaction of 10,000 inserts, crashing after its third part; then the rest.
    let fp = "run.after_part_staged=3";
    let armed = start_armed(&cfg, fp);
    c.query_drop("INSERT INTO t SELECT seq, 0 FROM seq_1_to_10000")
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || crashed_at(armed, fp))
        .await
        .unwrap();
    // Three parts were written, none is visible.
    let visible = count(format!("SELECT count(*) AS n FROM \"{db}\".\"t\"")).await;
    assert_eq!(
        visible, 0,
        "rows of an uncommitted transaction in the replica"
    );
    let logged = count(format!(
        "SELECT count(*) AS n FROM \"{db}\".\"t__changes\" WHERE __op = 'c'"
    ))
    .await;
    assert_eq!(
        logged, 0,
        "changes of an uncommitted transaction in the change log"
    );
    let p = start("run", &cfg);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    drop(p);
    // One transaction of 10,000 updates, crashing after its second part; then the rest.
    let fp = "run.after_part_staged=2";
    let armed = start_armed(&cfg, fp);
    c.query_drop("UPDATE t SET v = v + 1").await.unwrap();
    tokio::task::spawn_blocking(move || crashed_at(armed, fp))
        .await
        .unwrap();
    let updated = count(format!(
        "SELECT count(*) AS n FROM \"{db}\".\"t\" WHERE v <> 0"
    ))
    .await;
    assert_eq!(updated, 0, "part of an uncommitted update in the replica");
    let p = start("run", &cfg);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    let counts = query(
        &lake,
        &format!("SELECT count(*) AS n FROM \"{db}\".\"t__changes\" WHERE __op IN ('c', 'u')"),
    )
    .await;
    assert_eq!(
        render(&counts, &["n".into()]),
        vec![vec!["20000".to_string()]]
    );
    // (Snapshot rows of chunks read at the same binlog position share positions.)
    assert_once(
        &lake,
        &format!("\"{db}\".\"t__changes\" WHERE __op <> 'r'"),
        "__binlog_file, __binlog_pos, __binlog_row, __op",
        "duplicate changes in the change log",
    )
    .await;
    assert_once(
        &lake,
        &format!("\"{db}\".\"t__changes\""),
        "__seq",
        "two changes share a __seq",
    )
    .await;
    drop(p);
    (db, cfg, root, c)
}

#[tokio::test(flavor = "multi_thread")]
async fn run_snapshot_under_writes_survives_kill_9_and_reads_each_row_once() {
    let db = unique("it_lake_snapkill");
    let name = unique("itlakesnapkill");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)"],
    )
    .await;
    c.query_drop("INSERT INTO t SELECT seq, 0 FROM seq_1_to_60000")
        .await
        .unwrap();
    // Small chunks, two readers: many lake commits of several chunks each, so the kill
    // lands in the middle of the snapshot while writes go on.
    let cfg = lake_config(
        &name,
        &db,
        &root,
        "[snapshot]\nchunk_size = 40\nreaders = 2\n",
    );
    let writes = tokio::spawn(crate::snapshot::churn(db.clone(), 2000));
    let p = start("run", &cfg);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.kill9();
    let checkpoint: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join(format!("_binlake/run/{name}.json"))).unwrap(),
    )
    .unwrap();
    assert!(
        !checkpoint["state"].is_null(),
        "the snapshot was not in progress at the kill (finished, or not begun): {checkpoint}"
    );
    // An incomplete replica is current to no time.
    let status = status_json(&cfg);
    let t = &status["tables"][0];
    assert_eq!(t["snapshot_pending"], true, "{status}");
    assert!(
        t["current_to"].is_null() && t["lag_seconds"].is_null(),
        "{status}"
    );
    let p = start("run", &cfg);
    writes.await.unwrap();
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(90)).await;
    // Each row read once across the restart: what the killed process emitted but did not
    // commit is gone with it, what it committed is not read again.
    assert_once(
        &lake,
        &format!("\"{db}\".\"t__changes\" WHERE __op = 'r'"),
        "id",
        "a row was snapshotted twice into the change log",
    )
    .await;
    drop(p);
}

/// A run checkpoint whose snapshot progress this binlake cannot read (damaged, or written
/// by a version with another format) stops `run` and `status` naming the file. It is never
/// taken for "no snapshot pending", which would end the snapshot with rows never read and
/// report the replica current.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_snapshot_progress_stops_run_and_status_instead_of_ending_the_snapshot() {
    let db = unique("it_lake_unread");
    let name = unique("itlakeunread");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)"],
    )
    .await;
    c.query_drop("INSERT INTO t SELECT seq, 0 FROM seq_1_to_60000")
        .await
        .unwrap();
    let cfg = lake_config(&name, &db, &root, "[snapshot]\nchunk_size = 40\n");
    let p = start("run", &cfg);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.kill9();
    let path = root.join(format!("_binlake/run/{name}.json"));
    let mut checkpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(
        checkpoint["state"]["tables"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "the snapshot was not in progress at the kill: {checkpoint}"
    );
    // A field of another type than this version writes.
    checkpoint["state"]["chunks"] = serde_json::Value::from("many");
    std::fs::write(&path, checkpoint.to_string()).unwrap();
    let (code, log) = CaptureProcess::start_command("run", &cfg).wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(1), "run went on: {log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("{name}.json")) && last.contains("is not a record binlake can read"),
        "the last line names the checkpoint: {last}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_binlake"))
        .args(["status", "--json", "--config"])
        .arg(&cfg)
        .env("BINLAKE_IT_MYSQL_PASSWORD", "binlake")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && err.contains(&format!("{name}.json")),
        "status must not report the replica without its checkpoint: {} {err}",
        String::from_utf8_lossy(&out.stdout)
    );
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn run_replicates_a_table_without_a_key_by_its_configured_key_columns() {
    let db = unique("it_lake_keycols");
    let name = unique("itlakekeycols");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    // No index at all: without configured key columns the lake could not keep it.
    let mut c = setup_db(
        &db,
        &["CREATE TABLE legacy (id INT NOT NULL, v VARCHAR(20))"],
    )
    .await;
    c.query_drop("INSERT INTO legacy SELECT seq, CONCAT('v', seq) FROM seq_1_to_500")
        .await
        .unwrap();
    let cfg = lake_config(
        &name,
        &db,
        &root,
        &format!("[snapshot]\nchunk_size = 40\n[source.key_columns]\n\"{db}.legacy\" = [\"id\"]\n"),
    );
    let p = start("run", &cfg);
    c.query_drop("UPDATE legacy SET v = 'updated' WHERE id % 7 = 0")
        .await
        .unwrap();
    c.query_drop("DELETE FROM legacy WHERE id % 11 = 0")
        .await
        .unwrap();
    c.query_drop("INSERT INTO legacy VALUES (1000, 'new'), (1001, NULL)")
        .await
        .unwrap();
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "legacy", "id", Duration::from_secs(60)).await;
    drop(p);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_snapshots_a_table_on_request_while_it_streams() {
    let db = unique("it_lake_ondemand");
    let name = unique("itlakeondemand");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)",
            "CREATE TABLE u (id INT PRIMARY KEY)",
        ],
    )
    .await;
    c.query_drop("INSERT INTO t SELECT seq, 0 FROM seq_1_to_300")
        .await
        .unwrap();
    c.query_drop("INSERT INTO u VALUES (1)").await.unwrap();
    let cfg = lake_config(
        &name,
        &db,
        &root,
        "[snapshot]\nmode = \"never\"\nchunk_size = 50\n",
    );
    let p = start("run", &cfg);
    // Writes go on while t is snapshotted in chunks of 50.
    let writes = tokio::spawn(crate::snapshot::churn(db.clone(), 600));
    let (code, text) = crate::snapshot::request_snapshot(&cfg, &format!("{db}.t"));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("from run"), "{text}");
    writes.await.unwrap();
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    // u was not requested: nothing of it reached the lake.
    assert!(
        !lake
            .tables()
            .await
            .unwrap()
            .contains(&(db.clone(), "u".to_string()))
    );
    // Acted on once: a restart does not snapshot t again.
    drop(p);
    let p = start("run", &cfg);
    c.query_drop("UPDATE t SET v = v + 1 WHERE id = 2")
        .await
        .unwrap();
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    assert_once(
        &lake,
        &format!("\"{db}\".\"t__changes\" WHERE __op = 'r'"),
        "id",
        "a row was snapshotted twice",
    )
    .await;
    drop(p);
}

/// A DDL that gives existing rows values without row events (a column added with a
/// default, a generated column) has the table read again while writes go on; a DDL
/// that leaves the rows as they were (a nullable column, a wider type) does not.
#[tokio::test(flavor = "multi_thread")]
async fn run_reads_a_table_again_after_a_ddl_that_changes_its_rows() {
    let db = unique("it_lake_reread");
    let name = unique("itlakereread");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)",
            "CREATE TABLE u (id INT PRIMARY KEY, v INT)",
        ],
    )
    .await;
    c.query_drop("INSERT INTO t SELECT seq, 0 FROM seq_1_to_300")
        .await
        .unwrap();
    c.query_drop("INSERT INTO u SELECT seq, seq FROM seq_1_to_10")
        .await
        .unwrap();
    let cfg = lake_config(&name, &db, &root, "[snapshot]\nchunk_size = 50\n");
    let p = start("run", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    wait_equal(&lake, &db, "u", "id", Duration::from_secs(60)).await;
    // Then an update of a row written before: found in its widened file, not duplicated.
    c.query_drop("ALTER TABLE u ADD COLUMN n INT, MODIFY v BIGINT")
        .await
        .unwrap();
    let writes = tokio::spawn(crate::snapshot::churn(db.clone(), 600));
    c.query_drop(
        "ALTER TABLE t ADD COLUMN d INT NOT NULL DEFAULT 7, ADD COLUMN g BIGINT AS (id * 2) STORED, ADD COLUMN s VARCHAR(3) DEFAULT 'abc'",
    )
    .await
    .unwrap();
    writes.await.unwrap();
    c.query_drop("UPDATE u SET v = v + 1 WHERE id = 1")
        .await
        .unwrap();
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    wait_equal(&lake, &db, "u", "id", Duration::from_secs(60)).await;
    // u was read once (the initial snapshot); t again after its DDL.
    let reads = |table: &str| {
        format!("SELECT count(*) AS n FROM \"{db}\".\"{table}__changes\" WHERE __op = 'r'")
    };
    let n = |b: &[RecordBatch]| render(b, &["n".into()])[0][0].parse::<usize>().unwrap();
    assert_eq!(n(&query(&lake, &reads("u")).await), 10);
    assert!(n(&query(&lake, &reads("t")).await) > 300);
    drop(p);
}

/// The fields of the Delta table in `dir` as its log's last `metaData` action describes
/// them (what every Delta reader reads): name → field metadata.
fn delta_fields(dir: &Path) -> Vec<(String, serde_json::Value)> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir.join("_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    logs.sort();
    let schema = logs
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines()
                .filter_map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["metaData"]["schemaString"].as_str().map(str::to_string)
                })
                .collect::<Vec<_>>()
        })
        .next_back()
        .unwrap_or_else(|| panic!("no metaData in {}", dir.display()));
    let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
    schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["metadata"].clone(),
            )
        })
        .collect()
}

/// MariaDB's JSON columns are LONGTEXT on the server and in its table maps; in the lake
/// their fields say `json` (`binlake.mysql_type`, and the Delta column comment), in the
/// replica and the change log, for a table snapshotted (schema from `information_schema`),
/// then streamed (table maps), and for a JSON column added by a DDL. The values stay the
/// JSON text.
#[tokio::test(flavor = "multi_thread")]
async fn run_marks_mariadb_json_columns_as_json_in_the_lake() {
    let db = unique("it_lake_json");
    let name = unique("itlakejson");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE docs (id INT PRIMARY KEY, doc JSON, note LONGTEXT, checked LONGTEXT CHECK (json_valid(checked)))"],
    )
    .await;
    c.query_drop(
        r#"INSERT INTO docs VALUES (1, '{"a": [1, 2.50, "x"]}', 'not json', '[]'), (2, NULL, NULL, 'null')"#,
    )
    .await
    .unwrap();
    // (Inside the config's [lake] section.)
    let cfg = lake_config(&name, &db, &root, "before_images = true\n");
    let p = start("run", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "docs", "id", Duration::from_secs(60)).await;
    c.query_drop(
        r#"INSERT INTO docs VALUES (3, '{"b": {"c": true}}', '{"looks": "like json"}', '{}')"#,
    )
    .await
    .unwrap();
    c.query_drop(r#"UPDATE docs SET doc = JSON_SET(doc, '$.a', 'y') WHERE id = 1"#)
        .await
        .unwrap();
    wait_equal(&lake, &db, "docs", "id", Duration::from_secs(60)).await;
    c.query_drop("ALTER TABLE docs ADD COLUMN extra JSON")
        .await
        .unwrap();
    c.query_drop(r#"INSERT INTO docs VALUES (4, '1', 'x', '2', '{"added": 1}')"#)
        .await
        .unwrap();
    wait_equal(&lake, &db, "docs", "id", Duration::from_secs(60)).await;
    drop(p);

    let ops = query(
        &lake,
        &format!("SELECT __op AS op, count(*) AS n FROM \"{db}\".\"docs__changes\" GROUP BY __op ORDER BY __op"),
    )
    .await;
    assert_eq!(
        render(&ops, &["op".into(), "n".into()]),
        [["c", "2"], ["r", "2"], ["u", "1"]]
            .iter()
            .map(|r| r.iter().map(|v| v.to_string()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    let doc = query(
        &lake,
        &format!("SELECT doc, __before_doc AS b FROM \"{db}\".\"docs__changes\" WHERE __op = 'u'"),
    )
    .await;
    assert_eq!(
        render(&doc, &["doc".into(), "b".into()]),
        [[r#"{"a": "y"}"#, r#"{"a": [1, 2.50, "x"]}"#]]
            .iter()
            .map(|r| r.iter().map(|v| v.to_string()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );

    let json = serde_json::json!({"binlake.mysql_type": "json", "comment": "json"});
    let longtext = serde_json::json!({"binlake.mysql_type": "longtext"});
    for kind in ["replica", "changes"] {
        let fields: std::collections::HashMap<_, _> =
            delta_fields(&root.join(&db).join("docs").join(kind))
                .into_iter()
                .collect();
        let mut want = vec![
            ("doc", &json),
            ("checked", &json),
            ("extra", &json),
            ("note", &longtext),
        ];
        if kind == "changes" {
            want.extend([
                ("__before_doc", &json),
                ("__before_extra", &json),
                ("__before_note", &longtext),
            ]);
        }
        for (field, meta) in want {
            assert_eq!(
                fields.get(field),
                Some(meta),
                "{kind}: {field}: {fields:#?}"
            );
        }
    }
}

/// A DDL that changes the primary key (a key column dropped, the key redefined) re-keys
/// the replica: it holds each row once, under its new key, never beside its old one.
#[tokio::test(flavor = "multi_thread")]
async fn run_rekeys_the_replica_when_the_primary_key_changes() {
    let db = unique("it_lake_rekey");
    let name = unique("itlakerekey");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE k (k1 INT NOT NULL, k2 INT NOT NULL, v VARCHAR(10), PRIMARY KEY (k1, k2))"],
    )
    .await;
    c.query_drop("INSERT INTO k VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 7, 'c')")
        .await
        .unwrap();
    let cfg = lake_config(&name, &db, &root, "");
    let p = start("run", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "k", "k1, k2", Duration::from_secs(60)).await;
    for sql in [
        "ALTER TABLE k DROP PRIMARY KEY, DROP COLUMN k2, ADD PRIMARY KEY (k1)",
        "UPDATE k SET v = 'b2' WHERE k1 = 2",
        "INSERT INTO k VALUES (4, 'd')",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    wait_equal(&lake, &db, "k", "k1", Duration::from_secs(60)).await;
    // And a key redefined on other columns.
    for sql in [
        "ALTER TABLE k DROP PRIMARY KEY, ADD PRIMARY KEY (v)",
        "UPDATE k SET k1 = 20 WHERE v = 'b2'",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    wait_equal(&lake, &db, "k", "v", Duration::from_secs(60)).await;
    drop(p);
}

/// An online schema change's swap (`RENAME TABLE t TO t_old, t_new TO t`, as gh-ost and
/// pt-online-schema-change do, or an ETL job swapping in a rebuilt table): the replica of
/// `t` becomes the new table's rows, with its new column, and `t_old` the old ones.
#[tokio::test(flavor = "multi_thread")]
async fn run_follows_a_table_swapped_in_by_rename() {
    let db = unique("it_lake_swap");
    let name = unique("itlakeswap");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)"],
    )
    .await;
    c.query_drop("INSERT INTO t SELECT seq, seq FROM seq_1_to_200")
        .await
        .unwrap();
    // Off: a swapped-in table is read again all the same (it was truncated).
    let cfg = lake_config(
        &name,
        &db,
        &root,
        "[snapshot]\nchunk_size = 50\nreread_on_schema_change = false\n",
    );
    let p = start("run", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    // The rebuilt table: a new column, other values, fewer rows.
    for sql in [
        "CREATE TABLE t_new (id INT PRIMARY KEY, v INT NOT NULL, w VARCHAR(5) NOT NULL DEFAULT 'new')",
        "INSERT INTO t_new (id, v) SELECT id, v * 10 FROM t WHERE id > 50",
        "RENAME TABLE t TO t_old, t_new TO t",
        "UPDATE t SET v = -1 WHERE id = 60",
        "INSERT INTO t (id, v) VALUES (1000, 1000)",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    wait_equal(&lake, &db, "t_old", "id", Duration::from_secs(60)).await;
    // Dropped and created again: the new table starts empty.
    for sql in [
        "DROP TABLE t_old",
        "CREATE TABLE t_old (id INT PRIMARY KEY, v INT NOT NULL)",
        "INSERT INTO t_old VALUES (7, 7)",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    wait_equal(&lake, &db, "t_old", "id", Duration::from_secs(60)).await;
    // Replaced in one statement (MariaDB): the same.
    for sql in [
        "CREATE OR REPLACE TABLE t_old (id INT PRIMARY KEY, v INT NOT NULL)",
        "INSERT INTO t_old VALUES (8, 8)",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    wait_equal(&lake, &db, "t_old", "id", Duration::from_secs(60)).await;
    drop(p);
}

/// The Python venv with duckdb, pyarrow and deltalake (tests/services/python.sh).
fn python() -> String {
    std::env::var("BINLAKE_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/binlake/venv/bin/python")
    })
}

/// Runs `script` with that Python; the last line it prints, parsed as JSON (Spark's Ivy
/// prints its resolution report before it).
fn python_json(script: &str) -> serde_json::Value {
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .output()
        .unwrap_or_else(|e| {
            crate::services::unavailable("the Python venv (tests/services/python.sh start)", e)
        });
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    serde_json::from_str(last.unwrap_or_default())
        .unwrap_or_else(|e| panic!("python printed no JSON last ({e}):\n{stdout}"))
}

/// Two materialize workers on a merge-on-read replica, the table's partitions spread
/// over both, kill -9s and maintenance every second: each worker's key index catches up
/// with the other's files and its maintenance, and conflicting commits retry. Every
/// change lands once and `binlake verify` finds the replica equal to the primary.
#[tokio::test(flavor = "multi_thread")]
async fn merge_on_read_materialize_with_two_workers_kill_9_and_maintenance_stays_exact() {
    let db = unique("it_matmor");
    let name = unique("itmatmor");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(40))"],
    )
    .await;
    c.query_drop("INSERT INTO t SELECT seq, 0, 'seed' FROM seq_1_to_300")
        .await
        .unwrap();
    let cfg = lake_config(
        &name,
        &db,
        &root,
        "replica_mode = \"merge_on_read\"\nmaintenance_interval = \"1s\"\ncompact_min_files = 2\n[capture]\npartitions = 4\n",
    );
    let _capture = start("capture", &cfg);
    let mut w1 = start("materialize", &cfg);
    let mut w2 = start("materialize", &cfg);
    let mut seed = 11u64;
    let mut rnd = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for cycle in 0..8 {
        for _ in 0..40 {
            let id = rnd(400);
            match rnd(10) {
                0..=5 => c
                    .query_drop(format!(
                        "INSERT INTO t VALUES ({id}, 1, 'ins') ON DUPLICATE KEY UPDATE v = v + 1"
                    ))
                    .await
                    .unwrap(),
                6..=7 => c
                    .query_drop(format!("UPDATE t SET s = 'upd{cycle}' WHERE id = {id}"))
                    .await
                    .unwrap(),
                _ => c
                    .query_drop(format!("DELETE FROM t WHERE id = {id}"))
                    .await
                    .unwrap(),
            }
        }
        tokio::time::sleep(Duration::from_millis(300 + rnd(1200))).await;
        match cycle % 2 {
            0 => {
                w1.kill9();
                w1 = start("materialize", &cfg);
            }
            _ => {
                w2.kill9();
                w2 = start("materialize", &cfg);
            }
        }
    }
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(120)).await;
    assert_once(
        &lake,
        &format!("\"{db}\".\"t__changes\""),
        "__kafka_partition, __kafka_offset",
        "duplicate changes in the change log",
    )
    .await;
    let log = delta_log_text(&root.join(&db).join("t").join("replica"));
    assert!(
        log.contains("\"deletionVector\":{"),
        "no deletion vector was written"
    );
    let cfg2 = cfg.clone();
    tokio::task::spawn_blocking(move || crate::verify::assert_verified(&cfg2, 1))
        .await
        .unwrap();
    drop(w1);
    drop(w2);
}

#[tokio::test(flavor = "multi_thread")]
async fn materialize_from_kafka_with_two_workers_and_kill_9_then_read_by_duckdb_and_pyarrow() {
    let db = unique("it_mat");
    let name = unique("itmat");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE orders (id INT PRIMARY KEY, amount DECIMAL(10,2), note VARCHAR(50), at DATETIME(3), big BIGINT UNSIGNED)"],
    )
    .await;
    for i in 0..50 {
        c.query_drop(format!("INSERT INTO orders VALUES ({i}, {i}.25, 'seed', '2024-01-02 03:04:05.678', 18446744073709551615)"))
            .await
            .unwrap();
    }
    let cfg = lake_config(&name, &db, &root, "[capture]\npartitions = 4\n");
    let _capture = start("capture", &cfg);
    let mut w1 = start("materialize", &cfg);
    let mut seed = 7u64;
    let mut rnd = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut w2: Option<CaptureProcess> = None;
    for cycle in 0..10 {
        for _ in 0..30 {
            let id = rnd(80);
            match rnd(10) {
                0..=5 => c.query_drop(format!("INSERT INTO orders VALUES ({id}, 1.50, 'ins', NOW(3), {cycle}) ON DUPLICATE KEY UPDATE amount = amount + 1")).await.unwrap(),
                6..=7 => c.query_drop(format!("UPDATE orders SET note = 'upd{cycle}' WHERE id = {id}")).await.unwrap(),
                _ => c.query_drop(format!("DELETE FROM orders WHERE id = {id}")).await.unwrap(),
            }
        }
        tokio::time::sleep(Duration::from_millis(rnd(1200))).await;
        // Alternate: kill -9 the first worker and restart it; run a second worker (a
        // rebalance) in between.
        if cycle % 2 == 0 {
            w1.kill9();
            w1 = start("materialize", &cfg);
        } else if let Some(w) = w2.take() {
            w.kill9();
        } else {
            w2 = Some(start("materialize", &cfg));
        }
    }
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "orders", "id", Duration::from_secs(120)).await;
    assert_once(
        &lake,
        &format!("\"{db}\".\"orders__changes\""),
        "__kafka_partition, __kafka_offset",
        "duplicate changes in the change log",
    )
    .await;
    assert_once(
        &lake,
        &format!("\"{db}\".\"orders__changes\""),
        "__seq",
        "two changes share a __seq",
    )
    .await;
    drop(w1);
    drop(w2);

    // DuckDB and pyarrow (deltalake) read the same values binlake wrote.
    let replica = root.join(&db).join("orders").join("replica");
    let (_, want) = primary_rows(&db, "orders").await;
    let script = format!(
        r#"
import duckdb, deltalake, json, sys
t = deltalake.DeltaTable("{replica}")
rows = t.to_pyarrow_table().sort_by("id").to_pylist()
con = duckdb.connect()
ext = "{ext}"
if ext:
    con.execute(f"SET extension_directory = '{{ext}}'")
d = con.execute("SELECT id, CAST(amount AS VARCHAR), note, CAST(big AS VARCHAR) FROM delta_scan('{replica}') ORDER BY id").fetchall()
out = {{"pyarrow": [[r["id"], str(r["amount"]), r["note"], str(r["big"]) if r["big"] is not None else None] for r in rows],
       "duckdb": [list(x) for x in d]}}
print(json.dumps(out, default=str))
"#,
        replica = replica.display(),
        ext = std::env::var("BINLAKE_DUCKDB_EXTENSION_DIR").unwrap_or_default(),
    );
    let v = python_json(&script);
    let expect: Vec<serde_json::Value> = want
        .iter()
        .map(|r| {
            serde_json::json!([
                r[0].parse::<i64>().unwrap(),
                r[1],
                if r[2] == "NULL" {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(r[2].clone())
                },
                if r[4] == "NULL" {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(r[4].clone())
                },
            ])
        })
        .collect();
    assert_eq!(
        v["pyarrow"].as_array().unwrap(),
        &expect,
        "pyarrow/deltalake read"
    );
    assert_eq!(
        v["duckdb"].as_array().unwrap(),
        &expect,
        "duckdb delta_scan read"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_writes_replicas_to_a_real_s3_server() {
    let endpoint =
        std::env::var("BINLAKE_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:19000".into());
    let bucket = std::env::var("BINLAKE_S3_BUCKET").unwrap_or_else(|_| "binlake-test".into());
    let key = std::env::var("BINLAKE_S3_ACCESS_KEY").unwrap_or_else(|_| "binlake".into());
    let secret = std::env::var("BINLAKE_S3_SECRET_KEY").unwrap_or_else(|_| "binlake-secret".into());
    if std::net::TcpStream::connect(endpoint.trim_start_matches("http://")).is_err() {
        crate::services::unavailable("the S3 server (tests/services/s3.sh start)", &endpoint);
    }
    let db = unique("it_s3");
    let name = unique("its3");
    let root = format!("s3://{bucket}/{}", unique("lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20), d DECIMAL(8,3))"],
    )
    .await;
    c.query_drop("INSERT INTO t VALUES (1, 'one', 1.5), (2, 'two', -2.25)")
        .await
        .unwrap();
    let storage = format!(
        "[lake.storage]\naws_endpoint = \"{endpoint}\"\naws_access_key_id = \"{key}\"\naws_secret_access_key = \"${{BINLAKE_IT_S3_SECRET}}\"\naws_region = \"us-east-1\"\naws_allow_http = \"true\"\n"
    );
    let cfg = lake_config_at(&name, &db, &root, &storage);
    // SAFETY of the test: the secret reaches the child through the environment.
    let mut p =
        CaptureProcess::start_command_env("run", &cfg, &[("BINLAKE_IT_S3_SECRET", &secret)]);
    p.wait_for("streaming changes", Duration::from_secs(60));
    c.query_drop("INSERT INTO t VALUES (3, 'three', 3)")
        .await
        .unwrap();
    c.query_drop("UPDATE t SET v = 'uno' WHERE id = 1")
        .await
        .unwrap();
    c.query_drop("DELETE FROM t WHERE id = 2").await.unwrap();
    let lake = Lake::open(&binlake_lake::LakeConfig {
        root: root.clone(),
        storage: [
            ("aws_endpoint", endpoint.as_str()),
            ("aws_access_key_id", key.as_str()),
            ("aws_secret_access_key", secret.as_str()),
            ("aws_region", "us-east-1"),
            ("aws_allow_http", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), binlake_core::Secret::new(v)))
        .collect(),
        ..binlake_lake::LakeConfig::default()
    })
    .unwrap();
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    let (code, log) = p.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains(&secret), "the S3 secret leaked into the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_changes_mid_stream_evolve_the_replica_or_stop_with_a_way_out() {
    let db = unique("it_lake_ddl");
    let name = unique("itlakeddl");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, a INT, s VARCHAR(10))"],
    )
    .await;
    c.query_drop("INSERT INTO t VALUES (1, 10, 'one')")
        .await
        .unwrap();
    let cfg = lake_config(&name, &db, &root, "");
    let p = start("run", &cfg);
    let lake = lake_at(&root);
    c.query_drop("INSERT INTO t VALUES (2, 20, 'two')")
        .await
        .unwrap();
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(30)).await;
    // ADD COLUMN: older rows read NULL.
    c.query_drop("ALTER TABLE t ADD COLUMN b DECIMAL(6,2)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (3, 30, 'three', 3.25)")
        .await
        .unwrap();
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(30)).await;
    // DROP COLUMN: the replica keeps it, NULL in rows written from now on.
    c.query_drop("ALTER TABLE t DROP COLUMN s").await.unwrap();
    c.query_drop("INSERT INTO t VALUES (4, 40, 4.5)")
        .await
        .unwrap();
    c.query_drop("UPDATE t SET a = 11 WHERE id = 1")
        .await
        .unwrap();
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(30)).await;
    let s = query(
        &lake,
        &format!("SELECT id, s FROM \"{db}\".\"t\" ORDER BY id"),
    )
    .await;
    assert_eq!(
        render(&s, &["id".into(), "s".into()]),
        [["1", "NULL"], ["2", "two"], ["3", "three"], ["4", "NULL"]]
            .iter()
            .map(|r| r.iter().map(|v| v.to_string()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    // MODIFY to a wider type: the files are rewritten, values kept.
    c.query_drop("ALTER TABLE t MODIFY a BIGINT, MODIFY b DECIMAL(12,4)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (5, 9000000000, 5.1234)")
        .await
        .unwrap();
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(30)).await;
    // MODIFY to a type that cannot hold the old values: the run stops and says what to do.
    c.query_drop("ALTER TABLE t MODIFY a VARCHAR(20)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (6, 'six', 6)")
        .await
        .unwrap();
    let (code, log) = p.wait_exit(Duration::from_secs(60));
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("column a changed from Int64 to Utf8"), "{log}");
    assert!(log.contains("Re-snapshot the table"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_compacts_the_change_log_and_replica_and_vacuums_without_changing_data() {
    let db = unique("it_lake_mnt");
    let name = unique("itlakemnt");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(&db, &["CREATE TABLE t (id INT PRIMARY KEY, v INT)"]).await;
    c.query_drop("INSERT INTO t VALUES (0, 0)").await.unwrap();
    let cfg = lake_config(
        &name,
        &db,
        &root,
        // One key bucket: the inserts below are appends (each a new replica file), which
        // maintenance then merges.
        "maintenance_interval = \"8s\"\ncompact_min_files = 3\nvacuum_retention = \"0s\"\nbuckets = 1\n",
    );
    let started = Instant::now();
    let p = start("run", &cfg);
    let lake = lake_at(&root);
    // Many small batches: one change-log file each.
    for i in 1..=12 {
        c.query_drop(format!("INSERT INTO t VALUES ({i}, {i})"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(30)).await;
    let changes_dir = root.join(&db).join("t").join("changes");
    let parquet_files = |dir: &Path| -> usize {
        walk(dir)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .count()
    };
    let before = parquet_files(&changes_dir);
    assert!(
        before >= 6,
        "expected many small change-log files, found {before}"
    );
    // (How many rows the snapshot contributed depends on timing; compaction must keep
    // exactly what is there, plus the one change that triggers it.)
    let rows_before = render(
        &query(
            &lake,
            &format!("SELECT count(*) AS n FROM \"{db}\".\"t__changes\""),
        )
        .await,
        &["n".into()],
    )[0][0]
        .parse::<u64>()
        .unwrap();
    let replica_dir = root.join(&db).join("t").join("replica");
    let replica_before = parquet_files(&replica_dir);
    assert!(
        replica_before >= 6,
        "expected the inserts to be appended as new replica files, found {replica_before}"
    );
    // One more batch after the maintenance interval triggers compaction and vacuum.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the inserts took longer than the maintenance interval"
    );
    tokio::time::sleep(Duration::from_secs(9).saturating_sub(started.elapsed())).await;
    c.query_drop("INSERT INTO t VALUES (100, 100)")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while parquet_files(&changes_dir) > 2 {
        assert!(
            Instant::now() < deadline,
            "no compaction: {} files",
            parquet_files(&changes_dir)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while parquet_files(&replica_dir) > 2 {
        assert!(
            Instant::now() < deadline,
            "replica files not merged: {}",
            parquet_files(&replica_dir)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let n = query(
        &lake,
        &format!("SELECT count(*) AS n FROM \"{db}\".\"t__changes\""),
    )
    .await;
    assert_eq!(
        render(&n, &["n".into()]),
        vec![vec![(rows_before + 1).to_string()]],
        "the change log lost or gained rows in compaction"
    );
    drop(p);
}

/// The commit files of a Delta table's log, concatenated.
fn delta_log_text(table: &Path) -> String {
    walk(&table.join("_delta_log"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// `binlake query` of `config` with `args`: (exit code, stdout, stderr).
pub(crate) fn query_cli(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_binlake"))
        .arg("query")
        .arg("--config")
        .arg(config)
        .args(args)
        .env("BINLAKE_IT_MYSQL_PASSWORD", "binlake")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `db.a` and `db.b` on the primary as `t,id,v` lines.
async fn both_tables(c: &mut mysql_async::Conn, db: &str) -> Vec<String> {
    c.query_map(
        format!(
            "SELECT 'a', id, v FROM {db}.a UNION ALL SELECT 'b', id, v FROM {db}.b ORDER BY 1, 2"
        ),
        |(t, id, v): (String, i64, i64)| format!("{t},{id},{v}"),
    )
    .await
    .unwrap()
}

/// `--as-of <GTID>`: every table at the same source position (a consistent cut), also
/// after a later snapshot of a table put newer rows (read after the position) into its
/// change log; a position before the tables' history refused; malformed is a usage error.
#[tokio::test(flavor = "multi_thread")]
async fn as_of_a_gtid_answers_every_table_at_the_same_source_position() {
    let db = unique("it_lake_asofgtid");
    let name = unique("itlakeasofgtid");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &[
            "CREATE TABLE a (id INT PRIMARY KEY, v INT)",
            "CREATE TABLE b (id INT PRIMARY KEY, v INT)",
            "INSERT INTO a VALUES (1, 0), (2, 0), (5, 0)",
            "INSERT INTO b VALUES (1, 0), (2, 0)",
        ],
    )
    .await;
    let before: String = c.query_first("SELECT @@last_gtid").await.unwrap().unwrap();
    let cfg = lake_config(&name, &db, &root, "");
    let p = start("run", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "a", "id", Duration::from_secs(30)).await;
    wait_equal(&lake, &db, "b", "id", Duration::from_secs(30)).await;
    // One transaction over both tables: the position to query at.
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("UPDATE a SET v = 1 WHERE id = 1")
        .await
        .unwrap();
    c.query_drop("UPDATE b SET v = 1 WHERE id = 1")
        .await
        .unwrap();
    c.query_drop("COMMIT").await.unwrap();
    let g1: String = c.query_first("SELECT @@last_gtid").await.unwrap().unwrap();
    let sql = format!(
        "SELECT 'a' AS t, id, v FROM \"{db}\".\"a\" UNION ALL SELECT 'b' AS t, id, v FROM \"{db}\".\"b\" ORDER BY t, id"
    );
    let at_g1 = both_tables(&mut c, &db).await;
    for sql in [
        "UPDATE a SET v = 2 WHERE id = 1",
        "DELETE FROM b WHERE id = 2",
        "INSERT INTO a VALUES (3, 3)",
        "UPDATE a SET id = 10 WHERE id = 2",
        "UPDATE b SET v = 2 WHERE id = 1",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    let now = both_tables(&mut c, &db).await;
    let g2: String = c.query_first("SELECT @@last_gtid").await.unwrap().unwrap();
    wait_equal(&lake, &db, "a", "id", Duration::from_secs(30)).await;
    wait_equal(&lake, &db, "b", "id", Duration::from_secs(30)).await;
    let as_of = |g: &str| {
        let (code, out, err) = query_cli(&cfg, &["--as-of", g, "--format", "csv", &sql]);
        assert_eq!(code, Some(0), "--as-of {g}: {err}");
        out.lines().skip(1).map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(as_of(&g1), at_g1, "at {g1}");
    assert_eq!(as_of(&g2), now, "at {g2}");
    // A snapshot of `a` read after g2 adds rows newer than g1 to its change log: they are
    // not the state at g1 (their keys changed after g1), except where nothing changed.
    let (code, out) = crate::snapshot::request_snapshot(&cfg, &format!("{db}.a"));
    assert_eq!(code, Some(0), "{out}");
    let reads = format!("SELECT count(*) AS n FROM \"{db}\".\"a__changes\" WHERE __op = 'r'");
    let deadline = Instant::now() + Duration::from_secs(60);
    while query_rows_or_empty(&lake, &reads, &["n"]).await != vec![vec!["7".to_string()]] {
        assert!(
            Instant::now() < deadline,
            "the second snapshot of a did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(as_of(&g1), at_g1, "at {g1}, after the second snapshot");
    assert_eq!(as_of(&g2), now, "at {g2}, after the second snapshot");
    // Before the tables' history: refused, naming them.
    let (code, _, err) = query_cli(&cfg, &["--as-of", &before, &sql]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is not known to reach the history") && err.contains(&format!("{db}.a")),
        "{err}"
    );
    let (code, _, err) = query_cli(&cfg, &["--as-of", "0-1-x", &sql]);
    assert_eq!(code, Some(2), "{err}");
    drop(p);
}

/// `--as-of`: the state at a past source time, ordered by `__seq` (a key change's delete
/// before its create; a TRUNCATE in the same second as the changes around it); times with
/// offsets; a time before the table's snapshot refused; a malformed time a usage error.
#[tokio::test(flavor = "multi_thread")]
async fn as_of_answers_from_the_state_at_a_past_source_time() {
    let db = unique("it_lake_asof");
    let name = unique("itlakeasof");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(&db, &["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"]).await;
    // Snapshotted: the change log begins with these rows.
    c.query_drop("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .unwrap();
    let before_snapshot = now_us();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cfg = lake_config(&name, &db, &root, "");
    let p = start("run", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(30)).await;
    // Binlog commit times have whole seconds: leave a second on each side of T.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = now_us();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.query_drop("UPDATE t SET v = 'B' WHERE id = 2")
        .await
        .unwrap();
    c.query_drop("DELETE FROM t WHERE id = 3").await.unwrap();
    c.query_drop("INSERT INTO t VALUES (4, 'd')").await.unwrap();
    c.query_drop("UPDATE t SET id = 10 WHERE id = 1")
        .await
        .unwrap();
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(30)).await;
    let ctx = binlake_lake::query::session(&lake, Some(&binlake_lake::query::AsOf::Time(t)))
        .await
        .unwrap();
    let then = binlake_lake::query::run(
        &ctx,
        &format!("SELECT id, v FROM \"{db}\".\"t\" ORDER BY id"),
    )
    .await
    .unwrap();
    let rows = |r: &[RecordBatch]| render(r, &["id".into(), "v".into()]);
    let want = |v: &[(&str, &str)]| -> Vec<Vec<String>> {
        v.iter()
            .map(|(a, b)| vec![a.to_string(), b.to_string()])
            .collect()
    };
    assert_eq!(rows(&then), want(&[("1", "a"), ("2", "b"), ("3", "c")]));
    let now = query(
        &lake,
        &format!("SELECT id, v FROM \"{db}\".\"t\" ORDER BY id"),
    )
    .await;
    assert_eq!(rows(&now), want(&[("2", "B"), ("4", "d"), ("10", "a")]));
    // The as-of view of the present is the replica.
    let ctx = binlake_lake::query::session(
        &lake,
        Some(&binlake_lake::query::AsOf::Time(now_us() + 5_000_000)),
    )
    .await
    .unwrap();
    let at_now = binlake_lake::query::run(
        &ctx,
        &format!("SELECT id, v FROM \"{db}\".\"t\" ORDER BY id"),
    )
    .await
    .unwrap();
    assert_eq!(rows(&at_now), rows(&now));

    // Every change has its own `__seq`, increasing in change order: the key change's
    // delete and create share their binlog position, and the delete comes first.
    let log = query(
        &lake,
        &format!(
            "SELECT __op, id, __seq, __binlog_pos FROM \"{db}\".\"t__changes\" ORDER BY __seq"
        ),
    )
    .await;
    let log = render(
        &log,
        &[
            "__op".into(),
            "id".into(),
            "__seq".into(),
            "__binlog_pos".into(),
        ],
    );
    assert!(
        log.iter().all(|r| r[2] != "NULL"),
        "a change without __seq: {log:?}"
    );
    assert_once(
        &lake,
        &format!("\"{db}\".\"t__changes\""),
        "__seq",
        "two changes share a __seq",
    )
    .await;
    let ops: Vec<(&str, &str)> = log.iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    let moved = ops
        .iter()
        .position(|o| *o == ("d", "1"))
        .expect("the key change's delete");
    assert_eq!(
        ops[moved + 1],
        ("c", "10"),
        "change log in __seq order: {log:?}"
    );
    assert_eq!(
        log[moved][3],
        log[moved + 1][3],
        "the key change is one event"
    );
    assert_eq!(
        ops[..3].iter().map(|o| o.0).collect::<Vec<_>>(),
        ["r", "r", "r"],
        "{log:?}"
    );

    // A TRUNCATE within the second of the changes around it: only what follows it.
    c.query_drop("INSERT INTO t VALUES (20, 'x')")
        .await
        .unwrap();
    c.query_drop("TRUNCATE TABLE t").await.unwrap();
    c.query_drop("INSERT INTO t VALUES (21, 'y')")
        .await
        .unwrap();
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(30)).await;
    let after = now_us() + 2_000_000;
    let ctx = binlake_lake::query::session(&lake, Some(&binlake_lake::query::AsOf::Time(after)))
        .await
        .unwrap();
    let truncated = binlake_lake::query::run(
        &ctx,
        &format!("SELECT id, v FROM \"{db}\".\"t\" ORDER BY id"),
    )
    .await
    .unwrap();
    assert_eq!(rows(&truncated), want(&[("21", "y")]));

    // Through the CLI: a time with an offset is the same instant as in UTC.
    let sql = format!("SELECT id, v FROM \"{db}\".\"t\" ORDER BY id");
    let utc = binlake_core::temporal::format_utc_timestamp(t, 6).unwrap();
    let ist = binlake_core::temporal::format_utc_timestamp(t + 19_800_000_000, 6)
        .unwrap()
        .replace('Z', "+05:30");
    let (code, by_utc, err) = query_cli(&cfg, &["--format", "csv", "--as-of", &utc, &sql]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(by_utc, "id,v\n1,a\n2,b\n3,c\n");
    let (code, by_ist, err) = query_cli(&cfg, &["--format", "csv", "--as-of", &ist, &sql]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(by_ist, by_utc);
    // Before the snapshot the lake knows nothing of the table: refused, saying from when.
    let early = binlake_core::temporal::format_utc_timestamp(before_snapshot, 0).unwrap();
    let (code, out, err) = query_cli(&cfg, &["--as-of", &early, &sql]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("before the history") && err.contains(&format!("{db}.t (from ")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "said once: {err}");
    // A malformed time is a usage error, said once.
    let (code, _, err) = query_cli(&cfg, &["--as-of", "2026-11-26 10:00", &sql]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.matches("RFC 3339").count(), 1, "{err}");
    drop(p);
}

/// `binlake query`'s output: JSON lines with every column (nulls too), DECIMAL and
/// BIGINT UNSIGNED as exact strings, bytes as hex; an empty result with its header (table,
/// CSV) or schema (Parquet); a closed stdout (`| head`) ends it quietly.
#[tokio::test(flavor = "multi_thread")]
async fn query_prints_every_value_exactly_and_stops_quietly_on_a_closed_stdout() {
    let db = unique("it_lake_qout");
    let name = unique("itlakeqout");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, d DECIMAL(30,10), u BIGINT UNSIGNED, n VARCHAR(5), b VARBINARY(4), s BIGINT)"],
    )
    .await;
    // `s`: 2^53 + 1, which a double cannot hold, and NULL in every other row.
    c.query_drop("INSERT INTO t SELECT seq, '12345678901234567890.0123456789', 18446744073709551615, NULL, x'00ff', IF(seq % 2 = 0, NULL, 9007199254740993) FROM seq_1_to_3000")
        .await
        .unwrap();
    let cfg = lake_config(&name, &db, &root, "");
    let p = start("run", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    let sql = format!("SELECT id, d, u, n, b, s FROM \"{db}\".\"t\" ORDER BY id");
    let (code, out, err) = query_cli(&cfg, &["--format", "json", &format!("{sql} LIMIT 2")]);
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            serde_json::json!({"id": 1, "d": "12345678901234567890.0123456789", "u": "18446744073709551615", "n": null, "b": "00ff", "s": 9007199254740993u64}),
            serde_json::json!({"id": 2, "d": "12345678901234567890.0123456789", "u": "18446744073709551615", "n": null, "b": "00ff", "s": null}),
        ],
        "{out}"
    );

    // The README's recipes for analysts: pandas with Arrow dtypes keeps BIGINT exact next
    // to NULLs; DuckDB without the delta extension reads the files the Delta log lists.
    let replica = root.join(&db).join("t").join("replica");
    let script = format!(
        r#"
import duckdb, deltalake, json, pandas as pd
t = deltalake.DeltaTable("{replica}")
df = t.to_pyarrow_table().to_pandas(types_mapper=pd.ArrowDtype).sort_values("id")
files = ", ".join("'" + f.replace("'", "''") + "'" for f in t.file_uris())
n, total = duckdb.connect().execute(f"SELECT count(*), CAST(sum(s) AS VARCHAR) FROM read_parquet([{{files}}])").fetchone()
print(json.dumps({{"pandas": [None if pd.isna(v) else int(v) for v in df["s"].head(2)], "n": n, "sum": total}}))
"#,
        replica = replica.display(),
    );
    let v = python_json(&script);
    assert_eq!(
        v,
        serde_json::json!({"pandas": [9007199254740993u64, null], "n": 3000, "sum": (1500u128 * 9007199254740993).to_string()})
    );
    let empty = format!("SELECT id, n FROM \"{db}\".\"t\" WHERE id < 0");
    let (code, out, err) = query_cli(&cfg, &[&empty]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("| id | n |"), "{out}");
    let (code, out, err) = query_cli(&cfg, &["--format", "csv", &empty]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "id,n\n");
    let file = root.join("empty.parquet");
    let (code, _, err) = query_cli(
        &cfg,
        &[
            "--format",
            "parquet",
            "--output",
            &file.display().to_string(),
            &empty,
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap();
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "n"]);
    // A reader that went away: every format ends quietly, exit 0.
    let status = vec!["status".to_string()];
    let queries = ["table", "json", "csv"]
        .map(|f| vec!["query".into(), sql.clone(), "--format".into(), f.into()]);
    for args in queries.iter().chain([&status]) {
        let format = args.join(" ");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_binlake"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .env("BINLAKE_IT_MYSQL_PASSWORD", "binlake")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{format}: {err}");
        assert!(err.is_empty(), "{format}: {err}");
    }
    drop(p);
}

#[tokio::test(flavor = "multi_thread")]
async fn materialize_catches_up_a_prefilled_topic_without_gaps() {
    // Large batches decoded in parallel while short flush deadlines fall: every message
    // of the topic must reach the change log exactly once (a regression test for a
    // cancelled receive that lost messages).
    let db = unique("it_mat_big");
    let name = unique("itmatbig");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, k INT, pad CHAR(60))"],
    )
    .await;
    let cfg = lake_config(
        &name,
        &db,
        &root,
        "[capture]\npartitions = 3\n[snapshot]\nmode = \"never\"\n",
    );
    let capture = start("capture", &cfg);
    for chunk in 0..30 {
        let lo = chunk * 1000 + 1;
        c.query_drop(format!(
            "INSERT INTO t SELECT seq, seq, REPEAT('x', 60) FROM seq_{lo}_to_{}",
            lo + 999
        ))
        .await
        .unwrap();
    }
    c.query_drop("UPDATE t SET k = k + 1 WHERE id % 3 = 0")
        .await
        .unwrap();
    c.query_drop("DELETE FROM t WHERE id % 7 = 0")
        .await
        .unwrap();
    // 30,000 inserts + 10,000 updates + 4,285 deletes.
    let want = 30_000 + 10_000 + 4_285;
    let m = start("materialize", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(120)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = query(
            &lake,
            &format!("SELECT count(*) AS n, count(DISTINCT __kafka_partition * 1000000000 + __kafka_offset) AS d FROM \"{db}\".\"t__changes\""),
        )
        .await;
        let got = render(&n, &["n".into(), "d".into()]);
        if got == vec![vec![want.to_string(), want.to_string()]] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "change log: {got:?}, want {want} distinct changes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(m);
    drop(capture);
}

/// Through Kafka: the rows a DDL gave values and a table swapped in by RENAME reach the
/// replicas materialize keeps (truncate and re-read rows go through the topics).
#[tokio::test(flavor = "multi_thread")]
async fn materialize_follows_row_changing_ddl_and_a_rename_swap() {
    let db = unique("it_mat_ddl");
    let name = unique("itmatddl");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)"],
    )
    .await;
    c.query_drop("INSERT INTO t SELECT seq, seq FROM seq_1_to_300")
        .await
        .unwrap();
    let cfg = lake_config(&name, &db, &root, "[snapshot]\nchunk_size = 50\n");
    let capture = start("capture", &cfg);
    let m = start("materialize", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    for sql in [
        "ALTER TABLE t ADD COLUMN d INT NOT NULL DEFAULT 7",
        "UPDATE t SET v = -v WHERE id % 10 = 0",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    for sql in [
        "CREATE TABLE t_new (id INT PRIMARY KEY, v INT NOT NULL, d INT NOT NULL DEFAULT 8)",
        "INSERT INTO t_new (id, v) SELECT id, v * 10 FROM t WHERE id > 100",
        "RENAME TABLE t TO t_old, t_new TO t",
        "DELETE FROM t WHERE id = 150",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    wait_equal(&lake, &db, "t_old", "id", Duration::from_secs(60)).await;
    drop(m);
    drop(capture);
}

/// A table without a primary key (and no `[source] key_columns`) cannot have a replica:
/// materialize and run skip it, say once which setting fixes it, and keep every other
/// table current.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_without_a_key_is_skipped_and_the_others_go_on() {
    let db = unique("it_lake_nokey");
    let name = unique("itlakenokey");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &[
            "CREATE TABLE nokey (id INT NOT NULL, v INT)",
            "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)",
        ],
    )
    .await;
    for table in ["nokey", "t"] {
        c.query_drop(format!(
            "INSERT INTO {table} SELECT seq, seq FROM seq_1_to_200"
        ))
        .await
        .unwrap();
    }
    let cfg = lake_config(&name, &db, &root, "");
    let capture = start("capture", &cfg);
    let mut m = start("materialize", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    m.wait_for("table without a key skipped", Duration::from_secs(30));
    // Still running: later changes of both tables, and the keyed one stays equal.
    for sql in [
        "INSERT INTO nokey VALUES (1000, 1)",
        "UPDATE t SET v = -v WHERE id % 3 = 0",
        "DELETE FROM t WHERE id % 5 = 0",
        "INSERT INTO t VALUES (1000, 1)",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    let (code, log) = m.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "materialize must run until stopped:\n{log}");
    for needle in [
        format!("{db}.nokey has no primary key"),
        "[source] key_columns".to_string(),
    ] {
        assert!(log.contains(&needle), "missing `{needle}` in:\n{log}");
    }
    assert_eq!(
        log.matches("table without a key skipped").count(),
        1,
        "said once:\n{log}"
    );
    drop(capture);

    // `run` says the same, and keeps the keyed table.
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let cfg = lake_config(&unique("itlakenokeyrun"), &db, &root, "");
    let mut p = start("run", &cfg);
    let lake = lake_at(&root);
    c.query_drop("INSERT INTO nokey VALUES (1001, 1)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (1001, 1)")
        .await
        .unwrap();
    p.wait_for("table without a key skipped", Duration::from_secs(60));
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    let (code, log) = p.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "run must run until stopped:\n{log}");
    assert!(log.contains("[source] key_columns"), "{log}");
    assert!(!log.contains("Re-snapshot"), "{log}");
}

/// While capture has not finished a table's snapshot, the replica materialize keeps from
/// its topics is reported as being snapshotted, not as current.
#[tokio::test(flavor = "multi_thread")]
async fn materialize_status_says_a_table_is_still_being_snapshotted() {
    let db = unique("it_mat_snapstatus");
    let name = unique("itmatsnapstatus");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)"],
    )
    .await;
    c.query_drop("INSERT INTO t SELECT seq, seq FROM seq_1_to_60000")
        .await
        .unwrap();
    // One Kafka transaction per 40-row chunk: the snapshot takes a while.
    let cfg = lake_config(&name, &db, &root, "[snapshot]\nchunk_size = 40\n");
    let capture = start("capture", &cfg);
    let m = start("materialize", &cfg);
    let lake = lake_at(&root);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lake
        .tables()
        .await
        .unwrap()
        .contains(&(db.clone(), "t".to_string()))
    {
        assert!(Instant::now() < deadline, "no replica of t after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    capture.kill9();
    let record = crate::capture::wait_for_messages(&format!("{name}.offsets"), 1, 10).await;
    let record = record.iter().rev().find_map(|m| m.1.clone()).unwrap();
    assert!(
        !record["snapshot"].is_null(),
        "the snapshot was over before the kill: {record}"
    );
    let status = status_json(&cfg);
    let t = &status["tables"][0];
    assert_eq!(t["snapshot_pending"], true, "{status}");
    assert!(t["current_to"].is_null(), "{status}");
    // Once capture has read it all and materialize applied it: current again.
    let capture = start("capture", &cfg);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(120)).await;
    let status = status_json(&cfg);
    assert_eq!(status["tables"][0]["snapshot_pending"], false, "{status}");
    drop(m);
    drop(capture);
}

/// `[source.masking]`: masked text columns never reach Kafka or the lake in the clear,
/// for snapshot rows and streamed changes alike (capture → Kafka → materialize); the salt
/// is never logged; a rule that matches a non-text column stops capture naming it.
#[tokio::test(flavor = "multi_thread")]
async fn masked_columns_never_leave_binlake_in_the_clear() {
    use binlake_core::Value;
    use binlake_core::masking::Mask;
    let db = unique("it_masking");
    let name = unique("itmasking");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &[
            "CREATE TABLE users (id INT PRIMARY KEY, email VARCHAR(80), ssn CHAR(11), bio TEXT, age INT)",
            "INSERT INTO users VALUES (1, 'alice@example.com', '123-45-6789', 'a long story about alice', 30)",
        ],
    )
    .await;
    let salt = "s3cret-pepper";
    let rules = format!(
        "[source.masking]\nmask_with_chars = {{ \"{db}.users.email\" = 6 }}\ntruncate_to_chars = {{ \"{db}.*.bio\" = 6 }}\nhash_sha256 = [\"{db}.users.ssn\"]\nhash_salt = \"{salt}\"\n"
    );
    // `[source.masking]` goes after `[lake]` in the file: a table of its own.
    let cfg = lake_config(&name, &db, &root, &rules);
    let capture = start("capture", &cfg);
    let m = start("materialize", &cfg);
    c.query_drop(
        "INSERT INTO users VALUES (2, 'bob@example.com', '987-65-4321', 'bob was here', NULL)",
    )
    .await
    .unwrap();
    c.query_drop("UPDATE users SET email = 'alice@new.example', age = 31 WHERE id = 1")
        .await
        .unwrap();
    let hash = |v: &str| {
        let mut v = Value::String(v.into());
        Mask::Sha256 { salt: salt.into() }.apply(&mut v);
        match v {
            Value::String(s) => s,
            _ => unreachable!(),
        }
    };
    let want = vec![
        vec![
            "1".to_string(),
            "******".into(),
            hash("123-45-6789"),
            "a long".into(),
            "31".into(),
        ],
        vec![
            "2".to_string(),
            "******".into(),
            hash("987-65-4321"),
            "bob wa".into(),
            "NULL".into(),
        ],
    ];
    let lake = lake_at(&root);
    let sql = format!("SELECT id, email, ssn, bio, age FROM \"{db}\".\"users\" ORDER BY id");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = query_rows_or_empty(&lake, &sql, &["id", "email", "ssn", "bio", "age"]).await;
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "replica {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Neither the topic nor the change log holds a clear value; the salt is in no log.
    let msgs = crate::capture::wait_for_messages(&format!("{name}.{db}.users"), 3, 30).await;
    let text: String = msgs
        .iter()
        .filter_map(|m| m.1.as_ref())
        .map(|v| v.to_string())
        .collect();
    let changes = query_rows_or_empty(
        &lake,
        &format!("SELECT email, ssn, bio FROM \"{db}\".\"users__changes\""),
        &["email", "ssn", "bio"],
    )
    .await;
    let changes = format!("{changes:?}");
    for clear in ["example", "123-45", "987-65", "long story", "was here"] {
        assert!(!text.contains(clear), "`{clear}` in the topic: {text}");
        assert!(
            !changes.contains(clear),
            "`{clear}` in the change log: {changes}"
        );
    }
    let (_, clog) = tokio::task::spawn_blocking(move || capture.terminate(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(!clog.contains(salt), "the salt was logged:\n{clog}");
    drop(m);

    // A rule that matches an INT column: capture stops and names it.
    let bad = lake_config(
        &unique("itmaskingbad"),
        &db,
        &std::env::temp_dir().join(unique("binlake-lake")),
        &format!("[source.masking]\nmask_with_chars = {{ \"{db}.users.a*\" = 3 }}\n"),
    );
    let (code, log) = tokio::task::spawn_blocking(move || {
        CaptureProcess::start_command("capture", &bad).wait_exit(Duration::from_secs(60))
    })
    .await
    .unwrap();
    let last = log.lines().last().unwrap_or_default();
    assert!(
        code == Some(1)
            && last.contains(&format!("{db}.users.age"))
            && last.contains("text columns"),
        "{code:?}: {last}"
    );
}

/// With `[encoding] schemas = true` every topic a Kafka Connect `JsonConverter` with
/// `schemas.enable=true` reads is in `{"schema", "payload"}` form and conforms to its
/// schema: the change topics, the schema-change topic and the heartbeat topic; and
/// materialize reads the change topics in that form into a replica equal to the primary,
/// across an ALTER TABLE.
#[tokio::test(flavor = "multi_thread")]
async fn with_connect_schemas_every_topic_conforms_and_materialize_reads_it() {
    let db = unique("it_connect_schemas");
    let name = unique("itconnectschemas");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20), amount DECIMAL(10, 2))",
            "INSERT INTO t VALUES (1, 'a', 1.50), (2, 'b', NULL)",
        ],
    )
    .await;
    let cfg = lake_config(
        &name,
        &db,
        &root,
        "[capture]\nheartbeat_interval = \"500ms\"\n[encoding]\nschemas = true",
    );
    let capture = start("capture", &cfg);
    let m = start("materialize", &cfg);
    let lake = lake_at(&root);
    for sql in [
        "INSERT INTO t VALUES (3, 'c', 3.25)".to_string(),
        "ALTER TABLE t ADD COLUMN n INT NOT NULL DEFAULT 7".to_string(),
        "UPDATE t SET v = 'B', n = 8 WHERE id = 2".to_string(),
        "DELETE FROM t WHERE id = 1".to_string(),
    ] {
        c.query_drop(sql).await.unwrap();
    }
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    let conform = |topic: &str, msgs: &[crate::capture::Msg]| {
        for (key, value, _, _) in msgs {
            for (part, v) in [("key", key), ("value", value)] {
                let Some(v) = v else { continue };
                binlake_core::debezium::connect::conforms(&v["schema"], &v["payload"])
                    .unwrap_or_else(|e| panic!("{topic} {part}: {e}\n{v}"));
            }
        }
    };
    let data = crate::capture::wait_for_messages(&format!("{name}.{db}.t"), 6, 30).await;
    assert!(data.len() >= 6, "{} change messages", data.len());
    conform("change topic", &data);
    let ddl = crate::capture::wait_for_messages(&format!("{name}.schema-changes"), 1, 30).await;
    let alter = ddl
        .iter()
        .filter_map(|m| m.1.as_ref())
        .find(|v| {
            v["payload"]["ddl"]
                .as_str()
                .is_some_and(|d| d.contains("ADD COLUMN n"))
        })
        .unwrap_or_else(|| panic!("no ALTER in the schema-change topic: {ddl:?}"));
    assert_eq!(
        alter["payload"]["tableChanges"][0]["type"], "ALTER",
        "{alter}"
    );
    conform("schema-change topic", &ddl);
    let beats = crate::capture::wait_for_messages(&format!("{name}.heartbeat"), 1, 30).await;
    assert!(!beats.is_empty(), "no heartbeat");
    conform("heartbeat topic", &beats);
    drop(m);
    drop(capture);
}

/// `materialize`'s replicas answer read-your-writes and say how fresh they are like
/// `run`'s: `status` calls a table nobody writes current (to the capture heartbeat its
/// worker confirmed it holds everything up to) and names the position each replica holds
/// everything up to; `binlake wait` and `/wait` return once the replicas hold a commit,
/// for the table written and for the idle one, and time out on a GTID not reached.
#[tokio::test(flavor = "multi_thread")]
async fn materialize_answers_wait_and_calls_idle_tables_current() {
    let db = unique("it_mat_wait");
    let name = unique("itmatwait");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &[
            "CREATE TABLE busy (id INT PRIMARY KEY, v INT)",
            "CREATE TABLE idle (id INT PRIMARY KEY, v INT)",
            "INSERT INTO busy VALUES (1, 1)",
            "INSERT INTO idle VALUES (1, 1), (2, 2)",
        ],
    )
    .await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cfg_c = lake_config(
        &name,
        &db,
        &root,
        "[capture]\nheartbeat_interval = \"500ms\"",
    );
    let cfg_m = lake_config(&name, &db, &root, &format!("[http]\nlisten = \"{addr}\""));
    let capture = start("capture", &cfg_c);
    // Each table commit waits a second after its batch was consumed: a wait answered from
    // what was consumed rather than committed would return before the row is there.
    let mut m = CaptureProcess::start_command_env(
        "materialize",
        &cfg_m,
        &[(
            binlake_core::failpoint::ENV,
            "materialize.before_table_commit=delay:1000",
        )],
    );
    m.wait_for("materializing changes", Duration::from_secs(60));
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "busy", "id", Duration::from_secs(60)).await;
    wait_equal(&lake, &db, "idle", "id", Duration::from_secs(60)).await;

    // Idle: no change after the snapshot, yet current to the heartbeats that follow.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = status_json(&cfg_m);
    let idle = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == format!("{db}.idle"))
        .unwrap_or_else(|| panic!("no status of idle: {status}"))
        .clone();
    let current = idle["current_to"]
        .as_str()
        .and_then(binlake_core::temporal::parse_rfc3339)
        .unwrap_or_else(|| panic!("idle is current to no time: {status}"));
    assert!(
        current >= t0,
        "the idle table is current only to {} (its last change), not to the heartbeats since: {status}",
        idle["current_to"]
    );
    assert!(
        idle["applied_through"]
            .as_str()
            .is_some_and(|p| p.starts_with("mariadb-gtid:")),
        "{status}"
    );

    let wait = |args: &[&str]| wait_cli(&cfg_m, args);
    let get = |path: String| http_get(addr.clone(), path);
    let row = |id: i64| {
        let lake = &lake;
        let sql = format!("SELECT id FROM \"{db}\".\"busy\" WHERE id = {id}");
        async move { query_rows_or_empty(lake, &sql, &["id"]).await }
    };
    let (busy, idle) = (format!("{db}.busy"), format!("{db}.idle"));
    for i in 2..=5i64 {
        c.query_drop(format!("INSERT INTO busy VALUES ({i}, {i})"))
            .await
            .unwrap();
        let gtid: String = c.query_first("SELECT @@last_gtid").await.unwrap().unwrap();
        if i % 2 == 0 {
            let (code, err) = wait(&["--gtid", &gtid, "--table", &busy, "--timeout", "30s"]);
            assert_eq!(code, Some(0), "{err}");
        } else {
            let path = format!("/wait?gtid={gtid}&tables={busy}&timeout=30s");
            let (code, body) = get(path).await.unwrap();
            assert_eq!(code, 200, "{body}");
        }
        // Read-your-writes: the row is there when the wait returns.
        assert_eq!(row(i).await, vec![vec![i.to_string()]], "after {gtid}");
        // The table nobody wrote holds that transaction too (it has nothing of it), and
        // so does every replica.
        let (code, err) = wait(&["--gtid", &gtid, "--table", &idle, "--timeout", "30s"]);
        assert_eq!(code, Some(0), "{err}");
        let (code, body) = get(format!("/wait?gtid={gtid}&timeout=30s")).await.unwrap();
        assert_eq!(code, 200, "{body}");
    }
    let gtid: String = c.query_first("SELECT @@last_gtid").await.unwrap().unwrap();
    let (domain, rest) = gtid.split_once('-').unwrap();
    let (server, seq) = rest.split_once('-').unwrap();
    let ahead = format!(
        "{domain}-{server}-{}",
        seq.parse::<u64>().unwrap() + 1_000_000_000
    );
    let (code, err) = wait(&["--gtid", &ahead, "--table", &idle, "--timeout", "1s"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("{idle} at mariadb-gtid:")), "{err}");
    let (code, body) = get(format!("/wait?gtid={ahead}&timeout=1s")).await.unwrap();
    assert_eq!(code, 408, "{body}");
    drop(m);
    drop(capture);
}

#[tokio::test(flavor = "multi_thread")]
async fn materialize_follows_renamed_topics_across_restarts() {
    // Topics named by `[kafka] topic_name` and `[kafka.topics]`: capture writes them,
    // materialize finds them, and a restarted worker resumes where each table ends.
    let db = unique("it_topics");
    let name = unique("ittopics");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let mut c = setup_db(
        &db,
        &[
            "CREATE TABLE a (id INT PRIMARY KEY, v INT)",
            "CREATE TABLE b (id INT PRIMARY KEY, v INT)",
        ],
    )
    .await;
    let renamed = format!("{name}-b-renamed");
    let cfg = lake_config(
        &name,
        &db,
        &root,
        &format!("[snapshot]\nmode = \"never\"\n[kafka.topics]\n\"{db}.b\" = \"{renamed}\"\n"),
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "request_timeout = \"20s\"\n",
        "request_timeout = \"20s\"\ntopic_name = \"cdc-{name}-{db}-{table}\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let capture = start("capture", &cfg);
    let m = start("materialize", &cfg);
    c.query_drop("INSERT INTO a VALUES (1, 1), (2, 2), (3, 3)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO b VALUES (1, 10), (2, 20)")
        .await
        .unwrap();
    c.query_drop("UPDATE a SET v = 30 WHERE id = 3")
        .await
        .unwrap();
    c.query_drop("DELETE FROM b WHERE id = 1").await.unwrap();
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "a", "id", Duration::from_secs(60)).await;
    wait_equal(&lake, &db, "b", "id", Duration::from_secs(60)).await;
    drop(m);
    // The topics have the configured names (and the default ones do not exist).
    let (ta, tb, default_a) = (
        format!("cdc-{name}-{db}-a"),
        renamed.clone(),
        format!("{name}.{db}.a"),
    );
    let (got_a, got_b, got_default) = tokio::task::spawn_blocking(move || {
        (
            crate::capture::consume_if_exists(&ta).len(),
            crate::capture::consume_if_exists(&tb).len(),
            crate::capture::consume_if_exists(&default_a).len(),
        )
    })
    .await
    .unwrap();
    // a: 3 inserts + 1 update; b: 2 inserts + 1 delete + its tombstone.
    assert_eq!((got_a, got_b, got_default), (4, 4, 0));
    // More changes while no worker runs, then a new worker: it resumes after what the
    // tables hold (nothing applied twice).
    c.query_drop("INSERT INTO a VALUES (4, 4)").await.unwrap();
    c.query_drop("UPDATE b SET v = 21 WHERE id = 2")
        .await
        .unwrap();
    let m = start("materialize", &cfg);
    wait_equal(&lake, &db, "a", "id", Duration::from_secs(60)).await;
    wait_equal(&lake, &db, "b", "id", Duration::from_secs(60)).await;
    for (table, want) in [("a", 5), ("b", 4)] {
        let n = query(
            &lake,
            &format!("SELECT count(*) AS n, count(DISTINCT __kafka_offset) AS d FROM \"{db}\".\"{table}__changes\""),
        )
        .await;
        assert_eq!(
            render(&n, &["n".into(), "d".into()]),
            vec![vec![want.to_string(), want.to_string()]],
            "{table}"
        );
    }
    drop(m);
    drop(capture);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_without_full_row_metadata_restarts_with_the_schemas_of_its_checkpoint() {
    // As capture's test: table maps without column names, a row written while `run` is
    // stopped, then a change of columns. The restarted run decodes the row with the schema
    // history kept with its checkpoint, not today's schema.
    let alt = crate::alt_mariadb::AltMariaDb::minimal().await;
    let mut c = alt.admin().await;
    let db = unique("it_runhist");
    let name = unique("itrunhist");
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!(
        "CREATE TABLE {db}.t (id INT PRIMARY KEY, a VARCHAR(10))"
    ))
    .await
    .unwrap();
    let cfg = lake_config(&name, &db, &root, "[snapshot]\nmode = \"never\"\n");
    crate::capture::use_port(&cfg, 13318);
    let lake = lake_at(&root);
    // Waits until `SELECT <cols> FROM db.t ORDER BY id` renders as `want`.
    let wait_rows = |cols: &'static [&'static str], want: Vec<Vec<String>>| {
        let (lake, db) = (&lake, &db);
        async move {
            let names: Vec<String> = cols.iter().map(|c| c.to_string()).collect();
            let sql = format!("SELECT {} FROM \"{db}\".\"t\" ORDER BY id", cols.join(", "));
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let ready = lake
                    .tables()
                    .await
                    .unwrap()
                    .contains(&(db.to_string(), "t".to_string()));
                // Until the new column is there, the query fails: not yet.
                let got = match ready {
                    true => match binlake_lake::query::session(lake, None).await {
                        Ok(ctx) => binlake_lake::query::run(&ctx, &sql)
                            .await
                            .map(|b| render(&b, &names))
                            .unwrap_or_default(),
                        Err(_) => Vec::new(),
                    },
                    false => Vec::new(),
                };
                if got == want {
                    return;
                }
                assert!(Instant::now() < deadline, "replica {got:?}, want {want:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let run = start("run", &cfg);
    c.query_drop(format!("INSERT INTO {db}.t VALUES (1, 'one')"))
        .await
        .unwrap();
    wait_rows(&["id", "a"], vec![vec!["1".into(), "one".into()]]).await;
    let (code, log) = tokio::task::spawn_blocking(move || run.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    crate::capture::write_row_then_change_columns(&mut c, &db).await;
    let run = start("run", &cfg);
    // The replica keeps the dropped column (NULL from then on) and adds the new one.
    let want = vec![
        vec!["1".to_string(), "one".into(), "NULL".into()],
        vec!["2".to_string(), "two".into(), "NULL".into()],
        vec!["3".to_string(), "NULL".into(), "3".into()],
    ];
    wait_rows(&["id", "a", "n"], want).await;
    let (code, log) = tokio::task::spawn_blocking(move || run.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("schema history restored"), "{log}");
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// Errors no retry can fix stop `run` with a message saying what to do, instead of
/// retrying forever while replicating nothing: an object store refusing the credentials,
/// a run checkpoint that is not JSON, a replica's Delta log damaged.
#[tokio::test(flavor = "multi_thread")]
async fn permanent_lake_errors_stop_run_with_what_to_do() {
    let endpoint =
        std::env::var("BINLAKE_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:19000".into());
    let bucket = std::env::var("BINLAKE_S3_BUCKET").unwrap_or_else(|_| "binlake-test".into());
    let key = std::env::var("BINLAKE_S3_ACCESS_KEY").unwrap_or_else(|_| "binlake".into());
    if std::net::TcpStream::connect(endpoint.trim_start_matches("http://")).is_err() {
        crate::services::unavailable("the S3 server (tests/services/s3.sh start)", &endpoint);
    }
    let db = unique("it_lake_refused");
    let mut c = setup_db(&db, &["CREATE TABLE t (id INT PRIMARY KEY, v INT)"]).await;
    c.query_drop("INSERT INTO t VALUES (1, 1)").await.unwrap();
    let stops = |cfg: PathBuf, env: Vec<(&'static str, String)>, want: &'static str| async move {
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let p = CaptureProcess::start_command_env("run", &cfg, &env);
            let (code, log) = p.wait_exit(Duration::from_secs(90));
            assert_eq!(code, Some(1), "run did not stop with exit 1:\n{log}");
            assert!(log.contains(want), "no `{want}` in:\n{log}");
        })
        .await
        .unwrap()
    };

    // S3 refuses the secret key: 403 on the first read.
    let storage = format!(
        "[lake.storage]\naws_endpoint = \"{endpoint}\"\naws_access_key_id = \"{key}\"\naws_secret_access_key = \"${{BINLAKE_IT_S3_SECRET}}\"\naws_region = \"us-east-1\"\naws_allow_http = \"true\"\n"
    );
    let root = format!("s3://{bucket}/{}", unique("lake"));
    let cfg = lake_config_at(&unique("itrefused"), &db, &root, &storage);
    stops(
        cfg,
        vec![("BINLAKE_IT_S3_SECRET", "not-the-secret".to_string())],
        "was refused",
    )
    .await;

    // A run checkpoint that is not JSON.
    let name = unique("itcorrupt");
    let root = std::env::temp_dir().join(unique("binlake-corrupt"));
    std::fs::create_dir_all(root.join("_binlake/run")).unwrap();
    std::fs::write(root.join(format!("_binlake/run/{name}.json")), "{ not json").unwrap();
    let cfg = lake_config(&name, &db, &root, "");
    stops(cfg, Vec::new(), "is not a record binlake can read").await;

    // A replica whose last Delta commit is damaged.
    let name = unique("itdamaged");
    let root = std::env::temp_dir().join(unique("binlake-damaged"));
    let cfg = lake_config(&name, &db, &root, "");
    let p = start("run", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    let (code, log) = p.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{log}");
    let log_dir = root.join(&db).join("t").join("replica").join("_delta_log");
    let mut commits: Vec<PathBuf> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    commits.sort();
    std::fs::write(commits.last().unwrap(), "garbage, not a Delta commit").unwrap();
    let writes = {
        let db = db.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let mut c = crate::services::admin_conn().await;
            c.query_drop(format!("INSERT INTO {db}.t VALUES (2, 2)"))
                .await
                .unwrap();
        })
    };
    stops(cfg, Vec::new(), "Delta table").await;
    writes.await.unwrap();
}
