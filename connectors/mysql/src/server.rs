//! What the primary says about itself: flavour, version, binlog settings and position, and
//! what the capture account may do.
//!
//! # Start-up checks
//!
//! Before capture starts, [`ServerInfo::probe`] asks the server and
//! [`ServerInfo::capture_problems_for`] lists everything that keeps binlake from capturing,
//! each entry saying what to change: the binlog is off, `binlog_format` is not `ROW`, or
//! the account lacks privileges (with the `GRANT` statements to run). A `binlog_row_image`
//! other than `FULL` is no problem: the columns it leaves out are decoded as
//! [`binlake_core::Value::Absent`] ([`ServerInfo::row_image_note`] says what that means). Connection failures ([`connect`]) name `host:port` and what to
//! check; wrong credentials are definite, not retried. A server that refuses the account
//! (1045) while it offers TLS that binlake did not use may require TLS of the account
//! (`REQUIRE SSL`): the message says so, having read the server's greeting again.
//!
//! # What the grant check covers
//!
//! The privileges come from `SHOW GRANTS` of the session. That lists the account's own
//! grants, `PUBLIC`'s and, on MariaDB, those of the active role; on MySQL the active roles'
//! grants are read with `SHOW GRANTS FOR CURRENT_USER() USING <roles>`. binlake needs, on
//! `*.*`:
//! - `REPLICATION SLAVE` (to read the binlog);
//! - `BINLOG MONITOR` on MariaDB ≥ 10.5, `REPLICATION CLIENT` on MySQL and older MariaDB
//!   (`SHOW MASTER STATUS`); `SUPER` also allows it;
//! - `SHOW DATABASES` (to list the databases to snapshot);
//! - `SELECT`, either on `*.*` or on every captured database (`db.*`, with the `%`/`_`
//!   wildcards of database-level grants). A database where the account has `SELECT` only on
//!   some tables (table-level grants) is a problem unless the include patterns name its
//!   captured tables one by one and each is granted: the server hides the other tables
//!   from the account (`SHOW TABLES`, `information_schema`, and error 1142 even for a
//!   table that does not exist), so binlake cannot list them, the snapshot would skip them
//!   and only their changes after the start would reach the replica. The message names
//!   the table (`GRANT SELECT ON db.t`) when the patterns name it, else the database
//!   (`GRANT SELECT ON db.*`). Column-level grants are ignored.
//!
//! `ALL PRIVILEGES` covers everything at its level. Databases are those that exist when
//! capture starts (`SHOW DATABASES`) and that the table filter includes. Roles granted but
//! not active in the session do not count; the message says how to activate them. When
//! the grants cannot be read, the check is skipped with a warning rather than refusing to
//! start.

use std::collections::BTreeSet;

use binlake_core::{BinlogFilePos, Flavor, MariaDbGtidPos, MysqlGtidSet, ResumePosition};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::binlog::Filter;
use crate::config::SourceConfig;
use crate::error::{Error, Result};

/// Opens a connection to the primary, within `connect_timeout`.
pub async fn connect(cfg: &SourceConfig) -> Result<Conn> {
    let target = cfg.describe();
    if cfg.tls != crate::config::TlsMode::Disabled {
        // rustls needs a process-wide crypto provider; an error means one is set already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The files are read by the TLS setup, whose error would not name them.
        for (field, file) in [
            ("tls_ca", &cfg.tls_ca),
            ("tls_cert", &cfg.tls_cert),
            ("tls_key", &cfg.tls_key),
        ] {
            if let Some(f) = file
                && let Err(e) = std::fs::metadata(f)
            {
                return Err(Error::Connect {
                    target,
                    reason: format!(
                        "source.{field} {} cannot be read ({e}); the TLS handshake failed before it began",
                        f.display()
                    ),
                });
            }
        }
    }
    match tokio::time::timeout(cfg.connect_timeout, Conn::new(cfg.opts())).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            let mut reason = connect_failure(cfg, &e);
            if matches!(&e, mysql_async::Error::Server(se) if se.code == 1045)
                && cfg.tls == crate::config::TlsMode::Disabled
                && server_offers_tls(cfg).await
            {
                reason.push_str(
                    "; or the account requires TLS (REQUIRE SSL): the server offers TLS and binlake did not use it, set source.tls = \"required\" (or verify_ca / verify_identity)",
                );
            }
            Err(Error::Connect { target, reason })
        }
        Err(_) => Err(Error::Connect {
            target,
            reason: format!(
                "no answer within {:?} (source.connect_timeout); is the server up and the address right?",
                cfg.connect_timeout
            ),
        }),
    }
}

