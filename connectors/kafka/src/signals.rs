//! Signals to a running capture through `<name>.signals`: `binlake snapshot --table`
//! writes an `execute-snapshot` request there (Debezium's signal shape), the capture reads
//! it while it streams and snapshots the tables named. `binlake verify --repair` writes
//! the same signal with binlake's `key-ranges` (the differing keys' ranges) instead of
//! whole tables.
//!
//! Each signal is acted on once: the capture records the offset after the last signal it
//! took in its position record, in the same Kafka transaction as the snapshot progress
//! that now includes the requested tables. A crash before that commit reads the signal
//! again; after it, never.

use std::collections::BTreeMap;

use binlake_core::KeyRange;
use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::client::{TopicSpec, ensure_topic};
use crate::config::KafkaConfig;
use crate::error::{ClientErrors, Error, Result};

/// The signal topic of capture `name`.
pub fn signals_topic(name: &str) -> String {
    format!("{name}.signals")
}

/// A signal record's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// `execute-snapshot`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What to do.
    pub data: SignalData,
}

/// The data of an `execute-snapshot` signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalData {
    /// The tables to snapshot, `db.table`.
    #[serde(rename = "data-collections")]
    pub data_collections: Vec<String>,
    /// `incremental` (the only kind binlake runs: watermark-based, while streaming).
    #[serde(rename = "type", default = "incremental")]
    pub kind: String,
    /// binlake's addition (`binlake verify --repair`): key ranges of tables to read again,
    /// with the keys to delete when the primary does not have them.
    #[serde(rename = "key-ranges", default, skip_serializing_if = "Vec::is_empty")]
    pub key_ranges: Vec<KeyRange>,
}

fn incremental() -> String {
    "incremental".into()
}

async fn ensure_signals_topic(kafka: &KafkaConfig, name: &str, replication: i32) -> Result<()> {
    ensure_topic(
        kafka,
        &TopicSpec {
            name: signals_topic(name),
            partitions: 1,
            replication_factor: replication,
            configs: BTreeMap::new(),
        },
    )
    .await
}

/// Asks capture `name` to snapshot `tables` (`db.table`) while it streams.
pub async fn request_snapshot(
    kafka: &KafkaConfig,
    name: &str,
    tables: &[String],
    replication: i32,
) -> Result<()> {
    send_signal(kafka, name, tables, &[], replication).await
}

/// Asks capture `name` to read `ranges` again while it streams (`binlake verify
/// --repair`): an `execute-snapshot` signal with binlake's `key-ranges` and no whole table.
pub async fn request_ranges(
    kafka: &KafkaConfig,
    name: &str,
    ranges: &[KeyRange],
    replication: i32,
) -> Result<()> {
    send_signal(kafka, name, &[], ranges, replication).await
}

async fn send_signal(
    kafka: &KafkaConfig,
    name: &str,
    tables: &[String],
    ranges: &[KeyRange],
    replication: i32,
) -> Result<()> {
    ensure_signals_topic(kafka, name, replication).await?;
    let producer: FutureProducer<ClientErrors> = kafka
        .client_config()
        .set("enable.idempotence", "true")
        .create_with_context(ClientErrors)
        .map_err(|e| Error::config(&e))?;
    let value = serde_json::to_vec(&Signal {
        kind: "execute-snapshot".into(),
        data: SignalData {
            data_collections: tables.to_vec(),
            kind: incremental(),
            key_ranges: ranges.to_vec(),
        },
    })
    .map_err(|e| Error::Encode(e.to_string()))?;
    let topic = signals_topic(name);
    producer
        .send(
            FutureRecord::to(&topic).key(name).payload(&value),
            kafka.request_timeout,
        )
        .await
        .map_err(|(e, _)| Error::client(format!("write to {topic}"), &e))?;
    Ok(())
}

/// Reads the signals of one capture from an offset on, without waiting.
pub struct SignalReader {
    consumer: StreamConsumer<crate::capture::QuietEof>,
    topic: String,
    next: i64,
}

impl std::fmt::Debug for SignalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalReader")
            .field("topic", &self.topic)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl SignalReader {
    /// Starts reading capture `name`'s signals at offset `next` (creating the topic).
    pub async fn open(
        kafka: &KafkaConfig,
        name: &str,
        next: i64,
        replication: i32,
    ) -> Result<Self> {
        ensure_signals_topic(kafka, name, replication).await?;
        let topic = signals_topic(name);
        let consumer: StreamConsumer<crate::capture::QuietEof> = kafka
            .client_config()
            .set("group.id", format!("binlake-capture-{name}-signals-reader"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "100")
            .create_with_context(crate::capture::QuietEof)
            .map_err(|e| Error::config(&e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(next))
            .map_err(|e| Error::client(format!("assign {topic}"), &e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| Error::client(format!("assign {topic}"), &e))?;
        Ok(SignalReader {
            consumer,
            topic,
            next,
        })
    }

    /// The offset after the last signal returned.
    pub fn next_offset(&self) -> i64 {
        self.next
    }

    /// What the snapshot requests that arrived ask to read, in order: whole tables and key
    /// ranges (malformed signals are logged and skipped).
    pub fn take(&mut self) -> Result<Vec<KeyRange>> {
        let mut tables = Vec::new();
        loop {
            let m = match self.consumer.recv().now_or_never() {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(Error::client(format!("read {}", self.topic), &e)),
            };
            self.next = m.offset() + 1;
            match m.payload().map(serde_json::from_slice::<Signal>) {
                Some(Ok(s)) if s.kind == "execute-snapshot" => {
                    tracing::info!(tables = ?s.data.data_collections, key_ranges = s.data.key_ranges.len(), offset = m.offset(), "snapshot requested");
                    tables.extend(s.data.data_collections.iter().map(|t| KeyRange::whole(t)));
                    tables.extend(s.data.key_ranges);
                }
                other => tracing::warn!(
                    topic = %self.topic,
                    offset = m.offset(),
                    signal = ?other.map(|r| r.map(|s| s.kind).map_err(|e| e.to_string())),
                    "signal ignored: only execute-snapshot is understood"
                ),
            }
        }
        Ok(tables)
    }
}
