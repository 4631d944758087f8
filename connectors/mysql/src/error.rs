//! Errors of the MySQL connector.

/// Result alias of the MySQL connector.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to the primary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server could not be reached or refused the connection. Transient unless the
    /// credentials are wrong.
    #[error("cannot connect to MySQL at {target}: {reason}")]
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
    /// True when retrying later may succeed (network trouble, a restarting server), false
    /// when an operator must act first.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { reason, .. } => {
                !(reason.contains("Access denied") || reason.contains("1045"))
            }
            Error::Query { reason, .. } => {
                reason.contains("Lost connection") || reason.contains("broken pipe")
            }
            Error::Unexpected { .. } => false,
        }
    }
}
