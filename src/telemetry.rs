//! Metrics, health and the HTTP endpoint of the long-running commands.
//!
//! `[http] listen = "0.0.0.0:9187"` serves:
//!
//! | path | answer |
//! | --- | --- |
//! | `/metrics` | Prometheus text format (every metric is listed in the README) |
//! | `/healthz` | 200 while the process runs |
//! | `/readyz` | 200 when connected and making progress; 503 while restarting after an error (a dependency unreachable) |
//! | `/status` | JSON: per table position, commit time and lag (`binlake status --json`), or capture's position |
//!
//! The server is a few lines of HTTP/1.1 on tokio (GET only, one request per connection,
//! `Connection: close`): what Prometheus and kubelet probes need, without a web framework
//! in the binary.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `[http]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to serve `/metrics`, `/healthz`, `/readyz` and `/status` on, e.g.
    /// `0.0.0.0:9187`; no endpoint when unset.
    #[serde(default)]
    pub listen: Option<String>,
}

impl HttpConfig {
    /// Checks the address.
    pub fn validate(&self, path: &str, problems: &mut binlake_core::Problems) {
        if let Some(l) = &self.listen
            && l.parse::<std::net::SocketAddr>().is_err()
        {
            problems.push(
                path,
                "listen",
                format!("`{l}` is not an address like 0.0.0.0:9187"),
            );
        }
    }
}

type Labels = Vec<(&'static str, String)>;

struct Registry {
    counters: Mutex<BTreeMap<(&'static str, Labels), f64>>,
    gauges: Mutex<BTreeMap<(&'static str, Labels), f64>>,
    help: Mutex<BTreeMap<&'static str, (&'static str, &'static str)>>,
}

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Registry {
        counters: Mutex::new(BTreeMap::new()),
        gauges: Mutex::new(BTreeMap::new()),
        help: Mutex::new(BTreeMap::new()),
    })
}

/// Every metric binlake exports: name, type, help.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "binlake_changes_read_total",
        "counter",
        "Row changes read from the source, by table and op (c, u, d, r, t).",
    ),
    (
        "binlake_kafka_commit_seconds",
        "histogram",
        "Time to make one batch durable in Kafka: deliver its messages, write the position record, commit the transaction.",
    ),
    (
        "binlake_kafka_bytes_produced_total",
        "counter",
        "Key and value bytes of the change messages capture committed to Kafka.",
    ),
    (
        "binlake_source_binlog_file_number",
        "gauge",
        "Sequence number of the binlog file (the digits after its last dot) of the last transaction made durable.",
    ),
    (
        "binlake_source_binlog_position_bytes",
        "gauge",
        "Offset in that binlog file of the end of the last transaction made durable.",
    ),
    (
        "binlake_kafka_queue_messages",
        "gauge",
        "Messages the Kafka producer held unacknowledged when the last batch began to commit (librdkafka's queue).",
    ),
    (
        "binlake_kafka_transactions_total",
        "counter",
        "Kafka transactions ended, by outcome (committed, aborted).",
    ),
    (
        "binlake_changes_applied_total",
        "counter",
        "Row changes committed to the lake (change log), by table.",
    ),
    (
        "binlake_changes_skipped_total",
        "counter",
        "Row changes not applied to the lake because their table has no primary key and no [source] key_columns, by table.",
    ),
    (
        "binlake_batches_committed_total",
        "counter",
        "Batches made durable, by sink (kafka, lake).",
    ),
    (
        "binlake_lake_commits_total",
        "counter",
        "Delta commits, by table.",
    ),
    (
        "binlake_lake_bytes_written_total",
        "counter",
        "Bytes of Parquet written, by table.",
    ),
    (
        "binlake_lake_rows_rewritten_total",
        "counter",
        "Replica rows rewritten (kept + new) by copy-on-write, by table.",
    ),
    (
        "binlake_kafka_messages_consumed_total",
        "counter",
        "Messages consumed by materialize.",
    ),
    (
        "binlake_snapshot_rows_total",
        "counter",
        "Snapshot rows emitted.",
    ),
    (
        "binlake_snapshot_chunks_total",
        "counter",
        "Snapshot chunks emitted.",
    ),
    (
        "binlake_snapshot_remaining_rows",
        "gauge",
        "Rows the snapshot in progress still has to read, by the server's row-count estimates.",
    ),
    (
        "binlake_snapshot_tables_remaining",
        "gauge",
        "Tables the snapshot in progress still has to read (the current one included).",
    ),
    (
        "binlake_lake_partitions_compacted_total",
        "counter",
        "Change-log date partitions compacted by maintenance, by table.",
    ),
    (
        "binlake_lake_files_vacuumed_total",
        "counter",
        "Files deleted by vacuum, by table.",
    ),
    (
        "binlake_errors_total",
        "counter",
        "Errors that restarted or stopped the pipeline, by kind (transient, definite).",
    ),
    (
        "binlake_source_commit_timestamp_seconds",
        "gauge",
        "Source commit time of the last transaction made durable.",
    ),
    (
        "binlake_source_lag_seconds",
        "gauge",
        "Seconds between now and the source commit time of the last transaction made durable (0 when caught up and idle).",
    ),
    (
        "binlake_ready",
        "gauge",
        "1 when connected and making progress.",
    ),
];