/// The client's message, and what to check.
fn connect_failure(cfg: &SourceConfig, e: &mysql_async::Error) -> String {
    let hint = match e {
        mysql_async::Error::Server(se) if se.code == 1045 => {
            "the server refused the user name or password: check source.user and source.password"
                .to_string()
        }
        mysql_async::Error::Server(se) if se.code == 1130 => format!(
            "the server does not let {} connect from this host: create the user for this host (or '%')",
            cfg.user
        ),
        mysql_async::Error::Server(_) => return e.to_string(),
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
            "the server does not offer TLS: enable it on the server (ssl_cert, ssl_key) or set source.tls = \"disabled\"".to_string()
        }
        mysql_async::Error::Io(io) if is_tls_failure(io) => format!(
            "the TLS handshake failed: check source.tls ({:?}), source.tls_ca (the CA that signed the server's certificate) and, for verify_identity, that the certificate names {}",
            cfg.tls, cfg.host
        ),
        // Its `Display` repeats "Input/output error".
        mysql_async::Error::Io(io) => return format!("{io}; {}", unreachable_hint(cfg)),
        _ => unreachable_hint(cfg),
    };
    format!("{e}; {hint}")
}

/// Whether the server's greeting (read on a connection of its own, no credentials sent)
/// offers TLS. False when it cannot be read.
async fn server_offers_tls(cfg: &SourceConfig) -> bool {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut s = tokio::net::TcpStream::connect((cfg.host.as_str(), cfg.port)).await?;
        let mut header = [0u8; 4];
        s.read_exact(&mut header).await?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        let mut greeting = vec![0u8; len.min(1024)];
        s.read_exact(&mut greeting).await?;
        Ok::<_, std::io::Error>(greeting)
    };
    match tokio::time::timeout(cfg.connect_timeout, read).await {
        Ok(Ok(greeting)) => greeting_offers_tls(&greeting),
        _ => false,
    }
}

/// Whether a protocol-10 handshake packet has the `CLIENT_SSL` capability: after the
/// version byte, the NUL-terminated server version, the 4-byte connection id, 8 bytes of
/// scramble and a filler byte come the capability flags' lower two bytes.
fn greeting_offers_tls(p: &[u8]) -> bool {
    const CLIENT_SSL: u16 = 0x0800;
    if p.first() != Some(&10) {
        return false;
    }
    let Some(nul) = p[1..].iter().position(|b| *b == 0) else {
        return false;
    };
    let at = 1 + nul + 1 + 4 + 8 + 1;
    p.get(at..at + 2)
        .is_some_and(|c| u16::from_le_bytes([c[0], c[1]]) & CLIENT_SSL != 0)
}

/// Whether an I/O error is rustls refusing the handshake (a certificate, a protocol).
fn is_tls_failure(e: &mysql_async::IoError) -> bool {
    match e {
        mysql_async::IoError::Tls(_) => true,
        mysql_async::IoError::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
    }
}

fn unreachable_hint(cfg: &SourceConfig) -> String {
    format!(
        "check that the server is running and listens on {}:{} (source.host, source.port), and that no firewall is in the way",
        cfg.host, cfg.port
    )
}

/// The primary's identity, binlog settings and current end of binlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `SELECT VERSION()`, e.g. `10.11.6-MariaDB-0+deb12u1-log`.
    pub version: String,
    /// MySQL or MariaDB.
    pub flavor: Flavor,
    /// `@@server_id` of the primary.
    pub server_id: u32,
    /// `@@log_bin`: whether the binlog is on.
    pub log_bin: bool,
    /// `@@binlog_format`: must be `ROW`.
    pub binlog_format: String,
    /// `@@binlog_row_image`: `FULL`, or `MINIMAL`/`NOBLOB` (columns left out of row images).
    pub binlog_row_image: String,
    /// `@@binlog_row_metadata` (MySQL ≥ 8.0.1, MariaDB ≥ 10.5): `FULL` lets table maps carry
    /// column names and types.
    pub binlog_row_metadata: Option<String>,
    /// The end of the binlog as file:pos (`SHOW MASTER STATUS` / `SHOW BINARY LOG STATUS`);
    /// `None` when the binlog is off.
    pub binlog_position: Option<BinlogFilePos>,
    /// The executed GTIDs: MySQL's `@@gtid_executed` (when `gtid_mode=ON`) or MariaDB's
    /// `@@gtid_binlog_pos`.
    pub gtid_position: Option<ResumePosition>,
    /// The capture account's privileges; `None` when they could not be read (then they are
    /// not checked).
    pub grants: Option<Grants>,
    /// The databases the account sees (`SHOW DATABASES`), for the `SELECT` check.
    pub databases: Vec<String>,
}

