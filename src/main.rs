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
