//! The capture side of Kafka: change events into per-table topics, exactly once.
//!
//! # Exactly once
//!
//! Every batch of whole source transactions is written inside one Kafka transaction,
//! together with a record of the source position the batch ends at, in the compacted
//! `<prefix>.offsets` topic (key: the capture's name). Either both the changes and the
//! position become visible to `read_committed` consumers, or neither does. On start,
//! [`CaptureWriter::open`] first initialises the transactional producer, which fences any
//! older producer with the same `transactional.id` and aborts its open transaction, and
//! only then reads the last committed position: the capture resumes exactly after the last
//! committed batch. A second capture with the same name fences the first; the first's next
//! commit fails, so it cannot write duplicates.
//!
//! # Back-pressure and memory
//!
//! Messages go to librdkafka's queue, bounded by `queue.buffering.max.kbytes` (binlake
//! sets 64 MiB unless configured). When it is full, the writer waits for deliveries before
//! producing more, which in turn stops the caller from reading the binlog: a slow broker
//! slows capture down, it does not grow memory.
//!
//! # Oversize messages
//!
//! A message larger than `max_message_bytes` is refused by the broker. The writer checks
//! before producing and either fails with the table, key and size, or (with
//! `dead_letter_topic`) writes a small JSON record describing it there, counts it, and goes
//! on.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use binlake_core::debezium::{DebeziumOptions, TableCodec};
use binlake_core::{ChangeEvent, Op, ResumePosition, SchemaChange, SnapshotProgress, TableSchema};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use serde::{Deserialize, Serialize};

use crate::client::{TopicSpec, ensure_topic, transactional_producer};
use crate::config::KafkaConfig;
use crate::error::{Error, Result};

fn default_partitions() -> i32 {
    1
}
fn default_replication() -> i32 {
    -1
}
fn default_true() -> bool {
    true
}
fn default_max_batch_rows() -> usize {
    100_000
}
fn default_linger() -> Duration {
    Duration::from_millis(20)
}
fn default_catch_up_linger() -> Duration {
    Duration::from_millis(250)
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(10)
}
fn default_max_message_bytes() -> usize {
    1_000_000
}
fn default_transaction_timeout() -> Duration {
    Duration::from_secs(900)
}
/// The brokers' default `transaction.max.timeout.ms`: a longer `transaction.timeout.ms`
/// is refused when the producer starts.
const MAX_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(900);

/// The `[capture]` section: how capture writes to Kafka.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Partitions of each table topic created by binlake.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of topics binlake creates (-1: the broker's default).
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// Extra configs for table topics binlake creates (e.g. `"retention.ms" = "-1"`).
    #[serde(default)]
    pub topic_configs: BTreeMap<String, String>,
    /// Write a tombstone (null value) after each delete, so compacted topics drop the key.
    #[serde(default = "default_true")]
    pub tombstones: bool,
    /// Also write BEGIN/END records to `<name>.transaction` (Debezium's transaction
    /// metadata), and the `transaction` block in every envelope.
    #[serde(default)]
    pub transaction_topic: bool,
    /// At most this many rows per Kafka transaction (a source transaction is never split;
    /// a larger one makes a larger Kafka transaction).
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// How long a batch may wait for more source transactions before it is committed.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// The same while capture is behind the primary (catching up): committing a Kafka
    /// transaction stops producing for a round trip, so larger batches read the backlog
    /// faster; the changes are late anyway.
    #[serde(default = "default_catch_up_linger", with = "humantime_serde")]
    pub catch_up_linger: Duration,
    /// How often to write to `<name>.heartbeat` (and commit the position) while idle.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// The largest message the topics accept (their `max.message.bytes`).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Where oversize messages go (a description, not the message); unset: an oversize
    /// message stops capture with an error.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Kafka's `transaction.timeout.ms`: the longest a batch may take; must cover the
    /// largest source transaction (at most the broker's `transaction.max.timeout.ms`).
    #[serde(default = "default_transaction_timeout", with = "humantime_serde")]
    pub transaction_timeout: Duration,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            partitions: default_partitions(),
            replication_factor: default_replication(),
            topic_configs: BTreeMap::new(),
            tombstones: true,
            transaction_topic: false,
            max_batch_rows: default_max_batch_rows(),
            linger: default_linger(),
            catch_up_linger: default_catch_up_linger(),
            heartbeat_interval: default_heartbeat(),
            max_message_bytes: default_max_message_bytes(),
            dead_letter_topic: None,
            transaction_timeout: default_transaction_timeout(),
        }
    }
}

