//! A Kafka broker restart during capture: capture recovers by itself, and the topic holds
//! every change exactly once. Uses its own broker (ports 19192/19193), started and stopped
//! with `tests/services/kafka.sh`, so other tests keep theirs.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::capture::{CaptureProcess, consume_if_exists_at, write_config_at};
use crate::services::{admin_conn, unique};

const PORT: u16 = 19192;

fn kafka(cmd: &str) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = repo.join(".services/alt-kafka");
    let status = Command::new(repo.join("tests/services/kafka.sh"))
        .arg(cmd)
        .env("BINLAKE_SERVICES_DIR", &dir)
        .env("BINLAKE_KAFKA_PORT", PORT.to_string())
        .env("BINLAKE_KAFKA_CONTROLLER_PORT", (PORT + 1).to_string())
        .env("BINLAKE_KAFKA_HEAP", "512m")
        .status()
        .expect("run tests/services/kafka.sh");
    assert!(status.success(), "kafka.sh {cmd} failed");
}

struct AltBroker;

impl Drop for AltBroker {
    fn drop(&mut self) {
        kafka("stop");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_survives_a_broker_restart_without_loss_or_duplicates() {
    let brokers = format!("127.0.0.1:{PORT}");
    tokio::task::spawn_blocking(|| kafka("start"))
        .await
        .unwrap();
    let _broker = AltBroker;
    let db = unique("it_brk");
    let name = unique("itbrk");
    let mut c = admin_conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!(
        "CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT NOT NULL)"
    ))
    .await
    .unwrap();
    // A short transaction timeout: a batch stuck behind the stopped broker fails after
    // 10 s and is re-read, instead of waiting for the 15-minute default.
    let cfg = write_config_at(
        &name,
        &db,
        &brokers,
        "[snapshot]\nmode = \"never\"\n[capture]\ntransaction_timeout = \"10s\"\n",
    );
    let proc = tokio::task::spawn_blocking(move || {
        let mut p = CaptureProcess::start(&cfg);
        p.wait_for("streaming changes", Duration::from_secs(60));
        p
    })
    .await
    .unwrap();
    let mut made = 0usize;
    for i in 0..300 {
        c.query_drop(format!("INSERT INTO {db}.t VALUES ({i}, {i})"))
            .await
            .unwrap();
        made += 1;
        if i == 100 {
            tokio::task::spawn_blocking(|| kafka("stop")).await.unwrap();
        }
        if i == 200 {
            tokio::task::spawn_blocking(|| kafka("start"))
                .await
                .unwrap();
        }
        if (100..200).contains(&i) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let topic = format!("{name}.{db}.t");
    let deadline = Instant::now() + Duration::from_secs(180);
    let msgs = loop {
        let (b, t) = (brokers.clone(), topic.clone());
        let msgs = tokio::task::spawn_blocking(move || consume_if_exists_at(&b, &t))
            .await
            .unwrap();
        if msgs.iter().filter(|(_, v, _, _)| v.is_some()).count() >= made
            || Instant::now() > deadline
        {
            break msgs;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (code, log) = tokio::task::spawn_blocking(move || proc.terminate(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for (_, v, _, _) in &msgs {
        if let Some(v) = v {
            *seen.entry(v["after"]["id"].as_i64().unwrap()).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), made, "every change must be there");
    assert!(
        seen.values().all(|n| *n == 1),
        "no change twice: {:?}",
        seen.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
