//! `binlake wait`: read-your-writes for `binlake run` and `binlake materialize`.
//!
//! An application that wrote to the primary takes the GTID of its commit (MariaDB:
//! `SELECT @@last_gtid` after COMMIT; MySQL: `@@gtid_executed`, or the GTID the session
//! tracker reports) and waits until the replicas hold it: `binlake wait --gtid G` returns
//! (exit 0) once the run checkpoint's resume position covers `G`. The checkpoint is written
//! after every table has committed its batch, so when it covers a GTID, every replica and
//! change log holds that transaction. Tables named with `--table` must also be past their
//! snapshot (a table still being read is incomplete, whatever the position).
//!
//! For replicas that `materialize` keeps, each table's coverage stands in for the
//! checkpoint: the capture position its workers confirmed the table holds everything up
//! to (`binlake_lake::coverage`). `wait` returns once every named table's (or, without
//! `--table`, every recorded table's) coverage holds `G` and is past its snapshot.
//!
//! The checkpoint (or the coverage records) is read every 50 ms until covered or the
//! timeout.
//!
//! The HTTP endpoint of `run` and `materialize` answers the same question without reading
//! storage per request: `GET /wait?gtid=G[&tables=db.t,…][&timeout=10s]` is 200 once
//! covered (each checkpoint written, or each coverage change a worker records or reads,
//! wakes the waiters: [`published`], [`coverage_changed`]), 408 at the timeout, 400 for a
//! malformed request; other commands answer 404.

use std::str::FromStr;
use std::time::{Duration, Instant};

use binlake_core::position::{MariaDbGtidPos, MysqlGtidSet, ResumePosition};
use binlake_lake::Lake;
use binlake_lake::coverage::Coverage;
use binlake_lake::status::Checkpoint;
use clap::Args;

use crate::config::Config;

/// Arguments of `binlake wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The TOML config file (the run's).
    #[arg(long, short)]
    pub config: std::path::PathBuf,
    /// The position to wait for: a MariaDB GTID (`0-1-5316`, or one per domain separated
    /// by commas) or a MySQL GTID set (`3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77`).
    #[arg(long, value_parser = parse_target)]
    pub gtid: Target,
    /// Also wait until these tables (`db.table`) are past their snapshot; repeatable.
    #[arg(long = "table")]
    pub tables: Vec<String>,
    /// Give up after this long (exit 1).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// What `--gtid` names.
#[derive(Debug, Clone)]
pub enum Target {
    /// MariaDB GTIDs, one per domain.
    MariaDb(MariaDbGtidPos),
    /// A MySQL GTID set.
    Mysql(MysqlGtidSet),
}

pub(crate) fn parse_target(s: &str) -> Result<Target, String> {
    let s = s.trim();
    if let Ok(p) = MariaDbGtidPos::from_str(s)
        && !p.is_empty()
    {
        return Ok(Target::MariaDb(p));
    }
    match MysqlGtidSet::from_str(s) {
        Ok(set) if !set.is_empty() => Ok(Target::Mysql(set)),
        _ => Err("not a MariaDB GTID (0-1-5316) or a MySQL GTID set (uuid:1-77)".to_string()),
    }
}

/// Whether the checkpoint's resume position holds `target`; `Err` when they cannot be
/// compared (a position of another kind).
pub(crate) fn covers(resume: &str, target: &Target) -> Result<bool, String> {
    let resume = ResumePosition::from_str(resume)
        .map_err(|e| format!("the run checkpoint's position {resume:?} cannot be read: {e}"))?;
    match (target, &resume) {
        (Target::MariaDb(t), ResumePosition::MariaDbGtids(p)) => {
            Ok(t.gtids().all(|g| p.contains(g)))
        }
        (Target::Mysql(t), ResumePosition::MysqlGtids(p)) => Ok(t.is_subset(p)),
        (_, other) => Err(format!(
            "the run follows the source by {other}, which cannot be compared with the GTID asked for; use the GTID kind of the source (MariaDB: SELECT @@last_gtid; MySQL: @@gtid_executed)"
        )),
    }
}

