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
    /// The store refused binlake (permissions, credentials, a read-only file system):
    /// retrying does not help until an operator acts.
    #[error(
        "lake storage {operation} was refused: {reason}; check that binlake may read and write there ([lake] root, and the credentials in [lake.storage])"
    )]
    Refused {
        /// What binlake was doing (with the path).
        operation: String,
        /// The store's message.
        reason: String,
    },
    /// One of binlake's own records (a run checkpoint, a schema history, a signal) is not
    /// what binlake writes: damaged or written by something else.
    #[error(
        "{path} is not a record binlake can read ({reason}): it was damaged, or written by something else or by a newer binlake; restore it from a backup, or remove it (a removed run checkpoint makes `binlake run` start over with a new snapshot)"
    )]
    Corrupt {
        /// The object.
        path: String,
        /// What is wrong with it.
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
        let reason = e.to_string();
        Error::Delta {
            table: table.to_string(),
            operation: operation.to_string(),
            transient: transient && !refused(&reason) && !corrupt_log(&reason),
            reason,
        }
    }

    pub(crate) fn storage(operation: impl Into<String>, e: impl std::fmt::Display) -> Self {
        let (operation, reason) = (operation.into(), e.to_string());
        if refused(&reason) {
            Error::Refused { operation, reason }
        } else {
            Error::Storage { operation, reason }
        }
    }
}

/// Whether a store's message says it refused binlake (no retry helps until an operator
/// acts): file-system permissions or a read-only mount, an object store's 401/403.
fn refused(reason: &str) -> bool {
    const REFUSED: [&str; 10] = [
        "Permission denied",
        "Operation not permitted",
        "Read-only file system",
        "Not a directory",
        "403 Forbidden",
        "401 Unauthorized",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidSecurity",
    ];
    REFUSED.iter().any(|m| reason.contains(m))
}

/// Whether delta-rs says a table's log cannot be parsed (a damaged commit file).
fn corrupt_log(reason: &str) -> bool {
    // Commit files are written whole (put-if-absent), so a file that does not parse is
    // damaged, not half-written.
    const CORRUPT: [&str; 5] = [
        "Invalid JSON",
        "invalid JSON",
        "Json error",
        "Failed to parse",
        "Invalid table version",
    ];
    CORRUPT.iter().any(|m| reason.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_damaged_logs_are_definite() {
        let s = |r: &str| Error::storage("write x", r);
        assert!(s("Generic S3 error: connection reset").is_transient());
        assert!(
            !s("Client error with status 403 Forbidden: <Code>SignatureDoesNotMatch</Code>")
                .is_transient()
        );
        assert!(!s("Unable to open file /l/x: Permission denied (os error 13)").is_transient());
        assert!(!s("Read-only file system (os error 30)").is_transient());
        let d = |r: &str| Error::delta("t", "load", r, true);
        assert!(d("Generic DeltaTable error: timeout").is_transient());
        assert!(!d("Invalid JSON in log record, version=3").is_transient());
        assert!(
            !d("Kernel error: Json error: Encountered unexpected 'g' whilst parsing value")
                .is_transient()
        );
        assert!(!d("Permission denied (os error 13)").is_transient());
    }
}
