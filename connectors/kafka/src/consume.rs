//! [`ChangeConsumer`]: reads capture's change topics back as [`ChangeEvent`]s, for
//! `binlake materialize`.
//!
//! A consumer-group member subscribed to every `<name>.<db>.<table>` topic, reading
//! `read_committed` (only committed capture transactions). Each message names its table
//! schema in the `binlake.schema` header; the schemas come from the compacted
//! `<name>.schemas` topic, which capture writes in the same transaction before the first
//! message that uses a schema, so a schema is always there when a message names it.
//!
//! The consumer does not decide where to start: the caller seeks each newly assigned
//! partition to the offset its sink recorded ([`ChangeConsumer::seek`]), which is what
//! makes materialize exactly once; Kafka's committed group offsets are only written for
//! lag monitoring.
//!
//! # Where the consumer is
//!
//! [`ChangeConsumer::positions`] gives, per assigned partition, the offset after
//! everything handed to the caller, and past transaction markers and aborted records once
//! the consumer has reached the end: it asks librdkafka for end-of-partition events,
//! which move its position over them (without them the position stops at the last
//! message, below a committed transaction's marker, and an idle partition would never
//! look read to its end). [`ChangeConsumer::end_offsets`] gives the partitions' high
//! watermarks (read_uncommitted: every record appended so far, committed or not).
//! Together they tell materialize when it holds everything a capture position record
//! covers (see `coverage` in the lake crate).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use binlake_core::debezium::{DebeziumOptions, TableCodec};
use binlake_core::{ChangeEvent, TableSchema};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::{CaptureWriter, Error, KafkaConfig, Result};

/// A change of the group's assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// These topic-partitions are now this member's.
    Assigned(Vec<(String, i32)>),
    /// These are not any more: drop what is buffered for them.
    Revoked(Vec<(String, i32)>),
}

/// Records rebalances for the consumer loop.
#[derive(Debug, Default)]
pub struct RebalanceLog(Mutex<Vec<Assignment>>);

fn tpl_list(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for RebalanceLog {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::error::note_client_error(&error, reason);
        tracing::warn!(error = %error, reason, "kafka client error");
    }
}

impl ConsumerContext for RebalanceLog {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r
            && let Ok(mut log) = self.0.lock()
        {
            log.push(Assignment::Revoked(tpl_list(tpl)));
        }
    }
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r
            && let Ok(mut log) = self.0.lock()
        {
            tracing::info!(partitions = tpl.count(), "partitions assigned");
            log.push(Assignment::Assigned(tpl_list(tpl)));
        }
    }
}

/// One consumed message.
#[derive(Debug)]
pub struct Consumed {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The change, or `None` for a tombstone.
    pub event: Option<ChangeEvent>,
    /// Key + value bytes.
    pub bytes: usize,
}

/// Reads change topics back as events.
pub struct ChangeConsumer {
    consumer: StreamConsumer<RebalanceLog>,
    kafka: KafkaConfig,
    name: String,
    opts: Arc<DebeziumOptions>,
    codecs: Arc<HashMap<String, TableCodec>>,
    /// Topic names and schema fingerprints seen, shared by the messages.
    strings: HashMap<String, Arc<str>>,
    /// A client for high watermarks ([`ChangeConsumer::end_offsets`]).
    watermarks: Arc<BaseConsumer<crate::capture::QuietEof>>,
    /// Partitions per topic, as first asked.
    partition_counts: HashMap<String, i32>,
}

/// A message copied out of librdkafka's buffer, not decoded yet.
struct Raw {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    bytes: usize,
    payload: Option<Vec<u8>>,
    fingerprint: Option<Arc<str>>,
}