impl CaptureConfig {
    /// Checks values serde cannot, recording each problem under `path`.
    pub fn validate(&self, path: &str, problems: &mut binlake_core::Problems) {
        if self.partitions < 1 {
            problems.push(path, "partitions", "must be ≥ 1");
        }
        if self.replication_factor == 0 || self.replication_factor < -1 {
            problems.push(
                path,
                "replication_factor",
                "must be ≥ 1, or -1 for the broker's default",
            );
        }
        problems.check_range(
            path,
            "max_batch_rows",
            self.max_batch_rows,
            1..=10_000_000,
            "",
        );
        problems.check_range(
            path,
            "heartbeat_interval",
            self.heartbeat_interval,
            Duration::from_millis(100)..=Duration::from_secs(3600),
            "",
        );
        problems.check_range(
            path,
            "max_message_bytes",
            self.max_message_bytes,
            1024..=1_000_000_000,
            "librdkafka's message.max.bytes limit",
        );
        problems.check_range(
            path,
            "transaction_timeout",
            self.transaction_timeout,
            Duration::from_secs(1)..=MAX_TRANSACTION_TIMEOUT,
            "Kafka's transaction.max.timeout.ms default",
        );
        // A batch must commit well within the transaction timeout; this also bounds both
        // lingers (transaction_timeout itself is bounded above).
        let half = self.transaction_timeout.min(MAX_TRANSACTION_TIMEOUT) / 2;
        for (field, linger) in [
            ("linger", self.linger),
            ("catch_up_linger", self.catch_up_linger),
        ] {
            if linger > half {
                problems.push(
                    path,
                    field,
                    "must be at most half of transaction_timeout (a batch must commit well within it)",
                );
            }
        }
    }
}

/// The position record in `<name>.offsets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPosition {
    /// The capture's name (the record's key).
    pub name: String,
    /// Where to resume: `gtid:…`, `mariadb-gtid:…` or `file:name:pos`.
    pub position: String,
    /// The binlog file:pos of the same point, always present.
    pub file_pos: String,
    /// Source commit time of the last transaction covered, ms since the epoch.
    pub source_ts_ms: i64,
    /// When the batch was committed, ms since the epoch.
    pub committed_ms: i64,
    /// The progress of a snapshot in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotProgress>,
    /// Set on a heartbeat's record: the source had nothing newer than `position` for a
    /// heartbeat interval, so what the record covers is everything up to this time (ms
    /// since the epoch). Consumers that have everything up to the record are current to
    /// it, however long ago the last change was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caught_up_ms: Option<i64>,
    /// The offset of `<name>.signals` after the last signal acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals_offset: Option<i64>,
}

impl StoredPosition {
    /// The position to resume from.
    pub fn resume(&self) -> Result<ResumePosition> {
        self.position
            .parse()
            .map_err(|e: binlake_core::Error| Error::Topic {
                topic: "offsets".into(),
                reason: format!("the stored position cannot be read: {e}"),
            })
    }
}

/// Counters of what the writer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Change messages produced (committed or not).
    pub messages: u64,
    /// Kafka transactions committed.
    pub commits: u64,
    /// Oversize messages sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Key and value bytes of the change messages produced.
    pub bytes: u64,
}

/// Writes change events into Kafka transactions. See the module docs.
pub struct CaptureWriter {
    producer: FutureProducer<crate::error::ClientErrors>,
    cfg: CaptureConfig,
    kafka: KafkaConfig,
    name: String,
    opts: Arc<DebeziumOptions>,
    /// Per table schema (by `Arc` address; the entry keeps the `Arc`, so the address
    /// cannot be reused while it is here): its codec and topic.
    tables: HashMap<usize, (TableCodec, Arc<str>, String)>,
    topics: HashSet<String>,
    /// The offset of `<name>.signals` after the last signal taken (recorded with every
    /// commit), and the reader, opened on first use.
    signals_offset: Option<i64>,
    signals: Option<crate::signals::SignalReader>,
    /// The schema history of the last committed position, until taken.
    stored_history: Option<String>,
    /// Which table each change topic holds (two tables never share one).
    table_of_topic: HashMap<String, String>,
    inflight: VecDeque<DeliveryFuture>,
    /// The topics written in the open transaction (to name one deleted under capture).
    txn_topics: HashSet<String>,
    in_txn: bool,
    /// A heartbeat is in the open transaction (its position record says caught up).
    idle: bool,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
    stats: CaptureStats,
    snapshot: Option<SnapshotProgress>,
    pos_buf: String,
    gtid_cache: Option<(binlake_core::Gtid, String)>,
}

