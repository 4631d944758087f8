//! The `[source]` section: how to reach the primary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use binlake_core::{Problems, Secret};
use mysql_async::{ClientIdentity, Opts, OptsBuilder, SslOpts};
use serde::Deserialize;

fn default_port() -> u16 {
    3306
}

fn default_server_id() -> u32 {
    5400
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The `[source]` section of the config: the MySQL or MariaDB primary to capture.
///
/// ```toml
/// [source]
/// host = "db.internal"
/// port = 3306
/// user = "binlake"
/// password = "${BINLAKE_MYSQL_PASSWORD}"
/// server_id = 5400
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Host name or IP address of the primary.
    pub host: String,
    /// TCP port of the primary.
    #[serde(default = "default_port")]
    pub port: u16,
    /// User to connect as. Needs `REPLICATION SLAVE`, `BINLOG MONITOR` (MariaDB) or
    /// `REPLICATION CLIENT` (MySQL), `SELECT` and `SHOW DATABASES`.
    pub user: String,
    /// Password of `user`; use `${ENV_VAR}` to take it from the environment.
    #[serde(default)]
    pub password: Option<Secret>,
    /// The server id binlake registers with as a replica; must differ from the primary's
    /// and from every other replica's.
    #[serde(default = "default_server_id")]
    pub server_id: u32,
    /// How long to wait for a connection, e.g. `"10s"`.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Tables to capture, as `db.table` glob patterns (`*`, `?`, `[…]`); empty: all
    /// tables (except the server's own schemas).
    #[serde(default)]
    pub include: Vec<String>,
    /// Tables not to capture, as `db.table` glob patterns.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Columns whose values never leave binlake, as `db.table.column` glob patterns
    /// (primary-key columns cannot be excluded).
    #[serde(default)]
    pub exclude_columns: Vec<String>,
    /// Columns that identify the rows of the tables matching a `db.table` pattern, used
    /// instead of the primary key (Debezium's `message.key.columns`): the message key,
    /// the snapshot's chunk order and the lake replica's identity. For tables without a
    /// primary key; the columns must be unique and NOT NULL.
    #[serde(default)]
    pub key_columns: BTreeMap<String, Vec<String>>,
    /// Text columns whose values are masked where they are read, so the original never
    /// leaves binlake (see `binlake_core::masking`).
    #[serde(default)]
    pub masking: MaskingConfig,
    /// Where to start reading when binlake has no recorded position yet: `end` (the
    /// default: changes from now on), or a position: `file:mysql-bin.000042:4`,
    /// `mariadb-gtid:0-1-100` or `gtid:<MySQL GTID set>`.
    #[serde(default)]
    pub start: Option<String>,
    /// TLS to the primary (MySQL's `ssl-mode`): `disabled` (the default), `required`
    /// (encrypted, the certificate is not checked), `verify_ca` (the certificate must
    /// chain to `tls_ca`), `verify_identity` (and name `host`).
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of the CA(s) to trust; set, it replaces the built-in public roots.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// PEM files of a client certificate (chain) and its key, for servers that require
    /// one (`REQUIRE X509`).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// See `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

/// How the connection to the primary uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disabled,
    /// Encrypted; any certificate is accepted.
    Required,
    /// Encrypted; the certificate must chain to a trusted CA.
    VerifyCa,
    /// Encrypted; the certificate must chain to a trusted CA and name the host.
    VerifyIdentity,
}

/// `[source.masking]`: `db.table.column` glob patterns of text columns (the first rule
/// that matches a column applies: hash, then mask, then truncate).
///
/// ```toml
/// [source.masking]
/// mask_with_chars = { "shop.users.email" = 8 }    # 8 asterisks
/// truncate_to_chars = { "shop.*.notes" = 100 }    # the first 100 characters
/// hash_sha256 = ["shop.users.ssn"]                # hex SHA-256 of salt + value
/// hash_salt = "${BINLAKE_MASK_SALT}"
/// ```
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// Pattern → the number of `*` that replace every value.
    #[serde(default)]
    pub mask_with_chars: BTreeMap<String, usize>,
    /// Pattern → the number of characters kept.
    #[serde(default)]
    pub truncate_to_chars: BTreeMap<String, usize>,
    /// Patterns of columns replaced by the hex SHA-256 of `hash_salt` and the value.
    #[serde(default)]
    pub hash_sha256: Vec<String>,
    /// The salt of `hash_sha256` (a secret: never logged).
    #[serde(default)]
    pub hash_salt: Option<Secret>,
}

impl std::fmt::Debug for MaskingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskingConfig")
            .field("mask_with_chars", &self.mask_with_chars)
            .field("truncate_to_chars", &self.truncate_to_chars)
            .field("hash_sha256", &self.hash_sha256)
            .field("hash_salt", &self.hash_salt.as_ref().map(|_| "***"))
            .finish()
    }
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("server_id", &self.server_id)
            .field("connect_timeout", &self.connect_timeout)
            .field("include", &self.include)
            .field("exclude", &self.exclude)
            .field("exclude_columns", &self.exclude_columns)
            .field("key_columns", &self.key_columns)
            .field("masking", &self.masking)
            .field("start", &self.start)
            .field("tls", &self.tls)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