impl std::fmt::Debug for ChangeConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeConsumer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ChangeConsumer {
    /// Joins `group` (as the static member `instance_id`, when given: Kafka's
    /// `group.instance.id`) and subscribes to every table topic of capture `name`. The
    /// consumer leaves the group when dropped (a static member stays until its session
    /// times out).
    pub fn open(
        kafka: &KafkaConfig,
        name: &str,
        group: &str,
        instance_id: Option<&str>,
        opts: DebeziumOptions,
    ) -> Result<Self> {
        let mut c = kafka.client_config();
        if let Some(id) = instance_id {
            c.set("group.instance.id", id);
        }
        c.set("group.id", group)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .set("topic.metadata.refresh.interval.ms", "5000");
        // Throughput defaults, unless `[kafka.client]` sets them. librdkafka postpones the
        // next fetch by `fetch.queue.backoff.ms` once its queue is full (default 1 s):
        // catching up, materialize drains a full queue in a fraction of that, then sat
        // idle for the rest (half the time, measured with `materialize_catch_up`).
        for (key, value) in [
            ("fetch.max.bytes", "52428800"),
            ("queued.max.messages.kbytes", "65536"),
            ("fetch.queue.backoff.ms", "20"),
        ] {
            if c.get(key).is_none() {
                c.set(key, value);
            }
        }
        let consumer: StreamConsumer<RebalanceLog> = c
            .create_with_context(RebalanceLog::default())
            .map_err(|e| Error::config(&e))?;
        // High watermarks are asked with read_uncommitted: the end of everything appended,
        // open transactions included.
        let mut w = kafka.client_config();
        w.set("isolation.level", "read_uncommitted");
        let watermarks: BaseConsumer<crate::capture::QuietEof> = w
            .create_with_context(crate::capture::QuietEof)
            .map_err(|e| Error::config(&e))?;
        let subscription = kafka.naming().subscription(name);
        let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| Error::client("subscribe", &e))?;
        Ok(ChangeConsumer {
            consumer,
            kafka: kafka.clone(),
            name: name.to_string(),
            opts: Arc::new(opts),
            codecs: Arc::new(HashMap::new()),
            strings: HashMap::new(),
            watermarks: Arc::new(watermarks),
            partition_counts: HashMap::new(),
        })
    }

    /// Per assigned partition, the offset after everything handed out (see the module
    /// docs); partitions with no position yet are left out.
    pub fn positions(&self) -> Result<Vec<(String, i32, i64)>> {
        let tpl = self
            .consumer
            .position()
            .map_err(|e| Error::client("position", &e))?;
        Ok(tpl
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.topic().to_string(), e.partition(), o)),
                _ => None,
            })
            .collect())
    }

    /// The high watermark (read_uncommitted) of each of `parts`, and how many partitions
    /// its topic has.
    pub async fn end_offsets(
        &mut self,
        parts: &[(String, i32)],
    ) -> Result<HashMap<(String, i32), (i64, i32)>> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in parts {
            tpl.add_partition_offset(t, *p, Offset::End)
                .map_err(|e| Error::client("end offsets", &e))?;
        }
        let w = self.watermarks.clone();
        let timeout = self.kafka.request_timeout;
        // Partition counts are asked once per topic and assignment (partitions added to a
        // topic rebalance the group, which clears them: see `take_assignments`).
        let mut counts = self.partition_counts.clone();
        let mut topics: Vec<String> = parts
            .iter()
            .map(|(t, _)| t.clone())
            .filter(|t| !counts.contains_key(t))
            .collect();
        topics.sort();
        topics.dedup();
        let (ends, counts) = tokio::task::spawn_blocking(move || {
            let ends = w
                .offsets_for_times(tpl, timeout)
                .map_err(|e| Error::client("end offsets", &e))?;
            for t in &topics {
                let md = w
                    .fetch_metadata(Some(t), timeout)
                    .map_err(|e| Error::client(format!("metadata of {t}"), &e))?;
                let n = md
                    .topics()
                    .first()
                    .map_or(0, |m| m.partitions().len() as i32);
                counts.insert(t.clone(), n);
            }
            Ok::<_, Error>((ends, counts))
        })
        .await
        .map_err(|e| Error::Client {
            operation: "end offsets".into(),
            reason: e.to_string(),
            transient: true,
        })??;
        let out = ends
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((
                    (e.topic().to_string(), e.partition()),
                    (o, counts.get(e.topic()).copied().unwrap_or(0)),
                )),
                _ => None,
            })
            .collect();
        self.partition_counts = counts;
        Ok(out)
    }

    /// `(db, table)` of a change topic: the table whose topic it is among the schemas
    /// capture published (read again when none is), never parsed from the name.
    pub async fn table_of(&mut self, topic: &str) -> Result<Option<(String, String)>> {
        let naming = self.kafka.naming();
        let find = |codecs: &HashMap<String, TableCodec>| {
            codecs.values().map(|c| c.table()).find_map(|s| {
                (naming.topic(&self.name, &s.database, &s.table) == topic)
                    .then(|| (s.database.clone(), s.table.clone()))
            })
        };
        if let Some(t) = find(&self.codecs) {
            return Ok(Some(t));
        }
        let mut codecs = (*self.codecs).clone();
        load_schemas(&self.kafka, &self.name, &self.opts, &mut codecs).await?;
        self.codecs = Arc::new(codecs);
        Ok(find(&self.codecs))
    }

    /// Assignment changes since the last call.
    pub fn take_assignments(&mut self) -> Vec<Assignment> {
        let changes: Vec<Assignment> = self
            .consumer
            .context()
            .0
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        // Partitions added to a topic rebalance the group: ask the counts again.
        if !changes.is_empty() {
            self.partition_counts.clear();
        }
        changes
    }

    /// The next messages, decoded: waits for one (until `deadline`, then returns none),
    /// then takes up to `max` that are already there. The JSON decoding, the bulk of
    /// materialize's CPU, runs on the blocking pool in two halves, using both cores.
    ///
    /// Not cancel-safe once a message has arrived: messages taken out of the consumer
    /// are lost if the future is dropped, so callers must not race it against other
    /// futures except to shut down (and then commit nothing after).
    pub async fn recv_many(
        &mut self,
        max: usize,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Vec<Consumed>> {
        use futures::FutureExt;
        let mut raw: Vec<Raw> = Vec::with_capacity(max.min(65_536));
        let first = loop {
            let m = match deadline {
                Some(d) => match tokio::time::timeout_at(d, self.consumer.recv()).await {
                    Ok(m) => m,
                    Err(_) => return Ok(Vec::new()),
                },
                None => self.consumer.recv().await,
            };
            match m {
                Ok(m) => break m,
                // The end of a partition: its position is now past any transaction
                // markers there (see the module docs); nothing to hand out.
                Err(KafkaError::PartitionEOF(_)) => {}
                // The subscription matches no topic yet (capture has not written one):
                // keep waiting, new topics are picked up as they appear.
                Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    tracing::debug!("no change topic yet");
                    if deadline.is_none() {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
                Err(e) => return Err(Error::client("consume", &e)),
            }
        };
        let t0 = std::time::Instant::now();
        raw.push(to_raw(&mut self.strings, &first));
        drop(first);
        while raw.len() < max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => raw.push(to_raw(&mut self.strings, &m)),
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                ))) => break,
                Some(Err(e)) => return Err(Error::client("consume", &e)),
                None => break,
            }
        }
        let missing = raw
            .iter()
            .filter_map(|r| r.fingerprint.as_ref())
            .any(|f| !self.codecs.contains_key(&**f));
        if missing {
            let mut codecs = (*self.codecs).clone();
            load_schemas(&self.kafka, &self.name, &self.opts, &mut codecs).await?;
            self.codecs = Arc::new(codecs);
        }
        let schemas_topic = CaptureWriter::schemas_topic(&self.name);
        let decode = move |codecs: Arc<HashMap<String, TableCodec>>,
                           part: Vec<Raw>|
              -> Result<Vec<Consumed>> {
            part.into_iter()
                .map(|r| {
                    let event = match (&r.payload, &r.fingerprint) {
                        (None, _) => None,
                        (Some(p), Some(f)) => {
                            let codec = codecs.get(&**f).ok_or_else(|| Error::Topic {
                                topic: schemas_topic.clone(),
                                reason: format!(
                                    "schema {f} (named by {} partition {} offset {}) is missing",
                                    r.topic, r.partition, r.offset
                                ),
                            })?;
                            Some(
                                codec
                                    .decode_value(p)
                                    .map_err(|e| Error::Topic {
                                        topic: r.topic.to_string(),
                                        reason: format!(
                                            "the message at partition {} offset {} cannot be decoded: {e}",
                                            r.partition, r.offset
                                        ),
                                    })?
                                    .event,
                            )
                        }
                        (Some(_), None) => {
                            return Err(Error::Topic {
                                topic: r.topic.to_string(),
                                reason: format!(
                                    "the message at partition {} offset {} has no binlake.schema header: it was not written by binlake capture",
                                    r.partition, r.offset
                                ),
                            });
                        }
                    };
                    Ok(Consumed {
                        topic: r.topic,
                        partition: r.partition,
                        offset: r.offset,
                        event,
                        bytes: r.bytes,
                    })
                })
                .collect()
        };
        if raw.len() < 256 {
            return decode(self.codecs.clone(), raw);
        }
        let second = raw.split_off(raw.len() / 2);
        let (c1, c2) = (self.codecs.clone(), self.codecs.clone());
        let d1 = decode.clone();
        let h1 = tokio::task::spawn_blocking(move || d1(c1, raw));
        let h2 = tokio::task::spawn_blocking(move || decode(c2, second));
        let (a, b) = tokio::join!(h1, h2);
        let join = |e: tokio::task::JoinError| Error::Client {
            operation: "decode".into(),
            reason: e.to_string(),
            transient: false,
        };
        let mut out = a.map_err(join)??;
        out.extend(b.map_err(join)??);
        tracing::trace!(messages = out.len(), took = ?t0.elapsed(), "received and decoded");
        Ok(out)
    }
}

