//! Integration tests: one binary, against the real services that `tests/services/*.sh`
//! start (a private MariaDB and a KRaft Kafka broker). `make test` starts them; to run
//! these by hand: `tests/services/all.sh start && cargo test --test it`.
//!
//! Each test uses its own database, topics and folders, so they run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alt_mariadb;
mod binlog;
mod broker_restart;
mod capture;
mod cli;
mod column_order;
mod faults;
mod http;
mod kafka;
mod kafka_compat;
mod kafka_tls;
mod lake;
mod mariadb;
mod row_images;
mod schema_history;
mod services;
mod snapshot;
mod startup;
mod tls;
mod verify;
