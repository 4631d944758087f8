//! Where the test services are, and a clear failure when they are not there.

use std::sync::atomic::{AtomicU32, Ordering};

use binlake_mysql::SourceConfig;

/// The admin URL (all privileges), for setting up test data.
pub fn mysql_admin_url() -> String {
    std::env::var("BINLAKE_TEST_MYSQL_ADMIN_URL")
        .unwrap_or_else(|_| "mysql://binlake_admin:binlake-admin@127.0.0.1:13306".into())
}

/// The least-privilege capture user, as a binlake `[source]` config.
pub fn capture_source() -> SourceConfig {
    let port = std::env::var("BINLAKE_MARIADB_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(13306);
    let mut cfg = SourceConfig::new("127.0.0.1", port, "binlake");
    cfg.password = Some(binlake_core::Secret::new("binlake"));
    // Each reader registers as its own replica: the primary drops an older connection
    // with the same server_id.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    cfg.server_id =
        100_000 + (std::process::id() % 10_000) * 100 + NEXT.fetch_add(1, Ordering::Relaxed) % 100;
    cfg
}

/// The Kafka bootstrap servers.
pub fn kafka_brokers() -> String {
    std::env::var("BINLAKE_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// Panics with how to start the services; tests never pass silently without them.
pub fn unavailable(service: &str, detail: impl std::fmt::Display) -> ! {
    panic!(
        "{service} is not reachable ({detail}).\n\
         Start the test services with `tests/services/all.sh start` (or run `make test`, which does)."
    )
}

/// An admin connection to the test MariaDB.
pub async fn admin_conn() -> mysql_async::Conn {
    let url = mysql_admin_url();
    let opts = mysql_async::Opts::from_url(&url).expect("valid admin URL");
    match mysql_async::Conn::new(opts).await {
        Ok(c) => c,
        Err(e) => unavailable("MariaDB", format!("{url}: {e}")),
    }
}

/// A name unique to this test run and call, for databases, topics and groups.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}
