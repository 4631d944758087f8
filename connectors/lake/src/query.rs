//! `binlake query`: SQL (DataFusion) over every replica and change log.
//!
//! Each replica is the table `db.table`; its change log is `db.table__changes`. With an
//! as-of time, `db.table` is instead the state the replica had when the source committed
//! the last transaction at or before that time, computed from the change log: for every
//! key its last change at or before the time, unless that change is a delete, and only
//! changes after the last TRUNCATE at or before the time. (Changes the change log
//! does not hold, from before capture started, are not there; the snapshot rows are.)

use std::sync::Arc;

use arrow::array::RecordBatch;
use deltalake::datafusion::catalog::MemorySchemaProvider;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::prelude::SessionContext;

use crate::store::{Lake, TableKind};
use crate::{Error, Result};

fn qerr(e: impl std::fmt::Display) -> Error {
    Error::Query(e.to_string())
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A DataFusion session with every table of the lake registered; with `as_of` (µs since
/// the epoch), replicas are answered from their change logs as of that source time.
pub async fn session(lake: &Lake, as_of: Option<i64>) -> Result<SessionContext> {
    let ctx = SessionContext::new();
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| Error::Query("no default catalog".into()))?;
    for (db, table) in lake.tables().await? {
        if catalog.schema(&db).is_none() {
            catalog
                .register_schema(&db, Arc::new(MemorySchemaProvider::new()))
                .map_err(qerr)?;
        }
        let replica = lake
            .load(&lake.table_url(&db, &table, TableKind::Replica)?)
            .await?;
        let changes = lake
            .load(&lake.table_url(&db, &table, TableKind::Changes)?)
            .await?;
        if let Some(t) = &changes {
            t.update_datafusion_session(&ctx.state()).map_err(qerr)?;
            let provider = t.table_provider().await.map_err(qerr)?;
            ctx.register_table(
                TableReference::partial(db.clone(), format!("{table}__changes")),
                provider,
            )
            .map_err(qerr)?;
        }
        let Some(r) = &replica else { continue };
        match as_of {
            None => {
                r.update_datafusion_session(&ctx.state()).map_err(qerr)?;
                let provider = r.table_provider().await.map_err(qerr)?;
                ctx.register_table(TableReference::partial(db.clone(), table.clone()), provider)
                    .map_err(qerr)?;
            }
            Some(ts) => {
                let snap = r.snapshot().map_err(qerr)?;
                let key: Vec<String> = snap
                    .metadata()
                    .configuration()
                    .get("binlake.primary_key")
                    .map(|k| k.split(',').map(ident).collect())
                    .unwrap_or_default();
                let cols: Vec<String> = snap.schema().fields().map(|f| ident(f.name())).collect();
                if key.is_empty() || changes.is_none() {
                    continue;
                }
                let ch = format!("{}.{}", ident(&db), ident(&format!("{table}__changes")));
                let t = format!("to_timestamp_micros({ts})");
                let order = "\"__binlog_file\" DESC, \"__binlog_pos\" DESC, \"__binlog_row\" DESC, \"__op\" ASC";
                let sql = format!(
                    "SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY {order}) AS __rn \
                     FROM {ch} WHERE \"__commit_ts\" <= {t} AND \"__op\" <> 't' \
                     AND \"__commit_ts\" >= COALESCE((SELECT max(\"__commit_ts\") FROM {ch} WHERE \"__op\" = 't' AND \"__commit_ts\" <= {t}), to_timestamp_micros(0))) \
                     WHERE __rn = 1 AND \"__op\" <> 'd'",
                    cols = cols.join(", "),
                    key = key.join(", "),
                );
                let df = ctx.sql(&sql).await.map_err(qerr)?;
                ctx.register_table(
                    TableReference::partial(db.clone(), table.clone()),
                    df.into_view(),
                )
                .map_err(qerr)?;
            }
        }
    }
    Ok(ctx)
}

/// Runs `sql` and collects the result.
pub async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    ctx.sql(sql)
        .await
        .map_err(qerr)?
        .collect()
        .await
        .map_err(qerr)
}

/// How [`write`] renders a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// JSON lines, one object per row.
    Json,
    /// CSV with a header row.
    Csv,
    /// A Parquet file (needs an output path).
    Parquet,
}

/// Writes `batches` as `format` to the file `output`, or to stdout.
pub fn write(
    batches: &[RecordBatch],
    format: OutputFormat,
    output: Option<&std::path::Path>,
) -> Result<()> {
    use std::io::Write as _;
    let file = match output {
        Some(p) => Some(
            std::fs::File::create(p)
                .map_err(|e| Error::Query(format!("cannot create {}: {e}", p.display())))?,
        ),
        None => None,
    };
    if format == OutputFormat::Parquet {
        let Some(file) = file else {
            return Err(Error::Query("--format parquet needs --output FILE".into()));
        };
        let Some(first) = batches.first() else {
            return Ok(());
        };
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, first.schema(), None).map_err(qerr)?;
        for b in batches {
            w.write(b).map_err(qerr)?;
        }
        w.close().map_err(qerr)?;
        return Ok(());
    }
    let stdout = std::io::stdout();
    let mut out: Box<dyn std::io::Write> = match file {
        Some(f) => Box::new(std::io::BufWriter::new(f)),
        None => Box::new(stdout.lock()),
    };
    match format {
        OutputFormat::Table => {
            let t = arrow::util::pretty::pretty_format_batches(batches).map_err(qerr)?;
            writeln!(out, "{t}").map_err(qerr)?;
        }
        OutputFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
            for b in batches {
                w.write(b).map_err(qerr)?;
            }
            w.finish().map_err(qerr)?;
        }
        OutputFormat::Csv | OutputFormat::Parquet => {
            let mut w = arrow::csv::Writer::new(&mut out);
            for b in batches {
                w.write(b).map_err(qerr)?;
            }
        }
    }
    out.flush().map_err(qerr)
}