impl ServerInfo {
    /// Asks the server. Needs only the capture user's grants.
    pub async fn probe(conn: &mut Conn, cfg: &SourceConfig) -> Result<ServerInfo> {
        let target = cfg.describe();
        let q = |query: &str| Error::query(&target, query);
        const VARS: &str = "SELECT VERSION(), @@server_id, @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image";
        let row: Option<(String, u32, u8, String, String)> =
            conn.query_first(VARS).await.map_err(q(VARS))?;
        let Some((version, server_id, log_bin, binlog_format, binlog_row_image)) = row else {
            return Err(Error::Unexpected {
                target,
                reason: format!("`{VARS}` returned no row"),
            });
        };
        let flavor = if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::Mysql
        };
        // Absent before MySQL 8.0.1 / MariaDB 10.5: then the query fails with "unknown
        // system variable", which only means the setting does not exist.
        let binlog_row_metadata: Option<String> = conn
            .query_first("SELECT @@GLOBAL.binlog_row_metadata")
            .await
            .ok()
            .flatten();
        let grants = read_grants(conn, flavor).await;
        let databases: Vec<String> = match conn.query("SHOW DATABASES").await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(source = %target, error = %e, "cannot list databases");
                Vec::new()
            }
        };
        let monitor_missing = grants
            .as_ref()
            .is_some_and(|g| !g.has_any_global(monitor_privilege(flavor, &version).granted_by));
        let log_bin = log_bin == 1;
        let binlog_position = if log_bin {
            let status = if flavor == Flavor::Mysql && mysql_at_least(&version, 8, 2) {
                "SHOW BINARY LOG STATUS"
            } else {
                "SHOW MASTER STATUS"
            };
            match conn.query_first::<mysql_async::Row, _>(status).await {
                Ok(row) => row.and_then(|r| {
                    let file: Option<String> = r.get(0);
                    let pos: Option<u64> = r.get(1);
                    Some(BinlogFilePos::new(file?, pos?))
                }),
                // Denied for want of a privilege that capture_problems() names, with the fix.
                Err(mysql_async::Error::Server(_)) if monitor_missing => None,
                Err(e) => return Err(q(status)(e)),
            }
        } else {
            None
        };
        let gtid_position = match flavor {
            Flavor::MariaDb => {
                const POS: &str = "SELECT @@gtid_binlog_pos";
                let s: Option<String> = conn.query_first(POS).await.map_err(q(POS))?;
                let pos: MariaDbGtidPos =
                    s.unwrap_or_default()
                        .parse()
                        .map_err(|e| Error::Unexpected {
                            target: target.clone(),
                            reason: format!("{e}"),
                        })?;
                Some(ResumePosition::MariaDbGtids(pos))
            }
            Flavor::Mysql => {
                let mode: Option<String> =
                    conn.query_first("SELECT @@gtid_mode").await.ok().flatten();
                if mode.as_deref() == Some("ON") {
                    const EXEC: &str = "SELECT @@gtid_executed";
                    let s: Option<String> = conn.query_first(EXEC).await.map_err(q(EXEC))?;
                    let set: MysqlGtidSet = s
                        .unwrap_or_default()
                        .replace('\n', "")
                        .parse()
                        .map_err(|e| Error::Unexpected {
                            target: target.clone(),
                            reason: format!("{e}"),
                        })?;
                    Some(ResumePosition::MysqlGtids(set))
                } else {
                    None
                }
            }
        };
        Ok(ServerInfo {
            version,
            flavor,
            server_id,
            log_bin,
            binlog_format,
            binlog_row_image,
            binlog_row_metadata,
            binlog_position,
            gtid_position,
            grants,
            databases,
        })
    }

    /// What keeps this server from being captured with every database included, each with
    /// what to change. Empty when capture can start. See [`capture_problems_for`].
    ///
    /// [`capture_problems_for`]: ServerInfo::capture_problems_for
    pub fn capture_problems(&self) -> Vec<String> {
        self.capture_problems_for(&Filter::default())
    }

    /// What keeps the tables `filter` includes from being captured, each with what to
    /// change: binlog settings, then missing privileges (see the module docs for what is
    /// checked). Empty when capture can start.
    pub fn capture_problems_for(&self, filter: &Filter) -> Vec<String> {
        let mut out = Vec::new();
        if !self.log_bin {
            out.push(
                "the binary log is off (log_bin = OFF): binlake reads changes from it. Enable it in the server config ([mysqld] or [mariadbd] section: log_bin = <basename> and a server_id) and restart the server"
                    .to_string(),
            );
        }
        if !self.binlog_format.eq_ignore_ascii_case("ROW") {
            out.push(format!(
                "binlog_format is {}, binlake needs ROW: run SET GLOBAL binlog_format = 'ROW' and put binlog_format = ROW in the server config (sessions already open keep the old format until they reconnect)",
                self.binlog_format
            ));
        }
        out.extend(self.grant_problem(filter));
        out
    }

    /// What a `binlog_row_image` other than `FULL` means for consumers (capture goes on
    /// with it), to log at start; `None` for `FULL`.
    pub fn row_image_note(&self) -> Option<String> {
        (!self.binlog_row_image.eq_ignore_ascii_case("FULL")).then(|| {
            format!(
                "binlog_row_image is {}: row images leave columns out; messages mark them in `absent`, the change log in `__absent`, and the replica takes them from the row it replaces (an INSERT's left-out columns come from the column defaults binlake knows, else they are NULL). SET GLOBAL binlog_row_image = 'FULL' for complete images",
                self.binlog_row_image
            )
        })
    }

    /// The privileges the account lacks, as one problem with the `GRANT` statements to run.
    fn grant_problem(&self, filter: &Filter) -> Option<String> {
        let grants = self.grants.as_ref()?;
        let mut missing: Vec<Needed> = [
            REPLICATION_SLAVE,
            monitor_privilege(self.flavor, &self.version),
            SHOW_DATABASES,
        ]
        .into_iter()
        .filter(|n| !grants.has_any_global(n.granted_by))
        .collect();
        let mut unreadable = Vec::new();
        // (what, statement) for databases readable only table by table.
        let mut hidden: Vec<(String, String)> = Vec::new();
        let grantee = grants.grantee();
        if !grants.has_any_global(SELECT.granted_by) {
            for db in self.databases.iter().filter(|db| {
                filter.database_included(db)
                    && grants.can_read_database(db)
                    && !grants.allows_database("SELECT", db)
            }) {
                let q = quote_ident(db);
                match filter.literal_tables_in(db) {
                    Some(tables) => {
                        for t in tables
                            .iter()
                            .filter(|t| !grants.allows("SELECT", db, t))
                        {
                            let name = format!("{q}.{}", quote_ident(t));
                            hidden.push((
                                format!("SELECT on {name} (to snapshot it: a table the account cannot read is hidden from it, so the snapshot would skip it while its binlog rows are still captured)"),
                                format!("GRANT SELECT ON {name} TO {grantee};"),
                            ));
                        }
                    }
                    None => hidden.push((
                        format!("SELECT on {q}.* (the account may read only some tables of {q}; the others are hidden from it, so the snapshot would skip them while their binlog rows are still captured. Or include only the readable tables by name in [source] include)"),
                        format!("GRANT SELECT ON {q}.* TO {grantee};"),
                    )),
                }
            }
            if grants.has_select_anywhere() {
                unreadable = self
                    .databases
                    .iter()
                    .filter(|db| filter.database_included(db) && !grants.can_read_database(db))
                    .cloned()
                    .collect();
            } else {
                missing.push(SELECT);
            }
        }
        if missing.is_empty() && unreadable.is_empty() && hidden.is_empty() {
            return None;
        }
        let mut what: Vec<String> = missing
            .iter()
            .map(|n| format!("{} (to {})", n.name, n.why))
            .collect();
        what.extend(
            unreadable
                .iter()
                .map(|db| format!("SELECT on {}.* (to snapshot its tables)", quote_ident(db))),
        );
        what.extend(hidden.iter().map(|(w, _)| w.clone()));
        let mut statements = Vec::new();
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|n| n.name).collect();
            statements.push(format!("GRANT {} ON *.* TO {grantee};", names.join(", ")));
        }
        for db in &unreadable {
            statements.push(format!(
                "GRANT SELECT ON {}.* TO {grantee};",
                quote_ident(db)
            ));
        }
        statements.extend(hidden.into_iter().map(|(_, g)| g));
        let mut msg = format!(
            "the account {grantee} lacks privileges binlake needs: {}. As an administrator, run:\n      {}",
            what.join(", "),
            statements.join("\n      ")
        );
        if let Some(first) = grants.inactive_roles.first() {
            let roles: Vec<String> = grants
                .inactive_roles
                .iter()
                .map(|r| quote_ident(r))
                .collect();
            // MariaDB activates one default role at login, MySQL any number.
            let activate = match self.flavor {
                Flavor::MariaDb => {
                    format!("SET DEFAULT ROLE {} FOR {grantee};", quote_ident(first))
                }
                Flavor::Mysql => format!("SET DEFAULT ROLE ALL TO {grantee};"),
            };
            msg.push_str(&format!(
                "\n    The account has roles that are not active at login, whose privileges do not count: {}. To use them instead, run:\n      {activate}",
                roles.join(", ")
            ));
        }
        Some(msg)
    }
}

