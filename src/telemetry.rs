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
        "binlake_changes_applied_total",
        "counter",
        "Row changes committed to the lake (change log), by table.",
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
    if source_ts_us > 0 {
        SOURCE_TS_US.store(source_ts_us, Ordering::Relaxed);
    }
    if idle {
        CAUGHT_UP_US.store(now_us(), Ordering::Relaxed);
    }
}

/// Capture's `/status`: the source time it has made durable.
pub fn capture_status() -> serde_json::Value {
    let ts = SOURCE_TS_US.load(Ordering::Relaxed);
    let current = ts.max(CAUGHT_UP_US.load(Ordering::Relaxed));
    serde_json::json!({
        "ready": READY.load(Ordering::Relaxed),
        "source_commit_ts_us": ts,
        "current_to_us": current,
        "lag_seconds": (current > 0).then(|| ((now_us() - current).max(0)) as f64 / 1e6),
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
        for ((name, labels), v) in series {
            if *name != last {
                if let Some((ty, h)) = help.get(name) {
                    out.push_str(&format!("# HELP {name} {h}\n# TYPE {name} {ty}\n"));
                }
                last = name;
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
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (code, ctype, body) = match path.as_str() {
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
