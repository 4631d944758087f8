//! What the primary says about itself: flavour, version, binlog settings and position.

use binlake_core::{BinlogFilePos, Flavor, MariaDbGtidPos, MysqlGtidSet, ResumePosition};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::config::SourceConfig;
use crate::error::{Error, Result};

/// Opens a connection to the primary, within `connect_timeout`.
pub async fn connect(cfg: &SourceConfig) -> Result<Conn> {
    let target = cfg.describe();
    match tokio::time::timeout(cfg.connect_timeout, Conn::new(cfg.opts())).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(Error::Connect {
            target,
            reason: e.to_string(),
        }),
        Err(_) => Err(Error::Connect {
            target,
            reason: format!(
                "no answer within {:?} (source.connect_timeout); is the server up and the address right?",
                cfg.connect_timeout
            ),
        }),
    }
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
    /// `@@binlog_row_image`: must be `FULL`.
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
}

impl ServerInfo {
    /// Asks the server. Needs only the capture user's grants.
    pub async fn probe(conn: &mut Conn, cfg: &SourceConfig) -> Result<ServerInfo> {
        let target = cfg.describe();
        let q = |query: &'static str| {
            let target = target.clone();
            move |e: mysql_async::Error| Error::Query {
                target,
                query: query.to_string(),
                reason: e.to_string(),
            }
        };
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
        let log_bin = log_bin == 1;
        let binlog_position = if log_bin {
            let status = if flavor == Flavor::Mysql && mysql_at_least(&version, 8, 2) {
                "SHOW BINARY LOG STATUS"
            } else {
                "SHOW MASTER STATUS"
            };
            let row: Option<mysql_async::Row> =
                conn.query_first(status).await.map_err(q(status))?;
            row.and_then(|r| {
                let file: Option<String> = r.get(0);
                let pos: Option<u64> = r.get(1);
                Some(BinlogFilePos::new(file?, pos?))
            })
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
        })
    }

    /// What keeps this server from being captured, each with what to change. Empty when
    /// the binlog settings are right.
    pub fn capture_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.log_bin {
            out.push(
                "the binary log is off: start the server with log_bin (and server_id) set; binlake reads changes from it"
                    .to_string(),
            );
        }
        if !self.binlog_format.eq_ignore_ascii_case("ROW") {
            out.push(format!(
                "binlog_format is {}, binlake needs ROW: SET GLOBAL binlog_format = 'ROW' and put binlog_format=ROW in the server config",
                self.binlog_format
            ));
        }
        if !self.binlog_row_image.eq_ignore_ascii_case("FULL") {
            out.push(format!(
                "binlog_row_image is {}, binlake needs FULL (every column in every row image): SET GLOBAL binlog_row_image = 'FULL' and put it in the server config",
                self.binlog_row_image
            ));
        }
        out
    }
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
    fn version_comparison() {
        assert!(mysql_at_least("8.4.0", 8, 2));
        assert!(mysql_at_least("9.1.0-commercial", 8, 2));
        assert!(!mysql_at_least("8.0.36-log", 8, 2));
        assert!(!mysql_at_least("5.7.44", 8, 2));
    }
}