/// Reads the schemas topic to its end into `codecs`.
async fn load_schemas(
    kafka: &KafkaConfig,
    name: &str,
    opts: &Arc<DebeziumOptions>,
    codecs: &mut HashMap<String, TableCodec>,
) -> Result<()> {
    let topic = CaptureWriter::schemas_topic(name);
    let group = format!("binlake-{name}-schemas-reader");
    crate::client::read_to_end(kafka, &topic, &group, |key, value, _| {
        let (Some(k), Some(v)) = (key, value) else {
            return Ok(());
        };
        let key = String::from_utf8_lossy(k).to_string();
        if let std::collections::hash_map::Entry::Vacant(slot) = codecs.entry(key) {
            let schema: TableSchema = serde_json::from_slice(v).map_err(|e| Error::Topic {
                topic: topic.clone(),
                reason: format!("schema {} cannot be read: {e}", slot.key()),
            })?;
            slot.insert(TableCodec::new(Arc::new(schema), opts.clone()));
        }
        Ok(())
    })
    .await
}

impl ChangeConsumer {
    /// Makes the next message of `topic`/`partition` the one at `offset` (`None`: the
    /// earliest there is).
    /// Returns false, without an error, when the partition is not assigned to this member
    /// any more (a rebalance took it while the caller was deciding where to start): its
    /// messages are then the new owner's to read.
    pub fn seek(&self, topic: &str, partition: i32, offset: Option<i64>) -> Result<bool> {
        let o = offset.map_or(Offset::Beginning, Offset::Offset);
        match self
            .consumer
            .seek(topic, partition, o, Duration::from_secs(10))
        {
            Ok(()) => Ok(true),
            Err(e) => {
                let assigned = self
                    .consumer
                    .assignment()
                    .is_ok_and(|a| a.find_partition(topic, partition).is_some());
                if assigned {
                    Err(Error::client(format!("seek {topic}/{partition}"), &e))
                } else {
                    tracing::info!(topic, partition, error = %e, "not seeking a partition that is no longer assigned");
                    Ok(false)
                }
            }
        }
    }

    /// Records consumed positions in the group (for lag monitoring only: binlake resumes
    /// from what its sinks recorded). `offsets` are the next offsets to read.
    pub fn commit_offsets(&self, offsets: &[(String, i32, i64)]) {
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in offsets {
            let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "group offset commit failed (monitoring only)");
        }
    }
}

/// Copies a message out of librdkafka's buffer.
/// One shared copy of each string (topic names, schema fingerprints): messages repeat a
/// few of them.
fn interned(strings: &mut HashMap<String, Arc<str>>, s: &str) -> Arc<str> {
    match strings.get(s) {
        Some(t) => t.clone(),
        None => {
            let t: Arc<str> = s.into();
            strings.insert(s.to_string(), t.clone());
            t
        }
    }
}

fn to_raw(
    strings: &mut HashMap<String, Arc<str>>,
    m: &rdkafka::message::BorrowedMessage<'_>,
) -> Raw {
    let topic = interned(strings, m.topic());
    let fingerprint = m
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == "binlake.schema"))
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(|f| interned(strings, f));
    Raw {
        topic,
        partition: m.partition(),
        offset: m.offset(),
        bytes: m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len),
        payload: m.payload().map(<[u8]>::to_vec),
        fingerprint,
    }
}
