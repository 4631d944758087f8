//! `binlake binlog dump FILE...`: binlog files to Debezium JSON lines, offline.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use binlake_core::Flavor;
use binlake_core::debezium::{DebeziumOptions, TableCodec};
use binlake_mysql::binlog::{BinlogItem, Decoder, Filter, file::read_file_skipping};

/// Arguments of `binlake binlog dump`.
#[derive(Debug, clap::Args)]
pub struct DumpArgs {
    /// Binlog files, in order.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The logical source name written to `source.name`.
    #[arg(long, default_value = "binlake")]
    name: String,
    /// Write Kafka Connect's {"schema","payload"} form.
    #[arg(long)]
    schemas: bool,
    /// Only tables matching these `db.table` glob patterns.
    #[arg(long)]
    include: Vec<String>,
    /// Also print transaction boundaries and schema changes, as `{"binlake": …}` lines.
    #[arg(long)]
    verbose: bool,
    /// SQL files of the tables' `CREATE TABLE` statements (e.g. `mysqldump --no-data`),
    /// applied before the files' events: for binlogs without binlog_row_metadata=FULL
    /// whose tables were created before them. Repeatable; `USE db` sets the database.
    #[arg(long = "schema", value_name = "FILE.sql")]
    schema: Vec<PathBuf>,
    /// Take the tables' current schemas from the server of this config's `[source]`
    /// (`information_schema`), before the `--schema` files.
    #[arg(long = "source", value_name = "CONFIG")]
    source: Option<PathBuf>,
    /// Go on after an event that does not decode, printing each one skipped on stderr
    /// (the changes it held are missing from the output; exit code 1 at the end).
    #[arg(long)]
    skip_errors: bool,
}

/// What to add to an error about a table without a known schema.
const SCHEMA_HINT: &str = "give its CREATE TABLE statement with `--schema FILE.sql` (e.g. from `mysqldump --no-data`), or read the current schemas from the server with `--source CONFIG`";

/// The schemas to start from: the server's (`--source`), then the `--schema` files.
fn known_schemas(
    args: &DumpArgs,
) -> anyhow::Result<Option<binlake_mysql::schema_history::SchemaHistory>> {
    let mut history = match &args.source {
        None => None,
        Some(path) => {
            let cfg = crate::config::Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("start the async runtime")?;
            let history = rt.block_on(async {
                let mut conn = binlake_mysql::connect(&cfg.source).await?;
                let h = binlake_mysql::schema_history::load_from_information_schema(
                    &mut conn,
                    &|_, _| true,
                )
                .await;
                let _ = conn.disconnect().await;
                h
            })?;
            Some(history)
        }
    };
    for path in &args.schema {
        let sql = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let h = history.get_or_insert_with(|| {
            binlake_mysql::schema_history::SchemaHistory::with_flavor(flavor_of_files(args))
        });
        h.apply_script("", &sql)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(history)
}

/// The flavour of the server that wrote the first file (its format description names it).
fn flavor_of_files(args: &DumpArgs) -> Flavor {
    args.files.first().map_or(Flavor::Mysql, |p| flavor_of(p))
}

fn flavor_of(path: &std::path::Path) -> Flavor {
    let mut head = Vec::with_capacity(256);
    if let Ok(f) = std::fs::File::open(path) {
        let _ = std::io::Read::read_to_end(&mut std::io::Read::take(f, 256), &mut head);
    }
    if head.windows(7).any(|w| w == b"MariaDB") {
        Flavor::MariaDb
    } else {
        Flavor::Mysql
    }
}

/// Runs the command.
pub fn run(args: &DumpArgs) -> anyhow::Result<()> {
    // Offline, every table counts, the server's own schemas included.
    let filter = Filter::new(&args.include, &[], &[])
        .map_err(anyhow::Error::msg)?
        .with_system_schemas();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut codecs: HashMap<String, TableCodec> = HashMap::new();
    let mut buf = Vec::with_capacity(4096);
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let mut write_err: Option<std::io::Error> = None;
    let mut skipped = 0u64;
    let known = known_schemas(args)?;
    for path in &args.files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The server version is in the format description at the start of the file.
        let flavor = flavor_of(path);
        let opts = Arc::new(DebeziumOptions {
            schemas: args.schemas,
            ..DebeziumOptions::new(args.name.clone(), flavor)
        });
        // Without binlog_row_metadata=FULL, schemas come from `--source`, `--schema` and
        // the DDL in the files.
        let history = known
            .clone()
            .unwrap_or_else(|| binlake_mysql::schema_history::SchemaHistory::with_flavor(flavor));
        let mut decoder = Decoder::new(flavor, filter.clone(), Box::new(history), &name, None);
        let verbose = args.verbose;
        let mut skip = |e: binlake_mysql::binlog::DecodeError| {
            skipped += 1;
            eprintln!("skipped: {e}");
        };
        let skip: Option<&mut dyn FnMut(binlake_mysql::binlog::DecodeError)> =
            match args.skip_errors {
                true => Some(&mut skip),
                false => None,
            };
        read_file_skipping(path, &mut decoder, &mut |item| {
            buf.clear();
            match item {
                BinlogItem::Change(e) => {
                    let key = e.table.qualified_name();
                    let codec = match codecs.get(&key) {
                        Some(c) if Arc::ptr_eq(c.table(), &e.table) || **c.table() == *e.table => c,
                        _ => {
                            codecs.insert(key.clone(), TableCodec::new(e.table.clone(), opts.clone()));
                            &codecs[&key]
                        }
                    };
                    codec.encode_value(&e, now_us, &mut buf).map_err(|err| binlake_mysql::binlog::DecodeError {
                        position: e.source.position.to_string(),
                        table: format!(" (table {key})"),
                        reason: err.to_string(),
                    })?;
                }
                BinlogItem::Commit(c) if verbose => {
                    let line = serde_json::json!({"binlake": "commit", "id": &*c.id, "position": c.resume().to_string(), "events": c.events});
                    let _ = serde_json::to_writer(&mut buf, &line);
                }
                BinlogItem::SchemaChange(s) if verbose => {
                    let line = serde_json::json!({"binlake": "schema_change", "database": s.database, "ddl": s.ddl, "position": s.position.to_string()});
                    let _ = serde_json::to_writer(&mut buf, &line);
                }
                _ => return Ok(()),
            }
            buf.push(b'\n');
            if let Err(e) = out.write_all(&buf) {
                write_err.get_or_insert(e);
            }
            Ok(())
        }, skip)
        .map_err(|e| {
            let hint = e.reason.contains("no schema is known");
            anyhow::Error::new(e).context(format!(
                "decoding {}{}",
                path.display(),
                if hint { format!(" ({SCHEMA_HINT})") } else { String::new() }
            ))
        })?;
        for (ty, n) in decoder.unknown_events() {
            eprintln!(
                "note: {n} event(s) of unknown type {ty} skipped in {}",
                path.display()
            );
        }
    }
    if let Some(e) = write_err {
        // A closed pipe (`| head`) is not an error worth a message.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("writing to stdout");
        }
    }
    let _ = out.flush();
    if skipped > 0 {
        anyhow::bail!("{skipped} event(s) could not be decoded and were skipped (listed above)");
    }
    Ok(())
}