/// A privilege binlake needs on `*.*`.
#[derive(Debug, Clone, Copy)]
struct Needed {
    /// The name to grant.
    name: &'static str,
    /// The names in `SHOW GRANTS` that give it.
    granted_by: &'static [&'static str],
    /// What binlake does with it.
    why: &'static str,
}

const REPLICATION_SLAVE: Needed = Needed {
    name: "REPLICATION SLAVE",
    granted_by: &["REPLICATION SLAVE", "REPLICATION REPLICA"],
    why: "read the binlog",
};

const SHOW_DATABASES: Needed = Needed {
    name: "SHOW DATABASES",
    granted_by: &["SHOW DATABASES"],
    why: "list the databases to snapshot",
};

const SELECT: Needed = Needed {
    name: "SELECT",
    granted_by: &["SELECT"],
    why: "snapshot tables and read their schemas",
};

/// The privilege that allows `SHOW MASTER STATUS`: `BINLOG MONITOR` on MariaDB ≥ 10.5
/// (where `REPLICATION CLIENT` is its old name), `REPLICATION CLIENT` elsewhere.
fn monitor_privilege(flavor: Flavor, version: &str) -> Needed {
    const WHY: &str = "read the binlog position with SHOW MASTER STATUS";
    if flavor == Flavor::MariaDb && mysql_at_least(version, 10, 5) {
        Needed {
            name: "BINLOG MONITOR",
            granted_by: &["BINLOG MONITOR", "REPLICATION CLIENT", "SUPER"],
            why: WHY,
        }
    } else {
        Needed {
            name: "REPLICATION CLIENT",
            granted_by: &["REPLICATION CLIENT", "SUPER"],
            why: WHY,
        }
    }
}

