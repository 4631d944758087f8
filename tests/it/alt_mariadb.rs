//! MariaDB instances configured differently from the shared test instance (binlog off,
//! statement format, binlogs to purge), for tests that must not disturb the shared one.
//!
//! Each is `tests/services/mariadb.sh` with its own state folder
//! (`<services dir>/alt-<name>`), its own port (13310–13329, except 13316 which `make demo` uses, are reserved for these) and
//! `BINLAKE_MARIADB_EXTRA_CNF` lines appended to its `[mariadbd]` section. The state is
//! kept between runs, so only the first start initializes a datadir; every start rewrites
//! the config, so the instance always runs with the settings asked for. The guard holds a
//! file lock on the port while it lives, so concurrent test processes take turns instead
//! of sharing or stopping each other's instance, and stops the instance when dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use binlake_core::Secret;
use binlake_mysql::SourceConfig;

/// Settings every alternative instance gets: a small footprint.
const BASE_CNF: &str = "innodb_buffer_pool_size = 32M\ninnodb_log_file_size = 16M";

/// A running, separately configured MariaDB; stopped on drop.
#[derive(Debug)]
pub struct AltMariaDb {
    port: u16,
    services_dir: PathBuf,
    _lock: File,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/services/mariadb.sh")
}

impl AltMariaDb {
    /// Starts (or restarts, with `extra_cnf`) the instance `name` on `port`; it has the same
    /// users as the shared instance (`binlake_admin`, `binlake`).
    pub fn start(name: &str, port: u16, extra_cnf: &str) -> AltMariaDb {
        let base = std::env::var_os("BINLAKE_SERVICES_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".services"));
        std::fs::create_dir_all(&base).expect("services dir");
        let lock = File::create(base.join(format!("alt-mariadb-{port}.lock"))).expect("lock file");
        lock.lock().expect("lock the instance's port");
        let db = AltMariaDb {
            port,
            services_dir: base.join(format!("alt-{name}")),
            _lock: lock,
        };
        // A previous run killed before its guard dropped may have left the instance running,
        // possibly with other settings.
        db.script("stop", "");
        db.script("start", &format!("{BASE_CNF}\n{extra_cnf}"));
        db
    }

    fn script(&self, command: &str, extra_cnf: &str) {
        let out = Command::new(script())
            .arg(command)
            .env("BINLAKE_SERVICES_DIR", &self.services_dir)
            .env("BINLAKE_MARIADB_PORT", self.port.to_string())
            .env("BINLAKE_MARIADB_EXTRA_CNF", extra_cnf)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        assert!(
            out.status.success(),
            "`tests/services/mariadb.sh {command}` for port {} failed ({}):\n{}{}",
            self.port,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the instance (it keeps its data); [`AltMariaDb::start_again`] brings it back.
    pub fn stop(&self) {
        self.script("stop", "");
    }

    /// Starts the stopped instance again, with the base settings.
    pub fn start_again(&self) {
        self.script("start", BASE_CNF);
    }

    /// A `[source]` config for `user`/`password` on this instance.
    pub fn source(&self, user: &str, password: &str) -> SourceConfig {
        let mut cfg = SourceConfig::new("127.0.0.1", self.port, user);
        cfg.password = Some(Secret::new(password));
        cfg.server_id = 4242;
        cfg
    }

    /// The capture user (`binlake`, with the grants of the shared instance).
    pub fn capture_source(&self) -> SourceConfig {
        self.source("binlake", "binlake")
    }

    /// An admin connection.
    /// The private instance on port 13318 with `binlog_row_metadata = MINIMAL`: table maps
    /// without column names, so rows are decoded with the schema history.
    pub async fn minimal() -> AltMariaDb {
        tokio::task::spawn_blocking(|| {
            AltMariaDb::start("minimal", 13318, "binlog_row_metadata = MINIMAL")
        })
        .await
        .unwrap()
    }

    pub async fn admin(&self) -> mysql_async::Conn {
        let url = format!(
            "mysql://binlake_admin:binlake-admin@127.0.0.1:{}",
            self.port
        );
        let opts = mysql_async::Opts::from_url(&url).expect("valid admin URL");
        mysql_async::Conn::new(opts)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    }
}

impl Drop for AltMariaDb {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .env("BINLAKE_SERVICES_DIR", &self.services_dir)
            .env("BINLAKE_MARIADB_PORT", self.port.to_string())
            .output();
    }
}
