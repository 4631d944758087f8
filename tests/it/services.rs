//! Where the test services are, and a clear failure when they are not there.

use std::path::{Path, PathBuf};
use std::process::Command;
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

/// Runs `openssl` with `args` in `dir`; panics with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`<name>-ca.pem`) and, when `server`, a server certificate it signed for
/// 127.0.0.1 (`server-cert.pem`, `server-key.pem`).
pub fn make_ca(dir: &Path, name: &str, server: bool) -> PathBuf {
    let ca_key = format!("{name}-ca-key.pem");
    let ca = format!("{name}-ca.pem");
    openssl(dir, &["genrsa", "-out", &ca_key, "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &ca_key,
            "-days",
            "2",
            "-subj",
            &format!("/CN=binlake test CA {name}"),
            "-out",
            &ca,
        ],
    );
    if server {
        openssl(dir, &["genrsa", "-out", "server-key.pem", "2048"]);
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                "server-key.pem",
                "-subj",
                "/CN=127.0.0.1",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName = IP:127.0.0.1, DNS:localhost\n",
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                "server-cert.pem",
            ],
        );
    }
    dir.join(ca)
}

/// The TLS listeners of the test broker and what a client needs for them, as
/// `tests/services/kafka.sh env` exports them.
pub struct KafkaTls {
    /// SSL, server certificate only.
    pub ssl_brokers: String,
    /// SSL that requires a client certificate.
    pub mtls_brokers: String,
    /// SASL_SSL with SCRAM-SHA-512.
    pub sasl_ssl_brokers: String,
    /// The CA that signed the broker's and the client's certificates.
    pub ca: PathBuf,
    /// A client certificate for the mTLS listener, and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// The SCRAM-SHA-512 user of the SASL_SSL listener, and its password.
    pub scram_user: String,
    pub scram_password: String,
}

/// The test broker's TLS listeners; panics with how to start them when the certificates
/// the broker script makes are not there.
pub fn kafka_tls() -> KafkaTls {
    let var = |name: &str, default: String| std::env::var(name).unwrap_or(default);
    // Where tests/services/kafka.sh keeps them by default (BINLAKE_SERVICES_DIR unset).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".services/kafka/tls");
    let path =
        |name: &str, file: &str| PathBuf::from(var(name, dir.join(file).display().to_string()));
    let tls = KafkaTls {
        ssl_brokers: var("BINLAKE_TEST_KAFKA_SSL_BROKERS", "127.0.0.1:19095".into()),
        sasl_ssl_brokers: var(
            "BINLAKE_TEST_KAFKA_SASL_SSL_BROKERS",
            "127.0.0.1:19096".into(),
        ),
        mtls_brokers: var("BINLAKE_TEST_KAFKA_MTLS_BROKERS", "127.0.0.1:19097".into()),
        ca: path("BINLAKE_TEST_KAFKA_CA", "ca.pem"),
        client_cert: path("BINLAKE_TEST_KAFKA_CLIENT_CERT", "client-cert.pem"),
        client_key: path("BINLAKE_TEST_KAFKA_CLIENT_KEY", "client-key.pem"),
        scram_user: var("BINLAKE_TEST_KAFKA_SCRAM_USER", "binlake".into()),
        scram_password: var("BINLAKE_TEST_KAFKA_SCRAM_PASSWORD", "binlake-scram".into()),
    };
    for f in [&tls.ca, &tls.client_cert, &tls.client_key] {
        if !f.is_file() {
            unavailable(
                "Kafka's TLS listeners",
                format!(
                    "{} is missing: the broker was started by an older tests/services/kafka.sh, or not at all; restart it with `tests/services/kafka.sh stop && tests/services/kafka.sh start` and export `tests/services/all.sh env`",
                    f.display()
                ),
            );
        }
    }
    tls
}
