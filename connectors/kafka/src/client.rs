//! Creating clients: the transactional producer, the `read_committed` consumer, topics.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;
use crate::error::{ClientErrors, Error, Result};

/// An idempotent, transactional producer with `transactional.id` = `transactional_id`,
/// ready for `begin_transaction`. Initialising fences every older producer with the same
/// id: their open transactions are aborted and their later writes refused.
pub async fn transactional_producer(
    cfg: &KafkaConfig,
    transactional_id: &str,
    transaction_timeout: Duration,
) -> Result<FutureProducer<ClientErrors>> {
    let mut c = cfg.client_config();
    c.set("enable.idempotence", "true")
        .set("transactional.id", transactional_id)
        .set(
            "transaction.timeout.ms",
            transaction_timeout.as_millis().max(1000).to_string(),
        );
    let producer: FutureProducer<ClientErrors> = c
        .create_with_context(ClientErrors)
        .map_err(|e| Error::config(&e))?;
    let timeout = cfg.request_timeout;
    // init_transactions blocks the calling thread until the coordinator answers.
    let producer =
        tokio::task::spawn_blocking(move || producer.init_transactions(timeout).map(|()| producer))
            .await
            .map_err(|e| Error::Client {
                operation: "init_transactions".into(),
                reason: e.to_string(),
                transient: false,
            })?
            .map_err(|e| Error::client(format!("init_transactions ({transactional_id})"), &e))?;
    Ok(producer)
}

/// A consumer in `group_id` that reads only committed transactional messages, starts at
/// the earliest offset when the group has none, and never commits offsets by itself.
pub fn read_committed_consumer(
    cfg: &KafkaConfig,
    group_id: &str,
) -> Result<StreamConsumer<ClientErrors>> {
    let mut c = cfg.client_config();
    c.set("group.id", group_id)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    c.create_with_context(ClientErrors)
        .map_err(|e| Error::config(&e))
}

/// The shape of a topic binlake writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// Replication factor (`-1`: the broker's default).
    pub replication_factor: i32,
    /// Topic configs, e.g. `cleanup.policy = compact`.
    pub configs: BTreeMap<String, String>,
}

/// Creates the topic, or checks that the existing one has the partition count asked for
/// (a different count changes which partition a key goes to, so it is an error, never
/// silently used).
pub async fn ensure_topic(cfg: &KafkaConfig, spec: &TopicSpec) -> Result<()> {
    let admin: AdminClient<ClientErrors> = cfg
        .client_config()
        .create_with_context(ClientErrors)
        .map_err(|e| Error::config(&e))?;
    let mut topic = NewTopic::new(
        &spec.name,
        spec.partitions,
        TopicReplication::Fixed(spec.replication_factor),
    );
    for (k, v) in &spec.configs {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(cfg.request_timeout));
    let results = admin
        .create_topics([&topic], &opts)
        .await
        .map_err(|e| Error::client(format!("create topic {}", spec.name), &e))?;
    for r in results {
        match r {
            Ok(_) => {
                tracing::info!(topic = %spec.name, partitions = spec.partitions, "topic created");
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let have = partition_count(&admin, &spec.name, cfg.request_timeout).await?;
                if have != spec.partitions {
                    return Err(Error::Topic {
                        topic: spec.name.clone(),
                        reason: format!(
                            "exists with {have} partitions but the config asks for {}; keys would map to other partitions than consumers expect. Set the partition count to {have} in the config, or recreate the topic",
                            spec.partitions
                        ),
                    });
                }
            }
            Err((_, code)) => {
                return Err(Error::Client {
                    operation: format!("create topic {}", spec.name),
                    reason: KafkaError::AdminOp(code).to_string(),
                    transient: crate::error::is_transient_code(code),
                });
            }
        }
    }
    Ok(())
}

