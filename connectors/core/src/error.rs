//! Errors of the core crate: parsing positions and decoding messages.

/// Result alias of the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the core crate. All of these are definite: retrying the same input
/// gives the same error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A GTID, GTID set or binlog position string could not be parsed.
    #[error("invalid {what} `{input}`: {reason}")]
    InvalidPosition {
        /// What was being parsed, e.g. "MySQL GTID set".
        what: &'static str,
        /// The input, as given.
        input: String,
        /// Why it is not valid.
        reason: String,
    },
    /// A value does not fit the column it belongs to.
    #[error("{table}.{column}: {reason}")]
    InvalidValue {
        /// `db.table`.
        table: String,
        /// The column name.
        column: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// A message could not be decoded as a Debezium envelope or key of the given table.
    #[error("cannot decode Debezium message for {table}: {reason}")]
    Decode {
        /// `db.table`.
        table: String,
        /// What is wrong with the message.
        reason: String,
    },
}
