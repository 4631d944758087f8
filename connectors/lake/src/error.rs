//! Errors of the lake connector.

/// Result alias of the lake connector.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong writing or reading the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage location or its settings are wrong.
    #[error("lake storage {location}: {reason}")]
    Config {
        /// The root URL or path.
        location: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Reading or writing object storage failed.
    #[error("lake storage {operation} failed: {reason}")]
    Storage {
        /// What binlake was doing (with the path).
        operation: String,
        /// The store's message.
        reason: String,
    },
    /// A Delta Lake operation failed.
    #[error("Delta table {table}: {operation} failed: {reason}")]
    Delta {
        /// The table's location.
        table: String,
        /// What binlake was doing.
        operation: String,
        /// delta-rs' message.
        reason: String,
        /// Whether retrying (after reloading the table) may succeed.
        transient: bool,
    },
    /// A value does not fit the column it is written to.
    #[error("{table}.{column}: {reason}")]
    Value {
        /// `db.table`.
        table: String,
        /// The column.
        column: String,
        /// Why.
        reason: String,
    },
    /// The table's schema changed in a way the replica cannot follow.
    #[error(
        "{table}: {reason}; the replica stops here. Re-snapshot the table: exclude it from this config ([source] exclude) and restart, delete {location}, then capture it with a config of its own (another `name`), whose initial snapshot rebuilds it"
    )]
    IncompatibleSchema {
        /// `db.table`.
        table: String,
        /// The change.
        reason: String,
        /// The table folder to delete.
        location: String,
    },
    /// The table has no primary key and no configured key columns: a replica cannot
    /// identify its rows. Callers skip the table and go on with the others.
    #[error(
        "{table} has no primary key, so a replica cannot identify its rows: binlake keeps no change log or replica of it. Name the columns that identify its rows (unique, NOT NULL) in [source] key_columns, e.g. key_columns = {{ \"{table}\" = [\"id\"] }}, restart capture (or run), then read its existing rows with `binlake snapshot --table {table}`"
    )]
    NoKey {
        /// `db.table`.
        table: String,
    },
    /// A query failed.
    #[error("query failed: {0}")]
    Query(String),
}

impl Error {
    /// Whether retrying (after reloading state) may succeed: storage hiccups and commit
    /// conflicts are transient, bad values and schema changes are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Storage { .. } => true,
            Error::Delta { transient, .. } => *transient,
            _ => false,
        }
    }

    pub(crate) fn delta(
        table: &str,
        operation: &str,
        e: impl std::fmt::Display,
        transient: bool,
    ) -> Self {
        Error::Delta {
            table: table.to_string(),
            operation: operation.to_string(),
            reason: e.to_string(),
            transient,
        }
    }

    pub(crate) fn storage(operation: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Error::Storage {
            operation: operation.into(),
            reason: e.to_string(),
        }
    }
}
