//! `binlake capture` as users run it (the real binary), against the real MariaDB and Kafka:
//! every change lands once and in order, kill -9 at random moments loses and duplicates
//! nothing, a second capture with the same name is fenced, oversize rows are reported or
//! dead-lettered, SIGTERM exits 0, and schema changes describe the tables they change.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use binlake_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use binlake_kafka::rdkafka::error::KafkaError;
use binlake_kafka::rdkafka::message::{Headers, Message};
use binlake_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use mysql_async::prelude::Queryable;
use serde_json::Value as Json;

use crate::services::{admin_conn, kafka_brokers, unique};

/// A running `binlake capture` child process whose stderr is collected.
pub struct CaptureProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl CaptureProcess {
    pub fn start(config: &std::path::Path) -> CaptureProcess {
        CaptureProcess::start_command("capture", config)
    }

    /// Starts `binlake <command> --config <config>` (`capture`, `run`, `materialize`).
    pub fn start_command(command: &str, config: &std::path::Path) -> CaptureProcess {
        CaptureProcess::start_command_env(command, config, &[])
    }

    /// Like [`CaptureProcess::start_command`], with extra environment variables.
    pub fn start_command_env(
        command: &str,
        config: &std::path::Path,
        env: &[(&str, &str)],
    ) -> CaptureProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_binlake"))
            .envs(env.iter().copied())
            .args([command, "--config"])
            .arg(config)
            .env(
                "RUST_LOG",
                "binlake=info,binlake_mysql=info,binlake_kafka=info,binlake_lake=info",
            )
            // The capture user's password, through the config's ${ENV} substitution.
            .env("BINLAKE_IT_MYSQL_PASSWORD", "binlake")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start binlake capture");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        CaptureProcess {
            child,
            lines: rx,
            log: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_any(&[needle], timeout);
    }

    /// The log lines read so far.
    pub fn log(&self) -> &[String] {
        &self.log
    }

    /// Waits for a log line containing one of `needles`; returns the one it contains.
    pub fn wait_for_any<'a>(&mut self, needles: &[&'a str], timeout: Duration) -> &'a str {
        let needle = needles.join("` or `");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let hit = needles.iter().find(|n| l.contains(**n));
                    self.log.push(l);
                    if let Some(hit) = hit {
                        return hit;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        self.drain();
                        panic!(
                            "capture exited ({status}) before `{needle}`:\n{}",
                            self.log.join("\n")
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.drain();
        panic!("no `{needle}` within {timeout:?}:\n{}", self.log.join("\n"));
    }

    fn drain(&mut self) {
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(50)) {
            self.log.push(l);
        }
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Kept for the report of a failing test (see `Drop`).
        self.drain();
        let log = std::mem::take(&mut self.log);
        KILLED.with(|k| k.borrow_mut().push(log));
    }

    /// SIGTERM, then the exit status and the log.
    pub fn terminate(mut self, timeout: Duration) -> (Option<i32>, String) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.wait_until_exit(timeout)
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(mut self, timeout: Duration) -> (Option<i32>, String) {
        self.wait_until_exit(timeout)
    }

    fn wait_until_exit(&mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.drain();
                return (status.code(), self.log.join("\n"));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                self.drain();
                return (None, self.log.join("\n"));
            }
            while let Ok(l) = self.lines.try_recv() {
                self.log.push(l);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

thread_local! {
    /// Logs of the processes a test killed, printed when the test fails.
    static KILLED: std::cell::RefCell<Vec<Vec<String>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The last lines of a log, for a failure report.
fn tail(log: &[String]) -> String {
    log[log.len().saturating_sub(60)..].join("\n")
}

impl Drop for CaptureProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what its binlake processes said.
        if std::thread::panicking() {
            self.drain();
            for (i, log) in KILLED
                .with(|k| std::mem::take(&mut *k.borrow_mut()))
                .iter()
                .enumerate()
            {
                eprintln!(
                    "--- log of killed process {i} (last lines) ---\n{}",
                    tail(log)
                );
            }
            eprintln!(
                "--- log of {:?} (last lines) ---\n{}",
                self.child.id(),
                tail(&self.log)
            );
        }
    }
}