/// What the last run checkpoint covers: its resume position and the tables still being
/// snapshotted; or, for `materialize`, each table's coverage.
#[derive(Debug, Clone, Default)]
pub struct Covered {
    resume: String,
    pending: Vec<String>,
    /// `materialize`: per table, the position it holds everything up to and whether it is
    /// still being snapshotted.
    tables: Option<std::collections::BTreeMap<String, (String, bool)>>,
}

impl Covered {
    fn of(cp: &Checkpoint) -> Covered {
        Covered {
            resume: cp.resume.clone().unwrap_or_default(),
            pending: cp.snapshot_pending(),
            tables: None,
        }
    }

    fn of_coverage(c: &Coverage) -> Covered {
        Covered {
            tables: Some(
                c.tables()
                    .into_iter()
                    .filter_map(|t| {
                        let e = c.table(&t)?;
                        Some((t, (e.resume.clone(), e.snapshot_pending)))
                    })
                    .collect(),
            ),
            ..Covered::default()
        }
    }

    /// Whether this holds `target` and none of `tables` is still being snapshotted.
    fn holds(&self, target: &Target, tables: &[String]) -> Result<bool, String> {
        if let Some(covered) = &self.tables {
            let names: Vec<&String> = match tables.is_empty() {
                true => covered.keys().collect(),
                false => tables.iter().collect(),
            };
            if names.is_empty() {
                return Ok(false);
            }
            for t in names {
                match covered.get(t) {
                    Some((resume, false)) if covers(resume, target)? => {}
                    _ => return Ok(false),
                }
            }
            return Ok(true);
        }
        if self.resume.is_empty() || tables.iter().any(|t| self.pending.contains(t)) {
            return Ok(false);
        }
        covers(&self.resume, target)
    }

    /// Where the replicas are, for a timeout's message.
    fn said(&self, tables: &[String]) -> String {
        if let Some(covered) = &self.tables {
            let at: Vec<String> = covered
                .iter()
                .filter(|(t, _)| tables.is_empty() || tables.contains(t))
                .map(|(t, (resume, pending))| match pending {
                    true => format!("{t} still being snapshotted"),
                    false => format!("{t} at {resume}"),
                })
                .collect();
            let missing: Vec<&str> = tables
                .iter()
                .filter(|t| !covered.contains_key(*t))
                .map(String::as_str)
                .collect();
            let mut said = match at.is_empty() {
                true => "no replica has confirmed a position yet".to_string(),
                false => format!("the replicas: {}", at.join(", ")),
            };
            if !missing.is_empty() {
                said.push_str(&format!(
                    "; not confirmed by a materialize worker yet: {}",
                    missing.join(", ")
                ));
            }
            return said;
        }
        let mut said = format!(
            "the replicas are at {}",
            match self.resume.is_empty() {
                true => "no position yet",
                false => self.resume.as_str(),
            }
        );
        let pending: Vec<&str> = tables
            .iter()
            .filter(|t| self.pending.contains(t))
            .map(String::as_str)
            .collect();
        if !pending.is_empty() {
            said.push_str(&format!(
                "; still being snapshotted: {}",
                pending.join(", ")
            ));
        }
        said
    }
}

/// Outcome of `binlake wait`.
#[derive(Debug)]
pub enum Waited {
    /// Every replica (and named table) holds the position.
    Covered,
    /// The timeout passed first; where the replicas were then.
    TimedOut(String),
}

/// Checks the `--table` names: each `db.table`, captured by the config (a usage error,
/// exit 2, otherwise).
pub fn check_tables(cfg: &Config, args: &WaitArgs) -> Result<(), String> {
    let filter = cfg.source.filter();
    for t in &args.tables {
        let Some((db, table)) = t.split_once('.') else {
            return Err(format!("--table `{t}` is not `database.table`"));
        };
        if !filter.table_included(db, table) {
            return Err(format!(
                "--table {t} is not captured by this config (see [source] include / exclude)"
            ));
        }
    }
    Ok(())
}

