//! Row images that leave columns out (`binlog_row_image = MINIMAL` and `NOBLOB`), end to
//! end: capture goes on, the Kafka messages and the change log mark what is absent, and
//! the replicas of `run` and of `materialize` (through Kafka) equal the primary, the left-out
//! columns taken from the rows they replace.

use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::capture::setup_db;
use crate::lake::{lake_at, lake_config, query_cli, query_rows_or_empty, start, wait_equal};
use crate::services::unique;

#[tokio::test(flavor = "multi_thread")]
async fn minimal_and_noblob_row_images_keep_run_and_materialize_replicas_equal_to_the_primary() {
    let db = unique("it_rowimage");
    let mut c = setup_db(
        &db,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, a INT NOT NULL DEFAULT 7, b VARCHAR(20), \
           c TEXT, d INT, j JSON)",
        ],
    )
    .await;
    c.query_drop(
        "INSERT INTO t SELECT seq, seq, concat('b', seq), repeat('c', seq), seq * 10, \
         json_object('n', seq) FROM seq_1_to_50",
    )
    .await
    .unwrap();
    // A table updated with MINIMAL images while it is snapshotted: a row whose key an
    // update changes while its chunk is read cannot be dropped in favour of the stream
    // (which has only the changed column).
    c.query_drop("CREATE TABLE big (id INT PRIMARY KEY, v INT NOT NULL, w VARCHAR(20) NOT NULL)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO big SELECT seq, 0, concat('w', seq) FROM seq_1_to_3000")
        .await
        .unwrap();
    let small_chunks = "[snapshot]\nchunk_size = 100\n";
    let run_root = std::env::temp_dir().join(unique("binlake-lake"));
    let run_cfg = lake_config(&unique("itrowimgrun"), &db, &run_root, small_chunks);
    let mat_root = std::env::temp_dir().join(unique("binlake-lake"));
    let mat_cfg = lake_config(&unique("itrowimgmat"), &db, &mat_root, small_chunks);
    let mut w = crate::services::admin_conn().await;
    w.query_drop(format!("USE {db}")).await.unwrap();
    w.query_drop("SET SESSION binlog_row_image = 'MINIMAL'")
        .await
        .unwrap();
    let updates = tokio::spawn(async move {
        for i in 0..1500 {
            let id = (i * 7919) % 3000 + 1;
            w.query_drop(format!("UPDATE big SET v = v + 1 WHERE id = {id}"))
                .await
                .unwrap();
        }
    });
    let run = start("run", &run_cfg);
    let capture = start("capture", &mat_cfg);
    let materialize = start("materialize", &mat_cfg);
    let (run_lake, mat_lake) = (lake_at(&run_root), lake_at(&mat_root));
    updates.await.unwrap();
    for lake in [&run_lake, &mat_lake] {
        wait_equal(lake, &db, "big", "id", Duration::from_secs(90)).await;
    }
    wait_equal(&run_lake, &db, "t", "id", Duration::from_secs(60)).await;

    for (image, statements) in [
        (
            "MINIMAL",
            &[
                // One column; two columns; the same key twice in one transaction (the
                // second image leaves out what the first changed).
                "UPDATE t SET b = 'min' WHERE id = 1",
                "UPDATE t SET a = a + 100, d = NULL WHERE id BETWEEN 2 AND 5",
                "BEGIN; UPDATE t SET b = 'first' WHERE id = 6; UPDATE t SET d = -6 WHERE id = 6; COMMIT",
                // A key change: the new key's row is the old key's with what changed.
                "UPDATE t SET id = 1007 WHERE id = 7",
                "BEGIN; UPDATE t SET id = 1008 WHERE id = 8; UPDATE t SET b = 'moved' WHERE id = 1008; COMMIT",
                "DELETE FROM t WHERE id = 9",
                // Every column named: the image is whole.
                "INSERT INTO t (id, a, b, c, d, j) VALUES (100, 1, 'new', 'text', 2, '[1]')",
                // Columns left to their defaults (a literal, and NULL): filled from the
                // schema's defaults.
                "INSERT INTO t (id, b) VALUES (102, 'defaults')",
                "UPDATE t SET j = json_set(j, '$.m', 1) WHERE id = 10",
            ][..],
        ),
        (
            "NOBLOB",
            &[
                // The TEXT and JSON columns are left out of both images when unchanged.
                "UPDATE t SET b = 'noblob' WHERE id BETWEEN 11 AND 20",
                "UPDATE t SET c = 'changed text' WHERE id = 21",
                "UPDATE t SET id = 1022 WHERE id = 22",
                "DELETE FROM t WHERE id = 23",
                "INSERT INTO t (id, a, b, c, d, j) VALUES (101, 1, 'nb', 'x', 3, '{}')",
                "INSERT INTO t (id, a, b, d) VALUES (103, 1, 'nb', 4)",
            ][..],
        ),
    ] {
        c.query_drop(format!("SET SESSION binlog_row_image = '{image}'"))
            .await
            .unwrap();
        for sql in statements {
            c.query_drop(*sql).await.unwrap();
        }
    }
    c.query_drop("SET SESSION binlog_row_image = 'FULL'")
        .await
        .unwrap();
    for lake in [&run_lake, &mat_lake] {
        wait_equal(lake, &db, "t", "id", Duration::from_secs(90)).await;
        // The change log says which columns each partial image left out.
        let marked = query_rows_or_empty(
            lake,
            &format!(
                "SELECT __op, __absent FROM \"{db}\".\"t__changes\" WHERE __binlog_pos IS NOT NULL \
                 AND id = 1 AND __op = 'u'"
            ),
            &["__op", "__absent"],
        )
        .await;
        assert_eq!(
            marked,
            vec![vec!["u".to_string(), "[a, c, d, j]".to_string()]],
            "change log of the MINIMAL update of id 1"
        );
        let whole = query_rows_or_empty(
            lake,
            &format!(
                "SELECT count(*) AS n FROM \"{db}\".\"t__changes\" WHERE __absent IS NOT NULL \
                 AND id IN (100, 101, 102, 103)"
            ),
            &["n"],
        )
        .await;
        assert_eq!(
            whole,
            vec![vec!["0".to_string()]],
            "whole images are not marked"
        );
    }
    // The change log alone cannot rebuild those rows: --as-of says so instead of
    // answering with NULLs where the images left columns out.
    let now = now_rfc3339();
    let (code, out, err) = query_cli(
        &run_cfg,
        &["--as-of", &now, &format!("SELECT count(*) FROM {db}.t")],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains(&format!("--as-of cannot rebuild {db}.t at")) && err.contains("__absent"),
        "{err}"
    );
    drop(materialize);
    drop(capture);
    drop(run);
}

