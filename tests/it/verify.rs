//! `binlake verify` against the real MariaDB and a lake written by `binlake run`: a
//! replica that diverged from the primary behind binlake's back is reported with the exact
//! keys (exit 1) and `--repair` makes it converge (exit 0 after); a right replica is
//! equal (exit 0) while writes go on.
//!
//! The divergence is made on the primary with `sql_log_bin = 0` (the binlog never tells
//! binlake): a row deleted there is a row extra in the replica, an update a different
//! row, an insert a row missing from the replica; and in the replica's own files (a Delta
//! commit no binlake process made): a row deleted, a value changed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use mysql_async::prelude::Queryable;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::capture::setup_db;
use crate::lake::{lake_at, lake_config, start, wait_equal};
use crate::services::{admin_conn, unique};

/// `binlake verify --json` of `cfg` (whose `binlake run` is running) finds every table
/// equal to the primary (the crash tests' proof, next to their own comparisons).
pub(crate) fn assert_verified(cfg: &Path, tables: usize) {
    // Several chunks per table, so chunk bounds and their positions are exercised too.
    let (code, out, err) = verify(cfg, &["--json", "--chunk-size", "250"]);
    let summary = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("equal").is_some() && v.get("table").is_none())
        .unwrap_or_else(|| panic!("no summary line in verify's output:\n{out}\n{err}"));
    assert_eq!(
        (code, &summary["equal"], summary["tables"].as_u64()),
        (Some(0), &serde_json::Value::Bool(true), Some(tables as u64)),
        "binlake verify:\n{out}\n{err}"
    );
}

/// `binlake verify --config cfg args…`: exit code, stdout, stderr.
fn verify(cfg: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_binlake"))
        .arg("verify")
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env("BINLAKE_IT_MYSQL_PASSWORD", "binlake")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Rewrites the replica files of `db.table` under the local lake `root` through `edit`
/// (`None`: the file stays), committing each rewritten file in place of the old one in one
/// Delta commit that no binlake process made: an edit behind binlake's back. The new
/// files keep their bucket's name prefix, so binlake's later writes of the bucket read
/// them. Run only while no `binlake run` writes the table.
async fn edit_replica(
    root: &Path,
    db: &str,
    table: &str,
    edit: impl Fn(&RecordBatch) -> Option<RecordBatch>,
) -> usize {
    use deltalake::kernel::transaction::CommitBuilder;
    use deltalake::kernel::{Action, Add, Remove};
    use deltalake::protocol::{DeltaOperation, SaveMode};
    let lake = lake_at(root);
    let url = lake
        .table_url(db, table, binlake_lake::store::TableKind::Replica)
        .unwrap();
    let t = lake.load(&url).await.unwrap().unwrap();
    let dir = root.join(db).join(table).join("replica");
    let snapshot = t.snapshot().unwrap();
    let files: Vec<(String, i64)> = snapshot
        .log_data()
        .iter()
        .map(|f| (f.path().to_string(), f.size()))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut actions = Vec::new();
    for (path, size) in files {
        let file = std::fs::File::open(dir.join(&path)).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let Some(first) = batches.first() else {
            continue;
        };
        let whole = arrow::compute::concat_batches(&first.schema(), &batches).unwrap();
        let Some(edited) = edit(&whole) else { continue };
        let name = format!("{}-edited-behind-binlake.parquet", &path[..11]);
        let out = std::fs::File::create(dir.join(&name)).unwrap();
        let mut w = ArrowWriter::try_new(out, edited.schema(), None).unwrap();
        w.write(&edited).unwrap();
        w.close().unwrap();
        let new_size = std::fs::metadata(dir.join(&name)).unwrap().len() as i64;
        actions.push(Action::Add(Add {
            path: name,
            partition_values: Default::default(),
            size: new_size,
            modification_time: now,
            data_change: true,
            stats: Some(format!("{{\"numRecords\":{}}}", edited.num_rows())),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        }));
        actions.push(Action::Remove(Remove {
            path,
            data_change: true,
            deletion_timestamp: Some(now),
            extended_file_metadata: Some(true),
            partition_values: Some(Default::default()),
            size: Some(size),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
        }));
    }
    let edited = actions.len() / 2;
    let op = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    CommitBuilder::default()
        .with_actions(actions)
        .build(Some(snapshot), t.log_store(), op)
        .await
        .unwrap();
    edited
}

/// `batch` without the row whose `id` is `drop`, and with `v` of the row whose `id` is
/// `change` set to -1; `None` when it holds neither.
fn drop_and_change(batch: &RecordBatch, drop: i32, change: i32) -> Option<RecordBatch> {
    use arrow::array::{AsArray, BooleanArray, Int32Array};
    use arrow::datatypes::Int32Type;
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int32Type>();
    if !ids.iter().any(|id| id == Some(drop) || id == Some(change)) {
        return None;
    }
    let vi = batch.schema().index_of("v").unwrap();
    let v = batch.column(vi).as_primitive::<Int32Type>();
    let new_v: Int32Array = ids
        .iter()
        .zip(v.iter())
        .map(|(id, v)| if id == Some(change) { Some(-1) } else { v })
        .collect();
    let mut cols = batch.columns().to_vec();
    cols[vi] = Arc::new(new_v);
    let changed = RecordBatch::try_new(batch.schema(), cols).unwrap();
    let keep: BooleanArray = ids.iter().map(|id| Some(id != Some(drop))).collect();
    assert_eq!(keep.len(), changed.num_rows());
    Some(arrow::compute::filter_record_batch(&changed, &keep).unwrap())
}

/// The JSON line of `table` in `verify --json` output.
fn table_json(stdout: &str, table: &str) -> serde_json::Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["table"] == table)
        .unwrap_or_else(|| panic!("no line for {table} in {stdout}"))
}