/// Waits until the run checkpoint covers `args.gtid` (and the named tables are past their
/// snapshot), or the timeout.
pub async fn wait(cfg: &Config, args: &WaitArgs) -> anyhow::Result<Waited> {
    let lake = Lake::open(&cfg.lake)?;
    let path = crate::run::checkpoint_path(&cfg.name);
    let deadline = Instant::now() + args.timeout;
    loop {
        let now = match lake.get_json::<Checkpoint>(&path).await? {
            Some(cp) => Covered::of(&cp),
            None => {
                let c = binlake_lake::coverage::read_all(&lake, &cfg.name).await?;
                if c.is_empty() {
                    anyhow::bail!(
                        "neither a `binlake run` checkpoint nor `binlake materialize` coverage of `{}` under {}: wait follows the replicas that run or materialize keep with this config's name; start one of them",
                        cfg.name,
                        lake.root()
                    );
                }
                Covered::of_coverage(&c)
            }
        };
        if now
            .holds(&args.gtid, &args.tables)
            .map_err(anyhow::Error::msg)?
        {
            return Ok(Waited::Covered);
        }
        if Instant::now() >= deadline {
            return Ok(Waited::TimedOut(now.said(&args.tables)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The run's checkpoints, for `/wait` (set when `binlake run` starts).
static CHECKPOINTS: std::sync::OnceLock<tokio::sync::watch::Sender<Covered>> =
    std::sync::OnceLock::new();

/// Whether a `/wait` request is waiting in this process.
pub fn has_waiters() -> bool {
    CHECKPOINTS.get().is_some_and(|tx| tx.receiver_count() > 0)
}

/// Tells the waiters what `materialize`'s tables are now covered to.
pub fn coverage_changed(c: &Coverage) {
    if let Some(tx) = CHECKPOINTS.get() {
        tx.send_replace(Covered::of_coverage(c));
    }
}

/// Makes `/wait` answer in this process (`binlake run`, `binlake materialize`).
pub fn serve_waiters() {
    CHECKPOINTS.get_or_init(|| tokio::sync::watch::channel(Covered::default()).0);
}

/// Tells the waiters what the checkpoint just written covers.
pub fn published(cp: &Checkpoint) {
    if let Some(tx) = CHECKPOINTS.get() {
        tx.send_replace(Covered::of(cp));
    }
}

/// Answers `GET /wait?…` (`query`: the part after `?`): (HTTP status, JSON body).
pub async fn http_wait(query: &str) -> (u16, String) {
    let Some(tx) = CHECKPOINTS.get() else {
        return (
            404,
            r#"{"error":"only binlake run and binlake materialize answer /wait"}"#.to_string(),
        );
    };
    let mut gtid = None;
    let mut tables = Vec::new();
    let mut timeout = Duration::from_secs(10);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "gtid" => gtid = Some(v),
            "tables" => tables.extend(v.split(',').filter(|t| !t.is_empty()).map(str::to_string)),
            "timeout" => match humantime::parse_duration(&v) {
                Ok(d) if d <= Duration::from_secs(300) => timeout = d,
                _ => return bad(&format!("timeout {v:?}: a duration up to 5m, like 10s")),
            },
            _ => return bad(&format!("unknown parameter {k:?}")),
        }
    }
    let Some(gtid) = gtid else {
        return bad("gtid is required");
    };
    let target = match parse_target(&gtid) {
        Ok(t) => t,
        Err(e) => return bad(&format!("gtid {gtid:?}: {e}")),
    };
    let mut rx = tx.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = rx.borrow_and_update().clone();
        match now.holds(&target, &tables) {
            Ok(true) => {
                let body = serde_json::json!({"covered": true, "position": now.resume});
                return (200, body.to_string());
            }
            Ok(false) => {}
            Err(e) => return bad(&e),
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            let body = serde_json::json!({"covered": false, "at": now.said(&tables)});
            return (408, body.to_string());
        }
    }
}

fn bad(reason: &str) -> (u16, String) {
    (400, serde_json::json!({ "error": reason }).to_string())
}

/// A URL query value: `%XX` escapes and `+` decoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(percent_decode("0-1-5%2C1-2-3"), "0-1-5,1-2-3");
        assert_eq!(percent_decode("uuid%3a1-5"), "uuid:1-5");
        assert_eq!(percent_decode("a+b%"), "a b%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