fn describe(name: &'static str) {
    if let Some((_, ty, help)) = METRICS.iter().find(|(n, _, _)| *n == name)
        && let Ok(mut h) = registry().help.lock()
    {
        h.entry(name).or_insert((ty, help));
    }
}

/// Adds `v` to a counter.
pub fn count(name: &'static str, labels: &[(&'static str, &str)], v: f64) {
    describe(name);
    let key = (
        name,
        labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
    );
    if let Ok(mut c) = registry().counters.lock() {
        *c.entry(key).or_insert(0.0) += v;
    }
}

/// Sets a gauge.
pub fn gauge(name: &'static str, labels: &[(&'static str, &str)], v: f64) {
    describe(name);
    let key = (
        name,
        labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
    );
    if let Ok(mut g) = registry().gauges.lock() {
        g.insert(key, v);
    }
}

/// Buckets of `binlake_kafka_commit_seconds`.
const COMMIT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Adds an observation to a histogram (`<name>_bucket{le}`, `_sum`, `_count`).
fn observe(
    name: &'static str,
    [bucket, sum, count_name]: [&'static str; 3],
    buckets: &[f64],
    v: f64,
) {
    describe(name);
    if let Ok(mut c) = registry().counters.lock() {
        for le in buckets
            .iter()
            .map(|b| b.to_string())
            .chain(std::iter::once("+Inf".to_string()))
        {
            let hit = le == "+Inf" || le.parse::<f64>().is_ok_and(|b| v <= b);
            *c.entry((bucket, vec![("le", le)])).or_insert(0.0) += if hit { 1.0 } else { 0.0 };
        }
        *c.entry((sum, Vec::new())).or_insert(0.0) += v;
        *c.entry((count_name, Vec::new())).or_insert(0.0) += 1.0;
    }
}

/// Records a committed Kafka transaction: how long the commit took and how many messages
/// the producer held when it began.
pub fn kafka_committed(took: std::time::Duration, queued: i32, bytes_total: u64) {
    // The writer counts from its start; a restarted writer starts again from zero.
    static REPORTED: Mutex<u64> = Mutex::new(0);
    if let Ok(mut reported) = REPORTED.lock() {
        let delta = bytes_total.checked_sub(*reported).unwrap_or(bytes_total);
        *reported = bytes_total;
        count("binlake_kafka_bytes_produced_total", &[], delta as f64);
    }
    observe(
        "binlake_kafka_commit_seconds",
        [
            "binlake_kafka_commit_seconds_bucket",
            "binlake_kafka_commit_seconds_sum",
            "binlake_kafka_commit_seconds_count",
        ],
        COMMIT_BUCKETS,
        took.as_secs_f64(),
    );
    gauge("binlake_kafka_queue_messages", &[], f64::from(queued));
    count(
        "binlake_kafka_transactions_total",
        &[("outcome", "committed")],
        1.0,
    );
}

/// Records the binlog position (`file:pos`) the last durable batch ends at.
pub fn binlog_position(file_pos: &str) {
    let Some((file, pos)) = file_pos.rsplit_once(':') else {
        return;
    };
    if let Ok(pos) = pos.parse::<u64>() {
        gauge("binlake_source_binlog_position_bytes", &[], pos as f64);
    }
    if let Some(n) = file
        .rsplit_once('.')
        .and_then(|(_, n)| n.parse::<u64>().ok())
    {
        gauge("binlake_source_binlog_file_number", &[], n as f64);
    }
}

/// Records an aborted Kafka transaction.
pub fn kafka_aborted() {
    count(
        "binlake_kafka_transactions_total",
        &[("outcome", "aborted")],
        1.0,
    );
}

/// Per table: changes and the source commit time of the last one.
#[derive(Debug, Clone, Copy, Default)]
struct TableProgress {
    changes: u64,
    last_change_ts_us: i64,
}

/// Tables read since the last durable commit, and what is durable.
#[derive(Default)]
struct Tables {
    read: std::collections::HashMap<String, TableProgress>,
    durable: BTreeMap<String, TableProgress>,
}

fn tables() -> &'static Mutex<Tables> {
    static T: OnceLock<Mutex<Tables>> = OnceLock::new();
    T.get_or_init(Mutex::default)
}