/// Reads the session's grants; `None` (with a warning) when they cannot be read.
async fn read_grants(conn: &mut Conn, flavor: Flavor) -> Option<Grants> {
    let warn = |what: &str, e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, "cannot read {what}; privileges are not checked");
    };
    let account: String = match conn.query_first("SELECT CURRENT_USER()").await {
        Ok(Some(a)) => a,
        Ok(None) => {
            warn("the current user", &"no row");
            return None;
        }
        Err(e) => {
            warn("the current user", &e);
            return None;
        }
    };
    // NULL (MariaDB) or NONE (MySQL) without an active role; an error before roles existed.
    let current_role: Option<String> = conn
        .query_first::<Option<String>, _>("SELECT CURRENT_ROLE()")
        .await
        .ok()
        .flatten()
        .flatten()
        .filter(|r: &String| !r.is_empty() && r != "NONE");
    let query = match (&current_role, flavor) {
        // MySQL's plain SHOW GRANTS leaves out what active roles give.
        (Some(roles), Flavor::Mysql) => format!("SHOW GRANTS FOR CURRENT_USER() USING {roles}"),
        _ => "SHOW GRANTS".to_string(),
    };
    let lines: Vec<String> = match conn.query(&query).await {
        Ok(l) => l,
        Err(e) => {
            warn("the grants", &e);
            return None;
        }
    };
    let active: Vec<String> = current_role
        .as_deref()
        .map(|r| {
            split_top_level(r, ',')
                .iter()
                .map(|r| role_name(r))
                .collect()
        })
        .unwrap_or_default();
    Some(Grants::parse(
        &account,
        lines.iter().map(String::as_str),
        &active,
    ))
}

/// The privileges of a session, parsed from `SHOW GRANTS` (see the module docs for what
/// counts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    /// The account the server matched the login to (`CURRENT_USER()`), as `user@host`.
    pub account: String,
    /// Privileges on `*.*` (`ALL` for `ALL PRIVILEGES`).
    global: BTreeSet<String>,
    /// Database-level grants: the name as a `LIKE` pattern, and the privileges.
    databases: Vec<(String, BTreeSet<String>)>,
    /// Table-level grants: database, table, privileges.
    tables: Vec<(String, String, BTreeSet<String>)>,
    /// Roles granted to the account but not active in its sessions.
    pub inactive_roles: Vec<String>,
}

