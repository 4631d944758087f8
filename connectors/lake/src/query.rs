//! `binlake query`: SQL (DataFusion) over every replica and change log.
//!
//! Each replica is the table `db.table`; its change log is `db.table__changes`. With an
//! as-of time, `db.table` is instead the state the replica had when the source had
//! committed every transaction stamped at or before that time, computed from the change
//! log: for every key its last change in change-log order (`__seq`; positions for rows
//! written before `__seq` existed) among those stamped at or before the time, unless that
//! change is a delete, and only changes after the last TRUNCATE among them.
//!
//! Binlog timestamps have whole seconds, so the resolution is one second: a time inside a
//! second counts every transaction stamped with that second. A table whose change log
//! begins with its snapshot has no history before it ([`history_starts`]): `binlake query`
//! refuses an as-of time before that for the tables a query reads.
//!
//! # As of a GTID position
//!
//! With a GTID position G (MariaDB GTIDs, one per domain; a MySQL GTID set), every table is
//! answered at the same source position: a consistent cut. A streamed change counts when
//! its transaction's GTID (`__gtid`) is in G. A snapshot row (no GTID: it is the row as
//! the chunk read it, at its high watermark W) counts unless its key has, before it in
//! change-log order, a streamed change not in G: then W is past a change G does not hold,
//! and the row may hold it. Otherwise the key did not change between G and W (or W is
//! before G), so the row is the key's state at G. Then, as for a time: per key its last
//! counted change, unless a delete, after the last counted TRUNCATE.
//!
//! Exact when G is a prefix of the binlog, as a GTID an application reads after its commit
//! or `@@gtid_binlog_pos` is with one replication domain (MySQL: one server's GTIDs). With
//! several MariaDB domains whose transactions change the same row interleaved, a row image
//! counted may carry another domain's later change (images are whole rows).
//!
//! Where a table's history starts is a binlog position here: the first snapshot row's
//! watermark. G must be known to reach it: some streamed change (of a table the query
//! reads) in G must lie at or after it ([`gtid_history_gaps`]), else the answer would take
//! snapshot rows read after G for the state at G.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef};
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

