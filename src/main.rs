//! `binlake`: analytics replicas of MySQL and MariaDB.
//!
//! This binary is the wiring: the CLI, the config file, and (as they arrive) the
//! long-running commands that connect the connectors. It holds no protocol code.
//!
//! # Exit codes
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | a runtime error (printed on stderr) |
//! | 2 | invalid usage or an invalid config file (every problem printed with its path) |

/// `println!` for a command's answer on stdout. A closed stdout (`binlake … | head`) ends
/// the process quietly with exit 0, as ripgrep does: the reader has what it wanted.
/// (`println!` panics there, and resetting SIGPIPE needs `unsafe`, which binlake forbids.)
macro_rules! out {
    ($($t:tt)*) => { $crate::print_line(format_args!($($t)*)) };
}

mod capture;
mod config;
mod coverage;
mod dump;
mod materialize;
mod progress;
mod query;
mod run;
mod telemetry;
mod verify;
mod wait;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

/// Keeps analytics replicas of MySQL and MariaDB databases: captures the binlog into Kafka
/// (Debezium-compatible) and materializes Parquet change logs and Delta Lake replicas.
#[derive(Debug, Parser)]
#[command(name = "binlake", version, about, long_about = None)]
struct Cli {
    /// Log format: `text` for people, `json` for log collectors. Level by RUST_LOG
    /// (e.g. `RUST_LOG=binlake=debug`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks a config file: reports every problem with its field path (exit code 2 when
    /// there are any), or prints a summary of what it configures.
    Validate {
        /// The TOML config file.
        config: PathBuf,
    },
    /// Captures the primary's binlog into Kafka, exactly once, until SIGTERM/SIGINT.
    Capture {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Consumes the change topics into Parquet change logs and Delta Lake replicas, exactly
    /// once, until SIGTERM/SIGINT. Run several with the same config to share the work.
    Materialize {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Captures the primary straight into the change logs and replicas, without Kafka,
    /// until SIGTERM/SIGINT.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Asks the running capture of this config to snapshot tables again while it streams
    /// (their rows arrive as `op = r`, marked `incremental`). Returns once the request is
    /// in Kafka; capture picks it up within seconds.
    Snapshot {
        /// The TOML config file (the capture's).
        #[arg(long, short)]
        config: PathBuf,
        /// A table to snapshot, `db.table`; repeat for several.
        #[arg(long = "table", short, required = true)]
        tables: Vec<String>,
    },
    /// Prints every replica's freshness: rows, last applied position, source commit time
    /// and lag.
    Status {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Runs SQL over the replicas (`db.table`) and change logs (`db.table__changes`).
    Query(query::QueryArgs),
    /// Compares every captured table's replica with the primary, row by row through
    /// chunked digests, while writes go on: exit 0 when all are equal, 1 when anything
    /// differs (or a table could not be verified).
    Verify(verify::VerifyArgs),
    /// Waits until `binlake run` has applied a source GTID to every replica
    /// (read-your-writes): exit 0 once it has, 1 at the timeout.
    Wait(wait::WaitArgs),
    /// Offline tools for binlog files.
    Binlog {
        #[command(subcommand)]
        command: BinlogCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BinlogCommand {
    /// Decodes binlog files (like mysqlbinlog) and prints one Debezium-envelope JSON change
    /// event per line on stdout. Needs binlog_row_metadata=FULL binlogs (column names come
    /// from the table maps).
    Dump(dump::DumpArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Validate { config } => validate(&config),
        Command::Capture { config } => with_config(&config, |cfg| async move {
            if let Err(code) = serve_http(&cfg, false).await {
                return code;
            }
            let shutdown = shutdown_signal();
            report_stopped("capture", capture::run(&cfg, shutdown).await)
        }),
        Command::Run { config } => with_config(&config, |cfg| async move {
            if let Err(code) = serve_http(&cfg, true).await {
                return code;
            }
            let shutdown = shutdown_signal();
            report_stopped("run", run::run(&cfg, shutdown).await)
        }),
        Command::Materialize { config } => with_config(&config, |cfg| async move {
            if let Err(code) = serve_http(&cfg, true).await {
                return code;
            }
            let shutdown = shutdown_signal();
            report_stopped("materialize", materialize::run(&cfg, shutdown).await)
        }),
        Command::Snapshot { config, tables } => with_config(&config, |cfg| async move {
            report(request_snapshot(&cfg, &tables).await)
        }),
        Command::Status { config, json } => with_config(&config, |cfg| async move {
            report(query::status(&cfg, json).await)
        }),
        Command::Query(args) => {
            let config = args.config.clone();
            with_config(&config, |cfg| async move {
                report(query::query(&cfg, &args).await)
            })
        }
        Command::Wait(args) => {
            let config = args.config.clone();
            with_config(&config, |cfg| async move {
                if let Err(e) = wait::check_tables(&cfg, &args) {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
                match wait::wait(&cfg, &args).await {
                    Ok(wait::Waited::Covered) => ExitCode::SUCCESS,
                    Ok(wait::Waited::TimedOut(now)) => {
                        eprintln!(
                            "timed out after {}: {now}",
                            humantime::format_duration(args.timeout)
                        );
                        ExitCode::FAILURE
                    }
                    Err(e) => report(Err(e)),
                }
            })
        }
        Command::Verify(args) => {
            let config = args.config.clone();
            with_config(&config, |cfg| async move {
                if let Err(e) = check_tables(&cfg, &args.tables) {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
                match verify::verify(&cfg, &args).await {
                    Ok(true) => ExitCode::SUCCESS,
                    Ok(false) => ExitCode::FAILURE,
                    Err(e) => report(Err(e)),
                }
            })
        }
        Command::Binlog {
            command: BinlogCommand::Dump(args),
        } => match dump::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Writes one line of a command's answer: see [`out!`].
fn print_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Loads the config (exit 2 when invalid) and runs `f` on a multi-threaded runtime.
fn with_config<F, Fut>(path: &std::path::Path, f: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f(cfg)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the `[http]` endpoint when configured; `/status` answers the lake's freshness
/// (`lake`) or capture's position.
async fn serve_http(cfg: &Config, lake: bool) -> Result<(), ExitCode> {
    let Some(listen) = cfg.http.listen.clone() else {
        return Ok(());
    };
    let lake_cfg = cfg.lake.clone();
    let kafka = cfg.kafka.clone();
    let name = cfg.name.clone();
    let filter = cfg.source.filter();
    let status: telemetry::StatusFn = std::sync::Arc::new(move || {
        let (lake_cfg, kafka, name, filter) = (
            lake_cfg.clone(),
            kafka.clone(),
            name.clone(),
            filter.clone(),
        );
        Box::pin(async move {
            if lake {
                query::status_json(&lake_cfg, kafka.as_ref(), &name, &filter)
                    .await
                    .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
            } else {
                telemetry::capture_status()
            }
        })
    });
    telemetry::serve(&listen, status).await.map_err(|e| {
        eprintln!("error: cannot serve http on {listen}: {e}; set [http] listen to a free address");
        ExitCode::FAILURE
    })
}

/// `binlake snapshot`: checks the tables are captured and writes the request to the
/// capture's signal topic, or (when a `run` of this config has committed into the lake)
/// to the run's signal folder.
async fn request_snapshot(cfg: &Config, tables: &[String]) -> anyhow::Result<()> {
    let filter = cfg.source.filter();
    for t in tables {
        let Some((db, table)) = t.split_once('.') else {
            anyhow::bail!("`{t}` is not `database.table`");
        };
        if !filter.table_included(db, table) {
            anyhow::bail!("{t} is not captured by this config (see [source] include / exclude)");
        }
    }
    // A local lake folder that does not exist holds no run (and is not created here).
    let local_and_absent = binlake_lake::store::root_url(&cfg.lake.root)
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok())
        .is_some_and(|p| !p.exists());
    let lake = match local_and_absent {
        true => None,
        false => Some(binlake_lake::Lake::open(&cfg.lake)?),
    };
    let what = if let Some(lake) = &lake
        && lake
            .get_json::<binlake_lake::status::Checkpoint>(&run::checkpoint_path(&cfg.name))
            .await?
            .is_some()
    {
        run::request_snapshot(lake, &cfg.name, tables).await?;
        "run"
    } else if let Some(kafka) = &cfg.kafka {
        binlake_kafka::signals::request_snapshot(
            kafka,
            &cfg.name,
            tables,
            cfg.capture.replication_factor,
        )
        .await?;
        "capture"
    } else {
        anyhow::bail!(
            "no capture or run of `{}` to ask: the config has no [kafka] section (capture reads requests from Kafka) and the lake at {} holds no run checkpoint of that name (start `binlake run` first)",
            cfg.name,
            cfg.lake.root
        );
    };
    out!(
        "requested a snapshot of {} from {what} `{}`: it starts within seconds (rows arrive as op = r, source.snapshot = incremental)",
        tables.join(", "),
        cfg.name
    );
    Ok(())
}

/// Checks `--table` names: each `db.table`, captured by the config (a usage error, exit
/// 2, otherwise).
fn check_tables(cfg: &Config, tables: &[String]) -> Result<(), String> {
    let filter = cfg.source.filter();
    for t in tables {
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

/// Exit code 0, or 1 with the error printed.
fn report<E: std::fmt::Display>(r: Result<(), E>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// [`report`] for the long-running commands, whose logs go to log collectors: the error
/// is logged first.
fn report_stopped<E: std::fmt::Display>(what: &str, r: Result<(), E>) -> ExitCode {
    if let Err(e) = &r {
        tracing::error!(error = %e, "{what} stopped");
    }
    report(r)
}

fn validate(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(cfg) => {
            out!("{}: ok", path.display());
            out!("  name:     {}", cfg.name);
            out!(
                "  source:   {} (replica server_id {})",
                cfg.source.describe(),
                cfg.source.server_id
            );
            match &cfg.kafka {
                Some(k) => out!("  kafka:    {}", k.bootstrap_servers),
                None => out!("  kafka:    (none)"),
            }
            out!(
                "  encoding: decimals {:?}, bigint unsigned {:?}, schemas {}",
                cfg.encoding.decimal_handling,
                cfg.encoding.bigint_unsigned_handling,
                cfg.encoding.schemas
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// A flag that turns true at the first SIGTERM/SIGINT; a second one exits at once.
fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        let mut seen = false;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if seen {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
            seen = true;
            let _ = tx.send(true);
        }
    });
    rx
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        // delta-rs' kernel logs routine steps at INFO and a table being created at ERROR;
        // binlake reports what matters from the results.
        .unwrap_or_else(|_| {
            EnvFilter::new("info,buoyant_kernel=off,deltalake_core=warn,datafusion=warn")
        });
    // Colours only for people: a pipe or a log file gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
