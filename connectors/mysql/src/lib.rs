//! binlake's MySQL/MariaDB side: the `[source]` config, connections, and what the
//! primary reports about itself (flavour, binlog settings, current binlog position).
//!
//! Architecture invariant: only this crate speaks the MySQL protocol.
//!
//! The binlog replication client, event decoding and snapshots build on this crate's
//! [`SourceConfig`] and [`ServerInfo`].

#![warn(missing_docs)]

pub mod binlog;
mod config;
mod error;
pub mod schema_history;
mod server;
pub mod snapshot;
pub mod values;

/// The MySQL/MariaDB binlog fixtures beside the repository (`../shared/fixtures/binlogs`),
/// for tests: the file `name` in it (the folder itself for `""`). A missing fixture fails
/// the test that needs it, never skips it.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/binlogs")
        .join(name);
    assert!(
        p.exists(),
        "fixture {} is missing: the tests read the shared binlog fixtures from \
         ../shared/fixtures/binlogs beside the repository",
        p.display()
    );
    p
}

pub use config::{SourceConfig, TlsMode};
pub use error::{Error, Result};
pub use server::{Grants, ServerInfo, connect};
