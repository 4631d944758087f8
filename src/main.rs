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

mod capture;
mod config;
mod dump;

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
        Command::Capture { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(async {
                let shutdown = shutdown_signal();
                match capture::run(&cfg, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!(error = %e, "capture stopped");
                        eprintln!("error: {e}");
                        ExitCode::FAILURE
                    }
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

fn validate(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(cfg) => {
            println!("{}: ok", path.display());
            println!("  name:     {}", cfg.name);
            println!(
                "  source:   {} (replica server_id {})",
                cfg.source.describe(),
                cfg.source.server_id
            );
            match &cfg.kafka {
                Some(k) => println!("  kafka:    {}", k.bootstrap_servers),
                None => println!("  kafka:    (none)"),
            }
            println!(
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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
