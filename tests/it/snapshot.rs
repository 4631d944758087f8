//! Snapshots through `binlake capture`: existing rows arrive as `op = r`, exactly as the
//! binlog path would encode them; a snapshot under concurrent writes ends equal to the
//! primary; kill -9 midway resumes from the recorded chunk without duplicates; a snapshot
//! requested with `binlake snapshot` while streaming goes on ends equal to the primary; a
//! table without a key is read in one consistent pass.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value as Json;

use crate::capture::{CaptureProcess, write_config};
use crate::services::{admin_conn, unique};

async fn setup(db: &str) -> mysql_async::Conn {
    let mut c = admin_conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("SET SESSION sql_mode = '', time_zone = '+00:00'")
        .await
        .unwrap();
    c
}

fn start(cfg: &std::path::Path) -> CaptureProcess {
    let mut p = CaptureProcess::start(cfg);
    p.wait_for("streaming changes", Duration::from_secs(60));
    p
}

/// Waits until `topic` holds at least `n` messages with a value; returns all messages.
async fn wait_messages(topic: &str, n: usize, secs: u64) -> Vec<Json> {
    let values = |msgs: Vec<crate::capture::Msg>| -> Vec<Json> {
        msgs.into_iter().filter_map(|(_, v, _, _)| v).collect()
    };
    // `n` counts values (tombstones have none): wait for at least `n` messages, then
    // until the values reach `n` or the time runs out.
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        let got = values(crate::capture::wait_for_messages(topic, n, left).await);
        if got.len() >= n || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Replays change events into the table state they describe, keyed by `id`.
fn replay(values: &[Json]) -> BTreeMap<i64, Json> {
    let mut state = BTreeMap::new();
    for v in values {
        match v["op"].as_str() {
            Some("c" | "u" | "r") => {
                state.insert(v["after"]["id"].as_i64().unwrap(), v["after"].clone());
            }
            Some("d") => {
                state.remove(&v["before"]["id"].as_i64().unwrap());
            }
            Some("t") => state.clear(),
            _ => {}
        }
    }
    state
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_rows_are_encoded_exactly_like_streamed_rows() {
    let db = unique("it_snap_types");
    let name = unique("itsnap");
    let mut c = setup(&db).await;
    c.query_drop(crate::binlog::TYPE_MATRIX).await.unwrap();
    for row in crate::binlog::ROWS {
        c.query_drop(format!("INSERT INTO type_matrix VALUES {row}"))
            .await
            .unwrap();
    }
    c.query_drop("CREATE TABLE s (code VARCHAR(10) PRIMARY KEY, n INT)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO s VALUES ('b', 2), ('a', 1), ('C', 3), ('é', 4)")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE comp (a INT, b VARCHAR(5), v INT, PRIMARY KEY (a, b))")
        .await
        .unwrap();
    c.query_drop("INSERT INTO comp SELECT seq % 3, CONCAT('k', seq), seq FROM seq_1_to_20")
        .await
        .unwrap();
    // Two readers: tables read side by side, string and composite keys cut for a reader.
    let cfg = write_config(&name, &db, "[snapshot]\nchunk_size = 3\nreaders = 2\n");
    let proc = tokio::task::spawn_blocking(move || start(&cfg))
        .await
        .unwrap();

    let tm = format!("{name}.{db}.type_matrix");
    let snap = wait_messages(&tm, crate::binlog::ROWS.len(), 60).await;
    assert_eq!(snap.len(), crate::binlog::ROWS.len(), "{snap:#?}");
    assert!(snap.iter().all(|v| v["op"] == "r"));
    assert_eq!(snap[0]["source"]["snapshot"], "first_in_data_collection");
    // The same rows written again after the snapshot come through the binlog: the
    // envelopes' rows must be identical but for the id.
    for row in crate::binlog::ROWS {
        let again = row.replacen('(', "(100 + ", 1);
        c.query_drop(format!("INSERT INTO type_matrix VALUES {again}"))
            .await
            .unwrap();
    }
    let all = wait_messages(&tm, 2 * crate::binlog::ROWS.len(), 60).await;
    let by_id: HashMap<i64, &Json> = all
        .iter()
        .map(|v| (v["after"]["id"].as_i64().unwrap(), v))
        .collect();
    for v in &snap {
        let id = v["after"]["id"].as_i64().unwrap();
        let streamed = by_id
            .get(&(100 + id))
            .unwrap_or_else(|| panic!("row {} not streamed", 100 + id));
        assert_eq!(streamed["op"], "c");
        let (mut a, mut b) = (v["after"].clone(), streamed["after"].clone());
        a["id"] = Json::Null;
        b["id"] = Json::Null;
        assert_eq!(a, b, "snapshot and binlog encode row {id} differently");
    }
    // String keys in the server's collation order, composite keys, all rows once.
    let s = wait_messages(&format!("{name}.{db}.s"), 4, 30).await;
    assert_eq!(s.len(), 4);
    let comp = wait_messages(&format!("{name}.{db}.comp"), 20, 30).await;
    assert_eq!(comp.len(), 20);
    let mut keys: Vec<(i64, String)> = comp
        .iter()
        .map(|v| {
            (
                v["after"]["a"].as_i64().unwrap(),
                v["after"]["b"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 20);
    drop(proc);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

pub(crate) async fn churn(db: String, rounds: i64) {
    let mut w = admin_conn().await;
    w.query_drop(format!("USE {db}")).await.unwrap();
    for i in 0..rounds {
        let id = (i * 7919) % 3000 + 1;
        let stmt = match i % 4 {
            0 => format!("UPDATE t SET v = v + 1 WHERE id = {id}"),
            1 => format!("DELETE FROM t WHERE id = {id}"),
            2 => format!(
                "INSERT INTO t (id, v) VALUES ({}, {i}) ON DUPLICATE KEY UPDATE v = {i}",
                3000 + i
            ),
            _ => format!(
                "INSERT INTO t (id, v) VALUES ({id}, -{i}) ON DUPLICATE KEY UPDATE v = -{i}"
            ),
        };
        w.query_drop(stmt).await.unwrap();
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Starts capture, lets some chunks through (one Kafka commit each with small chunks),
/// then kills it with SIGKILL.
async fn start_then_kill_9(cfg: &std::path::Path) {
    let cfg = cfg.to_path_buf();
    let proc = tokio::task::spawn_blocking(move || start(&cfg))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::spawn_blocking(move || proc.kill9())
        .await
        .unwrap();
}

/// The last committed record of capture `name`'s position topic.
async fn last_position_record(name: &str) -> Json {
    let msgs = crate::capture::wait_for_messages(&format!("{name}.offsets"), 1, 10).await;
    msgs.iter().rev().find_map(|m| m.1.clone()).unwrap()
}

/// `binlake snapshot --config cfg --table table`: exit code and output.
pub(crate) fn request_snapshot(cfg: &std::path::Path, table: &str) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_binlake"))
        .arg("snapshot")
        .arg("--config")
        .arg(cfg)
        .args(["--table", table])
        .env("BINLAKE_IT_MYSQL_PASSWORD", "binlake")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

async fn primary_state(c: &mut mysql_async::Conn) -> BTreeMap<i64, i64> {
    let rows: Vec<(i64, i64)> = c.query("SELECT id, v FROM t ORDER BY id").await.unwrap();
    rows.into_iter().collect()
}

fn replica_state(values: &[Json]) -> BTreeMap<i64, i64> {
    replay(values)
        .into_iter()
        .map(|(k, v)| (k, v["v"].as_i64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_under_concurrent_writes_ends_equal_to_the_primary() {
    let db = unique("it_snap_race");
    let name = unique("itrace");
    let mut c = setup(&db).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t SELECT seq, 0 FROM seq_1_to_3000")
        .await
        .unwrap();
    // Small chunks so that writes land inside chunk windows again and again, and four
    // readers whose chunks wait in the window together.
    let cfg = write_config(&name, &db, "[snapshot]\nchunk_size = 25\nreaders = 4\n");
    let writes = tokio::spawn(churn(db.clone(), 3000));
    let proc = tokio::task::spawn_blocking(move || start(&cfg))
        .await
        .unwrap();
    writes.await.unwrap();
    let expected = primary_state(&mut c).await;
    let topic = format!("{name}.{db}.t");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let values = wait_messages(&topic, 1, 30).await;
        let got = replica_state(&values);
        if got == expected {
            let reads: Vec<i64> = values
                .iter()
                .filter(|v| v["op"] == "r")
                .map(|v| v["after"]["id"].as_i64().unwrap())
                .collect();
            let mut uniq = reads.clone();
            uniq.sort();
            uniq.dedup();
            assert_eq!(uniq.len(), reads.len(), "a row was snapshotted twice");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica never matched the primary: {} vs {} rows",
            got.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(proc);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// The real server's answers to a chunk read whose table changed under it are the ones a
/// snapshot reader retries (instead of stopping capture): a TRUNCATE or a copying ALTER
/// after the chunk's consistent snapshot began (1412), a dropped column (1054), a dropped
/// table (1146).
#[tokio::test(flavor = "multi_thread")]
async fn a_table_changed_under_a_chunk_read_is_a_schema_race() {
    let db = unique("it_snap_race");
    let mut c = setup(&db).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (1, 1)").await.unwrap();
    let mut reader = admin_conn().await;
    let select = format!("SELECT id, v FROM {db}.t");
    let fails = |e: mysql_async::Error| binlake_mysql::Error::Query {
        target: "snapshot connection".into(),
        query: select.clone(),
        reason: e.to_string(),
    };
    let ddls = [
        "TRUNCATE TABLE t",
        "ALTER TABLE t ADD COLUMN n INT, ALGORITHM = COPY",
        "ALTER TABLE t DROP COLUMN v",
        "DROP TABLE t",
    ];
    // The server usually refuses the read (1412 after TRUNCATE or a copying ALTER, 1054
    // after DROP COLUMN, 1146 after DROP TABLE), but not always (a copying ALTER has been
    // seen to let it read the old rows): whatever it answers with an error must be a
    // schema race, and it must answer with one at least once.
    let mut refused = 0;
    for ddl in ddls {
        reader
            .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .unwrap();
        c.query_drop(ddl).await.unwrap();
        if let Err(err) = reader.query_drop(&select).await.map_err(fails) {
            assert!(err.is_schema_race(), "after `{ddl}`: {err}");
            refused += 1;
        }
        reader.query_drop("ROLLBACK").await.unwrap();
    }
    assert!(refused > 0, "no read under a changed table was refused");
    // An error of the statement itself is not one.
    let err = reader
        .query_drop(format!("SELECT nope FROM {db}.missing WHERE"))
        .await
        .map_err(fails)
        .unwrap_err();
    assert!(!err.is_schema_race(), "{err}");
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncate_during_the_snapshot_leaves_no_row_behind() {
    let db = unique("it_snap_trunc");
    let name = unique("itsnaptrunc");
    let mut c = setup(&db).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t SELECT seq, 0 FROM seq_1_to_6000")
        .await
        .unwrap();
    // Small chunks and two readers: chunks read before the TRUNCATE wait in the window
    // while it is streamed.
    let cfg = write_config(&name, &db, "[snapshot]\nchunk_size = 25\nreaders = 2\n");
    let proc = tokio::task::spawn_blocking(move || start(&cfg))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    c.query_drop("TRUNCATE TABLE t").await.unwrap();
    c.query_drop("INSERT INTO t VALUES (7, 7), (6001, 1)")
        .await
        .unwrap();
    let expected = primary_state(&mut c).await;
    let topic = format!("{name}.{db}.t");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let values = wait_messages(&topic, 1, 30).await;
        // The topic may not have reached the TRUNCATE yet (chunks read before it are
        // emitted first): wait for it, then for the state.
        let truncated = values.iter().any(|v| v["op"] == "t");
        let got = replica_state(&values);
        if truncated && got == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica never matched the primary: {} rows vs {} (truncate in the topic: {truncated})",
            got.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(proc);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// A DDL while the table is being read: chunks read with the old columns are read again
/// with the new ones, rows emitted before it are read again when it gave them new values,
/// and a column dropped under a reader only delays it.
#[tokio::test(flavor = "multi_thread")]
async fn ddl_during_the_snapshot_leaves_every_row_with_its_new_columns() {
    let db = unique("it_snap_ddl");
    let name = unique("itsnapddl");
    let mut c = setup(&db).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, old INT DEFAULT 1)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t (id, v) SELECT seq, 0 FROM seq_1_to_6000")
        .await
        .unwrap();
    let cfg = write_config(&name, &db, "[snapshot]\nchunk_size = 25\nreaders = 2\n");
    let proc = tokio::task::spawn_blocking(move || start(&cfg))
        .await
        .unwrap();
    let writes = tokio::spawn(churn(db.clone(), 1500));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Rows keep their values: chunks read with the old columns after it are read again.
    c.query_drop("ALTER TABLE t ADD COLUMN n INT")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Readers selecting `old` fail until the stream passes the DDL.
    c.query_drop("ALTER TABLE t DROP COLUMN old").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Rows get a value: the whole table is read again.
    c.query_drop("ALTER TABLE t ADD COLUMN d INT NOT NULL DEFAULT 7")
        .await
        .unwrap();
    writes.await.unwrap();
    let rows: Vec<(i64, i64, i64)> = c.query("SELECT id, v, d FROM t").await.unwrap();
    let expected: BTreeMap<i64, (i64, i64)> =
        rows.into_iter().map(|(id, v, d)| (id, (v, d))).collect();
    let topic = format!("{name}.{db}.t");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let values = wait_messages(&topic, 1, 30).await;
        assert!(
            values
                .iter()
                .any(|v| v["op"] == "r" && v["after"].get("d").is_none()),
            "no snapshot row came before the DDL"
        );
        let state = replay(&values);
        let got: BTreeMap<i64, (i64, i64)> = state
            .iter()
            .map(|(id, row)| {
                (
                    *id,
                    (row["v"].as_i64().unwrap(), row["d"].as_i64().unwrap_or(-1)),
                )
            })
            .collect();
        if got == expected {
            assert!(
                state
                    .values()
                    .all(|row| row.get("old").is_none() && row.get("n").is_some()),
                "a row has the columns of before the DDL"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica never matched the primary: {} rows vs {}",
            got.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut proc = proc;
    proc.wait_for("reading it again from its start", Duration::from_secs(5));
    drop(proc);
    // No snapshot row placed after `ADD COLUMN n` lacks it (read with the old columns).
    let at = |v: &Json| {
        let s = &v["source"];
        (
            s["file"].as_str().unwrap().to_string(),
            s["pos"].as_u64().unwrap(),
        )
    };
    let ddls = wait_messages(&format!("{name}.schema-changes"), 3, 30).await;
    let add_n = ddls
        .iter()
        .find(|v| v["ddl"].as_str().unwrap().contains("ADD COLUMN n"))
        .map(at)
        .expect("the schema change of ADD COLUMN n");
    let values = wait_messages(&topic, 1, 30).await;
    let stale = values
        .iter()
        .filter(|v| v["op"] == "r" && at(v) > add_n && v["after"].get("n").is_none())
        .count();
    assert_eq!(stale, 0, "snapshot rows after ADD COLUMN n without it");
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_midway_resumes_from_the_recorded_chunk() {
    let db = unique("it_snap_kill");
    let name = unique("itsnapkill");
    let mut c = setup(&db).await;
    c.query_drop(
        "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, pad CHAR(200) NOT NULL DEFAULT '')",
    )
    .await
    .unwrap();
    c.query_drop("INSERT INTO t (id, v) SELECT seq, 0 FROM seq_1_to_20000")
        .await
        .unwrap();
    // Many small chunks (one Kafka commit each), so the kill lands midway; three readers.
    let cfg = write_config(&name, &db, "[snapshot]\nchunk_size = 20\nreaders = 3\n");
    let topic = format!("{name}.{db}.t");
    start_then_kill_9(&cfg).await;
    let before_restart = wait_messages(&topic, 0, 5).await.len();
    assert!(
        before_restart < 20_000,
        "the snapshot finished before the kill; use more rows"
    );
    // What the restart reads again: the key ranges recorded as not emitted. Bounded ones
    // are the chunks that were in flight, at most one per reader, each at most a chunk.
    let record = last_position_record(&name).await;
    let ranges = record["snapshot"]["ranges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let key = |k: &Json| -> Option<i64> {
        let k: Json = serde_json::from_str(k.as_str()?).unwrap();
        k.get("payload").unwrap_or(&k)["id"].as_i64()
    };
    let in_flight: Vec<(i64, i64)> = ranges
        .iter()
        .filter_map(|r| Some((key(&r["after"]).unwrap_or(0), key(&r["upto"])?)))
        .collect();
    assert!(
        !ranges.is_empty() && in_flight.len() <= 3,
        "recorded ranges: {ranges:?}"
    );
    for (after, upto) in &in_flight {
        let n: i64 = c
            .query_first(format!(
                "SELECT COUNT(*) FROM t WHERE id > {after} AND id <= {upto}"
            ))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n <= 20,
            "range ({after}, {upto}] holds {n} rows, more than a chunk"
        );
    }
    let emitted: std::collections::BTreeSet<i64> = wait_messages(&topic, 0, 5)
        .await
        .iter()
        .map(|v| v["after"]["id"].as_i64().unwrap())
        .collect();
    // Every row not emitted lies in a recorded range: nothing is lost.
    let open_from = ranges
        .iter()
        .filter(|r| r["upto"].is_null())
        .map(|r| key(&r["after"]).unwrap_or(0))
        .min()
        .unwrap_or(i64::MAX);
    for id in (1..=20_000i64).filter(|id| !emitted.contains(id)) {
        assert!(
            id > open_from || in_flight.iter().any(|&(a, u)| a < id && id <= u),
            "row {id} is neither emitted nor in a recorded range: {ranges:?}"
        );
    }
    c.query_drop("UPDATE t SET v = 1 WHERE id IN (1, 19999)")
        .await
        .unwrap();
    let proc = tokio::task::spawn_blocking(move || start(&cfg))
        .await
        .unwrap();
    let expected = primary_state(&mut c).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let values = wait_messages(&topic, 20_000, 60).await;
        let got: BTreeMap<i64, i64> = replica_state(&values);
        if got == expected {
            let reads = values.iter().filter(|v| v["op"] == "r").count();
            assert_eq!(
                reads, 20_000,
                "every row snapshotted exactly once across the restart"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica never matched: {} of {} rows",
            got.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(proc);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_dropped_while_capture_was_down_mid_snapshot_is_skipped() {
    let db = unique("it_snap_drop");
    let name = unique("itsnapdrop");
    let mut c = setup(&db).await;
    for sql in [
        "CREATE TABLE a_keep (id INT PRIMARY KEY)",
        "INSERT INTO a_keep SELECT seq FROM seq_1_to_10",
        "CREATE TABLE b_drop (id INT PRIMARY KEY, pad CHAR(200) NOT NULL DEFAULT '')",
        "INSERT INTO b_drop (id) SELECT seq FROM seq_1_to_20000",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    let cfg = write_config(&name, &db, "[snapshot]\nchunk_size = 20\n");
    start_then_kill_9(&cfg).await;
    assert!(
        last_position_record(&name).await["snapshot"]["tables"]
            .as_array()
            .is_some_and(|t| t
                .iter()
                .any(|t| t.as_str() == Some(&format!("{db}.b_drop")))),
        "the kill did not land while b_drop was being read"
    );
    c.query_drop("DROP TABLE b_drop").await.unwrap();
    let proc = tokio::task::spawn_blocking(move || start(&cfg))
        .await
        .unwrap();
    c.query_drop("INSERT INTO a_keep VALUES (11)")
        .await
        .unwrap();
    let keep = wait_messages(&format!("{name}.{db}.a_keep"), 11, 30).await;
    assert_eq!(keep.len(), 11);
    // The snapshot finishes without the dropped table (no progress left in the record).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !last_position_record(&name).await["snapshot"].is_null() {
        assert!(Instant::now() < deadline, "the snapshot never finished");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(proc);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn when_needed_resnapshots_after_the_recorded_position_was_purged() {
    // Its own MariaDB: purging binlogs would break the other tests' readers.
    let alt = tokio::task::spawn_blocking(|| {
        crate::alt_mariadb::AltMariaDb::start("whenneeded", 13314, "")
    })
    .await
    .unwrap();
    let db = unique("it_when_needed");
    let name = unique("itwhenneeded");
    let mut c = alt.admin().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (1, 1), (2, 2), (3, 3)")
        .await
        .unwrap();
    let cfg = write_config(&name, &db, "[snapshot]\nmode = \"when_needed\"\n");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("port = ") {
                "port = 13314".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&cfg, text).unwrap();
    let topic = format!("{name}.{db}.t");

    let cfg1 = cfg.clone();
    let proc = tokio::task::spawn_blocking(move || start(&cfg1))
        .await
        .unwrap();
    let first = wait_messages(&topic, 3, 60).await;
    assert_eq!(
        first.iter().filter(|v| v["op"] == "r").count(),
        3,
        "{first:#?}"
    );
    let (code, log) = tokio::task::spawn_blocking(move || proc.terminate(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");

    // While capture is down: changes (a delete among them), then their binlog is purged.
    c.query_drop("INSERT INTO t VALUES (4, 4)").await.unwrap();
    c.query_drop("DELETE FROM t WHERE id = 2").await.unwrap();
    c.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let current: String = c
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| r.get(0).unwrap())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        c.query_drop(format!("PURGE BINARY LOGS TO '{current}'"))
            .await
            .unwrap();
        let oldest: String = c
            .query_first("SHOW BINARY LOGS")
            .await
            .unwrap()
            .map(|r: mysql_async::Row| r.get(0).unwrap())
            .unwrap();
        if oldest == current {
            break;
        }
        assert!(Instant::now() < deadline, "{oldest} not purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The restart finds its position gone and snapshots again instead of stopping.
    let proc = tokio::task::spawn_blocking(move || start(&cfg))
        .await
        .unwrap();
    // 3 rows, then a truncate and the 3 rows the primary has now.
    let all = wait_messages(&topic, 3 + 1 + 3, 60).await;
    c.query_drop("INSERT INTO t VALUES (5, 5)").await.unwrap();
    let all = if all.len() < 8 {
        wait_messages(&topic, 8, 60).await
    } else {
        all
    };
    let (code, log) = tokio::task::spawn_blocking(move || proc.terminate(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("when_needed"), "{log}");
    // Row 2, deleted while its binlog was lost, is gone: the re-snapshot starts with a
    // truncate of what consumers held.
    let state: Vec<i64> = replay(&all).keys().copied().collect();
    assert_eq!(state, [1, 3, 4, 5], "{all:#?}");
    assert_eq!(
        all.iter().filter(|v| v["op"] == "t").count(),
        1,
        "one truncate before the new snapshot: {all:#?}"
    );
    assert!(
        all.iter().filter(|v| v["op"] == "r").count() >= 6,
        "a new snapshot of the three rows"
    );
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn initial_only_snapshots_then_stops_by_itself() {
    let db = unique("it_snap_only");
    let name = unique("itsnaponly");
    let mut c = setup(&db).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t SELECT seq, seq FROM seq_1_to_250")
        .await
        .unwrap();
    let cfg = write_config(
        &name,
        &db,
        "[snapshot]\nmode = \"initial_only\"\nchunk_size = 100\n",
    );
    let cfg2 = cfg.clone();
    let (code, log) = tokio::task::spawn_blocking(move || {
        CaptureProcess::start(&cfg2).wait_exit(Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("snapshot complete"), "{log}");
    let values = wait_messages(&format!("{name}.{db}.t"), 250, 30).await;
    assert_eq!(values.len(), 250);
    assert!(values.iter().all(|v| v["op"] == "r"));
    // A second run finds the snapshot done and stops at once.
    let (code, log) = tokio::task::spawn_blocking(move || {
        CaptureProcess::start(&cfg).wait_exit(Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("nothing (more) to snapshot"), "{log}");
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn on_demand_snapshot_of_one_table_while_streaming_goes_on() {
    let db = unique("it_snap_demand");
    let name = unique("itdemand");
    let mut c = setup(&db).await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE u (id INT PRIMARY KEY, v INT NOT NULL)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t SELECT seq, 0 FROM seq_1_to_3000")
        .await
        .unwrap();
    c.query_drop("INSERT INTO u SELECT seq, 0 FROM seq_1_to_10")
        .await
        .unwrap();
    // No initial snapshot: only the request brings the existing rows.
    let cfg = write_config(
        &name,
        &db,
        "[snapshot]\nmode = \"never\"\nchunk_size = 50\n",
    );
    let config = cfg.clone();
    let proc = tokio::task::spawn_blocking(move || start(&config))
        .await
        .unwrap();
    // A table outside the config is refused.
    let (code, text) = request_snapshot(&cfg, "mysql.user");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("not captured"), "{text}");
    // Writes go on while t is snapshotted in chunks of 50.
    let writes = tokio::spawn(churn(db.clone(), 1500));
    let (code, text) = request_snapshot(&cfg, &format!("{db}.t"));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("requested a snapshot"), "{text}");
    writes.await.unwrap();
    let expected = primary_state(&mut c).await;
    let topic = format!("{name}.{db}.t");
    let deadline = Instant::now() + Duration::from_secs(90);
    let reads = loop {
        let values = wait_messages(&topic, 1, 30).await;
        if replica_state(&values) == expected {
            let reads: Vec<&Json> = values.iter().filter(|v| v["op"] == "r").collect();
            assert!(
                reads
                    .iter()
                    .all(|v| v["source"]["snapshot"] == "incremental"),
                "snapshot rows are marked incremental"
            );
            let mut ids: Vec<i64> = reads
                .iter()
                .map(|v| v["after"]["id"].as_i64().unwrap())
                .collect();
            let n = ids.len();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), n, "a row was snapshotted twice");
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "replay never matched the primary ({} of {} rows)",
            replica_state(&values).len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(reads > 1000, "only {reads} rows were snapshotted");
    // u was not asked for: its topic has no snapshot rows.
    let u = wait_messages(&format!("{name}.{db}.u"), 0, 0).await;
    assert!(u.iter().all(|v| v["op"] != "r"), "{u:?}");
    // A restarted capture does not act on the same request again.
    let (code, log) = tokio::task::spawn_blocking(move || proc.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    // Progress is logged (not on a terminal): rows, estimate of what remains, rate, ETA.
    let line = log
        .lines()
        .find(|l| l.contains("snapshot progress"))
        .unwrap_or_else(|| panic!("no progress line:\n{log}"));
    for field in [
        "rows=",
        "remaining_rows_estimate=",
        "rows_per_s=",
        "chunks=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    let config = cfg.clone();
    let proc = tokio::task::spawn_blocking(move || start(&config))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let values = wait_messages(&topic, 1, 5).await;
    assert_eq!(values.iter().filter(|v| v["op"] == "r").count(), reads);
    drop(proc);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// A table without a key swapped in by RENAME: after the truncate at the RENAME the topic
/// carries exactly the new table's rows (read in one pass), then its changes.
#[tokio::test(flavor = "multi_thread")]
async fn a_keyless_table_swapped_in_by_rename_is_read_again_after_its_truncate() {
    let db = unique("it_snap_nokeyswap");
    let name = unique("itnokeyswap");
    let mut c = setup(&db).await;
    c.query_drop("CREATE TABLE k (a INT, b VARCHAR(10))")
        .await
        .unwrap();
    c.query_drop("INSERT INTO k SELECT seq % 10, 'old' FROM seq_1_to_50")
        .await
        .unwrap();
    let cfg = write_config(&name, &db, "");
    let proc = tokio::task::spawn_blocking(move || start(&cfg))
        .await
        .unwrap();
    let topic = format!("{name}.{db}.k");
    wait_messages(&topic, 50, 30).await;
    for sql in [
        "CREATE TABLE k_new (a INT, b VARCHAR(10))",
        "INSERT INTO k_new SELECT seq % 7, 'new' FROM seq_1_to_30",
        "RENAME TABLE k TO k_old, k_new TO k",
        "INSERT INTO k VALUES (100, 'after')",
    ] {
        c.query_drop(sql).await.unwrap();
    }
    let rows: Vec<(i64, String)> = c.query("SELECT a, b FROM k").await.unwrap();
    let mut expected: BTreeMap<(i64, String), usize> = BTreeMap::new();
    for row in rows {
        *expected.entry(row).or_default() += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let values = wait_messages(&topic, 1, 30).await;
        // What a consumer holds: everything after the last truncate, as a multiset.
        let from = values
            .iter()
            .rposition(|v| v["op"] == "t")
            .map_or(0, |i| i + 1);
        let mut got: BTreeMap<(i64, String), usize> = BTreeMap::new();
        for v in &values[from..] {
            assert!(v["op"] == "r" || v["op"] == "c", "{v}");
            let row = &v["after"];
            *got.entry((
                row["a"].as_i64().unwrap(),
                row["b"].as_str().unwrap().to_string(),
            ))
            .or_default() += 1;
        }
        if got == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the truncate the topic never held the new table's rows: {got:?} vs {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(proc);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_without_a_key_is_snapshotted_in_one_consistent_pass() {
    let db = unique("it_snap_nokey");
    let name = unique("itnokey");
    let mut c = setup(&db).await;
    c.query_drop("CREATE TABLE k (a INT, b VARCHAR(10))")
        .await
        .unwrap();
    // Duplicate rows too: nothing identifies a row but all of it.
    c.query_drop("INSERT INTO k SELECT seq % 100, 'x' FROM seq_1_to_20000")
        .await
        .unwrap();
    let cfg = write_config(&name, &db, "");
    // Inserts go on while the table is read.
    let writer_db = db.clone();
    let writes = tokio::spawn(async move {
        let mut w = admin_conn().await;
        w.query_drop(format!("USE {writer_db}")).await.unwrap();
        for i in 0..400 {
            w.query_drop(format!("INSERT INTO k VALUES ({i}, 'w')"))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let proc = tokio::task::spawn_blocking(move || start(&cfg))
        .await
        .unwrap();
    writes.await.unwrap();
    let rows: Vec<(Option<i64>, Option<String>)> = c.query("SELECT a, b FROM k").await.unwrap();
    let mut expected: BTreeMap<(i64, String), usize> = BTreeMap::new();
    for (a, b) in rows {
        *expected.entry((a.unwrap(), b.unwrap())).or_default() += 1;
    }
    let topic = format!("{name}.{db}.k");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let values = wait_messages(&topic, 20_400, 30).await;
        let mut got: BTreeMap<(i64, String), usize> = BTreeMap::new();
        for v in &values {
            assert!(v["op"] == "r" || v["op"] == "c", "{v}");
            let row = &v["after"];
            *got.entry((
                row["a"].as_i64().unwrap(),
                row["b"].as_str().unwrap().to_string(),
            ))
            .or_default() += 1;
        }
        if got == expected {
            let reads = values.iter().filter(|v| v["op"] == "r").count();
            assert!(reads >= 20_000, "{reads} snapshot rows");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the topic never held the table's rows: {} messages for {} rows",
            values.len(),
            expected.values().sum::<usize>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(proc);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// A position record whose snapshot progress this binlake cannot read (damaged, or written
/// by a version with another format) stops capture naming the record. It is never taken
/// for "no snapshot pending": that would end a snapshot in progress with rows never read,
/// and the topics would look complete.
#[tokio::test(flavor = "multi_thread")]
async fn unreadable_snapshot_progress_stops_capture_instead_of_ending_the_snapshot() {
    use binlake_kafka::rdkafka::ClientConfig;
    use binlake_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
    let db = unique("it_snap_unread");
    let name = unique("itsnapunread");
    let mut c = setup(&db).await;
    c.query_drop(
        "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL, pad CHAR(200) NOT NULL DEFAULT '')",
    )
    .await
    .unwrap();
    c.query_drop("INSERT INTO t (id, v) SELECT seq, 0 FROM seq_1_to_20000")
        .await
        .unwrap();
    let cfg = write_config(&name, &db, "[snapshot]\nchunk_size = 20\n");
    start_then_kill_9(&cfg).await;
    let mut record = last_position_record(&name).await;
    assert!(
        record["snapshot"]["tables"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "the kill did not land mid-snapshot: {record}"
    );
    // A field of another type than this version writes.
    record["snapshot"]["chunks"] = Json::from("many");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", crate::services::kafka_brokers())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&format!("{name}.offsets"))
                .key(&name)
                .payload(&record.to_string()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let (code, log) = tokio::task::spawn_blocking(move || {
        CaptureProcess::start(&cfg).wait_exit(Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1), "capture went on: {log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("{name}.offsets"))
            && last.contains("position record at offset")
            && last.contains("cannot be read"),
        "the last line names the record: {last}"
    );
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
