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

pub use config::{SourceConfig, TlsMode};
pub use error::{Error, Result};
pub use server::{Grants, ServerInfo, connect};