/// Whether `topic` exists (with at least one partition).
pub(crate) async fn topic_exists(cfg: &KafkaConfig, topic: &str) -> Result<bool> {
    let admin: AdminClient<ClientErrors> = cfg
        .client_config()
        .create_with_context(ClientErrors)
        .map_err(|e| Error::config(&e))?;
    let timeout = cfg.request_timeout;
    let topic = topic.to_string();
    // fetch_metadata blocks the calling thread.
    tokio::task::spawn_blocking(move || {
        let md = admin
            .inner()
            .fetch_metadata(Some(&topic), timeout)
            .map_err(|e| Error::client(format!("metadata of {topic}"), &e))?;
        Ok(md
            .topics()
            .iter()
            .any(|t| t.name() == topic && !t.partitions().is_empty()))
    })
    .await
    .map_err(|e| Error::Client {
        operation: "metadata".into(),
        reason: e.to_string(),
        transient: true,
    })?
}

/// The topics of the cluster that have partitions (a deleted topic has none, or is gone).
pub(crate) async fn topic_names(cfg: &KafkaConfig) -> Result<HashSet<String>> {
    let admin: AdminClient<ClientErrors> = cfg
        .client_config()
        .create_with_context(ClientErrors)
        .map_err(|e| Error::config(&e))?;
    let timeout = cfg.request_timeout;
    tokio::task::spawn_blocking(move || {
        let md = admin
            .inner()
            .fetch_metadata(None, timeout)
            .map_err(|e| Error::client("metadata", &e))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| !t.partitions().is_empty())
            .map(|t| t.name().to_string())
            .collect())
    })
    .await
    .map_err(|e| Error::Client {
        operation: "metadata".into(),
        reason: e.to_string(),
        transient: true,
    })?
}

async fn partition_count(
    admin: &AdminClient<ClientErrors>,
    topic: &str,
    timeout: Duration,
) -> Result<i32> {
    let md = admin
        .inner()
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| Error::client(format!("metadata of {topic}"), &e))?;
    md.topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len() as i32)
        .ok_or_else(|| Error::Topic {
            topic: topic.to_string(),
            reason: "the broker returned no metadata for it".into(),
        })
}

/// Reads partition 0 of `topic` from the start to its current end (`read_committed`),
/// calling `f` with each record's key, value and offset; `group` names the reader.
pub(crate) async fn read_to_end(
    kafka: &KafkaConfig,
    topic: &str,
    group: &str,
    f: impl FnMut(Option<&[u8]>, Option<&[u8]>, i64) -> Result<()>,
) -> Result<()> {
    read_from(kafka, topic, group, rdkafka::Offset::Beginning, f).await
}

/// [`read_to_end`] from offset `from` (e.g. `Offset::OffsetTail(n)`: the last n).
pub(crate) async fn read_from(
    kafka: &KafkaConfig,
    topic: &str,
    group: &str,
    from: rdkafka::Offset,
    mut f: impl FnMut(Option<&[u8]>, Option<&[u8]>, i64) -> Result<()>,
) -> Result<()> {
    use rdkafka::TopicPartitionList;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::error::KafkaError;
    use rdkafka::message::Message;
    let mut c = kafka.client_config();
    c.set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // An empty or fully read partition answers at once instead of after 500 ms.
        .set("fetch.wait.max.ms", "10");
    let consumer: StreamConsumer<crate::capture::QuietEof> = c
        .create_with_context(crate::capture::QuietEof)
        .map_err(|e| Error::config(&e))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, from)
        .map_err(|e| Error::client(format!("assign {topic}"), &e))?;
    consumer
        .assign(&tpl)
        .map_err(|e| Error::client(format!("assign {topic}"), &e))?;
    loop {
        let msg = tokio::time::timeout(kafka.request_timeout, consumer.recv())
            .await
            .map_err(|_| Error::Client {
                operation: format!("read {topic}"),
                reason: format!("no answer within {:?}", kafka.request_timeout),
                transient: true,
            })?;
        match msg {
            Ok(m) => f(m.key(), m.payload(), m.offset())?,
            Err(KafkaError::PartitionEOF(_)) => return Ok(()),
            Err(e) => return Err(Error::client(format!("read {topic}"), &e)),
        }
    }
}
