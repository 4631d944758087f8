//! binlake's Kafka side: the `[kafka]` config with client-setting passthrough, the
//! transactional (idempotent) producer, the `read_committed` consumer and topic admin.
//!
//! Architecture invariant: only this crate speaks Kafka. librdkafka is bundled (built from
//! source by rdkafka's `cmake-build`), so binlake never depends on the distribution's
//! older librdkafka.
//!
//! # Error handling
//!
//! Every [`Error`] says whether it is transient ([`Error::is_transient`]): a broker that is
//! down or restarting is transient, a refused setting or a fenced producer is not.

#![warn(missing_docs)]

pub mod capture;
mod client;
mod config;
pub mod consume;
mod error;
pub mod signals;
pub mod topics;

pub use capture::{CaptureConfig, CaptureStats, CaptureWriter, StoredPosition};
pub use client::{TopicSpec, ensure_topic, read_committed_consumer, transactional_producer};
pub use config::KafkaConfig;
pub use consume::{Assignment, ChangeConsumer, Consumed};
pub use error::{ClientErrors, Error, Result};
/// rdkafka types callers need to hold producers and consumers.
pub use rdkafka;
pub use topics::TopicNaming;
