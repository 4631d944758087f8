//! binlake among other Kafka clients: every key lands in the partition Apache Kafka's Java
//! producer would choose (so Java and Kafka Streams consumers co-partition with binlake's
//! topics), and capture works against a listener that requires SASL authentication, with
//! the password from the environment, and says clearly when the password is wrong.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use crate::capture::{CaptureProcess, consume_all, setup_db, wait_for_messages, write_config_at};
use crate::services::{kafka_brokers, unique};

/// The partitions the Java producer (`BuiltInPartitioner.partitionForKey`, what
/// `KafkaProducer` uses for a keyed record) chooses for `keys` among `partitions`.
fn java_partitions(keys: &[String], partitions: usize) -> Vec<i32> {
    let lib = std::env::var("BINLAKE_TEST_KAFKA_LIB").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/binlake/kafka-4.1.1/lib")
    });
    let source =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/JavaPartition.java");
    let mut child = Command::new("java")
        .arg("-cp")
        .arg(format!("{lib}/*"))
        .arg(source)
        .arg(partitions.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run java (installed with the Kafka broker by tests/services/kafka.sh)");
    let mut stdin = child.stdin.take().unwrap();
    for k in keys {
        writeln!(stdin, "{k}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "JavaPartition failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_key_is_in_the_partition_the_java_producer_chooses() {
    let db = unique("it_part");
    let name = unique("itpart");
    let mut c = setup_db(
        &db,
        &[
            "CREATE TABLE n (id BIGINT PRIMARY KEY)",
            "CREATE TABLE s (code VARCHAR(40) PRIMARY KEY)",
        ],
    )
    .await;
    let config = write_config_at(
        &name,
        &db,
        &kafka_brokers(),
        "[snapshot]\nmode = \"never\"\n[capture]\npartitions = 6\n",
    );
    let proc = tokio::task::spawn_blocking(move || {
        let mut p = CaptureProcess::start(&config);
        p.wait_for("streaming changes", Duration::from_secs(60));
        p
    })
    .await
    .unwrap();
    let ids: Vec<String> = (0..300).map(|i| (i * 7919 - 1000).to_string()).collect();
    c.query_drop(format!("INSERT INTO n VALUES ({})", ids.join("),(")))
        .await
        .unwrap();
    let codes: Vec<String> = (0..300).map(|i| format!("'sku-{i}-ü'")).collect();
    c.query_drop(format!("INSERT INTO s VALUES ({})", codes.join("),(")))
        .await
        .unwrap();
    for table in ["n", "s"] {
        let topic = format!("{name}.{db}.{table}");
        let msgs = wait_for_messages(&topic, 300, 30).await;
        assert_eq!(msgs.len(), 300, "{topic}");
        // The key bytes as binlake wrote them: one-field objects, which serde_json writes
        // back byte for byte.
        let keys: Vec<String> = msgs
            .iter()
            .map(|(k, _, _, _)| serde_json::to_string(k.as_ref().unwrap()).unwrap())
            .collect();
        let ours: Vec<i32> = msgs.iter().map(|(_, _, _, p)| *p).collect();
        let theirs = tokio::task::spawn_blocking(move || java_partitions(&keys, 6))
            .await
            .unwrap();
        assert_eq!(
            ours, theirs,
            "{topic}: partitions differ from the Java producer's"
        );
        let used: std::collections::BTreeSet<i32> = ours.iter().copied().collect();
        assert_eq!(
            used.len(),
            6,
            "{topic}: keys should spread over all partitions"
        );
    }
    drop(proc);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

fn sasl_brokers() -> String {
    std::env::var("BINLAKE_TEST_KAFKA_SASL_BROKERS").unwrap_or_else(|_| "127.0.0.1:19094".into())
}

const SASL_CLIENT: &str = r#"[kafka.client]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanism" = "PLAIN"
"sasl.username" = "binlake"
"sasl.password" = "${BINLAKE_IT_KAFKA_PASSWORD}"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn capture_authenticates_with_sasl_and_names_a_wrong_password() {
    let db = unique("it_sasl");
    let name = unique("itsasl");
    let mut c = setup_db(&db, &["CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))"]).await;
    let extra = format!("[snapshot]\nmode = \"never\"\n{SASL_CLIENT}");
    let config = write_config_at(&name, &db, &sasl_brokers(), &extra);

    // The right password, from the environment: changes arrive (read back through the
    // plaintext listener of the same broker).
    let cfg = config.clone();
    let proc = tokio::task::spawn_blocking(move || {
        let mut p = CaptureProcess::start_command_env(
            "capture",
            &cfg,
            &[("BINLAKE_IT_KAFKA_PASSWORD", "binlake-sasl")],
        );
        p.wait_for("streaming changes", Duration::from_secs(60));
        p
    })
    .await
    .unwrap();
    c.query_drop("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        .await
        .unwrap();
    let topic = format!("{name}.{db}.t");
    let msgs = wait_for_messages(&topic, 2, 30).await;
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    let (code, log) = tokio::task::spawn_blocking(move || proc.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !log.contains("binlake-sasl"),
        "the password was logged:\n{log}"
    );
    let rows = tokio::task::spawn_blocking(move || consume_all(&topic))
        .await
        .unwrap();
    let ids: BTreeMap<i64, String> = rows
        .iter()
        .filter_map(|(_, v, _, _)| v.as_ref())
        .map(|v| {
            (
                v["after"]["id"].as_i64().unwrap(),
                v["after"]["v"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(ids, BTreeMap::from([(1, "a".into()), (2, "b".into())]));

    // A wrong password: capture stops with an error that says authentication failed,
    // without the password in it.
    let name = unique("itsaslbad");
    let config = write_config_at(&name, &db, &sasl_brokers(), &extra);
    let (code, log) = tokio::task::spawn_blocking(move || {
        CaptureProcess::start_command_env(
            "capture",
            &config,
            &[("BINLAKE_IT_KAFKA_PASSWORD", "not-the-password")],
        )
        .wait_exit(Duration::from_secs(90))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.to_ascii_lowercase().contains("authentication"),
        "the error should say authentication failed:\n{log}"
    );
    assert!(
        !log.contains("not-the-password"),
        "the password was logged:\n{log}"
    );
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