impl SourceConfig {
    /// A config for `user` at `host:port` with defaults for the rest.
    pub fn new(host: impl Into<String>, port: u16, user: impl Into<String>) -> Self {
        SourceConfig {
            host: host.into(),
            port,
            user: user.into(),
            password: None,
            server_id: default_server_id(),
            connect_timeout: default_connect_timeout(),
            include: Vec::new(),
            exclude: Vec::new(),
            exclude_columns: Vec::new(),
            key_columns: BTreeMap::new(),
            masking: MaskingConfig::default(),
            start: None,
            tls: TlsMode::default(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }

    /// Checks values serde cannot, recording each problem under `path`.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        if self.host.trim().is_empty() {
            problems.push(path, "host", "must not be empty");
        }
        if self.port == 0 {
            problems.push(path, "port", "must be between 1 and 65535");
        }
        if self.user.is_empty() {
            problems.push(path, "user", "must not be empty");
        }
        if self.server_id == 0 {
            problems.push(
                path,
                "server_id",
                "must be > 0 (0 is refused by the primary for replicas); pick an id no other server or replica uses",
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            problems.push(path, "tls_cert", "tls_cert and tls_key go together");
        }
        if self.tls == TlsMode::Disabled && (self.tls_ca.is_some() || self.tls_cert.is_some()) {
            problems.push(
                path,
                "tls",
                "is disabled but tls_ca / tls_cert are set: set tls = \"verify_ca\" (or another mode)",
            );
        }
        if self.tls == TlsMode::VerifyCa && self.tls_ca.is_none() {
            problems.push(
                path,
                "tls_ca",
                "verify_ca needs the CA to trust (a PEM file)",
            );
        }
        problems.check_range(
            path,
            "connect_timeout",
            self.connect_timeout,
            Duration::from_millis(100)..=Duration::from_secs(3600),
            "",
        );
        if let Some(start) = self.start.as_deref().filter(|s| *s != "end")
            && let Err(e) = start.parse::<binlake_core::ResumePosition>()
        {
            problems.push(path, "start", format!("{e}; or \"end\""));
        }
        for (pattern, columns) in &self.key_columns {
            if let Err(e) = glob::Pattern::new(pattern) {
                problems.push(
                    path,
                    &format!("key_columns.{pattern:?}"),
                    format!("`{pattern}` is not a valid pattern: {e}"),
                );
            }
            if columns.is_empty() || columns.iter().any(|c| c.is_empty()) {
                problems.push(
                    path,
                    &format!("key_columns.{pattern:?}"),
                    "list the columns that identify a row, e.g. [\"id\"]",
                );
            }
        }
        let m = &self.masking;
        for (field, rules) in [
            ("mask_with_chars", &m.mask_with_chars),
            ("truncate_to_chars", &m.truncate_to_chars),
        ] {
            for (p, n) in rules {
                problems.check_range(
                    &format!("{path}.masking"),
                    &format!("{field}.{p:?}"),
                    *n,
                    1..=65_535,
                    "characters",
                );
            }
        }
        if !m.hash_sha256.is_empty() && m.hash_salt.as_ref().is_none_or(|s| s.expose().is_empty()) {
            problems.push(
                &format!("{path}.masking"),
                "hash_salt",
                "hash_sha256 needs a salt, a secret: e.g. hash_salt = \"${BINLAKE_MASK_SALT}\"",
            );
        }
        let mask_patterns: Vec<String> = m
            .mask_with_chars
            .keys()
            .chain(m.truncate_to_chars.keys())
            .chain(&m.hash_sha256)
            .cloned()
            .collect();
        for (field, patterns) in [
            ("include", &self.include),
            ("exclude", &self.exclude),
            ("exclude_columns", &self.exclude_columns),
            ("masking", &mask_patterns),
        ] {
            for (i, p) in patterns.iter().enumerate() {
                if let Err(e) = glob::Pattern::new(p) {
                    problems.push(
                        path,
                        &format!("{field}[{i}]"),
                        format!("`{p}` is not a valid pattern: {e}"),
                    );
                }
            }
        }
    }

    /// The configured start position: `None` for the end of the binlog.
    pub fn start_position(&self) -> Option<binlake_core::ResumePosition> {
        match self.start.as_deref() {
            None | Some("end") => None,
            // validate() has checked that it parses.
            Some(p) => p.parse().ok(),
        }
    }

    /// The table and column filter of this source.
    pub fn filter(&self) -> crate::binlog::Filter {
        // validate() has checked the patterns.
        crate::binlog::Filter::new(&self.include, &self.exclude, &self.exclude_columns)
            .and_then(|f| f.with_key_columns(&self.key_columns))
            .and_then(|f| f.with_masking(&self.masking))
            .unwrap_or_default()
    }

    /// `user@host:port`, for logs and messages (never the password).
    pub fn describe(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }

    /// Connection options for mysql_async.
    pub(crate) fn opts(&self) -> Opts {
        let ssl = (self.tls != TlsMode::Disabled).then(|| {
            let mut ssl = SslOpts::default()
                .with_danger_accept_invalid_certs(self.tls == TlsMode::Required)
                .with_danger_skip_domain_validation(self.tls != TlsMode::VerifyIdentity);
            if let Some(ca) = &self.tls_ca {
                ssl = ssl
                    .with_root_certs(vec![ca.clone().into()])
                    .with_disable_built_in_roots(true);
            }
            if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
                ssl = ssl.with_client_identity(Some(ClientIdentity::new(
                    cert.clone().into(),
                    key.clone().into(),
                )));
            }
            ssl
        });
        OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(self.password.as_ref().map(|p| p.expose().to_string()))
            .prefer_socket(false)
            .ssl_opts(ssl)
            .into()
    }
}