/// What `--as-of` names.
#[derive(Debug, Clone)]
pub enum AsOf {
    /// A source commit time, µs since the epoch.
    Time(i64),
    /// A MariaDB GTID position (the last GTID of each domain).
    MariaDb(binlake_core::MariaDbGtidPos),
    /// A MySQL GTID set.
    Mysql(binlake_core::MysqlGtidSet),
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl AsOf {
    /// SQL over a change log's columns: the change counts at this point (for a GTID
    /// position: a streamed change whose transaction is in it; see the module docs).
    fn counts(&self) -> String {
        let any = |or: Vec<String>| match or.is_empty() {
            true => "false".to_string(),
            false => format!("COALESCE({}, false)", or.join(" OR ")),
        };
        match self {
            AsOf::Time(ts) => format!("\"__commit_ts\" <= to_timestamp_micros({ts})"),
            AsOf::MariaDb(pos) => any(
                pos.gtids()
                    .map(|g| {
                        format!(
                            "(split_part(\"__gtid\", '-', 1) = {d} AND TRY_CAST(split_part(\"__gtid\", '-', 3) AS DECIMAL(20, 0)) <= {s})",
                            d = quote(&g.domain.to_string()),
                            s = g.seq
                        )
                    })
                    .collect(),
            ),
            AsOf::Mysql(set) => any(
                set.iter_intervals()
                    .map(|(uuid, tag, a, b)| {
                        let sid = match tag {
                            Some(t) => format!("{uuid}:{t}"),
                            None => uuid.to_string(),
                        };
                        format!(
                            "(lower(regexp_replace(\"__gtid\", ':[0-9]+$', '')) = {sid} AND TRY_CAST(regexp_replace(\"__gtid\", '^.*:', '') AS DECIMAL(20, 0)) BETWEEN {a} AND {b})",
                            sid = quote(&sid.to_ascii_lowercase())
                        )
                    })
                    .collect(),
            ),
        }
    }

    fn is_gtid(&self) -> bool {
        !matches!(self, AsOf::Time(_))
    }
}

/// A DataFusion session with every table of the lake registered; with `as_of`, replicas
/// are answered from their change logs as of that source time or GTID position.
pub async fn session(lake: &Lake, as_of: Option<&AsOf>) -> Result<SessionContext> {
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
            Some(as_of) => {
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
                let counts = as_of.counts();
                // Every change that counts, numbered in change-log order.
                let upto = match as_of.is_gtid() {
                    false => format!(
                        "upto AS (SELECT *, row_number() OVER (ORDER BY {CHANGE_ORDER}) AS __ord FROM {ch} \
                         WHERE {counts})"
                    ),
                    // A snapshot row counts unless its key has an earlier streamed change
                    // that does not (see the module docs).
                    true => format!(
                        "numbered AS (SELECT *, row_number() OVER (ORDER BY {CHANGE_ORDER}) AS __ord, {counts} AS __counts FROM {ch}), \
                         beyond AS (SELECT {keys}, min(__ord) AS __beyond FROM numbered \
                           WHERE \"__op\" NOT IN ('r', 't') AND NOT __counts GROUP BY {keys}), \
                         upto AS (SELECT n.* FROM numbered n LEFT JOIN beyond b ON {join} \
                           WHERE CASE WHEN n.\"__op\" = 'r' THEN b.__beyond IS NULL OR n.__ord < b.__beyond ELSE n.__counts END)",
                        keys = key.join(", "),
                        join = key
                            .iter()
                            .map(|k| format!("n.{k} = b.{k}"))
                            .collect::<Vec<_>>()
                            .join(" AND "),
                    ),
                };
                let sql = format!(
                    "WITH {upto}, \
                     live AS (SELECT * FROM upto WHERE \"__op\" <> 't' \
                       AND __ord > COALESCE((SELECT max(__ord) FROM upto WHERE \"__op\" = 't'), 0)) \
                     SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY __ord DESC) AS __rn FROM live) \
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

/// The order of a change log's rows: `__seq`, and for rows written before it existed
/// (which precede every row that has one), their binlog position, the delete of a key
/// change before its create.
const CHANGE_ORDER: &str = "\"__seq\" ASC NULLS FIRST, \"__binlog_file\", \"__binlog_pos\", \"__binlog_row\", \"__op\" DESC";

/// The replicas `sql` reads that have a change log: `(db, table, change log as SQL)`.
fn replicas_read(ctx: &SessionContext, sql: &str) -> Result<Vec<(String, String, String)>> {
    let state = ctx.state();
    let statement = state
        .sql_to_statement(sql, &deltalake::datafusion::config::Dialect::Generic)
        .map_err(qerr)?;
    let refs = state.resolve_table_references(&statement).map_err(qerr)?;
    let mut out = Vec::new();
    for r in refs {
        let (Some(db), table) = (r.schema(), r.table()) else {
            continue;
        };
        let changes = format!("{table}__changes");
        if table.ends_with("__changes")
            || !ctx
                .table_exist(TableReference::partial(db, changes.as_str()))
                .map_err(qerr)?
        {
            continue;
        }
        let ch = format!("{}.{}", ident(db), ident(&changes));
        out.push((db.to_string(), table.to_string(), ch));
    }
    Ok(out)
}

/// For each replica `sql` reads whose change log begins with its snapshot (snapshot rows
/// in its first commit): the source time of its first snapshot row (µs), before which the
/// change log knows nothing of the table. An as-of time before that cannot be answered.
pub async fn history_starts(ctx: &SessionContext, sql: &str) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for (db, table, ch) in replicas_read(ctx, sql)? {
        // `__seq` / 2^32 is the commit version; change logs from before `__seq` have none
        // (then every snapshot row counts).
        let first = run(
            ctx,
            &format!(
                "SELECT CAST(min(\"__commit_ts\") AS BIGINT) FROM {ch} WHERE \"__op\" = 'r' \
                 AND (\"__seq\" IS NULL OR \"__seq\" / 4294967296 = (SELECT min(\"__seq\" / 4294967296) FROM {ch}))"
            ),
        )
        .await?;
        let start = first
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| arrow::array::cast::as_primitive_array::<Int64Type>(b.column(0)))
            .filter(|a| !arrow::array::Array::is_null(a, 0))
            .map(|a| a.value(0));
        if let Some(start) = start {
            out.push((format!("{db}.{table}"), start));
        }
    }
    Ok(out)
}

/// With `as_of` a GTID position: the replicas `sql` reads whose history (from their first
/// snapshot row's binlog position) the position is not known to reach: no streamed change
/// in it, of any table `sql` reads, lies at or after that row (see the module docs).
pub async fn gtid_history_gaps(
    ctx: &SessionContext,
    sql: &str,
    as_of: &AsOf,
) -> Result<Vec<String>> {
    let at = |batches: &[RecordBatch]| -> Option<(u64, u64)> {
        use arrow::array::Array;
        let b = batches.iter().find(|b| b.num_rows() > 0)?;
        let file = arrow::compute::cast(b.column(0), &DataType::Utf8).ok()?;
        let file = file.as_any().downcast_ref::<arrow::array::StringArray>()?;
        let pos = arrow::compute::cast(b.column(1), &DataType::Int64).ok()?;
        let pos = arrow::array::cast::as_primitive_array::<Int64Type>(&pos);
        if file.is_null(0) || pos.is_null(0) {
            return None;
        }
        let seq = binlake_core::position::binlog_file_sequence(file.value(0)).unwrap_or(0);
        Some((seq, pos.value(0) as u64))
    };
    let counts = as_of.counts();
    let mut reached: Option<(u64, u64)> = None;
    let mut starts = Vec::new();
    for (db, table, ch) in replicas_read(ctx, sql)? {
        // The last streamed change in the position.
        let last = run(
            ctx,
            &format!(
                "SELECT \"__binlog_file\", \"__binlog_pos\" FROM {ch} WHERE \"__op\" <> 'r' AND {counts} \
                 ORDER BY length(\"__binlog_file\") DESC, \"__binlog_file\" DESC, \"__binlog_pos\" DESC LIMIT 1"
            ),
        )
        .await?;
        reached = reached.max(at(&last));
        // Where its history starts: its first snapshot's first row (see history_starts).
        let first = run(
            ctx,
            &format!(
                "SELECT \"__binlog_file\", \"__binlog_pos\" FROM {ch} WHERE \"__op\" = 'r' \
                 AND (\"__seq\" IS NULL OR \"__seq\" / 4294967296 = (SELECT min(\"__seq\" / 4294967296) FROM {ch})) \
                 ORDER BY length(\"__binlog_file\"), \"__binlog_file\", \"__binlog_pos\" LIMIT 1"
            ),
        )
        .await?;
        if let Some(start) = at(&first) {
            starts.push((format!("{db}.{table}"), start));
        }
    }
    Ok(starts
        .into_iter()
        .filter(|(_, start)| reached.is_none_or(|r| r < *start))
        .map(|(t, _)| t)
        .collect())
}

/// The replicas `sql` reads whose change log holds, at `as_of`, changes
/// whose row images left columns out (`__absent`, `binlog_row_image = MINIMAL` or
/// `NOBLOB`): their rows cannot be rebuilt from the change log alone (the replica merged
/// the left-out columns from rows the change log does not pair them with, e.g. across a
/// key change), so an as-of answer for them would be wrong.
pub async fn partial_histories(
    ctx: &SessionContext,
    sql: &str,
    as_of: &AsOf,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (db, table, ch) in replicas_read(ctx, sql)? {
        let provider = ctx
            .table_provider(TableReference::partial(
                db.as_str(),
                format!("{table}__changes"),
            ))
            .await
            .map_err(qerr)?;
        if provider
            .schema()
            .field_with_name(crate::table::ABSENT)
            .is_err()
        {
            continue; // written before `__absent` existed: every image is whole
        }
        let partial = run(
            ctx,
            &format!(
                "SELECT count(*) FROM {ch} WHERE \"{absent}\" IS NOT NULL \
                 AND {counts}",
                absent = crate::table::ABSENT,
                counts = as_of.counts(),
            ),
        )
        .await?;
        let n = partial
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| arrow::array::cast::as_primitive_array::<Int64Type>(b.column(0)).value(0))
            .unwrap_or(0);
        if n > 0 {
            out.push(format!("{db}.{table}"));
        }
    }
    Ok(out)
}

/// Runs `sql` and collects the result.
pub async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(run_with_schema(ctx, sql).await?.1)
}