/// Now as RFC 3339 (what `--as-of` takes).
fn now_rfc3339() -> String {
    let us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    binlake_core::temporal::format_utc_timestamp(us, 0).unwrap()
}

/// The snapshot window, made wide (each chunk waits 1.5 s between its read and its
/// emission): MINIMAL updates of rows whose chunk is waiting must not make the snapshot
/// drop those rows, since the stream has only the changed column of them.
#[tokio::test(flavor = "multi_thread")]
async fn minimal_updates_inside_a_snapshot_chunk_window_keep_the_rest_of_the_row() {
    let db = unique("it_rowimage_window");
    let mut c = setup_db(
        &db,
        &["CREATE TABLE w (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(20) NOT NULL)"],
    )
    .await;
    c.query_drop("INSERT INTO w SELECT seq, 0, concat('s', seq) FROM seq_1_to_300")
        .await
        .unwrap();
    let root = std::env::temp_dir().join(unique("binlake-lake"));
    let cfg = lake_config(
        &unique("itrowimgwin"),
        &db,
        &root,
        "[snapshot]\nchunk_size = 100\nreaders = 1\n",
    );
    let mut w = crate::services::admin_conn().await;
    w.query_drop(format!("USE {db}")).await.unwrap();
    w.query_drop("SET SESSION binlog_row_image = 'MINIMAL'")
        .await
        .unwrap();
    let mut run = crate::capture::CaptureProcess::start_command_env(
        "run",
        &cfg,
        &[(
            binlake_core::failpoint::ENV,
            "snapshot.after_chunk_read=delay:1500",
        )],
    );
    run.wait_for("streaming changes", Duration::from_secs(60));
    // Passes over every key while the three chunks wait in turn.
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < deadline {
        w.query_drop("UPDATE w SET v = v + 1").await.unwrap();
    }
    let lake = lake_at(&root);
    wait_equal(&lake, &db, "w", "id", Duration::from_secs(90)).await;
    drop(run);
}