impl Grants {
    /// Parses the lines of `SHOW GRANTS`. `account` is `CURRENT_USER()`, `active_roles` the
    /// roles active in the session. Lines that grant no privilege on a database object
    /// (`PROXY`, routines, column-level privileges) are ignored.
    pub fn parse<'a>(
        account: &str,
        lines: impl IntoIterator<Item = &'a str>,
        active_roles: &[String],
    ) -> Grants {
        let mut g = Grants {
            account: account.to_string(),
            ..Grants::default()
        };
        for line in lines {
            let Some(rest) = strip_prefix_ci(line.trim(), "GRANT ") else {
                continue;
            };
            let Some(on) = find_top_level(rest, " ON ") else {
                // `GRANT role TO account`: a role granted to this account (or to a role).
                if let Some(to) = find_top_level(rest, " TO ") {
                    let grantee = &rest[to + 4..];
                    if grantee.contains('@') {
                        for role in split_top_level(&rest[..to], ',') {
                            let role = role_name(&role);
                            if !active_roles.contains(&role) && !g.inactive_roles.contains(&role) {
                                g.inactive_roles.push(role);
                            }
                        }
                    }
                }
                continue;
            };
            let object = &rest[on + 4..];
            let object = match find_top_level(object, " TO ") {
                Some(to) => object[..to].trim(),
                None => object.trim(),
            };
            let privileges: BTreeSet<String> = split_top_level(&rest[..on], ',')
                .into_iter()
                .filter(|p| !p.contains('('))
                .map(|p| {
                    let p = p.split_whitespace().collect::<Vec<_>>().join(" ");
                    let p = p.to_ascii_uppercase();
                    if p == "ALL PRIVILEGES" {
                        "ALL".to_string()
                    } else {
                        p
                    }
                })
                .collect();
            if privileges.is_empty() {
                continue;
            }
            match parse_object(object) {
                Some((None, None)) => g.global.extend(privileges),
                Some((Some(db), None)) => g.databases.push((db, privileges)),
                Some((Some(db), Some(table))) => g.tables.push((db, table, privileges)),
                _ => {}
            }
        }
        g
    }

    /// True when one of `privileges` (or `ALL`) is granted on `*.*`.
    pub fn has_any_global(&self, privileges: &[&str]) -> bool {
        self.global.contains("ALL") || privileges.iter().any(|p| self.global.contains(*p))
    }

    /// True when `privilege` applies to every table of `db` (granted on `*.*` or `db.*`).
    pub fn allows_database(&self, privilege: &str, db: &str) -> bool {
        self.has_any_global(&[privilege])
            || self
                .databases
                .iter()
                .any(|(pat, ps)| grants(ps, privilege) && like(pat, db))
    }

    /// True when `privilege` applies to table `db.table`.
    pub fn allows(&self, privilege: &str, db: &str, table: &str) -> bool {
        self.allows_database(privilege, db)
            || self
                .tables
                .iter()
                .any(|(d, t, ps)| grants(ps, privilege) && d == db && t == table)
    }

    /// True when the account may read `db` as the start-up check counts it: `SELECT` on
    /// the database, or on some of its tables.
    fn can_read_database(&self, db: &str) -> bool {
        self.allows_database("SELECT", db)
            || self
                .tables
                .iter()
                .any(|(d, _, ps)| grants(ps, "SELECT") && d == db)
    }

    /// True when `SELECT` is granted on anything.
    fn has_select_anywhere(&self) -> bool {
        self.has_any_global(&["SELECT"])
            || self.databases.iter().any(|(_, ps)| grants(ps, "SELECT"))
            || self.tables.iter().any(|(_, _, ps)| grants(ps, "SELECT"))
    }

    /// The account as a `GRANT` statement names it: `'user'@'host'`.
    pub fn grantee(&self) -> String {
        let (user, host) = self
            .account
            .rsplit_once('@')
            .unwrap_or((self.account.as_str(), "%"));
        let q = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"));
        format!("{}@{}", q(user), q(host))
    }
}

fn grants(privileges: &BTreeSet<String>, privilege: &str) -> bool {
    privileges.contains("ALL") || privileges.contains(privilege)
}

