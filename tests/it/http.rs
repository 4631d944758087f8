//! The HTTP endpoint of a long-running command (`binlake run` here) against a MariaDB of
//! its own: `/metrics` counters move with the workload and the lag falls to zero,
//! `/readyz` flips to 503 while MariaDB is down and back to 200 when it returns, `/status`
//! names the tables, and SIGTERM in the middle of a workload exits 0 and the restart loses
//! and duplicates nothing. `binlake capture`'s endpoint reports its Kafka commits and
//! per-table progress.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::alt_mariadb::AltMariaDb;
use crate::capture::CaptureProcess;
use crate::services::unique;

/// HTTP GET of `path` on `addr`: (status, body); (0, "") when nothing listens.
pub(crate) fn get(addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The value of the first series of `name` whose labels contain `labels`.
fn metric(body: &str, name: &str, labels: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_readyz_follows_mariadb_and_sigterm_loses_nothing() {
    let alt = AltMariaDb::start("http", 13315, "");
    let db = unique("it_http");
    let mut c = alt.admin().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT)"))
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let root = std::env::temp_dir().join(unique("binlake-http"));
    let text = format!(
        r#"
name = "{name}"
[source]
host = "127.0.0.1"
port = 13315
user = "binlake"
password = "${{BINLAKE_IT_MYSQL_PASSWORD}}"
server_id = 4343
include = ["{db}.*"]
[lake]
root = "{root}"
flush_interval = "200ms"
[http]
listen = "{addr}"
"#,
        name = unique("ithttp"),
        root = root.display()
    );
    let dir = std::env::temp_dir().join(unique("binlake-it-http"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("binlake.toml");
    std::fs::write(&cfg, text).unwrap();

    let mut p = CaptureProcess::start_command("run", &cfg);
    p.wait_for("streaming changes", Duration::from_secs(60));
    assert_eq!(get(&addr, "/healthz").0, 200);
    wait_until("ready", Duration::from_secs(10), || {
        get(&addr, "/readyz").0 == 200
    });
    for i in 0..100 {
        c.query_drop(format!("INSERT INTO {db}.t VALUES ({i}, {i})"))
            .await
            .unwrap();
    }
    let table = format!("table=\"{db}.t\"");
    wait_until("the counters to reach 100", Duration::from_secs(30), || {
        let (_, m) = get(&addr, "/metrics");
        metric(
            &m,
            "binlake_changes_read_total",
            &format!("{table},op=\"c\""),
        ) == Some(100.0)
            && metric(&m, "binlake_changes_applied_total", &table) == Some(100.0)
    });
    wait_until("the lag to fall to zero", Duration::from_secs(30), || {
        let (_, m) = get(&addr, "/metrics");
        metric(&m, "binlake_source_lag_seconds", "").is_some_and(|l| l < 3.0)
    });
    let (code, status) = get(&addr, "/status");
    assert_eq!(code, 200);
    assert!(status.contains(&format!("\"{db}.t\"")), "{status}");
    assert!(
        get(&addr, "/metrics")
            .1
            .contains("# TYPE binlake_changes_read_total counter")
    );

    // MariaDB down: not ready; back: ready again.
    alt.stop();
    wait_until("/readyz 503", Duration::from_secs(30), || {
        get(&addr, "/readyz").0 == 503
    });
    alt.start_again();
    wait_until("/readyz 200 again", Duration::from_secs(90), || {
        get(&addr, "/readyz").0 == 200
    });

    // SIGTERM during a workload: exit 0; the restart loses and duplicates nothing.
    let mut c = alt.admin().await;
    let writer = {
        let db = db.clone();
        let mut c2 = alt.admin().await;
        tokio::spawn(async move {
            for i in 100..400 {
                c2.query_drop(format!("INSERT INTO {db}.t VALUES ({i}, {i})"))
                    .await
                    .unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, log) = p.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "SIGTERM exits 0:\n{log}");
    writer.await.unwrap();
    c.query_drop(format!("UPDATE {db}.t SET v = v + 1 WHERE id < 10"))
        .await
        .unwrap();
    let mut p = CaptureProcess::start_command("run", &cfg);
    p.wait_for("streaming changes", Duration::from_secs(60));
    let lake = binlake_lake::Lake::open(&binlake_lake::LakeConfig {
        root: root.display().to_string(),
        ..Default::default()
    })
    .unwrap();
    let sql = format!("SELECT count(*) AS n, sum(v) AS s FROM \"{db}\".\"t\"");
    let changes = format!("SELECT count(*) AS n FROM \"{db}\".\"t__changes\"");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ctx = binlake_lake::query::session(&lake, None).await.unwrap();
        let r = binlake_lake::query::run(&ctx, &sql).await.unwrap();
        let ch = binlake_lake::query::run(&ctx, &changes).await.unwrap();
        let got = (
            arrow::util::pretty::pretty_format_batches(&r)
                .unwrap()
                .to_string(),
            arrow::util::pretty::pretty_format_batches(&ch)
                .unwrap()
                .to_string(),
        );
        // 400 rows, sum(v) = sum(0..400) + 10; 400 inserts + 10 updates in the change log.
        if got.0.contains("| 400 | 79810 |") && got.1.contains("| 410 |") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after SIGTERM and restart: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(p);
}

/// `binlake capture`'s endpoint: Kafka commit latency (a histogram with ordered buckets),
/// the producer's queue, transactions by outcome, and per-table progress in `/status`.
#[tokio::test(flavor = "multi_thread")]
async fn capture_reports_kafka_commits_and_per_table_progress() {
    let db = unique("it_caphttp");
    let name = unique("itcaphttp");
    let mut c = crate::capture::setup_db(
        &db,
        &[
            "CREATE TABLE a (id INT PRIMARY KEY)",
            "CREATE TABLE b (id INT PRIMARY KEY)",
        ],
    )
    .await;
    let port = 19300 + (std::process::id() % 500) as u16;
    let addr = format!("127.0.0.1:{port}");
    let config = crate::capture::write_config(
        &name,
        &db,
        &format!("[snapshot]\nmode = \"never\"\n[http]\nlisten = \"{addr}\"\n"),
    );
    let proc = tokio::task::spawn_blocking(move || {
        let mut p = CaptureProcess::start(&config);
        p.wait_for("streaming changes", Duration::from_secs(60));
        p
    })
    .await
    .unwrap();
    for i in 0..20 {
        c.query_drop(format!("INSERT INTO a VALUES ({i})"))
            .await
            .unwrap();
    }
    c.query_drop("INSERT INTO b VALUES (1), (2), (3)")
        .await
        .unwrap();
    let a = format!("{db}.a");
    let b = format!("{db}.b");
    let status_addr = addr.clone();
    let status = tokio::task::spawn_blocking(move || {
        let mut last = serde_json::Value::Null;
        wait_until(
            "/status to count every change",
            Duration::from_secs(30),
            || {
                let (_, body) = get(&status_addr, "/status");
                last = serde_json::from_str(&body).unwrap_or_default();
                last["tables"][&a]["changes"] == 20 && last["tables"][&b]["changes"] == 3
            },
        );
        last
    })
    .await
    .unwrap();
    assert!(
        status["tables"][format!("{db}.a")]["last_change_ts_us"]
            .as_i64()
            .unwrap()
            > 0,
        "{status}"
    );
    let (code, body) = tokio::task::spawn_blocking(move || get(&addr, "/metrics"))
        .await
        .unwrap();
    assert_eq!(code, 200);
    let commits = metric(
        &body,
        "binlake_kafka_transactions_total",
        "outcome=\"committed\"",
    )
    .unwrap_or(0.0);
    assert!(commits >= 1.0, "{body}");
    let count = metric(&body, "binlake_kafka_commit_seconds_count", "").unwrap_or(0.0);
    assert!(
        count >= commits,
        "every committed transaction is observed:\n{body}"
    );
    assert_eq!(
        metric(&body, "binlake_kafka_commit_seconds_bucket", "le=\"+Inf\""),
        Some(count)
    );
    assert!(
        metric(&body, "binlake_kafka_queue_messages", "").is_some(),
        "{body}"
    );
    // 23 changes of at least `{"id":N}` and an envelope each.
    let bytes = metric(&body, "binlake_kafka_bytes_produced_total", "").unwrap_or(0.0);
    assert!(bytes > 23.0 * 100.0, "{body}");
    let file = metric(&body, "binlake_source_binlog_file_number", "").unwrap_or(0.0);
    assert!(file >= 1.0, "{body}");
    let pos = metric(&body, "binlake_source_binlog_position_bytes", "").unwrap_or(0.0);
    assert!(pos > 4.0, "{body}");
    assert!(
        body.contains("# TYPE binlake_kafka_commit_seconds histogram"),
        "{body}"
    );
    // Buckets in increasing order, cumulative.
    let buckets: Vec<(f64, f64)> = body
        .lines()
        .filter(|l| l.starts_with("binlake_kafka_commit_seconds_bucket"))
        .map(|l| {
            let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            let v: f64 = l.rsplit(' ').next().unwrap().parse().unwrap();
            (le.parse().unwrap_or(f64::INFINITY), v)
        })
        .collect();
    assert!(buckets.len() > 5, "{body}");
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{buckets:?}"
    );
    drop(proc);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