impl std::fmt::Debug for CaptureWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureWriter")
            .field("name", &self.name)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl CaptureWriter {
    /// The topic of the position records.
    pub fn offsets_topic(name: &str) -> String {
        format!("{name}.offsets")
    }

    /// The compacted topic of table schemas, keyed by [`TableSchema::fingerprint`]: every
    /// change message names its schema in the `binlake.schema` header, and the schema is
    /// written here in the same Kafka transaction before the first message that uses it.
    ///
    /// [`TableSchema::fingerprint`]: binlake_core::TableSchema::fingerprint
    pub fn schemas_topic(name: &str) -> String {
        format!("{name}.schemas")
    }

    /// Initialises the transactional producer (fencing older captures with the same name)
    /// and reads the last committed position.
    pub async fn open(
        kafka: &KafkaConfig,
        cfg: &CaptureConfig,
        name: &str,
        opts: DebeziumOptions,
    ) -> Result<(CaptureWriter, Option<StoredPosition>)> {
        let mut kafka_cfg = kafka.clone();
        // Producer defaults tuned for throughput with bounded memory and latency; a
        // setting in [kafka.client] wins.
        for (k, v) in [
            ("queue.buffering.max.kbytes", "65536"),
            ("linger.ms", "5"),
            ("batch.num.messages", "10000"),
            ("queue.buffering.max.messages", "1000000"),
            ("compression.type", "lz4"),
            ("partitioner", "murmur2_random"),
            (
                "message.max.bytes",
                &cfg.max_message_bytes
                    .max(1_000_000)
                    .saturating_add(4096)
                    .to_string(),
            ),
        ] {
            kafka_cfg
                .client
                .entry(k.to_string())
                .or_insert_with(|| binlake_core::Secret::new(v));
        }
        // The producer first: it serves librdkafka's error events, so a cluster that
        // refuses our credentials is reported as such (an admin request only times out).
        let producer = transactional_producer(
            &kafka_cfg,
            &format!("binlake-capture-{name}"),
            cfg.transaction_timeout,
        )
        .await?;
        let offsets = CaptureWriter::offsets_topic(name);
        let mut compact = BTreeMap::new();
        compact.insert("cleanup.policy".to_string(), "compact".to_string());
        ensure_topic(
            kafka,
            &TopicSpec {
                name: offsets.clone(),
                partitions: 1,
                replication_factor: cfg.replication_factor,
                configs: compact,
            },
        )
        .await?;
        let stored = read_last_position(kafka, &offsets, name).await?;
        let stored_history = match stored {
            Some(_) => read_last_history(kafka, name).await?,
            None => None,
        };
        let writer = CaptureWriter {
            producer,
            cfg: cfg.clone(),
            kafka: kafka.clone(),
            name: name.to_string(),
            opts: Arc::new(opts),
            tables: HashMap::new(),
            topics: HashSet::new(),
            table_of_topic: HashMap::new(),
            inflight: VecDeque::new(),
            txn_topics: HashSet::new(),
            in_txn: false,
            idle: false,
            key_buf: Vec::with_capacity(256),
            value_buf: Vec::with_capacity(4096),
            stats: CaptureStats::default(),
            snapshot: stored.as_ref().and_then(|s| s.snapshot.clone()),
            signals_offset: stored.as_ref().and_then(|s| s.signals_offset),
            signals: None,
            stored_history,
            pos_buf: String::with_capacity(64),
            gtid_cache: None,
        };
        Ok((writer, stored))
    }

    /// Sets the snapshot progress recorded with every following commit (`None` once the
    /// snapshot is complete).
    pub fn set_snapshot_state(&mut self, state: Option<SnapshotProgress>) {
        self.snapshot = state;
    }

    /// What the writer did so far.
    pub fn stats(&self) -> &CaptureStats {
        &self.stats
    }

    /// What the snapshot requests (`binlake snapshot`, `binlake verify --repair`) that
    /// arrived since the last call ask to read: whole tables and key ranges. The signals are marked taken in the next commit, which must also record the
    /// snapshot progress that includes these tables.
    pub async fn snapshot_requests(&mut self) -> Result<Vec<binlake_core::KeyRange>> {
        if self.signals.is_none() {
            let from = self.signals_offset.unwrap_or(0);
            self.signals = Some(
                crate::signals::SignalReader::open(
                    &self.kafka,
                    &self.name,
                    from,
                    self.cfg.replication_factor,
                )
                .await?,
            );
        }
        let Some(reader) = self.signals.as_mut() else {
            return Ok(Vec::new());
        };
        let tables = reader.take()?;
        if reader.next_offset() > self.signals_offset.unwrap_or(0) {
            self.signals_offset = Some(reader.next_offset());
        }
        Ok(tables)
    }

    /// Messages librdkafka holds that the broker has not acknowledged yet (its queue).
    pub fn queued_messages(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// True while a Kafka transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.in_txn
    }

    fn begin(&mut self) -> Result<()> {
        if !self.in_txn {
            self.producer
                .begin_transaction()
                .map_err(|e| self.fenced_or("begin transaction", &e))?;
            self.in_txn = true;
        }
        Ok(())
    }

    async fn topic_for(&mut self, db: &str, table: &str) -> Result<String> {
        let topic = self.kafka.naming().topic(&self.name, db, table);
        let qualified = format!("{db}.{table}");
        match self.table_of_topic.get(&topic) {
            Some(other) if *other != qualified => {
                return Err(Error::Topic {
                    topic,
                    reason: format!(
                        "would hold the changes of both {other} and {qualified}; give each table its own topic ([kafka] topic_name with {{db}} and {{table}}, or [kafka.topics])"
                    ),
                });
            }
            Some(_) => {}
            None => {
                self.table_of_topic.insert(topic.clone(), qualified);
            }
        }
        if !self.topics.contains(&topic) {
            ensure_topic(
                &self.kafka,
                &TopicSpec {
                    name: topic.clone(),
                    partitions: self.cfg.partitions,
                    replication_factor: self.cfg.replication_factor,
                    configs: self.cfg.topic_configs.clone(),
                },
            )
            .await?;
            self.topics.insert(topic.clone());
        }
        Ok(topic)
    }

    /// Writes one change (and its tombstone after a delete). An update that changes the
    /// primary key is written as Debezium does: a delete of the old key (and its
    /// tombstone) followed by a create of the new key, so each key's messages stay in its
    /// own partition, in order.
    pub async fn write_change(&mut self, e: &ChangeEvent) -> Result<()> {
        if let (Op::Update, Some(before), Some(after)) = (e.op, &e.before, &e.after)
            && e.table.key_changed(before, after)
        {
            {
                let mut delete = e.clone();
                delete.op = Op::Delete;
                delete.after = None;
                self.write_one(&delete).await?;
                let mut create = e.clone();
                create.op = Op::Create;
                create.before = None;
                return self.write_one(&create).await;
            }
        }
        self.write_one(e).await
    }

    async fn write_one(&mut self, e: &ChangeEvent) -> Result<()> {
        self.begin()?;
        let id = Arc::as_ptr(&e.table) as usize;
        if !self.tables.contains_key(&id) {
            if self.tables.len() >= 4096 {
                // Schemas change rarely; old entries only cost memory.
                self.tables.clear();
            }
            let topic = self.topic_for(&e.table.database, &e.table.table).await?;
            let fingerprint = e.table.fingerprint();
            self.write_schema(&fingerprint, &e.table).await?;
            let codec = TableCodec::new(e.table.clone(), self.opts.clone());
            self.tables.insert(id, (codec, topic.into(), fingerprint));
        }
        let Some((codec, topic, fingerprint)) = self.tables.get(&id) else {
            return Ok(());
        };
        let topic = topic.clone();
        let fingerprint = fingerprint.clone();
        self.key_buf.clear();
        self.value_buf.clear();
        let has_key = codec
            .encode_key(e, &mut self.key_buf)
            .map_err(|err| Error::Encode(err.to_string()))?;
        codec
            .encode_value(e, now_us(), &mut self.value_buf)
            .map_err(|err| Error::Encode(err.to_string()))?;
        let size = self.key_buf.len() + self.value_buf.len();
        if size > self.cfg.max_message_bytes {
            return self.oversize(&topic, e, size).await;
        }
        self.pos_buf.clear();
        // Snapshot rows sit at their chunk's high watermark; the prefix keeps their header
        // apart from a streamed event that starts at the same binlog position.
        if e.op == Op::Read {
            self.pos_buf.push_str("snapshot:");
        }
        let _ = write!(self.pos_buf, "{}", e.source.position);
        let mut headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: "binlake.position",
                value: Some(self.pos_buf.as_bytes()),
            })
            .insert(Header {
                key: "binlake.schema",
                value: Some(fingerprint.as_bytes()),
            });
        if let Some(g) = &e.source.gtid {
            // Every event of a transaction has the same GTID: format it once.
            if self
                .gtid_cache
                .as_ref()
                .is_none_or(|(cached, _)| cached != g)
            {
                self.gtid_cache = Some((g.clone(), g.to_string()));
            }
            if let Some((_, text)) = &self.gtid_cache {
                headers = headers.insert(Header {
                    key: "binlake.gtid",
                    value: Some(text.as_bytes()),
                });
            }
        }
        let key = std::mem::take(&mut self.key_buf);
        let value = std::mem::take(&mut self.value_buf);
        let tombstone = e.op == Op::Delete && self.cfg.tombstones && has_key;
        let tomb_headers = tombstone.then(|| headers.clone());
        self.send(
            &topic,
            has_key.then_some(&key[..]),
            Some(&value[..]),
            Some(headers),
        )
        .await?;
        if let Some(h) = tomb_headers {
            self.send(&topic, Some(&key[..]), None, Some(h)).await?;
        }
        self.stats.bytes += (key.len() + value.len()) as u64;
        self.key_buf = key;
        self.value_buf = value;
        self.stats.messages += 1;
        Ok(())
    }

    async fn oversize(&mut self, topic: &str, e: &ChangeEvent, size: usize) -> Result<()> {
        let key = String::from_utf8_lossy(&self.key_buf).into_owned();
        let Some(dlq) = self.cfg.dead_letter_topic.clone() else {
            return Err(Error::Oversize {
                table: e.table.qualified_name(),
                key,
                size,
                limit: self.cfg.max_message_bytes,
            });
        };
        self.ensure_single_partition_topic(&dlq).await?;
        let record = serde_json::json!({
            "reason": "oversize",
            "topic": topic,
            "table": e.table.qualified_name(),
            "key": key,
            "size": size,
            "limit": self.cfg.max_message_bytes,
            "op": e.op.code(),
            "position": e.source.position.to_string(),
            "gtid": e.source.gtid.as_ref().map(ToString::to_string),
        })
        .to_string();
        tracing::warn!(table = %e.table.qualified_name(), size, limit = self.cfg.max_message_bytes, dead_letter_topic = %dlq, "oversize change sent to the dead-letter topic");
        let k = self.key_buf.clone();
        self.send(&dlq, Some(&k), Some(record.as_bytes()), None)
            .await?;
        self.stats.dead_lettered += 1;
        Ok(())
    }

    /// Creates a one-partition topic of binlake's own (schema changes, transactions,
    /// heartbeats, dead letters) on first use.
    /// Writes a table schema to the schemas topic (once per schema and writer).
    async fn write_schema(&mut self, fingerprint: &str, table: &TableSchema) -> Result<()> {
        let topic = CaptureWriter::schemas_topic(&self.name);
        self.ensure_single_partition_topic_with(&topic, &[("cleanup.policy", "compact".into())])
            .await?;
        let value = serde_json::to_vec(table).map_err(|e| Error::Encode(e.to_string()))?;
        self.send(&topic, Some(fingerprint.as_bytes()), Some(&value), None)
            .await
    }

    async fn ensure_single_partition_topic(&mut self, topic: &str) -> Result<()> {
        self.ensure_single_partition_topic_with(topic, &[]).await
    }

    /// Like [`Self::ensure_single_partition_topic`], with topic configs.
    async fn ensure_single_partition_topic_with(
        &mut self,
        topic: &str,
        configs: &[(&str, String)],
    ) -> Result<()> {
        if !self.topics.contains(topic) {
            ensure_topic(
                &self.kafka,
                &TopicSpec {
                    name: topic.to_string(),
                    partitions: 1,
                    replication_factor: self.cfg.replication_factor,
                    configs: configs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect(),
                },
            )
            .await?;
            self.topics.insert(topic.to_string());
        }
        Ok(())
    }

    /// Writes a schema change to `<name>.schema-changes` (key: the database), and the
    /// schema history after it, when it carries one.
    pub async fn write_schema_change(&mut self, s: &SchemaChange) -> Result<()> {
        if let Some(h) = &s.history {
            self.write_schema_history(h).await?;
        }
        self.begin()?;
        let topic = format!("{}.schema-changes", self.name);
        self.ensure_single_partition_topic(&topic).await?;
        use binlake_core::debezium::connect;
        let key = serde_json::json!({"databaseName": s.database});
        let value = binlake_core::debezium::schema_change_value(&self.opts, s, now_us() / 1000);
        // With `schemas = true`, in Connect's schema + payload form like the change topics,
        // so that one converter setting reads every topic.
        let (key, value) = match self.opts.schemas {
            true => (
                connect::with_schema(connect::schema_change_key_schema(&self.opts), key),
                connect::with_schema(connect::schema_change_value_schema(&self.opts), value),
            ),
            false => (key, value),
        };
        let (key, value) = (key.to_string(), value.to_string());
        self.send(&topic, Some(key.as_bytes()), Some(value.as_bytes()), None)
            .await
    }

    /// The compacted topic of the capture's schema history (key: the capture's name): the
    /// last record is the history as of the last committed position, because each is
    /// written in the transaction of the statement that changed it.
    pub fn schema_history_topic(name: &str) -> String {
        format!("{name}.schema-history")
    }

    /// Writes the whole schema history (JSON) in the open transaction. One too large for
    /// a message is not kept (a warning says so): a restart then reads today's schemas.
    pub async fn write_schema_history(&mut self, json: &str) -> Result<()> {
        let limit = self.cfg.max_message_bytes.max(1_000_000);
        if json.len() + self.name.len() > limit {
            tracing::warn!(
                bytes = json.len(),
                limit,
                "the schema history is too large to keep in Kafka: after a restart, events from before a DDL made while capture was down are decoded with today's schema (raise capture.max_message_bytes, or set binlog_row_metadata = FULL on the server)"
            );
            return Ok(());
        }
        self.begin()?;
        let topic = CaptureWriter::schema_history_topic(&self.name);
        self.ensure_single_partition_topic_with(
            &topic,
            &[
                ("cleanup.policy", "compact".into()),
                ("max.message.bytes", (limit + 4096).to_string()),
            ],
        )
        .await?;
        let key = self.name.clone();
        self.send(&topic, Some(key.as_bytes()), Some(json.as_bytes()), None)
            .await
    }

    /// The schema history stored with the last committed position, read at open.
    pub fn take_stored_history(&mut self) -> Option<String> {
        self.stored_history.take()
    }

    /// Writes a BEGIN or END record to `<name>.transaction` (when enabled).
    pub async fn write_transaction_marker(
        &mut self,
        id: &str,
        end: Option<(u64, &BTreeMap<String, u64>)>,
        ts_us: i64,
    ) -> Result<()> {
        if !self.cfg.transaction_topic {
            return Ok(());
        }
        self.begin()?;
        let topic = format!("{}.transaction", self.name);
        self.ensure_single_partition_topic(&topic).await?;
        let key = serde_json::json!({"id": id}).to_string();
        let value = match end {
            None => serde_json::json!({"status": "BEGIN", "id": id, "ts_ms": ts_us / 1000, "event_count": null, "data_collections": null}),
            Some((count, per_table)) => serde_json::json!({
                "status": "END", "id": id, "ts_ms": ts_us / 1000, "event_count": count,
                "data_collections": per_table.iter().map(|(t, n)| serde_json::json!({"data_collection": t, "event_count": n})).collect::<Vec<_>>(),
            }),
        }
        .to_string();
        self.send(&topic, Some(key.as_bytes()), Some(value.as_bytes()), None)
            .await
    }

    /// Writes a heartbeat to `<name>.heartbeat`.
    pub async fn write_heartbeat(&mut self) -> Result<()> {
        self.begin()?;
        let topic = format!("{}.heartbeat", self.name);
        self.ensure_single_partition_topic(&topic).await?;
        use binlake_core::debezium::connect;
        let key = serde_json::json!({"serverName": self.name});
        let value = serde_json::json!({"ts_ms": now_us() / 1000});
        let (key, value) = match self.opts.schemas {
            true => (
                connect::with_schema(connect::heartbeat_key_schema(), key),
                connect::with_schema(connect::heartbeat_value_schema(), value),
            ),
            false => (key, value),
        };
        let (key, value) = (key.to_string(), value.to_string());
        self.send(&topic, Some(key.as_bytes()), Some(value.as_bytes()), None)
            .await?;
        self.idle = true;
        Ok(())
    }

    /// Produces one record, waiting for earlier deliveries while librdkafka's queue is full.
    async fn send(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        mut headers: Option<OwnedHeaders>,
    ) -> Result<()> {
        loop {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(v) = value {
                record = record.payload(v);
            }
            if let Some(h) = headers.take() {
                record = record.headers(h);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    if !self.txn_topics.contains(topic) {
                        self.txn_topics.insert(topic.to_string());
                    }
                    self.inflight.push_back(delivery);
                    // Keep the list of pending deliveries short: drop finished ones.
                    if self.inflight.len() > 100_000 {
                        self.await_one().await?;
                    }
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                    // The headers come back with the record, for the next attempt.
                    headers = record.headers;
                    if self.inflight.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    } else {
                        self.await_one().await?;
                    }
                }
                Err((e, _)) => return Err(self.fenced_or(&format!("produce to {topic}"), &e)),
            }
        }
    }

    /// The producer's fatal error, when fencing (or another fatal condition) caused `e`.
    fn fenced_or(&self, operation: &str, e: &KafkaError) -> Error {
        match self.producer.client().fatal_error() {
            Some((code, reason)) => {
                let reason = format!("{code:?}: {reason}");
                if code == RDKafkaErrorCode::ProducerFenced
                    || reason.to_ascii_lowercase().contains("fenced")
                {
                    Error::Fenced {
                        name: self.name.clone(),
                        reason,
                    }
                } else {
                    Error::Client {
                        operation: operation.to_string(),
                        reason,
                        transient: false,
                    }
                }
            }
            None => Error::client(operation, e),
        }
    }

    /// A topic of the open transaction that no longer exists, as an error that names it
    /// and says what to do; `None` when every one exists or the brokers cannot say.
    ///
    /// librdkafka keeps messages for a deleted topic queued (waiting for the topic to come
    /// back) until the transaction times out, and then reports them as purged, naming no
    /// topic: binlake asks the brokers instead.
    async fn deleted_topic(&self) -> Option<Error> {
        let exist = crate::client::topic_names(&self.kafka).await.ok()?;
        let topic = self.txn_topics.iter().find(|t| !exist.contains(*t))?;
        let again = match self.table_of_topic.get(topic) {
            Some(table) => format!(
                "; then `binlake snapshot --table {table}` so that the new topic holds every row again"
            ),
            None => String::new(),
        };
        Some(Error::Topic {
            topic: topic.clone(),
            reason: format!(
                "was deleted while capture was writing to it (its consumers have lost what it held); nothing was committed after the last batch. Restart capture: it creates the topic again and goes on from its last committed position{again}"
            ),
        })
    }

    /// The cause of a failed `operation`: a fenced producer, a deleted topic, or `e`.
    async fn explain(&self, operation: &str, e: &KafkaError) -> Error {
        let err = self.fenced_or(operation, e);
        if matches!(err, Error::Fenced { .. }) {
            return err;
        }
        self.deleted_topic().await.unwrap_or(err)
    }

    async fn await_one(&mut self) -> Result<()> {
        // Deliveries take milliseconds: one that takes this long may wait for a topic
        // that was deleted.
        const STALLED: Duration = Duration::from_secs(5);
        if let Some(mut d) = self.inflight.pop_front() {
            let done = loop {
                match tokio::time::timeout(STALLED, &mut d).await {
                    Ok(done) => break done,
                    Err(_) => {
                        if let Some(e) = self.deleted_topic().await {
                            return Err(e);
                        }
                    }
                }
            };
            match done {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(self.explain("delivery", &e).await),
                Err(_) => {
                    return Err(Error::Client {
                        operation: "delivery".into(),
                        reason: "the producer dropped the message".into(),
                        transient: true,
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes the position record and commits the Kafka transaction: the batch's changes
    /// and the position become visible together.
    pub async fn commit(
        &mut self,
        position: &ResumePosition,
        file_pos: &str,
        source_ts_us: i64,
    ) -> Result<()> {
        self.begin()?;
        let record = StoredPosition {
            name: self.name.clone(),
            position: position.to_string(),
            file_pos: file_pos.to_string(),
            source_ts_ms: source_ts_us / 1000,
            committed_ms: now_us() / 1000,
            snapshot: self.snapshot.clone(),
            signals_offset: self.signals_offset,
            caught_up_ms: self.idle.then(|| now_us() / 1000),
        };
        let value = serde_json::to_vec(&record).map_err(|e| Error::Encode(e.to_string()))?;
        let topic = CaptureWriter::offsets_topic(&self.name);
        let key = self.name.clone();
        self.send(&topic, Some(key.as_bytes()), Some(&value), None)
            .await?;
        while !self.inflight.is_empty() {
            self.await_one().await?;
        }
        binlake_core::failpoint::hit("kafka.before_commit");
        let producer = self.producer.clone();
        let timeout = self.cfg.transaction_timeout;
        let committed = tokio::task::spawn_blocking(move || {
            // rdkafka's commit_transaction first flushes with a zero timeout and, if a
            // message is still counted, polls for a full 100 ms before librdkafka's
            // commit. Every delivery is reported by now, but librdkafka counts a message
            // until the polling thread has released its report, microseconds after the
            // report resolved our future. Without this wait, about one commit in three
            // stalled for 100 ms at 2,000 rows/s (capture_latency p99 ~200 ms).
            let t = Instant::now();
            while producer.in_flight_count() > 0 && t.elapsed() < Duration::from_millis(50) {
                std::thread::sleep(Duration::from_micros(50));
            }
            producer.commit_transaction(timeout)
        })
        .await
        .map_err(|e| Error::Client {
            operation: "commit transaction".into(),
            reason: e.to_string(),
            transient: false,
        })?;
        if let Err(e) = committed {
            return Err(self.explain("commit transaction", &e).await);
        }
        self.in_txn = false;
        self.idle = false;
        self.txn_topics.clear();
        self.stats.commits += 1;
        tracing::debug!(position = %record.position, messages = self.stats.messages, "kafka transaction committed");
        binlake_core::failpoint::hit("kafka.after_commit");
        Ok(())
    }

    /// Aborts the open transaction (nothing of it becomes visible).
    pub async fn abort(&mut self) {
        tracing::debug!(in_txn = self.in_txn, "aborting kafka transaction");
        self.inflight.clear();
        self.txn_topics.clear();
        if self.in_txn {
            let producer = self.producer.clone();
            let timeout = self.cfg.transaction_timeout;
            let _ = tokio::task::spawn_blocking(move || producer.abort_transaction(timeout)).await;
            self.in_txn = false;
        }
        self.idle = false;
    }
}

/// Follows capture `name`'s committed position records (read_committed), from the last
/// ones on. It runs no task of its own: [`PositionFollower::latest`] takes what has
/// arrived, and dropping it closes its consumer at once.
pub struct PositionFollower {
    consumer: rdkafka::consumer::StreamConsumer<QuietEof>,
    topic: String,
    name: String,
    latest: Option<StoredPosition>,
}

impl std::fmt::Debug for PositionFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PositionFollower")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl PositionFollower {
    /// Starts reading `<name>.offsets` at its last records.
    pub fn new(kafka: &KafkaConfig, name: &str) -> Result<PositionFollower> {
        use rdkafka::TopicPartitionList;
        use rdkafka::consumer::Consumer;
        let topic = CaptureWriter::offsets_topic(name);
        let mut c = kafka.client_config();
        c.set("group.id", format!("binlake-{name}-position-follower"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10");
        let consumer: rdkafka::consumer::StreamConsumer<QuietEof> = c
            .create_with_context(QuietEof)
            .map_err(|e| Error::config(&e))?;
        let mut tpl = TopicPartitionList::new();
        // Each commit adds a record and a transaction marker: 64 offsets hold the last one.
        tpl.add_partition_offset(&topic, 0, rdkafka::Offset::OffsetTail(64))
            .map_err(|e| Error::client(format!("assign {topic}"), &e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| Error::client(format!("assign {topic}"), &e))?;
        Ok(PositionFollower {
            consumer,
            topic,
            name: name.to_string(),
            latest: None,
        })
    }

    /// The newest committed record that has arrived (`None` until capture has recorded
    /// one); never waits.
    pub fn latest(&mut self) -> Result<Option<&StoredPosition>> {
        use futures::FutureExt;
        use rdkafka::message::Message;
        loop {
            match self.consumer.recv().now_or_never() {
                None => break,
                Some(Ok(m)) => {
                    if m.key() == Some(self.name.as_bytes())
                        && let Some(v) = m.payload()
                    {
                        self.latest = Some(read_record(&self.topic, v, m.offset())?);
                    }
                }
                // Not there yet (capture has not started): later.
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                ))) => break,
                Some(Err(e)) => return Err(Error::client(format!("read {}", self.topic), &e)),
            }
        }
        Ok(self.latest.as_ref())
    }
}

/// A consumer context that does not report reaching the end of a partition as an error
/// (binlake asks for that signal to know it has read the whole offsets topic).
pub(crate) struct QuietEof;

impl rdkafka::ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::error::note_client_error(&error, reason);
        if !matches!(error, KafkaError::PartitionEOF(_))
            && error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF)
        {
            tracing::error!(error = %error, reason, "kafka client error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

/// Reads the last committed schema history of capture `name`, if it kept one.
async fn read_last_history(kafka: &KafkaConfig, name: &str) -> Result<Option<String>> {
    let topic = CaptureWriter::schema_history_topic(name);
    if !crate::client::topic_exists(kafka, &topic).await? {
        return Ok(None);
    }
    let mut last = None;
    let group = format!("binlake-capture-{name}-history-reader");
    crate::client::read_to_end(kafka, &topic, &group, |key, value, _| {
        if key == Some(name.as_bytes()) {
            last = value.map(|v| String::from_utf8_lossy(v).into_owned());
        }
        Ok(())
    })
    .await?;
    Ok(last)
}

/// What the snapshot of capture `name` has left, from its last position record (`None`
/// when no snapshot runs or capture has recorded nothing). Reads only the end of
/// `<name>.offsets`, for status reports: the progress lists the tables still to read.
pub async fn snapshot_state(kafka: &KafkaConfig, name: &str) -> Result<Option<SnapshotProgress>> {
    let topic = CaptureWriter::offsets_topic(name);
    if !crate::client::topic_exists(kafka, &topic).await? {
        return Ok(None);
    }
    let mut last: Option<Option<SnapshotProgress>> = None;
    let group = format!("binlake-status-{name}");
    // Each commit adds a record and a transaction marker: 64 offsets hold the last one.
    crate::client::read_from(
        kafka,
        &topic,
        &group,
        rdkafka::Offset::OffsetTail(64),
        |key, value, offset| {
            if key == Some(name.as_bytes())
                && let Some(v) = value
            {
                last = Some(read_record(&topic, v, offset)?.snapshot);
            }
            Ok(())
        },
    )
    .await?;
    Ok(last.flatten())
}

/// A position record, or an error naming where it is and why it cannot be read.
fn read_record(topic: &str, value: &[u8], offset: i64) -> Result<StoredPosition> {
    serde_json::from_slice(value).map_err(|e| Error::Topic {
        topic: topic.to_string(),
        reason: format!(
            "a position record at offset {offset} cannot be read ({e}): it was damaged, or written by a binlake whose format this one does not read; run the version that wrote it, or capture under a new `name` (which snapshots every table again)"
        ),
    })
}

/// Reads the last committed position record of `name` (read_committed, whole topic).
async fn read_last_position(
    kafka: &KafkaConfig,
    topic: &str,
    name: &str,
) -> Result<Option<StoredPosition>> {
    let mut last = None;
    let group = format!("binlake-capture-{name}-offsets-reader");
    crate::client::read_to_end(kafka, topic, &group, |key, value, offset| {
        if key == Some(name.as_bytes()) {
            last = value.map(|v| read_record(topic, v, offset)).transpose()?;
        }
        Ok(())
    })
    .await?;
    Ok(last)
}
