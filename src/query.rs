//! `binlake status` and `binlake query`.

use std::path::PathBuf;

use binlake_lake::Lake;
use binlake_lake::query::{AsOf, OutputFormat};
use binlake_lake::status::Checkpoint;
use clap::{Args, ValueEnum};

use crate::config::Config;

/// Output formats of `binlake query`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// An aligned text table.
    Table,
    /// JSON lines, one object per row.
    Json,
    /// CSV with a header row.
    Csv,
    /// A Parquet file (needs --output).
    Parquet,
}

/// Arguments of `binlake query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The TOML config file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The SQL (DataFusion dialect). Tables: `db.table` (replica), `db.table__changes`.
    pub sql: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Answer from the replicas as they were when the source had committed every
    /// transaction stamped at or before this time (RFC 3339: 2026-11-26T10:00:00Z,
    /// 2026-11-26T15:30:00+05:30), computed from the change logs. Binlog timestamps have
    /// whole seconds: a time inside a second counts all of that second's transactions.
    /// Or a GTID position (MariaDB `0-1-5316`, one per domain separated by commas; a MySQL
    /// GTID set `uuid:1-77`): every table at the same source position.
    #[arg(long, value_name = "TIME|GTID", value_parser = parse_as_of)]
    pub as_of: Option<AsOfArg>,
}

/// `--as-of` as given: what it names, and the text (for messages).
#[derive(Debug, Clone)]
pub struct AsOfArg(AsOf, String);

/// `--as-of`: an RFC 3339 time, or a GTID position (a usage error, exit 2, otherwise).
fn parse_as_of(t: &str) -> Result<AsOfArg, String> {
    if let Some(us) = binlake_core::temporal::parse_rfc3339(t) {
        return Ok(AsOfArg(AsOf::Time(us), t.to_string()));
    }
    match crate::wait::parse_target(t) {
        Ok(crate::wait::Target::MariaDb(p)) => Ok(AsOfArg(AsOf::MariaDb(p), t.to_string())),
        Ok(crate::wait::Target::Mysql(s)) => Ok(AsOfArg(AsOf::Mysql(s), t.to_string())),
        Err(_) => Err(
            "neither an RFC 3339 time with an offset (2026-11-26T10:00:00Z, 2026-11-26T15:30:00+05:30) nor a GTID position (MariaDB 0-1-5316; MySQL uuid:1-77)".to_string(),
        ),
    }
}

/// Every table's freshness as JSON (`status --json`, `/status`).
pub async fn status_json(
    lake_cfg: &binlake_lake::LakeConfig,
    kafka: Option<&binlake_kafka::KafkaConfig>,
    name: &str,
    filter: &binlake_mysql::binlog::Filter,
) -> Result<serde_json::Value, binlake_lake::Error> {
    let lake = Lake::open(lake_cfg)?;
    let tables = table_statuses(&lake, kafka, name, filter).await?;
    Ok(serde_json::json!({ "root": lake.root().as_str(), "tables": tables }))
}

/// Every table's freshness; tables the config does not capture (any more) are marked
/// excluded and current to no time.
async fn table_statuses(
    lake: &Lake,
    kafka: Option<&binlake_kafka::KafkaConfig>,
    name: &str,
    filter: &binlake_mysql::binlog::Filter,
) -> Result<Vec<binlake_lake::status::TableStatus>, binlake_lake::Error> {
    let cp = lake_checkpoint(lake, kafka, name).await?;
    let coverage = binlake_lake::coverage::read_all(lake, name).await?;
    let coverage = (!coverage.is_empty()).then_some(coverage);
    let mut tables = binlake_lake::status::status(lake, cp.as_ref(), coverage.as_ref()).await?;
    for t in &mut tables {
        let included = t
            .table
            .split_once('.')
            .is_some_and(|(db, table)| filter.table_included(db, table));
        if !included {
            t.mark_excluded();
        }
    }
    Ok(tables)
}

/// The pipeline's checkpoint of the lake: `run`'s; else, for replicas `materialize` keeps
/// from capture's topics, capture's snapshot progress (which tables are still being read),
/// so that an incomplete replica does not look current. When Kafka cannot be read, the
/// tables are reported without it (a warning says so).
async fn lake_checkpoint(
    lake: &Lake,
    kafka: Option<&binlake_kafka::KafkaConfig>,
    name: &str,
) -> Result<Option<Checkpoint>, binlake_lake::Error> {
    if let Some(cp) = lake.get_json(&crate::run::checkpoint_path(name)).await? {
        return Ok(Some(cp));
    }
    let Some(kafka) = kafka else { return Ok(None) };
    match binlake_kafka::capture::snapshot_state(kafka, name).await {
        Ok(state) => Ok(state.map(|state| Checkpoint {
            state: Some(state),
            ..Checkpoint::default()
        })),
        Err(e) => {
            tracing::warn!(error = %e, "status: capture's snapshot progress could not be read from Kafka; tables still being snapshotted may look current");
            Ok(None)
        }
    }
}