/// `s` without `prefix`, compared case-insensitively.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The byte offset of `needle` (ASCII, matched case-insensitively) outside quotes and
/// parentheses.
fn find_top_level(s: &str, needle: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut quote: Option<u8> = None;
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'`' | b'\'' | b'"' => quote = Some(b),
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                _ if depth == 0
                    && s.get(i..i + needle.len())
                        .is_some_and(|w| w.eq_ignore_ascii_case(needle)) =>
                {
                    return Some(i);
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// `s` split at `sep` outside quotes and parentheses, each part trimmed.
fn split_top_level(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '`' | '\'' | '"' => quote = Some(c),
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ if c == sep && depth == 0 => {
                    out.push(cur.trim().to_string());
                    cur.clear();
                    continue;
                }
                _ => {}
            },
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The name of a role as `SHOW GRANTS` or `CURRENT_ROLE()` spells it (`` `r` ``,
/// `` `r`@`%` ``, `r`), without quotes and host.
fn role_name(s: &str) -> String {
    let (name, _) = read_ident(s.trim()).unwrap_or_else(|| (s.trim().to_string(), ""));
    name
}

/// Reads one identifier (backtick-, quote- or un-quoted) from the start of `s`; returns it
/// and the rest.
fn read_ident(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices().peekable();
    let (_, first) = *chars.peek()?;
    if first == '`' || first == '\'' || first == '"' {
        chars.next();
        let mut name = String::new();
        while let Some((i, c)) = chars.next() {
            if c == first {
                if chars.peek().is_some_and(|&(_, n)| n == first) {
                    chars.next();
                    name.push(first);
                } else {
                    return Some((name, &s[i + c.len_utf8()..]));
                }
            } else {
                name.push(c);
            }
        }
        None
    } else {
        let end = s
            .char_indices()
            .find(|&(_, c)| c == '.' || c == '@' || c.is_whitespace())
            .map_or(s.len(), |(i, _)| i);
        (end > 0).then(|| (s[..end].to_string(), &s[end..]))
    }
}

/// Parses a grant's object: `*.*` is `(None, None)`, `` `db`.* `` is `(Some(db), None)`,
/// `` `db`.`t` `` is `(Some(db), Some(t))`. Routines, proxies and anything else: `None`.
fn parse_object(object: &str) -> Option<(Option<String>, Option<String>)> {
    let part = |s: &str| -> Option<(Option<String>, usize)> {
        if s.starts_with('*') {
            Some((None, 1))
        } else {
            let (name, rest) = read_ident(s)?;
            Some((Some(name), s.len() - rest.len()))
        }
    };
    let (db, used) = part(object)?;
    let rest = object[used..].strip_prefix('.')?;
    let (table, used) = part(rest)?;
    if !rest[used..].trim().is_empty() || (db.is_none() && table.is_some()) {
        return None;
    }
    Some((db, table))
}

/// SQL `LIKE` as database-level grants use it: `%`, `_`, and `\` to escape.
fn like(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('%', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some(('_', rest)) => !s.is_empty() && go(rest, &s[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                s.first() == Some(&rest[0]) && go(&rest[1..], &s[1..])
            }
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

/// `name` quoted with backticks.
fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// True when a MySQL version string is at least `major.minor`.
fn mysql_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    v >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_greeting_says_whether_the_server_offers_tls() {
        let greeting = |caps: u16| {
            let mut p = vec![10];
            p.extend_from_slice(b"10.11.6-MariaDB\0");
            p.extend_from_slice(&[1, 0, 0, 0]);
            p.extend_from_slice(b"12345678\0");
            p.extend_from_slice(&caps.to_le_bytes());
            p
        };
        // 0xf7fe: a MariaDB without TLS; with TLS it sets 0x0800 too.
        assert!(greeting_offers_tls(&greeting(0xf7fe | 0x0800)));
        assert!(!greeting_offers_tls(&greeting(0xf7fe)));
        assert!(!greeting_offers_tls(&greeting(0x0800)[..20]));
        assert!(!greeting_offers_tls(&[9, 0]));
        assert!(!greeting_offers_tls(&[]));
    }

    fn mariadb(grants: &[&str], databases: &[&str]) -> ServerInfo {
        ServerInfo {
            version: "10.11.6-MariaDB".into(),
            flavor: Flavor::MariaDb,
            server_id: 1,
            log_bin: true,
            binlog_format: "ROW".into(),
            binlog_row_image: "FULL".into(),
            binlog_row_metadata: Some("FULL".into()),
            binlog_position: None,
            gtid_position: None,
            grants: Some(Grants::parse(
                "binlake@10.0.0.%",
                grants.iter().copied(),
                &[],
            )),
            databases: databases.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn parses_show_grants() {
        let g = Grants::parse(
            "cdc@%",
            [
                "GRANT SELECT, SHOW DATABASES, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `cdc`@`%` IDENTIFIED BY PASSWORD '*098B'",
                "GRANT ALL PRIVILEGES ON `shop`.* TO `cdc`@`%`",
                "GRANT SELECT ON `sh\\_%`.* TO `cdc`@`%`",
                "GRANT SELECT, INSERT ON `crm`.`users` TO `cdc`@`%`",
                "GRANT SELECT (`a`, `b`), UPDATE (`c`) ON `crm`.`t` TO `cdc`@`%`",
                "GRANT EXECUTE ON PROCEDURE `crm`.`p` TO `cdc`@`%`",
                "GRANT PROXY ON ''@'%' TO 'cdc'@'%'",
                "GRANT `reader` TO `cdc`@`%`",
                "GRANT `nested` TO `reader`",
            ],
            &[],
        );
        assert!(g.has_any_global(&["REPLICATION SLAVE"]));
        assert!(g.has_any_global(&["BINLOG MONITOR"]));
        assert!(!g.has_any_global(&["SUPER"]));
        assert!(g.allows("INSERT", "shop", "x"));
        assert!(g.allows_database("SELECT", "sh_1"));
        assert!(!g.allows("INSERT", "sh_1", "x"));
        assert!(g.allows("INSERT", "crm", "users"));
        assert!(!g.allows("INSERT", "crm", "other"));
        assert!(
            !g.allows("UPDATE", "crm", "t"),
            "column grants do not count"
        );
        assert_eq!(g.inactive_roles, vec!["reader".to_string()]);
        assert_eq!(g.grantee(), "'cdc'@'%'");
        assert_eq!(
            Grants::parse("o'k@h", [], &[]).grantee(),
            "'o''k'@'h'",
            "quotes are doubled"
        );
    }

    #[test]
    fn all_privileges_cover_everything() {
        let info = mariadb(
            &["GRANT ALL PRIVILEGES ON *.* TO `binlake`@`10.0.0.%`"],
            &["shop"],
        );
        assert!(
            info.capture_problems().is_empty(),
            "{:?}",
            info.capture_problems()
        );
    }

    #[test]
    fn tables_hidden_by_table_level_grants_are_named() {
        let info = mariadb(
            &[
                "GRANT REPLICATION SLAVE, BINLOG MONITOR, SHOW DATABASES ON *.* TO `binlake`@`10.0.0.%`",
                "GRANT SELECT ON `shop`.`orders` TO `binlake`@`10.0.0.%`",
            ],
            &["shop"],
        );
        let filter = |include: &[&str]| {
            let include: Vec<String> = include.iter().map(|s| s.to_string()).collect();
            Filter::new(&include, &[], &[]).expect("valid patterns")
        };
        let problems = info.capture_problems_for(&filter(&["shop.*"]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("GRANT SELECT ON `shop`.* TO 'binlake'@'10.0.0.%';"),
            "{}",
            problems[0]
        );
        let problems = info.capture_problems_for(&filter(&["shop.orders", "shop.items"]));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("GRANT SELECT ON `shop`.`items` TO 'binlake'@'10.0.0.%';"),
            "{}",
            problems[0]
        );
        assert!(!problems[0].contains("`orders`"), "{}", problems[0]);
        let problems = info.capture_problems_for(&filter(&["shop.orders"]));
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn names_the_missing_grants_as_a_statement() {
        let info = mariadb(&["GRANT USAGE ON *.* TO `binlake`@`10.0.0.%`"], &["shop"]);
        let problems = info.capture_problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(
                "GRANT REPLICATION SLAVE, BINLOG MONITOR, SHOW DATABASES, SELECT ON *.* TO 'binlake'@'10.0.0.%';"
            ),
            "{}",
            problems[0]
        );
        let mut mysql = info.clone();
        mysql.flavor = Flavor::Mysql;
        mysql.version = "8.0.36".into();
        assert!(
            mysql.capture_problems()[0].contains("GRANT REPLICATION SLAVE, REPLICATION CLIENT,"),
            "{:?}",
            mysql.capture_problems()
        );
    }

    #[test]
    fn database_select_covers_only_that_database() {
        let info = mariadb(
            &[
                "GRANT REPLICATION SLAVE, BINLOG MONITOR, SHOW DATABASES ON *.* TO `binlake`@`10.0.0.%`",
                "GRANT SELECT ON `shop`.* TO `binlake`@`10.0.0.%`",
            ],
            &["shop", "crm", "information_schema", "mysql"],
        );
        let shop = Filter::new(&["shop.*".into()], &[], &[]).expect("filter");
        assert!(info.capture_problems_for(&shop).is_empty());
        let problems = info.capture_problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("GRANT SELECT ON `crm`.* TO 'binlake'@'10.0.0.%';")
                && !problems[0].contains("`shop`")
                && !problems[0].contains("`mysql`"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn inactive_roles_are_named_with_how_to_activate_them() {
        let mut info = mariadb(
            &[
                "GRANT USAGE ON *.* TO `binlake`@`10.0.0.%`",
                "GRANT `cdc` TO `binlake`@`10.0.0.%`",
            ],
            &[],
        );
        assert!(
            info.capture_problems()[0]
                .ends_with("SET DEFAULT ROLE `cdc` FOR 'binlake'@'10.0.0.%';"),
            "{:?}",
            info.capture_problems()
        );
        info.flavor = Flavor::Mysql;
        info.version = "8.4.0".into();
        info.grants = Some(Grants::parse(
            "binlake@10.0.0.%",
            [
                "GRANT USAGE ON *.* TO `binlake`@`10.0.0.%`",
                "GRANT `cdc`@`%` TO `binlake`@`10.0.0.%`",
            ],
            &[],
        ));
        assert!(
            info.capture_problems()[0].ends_with(
                "roles that are not active at login, whose privileges do not count: `cdc`. To use them instead, run:\n      SET DEFAULT ROLE ALL TO 'binlake'@'10.0.0.%';"
            ),
            "{:?}",
            info.capture_problems()
        );
        // Active roles' grants are listed by SHOW GRANTS ... USING and count.
        info.grants = Some(Grants::parse(
            "binlake@10.0.0.%",
            [
                "GRANT USAGE ON *.* TO `binlake`@`10.0.0.%`",
                "GRANT REPLICATION SLAVE, REPLICATION CLIENT, SHOW DATABASES, SELECT ON *.* TO `binlake`@`10.0.0.%`",
                "GRANT `cdc`@`%` TO `binlake`@`10.0.0.%`",
            ],
            &["cdc".to_string()],
        ));
        assert!(
            info.capture_problems().is_empty(),
            "{:?}",
            info.capture_problems()
        );
    }

    #[test]
    fn like_patterns() {
        assert!(like("shop", "shop"));
        assert!(!like("shop", "shops"));
        assert!(like("sh%", "shop"));
        assert!(like("s_op", "shop"));
        assert!(like("sh\\_1", "sh_1"));
        assert!(!like("sh\\_1", "shx1"));
    }

    #[test]
    fn version_comparison() {
        assert!(mysql_at_least("8.4.0", 8, 2));
        assert!(mysql_at_least("9.1.0-commercial", 8, 2));
        assert!(!mysql_at_least("8.0.36-log", 8, 2));
        assert!(!mysql_at_least("5.7.44", 8, 2));
    }
}