/// Runs `sql` and collects the result, with its schema (known even when no row is).
pub async fn run_with_schema(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let df = ctx.sql(sql).await.map_err(qerr)?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    Ok((schema, df.collect().await.map_err(qerr)?))
}

/// `batch` with the numbers a JSON reader would round (a double holds integers only up to
/// 2^53 and no decimal fraction exactly) as strings: DECIMAL and unsigned 64-bit columns,
/// as Debezium's `decimal.handling.mode=string` writes them.
fn exact_for_json(batch: &RecordBatch) -> Result<RecordBatch> {
    let as_text = |t: &DataType| {
        matches!(
            t,
            DataType::Decimal32(..)
                | DataType::Decimal64(..)
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
                | DataType::UInt64
        )
    };
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| as_text(f.data_type())) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(fields.capacity());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        if as_text(f.data_type()) {
            fields.push(f.as_ref().clone().with_data_type(DataType::Utf8));
            columns.push(arrow::compute::cast(c, &DataType::Utf8).map_err(qerr)?);
        } else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(qerr)
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

/// Writes `batches` (of `schema`) as `format` to the file `output`, or to stdout. An empty
/// result still has its header (table, CSV) or schema (Parquet). JSON lines write every
/// column, nulls included, DECIMAL and unsigned 64-bit numbers as strings (see
/// [`exact_for_json`]), bytes as lowercase hex.
pub fn write(
    schema: &SchemaRef,
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
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).map_err(qerr)?;
        for b in batches {
            w.write(b).map_err(qerr)?;
        }
        w.close().map_err(qerr)?;
        return Ok(());
    }
    let to_file = file.is_some();
    let mut out = Closable {
        inner: match file {
            Some(f) => Box::new(std::io::BufWriter::new(f)) as Box<dyn std::io::Write>,
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        },
        closed: false,
    };
    let written =
        write_text(schema, batches, format, &mut out).and_then(|()| out.flush().map_err(qerr));
    match written {
        // The reader of stdout went away (`binlake query … | head`): it has what it wanted.
        Err(_) if out.closed && !to_file => Ok(()),
        r => r,
    }
}

/// A writer that remembers whether its reader went away (a broken pipe).
struct Closable<W> {
    inner: W,
    closed: bool,
}

impl<W: std::io::Write> std::io::Write for Closable<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.closed |= matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe);
        r
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.closed |= matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe);
        r
    }
}

fn write_text(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
    mut out: &mut dyn std::io::Write,
) -> Result<()> {
    match format {
        OutputFormat::Table => {
            let t = arrow::util::pretty::pretty_format_batches_with_schema(schema.clone(), batches)
                .map_err(qerr)?;
            writeln!(out, "{t}").map_err(qerr)?;
        }
        OutputFormat::Json => {
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::LineDelimited>(&mut out);
            for b in batches {
                w.write(&exact_for_json(b)?).map_err(qerr)?;
            }
            w.finish().map_err(qerr)?;
        }
        OutputFormat::Csv | OutputFormat::Parquet => {
            let mut w = arrow::csv::Writer::new(&mut out);
            // The header, also when no row comes.
            w.write(&RecordBatch::new_empty(schema.clone()))
                .map_err(qerr)?;
            for b in batches {
                w.write(b).map_err(qerr)?;
            }
        }
    }
    Ok(())
}