/// Notes `changes` changes of `table` in a source transaction committed at `ts_us`; they
/// count in `/status` once the batch holding them is durable ([`committed`]).
pub fn table_read(table: &str, changes: u64, ts_us: i64) {
    // Once per table and source transaction: the name is copied once per table and batch.
    if let Ok(mut t) = tables().lock() {
        let e = match t.read.get_mut(table) {
            Some(e) => e,
            None => t.read.entry(table.to_string()).or_default(),
        };
        e.changes += changes;
        e.last_change_ts_us = e.last_change_ts_us.max(ts_us);
    }
}

static READY: AtomicBool = AtomicBool::new(false);
static SOURCE_TS_US: AtomicI64 = AtomicI64::new(0);
static CAUGHT_UP_US: AtomicI64 = AtomicI64::new(0);

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Marks the pipeline ready (connected, streaming) or not (restarting after an error).
pub fn set_ready(ready: bool) {
    READY.store(ready, Ordering::Relaxed);
    gauge("binlake_ready", &[], if ready { 1.0 } else { 0.0 });
}

/// Records an error that restarted (`transient`) or stopped the pipeline.
pub fn error(transient: bool) {
    count(
        "binlake_errors_total",
        &[("kind", if transient { "transient" } else { "definite" })],
        1.0,
    );
    set_ready(false);
}

/// Records what one lake apply wrote.
pub fn applied(table: &str, s: &binlake_lake::table::ApplyStats) {
    let l = [("table", table)];
    count("binlake_changes_applied_total", &l, s.changes as f64);
    count("binlake_lake_commits_total", &l, s.commits as f64);
    count(
        "binlake_lake_bytes_written_total",
        &l,
        s.bytes_written as f64,
    );
    count(
        "binlake_lake_rows_rewritten_total",
        &l,
        s.rows_rewritten as f64,
    );
}

/// Records what one maintenance pass did.
pub fn maintained(table: &str, compacted: u64, vacuumed: u64) {
    let l = [("table", table)];
    count(
        "binlake_lake_partitions_compacted_total",
        &l,
        compacted as f64,
    );
    count("binlake_lake_files_vacuumed_total", &l, vacuumed as f64);
}

/// Records a durable batch ending at a source commit time; `idle`: nothing newer exists.
pub fn committed(sink: &str, source_ts_us: i64, idle: bool) {
    count("binlake_batches_committed_total", &[("sink", sink)], 1.0);
    // Everything read so far is in this batch (the pump commits at transaction ends).
    if let Ok(mut t) = tables().lock() {
        let Tables { read, durable } = &mut *t;
        for (name, p) in read.drain() {
            let d = durable.entry(name).or_default();
            d.changes += p.changes;
            d.last_change_ts_us = d.last_change_ts_us.max(p.last_change_ts_us);
        }
    }
    if source_ts_us > 0 {
        SOURCE_TS_US.store(source_ts_us, Ordering::Relaxed);
    }
    if idle {
        CAUGHT_UP_US.store(now_us(), Ordering::Relaxed);
    }
}