pub fn write_config(name: &str, db: &str, extra: &str) -> std::path::PathBuf {
    write_config_at(name, db, &kafka_brokers(), extra)
}

/// A capture config for `db.*` writing to the brokers at `brokers`.
pub fn write_config_at(name: &str, db: &str, brokers: &str, extra: &str) -> std::path::PathBuf {
    let port = std::env::var("BINLAKE_MARIADB_PORT").unwrap_or_else(|_| "13306".into());
    let server_id = crate::services::capture_source().server_id;
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
{extra}
"#
    );
    let dir = std::env::temp_dir().join(unique("binlake-it-capture"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("binlake.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Copies the config `from` to `to` with the line of `key` set to `key = value`.
pub fn rewrite_setting(from: &std::path::Path, to: &std::path::Path, key: &str, value: &str) {
    let prefix = format!("{key} = ");
    let text = std::fs::read_to_string(from).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                format!("{prefix}{value}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(to, text).unwrap();
}

/// Points a test config at the MariaDB listening on `port` instead of the shared one.
pub fn use_port(cfg: &std::path::Path, port: u16) {
    rewrite_setting(cfg, cfg, "port", &port.to_string());
}

/// On `db.t (id INT PRIMARY KEY, a VARCHAR(10))`: inserts (2, 'two'), replaces column `a`
/// by `n INT`, inserts (3, 3): a row whose decoding needs the schema of its time.
pub async fn write_row_then_change_columns(c: &mut mysql_async::Conn, db: &str) {
    for sql in [
        format!("INSERT INTO {db}.t VALUES (2, 'two')"),
        format!("ALTER TABLE {db}.t DROP COLUMN a, ADD COLUMN n INT"),
        format!("INSERT INTO {db}.t VALUES (3, 3)"),
    ] {
        c.query_drop(sql).await.unwrap();
    }
}

/// Key, value, headers and partition of a message.
pub type Msg = (Option<Json>, Option<Json>, HashMap<String, String>, i32);

/// Waits (up to `secs`) until `topic` holds at least `n` committed messages, and returns
/// them all: fewer when the time ran out (callers assert what they need).
pub async fn wait_for_messages(topic: &str, n: usize, secs: u64) -> Vec<Msg> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let t = topic.to_string();
        let msgs = tokio::task::spawn_blocking(move || consume_if_exists(&t))
            .await
            .unwrap();
        if msgs.len() >= n || Instant::now() > deadline {
            return msgs;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Every committed message of `topic`, or nothing when the topic does not exist yet.
pub fn consume_if_exists(topic: &str) -> Vec<Msg> {
    consume_if_exists_at(&kafka_brokers(), topic)
}

/// Like [`consume_if_exists`], from the brokers at `brokers`.
pub fn consume_if_exists_at(brokers: &str, topic: &str) -> Vec<Msg> {
    let probe: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("it-probe"))
        .create()
        .unwrap();
    let md = probe
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let exists = md
        .topics()
        .iter()
        .any(|t| t.name() == topic && !t.partitions().is_empty());
    if exists {
        consume_all_at(brokers, topic)
    } else {
        Vec::new()
    }
}

/// Every committed message of `topic` (all partitions), in offset order per partition.
pub fn consume_all(topic: &str) -> Vec<Msg> {
    consume_all_at(&kafka_brokers(), topic)
}

/// Like [`consume_all`], from the brokers at `brokers`.
pub fn consume_all_at(brokers: &str, topic: &str) -> Vec<Msg> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("it-verify"))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let parts = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    assert!(parts > 0, "topic {topic} does not exist");
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = Vec::new();
    let mut eof = 0;
    rt.block_on(async {
        while eof < parts {
            match tokio::time::timeout(Duration::from_secs(20), consumer.recv()).await {
                Err(_) => panic!("timed out reading {topic}"),
                Ok(Err(KafkaError::PartitionEOF(_))) => eof += 1,
                Ok(Err(e)) => panic!("{e}"),
                Ok(Ok(m)) => {
                    let parse = |b: Option<&[u8]>| {
                        b.map(|b| serde_json::from_slice::<Json>(b).expect("JSON message"))
                    };
                    let mut headers = HashMap::new();
                    if let Some(h) = m.headers() {
                        for hd in h.iter() {
                            headers.insert(
                                hd.key.to_string(),
                                String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                            );
                        }
                    }
                    // binlake's own topics (offsets, signals) have plain-text keys.
                    let key = m.key().map(|k| {
                        serde_json::from_slice::<Json>(k).unwrap_or_else(|_| {
                            Json::String(String::from_utf8_lossy(k).into_owned())
                        })
                    });
                    out.push((key, parse(m.payload()), headers, m.partition()));
                }
            }
        }
    });
    out
}

fn validator(file: &str) -> jsonschema::Validator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(file);
    let schema: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

pub async fn setup_db(db: &str, ddl: &[&str]) -> mysql_async::Conn {
    let mut c = admin_conn().await;
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!("USE {db}")).await.unwrap();
    for d in ddl {
        c.query_drop(*d).await.unwrap();
    }
    c
}

fn start(config: &std::path::Path) -> CaptureProcess {
    let mut p = CaptureProcess::start(config);
    p.wait_for("streaming changes", Duration::from_secs(60));
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn every_change_lands_once_in_order_and_sigterm_exits_0() {
    let db = unique("it_cap");
    let name = unique("itcap");
    let mut c = setup_db(
        &db,
        &[
            "CREATE TABLE orders (id INT PRIMARY KEY, amount DECIMAL(10,2), note VARCHAR(50), at DATETIME(3))",
            "CREATE TABLE items (order_id INT, line INT, sku VARCHAR(20), qty INT UNSIGNED, PRIMARY KEY (order_id, line))",
        ],
    )
    .await;
    // The tables start empty; without a snapshot the topics hold exactly the stream.
    let config = write_config(
        &name,
        &db,
        "[snapshot]\nmode = \"never\"\n[capture]\ntransaction_topic = true\n",
    );
    let proc = tokio::task::spawn_blocking(move || start(&config))
        .await
        .unwrap();

    c.query_drop("INSERT INTO orders VALUES (1, 10.50, 'first', '2024-01-01 10:00:00.123'), (2, 20.00, 'second', NULL)").await.unwrap();
    c.query_drop("BEGIN; INSERT INTO items VALUES (1,1,'A',2),(1,2,'B',1); UPDATE orders SET amount = 11.00 WHERE id = 1; COMMIT").await.unwrap();
    c.query_drop("UPDATE orders SET note = 'changed' WHERE id = 2")
        .await
        .unwrap();
    c.query_drop("DELETE FROM items WHERE order_id = 1 AND line = 2")
        .await
        .unwrap();
    c.query_drop("UPDATE orders SET amount = amount + 1")
        .await
        .unwrap();
    c.query_drop("TRUNCATE TABLE items").await.unwrap();
    c.query_drop("INSERT INTO items VALUES (2,1,'C',5)")
        .await
        .unwrap();

    // Wait until the last change is committed in Kafka.
    let items_topic = format!("{name}.{db}.items");
    let orders_topic = format!("{name}.{db}.orders");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = items_topic.clone();
        let msgs = tokio::task::spawn_blocking(move || consume_if_exists(&t))
            .await
            .unwrap();
        if msgs
            .iter()
            .any(|(_, v, _, _)| v.as_ref().is_some_and(|v| v["after"]["sku"] == "C"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the last change did not arrive: {msgs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, log) = tokio::task::spawn_blocking(move || proc.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "SIGTERM must exit 0:\n{log}");
    assert!(log.contains("capture stopped cleanly"), "{log}");

    let env_v = validator("envelope.schema.json");
    let key_v = validator("key.schema.json");
    let orders = tokio::task::spawn_blocking(move || consume_all(&orders_topic))
        .await
        .unwrap();
    let items = tokio::task::spawn_blocking(move || consume_all(&items_topic))
        .await
        .unwrap();
    for (k, v, h, _) in orders.iter().chain(&items) {
        if let Some(v) = v {
            assert!(env_v.is_valid(v), "{v}");
            assert!(h.contains_key("binlake.position"), "{h:?}");
        }
        if let Some(k) = k {
            assert!(key_v.is_valid(k), "{k}");
        }
    }
    let summary = |msgs: &[Msg]| -> Vec<String> {
        msgs.iter()
            .map(|(k, v, _, _)| match v {
                None => format!(
                    "tombstone {}",
                    k.as_ref().map(|k| k.to_string()).unwrap_or_default()
                ),
                Some(v) => {
                    let row = if v["after"].is_null() {
                        &v["before"]
                    } else {
                        &v["after"]
                    };
                    format!(
                        "{} {}",
                        v["op"].as_str().unwrap_or("?"),
                        if row.is_null() {
                            "-".into()
                        } else {
                            row.to_string()
                        }
                    )
                }
            })
            .collect()
    };
    let o = summary(&orders);
    assert_eq!(o.len(), 6, "{o:#?}");
    assert!(
        o[0].starts_with("c ")
            && o[0].contains(r#""id":1"#)
            && o[0].contains(r#""at":1704103200123"#),
        "{o:#?}"
    );
    assert!(
        o[2].starts_with("u ") && o[2].contains(r#""id":1"#),
        "{o:#?}"
    );
    assert!(o[3].starts_with("u ") && o[3].contains("changed"), "{o:#?}");
    let i = summary(&items);
    assert_eq!(
        i.iter()
            .map(|s| s.split(' ').next().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["c", "c", "d", "tombstone", "t", "c"],
        "{i:#?}"
    );
    // Per key, changes are in source order: positions grow.
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for (k, v, h, _) in &orders {
        if let (Some(k), Some(_)) = (k, v) {
            let pos = h["binlake.position"].clone();
            if let Some(prev) = last.insert(k.to_string(), pos.clone()) {
                assert!(prev < pos || prev.len() < pos.len(), "{prev} then {pos}");
            }
        }
    }
    // Transaction metadata went to <name>.transaction: BEGIN/END pairs with counts.
    let txn_topic = format!("{name}.transaction");
    let txns = tokio::task::spawn_blocking(move || consume_all(&txn_topic))
        .await
        .unwrap();
    let ends: Vec<&Json> = txns
        .iter()
        .filter_map(|(_, v, _, _)| v.as_ref())
        .filter(|v| v["status"] == "END")
        .collect();
    assert!(ends.iter().any(|e| e["event_count"] == 3), "{ends:#?}");
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let db = unique("it_kill");
    let name = unique("itkill");
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)"],
    )
    .await;
    // Every start without a recorded position begins at the same binlog position, so a
    // kill before the first commit loses nothing either.
    let (file, pos): (String, u64) = c
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| (r.get(0).unwrap(), r.get(1).unwrap()))
        .unwrap();
    let config = write_config(
        &name,
        &db,
        "[snapshot]\nmode = \"never\"\n[capture]\nlinger = \"5ms\"\n",
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[kafka]",
        &format!("start = \"file:{file}:{pos}\"\n[kafka]"),
    );
    std::fs::write(&config, text).unwrap();
    let cfg2 = config.clone();
    let mut proc = tokio::task::spawn_blocking(move || start(&cfg2))
        .await
        .unwrap();

    // A workload that runs throughout: inserts, updates and deletes, each its own
    // transaction, some multi-row.
    let workload_db = db.clone();
    let workload = tokio::spawn(async move {
        let mut w = admin_conn().await;
        w.query_drop(format!("USE {workload_db}")).await.unwrap();
        let mut expected = 0usize;
        for i in 0..600i64 {
            match i % 6 {
                0..=2 => {
                    w.query_drop(format!(
                        "INSERT INTO t VALUES ({i}, 0), ({}, 0)",
                        i + 100_000
                    ))
                    .await
                    .unwrap();
                    expected += 2;
                }
                3 | 4 => {
                    w.query_drop(format!("UPDATE t SET v = v + 1 WHERE id = {}", i - 3))
                        .await
                        .unwrap();
                    expected += 1;
                }
                _ => {
                    w.query_drop(format!("DELETE FROM t WHERE id = {}", i + 100_000 - 5))
                        .await
                        .unwrap();
                    expected += 1;
                }
            }
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        expected
    });
    // kill -9 at random moments, restarting each time.
    let mut rng = 0x9e3779b97f4a7c15u64 ^ std::process::id() as u64;
    for cycle in 0..10 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(100 + rng % 400)).await;
        tokio::task::spawn_blocking(move || proc.kill9())
            .await
            .unwrap();
        let cfg = config.clone();
        proc = tokio::task::spawn_blocking(move || start(&cfg))
            .await
            .unwrap();
        let _ = cycle;
    }
    let expected = workload.await.unwrap();
    // Let the last capture catch up, then stop it cleanly.
    let topic = format!("{name}.{db}.t");
    // Generous: under the full parallel suite ten restarts can take a while.
    let deadline = Instant::now() + Duration::from_secs(180);
    let msgs = loop {
        let t = topic.clone();
        let msgs = tokio::task::spawn_blocking(move || consume_if_exists(&t))
            .await
            .unwrap();
        let changes = msgs.iter().filter(|(_, v, _, _)| v.is_some()).count();
        if changes >= expected || Instant::now() > deadline {
            break msgs;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let (code, log) = tokio::task::spawn_blocking(move || proc.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");

    // Exactly once: each source change (by its binlog position) appears once.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut changes = 0;
    for (_, v, h, _) in &msgs {
        if v.is_some() {
            changes += 1;
            *seen.entry(h["binlake.position"].clone()).or_default() += 1;
        }
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicated changes: {dups:?}");
    assert_eq!(changes, expected, "changes in Kafka vs changes made");
    // And the replayed state equals the primary's.
    let mut state: BTreeMap<i64, i64> = BTreeMap::new();
    for (_, v, _, _) in &msgs {
        let Some(v) = v else { continue };
        match v["op"].as_str() {
            Some("c" | "u") => {
                state.insert(
                    v["after"]["id"].as_i64().unwrap(),
                    v["after"]["v"].as_i64().unwrap(),
                );
            }
            Some("d") => {
                state.remove(&v["before"]["id"].as_i64().unwrap());
            }
            _ => {}
        }
    }
    let primary: Vec<(i64, i64)> = c.query("SELECT id, v FROM t ORDER BY id").await.unwrap();
    assert_eq!(state.into_iter().collect::<Vec<_>>(), primary);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

/// A table's topic deleted while capture runs: capture stops, and its last line names the
/// topic and says what to do (not a librdkafka message about its queue).
#[tokio::test(flavor = "multi_thread")]
async fn a_topic_deleted_under_capture_stops_it_naming_the_topic() {
    use binlake_kafka::rdkafka::admin::{AdminClient, AdminOptions};
    use binlake_kafka::rdkafka::client::DefaultClientContext;
    let db = unique("it_topicdel");
    let name = unique("ittopicdel");
    let mut c = setup_db(&db, &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let config = write_config(&name, &db, "[snapshot]\nmode = \"never\"\n");
    let cfg = config.clone();
    let p = tokio::task::spawn_blocking(move || start(&cfg))
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    let topic = format!("{name}.{db}.t");
    assert_eq!(wait_for_messages(&topic, 1, 30).await.len(), 1);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    for r in admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.query_drop("INSERT INTO t VALUES (2)").await.unwrap();
    let (code, log) = tokio::task::spawn_blocking(move || p.wait_exit(Duration::from_secs(120)))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "capture must stop:\n{log}");
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(
        last.contains(&topic) && last.contains("deleted"),
        "last line: {last}\n{log}"
    );
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_capture_with_the_same_name_is_fenced() {
    let db = unique("it_fence");
    let name = unique("itfence");
    let mut c = setup_db(&db, &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    // No snapshot: a snapshot still running when the second capture takes over would
    // (rightly) emit row 1 again as a read, which is not what this test counts.
    let config = write_config(&name, &db, "[snapshot]\nmode = \"never\"\n");
    let cfg = config.clone();
    let first = tokio::task::spawn_blocking(move || start(&cfg))
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cfg = config.clone();
    let second = tokio::task::spawn_blocking(move || {
        // The second capture uses another replica server_id but the same name.
        let sid = crate::services::capture_source().server_id;
        let other = cfg.with_file_name("second.toml");
        rewrite_setting(&cfg, &other, "server_id", &sid.to_string());
        start(&other)
    })
    .await
    .unwrap();
    c.query_drop("INSERT INTO t VALUES (2)").await.unwrap();
    let (code, log) = tokio::task::spawn_blocking(move || first.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_ne!(
        code,
        Some(0),
        "the fenced capture must stop with an error:\n{log}"
    );
    // The last line says why: the user reads that first.
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    assert!(last.contains("was fenced"), "last line: {last}\n{log}");
    c.query_drop("INSERT INTO t VALUES (3)").await.unwrap();
    let topic = format!("{name}.{db}.t");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = topic.clone();
        let msgs = tokio::task::spawn_blocking(move || consume_if_exists(&t))
            .await
            .unwrap();
        let ids: Vec<i64> = msgs
            .iter()
            .filter_map(|(_, v, _, _)| v.as_ref())
            .map(|v| v["after"]["id"].as_i64().unwrap())
            .collect();
        if ids.len() >= 3 {
            assert_eq!(ids, [1, 2, 3], "no duplicates, no gaps");
            break;
        }
        assert!(Instant::now() < deadline, "{ids:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(second);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_rows_are_reported_or_dead_lettered() {
    let db = unique("it_big");
    let name = unique("itbig");
    let mut c = setup_db(&db, &["CREATE TABLE t (id INT PRIMARY KEY, body LONGTEXT)"]).await;
    let config = write_config(&name, &db, "[capture]\nmax_message_bytes = 4096\n");
    let proc = tokio::task::spawn_blocking(move || start(&config))
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (7, REPEAT('x', 10000))")
        .await
        .unwrap();
    let (code, log) = tokio::task::spawn_blocking(move || proc.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!("{db}.t"))
            && log.contains(r#"{"id":7}"#)
            && log.contains("max_message_bytes"),
        "{log}"
    );

    // With a dead-letter topic the row is described there and capture goes on.
    let name = unique("itdlq");
    let dlq = format!("{name}.dlq");
    let config = write_config(
        &name,
        &db,
        // No snapshot: row 7, already in the table, would be dead-lettered by it too.
        &format!(
            "[snapshot]\nmode = \"never\"\n[capture]\nmax_message_bytes = 4096\ndead_letter_topic = \"{dlq}\"\n"
        ),
    );
    let proc = tokio::task::spawn_blocking(move || start(&config))
        .await
        .unwrap();
    c.query_drop("INSERT INTO t VALUES (8, REPEAT('y', 10000)), (9, 'small')")
        .await
        .unwrap();
    let topic = format!("{name}.{db}.t");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = topic.clone();
        let msgs = tokio::task::spawn_blocking(move || consume_if_exists(&t))
            .await
            .unwrap();
        if msgs
            .iter()
            .any(|(_, v, _, _)| v.as_ref().is_some_and(|v| v["after"]["id"] == 9))
        {
            assert!(
                !msgs
                    .iter()
                    .any(|(_, v, _, _)| v.as_ref().is_some_and(|v| v["after"]["id"] == 8))
            );
            break;
        }
        assert!(Instant::now() < deadline, "row 9 never arrived");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let d = tokio::task::spawn_blocking(move || consume_all(&dlq))
        .await
        .unwrap();
    assert_eq!(d.len(), 1, "{d:#?}");
    let rec = d[0].1.as_ref().unwrap();
    assert_eq!(rec["reason"], "oversize");
    assert_eq!(rec["key"], r#"{"id":8}"#);
    drop(proc);
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_changes_describe_each_tables_new_schema() {
    let db = unique("it_ddl");
    let name = unique("itddl");
    let mut c = setup_db(
        &db,
        &["CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(10)) DEFAULT CHARSET=latin1"],
    )
    .await;
    let config = write_config(&name, &db, "[snapshot]\nmode = \"never\"\n");
    let proc = tokio::task::spawn_blocking(move || start(&config))
        .await
        .unwrap();
    for ddl in [
        "ALTER TABLE t ADD COLUMN b DECIMAL(10,2) NULL",
        "CREATE TABLE u (k VARCHAR(20) NOT NULL PRIMARY KEY, e ENUM('x','y') NOT NULL)",
        "RENAME TABLE u TO v",
        "DROP TABLE v",
    ] {
        c.query_drop(ddl).await.unwrap();
    }
    let msgs = wait_for_messages(&format!("{name}.schema-changes"), 4, 30).await;
    assert!(msgs.len() >= 4, "4 schema changes expected: {msgs:#?}");
    drop(proc);
    let changes: Vec<&Json> = msgs.iter().filter_map(|(_, v, _, _)| v.as_ref()).collect();
    let id = |t: &str| format!("\"{db}\".\"{t}\"");
    // ALTER: the whole new schema, in column order, with the table's charset.
    assert_eq!(
        changes[0]["ddl"],
        "ALTER TABLE t ADD COLUMN b DECIMAL(10,2) NULL"
    );
    assert_eq!(changes[0]["databaseName"], db.as_str());
    let alter = &changes[0]["tableChanges"][0];
    assert_eq!(alter["type"], "ALTER", "{alter}");
    assert_eq!(alter["id"], id("t"));
    assert_eq!(alter["table"]["defaultCharsetName"], "latin1");
    assert_eq!(
        alter["table"]["primaryKeyColumnNames"],
        serde_json::json!(["id"])
    );
    let cols = alter["table"]["columns"].as_array().unwrap();
    let summary: Vec<(String, String, bool)> = cols
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["typeName"].as_str().unwrap().to_string(),
                c["optional"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("id".into(), "INT".into(), false),
            ("a".into(), "VARCHAR".into(), true),
            ("b".into(), "DECIMAL".into(), true)
        ]
    );
    assert_eq!(cols[1]["charsetName"], "latin1");
    assert_eq!(
        (cols[2]["length"].as_u64(), cols[2]["scale"].as_u64()),
        (Some(10), Some(2))
    );
    // CREATE, RENAME (the old name dropped, the new one created), DROP.
    let create = &changes[1]["tableChanges"][0];
    assert_eq!(
        (create["type"].as_str(), create["id"].as_str()),
        (Some("CREATE"), Some(id("u").as_str()))
    );
    assert_eq!(
        create["table"]["columns"][1]["enumValues"],
        serde_json::json!(["'x'", "'y'"])
    );
    let mut renamed: Vec<(String, String)> = changes[2]["tableChanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["type"].as_str().unwrap().into(),
                t["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    renamed.sort();
    assert_eq!(
        renamed,
        [("CREATE".into(), id("v")), ("DROP".into(), id("u"))]
    );
    assert_eq!(
        changes[3]["tableChanges"],
        serde_json::json!([{"type": "DROP", "id": id("v"), "table": null}])
    );
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_full_row_metadata_a_restart_decodes_older_rows_with_their_schema() {
    // Table maps without column names: rows are decoded with the schema history. Capture
    // stops, then a row is written and the table changed; the restarted capture must decode
    // that row with the schema of its time (restored from Kafka), not today's.
    let alt = crate::alt_mariadb::AltMariaDb::minimal().await;
    let mut c = alt.admin().await;
    let db = unique("it_hist");
    let name = unique("ithist");
    c.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    c.query_drop(format!(
        "CREATE TABLE {db}.t (id INT PRIMARY KEY, a VARCHAR(10))"
    ))
    .await
    .unwrap();
    let cfg = write_config(&name, &db, "[snapshot]\nmode = \"never\"\n");
    use_port(&cfg, 13318);
    let topic = format!("{name}.{db}.t");
    let wait_rows = |n: usize| {
        let topic = topic.clone();
        async move {
            let msgs = wait_for_messages(&topic, n, 30).await;
            let rows: Vec<Json> = msgs.into_iter().filter_map(|(_, v, _, _)| v).collect();
            assert!(rows.len() >= n, "{} of {n} rows: {rows:#?}", rows.len());
            rows
        }
    };
    let config = cfg.clone();
    let proc = tokio::task::spawn_blocking(move || start(&config))
        .await
        .unwrap();
    c.query_drop(format!("INSERT INTO {db}.t VALUES (1, 'one')"))
        .await
        .unwrap();
    wait_rows(1).await;
    let (code, log) = tokio::task::spawn_blocking(move || proc.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    // While capture is down: a row of the old shape, then a change of column types.
    write_row_then_change_columns(&mut c, &db).await;
    let config = cfg.clone();
    let proc = tokio::task::spawn_blocking(move || start(&config))
        .await
        .unwrap();
    let rows = wait_rows(3).await;
    let after: Vec<&Json> = rows.iter().map(|v| &v["after"]).collect();
    assert_eq!(
        *after[1],
        serde_json::json!({"id": 2, "a": "two"}),
        "{rows:#?}"
    );
    assert_eq!(*after[2], serde_json::json!({"id": 3, "n": 3}), "{rows:#?}");
    let (code, log) = tokio::task::spawn_blocking(move || proc.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("schema history restored"), "{log}");
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_created_outside_the_captured_databases_is_known_after_a_restart() {
    // Capture runs while a table is created in a database it does not capture; it stops;
    // the table is renamed into scope, a row written and the columns changed. The restarted
    // capture decodes that row with the table's schema at the rename, which only the
    // history kept from before the stop knows (table maps carry no column names here).
    let alt = crate::alt_mariadb::AltMariaDb::minimal().await;
    let mut c = alt.admin().await;
    let db = unique("it_hist_in");
    let other = format!("{db}_x");
    let name = unique("ithistout");
    for sql in [
        format!("CREATE DATABASE {db}"),
        format!("CREATE DATABASE {other}"),
        format!("CREATE TABLE {db}.seen (id INT PRIMARY KEY)"),
    ] {
        c.query_drop(sql).await.unwrap();
    }
    let cfg = write_config(&name, &db, "[snapshot]\nmode = \"never\"\n");
    use_port(&cfg, 13318);
    let config = cfg.clone();
    let proc = tokio::task::spawn_blocking(move || start(&config))
        .await
        .unwrap();
    c.query_drop(format!(
        "CREATE TABLE {other}.t (id INT PRIMARY KEY, a VARCHAR(10))"
    ))
    .await
    .unwrap();
    // A captured row after the statement: its commit covers the history kept with it.
    c.query_drop(format!("INSERT INTO {db}.seen VALUES (1)"))
        .await
        .unwrap();
    let seen = wait_for_messages(&format!("{name}.{db}.seen"), 1, 30).await;
    assert_eq!(seen.len(), 1);
    let (code, log) = tokio::task::spawn_blocking(move || proc.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    c.query_drop(format!("RENAME TABLE {other}.t TO {db}.t"))
        .await
        .unwrap();
    write_row_then_change_columns(&mut c, &db).await;
    let config = cfg.clone();
    let proc = tokio::task::spawn_blocking(move || start(&config))
        .await
        .unwrap();
    let msgs = wait_for_messages(&format!("{name}.{db}.t"), 2, 30).await;
    let after: Vec<Json> = msgs
        .into_iter()
        .filter_map(|(_, v, _, _)| Some(v?["after"].clone()))
        .collect();
    assert_eq!(
        after,
        [
            serde_json::json!({"id": 2, "a": "two"}),
            serde_json::json!({"id": 3, "n": 3})
        ]
    );
    let (code, log) = tokio::task::spawn_blocking(move || proc.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    for d in [&db, &other] {
        c.query_drop(format!("DROP DATABASE {d}")).await.unwrap();
    }
}
