//! Errors of the MySQL connector.

/// Result alias of the MySQL connector.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to the primary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached or refused the connection. Transient unless the
    /// credentials are wrong or the account may not connect from this host.
    #[error("cannot connect to MySQL/MariaDB at {target}: {reason}")]
    Connect {
        /// `user@host:port`.
        target: String,
        /// The client's message.
        reason: String,
    },
    /// A query failed.
    #[error("query `{query}` failed on {target}: {reason}")]
    Query {
        /// `user@host:port`.
        target: String,
        /// The statement.
        query: String,
        /// The server's or client's message.
        reason: String,
    },
    /// The server's settings or the account's privileges do not allow capture; each
    /// problem says what to change.
    #[error("{target} cannot be captured until this is fixed:\n  - {}", problems.join("\n  - "))]
    Requirement {
        /// `user@host:port`.
        target: String,
        /// What to change, one entry per setting.
        problems: Vec<String>,
    },
    /// The position to resume from is no longer in the primary's binlog.
    #[error(
        "the resume position {position} is no longer in the binlog of {target} (purged): changes after it are lost to binlake. Re-snapshot the tables (snapshot mode `when_needed` does it automatically) and keep binlogs longer (binlog_expire_logs_seconds / expire_logs_days). Server said: {reason}"
    )]
    PositionPurged {
        /// `user@host:port`.
        target: String,
        /// The position asked for.
        position: String,
        /// The server's message.
        reason: String,
    },
    /// Another replica uses binlake's server id.
    #[error(
        "another replica of {target} uses server_id {server_id}: set source.server_id to an id no other server or replica uses"
    )]
    ServerIdInUse {
        /// `user@host:port`.
        target: String,
        /// The id in conflict.
        server_id: u32,
    },
    /// A binlog event could not be decoded.
    #[error("{0}")]
    Decode(String),
    /// The server answered something binlake does not understand.
    #[error("unexpected answer from {target}: {reason}")]
    Unexpected {
        /// `user@host:port`.
        target: String,
        /// What was unexpected.
        reason: String,
    },
}

impl Error {
    /// A function turning a client error of `query` on `target` into [`Error::Query`], for
    /// `map_err`.
    pub(crate) fn query(
        target: &str,
        query: &str,
    ) -> impl FnOnce(mysql_async::Error) -> Error + use<> {
        let (target, query) = (target.to_string(), query.to_string());
        move |e| Error::Query {
            target,
            query,
            reason: e.to_string(),
        }
    }

    /// True when retrying later may succeed (network trouble, a restarting server), false
    /// when an operator must act first.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { reason, .. } => {
                !(reason.contains("Access denied")
                    || reason.contains("1045")
                    || reason.contains("is not allowed to connect")
                    // TLS misconfiguration does not fix itself.
                    || reason.contains("TLS handshake failed")
                    || reason.contains("does not offer TLS"))
            }
            Error::Query { reason, .. } => connection_lost(reason),
            Error::Unexpected { .. }
            | Error::Requirement { .. }
            | Error::PositionPurged { .. }
            | Error::ServerIdInUse { .. }
            | Error::Decode(_) => false,
        }
    }

    /// True when a read failed because its table changed on the server under it: a
    /// column or the table is gone (server errors 1054, 1146), or the table was recreated
    /// (TRUNCATE, a copying ALTER) after the read's consistent snapshot began (1412, "Table
    /// definition has changed"). A snapshot reader reads such a range again once the
    /// stream has reached the DDL.
    pub fn is_schema_race(&self) -> bool {
        const RACES: [&str; 3] = ["ERROR 1054 ", "ERROR 1146 ", "ERROR 1412 "];
        matches!(self, Error::Query { reason, .. } if RACES.iter().any(|c| reason.contains(c)))
    }
}

/// Whether a client's or server's message says the connection went away (the server
/// restarting or shutting down, the network, a killed connection) rather than that the
/// statement itself failed: retrying on a new connection may succeed.
fn connection_lost(reason: &str) -> bool {
    const LOST: [&str; 10] = [
        "Lost connection",
        "broken pipe",
        "Broken pipe",
        "Input/output error",
        "connection closed",
        "Connection reset",
        "server has gone away",
        "Server shutdown in progress",
        "Connection was killed",
        "Connection refused",
    ];
    LOST.iter().any(|m| reason.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_on_a_lost_connection_is_transient() {
        let q = |reason: &str| Error::Query {
            target: "u@h:1".into(),
            query: "START TRANSACTION".into(),
            reason: reason.into(),
        };
        // As mysql_async words a connection closed by a restarting server.
        assert!(q("Input/output error: Input/output error: connection closed").is_transient());
        assert!(
            q("Server error: `ERROR 08S01 (1053): Server shutdown in progress'").is_transient()
        );
        assert!(!q("Server error: `ERROR 42S02 (1146): Table 'd.t' doesn't exist'").is_transient());
        assert!(!q("Server error: `ERROR 42000 (1142): SELECT command denied'").is_transient());
    }
}
