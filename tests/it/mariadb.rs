//! The test MariaDB is real: binlake's capture user reads its binlog settings and position,
//! and the position moves when the primary commits.

use binlake_core::{Flavor, ResumePosition};
use binlake_mysql::{ServerInfo, connect};
use mysql_async::prelude::Queryable;

use crate::services::{admin_conn, capture_source, unique};

#[tokio::test]
async fn capture_user_reads_binlog_position_and_it_advances() {
    let cfg = capture_source();
    let mut conn = match connect(&cfg).await {
        Ok(c) => c,
        Err(e) => crate::services::unavailable("MariaDB", e),
    };
    let before = ServerInfo::probe(&mut conn, &cfg).await.expect("probe");
    assert_eq!(before.flavor, Flavor::MariaDb, "{before:?}");
    assert!(before.log_bin, "{before:?}");
    assert_eq!(before.binlog_format, "ROW");
    assert_eq!(before.binlog_row_image, "FULL");
    assert_eq!(before.binlog_row_metadata.as_deref(), Some("FULL"));
    assert!(
        before.capture_problems().is_empty(),
        "{:?}",
        before.capture_problems()
    );
    let start = before.binlog_position.clone().expect("binlog position");
    assert!(start.file.contains("bin."), "{start}");

    // A commit on the primary moves both the file position and the GTID position.
    let db = unique("it_binlog_pos");
    let mut admin = admin_conn().await;
    admin
        .query_drop(format!(
            "CREATE DATABASE {db}; CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(10)); INSERT INTO {db}.t VALUES (1, 'x')"
        ))
        .await
        .expect("setup");
    let after = ServerInfo::probe(&mut conn, &cfg).await.expect("probe");
    let end = after.binlog_position.clone().expect("binlog position");
    assert!(
        (end.file.as_str(), end.pos) > (start.file.as_str(), start.pos),
        "position did not advance: {start} → {end}"
    );
    match (&before.gtid_position, &after.gtid_position) {
        (Some(ResumePosition::MariaDbGtids(a)), Some(ResumePosition::MariaDbGtids(b))) => {
            assert!(a < b, "GTID position did not advance: {a} → {b}");
        }
        other => panic!("expected MariaDB GTID positions, got {other:?}"),
    }
    admin
        .query_drop(format!("DROP DATABASE {db}"))
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn capture_user_has_least_privilege() {
    let cfg = capture_source();
    let mut conn = match connect(&cfg).await {
        Ok(c) => c,
        Err(e) => crate::services::unavailable("MariaDB", e),
    };
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.expect("grants");
    let all = grants.join("\n");
    for g in [
        "REPLICATION SLAVE",
        "BINLOG MONITOR",
        "SELECT",
        "SHOW DATABASES",
    ] {
        assert!(all.contains(g), "missing {g} in {all}");
    }
    let err = conn
        .query_drop(format!("CREATE DATABASE {}", unique("it_denied")))
        .await
        .expect_err("the capture user must not be able to write");
    assert!(err.to_string().contains("denied"), "{err}");
}

#[tokio::test]
async fn wrong_password_is_a_clear_definite_error() {
    let mut cfg = capture_source();
    cfg.password = Some(binlake_core::Secret::new("wrong-password"));
    let err = connect(&cfg).await.expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains("binlake@127.0.0.1"), "{msg}");
    assert!(msg.contains("Access denied"), "{msg}");
    assert!(!msg.contains("wrong-password"), "{msg}");
    assert!(!err.is_transient());
}
