//! `binlake wait`: read-your-writes for `binlake run`.
//!
//! An application that wrote to the primary takes the GTID of its commit (MariaDB:
//! `SELECT @@last_gtid` after COMMIT; MySQL: `@@gtid_executed`, or the GTID the session
//! tracker reports) and waits until the replicas hold it: `binlake wait --gtid G` returns
//! (exit 0) once the run checkpoint's resume position covers `G`. The checkpoint is written
//! after every table has committed its batch, so when it covers a GTID, every replica and
//! change log holds that transaction. Tables named with `--table` must also be past their
//! snapshot (a table still being read is incomplete, whatever the position).
//!
//! Only `run` keeps a checkpoint of the whole pipeline; for replicas that `materialize`
//! keeps, a table's own record says where it is but not that an idle table has nothing
//! newer, so `wait` says it does not apply there (see the issue notes).
//!
//! The checkpoint is read every 50 ms until covered or the timeout.

use std::str::FromStr;
use std::time::{Duration, Instant};

use binlake_core::position::{MariaDbGtidPos, MysqlGtidSet, ResumePosition};
use binlake_lake::Lake;
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

fn parse_target(s: &str) -> Result<Target, String> {
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
fn covers(resume: &str, target: &Target) -> Result<bool, String> {
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

/// Outcome of `binlake wait`.
#[derive(Debug)]
pub enum Waited {
    /// Every replica (and named table) holds the position.
    Covered,
    /// The timeout passed first; what the checkpoint held then.
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
        let cp: Option<Checkpoint> = lake
            .get_json(&path)
            .await?
            .map(serde_json::from_value)
            .transpose()?;
        let Some(cp) = cp else {
            anyhow::bail!(
                "no run checkpoint of `{}` under {}: `binlake wait` follows `binlake run` (replicas that `materialize` keeps are not supported yet)",
                cfg.name,
                lake.root()
            );
        };
        let pending: Vec<&String> = cp
            .state
            .as_ref()
            .and_then(|s| s.get("tables"))
            .and_then(serde_json::Value::as_array)
            .map(|pending| {
                args.tables
                    .iter()
                    .filter(|t| pending.iter().any(|p| p.as_str() == Some(t.as_str())))
                    .collect()
            })
            .unwrap_or_default();
        let at = cp.resume.clone().unwrap_or_default();
        if !at.is_empty()
            && pending.is_empty()
            && covers(&at, &args.gtid).map_err(anyhow::Error::msg)?
        {
            return Ok(Waited::Covered);
        }
        if Instant::now() >= deadline {
            let mut now = format!(
                "the replicas are at {}",
                if at.is_empty() {
                    "no position yet"
                } else {
                    at.as_str()
                }
            );
            if !pending.is_empty() {
                let names: Vec<&str> = pending.iter().map(|t| t.as_str()).collect();
                now.push_str(&format!("; still being snapshotted: {}", names.join(", ")));
            }
            return Ok(Waited::TimedOut(now));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