/// `db.t` (`id`, `v`, `note`) with `rows` rows, kept by a `binlake run` (returned with
/// its config and lake) that has caught up with it.
async fn run_on_table(
    db: &str,
    name: &str,
    rows: u32,
) -> (
    std::path::PathBuf,
    binlake_lake::Lake,
    crate::capture::CaptureProcess,
) {
    let root = std::env::temp_dir().join(unique("binlake-verify"));
    let mut c = setup_db(
        db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(40))"],
    )
    .await;
    c.query_drop(format!(
        "INSERT INTO t SELECT seq, 0, CONCAT('row ', seq) FROM seq_1_to_{rows}"
    ))
    .await
    .unwrap();
    let cfg = lake_config(name, db, &root, "");
    let run = start("run", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, db, "t", "id", Duration::from_secs(60)).await;
    (cfg, lake, run)
}

/// Writes `statement(i)` for i = 0, 1, … on a session of `db` set up by `session` until
/// `stop`; gives back how many it wrote.
fn spawn_writer(
    db: &str,
    session: &'static str,
    stop: Arc<AtomicBool>,
    statement: impl Fn(i64) -> String + Send + 'static,
) -> tokio::task::JoinHandle<i64> {
    let db = db.to_string();
    tokio::spawn(async move {
        let mut w = admin_conn().await;
        w.query_drop(format!("USE {db}")).await.unwrap();
        if !session.is_empty() {
            w.query_drop(session).await.unwrap();
        }
        let mut i: i64 = 0;
        while !stop.load(Ordering::Relaxed) {
            w.query_drop(statement(i)).await.unwrap();
            i += 1;
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        i
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_the_exact_keys_of_a_diverged_replica_and_repair_fixes_them() {
    let db = unique("it_verify");
    let name = unique("itverify");
    let root = std::env::temp_dir().join(unique("binlake-verify"));
    let mut c = setup_db(
        &db,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v INT, note VARCHAR(20), amount DECIMAL(10,2), at DATETIME(6), raw VARBINARY(8))",
            "CREATE TABLE u (id BIGINT UNSIGNED PRIMARY KEY, v DOUBLE)",
        ],
    )
    .await;
    c.query_drop(
        "INSERT INTO t SELECT seq, seq * 3, CONCAT('n', seq), seq / 7, TIMESTAMP'2026-01-02 03:04:05.123456' + INTERVAL seq SECOND, UNHEX(HEX(seq)) FROM seq_1_to_500",
    )
    .await
    .unwrap();
    c.query_drop("INSERT INTO u SELECT seq * 1000000000000, seq / 3 FROM seq_1_to_50")
        .await
        .unwrap();
    let cfg = lake_config(&name, &db, &root, "");
    let run = start("run", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    wait_equal(&lake, &db, "u", "id", Duration::from_secs(60)).await;

    let (code, out, err) = verify(&cfg, &["--chunk-size", "64"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("{db}.t: equal")), "{out}");
    assert!(out.contains(&format!("{db}.u: equal")), "{out}");
    assert!(
        out.contains("rows: primary 500, replica 500; chunks 8"),
        "{out}"
    );

    // Behind binlake's back: the binlog never sees these.
    c.query_drop("SET SESSION sql_log_bin = 0").await.unwrap();
    c.query_drop("DELETE FROM t WHERE id = 17").await.unwrap();
    c.query_drop("UPDATE t SET amount = amount + 0.01 WHERE id = 42")
        .await
        .unwrap();
    c.query_drop("UPDATE t SET at = at + INTERVAL 1 MICROSECOND WHERE id = 300")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (1000, 1, 'new', 1.5, NULL, NULL)")
        .await
        .unwrap();
    c.query_drop("UPDATE u SET v = v + 1e-9 WHERE id = 7000000000000")
        .await
        .unwrap();
    c.query_drop("SET SESSION sql_log_bin = 1").await.unwrap();
    // And in the lake, while the run is stopped: a row deleted, a value changed.
    drop(run);
    let files = edit_replica(&root, &db, "t", |b| drop_and_change(b, 23, 88)).await;
    assert!((1..=2).contains(&files), "{files} files edited");
    let _run = start("run", &cfg);

    let (code, out, err) = verify(&cfg, &["--chunk-size", "64", "--json"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let t = table_json(&out, &format!("{db}.t"));
    assert_eq!(t["equal"], false, "{t}");
    assert_eq!(
        t["missing"]["sample"],
        serde_json::json!(["id=23", "id=1000"]),
        "{t}"
    );
    assert_eq!(t["extra"]["sample"], serde_json::json!(["id=17"]), "{t}");
    assert_eq!(
        t["different"]["sample"],
        serde_json::json!(["id=42", "id=88", "id=300"]),
        "{t}"
    );
    assert_eq!(t["different"]["count"], 3, "{t}");
    assert_eq!(t["rows"], 500, "{t}");
    let u = table_json(&out, &format!("{db}.u"));
    assert_eq!(
        u["different"]["sample"],
        serde_json::json!(["id=7000000000000"]),
        "{u}"
    );
    assert_eq!(u["missing"]["count"], 0, "{u}");
    assert_eq!(u["extra"]["count"], 0, "{u}");

    // Only the named table; the text form names the keys too.
    let (code, out, err) = verify(&cfg, &["--table", &format!("{db}.t")]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(!out.contains(&format!("{db}.u")), "{out}");
    assert!(
        out.contains("missing from the replica (2): id=23; id=1000"),
        "{out}"
    );
    assert!(out.contains("extra in the replica (1): id=17"), "{out}");
    assert!(out.contains("different (3): id=42; id=88; id=300"), "{out}");

    // Repair: the run reads exactly those keys again; verify is then equal.
    let (code, out, err) = verify(&cfg, &["--repair"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("repair: asked the run to read 6 key ranges again"),
        "{out}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, err) = verify(&cfg, &[]);
        if code == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "not repaired: {out}{err}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(10)).await;
    // Only the differing keys were read again: the 500 rows of the initial snapshot, the
    // 5 rows of 23, 42, 88, 300 and 1000, and the delete of 17.
    let ops = crate::lake::query_rows_or_empty(
        &lake,
        &format!(
            "SELECT __op, count(*) AS n FROM \"{db}\".\"t__changes\" GROUP BY __op ORDER BY __op"
        ),
        &["__op", "n"],
    )
    .await;
    assert_eq!(
        ops,
        vec![
            vec!["d".to_string(), "1".to_string()],
            vec!["r".to_string(), "505".to_string()]
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_finds_a_right_replica_equal_while_writes_go_on() {
    let db = unique("it_verify_busy");
    let (cfg, _lake, _run) = run_on_table(&db, &unique("itverifybusy"), 5000).await;

    // Updates, deletes and inserts all over the key space, until verify is done.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&db, "", stop.clone(), |i| {
        let id = (i * 7919) % 6000 + 1;
        match i % 4 {
            0 | 3 => format!("UPDATE t SET v = v + 1, note = 'u{i}' WHERE id = {id}"),
            1 => format!("DELETE FROM t WHERE id = {id}"),
            _ => {
                format!("INSERT INTO t VALUES ({id}, {i}, 'i{i}') ON DUPLICATE KEY UPDATE v = {i}")
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cfg2 = cfg.clone();
    let runs = tokio::task::spawn_blocking(move || {
        (0..3)
            .map(|_| verify(&cfg2, &["--chunk-size", "250", "--json"]))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(
        writes > 200,
        "too few concurrent writes ({writes}) to mean anything"
    );
    for (code, out, err) in runs {
        let t = table_json(&out, &format!("{db}.t"));
        assert_eq!(code, Some(0), "{t}\n{err}");
        assert_eq!(t["chunks"].as_u64().map(|n| n >= 15), Some(true), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_refuses_an_uncaptured_table_with_2_and_a_lake_no_writer_keeps_with_1() {
    let db = unique("it_verify_usage");
    let name = unique("itverifyusage");
    let root = std::env::temp_dir().join(unique("binlake-verify"));
    let _c = setup_db(&db, &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let cfg = lake_config(&name, &db, &root, "");
    let (code, out, err) = verify(&cfg, &["--table", "other_db.t"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("is not captured by this config"), "{err}");
    let (code, out, err) = verify(&cfg, &["--table", "no_dot"]);
    assert_eq!(code, Some(2), "{out}{err}");
    // Neither `binlake run` nor `binlake materialize` has written this lake: nothing to
    // compare with.
    let (code, out, err) = verify(&cfg, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("holds neither a checkpoint of a `binlake run`"),
        "{err}"
    );
    assert!(!root.exists(), "verify created the lake folder");
}

/// Changes with partial row images (MINIMAL) made while verify runs: the change log does
/// not hold their rows, so verify says so (exit 1) rather than report differences that
/// are not there; the same table, quiet, verifies equal.
#[tokio::test(flavor = "multi_thread")]
async fn verify_names_partial_row_images_it_cannot_replay_and_passes_once_quiet() {
    let db = unique("it_verify_minimal");
    let (cfg, lake, _run) = run_on_table(&db, &unique("itverifymin"), 3000).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(
        &db,
        "SET SESSION binlog_row_image = 'MINIMAL'",
        stop.clone(),
        |i| {
            format!(
                "UPDATE t SET v = v + 1 WHERE id = {}",
                (i * 7919) % 3000 + 1
            )
        },
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cfg2 = cfg.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || verify(&cfg2, &["--chunk-size", "100"]))
            .await
            .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        format!("{out}{err}").contains("binlog_row_image = MINIMAL or NOBLOB"),
        "{out}\n{err}"
    );
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;
    let (code, out, err) = verify(&cfg, &["--chunk-size", "100"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
}

/// Replicas that `materialize` keeps (capture → Kafka → materialize): equal under a
/// concurrent write workload; a primary edited behind binlake's back is reported with the
/// exact keys; `--repair` has capture read exactly those keys again and the replica
/// converges.
#[tokio::test(flavor = "multi_thread")]
async fn verify_compares_materialize_replicas_and_names_the_keys_that_differ() {
    let db = unique("it_verify_mat");
    let name = unique("itverifymat");
    let root = std::env::temp_dir().join(unique("binlake-verify"));
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(40))"],
    )
    .await;
    c.query_drop("INSERT INTO t SELECT seq, 0, CONCAT('row ', seq) FROM seq_1_to_4000")
        .await
        .unwrap();
    let cfg = lake_config(
        &name,
        &db,
        &root,
        "[capture]\nheartbeat_interval = \"500ms\"",
    );
    let _capture = start("capture", &cfg);
    let _materialize = start("materialize", &cfg);
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(60)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(&db, "", stop.clone(), |i| {
        let id = (i * 7919) % 4500 + 1;
        match i % 4 {
            0 | 3 => format!("UPDATE t SET v = v + 1, note = 'u{i}' WHERE id = {id}"),
            1 => format!("DELETE FROM t WHERE id = {id}"),
            _ => {
                format!("INSERT INTO t VALUES ({id}, {i}, 'i{i}') ON DUPLICATE KEY UPDATE v = {i}")
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cfg2 = cfg.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || verify(&cfg2, &["--chunk-size", "250", "--json"]))
            .await
            .unwrap();
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 200, "too few concurrent writes ({writes})");
    let t = table_json(&out, &format!("{db}.t"));
    assert_eq!(code, Some(0), "{t}\n{err}");
    assert_eq!(t["chunks"].as_u64().map(|n| n >= 10), Some(true), "{t}");

    // The primary edited behind binlake's back (not in the binlog).
    let present: Vec<i64> = c
        .query("SELECT id FROM t ORDER BY id LIMIT 3")
        .await
        .unwrap();
    let (changed, gone) = (present[0], present[1]);
    c.query_drop("SET SESSION sql_log_bin = 0").await.unwrap();
    c.query_drop(format!("UPDATE t SET v = v + 1000 WHERE id = {changed}"))
        .await
        .unwrap();
    c.query_drop(format!("DELETE FROM t WHERE id = {gone}"))
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (9000001, 1, 'new')")
        .await
        .unwrap();
    c.query_drop("SET SESSION sql_log_bin = 1").await.unwrap();
    let cfg2 = cfg.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || verify(&cfg2, &["--json"]))
        .await
        .unwrap();
    let t = table_json(&out, &format!("{db}.t"));
    assert_eq!(code, Some(1), "{t}\n{err}");
    let keys = |what: &str| -> Vec<String> {
        t[what]["sample"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.to_string())
            .collect()
    };
    assert_eq!(
        (keys("different"), keys("extra"), keys("missing")),
        (
            vec![format!("\"id={changed}\"")],
            vec![format!("\"id={gone}\"")],
            vec!["\"id=9000001\"".to_string()]
        ),
        "{t}"
    );
    // --repair asks capture (through `<name>.signals`) to read exactly those keys again;
    // materialize applies them, and verify finds the replica equal.
    let cfg2 = cfg.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || verify(&cfg2, &["--repair"]))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("repair: asked capture to read 3 key ranges again"),
        "{out}"
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let cfg2 = cfg.clone();
        let (code, out, err) = tokio::task::spawn_blocking(move || verify(&cfg2, &[]))
            .await
            .unwrap();
        if code == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "not repaired: {out}{err}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_equal(&lake, &db, "t", "id", Duration::from_secs(10)).await;
}