/// Capture's `/status`: the source time it has made durable, and per table the changes
/// made durable since the process started and the source commit time of the last one.
/// Every table's topic holds all of its changes up to `current_to_us`.
pub fn capture_status() -> serde_json::Value {
    let ts = SOURCE_TS_US.load(Ordering::Relaxed);
    let current = ts.max(CAUGHT_UP_US.load(Ordering::Relaxed));
    let tables: serde_json::Map<String, serde_json::Value> = tables()
        .lock()
        .map(|t| {
            t.durable
                .iter()
                .map(|(name, p)| {
                    (
                        name.clone(),
                        serde_json::json!({
                            "changes": p.changes,
                            "last_change_ts_us": p.last_change_ts_us,
                        }),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "ready": READY.load(Ordering::Relaxed),
        "source_commit_ts_us": ts,
        "current_to_us": current,
        "lag_seconds": (current > 0).then(|| ((now_us() - current).max(0)) as f64 / 1e6),
        "tables": tables,
    })
}

fn render_metrics() -> String {
    let now = now_us();
    let ts = SOURCE_TS_US.load(Ordering::Relaxed);
    let current = ts.max(CAUGHT_UP_US.load(Ordering::Relaxed));
    if ts > 0 {
        gauge(
            "binlake_source_commit_timestamp_seconds",
            &[],
            ts as f64 / 1e6,
        );
    }
    if current > 0 {
        gauge(
            "binlake_source_lag_seconds",
            &[],
            ((now - current).max(0)) as f64 / 1e6,
        );
    }
    let r = registry();
    let help = r.help.lock().map(|h| h.clone()).unwrap_or_default();
    let mut out = String::new();
    let mut emit = |series: &BTreeMap<(&'static str, Labels), f64>| {
        let mut last = "";
        // Buckets in increasing `le` (the map orders them as text: "10" before "2.5").
        let le = |labels: &Labels| {
            labels
                .iter()
                .find(|(k, _)| *k == "le")
                .map(|(_, v)| v.parse::<f64>().unwrap_or(f64::INFINITY))
        };
        let mut entries: Vec<_> = series.iter().collect();
        entries.sort_by(|((n1, l1), _), ((n2, l2), _)| {
            n1.cmp(n2)
                .then_with(|| {
                    le(l1)
                        .partial_cmp(&le(l2))
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
                .then_with(|| l1.cmp(l2))
        });
        for ((name, labels), v) in entries {
            // A histogram's series share its name's HELP and TYPE.
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|b| help.get(b).is_some_and(|(ty, _)| *ty == "histogram"))
                .unwrap_or(name);
            if base != last {
                if let Some((ty, h)) = help.get(base) {
                    out.push_str(&format!("# HELP {base} {h}\n# TYPE {base} {ty}\n"));
                }
                last = base;
            }
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            if l.is_empty() {
                out.push_str(&format!("{name} {v}\n"));
            } else {
                out.push_str(&format!("{name}{{{}}} {v}\n", l.join(",")));
            }
        }
    };
    if let Ok(c) = r.counters.lock() {
        emit(&c);
    }
    if let Ok(g) = r.gauges.lock() {
        emit(&g);
    }
    out
}

/// What `/status` answers.
pub type StatusFn = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send>>
        + Send
        + Sync,
>;

/// Serves the endpoint on `listen` until the process ends (a bind failure is returned).
pub async fn serve(listen: &str, status: StatusFn) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "http endpoint listening");
    set_ready(READY.load(Ordering::Relaxed));
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let status = status.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                // Read the request head (GET carries no body).
                while n < buf.len() {
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        sock.read(&mut buf[n..]),
                    )
                    .await
                    {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                        Ok(Ok(k)) => {
                            n += k;
                            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]);
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
                let (code, ctype, body) = match path {
                    "/wait" => {
                        let (code, body) = crate::wait::http_wait(query).await;
                        (code, "application/json", format!("{body}\n"))
                    }
                    "/metrics" => (200, "text/plain; version=0.0.4", render_metrics()),
                    "/healthz" => (200, "text/plain", "ok\n".to_string()),
                    "/readyz" if READY.load(Ordering::Relaxed) => {
                        (200, "text/plain", "ready\n".to_string())
                    }
                    "/readyz" => (503, "text/plain", "not ready\n".to_string()),
                    "/status" => (200, "application/json", format!("{}\n", status().await)),
                    _ => (404, "text/plain", "not found\n".to_string()),
                };
                let reason = match code {
                    200 => "OK",
                    400 => "Bad Request",
                    408 => "Request Timeout",
                    503 => "Service Unavailable",
                    _ => "Not Found",
                };
                let resp = format!(
                    "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(())
}