/// Prints every table's freshness.
pub async fn status(cfg: &Config, json: bool) -> Result<(), binlake_lake::Error> {
    if json {
        out!(
            "{}",
            status_json(
                &cfg.lake,
                cfg.kafka.as_ref(),
                &cfg.name,
                &cfg.source.filter()
            )
            .await?
        );
        return Ok(());
    }
    let lake = Lake::open(&cfg.lake)?;
    let tables = table_statuses(&lake, cfg.kafka.as_ref(), &cfg.name, &cfg.source.filter()).await?;
    if tables.is_empty() {
        out!("no tables under {} yet", lake.root());
        return Ok(());
    }
    out!(
        "{:<32} {:>12} {:>12} {:<28} {:<26} {:>10}",
        "TABLE",
        "ROWS",
        "CHANGES",
        "POSITION",
        "CURRENT TO",
        "LAG"
    );
    for t in tables {
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        out!(
            "{:<32} {:>12} {:>12} {:<28} {:<26} {:>10}",
            t.table,
            opt(t.rows),
            opt(t.changes),
            t.position.unwrap_or_else(|| "-".into()),
            match (t.snapshot_pending, t.behind_checkpoint) {
                _ if t.excluded => "(not captured)".into(),
                (true, _) => "(snapshot in progress)".into(),
                (false, true) => format!(
                    "{} (behind the checkpoint)",
                    t.current_to.unwrap_or_else(|| "-".into())
                ),
                (false, false) => t.current_to.unwrap_or_else(|| "-".into()),
            },
            t.lag_seconds.map_or("-".into(), |l| format!("{l:.1}s")),
        );
    }
    Ok(())
}

/// Runs the query and prints or writes the result.
pub async fn query(cfg: &Config, args: &QueryArgs) -> Result<(), binlake_lake::Error> {
    let lake = Lake::open(&cfg.lake)?;
    let as_of = args.as_of.as_ref().map(|a| &a.0);
    let ctx = binlake_lake::query::session(&lake, as_of).await?;
    if let Some(AsOfArg(as_of, said)) = &args.as_of {
        let time = |us| binlake_core::temporal::format_utc_timestamp(us, 6).unwrap_or_default();
        let before: Vec<String> = match as_of {
            AsOf::Time(t) => binlake_lake::query::history_starts(&ctx, &args.sql)
                .await?
                .into_iter()
                .filter(|(_, start)| t < start)
                .map(|(table, start)| format!("{table} (from {})", time(start)))
                .collect(),
            _ => binlake_lake::query::gtid_history_gaps(&ctx, &args.sql, as_of).await?,
        };
        if !before.is_empty() {
            return Err(binlake_lake::Error::Query(match as_of {
                AsOf::Time(t) => format!(
                    "--as-of {} is before the history the lake has of {}: each change log begins with the table's snapshot, and nothing is known of the table before it; ask for a later time",
                    time(*t),
                    before.join(", ")
                ),
                _ => format!(
                    "--as-of {said} is not known to reach the history the lake has of {}: each change log begins with the table's snapshot, and no change in it of a table the query reads lies at or after that snapshot's start; ask for a later position, or add to the query a table changed since",
                    before.join(", ")
                ),
            }));
        }
        let partial = binlake_lake::query::partial_histories(&ctx, &args.sql, as_of).await?;
        if !partial.is_empty() {
            return Err(binlake_lake::Error::Query(format!(
                "--as-of cannot rebuild {} at {said}: the change log holds row images that left columns out (binlog_row_image = MINIMAL or NOBLOB on the primary; see its __absent column), whose values it does not pair with them; query the current replica, or read the change log itself",
                partial.join(", "),
            )));
        }
    }
    let (schema, batches) = binlake_lake::query::run_with_schema(&ctx, &args.sql).await?;
    let format = match args.format {
        Format::Table => OutputFormat::Table,
        Format::Json => OutputFormat::Json,
        Format::Csv => OutputFormat::Csv,
        Format::Parquet => OutputFormat::Parquet,
    };
    binlake_lake::query::write(&schema, &batches, format, args.output.as_deref())
}
